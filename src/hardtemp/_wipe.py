"""Overwrite a file's data in place: honest about the filesystem.

Every plaintext file hardtemp removes is overwritten here, by
:func:`hardtemp._remove.remove_entry` (which then removes the name); users call
:func:`hardtemp.wipe`. The overwrite covers the file's data extents only (holes are skipped:
writing into them would allocate fresh blocks that never held our data and could hit
ENOSPC), one pass of an AES-CTR keystream by default (random bytes for small files;
zeros for the close-time overwrites of :func:`overwrite_small` and :func:`overwrite_fresh`
on a ``"volatile"`` filesystem, RAM that zeros destroy as well), each pass followed by
``fdatasync`` so that every pass reaches the device -- when some of the file's data may be
on the device: a file whose data never got a block
(only delayed allocation, checked *after* the overwrite, see
:func:`hardtemp._fsinfo.data_on_disk`) or that lives in RAM (``"volatile"``) has
nothing on the device to reach, and its overwritten dirty pages are dropped with the
inode. The last partial block is written up to the block boundary so its tail is
covered too (only when a block may be on the device), and the file size is restored
afterwards. Whether the overwrite reaches the old blocks depends on the
filesystem (see :mod:`hardtemp._fsinfo`); every result says so in a
:class:`WipeReport`, and the wipe policy (:mod:`hardtemp._policy`) decides whether an
untrustworthy overwrite warns, raises or stays quiet.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import threading
import time
import warnings
from dataclasses import dataclass, field

from . import _owner
from ._codes import Reason, Verdict, WipeReason
from ._fsinfo import BEST_EFFORT, IN_PLACE, VOLATILE, FsInfo, data_on_disk, file_info_for_fd
from ._policy import check_policy, get_wipe_policy
from .exceptions import PlaintextLeftWarning, UnsafeFileError, WipeError, WipeUnreliableWarning

__all__ = [
    "PATTERNS",
    "SKIPPED",
    "ZEROS",
    "RandomPool",
    "WipeReport",
    "overwrite_fd",
    "overwrite_fresh",
    "overwrite_small",
]

SKIPPED = Verdict.SKIPPED
PATTERNS = ("random", "zeros")

_CHUNK = 1 << 20  # bytes per pwrite: large enough to stream, small enough to stay in cache
# Up to this many bytes (a 4 KiB tail block, a small file synced before its close) the
# random pattern comes from the getrandom-filled pool: no AES-CTR setup, and no import of
# cryptography (62 ms) in a process that needs none. At most RandomPool.GETRANDOM_MAX.
_SMALL_RANDOM = 8192
_MAX_TAIL_BLOCK = 1 << 16  # cap on st_blksize rounding (NFS reports 1 MiB "blocks")
_ZEROS = bytes(_CHUNK + 16)  # shared, read-only: input of the keystream and the "zeros" pattern
_ZEROS_VIEW = memoryview(_ZEROS)
#: What a volatile filesystem's close-time overwrite writes (RAM overwritten in place:
#: zeros destroy it as random bytes would; SECURITY.md, "The overwrite pattern").
ZEROS = _ZEROS_VIEW


@dataclass(frozen=True)
class WipeReport:
    """What a wipe did, and how far it can be trusted.

    Attributes:
        path: the path (or name) wiped, if known.
        bytes_overwritten: bytes written over the file's data, all passes together.
        passes: overwrite passes completed (each one written, and ``fdatasync``-ed
            unless none of the file's data had reached a disk).
        pattern: ``"random"`` (AES-CTR keystream) or ``"zeros"``.
        filesystem: the filesystem type (``"ext4"``, ``"btrfs"``...), "" if not looked at.
        verdict: ``"in place"``, ``"not in place"``, ``"volatile"``, ``"best effort"``
            (see :class:`hardtemp._fsinfo.FsInfo`) or ``"skipped"`` (not overwritten on
            purpose: not a regular file, a possible link to outside data, not ours...).
            An overwrite that failed part-way is ``"best effort"`` at most.
        reasons: human-readable sentences explaining the verdict, each a ``str`` with a
            stable ``code`` (see :attr:`codes`).
        hard_links: the link count seen when wiping.
        duration: seconds spent.
        removed: whether the name was removed.
        data_left: True when a regular file's data was NOT overwritten (another user's
            file we may not write, a possible link to outside data): its plaintext is
            still on the disk. Such a file is never counted as wiped: a
            :class:`PlaintextLeftWarning` (``WipeError`` under the ``"error"`` policy)
            says so, whatever the policy otherwise ignores.
    """

    path: str | None
    bytes_overwritten: int
    passes: int
    pattern: str
    filesystem: str
    verdict: Verdict
    reasons: tuple[Reason, ...]
    hard_links: int
    duration: float
    removed: bool
    data_left: bool = False

    @property
    def codes(self) -> tuple[str, ...]:
        """The stable codes of :attr:`reasons`, in the same order (match these, not prose)."""
        return tuple(r.code for r in self.reasons)


@dataclass
class _Progress:
    """Mutable account of an overwrite, so an interrupted one still reports what it did."""

    bytes_overwritten: int = 0
    passes: int = 0
    filesystem: str = ""
    f_type: int = 0  # the filesystem's magic number, once identified (0: not looked at)
    verdict: Verdict = SKIPPED
    reasons: list[Reason] = field(default_factory=list)
    hard_links: int = 0
    error: OSError | None = None
    data_left: bool = False

    def report(self, path: str | None, pattern: str, start: float, removed: bool) -> WipeReport:
        # Every removal makes one: the frozen dataclass's __init__ sets its 11 fields one
        # object.__setattr__ at a time (7 us here). Filling the new instance's __dict__ at
        # once makes the same object (it has no __post_init__; tested equal to __init__'s).
        report = object.__new__(WipeReport)
        report.__dict__.update(
            path=path,
            bytes_overwritten=self.bytes_overwritten,
            passes=self.passes,
            pattern=pattern,
            filesystem=self.filesystem,
            verdict=self.verdict,
            reasons=tuple(self.reasons),
            hard_links=self.hard_links,
            duration=time.monotonic() - start,
            removed=removed,
            data_left=self.data_left,
        )
        return report


def _check_options(passes: object, pattern: object, on_unreliable: object) -> str:
    if isinstance(passes, bool) or not isinstance(passes, int):
        raise TypeError(f"passes must be an int, not {type(passes).__name__}")
    if passes < 1:
        raise ValueError(f"passes must be at least 1, not {passes} (use overwrite=False to skip)")
    if not isinstance(pattern, str) or pattern not in PATTERNS:
        raise ValueError(f"pattern must be one of {PATTERNS}, not {pattern!r}")
    if on_unreliable is None:
        return get_wipe_policy()
    return check_policy(on_unreliable, source="on_unreliable")


class _Pattern:
    """Overwrite data: AES-256-CTR keystream (fresh key and nonce per wipe) or zeros."""

    def __init__(self, pattern: str, largest: int) -> None:
        self._zeros = pattern == "zeros"
        self._small = not self._zeros and largest <= _SMALL_RANDOM
        if not self._zeros and not self._small:
            # A fresh random key and nonce per wipe: the keystream is unpredictable and
            # never repeats, and encrypting the shared zero buffer needs no fresh memory.
            # Imported here, not at module level: install() from a sitecustomize loads this
            # module, and every Python process must not pay for cryptography up front.
            from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

            cipher = Cipher(algorithms.AES(os.urandom(32)), modes.CTR(os.urandom(16)))
            self._enc = cipher.encryptor()
            self._out = bytearray(min(largest, _CHUNK) + 16)
            self._view = memoryview(self._out)

    def take(self, n: int) -> memoryview:
        if self._zeros:
            return _ZEROS_VIEW[:n]
        if self._small:
            # Bytes never handed out before, from the process's pool: as unpredictable as a
            # getrandom per file, without its fixed cost each time (one 8 KiB fill per
            # 8 files of 1,000 bytes: 69 us here, against 8 getrandom calls of 12.7 us).
            return _take_small(n)
        self._enc.update_into(_ZEROS_VIEW[:n], self._out)
        return self._view[:n]


_ZERO_PATTERN = _Pattern("zeros", 0)  # stateless: one for every zero pass


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset``: retries short writes and EINTR."""
    done = 0
    while done < len(data):
        try:
            n = os.pwrite(fd, data[done:], offset + done)
        except InterruptedError:  # PEP 475 retries already; kept for handlers that return
            continue
        if n <= 0:
            raise OSError(errno.EIO, "pwrite wrote nothing")
        done += n


