"""The orphan sweeper behind ``hardtemp sweep``: finds and removes, never decides.

hardtemp locks and marks what it will remove itself (:mod:`hardtemp._owner`):
``NamedTemporaryFile(delete=True)``, ``TemporaryDirectory(delete=True)``, the
directory of ``hardtemp run``. When the creator died without cleaning up
(SIGKILL, OOM kill, power loss), its temp files stay behind, in plaintext.
:func:`sweep` removes them, with an overwrite, and nothing else. Whether an
entry is an orphan is decided by :func:`hardtemp._owner.judge` alone (owned
by us, authenticated mark bound to this very entry and place, no lock held,
the creator not known to run).

Invariants of the walk, each stopping a concrete way of deleting the wrong thing:

* Only the *top level* of each directory is scanned: hardtemp creates its
  temp entries directly in the temp directory, and a marked directory is
  removed as a whole.
* Only directories that pass :func:`~hardtemp.check_dir` are swept: in a
  directory others can rename entries in, what we checked may not be what
  we remove.
* Entries are looked at by descriptor (``O_PATH|O_NOFOLLOW`` relative to
  the directory's descriptor) and removed only while the name still refers
  to that inode, with the judgement's ``LOCK_EX`` held: a symlink is never
  followed (nor removed), a name swapped meanwhile is left alone, no creator
  can start using it meanwhile.
* A marked directory is removed only if nothing in it belongs to another
  user (checked by descriptor first, not descending into their directories):
  root's sweep never overwrites or removes another user's data, even inside
  root's own orphan. (Only root, or someone holding a directory of ours open
  before it was made private, could add such an entry after the check.)
* No other process's descriptors are read: no ``/proc`` scan, so nothing a
  user can mount or hold in their own namespace changes a decision, and no
  unresponsive filesystem can hang the sweep.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import _markkey, _owner
from ._codes import Action, Reason, SweepReason
from ._dirtrust import trusted_dir
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
    (locked, the creator runs, or its lock cannot be tested) or ``"failed"``
    (removal failed, or refused: another user's entry inside).
    """

    path: str
    kind: str
    action: Action
    reason: Reason  # the sentence, with its stable code (a SweepReason)
    owner_pid: int | None = None

    @property
    def code(self) -> str:
        """The stable code of :attr:`reason` (match this, not the prose)."""
        return self.reason.code

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "action": self.action,
            "reason": self.reason,
            "code": self.code,
            "owner_pid": self.owner_pid,
        }


@dataclass
class SweepResult:
    """What a sweep found: marked entries, directories skipped or missing, entries
    ignored (unmarked or unverified marks, other users'), and why no mark could
    be verified (``key_problem``, its stable code ``key_code``, a ``KeyReason``;
    ``key_missing``: simply no key made yet)."""

    entries: list[SweepEntry] = field(default_factory=list)
    skipped_dirs: list[tuple[str, Reason]] = field(default_factory=list)
    unmarked: int = 0
    other_users: int = 0
    missing_dirs: list[str] = field(default_factory=list)
    key_problem: Reason | None = None
    key_missing: bool = False

    @property
    def key_code(self) -> str | None:
        """The stable code of :attr:`key_problem` (None: the key is usable)."""
        return None if self.key_problem is None else self.key_problem.code

    @property
    def failed(self) -> list[SweepEntry]:
        return [e for e in self.entries if e.action is Action.FAILED]

    def to_json(self) -> dict[str, Any]:
        return {
            "entries": [e.to_json() for e in self.entries],
            "skipped_dirs": [
                {"path": p, "reason": r, "code": r.code} for p, r in self.skipped_dirs
            ],
            "unmarked": self.unmarked,
            "other_users": self.other_users,
            "missing_dirs": list(self.missing_dirs),
            "key_problem": self.key_problem,
            "key_code": self.key_code,
        }


def _join(base: str, name: str) -> str:
    return base + name if base.endswith("/") else f"{base}/{name}"


