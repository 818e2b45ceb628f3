"""Where is a directory checked? Here, and only here.

A directory is *trusted* when no other local user can create, rename,
replace or delete entries in it or on the way to it:

* it and every ancestor up to ``/`` is owned by root or by the effective user;
* any of them that is writable by group or others has the sticky bit (so
  others cannot rename or delete what is ours, as in ``/tmp``);
* a symlink on the way is followed only when it is owned by root or by the
  effective user (it sits in a directory already checked).

This is Perl File::Temp's HIGH safe level / OpenSSH's ``safe_path``, done on
descriptors: each component is opened with ``O_NOFOLLOW`` relative to the
already-verified descriptor of its parent and checked with ``fstat``, so no
component can be swapped between the check and the use.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ._codes import Reason, TrustReason
from ._fsinfo import is_btrfs
from .exceptions import UnsafeDirectoryError, UnsafeFileError

__all__ = [
    "DirHandle",
    "TrustReport",
    "TrustedComponent",
    "check_dir",
    "open_trusted_dir_nofollow",
    "trusted_dir",
]

# O_PATH: ancestors only need search permission, never read permission.
# O_NOFOLLOW: a symlink is never traversed implicitly; we judge it first.
# O_CLOEXEC: the descriptor never leaks into a program we exec.
_PATH_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_SYMLINKS = 40  # as the kernel's ELOOP limit
_WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH


@dataclass(frozen=True)
class TrustedComponent:
    """One step of the walk: a directory or a symlink and why it is trusted."""

    path: str
    kind: str  # "directory" or "symlink"
    uid: int
    mode: int
    why: str


@dataclass(frozen=True)
class TrustReport:
    """Why a directory is trusted: every component that was checked, in order.

    ``path`` is the absolute path asked for, ``real_path`` the directory it
    resolves to after (trusted) symlinks.
    """

    path: str
    real_path: str
    components: tuple[TrustedComponent, ...]

    def __str__(self) -> str:
        lines = [f"{self.path} is trusted (resolves to {self.real_path}):"]
        lines += [
            f"  {c.kind:9} {c.path}  uid={c.uid} mode={stat.filemode(c.mode)}: {c.why}"
            for c in self.components
        ]
        return "\n".join(lines)


def _owner_ok(st: os.stat_result, euid: int) -> str | None:
    if st.st_uid == euid:
        return "owned by you" if euid != 0 else "owned by root"
    if st.st_uid == 0:
        return "owned by root"
    return None


def _trusted_owners(euid: int) -> str:
    return "root" if euid == 0 else f"root or uid {euid}"


def judge(st: os.stat_result, euid: int) -> tuple[bool, str]:
    """Apply the trust rule to one directory's ``fstat``: ``(trusted, why)``."""
    owner = _owner_ok(st, euid)
    if owner is None:
        # Another user's directory: its owner can rename or replace anything in it, e.g. swap
        # a name we return for a symlink before the caller (root too) opens that name again.
        return False, Reason(
            TrustReason.OTHER_OWNER,
            f"owned by uid {st.st_uid}, not by {_trusted_owners(euid)}: that user can replace "
            "any name in it (with a symlink elsewhere, say) before you use the name again",
        )
    mode = st.st_mode
    if mode & _WRITABLE_BY_OTHERS:
        if not mode & stat.S_ISVTX:
            # Writable without the sticky bit: anyone in the group/world can
            # rename our entries away and plant their own in their place.
            who = "others" if mode & stat.S_IWOTH else "its group"
            return False, Reason(
                TrustReason.WRITABLE_NO_STICKY, f"writable by {who} without the sticky bit"
            )
        return True, f"{owner}; writable by others but sticky"
    return True, f"{owner}; not writable by others"


def passes(st: os.stat_result, euid: int) -> bool:
    """``judge(st, euid)[0]`` without building the reason: the cache's hot path."""
    uid = st.st_uid
    if uid != euid and uid != 0:
        return False  # another user's directory (judge's first refusal)
    # Writable by group/others only with the sticky bit (judge's second refusal).
    return not st.st_mode & _WRITABLE_BY_OTHERS or bool(st.st_mode & stat.S_ISVTX)


