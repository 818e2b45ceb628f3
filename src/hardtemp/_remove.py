"""All removal: one entry (overwritten first when a regular file) or a whole tree.

Every plaintext file hardtemp removes goes through :func:`remove_entry`; users call
:func:`wipe`; directory trees go through :func:`rmtree_at`. The overwrite itself is
:mod:`hardtemp._wipe`'s.

Invariants:

* Nothing is removed by re-resolving a path: every entry is reached relative to a
  directory descriptor we hold, and a name is unlinked only while it still refers to the
  inode we checked (hidden first under a random name, as ``shred -u`` does, so a name
  swapped in meanwhile is put back, never deleted).
* A symlink is never followed: a symlink, FIFO, socket or device is only unlinked.
* The tree walk opens every subdirectory with ``O_NOFOLLOW|O_DIRECTORY`` relative to
  its parent's descriptor, so a symlink (planted or swapped in mid-walk) is
  unlinked as an entry, never traversed, read, chmod-ed or deleted through.
  When a subdirectory of ours lacks permissions, its mode is fixed through a
  descriptor of that very inode (``O_PATH`` + ``/proc/self/fd``), never by
  name: CPython's CVE-2023-6597 chmod-ed a symlink's target here.
* The walk holds a bounded number of descriptors whatever the depth: directories far
  above the current one are closed and reopened on the way back as ``..`` of their
  child, accepted only if still the very inode left (else the walk stops there).
* Mount points (directories and files, compared by mount id, so bind mounts of the same
  filesystem count) are never entered, overwritten or unlinked; each is reported.
* On a disk no emptied directory is removed before a ``syncfs`` wrote its zeroed blocks
  home (:mod:`hardtemp._dirsettle`): one per tree. Only a directory nobody else can change,
  in a parent and a top nobody else can change, waits for it in the top's graveyard;
  any other is synced and removed in place.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from ._codes import Reason, WipeReason
from ._dirsettle import Fresh, Graveyard, settler_for
from ._dirtrust import open_trusted_dir_nofollow
from ._fsinfo import (
    BEST_EFFORT,
    RENAME_HIDES_NOTHING,
    FsInfo,
    fs_info_by_superblock,
    superblock_info,
)
from ._inode import Entry, proc_path, same
from ._linux import (
    dir_statx,
    fdinfo_mount_id,
    is_unique_mount_id,
    mount_id,
    mount_id_at,
    mount_root_at,
    rename_noreplace,
)
from ._names import random_name
from ._wipe import (
    SKIPPED,
    WipeReport,
    _apply_policy,
    _check_options,
    _overwrite,
    _Progress,
    overwrite_small,
)
from .exceptions import UnsafeFileError, WipeError, WipeUnreliableWarning

TYPE_CHECKING = False  # the tree walk (_treefile) is imported where a directory is cleaned
if TYPE_CHECKING:
    from ._treefile import TreeFiles

__all__ = ["remove_entry", "remove_own_small", "rmtree_at", "wipe"]

_EXT4_MAGIC = 0xEF53  # ext2/3/4 share it; without a journal disk_stamp is None already


def _check_name(name: str) -> None:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ValueError(f"{name!r} is not a single directory entry name")


def _reopen_rw(fd: int, st: os.stat_result) -> int | None:
    """A new read-write descriptor of the same inode as ``fd`` (which may be O_PATH or
    read-only), through /proc/self/fd: the magic link names the inode, no path is
    re-resolved. Makes the file owner-writable first if needed and it is ours.
    Returns ``None`` when the file is not writable and not ours."""
    proc = proc_path(fd)
    # O_NONBLOCK: never wait on a lease or a FIFO swapped in; O_NOCTTY: never adopt a tty.
    flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
    try:
        return os.open(proc, flags)
    except PermissionError:
        if st.st_uid != os.geteuid():
            return None
    # Our own read-only file (mode 0400): grant ourselves write permission on the inode.
    os.chmod(proc, stat.S_IMODE(st.st_mode) | stat.S_IRUSR | stat.S_IWUSR)
    return os.open(proc, flags)


_NOT_WRITABLE = Reason(
    WipeReason.NOT_WRITABLE, "the file is not writable and not ours: not overwritten"
)


def _open_target(
    dir_fd: int, name: str, st_name: os.stat_result, fd: int | None, shown: str
) -> tuple[int | None, bool, Reason | None]:
    """(descriptor to overwrite through or None, whether we own it, why not overwritable)."""
    if fd is not None:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        if flags & os.O_ACCMODE != os.O_RDONLY and not flags & (os.O_APPEND | os.O_PATH):
            return fd, False, None
        new = _reopen_rw(fd, os.fstat(fd))
        if new is None:
            return None, False, _NOT_WRITABLE
        return new, True, None
    # O_PATH first, identity checked, then the same inode reopened for writing: a device,
    # FIFO or another file swapped in under the name is never opened read-write.
    with Entry.pin(dir_fd, name, shown=shown) as entry:
        if stat.S_ISLNK(entry.st.st_mode):
            raise UnsafeFileError(shown, "was replaced by a symlink: nothing removed")
        if not same(entry.st, st_name) or not stat.S_ISREG(entry.st.st_mode):
            raise UnsafeFileError(shown, "was replaced while being opened: nothing removed")
        wfd = _reopen_rw(entry.fd, entry.st)
    if wfd is None:
        return None, False, _NOT_WRITABLE
    return wfd, True, None


def _rename_noreplace(dir_fd: int, old: str, new: str) -> None:
    """Rename within ``dir_fd`` to the fresh random name ``new``, never clobbering."""
    rename_noreplace(dir_fd, old, dir_fd, new, unguessable=True)


def _hide_and_unlink(
    dir_fd: int,
    name: str,
    ident: os.stat_result | None,
    shown: str,
    reasons: list[Reason],
    *,
    hide: bool = True,
) -> None:
    """Rename ``name`` to a random name (hides it, as ``shred -u`` does), then unlink it.

    ``ident``: the inode the name must still refer to; a mismatch removes nothing.
    ``hide=False`` (only with ``ident`` None: no swap to catch around a rename): unlinked
    as is.
    """
    if ident is not None:
        now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not same(now, ident):
            raise UnsafeFileError(shown, "the name now refers to another file: nothing removed")
    if not hide and ident is None:
        os.unlink(name, dir_fd=dir_fd)
        return
    # 80 random bits from the names drawn 64 per getrandom (cleared in a forked child):
    # nobody can guess it to take it first, and one getrandom less per removal.
    hidden = ".ht-" + random_name()
    try:
        _rename_noreplace(dir_fd, name, hidden)
    except OSError as exc:
        reasons.append(
            Reason(
                WipeReason.HIDE_FAILED,
                f"the name could not be hidden by a rename ({exc.strerror}): unlinked as is",
            )
        )
        os.unlink(name, dir_fd=dir_fd)
        return
    if ident is not None:
        moved = os.stat(hidden, dir_fd=dir_fd, follow_symlinks=False)
        if not same(moved, ident):
            # Swapped between our check and the rename: put theirs back, delete nothing.
            _rename_noreplace(dir_fd, hidden, name)
            raise UnsafeFileError(shown, "was replaced during removal: nothing removed")
    os.unlink(hidden, dir_fd=dir_fd)


def _sync_dir(dir_fd: int, reasons: list[Reason]) -> None:
    try:
        os.fsync(dir_fd)
    except OSError as exc:
        reasons.append(
            Reason(
                WipeReason.DIR_SYNC_FAILED, f"the directory could not be synced ({exc.strerror})"
            )
        )


_MOUNT_POINT = (
    "is a mount point (a bind mount or another filesystem): not entered, overwritten "
    "or removed, so data outside the tree is never touched"
)


def _mount_of_dir(dir_fd: int) -> tuple[int, int]:
    """(mount id or -1, st_dev) of the directory ``dir_fd``."""
    return mount_id(dir_fd), os.fstat(dir_fd).st_dev


def _is_other_mount(mnt: int, dev: int, where: tuple[int, int]) -> bool:
    """Whether an object with mount id ``mnt`` and ``st_dev`` ``dev`` lies on another mount
    than ``where`` (from :func:`_mount_of_dir`); st_dev only when a mount id is unknown."""
    if mnt >= 0 and where[0] >= 0:
        # The mount id, not st_dev: a bind mount of the same filesystem has the same st_dev.
        return mnt != where[0]
    return dev != where[1]


@dataclass
class _Job:
    """One entry removal: what was asked, and what happened."""

    dir_fd: int
    name: str
    shown: str
    fd: int | None
    own_file: bool
    refuse_links: bool
    passes: int
    pattern: str
    # (mount id, st_dev) of dir_fd: the caller's, or found by _check_entry
    mount: tuple[int, int] | None
    prog: _Progress
    interrupted: BaseException | None = None
    link_warning: str | None = None
    fd_st: os.stat_result | None = None  # fstat of the caller's fd, taken by _check_entry
    # (mount id, mount root) of the name, from the caller's statx that gave st_name
    name_mount: tuple[int, bool | None] | None = None
    fd_is_expect: bool = False  # the caller knows fd is the inode ``expect``


def _name_on_other_mount(job: _Job, st_name: os.stat_result) -> bool:
    """Whether the entry is a mount point (a file bind-mounted over the name); sets
    ``job.mount`` if the caller did not give it."""
    if job.mount is not None:
        return _is_other_mount(mount_id_at(job.dir_fd, job.name), st_name.st_dev, job.mount)
    # The caller's statx of the name gave st_name and these two at once (one call, not two).
    mnt, root = job.name_mount or mount_root_at(job.dir_fd, job.name)
    if root is None:  # the kernel does not say: compare with the directory's mount
        job.mount = _mount_of_dir(job.dir_fd)
        return _is_other_mount(mnt, st_name.st_dev, job.mount)
    # One statx instead of three: a name that is not a mount root lies on its directory's
    # mount, so its mount id is the directory's (the bind mount over the name is refused).
    job.mount = (mnt, st_name.st_dev)
    return root


def _check_entry(
    job: _Job,
    expect: tuple[int, int] | None,
    require_regular: bool,
    st_name: os.stat_result | None = None,
) -> os.stat_result:
    """The checks before anything is changed; the name's ``lstat`` (``st_name``: the
    caller's own, taken just before; the swap checks around the rename still follow)."""
    shown = job.shown
    if st_name is None:
        st_name = os.stat(job.name, dir_fd=job.dir_fd, follow_symlinks=False)
    if expect is not None and not same(st_name, expect):
        raise UnsafeFileError(
            shown, "the name refers to another file than expected: nothing removed"
        )
    if _name_on_other_mount(job, st_name):
        raise UnsafeFileError(shown, _MOUNT_POINT)
    if stat.S_ISDIR(st_name.st_mode):
        raise IsADirectoryError(
            errno.EISDIR, "is a directory: only single entries are wiped", shown
        )
    if require_regular and stat.S_ISLNK(st_name.st_mode):
        raise UnsafeFileError(
            shown, "is a symbolic link: wipe() never follows symlinks; pass the target's own path"
        )
    if require_regular and not stat.S_ISREG(st_name.st_mode):
        raise UnsafeFileError(shown, "is not a regular file: not wiped, nothing removed")
    if job.refuse_links and st_name.st_nlink > 1:
        raise UnsafeFileError(shown, _links_refused(st_name.st_nlink))
    if job.fd is not None:
        # fd_is_expect: the caller fstat'ed this very descriptor when it made the file, and
        # a descriptor never changes inode; st_name matched expect just above, so it *is*
        # fd's inode now (size, links, mode): an fstat would repeat what is known.
        job.fd_st = st_name if job.fd_is_expect and expect is not None else os.fstat(job.fd)
        if not same(job.fd_st, st_name):
            raise UnsafeFileError(shown, "the name no longer refers to our file: nothing removed")
    return st_name