_SMALL_FILE = 4096  # bytes: the size up to which a file's hole map is not read


def _data_ranges(
    fd: int, size: int, block: int, begin: int = 0, *, seek: bool = True
) -> list[tuple[int, int]]:
    """The file's data extents in ``[begin, size)`` as (start, end); the one reaching EOF
    ends on a block boundary. ``seek=False``: all of it, without SEEK_DATA/SEEK_HOLE."""
    ranges = _seek_ranges(fd, size, begin) if seek else None
    if ranges is None:  # not asked, or no SEEK_DATA here: everything is data
        ranges = [(begin, size)] if size > begin else []
    if ranges and ranges[-1][1] == size and size % block:
        # The tail of the last block may still hold old bytes: cover it; the size is restored.
        ranges[-1] = (ranges[-1][0], size + block - size % block)
    return ranges


def _seek_ranges(fd: int, size: int, begin: int) -> list[tuple[int, int]] | None:
    """The data extents by SEEK_DATA/SEEK_HOLE (they move the offset); None without them."""
    ranges: list[tuple[int, int]] = []
    pos = begin
    try:
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no data after pos
                    break
                raise
            if start >= size:
                break
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            ranges.append((start, end))
            pos = end
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
            raise
        return None
    return ranges


def _tail_block(blksize: int, on_disk: bool) -> int:
    """The block the last data extent is rounded up to: the file's block when a block may
    be on the disk (its tail past EOF may hold old bytes), else 1 (nothing to cover)."""
    return max(512, min(blksize or 4096, _MAX_TAIL_BLOCK)) if on_disk else 1