class _Walk:
    """State of one walk: the chain of verified descriptors from ``/``."""

    def __init__(self, euid: int) -> None:
        self.euid = euid
        self.chain: list[tuple[int, str]] = []  # (fd, absolute path)
        self.components: list[TrustedComponent] = []

    def close(self, keep: int | None = None) -> None:
        for fd, _ in self.chain:
            if fd != keep:
                os.close(fd)
        self.chain.clear()

    @property
    def path(self) -> str:
        return self.chain[-1][1]

    def push(self, fd: int, path: str) -> None:
        try:
            st = os.fstat(fd)
            ok, why = judge(st, self.euid)
        except BaseException:
            os.close(fd)
            raise
        if not ok:
            os.close(fd)
            raise UnsafeDirectoryError(path, _reason(why, f"directory is {why}"))
        self.chain.append((fd, path))
        self.components.append(TrustedComponent(path, "directory", st.st_uid, st.st_mode, why))

    def reset_to_root(self) -> None:
        self.close()
        self.push(os.open("/", _PATH_FLAGS), "/")

    def pop(self) -> None:
        if len(self.chain) > 1:  # "/.." is "/"
            fd, _ = self.chain.pop()
            os.close(fd)


def _reason(why: str, text: str) -> str:
    """``text`` with the code of ``why`` (a refusal of :func:`judge`'s)."""
    code = getattr(why, "code", None)
    return text if code is None else Reason(code, text)


def _join(parent: str, name: str) -> str:
    return parent + name if parent.endswith("/") else f"{parent}/{name}"


def _symlink_owner(st: os.stat_result, here: str, euid: int) -> str:
    """Who owns the symlink ``here`` (``st``), if that owner may choose where we go.

    Raises:
        UnsafeDirectoryError: another user's symlink (its owner chooses, and can change,
            where it leads).
    """
    owner = _owner_ok(st, euid)
    if owner is None:
        raise UnsafeDirectoryError(
            here,
            Reason(
                TrustReason.SYMLINK_OTHER_OWNER,
                f"symlink owned by uid {st.st_uid}, not by {_trusted_owners(euid)}",
            ),
        )
    return owner


def _walk(path: str, *, follow_symlinks: bool = True) -> tuple[int, TrustReport]:
    """Verify ``path`` component by component; return an ``O_PATH`` fd of it.

    ``follow_symlinks=False``: a symlink anywhere on the way raises UnsafeFileError.
    """
    walk = _Walk(os.geteuid())
    todo = [c for c in reversed(path.split("/")) if c not in ("", ".")]
    links = 0
    try:
        walk.reset_to_root()
        while todo:
            name = todo.pop()
            if name == "..":
                walk.pop()
                continue
            parent_fd = walk.chain[-1][0]
            here = _join(walk.path, name)
            try:
                fd = os.open(name, _PATH_FLAGS, dir_fd=parent_fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise type(exc)(exc.errno, exc.strerror, here) from None
                st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    raise NotADirectoryError(errno.ENOTDIR, "Not a directory", here) from None
                if not follow_symlinks:
                    # Never followed, even one of ours: its target is not what we were handed.
                    raise UnsafeFileError(
                        here,
                        "is a symbolic link: never followed here; pass the real path "
                        "(os.path.realpath)",
                    ) from None
                try:
                    owner = _symlink_owner(st, here, walk.euid)
                except UnsafeDirectoryError as refused:
                    raise refused from None  # the ELOOP that led here is no part of it
                links += 1
                if links > _MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, "Too many levels of symbolic links", path) from None
                target = os.readlink(name, dir_fd=parent_fd)
                walk.components.append(
                    TrustedComponent(
                        here, "symlink", st.st_uid, st.st_mode, f"{owner}; points to {target}"
                    )
                )
                todo.extend(c for c in reversed(target.split("/")) if c not in ("", "."))
                if target.startswith("/"):
                    walk.reset_to_root()
                continue
            walk.push(fd, here)
        final_fd = walk.chain[-1][0]
        report = TrustReport(path, walk.path, tuple(walk.components))
        walk.close(keep=final_fd)
        return final_fd, report
    except BaseException:
        walk.close()
        raise


