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
        st = os.fstat(pfd)
        if st.st_uid != os.geteuid():
            raise PermissionError(errno.EACCES, "cannot read another user's directory", name)
        # /proc/self/fd/N is the inode pfd pins, not a re-resolution of the name.
        os.chmod(f"/proc/self/fd/{pfd}", stat.S_IMODE(st.st_mode) | 0o700)
        return os.open(f"/proc/self/fd/{pfd}", _DIR_FLAGS & ~os.O_NOFOLLOW)
    finally:
        os.close(pfd)


class _Tree:
    """One removal: its options and the errors met (the walk goes on past them)."""

    def __init__(self, overwrite: bool, onerror: Callable[[BaseException], None]) -> None:
        self.overwrite = overwrite
        self.onerror = onerror

    def remove_file(self, dir_fd: int, name: str, path: str) -> None:
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

    def empty(self, top_fd: int, top_path: str, top_dev: int) -> None:
        """Remove everything below the directory open at ``top_fd`` (post-order)."""
        # Each frame: (fd, path, name in parent, rounds)
        stack: list[tuple[int, str, str, int]] = [(top_fd, top_path, "", 0)]
        try:
            while stack:
                fd, path, name, rounds = stack[-1]
                child = self._first_subdir_after_files(fd, path, top_dev)
                if child is not None:
                    stack.append(child)
                    continue
                if len(stack) == 1:
                    return  # the top is empty; the caller removes it
                stack.pop()
                parent_fd = stack[-1][0]
                try:
                    os.rmdir(name, dir_fd=parent_fd)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    if exc.errno == errno.ENOTEMPTY and rounds < _MAX_ROUNDS:
                        # Entries were added while we worked: scan it again.
                        stack.append((fd, path, name, rounds + 1))
                        continue
                    self.onerror(exc)
                os.close(fd)
        finally:
            for fd, *_ in stack[1:]:
                os.close(fd)

    def _first_subdir_after_files(
        self, fd: int, path: str, top_dev: int
    ) -> tuple[int, str, str, int] | None:
        """Remove the non-directories of ``fd``; return the first subdirectory to descend into."""
        with os.scandir(fd) as entries:
            for entry in entries:
                child_path = f"{path}/{entry.name}"
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    is_dir = False
                if not is_dir:
                    self.remove_file(fd, entry.name, child_path)
                    continue
                try:
                    sub = _open_subdir(fd, entry.name)
                except OSError as exc:
                    self.onerror(exc)
                    continue
                if sub is None:
                    self.remove_file(fd, entry.name, child_path)
                    continue
                if os.fstat(sub).st_dev != top_dev:
                    # A mount point: emptying it would delete data that lives outside our tree.
                    os.close(sub)
                    self.onerror(
                        UnsafeFileError(child_path, "is a mount point; not descending into it")
                    )
                    continue
                return sub, child_path, entry.name, 0
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
        UnsafeFileError: ``name`` no longer refers to ``expect`` (nothing removed).
        FileNotFoundError: ``name`` does not exist.
        OSError: the first error met, when no ``onerror`` is given.
    """
    errors: list[BaseException] = []
    tree = _Tree(overwrite, onerror if onerror is not None else errors.append)
    fd = _open_subdir(parent_fd, name)
    if fd is None:
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory (or a symlink)", display_path)
    try:
        st = os.fstat(fd)
        if expect is not None and (st.st_dev, st.st_ino) != expect:
            raise UnsafeFileError(display_path, "name no longer refers to the directory we created")
        sys.audit("hardtemp.rmtree", display_path)
        for rounds in range(_MAX_ROUNDS + 1):
            tree.empty(fd, display_path, st.st_dev)
            try:
                os.rmdir(name, dir_fd=parent_fd)
                break
            except OSError as exc:
                if exc.errno != errno.ENOTEMPTY or rounds == _MAX_ROUNDS:
                    tree.onerror(exc)
                    break
    finally:
        os.close(fd)
    if errors:
        raise errors[0]