def _one_pass(
    fd: int,
    ranges: list[tuple[int, int]],
    pat: _Pattern | RandomPool,
    *,
    on_disk: bool,
    volatile: bool,
    f_type: int,
    sync: bool = True,
    prog: _Progress | None = None,
) -> bool:
    """The one overwrite loop every path uses: write ``ranges`` once with ``pat``, then
    ``fdatasync`` when some of the file's data may be on a disk; return whether it may.

    What counts as overwritten: ``prog.bytes_overwritten`` grows after each chunk is fully
    written (short writes and EINTR retried), so an interrupted pass reports what reached
    the file. The disk is looked at *after* the writes (``on_disk`` is what was known
    before): no block allocated by then means the old data never reached the disk, and
    whatever writeback writes from now on is the overwrite (the dirty pages die with the
    inode). ``sync=False`` leaves the ``fdatasync`` to the caller (the return value says
    whether one is needed).

    Raises:
        OSError: ``pwrite``/``fdatasync`` failed (ENOSPC, EIO...); part may be written.
    """
    for start, end in ranges:
        pos = start
        while pos < end:
            n = min(_CHUNK, end - pos)
            _pwrite_all(fd, pat.take(n), pos)
            pos += n
            if prog is not None:
                prog.bytes_overwritten += n
    # Unsynced passes would merge in the page cache and only the last would reach the
    # device: sync each one whose data may be on a disk (RAM-only data has nothing to reach).
    on_disk = on_disk or (not volatile and data_on_disk(fd, f_type))
    if on_disk and sync:
        os.fdatasync(fd)
    return on_disk


