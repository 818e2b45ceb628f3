"""Publishing a finished temp file or directory at its final name, durably.

Invariants:

* The destination name appears in one atomic step (``rename``/``renameat2`` or
  ``linkat``) and only after the data is complete: a crash at any point leaves
  either no file at the destination or the whole file, never a part of it.
* With ``durable``, the order is: ``fsync`` of the data (every file and
  directory of a tree), the rename/link relative to a descriptor of the
  destination directory, ``fsync`` of that very directory (and of the source
  directory when it differs): after a power loss the name refers to the
  complete data or is absent.
* No-clobber never replaces anything: ``RENAME_NOREPLACE`` or ``linkat``, both
  of which fail with ``EEXIST`` when the name exists, atomically in the kernel.
* The destination directory is opened once; the rename and its ``fsync`` use that
  descriptor, so a directory swapped in meanwhile is never the one synced.
* Only inodes we created are published: they are named by our verified
  directory descriptor and identity, or held by our own descriptor.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable

from ._create import Created
from ._inode import Entry, proc_path
from ._linux import rename_noreplace

__all__ = ["link_unnamed", "publish_dir", "publish_named", "rename_into_place", "sync_tree"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# O_NOFOLLOW: a symlink planted in the tree is never followed while syncing it;
# O_NONBLOCK: a FIFO or device never blocks us (and is not synced: only regular files).
_SYNC_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _open_parent(target: str) -> tuple[int, str]:
    """A descriptor of the directory that will hold ``target``, and the name in it.

    Raises: OSError (e.g. ``FileNotFoundError``, ``NotADirectoryError``).
    """
    parent, name = os.path.split(target)
    if not name:
        raise IsADirectoryError(errno.EISDIR, "the destination must name a file", target)
    return os.open(parent or ".", _DIR_FLAGS), name


def sync_tree(dir_fd: int) -> None:
    """``fsync`` every regular file and directory under ``dir_fd``, ``dir_fd``'s own
    directory included, walking by descriptor and never following a symlink.

    Raises: OSError from an open or ``fsync`` (``EIO``...).
    """
    # fwalk: every level is opened relative to its parent's descriptor, symlinks not followed.
    for _root, dirs, files, rootfd in os.fwalk(".", dir_fd=dir_fd, follow_symlinks=False):
        for name in files:
            try:
                fd = os.open(name, _SYNC_FLAGS, dir_fd=rootfd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:  # a symlink: its target is not ours to sync
                    continue
                raise
            try:
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    os.fsync(fd)
            finally:
                os.close(fd)
        del dirs  # subdirectories are synced when fwalk yields them
        os.fsync(rootfd)  # the first rootfd is dir_fd's directory itself


def rename_into_place(
    src_dir_fd: int,
    src: str,
    target: str | bytes,
    *,
    noclobber: bool,
    durable: bool,
    data_fd: int | None,
) -> str | bytes:
    """Rename ``src`` (in our verified directory) to ``target``; return ``target`` as given.

    ``data_fd`` is a descriptor of the file to ``fsync`` first (``None``: a directory,
    already synced by the caller, or nothing to sync).

    Raises:
        FileExistsError: ``noclobber`` and ``target`` exists (nothing changed).
        OSError: ``EXDEV`` across filesystems, ``EIO`` from an ``fsync``...
    """
    if durable and data_fd is not None:
        os.fsync(data_fd)  # the data first: the name must never point at unwritten blocks
    dst_fd, name = _open_parent(os.fsdecode(target))
    try:
        if noclobber:
            rename_noreplace(src_dir_fd, src, dst_fd, name)
        else:
            os.rename(src, name, src_dir_fd=src_dir_fd, dst_dir_fd=dst_fd)
        if durable:
            os.fsync(dst_fd)  # the new name itself
            if not os.path.samestat(os.fstat(dst_fd), os.fstat(src_dir_fd)):
                os.fsync(src_dir_fd)  # and the removal of the old one
    finally:
        os.close(dst_fd)
    return target


def link_unnamed(fd: int, target: str | bytes, *, durable: bool) -> str | bytes:
    """Give the unnamed (``O_TMPFILE`` without ``O_EXCL``) file ``fd`` the name ``target``.

    Never replaces anything: ``linkat`` fails if the name exists.

    Raises:
        FileExistsError: ``target`` exists (nothing changed).
        ValueError: the file has a name already, or was not created ``linkable``
            (``O_TMPFILE|O_EXCL``, or an unlinked file).
        FileNotFoundError: ``/proc`` is not mounted (the only way to link without
            privileges); nothing changed.
        OSError: ``EXDEV`` across filesystems, ``EIO``...
    """
    if os.fstat(fd).st_nlink != 0:
        raise ValueError("the file has a name already: it was linked before")
    if durable:
        os.fsync(fd)  # the data first: the name must never point at unwritten blocks
    shown = os.fsdecode(target)
    dst_fd, name = _open_parent(shown)
    try:
        try:
            # linkat(AT_FDCWD, "/proc/self/fd/N", dst, name, AT_SYMLINK_FOLLOW): the magic
            # link is the inode fd holds, so the very file we wrote is what gets the name.
            os.link(proc_path(fd), name, dst_dir_fd=dst_fd, follow_symlinks=True)
        except FileNotFoundError as exc:
            if os.path.exists(proc_path(fd)):
                # The kernel refuses an O_TMPFILE|O_EXCL file this way: never linkable.
                raise ValueError(
                    "the file was not created linkable (TemporaryFile(linkable=True))"
                ) from exc
            # No /proc: nothing else links an unnamed file without privileges.
            raise FileNotFoundError(
                errno.ENOENT, "linking an unnamed file needs /proc mounted", shown
            ) from exc
        if durable:
            os.fsync(dst_fd)
    finally:
        os.close(dst_fd)
    return target


def publish_named(
    made: Created, target: str | bytes, *, noclobber: bool, durable: bool, fd: int | None
) -> str | bytes:
    """Rename our named temp file ``made`` to ``target``; ``fd`` is its open descriptor
    (``None`` once closed: then, with ``durable``, it is reopened through its verified
    name to be synced).

    Raises: as :func:`rename_into_place`; UnsafeFileError when the name is another
    file now.
    """
    name = os.fsdecode(made.name)
    reopened = None
    if durable and fd is None:
        with Entry.pin(
            made.handle.fd, name, expect=(made.dev, made.ino), shown=os.fsdecode(made.path)
        ) as entry:
            fd = reopened = entry.reopen(os.O_RDONLY)
    try:
        return rename_into_place(
            made.handle.fd, name, target, noclobber=noclobber, durable=durable, data_fd=fd
        )
    finally:
        if reopened is not None:
            os.close(reopened)


def publish_dir(
    made: Created,
    target: str | bytes,
    *,
    durable: bool,
    unmark: Callable[[int], None],
    remark: Callable[[int], None],
) -> str | bytes:
    """Rename our temp directory ``made`` to ``target`` (never replacing anything).

    ``unmark(fd)`` removes the sweeper's mark first; ``remark(fd)`` puts it back if the
    rename fails. With ``durable``, every file and directory inside is synced first.

    Raises: as :func:`rename_into_place`; UnsafeFileError when the name is another
    directory now.
    """
    name = os.fsdecode(made.name)
    with Entry.pin(
        made.handle.fd,
        name,
        expect=(made.dev, made.ino),
        directory=True,
        shown=os.fsdecode(made.path),
        not_ours="name no longer refers to our directory",
    ) as entry:
        dfd = entry.reopen(os.O_RDONLY | os.O_DIRECTORY)
    try:
        unmark(dfd)  # a kept directory is no temp directory: the sweeper must leave it
        try:
            if durable:
                sync_tree(dfd)
            return rename_into_place(
                made.handle.fd, name, target, noclobber=True, durable=durable, data_fd=None
            )
        except BaseException:
            remark(dfd)
            raise
    finally:
        os.close(dfd)
