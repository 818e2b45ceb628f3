"""The backing file: positional I/O on one descriptor, and the undo journal of a block update.

Transaction design (what keeps every earlier byte readable when a write fails
or is interrupted): the ciphertext of a block is rewritten in place, so a
``pwrite`` cut short (``ENOSPC``, ``EIO``) or an exception raised by a signal
handler between the write and the metadata update would leave a slot that
matches neither the old counter nor the new one. Therefore every update of the
backing file is a small transaction:

1. :meth:`Backing.begin` copies the current ciphertext of the stored blocks
   about to be overwritten (appends and holes cost nothing) into an in-memory
   undo buffer, and returns a :class:`Txn` with those segments, the old file
   length and a snapshot of the block map;
2. the caller publishes the ``Txn`` as pending (one attribute store) *before*
   touching the file, writes the new ciphertext, updates the block map, and
   only then clears the pending mark (the commit point);
3. if anything fails or is interrupted before the commit point, the pending
   ``Txn`` is rolled back, at once or (if the rollback itself was interrupted)
   at the start of the next operation: :meth:`Backing.rollback` writes the old
   ciphertext back and cuts the file to its old length, and the block map is
   restored from the snapshot. Rolling back is idempotent.

Counters are never rolled back (see ``_sealer``): a nonce used by a failed
write is never used again. A :class:`Trim` pending mark asks for the
``ftruncate`` that follows a committed shrink. Overwriting bytes that exist
needs no new space on ext4, xfs or tmpfs; on a copy-on-write filesystem
(btrfs) the rollback itself can fail with ``ENOSPC``: the transaction then
stays pending and every operation raises that ``OSError`` until it succeeds,
so nothing is ever misreported as tampering.

Invariant: outside a pending transaction the backing file is exactly
``BlockMap.disk_end`` bytes long and holds, for every stored block, the
ciphertext sealed under its counter.
"""

from __future__ import annotations

import os

from ._blockmap import Snapshot

__all__ = ["Backing", "Trim", "Txn"]


class Txn:
    """A pending block update: what :meth:`Backing.rollback` needs to undo it."""

    __slots__ = ("disk_end", "segments", "snap")

    def __init__(self, segments: list[tuple[int, int]], disk_end: int, snap: Snapshot) -> None:
        self.segments = segments
        self.disk_end = disk_end
        self.snap = snap


class Trim:
    """A committed shrink whose ``ftruncate`` is still to be done."""

    __slots__ = ("length",)

    def __init__(self, length: int) -> None:
        self.length = length


class Backing:
    """Positional I/O on the backing descriptor ``fd`` (not owned)."""

    __slots__ = ("_undo", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._undo = bytearray()

    def length(self) -> int:
        """The backing file's current length (``fstat``).

        Raises:
            OSError: ``fstat`` failed.
        """
        return os.fstat(self.fd).st_size

    def read_full(self, view: memoryview, offset: int) -> int:
        """Read into all of ``view`` at ``offset``; returns the bytes read (fewer
        only at the end of the file).

        Raises:
            OSError: ``preadv`` failed.
        """
        got = 0
        while got < len(view):
            n = os.preadv(self.fd, [view[got:]], offset + got)
            if n == 0:
                break
            got += n
        return got

    def write_all(self, data: memoryview | bytes, offset: int) -> None:
        """Write all of ``data`` (bytes, or a memoryview of bytes) at ``offset``.

        Raises:
            OSError: ``pwrite`` failed (e.g. ``ENOSPC``); part may be written.
        """
        done = os.pwrite(self.fd, data, offset) if data else 0  # one call, almost always
        if done < len(data):
            with memoryview(data) as view:
                while done < len(view):
                    done += os.pwrite(self.fd, view[done:], offset + done)

    def begin(self, segments: list[tuple[int, int]], disk_end: int, snap: Snapshot) -> Txn:
        """Start an update that overwrites the ciphertext at ``segments``
        ((offset, length) pairs) of a file that is ``disk_end`` long: save it.

        Raises:
            OSError: reading the old ciphertext failed (nothing was changed).
        """
        total = sum(length for _, length in segments)
        if len(self._undo) < total:
            self._undo = bytearray(total)
        with memoryview(self._undo) as view:
            at = 0
            for offset, length in segments:
                self.read_full(view[at : at + length], offset)
                at += length
        return Txn(segments, disk_end, snap)

    def rollback(self, txn: Txn) -> None:
        """Put back the bytes and length the file had before ``txn``.

        Raises:
            OSError: writing or truncating failed (e.g. ``ENOSPC`` on btrfs); the
                caller keeps ``txn`` pending and retries later.
        """
        with memoryview(self._undo) as view:
            at = 0
            for offset, length in txn.segments:
                self.write_all(view[at : at + length], offset)
                at += length
        os.ftruncate(self.fd, txn.disk_end)

    def trim(self, length: int) -> None:
        """Cut the file to ``length`` bytes.

        Raises:
            OSError: ``ftruncate`` failed.
        """
        os.ftruncate(self.fd, length)

    def release(self) -> None:
        """Drop the undo buffer (ciphertext only, nothing secret)."""
        if self._undo:
            self._undo = bytearray()
        self.fd = -1
