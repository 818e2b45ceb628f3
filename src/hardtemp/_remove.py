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
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import stat
import sys
import time
import warnings
from collections.abc import Callable

from ._fsinfo import BEST_EFFORT
from ._inode import Entry, ident, proc_path, same
from ._linux import rename_noreplace
from ._wipe import (
    SKIPPED,
    WipeReport,
    _apply_policy,
    _check_options,
    _overwrite,
    _Progress,
)
from .exceptions import UnsafeFileError, WipeError, WipeUnreliableWarning

__all__ = ["remove_entry", "rmtree_at", "unlink_verified", "wipe"]


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


def _open_target(
    dir_fd: int, name: str, st_name: os.stat_result, fd: int | None, shown: str
) -> tuple[int | None, bool, str | None]:
    """(descriptor to overwrite through or None, whether we own it, why not overwritable)."""
    if fd is not None:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        if flags & os.O_ACCMODE != os.O_RDONLY and not flags & (os.O_APPEND | os.O_PATH):
            return fd, False, None
        new = _reopen_rw(fd, os.fstat(fd))
        if new is None:
            return None, False, "the file is not writable and not ours: not overwritten"
        return new, True, None
    try:
        # O_NOFOLLOW: a symlink swapped in would redirect the overwrite to its target.
        wfd = os.open(
            name,
            os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK,
            dir_fd=dir_fd,
        )
    except PermissionError:
        # Pinned by O_PATH: refers to the inode without needing read or write permission.
        replaced = "was replaced while being opened: nothing removed"
        with Entry.pin(
            dir_fd, name, expect=ident(st_name), shown=shown, not_ours=replaced
        ) as entry:
            if not stat.S_ISREG(entry.st.st_mode):
                raise UnsafeFileError(shown, replaced) from None
            wfd2 = _reopen_rw(entry.fd, entry.st)
        if wfd2 is None:
            return None, False, "the file is not writable and not ours: not overwritten"
        return wfd2, True, None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFileError(shown, "was replaced by a symlink: nothing removed") from exc
        raise
    return wfd, True, None


def _rename_noreplace(dir_fd: int, old: str, new: str) -> None:
    """Rename within ``dir_fd`` to the fresh random name ``new``, never clobbering."""
    rename_noreplace(dir_fd, old, dir_fd, new, unguessable=True)


def _hide_and_unlink(
    dir_fd: int, name: str, ident: os.stat_result | None, shown: str, reasons: list[str]
) -> None:
    """Rename ``name`` to a random name (hides it, as ``shred -u`` does), then unlink it.

    ``ident``: the inode the name must still refer to; a mismatch removes nothing.
    """
    if ident is not None:
        now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not same(now, ident):
            raise UnsafeFileError(shown, "the name now refers to another file: nothing removed")
    hidden = ".ht-" + secrets.token_hex(12)
    try:
        _rename_noreplace(dir_fd, name, hidden)
    except OSError as exc:
        reasons.append(f"the name could not be hidden by a rename ({exc.strerror}): unlinked as is")
        os.unlink(name, dir_fd=dir_fd)
        return
    if ident is not None:
        moved = os.stat(hidden, dir_fd=dir_fd, follow_symlinks=False)
        if not same(moved, ident):
            # Swapped between our check and the rename: put theirs back, delete nothing.
            _rename_noreplace(dir_fd, hidden, name)
            raise UnsafeFileError(shown, "was replaced during removal: nothing removed")
    os.unlink(hidden, dir_fd=dir_fd)


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


def _sync_dir(dir_fd: int, reasons: list[str]) -> None:
    try:
        os.fsync(dir_fd)
    except OSError as exc:
        reasons.append(f"the directory could not be synced ({exc.strerror})")


