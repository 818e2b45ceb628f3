"""Forensic proof for every kind of plaintext temp file the library removes.

Each case writes a unique marker through the public API, makes sure it reached
the disk (fsync, then the marker is found in the raw image while mounted: the
precondition that lets the test fail), closes / cleans up through the API,
unmounts and searches the raw image. The standard library doing the same is the
control: there the marker survives.
"""

from __future__ import annotations

import gc
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import hardtemp
from _helpers_core import marker
from hardtemp import _dirtrust, _fsinfo
from hardtemp.exceptions import PlaintextLeftWarning, WipeError, WipeUnreliableWarning

LoopFS = Any  # tests/conftest.py's LoopFS: a mounted image with .mountpoint, .image, ...


pytestmark = pytest.mark.forensic


@pytest.fixture(autouse=True)
def _unreliable_is_an_error() -> Iterator[None]:
    # Where the test expects an in-place overwrite, any doubt must fail it.
    _fsinfo.clear_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("error", WipeUnreliableWarning)
        yield


def on_disk(fs: LoopFS, needle: bytes) -> bool:
    return needle in fs.image.read_bytes()


def release(fs: LoopFS) -> None:
    """Drop our cached directory descriptors on the mount so it can be unmounted."""
    gc.collect()
    _dirtrust.clear_cache()
    gc.collect()


def gone_from_image(fs: LoopFS, m: bytes) -> bool:
    release(fs)
    return not fs.image_contains(m)


def write_named(fs: LoopFS, m: bytes, **kw: Any) -> None:
    with hardtemp.NamedTemporaryFile(dir=fs.mountpoint, **kw) as f:
        f.write(m * 100)
        f.flush()
        os.fsync(f.fileno())
        assert on_disk(fs, m)


# --- ext4 (data=ordered): every kind of file is overwritten in place ---------------------------


@pytest.mark.parametrize("delete_on_close", [True, False])
def test_ext4_named_temporary_file_leaves_no_marker(
    loopfs: Callable[..., LoopFS], delete_on_close: bool
) -> None:
    fs = loopfs("ext4")
    m = marker()
    write_named(fs, m, delete_on_close=delete_on_close)
    assert os.listdir(fs.mountpoint) == ["lost+found"]
    assert gone_from_image(fs, m)


def test_ext4_temporary_directory_leaves_no_marker_of_files_others_wrote(
    loopfs: Callable[..., LoopFS],
) -> None:
    fs = loopfs("ext4")
    m1, m2 = marker(), marker()
    with hardtemp.TemporaryDirectory(dir=fs.mountpoint) as d:
        # Written by "another program" with plain open(), one level down too.
        os.makedirs(os.path.join(d, "sub", "deeper"))
        for path, m in (
            (os.path.join(d, "a.csv"), m1),
            (os.path.join(d, "sub", "deeper", "b"), m2),
        ):
            with open(path, "wb") as f:
                f.write(m * 300)
                f.flush()
                os.fsync(f.fileno())
        assert on_disk(fs, m1)
        assert on_disk(fs, m2)
    assert os.listdir(fs.mountpoint) == ["lost+found"]
    release(fs)
    data = (fs.unmount(), fs.image.read_bytes())[1]
    assert m1 not in data
    assert m2 not in data


def test_ext4_unencrypted_temporary_file_leaves_no_marker(loopfs: Callable[..., LoopFS]) -> None:
    fs = loopfs("ext4")
    m = marker()
    with hardtemp.TemporaryFile(dir=fs.mountpoint, encrypt=False) as f:
        f.write(m * 100)
        f.flush()
        os.fsync(f.fileno())
        assert on_disk(fs, m)
    assert gone_from_image(fs, m)


