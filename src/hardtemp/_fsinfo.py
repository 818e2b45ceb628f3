"""Which filesystem holds an open file, and does an in-place overwrite reach its old blocks?

The verdict is about the *filesystem* layer only:

* ``"in place"``: the filesystem rewrites the same logical blocks (ext2/3/4 with
  ordered or writeback data, xfs, btrfs files marked NOCOW).
* ``"not in place"``: the filesystem writes new data elsewhere and may keep the old
  blocks (copy-on-write, log-structured, journalled data, network, FUSE, overlays).
* ``"volatile"``: the data only ever lived in RAM (ramfs, tmpfs without active swap).
* ``"best effort"``: unknown or unverified filesystem, or tmpfs while swap is active.

What lies below the filesystem (a flash drive's translation layer, thin
provisioning, a loop image on a copy-on-write host) cannot be verified from
here; every verdict carries a reason describing the device as far as it is known.

Linux only: Python has no ``fstatfs``, so libc's is called (see :mod:`hardtemp._linux`);
the mount entry comes from the descriptor's old mount id (``statx`` ``STATX_MNT_ID``, else
``mnt_id`` in ``/proc/self/fdinfo/<fd>``) matched to
``/proc/self/mountinfo`` (``st_dev`` matching fails on btrfs subvolumes). Classifications
are cached by the mount's unique id where the kernel has them (Linux >= 6.8), which no
later mount ever gets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
import select
import stat
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import _linux as _linux_mod
from ._codes import FsReason, Reason, Verdict
from ._linux import (
    FIEMAP_EXTENT,
    FIEMAP_HEADER,
    FS_IOC_FIEMAP,
    FS_IOC_GETFLAGS,
    FS_IOC_SETFLAGS,
    LONG_SIZE,
    fstatfs,
    is_unique_mount_id,
    mount_id,
    old_mount_id,
    unique_mount_id,
)

__all__ = [
    "BEST_EFFORT",
    "IN_PLACE",
    "NAMES_KEPT_IN_METADATA",
    "NOT_IN_PLACE",
    "RENAME_HIDES_NOTHING",
    "VOLATILE",
    "FsInfo",
    "clear_cache",
    "data_on_disk",
    "file_info_for_fd",
    "fs_info_by_superblock",
    "fs_info_for_fd",
    "fs_info_for_path",
    "get_file_flags",
    "refine_for_file",
    "set_nocow",
    "superblock_info",
]

# The verdicts (one enum for filesystems and wipes, see _codes), by their historical names.
IN_PLACE = Verdict.IN_PLACE
NOT_IN_PLACE = Verdict.NOT_IN_PLACE
VOLATILE = Verdict.VOLATILE
BEST_EFFORT = Verdict.BEST_EFFORT

# statfs f_type magic numbers (linux/magic.h and the filesystems' own headers).
_EXT_MAGIC = 0xEF53
_BTRFS_MAGIC = 0x9123683E
_XFS_MAGIC = 0x58465342
_TMPFS_MAGIC = 0x01021994
_RAMFS_MAGIC = 0x858458F6
#: Filesystem types (statfs ``f_type``) whose directory entries never reach a disk or swap.
_NAMES_IN_RAM = frozenset({_TMPFS_MAGIC, _RAMFS_MAGIC})
#: Filesystem types where renaming a name to a random one before its unlink (``shred -u``'s
#: hiding) hides it from no reader of the disk: the names in RAM, and those measured on raw
#: images (tests/forensic/test_forensic_names.py). The new entry is written while the old
#: one still stands, so it never takes the old one's bytes: ext2/3/4's unlink wipes the
#: entry itself (Linux 5.13+; before, its bytes stayed, renamed or not: from the kernel's
#: source, only a newer kernel measured); btrfs keeps the old copy-on-write metadata with
#: the name, renamed or not; so does xfs, in its old directory and log blocks
#: (tests/forensic/test_forensic_xfs.py).
RENAME_HIDES_NOTHING = _NAMES_IN_RAM | {_EXT_MAGIC, _BTRFS_MAGIC, _XFS_MAGIC}
#: Filesystem types whose metadata keeps a removed entry's name whatever a cleanup does
#: before the removal, so that syncing emptied directories first (:mod:`hardtemp._dirsettle`)
#: buys nothing: btrfs copies metadata on every change and keeps the old copies; xfs marks
#: a removed entry free without clearing its name (both measured on raw images).
NAMES_KEPT_IN_METADATA = frozenset({_BTRFS_MAGIC, _XFS_MAGIC})
_OVERLAY_MAGIC = 0x794C7630
_ZFS_MAGIC = 0x2FC12FC1
_F2FS_MAGIC = 0xF2F52010
_NILFS_MAGIC = 0x3434
_BCACHEFS_MAGIC = 0xCA451A4E
_NFS_MAGIC = 0x6969
_SMB_MAGIC = 0x517B
_CIFS_MAGIC = 0xFF534D42
_SMB2_MAGIC = 0xFE534D42
_FUSE_MAGIC = 0x65735546
_V9FS_MAGIC = 0x01021997
_CEPH_MAGIC = 0x00C36400

_MAGIC_NAMES = {
    _EXT_MAGIC: "ext2/3/4",
    _BTRFS_MAGIC: "btrfs",
    _XFS_MAGIC: "xfs",
    _TMPFS_MAGIC: "tmpfs",
    _RAMFS_MAGIC: "ramfs",
    _OVERLAY_MAGIC: "overlay",
    _ZFS_MAGIC: "zfs",
    _F2FS_MAGIC: "f2fs",
    _NILFS_MAGIC: "nilfs2",
    _BCACHEFS_MAGIC: "bcachefs",
    _NFS_MAGIC: "nfs",
    _SMB_MAGIC: "smb",
    _CIFS_MAGIC: "cifs",
    _SMB2_MAGIC: "smb2",
    _FUSE_MAGIC: "fuse",
    _V9FS_MAGIC: "9p",
    _CEPH_MAGIC: "ceph",
}

# Filesystems that never rewrite data blocks in place (copy-on-write or log-structured).
_COW_REASONS = {
    _ZFS_MAGIC: Reason(
        FsReason.COPY_ON_WRITE,
        "zfs is copy-on-write: an overwrite is written to new blocks, the old ones "
        "stay until reused (and in every snapshot)",
    ),
    _F2FS_MAGIC: Reason(
        FsReason.LOG_STRUCTURED,
        "f2fs is log-structured: an overwrite is appended elsewhere in the log",
    ),
    _NILFS_MAGIC: Reason(
        FsReason.LOG_STRUCTURED, "nilfs2 is log-structured and keeps checkpoints of old data"
    ),
    _BCACHEFS_MAGIC: Reason(
        FsReason.COPY_ON_WRITE,
        "bcachefs is copy-on-write: an overwrite is written to new blocks",
    ),
}
_REMOTE = {_NFS_MAGIC, _SMB_MAGIC, _CIFS_MAGIC, _SMB2_MAGIC, _FUSE_MAGIC, _V9FS_MAGIC, _CEPH_MAGIC}
_REMOTE_NAMES = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "virtiofs", "afs")

# inode flags (linux/fs.h), read with FS_IOC_GETFLAGS.
FS_JOURNAL_DATA_FL = 0x00004000
FS_NOCOW_FL = 0x00800000
FS_INLINE_DATA_FL = 0x10000000

# ioctl numbers and the FIEMAP layouts live in _linux.
_FIEMAP_EXTENT_LAST = 0x1
_FIEMAP_EXTENT_DELALLOC = 0x4  # delayed allocation: in the page cache only, no block yet
_FIEMAP_EXTENT_DATA_INLINE = 0x200
_FIEMAP_EXTENT_SHARED = 0x2000
_FIEMAP_BATCH = 32

_SWAP_TTL = 2.0  # seconds a swap check is reused: reading /proc/meminfo costs ~30 us


@dataclass(frozen=True)
class FsInfo:
    """The filesystem holding a file, and whether an in-place overwrite reaches its old blocks.

    Attributes:
        fstype: filesystem type as mounted (``"ext4"``, ``"btrfs"``, ``"tmpfs"``...).
        mountpoint: where that filesystem is mounted ("" if unknown).
        source: the mount source (a block device, a server share, ``"tmpfs"``...).
        options: mount options followed by superblock options, as given by the kernel.
        verdict: ``"in place"``, ``"not in place"``, ``"volatile"`` or ``"best effort"``
            (a :class:`~hardtemp._codes.Verdict`).
        reasons: human-readable sentences explaining the verdict and its limits, each a
            :class:`~hardtemp._codes.Reason` (a ``str``) with a stable ``code``.
    """

    fstype: str
    mountpoint: str
    source: str
    options: tuple[str, ...]
    verdict: Verdict
    reasons: tuple[Reason, ...]
    f_type: int = 0
    mnt_id: int = -1

    @property
    def codes(self) -> tuple[str, ...]:
        """The stable codes of :attr:`reasons`, in the same order."""
        return tuple(r.code for r in self.reasons)


_cache: dict[tuple[int, int, int, int, int], FsInfo] = {}


class _SbEntry:
    """One superblock's classification, and its swap-adjusted copy (tmpfs only)."""

    __slots__ = ("base", "swappable", "swapped", "total")

    def __init__(self, base: FsInfo) -> None:
        self.base = base
        self.swapped: FsInfo | None = None
        self.total = -2.0  # the swap total ``swapped`` was made for
        # tmpfs: its verdict follows the swap total, unless mounted noswap (never swapped).
        self.swappable = base.f_type == _TMPFS_MAGIC and "noswap" not in base.options


