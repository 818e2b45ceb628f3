"""A per-process pool of protected-memory slots: the mapping is set up once, a slot per file.

Setting up protected memory for every file (``mmap``, two ``madvise``, ``mlock``,
``munmap``) cost more than the rest of a small encrypted file's lifecycle. Here
*arenas* -- mappings protected exactly as :class:`._secmem.ProtectedMemory` is --
are cut into fixed slots of :data:`SLOT_SIZE` bytes (an 8 KiB block, the key and
the cached counter), handed out one per file.

Invariants:

* every arena is ``MAP_PRIVATE | MAP_ANONYMOUS``, ``MADV_DONTDUMP`` and
  ``MADV_WIPEONFORK`` (as ``_secmem``), and ``mlock``-ed once as a whole;
  arenas are added as whole mappings (4, 8, 16, 32, then 64 slots), and one
  that becomes entirely free is unmapped unless it is the first;
* a slot has one holder at a time and is zeroed when it is released, before
  any reuse: a file never sees what an earlier file left in its slot; the
  pool's lock is reentrant, so a file closed by a finalizer or a signal
  handler while this thread is inside the pool cannot deadlock it;
* the pool belongs to the process that made it. In a forked child (told by
  the first arena's canary, which ``MADV_WIPEONFORK`` zeroes in every child
  however it was forked: so also after a ``fork()`` that bypassed Python's
  hooks, and in a new PID namespace; by the pid where the kernel has no
  ``MADV_WIPEONFORK`` or the pool has no arena yet) the
  inherited pool is abandoned untouched -- not its lock (a parent thread may
  have held it), not its slots (the child's copies are not locked: ``mlock``
  is not inherited, and the parent's file objects there still point at them)
  -- and the child builds its own, locked in the child;
* ``locked`` is true per slot only while that slot is locked in this process:
  past ``RLIMIT_MEMLOCK`` the whole-arena lock fails and each slot tries on
  its own when it is handed out (quietly left unlocked past the limit, as
  ``_secmem``); ``dontdump`` / ``wipeonfork`` report the ``madvise`` results;
* an exception at any bytecode of the pool's code (a signal handler raising
  ``KeyboardInterrupt``, a finalizer reentering it) can only *leak* a slot or an
  arena, never hand a slot to two holders, free a slot still held, or keep a
  removed arena's slots on the free list: each step is one store, ordered so
  (``tests/test_crypt_secpool.py`` raises at every opcode).

The *seed area* (:func:`seed_area`) is where this process draws its keys: one
page protected as ``_secmem``'s, made once per process (a new one in a forked
child, told as the pool tells), filled with the seeds (key and file id) of the
next files by one ``getrandom(2)`` call, each seed handed out once (the index
moves on before the seed is handed out) and zeroed by the file that takes it
once ``AESGCM`` has its copy; where the kernel has no ``MADV_WIPEONFORK`` it
holds one seed, drawn for each file. One caller at a time: its lock is taken
without waiting, and a caller that finds it held (another thread, or a signal
handler interrupting the holder) draws its key in a pooled slot instead. A
small file needs no slot of its own until a block must be merged or cached in
plaintext (``_raw``), so most small files never take one.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading
from typing import Final

from .. import _linux
from ._sealer import _fill_random
from ._secmem import MADV_WIPEONFORK, ProtectedMemory, _address, _advise

__all__ = ["SLOT_SIZE", "Protected", "Seed", "Slot", "protected", "seed_area"]

_PAGE: Final = mmap.PAGESIZE
#: Bytes per slot: whole pages holding an 8 KiB scratch block, the key and a counter.
SLOT_SIZE: Final = -(-(8 * 1024 + 64) // _PAGE) * _PAGE
_MAX_SLOTS: Final = 64  # slots of the largest arena (768 KiB with 4 KiB pages)
_ZEROS: Final = bytes(SLOT_SIZE)


class _Arena:
    """One protected mapping of ``nslots`` slots and a trailing canary page."""

    def __init__(self, nslots: int) -> None:
        self.nslots = nslots
        self.in_use = 0
        length = nslots * SLOT_SIZE + _PAGE
        self.map = mmap.mmap(-1, length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        # Core dumps (a crash report, systemd-coredump) would otherwise carry keys and plaintext.
        self.dontdump = _advise(self.map, getattr(mmap, "MADV_DONTDUMP", None))
        # A forked child (possibly dropping privileges) gets zeros, not our plaintext or key.
        self.wipeonfork = _advise(self.map, MADV_WIPEONFORK)
        self.address = _address(self.map)
        self.view = memoryview(self.map)
        try:
            # Swap would write keys and plaintext to disk; one mlock for every slot.
            _linux.mlock(self.address, length)
            whole = True
        except OSError:  # past RLIMIT_MEMLOCK: each slot tries alone (see Slot)
            whole = False
        self.locked = [whole] * nslots
        self.canary = length - 1
        self.map[self.canary] = 1
        # Held here: module globals may be gone when a file closes at exit (a view: slicing
        # it copies nothing).
        self.zeros = memoryview(_ZEROS)

    def wiped(self) -> bool:
        """True in a forked child: ``MADV_WIPEONFORK`` zeroed the canary."""
        return self.wipeonfork and self.map[self.canary] == 0

    def unmap(self) -> None:
        self.view.release()
        # A view of a slot kept alive elsewhere (a traceback) delays the unmap until it goes.
        with contextlib.suppress(BufferError):
            self.map.close()


class _Pool:
    """The slots of one process (see the module docstring)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        # Reentrant: a finalizer (gc runs during the allocations in take) or a signal handler
        # closing another file in this very thread while it holds the lock would deadlock.
        self.lock = threading.RLock()
        self.arenas: list[_Arena] = []
        self.free: list[tuple[_Arena, int]] = []

    def current(self) -> bool:
        """Made by this very process (not inherited through any kind of fork): once it
        has an arena whose canary the kernel wipes in every child (``MADV_WIPEONFORK``),
        that canary tells, also after a fork that bypassed Python's hooks (no ``getpid``:
        two per file); else the pid."""
        arenas = self.arenas
        if arenas and arenas[0].wipeonfork:
            return arenas[0].map[arenas[0].canary] != 0  # not wiped (see _Arena.wiped)
        return self.pid == os.getpid()

    def take(self) -> tuple[_Arena, int]:
        """A free slot, growing the pool by one arena if none is left.

        Raises:
            OSError: the new arena cannot be mapped (``ENOMEM``).
        """
        with self.lock:
            if not self.free:
                arena = _Arena(min(_MAX_SLOTS, 4 << len(self.arenas)))
                # Listed before its slots are free: interrupted between, it is leaked, never
                # a free slot of an arena the pool does not know.
                self.arenas.append(arena)
                self.free.extend((arena, i) for i in reversed(range(arena.nslots)))
            # Popped before counted: interrupted between, the slot is lost to everyone
            # (a leak), and in_use still counts exactly the slots that have a holder.
            arena, index = self.free.pop()
            arena.in_use += 1
            return arena, index

    def give_back(self, arena: _Arena, index: int) -> None:
        """Return a slot (already zeroed); unmap its arena if that frees all of it."""
        with self.lock:
            # Freed before uncounted: interrupted between, in_use is one too high (the arena
            # is never unmapped, a leak), never lower than its slots' holders.
            self.free.append((arena, index))
            arena.in_use -= 1
            if arena.in_use == 0 and arena is not self.arenas[0]:
                # Its slots leave the free list first, in one store: interrupted after it, the
                # arena is leaked, never unmapped with a slot of it still on the free list
                # (an interrupt between a list.remove and the filter, seen in CI, left one there:
                # handed out again, its next release raised in every later file of the process).
                self.free = [s for s in self.free if s[0] is not arena]
                self.arenas = [a for a in self.arenas if a is not arena]
                arena.unmap()