def _links_refused(nlink: int) -> str:
    return (
        f"has {nlink} hard links: its data is also reachable through another name, possibly "
        "another user's link to someone else's file; not overwritten, nothing removed "
        "(remove the other names first)"
    )


def _overwrite_entry(job: _Job, st_name: os.stat_result) -> None:
    """Open the regular file ``st_name`` for writing and overwrite it, recording in ``job``.

    OSErrors of the open are recorded (the name is removed anyway); UnsafeFileError
    (a swap, a mount point, a link refused) propagates with nothing removed.
    """
    prog = job.prog
    try:
        wfd, close_wfd, why_not = _open_target(job.dir_fd, job.name, st_name, job.fd, job.shown)
    except UnsafeFileError:
        raise
    except OSError as exc:
        # ETXTBSY (a running program), a lease, EIO...: it cannot be overwritten, but the
        # name must not stay behind: remove it, then report the failure as a WipeError.
        prog.error = exc
        prog.verdict = BEST_EFFORT
        prog.reasons.insert(
            0,
            Reason(
                WipeReason.OPEN_FAILED,
                f"the file could not be opened for overwriting ({exc.strerror or exc})",
            ),
        )
        return
    try:
        if wfd is not None:
            why_not = _overwrite_open(job, wfd, st_name)
    finally:
        if close_wfd and wfd is not None:
            os.close(wfd)
    if why_not is not None:
        prog.verdict = SKIPPED
        prog.reasons.insert(0, why_not)
        prog.data_left = True


