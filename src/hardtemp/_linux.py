"""The one door to Linux system calls that Python's :mod:`os` lacks.

Invariants:

* libc is loaded once, here; no other module uses :mod:`ctypes` for a system call.
* Every wrapper retries ``EINTR`` and raises :class:`OSError` with the real ``errno``;
  none returns a C error code.
* :func:`rename_noreplace` is the one no-clobber rename: ``renameat2(RENAME_NOREPLACE)``,
  or where the kernel, filesystem or libc lacks it, ``link()`` + ``unlink()`` (which never
  replaces an existing name either). It never falls back to a rename that can clobber.
* :func:`statx` is called with ``AT_SYMLINK_NOFOLLOW`` (and ``AT_EMPTY_PATH`` for a
  descriptor): it never follows a symlink.
* Every mount id a helper here returns is one kind per process: the mount's unique id
  (``STATX_MNT_ID_UNIQUE``, Linux >= 6.8: never reused until reboot) wherever the kernel has
  it, else the old, reusable one (``STATX_MNT_ID``, ``/proc/self/fdinfo``). The two ranges
  never overlap, so an old and a unique id never compare equal. Only
  :func:`old_mount_id` gives the old id of a mount whose unique id is known: the one that
  ``/proc/self/mountinfo`` lists.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "AT_FDCWD",
    "AT_SYMLINK_NOFOLLOW",
    "FIEMAP_EXTENT",
    "FIEMAP_HEADER",
    "FS_IOC_FIEMAP",
    "FS_IOC_GETFLAGS",
    "FS_IOC_SETFLAGS",
    "LONG_SIZE",
    "StatFs",
    "Statx",
    "StatxFd",
    "StatxFields",
    "StatxReader",
    "birth_ident",
    "birth_ns",
    "dir_statx",
    "fdinfo",
    "fdinfo_mount_id",
    "fstatfs",
    "has_statx",
    "is_unique_mount_id",
    "mlock",
    "mount_id",
    "mount_id_at",
    "mount_of",
    "mount_root_at",
    "old_mount_id",
    "rename_noreplace",
    "statx",
    "statx_anyway",
    "statx_buf",
    "statx_fd",
    "statx_raw",
    "statx_struct",
    "sync_file_range",
    "unique_mount_id",
]

_libc = ctypes.CDLL(None, use_errno=True)

AT_FDCWD = -100
_AT_SYMLINK_NOFOLLOW = 0x100
AT_SYMLINK_NOFOLLOW = _AT_SYMLINK_NOFOLLOW  # for statx_buf callers elsewhere
_AT_EMPTY_PATH = 0x1000
AT_EMPTY_PATH = _AT_EMPTY_PATH  # for statx_raw callers elsewhere (an open descriptor itself)
_RENAME_NOREPLACE = 1

# ioctl numbers: _IOR('f', 1, long), _IOW('f', 2, long), _IOWR('f', 11, struct fiemap).
LONG_SIZE = struct.calcsize("l")
FS_IOC_GETFLAGS = (2 << 30) | (LONG_SIZE << 16) | (ord("f") << 8) | 1
FS_IOC_SETFLAGS = (1 << 30) | (LONG_SIZE << 16) | (ord("f") << 8) | 2
FIEMAP_HEADER = struct.Struct("=QQIIII")  # fm_start, fm_length, flags, mapped, count, reserved
FIEMAP_EXTENT = struct.Struct("=QQQQQIIII")  # logical, physical, length, 2 reserved, flags, 3 rsv
FS_IOC_FIEMAP = (3 << 30) | (FIEMAP_HEADER.size << 16) | (ord("f") << 8) | 11


def _raise_errno(filename: str | None = None) -> None:
    err = ctypes.get_errno()
    raise OSError(err, os.strerror(err), filename)


# --- mlock ------------------------------------------------------------------------------------

_mlock = _libc.mlock
_mlock.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_mlock.restype = ctypes.c_int


def mlock(address: int, length: int) -> None:
    """Lock ``length`` bytes at ``address`` in RAM (never swapped out).

    Raises:
        OSError: ``ENOMEM``/``EPERM`` past ``RLIMIT_MEMLOCK``, ``EAGAIN``.
    """
    while _mlock(address, length) != 0:
        if ctypes.get_errno() != errno.EINTR:
            _raise_errno()


# --- renameat2 -------------------------------------------------------------------------------

_renameat2 = getattr(_libc, "renameat2", None)  # glibc >= 2.28
if _renameat2 is not None:
    _renameat2.argtypes = (
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    )
    _renameat2.restype = ctypes.c_int


def rename_noreplace(
    src_dir_fd: int, src: str, dst_dir_fd: int, dst: str, *, unguessable: bool = False
) -> None:
    """Move ``src`` (relative to ``src_dir_fd``) to ``dst`` (relative to ``dst_dir_fd``,
    or :data:`AT_FDCWD`), never replacing an existing ``dst``.

    Where ``RENAME_NOREPLACE`` is missing (glibc < 2.28, some filesystems), ``link()`` +
    ``unlink()`` is used: never clobbering, but not atomic. ``unguessable=True`` says
    ``dst`` is a fresh random name (>= 96 bits) in ``src``'s own directory: then a plain
    rename is used instead, atomic, since such a name cannot pre-exist; this avoids
    link+unlink's window in which a name swapped in for ``src`` would be unlinked.

    Raises:
        FileExistsError: ``dst`` exists (nothing changed).
        OSError: the rename (or, without ``RENAME_NOREPLACE``, the link or unlink) failed;
            a directory on a filesystem without ``RENAME_NOREPLACE`` raises the
            ``EINVAL``/``ENOSYS`` met (it cannot be hard-linked).
    """
    if _renameat2 is not None:
        while True:
            # RENAME_NOREPLACE: atomic; the kernel refuses if dst exists.
            ret = _renameat2(
                src_dir_fd, os.fsencode(src), dst_dir_fd, os.fsencode(dst), _RENAME_NOREPLACE
            )
            if ret == 0:
                return
            err = ctypes.get_errno()
            if err != errno.EINTR:
                break
        if err not in (errno.EINVAL, errno.ENOSYS):  # fs without RENAME_NOREPLACE: fall back
            raise OSError(err, os.strerror(err), dst)
    if unguessable:
        # No one can have created a random 96-bit name first: a plain rename cannot clobber.
        os.rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
        return
    # link() never replaces an existing name (a plain rename would); then drop the old one.
    os.link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, follow_symlinks=False)
    os.unlink(src, dir_fd=src_dir_fd)


# --- fstatfs ---------------------------------------------------------------------------------


class StatFs(ctypes.Structure):
    """glibc's ``struct statfs`` on Linux."""

    # Every field is one machine word (__fsword_t / fsblkcnt_t / fsfilcnt_t) except
    # f_fsid (two ints); generous spare space follows.
    _fields_ = (
        ("f_type", ctypes.c_long),
        ("f_bsize", ctypes.c_long),
        ("f_blocks", ctypes.c_ulong),
        ("f_bfree", ctypes.c_ulong),
        ("f_bavail", ctypes.c_ulong),
        ("f_files", ctypes.c_ulong),
        ("f_ffree", ctypes.c_ulong),
        ("f_fsid", ctypes.c_int * 2),
        ("f_namelen", ctypes.c_long),
        ("f_frsize", ctypes.c_long),
        ("f_flags", ctypes.c_long),
        ("f_spare", ctypes.c_long * 8),
    )