def _overwrite(
    fd: int, st: os.stat_result, passes: int, pattern: str, prog: _Progress, mnt_id: int = -1
) -> None:
    # long: the passes and their restore in one try/finally, so no exit skips the restore
    """The pass itself. OSErrors are recorded in ``prog.error``; other exceptions propagate.
    ``mnt_id``: the mount ``fd``'s inode was reached through, if the caller knows it."""
    prog.hard_links = st.st_nlink
    f_type = 0  # unknown: data_on_disk() then says True, and every pass is synced
    try:
        info = file_info_for_fd(fd, st, mnt_id=mnt_id)
        prog.filesystem, prog.verdict, prog.reasons = info.fstype, info.verdict, list(info.reasons)
        f_type = prog.f_type = info.f_type
    except OSError as exc:
        prog.verdict = BEST_EFFORT
        prog.reasons = [
            Reason(WipeReason.FS_UNIDENTIFIED, f"the filesystem could not be identified ({exc})")
        ]
    # tmpfs without swap, ramfs: no disk below, so there is nothing for a sync to reach.
    volatile = prog.verdict == VOLATILE
    size = st.st_size
    # At most one page: a hole in it is that page at most, which the overwrite merely
    # allocates (freed again at the unlink), so no SEEK_DATA/SEEK_HOLE map is worth its
    # calls; and without them nothing moves the offset, so it needs no saving.
    small = size <= _SMALL_FILE
    try:
        offset = -1 if small else os.lseek(fd, 0, os.SEEK_CUR)
    except OSError as exc:
        prog.error = exc
        return
    extended = False
    try:
        # A block on the disk may hold old bytes past EOF: only then is the tail worth
        # covering (a block written back from now on gets the kernel's zeroed tail).
        on_disk = not volatile and data_on_disk(fd, f_type)
        ranges = _data_ranges(fd, size, _tail_block(st.st_blksize, on_disk), seek=not small)
        extended = bool(ranges) and ranges[-1][1] > size
        pat = _Pattern(pattern, max((e - s for s, e in ranges), default=0))
        for _ in range(passes):
            on_disk = _one_pass(
                fd, ranges, pat, on_disk=on_disk, volatile=volatile, f_type=f_type, prog=prog
            )
            prog.passes += 1
    except OSError as exc:
        prog.error = exc
    finally:
        restore: list[OSError] = []
        if extended:
            try:
                os.ftruncate(fd, size)
            except OSError as exc:
                restore.append(exc)
        try:
            if offset >= 0:
                os.lseek(fd, offset, os.SEEK_SET)
        except OSError as exc:
            restore.append(exc)
        if restore and prog.error is None:
            prog.error = restore[0]
    if prog.error is not None:
        done = prog.bytes_overwritten
        prog.reasons.insert(
            0,
            Reason(
                WipeReason.OVERWRITE_FAILED,
                f"the overwrite failed after {done} bytes "
                f"({prog.error.strerror or prog.error}): the old data may be partly or wholly "
                "intact",
            ),
        )
        if prog.verdict not in (SKIPPED,):
            prog.verdict = BEST_EFFORT