def _overwrite_open(job: _Job, wfd: int, st_name: os.stat_result) -> Reason | None:
    """Overwrite through ``wfd``; returns why it was not overwritten, or None."""
    shown, prog = job.shown, job.prog
    if wfd == job.fd and job.fd_st is not None:
        # The caller's own descriptor, whose inode _check_entry matched with the name (not
        # a mount point) by this fstat: a descriptor never changes inode or mount, so a
        # second fstat and a mount id of it would only repeat what is known.
        st = job.fd_st
    else:
        st = os.fstat(wfd)
        if not same(st, st_name) or not stat.S_ISREG(st.st_mode):
            raise UnsafeFileError(shown, "was replaced while being opened: nothing removed")
        mount = job.mount or _mount_of_dir(job.dir_fd)  # set by _check_entry
        if _is_other_mount(mount_id(wfd), st.st_dev, mount):
            # The descriptor we would write through is on another mount: a bind mount appeared.
            raise UnsafeFileError(shown, _MOUNT_POINT)
    prog.hard_links = st.st_nlink
    if st.st_nlink > 1 and job.refuse_links:
        raise UnsafeFileError(shown, _links_refused(st.st_nlink))
    if st.st_nlink > 1 and not job.own_file:
        return Reason(
            WipeReason.HARD_LINKS_SKIPPED,
            f"the file has {st.st_nlink} hard links and may be a link to data outside: "
            "not overwritten, only this name was removed",
        )
    if st.st_nlink > 1:
        # Emitted only once the file is gone: a warnings filter turned to "error"
        # must not leave the file behind.
        # Whether the other name's owner could read it depends on the mode we leave.
        readable = (
            ""
            if st.st_mode & 0o077 == 0
            else (f" (its mode {stat.filemode(st.st_mode)} let others read it before)")
        )
        job.link_warning = (
            f"{shown}: this temporary file had {st.st_nlink} hard links (another user's "
            "link, or one made with os.link: persist() keeps a temporary file's data "
            "under another name); it was overwritten, so no name keeps its data" + readable
        )
    # The name's mount id (not a mount root: its directory's mount, checked above) when we
    # write through the caller's descriptor of that very inode: the filesystem facts are
    # then looked up by mount, without an fstatfs.
    mnt = job.mount[0] if job.mount is not None and wfd == job.fd else -1
    try:
        _overwrite(wfd, st, job.passes, job.pattern, prog, mnt)
    except BaseException as exc:  # KeyboardInterrupt: remove first, then re-raise
        job.interrupted = exc
        prog.verdict = BEST_EFFORT
        prog.reasons.insert(
            0, Reason(WipeReason.OVERWRITE_INTERRUPTED, f"the overwrite was interrupted ({exc!r})")
        )
    if st.st_nlink > 1:
        prog.reasons.append(
            Reason(
                WipeReason.HARD_LINKS_OVERWRITTEN,
                f"the file had {st.st_nlink} hard links; all of them lost the data",
            )
        )
    return None


def _remove_entry(  # long: a 22-line signature (every removal's options); 58 lines of code
    dir_fd: int,
    name: str,
    *,
    display_path: str | None,
    fd: int | None,
    expect: tuple[int, int] | None,
    overwrite: bool,
    own_file: bool,
    passes: int,
    pattern: str,
    sync_dir: bool,
    on_unreliable: str | None,
    stacklevel: int,
    require_regular: bool = False,
    refuse_links: bool = False,
    mount: tuple[int, int] | None = None,
    unwiped: str = "warn",
    st_name: os.stat_result | None = None,
    name_mount: tuple[int, bool | None] | None = None,
    fd_is_expect: bool = False,
    name_stable: bool = False,
) -> WipeReport:
    # unwiped: a regular file we could not overwrite is removed with a PlaintextLeftWarning
    # ("warn"; WipeError under the error policy), or raises WipeError and stays ("keep"),
    # or raises WipeError once removed ("remove"): never counted as wiped.
    start = time.monotonic()
    policy = _check_options(passes, pattern, on_unreliable)
    _check_name(name)
    job = _Job(
        dir_fd=dir_fd,
        name=name,
        shown=display_path if display_path is not None else name,
        fd=fd,
        own_file=own_file,
        refuse_links=refuse_links,
        passes=passes,
        pattern=pattern,
        mount=mount,
        prog=_Progress(),
        name_mount=name_mount if st_name is not None else None,
        fd_is_expect=fd_is_expect,
    )
    st_name = _check_entry(job, expect, require_regular, st_name)
    prog = job.prog
    prog.hard_links = st_name.st_nlink
    if not stat.S_ISREG(st_name.st_mode):
        # Symlinks, FIFOs, sockets, devices: only the entry goes; unlink never follows it.
        prog.reasons.append(
            Reason(
                WipeReason.NOT_REGULAR, "not a regular file: only the directory entry was removed"
            )
        )
    elif not overwrite:
        prog.reasons.append(Reason(WipeReason.NOT_REQUESTED, "overwrite not requested"))
    else:
        _overwrite_entry(job, st_name)
    if prog.data_left and unwiped == "keep":
        # Removing the name would hide that the plaintext is still there (shred -u refuses too).
        report = prog.report(job.shown, pattern, start, removed=False)
        raise WipeError(
            job.shown,
            f"{report.reasons[0]}: its data is still on the disk; not removed",
            report,
        )
    try:
        # name_stable: the caller's directory is trusted (only root and this user can rename,
        # replace or delete our entries there: it is private, or sticky) and st_name is its
        # own lstat of the name, taken just before: no other user can have swapped the name
        # since, so re-checking it around the hiding rename would stop no one.
        # Where the hiding rename hides the name from no reader of the disk (tmpfs and ramfs:
        # names only in the dentry cache; ext4, btrfs, xfs: measured on raw images, see
        # RENAME_HIDES_NOTHING) and name_stable checks nothing around it: unlinked as is.
        hide = not (name_stable and prog.f_type in RENAME_HIDES_NOTHING)
        _hide_and_unlink(
            dir_fd,
            name,
            None if name_stable else st_name,
            job.shown,
            prog.reasons,
            hide=hide,
        )
    except BaseException:
        if job.interrupted is not None:
            raise job.interrupted from None
        raise
    if sync_dir:
        _sync_dir(dir_fd, prog.reasons)
    report = prog.report(job.shown, pattern, start, removed=True)
    if job.interrupted is not None:
        raise job.interrupted
    if job.link_warning is not None:
        warnings.warn(job.link_warning, WipeUnreliableWarning, stacklevel=stacklevel)
    if prog.error is not None:
        raise WipeError(
            job.shown, report.reasons[0] + "; the file was removed", report
        ) from prog.error
    if prog.data_left and unwiped == "remove":
        raise WipeError(
            job.shown,
            f"{report.reasons[0]}: its data is still on the disk; removed as asked",
            report,
        )
    _apply_policy(report, policy, stacklevel=stacklevel + 1)
    return report