_fstatfs = _libc.fstatfs
_fstatfs.argtypes = (ctypes.c_int, ctypes.POINTER(StatFs))
_fstatfs.restype = ctypes.c_int


def fstatfs(fd: int) -> StatFs:
    """``fstatfs(fd)``. Raises OSError (EBADF...)."""
    buf = StatFs()
    while _fstatfs(fd, ctypes.byref(buf)) != 0:
        if ctypes.get_errno() != errno.EINTR:
            _raise_errno()
    return buf


# --- sync_file_range -------------------------------------------------------------------------

SYNC_FILE_RANGE_WAIT_BEFORE = 1
SYNC_FILE_RANGE_WRITE = 2
SYNC_FILE_RANGE_WAIT_AFTER = 4
_sync_file_range = getattr(_libc, "sync_file_range", None)
if _sync_file_range is not None:
    _sync_file_range.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    _sync_file_range.restype = ctypes.c_int


def sync_file_range(fd: int, flags: int) -> None:
    """``sync_file_range(fd, 0, 0, flags)``: start (``SYNC_FILE_RANGE_WRITE``) and/or wait
    for (``WAIT_BEFORE``/``WAIT_AFTER``) the writeback of the whole file's dirty pages. It
    flushes no device cache and no metadata: an ``fdatasync`` does that.

    Raises:
        OSError: EIO, EBADF...; ``ENOSYS`` without it in libc.
    """
    if _sync_file_range is None:
        raise OSError(errno.ENOSYS, "sync_file_range is not available in this libc")
    while _sync_file_range(fd, 0, 0, flags) != 0:
        if ctypes.get_errno() != errno.EINTR:
            _raise_errno()


