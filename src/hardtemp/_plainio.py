"""The raw layer of hardtemp's plaintext files: nothing we wrote is cut off unwiped.

Used by ``NamedTemporaryFile``, ``TemporaryFile(encrypt=False)`` (so also
``SpooledTemporaryFile(encrypt=False)`` after rollover and compat's files), always over a
regular file hardtemp created (so :meth:`PlainFileIO.seekable` needs no ``lseek``).

Invariants:

* ``truncate()`` through this object overwrites (and ``fdatasync``-s) the data being
  cut off before the kernel frees it: ``ftruncate`` drops the range's dirty pages and
  frees its blocks with the old bytes intact, so the overwrite at close could never
  reach them. If that overwrite fails, the wipe policy decides (warn, or
  :class:`~hardtemp.exceptions.WipeError` before anything is cut under ``"error"``).
* What others do to the file (``O_TRUNC``, ``fallocate(PUNCH_HOLE)`` by a program
  handed the name, or through an inherited descriptor) cannot be undone, but is
  detected at close where it shows: a size below the high-water mark of our own
  writes, or a hole inside a range we wrote. :meth:`PlainFileIO.shrink_report` says so
  and the caller warns (:class:`~hardtemp.exceptions.PlaintextLeftWarning`).
  Not seen: bytes others wrote and cut again without our writing past them, writes
  through ``mmap`` or ``os.write(f.fileno())``, and ranges once we track more than
  :data:`MAX_RANGES` disjoint pieces (then only the size is compared).
"""

from __future__ import annotations

import bisect
import errno
import fcntl
import io
import os
import warnings
from typing import Any

from ._iostack import wrap_raw
from ._policy import get_wipe_policy
from ._wipe import overwrite_range
from .exceptions import PlaintextLeftWarning, WipeError

__all__ = ["MAX_RANGES", "PlainFileIO", "warn_unwiped", "wrap_created"]

#: Disjoint written ranges remembered for hole detection (random writes beyond this
#: merge nothing, so the list is dropped and only the size high-water mark is kept).
MAX_RANGES = 256


_NO_WRITES: tuple[()] = ()  # the ranges of a file not written yet (shared: never mutated)
_write = io.FileIO.write  # bound once: no super() per write
_tell = io.FileIO.tell  # the kernel's offset (lseek SEEK_CUR), never our tell()'s shortcut


