"""Forensic proof on xfs: what hardtemp says about xfs, checked on raw images.

``_fsinfo`` calls xfs "in place" (it rewrites a file's data blocks where they are, unless
they are shared with a reflink copy) and a delayed-allocation filesystem (a file closed
before writeback has no block on the disk), and its names need no hiding rename; and what
it says cannot be done there: keep a directory's names out of its blocks once xfs wrote
them home. Each case
writes a unique marker or name, removes it the way a user would, unmounts and searches the
raw image; the standard library's removal is the control that shows the search finds what
stays (xfs is the default filesystem of several distributions' ``/var/tmp``).
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import tempfile
import warnings
from collections.abc import Callable
from typing import Any

import pytest

import hardtemp
from _helpers_core import marker
from _helpers_forensic import on_disk, payload, unmounted_image, write_synced
from hardtemp.exceptions import WipeUnreliableWarning

LoopFS = Any

pytestmark = [pytest.mark.forensic, pytest.mark.usefixtures("strict_wipe_warnings")]

SIZES = [len(marker()), 5000, 8 << 20]


def _in_image(fs: LoopFS, needle: bytes) -> bool:
    """Unmount (nothing of ours keeps it busy), then search the raw image."""
    return needle in unmounted_image(fs)


@pytest.mark.parametrize("size", SIZES, ids=["tiny", "5k", "8MiB"])
def test_xfs_wipe_of_a_synced_file_is_in_place_and_leaves_no_marker(
    loopfs: Callable[..., LoopFS], size: int
) -> None:
    fs = loopfs("xfs")
    m = marker()
    path = str(fs.mountpoint / "secret")
    write_synced(path, payload(m, size))
    assert on_disk(fs, m)  # the precondition that lets the test fail
    report = hardtemp.wipe(path)
    assert report.verdict == "in place"
    assert not os.path.exists(path)
    assert not _in_image(fs, m)


def test_xfs_control_stdlib_unlink_leaves_the_marker(loopfs: Callable[..., LoopFS]) -> None:
    fs = loopfs("xfs")
    m = marker()
    path = str(fs.mountpoint / "secret")
    write_synced(path, payload(m, 5000))
    os.unlink(path)
    assert _in_image(fs, m)


@pytest.mark.parametrize("lib", ["hardtemp", "control-stdlib"])
def test_xfs_named_temporary_file_synced_before_close_leaves_no_marker(
    loopfs: Callable[..., LoopFS], lib: str
) -> None:
    fs = loopfs("xfs")
    m = marker()
    mod: Any = hardtemp if lib == "hardtemp" else tempfile
    with mod.NamedTemporaryFile(dir=fs.mountpoint) as f:
        f.write(payload(m, 5000))
        f.flush()
        os.fsync(f.fileno())
        assert on_disk(fs, m)
    assert _in_image(fs, m) == (lib != "hardtemp")


@pytest.mark.parametrize("kept", [False, True], ids=["closed", "control-kept"])
def test_xfs_named_temporary_file_closed_before_writeback_leaves_no_marker(
    loopfs: Callable[..., LoopFS], kept: bool
) -> None:
    # No fsync: the data is only in the page cache (a delayed allocation) when the close
    # overwrites and unlinks it; a sync afterwards must find nothing. The control keeps the
    # file (delete=False): the same data then reaches the disk and the search finds it.
    fs = loopfs("xfs")
    m = marker()
    with hardtemp.NamedTemporaryFile(dir=fs.mountpoint, delete=not kept) as f:
        f.write(payload(m, 5000))
    subprocess.run(["sync"], check=True)
    assert _in_image(fs, m) == kept


@pytest.mark.parametrize("lib", ["hardtemp", "control-stdlib"])
def test_xfs_temporary_directory_with_synced_files_leaves_no_marker(
    loopfs: Callable[..., LoopFS], lib: str
) -> None:
    fs = loopfs("xfs")
    m = marker()
    mod: Any = hardtemp if lib == "hardtemp" else tempfile
    with mod.TemporaryDirectory(dir=fs.mountpoint) as d:
        for i in range(4):
            with open(os.path.join(d, f"part{i}.csv"), "wb") as f:
                f.write(payload(m, 3000))
                f.flush()
                os.fsync(f.fileno())
        assert on_disk(fs, m)
    assert _in_image(fs, m) == (lib != "hardtemp")


def test_xfs_wipe_of_a_file_sharing_blocks_with_a_reflink_copy_says_the_data_stays(
    loopfs: Callable[..., LoopFS],
) -> None:
    # The user's reflink copy shares the blocks: an overwrite of ours is copied on write and
    # never reaches them. wipe() must say so, never report "in place", and leave the copy
    # (the user's) as it was.
    fs = loopfs("xfs")
    m = marker()
    path, copy = str(fs.mountpoint / "secret"), str(fs.mountpoint / "copy")
    write_synced(path, payload(m, 64 << 10))
    done = subprocess.run(["cp", "--reflink=always", path, copy], capture_output=True, check=False)
    if done.returncode:
        pytest.skip(f"this xfs has no reflink: {done.stderr.decode().strip()}")
    subprocess.run(["sync"], check=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", WipeUnreliableWarning)
        report = hardtemp.wipe(path)
    assert report.verdict == "not in place"
    assert report.codes[0] == "file.shared_extents"
    assert any("reflink" in str(w.message) for w in caught), "no warning for the shared blocks"
    assert not os.path.exists(path)
    with open(copy, "rb") as f:
        assert f.read() == payload(m, 64 << 10)  # the user's copy is untouched
    assert _in_image(fs, m)  # the copy's blocks: the data stays, as the report said


def test_xfs_named_file_s_name_stays_in_old_metadata_renamed_first_or_not(
    loopfs: Callable[..., LoopFS],
) -> None:
    # Why the close does not rename on xfs: the name of an entry that reached the disk is
    # still in the raw image after the unlink, whether or not it was renamed to a random
    # name first (xfs leaves the old directory and log blocks' bytes). Ours (unlinked as is)
    # and a sibling removed the old way (renamed first, then unlinked): both found.
    fs = loopfs("xfs")
    d = os.path.join(fs.mountpoint, "work")
    os.mkdir(d, 0o700)
    tag = secrets.token_hex(6)
    kept = os.path.join(d, f"kept-{tag}")
    with hardtemp.NamedTemporaryFile(dir=d, prefix=f"upload-{tag}-") as f:
        f.write(b"y" * 1000)
        with open(kept, "wb") as k:
            k.write(b"k")
        subprocess.run(["sync"], check=True)
        ours = os.path.basename(f.name).encode()
        assert on_disk(fs, ours)  # the entry did reach the disk
    hidden = os.path.join(d, ".ht-" + secrets.token_hex(8))
    os.rename(kept, hidden)
    os.unlink(hidden)
    subprocess.run(["sync"], check=True)
    data = unmounted_image(fs)
    assert ours in data  # unlinked as is
    assert f"kept-{tag}".encode() in data  # renamed first: there just the same


_SB_FIELDS = "logstart logblocks blocksize agblocks agblklog"


def _outside_log(data: bytes, image: str, needle: bytes) -> tuple[int, int]:
    """(hits of ``needle`` outside the internal log, inside it) in the bytes ``data`` of the
    unmounted xfs image ``image``."""
    out = subprocess.run(
        ["xfs_db", "-r", "-c", "sb 0", "-c", f"p {_SB_FIELDS}", image],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    v = {k: int(x) for k, x in re.findall(r"(\w+) = (\d+)", out)}
    agno, agbno = v["logstart"] >> v["agblklog"], v["logstart"] & ((1 << v["agblklog"]) - 1)
    lo = (agno * v["agblocks"] + agbno) * v["blocksize"]
    hi = lo + v["logblocks"] * v["blocksize"]
    hits = [m.start() for m in re.finditer(re.escape(needle), data)]
    inside = sum(1 for p in hits if lo <= p < hi)
    return len(hits) - inside, inside


@pytest.mark.parametrize("lib", ["hardtemp", "stdlib"])
def test_xfs_names_written_home_stay_in_directory_blocks_after_either_cleanup(
    loopfs: Callable[..., LoopFS], lib: str
) -> None:
    # What SECURITY.md says of xfs: a TemporaryDirectory's cleanup cannot keep its files'
    # names out of the directory blocks once xfs has written those blocks home (xfsaild
    # does so within about 30 s, or under log pressure; xfs_freeze forces it here): xfs
    # marks a removed entry free without clearing its name, so hardtemp's cleanup (which
    # syncs before each directory goes, enough on ext4) leaves them as the stdlib's does.
    # Should xfs ever clear them, this fails and SECURITY.md is to be corrected.
    fs = loopfs("xfs")
    tag = secrets.token_hex(5)
    mod: Any = hardtemp if lib == "hardtemp" else tempfile
    with mod.TemporaryDirectory(dir=fs.mountpoint) as d:
        for sub in range(3):
            sd = os.path.join(d, f"sub{sub}-{tag}")
            os.mkdir(sd)
            for i in range(60):  # block-form directories, not names inline in the inode
                with open(os.path.join(sd, f"patient-record-{tag}-{i:03d}.csv"), "wb") as f:
                    f.write(b"z")
        subprocess.run(["sync"], check=True)
        subprocess.run(["xfs_freeze", "-f", str(fs.mountpoint)], check=True)
        subprocess.run(["xfs_freeze", "-u", str(fs.mountpoint)], check=True)
    outside, _ = _outside_log(unmounted_image(fs), str(fs.image), tag.encode())
    assert outside >= 180, f"{outside} names outside the log: has xfs begun to clear them?"


def test_xfs_temporary_directory_holding_a_reflink_copy_warns_that_its_blocks_stay(
    loopfs: Callable[..., LoopFS],
) -> None:
    # `cp` (coreutils 9: --reflink=auto) of a user's file into a TemporaryDirectory on xfs
    # shares the original's blocks: the cleanup's overwrite of the copy goes to new blocks,
    # and the shared ones keep the data. The cleanup must say so, not pass it in silence,
    # and leave the user's original untouched.
    fs = loopfs("xfs")
    m = marker()
    original = str(fs.mountpoint / "records.csv")
    write_synced(original, payload(m, 64 << 10))
    t = hardtemp.TemporaryDirectory(dir=fs.mountpoint)
    copy = os.path.join(t.name, "records.csv")
    done = subprocess.run(["cp", "--reflink=always", original, copy], capture_output=True)
    if done.returncode:
        pytest.skip(f"this xfs has no reflink: {done.stderr.decode().strip()}")
    with open(os.path.join(t.name, "own.csv"), "wb") as f:
        f.write(b"ours")  # a file of the tree's own: the fast way
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", WipeUnreliableWarning)
        t.cleanup()
    assert not os.path.exists(t.name)
    assert [w for w in caught if "reflink" in str(w.message)], [str(w.message) for w in caught]
    with open(original, "rb") as f:
        assert f.read() == payload(m, 64 << 10)
