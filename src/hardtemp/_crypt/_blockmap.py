"""The block map: which ciphertext the backing file must hold, as pure arithmetic.

No I/O and no cryptography here, so every rule can be tested exhaustively.

Layout: logical block ``k`` (``bs`` plaintext bytes, the last one possibly
shorter) is stored at offset ``k * slot`` (``slot = bs + TAG_SIZE``) as
``ciphertext || tag``. ``ctrs[k]`` is the counter its current ciphertext was
sealed under; 0 means "not on disk" (a hole: reads as zeros).

Invariants (checked by :meth:`BlockMap.check`):

* ``ctrs`` has no trailing zeros: its last entry is the last block on disk;
  it never extends past the block holding byte ``size - 1``;
* ``disk_end`` (the length the backing file must have) is exactly the end of
  the last stored block: ``last * slot + stored_len(last) + TAG_SIZE``, or 0;
* state is one counter per block up to the last stored block (8 bytes, or 4
  for a map made with ``wide=False``: its counters never exceed ``2**32 - 1``,
  which the sealer's limit enforces and the array refuses anyway), nothing for
  a sparse tail;
* :meth:`snapshot` / :meth:`restore` bring back exactly the state before a
  transaction (the rollback of a failed or interrupted write).
"""

from __future__ import annotations

import array
from typing import Final, NamedTuple

from ._sealer import TAG_SIZE

__all__ = ["CTR32", "BlockMap", "Snapshot"]

#: The array type code of 4-byte unsigned counters ("I" on every Linux ABI).
CTR32: Final = next(code for code in "IL" if array.array(code).itemsize == 4)


class Snapshot(NamedTuple):
    """The part of a :class:`BlockMap` a transaction may change."""

    size: int
    disk_end: int
    nctrs: int
    first: int
    saved: array.array[int]


