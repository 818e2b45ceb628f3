"""Creating files and directories, relative to a verified directory descriptor."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import struct
import sys
from typing import TYPE_CHECKING, overload

from . import _track
from ._dirtrust import DirHandle, trusted_dir, trusted_dir_fd
from ._fsinfo import set_nocow
from ._inode import Entry, new_file_facts, unlink_verified
from ._linux import AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, STATX_BTIME, statx_raw
from ._names import TMP_MAX, make_name, sanitize_params
from ._tempdir import current, default_dir
from .exceptions import UnsafeFileError

if TYPE_CHECKING:
    from _typeshed import BytesPath, StrOrBytesPath, StrPath

__all__ = [
    "Created",
    "create_dir",
    "create_dir_named",
    "create_file",
    "create_file_statx",
    "create_unnamed",
    "create_unnamed_cached",
    "mkdtemp",
    "mkstemp",
]

# O_EXCL: never open a file someone else created under our name.
# O_NOFOLLOW: a planted symlink would redirect the write.
# O_CLOEXEC: the descriptor never leaks into a program we exec.
_FILE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# O_TMPFILE|O_EXCL: an inode with no name at all, which can never be linked into place.
_O_TMPFILE = getattr(os, "O_TMPFILE", 0)
_UNNAMED_FLAGS = os.O_RDWR | os.O_EXCL | os.O_CLOEXEC | _O_TMPFILE
_FILE_MODE = 0o600
_GOOD_FILE = stat.S_IFREG | _FILE_MODE  # st_mode of a file that needs no fchmod or check
_DIR_MODE = 0o700
_NEW_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# The new file's statx: what its check needs, and the birth time its sweep mark binds
# (hardtemp._owner's place), in one call for both.
_NEW_STATX_FLAGS = AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH
NEW_STATX_MASK = STATX_BASIC_STATS | STATX_BTIME
# struct statx: stx_uid (20), stx_mode (28), stx_ino (32), stx_dev_major and minor (136).
_NEW_FIELDS = struct.Struct("=20xI4xH2xQ96xII").unpack_from


class Created:
    """What :func:`create_file` / :func:`create_dir` made: where, and which inode.

    ``handle`` is the verified directory it was made in. An object done with that
    directory calls :meth:`release` (nothing of ours then pins it: ``umount`` works)
    and :meth:`reacquire` if it needs it again (``persist`` after ``close``).
    """

    __slots__ = ("dev", "handle", "ino", "name", "path")

    def __init__(
        self, handle: DirHandle, name: str | bytes, path: str | bytes, dev: int, ino: int
    ) -> None:
        self.handle = handle
        self.name = name
        self.path = path
        self.dev = dev
        self.ino = ino

    def release(self) -> None:
        """Drop our handle of the directory (its descriptor closes with its last user).

        The handle left in its place keeps the path and identity, with descriptor -1:
        a use after release fails with ``EBADF``, never resolves against the cwd.
        """
        old = self.handle
        if old.fd >= 0:
            gone = DirHandle.__new__(DirHandle)
            gone.fd, gone.path, gone.readable, gone.btrfs = -1, old.path, False, old.btrfs
            gone.euid = old.euid
            gone.dev, gone.ino = old.dev, old.ino
            self.handle = gone

    def reacquire(self) -> DirHandle:
        """The directory's handle, verified and reopened if :meth:`release` dropped it.

        Raises:
            UnsafeDirectoryError: the directory (or an ancestor) is no longer trusted.
            UnsafeFileError: its path now leads to another directory.
            OSError: it can no longer be opened (e.g. ``FileNotFoundError``).
        """
        old = self.handle
        if old.fd >= 0:
            return old
        # Walked (or cache-checked) as at creation, then must be the very inode we made
        # our entry in: a directory moved away and replaced by another is never used.
        fresh = trusted_dir(old.path)
        if (fresh.dev, fresh.ino) != (old.dev, old.ino):
            del fresh  # closed now: the traceback must not keep the other directory pinned
            raise UnsafeFileError(
                os.fsdecode(self.path), "its directory was replaced since it was closed"
            )
        self.handle = fresh
        return fresh


def resolve_dir(
    dir: str | bytes | None, output_type: type[str] | type[bytes]
) -> tuple[DirHandle, str | bytes]:
    """The verified handle for ``dir`` (default: :func:`gettempdir`) and the
    directory path to join names to, as an absolute path of ``output_type``."""
    # One verification for the default directory, not one in gettempdir() and another here.
    handle = default_dir()[1] if dir is None else trusted_dir(dir)
    base: str | bytes = handle.path
    if output_type is bytes:
        base = os.fsencode(base)
    return handle, base


def _join(base: str | bytes, name: str | bytes) -> str | bytes:
    if type(base) is str and type(name) is str:
        return base + name if base.endswith("/") else f"{base}/{name}"  # the hot path
    if isinstance(base, bytes):
        return os.path.join(base, os.fsencode(name))
    return os.path.join(base, os.fsdecode(name))


def _verify(st: os.stat_result, path: str | bytes, *, directory: bool) -> None:
    """The new inode is what we asked for: an impostor means a hostile directory.

    Raises:
        UnsafeFileError: not a regular file (a directory), not ours, or group/other bits set.
    """
    fmt_ok = stat.S_ISDIR(st.st_mode) if directory else stat.S_ISREG(st.st_mode)
    why = None
    if not fmt_ok:
        why = "is not a " + ("directory" if directory else "regular file")
    elif st.st_uid != os.geteuid():
        why = f"is owned by uid {st.st_uid}, not by us"
    # The link count is not checked: O_CREAT|O_EXCL made a new inode, so a second name is
    # another user's hard link (fs.protected_hardlinks=0) to our 0600 file, which gives no
    # read access; refusing it let them fail every creation. Removal overwrites through
    # our descriptor before the unlink, so the inode their link keeps holds no data of ours.
    elif st.st_mode & 0o077:
        why = f"has mode {stat.filemode(st.st_mode)} (group/other bits set)"
    if why is not None:
        raise UnsafeFileError(os.fsdecode(path), f"new temporary {why}")


def _fix_mode(fd: int, st: os.stat_result, mode: int) -> os.stat_result:
    # fchmod: the umask must never decide who can read our data (umask 0 -> 0666).
    if stat.S_IMODE(st.st_mode) != mode:
        os.fchmod(fd, mode)
        st = os.fstat(fd)
    return st


def create_file(
    handle: DirHandle, base: str | bytes, prefix: str | bytes, suffix: str | bytes
) -> tuple[int, Created]:
    """Create a new 0600 regular file in the verified directory; return its fd.

    Raises:
        FileExistsError: :data:`TMP_MAX` names were all taken.
        UnsafeFileError: what was created fails verification.
        OSError: creation failed (e.g. ``PermissionError``, ``ENOSPC``).
    """
    fd, made, _ = create_file_statx(handle, base, prefix, suffix)
    return fd, made


def create_file_statx(
    handle: DirHandle, base: str | bytes, prefix: str | bytes, suffix: str | bytes
) -> tuple[int, Created, bytes | None]:
    """:func:`create_file`, with the new file's ``struct statx`` (mask
    :data:`NEW_STATX_MASK`, taken by its check), or None where statx failed (its check
    then took an ``fstat``): what its sweep mark binds, without a second call.

    Raises: as :func:`create_file`.
    """
    fd, name, path, dev, ino, raw = _create_in(
        handle.fd, handle.euid, handle.btrfs, base, prefix, suffix
    )
    return fd, Created(handle, name, path, dev, ino), raw


def _create_in(
    dir_fd: int, euid: int, btrfs: bool, base: str | bytes, prefix: str | bytes, suffix: str | bytes
) -> tuple[int, str | bytes, str | bytes, int, int, bytes | None]:
    """:func:`create_file` on a bare verified descriptor: ``(fd, name, path, st_dev, st_ino,
    the statx of the new file or None)``.

    Raises: as :func:`create_file`.
    """
    for _ in range(TMP_MAX):
        name = make_name(prefix, suffix)
        try:
            fd = os.open(name, _FILE_FLAGS, _FILE_MODE, dir_fd=dir_fd)
        except FileExistsError:
            continue  # 80 random bits: only a flood of planted names gets here
        path = _join(base, name)
        raw: bytes | None = None
        dev = ino = -1
        try:
            try:
                # One statx for the check and the mark (at less than an fstat's cost: no
                # stat_result is built). Without it (no statx in libc or kernel, or a
                # seccomp filter's EPERM): the fstat.
                raw = statx_raw(fd, b"", _NEW_STATX_FLAGS, NEW_STATX_MASK, None)
            except OSError:
                st = os.fstat(fd)
                uid, mode, dev, ino = st.st_uid, st.st_mode, st.st_dev, st.st_ino
            else:
                uid, mode, ino, major, minor = _NEW_FIELDS(raw)
                dev = os.makedev(major, minor)
            # The verified euid: one geteuid() per creation (the directory was verified for it).
            if mode != _GOOD_FILE or uid != euid:  # else all checks pass
                st = _fix_mode(fd, os.fstat(fd), _FILE_MODE)
                _verify(st, path, directory=False)
        except BaseException:
            os.close(fd)
            # Our name must not stay behind (e.g. the fchmod failed): remove it while it is
            # still the inode we made.
            if dev != -1:
                with contextlib.suppress(OSError):
                    unlink_verified(dir_fd, name, (dev, ino), os.fsdecode(path))
            raise
        if btrfs:
            set_nocow(fd)  # copy-on-write would keep the old blocks our overwrite must reach
        return fd, name, path, dev, ino, raw
    raise FileExistsError(errno.EEXIST, "No usable temporary file name found", os.fsdecode(base))


def _open_new_dir(dir_fd: int, name: str | bytes) -> int:
    """Open the directory we just made, even when the umask left it unreadable."""
    # O_NOFOLLOW|O_DIRECTORY: the name we just made, never something swapped in.
    try:
        return os.open(name, _NEW_DIR_FLAGS, dir_fd=dir_fd)
    except PermissionError:
        pass  # umask 0o4xx (e.g. 0o777): mkdir gave us d--------- and we are not root
    # O_PATH needs no permission on the directory itself and pins the inode.
    with Entry.pin(dir_fd, os.fsdecode(name), directory=True) as entry:
        if entry.st.st_uid != os.geteuid():  # not ours: never chmod another user's directory
            _verify(entry.st, os.fsdecode(name), directory=True)
        entry.chmod(_DIR_MODE)  # the pinned inode (fchmod does not work on O_PATH)
        return entry.reopen(_NEW_DIR_FLAGS)


def create_dir(
    handle: DirHandle, base: str | bytes, prefix: str | bytes, suffix: str | bytes
) -> tuple[int, Created]:
    """Create a new 0700 directory in the verified directory; return an open fd of it.

    Raises: as :func:`create_file`.
    """
    for _ in range(TMP_MAX):
        try:
            return create_dir_named(handle, base, make_name(prefix, suffix))
        except FileExistsError:
            continue
    raise FileExistsError(
        errno.EEXIST, "No usable temporary directory name found", os.fsdecode(base)
    )


def create_dir_named(
    handle: DirHandle, base: str | bytes, name: str | bytes
) -> tuple[int, Created]:
    """Create the new 0700 directory ``name`` (a plain name) in the verified directory.

    The one directory-creating step (:func:`create_dir` and the pytest plugin's
    numbered names): mode exactly 0700 whatever the umask, verified by ``fstat``.

    Raises:
        FileExistsError: ``name`` exists.
        UnsafeFileError: what was created fails verification (it is left alone).
        OSError: creation failed (e.g. ``PermissionError``, ``ENOSPC``).
    """
    os.mkdir(name, _DIR_MODE, dir_fd=handle.fd)
    path = _join(base, name)
    try:
        fd = _open_new_dir(handle.fd, name)
    except UnsafeFileError:
        raise  # not the directory we made: leave it alone
    except BaseException:
        # Never leave an (empty, perhaps mode 0000) directory behind on failure.
        with contextlib.suppress(OSError):
            os.rmdir(name, dir_fd=handle.fd)
        raise
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            # Swapped in after our mkdir: never chmod another user's directory.
            _verify(st, path, directory=True)
        st = _fix_mode(fd, st, _DIR_MODE)
        _verify(st, path, directory=True)
    except BaseException:
        os.close(fd)
        raise
    if handle.btrfs:
        set_nocow(fd)  # files created inside inherit NOCOW, so their overwrite lands in place
    return fd, Created(handle, name, path, st.st_dev, st.st_ino)


def create_unnamed(
    handle: DirHandle,
    base: str | bytes,
    prefix: str | bytes,
    suffix: str | bytes,
    *,
    linkable: bool = False,
) -> tuple[int, int, tuple[int, int]]:
    """A new 0600 file with no name (``O_TMPFILE``, else created and unlinked at once):
    ``(fd, the mount id it was opened through or -1, its (st_dev, st_ino))``.

    ``linkable``: ``O_TMPFILE`` without ``O_EXCL``, so that ``linkat`` can name it later.

    Raises: as :func:`create_file`; with ``linkable``, ``OSError`` (``EOPNOTSUPP``) where
    the filesystem has no ``O_TMPFILE`` (an unlinked file can never be linked again).
    """
    # Without O_EXCL only when asked: such a file can be linked by whoever holds it.
    flags = _UNNAMED_FLAGS & ~os.O_EXCL if linkable else _UNNAMED_FLAGS
    fd, mnt_id, ident = _tmpfile_at(handle.fd, handle.euid, base, flags)
    if fd >= 0:
        return fd, mnt_id, ident
    if linkable:  # never silently a file that cannot be linked
        raise OSError(
            errno.EOPNOTSUPP,
            "linkable=True needs O_TMPFILE, which this filesystem or kernel lacks",
            os.fsdecode(base),
        )
    fd, made = create_file(handle, base, prefix, suffix)
    try:
        _unlink_made(made)
    except BaseException:
        os.close(fd)
        raise
    # Its mount is not asked here: the close classifies it by fstatfs.
    return fd, -1, (made.dev, made.ino)


def _tmpfile_at(
    dir_fd: int, euid: int, base: str | bytes, flags: int
) -> tuple[int, int, tuple[int, int]]:
    """The ``O_TMPFILE`` open of :func:`create_unnamed` in the verified ``dir_fd`` (verified
    for ``euid``), its inode checked: ``(fd, mount id or -1, (st_dev, st_ino))``; fd -1
    where the filesystem or kernel has none.

    Raises: as :func:`create_file`.
    """
    if not _UNNAMED_FLAGS & _O_TMPFILE:
        return -1, -1, (-1, -1)
    try:
        fd = os.open(".", flags, _FILE_MODE, dir_fd=dir_fd)
    except OSError as exc:
        # Filesystem or kernel without O_TMPFILE: the caller creates and unlinks.
        if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
            raise
        return -1, -1, (-1, -1)
    try:
        # One statx in place of the fstat: the check's mode and owner, and the mount the
        # close classifies the file by (st_dev alone may name two filesystems: _fsinfo).
        dev, ino, mode, uid, mnt_id = new_file_facts(fd)
        # The verified euid, as in _create_in: the directory was verified for it in this
        # call (no geteuid). O_TMPFILE files have st_nlink 0: not checked.
        if mode != _GOOD_FILE or uid != euid:  # else every check passes
            st = _fix_mode(fd, os.fstat(fd), _FILE_MODE)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != euid or st.st_mode & 0o077:
                _verify(st, os.fsdecode(base) + "/<unnamed>", directory=False)
    except BaseException:
        os.close(fd)
        raise
    return fd, mnt_id, (dev, ino)


def create_unnamed_cached(
    dir: str | bytes | None,
) -> tuple[int, bool, int, tuple[int, int]] | None:
    """:func:`create_unnamed` on the hot path, as :func:`mkstemp`'s: a cached verification
    that still holds (the path leads to the verified inode, whose mode still passes: one
    open and ``fstat``, :func:`hardtemp._dirtrust.trusted_dir_fd`) gives a bare descriptor
    of the directory for the one ``O_TMPFILE`` open, closed at once (no handle is built:
    an unnamed file never needs its directory again). ``(fd, btrfs, mount id or -1,
    (st_dev, st_ino))``; None when the
    directory is not verified yet or changed since, or has no ``O_TMPFILE``: the caller
    then takes :func:`resolve_dir` and :func:`create_unnamed`, which walk and report.

    Raises: as :func:`create_unnamed` (without ``linkable``).
    """
    hit = trusted_dir_fd(current(3) if dir is None else dir)
    if hit is None:
        return None
    dir_fd, euid, btrfs, where = hit
    try:
        fd, mnt_id, ident = _tmpfile_at(dir_fd, euid, where, _UNNAMED_FLAGS)
    finally:
        os.close(dir_fd)  # nothing of ours keeps the directory pinned
    return None if fd < 0 else (fd, btrfs, mnt_id, ident)


def _unlink_made(made: Created) -> None:
    unlink_verified(made.handle.fd, made.name, (made.dev, made.ino), os.fsdecode(made.path))


# The overloads are typeshed's for tempfile: str parts give a str path, bytes parts bytes.
@overload
def mkstemp(
    suffix: str | None = None,
    prefix: str | None = None,
    dir: StrPath | None = None,
    text: bool = False,
) -> tuple[int, str]: ...
@overload
def mkstemp(
    suffix: bytes | None = None,
    prefix: bytes | None = None,
    dir: BytesPath | None = None,
    text: bool = False,
) -> tuple[int, bytes]: ...
def mkstemp(
    suffix: str | bytes | None = None,
    prefix: str | bytes | None = None,
    dir: StrOrBytesPath | None = None,
    text: bool = False,
) -> tuple[int, str | bytes]:
    """Create a new temporary file securely; return ``(fd, absolute path)``.

    As :func:`tempfile.mkstemp`, hardened: the directory and its ancestors are
    verified first, the file is created with ``O_EXCL|O_NOFOLLOW|O_CLOEXEC``
    relative to the verified directory descriptor, its mode is exactly 0600
    whatever the umask, and it is verified with ``fstat`` (regular, ours, 0600). A
    hard link another user adds (possible with ``fs.protected_hardlinks=0``) does not
    make it fail: the inode is still ours and unreadable to them. The name has 80
    random bits. The caller owns the file and removes
    it. ``text`` is accepted for compatibility (no effect on POSIX).

    Raises:
        UnsafeDirectoryError: ``dir`` (or the default directory) is not trusted.
        NoTrustedTempDirError: ``dir`` is None and no candidate is trusted.
        UnsafeFileError: the created file failed verification.
        ValueError: ``prefix``/``suffix`` contain ``/`` or NUL.
        TypeError: str and bytes mixed.
        OSError: the file could not be created (e.g. ``FileExistsError``
            after :data:`TMP_MAX` attempts, ``PermissionError``, ``ENOSPC``).
    """
    prefix, suffix, dir, output_type = sanitize_params(prefix, suffix, dir)
    # The hot path: a cached verification gives a bare descriptor for the one openat,
    # closed here (the caller owns the file: nothing of ours keeps its directory pinned).
    hit = None
    try:
        hit = trusted_dir_fd(current(2) if dir is None else dir)
        if hit is None:  # not verified yet, or changed since: walked (and cached) from scratch
            handle, base = resolve_dir(dir, output_type)
            fd, made = create_file(handle, base, prefix, suffix)
            path, ident = made.path, (made.dev, made.ino)
        else:
            dir_fd, euid, btrfs, where = hit
            base = where if output_type is str else os.fsencode(where)
            fd, _, path, dev, ino, _ = _create_in(dir_fd, euid, btrfs, base, prefix, suffix)
            ident = (dev, ino)
    finally:
        if hit is not None:
            os.close(hit[0])
    sys.audit("tempfile.mkstemp", path)
    if _track.hook is not None:
        _track.hook("mkstemp", None, path, fd, ident)
    return fd, path


@overload
def mkdtemp(
    suffix: str | None = None, prefix: str | None = None, dir: StrPath | None = None
) -> str: ...
@overload
def mkdtemp(
    suffix: bytes | None = None, prefix: bytes | None = None, dir: BytesPath | None = None
) -> bytes: ...
def mkdtemp(
    suffix: str | bytes | None = None,
    prefix: str | bytes | None = None,
    dir: StrOrBytesPath | None = None,
) -> str | bytes:
    """Create a new temporary directory securely; return its absolute path.

    As :func:`tempfile.mkdtemp`, hardened like :func:`mkstemp`: mode exactly
    0700, created relative to the verified parent and verified with ``fstat``.
    The caller owns the directory and removes it.

    Raises: as :func:`mkstemp`.
    """
    prefix, suffix, dir, output_type = sanitize_params(prefix, suffix, dir)
    handle, base = resolve_dir(dir, output_type)
    fd, made = create_dir(handle, base, prefix, suffix)
    os.close(fd)
    sys.audit("tempfile.mkdtemp", made.path)
    if _track.hook is not None:
        _track.hook("mkdtemp", None, made.path, None, (made.dev, made.ino))
    return made.path
