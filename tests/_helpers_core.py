"""Helpers shared by the core tests: hostile directories, descriptor counting."""

from __future__ import annotations

import contextlib
import gc
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import hardtemp

NOBODY = 65534
SRC = str(Path(hardtemp.__file__).resolve().parent.parent)


def open_fds() -> set[int]:
    """The descriptors open in this process right now."""
    gc.collect()
    return {int(n) for n in os.listdir("/proc/self/fd")}


def make_dir(path: Path, mode: int, uid: int = 0, gid: int = 0) -> Path:
    """A directory with exactly ``mode`` (chmod after chown) owned by ``uid``."""
    path.mkdir()
    os.chown(path, uid, gid)
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


def sysctl(name: str) -> int:
    try:
        return int(Path(f"/proc/sys/{name.replace('.', '/')}").read_text())
    except (OSError, ValueError):
        return -1
