"""The common file of a tree removal: a regular file in a directory only we can write.

:func:`hardtemp._remove.rmtree_at` removes most files of a tree here, with the fewest
system calls that keep every guarantee (open, ``statx``, overwrite, close, ``unlink``);
anything unusual is declined (``False``) and goes the general way,
:func:`hardtemp._remove.remove_entry`, which handles and reports every case.

Invariants:

* Only for a directory owned by us with no group/other write bit (:func:`private_dir`;
  a POSIX ACL granting anyone write shows as a group write bit, its mask): no other user
  can create, rename or remove its entries, so the name cannot be swapped between our
  checks. That is what makes the general way's ``O_PATH`` pin, name re-check and
  hide-by-rename redundant here (they stop a swap by a user who can write the directory).
* Only an entry the directory lists as a regular file is opened, with
  ``O_NOFOLLOW|O_NONBLOCK|O_NOCTTY``; the opened inode must be a regular file of ours
  with one link, on the tree's mount (mount id, so a bind mount of the same filesystem
  counts): else it is closed untouched and the general way decides.
* The overwrite follows :mod:`hardtemp._wipe`'s rules (data extents only, the tail block
  when a block may be on the disk, ``fdatasync`` only when a block was allocated,
  looked at after the overwrite), only for a verdict that needs no warning (``"in
  place"`` or ``"volatile"``). On ext2/3/4, xfs and btrfs each file is classified on its
  own (:func:`hardtemp._fsinfo.refine_for_file`), and declined unless "in place": an ext3/4
  file with the journal-data or inline-data flag, an xfs file sharing extents with a
  reflink copy (the general way warns: the shared blocks keep the data); of btrfs
  (copy-on-write: "not in place") only a NOCOW file with unshared, non-inline extents is
  taken. A file whose data is one block (the common
  small file) is overwritten first and FIEMAP asked afterwards, once (see
  :func:`hardtemp._wipe.overwrite_fresh`); in RAM (``"volatile"``) that is one ``pwrite``,
  made here (no block on a disk: no FIEMAP, tail or sync).
* Once the overwrite has started, the name is removed even if it fails or is
  interrupted: a failure is declined after the unlink would lose its report, so an
  OSError declines *before* unlinking (the general way overwrites again and reports);
  an interrupt unlinks, then propagates.
* In RAM (``"volatile"``) the overwrite is zeros (SECURITY.md, "The overwrite pattern").
  Elsewhere the random bytes come from a pool that outlives one tree (the next removal in the
  process continues it: a 4 KiB ``getrandom`` per small tree cost more than its files'
  overwrites), each byte handed out once: a removal takes the pool for itself (a
  finalizer's removal inside another, or another thread's, gets another), and a pool is
  used only in the process that filled it (``_owner``'s token: a child forked by any
  means, ``libc.fork()`` included, never writes the bytes its parent will).
* A file whose data may be on the disk keeps its descriptor and its name until its
  overwrite is durable: its writeback starts at once (``sync_file_range``), and at most
  64 such files later (or at the end of the directory: :meth:`TreeFiles.flush`) each
  write is waited for and one ``fdatasync`` flushes the device's cache for the batch;
  only then are the names unlinked and the descriptors closed (the last close of an
  unlinked inode drops dirty pages unwritten). A SIGKILL meanwhile leaves names, never
  freed blocks holding plaintext; a file whose sync fails goes the general way.
"""

from __future__ import annotations

import os
from stat import S_ISREG

from . import _owner
from ._fsinfo import (
    FS_INLINE_DATA_FL,
    FS_JOURNAL_DATA_FL,
    IN_PLACE,
    VOLATILE,
    FsInfo,
    refine_for_file,
)
from ._fsinfo import get_file_flags as _get_file_flags
from ._linux import (
    SYNC_FILE_RANGE_WAIT_AFTER,
    SYNC_FILE_RANGE_WAIT_BEFORE,
    SYNC_FILE_RANGE_WRITE,
    StatxReader,
    sync_file_range,
)
from ._wipe import ZEROS, RandomPool, overwrite_fresh

__all__ = ["TreeFiles", "private_dir"]

