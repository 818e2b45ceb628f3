"""The constructors of :mod:`hardtemp.aio`: the sync API's signatures, creating in threads.

Invariants: each takes exactly the parameters and defaults of its sync
counterpart and passes them through unchanged; nothing here blocks the loop
(all work happens in :mod:`hardtemp._aio`'s worker threads).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, overload

from . import _create, _files, _link, _spool
from ._aio import (
    AsyncFile,
    AsyncTemporaryDirectory,
    Opening,
    open_file,
    open_named,
    open_spooled,
    open_tempdir,
)
from ._aio import mkdtemp as _mkdtemp
from ._aio import mkstemp as _mkstemp

if TYPE_CHECKING:
    from _typeshed import BytesPath, StrOrBytesPath, StrPath

__all__ = [
    "NamedTemporaryFile",
    "SpooledTemporaryFile",
    "TemporaryDirectory",
    "TemporaryFile",
    "mkdtemp",
    "mkstemp",
    "publish",
]


def TemporaryFile(
    mode: str = "w+b",
    buffering: int = -1,
    encoding: str | None = None,
    newline: str | None = None,
    suffix: str | bytes | None = None,
    prefix: str | bytes | None = None,
    dir: StrOrBytesPath | None = None,
    *,
    errors: str | None = None,
    encrypt: bool = True,
    linkable: bool = False,
) -> Opening[AsyncFile]:
    """:func:`hardtemp.TemporaryFile`, created in a thread: ``await`` it or ``async with`` it.

    Raises (when awaited): what :func:`hardtemp.TemporaryFile` raises;
    ``RuntimeError`` without a running asyncio loop.
    """
    return open_file(
        AsyncFile,
        functools.partial(
            _files.TemporaryFile,
            mode,
            buffering,
            encoding,
            newline,
            suffix,
            prefix,
            dir,
            errors=errors,
            encrypt=encrypt,
            linkable=linkable,
        ),
    )


def NamedTemporaryFile(
    mode: str = "w+b",
    buffering: int = -1,
    encoding: str | None = None,
    newline: str | None = None,
    suffix: str | bytes | None = None,
    prefix: str | bytes | None = None,
    dir: StrOrBytesPath | None = None,
    delete: bool = True,
    *,
    errors: str | None = None,
    delete_on_close: bool = True,
) -> Opening[AsyncFile]:
    """:func:`hardtemp.NamedTemporaryFile`, created in a thread; the object has async
    ``persist()``/``persist_noclobber()``.

    Raises (when awaited): what :func:`hardtemp.NamedTemporaryFile` raises;
    ``RuntimeError`` without a running asyncio loop.
    """
    return open_named(
        functools.partial(
            _files.NamedTemporaryFile,
            mode,
            buffering,
            encoding,
            newline,
            suffix,
            prefix,
            dir,
            delete,
            errors=errors,
            delete_on_close=delete_on_close,
        )
    )


def SpooledTemporaryFile(
    max_size: int = 0,
    mode: str = "w+b",
    buffering: int = -1,
    encoding: str | None = None,
    newline: str | None = None,
    suffix: str | bytes | None = None,
    prefix: str | bytes | None = None,
    dir: StrOrBytesPath | None = None,
    *,
    errors: str | None = None,
    encrypt: bool = True,
) -> Opening[AsyncFile]:
    """:class:`hardtemp.SpooledTemporaryFile`, with its I/O (and so its rollover) in threads.

    Raises (when awaited): what :class:`hardtemp.SpooledTemporaryFile` raises;
    ``RuntimeError`` without a running asyncio loop.
    """
    return open_spooled(
        functools.partial(
            _spool.SpooledTemporaryFile,
            max_size,
            mode,
            buffering,
            encoding,
            newline,
            suffix,
            prefix,
            dir,
            errors=errors,
            encrypt=encrypt,
        )
    )


def TemporaryDirectory(
    suffix: str | bytes | None = None,
    prefix: str | bytes | None = None,
    dir: StrOrBytesPath | None = None,
    ignore_cleanup_errors: bool = False,
    *,
    delete: bool = True,
) -> Opening[AsyncTemporaryDirectory]:
    """:class:`hardtemp.TemporaryDirectory`, created and cleaned up in threads.

    ``await`` it for an object with ``name`` and ``await cleanup()``; ``async with``
    gives the path, as the sync context manager does.

    Raises (when awaited): what :class:`hardtemp.TemporaryDirectory` raises;
    ``RuntimeError`` without a running asyncio loop.
    """
    return open_tempdir(
        functools.partial(
            _files.TemporaryDirectory,
            suffix,
            prefix,
            dir,
            ignore_cleanup_errors,
            delete=delete,
        )
    )


@overload
async def mkstemp(
    suffix: str | None = None,
    prefix: str | None = None,
    dir: StrPath | None = None,
    text: bool = False,
) -> tuple[int, str]: ...
@overload
async def mkstemp(
    suffix: bytes | None = None,
    prefix: bytes | None = None,
    dir: BytesPath | None = None,
    text: bool = False,
) -> tuple[int, bytes]: ...
async def mkstemp(
    suffix: str | bytes | None = None,
    prefix: str | bytes | None = None,
    dir: StrOrBytesPath | None = None,
    text: bool = False,
) -> tuple[int, str | bytes]:
    """:func:`hardtemp.mkstemp` in a thread: ``(fd, path)``, owned by the caller.

    Raises: what :func:`hardtemp.mkstemp` raises; ``RuntimeError`` without a
    running asyncio loop.
    """
    return await _mkstemp(functools.partial(_create.mkstemp, suffix, prefix, dir, text))


@overload
async def mkdtemp(
    suffix: str | None = None, prefix: str | None = None, dir: StrPath | None = None
) -> str: ...
@overload
async def mkdtemp(
    suffix: bytes | None = None, prefix: bytes | None = None, dir: BytesPath | None = None
) -> bytes: ...
async def mkdtemp(
    suffix: str | bytes | None = None,
    prefix: str | bytes | None = None,
    dir: StrOrBytesPath | None = None,
) -> str | bytes:
    """:func:`hardtemp.mkdtemp` in a thread: the path, owned by the caller.

    Raises: what :func:`hardtemp.mkdtemp` raises; ``RuntimeError`` without a
    running asyncio loop.
    """
    return await _mkdtemp(functools.partial(_create.mkdtemp, suffix, prefix, dir))


async def publish(file: AsyncFile, path: StrOrBytesPath, *, durable: bool = False) -> str | bytes:
    """:func:`hardtemp.publish` for a ``TemporaryFile(encrypt=False, linkable=True)``
    opened here, in a thread (after the file's other calls).

    Raises: what :func:`hardtemp.publish` raises; ``RuntimeError`` without a running
    asyncio loop.
    """
    return await file._call(functools.partial(_link.publish, file.wrapped, path, durable=durable))
