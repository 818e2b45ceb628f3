"""A raw file that is encrypted until someone asks for its descriptor.

``encrypt="until-fileno"``: the contents live in an :class:`EncryptedRawIO`
(only ciphertext on disk, key in this process) until the first
:meth:`SwitchingRawIO.fileno` call, which ``subprocess``, ``shutil``,
``os.fstat`` and friends make. That call moves the contents, transparently,
into a plain hardened unnamed file (made by the ``create`` callable; the
caller's file object overwrites it on close) at the same position, and
returns its descriptor; from then on every call goes to that plain file.

Invariants:

* before the switch no plaintext reaches the disk; after it, the file is as
  protected as ``TemporaryFile(encrypt=False)`` (plaintext, overwritten on
  close), because another program must be able to read it;
* the switch is all or nothing: if copying fails (``ENOSPC``) or is
  interrupted, the encrypted file stays in use, unchanged, and the partial
  plain copy is overwritten and closed; the switch commits with one attribute
  store, after which the encrypted file is closed (its key dropped);
* the descriptor number changes at the switch (``name`` follows it), since
  the encrypted backing descriptor is never handed out.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._raw import EncryptedRawIO

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

__all__ = ["SwitchingRawIO"]

_COPY_BYTES = 1024 * 1024


class SwitchingRawIO(io.RawIOBase):
    """Delegates to ``enc`` until the first :meth:`fileno`, then to the plain
    raw file ``create()`` returns (an empty, readable and writable
    :class:`io.FileIO` that overwrites itself on close).

    Raises: what the current file raises; :meth:`fileno` also what ``create``
    and the copy raise (``OSError``), leaving the file encrypted.
    """

    def __init__(
        self, enc: EncryptedRawIO, create: Callable[[], io.FileIO], mode: str = "rb+"
    ) -> None:
        super().__init__()
        self._f: io.RawIOBase = enc
        self._create: Callable[[], io.FileIO] | None = create
        self._lock = threading.Lock()
        self.mode = mode  # the caller's raw mode (``enc`` is always readable, for the copy)
        self._readable = mode != "wb" and mode != "ab" and mode != "xb"

    @property
    def encrypted(self) -> bool:
        """True until the switch to a plain file."""
        return isinstance(self._f, EncryptedRawIO)

    @property
    def current(self) -> io.RawIOBase:
        """The raw file in use: the encrypted one until the switch, then the plain one."""
        return self._f

    @property
    def name(self) -> Any:
        return self._f.name  # type: ignore[attr-defined]

    def fileno(self) -> int:
        """The descriptor of the plain file, switching to it first if needed.

        Raises:
            ValueError: the file is closed.
            OSError: creating or filling the plain file failed (the file stays
                encrypted and unchanged).
        """
        if self.closed:
            raise ValueError("I/O operation on closed file")
        with self._lock:
            if isinstance(self._f, EncryptedRawIO):
                self._switch(self._f)
            return self._f.fileno()

    def _switch(self, enc: EncryptedRawIO) -> None:
        if self._create is None:
            raise ValueError("I/O operation on closed file")
        pos = enc.tell()
        plain = self._create()
        try:
            # A plain file that tracks what it wrote (to tell our cuts from others') is told.
            _copy(enc, plain.fileno(), getattr(plain, "_note", None))
            plain.seek(pos)  # the descriptor's offset: where another program reads or writes
        except BaseException:
            enc.seek(pos)
            plain.close()  # overwrites the partial plaintext copy
            raise
        self._f = plain  # the commit point
        self._create = None
        enc.close()  # drops the key: the ciphertext is unreadable from now on

    def _check_readable(self) -> None:
        if not self._readable and isinstance(self._f, EncryptedRawIO):
            raise io.UnsupportedOperation("File not open for reading")

    # --- delegation ------------------------------------------------------------------------

    def readable(self) -> bool:
        if isinstance(self._f, EncryptedRawIO):
            self._f.readable()  # raises when closed
            return self._readable
        return self._f.readable()

    def writable(self) -> bool:
        return self._f.writable()

    def seekable(self) -> bool:
        return self._f.seekable()

    def isatty(self) -> bool:
        return self._f.isatty()

    def tell(self) -> int:
        return self._f.tell()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._f.seek(offset, whence)

    def read(self, size: int | None = -1) -> bytes | None:
        self._check_readable()
        return self._f.read(-1 if size is None else size)

    def readinto(self, buffer: WriteableBuffer) -> int | None:
        self._check_readable()
        return self._f.readinto(buffer)

    def readall(self) -> bytes:
        self._check_readable()
        return self._f.readall()

    def write(self, b: ReadableBuffer) -> int | None:
        return self._f.write(b)

    def truncate(self, size: int | None = None) -> int:
        return self._f.truncate(size)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if self.closed:
            return
        self._create = None  # releases the directory handle
        try:
            super().close()  # flushes (through the inner file) first
        finally:
            self._f.close()

    def __reduce__(self) -> Any:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")


def _copy(src: EncryptedRawIO, fd: int, note: Callable[[int, int], None] | None) -> None:
    """Copy all of ``src`` into the empty file ``fd`` with ``pwrite`` (the caller's
    mode may be read-only); holes stay holes; ``note(start, end)`` is told every
    range written. The reused buffer is zeroed afterwards."""
    buf = bytearray(_COPY_BYTES)
    view = memoryview(buf)
    zeros = memoryview(bytes(_COPY_BYTES))
    offset = 0
    try:
        src.seek(0)
        while n := src.readinto(view):
            if not buf.startswith(zeros[:n]):  # skip all-zero chunks: a sparse file stays sparse
                done = 0
                while done < n:
                    done += os.pwrite(fd, view[done:n], offset + done)
                if note is not None:
                    note(offset, offset + n)
            offset += n
        os.ftruncate(fd, offset)
        if note is not None:
            note(offset, offset)
    finally:
        view.release()
        buf[:] = bytes(len(buf))