_EXT_MAGIC = 0xEF53
_XFS_MAGIC = 0x58465342
_BTRFS_MAGIC = 0x9123683E
# O_NOFOLLOW: a symlink is never opened; O_NONBLOCK: a FIFO or lease never blocks us;
# O_NOCTTY: a terminal never becomes ours.
_BATCH = 64  # files held for one sync: bounded descriptors, one device-cache flush each
_WAIT_WRITE_WAIT = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER
_POOL_TAKE_MAX = RandomPool.SIZE  # the most one take hands out
_OPEN_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


# The random pools of finished removals, each with the token of the process that filled
# it and the statx buffer that removal used; list pop/append are atomic, so no two
# removals (threads, a finalizer's removal inside another) ever take the same bytes, or
# the same buffer.
_pools: list[tuple[int, RandomPool, StatxReader]] = []
_POOLS_KEPT = 4  # as many removals as ever ran at once, bounded


def _take_pool(token: int) -> tuple[RandomPool, StatxReader]:
    """A random pool and a statx buffer for one removal in the process ``token``: a
    finished removal's, continued, or new ones."""
    while _pools:
        try:
            owner, pool, reader = _pools.pop()
        except IndexError:
            break  # another thread took the last one
        # A forked child (any fork: the token's wipe-on-fork page) drops its parent's pools:
        # the parent goes on handing out those very bytes.
        if owner == token:
            return pool, reader
    return RandomPool(), StatxReader()


def private_dir(uid: int, mode: int, euid: int) -> bool:
    """Whether only we (effective uid ``euid``) and root can change the entries of a
    directory owned by ``uid`` with ``mode``."""
    return uid == euid and not mode & 0o022