# Per superblock (device, f_type, fsid): the hot path's classification without reading
# /proc/self/fdinfo.
_sb_cache: dict[tuple[int, int, int, int], _SbEntry] = {}
# The same entries by (mount id, st_dev) of a mount found in our mount table, each made
# through that very mount: no fstatfs needed to tell which superblock a file is on. A unique
# mount id (Linux >= 6.8) is never another mount's, whatever the watch missed; an old one
# (before 6.8) is another mount's once that mount is gone: trusted only while the watch says
# the table is unchanged (review7: a watch blinded so served a tmpfs's verdict to an overlay).
_mnt_cache: dict[tuple[int, int], _SbEntry] = {}
# Nothing is found by st_dev alone: two live superblocks can report one st_dev (an overlay
# file on a kernel before 4.17 reports its upper or lower filesystem's), so a file whose
# mount is not known is classified by fstatfs (type and fsid tell them apart).
# Reentrant: the cyclic collector can run at any allocation inside it, and a hardtemp file
# it collects there (a named file's weakref callback, an unnamed file's finaliser) closes
# and is classified in this very thread: a plain Lock would wait for itself forever
# (review7). Every section below is a few dict operations, safe to interleave so.
_cache_lock = threading.RLock()
_CACHE_MAX = 256
_swap_state: list[float] = [-1e9, 0.0]  # [checked at (monotonic), swap total bytes]


