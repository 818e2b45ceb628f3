"""Removing a directory tree we created, by descriptor, never following a symlink.

The walk opens every subdirectory with ``O_NOFOLLOW|O_DIRECTORY`` relative to
its parent's descriptor, so a symlink (planted or swapped in mid-walk) is
unlinked as an entry, never traversed, read, chmod-ed or deleted through.
When a subdirectory of ours lacks permissions, its mode is fixed through a
descriptor of that very inode (``O_PATH`` + ``/proc/self/fd``), never by
name: CPython's CVE-2023-6597 chmod-ed a symlink's target here.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Callable

from ._wipe import remove_entry
from .exceptions import UnsafeFileError

__all__ = ["rmtree_at"]

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
    pfd = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
    try:
        return _reopen_pinned(pfd, os.fstat(pfd), name)
    finally:
        os.close(pfd)


def _reopen_pinned(pfd: int, st: os.stat_result, name: str) -> int:
    """A readable descriptor of the directory ``pfd`` (``O_PATH``) pins, fixing its mode."""
    # /proc/self/fd/N is the inode pfd pins, not a re-resolution of the name.
    proc = f"/proc/self/fd/{pfd}"
    try:
        return os.open(proc, _DIR_FLAGS & ~os.O_NOFOLLOW)
    except PermissionError:
        if st.st_uid != os.geteuid():
            raise PermissionError(
                errno.EACCES, "cannot read another user's directory", name
            ) from None
    os.chmod(proc, stat.S_IMODE(st.st_mode) | 0o700)
    return os.open(proc, _DIR_FLAGS & ~os.O_NOFOLLOW)


def _open_top(parent_fd: int, name: str, expect: tuple[int, int] | None, display_path: str) -> int:
    """Open the directory to remove, checking it is still ours BEFORE fixing its mode."""
    not_ours = "name no longer refers to the directory we created"
    try:
        # O_PATH: pins the inode without needing (or changing) any permission on it.
        pfd = os.open(
            name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd
        )
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
        st = os.fstat(pfd)
        if expect is not None and (st.st_dev, st.st_ino) != expect:
            # An impostor: chmod-ing (let alone emptying) it would change what is not ours.
            raise UnsafeFileError(display_path, not_ours)
        fd = _reopen_pinned(pfd, st, display_path)
    finally:
        os.close(pfd)
    try:
        if st.st_uid == os.geteuid() and (st.st_mode & 0o700) != 0o700:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) | 0o700)
    except BaseException:
        os.close(fd)
        raise
    return fd


class _Frame:
    """One directory being emptied: its descriptor, and the entries that could not go."""

    __slots__ = ("errors_at_scan", "fd", "name", "path", "rounds", "skip")

    def __init__(self, fd: int, path: str, name: str, errors_at_scan: int) -> None:
        self.fd = fd
        self.path = path
        self.name = name  # in the parent
        self.rounds = 0
        self.skip: set[str] = set()  # failed entries: reported once, never retried
        self.errors_at_scan = errors_at_scan


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
                    continue
                if len(stack) == 1:
                    return  # the top is as empty as it gets; the caller removes it
                stack.pop()
                parent = stack[-1]
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
                if os.fstat(sub).st_dev != top_dev:
                    # A mount point: emptying it would delete data that lives outside our tree.
                    os.close(sub)
                    frame.skip.add(entry.name)
                    self.onerror(
                        UnsafeFileError(child_path, "is a mount point; not descending into it")
                    )
                    continue
                return _Frame(sub, child_path, entry.name, self.errors)
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

    Regular files are overwritten first (see :func:`hardtemp._wipe.remove_entry`)
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
        top = _Frame(fd, display_path, name, tree.errors)
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
