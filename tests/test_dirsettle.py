"""hardtemp._dirsettle: which trees get their emptied directories synced before removal.

What the sync achieves (no names left in freed blocks outside the journal) is proved on a
raw ext4 image in tests/forensic/test_forensic_names.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from hardtemp import _dirsettle


def test_a_tree_on_a_disk_filesystem_is_settled(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        settle = _dirsettle.settler(fd)
        if settle is None:
            pytest.skip(f"{tmp_path} is on a RAM filesystem here")
        settle(fd)  # fsync + syncfs of a real directory: no error
    finally:
        os.close(fd)


def test_a_tree_on_tmpfs_needs_no_settling(small_tmpfs: Callable[[int], Path]) -> None:
    mnt = small_tmpfs(256)
    fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert _dirsettle.settler(fd) is None
    finally:
        os.close(fd)


def test_an_unidentified_filesystem_is_settled_anyway_and_failures_are_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    os.close(fd)  # a descriptor that is no longer open: fstatfs fails (EBADF), a real error
    settle = _dirsettle.settler(fd)
    assert settle is not None
    settle(fd)  # fsync fails with EBADF: swallowed, nothing removed depends on it
    # A libc without syncfs (glibc < 2.14): only the fsync.
    monkeypatch.setattr(_dirsettle, "_syncfs", None)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _dirsettle._settle(fd)
    finally:
        os.close(fd)


def test_the_graveyard_holds_emptied_directories_until_one_settle_then_removes_them(
    tmp_path: Path,
) -> None:
    top = tmp_path / "top"
    (top / "a" / "b").mkdir(parents=True)
    (top / "c").mkdir()
    settled: list[list[str]] = []
    top_fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    a_fd = os.open(top / "a", os.O_RDONLY | os.O_DIRECTORY)
    try:
        yard = _dirsettle.Graveyard(top_fd, lambda fd: settled.append(sorted(os.listdir(fd))))
        assert yard.take(a_fd, "b")  # from a subdirectory: into the top, out of a
        assert yard.take(top_fd, "a")  # a is empty now: its turn
        assert not yard.take(top_fd, "missing")  # a failed move changes nothing
        assert not yard.full
        graves = sorted(os.listdir(top))
        assert len(graves) == 3
        assert "c" in graves
        assert all(len(g) == 20 and g.startswith(".ht-") for g in graves if g != "c")
        assert yard.take(top_fd, "c")
        (top / sorted(os.listdir(top))[0] / "late").mkdir()  # refilled: left for a rescan
        errors = yard.bury()
    finally:
        os.close(a_fd)
        os.close(top_fd)
    assert errors == []
    assert len(settled) == 1  # one settle for the three...
    assert len(settled[0]) == 3  # ...taken before any of them was removed
    assert [os.listdir(top / g) for g in os.listdir(top)] == [["late"]]