class _MountWatch:
    """Notices mount-table changes: /proc/self/mountinfo polls POLLPRI after a (re)mount.

    Before Linux 6.8 a filesystem mounted in place of another (ext4 data=journal after
    data=ordered, an overlay after a tmpfs) can get its device, filesystem id and old mount
    id: without this, a stale "in place" or "volatile" would be served. With unique mount
    ids every such mount misses the caches by itself; the watch still clears them on a
    remount of the same mount (its options, as ``hardtemp check`` reports them).
    """

    def __init__(self) -> None:
        self.opened = False  # in this process (reset in a forked child by forget())
        self.fd = -1
        self.poller: select.poll | None = None
        self.token = -1  # _owner.pid() of the process that opened fd
        self.ns: tuple[int, int] | None = None  # the mount namespace it watches
        self.pid: Callable[[], int] = os.getpid  # _owner.pid once opened (a circular import)
        self.looking = False  # inside changed() (a reentered look says "changed")

    def changed(self) -> bool:
        if self.looking:
            # Reentered (a collection inside the look below ran a close of ours): the outer
            # poll may have consumed a change its caller has not acted on yet. Say changed.
            return True
        self.looking = True
        try:
            return self._changed()
        finally:
            self.looking = False

    def _changed(self) -> bool:
        if not self.opened or self.token != self.pid():
            # First use, or a forked child, also one forked without Python's hooks (the
            # token is the wipe-on-fork one): its own descriptor. Polling the parent's would
            # consume the parent's event (one open file description, one poll state).
            self.forget()
            self._open()
            return True
        if self.poller is None:
            return True  # no way to watch: never trust the cache
        got = self.poller.poll(0)
        if got and got[0][1] == select.POLLIN:
            return False  # mountinfo, unchanged: readable, and nothing else
        if not (got and got[0][1] & select.POLLPRI):
            # Not our watch any more: its number was closed by other code (a library's
            # double close) and open() gave it to another file, which never reports
            # POLLPRI (a regular file polls POLLIN|POLLOUT, a closed number POLLNVAL): every
            # later mount change would go unseen. The number is theirs now: not closed here.
            self.fd = -1
            self.forget()
            self._open()
        return True

    def forget(self) -> None:
        """In a forked child: the parent's descriptor watches the parent's mount namespace
        (a child may unshare its own), so the child opens its own (no getpid per look)."""
        self.opened, self.poller = False, None
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            with contextlib.suppress(OSError):
                os.close(fd)

    def elsewhere(self) -> bool:
        """Whether the process has entered another mount namespace (``unshare``, ``setns``)
        since the watch was opened: its poll then reports the old namespace's changes only.
        One ``stat`` of ``/proc/self/ns/mnt``: asked on a cache miss, never on a hit (a new
        namespace's mounts all have new ids, so its first look misses)."""
        return self.opened and _mount_ns() != self.ns

    def _open(self) -> None:
        from . import _owner  # here: _owner imports what imports this module

        self.opened = True
        self.ns = _mount_ns()
        self.pid = _owner.pid
        self.token = _owner.pid()
        self.poller = None
        try:
            self.fd = _high(os.open("/proc/self/mountinfo", os.O_RDONLY | os.O_CLOEXEC))
        except OSError:
            return
        poller = select.poll()
        # POLLIN and POLLOUT too: mountinfo is always readable and never writable, so an
        # answer other than POLLIN (+ POLLPRI|POLLERR on a change) says the number is not it.
        poller.register(self.fd, select.POLLIN | select.POLLOUT | select.POLLPRI)
        poller.poll(0)  # consume the initial event
        self.poller = poller


#: The lowest number the watch's descriptor moves to (at most half the soft RLIMIT_NOFILE).
_HIGH_FD = 700


def _high(fd: int) -> int:
    """``fd`` moved to a number at or above :data:`_HIGH_FD` (``fd`` itself if it cannot be).

    Descriptors are handed out lowest-free: a library that closes a number twice (it had it
    once, closed it, then closes it again after another open() took it) hits low numbers. At
    a number no ordinary open() reaches, the watch is never that other open(), so its poll
    state is never someone else's (a second /proc/self/mountinfo would answer as an
    unchanged watch: review7). It costs one descriptor-table growth to ~1,024 entries.
    With unique mount ids (Linux >= 6.8) a blinded watch no longer lets a mount be served
    another's verdict (only a remount's new options go unseen); kept for older kernels."""
    try:
        import resource  # here: only the watch's first open needs it

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        floor = _HIGH_FD if soft == resource.RLIM_INFINITY else min(_HIGH_FD, soft // 2)
        if floor <= fd:
            return fd
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor)
    except (OSError, ValueError):  # EMFILE, EINVAL: the low number still watches
        return fd
    os.close(fd)
    return high


def _mount_ns() -> tuple[int, int] | None:
    """The identity of this process's mount namespace (None without /proc)."""
    try:
        st = os.stat("/proc/self/ns/mnt")
    except OSError:
        return None
    return st.st_dev, st.st_ino


_watch = _MountWatch()


def _after_fork_in_child() -> None:
    global _cache_lock
    _cache_lock = threading.RLock()  # another thread may have held it at fork()
    _watch.looking = False  # (another thread's look)
    _watch.forget()


os.register_at_fork(after_in_child=_after_fork_in_child)


def clear_cache() -> None:
    """Forget every cached filesystem classification (done by itself when mounts change)."""
    with _cache_lock:
        _cache.clear()
        _sb_cache.clear()
        _mnt_cache.clear()
    _swap_state[0] = -1e9


def _mounts_changed() -> bool:
    """Whether the mount table changed since the last look; clears both caches if so.
    Called with ``_cache_lock`` held."""
    if _watch.changed():
        _forget_all()
        return True
    return False


def _follow_namespace() -> None:
    """On a cache miss (``_cache_lock`` held): after unshare/setns the old namespace's watch
    would never report this one's (u)mounts, and its mount ids may be reused here: the
    watch is dropped, so that the next look opens one of this namespace and clears every
    cache (a new namespace's mounts all have new ids: its first look misses)."""
    if _watch.elsewhere():
        _watch.forget()


def _forget_all() -> None:
    """Clear every classification cache (``_cache_lock`` held)."""
    _cache.clear()
    _sb_cache.clear()
    _mnt_cache.clear()


_statfs = fstatfs  # the names this module's tests and callers use
_mnt_id = mount_id  # statx (unique id >= 6.8), else /proc/self/fdinfo (one call, not three)
_old_mnt_id = old_mount_id  # the id mountinfo lists: on a cache miss only
_unique_mnt_id = unique_mount_id  # -1 before Linux 6.8 (then no call at all)


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    if "\\" not in field:
        return field
    out: list[str] = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class _Mount:
    mnt_id: int
    devno: tuple[int, int]
    mountpoint: str
    fstype: str
    source: str
    mount_options: tuple[str, ...]
    super_options: tuple[str, ...]


