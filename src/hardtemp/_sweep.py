"""The orphan sweeper behind ``hardtemp sweep``.

hardtemp marks what it will remove itself (``NamedTemporaryFile(delete=True)``,
``TemporaryDirectory(delete=True)``) with the extended attribute
``user.hardtemp.owner`` = boot id, pid and start time of the creating process
(:mod:`hardtemp._owner`). When that process died without cleaning up
(SIGKILL, OOM kill, power loss), its temp files stay behind, in plaintext.
:func:`sweep` removes them, with an overwrite, and nothing else.

Rules, each stopping a concrete way of deleting the wrong thing:

* Only the *top level* of each directory is scanned: hardtemp creates its
  temp entries directly in the temp directory, and a marked directory is
  removed as a whole.
* Only directories that pass :func:`~hardtemp.check_dir` are swept: in a
  directory others can rename entries in, what we checked may not be what
  we remove.
* Entries are looked at by descriptor (``O_PATH|O_NOFOLLOW`` relative to
  the directory's descriptor) and removed only while the name still refers
  to that inode: a symlink is never followed (nor removed), a name swapped
  meanwhile is left alone.
* Only regular files and directories that carry a well-formed mark, and are
  owned by the user running the sweep (root included: root sweeps only
  root's entries; each user sweeps their own).
* The owner must be gone (:func:`~hardtemp._owner.owner_alive`): a
  different boot id, no such pid, or a pid whose start time differs from
  the recorded one (the pid was reused by another process).
* No other process may have the entry open or (for a directory) have an
  open file, its working directory or its root inside it: a child forked by
  the dead owner may still be using it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import _owner
from ._dirtrust import trusted_dir
from ._inode import proc_path
from ._remove import remove_entry, rmtree_at
from .exceptions import UnsafeDirectoryError

__all__ = ["SweepEntry", "SweepResult", "sweep"]

# O_PATH: nothing is opened for I/O (no FIFO blocks, no device is opened, no atime);
# O_NOFOLLOW: a symlink is looked at as itself, never followed.
_PROBE_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class SweepEntry:
    """One marked entry and what was done to it.

    ``action`` is ``"removed"``, ``"would remove"`` (dry run), ``"kept"``
    (the owner lives or the entry is in use) or ``"failed"``.
    """

    path: str
    kind: str
    action: str
    reason: str
    owner_pid: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "action": self.action,
            "reason": self.reason,
            "owner_pid": self.owner_pid,
        }


@dataclass
class SweepResult:
    """What a sweep found: marked entries, directories skipped, entries ignored."""

    entries: list[SweepEntry] = field(default_factory=list)
    skipped_dirs: list[tuple[str, str]] = field(default_factory=list)
    unmarked: int = 0
    other_users: int = 0

    @property
    def failed(self) -> list[SweepEntry]:
        return [e for e in self.entries if e.action == "failed"]

    def to_json(self) -> dict[str, Any]:
        return {
            "entries": [e.to_json() for e in self.entries],
            "skipped_dirs": [{"path": p, "reason": r} for p, r in self.skipped_dirs],
            "unmarked": self.unmarked,
            "other_users": self.other_users,
        }


def _death(tag: _owner.OwnerTag) -> str:
    """Why ``tag``'s process is considered gone (called after owner_alive said so)."""
    if tag.boot_id != _owner._BOOT_ID:
        return "created before the last reboot (boot id differs)"
    start = _owner._start_time(tag.pid)
    if start is None:
        return f"pid {tag.pid} no longer runs"
    return f"pid {tag.pid} was reused by another process (start time differs)"


class _InUse:
    """Which inodes and paths other processes hold, read once from /proc."""

    def __init__(self) -> None:
        self.inodes: dict[tuple[int, int], int] = {}
        self.paths: list[tuple[str, int]] = []
        me = os.getpid()
        try:
            pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        except OSError:  # pragma: no cover - no /proc
            pids = []
        for pid in pids:
            if pid == me:
                continue  # our own descriptors are the probes of this sweep
            base = f"/proc/{pid}"
            links = ["cwd", "root"]
            with contextlib.suppress(OSError):
                links += [f"fd/{n}" for n in os.listdir(f"{base}/fd")]
            for link in links:
                # A process that exits meanwhile, or one we may not inspect: skip it.
                with contextlib.suppress(OSError):
                    st = os.stat(f"{base}/{link}")
                    self.inodes.setdefault((st.st_dev, st.st_ino), pid)
                    target = os.readlink(f"{base}/{link}")
                    self.paths.append((target.removesuffix(" (deleted)"), pid))

    def holder(self, ident: tuple[int, int], path: str, is_dir: bool) -> int | None:
        """A pid that has the entry (or, for a directory, anything inside it) in use."""
        pid = self.inodes.get(ident)
        if pid is not None or not is_dir:
            return pid
        prefix = path.rstrip("/") + "/"
        for target, holder in self.paths:
            if target.startswith(prefix):
                return holder
        return None


