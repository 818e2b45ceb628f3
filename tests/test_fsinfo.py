"""_fsinfo: the filesystem of an open descriptor, and whether an overwrite lands in place.

Every classification is checked on a real mount (loop images, tmpfs, overlayfs).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hardtemp import _fsinfo
from hardtemp._fsinfo import (
    BEST_EFFORT,
    IN_PLACE,
    NOT_IN_PLACE,
    VOLATILE,
    FsInfo,
    file_info_for_fd,
    fs_info_for_fd,
    fs_info_for_path,
    set_nocow,
)


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    # Loop devices and mount ids are reused between tests: start each one clean.
    _fsinfo.clear_cache()
    yield
    _fsinfo.clear_cache()


def _new_file(directory: Path, name: str = "f") -> int:
    return os.open(directory / name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)


def test_ext4_data_ordered_is_in_place(loopfs: Callable[..., Any]) -> None:
    fs = loopfs("ext4")
    info = fs_info_for_path(fs.mountpoint)
    assert info.fstype == "ext4"
    assert info.verdict == IN_PLACE
    assert info.mountpoint == str(fs.mountpoint)
    assert info.source.startswith("/dev/loop")
    assert "data=ordered" in info.reasons[0]
    # The device under it is described too (here a loop device backed by the image file).
    assert any(str(fs.image) in r for r in info.reasons)


def test_ext4_data_journal_is_not_in_place(loopfs: Callable[..., Any]) -> None:
    fs = loopfs("ext4", options="data=journal")
    info = fs_info_for_path(fs.mountpoint)
    assert info.verdict == NOT_IN_PLACE
    assert "data=journal" in info.reasons[0]


def test_ext4_journal_data_file_flag_is_not_in_place(loopfs: Callable[..., Any]) -> None:
    fs = loopfs("ext4")
    fd = _new_file(fs.mountpoint)
    try:
        assert file_info_for_fd(fd).verdict == IN_PLACE
        done = subprocess.run(
            ["chattr", "+j", str(fs.mountpoint / "f")], capture_output=True, text=True
        )
        if done.returncode:
            pytest.skip(f"cannot set the journal-data flag here: {done.stderr.strip()}")
        info = file_info_for_fd(fd)
        assert info.verdict == NOT_IN_PLACE
        assert "journal-data flag" in info.reasons[0]
    finally:
        os.close(fd)


def test_btrfs_is_not_in_place(loopfs: Callable[..., Any]) -> None:
    fs = loopfs("btrfs")
    info = fs_info_for_path(fs.mountpoint)
    assert info.fstype == "btrfs"
    assert info.verdict == NOT_IN_PLACE
    assert "copy-on-write" in info.reasons[0]


def test_btrfs_set_nocow_on_empty_file_makes_it_in_place(loopfs: Callable[..., Any]) -> None:
    fs = loopfs("btrfs")
    fd = _new_file(fs.mountpoint)
    try:
        assert file_info_for_fd(fd).verdict == NOT_IN_PLACE
        assert set_nocow(fd) is True
        os.write(fd, b"x" * 65536)
        info = file_info_for_fd(fd)
        assert info.verdict == IN_PLACE
        assert "NOCOW" in info.reasons[0]
        assert "snapshot" in info.reasons[0]
        lsattr = subprocess.run(
            ["lsattr", str(fs.mountpoint / "f")], check=True, capture_output=True, text=True
        ).stdout
        assert "C" in lsattr.split()[0]
    finally:
        os.close(fd)


def test_set_nocow_refuses_a_non_empty_file(loopfs: Callable[..., Any]) -> None:
    fs = loopfs("btrfs")
    fd = _new_file(fs.mountpoint)
    try:
        os.write(fd, b"data")
        assert set_nocow(fd) is False
        assert file_info_for_fd(fd).verdict == NOT_IN_PLACE
    finally:
        os.close(fd)


def test_btrfs_nocow_file_sharing_extents_with_a_reflink_is_not_in_place(
    loopfs: Callable[..., Any],
) -> None:
    fs = loopfs("btrfs")
    fd = _new_file(fs.mountpoint)
    try:
        assert set_nocow(fd)
        os.write(fd, b"y" * 65536)
        os.fsync(fd)
        # A snapshot-like shared extent: a reflink copy forces the next write to be copied.
        clone = fs.mountpoint / "clone"
        cfd = _new_file(fs.mountpoint, "clone")
        os.close(cfd)
        set_nocow_ok = subprocess.run(["chattr", "+C", str(clone)], check=False).returncode == 0
        assert set_nocow_ok
        subprocess.run(["cp", "--reflink=always", str(fs.mountpoint / "f"), str(clone)], check=True)
        info = file_info_for_fd(fd)
        assert info.verdict == NOT_IN_PLACE
        assert "shared" in info.reasons[0]
    finally:
        os.close(fd)


def test_set_nocow_is_false_on_ext4(loopfs: Callable[..., Any]) -> None:
    fs = loopfs("ext4")
    fd = _new_file(fs.mountpoint)
    try:
        assert set_nocow(fd) is False
    finally:
        os.close(fd)


def test_tmpfs_without_swap_is_volatile(small_tmpfs: Callable[[int], Path]) -> None:
    import psutil

    mnt = small_tmpfs(1024)
    info = fs_info_for_path(mnt)
    assert info.fstype == "tmpfs"
    if psutil.swap_memory().total:
        assert info.verdict == BEST_EFFORT
        assert any("swap is active" in r for r in info.reasons)
    else:
        assert info.verdict == VOLATILE
        assert any("no swap" in r for r in info.reasons)


def test_tmpfs_with_active_swap_is_only_best_effort(
    small_tmpfs: Callable[[int], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Enabling real swap on this machine is not ours to do: the swap total is the one input faked.
    mnt = small_tmpfs(1024)

    class _Swap:
        total = 1 << 30

    monkeypatch.setattr(_fsinfo.psutil, "swap_memory", lambda: _Swap())
    _fsinfo.clear_cache()
    info = fs_info_for_path(mnt)
    assert info.verdict == BEST_EFFORT
    assert any("swap is active (1024 MiB)" in r for r in info.reasons)


def test_tmpfs_noswap_mount_stays_volatile_even_with_swap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    mnt = tmp_path / "ns"
    mnt.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "noswap,size=1m", "tmpfs", str(mnt)]
    ).returncode:
        pytest.skip("this kernel has no tmpfs noswap option (Linux >= 6.4)")
    try:

        class _Swap:
            total = 1 << 30

        monkeypatch.setattr(_fsinfo.psutil, "swap_memory", lambda: _Swap())
        info = fs_info_for_path(mnt)
        assert info.verdict == VOLATILE
        assert any("noswap" in r for r in info.reasons)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_overlayfs_is_not_in_place(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount overlayfs")
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    for d in (lower, upper, work, merged):
        d.mkdir()
    opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
    if subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)]).returncode:
        pytest.skip("cannot mount overlayfs here")
    try:
        info = fs_info_for_path(merged)
        assert info.fstype == "overlay"
        assert info.verdict == NOT_IN_PLACE
        assert "lower layer" in info.reasons[0]
    finally:
        subprocess.run(["umount", "-l", str(merged)], check=False)


def test_unknown_filesystem_is_best_effort_and_says_so() -> None:
    info = fs_info_for_path("/proc/self")
    assert info.fstype == "proc"
    assert info.verdict == BEST_EFFORT
    assert "not a filesystem whose overwrite behaviour hardtemp knows" in info.reasons[0]


def test_fs_info_for_path_does_not_follow_a_final_symlink(
    loopfs: Callable[..., Any], small_tmpfs: Callable[[int], Path]
) -> None:
    fs = loopfs("ext4")
    mnt = small_tmpfs(1024)
    (mnt / "link").symlink_to(fs.mountpoint)
    assert fs_info_for_path(mnt / "link").fstype == "tmpfs"
    assert fs_info_for_path(fs.mountpoint).fstype == "ext4"


def test_fs_info_for_path_missing_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        fs_info_for_path(tmp_path / "missing")


def test_fs_info_for_fd_bad_descriptor_raises_oserror() -> None:
    fd = os.open("/", os.O_RDONLY)
    os.close(fd)
    with pytest.raises(OSError, match="Bad file descriptor"):
        fs_info_for_fd(fd)


def test_classification_is_cached_per_mount(
    loopfs: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = loopfs("ext4")
    first = fs_info_for_path(fs.mountpoint)
    calls: list[int] = []
    real = _fsinfo._mount_entry

    def counting(mnt_id: int, st_dev: int) -> Any:
        calls.append(mnt_id)
        return real(mnt_id, st_dev)

    monkeypatch.setattr(_fsinfo, "_mount_entry", counting)
    for _ in range(50):
        assert fs_info_for_path(fs.mountpoint) == first
    assert calls == []  # mountinfo is not parsed again on the hot path


def test_a_new_filesystem_on_a_reused_loop_device_is_not_served_from_the_cache(
    loopfs: Callable[..., Any],
) -> None:
    fs = loopfs("ext4")
    assert fs_info_for_path(fs.mountpoint).verdict == IN_PLACE
    fs.unmount()
    fs.options = "data=journal"
    fs.mount()  # same image, often the same loop device and mount id
    assert fs_info_for_path(fs.mountpoint).verdict == NOT_IN_PLACE


def test_fsinfo_is_a_frozen_dataclass() -> None:
    info = fs_info_for_path("/")
    assert isinstance(info, FsInfo)
    with pytest.raises(AttributeError):
        info.verdict = IN_PLACE  # type: ignore[misc]
    assert all(isinstance(r, str) and r for r in info.reasons)