def test_ext4_unencrypted_spooled_file_leaves_no_marker(loopfs: Callable[..., LoopFS]) -> None:
    fs = loopfs("ext4")
    m = marker()
    with hardtemp.SpooledTemporaryFile(max_size=16, dir=fs.mountpoint, encrypt=False) as f:
        f.write(m * 100)  # past max_size: rolled over to a plaintext backing file
        assert f._rolled
        f.flush()
        os.fsync(f.fileno())
        assert on_disk(fs, m)
    assert gone_from_image(fs, m)


def test_ext4_control_stdlib_named_temporary_file_leaves_the_marker(
    loopfs: Callable[..., LoopFS],
) -> None:
    fs = loopfs("ext4")
    m = marker()
    with tempfile.NamedTemporaryFile(dir=fs.mountpoint) as f:
        f.write(m * 100)
        f.flush()
        os.fsync(f.fileno())
    assert not gone_from_image(fs, m), "control: the standard library leaves the plaintext"


def test_ext4_control_stdlib_temporary_directory_leaves_the_marker(
    loopfs: Callable[..., LoopFS],
) -> None:
    fs = loopfs("ext4")
    m = marker()
    with tempfile.TemporaryDirectory(dir=fs.mountpoint) as d, open(os.path.join(d, "a"), "wb") as f:
        f.write(m * 300)
        f.flush()
        os.fsync(f.fileno())
    assert not gone_from_image(fs, m), "control: the standard library leaves the plaintext"


# --- btrfs: our own new files get NOCOW, so even copy-on-write is overwritten in place -----------


def test_btrfs_named_temporary_file_is_nocow_and_leaves_no_marker(
    loopfs: Callable[..., LoopFS],
) -> None:
    # nodiscard: otherwise a discarded extent becomes a hole in the image and hides a leftover.
    fs = loopfs("btrfs", options="nodiscard")
    m = marker()
    write_named(fs, m)  # a WipeUnreliableWarning here would be an error (fixture)
    assert gone_from_image(fs, m)


def test_btrfs_temporary_directory_files_inherit_nocow_and_leave_no_marker(
    loopfs: Callable[..., LoopFS],
) -> None:
    fs = loopfs("btrfs", options="nodiscard")
    m = marker()
    with hardtemp.TemporaryDirectory(dir=fs.mountpoint) as d:
        with open(os.path.join(d, "written-by-another-program"), "wb") as f:
            f.write(m * 300)
            f.flush()
            os.fsync(f.fileno())
        fd = os.open(os.path.join(d, "written-by-another-program"), os.O_RDONLY)
        try:
            flags = _fsinfo.get_file_flags(fd)
        finally:
            os.close(fd)
        assert flags is not None
        assert flags & _fsinfo.FS_NOCOW_FL, "NOCOW not inherited from our directory"
        assert on_disk(fs, m)
    assert gone_from_image(fs, m)


def test_btrfs_control_plain_file_without_nocow_keeps_the_marker_and_warns(
    loopfs: Callable[..., LoopFS],
) -> None:
    fs = loopfs("btrfs", options="nodiscard")
    m = marker()
    path = os.path.join(fs.mountpoint, "plain")
    with open(path, "wb") as f:  # created by someone else: no NOCOW
        f.write(m * 300)
        f.flush()
        os.fsync(f.fileno())
    warnings.simplefilter("always", WipeUnreliableWarning)
    with pytest.warns(WipeUnreliableWarning, match="copy-on-write"):
        hardtemp.wipe(path)
    assert not gone_from_image(fs, m), "control: copy-on-write keeps the old extent"


# --- ext4 data=journal: the journal keeps a copy; closing says so --------------------------------


def test_ext4_data_journal_named_temporary_file_warns(loopfs: Callable[..., LoopFS]) -> None:
    fs = loopfs("ext4", options="data=journal")
    m = marker()
    warnings.simplefilter("always", WipeUnreliableWarning)
    with pytest.warns(WipeUnreliableWarning, match="data=journal"):
        write_named(fs, m)
    release(fs)