class RandomPool:
    """Fresh random bytes for many small overwrites: one ``getrandom`` per 64 KiB, each
    byte handed out once (as unpredictable as one ``getrandom`` per file, fewer calls).

    The first fills are small and double up to 64 KiB: ``getrandom`` costs about 5 ns a
    byte here, so a 64 KiB fill for a tree of four small files cost more (~380 us) than
    the standard library's whole ``TemporaryDirectory`` lifecycle; at most half of what
    was drawn is left unused. A fill above ``GETRANDOM_MAX`` is an AES-256-CTR keystream
    under a fresh random key and nonce (:class:`_Pattern`'s, as every larger overwrite):
    as unpredictable, 5x cheaper at 64 KiB (56 us against 300 us here)."""

    __slots__ = ("_buf", "_cap", "_next", "_pos")

    SIZE = 1 << 16
    FIRST = 1 << 12
    GETRANDOM_MAX = 1 << 13  # up to this fill, getrandom costs less than a cipher setup

    def __init__(self, *, keystream: bool = True) -> None:
        """``keystream=False``: fills stay at most ``GETRANDOM_MAX`` and always come from
        ``getrandom`` (no cryptography import, 62 ms, for a process that needs none)."""
        self._buf = memoryview(b"")
        self._pos = 0
        self._next = self.FIRST  # the size of the next fill
        self._cap = self.SIZE if keystream else self.GETRANDOM_MAX

    def take(self, n: int) -> memoryview:
        """``n`` (at most 64 KiB) bytes never handed out before."""
        pos = self._pos
        if pos + n > self._buf.nbytes:
            fill = max(n, self._next)
            self._next = min(self._cap, fill * 2)
            if fill <= self.GETRANDOM_MAX:
                self._buf = memoryview(os.urandom(fill))
            else:
                self._buf = _Pattern("random", fill).take(fill)  # its own buffer, kept
            pos = 0
        # Taken (the position moved) before the slice is made: a signal handler or a
        # collection that reenters here at that allocation gets the bytes after these.
        buf = self._buf
        self._pos = pos + n
        return buf[pos : pos + n]


_small_pool = RandomPool(keystream=False)  # the random bytes of small single-file overwrites
# Two takers never get the same bytes. Taken without waiting (see _take_small): a file of
# ours closed by a signal handler or a collection inside a take, in this very thread, must
# neither wait for itself (review7) nor get the bytes the outer take hands out (review8).
_small_lock = threading.Lock()
_small_token = _owner.pid()  # the process (pid and fork count) the pool's bytes belong to


def _take_small(n: int) -> memoryview:
    """``n`` bytes of the process's small-overwrite pool, never handed out before, in this
    process or in the one it was forked from."""
    if _owner.pid() != _small_token:
        # A child forked without Python's hooks (libc fork() from ctypes or a C extension):
        # the wipe-on-fork token tells, so it never writes the bytes its parent will.
        _fresh_pool_after_fork()
    pool, lock = _small_pool, _small_lock
    if not lock.acquire(False):
        # Held: by another thread, or by this one (a close of ours run by a signal handler or
        # a collection inside a take). Fresh bytes of their own, never the pool's next ones.
        return memoryview(os.urandom(n))
    try:
        pos = pool._pos
        end = pos + n
        buf = pool._buf
        if end <= buf.nbytes:  # RandomPool.take's common case inline: no refill
            pool._pos = end
            return buf[pos:end]
        return pool.take(n)
    finally:
        lock.release()


def _fresh_pool_after_fork() -> None:
    # A forked child must not hand out the bytes its parent will hand out too.
    global _small_pool, _small_lock, _small_token
    _small_pool, _small_lock = RandomPool(keystream=False), threading.Lock()
    _small_token = _owner.pid()


os.register_at_fork(after_in_child=_fresh_pool_after_fork)