# --- statx -----------------------------------------------------------------------------------

STATX_BASIC_STATS = 0x07FF
STATX_BTIME = 0x0800
STATX_MNT_ID = 0x1000
# Linux >= 6.8: stx_mnt_id is the mount's 64-bit id, never reused until reboot (the old one is
# reused as soon as its mount is freed: a later mount could be taken for a classified one).
# Asked together with STATX_MNT_ID, the kernel answers the unique one (a kernel before 6.8
# ignores the bit and answers the old one): stx_mask then has this bit instead.
STATX_MNT_ID_UNIQUE = 0x4000
#: The ``stx_mask`` bits that say ``stx_mnt_id`` is filled in (with either kind of id).
STATX_MNT_ID_ANY = STATX_MNT_ID | STATX_MNT_ID_UNIQUE
#: Set to "1", this process asks for the old ids only, as on a kernel before 6.8 (read once,
#: here): what the tests of that fallback do. Nothing else reads it.
OLD_MOUNT_IDS_ENV = "HARDTEMP_TEST_OLD_MOUNT_IDS"
_OLD_IDS_ONLY = os.environ.get(OLD_MOUNT_IDS_ENV) == "1"
#: What every statx here asks for a mount id with: the unique one where the kernel has it.
MNT_ID_MASK = STATX_MNT_ID if _OLD_IDS_ONLY else STATX_MNT_ID_ANY
# Old ids are at most INT_MAX (fs/namespace.c mnt_alloc_id: XA_LIMIT(1, INT_MAX)); unique ones
# start above MNT_UNIQUE_ID_OFFSET, 1 << 31 (1 << 32 in 6.8): "Don't allow confusion with old
# 32bit mount ID". statmount(2) and listmount(2) refuse any id at or below it as no unique id.
_OLD_ID_MAX = (1 << 31) - 1
STATX_ATTR_MOUNT_ROOT = 0x2000  # stx_attributes: the object is the root of a mount (Linux >= 5.8)


class _Timestamp(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_uint32), ("_r", ctypes.c_int32))


class _StatxBuf(ctypes.Structure):
    # struct statx (linux/stat.h), 256 bytes.
    _fields_ = (
        ("stx_mask", ctypes.c_uint32),
        ("stx_blksize", ctypes.c_uint32),
        ("stx_attributes", ctypes.c_uint64),
        ("stx_nlink", ctypes.c_uint32),
        ("stx_uid", ctypes.c_uint32),
        ("stx_gid", ctypes.c_uint32),
        ("stx_mode", ctypes.c_uint16),
        ("_spare0", ctypes.c_uint16),
        ("stx_ino", ctypes.c_uint64),
        ("stx_size", ctypes.c_uint64),
        ("stx_blocks", ctypes.c_uint64),
        ("stx_attributes_mask", ctypes.c_uint64),
        ("stx_atime", _Timestamp),
        ("stx_btime", _Timestamp),
        ("stx_ctime", _Timestamp),
        ("stx_mtime", _Timestamp),
        ("stx_rdev_major", ctypes.c_uint32),
        ("stx_rdev_minor", ctypes.c_uint32),
        ("stx_dev_major", ctypes.c_uint32),
        ("stx_dev_minor", ctypes.c_uint32),
        ("stx_mnt_id", ctypes.c_uint64),
        ("_spare2", ctypes.c_uint64 * 14),
    )


