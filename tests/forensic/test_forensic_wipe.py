"""Forensic proof: after a wipe, the plaintext is gone from the raw filesystem image.

Each case writes a unique marker, makes sure it reached the disk (fsync, then the
marker is found in the raw image while still mounted: the precondition that lets
the test fail), removes the file, unmounts and searches the raw image bytes. The
standard library's removal is the control: there the marker survives.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

import pytest

from _helpers_core import marker
from _helpers_forensic import on_disk, payload, write_synced
from hardtemp._remove import remove_entry, wipe
from hardtemp.exceptions import WipeUnreliableWarning

pytestmark = [pytest.mark.forensic, pytest.mark.usefixtures("strict_wipe_warnings")]


SIZES = [len(marker()), 5000, 8 << 20]


# --- ext4, data=ordered: the overwrite reaches the old blocks ---------------------------------


@pytest.mark.parametrize("size", SIZES, ids=["tiny", "5k", "8MiB"])
def test_ext4_wipe_leaves_no_marker_in_the_image(loopfs: Callable[..., Any], size: int) -> None:
    fs = loopfs("ext4")
    m = marker()
    path = str(fs.mountpoint / "secret")
    write_synced(path, payload(m, size))
    assert on_disk(fs, m)
    report = wipe(path)
    assert report.verdict == "in place"
    assert not os.path.exists(path)
    assert not fs.image_contains(m)


def test_ext4_control_stdlib_unlink_leaves_the_marker(loopfs: Callable[..., Any]) -> None:
    fs = loopfs("ext4")
    m = marker()
    path = str(fs.mountpoint / "secret")
    write_synced(path, payload(m, 5000))
    os.unlink(path)
    assert fs.image_contains(m)


def test_ext4_control_stdlib_named_temporary_file_leaves_the_marker(
    loopfs: Callable[..., Any],
) -> None:
    fs = loopfs("ext4")
    m = marker()
    with tempfile.NamedTemporaryFile(dir=fs.mountpoint) as f:
        f.write(payload(m, 5000))
        f.flush()
        os.fsync(f.fileno())
        assert on_disk(fs, m)
    assert fs.image_contains(m)


def test_ext4_own_temp_file_removed_through_its_fd_leaves_no_marker(
    loopfs: Callable[..., Any],
) -> None:
    # The NamedTemporaryFile path: our descriptor, the (st_dev, st_ino) we created.
    fs = loopfs("ext4")
    m = marker()
    dfd = os.open(fs.mountpoint, os.O_RDONLY | os.O_DIRECTORY)
    fd = os.open("tmpabc", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=dfd)
    try:
        os.write(fd, payload(m, 100_000))
        os.fsync(fd)
        assert on_disk(fs, m)
        st = os.fstat(fd)
        report = remove_entry(dfd, "tmpabc", fd=fd, expect=(st.st_dev, st.st_ino))
    finally:
        os.close(fd)
        os.close(dfd)
    assert report.removed
    assert not fs.image_contains(m)


def test_ext4_foreign_file_in_a_temp_dir_removed_leaves_no_marker(
    loopfs: Callable[..., Any],
) -> None:
    # The TemporaryDirectory cleanup path: a file another program wrote there.
    fs = loopfs("ext4")
    m = marker()
    (fs.mountpoint / "tmpdir").mkdir(mode=0o700)
    with open(fs.mountpoint / "tmpdir" / "export.csv", "wb") as f:
        f.write(payload(m, 20_000))
        f.flush()
        os.fsync(f.fileno())
    assert on_disk(fs, m)
    dfd = os.open(fs.mountpoint / "tmpdir", os.O_RDONLY | os.O_DIRECTORY)
    try:
        remove_entry(dfd, "export.csv", own_file=False)
    finally:
        os.close(dfd)
    assert not fs.image_contains(m)


def test_ext4_sparse_file_wipe_leaves_no_marker(loopfs: Callable[..., Any]) -> None:
    fs = loopfs("ext4")
    m1, m2 = marker(), marker()
    path = fs.mountpoint / "sparse"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, m1, 0)
        os.pwrite(fd, m2, 16 << 20)
        os.fsync(fd)
    finally:
        os.close(fd)
    assert on_disk(fs, m1)
    assert on_disk(fs, m2)
    report = wipe(path)
    assert report.bytes_overwritten < 1 << 20  # holes were not written
    fs.unmount()
    image = fs.image.read_bytes()
    assert m1 not in image
    assert m2 not in image


# --- ext4 data=journal: the journal keeps a copy; we warn and do not pretend ------------------


def test_ext4_data_journal_warns_and_the_journal_still_holds_the_marker(
    loopfs: Callable[..., Any],
) -> None:
    fs = loopfs("ext4", options="data=journal")
    m = marker()
    path = str(fs.mountpoint / "secret")
    write_synced(path, payload(m, 5000))
    with pytest.warns(WipeUnreliableWarning, match="data=journal") as rec:
        report = wipe(path)
    assert "Encrypt" in str(rec[0].message)
    assert report.verdict == "not in place"
    assert not os.path.exists(path)
    # What is true here: the journal still holds the plaintext. The warning is not a formality.
    assert fs.image_contains(m)


# --- btrfs -----------------------------------------------------------------------------------


def test_btrfs_without_nocow_warns_and_the_old_extent_still_holds_the_marker(
    loopfs: Callable[..., Any],
) -> None:
    # nodiscard: otherwise btrfs discards the freed extent and the loop driver punches a hole
    # in the image, which hides the copy-on-write leftover in this test only, not on real disks.
    fs = loopfs("btrfs", options="nodiscard")
    m = marker()
    path = str(fs.mountpoint / "secret")
    write_synced(path, payload(m, 100_000))
    assert on_disk(fs, m)
    with pytest.warns(WipeUnreliableWarning, match="copy-on-write"):
        report = wipe(path)
    assert report.verdict == "not in place"
    assert fs.image_contains(m)


@pytest.mark.parametrize("size", SIZES, ids=["tiny", "5k", "8MiB"])
def test_btrfs_nocow_file_is_overwritten_in_place(loopfs: Callable[..., Any], size: int) -> None:
    fs = loopfs("btrfs", options="nodiscard")
    m = marker()
    path = str(fs.mountpoint / "secret")
    write_synced(path, payload(m, size), nocow=True)
    assert on_disk(fs, m)
    report = wipe(path)  # no warning: warnings are errors here
    assert report.verdict == "in place"
    assert not fs.image_contains(m)