class PlainFileIO(io.FileIO):
    """A :class:`io.FileIO` that wipes what it cuts and remembers what it wrote."""

    # Made only over a file hardtemp just created (O_CREAT|O_EXCL or O_TMPFILE: empty, no
    # one else had it yet), so both start empty without an __init__ of ours (FileIO's own,
    # in C): the first write replaces the shared empty tuple with this object's own list.
    _hw: int = 0  # high-water mark: the largest end of file our writes saw
    _ranges: list[list[int]] | tuple[()] | None = _NO_WRITES  # merged [start, end) we wrote
    _fresh = False  # offset known to be 0: set only while wrap_created builds the layers

    def seekable(self) -> bool:
        """True (``ValueError`` once closed, as :class:`io.FileIO`): hardtemp makes this
        object only over a regular file it created, which is always seekable; FileIO would
        ask ``lseek`` when the buffered layer is built over it."""
        if self.closed:
            raise ValueError("I/O operation on closed file")
        return True

    def tell(self) -> int:
        """As :meth:`io.FileIO.tell`; 0 without an ``lseek`` while :func:`wrap_created`
        builds the layers over a file just created (nothing has used its offset yet)."""
        if self._fresh:
            return 0
        return super().tell()

    def write(self, b: Any, /) -> int:
        n = _write(self, b)
        if n:
            end = _tell(self)  # one C call: fileno() and os.lseek were two
            if self._ranges is _NO_WRITES:  # the first write (most temp files): no merge
                self._ranges = [[end - n, end]]
                if end > self._hw:
                    self._hw = end
            else:
                self._note(end - n, end)
        return n

    def _note(self, start: int, end: int) -> None:
        if end > self._hw:
            self._hw = end
        ranges = self._ranges
        if not isinstance(ranges, list) or not ranges:
            if ranges is not None:
                self._ranges = [[start, end]]  # the first range (most temp files): no merge
            return
        # Merge [start, end) into the sorted disjoint list (touching ranges merge too).
        i = bisect.bisect_left(ranges, [start])
        if i and ranges[i - 1][1] >= start:
            i -= 1
        j = i
        while j < len(ranges) and ranges[j][0] <= end:
            start = min(start, ranges[j][0])
            end = max(end, ranges[j][1])
            j += 1
        ranges[i:j] = [[start, end]]
        if len(ranges) > MAX_RANGES:
            self._ranges = None

    def truncate(self, size: int | None = None) -> int:
        """As :meth:`io.FileIO.truncate`, but the data cut off is overwritten first.

        Raises:
            WipeError: the overwrite failed and the wipe policy is ``"error"`` (nothing
                was cut); under ``"warn"`` a :class:`WipeUnreliableWarning` says so.
            OSError, ValueError: as :meth:`io.FileIO.truncate`.
        """
        fd = self.fileno()
        if size is None:
            size = self.tell()
        st = os.fstat(fd)
        cut_before_us = self._hw > st.st_size  # another program shrank it: close reports it
        if 0 <= size < st.st_size:
            try:
                self._overwrite_cut(fd, size, st.st_size)
            except OSError as exc:
                warn_unwiped(
                    self.name,
                    f"the {st.st_size - size} bytes cut off by truncate() could not be "
                    f"overwritten ({exc.strerror or exc}) and may stay on the disk",
                    stacklevel=3,
                )
        result = super().truncate(size)
        if not cut_before_us and size < self._hw:
            self._hw = size  # all above it was overwritten before the cut
        if self._ranges is not None:
            self._ranges = [[s, min(e, size)] for s, e in self._ranges if s < size]
        return result

    def _overwrite_cut(self, fd: int, start: int, end: int) -> None:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        if not flags & os.O_APPEND:
            overwrite_range(fd, start, end)
            return
        # O_APPEND: pwrite would append, growing the file and leaving the old bytes.
        # A second descriptor of the same inode (the magic link names it, no path
        # lookup) without O_APPEND.
        wfd = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_CLOEXEC | os.O_NOCTTY)
        try:
            overwrite_range(wfd, start, end)
        finally:
            os.close(wfd)

    def shrink_report(self, st: os.stat_result | None = None, fd: int | None = None) -> str | None:
        """Why data we wrote may have been freed without an overwrite, or None.

        Compares the file as it is now (``fstat``, ``SEEK_HOLE``) with what we wrote:
        a size below our high-water mark means another program truncated it (``O_TRUNC``,
        ``>``); a hole inside a range we wrote means a hole was punched. Call before
        the final overwrite. ``st``: the caller's stat of this very inode, just taken
        (saves the ``fstat``); ``fd``: a descriptor of this very inode to look through, if
        not this object's own.
        """
        if self.closed:
            return None
        if fd is None:
            fd = self.fileno()
        size = (os.fstat(fd) if st is None else st).st_size
        if size < self._hw:
            return (
                f"it was truncated by another program from {self._hw} to {size} bytes "
                "(O_TRUNC, '>', truncate(1)) after we wrote it: the blocks cut off were "
                "freed without an overwrite and may still hold the data"
            )
        for start, end in self._ranges or ():  # all within [0, size]: size >= high-water mark
            try:
                hole = os.lseek(fd, start, os.SEEK_HOLE)
            except OSError as exc:
                if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENXIO):
                    return None  # no SEEK_HOLE here: holes cannot be seen
                raise
            if hole < end:
                return (
                    f"a hole was punched at offset {hole} into data we wrote (fallocate "
                    "PUNCH_HOLE by another program): those blocks were freed without an "
                    "overwrite and may still hold the data"
                )
        return None


def wrap_created(
    raw: PlainFileIO,
    mode: str,
    buffering: int,
    encoding: str | None,
    errors: str | None,
    newline: str | None,
    *,
    buffer_size: int = io.DEFAULT_BUFFER_SIZE,
) -> Any:
    """:func:`hardtemp._iostack.wrap_raw` for ``raw`` over a file just created and not yet
    used (``O_EXCL`` or ``O_TMPFILE``: its offset is 0): the buffered layer learns its
    position without an ``lseek``. ``raw`` is closed if wrapping fails.

    Raises:
        LookupError: unknown ``encoding``.
    """
    raw._fresh = True
    try:
        return wrap_raw(raw, mode, buffering, encoding, errors, newline, buffer_size=buffer_size)
    finally:
        raw._fresh = False  # from now on the offset moves: ask the kernel


def warn_unwiped(path: Any, why: str, *, stacklevel: int = 2, policy: str | None = None) -> None:
    """Say that plaintext may remain: never silent, whatever ``"ignore"`` hides.

    Raises:
        WipeError: the policy is ``"error"``.
        PlaintextLeftWarning: (warning) otherwise.
    """
    policy = get_wipe_policy() if policy is None else policy
    shown = None if path is None or isinstance(path, int) else os.fsdecode(path)
    if policy == "error":
        raise WipeError(shown, why)
    warnings.warn(
        f"{shown or 'temporary file'}: {why}", PlaintextLeftWarning, stacklevel=stacklevel + 1
    )