def _read_tag(pfd: int) -> _owner.OwnerTag | None:
    # /proc/self/fd/N names the inode the O_PATH descriptor pins, not a new lookup by name.
    try:
        raw = os.getxattr(proc_path(pfd), _owner.OWNER_XATTR)
    except OSError:
        return None
    return _owner.OwnerTag.decode(raw)


def _join(base: str, name: str) -> str:
    return base + name if base.endswith("/") else f"{base}/{name}"


class _Sweeper:
    def __init__(self, dry_run: bool) -> None:
        self.dry_run = dry_run
        self.result = SweepResult()
        self.euid = os.geteuid()
        self._in_use: _InUse | None = None

    def in_use(self) -> _InUse:
        if self._in_use is None:
            self._in_use = _InUse()
        return self._in_use

    def directory(self, path: str) -> None:
        try:
            handle = trusted_dir(path)
        except FileNotFoundError:
            return  # a candidate that does not exist here (/usr/tmp): nothing to sweep
        except UnsafeDirectoryError as exc:
            self.result.skipped_dirs.append((path, f"not trusted: {exc}"))
            return
        except (OSError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.result.skipped_dirs.append((path, why))
            return
        if not handle.readable:
            self.result.skipped_dirs.append((path, "cannot list it (no read permission)"))
            return
        with os.scandir(handle.fd) as it:
            names = [e.name for e in it]
        for name in names:
            self.entry(handle.fd, handle.path, name)

    def entry(self, dir_fd: int, base: str, name: str) -> None:
        path = _join(base, name)
        try:
            pfd = os.open(name, _PROBE_FLAGS, dir_fd=dir_fd)
        except OSError:
            return  # vanished meanwhile
        try:
            st = os.fstat(pfd)
            if stat.S_ISDIR(st.st_mode):
                kind = "directory"
            elif stat.S_ISREG(st.st_mode):
                kind = "file"
            else:
                return  # symlinks, FIFOs, sockets, devices: never ours to sweep
            if st.st_uid != self.euid:
                # Another user's entry: their data and their sweep (a mark is
                # no proof: its owner can write any mark they like).
                self.result.other_users += 1
                return
            tag = _read_tag(pfd)
        finally:
            os.close(pfd)
        if tag is None:
            self.result.unmarked += 1
            return
        if _owner.owner_alive(tag):
            self._add(path, kind, "kept", f"owner pid {tag.pid} is alive", tag)
            return
        death = _death(tag)
        holder = self.in_use().holder((st.st_dev, st.st_ino), path, kind == "directory")
        if holder is not None:
            # The dead owner's forked child (or anyone we can see) still uses it.
            self._add(path, kind, "kept", f"{death}, but pid {holder} has it open", tag)
            return
        if self.dry_run:
            self._add(path, kind, "would remove", death, tag)
            return
        try:
            self._remove(dir_fd, name, path, kind, (st.st_dev, st.st_ino))
        except FileNotFoundError:
            return  # removed meanwhile (a concurrent sweep): gone is what we wanted
        except OSError as exc:
            self._add(path, kind, "failed", f"{death}; removal failed: {exc}", tag)
            return
        self._add(path, kind, "removed", death, tag)

    def _remove(self, dir_fd: int, name: str, path: str, kind: str, ident: tuple[int, int]) -> None:
        if kind == "directory":
            # expect=: the name must still be the directory we judged; walked by
            # descriptor, symlinks inside are unlinked, never followed.
            rmtree_at(dir_fd, name, expect=ident, display_path=path, overwrite=True)
        else:
            # own_file=False: a file with several links may be a link to data
            # elsewhere; it is then only unlinked, never overwritten.
            remove_entry(dir_fd, name, display_path=path, expect=ident, own_file=False)

    def _add(self, path: str, kind: str, action: str, reason: str, tag: _owner.OwnerTag) -> None:
        self.result.entries.append(SweepEntry(path, kind, action, reason, tag.pid))


def sweep(dirs: Iterable[str], *, dry_run: bool = False) -> SweepResult:
    """Remove, with an overwrite, the orphaned temp entries hardtemp created in ``dirs``.

    See the module docstring for exactly what is removed. A directory that
    does not exist is skipped silently; one that is not trusted or cannot be
    listed is reported in ``skipped_dirs``. Failures to remove an entry are
    reported as entries with action ``"failed"``, never raised.

    Raises:
        ValueError: a directory name is empty or contains NUL.
        OSError: a directory cannot be listed after it was opened (``EIO``...).
    """
    sweeper = _Sweeper(dry_run)
    seen: set[str] = set()
    for d in dirs:
        if not d or "\0" in d:
            raise ValueError(f"invalid directory name {d!r}")
        key = os.path.abspath(d)
        if key in seen:
            continue
        seen.add(key)
        sweeper.directory(key)
    return sweeper.result