class BlockMap:
    """Counters, logical size and expected backing length of one encrypted file."""

    __slots__ = ("_item", "bs", "ctrs", "disk_end", "size", "slot")

    def __init__(self, block_size: int, *, wide: bool = True) -> None:
        self.bs = block_size
        self.slot = block_size + TAG_SIZE
        self.ctrs: array.array[int] = array.array("Q" if wide else CTR32)
        self._item = self.ctrs.itemsize
        self.size = 0
        self.disk_end = 0

    # --- queries ----------------------------------------------------------------------------

    def ctr(self, index: int) -> int:
        """Counter of block ``index`` (0: not on disk)."""
        return self.ctrs[index] if index < len(self.ctrs) else 0

    def stored_len(self, index: int, size: int | None = None) -> int:
        """Plaintext bytes block ``index`` holds when the file is ``size`` long."""
        end = self.size if size is None else size
        return min(self.bs, end - index * self.bs)

    def window(self, first: int, last: int) -> array.array[int]:
        """Counters of blocks ``first..last``, zeros past the last stored block."""
        win = self.ctrs[first : last + 1]
        missing = last + 1 - first - len(win)
        if missing > 0:
            win.frombytes(bytes(self._item * missing))
        return win

    def chunk_bytes(self, first: int, last: int, new_size: int) -> int:
        """Ciphertext bytes blocks ``first..last`` occupy once the file is ``new_size`` long."""
        return (last - first) * self.slot + self.stored_len(last, new_size) + TAG_SIZE

    def stored_segments(self, first: int, last: int) -> list[tuple[int, int]]:
        """(offset, length) of the ciphertext now on disk for the stored blocks
        among ``first..last``, adjacent blocks merged; holes are left out (their
        bytes mean nothing, and writing them back could need new space)."""
        segs: list[tuple[int, int]] = []
        slot = self.slot
        for k in range(first, min(last + 1, len(self.ctrs))):
            if not self.ctrs[k]:
                continue
            off, length = k * slot, self.stored_len(k) + TAG_SIZE
            if segs and segs[-1][0] + segs[-1][1] == off:
                segs[-1] = (segs[-1][0], segs[-1][1] + length)
            else:
                segs.append((off, length))
        return segs

    def expected_disk_end(self) -> int:
        """The backing length the counters and size imply (what ``disk_end`` must be)."""
        if not self.ctrs:
            return 0
        last = len(self.ctrs) - 1
        return last * self.slot + self.stored_len(last) + TAG_SIZE

    def check(self) -> None:
        """Assert the invariants (for tests and debugging).

        Raises:
            AssertionError: an invariant does not hold.
        """
        ctrs = self.ctrs
        if ctrs and ctrs[-1] == 0:
            raise AssertionError("trailing zero counter")
        if len(ctrs) > -(-self.size // self.bs):
            raise AssertionError("counters past the end of file")
        if self.disk_end != self.expected_disk_end():
            raise AssertionError(f"disk_end {self.disk_end} != {self.expected_disk_end()}")

    # --- transactions -----------------------------------------------------------------------

    def snapshot(self, first: int, last: int) -> Snapshot:
        """What :meth:`restore` needs to undo a change to blocks ``first..last``
        (and to the size and length)."""
        return Snapshot(
            self.size, self.disk_end, len(self.ctrs), first, self.ctrs[first : last + 1]
        )

    def restore(self, snap: Snapshot) -> None:
        """Put back the state of ``snap`` (idempotent)."""
        ctrs = self.ctrs
        if len(ctrs) > snap.nctrs:
            del ctrs[snap.nctrs :]
        elif len(ctrs) < snap.nctrs:
            ctrs.frombytes(bytes(self._item * (snap.nctrs - len(ctrs))))
        ctrs[snap.first : snap.first + len(snap.saved)] = snap.saved
        self.size = snap.size
        self.disk_end = snap.disk_end

    # --- updates (called once the ciphertext is on disk) ------------------------------------

    def commit_run(self, first: int, ctr: int, count: int, new_size: int) -> None:
        """Blocks ``first..first+count-1`` now hold ciphertext sealed under
        ``ctr, ctr + 1, ...`` for a file growing to (at most) ``new_size``."""
        last = first + count - 1
        ctrs = self.ctrs
        if len(ctrs) <= last:
            ctrs.frombytes(bytes(self._item * (last + 1 - len(ctrs))))
        ctrs[first : last + 1] = array.array(ctrs.typecode, range(ctr, ctr + count))
        self.size = max(self.size, min(new_size, (last + 1) * self.bs))
        self.disk_end = max(
            self.disk_end, first * self.slot + self.chunk_bytes(first, last, new_size)
        )

    def append(self, ctr: int, length: int) -> None:
        """A new last block of ``length`` bytes (at most ``bs``), sealed under
        ``ctr``, now follows the file's blocks, which are all stored and whole
        (``size == len(ctrs) * bs``: the caller checks)."""
        slot = self.slot
        self.disk_end = len(self.ctrs) * slot + length + TAG_SIZE
        self.ctrs.append(ctr)
        self.size += length

    def grow(self, new_size: int) -> None:
        """The size grows to ``new_size`` without new ciphertext (a sparse tail;
        the caller re-sealed a partial last block first)."""
        self.size = max(self.size, new_size)

    def shrink(self, new_size: int, cut_ctr: int) -> None:
        """The file is cut to ``new_size``; the block cut in the middle (if any,
        and stored) was re-sealed under ``cut_ctr``."""
        bs = self.bs
        ctrs = self.ctrs
        if new_size % bs and self.ctr(new_size // bs):
            ctrs[new_size // bs] = cut_ctr
        keep = -(-new_size // bs)
        if len(ctrs) > keep:
            del ctrs[keep:]
        while ctrs and ctrs[-1] == 0:
            ctrs.pop()
        self.size = new_size
        self.disk_end = self.expected_disk_end()
