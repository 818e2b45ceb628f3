"""_owner: the sweeper's ownership tag, on filesystems with and without xattrs."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from hardtemp._owner import OWNER_XATTR, OwnerTag, current_tag, mark, read_mark


def test_tag_round_trips_and_garbage_decodes_to_none() -> None:
    tag = OwnerTag.decode(current_tag())
    assert tag is not None
    assert tag.pid == os.getpid()
    assert OwnerTag.decode(tag.encode()) is not None
    assert repr(tag) == (
        f"OwnerTag(boot_id={tag.boot_id!r}, pid={os.getpid()}, start_time={tag.start_time!r})"
    )
    for raw in (b"", b"a b", b"boot notanumber 1", b"a b c d", b"\xff\xfe 1 2"):
        assert OwnerTag.decode(raw) is None


def test_mark_where_xattrs_are_unsupported_is_false_and_the_file_still_works(
    tmp_path: Path,
) -> None:
    # ramfs has no user xattrs (EOPNOTSUPP): a real filesystem without them.
    if os.geteuid() != 0:
        pytest.skip("needs root to mount ramfs")
    mnt = tmp_path / "ram"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "ramfs", "ramfs", str(mnt)], check=True)
    try:
        fd = os.open(mnt / "f", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            assert mark(fd) is False
            assert read_mark(fd) is None
            assert os.write(fd, b"still usable") == 12
        finally:
            os.close(fd)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_mark_on_a_descriptor_that_is_not_open_raises(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY)
    os.close(fd)
    with pytest.raises(OSError) as info:
        mark(fd)
    assert info.value.errno == errno.EBADF


def test_mark_then_read_mark_gives_this_process(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if not mark(fd):
            pytest.skip("no user xattrs on this filesystem")
        assert os.getxattr(fd, OWNER_XATTR) == current_tag()
        tag = read_mark(fd)
    finally:
        os.close(fd)
    assert tag is not None
    assert tag.pid == os.getpid()