_pool = _Pool()


def _current_pool() -> _Pool:
    global _pool
    pool = _pool
    if not pool.current():
        # Inherited: abandoned without touching its lock or slots (see the module docstring).
        pool = _pool = _Pool()
    return pool


class Slot:
    """``size`` bytes (at most :data:`SLOT_SIZE`) of a pooled protected slot, zero-filled;
    the same interface as :class:`._secmem.ProtectedMemory`.

    Raises:
        OSError: the pool had to grow and the new mapping failed (``ENOMEM``).
    """

    def __init__(self, size: int) -> None:
        pool = _current_pool()
        arena, index = pool.take()
        self._pool, self._index = pool, index
        self._arena: _Arena | None = arena
        offset = self._offset = index * SLOT_SIZE
        self.address = arena.address + offset
        if not arena.locked[index]:
            with contextlib.suppress(OSError):  # past RLIMIT_MEMLOCK: quietly unlocked
                _linux.mlock(self.address, SLOT_SIZE)
                arena.locked[index] = True
        self.dontdump = arena.dontdump
        self.wipeonfork = arena.wipeonfork
        self.view = arena.view[offset : offset + size]
        self._size = size

    @property
    def locked(self) -> bool:
        """Locked against swap in this process (never in a forked child: not inherited)."""
        arena = self._arena
        if arena is None or not arena.locked[self._index]:
            return False
        return self._pool.pid == os.getpid() and not arena.wiped()

    @property
    def forked(self) -> bool:
        """True in a forked child of the process that handed out this slot (its
        canary was wiped). Always False where the kernel has no ``MADV_WIPEONFORK``."""
        arena = self._arena
        # (_Arena.wiped, inline: every write of an encrypted file asks.)
        return arena is not None and arena.wipeonfork and arena.map[arena.canary] == 0

    def close(self) -> None:
        """Zero the slot and give it back to the pool (only to the pool of the
        process that took it). Idempotent."""
        arena = self._arena
        if arena is None:
            return
        self.view.release()
        offset, size = self._offset, self._size
        # Before any reuse: the next file in this slot must not see our key or plaintext.
        # What the view covered is all that was ever written (the rest of the slot is
        # never exported): zeroed, not the whole slot.
        arena.map[offset : offset + size] = arena.zeros[:size]
        # Let go only once zeroed (an interrupted close, called again, zeroes and gives back),
        # and before the give-back (a slot is never given back twice).
        self._arena = None
        pool = self._pool
        if pool is _pool and pool.current():
            pool.give_back(arena, self._index)