class TreeFiles:
    """The fast removal of one tree's files: its mount and filesystem, looked up once.

    ``info`` is the tree's filesystem (every file taken here is checked to be on the
    tree's mount, hence on that filesystem); ``mnt_id`` is the tree's mount id; ``euid``
    the effective uid whose files these are.
    """

    __slots__ = (
        "_euid",
        "_ext",
        "_mnt_id",
        "_per_file",
        "_pool",
        "_statx",
        "_token",
        "_volatile",
        "failed",
        "held",
        "info",
        "usable",
    )

    def __init__(self, info: FsInfo, mnt_id: int, euid: int) -> None:
        self.info = info
        self._mnt_id = mnt_id
        self._euid = euid
        self._token = _owner.pid()
        # The pool, and one statx buffer for the whole tree (reused by the next removal).
        self._pool, self._statx = _take_pool(self._token)
        self.held: list[tuple[int, int, str, int]] = []  # (dir_fd, fd, name, size): to sync
        self.failed: list[str] = []  # names a batch flushed early could not sync
        self._volatile = info.verdict == VOLATILE
        # Each file classified on its own: ext3/4's journal-data or inline-data flag puts it
        # through the journal; xfs: one sharing extents with a reflink copy is not in place;
        # btrfs: a NOCOW file with unshared, non-inline extents is.
        self._per_file = info.f_type in (_EXT_MAGIC, _XFS_MAGIC, _BTRFS_MAGIC)
        self._ext = info.f_type == _EXT_MAGIC
        # Warned-about verdicts and unknown mounts go the general way (it warns and reports).
        self.usable = mnt_id >= 0 and (
            info.verdict in (IN_PLACE, VOLATILE) or info.f_type == _BTRFS_MAGIC
        )

    def close(self) -> None:
        """Hand the random pool on to the process's next removal (its unused bytes were
        never handed out)."""
        if len(_pools) < _POOLS_KEPT:
            _pools.append((self._token, self._pool, self._statx))

    def remove(self, dir_fd: int, name: str) -> bool:
        """Overwrite and unlink the regular file ``name`` of the private directory
        ``dir_fd``; False (nothing changed) when it must go the general way. A file whose
        data may be on the disk is held open, name and all, until :meth:`flush`.

        Raises:
            BaseException: an interrupt during the overwrite (KeyboardInterrupt...),
                re-raised once the name is unlinked.
        """
        try:
            fd = os.open(name, _OPEN_FLAGS, dir_fd=dir_fd)
        except OSError:
            return False  # a read-only file of ours, ETXTBSY, a symlink...: the general way
        try:
            # _ours, inline (it ran once per file of a tree): the open inode must be ours here.
            try:
                mode, uid, nlink, size, blocks, blksize, mnt_id = self._statx.read(fd)
            except OSError:
                return False  # no statx (ENOSYS, refused): the general way looks otherwise
            if (
                not S_ISREG(mode)
                or nlink != 1  # another name may be a link to data outside: general way
                or uid != self._euid
                or mnt_id != self._mnt_id  # a mount point: never overwritten or unlinked
            ):
                return False
            info = self._file_info(fd) if self._per_file else self.info
            if info is None:
                return False  # shared (reflink, snapshot), inline, COW: the general way warns
            try:
                if self._volatile and blocks and 0 < size <= blksize and size <= _POOL_TAKE_MAX:
                    # overwrite_fresh's one-block case in RAM, inline (once per file of a tree):
                    # one pass into the page cache; no block on a disk, no tail, no sync.
                    # Zeros: RAM overwritten in place, which zeros destroy (as overwrite_fresh).
                    if os.pwrite(fd, ZEROS[:size], 0) != size:
                        return False  # short: the general way overwrites again and reports
                    restore = -1
                else:
                    restore = overwrite_fresh(fd, info, size, blocks, blksize, self._pool, True)
            except OSError:
                return False  # the general way overwrites again and reports the error
            except BaseException:
                # An interrupt mid-overwrite: the name must not stay behind (as remove_entry).
                os.close(fd)
                fd = -1
                os.unlink(name, dir_fd=dir_fd)
                raise
            if restore >= 0:
                fd, held = -1, fd
                return self._hold(dir_fd, held, name, restore)
        finally:
            if fd >= 0:
                os.close(fd)
        try:
            os.unlink(name, dir_fd=dir_fd)  # as _unlink, inline: once per file of a tree
        except FileNotFoundError:
            pass  # only we can change this directory: gone means removed
        except OSError:
            return False  # EPERM, EIO...: the general way retries and reports
        return True

    def _file_info(self, fd: int) -> FsInfo | None:
        """The ext2/3/4, xfs or btrfs file ``fd``'s own verdict if "in place", else None."""
        if self._ext:
            # refine_for_file's ext rule, inline (once per file of a tree): its own blocks.
            flags = _get_file_flags(fd)
            if flags is None or flags & (FS_JOURNAL_DATA_FL | FS_INLINE_DATA_FL):
                return None  # through the journal (or unknown): the general way warns
            return self.info
        try:
            info = refine_for_file(fd, self.info)
        except OSError:
            return None  # the general way classifies it again and reports
        return info if info.verdict is IN_PLACE else None

    def _hold(self, dir_fd: int, fd: int, name: str, size: int) -> bool:
        """Keep the overwritten file ``fd`` (whose data reached the disk) for one batched
        sync: its writeback starts now, the name stays until it is durable."""
        try:
            sync_file_range(fd, SYNC_FILE_RANGE_WRITE)  # all the batch's writes in flight at once
        except OSError:
            os.close(fd)
            return False  # no sync_file_range, EIO...: the general way syncs it alone
        self.held.append((dir_fd, fd, name, size))
        if len(self.held) >= _BATCH:
            self.failed += self.flush()
        return True

    def flush(self) -> list[str]:
        """Make every held overwrite durable, then unlink its name (every descriptor closed);
        return the names that could not be synced, left in place for the general way.

        Each file's writeback is waited for (``sync_file_range``), then one ``fdatasync``
        flushes the device's write cache for all of them: one cache flush per batch, not
        per file. Only then is the name removed and the descriptor closed (the last close
        of an unlinked inode drops dirty pages unwritten: they must be on the disk first).
        """
        held, self.held = self.held, []
        failed, self.failed = self.failed, []
        done: list[tuple[int, int, str, int]] = []
        try:
            for entry in held:
                try:
                    sync_file_range(entry[1], _WAIT_WRITE_WAIT)
                    done.append(entry)
                except OSError:
                    failed.append(entry[2])  # EIO...: the general way retries and reports
            if done:
                try:
                    os.fdatasync(done[-1][1])  # the device cache flush, for every write above
                    for _, fd, _, size in done:
                        os.ftruncate(fd, size)  # the tail block's padding off again
                except OSError:
                    failed += [e[2] for e in done]
                    done = []
        finally:
            for _, fd, _, _ in held:
                os.close(fd)
        for dir_fd, _, name, _ in done:
            if not _unlink(dir_fd, name):
                failed.append(name)
        return failed


def _unlink(dir_fd: int, name: str) -> bool:
    """Unlink ``name``; False (for the general way to retry and report) when that failed."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass  # only we can change this directory: gone means removed
    except OSError:
        return False  # EPERM, EIO...
    return True
