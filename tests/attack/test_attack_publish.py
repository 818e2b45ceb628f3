"""Attacks on a linkable unnamed file: another local user tries to give it a name.

A ``TemporaryFile(linkable=True)`` lacks ``O_EXCL``, so ``linkat`` through
``/proc/PID/fd/N`` can name it. Only processes allowed to ptrace us can use that
magic link: another user cannot, so they can neither link nor read it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import hardtemp

pytestmark = pytest.mark.attack


def _link(src: str, dst: str) -> None:
    """linkat(AT_FDCWD, src, dirfd, name, AT_SYMLINK_FOLLOW), as publish() does
    (os.link without a dir_fd would call link(2), which never follows the magic link)."""
    dfd = os.open(os.path.dirname(dst), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.link(src, os.path.basename(dst), dst_dir_fd=dfd, follow_symlinks=True)
    finally:
        os.close(dfd)


def _try_link(src: str, dst: str) -> str:  # pragma: no cover - other user
    try:
        _link(src, dst)
        return "OK"
    except OSError as exc:
        return type(exc).__name__


def _try_read(path: str) -> str:  # pragma: no cover - other user
    try:
        with open(path, "rb") as f:
            return "READ:" + f.read().decode(errors="replace")
    except OSError as exc:
        return type(exc).__name__


def test_other_user_cannot_link_or_read_our_linkable_file(
    shared_dir: Path, other_user: Callable[..., Any]
) -> None:
    with hardtemp.TemporaryFile(dir=shared_dir, encrypt=False, linkable=True) as f:
        f.write(b"not yet published")
        f.flush()
        magic = f"/proc/{os.getpid()}/fd/{f.fileno()}"
        assert other_user(_try_link, magic, str(shared_dir / "stolen")) == "PermissionError"
        assert other_user(_try_read, magic) == "PermissionError"
        assert os.listdir(shared_dir) == []
        # Control: a process allowed to ptrace us (here: we ourselves) can link it this way.
        _link(magic, str(shared_dir / "ours"))
        assert (shared_dir / "ours").read_bytes() == b"not yet published"
        os.unlink(shared_dir / "ours")
