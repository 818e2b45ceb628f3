"""Helpers shared by the core tests: hostile directories, descriptor counting."""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

import hardtemp
from hardtemp import _linux

#: The other local user of the attack tests ("nobody").
NOBODY = 65534
SRC = str(Path(hardtemp.__file__).resolve().parent.parent)


_Event = threading.Event  # start_threads' own (a test stands in for it, not for Thread's)


def start_threads(
    specs: Iterable[tuple[Callable[..., object], tuple[Any, ...]]], timeout: float = 30
) -> list[threading.Thread]:
    """Start a thread per ``(target, args)``, one at a time: each once the one before runs
    its target. Raises AssertionError for a thread that died before its target.

    Why not all at once: on CPython 3.11 a thread started while another is inside
    ``sys.settrace`` dies before its target with ``RuntimeError: Cannot install a trace
    function while another trace function is being installed``, reported only as an
    unraisable exception. Every new thread calls ``sys.settrace`` in its bootstrap when a
    tracer set ``threading.settrace`` (coverage, for ``--cov``), and a Python audit hook (this
    suite installs two, which cannot be removed) lets another thread run in the middle. A
    ``Barrier`` waiting for the dead thread then waited for ever: the ordinary-user CI stage
    (3.11, ``--cov``) hung at ``test_threads_appending_across_the_spill_lose_nothing``.
    """
    threads: list[threading.Thread] = []
    for target, args in specs:
        running = _Event()

        def run(
            target: Callable[..., object] = target,
            args: tuple[Any, ...] = args,
            running: threading.Event = running,
        ) -> None:
            running.set()  # past the bootstrap's sys.settrace
            target(*args)

        thread = threading.Thread(target=run)
        thread.start()
        waited = 0.0
        while not running.wait(0.05):
            waited += 0.05
            # Asked again after is_alive(): a thread slower than one wait on a loaded machine
            # may reach its target, and finish, between the wait's timeout and that look.
            dead = not thread.is_alive() and not running.is_set()
            if dead or (waited > timeout and not running.is_set()):
                raise AssertionError(f"a thread never reached its target {target!r}")
        threads.append(thread)
    return threads


def marker() -> bytes:
    """A unique, unmistakable plaintext marker for forensic searches."""
    return b"HARDTEMP-MARKER-" + secrets.token_hex(24).encode() + b"-END"


def delalloc_extents(path: Path | str) -> list[bool]:
    """Per extent of ``path``, whether it is a delayed allocation only (no block yet), as
    ``filefrag -v`` (e2fsprogs: its own FIEMAP, without a sync) lists them.

    The oracle of the "not on the disk yet" cases. Their precondition is not the test's to
    keep: a ``sync`` by any process (CI's other lane: every loop unmount syncs) or the
    flusher writes the fresh file back between its write and the look (seen: 250 of 2,000
    windows with ``sync`` run in a loop elsewhere). Writeback never turns an allocated
    extent back into a delayed one (the file is open, never truncated), so an extent still
    delayed here was delayed at every moment before: at the look too."""
    out = subprocess.run(
        ["filefrag", "-v", os.fspath(path)], check=True, capture_output=True, text=True
    ).stdout
    found = []
    for line in out.splitlines():
        head, _, rest = line.partition(":")
        if head.strip().isdigit() and ".." in rest:  # an extent's line: "  0:  0..  9: ..."
            last = line.split()[-1]
            found.append(not last.endswith(":") and "delalloc" in last.split(","))
    return found


def open_fds() -> set[int]:
    """The descriptors open in this process right now."""
    gc.collect()
    return {int(n) for n in os.listdir("/proc/self/fd")}


def make_dir(path: Path, mode: int, uid: int | None = None, gid: int | None = None) -> Path:
    """A directory with exactly ``mode`` (chmod after chown), owned by ``uid`` if given.

    Without ``uid`` it stays ours (root's when run as root), so it works for any user;
    giving it to another user needs root (use a gate).
    """
    path.mkdir()
    if uid is not None:
        os.chown(path, uid, uid if gid is None else gid)
    os.chmod(path, mode)
    return path