_statx = getattr(_libc, "statx", None)  # glibc >= 2.28
if _statx is not None:
    _statx.argtypes = (
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_StatxBuf),
    )
    _statx.restype = ctypes.c_int


@dataclass(frozen=True)
class Statx:
    """What :func:`statx` returns: ``mnt_id`` is -1 and ``btime`` None when unknown."""

    mode: int
    ino: int
    dev: int
    nlink: int
    uid: int
    size: int
    mnt_id: int
    btime: float | None


def statx(dir_fd: int, name: str = "") -> Statx:
    """``statx`` of ``name`` relative to ``dir_fd`` (of ``dir_fd`` itself if ``name`` is "").

    Never follows a symlink. ``mnt_id`` comes from ``statx`` (the unique id on Linux >= 6.8,
    the old one from 5.8), else from ``/proc/self/fdinfo`` when ``name`` is "" (-1 if
    neither is available).

    Raises:
        OSError: the lookup failed (ENOENT, EBADF...); ``ENOSYS`` without statx in libc.
    """
    flags = _AT_SYMLINK_NOFOLLOW | (_AT_EMPTY_PATH if not name else 0)
    mask = STATX_BASIC_STATS | STATX_BTIME | MNT_ID_MASK
    buf = statx_buf(dir_fd, os.fsencode(name), flags, mask, name or None)
    if buf.stx_mask & STATX_MNT_ID_ANY:
        mnt_id = int(buf.stx_mnt_id)
    else:
        mnt_id = fdinfo_mount_id(dir_fd) if not name else -1
    btime = None
    if buf.stx_mask & STATX_BTIME:
        btime = buf.stx_btime.tv_sec + buf.stx_btime.tv_nsec / 1e9
    return Statx(
        mode=int(buf.stx_mode),
        ino=int(buf.stx_ino),
        dev=os.makedev(buf.stx_dev_major, buf.stx_dev_minor),
        nlink=int(buf.stx_nlink),
        uid=int(buf.stx_uid),
        size=int(buf.stx_size),
        mnt_id=mnt_id,
        btime=btime,
    )


def has_statx() -> bool:
    """Whether libc has ``statx`` (glibc >= 2.28)."""
    return _statx is not None


def statx_buf(dir_fd: int, name: bytes, flags: int, mask: int, shown: str | None) -> _StatxBuf:
    """The raw ``struct statx`` of ``name`` relative to ``dir_fd`` (``EINTR`` retried): every
    ``statx`` here is this one loop; ``shown`` is the name an error carries.

    Raises:
        OSError: the lookup failed (ENOENT, EBADF...); ``ENOSYS`` without statx in libc.
    """
    if _statx is None:
        raise OSError(errno.ENOSYS, "statx is not available in this libc")
    buf = _StatxBuf()
    ref = ctypes.byref(buf)
    while _statx(dir_fd, name, flags, mask, ref) != 0:
        err = ctypes.get_errno()
        if err in _REFUSED and _thread_refuses():
            # A filter installed since this module loaded (filters are per thread): the
            # fallbacks from now on, everywhere but the sweep mark's birth time
            # (statx_anyway), which must match a sweeper's. Asked again on descriptor -1
            # first: a FUSE filesystem (another user's) that answers EPERM for its own file
            # must not switch statx off for the whole process.
            _refused()
            raise OSError(errno.ENOSYS, "statx is refused here", shown)
        if err != errno.EINTR:
            raise OSError(err, os.strerror(err), shown)
    return buf


#: What statx fails with where the kernel refuses it: ENOSYS (before Linux 4.11) or a
#: seccomp filter's EPERM (container profiles written before statx existed said EPERM).
_REFUSED = (errno.ENOSYS, errno.EPERM)


def _refused() -> None:
    """statx was refused (:data:`_REFUSED`): every caller takes its fallback from now on
    (``fstat``, ``lstat``, ``/proc/self/fdinfo``), as without statx in libc; only
    :func:`statx_anyway` still asks."""
    global _statx, _lean_statx
    _statx = _lean_statx = None