def remove_own_small(dir_fd: int, name: str, fd: int, st_name: os.stat_result, mnt_id: int) -> bool:
    """:func:`remove_entry` for the common ``NamedTemporaryFile`` close, in one straight line:
    True when the file is overwritten and its name removed, exactly as ``remove_entry(...,
    fd=fd, own_file=True, name_stable=True, sync_dir=False)`` would with the default wipe
    options (but for the pattern: zeros on a volatile filesystem, see :func:`overwrite_small`);
    False when it is not that case, with nothing removed (the caller then takes
    :func:`remove_entry`, which overwrites again and reports).

    The caller vouches for what ``remove_entry`` would check first: ``dir_fd`` is trusted
    (only root and this user can rename or replace our entries there), ``st_name`` is the
    ``statx`` of ``name`` just taken, it is the inode ``fd`` holds, and that ``statx`` said
    the name is not the root of a mount (no bind mount over it); ``mnt_id`` is its mount.
    Taken here: a single-link regular file whose overwrite :func:`overwrite_small` can do
    (at most a page, a ``"volatile"`` or ``"in place"`` verdict, no block on the disk after
    the overwrite). A file with other links (warned about by ``remove_entry``) is not.

    Raises:
        OSError: the unlink failed (EPERM, EROFS...) after the overwrite.
        BaseException: what interrupted the overwrite (``KeyboardInterrupt``), re-raised
            once the name is removed, as ``remove_entry`` does.
    """
    if st_name.st_nlink != 1:
        return False  # another name keeps the inode: remove_entry overwrites and warns
    try:
        info = overwrite_small(fd, st_name, mnt_id)
    except BaseException:
        # Interrupted mid-overwrite: the name must not stay behind (remove_entry's rule).
        _hide_and_unlink(dir_fd, name, None, name, [], hide=True)
        raise
    if info is None:
        return False
    if info.f_type in RENAME_HIDES_NOTHING:
        # tmpfs/ramfs (a name only in the dentry cache), ext4, btrfs, xfs: a rename would hide
        # the name from no reader of the disk (RENAME_HIDES_NOTHING): unlinked as is.
        os.unlink(name, dir_fd=dir_fd)
    else:
        _hide_and_unlink(dir_fd, name, None, name, [], hide=True)
    return True


def remove_entry(  # long: a 33-line docstring; 15 lines of code
    dir_fd: int,
    name: str,
    *,
    display_path: str | None = None,
    fd: int | None = None,
    expect: tuple[int, int] | None = None,
    overwrite: bool = True,
    own_file: bool = True,
    passes: int = 1,
    pattern: str = "random",
    sync_dir: bool = True,
    on_unreliable: str | None = None,
    mount: tuple[int, int] | None = None,
    st_name: os.stat_result | None = None,
    name_mount: tuple[int, bool | None] | None = None,
    fd_is_expect: bool = False,
    name_stable: bool = False,
) -> WipeReport:
    """Remove the entry ``name`` of directory ``dir_fd``, overwriting it first if a regular file.

    Guarantees:

    * Never follows a symlink: a symlink, FIFO, socket or device is only unlinked.
    * A mount point (a bind-mounted file, compared by mount id) is never overwritten or
      unlinked. ``mount``: the ``(mount id, st_dev)`` of ``dir_fd`` if the caller knows it.
    * ``st_name``: the caller's ``lstat`` of ``name``, taken just before (saves one); it must
      still match ``expect``/``fd``, and the name is checked again before and after the rename.
      ``name_mount``: the ``(mount id, mount root)`` of the name from the same ``statx``
      (see :func:`hardtemp._inode.lstat_mount`; saves one more).
    * ``fd_is_expect``: the caller knows ``fd`` is the inode ``expect`` (it ``fstat``-ed that
      very descriptor when it made the file): ``st_name`` then stands for ``fd``'s ``fstat``.
    * ``name_stable``: ``dir_fd`` is a trusted directory (only root and this user can rename
      or replace entries of ours in it) and ``st_name`` was just taken: the name is not
      checked again around the hiding rename.
    * The file is pinned with ``O_PATH`` and its identity checked before the same inode is
      reopened read-write: a device or FIFO swapped in is never opened for writing.
    * ``fd`` (our read-write descriptor of that file) is used, never closed; if it is
      read-only or ``O_APPEND`` a second descriptor of the same inode is opened through
      ``/proc/self/fd``. The name must refer to ``fd``'s inode, and to ``expect``
      (``(st_dev, st_ino)``) if given, or nothing is removed.
    * ``own_file=True``: a file with several links is still overwritten (destroying the
      other names' data) and a :class:`WipeUnreliableWarning` says someone linked it.
      ``own_file=False``: such a file is never overwritten, only this name removed.
    * A read-only file of ours (mode 0400) is made writable through its inode and overwritten.
    * Then the name is renamed to a random one (hiding it, as ``shred -u`` does), unlinked,
      and the directory is fsynced when ``sync_dir``.
    * If the overwrite fails or is interrupted (KeyboardInterrupt), the file is still removed
      before the error propagates.

    Raises:
        FileNotFoundError: no entry ``name``.
        IsADirectoryError: ``name`` is a directory (nothing removed).
        UnsafeFileError: the name refers to another inode than ``fd``/``expect``, was
            swapped during removal, or is a mount point (nothing of theirs removed).
        ValueError, TypeError: bad ``name``, ``passes``, ``pattern`` or ``on_unreliable``.
        WipeError: the overwrite failed (the file was removed; ``.report`` says what was
            done), or the policy is ``"error"`` and the overwrite untrustworthy.
        OSError: the entry could not be removed (EPERM, EROFS...).
        WipeUnreliableWarning: (warning) see ``own_file`` and the wipe policy.
    """
    return _remove_entry(
        dir_fd,
        name,
        display_path=display_path,
        fd=fd,
        expect=expect,
        overwrite=overwrite,
        own_file=own_file,
        passes=passes,
        pattern=pattern,
        sync_dir=sync_dir,
        on_unreliable=on_unreliable,
        stacklevel=3,
        mount=mount,
        st_name=st_name,
        name_mount=name_mount,
        fd_is_expect=fd_is_expect,
        name_stable=name_stable,
    )