def _remove_entry(
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
    unwiped: str = "warn",
) -> WipeReport:
    # unwiped: a regular file we could not overwrite is removed with a PlaintextLeftWarning
    # ("warn"; WipeError under the error policy), or raises WipeError and stays ("keep"),
    # or raises WipeError once removed ("remove"): never counted as wiped.
    start = time.monotonic()
    policy = _check_options(passes, pattern, on_unreliable)
    _check_name(name)
    shown = display_path if display_path is not None else name
    st_name = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if expect is not None and (st_name.st_dev, st_name.st_ino) != tuple(expect):
        raise UnsafeFileError(
            shown, "the name refers to another file than expected: nothing removed"
        )
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
    if fd is not None and not same(os.fstat(fd), st_name):
        raise UnsafeFileError(shown, "the name no longer refers to our file: nothing removed")

    prog = _Progress(hard_links=st_name.st_nlink)
    interrupted: BaseException | None = None
    link_warning: str | None = None
    if not stat.S_ISREG(st_name.st_mode):
        # Symlinks, FIFOs, sockets, devices: only the entry goes; unlink never follows it.
        prog.reasons.append("not a regular file: only the directory entry was removed")
    elif not overwrite:
        prog.reasons.append("overwrite not requested")
    else:
        try:
            wfd, close_wfd, why_not = _open_target(dir_fd, name, st_name, fd, shown)
        except UnsafeFileError:
            raise
        except OSError as exc:
            # ETXTBSY (a running program), a lease, EIO...: it cannot be overwritten, but the
            # name must not stay behind: remove it, then report the failure as a WipeError.
            wfd, close_wfd, why_not = None, False, None
            prog.error = exc
            prog.verdict = BEST_EFFORT
            prog.reasons.insert(
                0, f"the file could not be opened for overwriting ({exc.strerror or exc})"
            )
        try:
            if wfd is not None:
                st = os.fstat(wfd)
                if not same(st, st_name) or not stat.S_ISREG(st.st_mode):
                    raise UnsafeFileError(shown, "was replaced while being opened: nothing removed")
                prog.hard_links = st.st_nlink
                if st.st_nlink > 1 and not own_file:
                    why_not = (
                        f"the file has {st.st_nlink} hard links and may be a link to data outside: "
                        "not overwritten, only this name was removed"
                    )
                elif st.st_nlink > 1:
                    # Emitted only once the file is gone: a warnings filter turned to "error"
                    # must not leave the file behind.
                    link_warning = (
                        f"{shown}: this temporary file had {st.st_nlink} hard links: someone "
                        "linked it; it is overwritten anyway, which destroys the other names' "
                        "data too, but they may have read it already"
                    )
                if why_not is None:
                    try:
                        _overwrite(wfd, st, passes, pattern, prog)
                    except BaseException as exc:  # KeyboardInterrupt: remove first, then re-raise
                        interrupted = exc
                        prog.verdict = BEST_EFFORT
                        prog.reasons.insert(0, f"the overwrite was interrupted ({exc!r})")
                    if st.st_nlink > 1:
                        prog.reasons.append(
                            f"the file had {st.st_nlink} hard links; all of them lost the data"
                        )
        finally:
            if close_wfd and wfd is not None:
                os.close(wfd)
        if why_not is not None:
            prog.verdict = SKIPPED
            prog.reasons.insert(0, why_not)
            prog.data_left = True

    if prog.data_left and unwiped == "keep":
        # Removing the name would hide that the plaintext is still there (shred -u refuses too).
        report = prog.report(shown, pattern, start, removed=False)
        raise WipeError(
            shown,
            f"{report.reasons[0]}: its data is still on the disk; not removed",
            report,
        )
    ident = st_name
    try:
        _hide_and_unlink(dir_fd, name, ident, shown, prog.reasons)
    except BaseException:
        if interrupted is not None:
            raise interrupted from None
        raise
    if sync_dir:
        _sync_dir(dir_fd, prog.reasons)
    report = prog.report(shown, pattern, start, removed=True)
    if interrupted is not None:
        raise interrupted
    if link_warning is not None:
        warnings.warn(link_warning, WipeUnreliableWarning, stacklevel=stacklevel)
    if prog.error is not None:
        raise WipeError(shown, report.reasons[0] + "; the file was removed", report) from prog.error
    if prog.data_left and unwiped == "remove":
        raise WipeError(
            shown, f"{report.reasons[0]}: its data is still on the disk; removed as asked", report
        )
    _apply_policy(report, policy, stacklevel=stacklevel + 1)
    return report


