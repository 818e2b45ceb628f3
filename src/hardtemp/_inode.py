"""The pinned entry: act only on the inode we created or verified, never re-resolve a path.

An :class:`Entry` is a directory descriptor (borrowed: the caller keeps it open), a
name in it, the identity ``(st_dev, st_ino)`` the name must refer to, and an
``O_PATH|O_NOFOLLOW`` descriptor pinning that inode. Everything done to the inode
goes through the pinned descriptor (``/proc/self/fd/N`` names the inode itself, not
a new lookup), and everything done to the *name* first checks that the name still
refers to the identity.

Invariants:

* :func:`same` is the one ``(st_dev, st_ino)`` comparison.
* An Entry never follows a symlink: the name is opened with ``O_NOFOLLOW`` and the pinned
  inode is checked against the identity before any use.
* :meth:`Entry.reopen` returns a descriptor of the pinned inode only: it is fstat-ed and
  compared to the identity, and closed (raising) if it differs.
* :meth:`Entry.unlink_if_same` and :func:`unlink_verified` never unlink a name that refers
  to another inode.
* :func:`lstat_mount` never follows a symlink: what it reports is the entry itself.
* :func:`new_file_facts` reports the open descriptor's own inode and the mount it was
  opened through (which never changes for a descriptor), never a name's.
"""

from __future__ import annotations

import os
import struct
import sys
from types import TracebackType
from typing import Any, NamedTuple

from . import _linux
from .exceptions import UnsafeFileError

__all__ = [
    "Entry",
    "NameStat",
    "ident",
    "lstat_mount",
    "new_file_facts",
    "proc_path",
    "same",
    "unlink_verified",
]

# O_PATH: pins the inode with no read/write permission needed and opens nothing for I/O
# (a FIFO never blocks, a device is never opened); O_NOFOLLOW: a symlink is never entered.
_PIN_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def ident(st: os.stat_result) -> tuple[int, int]:
    """The identity of an inode: ``(st_dev, st_ino)``."""
    return (st.st_dev, st.st_ino)


def same(a: os.stat_result, b: os.stat_result | tuple[int, int]) -> bool:
    """Whether ``a`` is the inode ``b`` (a stat result or an identity)."""
    if isinstance(b, os.stat_result):  # first: a stat_result is a tuple too
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
    return (a.st_dev, a.st_ino) == tuple(b)


def unlink_verified(dir_fd: int, name: str | bytes, expect: tuple[int, int], shown: str) -> None:
    """Unlink ``name`` (no overwrite) only while it still refers to the inode ``expect``.

    Raises:
        UnsafeFileError: the name now refers to another file (it is left alone).
        FileNotFoundError: the name is gone.
    """
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if not same(st, expect):
        # Someone swapped the name: removing it would delete their file, not ours.
        raise UnsafeFileError(shown, "name no longer refers to the file we created")
    os.unlink(name, dir_fd=dir_fd)


class NameStat(NamedTuple):
    """What :func:`lstat_mount` returns."""

    st: os.stat_result
    mnt_id: int  # -1 when unknown
    mount_root: bool | None  # None: the kernel does not say (before Linux 5.8)


_NAME_MASK = _linux.STATX_BASIC_STATS | _linux.MNT_ID_MASK  # the unique mount id (Linux >= 6.8)