def statx_anyway(fd: int, mask: int) -> bytes:
    """The ``struct statx`` of the open ``fd`` (``AT_EMPTY_PATH``, never following), asked
    even after a refusal switched statx off (:func:`_refused`): for what must be the same as
    another process's statx of the same inode (the sweep mark's birth time). One thread's
    seccomp filter would otherwise make every later mark of the process one no sweeper
    verifies (review9).

    Raises:
        OSError: refused here too (``ENOSYS``, ``EPERM``), or ``EBADF``...
    """
    if _libc_statx is None:
        raise OSError(errno.ENOSYS, "statx is not available here")
    buf = _StatxBuf()
    ref = ctypes.byref(buf)
    while _libc_statx(fd, b"", _AT_SYMLINK_NOFOLLOW | _AT_EMPTY_PATH, mask, ref) != 0:
        if ctypes.get_errno() != errno.EINTR:
            _raise_errno()
    return bytes(buf)


_free_bufs: list[ctypes.Array[ctypes.c_char]] = []  # statx_raw's buffers not in use now


def statx_raw(dir_fd: int, name: bytes, flags: int, mask: int, shown: str | None) -> bytes:
    """:func:`statx_buf`'s ``struct statx`` as bytes (unpack with :mod:`struct`), at half
    its cost: no ``argtypes`` conversion or ``errno`` swap, and no new ctypes buffer per
    call. Each buffer is taken off a free list for the one call and put back after its
    bytes are copied out, so two threads, or a signal handler or finalizer running in the
    middle of a call (a file closed by the garbage collector), never share one.

    Raises: as :func:`statx_buf` (a failure is asked again through it, for its errno).
    """
    if _statx is None or _lean_statx is None:
        return bytes(statx_buf(dir_fd, name, flags, mask, shown))  # ENOSYS without statx
    try:
        buf = _free_bufs.pop()  # atomic: no other caller can get the same buffer
    except IndexError:
        buf = ctypes.create_string_buffer(ctypes.sizeof(_StatxBuf))
    try:
        if _lean_statx(dir_fd, name, flags, mask, buf) != 0:
            return bytes(statx_buf(dir_fd, name, flags, mask, shown))  # raises (EINTR retried)
        return buf.raw
    finally:
        if len(_free_bufs) < 8:  # bounded: as many as calls ever ran at once
            _free_bufs.append(buf)


def statx_struct(raw: bytes) -> _StatxBuf:
    """The ``struct statx`` of :func:`statx_raw`'s bytes, for code that reads its fields."""
    return _StatxBuf.from_buffer_copy(raw)


def birth_ident(fd: int) -> tuple[int, int, float | None]:
    """``(st_dev, st_ino, birth time or None)`` of the open ``fd`` in one ``statx``: the
    same values as :func:`statx` gives, without building a :class:`Statx` (every
    ``NamedTemporaryFile``'s sweep mark asks it).

    Raises:
        OSError: EBADF...; ``ENOSYS`` without statx in libc.
    """
    buf = statx_raw(fd, b"", _FD_FLAGS, STATX_BASIC_STATS | STATX_BTIME, None)
    # One unpack of the five fields (ctypes reads them one by one, btime's two through a
    # nested structure built for each read): half of this function's cost.
    mask, ino, sec, nsec, major, minor = _BIRTH_FIELDS(buf)
    btime = sec + nsec / 1e9 if mask & STATX_BTIME else None
    return os.makedev(major, minor), ino, btime


def birth_ns(fd: int) -> tuple[int, int, int | None]:
    """:func:`birth_ident` with the birth time in whole nanoseconds (exact, and an int is
    formatted at a fraction of a float's ``repr``: every sweep mark names it).

    Raises: as :func:`birth_ident`.
    """
    buf = statx_raw(fd, b"", _FD_FLAGS, STATX_BASIC_STATS | STATX_BTIME, None)
    mask, ino, sec, nsec, major, minor = _BIRTH_FIELDS(buf)
    born = sec * 1_000_000_000 + nsec if mask & STATX_BTIME else None
    return os.makedev(major, minor), ino, born


