"""Freed directory blocks hold no names: an emptied directory reaches the disk before it goes.

On ext4 an unlink zeroes the entry's name in the directory block (Linux 5.13+), but only
in memory and the journal: removing the directory right after frees that block, and the
journal never writes the zeroed version to its home location, so the freed block on disk
keeps every original name (measured on a raw ext4 image: all names of a
``TemporaryDirectory``'s files were found outside the journal after cleanup).

Invariants:

* The settle step is called on an emptied directory just before it is removed:
  ``syncfs`` commits its zeroed block to the journal and then writes it back to its home
  location, so the block freed by ``rmdir`` holds no names (measured: none outside the
  journal; an ``fsync`` of the directory alone leaves them, so it is only the fallback
  of a libc without ``syncfs``). The journal itself keeps names until it wraps: nothing
  from user space can clear it.
* Best effort and never fatal: a failing sync changes nothing that was removed. Skipped
  on RAM filesystems (tmpfs, ramfs), where nothing reaches a disk.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Callable

from ._fsinfo import VOLATILE, FsInfo, fs_info_for_fd

__all__ = ["settler", "settler_for"]

_libc = ctypes.CDLL(None, use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)


def _settle(fd: int) -> None:
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
    return _settle  # a disk, or an unknown filesystem: settle anyway