def lstat_mount(dir_fd: int, name: str) -> NameStat:
    """The ``lstat`` of the entry ``name`` of ``dir_fd`` and its mount (id, whether it is
    the root of a mount: a bind mount over the name) in one ``statx``, where a plain
    ``lstat`` and :func:`hardtemp._linux.mount_root_at` make two. The stat result has
    whole-second times (nothing here reads them). Without statx in libc: those two calls.

    Raises:
        OSError: the entry cannot be looked up (ENOENT...).
    """
    if _linux._statx is None:  # has_statx(), inline: every NamedTemporaryFile's close asks
        return _lstat_mount(dir_fd, name)
    flags = _linux.AT_SYMLINK_NOFOLLOW
    try:
        buf = _linux.statx_raw(
            dir_fd, name.encode(_FS_ENCODING, _FS_ERRORS), flags, _NAME_MASK, name
        )
    except OSError as exc:
        if _linux._statx is None:  # refused just now (a seccomp filter since our load)
            return _lstat_mount(dir_fd, name)
        raise exc from None
    # Every field in one unpack of the struct (not 17 ctypes attribute reads, nor two
    # unpacks): every NamedTemporaryFile's close asks this.
    (mask, blksize, attrs, nlink, uid, gid, mode, ino, size, blocks, attrs_mask, atime, ctime,
     mtime, dev_major, dev_minor, mnt_id) = _FIELDS(buf)  # fmt: skip
    # One sequence (the 10 fields, six unset time fields, blksize, blocks): the same object
    # as with a dict of the last two (every field tested), at a third of the cost.
    dev = os.makedev(dev_major, dev_minor)
    st = os.stat_result(
        (mode, ino, dev, nlink, uid, gid, size, atime, mtime, ctime, *_NO_TIMES, blksize, blocks)
    )
    if not attrs_mask & _linux.STATX_ATTR_MOUNT_ROOT:  # before Linux 5.8: ask otherwise
        return NameStat(st, *_linux.mount_of(_linux.statx_struct(buf), dir_fd, name))
    mnt = mnt_id if mask & _linux.STATX_MNT_ID_ANY else -1
    # The tuple built directly: NamedTuple's own __new__ is a Python function (a third of
    # the cost of this line).
    return _new_tuple(NameStat, (st, mnt, bool(attrs & _linux.STATX_ATTR_MOUNT_ROOT)))


def _lstat_mount(dir_fd: int, name: str) -> NameStat:
    """:func:`lstat_mount` without statx: ``lstat`` and :func:`~hardtemp._linux.mount_root_at`."""
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    return NameStat(st, *_linux.mount_root_at(dir_fd, name))


_FD_FLAGS = _linux.AT_SYMLINK_NOFOLLOW | _linux.AT_EMPTY_PATH
# struct statx: stx_mask (0), stx_uid (20), stx_mode (28), stx_ino (32), stx_dev_major and
# stx_dev_minor (136), stx_mnt_id (144).
_NEW_FILE_FIELDS = struct.Struct("=I16xI4xH2xQ96xIIQ").unpack_from


def new_file_facts(fd: int) -> tuple[int, int, int, int, int]:
    """``(st_dev, st_ino, st_mode, st_uid, mount id)`` of the open ``fd`` in one ``statx``,
    the mount id -1 where the kernel does not say (before Linux 5.8; without statx in libc:
    an ``fstat``). A descriptor never changes mount, so the id names the file's filesystem
    exactly (``st_dev`` may not: an overlay file on a kernel before 4.17 reports its upper
    or lower filesystem's). At the cost of an ``fstat``: a new unnamed file's check asks this.

    Raises:
        OSError: ``fd`` is not an open descriptor (EBADF).
    """
    if _linux._statx is None:  # has_statx(), inline: every unnamed file's creation asks
        return _fstat_facts(fd)
    try:
        buf = _linux.statx_raw(fd, b"", _FD_FLAGS, _NAME_MASK, None)
    except OSError as exc:
        if _linux._statx is None:  # refused just now (a seccomp filter since our load)
            return _fstat_facts(fd)
        raise exc from None
    mask, uid, mode, ino, major, minor, mnt_id = _NEW_FILE_FIELDS(buf)
    mnt = mnt_id if mask & _linux.STATX_MNT_ID_ANY else -1
    return os.makedev(major, minor), ino, mode, uid, mnt


def _fstat_facts(fd: int) -> tuple[int, int, int, int, int]:
    """:func:`new_file_facts` without statx: an ``fstat`` (no mount id)."""
    st = os.fstat(fd)
    return st.st_dev, st.st_ino, st.st_mode, st.st_uid, -1


# struct statx (linux/stat.h): the fields up to stx_attributes_mask, then from stx_atime
# (skipping stx_btime) the three timestamps' seconds, st_dev's numbers and stx_mnt_id.
_FIELDS = struct.Struct("=IIQIIIH2xQQQQq8x16xq8xq8x8xIIQ").unpack_from
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
_new_tuple = tuple.__new__
# st_atime..st_ctime_ns of a stat_result built from a sequence (its blksize, blocks follow).
_NO_TIMES: tuple[Any, ...] = (None,) * 6


def proc_path(fd: int) -> str:
    """``/proc/self/fd/N``: the magic link names the inode ``fd`` holds, not a path."""
    return f"/proc/self/fd/{fd}"