def _abspath(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    p = path if type(path) is str else os.fsdecode(os.fspath(path))
    if "\0" in p:
        raise ValueError(f"embedded null character in path: {p!r}")
    if not p.startswith("/"):
        p = _join(os.getcwd(), p)
    return p


def check_dir(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> TrustReport:
    """Check that ``path`` is a trusted directory and say why.

    Returns a :class:`TrustReport` listing every directory and symlink on the
    way with the rule it satisfies.

    Raises:
        UnsafeDirectoryError: a component is not trusted (``path`` names it,
            ``reason`` says why).
        FileNotFoundError, NotADirectoryError, PermissionError: the path does
            not lead to a directory we can search.
        ValueError: the path contains a NUL character.
    """
    fd, report = _walk(_abspath(path))
    os.close(fd)
    return report


def open_trusted_dir_nofollow(path: str | os.PathLike[str]) -> int:
    """A readable descriptor of the directory ``path``, walked from ``/`` by descriptor.

    Every component is opened with ``O_NOFOLLOW`` relative to the previous one and must
    pass the trust rule (as for creation); no symlink is followed at all. Nothing is
    cached: the caller owns (and closes) the descriptor, which pins nothing else.

    Raises:
        UnsafeDirectoryError: a component is not trusted (``filename`` names it).
        UnsafeFileError: a component is a symbolic link (``filename`` names it).
        FileNotFoundError, NotADirectoryError, PermissionError: as :func:`check_dir`.
        ValueError: the path contains a NUL character.
    """
    path_fd, _ = _walk(_abspath(path), follow_symlinks=False)
    try:
        # A real (not O_PATH) descriptor of the *same* inode: "." never follows anything.
        return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=path_fd)
    finally:
        os.close(path_fd)


class DirHandle:
    """An open, verified directory descriptor that files are created relative to.

    The descriptor is closed when the last user of the handle goes away: the cache
    below never keeps a handle (or its filesystem) alive by itself. ``euid`` is the
    effective user it was verified for (what a file made in it must be owned by).
    """

    __slots__ = ("__weakref__", "btrfs", "dev", "euid", "fd", "ino", "path", "readable")

    def __init__(
        self, path: str, path_fd: int, btrfs: bool | None = None, euid: int | None = None
    ) -> None:
        self.path = path
        self.fd = -1
        self.euid = os.geteuid() if euid is None else euid
        try:
            # A real (not O_PATH) descriptor of the *same* inode, for listing and fsync.
            fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=path_fd)
            os.close(path_fd)
            self.readable = True
        except PermissionError:
            fd = path_fd  # a write-only/search-only directory: creation still works
            self.readable = False
        self._adopt(fd, os.fstat(fd), btrfs)

    def _adopt(self, fd: int, st: os.stat_result, btrfs: bool | None) -> None:
        self.fd = fd
        self.dev, self.ino = st.st_dev, st.st_ino
        # Copy-on-write: new plaintext files here get NOCOW, so their overwrite lands in place.
        self.btrfs = is_btrfs(fd) if btrfs is None else btrfs

    def __del__(self, _close: Callable[[int], None] = os.close) -> None:
        # The last user is gone: the descriptor goes too (nothing else holds the directory).
        # os.close bound at definition: at interpreter shutdown the module's globals are None.
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            _close(fd)

    def still_trusted(self) -> bool:
        """The path still leads to this inode, and its mode still passes the rule."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        # Same inode, so this is its current mode and owner (one syscall, no fstat).
        return st.st_ino == self.ino and st.st_dev == self.dev and passes(st, os.geteuid())


class _Verified:
    """A cached verification: the inode the path led to.

    Holds no descriptor and no handle, so once every object made in the directory is
    closed, nothing of hardtemp pins the directory or its filesystem (``umount``
    works). The ancestor walk is what the cache saves. Every hit gets a handle of its
    own: a shared handle found through a weak reference could be in the middle of its
    ``__del__`` in another thread (finalizers run before weak references are cleared),
    and its descriptor would be closed, or its number reused, under the caller.
    """

    __slots__ = ("btrfs", "dev", "ino")

    def __init__(self, handle: DirHandle) -> None:
        self.dev, self.ino, self.btrfs = handle.dev, handle.ino, handle.btrfs

    def reopen(self, path: str, euid: int) -> DirHandle | None:
        """A new handle of the verified inode, or None if ``path`` now leads elsewhere or
        its mode no longer passes for ``euid`` (the caller walks it again then)."""
        opened = self.reopen_fd(path, euid)
        if opened is None:
            return None
        fd, readable, st = opened
        # A handle owning fd, built in place (no __init__: this runs once per creation).
        handle = DirHandle.__new__(DirHandle)
        handle.path, handle.readable, handle.fd, handle.euid = path, readable, fd, euid
        handle.dev, handle.ino, handle.btrfs = st.st_dev, st.st_ino, self.btrfs
        return handle

    def reopen_fd(self, path: str, euid: int) -> tuple[int, bool, os.stat_result] | None:
        """:meth:`reopen` as a bare descriptor the caller closes: ``(fd, readable, st)``."""
        # The ancestors were verified (changeable by root or us only), so the path still
        # means what it meant; the inode and its mode are checked again on the descriptor.
        readable = True
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except PermissionError:
            readable = False  # search-only: O_PATH needs no read permission
            try:
                fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                return None
        except OSError:
            return None
        try:
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        if st.st_ino != self.ino or st.st_dev != self.dev or not passes(st, euid):
            os.close(fd)  # replaced, or its mode changed: verify from scratch
            return None
        return fd, readable, st


_CACHE_SIZE = 64
_cache: OrderedDict[tuple[str, int], _Verified] = OrderedDict()
# Reentrant: a file of ours collected (and closed) at an allocation inside it, in this very
# thread, must not wait for itself (review7).
_cache_lock = threading.RLock()


def _reset_after_fork() -> None:
    # Another thread may have held the lock at fork(): in the child it never would be
    # released, and every later creation would hang.
    global _cache_lock
    _cache_lock = threading.RLock()


os.register_at_fork(after_in_child=_reset_after_fork)


def _cached(key: tuple[str, int]) -> DirHandle | None:
    with _cache_lock:
        rec = _cache.get(key)
        if rec is not None:
            _cache.move_to_end(key)  # recently used (dropped below if no longer valid)
    if rec is None:
        return None
    handle = rec.reopen(*key)  # outside the lock: it opens and fstats
    if handle is None:
        with _cache_lock:
            if _cache.get(key) is rec:
                del _cache[key]
    return handle


def trusted_dir_fd(path: str | bytes) -> tuple[int, int, bool, str] | None:
    """A bare descriptor of the verified directory ``path`` if its verification is
    cached and still holds: ``(fd, euid, btrfs, absolute path)``; the caller closes ``fd``.

    The same checks as :func:`trusted_dir`'s cache hit (the path still leads to the
    verified inode, whose mode still passes), without building a handle: ``mkstemp``'s
    hot path, which needs the descriptor for one ``openat``. None: not cached, or no
    longer valid (the caller takes :func:`trusted_dir`, which walks it again).

    Raises:
        ValueError: ``path`` contains a NUL character.
    """
    key = (_abspath(path), os.geteuid())
    # No lock: a record is immutable and checked below. Not moved to the LRU end: an
    # eviction only costs one walk.
    rec = _cache.get(key)
    if rec is None:
        return None
    opened = rec.reopen_fd(*key)
    if opened is None:
        return None
    return opened[0], key[1], rec.btrfs, key[0]


def trusted_dir(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> DirHandle:
    """Return a verified :class:`DirHandle` for ``path``, walking it only when needed.

    The verification is cached per path (and effective user): a later call only
    checks that the path still resolves to the verified inode and that its
    mode still passes. The ancestors were verified to be changeable only by
    root or us, who are outside the threat model. The cache holds no descriptor:
    a handle lives as long as the objects made with it.

    Raises: as :func:`check_dir`.
    """
    key = (_abspath(path), os.geteuid())
    handle = _cached(key)
    if handle is not None:
        return handle
    fd, _ = _walk(key[0])
    handle = DirHandle(key[0], fd, euid=key[1])
    with _cache_lock:
        _cache[key] = _Verified(handle)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return handle


def clear_cache() -> None:
    """Forget every cached verification (it holds no descriptor)."""
    with _cache_lock:
        _cache.clear()