def _mount_entry(mnt_id: int, st_dev: int) -> _Mount | None:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    by_dev: _Mount | None = None
    for line in lines:
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        lf = left.split(" ")
        rf = right.split(" ")
        if len(lf) < 6 or len(rf) < 3:
            continue
        major, _, minor = lf[2].partition(":")
        entry = _Mount(
            mnt_id=int(lf[0]),
            devno=(int(major), int(minor)),
            mountpoint=_unescape(lf[4]),
            fstype=rf[0],
            source=_unescape(rf[1]),
            mount_options=tuple(lf[5].split(",")),
            super_options=tuple(rf[2].split(",")),
        )
        if entry.mnt_id == mnt_id:
            return entry
        if entry.devno == (os.major(st_dev), os.minor(st_dev)):
            by_dev = entry  # fallback when fdinfo is unavailable: the last (topmost) mount
    return by_dev if mnt_id < 0 else None


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


# Paravirtual block drivers, and the vendor strings of emulated SCSI/ATA disks.
_VIRTUAL_DRIVERS = frozenset({"virtio_blk", "xen_blkfront", "vmw_pvscsi", "hv_storvsc"})
_VIRTUAL_VENDORS = ("QEMU", "VMware", "Msft", "VBOX", "Google", "Amazon")


def _virtual_disk(base: str) -> str | None:
    """The driver or vendor that shows the block device at ``base`` is virtual, else None."""
    for dev in (f"{base}/device", f"{base}/../device"):  # the disk itself, or a partition's
        driver = os.path.basename(os.path.realpath(f"{dev}/driver"))
        if driver in _VIRTUAL_DRIVERS:
            return driver
        vendor = _read_text(f"{dev}/vendor") or ""
        if vendor.startswith(_VIRTUAL_VENDORS):
            return vendor
    return None


def _device_reasons(mount: _Mount | None) -> list[Reason]:
    # long: one case per kind of device, each with its coded reason
    """Describe the block device under the filesystem as far as sysfs tells."""
    if mount is None or not mount.source.startswith("/dev/"):
        return [
            Reason(
                FsReason.DEVICE_UNKNOWN,
                "the storage device is not known (no block device in the mount table): whether "
                "it is magnetic or flash cannot be determined",
            )
        ]
    try:
        rdev = os.stat(mount.source).st_rdev
    except OSError:
        return [
            Reason(
                FsReason.DEVICE_UNINSPECTABLE,
                f"{mount.source}: cannot inspect the device; magnetic or flash is unknown",
            )
        ]
    base = f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}"
    name = os.path.basename(os.path.realpath(base))
    rot = _read_text(f"{base}/queue/rotational") or _read_text(f"{base}/../queue/rotational")
    backing = _read_text(f"{base}/loop/backing_file")
    if backing is not None:
        return [
            Reason(
                FsReason.LOOP_DEVICE,
                f"{mount.source} is a loop device backed by the file {backing}: the blocks "
                "really live in that file, on a filesystem whose own behaviour applies",
            )
        ]
    virtual = _virtual_disk(base)
    if virtual is not None and rot in ("0", "1"):
        # The flag describes the emulated device: the host's storage is not visible from here.
        return [
            Reason(
                FsReason.VIRTUAL_DISK,
                f"{mount.source} ({name}) is a virtual disk ({virtual}); the kernel reports it "
                f"{'rotational' if rot == '1' else 'non-rotational'}, but that flag describes "
                "the emulated device: whether the host keeps the blocks on magnetic or flash "
                "media (or in a copy-on-write image with old copies) is unknown",
            )
        ]
    if rot == "1":
        return [
            Reason(
                FsReason.ROTATIONAL,
                f"{mount.source} ({name}) reports a rotational (magnetic) device: NIST SP "
                "800-88 considers one overwrite pass sufficient there",
            )
        ]
    if rot == "0":
        return [
            Reason(
                FsReason.NON_ROTATIONAL,
                f"{mount.source} ({name}) reports a non-rotational device (SSD/flash or "
                "virtual): its translation layer may keep old copies that no overwrite reaches",
            )
        ]
    return [
        Reason(
            FsReason.DEVICE_KIND_UNKNOWN,
            f"{mount.source}: whether the device is magnetic or flash cannot be determined",
        )
    ]


def _ext4_data_mode(mount: _Mount) -> str | None:
    for opt in mount.super_options:
        if opt.startswith("data="):
            return opt[5:]
    # Default modes are not listed in mountinfo; /proc/fs/ext4/<dev>/options lists all.
    dev = os.path.basename(os.path.realpath(f"/sys/dev/block/{mount.devno[0]}:{mount.devno[1]}"))
    text = _read_text(f"/proc/fs/ext4/{dev}/options")
    if text is None:
        return None
    for opt in text.split():
        if opt.startswith("data="):
            return opt[5:]
    # No data= at all: a journal shows up as /proc/fs/jbd2/<dev>-<ino>; without one
    # (mkfs -O ^has_journal) there is no journal to copy data into.
    try:
        journals = os.listdir("/proc/fs/jbd2")
    except OSError:
        return None
    if not any(j.startswith(dev + "-") for j in journals):
        return "nojournal"
    return None