def wipe(  # long: the public docstring; 34 lines of code
    path: str | os.PathLike[str],
    *,
    passes: int = 1,
    pattern: str = "random",
    remove_unwiped: bool = False,
) -> WipeReport:
    """Overwrite the regular file at ``path`` in place, then remove it.

    A file that cannot be overwritten (another user's file we may not write) is never
    reported as wiped: :class:`WipeError` is raised and the file is left where it is
    (removing the name would hide that its data is still on the disk, so ``shred -u``
    refuses too), unless ``remove_unwiped`` is true: then the name is removed and
    :class:`WipeError` still raised.

    The path is walked from ``/`` by descriptor: every directory on the way is opened with
    ``O_NOFOLLOW`` relative to the previous one and must pass the same trust rule as a
    directory files are created in (owned by root or you; writable by others only if
    sticky), so no one else can redirect the wipe by swapping a component. No symlink is
    followed, anywhere in the path (pass the real path, e.g. :func:`os.path.realpath`).
    The file is pinned with ``O_PATH`` and only that inode is reopened for writing.

    A file with several hard links is refused, nothing overwritten or removed: its data
    is reachable through another name, which may be another user's link to a file that is
    not the one you meant (with ``fs.protected_hardlinks=0`` anyone can link any file).
    A mount point (a bind-mounted file) is refused too. The wipe policy applies.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        IsADirectoryError: ``path`` is a directory.
        UnsafeDirectoryError: a directory on the way is not trusted (``filename`` names it;
            nothing removed).
        UnsafeFileError: a component or ``path`` is a symlink, ``path`` is not a regular
            file, has several hard links, is a mount point, or was swapped while being
            opened (nothing removed).
        ValueError, TypeError: bad ``path``, ``passes`` or ``pattern``.
        WipeError: the overwrite failed (the file was removed anyway; ``.report``), the
            file could not be overwritten (not removed unless ``remove_unwiped``;
            ``.report.data_left`` is true), or the policy is ``"error"`` and the overwrite
            cannot be trusted here.
        WipeUnreliableWarning: (warning) the overwrite cannot be trusted on this filesystem.
    """
    fspath = os.fspath(path)
    if not isinstance(fspath, str):
        raise TypeError("path must be a str or os.PathLike[str]")
    if "\0" in fspath:
        raise ValueError("path contains a NUL byte")
    parent, name = os.path.split(fspath)
    if not name or name in (".", ".."):
        if os.path.isdir(fspath):
            raise IsADirectoryError(errno.EISDIR, "is a directory: wipe() removes files", fspath)
        raise ValueError(f"{fspath!r} does not name a file")
    sys.audit("hardtemp.wipe", fspath)
    # Walked by descriptor, trusted, no symlink followed: another user owning a directory
    # on the way cannot swap it for a symlink to redirect the overwrite to our data.
    dir_fd = open_trusted_dir_nofollow(parent or ".")
    try:
        return _remove_entry(
            dir_fd,
            name,
            display_path=fspath,
            fd=None,
            expect=None,
            overwrite=True,
            own_file=True,
            passes=passes,
            pattern=pattern,
            sync_dir=True,
            on_unreliable=None,
            stacklevel=3,
            require_regular=True,
            refuse_links=True,
            unwiped="remove" if remove_unwiped else "keep",
        )
    finally:
        os.close(dir_fd)


# --- trees ---------------------------------------------------------------------------------

# O_NOFOLLOW: a symlink swapped in for a subdirectory is never entered.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_ROUNDS = 1000  # rescans of one directory while others keep adding entries
# Directories below the top held open at once: deeper ones are closed and reopened by
# ".." (identity checked). Without it, a tree deeper than RLIMIT_NOFILE (1024 by default)
# failed with EMFILE and stayed.
_MAX_OPEN_FRAMES = 64
_NOT_ENTERED = "is a mount point; not descending into it (data outside the tree)"
_SWAPPED_DIR = (
    "was replaced by another directory during removal (someone who can write its parent "
    "swapped it): the one now there is left alone"
)


#: :func:`_dir_stat`'s answer: (st_dev, st_ino, st_mode, st_uid, birth time or None, mount id
#: or -1).
_DirStat = tuple[int, int, int, int, float | None, int]


def _dir_stat(fd: int) -> _DirStat:
    """The identity, mode, owner, birth time and mount id of the open directory ``fd``: one
    ``statx`` (it was an ``fstat`` and a ``statx``); without statx ``fstat`` and ``/proc``.

    Raises:
        OSError: ``fstat`` failed (EBADF...).
    """
    try:
        got = dir_statx(fd)
    except OSError:  # no statx (ENOSYS), or refused: the fstat below raises a real error
        st = os.fstat(fd)
        return st.st_dev, st.st_ino, st.st_mode, st.st_uid, None, fdinfo_mount_id(fd)
    return got if got[5] >= 0 else (*got[:5], fdinfo_mount_id(fd))


