"""hardtemp._dirsettle: which trees get their emptied directories synced before removal.

What the sync achieves (no names left in freed blocks outside the journal) is proved on a
raw ext4 image in tests/forensic/test_forensic_names.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from _gates import require_tool, require_unshare
from _helpers_core import traced_calls
from hardtemp import _dirsettle, _linux


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


@pytest.mark.parametrize("fstype", ["btrfs", "xfs"])
def test_a_tree_on_btrfs_or_xfs_is_not_settled_nor_moved_to_graves(
    loopfs: Callable[..., Any], fstype: str
) -> None:
    # Their metadata keeps the names whatever is synced first (xfs: measured equal to the
    # stdlib's cleanup in tests/forensic/test_forensic_xfs.py): no syncfs, no graves.
    fs = loopfs(fstype)
    fd = os.open(fs.mountpoint, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert _dirsettle.settler(fd) is None
    finally:
        os.close(fd)
    calls = _traced_cleanup(fs.mountpoint)
    assert not [c for c in calls if c.startswith(("syncfs(", "sync("))], calls
    graves = [c for c in calls if c.startswith("rename") and c.split('"')[1] in _DIRS]
    assert not graves, calls  # no emptied directory moved into the top
    assert [c for c in calls if c.startswith("unlinkat(") and "AT_REMOVEDIR" in c], calls
    assert os.listdir(fs.mountpoint) == []


_DIRS = {"d0", "d1", "d2", "e"}
_CLEANUP = """
import os, sys
import hardtemp
t = hardtemp.TemporaryDirectory(dir=sys.argv[1])
for sub in range(3):
    os.makedirs(os.path.join(t.name, f"d{sub}", "e"))
    with open(os.path.join(t.name, f"d{sub}", "e", "f"), "wb") as f:
        f.write(b"x")
os.write(1, b"BEGIN\\n")
t.cleanup()
os.write(1, b"END\\n")
"""


def _traced_cleanup(where: Path) -> list[str]:
    """The system calls of a ``TemporaryDirectory`` tree's cleanup under ``where`` (strace)."""
    require_tool("strace", "strace")
    return traced_calls(_CLEANUP, str(where))


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


# --- The skip for a tree nothing of which reached the disk (what it proves: forensic) --


def test_no_write_count_where_no_block_device_or_no_sys_entry_answers(tmp_path: Path) -> None:
    shm = os.stat("/dev/shm").st_dev if os.path.isdir("/dev/shm") else os.makedev(0, 1)
    assert _dirsettle.disk_stamp(shm) is None  # tmpfs: no block device at all
    missing = os.makedev(7, 1000)  # a loop device that does not exist
    assert _dirsettle.disk_stamp(missing) is None
    assert _dirsettle._sectors_written(missing) is None


def test_only_a_request_based_device_or_its_partition_counts(tmp_path: Path) -> None:
    # sysfs layouts made for real: a blk-mq disk has mq/, a partition is a subdirectory of
    # its disk; a bio-based one (device-mapper) has none and is synced.
    (tmp_path / "disk" / "mq").mkdir(parents=True)
    (tmp_path / "disk" / "part1").mkdir()
    (tmp_path / "dm").mkdir()
    assert _dirsettle._request_based(str(tmp_path / "disk"))
    assert _dirsettle._request_based(str(tmp_path / "disk" / "part1"))
    assert not _dirsettle._request_based(str(tmp_path / "dm"))


def test_a_directory_born_before_the_tree_or_unreadable_is_not_young(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        later = _dirsettle.Fresh(os.fstat(fd).st_dev, 1, time.time() + 3600)
        assert not later.young(fd)  # born before the top: possibly moved in, settled
        born = _linux.birth_ident(fd)[2]
        if born is not None:  # the filesystem records birth times
            assert _dirsettle.Fresh(0, 1, 0.0).young(fd)  # born after the top: young
            # In the top's very clock tick: maybe made (and synced home) just before it.
            assert not _dirsettle.Fresh(0, 1, born).young(fd)
    finally:
        os.close(fd)
    assert not _dirsettle.Fresh(0, 1, 0.0).young(fd)  # closed: statx fails, settled


def test_the_top_is_young_by_its_own_birth_unless_the_clock_went_back() -> None:
    # The top's birth time is the tree's: not asked again, but still checked against the
    # clock (set back since: a directory born "in the future" may be an old one).
    assert _dirsettle.Fresh(0, 1, time.time() - 1).top_young()
    assert not _dirsettle.Fresh(0, 1, time.time() + 3600).top_young()


def _ext4(loopfs: Callable[..., Any]) -> tuple[Any, int]:
    fs = loopfs("ext4", options="commit=300")
    dev = os.stat(fs.mountpoint).st_dev
    if _dirsettle.disk_stamp(dev) is None:
        pytest.skip("this kernel does not count the loop device's writes")
    return fs, dev


@pytest.mark.forensic
def test_without_proc_fs_jbd2_a_fresh_tree_is_synced(loopfs: Callable[..., Any]) -> None:
    require_unshare()
    fs, _ = _ext4(loopfs)
    # A private mount namespace whose /proc/fs/jbd2 is empty (as in a container that
    # shows no jbd2): the journal cannot be confirmed, so the cleanup syncs.
    script = (
        "import os, hardtemp; from hardtemp import _dirsettle as s\n"
        f"mnt = {str(fs.mountpoint)!r}\n"
        "assert s.disk_stamp(os.stat(mnt).st_dev) is None\n"
        "with hardtemp.TemporaryDirectory(dir=mnt) as d: open(d + '/f', 'w').close()\n"
        "print(s.counts['synced'], s.counts['skipped'])\n"
    )
    shell = 'mount --make-rprivate / && mount -t tmpfs none /proc/fs/jbd2 && exec "$0" -c "$1"'
    out = subprocess.run(
        ["unshare", "-m", "sh", "-c", shell, sys.executable, script],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["1", "0"]


@pytest.mark.forensic
def test_with_the_disk_s_accounting_off_a_fresh_tree_is_synced(loopfs: Callable[..., Any]) -> None:
    fs, dev = _ext4(loopfs)
    knob = f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/queue/iostats"
    Path(knob).write_text("0")  # the counter stops: an unchanged count would prove nothing
    try:
        assert _dirsettle.disk_stamp(dev) is None
        synced = _dirsettle.counts["synced"]
        import hardtemp

        with hardtemp.TemporaryDirectory(dir=fs.mountpoint) as d:
            os.mkdir(os.path.join(d, "sub"))
        assert _dirsettle.counts["synced"] == synced + 1
    finally:
        Path(knob).write_text("1")
    assert _dirsettle.disk_stamp(dev) is not None
