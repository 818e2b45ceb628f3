"""Memory for secrets: a private anonymous mapping kept out of core dumps, swap and children.

Invariants:

* the mapping is ``MAP_PRIVATE | MAP_ANONYMOUS``: a forked child gets its own
  copy-on-write pages, never memory shared with the parent (a shared mapping
  let parent and child overwrite each other's plaintext);
* ``MADV_DONTDUMP``: excluded from core dumps; ``MADV_WIPEONFORK``: a forked
  child sees zeros (Linux >= 4.14); ``mlock``: kept out of swap where
  ``RLIMIT_MEMLOCK`` allows. Each is best effort, silently skipped where the
  kernel refuses, and reported by the ``dontdump`` / ``wipeonfork`` /
  ``locked`` attributes;
* the last byte is a canary set to 1: it reads 0 in a child forked by any
  means (also without Python's fork hooks), which :attr:`forked` reports;
* :meth:`close` zeroes every byte before unmapping (which also unlocks it).
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
from typing import Final

from .. import _linux

__all__ = ["ProtectedMemory"]

#: Linux's value (include/uapi/asm-generic/mman-common.h); Python's mmap module lacks it.
MADV_WIPEONFORK: Final = getattr(mmap, "MADV_WIPEONFORK", 18)
_PAGE: Final = mmap.PAGESIZE


class ProtectedMemory:
    """``size`` usable bytes (rounded up to whole pages, plus the canary) of
    protected memory; :attr:`view` is a writable memoryview of exactly ``size``
    bytes, zero-filled.

    Raises:
        OSError: the mapping cannot be created (e.g. ``ENOMEM``).
    """

    dontdump = False
    wipeonfork = False
    locked = False

    def __init__(self, size: int) -> None:
        self._length = -(-(size + 1) // _PAGE) * _PAGE
        self._map: mmap.mmap | None = mmap.mmap(
            -1, self._length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
        )
        m = self._map
        # Core dumps (a crash report, systemd-coredump) would otherwise carry the plaintext.
        self.dontdump = _advise(m, getattr(mmap, "MADV_DONTDUMP", None))
        # A forked child (possibly dropping privileges) gets zeros, not our plaintext or key.
        self.wipeonfork = _advise(m, MADV_WIPEONFORK)
        # Swap would write the plaintext to disk; fails quietly past RLIMIT_MEMLOCK.
        self._addr = _address(m)
        try:
            _linux.mlock(self._addr, self._length)
            self.locked = True
        except OSError:  # past RLIMIT_MEMLOCK: the other protections still hold
            self.locked = False
        m[self._length - 1] = 1  # the canary
        self.view = memoryview(m)[:size]
        self.address = self._addr

    @property
    def forked(self) -> bool:
        """True in a forked child of the process that made this memory (the
        canary was wiped by ``MADV_WIPEONFORK``). Always False where the kernel
        has no ``MADV_WIPEONFORK``."""
        m = self._map
        return m is not None and self.wipeonfork and m[self._length - 1] == 0

    def close(self) -> None:
        """Zero and unmap. Idempotent; views still exported keep the (zeroed)
        mapping alive until they are released."""
        m, self._map = self._map, None
        if m is None:
            return
        self.view.release()
        m[:] = bytes(self._length)
        # No munlock: the unmap drops the lock (an explicit munlock drained every CPU's
        # page lists, tens of microseconds per file). A view kept alive elsewhere (a
        # traceback) delays the unmap, and so the unlock, until that view goes.
        with contextlib.suppress(BufferError):
            m.close()


def _advise(m: mmap.mmap, advice: int | None) -> bool:
    if advice is None:  # pragma: no cover - not Linux
        return False
    try:
        m.madvise(advice)
    except OSError:  # EINVAL on kernels without this advice
        return False
    return True


def _address(m: mmap.mmap) -> int:
    anchor = ctypes.c_char.from_buffer(m)
    try:
        return ctypes.addressof(anchor)
    finally:
        del anchor  # releases the buffer export, so the mapping can be closed later