def _classify(f_type: int, mount: _Mount | None) -> tuple[Verdict, list[Reason]]:
    # long: one case per filesystem, each with its verdict and coded reason
    fstype = mount.fstype if mount else _MAGIC_NAMES.get(f_type, hex(f_type))
    if f_type == _EXT_MAGIC:
        if fstype == "ext2":
            return IN_PLACE, [
                Reason(
                    FsReason.NO_JOURNAL, "ext2 has no journal: data blocks are rewritten in place"
                )
            ]
        mode = _ext4_data_mode(mount) if mount else None
        if mode == "journal":
            return NOT_IN_PLACE, [
                Reason(
                    FsReason.DATA_JOURNAL,
                    f"{fstype} is mounted with data=journal: every data write is first copied "
                    "to the journal, which keeps the old contents until the journal wraps",
                )
            ]
        if mode == "nojournal":
            return IN_PLACE, [
                Reason(
                    FsReason.NO_JOURNAL,
                    f"{fstype} without a journal: data blocks are rewritten in place",
                )
            ]
        if mode in ("ordered", "writeback"):
            return IN_PLACE, [
                Reason(
                    FsReason.DATA_ORDERED if mode == "ordered" else FsReason.DATA_WRITEBACK,
                    f"{fstype} with data={mode}: file data is rewritten in place (only "
                    "metadata goes through the journal)",
                )
            ]
        return BEST_EFFORT, [
            Reason(
                FsReason.DATA_MODE_UNKNOWN,
                f"{fstype}: the data journalling mode could not be determined",
            )
        ]
    if f_type == _XFS_MAGIC:
        return IN_PLACE, [
            Reason(
                FsReason.XFS,
                "xfs rewrites data blocks in place, except extents shared with a reflink copy",
            )
        ]
    if f_type == _BTRFS_MAGIC:
        return NOT_IN_PLACE, [
            Reason(
                FsReason.COPY_ON_WRITE,
                "btrfs is copy-on-write: an overwrite goes to new blocks and the old ones "
                "survive until reused (set NOCOW on the empty file to overwrite in place)",
            )
        ]
    if f_type == _RAMFS_MAGIC:
        return VOLATILE, [
            Reason(FsReason.RAMFS, "ramfs lives in RAM only and is never swapped out")
        ]
    if f_type == _TMPFS_MAGIC:
        return VOLATILE, [
            Reason(FsReason.TMPFS, "tmpfs lives in RAM (its pages reach disk only through swap)")
        ]
    if f_type == _OVERLAY_MAGIC:
        return NOT_IN_PLACE, [
            Reason(
                FsReason.OVERLAY,
                "overlayfs: writes go to the upper layer's filesystem, and a copy of any file "
                "that came from a lower layer survives there",
            )
        ]
    if f_type in _COW_REASONS:
        return NOT_IN_PLACE, [_COW_REASONS[f_type]]
    if f_type in _REMOTE or fstype.startswith("fuse") or fstype in _REMOTE_NAMES:
        return NOT_IN_PLACE, [
            Reason(
                FsReason.REMOTE,
                f"{fstype} stores the data elsewhere (server or user-space filesystem): how it "
                "handles an overwrite cannot be known from here",
            )
        ]
    return BEST_EFFORT, [
        Reason(
            FsReason.UNKNOWN_FS,
            f"{fstype} (f_type {f_type:#x}) is not a filesystem whose overwrite behaviour "
            "hardtemp knows: the overwrite is done but cannot be vouched for",
        )
    ]


def _base_info(fd: int, st_dev: int) -> FsInfo:
    sfs = _statfs(fd)
    f_type = sfs.f_type & 0xFFFFFFFF
    mnt_id = _mnt_id(fd)  # the unique id where the kernel has them: never a later mount's
    # fsid tells apart two filesystems that reuse one loop device and mount id in turn.
    key = (st_dev, mnt_id, f_type, sfs.f_fsid[0], sfs.f_fsid[1])
    with _cache_lock:
        _mounts_changed()
        info = _cache.get(key)
    if info is not None:
        return info
    with _cache_lock:
        # fs_info_for_fd's miss too (hardtemp check's look), not only _sb_entry's: an entry
        # made here for a mount of a namespace the watch does not poll would stay unseen.
        _follow_namespace()
        _mounts_changed()
    # mountinfo lists the old ids: this mount's, read of fd, which pins the mount (so its
    # old id cannot be freed and given to another mount meanwhile: see unique_mount_id).
    listed = _old_mnt_id(fd) if is_unique_mount_id(mnt_id) else mnt_id
    mount = _mount_entry(listed, st_dev)
    verdict, reasons = _classify(f_type, mount)
    if f_type not in (_TMPFS_MAGIC, _RAMFS_MAGIC):
        reasons += _device_reasons(mount)
    info = FsInfo(
        fstype=mount.fstype if mount else _MAGIC_NAMES.get(f_type, hex(f_type)),
        mountpoint=mount.mountpoint if mount else "",
        source=mount.source if mount else "",
        options=(mount.mount_options + mount.super_options) if mount else (),
        verdict=verdict,
        reasons=tuple(reasons),
        f_type=f_type,
        mnt_id=mnt_id,
    )
    with _cache_lock:
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[key] = info
    return info


