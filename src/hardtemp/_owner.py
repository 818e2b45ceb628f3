"""Who created a temp file: the process identity recorded for ``hardtemp sweep``.

Files and directories that hardtemp will remove itself (``NamedTemporaryFile``
with ``delete=True``, ``TemporaryDirectory``) carry the extended attribute
``user.hardtemp.owner`` = ``"<boot id> <pid> <start time>"``. If the process
dies without cleaning up (SIGKILL, power loss), the sweeper can tell that the
owner is gone: a different boot id, no such pid, or a pid whose start time
differs (the pid was reused). Live processes' files are never touched.
"""

from __future__ import annotations

import contextlib
import errno
import os

__all__ = ["OWNER_XATTR", "OwnerTag", "current_tag", "mark", "owner_alive", "read_mark", "unmark"]

OWNER_XATTR = "user.hardtemp.owner"


def _read(path: str) -> str:
    with open(path, "rb") as f:
        return f.read().decode("ascii", "replace")


def _boot_id() -> str:
    try:
        return _read("/proc/sys/kernel/random/boot_id").strip()
    except OSError:  # pragma: no cover - no /proc: the tag degrades to pid + start time
        return "unknown"


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: start time in clock ticks since boot."""
    try:
        data = _read(f"/proc/{pid}/stat")
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    return data[data.rindex(")") + 2 :].split()[19]


class OwnerTag:
    """``(boot_id, pid, start_time)`` of a process."""

    __slots__ = ("boot_id", "pid", "start_time")

    def __init__(self, boot_id: str, pid: int, start_time: str) -> None:
        self.boot_id, self.pid, self.start_time = boot_id, pid, start_time

    def encode(self) -> bytes:
        return f"{self.boot_id} {self.pid} {self.start_time}".encode("ascii")

    @classmethod
    def decode(cls, raw: bytes) -> OwnerTag | None:
        try:
            boot, pid, start = raw.decode("ascii").split(" ")
            return cls(boot, int(pid), start)
        except ValueError:
            return None

    def __repr__(self) -> str:
        return f"OwnerTag(boot_id={self.boot_id!r}, pid={self.pid}, start_time={self.start_time!r})"


_BOOT_ID = _boot_id()
_current: bytes | None = None


def current_tag() -> bytes:
    """This process's tag (recomputed after ``fork``)."""
    global _current
    if _current is None:
        _current = OwnerTag(_BOOT_ID, os.getpid(), _start_time(os.getpid()) or "0").encode()
    return _current


def _forget_after_fork() -> None:
    global _current
    _current = None


os.register_at_fork(after_in_child=_forget_after_fork)


def mark(fd: int) -> bool:
    """Tag the file open at ``fd`` as ours; False where xattrs are unsupported."""
    try:
        os.setxattr(fd, OWNER_XATTR, current_tag())
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.EACCES, errno.ENOSPC):
            return False  # not sweepable there; everything else still works
        raise
    return True


def unmark(fd: int) -> None:
    """Remove the tag (a persisted file is no longer a temp file to sweep)."""
    with contextlib.suppress(OSError):
        os.removexattr(fd, OWNER_XATTR)


def read_mark(fd: int) -> OwnerTag | None:
    """The tag of the file open at ``fd``, or None."""
    try:
        return OwnerTag.decode(os.getxattr(fd, OWNER_XATTR))
    except OSError:
        return None


def owner_alive(tag: OwnerTag) -> bool:
    """Whether the process that wrote ``tag`` still runs (pid reuse detected)."""
    if tag.boot_id != _BOOT_ID:
        return False
    start = _start_time(tag.pid)
    return start is not None and start == tag.start_time