def _foreign(top_fd: int, base: str) -> str | None:
    """The first entry below the open directory ``top_fd`` owned by another user, or None.

    Walked by descriptor (``O_NOFOLLOW``): a symlink is looked at as itself and
    another user's directory is reported, never entered.
    """
    euid = os.geteuid()
    stack = [(os.dup(top_fd), base)]
    try:
        while stack:
            fd, path = stack.pop()
            try:
                with os.scandir(fd) as it:
                    names = [e.name for e in it]
                for name in names:
                    try:
                        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if st.st_uid != euid:
                        return f"{_join(path, name)} is owned by uid {st.st_uid}"
                    if stat.S_ISDIR(st.st_mode):
                        try:
                            sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
                        except PermissionError:
                            continue  # ours but unreadable (not root): only ours can be inside
                        stack.append((sub, _join(path, name)))
            finally:
                os.close(fd)
    finally:
        for fd, _ in stack:
            os.close(fd)
    return None


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _Sweeper:
    def __init__(self, dry_run: bool) -> None:
        self.dry_run = dry_run
        self.result = SweepResult()
        self.key = _markkey.load(create=False)
        problem = _markkey.problem()
        self.result.key_problem = None if problem is None else problem.reason
        self.result.key_missing = problem is not None and problem.missing

    def directory(self, path: str) -> None:
        try:
            handle = trusted_dir(path)
        except FileNotFoundError:
            self.result.missing_dirs.append(path)
            return
        except UnsafeDirectoryError as exc:
            why = Reason(SweepReason.DIR_UNTRUSTED, f"not trusted: {exc}")
            self.result.skipped_dirs.append((path, why))
            return
        except (OSError, ValueError) as exc:
            text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.result.skipped_dirs.append((path, Reason(SweepReason.DIR_UNUSABLE, text)))
            return
        if not handle.readable:
            why = Reason(SweepReason.DIR_UNREADABLE, "cannot list it (no read permission)")
            self.result.skipped_dirs.append((path, why))
            return
        with os.scandir(handle.fd) as it:
            names = [e.name for e in it]
        dir_st = os.fstat(handle.fd)
        for name in names:
            self.entry(handle.fd, dir_st, handle.path, name)

    def entry(self, dir_fd: int, dir_st: os.stat_result, base: str, name: str) -> None:
        path = _join(base, name)
        try:
            pfd = os.open(name, _PROBE_FLAGS, dir_fd=dir_fd)
        except OSError:
            return  # vanished meanwhile
        try:
            st = os.fstat(pfd)
            if not _owner.is_regular_or_dir(st):
                return  # symlinks, FIFOs, sockets, devices: never ours to sweep
            kind = "directory" if stat.S_ISDIR(st.st_mode) else "file"
            judgement = _owner.judge(pfd, st, dir_st, name, self.key)
        finally:
            os.close(pfd)
        try:
            self._act(dir_fd, name, path, kind, st, judgement)
        finally:
            judgement.close()

    def _act(
        self,
        dir_fd: int,
        name: str,
        path: str,
        kind: str,
        st: os.stat_result,
        judgement: _owner.Judgement,
    ) -> None:
        verdict = judgement.verdict
        if verdict is _owner.Verdict.OTHER_USER:
            self.result.other_users += 1
            return
        if verdict is _owner.Verdict.UNMARKED:
            self.result.unmarked += 1
            return
        if verdict is not _owner.Verdict.ORPHAN:
            self._add(path, kind, Action.KEPT, judgement)
            return
        if kind == "directory":
            problem = _foreign(judgement.lock_fd, path)
            if problem is not None:
                judgement.reason = Reason(
                    SweepReason.FOREIGN_INSIDE,
                    f"{judgement.reason}; not removed: {problem} (never touched)",
                )
                self._add(path, kind, Action.FAILED, judgement)
                return
        if self.dry_run:
            self._add(path, kind, Action.WOULD_REMOVE, judgement)
            return
        try:
            self._remove(dir_fd, name, path, kind, (st.st_dev, st.st_ino))
        except FileNotFoundError:
            return  # removed meanwhile (a concurrent sweep): gone is what we wanted
        except OSError as exc:
            judgement.reason = Reason(
                SweepReason.REMOVAL_FAILED, f"{judgement.reason}; removal failed: {exc}"
            )
            self._add(path, kind, Action.FAILED, judgement)
            return
        self._add(path, kind, Action.REMOVED, judgement)

    def _remove(self, dir_fd: int, name: str, path: str, kind: str, ident: tuple[int, int]) -> None:
        if kind == "directory":
            # expect=: the name must still be the directory we judged; walked by
            # descriptor, symlinks inside are unlinked, never followed.
            rmtree_at(dir_fd, name, expect=ident, display_path=path, overwrite=True)
        else:
            # own_file=False: a file with several links may be a link to data
            # elsewhere; it is then only unlinked, never overwritten.
            remove_entry(dir_fd, name, display_path=path, expect=ident, own_file=False)

    def _add(self, path: str, kind: str, action: Action, judgement: _owner.Judgement) -> None:
        self.result.entries.append(
            SweepEntry(path, kind, action, judgement.reason, judgement.owner_pid)
        )


def sweep(dirs: Iterable[str], *, dry_run: bool = False) -> SweepResult:
    """Remove, with an overwrite, the orphaned temp entries hardtemp created in ``dirs``.

    See the module docstring for exactly what is removed. A directory that
    does not exist is reported in ``missing_dirs``; one that is not trusted or
    cannot be listed in ``skipped_dirs``; a missing or unusable sweep key in
    ``key_problem`` (then no mark verifies and nothing is removed). Failures
    to remove an entry are reported as entries with action ``"failed"``,
    never raised.

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
