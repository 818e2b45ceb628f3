"""publish(): give a finished unnamed ``TemporaryFile(linkable=True)`` its final name.

Invariants:

* Only a plaintext unnamed file of ours (``TemporaryFile(encrypt=False,
  linkable=True)``) is accepted; anything else is refused before any change.
* The name appears in one ``linkat`` (never replacing an existing name), after
  the buffered data was flushed (and, with ``durable``, synced); until then the
  file has no name at all, so a crash leaves nothing anywhere.
* Once published, the file is the caller's: closing it no longer overwrites it.
"""

from __future__ import annotations

import os
from typing import IO, Any

from ._files import _WipingFileIO
from ._publish import link_unnamed

__all__ = ["publish"]


def _raw_of(file: object) -> object:
    """The raw file under the text and buffer layers."""
    obj = file
    for _ in range(3):  # TextIOWrapper -> Buffered* -> raw
        if isinstance(obj, _WipingFileIO):
            return obj
        obj = getattr(obj, "buffer", None) or getattr(obj, "raw", None)
    return obj


def publish(
    file: IO[Any],
    path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    *,
    durable: bool = False,
) -> str | bytes:
    """Link the unnamed ``file`` into place at ``path``, never replacing anything.

    ``file`` must come from ``TemporaryFile(encrypt=False, linkable=True)`` and be
    open. Its buffers are flushed, then (``durable=True``) the data is synced, the
    name is created with ``linkat`` through ``/proc/self/fd``, and (``durable``) the
    destination directory is synced. The file stays open; it is no longer
    overwritten on close. Returns ``path``.

    Raises:
        FileExistsError: ``path`` exists (nothing changed).
        ValueError: ``file`` is closed, is not a linkable ``TemporaryFile``, or was
            published already.
        FileNotFoundError: ``/proc`` is not mounted, or ``path``'s directory is missing.
        OSError: ``EXDEV`` (another filesystem), ``EIO`` from an ``fsync``...
    """
    raw = _raw_of(file)
    if not isinstance(raw, _WipingFileIO):
        raise ValueError("publish() takes a TemporaryFile(encrypt=False, linkable=True)")
    if file.closed:
        raise ValueError("I/O operation on closed file.")
    file.flush()  # every byte written so far is in the inode before it gets a name
    target = link_unnamed(raw.fileno(), os.fspath(path), durable=durable)
    raw._owner_pid = 0  # a kept file: close must not overwrite it any more
    return target
