"""MemoryFile: an anonymous in-memory file (``memfd_create``) with a size limit and seals.

Invariants:

* The file never has a name in any filesystem: it is created with
  ``memfd_create`` (its only trace is ``/memfd:hardtemp (deleted)`` under
  ``/proc/PID/fd``) and its descriptor is close-on-exec.
* Writes and truncation through the object never take the file past
  ``max_size``: such a write raises :class:`~hardtemp.exceptions.SizeLimitError`
  and changes nothing.
* Closing an unsealed file in the creating process overwrites its pages with
  zeros and truncates it to 0 bytes before the descriptor is closed, so
  neither freed memory nor another holder of the descriptor sees the data.
* Once sealed, nobody (we included) can write, grow or shrink the file, or
  remove the seals; a sealed file is therefore not zeroed on close.
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import threading
from typing import TYPE_CHECKING

from ._wipe import overwrite_fd
from .exceptions import SizeLimitError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = ["DEFAULT_MAX_SIZE", "MemoryFile"]

DEFAULT_MAX_SIZE = 64 * 1024 * 1024

_MFD_NOEXEC_SEAL = getattr(os, "MFD_NOEXEC_SEAL", 0x0008)  # Linux 6.3
# Every seal that makes the contents immutable, and the seals themselves final.
_READ_ONLY_SEALS = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL


def _memfd() -> int:
    """A new sealable, close-on-exec, non-executable memfd."""
    # MFD_CLOEXEC: the descriptor never leaks into a program we exec.
    flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
    try:
        # MFD_NOEXEC_SEAL: the data can never be run with fexecve (a planted payload).
        return os.memfd_create("hardtemp", flags | _MFD_NOEXEC_SEAL)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # kernel before 6.3: no such flag
            raise
    return os.memfd_create("hardtemp", flags)


def _check_max_size(max_size: object) -> int | None:
    if max_size is None:
        return None
    if isinstance(max_size, bool) or not isinstance(max_size, int):
        raise TypeError(f"max_size must be an int or None, not {type(max_size).__name__}")
    if max_size < 0:
        raise ValueError(f"max_size must not be negative, not {max_size}")
    return max_size


class MemoryFile(io.FileIO):
    """A binary read/write file that lives only in memory (``memfd_create``).

    It never has a name in a filesystem, so nothing ever reaches a disk
    (except through swap: see SECURITY.md and ``hardtemp check``). Its
    descriptor (``fileno()``) is close-on-exec, mode 0600 and, where the
    kernel allows (6.3+), sealed against execution. It can be handed to a
    child with ``subprocess.run(..., pass_fds=[f.fileno()])`` after
    :meth:`seal`.

    This is a raw (unbuffered) :class:`io.FileIO`; wrap it in
    :class:`io.BufferedRandom` or :class:`io.TextIOWrapper` for buffered or
    text I/O (flush before :meth:`seal`).

    Guarantees:
        * ``write``/``truncate`` never make the file larger than ``max_size``
          bytes (default 64 MiB; ``None``: no limit but memory). Writes made
          directly on the descriptor (``os.write``, another process) are not
          limited by this object: seal the file to stop them.
        * ``close()`` in the creating process overwrites the contents with
          zeros and truncates the file before closing it, unless it is sealed
          (the seal forbids that write). A forked child's close never does.

    Raises:
        TypeError: ``max_size`` is not an int or None.
        ValueError: ``max_size`` is negative.
        OSError: the kernel refused ``memfd_create`` (e.g. ``EMFILE``).
    """

    # Until __init__ has finished, a close (from the finalizer) never zeroes anything.
    _owner_pid: int = 0
    _max_size: int | None = None

    def __init__(self, max_size: int | None = DEFAULT_MAX_SIZE) -> None:
        limit = _check_max_size(max_size)
        super().__init__(_memfd(), "rb+", closefd=True)  # owns the descriptor from here
        # 0600: another user handed the descriptor cannot reopen it through /proc for
        # writing, and it has no exec bits.
        os.fchmod(self.fileno(), 0o600)
        self._max_size = limit
        self._owner_pid = os.getpid()
        self._lock = threading.Lock()

    @property
    def max_size(self) -> int | None:
        """The size limit in bytes, or ``None``."""
        return self._max_size

    @property
    def seals(self) -> int:
        """The seals set on the file (``F_GET_SEALS`` bits).

        Raises: ValueError: the file is closed.
        """
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        return fcntl.fcntl(self.fileno(), fcntl.F_GET_SEALS)

    @property
    def sealed(self) -> bool:
        """Whether :meth:`seal` made the contents immutable."""
        return self.seals & _READ_ONLY_SEALS == _READ_ONLY_SEALS

    def _refuse(self, end: int, what: str) -> None:
        if self._max_size is not None and end > self._max_size:
            raise SizeLimitError(
                None, f"{what} would make the memory file {end} bytes (max_size {self._max_size})"
            )

    def write(self, b: ReadableBuffer) -> int:
        """Write ``b`` at the current position; return the number of bytes written.

        Raises:
            SizeLimitError: the file would grow past ``max_size`` (nothing written).
            PermissionError: the file is sealed.
            ValueError: the file is closed.
        """
        with memoryview(b) as view:
            n = view.nbytes
        with self._lock:  # the position check and the write are one step for our threads
            if n:
                self._refuse(self.tell() + n, f"writing {n} bytes")
            return super().write(b)

    def truncate(self, size: int | None = None) -> int:
        """Resize the file to ``size`` bytes (default: the current position).

        Raises:
            SizeLimitError: ``size`` is larger than ``max_size`` (nothing changed).
            PermissionError: the file is sealed.
            ValueError: the file is closed.
        """
        with self._lock:
            end = self.tell() if size is None else size
            self._refuse(end, f"truncating to {end} bytes")
            return super().truncate(size)

    def seal(self) -> None:
        """Make the contents immutable: ``F_SEAL_WRITE|F_SEAL_GROW|F_SEAL_SHRINK|F_SEAL_SEAL``.

        From now on no descriptor or mapping of the file, in any process,
        can write, grow, shrink or unseal it; a child handed ``fileno()`` can
        only read. Because the seal forbids our own writes too, a sealed file
        is not zeroed on close: its pages are freed by the kernel when the
        last descriptor to it is closed.

        Sealing a sealed file does nothing.

        Raises:
            ValueError: the file is closed.
            OSError: ``EBUSY`` while a writable shared ``mmap`` of it exists.
        """
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        if self.sealed:
            return  # F_SEAL_SEAL refuses a second F_ADD_SEALS; sealing twice is no error
        try:
            fcntl.fcntl(self.fileno(), fcntl.F_ADD_SEALS, _READ_ONLY_SEALS)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                raise OSError(
                    errno.EBUSY, "cannot seal: a writable shared mmap of the file exists"
                ) from exc
            raise

    def close(self) -> None:
        """Zero and empty the file (unless sealed, or in a forked child), then close it.

        Raises:
            WipeError: zeroing failed (the descriptor is closed all the same).
        """
        if self.closed:
            return
        try:
            if os.getpid() == self._owner_pid and not self.seals & fcntl.F_SEAL_WRITE:
                self._owner_pid = 0
                fd = self.fileno()
                # Zeros over every page, then truncate: freed pages and anyone still
                # holding the descriptor never see the data.
                try:
                    overwrite_fd(fd, pattern="zeros")
                finally:
                    os.ftruncate(fd, 0)
        finally:
            super().close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self.fileno()}"
        return f"<hardtemp.MemoryFile {state} max_size={self._max_size}>"