def _open_subdir(parent_fd: int, name: str, euid: int) -> tuple[int, _DirStat] | None:
    """Open a subdirectory for emptying: its descriptor and :func:`_dir_stat` (``euid``:
    ours), or None if it vanished or is no directory."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return None  # raced into a symlink or a file: the caller unlinks it as an entry
        if exc.errno != errno.EACCES:
            raise
        fd = _reopen_fixing_mode(parent_fd, name)
    try:
        sx = _dir_stat(fd)
        if sx[3] == euid and (sx[2] & 0o700) != 0o700:
            # Ours but read-only: we need write+search permission to remove its entries.
            os.fchmod(fd, stat.S_IMODE(sx[2]) | 0o700)
    except BaseException:
        os.close(fd)
        raise
    return fd, sx  # the identity, owner and group/other bits, which fchmod kept


def _reopen_fixing_mode(parent_fd: int, name: str) -> int:
    """A subdirectory without read permission: chmod it through its own inode."""
    # O_PATH needs no permission on the directory itself and pins the inode.
    with Entry.pin(parent_fd, name, directory=True) as entry:
        return _reopen_pinned(entry, name)


def _reopen_pinned(entry: Entry, name: str) -> int:
    """A readable descriptor of the directory ``entry`` pins, fixing its mode."""
    try:
        return entry.reopen(_DIR_FLAGS)
    except PermissionError:
        if entry.st.st_uid != os.geteuid():
            raise PermissionError(
                errno.EACCES, "cannot read another user's directory", name
            ) from None
    entry.chmod(stat.S_IMODE(entry.st.st_mode) | 0o700)
    return entry.reopen(_DIR_FLAGS)


def _open_top(
    parent_fd: int, name: str, expect: tuple[int, int] | None, display_path: str, euid: int
) -> tuple[int, _DirStat]:
    """Open the directory to remove, checking it is still ours BEFORE fixing its mode;
    return its descriptor and :func:`_dir_stat` (``euid``: ours)."""
    not_ours = "name no longer refers to the directory we created"
    try:
        try:
            # O_NOFOLLOW|O_DIRECTORY: a symlink, FIFO or device at the name fails at the
            # lookup (ELOOP, ENOTDIR), never opened; opening a directory has no side effect.
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        except PermissionError:
            fd = _open_top_pinned(parent_fd, name, expect, display_path, not_ours)
    except UnsafeFileError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise type(exc)(exc.errno, exc.strerror, display_path) from None
        if expect is not None:
            # A symlink or a file under our name: someone else's, never touched.
            raise UnsafeFileError(display_path, not_ours) from None
        raise NotADirectoryError(
            errno.ENOTDIR, "Not a directory (or a symlink)", display_path
        ) from None
    try:
        sx = _dir_stat(fd)
        if expect is not None and (sx[0], sx[1]) != tuple(expect):
            raise UnsafeFileError(display_path, not_ours)  # an impostor: never chmod-ed
        if sx[3] == euid and (sx[2] & 0o700) != 0o700:
            os.fchmod(fd, stat.S_IMODE(sx[2]) | 0o700)
    except BaseException:
        os.close(fd)
        raise
    return fd, sx


def _open_top_pinned(
    parent_fd: int, name: str, expect: tuple[int, int] | None, display_path: str, not_ours: str
) -> int:
    """The top directory we may not read: pinned, its identity checked, then reopened with
    its mode fixed through its own inode (never by name)."""
    # O_PATH: pins the inode without needing (or changing) any permission on it; an
    # impostor is refused before it is chmod-ed (let alone emptied).
    entry = Entry.pin(
        parent_fd, name, expect=expect, directory=True, shown=display_path, not_ours=not_ours
    )
    with entry:
        return _reopen_pinned(entry, display_path)


class _Frame:
    """One directory being emptied: its descriptor (-1 while closed to bound the number
    open), identity, the subdirectories still to visit, and the entries that could not go."""

    __slots__ = (
        "dev",
        "errors_at_scan",
        "fd",
        "ino",
        "name",
        "path",
        "pending",
        "private",
        "rounds",
        "scanned",
        "skip",
    )

    def __init__(
        self, fd: int, path: str, name: str, errors_at_scan: int, sx: _DirStat, euid: int
    ) -> None:
        self.fd = fd
        self.dev, self.ino = sx[0], sx[1]
        from ._treefile import private_dir  # here: only a directory's cleanup walks a tree

        # Only we can change its entries (see _treefile).
        self.private = private_dir(sx[3], sx[2], euid)
        self.path = path
        self.name = name  # in the parent
        self.rounds = 0
        self.skip: set[str] = set()  # failed entries: reported once, never retried
        self.errors_at_scan = errors_at_scan
        self.pending: list[str] = []  # subdirectories seen by the last scan, not yet visited
        self.scanned = False


class _Tree:
    """One removal: its options, its mount, and the errors met (the walk goes on past them)."""

    def __init__(
        self,
        overwrite: bool,
        onerror: Callable[[BaseException], None],
        mount: tuple[int, int],
        euid: int,
    ) -> None:
        self.overwrite = overwrite
        self._onerror = onerror
        self.euid = euid  # one look per removal: every directory's owner is checked
        self.errors = 0
        self.mount = mount  # (mount id, st_dev) of the top: nothing on another mount is touched
        # Before each rmdir: the emptied directory's blocks reach the disk (_dirsettle).
        self.settle: Callable[[int], None] | None = None
        # Emptied directories held in the top for one settle per tree (_dirsettle).
        self.graveyard: Graveyard | None = None
        # Regular files of private directories: removed with the fewest calls (_treefile).
        self.files: TreeFiles | None = None

    def onerror(self, exc: BaseException) -> None:
        self.errors += 1
        self._onerror(exc)

    def stuck(self, frame: _Frame) -> bool:
        """Whether an error already explains why ``frame`` cannot be emptied."""
        return bool(frame.skip) or self.errors != frame.errors_at_scan

    def remove_file(self, dir_fd: int, name: str, parent: str, files: TreeFiles | None) -> bool:
        """Unlink the entry ``name`` of ``dir_fd`` (whose path is ``parent``); False (after
        reporting) when that failed.

        ``files``: the entry is listed as a regular file of a private directory, so it may
        go the fast way (:mod:`hardtemp._treefile`), which declines anything unusual.
        """
        try:
            if files is not None and files.remove(dir_fd, name):
                return True
            # own_file=False: a file here with several links may be a link to data outside
            # the directory; remove_entry then unlinks it without overwriting.
            remove_entry(
                dir_fd,
                name,
                display_path=f"{parent}/{name}",
                overwrite=self.overwrite,
                own_file=False,
                sync_dir=False,
                mount=self.mount,
            )
        except FileNotFoundError:
            pass  # removed meanwhile: that is what we wanted
        except Exception as exc:
            self.onerror(exc)
            return False
        return True

    def empty(self, top: _Frame, top_dev: int) -> None:
        """Remove everything below the directory of ``top`` (post-order).

        An entry that fails is reported once and skipped from then on, so a
        persistent error (an immutable file, a mount point) never makes the
        walk rescan forever; only a directory that is non-empty for no
        reported reason (entries added meanwhile) is scanned again. At most
        ``_MAX_OPEN_FRAMES`` directories below the top are open at once, whatever the depth.
        """
        stack: list[_Frame] = [top]
        try:
            while stack:
                frame = stack[-1]
                child = self._first_subdir_after_files(frame, top_dev)
                if child is not None:
                    stack.append(child)
                    _bound_open(stack)
                    continue
                if len(stack) == 1:
                    return  # the top is as empty as it gets; the caller removes it
                stack.pop()
                parent = stack[-1]
                if parent.fd < 0 and not self._reopen_parent(frame, parent):
                    return  # the chain is broken (reported): stop here, remove nothing more
                if not self._entomb(frame, parent, top) and self._remove_in_place(frame, parent):
                    stack.append(frame)  # entries were added while we worked: scan it again
                    continue
                os.close(frame.fd)
                frame.fd = -1
        finally:
            for f in stack[1:]:
                if f.fd >= 0:
                    os.close(f.fd)
                    f.fd = -1

    def _entomb(self, frame: _Frame, parent: _Frame, top: _Frame) -> bool:
        """Move the emptied ``frame`` into the graveyard; False when it must go in place."""
        yard = self.graveyard
        # Only directories nobody else can change, in a parent and a top nobody else can
        # change: no other user's entry (added, or swapped in under the name) is ever moved
        # into our top, out of their reach.
        if yard is None or not (frame.private and parent.private and top.private):
            return False
        if self.stuck(frame) or not yard.take(parent.fd, frame.name, frame.fd):
            return False  # an entry is known to be left (it stays, reported), or no move
        if yard.full:
            self.bury(top)
        return True

    def _remove_in_place(self, frame: _Frame, parent: _Frame) -> bool:
        """Settle and remove the emptied ``frame`` from ``parent``; True when it must be
        scanned again (entries were added meanwhile), after reporting any other failure."""
        yard = self.graveyard
        if self.settle is not None and (yard is None or yard.needs_settle(frame.fd)):
            self.settle(frame.fd)  # its freed blocks must not keep the names
        try:
            os.rmdir(frame.name, dir_fd=parent.fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            stuck = self.stuck(frame)
            if exc.errno == errno.ENOTEMPTY and not stuck and not self._still_named(frame, parent):
                # Another user who can write the parent swapped their directory in under the
                # name: never rescanned (ours is empty: 1,000 rescans, each a sync), theirs kept.
                parent.skip.add(frame.name)
                self.onerror(UnsafeFileError(frame.path, _SWAPPED_DIR))
                return False
            if exc.errno == errno.ENOTEMPTY and not stuck and frame.rounds < _MAX_ROUNDS:
                frame.rounds += 1
                frame.errors_at_scan = self.errors
                frame.scanned = False
                return True
            parent.skip.add(frame.name)
            if not (exc.errno == errno.ENOTEMPTY and stuck):
                self.onerror(exc)  # else: the error below was reported already
        return False

    @staticmethod
    def _still_named(frame: _Frame, parent: _Frame) -> bool:
        """Whether ``frame``'s name in ``parent`` still refers to the directory we emptied."""
        try:
            st = os.stat(frame.name, dir_fd=parent.fd, follow_symlinks=False)
        except OSError:
            return True  # gone meanwhile (or cannot be told): the rescan's rmdir decides
        return same(st, (frame.dev, frame.ino))

    def bury(self, top: _Frame) -> None:
        """Settle once, then remove the graveyard's directories (see :mod:`_dirsettle`);
        a failure is reported once and that grave skipped by the top's later scans."""
        if self.graveyard is None:
            return
        for exc in self.graveyard.bury():
            grave = str(exc.filename)
            top.skip.add(grave)
            exc.filename = f"{top.path}/{grave}"
            self.onerror(exc)

    def remove_top(self, top: _Frame, parent_fd: int, top_dev: int) -> None:
        """Empty ``top``, settle, and remove it from ``parent_fd``; rescanned while entries
        are added meanwhile (at most ``_MAX_ROUNDS`` times); every failure reported."""
        for rounds in range(_MAX_ROUNDS + 1):
            top.errors_at_scan = self.errors
            top.scanned = False
            try:
                self.empty(top, top_dev)
            finally:
                # One settle for the names of all entries just removed (the top's and the
                # graveyard's), then the graveyard removed: an interrupt leaves none of it.
                if self.graveyard is not None:  # none in RAM: no call
                    self.bury(top)
            try:
                os.rmdir(top.name, dir_fd=parent_fd)
                return
            except OSError as exc:
                stuck = self.stuck(top)
                if exc.errno != errno.ENOTEMPTY or rounds == _MAX_ROUNDS or stuck:
                    if not (exc.errno == errno.ENOTEMPTY and stuck):
                        self.onerror(exc)  # else: the error below was reported already
                    return

    def _reopen_parent(self, child: _Frame, parent: _Frame) -> bool:
        """Reopen ``parent`` (closed to bound descriptors) as ``..`` of ``child``.

        False (after reporting, ``child`` closed) when ``..`` is no longer ``parent``: the
        tree was moved meanwhile, and removing by the moved chain could reach outside it.
        """
        try:
            # ".." of the directory we hold, never a path: O_NOFOLLOW, then the identity.
            fd = os.open("..", _DIR_FLAGS, dir_fd=child.fd)
        except OSError as exc:
            if exc.filename is None:
                exc.filename = parent.path
            self.onerror(exc)
            os.close(child.fd)
            child.fd = -1
            return False
        if not same(os.fstat(fd), (parent.dev, parent.ino)):
            os.close(fd)
            os.close(child.fd)
            child.fd = -1
            self.onerror(
                UnsafeFileError(
                    child.path, "was moved out of the tree during removal: the walk stopped there"
                )
            )
            return False
        parent.fd = fd
        return True

    def _first_subdir_after_files(self, frame: _Frame, top_dev: int) -> _Frame | None:
        """Remove the non-directories of ``frame`` (once per scan); return the next
        subdirectory to empty, or None when the scan's subdirectories are all visited."""
        if not frame.scanned:
            frame.scanned = True
            try:
                frame.pending = self._scan(frame)
            except OSError as exc:  # EMFILE for the listing, EIO...: reported, not retried
                frame.pending = []
                if exc.filename is None:
                    exc.filename = frame.path
                self.onerror(exc)
                return None
        fd = frame.fd
        while frame.pending:
            name = frame.pending.pop()
            if name in frame.skip:
                continue
            child_path = f"{frame.path}/{name}"
            try:
                if _is_other_mount(mount_id_at(fd, name), top_dev, self.mount):
                    raise UnsafeFileError(child_path, _NOT_ENTERED)
                opened = _open_subdir(fd, name, self.euid)
            except FileNotFoundError:
                continue  # removed meanwhile
            except OSError as exc:
                frame.skip.add(name)
                if exc.filename is None:  # fstat/fchmod errors name no path: say which
                    exc.filename = child_path
                self.onerror(exc)
                continue
            if opened is None:
                if not self.remove_file(fd, name, frame.path, None):
                    frame.skip.add(name)
                continue
            sub, sx = opened
            # sx's mount id: of the directory just opened (the statx of its fstat, one call).
            if _is_other_mount(sx[5], sx[0], self.mount) or sx[0] != top_dev:
                # A mount point: emptying it would delete data that lives outside our tree.
                os.close(sub)
                frame.skip.add(name)
                self.onerror(
                    UnsafeFileError(child_path, "is a mount point; not descending into it")
                )
                continue
            return _Frame(sub, child_path, name, self.errors, sx, self.euid)
        return None

    def _scan(self, frame: _Frame) -> list[str]:
        """Remove the non-directories of ``frame``; return its subdirectories' names."""
        subdirs: list[str] = []
        fd, skip, path = frame.fd, frame.skip, frame.path
        files = self.files if frame.private else None  # the fast way, where it may go
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    name = entry.name
                    if name in skip:
                        continue
                    try:
                        # d_type, no system call: only a listed regular file is opened there.
                        is_file = entry.is_file(follow_symlinks=False)
                        if not is_file and entry.is_dir(follow_symlinks=False):
                            subdirs.append(name)
                            continue
                    except OSError:
                        is_file = False  # d_type unknown and lstat failed: the general way
                    if not self.remove_file(fd, name, path, files if is_file else None):
                        skip.add(name)
        except BaseException:
            if self.files is not None:
                self.files.flush()  # what was overwritten goes durable; nothing is leaked
            raise
        if files is not None:
            self._flush_files(frame)
        subdirs.reverse()  # visited in directory order (popped from the end)
        return subdirs

    def _flush_files(self, frame: _Frame) -> None:
        """The files of ``frame`` held for one batched sync: durable, then unlinked; those
        that could not be synced go the general way (which syncs each and reports)."""
        files = self.files
        if files is None or not (files.held or files.failed):
            return  # nothing waits for a sync (every file in RAM, or already unlinked)
        for name in files.flush():
            if not self.remove_file(frame.fd, name, frame.path, None):
                frame.skip.add(name)