class Entry:
    """The name ``name`` in directory ``dir_fd``, pinned to one inode by an ``O_PATH`` fd.

    Use :meth:`pin` to make one; close it (or use it as a context manager) when done.
    ``dir_fd`` is borrowed: never closed here.
    """

    __slots__ = ("dev", "dir_fd", "fd", "ino", "name", "shown", "st")

    def __init__(
        self, dir_fd: int, name: str, fd: int, st: os.stat_result, shown: str | None = None
    ) -> None:
        self.dir_fd = dir_fd
        self.name = name
        self.fd = fd
        self.st = st
        self.dev, self.ino = st.st_dev, st.st_ino
        self.shown = shown if shown is not None else name

    @classmethod
    def pin(
        cls,
        dir_fd: int,
        name: str,
        *,
        expect: tuple[int, int] | None = None,
        directory: bool = False,
        shown: str | None = None,
        not_ours: str = "name no longer refers to our file",
    ) -> Entry:
        """Pin the inode ``name`` refers to (never following a symlink).

        ``directory``: the name must be a directory (``O_DIRECTORY``).

        Raises:
            UnsafeFileError: ``expect`` is given and the name refers to another inode
                (message ``not_ours``).
            OSError: the open failed (``FileNotFoundError``; ``ELOOP`` for a symlink,
                ``ENOTDIR`` with ``directory``...).
        """
        flags = _PIN_FLAGS | (os.O_DIRECTORY if directory else 0)
        fd = os.open(name, flags, dir_fd=dir_fd)
        try:
            st = os.fstat(fd)
            if expect is not None and not same(st, expect):
                raise UnsafeFileError(shown if shown is not None else name, not_ours)
        except BaseException:
            os.close(fd)
            raise
        return cls(dir_fd, name, fd, st, shown)

    @property
    def identity(self) -> tuple[int, int]:
        return (self.dev, self.ino)

    @property
    def proc(self) -> str:
        return proc_path(self.fd)

    def close(self) -> None:
        """Release the pinned descriptor (idempotent)."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __enter__(self) -> Entry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def reopen(self, flags: int) -> int:
        """A new descriptor of the pinned inode opened with ``flags`` (``O_CLOEXEC`` added).

        Raises:
            UnsafeFileError: the descriptor opened is not the pinned inode (closed first).
            OSError: the open failed (``PermissionError``...).
        """
        # Through /proc/self/fd: the pinned inode itself, whatever the name now refers to.
        fd = os.open(self.proc, (flags | os.O_CLOEXEC) & ~os.O_NOFOLLOW)
        try:
            if not same(os.fstat(fd), self.identity):
                raise UnsafeFileError(self.shown, "was replaced while being opened")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def chmod(self, mode: int) -> None:
        """chmod the pinned inode (``fchmod`` does not take ``O_PATH``): never a symlink's
        target (CPython's CVE-2023-6597 chmod-ed one by name)."""
        os.chmod(self.proc, mode)

    def getxattr(self, attr: str) -> bytes:
        """Raises OSError (ENODATA when absent, ENOTSUP...)."""
        return os.getxattr(self.proc, attr)

    def setxattr(self, attr: str, value: bytes) -> None:
        """Raises OSError (ENOTSUP, EPERM...)."""
        os.setxattr(self.proc, attr, value)

    def removexattr(self, attr: str) -> None:
        """Raises OSError (ENODATA when absent...)."""
        os.removexattr(self.proc, attr)

    def still_named(self) -> bool:
        """Whether ``name`` in ``dir_fd`` still refers to the pinned inode (False if gone).

        Raises:
            OSError: the lookup failed other than by ENOENT (EACCES, EIO...).
        """
        try:
            now = os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return same(now, self.identity)

    def unlink_if_same(self) -> bool:
        """Unlink ``name`` if it still refers to the pinned inode; False if it does not.

        The check and the unlink are two system calls: callers that must not lose another
        user's entry in between hide the name first (see :mod:`hardtemp._remove`).

        Raises:
            OSError: the unlink failed (EPERM, EROFS...).
        """
        if not self.still_named():
            return False
        try:
            os.unlink(self.name, dir_fd=self.dir_fd)
        except FileNotFoundError:
            return False
        return True