# struct statx: stx_mask (0), stx_ino (32), stx_btime's tv_sec and tv_nsec (80),
# stx_dev_major and stx_dev_minor (136).
_BIRTH_FIELDS = struct.Struct("=I28xQ40xqI44xII").unpack_from


def dir_statx(fd: int) -> tuple[int, int, int, int, float | None, int]:
    """``(st_dev, st_ino, st_mode, st_uid, birth time or None, mount id or -1)`` of the open
    ``fd`` in one ``statx`` (each directory of a tree removal: its ``fstat`` and the statx of
    its mount and birth were two calls); -1 when the kernel does not report the mount id.

    Raises:
        OSError: EBADF...; ``ENOSYS`` without statx in libc.
    """
    buf = statx_raw(fd, b"", _FD_FLAGS, STATX_BASIC_STATS | STATX_BTIME | MNT_ID_MASK, None)
    mask, uid, mode, ino, sec, nsec, major, minor, mnt = _DIR_FIELDS(buf)
    btime = sec + nsec / 1e9 if mask & STATX_BTIME else None
    mnt_id = mnt if mask & STATX_MNT_ID_ANY else -1
    return os.makedev(major, minor), ino, mode, uid, btime, mnt_id


# struct statx: stx_mask (0), stx_uid (20), stx_mode (28), stx_ino (32), stx_btime's tv_sec
# and tv_nsec (80), stx_dev_major and stx_dev_minor (136), stx_mnt_id (144).
_DIR_FIELDS = struct.Struct("=I16xI4xH2xQ40xqI44xIIQ").unpack_from


class StatxFd(NamedTuple):
    """What :func:`statx_fd` returns: ``mnt_id`` is -1 when the kernel does not say."""

    mode: int
    uid: int
    nlink: int
    size: int
    blocks: int
    blksize: int
    mnt_id: int


def statx_fd(fd: int) -> StatxFd:
    """One ``statx`` of the open ``fd``: its type, owner, links, size and mount id at once
    (the tree removal's per-file check; :func:`statx` also reads btime and falls back to
    ``/proc`` for the mount id, which this hot path leaves to its caller).

    Raises:
        OSError: EBADF...; ``ENOSYS`` without statx in libc.
    """
    buf = statx_buf(fd, b"", _FD_FLAGS, _FD_MASK, None)
    return StatxFd(
        buf.stx_mode,
        buf.stx_uid,
        buf.stx_nlink,
        buf.stx_size,
        buf.stx_blocks,
        buf.stx_blksize,
        buf.stx_mnt_id if buf.stx_mask & STATX_MNT_ID_ANY else -1,
    )


_FD_FLAGS = _AT_SYMLINK_NOFOLLOW | _AT_EMPTY_PATH
_FD_MASK = STATX_BASIC_STATS | MNT_ID_MASK

# The same statx without argtypes or errno bookkeeping (half the ctypes cost of _statx):
# a writable char buffer passes as a pointer, Python ints as C ints; errors go to statx_fd.
_lean_statx = getattr(ctypes.CDLL(None), "statx", None)


def _thread_refuses() -> bool:
    """Whether the kernel or a seccomp filter refuses statx in this thread (filters are per
    thread): one call on descriptor -1, which no filesystem answers (the kernel says
    ``EBADF``), so an ``EPERM`` or ``ENOSYS`` there is the refusal's, never a file's."""
    statx = _libc_statx
    if statx is None:
        return False
    buf = _StatxBuf()
    if statx(-1, b"", _AT_EMPTY_PATH, STATX_BASIC_STATS, ctypes.byref(buf)) == 0:
        return False
    return ctypes.get_errno() in _REFUSED


# libc's statx whatever the probe says: the probe runs in the importing thread, whose own
# seccomp filter (filters are per thread) says nothing of the others (review9).
_libc_statx = _statx


# Refused when this module loads: a close that asked statx there would raise instead of
# taking the fallbacks (review9).
if _thread_refuses():
    _refused()
