"""Freed directory blocks hold no names: emptied directories reach the disk before they go.

On ext4 an unlink (or a rename away) zeroes the entry's name in the directory block (Linux
5.13+), but only in memory and the journal: removing the directory right after frees that
block, and the journal never writes the zeroed version to its home location, so the freed
block on disk keeps every original name (measured on a raw ext4 image: all names of a
``TemporaryDirectory``'s files were found outside the journal after cleanup).

Invariants:

* No directory of a tree on a disk is removed before its emptied (zeroed) blocks were
  written home: ``syncfs`` commits them to the journal and then writes them back to their
  home location, so the block freed by ``rmdir`` holds no names (measured: none outside
  the journal; an ``fsync`` of the directory alone leaves them, so it is only the fallback
  of a libc without ``syncfs``). The journal itself keeps names until it wraps: nothing
  from user space can clear it.
* One ``syncfs`` per tree, not one per directory: an emptied directory is moved (its
  parent's entry zeroed too) into the tree's top under a random name — a
  :class:`Graveyard` — and once the walk is done (or every ``_GRAVES`` directories) one
  ``syncfs`` writes all their blocks home; only then are they removed. The top's block
  then holds only random grave names, which say nothing.
* Only a directory that only we can change, in a parent and a top only we can change, is
  moved (the caller's rule, see :mod:`hardtemp._remove`): nobody else can have or add an
  entry there, so nothing of another user's is ever moved out of their reach. A move that
  fails (``ENOSPC`` when the top must grow, ``EMLINK``, no ``RENAME_NOREPLACE``) leaves the
  directory where it was, for the caller to settle and remove it in place.
* A crash, SIGKILL or interrupt before the ``syncfs`` leaves empty directories with random
  names in the top (nothing freed, so no block holds names outside the live tree); the top
  stays too, with its sweep mark, for the next removal or ``hardtemp sweep``.
* Best effort and never fatal: a failing sync changes nothing that was removed. Skipped
  on RAM filesystems (tmpfs, ramfs), where nothing reaches a disk.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
from collections.abc import Callable

from ._fsinfo import VOLATILE, FsInfo, fs_info_for_fd
from ._linux import rename_noreplace
from ._names import random_name

__all__ = ["Graveyard", "settler", "settler_for"]

_libc = ctypes.CDLL(None, use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)
# Directories held for one syncfs: bounds the top's growth and what a crash leaves.
_GRAVES = 1024


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


class Graveyard:
    """The emptied directories of one tree, held in its top ``top_fd`` for one settle.

    :meth:`take` moves one in; :meth:`bury` settles the filesystem once, then removes them.
    """

    __slots__ = ("_graves", "_settle", "_top_fd")

    def __init__(self, top_fd: int, settle: Callable[[int], None]) -> None:
        self._top_fd = top_fd
        self._settle = settle
        self._graves: list[str] = []

    @property
    def full(self) -> bool:
        """Whether :meth:`bury` is due (``_GRAVES`` directories held)."""
        return len(self._graves) >= _GRAVES

    def take(self, parent_fd: int, name: str) -> bool:
        """Move the emptied directory ``name`` of ``parent_fd`` into the top; False (nothing
        changed) when it cannot be moved and must be settled and removed where it is."""
        # 80 random bits, RENAME_NOREPLACE: the move never replaces an entry, never guessed.
        grave = ".ht-" + random_name()
        try:
            rename_noreplace(parent_fd, name, self._top_fd, grave)
        except OSError:
            return False  # ENOSPC (the top must grow), EMLINK, EEXIST, no NOREPLACE...
        self._graves.append(grave)
        return True

    def bury(self) -> list[OSError]:
        """One settle for everything removed so far, then every held directory removed;
        returns the errors (``filename``: the grave's name in the top). A grave that is no
        longer empty (entries added after it was emptied) is left for the top's next scan.
        """
        graves, self._graves = self._graves, []
        self._settle(self._top_fd)  # every zeroed block home before any of them is freed
        errors: list[OSError] = []
        for grave in graves:
            try:
                os.rmdir(grave, dir_fd=self._top_fd)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.ENOTEMPTY:
                    errors.append(exc)
        return errors