def nobody_dir(base: Path, name: str = "nobody") -> Path:
    """A 0700 directory owned by the other user, under a path the other user can walk."""
    return make_dir(base / name, 0o700, NOBODY, NOBODY)


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that imports this checkout's hardtemp."""
    env = dict(os.environ, PYTHONPATH=SRC)
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


#: The sysctls ``hardtemp check`` reports, which tests compare with /proc.
AUDITED_SYSCTLS = (
    "fs.protected_fifos",
    "fs.protected_hardlinks",
    "fs.protected_regular",
    "fs.protected_symlinks",
)


def traced_calls(code: str, *args: str) -> list[str]:
    """The system calls ``python -c code args`` makes between its ``os.write(1, b"BEGIN\\n")``
    and ``os.write(1, b"END\\n")`` (``strace -f``), one ``name(args... = result`` per line."""
    out = subprocess.run(
        ["strace", "-f", "-qq", sys.executable, "-c", code, *args],
        env=dict(os.environ, PYTHONPATH=str(Path(hardtemp.__file__).parents[1])),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    trace = out.stderr.split('write(1, "BEGIN\\n"', 1)[1].split('write(1, "END\\n"', 1)[0]
    return [line.split("] ", 1)[-1] for line in trace.splitlines()[1:] if "(" in line]


def sysctl_path(name: str) -> Path:
    """``/proc/sys/...`` of a dotted sysctl name (``fs.protected_hardlinks``)."""
    return Path("/proc/sys") / name.replace(".", "/")


@contextlib.contextmanager
def sysctls_held(*names: str, exclusive: bool = False) -> Iterator[None]:
    """Hold ``flock`` on the sysctls' own ``/proc/sys`` files for the block.

    Test runs share this machine's sysctls (CI runs its stages side by side, engineers
    run theirs): a test that sets one takes the lock exclusive (``sysctl_set``), one
    that compares a value it read with what the code under test read takes it shared,
    so neither sees the other's flip, and two setters cannot restore each other's
    temporary value. A sysctl that cannot be opened is not locked (the test skips or
    fails on it by itself). Never nest a setter inside a holder in one process: the
    second ``flock`` waits for the first.
    """
    fds: list[int] = []
    try:
        for name in sorted(set(names)):  # one order everywhere: no lock-order deadlock
            try:
                fd = os.open(sysctl_path(name), os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            fds.append(fd)
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        for fd in fds:
            os.close(fd)


def sysctl(name: str) -> int:
    try:
        return int(sysctl_path(name).read_text())
    except (OSError, ValueError):
        return -1


#: The two kinds of mount id hardtemp keys its caches by, for scripts run both ways: the
#: unique ones (Linux >= 6.8), and the old, reusable ones (what an older kernel gives),
#: forced by the environment.
MOUNT_ID_KINDS = ("unique-ids", "old-ids")


def run_with_mount_ids(
    argv: list[str], kind: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (a script of this checkout's hardtemp, maybe under ``unshare``) with
    ``kind`` mount ids (one of :data:`MOUNT_ID_KINDS`), its output captured as text;
    "unique-ids" skips on a kernel that has none."""
    env = dict(os.environ, PYTHONPATH=SRC)
    env.pop(_linux.OLD_MOUNT_IDS_ENV, None)
    if kind == "old-ids":
        env[_linux.OLD_MOUNT_IDS_ENV] = "1"
    elif not unique_mount_ids():
        # The kernel's, not a missing tool: a plain skip (never a gate's failure).
        pytest.skip("this kernel has no unique mount ids (STATX_MNT_ID_UNIQUE, Linux 6.8)")
    return subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def unique_mount_ids() -> bool:
    """Whether this kernel reports unique mount ids (``STATX_MNT_ID_UNIQUE``, Linux >= 6.8)."""
    fd = os.open("/", os.O_PATH | os.O_CLOEXEC)
    try:
        return _linux.unique_mount_id(fd) >= 0
    finally:
        os.close(fd)