def _bound_open(stack: list[_Frame]) -> None:
    """Once more than ``_MAX_OPEN_FRAMES`` frames below the top are open, close the shallowest
    open one; it is reopened by ``..`` (identity checked) on the way back up."""
    if len(stack) <= _MAX_OPEN_FRAMES + 1:
        return  # at most that many frames below the top at all: no list built per directory
    open_frames = [f for f in stack[1:] if f.fd >= 0]
    if len(open_frames) > _MAX_OPEN_FRAMES:
        oldest = open_frames[0]
        os.close(oldest.fd)
        oldest.fd = -1


def _fs_info(fd: int, dev: int, mnt_id: int) -> FsInfo | None:
    """The filesystem of the tree at ``fd`` (``st_dev`` ``dev``, mount id ``mnt_id`` as the
    top's statx read it), or None when it cannot be identified."""
    try:
        # By unique mount id (Linux >= 6.8), else fstatfs and superblock: never the
        # fstatfs-free lookup by old mount id, which a mount change the watch missed (an
        # unshared mount namespace) could make stale.
        if is_unique_mount_id(mnt_id):
            # The very id fs_info_by_superblock's own statx of fd would read: one call less.
            return superblock_info(fd, dev, mnt_id)
        return fs_info_by_superblock(fd, dev)
    except OSError:
        return None


