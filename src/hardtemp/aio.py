"""hardtemp for asyncio: the same temporary files, with awaitable creation and I/O.

Every function and class takes exactly the parameters (and defaults) of its
sync counterpart in :mod:`hardtemp` and returns the same hardened object,
driven from worker threads so the event loop never blocks::

    async with hardtemp.aio.TemporaryFile() as f:     # encrypted, as the sync one
        await f.write(b"record")
        await f.seek(0)
        data = await f.read()

    f = await hardtemp.aio.NamedTemporaryFile()       # without a context manager
    await f.close()

    async with hardtemp.aio.TemporaryDirectory() as path:
        ...

    fd, path = await hardtemp.aio.mkstemp()

Needs a running asyncio event loop (``RuntimeError`` otherwise, e.g. under
trio: use ``trio.to_thread.run_sync`` with the sync API there). See the
documentation (docs/async.md) for the cancellation guarantees.
"""

from ._aio import AsyncFile as AsyncFile
from ._aio import AsyncNamedTemporaryFile as AsyncNamedTemporaryFile
from ._aio import AsyncSpooledTemporaryFile as AsyncSpooledTemporaryFile
from ._aio import AsyncTemporaryDirectory as AsyncTemporaryDirectory
from ._aio import Opening as Opening
from ._aio_api import NamedTemporaryFile as NamedTemporaryFile
from ._aio_api import SpooledTemporaryFile as SpooledTemporaryFile
from ._aio_api import TemporaryDirectory as TemporaryDirectory
from ._aio_api import TemporaryFile as TemporaryFile
from ._aio_api import mkdtemp as mkdtemp
from ._aio_api import mkstemp as mkstemp
from ._aio_api import publish as publish

__all__ = [
    "AsyncFile",
    "AsyncNamedTemporaryFile",
    "AsyncSpooledTemporaryFile",
    "AsyncTemporaryDirectory",
    "NamedTemporaryFile",
    "Opening",
    "SpooledTemporaryFile",
    "TemporaryDirectory",
    "TemporaryFile",
    "mkdtemp",
    "mkstemp",
    "publish",
]