def remove_entry(
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
) -> WipeReport:
    """Remove the entry ``name`` of directory ``dir_fd``, overwriting it first if a regular file.

    Guarantees:

    * Never follows a symlink: a symlink, FIFO, socket or device is only unlinked.
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
        UnsafeFileError: the name refers to another inode than ``fd``/``expect``, or was
            swapped during removal (nothing of theirs removed).
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
    )


def wipe(
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

    The parent directory is opened with ``O_DIRECTORY|O_NOFOLLOW`` and the file relative
    to it with ``O_NOFOLLOW``: a symlink given as ``path`` (or as its parent) is refused,
    never followed (pass the real path, e.g. :func:`os.path.realpath`). A file with
    several hard links is overwritten anyway (you handed us this inode: the other names
    lose the data too) and a warning says so. The wipe policy applies.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        IsADirectoryError: ``path`` is a directory.
        UnsafeFileError: ``path`` or its parent is a symlink, or ``path`` is not a regular
            file (nothing removed).
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
    try:
        # O_NOFOLLOW: a parent swapped for a symlink would redirect the wipe elsewhere.
        dir_fd = os.open(parent or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (
            exc.errno == errno.ENOTDIR and os.path.islink(parent or ".")
        ):
            raise UnsafeFileError(
                parent, "is a symbolic link: wipe() never follows symlinks; pass the real path"
            ) from exc
        raise
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
            unwiped="remove" if remove_unwiped else "keep",
        )
    finally:
        os.close(dir_fd)


# --- trees ---------------------------------------------------------------------------------

# O_NOFOLLOW: a symlink swapped in for a subdirectory is never entered.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_ROUNDS = 1000  # rescans of one directory while others keep adding entries


def _open_subdir(parent_fd: int, name: str) -> int | None:
    """Open a subdirectory for emptying: None if it vanished or is no directory."""
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
        st = os.fstat(fd)
        if st.st_uid == os.geteuid() and (st.st_mode & 0o700) != 0o700:
            # Ours but read-only: we need write+search permission to remove its entries.
            os.fchmod(fd, stat.S_IMODE(st.st_mode) | 0o700)
    except BaseException:
        os.close(fd)
        raise
    return fd


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


def _open_top(parent_fd: int, name: str, expect: tuple[int, int] | None, display_path: str) -> int:
    """Open the directory to remove, checking it is still ours BEFORE fixing its mode."""
    not_ours = "name no longer refers to the directory we created"
    try:
        # O_PATH: pins the inode without needing (or changing) any permission on it; an
        # impostor is refused before it is chmod-ed (let alone emptied).
        entry = Entry.pin(
            parent_fd, name, expect=expect, directory=True, shown=display_path, not_ours=not_ours
        )
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
    with entry:
        st = entry.st
        fd = _reopen_pinned(entry, display_path)
    try:
        if st.st_uid == os.geteuid() and (st.st_mode & 0o700) != 0o700:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) | 0o700)
    except BaseException:
        os.close(fd)
        raise
    return fd


class _Frame:
    """One directory being emptied: its descriptor (-1 while parked, see
    :data:`_MAX_OPEN_FRAMES`), its inode, and the entries that could not go."""

    __slots__ = ("errors_at_scan", "fd", "ident", "name", "path", "rounds", "skip")

    def __init__(
        self, fd: int, path: str, name: str, errors_at_scan: int, ident: tuple[int, int]
    ) -> None:
        self.fd = fd
        self.ident = ident  # (st_dev, st_ino): what a reopened descriptor must be
        self.path = path
        self.name = name  # in the parent
        self.rounds = 0
        self.skip: set[str] = set()  # failed entries: reported once, never retried
        self.errors_at_scan = errors_at_scan


# Descriptors one walk holds at most, however deep the tree: deeper than this, the
# frames far above are parked (closed) and reopened on the way back up. Without it, a
# tree deeper than RLIMIT_NOFILE (1024 by default) failed with EMFILE and stayed.
_MAX_OPEN_FRAMES = 64


def _park_far_frame(stack: list[_Frame]) -> None:
    """Close the descriptor of the frame :data:`_MAX_OPEN_FRAMES` above the newest one
    (never the top's: the caller owns it)."""
    far = len(stack) - 1 - _MAX_OPEN_FRAMES
    if far >= 1 and stack[far].fd >= 0:
        os.close(stack[far].fd)
        stack[far].fd = -1


def _reopen_parent(child: _Frame, parent: _Frame) -> int:
    """Reopen a parked ``parent`` as the ``..`` of its open ``child``, by descriptor.

    Raises:
        UnsafeFileError: ``..`` is no longer the directory we parked (the child was moved
            out of the tree meanwhile): nothing outside our tree is ever reached.
        OSError: the open failed.
    """
    # O_NOFOLLOW|O_DIRECTORY on "..": the kernel's own parent link, never a symlink.
    fd = os.open("..", _DIR_FLAGS, dir_fd=child.fd)
    if ident(os.fstat(fd)) != parent.ident:
        os.close(fd)
        raise UnsafeFileError(child.path, "was moved out of the tree during removal")
    return fd


class _Tree:
    """One removal: its options and the errors met (the walk goes on past them)."""

    def __init__(self, overwrite: bool, onerror: Callable[[BaseException], None]) -> None:
        self.overwrite = overwrite
        self._onerror = onerror
        self.errors = 0

    def onerror(self, exc: BaseException) -> None:
        self.errors += 1
        self._onerror(exc)

    def stuck(self, frame: _Frame) -> bool:
        """Whether an error already explains why ``frame`` cannot be emptied."""
        return bool(frame.skip) or self.errors != frame.errors_at_scan

    def remove_file(self, dir_fd: int, name: str, path: str) -> bool:
        """Unlink one entry; False (after reporting) when that failed."""
        try:
            # own_file=False: a file here with several links may be a link to data outside
            # the directory; remove_entry then unlinks it without overwriting.
            remove_entry(
                dir_fd,
                name,
                display_path=path,
                overwrite=self.overwrite,
                own_file=False,
                sync_dir=False,
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
        reported reason (entries added meanwhile) is scanned again.
        """
        stack: list[_Frame] = [top]
        try:
            while stack:
                frame = stack[-1]
                child = self._first_subdir_after_files(frame, top_dev)
                if child is not None:
                    stack.append(child)
                    _park_far_frame(stack)
                    continue
                if len(stack) == 1:
                    return  # the top is as empty as it gets; the caller removes it
                stack.pop()
                parent = stack[-1]
                if parent.fd < 0:
                    try:
                        parent.fd = _reopen_parent(frame, parent)
                    finally:
                        if parent.fd < 0:  # failed: the popped frame is in no stack to close
                            os.close(frame.fd)
                try:
                    os.rmdir(frame.name, dir_fd=parent.fd)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    stuck = self.stuck(frame)
                    if exc.errno == errno.ENOTEMPTY and not stuck and frame.rounds < _MAX_ROUNDS:
                        # Entries were added while we worked: scan it again.
                        frame.rounds += 1
                        frame.errors_at_scan = self.errors
                        stack.append(frame)
                        continue
                    parent.skip.add(frame.name)
                    if not (exc.errno == errno.ENOTEMPTY and stuck):
                        self.onerror(exc)  # else: the error below was reported already
                os.close(frame.fd)
        finally:
            for f in stack[1:]:
                if f.fd >= 0:
                    os.close(f.fd)

    def _first_subdir_after_files(self, frame: _Frame, top_dev: int) -> _Frame | None:
        """Remove the non-directories of ``frame``; return the first subdirectory to empty."""
        fd = frame.fd
        with os.scandir(fd) as entries:
            for entry in entries:
                if entry.name in frame.skip:
                    continue
                child_path = f"{frame.path}/{entry.name}"
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    is_dir = False
                if not is_dir:
                    if not self.remove_file(fd, entry.name, child_path):
                        frame.skip.add(entry.name)
                    continue
                try:
                    sub = _open_subdir(fd, entry.name)
                except OSError as exc:
                    frame.skip.add(entry.name)
                    if exc.filename is None:  # fstat/fchmod errors name no path: say which
                        exc.filename = child_path
                    self.onerror(exc)
                    continue
                if sub is None:
                    if not self.remove_file(fd, entry.name, child_path):
                        frame.skip.add(entry.name)
                    continue
                sub_st = os.fstat(sub)
                if sub_st.st_dev != top_dev:
                    # A mount point: emptying it would delete data that lives outside our tree.
                    os.close(sub)
                    frame.skip.add(entry.name)
                    self.onerror(
                        UnsafeFileError(child_path, "is a mount point; not descending into it")
                    )
                    continue
                return _Frame(sub, child_path, entry.name, self.errors, ident(sub_st))
        return None


def rmtree_at(
    parent_fd: int,
    name: str,
    *,
    expect: tuple[int, int] | None,
    display_path: str,
    overwrite: bool = True,
    onerror: Callable[[BaseException], None] | None = None,
) -> None:
    """Remove the directory ``name`` of ``parent_fd`` and everything in it.

    Regular files are overwritten first (see :func:`remove_entry`)
    unless ``overwrite`` is false. Symlinks are unlinked, never followed. Mount
    points below are not entered. ``expect`` is the ``(st_dev, st_ino)`` the
    name must still refer to.

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
    tree = _Tree(overwrite, onerror if onerror is not None else errors.append)
    fd = _open_top(parent_fd, name, expect, display_path)
    try:
        st = os.fstat(fd)
        sys.audit("hardtemp.rmtree", display_path)
        top = _Frame(fd, display_path, name, tree.errors, ident(st))
        for rounds in range(_MAX_ROUNDS + 1):
            top.errors_at_scan = tree.errors
            tree.empty(top, st.st_dev)
            try:
                os.rmdir(name, dir_fd=parent_fd)
                break
            except OSError as exc:
                stuck = tree.stuck(top)
                if exc.errno != errno.ENOTEMPTY or rounds == _MAX_ROUNDS or stuck:
                    if not (exc.errno == errno.ENOTEMPTY and stuck):
                        tree.onerror(exc)  # else: the error below was reported already
                    break
    finally:
        os.close(fd)
    if errors:
        raise errors[0]