def _swap_bytes() -> int:
    """``SwapTotal`` of ``/proc/meminfo`` in bytes: what ``psutil.swap_memory().total``
    reports, without importing psutil (46 ms, at the first close on a tmpfs of every
    process) or reading ``/proc/vmstat`` too (0.2 ms for each look, here 30 us).

    Raises:
        OSError: no ``/proc`` (``ENOENT``), or a ``meminfo`` without that line (``ENODATA``).
    """
    fd = os.open("/proc/meminfo", os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    at = data.find(b"\nSwapTotal:")
    if at < 0:
        raise OSError(errno.ENODATA, "no SwapTotal in /proc/meminfo", "/proc/meminfo")
    fields = data[at + 11 : data.find(b"\n", at + 1)].split()
    return int(fields[0]) * (1024 if fields[1:] == [b"kB"] else 1)


_monotonic = time.monotonic


def _swap_total() -> float:
    now = time.monotonic()
    if now - _swap_state[0] > _SWAP_TTL:
        _swap_state[1] = float(_swap_bytes())
        _swap_state[0] = now
    return _swap_state[1]


def _with_swap(info: FsInfo) -> FsInfo:
    if info.f_type != _TMPFS_MAGIC:
        return info
    if "noswap" in info.options:
        return dataclasses.replace(
            info,
            reasons=(
                *info.reasons,
                Reason(FsReason.NOSWAP_MOUNT, "mounted with noswap: its pages never reach swap"),
            ),
        )
    total = _swap_total()
    if total <= 0:
        return dataclasses.replace(
            info,
            reasons=(
                *info.reasons,
                Reason(FsReason.NO_SWAP, "no swap is active: the data never reached a disk"),
            ),
        )
    return dataclasses.replace(
        info,
        verdict=BEST_EFFORT,
        reasons=(
            *info.reasons,
            Reason(
                FsReason.SWAP_ACTIVE,
                f"swap is active ({int(total) // (1 << 20)} MiB): pages may have been written "
                "to swap, and an overwrite in RAM does not reach the swapped-out copy",
            ),
        ),
    )


def fs_info_for_fd(fd: int) -> FsInfo:
    """Classify the filesystem holding the open descriptor ``fd``.

    Cached per (device, mount, filesystem id); cheap enough for every file removal.

    Raises:
        OSError: ``fd`` is not an open descriptor (``fstat``/``fstatfs`` failed).
    """
    st = os.fstat(fd)
    return _with_swap(_base_info(fd, st.st_dev))


def fs_info_by_superblock(fd: int, st_dev: int) -> FsInfo:
    """:func:`fs_info_for_fd` for a descriptor whose ``st_dev`` the caller already has (a
    tree removal's top), without the ``fstat`` and a new :class:`FsInfo` per call: one
    ``statx`` for the unique mount id (Linux >= 6.8), then that mount's cached
    classification; before 6.8 one ``fstatfs``, then the superblock's (device, type,
    filesystem id: a filesystem that replaced another under the same ``st_dev`` and old
    mount id is not served the other's where type or fsid differ, even if the mount watch
    missed the change).

    Raises:
        OSError: ``fstatfs`` failed.
    """
    return _superblock_info(fd, st_dev)  # no old mount id: never the fstatfs-free lookup


def fs_info_for_path(path: str | os.PathLike[str]) -> FsInfo:
    """Classify the filesystem holding ``path`` (a file or a directory).

    The path is opened with ``O_PATH|O_NOFOLLOW`` (a final symlink is classified as
    the symlink's own directory entry, never followed) and classified by descriptor.

    Raises:
        OSError: the path cannot be opened (``FileNotFoundError``...).
    """
    # O_PATH: no read permission needed and nothing is opened for I/O (no FIFO blocking);
    # O_NOFOLLOW: a planted symlink would make us describe another filesystem.
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        return fs_info_for_fd(fd)
    finally:
        os.close(fd)


def get_file_flags(fd: int) -> int | None:
    """The inode flags of ``fd`` (FS_IOC_GETFLAGS), or ``None`` if not supported."""
    buf = bytearray(LONG_SIZE)
    try:
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf, True)
    except OSError:
        return None
    # The kernel reads and writes an int despite the ioctl's declared long.
    return int(struct.unpack_from("=i", buf)[0]) & 0xFFFFFFFF


def is_btrfs(fd: int) -> bool:
    """Whether the open ``fd`` lives on btrfs (one ``fstatfs``); False on error."""
    try:
        return bool(_statfs(fd).f_type & 0xFFFFFFFF == _BTRFS_MAGIC)
    except OSError:
        return False


def set_nocow(fd: int) -> bool:
    """Mark the still-empty file at ``fd`` NOCOW on btrfs (``chattr +C``), best effort.

    Then later overwrites land on the same blocks (unless a snapshot or reflink
    shares them). On a directory, files created in it afterwards inherit the
    flag. Returns whether the flag is now set; ``False`` on any other
    filesystem, on a non-empty file (btrfs ignores the flag then) or on failure.
    Never raises for an open descriptor.
    """
    try:
        st = os.fstat(fd)
        if not (stat.S_ISREG(st.st_mode) and st.st_size == 0) and not stat.S_ISDIR(st.st_mode):
            return False
        if _statfs(fd).f_type & 0xFFFFFFFF != _BTRFS_MAGIC:
            return False
    except OSError:
        return False
    flags = get_file_flags(fd)
    if flags is None:
        return False
    if flags & FS_NOCOW_FL:
        return True
    buf = bytearray(LONG_SIZE)
    struct.pack_into("=i", buf, 0, (flags | FS_NOCOW_FL) & 0x7FFFFFFF | (flags & 0x80000000))
    try:
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, buf)
    except OSError:
        return False
    after = get_file_flags(fd)
    return after is not None and bool(after & FS_NOCOW_FL)


def _fiemap_flags(fd: int) -> tuple[bool, bool]:
    """(any extent inline in metadata, any extent shared) for the whole file, via FIEMAP.

    Without ``FIEMAP_FLAG_SYNC``, which would write the file's dirty pages, plaintext that
    may never have reached the disk, to it first (then each close paid an ``fdatasync`` of
    the overwrite). Only what is on the disk can be shared or inline in the metadata: the
    callers overwrite in the page cache and ask :func:`data_on_disk` afterwards, and data
    written back meanwhile takes the general way, which classifies the file again."""
    inline = shared = False
    start = 0
    size = FIEMAP_HEADER.size + _FIEMAP_BATCH * FIEMAP_EXTENT.size
    while True:
        buf = bytearray(size)
        FIEMAP_HEADER.pack_into(
            buf,
            0,
            start,
            0xFFFFFFFFFFFFFFFF - start,
            0,
            0,
            _FIEMAP_BATCH,
            0,
        )
        fcntl.ioctl(fd, FS_IOC_FIEMAP, buf, True)
        mapped = FIEMAP_HEADER.unpack_from(buf, 0)[3]
        if mapped == 0:
            return inline, shared
        last = False
        end = start
        for i in range(mapped):
            ext = FIEMAP_EXTENT.unpack_from(buf, FIEMAP_HEADER.size + i * FIEMAP_EXTENT.size)
            logical, length, flags = ext[0], ext[2], ext[5]
            inline = inline or bool(flags & _FIEMAP_EXTENT_DATA_INLINE)
            shared = shared or bool(flags & _FIEMAP_EXTENT_SHARED)
            last = last or bool(flags & _FIEMAP_EXTENT_LAST)
            end = max(end, logical + length)
        if last or end <= start:
            return inline, shared
        start = end


