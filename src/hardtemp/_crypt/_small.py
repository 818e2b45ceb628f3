"""The encrypted file that starts in memory: nothing reaches the disk until it outgrows a block.

:class:`MemoryFirstRawIO` is what ``hardtemp.TemporaryFile()`` (``encrypt=True``) builds.
While its contents fit in one ``SMALL_BLOCK_SIZE`` block (4 KiB) they live in a buffer of
this object only, and the backing file stays empty: no key is drawn, no AES call is made,
nothing is written. The first operation that needs more (a write or a growing truncate past
the block, a truncate that grows a file nothing was written to) *spills*: a key is drawn,
the contents are sealed into the backing file as :class:`EncryptedRawIO` would have stored
them, and the object becomes that class (``__class__`` is assigned: the buffered layer
above keeps its raw object, and every later call runs :class:`EncryptedRawIO`'s own code,
with no call in between).

Invariants:

* the plaintext is in one place at a time as far as reads are concerned: the buffer until
  the class assignment (one store, the commit point), the backing file after it; a spill
  that fails or is interrupted before that store leaves the file in memory with every byte
  written so far, drops the key it drew (what it wrote is ciphertext under that key) and
  cuts the backing file back to empty at the next attempt;
* the buffer is allocated at its full size once and never resized (no reallocation leaves
  a plaintext copy in freed memory); it is zeroed when the file spills or closes;
* a forked child reads what the parent had written before the fork (its copy of the
  buffer) and may not write, as for :class:`EncryptedRawIO` (nonces are not the reason
  here; the rule is the same so that a file's behaviour does not depend on its size);
* every method holds the object's lock and asks again, under it, whether another thread
  spilled the file meanwhile (then :class:`EncryptedRawIO`'s locked code runs).

The buffer is ordinary process memory, as the buffered layer's own buffer above it, which
holds the same bytes (and is never zeroed): see SECURITY.md, "Memory".
"""

from __future__ import annotations

import errno
import io
import operator
import os
import threading
import weakref
from typing import TYPE_CHECKING, Final

from ..exceptions import InsecureOperationError
from ._backing import Backing
from ._raw import (
    _FORK_MESSAGE,
    _RAW_MODES,
    SMALL_BLOCK_SIZE,
    ZEROS,
    EncryptedRawIO,
    _live,
    new_sealer,
    seek_target,
    zero_small_buffer,
)
from ._sealer import SEED_SIZE
from ._secpool import seed_area

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

__all__ = ["MemoryFirstRawIO"]

_CLOSED: Final = "I/O operation on closed file"
_ZEROS: Final = ZEROS
_iobase_close: Final = io.RawIOBase.close
_write_locked = EncryptedRawIO._write_locked
_readinto_locked = EncryptedRawIO._readinto_locked
_SEEK_SET, _SEEK_CUR = os.SEEK_SET, os.SEEK_CUR