def overwrite_fresh(
    fd: int,
    info: FsInfo,
    size: int,
    blocks: int,
    blksize: int,
    pool: RandomPool,
    defer_sync: bool = False,
) -> int:
    """One pass (random; zeros when ``"volatile"``) over the data of a file on the
    filesystem ``info``, through a descriptor opened for this alone (its offset is not
    restored: it is closed next), by the rules of :func:`_overwrite` without its report: the
    data extents, the tail block only when a block may be on the disk, ``fdatasync`` only
    then (looked at again *after* the overwrite, which closes the race with writeback), the
    size restored. ``size``, ``blocks`` (512-byte units) and ``blksize`` are the file's
    ``statx``; ``pool`` gives the random bytes of small files.

    ``defer_sync``: where a sync is needed, neither ``fdatasync`` nor the size restore is
    done; the return value says so: -1 when nothing needs syncing, else the size to restore
    once the caller has made the overwrite durable (before its last close).

    Raises:
        OSError: ``pwrite``/``fdatasync``/``ftruncate`` failed (ENOSPC, EIO...).
    """
    volatile = info.verdict == VOLATILE
    # Two comparisons, not min(): this runs once per file of a tree (min() was 5% of it).
    if blocks and 0 < size <= blksize and size <= pool.SIZE:
        return _overwrite_one_block(fd, info.f_type, volatile, size, blksize, pool, defer_sync)
    # A block on the disk may hold old bytes past EOF: only then is the tail worth covering.
    on_disk = not volatile and data_on_disk(fd, info.f_type)
    block = _tail_block(blksize, on_disk)
    if blocks and size <= blksize:
        # One block, allocated (or reserved for delayed allocation): all of it is data,
        # no SEEK_DATA/SEEK_HOLE needed to find the extents.
        ranges = [(0, size + (block - size % block) % block)] if size else []
    else:
        ranges = _data_ranges(fd, size, block)
    largest = max((e - s for s, e in ranges), default=0)
    pat: _Pattern | RandomPool
    if volatile:
        pat = _ZERO_PATTERN  # RAM overwritten in place: zeros destroy it (as overwrite_small)
    else:
        pat = pool if largest <= pool.SIZE else _Pattern("random", largest)
    on_disk = _one_pass(
        fd, ranges, pat, on_disk=on_disk, volatile=volatile, f_type=info.f_type, sync=not defer_sync
    )
    if not on_disk:
        return -1
    if defer_sync:
        return size
    if ranges and ranges[-1][1] > size:
        os.ftruncate(fd, size)
    return -1


def _overwrite_one_block(
    fd: int,
    f_type: int,
    volatile: bool,
    size: int,
    blksize: int,
    pool: RandomPool,
    defer_sync: bool,
) -> int:
    """:func:`overwrite_fresh` for a file whose data is one block, allocated or reserved
    (the common small file): one FIEMAP look instead of two.

    The data is overwritten in the page cache *first*; only then is FIEMAP asked whether a
    block was allocated (writeback racing us from now on writes the overwrite; blocks are
    never un-allocated, so this look says "on the disk" whenever an earlier one would have).
    No block, or RAM only: the old data never reached a disk, nothing to sync (-1). A
    block: the rest of it past EOF may hold old bytes on the disk, so it is overwritten
    too, then synced and the size restored as :func:`overwrite_fresh` says.

    Raises:
        OSError: ``pwrite``/``fdatasync``/``ftruncate`` failed, or wrote short (ENOSPC, EIO...).
    """
    # A short write is an error, not retried: the caller's general way overwrites again
    # and reports (ENOSPC mid-write).
    # Zeros on a volatile filesystem: RAM overwritten in place (see overwrite_small).
    if os.pwrite(fd, _ZEROS_VIEW[:size] if volatile else pool.take(size), 0) != size:
        raise OSError(errno.EIO, "short write")
    if volatile or not data_on_disk(fd, f_type):
        return -1
    block = _tail_block(blksize, True)
    end = size + (block - size % block) % block
    if end > size and os.pwrite(fd, pool.take(end - size), size) != end - size:
        raise OSError(errno.EIO, "short write")
    if defer_sync:
        return size
    os.fdatasync(fd)
    if end > size:
        os.ftruncate(fd, size)
    return -1


