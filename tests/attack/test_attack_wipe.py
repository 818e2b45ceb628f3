"""Attacks by another local user on hardtemp's removal of files.

The attacker is a real second user (uid 65534) acting in a shared sticky directory,
exactly as in /tmp: planting symlinks, hard links and FIFOs where we remove entries,
or taking a name we meant to remove. In every case the attacker's target must be
untouched; a naive "open, overwrite, unlink" would destroy it or hang.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from _helpers_core import marker
from hardtemp._policy import wipe_policy
from hardtemp._remove import remove_entry, wipe
from hardtemp.exceptions import PlaintextLeftWarning, UnsafeFileError

pytestmark = pytest.mark.attack


@pytest.fixture(autouse=True)
def _any_filesystem() -> Iterator[None]:
    # The shared directory is on whatever filesystem /tmp is: the verdict is not the point here.
    with wipe_policy("ignore"):
        yield


@pytest.fixture
def victim(tmp_path: Path) -> tuple[Path, bytes]:
    """A root-owned file outside the shared directory, holding data that must survive."""
    m = marker()
    path = tmp_path / "victim"
    path.write_bytes(m * 10)
    os.chmod(path, 0o644)
    return path, m * 10


def plant_symlink(directory: str, name: str, target: str) -> None:
    os.symlink(target, os.path.join(directory, name))


def plant_hard_link(directory: str, data: bytes) -> None:
    own = os.path.join(directory, "attacker-data")
    fd = os.open(own, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, data)
    os.close(fd)
    os.link(own, os.path.join(directory, "planted"))


def plant_fifo(directory: str, name: str) -> None:
    os.mkfifo(os.path.join(directory, name), 0o666)


def read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def plant_file(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, data)
    os.close(fd)


def test_planted_symlink_is_unlinked_and_its_target_untouched(
    other_user: Callable[..., Any], shared_dir: Path, victim: tuple[Path, bytes]
) -> None:
    path, data = victim
    other_user(plant_symlink, str(shared_dir), "planted", str(path))
    dfd = os.open(shared_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        report = remove_entry(dfd, "planted", own_file=False)
    finally:
        os.close(dfd)
    assert path.read_bytes() == data
    assert not os.path.lexists(shared_dir / "planted")
    assert report.verdict == "skipped"


def test_planted_hard_link_to_the_attackers_file_is_unlinked_not_overwritten(
    other_user: Callable[..., Any], shared_dir: Path
) -> None:
    data = marker()
    other_user(plant_hard_link, str(shared_dir), data)
    dfd = os.open(shared_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.warns(PlaintextLeftWarning, match="2 hard links"):
            report = remove_entry(dfd, "planted", own_file=False)
    finally:
        os.close(dfd)
    assert not os.path.lexists(shared_dir / "planted")
    assert report.hard_links == 2
    assert report.bytes_overwritten == 0
    # Data we were never handed stays intact: the other user reads it back.
    assert other_user(read_file, str(shared_dir / "attacker-data")) == data


@pytest.mark.timeout(20)
def test_planted_fifo_does_not_block_removal(
    other_user: Callable[..., Any], shared_dir: Path
) -> None:
    other_user(plant_fifo, str(shared_dir), "planted")
    dfd = os.open(shared_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        report = remove_entry(dfd, "planted", own_file=False)
    finally:
        os.close(dfd)
    assert report.verdict == "skipped"
    assert not os.path.lexists(shared_dir / "planted")


def test_wipe_refuses_a_planted_symlink_and_the_target_survives(
    other_user: Callable[..., Any], shared_dir: Path, victim: tuple[Path, bytes]
) -> None:
    path, data = victim
    other_user(plant_symlink, str(shared_dir), "report.pdf", str(path))
    with pytest.raises(UnsafeFileError, match="never follows symlinks"):
        wipe(shared_dir / "report.pdf")
    assert path.read_bytes() == data


def test_wipe_refuses_a_planted_parent_symlink_and_the_target_survives(
    other_user: Callable[..., Any], shared_dir: Path, victim: tuple[Path, bytes]
) -> None:
    path, data = victim
    # The user means shared/job/victim; the attacker makes "job" point at the victim's dir.
    other_user(plant_symlink, str(shared_dir), "job", str(path.parent))
    with pytest.raises(UnsafeFileError, match="symbolic link"):
        wipe(shared_dir / "job" / "victim")
    assert path.read_bytes() == data


def test_a_name_taken_by_the_attacker_is_not_removed(
    other_user: Callable[..., Any], shared_dir: Path
) -> None:
    # We expect our own inode under "job.tmp"; the attacker owns what is there now.
    ours = shared_dir / "ours"
    ours.write_bytes(b"ours")
    st = os.stat(ours)
    data = marker()
    other_user(plant_file, str(shared_dir / "job.tmp"), data)
    dfd = os.open(shared_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(UnsafeFileError, match="another file than expected"):
            remove_entry(dfd, "job.tmp", expect=(st.st_dev, st.st_ino))
    finally:
        os.close(dfd)
    assert (shared_dir / "job.tmp").read_bytes() == data
    assert stat.S_ISREG(os.lstat(shared_dir / "job.tmp").st_mode)
