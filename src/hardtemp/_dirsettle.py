"""Freed directory blocks hold no names: emptied directories reach the disk before they go.

On ext4 an unlink (or a rename away) zeroes the entry's name in the directory block (Linux
5.13+), but only in memory and the journal: removing the directory right after frees that
block, and the journal never writes the zeroed version to its home location, so the freed
block on disk keeps every original name (measured on a raw ext4 image: all names of a
``TemporaryDirectory``'s files were found outside the journal after cleanup).

Invariants:

* No directory of a tree on a disk is removed before its emptied (zeroed) blocks were
  written home: ``syncfs`` commits them to the journal and then writes them back to their
  home location, so the block freed by ``rmdir`` holds no names (measured: none outside
  the journal; an ``fsync`` of the directory alone leaves them, so it is only the fallback
  of a libc without ``syncfs``). The journal itself keeps names until it wraps: nothing
  from user space can clear it.
* One ``syncfs`` per tree, not one per directory: an emptied directory is moved (its
  parent's entry zeroed too) into the tree's top under a random name — a
  :class:`Graveyard` — and once the walk is done (or every ``_GRAVES`` directories) one
  ``syncfs`` writes all their blocks home; only then are they removed. The top's block
  then holds only random grave names, which say nothing.
* Only a directory that only we can change, in a parent and a top only we can change, is
  moved (the caller's rule, see :mod:`hardtemp._remove`): nobody else can have or add an
  entry there, so nothing of another user's is ever moved out of their reach. A move that
  fails (``ENOSPC`` when the top must grow, ``EMLINK``, no ``RENAME_NOREPLACE``) leaves the
  directory where it was, for the caller to settle and remove it in place.
* A crash, SIGKILL or interrupt before the ``syncfs`` leaves empty directories with random
  names in the top (nothing freed, so no block holds names outside the live tree); the top
  stays too, with its sweep mark, for the next removal or ``hardtemp sweep``.
* Best effort and never fatal: a failing sync changes nothing that was removed. Skipped
  on RAM filesystems (tmpfs, ramfs), where nothing reaches a disk, and on btrfs and xfs
  (:data:`~hardtemp._fsinfo.NAMES_KEPT_IN_METADATA`), whose metadata keeps the names
  whatever is synced first: there a settle bought nothing (xfs: as many names in the raw
  image as after the standard library's cleanup) and cost a ``syncfs`` per tree (btrfs:
  more names, the graves' renames copying metadata once more).
* Skipped too for a tree nothing of which can have reached the disk (:class:`Fresh`): an
  ext4 with its journal inside the filesystem's own device, whose write counter
  (``/sys/dev/block/M:m/stat``, sectors written) is unchanged since before the top was
  created, and directories born strictly after the top (one born in its clock tick may
  have been made, and synced home, just before it). jbd2 writes a directory block home only
  after a commit that logged it; that commit's log writes complete (and are counted: a
  request-based block device accounts a write before completing it) before the block is
  handed to writeback. No write completed => no commit exposed any of the tree's blocks, and
  ``rmdir`` (``jbd2_journal_forget``) then drops them from the running transaction, or
  marks them freed in a committing one, so they never reach their home location. The
  jbd2 commit count (``/proc/fs/jbd2/*/info``) is not used: the kernel increments it
  after waking the waiters of that commit, whose ``sync`` may already have written the
  block home. Anything unknown (no ``/proc`` or ``/sys``, another filesystem, an
  external journal, a bio-based device such as device-mapper, accounting off, a
  directory older than the top) syncs.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import time
from collections.abc import Callable

from ._fsinfo import NAMES_KEPT_IN_METADATA, VOLATILE, FsInfo, fs_info_for_fd
from ._linux import birth_ident, rename_noreplace
from ._names import random_name

__all__ = ["Fresh", "Graveyard", "disk_stamp", "settler", "settler_for"]

_libc = ctypes.CDLL(None, use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)
# Directories held for one syncfs: bounds the top's growth and what a crash leaves.
_GRAVES = 1024


#: Syncs made and skipped in this process (the forensic tests read them).
counts = {"synced": 0, "skipped": 0}
# st_dev -> (device name, its sysfs stat and iostats opened once), or None: not a
# request-based block device, or no /sys. Re-read with pread (sysfs regenerates a file
# read at offset 0): 3 us, where opening it by path costs 15 us.
_devices: dict[int, tuple[str, int, int] | None] = {}


def _device(dev: int) -> tuple[str, int, int] | None:
    """The block device ``dev``'s name and open counter files, or None (see above)."""
    if dev in _devices:
        return _devices[dev]
    found: tuple[str, int, int] | None = None
    base = f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}"
    # Major 0: no block device (tmpfs, btrfs's anonymous st_dev, NFS); a major:minor is
    # always the same driver, so whether it is request-based never changes.
    if os.major(dev) != 0 and _request_based(base):
        try:
            name = os.path.basename(os.readlink(base))
            stat_fd = os.open(f"{base}/stat", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            name, stat_fd = "", -1  # no /sys: the caller syncs
        if stat_fd >= 0:
            queue = "queue" if os.path.isdir(f"{base}/queue") else "../queue"  # a partition
            try:
                iostats_fd = os.open(f"{base}/{queue}/iostats", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                os.close(stat_fd)
            else:
                found = (name, stat_fd, iostats_fd)
    _devices[dev] = found
    return found


def _request_based(base: str) -> bool:
    """Whether the block device at sysfs ``base`` (or its disk, for a partition) is a
    request-based (blk-mq) one: those count a write in ``blk_update_request`` before
    completing it. Stacked bio-based devices (device-mapper, md) account by other paths,
    not checked: their trees are synced."""
    return os.path.isdir(f"{base}/mq") or os.path.isdir(f"{base}/../mq")


def _sectors_written(dev: int) -> int | None:
    """Sectors written to the device ``dev`` since boot, or None when not counted."""
    found = _device(dev)
    if found is None:
        return None
    try:
        iostats = os.pread(found[2], 16, 0)
        written = int(os.pread(found[1], 512, 0).split()[6])
    except (OSError, IndexError, ValueError):
        return None  # the device went away (ENODEV)...: the caller syncs
    # Accounting switched off, or a driver that never counts (a mounted ext4 has written
    # its superblock): an unchanged counter would prove nothing.
    return written if iostats.strip() == b"1" and written > 0 else None


def disk_stamp(dev: int) -> int | None:
    """The write counter of ``dev`` if it holds an ext4 whose journal is inside it (jbd2's
    ``<device>-8``), else None: read *before* a tree is created there, for :class:`Fresh`."""
    found = _device(dev)
    # The journal in the filesystem's own device (inode 8): its log writes are counted
    # there; an external journal's, or none (ext2, no journal), would not be. Looked at
    # every time: another filesystem may be mounted from the same device later.
    if found is None or not os.path.isdir(f"/proc/fs/jbd2/{found[0]}-8"):
        return None
    return _sectors_written(dev)


class Fresh:
    """Whether a tree's directories can be removed without a settle (module invariants).

    ``stamp``: :func:`disk_stamp` of ``dev`` read before the top was made; ``born``: the
    top's birth time (a directory born earlier was moved in: its blocks may be home).
    """

    __slots__ = ("_born", "_dev", "_stamp")

    def __init__(self, dev: int, stamp: int, born: float) -> None:
        self._dev, self._stamp, self._born = dev, stamp, born

    def young(self, fd: int) -> bool:
        """Whether the directory ``fd`` was born in the tree's lifetime (by the clock)."""
        try:
            _, _, btime = birth_ident(fd)
        except OSError:
            return False
        # Born before the top (or "in the future": the clock was set back since): possibly
        # moved in with blocks already written home, so it is settled. Strictly after: birth
        # times have the coarse clock's tick (4 ms at HZ=250), so one made and synced home
        # just before the stamp, in the tick the top is born in, has the top's very time.
        return btime is not None and self._born < btime <= time.time()

    def top_young(self) -> bool:
        """:meth:`young` for the top itself, whose birth time is ``born`` (no statx)."""
        return self._born <= time.time()  # else the clock was set back: settled

    def quiet(self) -> bool:
        """Whether no write to the device completed since the stamp (read now: after the
        directories to remove were emptied, before any of them is removed)."""
        return _sectors_written(self._dev) == self._stamp


def _settle(fd: int) -> None:
    counts["synced"] += 1
    if _syncfs is not None:
        # The emptied (zeroed) directory blocks written back home before rmdir frees them:
        # syncfs commits the journal (ext4_sync_fs) and then writes the committed blocks
        # (sync_blockdev), so an fsync of the directory first only added a commit.
        _syncfs(fd)
        return
    with contextlib.suppress(OSError):
        os.fsync(fd)  # no syncfs (glibc < 2.14): at least committed to the journal


def settler(fd: int) -> Callable[[int], None] | None:
    """The settle step for a tree on the filesystem of ``fd``, or None where none is needed."""
    try:
        info: FsInfo | None = fs_info_for_fd(fd)
    except OSError:
        info = None
    return settler_for(info)


def settler_for(info: FsInfo | None) -> Callable[[int], None] | None:
    """The settle step for a tree on the filesystem ``info`` (None: not identified)."""
    if info is not None and info.verdict == VOLATILE:
        return None  # RAM only: no disk block will ever hold the names
    if info is not None and info.f_type in NAMES_KEPT_IN_METADATA:
        return None  # btrfs, xfs: their metadata keeps the names whatever is synced first
    return _settle  # a disk, or an unknown filesystem: settle anyway


class Graveyard:
    """The emptied directories of one tree, held in its top ``top_fd`` for one settle.

    :meth:`take` moves one in; :meth:`bury` settles the filesystem once, then removes them.
    """

    __slots__ = ("_fresh", "_graves", "_old", "_settle", "_top_fd")

    def __init__(
        self, top_fd: int, settle: Callable[[int], None], fresh: Fresh | None = None
    ) -> None:
        self._top_fd = top_fd
        self._settle = settle
        self._graves: list[str] = []
        self._fresh = fresh  # None: every bury settles
        self._old = False  # a grave not born in the tree's lifetime: the next bury settles

    def needs_settle(self, fd: int) -> bool:
        """Whether removing the emptied directory ``fd`` (or the top's entries) now needs
        the settle; counts a skip."""
        fresh = self._fresh
        if fresh is None:
            return True
        young = fresh.top_young() if fd == self._top_fd else fresh.young(fd)
        if young and fresh.quiet():
            counts["skipped"] += 1
            return False
        return True

    @property
    def full(self) -> bool:
        """Whether :meth:`bury` is due (``_GRAVES`` directories held)."""
        return len(self._graves) >= _GRAVES

    def take(self, parent_fd: int, name: str, fd: int = -1) -> bool:
        """Move the emptied directory ``name`` (open as ``fd``; -1: not known, so treated
        as possibly old) of ``parent_fd`` into the top; False (nothing changed) when it
        cannot be moved and must be settled and removed where it is."""
        # 80 random bits, RENAME_NOREPLACE: the move never replaces an entry, never guessed.
        grave = ".ht-" + random_name()
        try:
            rename_noreplace(parent_fd, name, self._top_fd, grave)
        except OSError:
            return False  # ENOSPC (the top must grow), EMLINK, EEXIST, no NOREPLACE...
        self._graves.append(grave)
        if self._fresh is not None and not self._old and not self._fresh.young(fd):
            self._old = True  # moved in from outside the tree: its blocks may be home
        return True

    def bury(self) -> list[OSError]:
        """One settle for everything removed so far, then every held directory removed;
        returns the errors (``filename``: the grave's name in the top). A grave that is no
        longer empty (entries added after it was emptied) is left for the top's next scan.
        """
        graves, self._graves = self._graves, []
        old, self._old = self._old, False
        if old or self.needs_settle(self._top_fd):
            self._settle(self._top_fd)  # every zeroed block home before any of them is freed
        errors: list[OSError] = []
        for grave in graves:
            try:
                os.rmdir(grave, dir_fd=self._top_fd)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.ENOTEMPTY:
                    errors.append(exc)
        return errors