def overwrite_small(fd: int, st: os.stat_result, mnt_id: int = -1) -> FsInfo | None:
    """:func:`overwrite_fd` with its default options (one random pass, the wipe policy) for
    the common temp file, in one straight line: the filesystem's :class:`FsInfo` when it is
    done, with the very result the general way would give; None when the file is not that
    case (nothing is decided then, and the caller takes the general way, which overwrites
    again and reports).

    The case: ``st`` (the caller's stat of this inode, just taken) is a regular file of at
    most one page (:data:`_SMALL_FILE`: all of it is data, no hole map, as in
    :func:`_overwrite`), ``fd`` is open for writing without ``O_APPEND``, and the
    filesystem's verdict for it is ``"volatile"`` or ``"in place"`` -- the verdicts the
    policy never acts on, so no :class:`WipeReport` needs to exist. The bytes (zeros when
    ``"volatile"``, random otherwise) go to the page cache first; only then is FIEMAP asked
    (:func:`data_on_disk`), so writeback racing us writes the overwrite: a file with a block
    on the disk is left to the general way (tail block, ``fdatasync``). Any ``OSError`` here
    also leaves it to the general way, which meets it again and reports it (``WipeError``).
    ``mnt_id``: as for :func:`file_info_for_fd`.

    Raises:
        BaseException: only what interrupts the ``pwrite`` (``KeyboardInterrupt`` from a
            signal handler); every ``OSError`` is a None.
    """
    size = st.st_size
    if st.st_mode & 0o170000 != stat.S_IFREG or size > _SMALL_FILE:  # S_ISREG, without a call
        return None
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        # O_APPEND: pwrite would append and leave every old byte (the general way reopens).
        if flags & (os.O_APPEND | os.O_PATH) or flags & os.O_ACCMODE == os.O_RDONLY:
            return None
        info = file_info_for_fd(fd, st, mnt_id=mnt_id)
        verdict = info.verdict
        if verdict is not VOLATILE and verdict is not IN_PLACE:
            return None  # the policy may warn or raise: the general way builds its report
        # Zeros on a volatile filesystem: its pages are RAM the CPU overwrites in place (no
        # controller compresses, dedups or discards them), so zeros destroy the data as
        # random bytes would, without their getrandom (SECURITY.md, "overwrite pattern").
        if size and (
            os.pwrite(fd, _ZEROS_VIEW[:size] if verdict is VOLATILE else _take_small(size), 0)
            != size
        ):
            return None  # short (ENOSPC): the general way retries and reports
        # Looked at after the write: no block now means none of the old data reached a disk.
        if verdict is not VOLATILE and data_on_disk(fd, info.f_type):
            return None  # a block: its tail and an fdatasync are the general way's
    except OSError:
        return None
    return info


def overwrite_range(fd: int, start: int, end: int, *, pattern: str = "random") -> int:
    """Overwrite the data extents of ``[start, end)`` of the file at ``fd`` (one pass), then
    ``fdatasync``; return the bytes written. For a range about to be cut off by truncation.
    The descriptor's offset is unchanged.

    The sync is what makes this worth anything: ``ftruncate`` drops dirty pages beyond the
    new size without writing them, so an unsynced overwrite would never reach the blocks.
    Holes are skipped (nothing of ours there). ``fd`` must be writable without ``O_APPEND``.

    Raises:
        OSError: ``pwrite``/``fdatasync`` failed (EIO, ENOSPC...); part may be written.
    """
    if end <= start:
        return 0
    offset = os.lseek(fd, 0, os.SEEK_CUR)
    try:
        ranges = _data_ranges(fd, end, 1, begin=start)  # SEEK_DATA moves the offset...
    finally:
        os.lseek(fd, offset, os.SEEK_SET)  # ...which the caller's file object relies on
    pat = _Pattern(pattern, max((e - s for s, e in ranges), default=0))
    prog = _Progress()
    if ranges:
        # Synced on any filesystem (on_disk=True): the truncation that follows drops the
        # dirty pages unwritten, so only a synced overwrite reaches the old blocks.
        _one_pass(fd, ranges, pat, on_disk=True, volatile=False, f_type=0, prog=prog)
    return prog.bytes_overwritten