def _xfs_file_info(fd: int, info: FsInfo) -> FsInfo:
    """:func:`file_info_for_fd` on xfs: "in place" unless an extent is shared (reflink).
    A reflink copy made between this look and the overwrite is not seen (SECURITY.md)."""
    try:
        shared = _fiemap_flags(fd)[1]  # a shared extent is on the disk: no sync needed
    except OSError as exc:
        why = f"xfs: whether the file's extents are shared with a reflink copy is unknown ({exc})"
        return dataclasses.replace(
            info,
            verdict=BEST_EFFORT,
            reasons=(Reason(FsReason.SHARED_UNCHECKED, why), *info.reasons),
        )
    if not shared:
        return info
    why = (
        "xfs: the file's extents are shared with a reflink copy: an overwrite goes to new "
        "blocks and the shared ones keep the data"
    )
    return dataclasses.replace(
        info, verdict=NOT_IN_PLACE, reasons=(Reason(FsReason.SHARED_EXTENTS, why), *info.reasons)
    )


def file_info_for_fd(fd: int, st: os.stat_result | None = None, *, mnt_id: int = -1) -> FsInfo:
    """Classify one regular file: its filesystem's verdict refined by the file's own flags.

    * ext3/ext4: a file with the journal-data flag (``chattr +j``) or with its data
      inline in the inode goes through the journal: ``"not in place"``.
    * btrfs: a NOCOW file is ``"in place"``, unless FIEMAP shows data inline in the
      metadata tree or extents shared with a snapshot or reflink (both copy-on-write).
      Snapshots taken *later* than this check still force a copy: said in the reasons.
    * xfs: a file whose extents FIEMAP shows shared with a reflink copy (``cp
      --reflink``) is ``"not in place"``: xfs writes an overwrite of a shared block to a
      new one, and the shared block keeps the data; ``"best effort"`` if FIEMAP fails.

    ``mnt_id``: the mount the caller reached ``fd``'s inode through (a ``statx`` of its
    name), if known: the filesystem is then looked up by mount, without an ``fstatfs``.

    Raises:
        OSError: ``fd`` is not an open descriptor.
    """
    if st is None:
        st = os.fstat(fd)
    return refine_for_file(fd, _superblock_info(fd, st.st_dev, mnt_id))


def refine_for_file(fd: int, info: FsInfo) -> FsInfo:
    # long: one early return per file flag, each with its own verdict and reason
    """:func:`file_info_for_fd` for a file whose filesystem's :class:`FsInfo` the caller
    has (a tree's files, each checked to be on the tree's mount): its own flags and extents
    applied to ``info``, by the rules listed there.

    Raises:
        OSError: ``fd`` is not an open descriptor (only where a flag is read and that read
            fails otherwise than "not supported").
    """
    if info.f_type == _EXT_MAGIC and info.fstype != "ext2":
        flags = get_file_flags(fd)
        if flags is not None and flags & FS_JOURNAL_DATA_FL:
            return dataclasses.replace(
                info,
                verdict=NOT_IN_PLACE,
                reasons=(
                    Reason(
                        FsReason.JOURNAL_DATA_FLAG,
                        "the file has the journal-data flag (chattr +j): its data is "
                        "copied to the journal",
                    ),
                    *info.reasons,
                ),
            )
        if flags is not None and flags & FS_INLINE_DATA_FL:
            return dataclasses.replace(
                info,
                verdict=NOT_IN_PLACE,
                reasons=(
                    Reason(
                        FsReason.INLINE_DATA,
                        "the file's data is stored inline in its inode, which is written "
                        "through the journal",
                    ),
                    *info.reasons,
                ),
            )
    elif info.f_type == _XFS_MAGIC:
        return _xfs_file_info(fd, info)
    elif info.f_type == _BTRFS_MAGIC:
        flags = get_file_flags(fd)
        if flags is not None and flags & FS_NOCOW_FL:
            try:
                inline, shared = _fiemap_flags(fd)
            except OSError as exc:
                return dataclasses.replace(
                    info,
                    verdict=BEST_EFFORT,
                    reasons=(
                        Reason(
                            FsReason.NOCOW_UNCHECKED,
                            f"the file is NOCOW but its extents could not be checked ({exc})",
                        ),
                        *info.reasons[1:],
                    ),
                )
            if inline:
                return dataclasses.replace(
                    info,
                    reasons=(
                        Reason(
                            FsReason.NOCOW_INLINE,
                            "the file is NOCOW, but its data is inline in the btrfs metadata "
                            "tree, which is always copy-on-write",
                        ),
                        *info.reasons[1:],
                    ),
                )
            if shared:
                return dataclasses.replace(
                    info,
                    reasons=(
                        Reason(
                            FsReason.NOCOW_SHARED,
                            "the file is NOCOW, but its extents are shared with a snapshot or "
                            "reflink copy, so the overwrite is copied",
                        ),
                        *info.reasons[1:],
                    ),
                )
            return dataclasses.replace(
                info,
                verdict=IN_PLACE,
                reasons=(
                    Reason(
                        FsReason.NOCOW_IN_PLACE,
                        "btrfs file marked NOCOW with unshared extents: the overwrite lands on "
                        "the same blocks (a snapshot taken earlier than the data, or between "
                        "write and wipe, would still force a copy)",
                    ),
                    *info.reasons[1:],
                ),
            )
    return info