# --- data that cannot be overwritten is reported, never counted as wiped ------------------------


@pytest.mark.parametrize("policy", ["warn", "ignore", "error"])
def test_ext4_foreign_0644_file_in_a_shared_temporary_directory_is_reported(
    loopfs: Callable[..., LoopFS], policy: str
) -> None:
    # uid 65534 owns the TemporaryDirectory and shares it (chmod 1777) with another
    # account (root here), which writes a 0644 file there: uid 65534 may unlink it but not
    # write it, so its cleanup cannot overwrite it and must say so.
    from _helpers_euid import as_euid

    fs = loopfs("ext4")
    os.chmod(fs.mountpoint, 0o1777)  # so uid 65534 may remove its directory from there
    m = marker()
    d = hardtemp.TemporaryDirectory(dir=fs.mountpoint)
    os.chown(d.name, 65534, 65534)
    os.chmod(d.name, 0o1777)
    theirs = os.path.join(d.name, "their.csv")
    with open(theirs, "wb") as f:
        f.write(m * 300)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(theirs, 0o644)
    assert on_disk(fs, m)
    # The cleanup reaches everything through descriptors it already holds.
    with as_euid(65534), hardtemp.wipe_policy(policy):
        if policy == "error":
            with pytest.raises(WipeError, match=r"their\.csv: the file is not writable"):
                d.cleanup()
        else:  # "ignore" is about filesystems: data left behind is never silent
            with pytest.warns(PlaintextLeftWarning, match=r"their\.csv: the file is not writable"):
                d.cleanup()
    assert os.listdir(fs.mountpoint) == ["lost+found"]  # removed all the same
    del d
    # What the warning says is true: the data was never overwritten.
    assert not gone_from_image(fs, m)


# --- the name no longer leads to our inode at close ------------------------------------------


@pytest.mark.parametrize("delete_on_close", [True, False])
def test_ext4_named_file_unlinked_before_close_leaves_no_marker(
    loopfs: Callable[..., LoopFS], delete_on_close: bool
) -> None:
    fs = loopfs("ext4")
    m = marker()
    with hardtemp.NamedTemporaryFile(dir=fs.mountpoint, delete_on_close=delete_on_close) as f:
        f.write(m * 300)
        f.flush()
        os.fsync(f.fileno())
        assert on_disk(fs, m)
        os.unlink(f.name)  # the program we handed the name to removed it
    del f
    assert os.listdir(fs.mountpoint) == ["lost+found"]
    assert gone_from_image(fs, m)


def test_ext4_named_file_replaced_by_an_atomic_save_leaves_no_marker(
    loopfs: Callable[..., LoopFS],
) -> None:
    import subprocess

    fs = loopfs("ext4")
    m = marker()
    f = hardtemp.NamedTemporaryFile(dir=fs.mountpoint)
    f.write(b"A" + m * 300)
    f.flush()
    os.fsync(f.fileno())
    subprocess.run(["sed", "-i", "s/^A/B/", f.name], check=True)  # new inode, same marker
    subprocess.run(["sync"], check=True)
    assert on_disk(fs, m)
    with pytest.warns(hardtemp.ReplacedFileWarning):
        f.close()
    del f
    assert os.listdir(fs.mountpoint) == ["lost+found"]
    assert gone_from_image(fs, m), "the original or the replacement kept the marker"


def test_ext4_control_stdlib_named_file_unlinked_before_close_leaves_the_marker(
    loopfs: Callable[..., LoopFS],
) -> None:
    fs = loopfs("ext4")
    m = marker()
    # delete=False: Python 3.11's close() raises FileNotFoundError for a name already gone.
    with tempfile.NamedTemporaryFile(dir=fs.mountpoint, delete=False) as f:
        f.write(m * 300)
        f.flush()
        os.fsync(f.fileno())
        os.unlink(f.name)
    assert not gone_from_image(fs, m), "control: the standard library leaves the plaintext"
