"""Helpers for attacks that run *while* we work: a background attacker, a sysctl flipped.

* ``attacker_in_background(fn, *args)``: a forked child as uid/gid 65534 running
  ``fn(*args)`` until the block ends (then SIGKILL). Only modules imported before the
  fork are usable there (the interpreter lives under /root, which nobody cannot enter).
* ``hand_number_to(number, path)``: a library's double close of ``number``, then the
  application's next ``open()`` of ``path`` taking it (put exactly there).
* ``other_descriptors_of(fd)``: this process's other descriptors of ``fd``'s inode (a
  claim's dup of a file, say), found by ``fstat`` among ``/proc/self/fd``;
  ``descriptors_of_inode(ident)``: all of them, of an inode given as ``(st_dev, st_ino)``.
* ``sysctl_set(name, value)``: set a ``/proc/sys`` value for the block and restore it in
  ``finally``, holding the sysctl's lock (``_helpers_core.sysctls_held``) meanwhile.
  Other test runs share this machine (CI's stages run side by side): keep the block as
  short as the attack.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import _gates
from _helpers_core import NOBODY, sysctl_path, sysctls_held

__all__ = [
    "NOBODY",
    "attacker_in_background",
    "descriptors_of_inode",
    "hand_number_to",
    "other_descriptors_of",
    "sysctl_set",
    "wait_for",
]


@contextlib.contextmanager
def attacker_in_background(fn: Callable[..., Any], *args: Any) -> Iterator[int]:
    """Run ``fn(*args)`` as uid 65534 in a forked child for the duration of the block.

    Yields the child's pid. The child signals readiness by the time the block starts
    (it has dropped privileges).
    """
    _gates.require_root("to become another user (uid 65534)")
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, whose coverage is not saved
        try:
            os.close(rfd)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.write(wfd, b"1")
            os.close(wfd)
            fn(*args)
        finally:
            os._exit(0)
    os.close(wfd)
    try:
        assert os.read(rfd, 1) == b"1", "the attacker failed to start"
        os.close(rfd)
        yield pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


@contextlib.contextmanager
def sysctl_set(name: str, value: int) -> Iterator[None]:
    """``/proc/sys/<name>`` = ``value`` for the block; the old value comes back in finally.

    Holds the sysctl's lock exclusive for the block (``sysctls_held``): another run's
    ``sysctl_set`` waits, so it neither sees our temporary value as the one to restore
    nor flips it under us, and tests that compare the value wait too.
    """
    _gates.require_root(f"to set {name}")
    path = sysctl_path(name)
    with sysctls_held(name, exclusive=True):
        try:
            old = path.read_text().strip()
        except OSError as exc:
            pytest.skip(f"cannot read {name}: {exc}")
        try:
            path.write_text(f"{value}\n")
        except OSError as exc:
            pytest.skip(f"cannot set {name} here: {exc}")
        try:
            yield
        finally:
            path.write_text(f"{old}\n")


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` until it holds (raises AssertionError after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the attacker")
        time.sleep(0.005)


def hand_number_to(number: int, path: str | os.PathLike[str]) -> None:
    """Close ``number`` (a library's double close: the number is free again) and open
    ``path`` read-write into it, as the application's next ``open()`` would take it."""
    os.close(number)
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    if fd != number:  # (other descriptors freed meanwhile: put it exactly there)
        os.dup2(fd, number)
        os.close(fd)


def other_descriptors_of(fd: int) -> list[int]:
    """This process's descriptors of ``fd``'s inode other than ``fd`` (found by fstat)."""
    st = os.fstat(fd)
    return [n for n in descriptors_of_inode((st.st_dev, st.st_ino)) if n != fd]


def descriptors_of_inode(ident: tuple[int, int]) -> list[int]:
    """This process's descriptors of the inode ``(st_dev, st_ino)`` (an unlinked one too)."""
    found = []
    for n in map(int, os.listdir("/proc/self/fd")):
        try:
            other = os.fstat(n)
        except OSError:  # the listing's own descriptor, closed by now
            continue
        if (other.st_dev, other.st_ino) == ident:
            found.append(n)
    return found