Protected = Slot | ProtectedMemory


def protected(size: int) -> Protected:
    """``size`` bytes of protected memory: a pooled :class:`Slot` if it fits one,
    else a mapping of its own (:class:`._secmem.ProtectedMemory`).

    Raises:
        OSError: the memory cannot be mapped (``ENOMEM``).
    """
    return Slot(size) if size <= SLOT_SIZE else ProtectedMemory(size)


class Seed:
    """The seed area of one process (see the module docstring): ``count`` seeds of
    ``size`` bytes of protected memory, drawn together by one ``getrandom(2)`` call
    and handed out one at a time by :meth:`take` (under ``lock``); ``count`` defaults
    to what fits in a page.

    Raises:
        OSError: the area cannot be mapped (``ENOMEM``).
    """

    def __init__(self, size: int, count: int | None = None) -> None:
        n = max(1, (_PAGE - 1) // size) if count is None else count
        self.mem = mem = ProtectedMemory(size * n)
        if not mem.wipeonfork:
            # Several seeds per draw only where a forked child surely sees zeros there: else
            # a child forked past Python's hooks with our very pid (a new PID namespace)
            # would take the parent's next seeds, and two processes would seal under one key.
            n = 1
        self.count = n
        self.address = mem.address
        self.seeds = [mem.view[i * size : (i + 1) * size] for i in range(n)]
        self.next = n  # every seed used: the first take draws
        self.lock = threading.Lock()
        self.pid = os.getpid()

    def take(self) -> memoryview:
        """The next unused seed, fresh OS randomness; the caller holds ``lock``, uses it
        once and zeroes it. An interrupt anywhere loses a seed, never hands one out twice.

        Raises:
            OSError: the OS CSPRNG failed.
        """
        i = self.next
        if i >= self.count:
            _fill_random(self.mem.view, self.address)  # all of them, straight into the area
            i = 0
        self.next = i + 1  # consumed before it is handed out: interrupted after, it is lost
        return self.seeds[i]

    def current(self) -> bool:
        """Made by this very process (as :meth:`_Pool.current` tells)."""
        mem = self.mem
        if mem.wipeonfork:
            return not mem.forked
        return self.pid == os.getpid()


_seed: Seed | None = None


def seed_area(size: int) -> Seed:
    """This process's seed area of ``size`` bytes (always the same size), made at the
    first call and again in a forked child (the inherited one is abandoned untouched:
    its lock may have been held by a parent thread).

    Raises:
        OSError: the area cannot be mapped (``ENOMEM``).
    """
    global _seed
    seed = _seed
    if seed is None or not seed.current():
        seed = _seed = Seed(size)
    return seed