class MemoryFirstRawIO(EncryptedRawIO):
    """An :class:`EncryptedRawIO` whose first ``SMALL_BLOCK_SIZE`` bytes stay in memory.

    ``MemoryFirstRawIO(fd, *, name, mode)``: ``fd`` is an empty regular file of ours just
    created and verified (an unnamed ``O_TMPFILE`` file), owned (and closed) by this object
    once the constructor returns; ``mode`` as :class:`EncryptedRawIO`'s (``"rb+"``...).
    Guarantees and errors: as :class:`EncryptedRawIO` (see the module docstring for what
    changes while the file is small: nothing is on the disk, so nothing there can be
    tampered with).
    """

    __slots__ = ()  # EncryptedRawIO's very layout: the class can be assigned at the spill
    _tried = False  # a spill was attempted (its ciphertext, if any, is cut at the next)

    def __init__(self, fd: int, *, name: object, mode: str) -> None:
        # No super().__init__(): EncryptedRawIO's would draw a key and set up the blocks.
        # First, before anything can fail: close()/__del__ read these.
        self._fd, self._sealer, self._mem, self._pt, self._pending = -1, None, None, None, None
        self._forked, self._discard = False, 0
        self._lock = threading.Lock()
        flags = _RAW_MODES.get(mode)
        if flags is None:
            raise ValueError(f"invalid raw mode {mode!r}")
        self._readable, self._writable, self._append = flags
        self.name = name
        self.mode = mode
        self._pos = 0
        self._auto = True  # the block size is chosen at the spill, as at a first write
        # The seed area's canary tells a child forked past Python's hooks (as the key's would).
        self._birth = seed_area(SEED_SIZE).mem
        self._buf = bytearray(SMALL_BLOCK_SIZE)  # full size: never resized, never moved
        self._view = memoryview(self._buf)
        self._size = 0
        self._hw = 0  # the end of everything ever copied in: what the close zeroes
        # Last, after everything that can fail: from here on the descriptor is ours.
        self._fd = fd
        self._closefd = True
        _live.add(weakref.ref(self, _live.discard))

    # --- io.RawIOBase protocol (the small file's; EncryptedRawIO's once spilled) ------------

    def seek(self, offset: int, whence: int = _SEEK_SET) -> int:
        if self._fd < 0:
            raise ValueError(_CLOSED)
        if offset.__class__ is not int:
            offset = operator.index(offset)
        if whence == _SEEK_CUR and offset == 0:
            return self._pos  # what io.BufferedRandom asks before every read: a plain tell()
        if whence == _SEEK_SET and offset >= 0:
            self._pos = offset
            return offset
        with self._lock:
            if self.__class__ is MemoryFirstRawIO:
                self._pos = new = seek_target(self._pos, offset, whence, self._small_size)
                return new
        return EncryptedRawIO.seek(self, offset, whence)  # spilled meanwhile (takes the lock)

    def _small_size(self) -> int:
        """The size, under the lock, before the spill."""
        self._still_open()
        return self._size

    def readinto(self, buffer: WriteableBuffer) -> int:
        if self._fd < 0:
            raise ValueError(_CLOSED)
        if not self._readable:
            raise io.UnsupportedOperation("File not open for reading")
        with self._lock:
            if self.__class__ is not MemoryFirstRawIO:
                return _readinto_locked(self, buffer)  # spilled meanwhile
            self._still_open()
            pos = self._pos
            n = self._size - pos
            if n <= 0:
                return 0
            out = memoryview(buffer)
            if out.format != "B" or out.ndim != 1:
                out = out.cast("B")
            if len(out) < n:
                n = len(out)
            out[:n] = self._view[pos : pos + n]  # no intermediate copy
            self._pos = pos + n
            return n

    def readall(self) -> bytes:
        if self._fd < 0:
            raise ValueError(_CLOSED)
        if not self._readable:
            raise io.UnsupportedOperation("File not open for reading")
        with self._lock:
            if self.__class__ is MemoryFirstRawIO:
                self._still_open()
                pos, size = self._pos, self._size
                if pos >= size:
                    return b""
                self._pos = size
                return bytes(self._view[pos:size])
        return EncryptedRawIO.readall(self)  # spilled meanwhile (takes the lock)

    def write(self, b: ReadableBuffer) -> int:
        if self._fd < 0:
            raise ValueError(_CLOSED)
        if (not self._writable or self._forked or self._birth.forked) and self._check_writable():
            return memoryview(b).nbytes  # discarded in a child (EncryptedRawIO.write's rule)
        with memoryview(b) as view:
            if view.ndim == 1 and view.format == "B":
                with self._lock:
                    return _write_small(self, view)
            with view.cast("B") as data, self._lock:
                return _write_small(self, data)

    def _write_small(self, data: memoryview) -> int:
        """:meth:`write` of the bytes ``data``, under the lock. Called as a function
        (``_write_small(self, data)``), never looked up on ``self``: a thread that waited for
        the lock while another spilled the file finds it of the other class."""
        if self.__class__ is not MemoryFirstRawIO:
            return _write_locked(self, data)  # spilled meanwhile
        if self._fd < 0:
            raise ValueError(_CLOSED)
        n = len(data)
        if n == 0:
            return 0
        size = self._size
        pos = size if self._append else self._pos
        end = pos + n
        if end > SMALL_BLOCK_SIZE:
            self._spill()
            return _write_locked(self, data)
        # Each step leaves a consistent file if an interrupt lands after it: the zeroing's
        # extent is known before anything is copied, and bytes past the size (an
        # interrupted call's, a cut tail) are never read, nor left in a hole.
        view = self._view
        if end > self._hw:
            self._hw = end
        if pos > size:
            view[size:pos] = _ZEROS[: pos - size]  # the hole reads as zeros
        view[pos:end] = data  # one copy: all of this call's bytes, or none
        if end > size:
            self._size = end
        self._pos = end
        return n

    def truncate(self, size: int | None = None) -> int:
        self._check_open()
        if self._check_writable():
            raise InsecureOperationError(self._err_path(), _FORK_MESSAGE)
        with self._lock:
            if self.__class__ is not MemoryFirstRawIO:
                grow = True
            else:
                self._still_open()
                new = self._pos if size is None else operator.index(size)
                if new < 0:
                    raise OSError(errno.EINVAL, "Invalid argument: negative size")
                old = self._size
                # Growing a file nothing was written to chooses its blocks (EncryptedRawIO:
                # the default ones), and growing past the block needs the disk: spilled.
                grow = new > SMALL_BLOCK_SIZE or (new > old and old == 0)
                if not grow:
                    if new > old:
                        self._view[old:new] = _ZEROS[: new - old]  # grown: zeros
                        if new > self._hw:
                            self._hw = new
                    self._size = new  # then the cut tail's zeroing (past the size: unread)
                    if new < old:
                        self._view[new:old] = _ZEROS[: old - new]
                    return new
                self._spill()
        return EncryptedRawIO.truncate(self, size)

    def close(self) -> None:
        """Zero the contents, close the backing descriptor. Idempotent.

        Raises:
            OSError: closing the backing descriptor failed.
        """
        if self.closed:
            return
        with self._lock:
            if self.__class__ is not MemoryFirstRawIO or self._tried:
                # Spilled meanwhile, or a spill was tried (its state to drop): the full close.
                try:
                    zero_small_buffer(self)
                finally:
                    self._close_locked()
                return
            try:
                _iobase_close(self)  # (flushes, then marks it closed; no super object)
            finally:
                self._size = 0
                zero_small_buffer(self)  # everything ever copied in (past it: zeros)
                fd, self._fd = self._fd, -1
                if fd >= 0:
                    os.close(fd)

    def __repr__(self) -> str:
        if self.__class__ is not MemoryFirstRawIO:  # pragma: no cover - EncryptedRawIO's own
            return EncryptedRawIO.__repr__(self)
        state = "closed" if self.closed else f"size={self._size}"
        return f"<hardtemp.EncryptedRawIO name={self.name!r} in memory {state}>"

    # --- the spill --------------------------------------------------------------------------

    def _spill(self) -> None:
        """Seal the contents into the backing file and become an :class:`EncryptedRawIO`;
        under the lock. Raises (the file still in memory, every byte kept): as
        :meth:`EncryptedRawIO.write` (``ENOSPC``, ``EIO``, ``ENOMEM``...)."""
        fd = self._fd
        if self._tried:
            os.ftruncate(fd, 0)  # a failed attempt's ciphertext, under a key since dropped
        self._tried = True
        size, pos, append = self._size, self._pos, self._append
        sealer = new_sealer(seed_area(SEED_SIZE), narrow=self._auto)
        try:
            self._io = Backing(fd)
            self._ct = bytearray()  # EncryptedRawIO's reused ciphertext buffer
            self._pending = None
            self._sealer = sealer
            self._set_geometry(SMALL_BLOCK_SIZE, None, wide=not self._auto)
            if size:
                # As EncryptedRawIO would have stored them: written from the start, at once
                # (the first write chooses the block size: one of at most a block, the
                # provisional 4 KiB blocks).
                self._append, self._pos = False, 0
                try:
                    _write_locked(self, self._view[:size])
                finally:
                    self._append, self._pos = append, pos
            self.__class__ = EncryptedRawIO  # type: ignore[assignment]  # the commit: the disk from here on
        except BaseException:
            if self.__class__ is MemoryFirstRawIO:
                # Still in memory, every byte there: the key and what it sealed are dropped.
                self._sealer = None
                self._pending = None
                sealer.close()
            raise
        zero_small_buffer(self)


_write_small: Final = MemoryFirstRawIO._write_small