def _apply_policy(report: WipeReport, policy: str, stacklevel: int) -> None:
    """Warn or raise as ``policy`` says when the overwrite cannot be trusted.

    Data left un-overwritten is never silent: ``"ignore"`` (which is about filesystems
    that may not overwrite in place) still warns for it.
    """
    if report.data_left:
        message = (report.reasons[0] if report.reasons else "not overwritten") + (
            ": its data is still on the disk" + ("" if report.removed else "; not removed")
        )
        if policy == "error":
            raise WipeError(report.path, message, report)
        warnings.warn(
            f"{report.path or 'file'}: {message}", PlaintextLeftWarning, stacklevel=stacklevel
        )
        return
    if report.verdict in (IN_PLACE, VOLATILE, SKIPPED) or policy == "ignore":
        return
    why = report.reasons[0] if report.reasons else "unknown filesystem"
    message = (
        f"the overwrite may not have reached the old data on this {report.filesystem or 'unknown'}"
        f" filesystem ({report.verdict}): {why}. Encrypt sensitive temporary data instead "
        "(dropping the key erases it), or keep such files on a filesystem that overwrites in place."
    )
    if policy == "error":
        raise WipeError(report.path, message, report)
    warnings.warn(
        f"{report.path or 'file'}: {message}", WipeUnreliableWarning, stacklevel=stacklevel
    )


def _check_fd_for_overwrite(
    fd: int, path: str | None, st: os.stat_result | None = None
) -> os.stat_result:
    if st is None:
        st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFileError(path, "not a regular file: refusing to overwrite it")
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    if flags & os.O_APPEND:
        # With O_APPEND, Linux pwrite ignores the offset and appends: the overwrite would
        # grow the file and leave every old byte in place.
        raise ValueError(f"{path or f'fd {fd}'}: opened with O_APPEND, cannot overwrite in place")
    if flags & os.O_ACCMODE == os.O_RDONLY or flags & os.O_PATH:
        raise ValueError(f"{path or f'fd {fd}'}: descriptor is not open for writing")
    return st


def overwrite_fd(
    fd: int,
    *,
    path: str | None = None,
    passes: int = 1,
    pattern: str = "random",
    on_unreliable: str | None = None,
    st: os.stat_result | None = None,
) -> WipeReport:
    """Overwrite in place the data extents of the regular file open for writing at ``fd``.

    Each pass writes the data extents (holes skipped, the last block to its end when a
    block may be on the disk) and is followed by ``fdatasync`` unless, after the pass,
    none of the file's data has a block on a disk (see the module docstring); short
    writes and EINTR are retried. The file size and the
    descriptor's offset are restored.
    Does not close or unlink; the link count is only reported (see
    :func:`hardtemp._remove.remove_entry`). ``st``: the caller's ``fstat`` of ``fd``, taken
    just before (saves one).

    When the verdict is neither ``"in place"`` nor ``"volatile"``, the wipe policy
    (``on_unreliable`` or :func:`hardtemp.get_wipe_policy`) applies after the overwrite.

    Raises:
        UnsafeFileError: ``fd`` is not a regular file.
        ValueError: ``fd`` has ``O_APPEND`` or is not writable; bad ``pattern``/``passes``/
            ``on_unreliable``.
        TypeError: ``passes`` is not an int.
        OSError: ``fd`` is not an open descriptor.
        WipeError: the overwrite failed (ENOSPC, EIO...; ``.report`` is the partial
            report), or the policy is ``"error"`` and the verdict untrustworthy.
        WipeUnreliableWarning: (warning) the policy is ``"warn"`` and the verdict untrustworthy.
    """
    start = time.monotonic()
    policy = _check_options(passes, pattern, on_unreliable)
    st = _check_fd_for_overwrite(fd, path, st)
    prog = _Progress()
    _overwrite(fd, st, passes, pattern, prog)
    report = prog.report(path, pattern, start, removed=False)
    if prog.error is not None:
        raise WipeError(path, report.reasons[0], report) from prog.error
    _apply_policy(report, policy, stacklevel=3)
    return report