def _tree_files(info: FsInfo | None, mnt_id: int, euid: int) -> TreeFiles | None:
    """The fast way for the files of a tree on ``info``, or None where it cannot apply."""
    if info is None:
        return None  # the filesystem cannot be identified: every file goes the general way
    from ._treefile import TreeFiles  # here: see _Frame

    files = TreeFiles(info, mnt_id, euid)
    return files if files.usable else None


def _fresh(info: FsInfo | None, stamp: int | None, born: float | None, dev: int) -> Fresh | None:
    """What lets the tree born at ``born`` skip its settle, if ``stamp`` was read before it
    was made and it lies on an ext4 (the only journal whose behaviour this relies on)."""
    if stamp is None or born is None or info is None or info.f_type != _EXT4_MAGIC:
        return None  # xfs, btrfs, an unknown filesystem, no birth time...: always settled
    return Fresh(dev, stamp, born)


def rmtree_at(
    parent_fd: int,
    name: str,
    *,
    expect: tuple[int, int] | None,
    display_path: str,
    overwrite: bool = True,
    onerror: Callable[[BaseException], None] | None = None,
    stamp: int | None = None,
) -> None:
    """Remove the directory ``name`` of ``parent_fd`` and everything in it.

    Regular files are overwritten first (see :func:`remove_entry`) unless ``overwrite``
    is false. Symlinks, FIFOs and sockets are unlinked, never followed or opened. Mount
    points below (directories *and* files, bind mounts of the same filesystem included:
    compared by mount id) are never entered, overwritten or unlinked; each is reported.
    On a disk no emptied directory is removed before its blocks were synced to the disk
    (:mod:`hardtemp._dirsettle`: one ``syncfs`` per tree, those we alone can change held
    in the top until then), so the freed blocks hold no names. ``stamp``: the
    :func:`~hardtemp._dirsettle.disk_stamp` of the filesystem read before ``name`` was
    created; while no write reached that disk since, nothing of the tree did, and the
    sync is skipped (see :mod:`hardtemp._dirsettle`).
    ``expect`` is the ``(st_dev, st_ino)`` the name must still refer to. Any depth: at
    most ``_MAX_OPEN_FRAMES`` + 3 descriptors are open at once, and nothing recurses.

    Errors met on the way are passed to ``onerror`` (default: the first one is
    raised once everything else that could be removed has been).

    Raises:
        UnsafeFileError: ``name`` no longer refers to ``expect`` (nothing removed
            or changed), e.g. it is now another directory or a symlink.
        FileNotFoundError: ``name`` does not exist.
        NotADirectoryError: ``name`` is not a directory (only without ``expect``).
        OSError: the first error met, when no ``onerror`` is given.
    """
    errors: list[BaseException] = []
    euid = os.geteuid()  # one look per removal: every directory's owner is checked
    fd, sx = _open_top(parent_fd, name, expect, display_path, euid)
    try:
        dev, born, mnt_id = sx[0], sx[4], sx[5]
        tree = _Tree(
            overwrite, onerror if onerror is not None else errors.append, (mnt_id, dev), euid
        )
        sys.audit("hardtemp.rmtree", display_path)
        top = _Frame(fd, display_path, name, tree.errors, sx, euid)
        info = _fs_info(fd, dev, mnt_id)  # one look for the settling and the files
        tree.settle = settler_for(info)
        if tree.settle is not None:
            tree.graveyard = Graveyard(fd, tree.settle, _fresh(info, stamp, born, dev))
        tree.files = _tree_files(info, mnt_id, euid) if overwrite else None
        tree.remove_top(top, parent_fd, dev)
        if tree.files is not None:
            tree.files.close()  # its random pool goes on to the next removal
    finally:
        os.close(fd)
    if errors:
        raise errors[0]