def _superblock_info(fd: int, st_dev: int, mnt_id: int = -1) -> FsInfo:
    """:func:`fs_info_for_fd` for the removal hot path: one ``poll``, and one ``fstatfs``
    where the file's mount is not found by its id.

    Cached by mount (id, ``st_dev``) for a mount in our mount table, and per superblock
    (device, type, filesystem id) for the others: everything the verdict depends on
    (type, data journalling mode, device) belongs to the superblock; only
    ``mountpoint``/mount options may name another bind mount of it. A remount or
    (re)mount anywhere in our mount namespace clears the caches (:class:`_MountWatch`).
    A unique mount id (Linux >= 6.8) is never another mount's; before 6.8, a device
    number is only reused once the filesystem that had it is gone, and fsid tells two
    such filesystems apart where it differs.

    ``mnt_id`` (>= 0): the mount the file was reached through; a mount seen in our mount
    table since the last change is looked up by its id, without the ``fstatfs``. None given:
    the descriptor's unique mount id (one ``statx`` in place of that ``fstatfs``), where the
    kernel has them (Linux >= 6.8).
    """
    if mnt_id >= 0 and _linux_mod._statx is None:
        # statx switched off (one thread's seccomp filter): the caller's id is an old,
        # reusable one (fdinfo); the descriptor's unique id, asked anyway, is not (review10).
        mnt_id = -1
    if mnt_id < 0:
        # Never served by superblock alone where a unique id tells the mount: an ext4
        # mounted data=journal on the device of a data=ordered one has its st_dev, type and
        # fsid, and the watch that would tell them apart can be blinded (review7).
        mnt_id = _unique_mnt_id(fd)
    with _cache_lock:
        if _watch.changed():  # _mounts_changed() inline: every plain file's close asks it
            _forget_all()
        # No mount known: by fstatfs below (never by st_dev alone, see _mnt_cache).
        entry = _mnt_cache.get((mnt_id, st_dev)) if mnt_id >= 0 else None
    if entry is None:
        entry = _sb_entry(fd, st_dev, mnt_id)
    if entry.base.f_type != _TMPFS_MAGIC:
        return entry.base
    total = -1.0  # noswap: as with no swap at all
    if entry.swappable:
        # _swap_total() inline (every plain temp file's close on tmpfs asks it).
        now = _monotonic()
        total = _swap_state[1] if now - _swap_state[0] <= _SWAP_TTL else _swap_total()
    swapped = entry.swapped
    if swapped is None or entry.total != total:
        # Rebuilt only when swap appears or goes (the swap total is itself reused 2 s).
        swapped = _with_swap(entry.base)
        entry.swapped, entry.total = swapped, total
    return swapped


#: :func:`_superblock_info` for other modules (a tree removal's lookup by the unique mount id
#: its top's ``statx`` read): the same function, no wrapper call on the hot path.
superblock_info = _superblock_info


def _sb_entry(fd: int, st_dev: int, mnt_id: int) -> _SbEntry:
    """The superblock's cache entry, by ``fstatfs``; remembered by ``mnt_id`` too when that
    mount is in our mount table (its classification found it there, by that very id). An
    entry made through another mount is made again through this one (``mnt_id`` given)."""
    sfs = _statfs(fd)
    key = (st_dev, sfs.f_type & 0xFFFFFFFF, sfs.f_fsid[0], sfs.f_fsid[1])
    with _cache_lock:
        _follow_namespace()
        _mounts_changed()
        entry = _sb_cache.get(key)
    if entry is not None and (mnt_id < 0 or entry.base.mnt_id == mnt_id):
        base = entry.base
    else:
        # None, or made through another mount: a bind mount of this superblock, or (a change
        # the watch missed) of a superblock gone since, whose st_dev, type and fsid this one
        # took (ext4 data=journal on the device of a data=ordered one): classified through
        # this mount, it replaces that entry, so no mount is served another one's.
        base = _base_info(fd, st_dev)
        if entry is None or entry.base != base:
            entry = _SbEntry(base)
            with _cache_lock:
                if len(_sb_cache) >= _CACHE_MAX:
                    _sb_cache.clear()
                _sb_cache[key] = entry
    # Only a mount found in our table by this id: one elsewhere (a descriptor from another
    # mount namespace) could go away, and its old id be reused, unseen by our poll.
    if mnt_id >= 0 and base.mnt_id == mnt_id and base.mountpoint:
        with _cache_lock:
            if len(_mnt_cache) >= _CACHE_MAX:
                _mnt_cache.clear()
            _mnt_cache[(mnt_id, st_dev)] = entry
    return entry


# Filesystems whose FIEMAP reports delayed allocation (FIEMAP_EXTENT_DELALLOC) and
# allocates a block before any data goes to it: ext4 (also for ext2/3 images), xfs, btrfs.
_DELALLOC_FS = frozenset({_EXT_MAGIC, _XFS_MAGIC, _BTRFS_MAGIC})


def data_on_disk(fd: int, f_type: int) -> bool:
    """Whether any of the file's data may have been written to the disk already.

    ``False`` only when ``f_type`` (from :class:`FsInfo`) is ext2/3/4, xfs or btrfs
    and FIEMAP lists no extent other than delayed-allocation ones (or none): then no
    block was ever allocated to the data, so none of it is on the disk (writeback
    allocates the block before it writes; an ``fsync``, ``sync_file_range``, a
    ``sync`` by anyone, or the flusher thread all go through that allocation).
    FIEMAP is called *without* ``FIEMAP_FLAG_SYNC``, which would itself force the
    data out. ``True`` on any other filesystem, and whenever FIEMAP fails.

    The answer is only good for the moment it is given: writeback may start right
    after. Callers overwrite in the page cache first and ask afterwards, so that
    whatever writeback writes from then on is the overwrite.

    Never raises.
    """
    if f_type not in _DELALLOC_FS:
        return True
    start = 0
    size = FIEMAP_HEADER.size + _FIEMAP_BATCH * FIEMAP_EXTENT.size
    while True:
        buf = bytearray(size)
        FIEMAP_HEADER.pack_into(buf, 0, start, 0xFFFFFFFFFFFFFFFF - start, 0, 0, _FIEMAP_BATCH, 0)
        try:
            fcntl.ioctl(fd, FS_IOC_FIEMAP, buf, True)
        except OSError:
            return True  # cannot tell: assume it is on the disk
        mapped = FIEMAP_HEADER.unpack_from(buf, 0)[3]
        if mapped == 0:
            return False
        end = start
        for i in range(mapped):
            ext = FIEMAP_EXTENT.unpack_from(buf, FIEMAP_HEADER.size + i * FIEMAP_EXTENT.size)
            logical, length, flags = ext[0], ext[2], ext[5]
            if not flags & _FIEMAP_EXTENT_DELALLOC:
                return True  # a real (or inline, or unwritten) extent: blocks were allocated
            if flags & _FIEMAP_EXTENT_LAST:
                return False
            end = max(end, logical + length)
        if end <= start:
            return True  # pragma: no cover - defensive: never loop on a confused answer
        start = end