# struct statx: mask, blksize, (attributes), nlink, uid, (gid), mode, (spare, ino), size,
# blocks, (attributes_mask, four timestamps, rdev, dev), mnt_id.
_LEAN_FIELDS = struct.Struct("=II8xII4xH2x8xQQ88xQ")


#: :class:`StatxReader`'s answer: :class:`StatxFd`'s fields as a plain tuple, in its order.
StatxFields = tuple[int, int, int, int, int, int, int]


class StatxReader:
    """:func:`statx_fd` for a hot loop in one thread (a tree removal's per-file check):
    one buffer reused, no ``errno`` swap per call; the same values, the same errors, as a
    plain tuple (building a :class:`StatxFd` cost a fifth of that check's instructions)."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = ctypes.create_string_buffer(ctypes.sizeof(_StatxBuf))

    def read(self, fd: int) -> StatxFields:
        """As :func:`statx_fd`: ``(mode, uid, nlink, size, blocks, blksize, mnt_id)`` (not
        thread-safe: the buffer is this object's).

        Raises:
            OSError: EBADF...; ``ENOSYS`` without statx in libc.
        """
        if _statx is None or _lean_statx is None:
            raise OSError(errno.ENOSYS, "statx is not available in this libc")
        if _lean_statx(fd, b"", _FD_FLAGS, _FD_MASK, self._buf) != 0:
            return statx_fd(fd)  # the failure again, raised with its errno (EINTR retried)
        mask, blksize, nlink, uid, mode, size, blocks, mnt = _LEAN_FIELDS.unpack_from(self._buf)
        mnt_id = mnt if mask & STATX_MNT_ID_ANY else -1
        return (mode, uid, nlink, size, blocks, blksize, mnt_id)


def fdinfo(fd: int, size: int = 4096) -> bytes | None:
    """The lines of ``/proc/self/fdinfo/N`` for open ``fd`` (None without /proc, or not
    open), up to ``size`` bytes."""
    # os.open/os.read: a buffered open() costs 4x more, and this runs on every removal.
    try:
        info_fd = os.open(f"/proc/self/fdinfo/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(info_fd, size)
    except OSError:
        return None
    finally:
        os.close(info_fd)


def fdinfo_mount_id(fd: int) -> int:
    """The mount id of open ``fd`` from ``/proc/self/fdinfo`` (-1 without /proc)."""
    data = fdinfo(fd)
    if data is None:
        return -1
    for line in data.splitlines():
        if line.startswith(b"mnt_id:"):
            return int(line.split()[1])
    return -1


def mount_id_at(dir_fd: int, name: str) -> int:
    """The mount id of the entry ``name`` of ``dir_fd`` (a mount point's is its own mount's),
    never following a symlink; -1 if unknown (no mount id from statx and no /proc).

    Raises:
        OSError: the entry cannot be looked up (ENOENT...).
    """
    try:
        found = _statx_mnt_id(dir_fd, os.fsencode(name), _AT_SYMLINK_NOFOLLOW, name)
    except OSError as exc:
        if exc.errno != errno.ENOSYS:
            raise
        found = -1
    if found >= 0:
        return found
    # O_PATH|O_NOFOLLOW: opens nothing for I/O (a FIFO never blocks), follows no symlink.
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        return fdinfo_mount_id(fd)
    finally:
        os.close(fd)


def mount_root_at(dir_fd: int, name: str) -> tuple[int, bool | None]:
    """``(mount id or -1, whether the entry is the root of a mount)`` of the entry ``name``
    of ``dir_fd``, never following a symlink, in one ``statx``. The second item is None
    where the kernel does not report ``STATX_ATTR_MOUNT_ROOT`` (before Linux 5.8, or no
    statx in libc): the caller must then compare with the directory's own mount id.

    Raises:
        OSError: the entry cannot be looked up (ENOENT...).
    """
    if _statx is None:
        return mount_id_at(dir_fd, name), None
    buf = statx_buf(dir_fd, os.fsencode(name), _AT_SYMLINK_NOFOLLOW, MNT_ID_MASK, name)
    return mount_of(buf, dir_fd, name)


def mount_of(buf: _StatxBuf, dir_fd: int, name: str) -> tuple[int, bool | None]:
    """:func:`mount_root_at`'s answer from a ``statx`` of ``name`` already made (with
    :data:`MNT_ID_MASK` in its mask)."""
    mnt = int(buf.stx_mnt_id) if buf.stx_mask & STATX_MNT_ID_ANY else -1
    if not buf.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT:
        return (mnt if mnt >= 0 else mount_id_at(dir_fd, name)), None
    return mnt, bool(buf.stx_attributes & STATX_ATTR_MOUNT_ROOT)


def mount_id(fd: int) -> int:
    """The mount id of open ``fd``: ``statx`` first (the unique id on Linux >= 6.8),
    ``/proc/self/fdinfo`` else; -1 if unknown."""
    try:
        found = _statx_mnt_id(fd, b"", _FD_FLAGS, None)
    except OSError:
        return fdinfo_mount_id(fd)
    return found if found >= 0 else fdinfo_mount_id(fd)


def old_mount_id(fd: int) -> int:
    """The old, reusable mount id of open ``fd``, the one ``/proc/self/mountinfo`` lists
    (``statx`` ``STATX_MNT_ID``, else ``/proc/self/fdinfo``); -1 if unknown. While ``fd`` is
    open its mount, hence this id, cannot be freed (see :func:`unique_mount_id`)."""
    try:
        found = _statx_mnt_id(fd, b"", _FD_FLAGS, None, STATX_MNT_ID)
    except OSError:
        return fdinfo_mount_id(fd)
    return found if found >= 0 else fdinfo_mount_id(fd)


def is_unique_mount_id(mnt_id: int) -> bool:
    """Whether ``mnt_id`` (from a helper here) is a unique mount id, never reused until
    reboot, rather than an old one (which the next mount may get once its mount is freed)."""
    return mnt_id > _OLD_ID_MAX


_no_unique_ids = [_OLD_IDS_ONLY]  # [True] once this kernel answered without a unique id


def unique_mount_id(fd: int) -> int:
    """The unique mount id of open ``fd`` (``STATX_MNT_ID_UNIQUE``, Linux >= 6.8), or -1: a
    kernel without them (asked once: never again after it answered the old kind), statx
    missing or failing, or :data:`OLD_MOUNT_IDS_ENV` set. One ``statx``. Never raises.

    Held open, ``fd`` pins its mount: a mount's old id is freed only by ``cleanup_mnt()``
    (``mnt_free_id``, fs/namespace.c), which runs once its last reference is dropped, and an
    open file holds one (``f_path.mnt``, put by ``__fput``). So the old id that
    :func:`old_mount_id` reads of ``fd`` names that same mount until ``fd`` is closed.
    """
    if _no_unique_ids[0]:
        return -1
    try:
        if _statx is not None:
            raw = statx_raw(fd, b"", _FD_FLAGS, STATX_MNT_ID_UNIQUE, None)
        else:
            # Switched off by one refusal (a worker thread's own seccomp filter): asked anyway,
            # or every thread's classifications fall back to reusable old ids (review10).
            raw = statx_anyway(fd, STATX_MNT_ID_UNIQUE)
    except OSError:  # EBADF, refused here too...: the caller's fallback (fstatfs) raises it
        return -1
    mask, mnt = _MASK_MNT_FIELDS(raw)
    if not mask & STATX_MNT_ID_UNIQUE:
        _no_unique_ids[0] = True  # before Linux 6.8: the bit was ignored
        return -1
    return int(mnt)


def _statx_mnt_id(
    dir_fd: int, name: bytes, flags: int, shown: str | None, want: int = MNT_ID_MASK
) -> int:
    """``stx_mnt_id`` alone (-1 if the kernel does not report it): the removal hot path asks
    this of every entry, so no :class:`Statx` is built. Raises OSError (ENOSYS without statx)."""
    # statx_raw: no ctypes structure or errno swap (a tree removal asks twice per directory).
    mask, mnt = _MASK_MNT_FIELDS(statx_raw(dir_fd, name, flags, want, shown))
    return mnt if mask & want else -1


# struct statx: stx_mask (0), stx_mnt_id (144).
_MASK_MNT_FIELDS = struct.Struct("=I140xQ").unpack_from
