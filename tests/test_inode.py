"""_inode: the pinned entry acts on the inode it pinned, whatever the name becomes."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from hardtemp import _inode
from hardtemp._inode import Entry
from hardtemp.exceptions import UnsafeFileError


def _fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


def test_same_compares_device_and_inode_of_stat_results_and_identities(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"a")
    (tmp_path / "b").write_bytes(b"b")
    a, b = os.stat(tmp_path / "a"), os.stat(tmp_path / "b")
    assert _inode.same(a, os.stat(tmp_path / "a"))
    assert not _inode.same(a, b)
    assert _inode.same(a, _inode.ident(a))
    assert not _inode.same(a, _inode.ident(b))
    assert _inode.ident(a) == (a.st_dev, a.st_ino)


def test_pin_holds_the_inode_and_reopen_reaches_it_after_the_name_was_swapped(
    tmp_path: Path, dfd: int
) -> None:
    (tmp_path / "f").write_bytes(b"ours")
    with Entry.pin(dfd, "f") as entry:
        assert entry.still_named()
        os.rename(tmp_path / "f", tmp_path / "moved")
        (tmp_path / "f").write_bytes(b"theirs")
        assert not entry.still_named()
        fd = entry.reopen(os.O_RDONLY)
        try:
            assert os.read(fd, 10) == b"ours"
        finally:
            os.close(fd)
        # The name is someone else's now: it is never unlinked.
        assert entry.unlink_if_same() is False
        assert (tmp_path / "f").read_bytes() == b"theirs"


def test_pin_refuses_an_unexpected_inode_and_leaks_no_descriptor(tmp_path: Path, dfd: int) -> None:
    (tmp_path / "f").write_bytes(b"x")
    st = os.stat(tmp_path / "f")
    before = _fds()
    with pytest.raises(UnsafeFileError, match="not ours") as info:
        Entry.pin(dfd, "f", expect=(st.st_dev, st.st_ino + 1), shown="/s/f", not_ours="not ours")
    assert info.value.filename == "/s/f"
    assert _fds() == before


def test_pin_never_follows_a_symlink_and_directory_requires_one(tmp_path: Path, dfd: int) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_bytes(b"x")
    os.symlink("d", tmp_path / "link")
    with pytest.raises(OSError) as info:
        Entry.pin(dfd, "link", directory=True)
    assert info.value.errno in (errno.ELOOP, errno.ENOTDIR)
    with pytest.raises(NotADirectoryError):
        Entry.pin(dfd, "f", directory=True)
    with Entry.pin(dfd, "link") as entry:  # the symlink itself, pinned
        assert stat.S_ISLNK(entry.st.st_mode)
    with Entry.pin(dfd, "d", directory=True) as entry:
        assert entry.identity == _inode.ident(os.stat(tmp_path / "d"))


def test_reopen_refuses_a_descriptor_of_another_inode(tmp_path: Path, dfd: int) -> None:
    # /proc/self/fd/N always names the pinned inode: the mismatch is forced by editing
    # the remembered identity, to show the check closes and raises.
    (tmp_path / "f").write_bytes(b"x")
    before = _fds()
    with Entry.pin(dfd, "f", shown="/shown/f") as entry:
        entry.ino += 1
        with pytest.raises(UnsafeFileError, match="replaced") as info:
            entry.reopen(os.O_RDONLY)
        assert info.value.filename == "/shown/f"
    assert _fds() == before


def test_chmod_changes_the_pinned_inode_not_a_symlinks_target(tmp_path: Path, dfd: int) -> None:
    (tmp_path / "f").write_bytes(b"x")
    os.chmod(tmp_path / "f", 0o600)
    (tmp_path / "other").write_bytes(b"y")
    os.chmod(tmp_path / "other", 0o600)
    with Entry.pin(dfd, "f") as entry:
        os.unlink(tmp_path / "f")
        os.symlink("other", tmp_path / "f")
        entry.chmod(0o400)
        assert stat.S_IMODE(os.fstat(entry.fd).st_mode) == 0o400
    assert stat.S_IMODE(os.stat(tmp_path / "other").st_mode) == 0o600


def test_xattrs_are_set_read_and_removed_through_the_pinned_inode(tmp_path: Path, dfd: int) -> None:
    (tmp_path / "f").write_bytes(b"x")
    with Entry.pin(dfd, "f") as entry:
        try:
            entry.setxattr("user.hardtemp.test", b"v")
        except OSError as exc:
            if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
                pytest.skip(f"no user xattrs on this filesystem: {exc}")
            raise
        assert entry.getxattr("user.hardtemp.test") == b"v"
        assert os.getxattr(tmp_path / "f", "user.hardtemp.test") == b"v"
        entry.removexattr("user.hardtemp.test")
        with pytest.raises(OSError) as info:
            entry.getxattr("user.hardtemp.test")
        assert info.value.errno == errno.ENODATA


def test_unlink_if_same_removes_only_our_name(tmp_path: Path, dfd: int) -> None:
    (tmp_path / "f").write_bytes(b"x")
    entry = Entry.pin(dfd, "f")
    try:
        assert entry.unlink_if_same() is True
        assert os.listdir(tmp_path) == []
        assert entry.still_named() is False
        assert entry.unlink_if_same() is False  # gone: nothing to do
    finally:
        entry.close()
        entry.close()  # idempotent
    assert entry.fd == -1


def test_lstat_mount_is_the_lstat_of_the_name_and_its_mount_in_one_call(tmp_path: Path) -> None:
    from hardtemp import _linux

    (tmp_path / "f").write_bytes(b"12345")
    os.symlink("f", tmp_path / "link")
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in ("f", "link"):
            got = _inode.lstat_mount(dfd, name)
            st = os.lstat(tmp_path / name)  # a symlink is the entry itself, never followed
            for field in ("st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid"):
                assert getattr(got.st, field) == getattr(st, field), field
            assert (got.st.st_size, got.st.st_blksize, got.st.st_blocks) == (
                st.st_size,
                st.st_blksize,
                st.st_blocks,
            )
            for field in ("st_atime", "st_mtime", "st_ctime"):  # whole seconds
                assert int(getattr(got.st, field)) == int(getattr(st, field)), field
            assert got.mnt_id == _linux.mount_id(dfd)
            assert got.mount_root is False
        with pytest.raises(FileNotFoundError) as info:
            _inode.lstat_mount(dfd, "missing")
        assert info.value.filename == "missing"
    finally:
        os.close(dfd)


def test_lstat_mount_without_statx_or_the_mount_root_attribute_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hardtemp import _linux

    (tmp_path / "f").write_bytes(b"x")
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        mnt, st = _linux.mount_id(dfd), os.lstat(tmp_path / "f")
        # A kernel before 5.8 (no STATX_ATTR_MOUNT_ROOT) cannot be had here: ask for an
        # attribute bit no kernel reports instead.
        monkeypatch.setattr(_linux, "STATX_ATTR_MOUNT_ROOT", 1 << 62)
        got = _inode.lstat_mount(dfd, "f")
        assert (got.mnt_id, got.mount_root, _inode.same(got.st, st)) == (mnt, None, True)
        monkeypatch.undo()
        # glibc < 2.28 (no statx symbol) cannot be caused here: the binding is removed. Every
        # id then comes from fdinfo: the old one.
        old = _linux.old_mount_id(dfd)
        monkeypatch.setattr(_linux, "_statx", None)
        got = _inode.lstat_mount(dfd, "f")
        assert (got.mnt_id, got.mount_root, got.st) == (old, None, st)
    finally:
        os.close(dfd)


def test_new_file_facts_are_the_descriptors_identity_mode_owner_and_mount_in_one_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hardtemp import _linux

    (tmp_path / "f").write_bytes(b"12345")
    os.chmod(tmp_path / "f", 0o640)
    fd = os.open(tmp_path / "f", os.O_RDWR)
    try:
        st = os.fstat(fd)
        facts = (st.st_dev, st.st_ino, st.st_mode, st.st_uid)
        assert _inode.new_file_facts(fd) == (*facts, _linux.mount_id(fd))
        assert _linux.mount_id(fd) >= 0
        with pytest.raises(OSError) as info:
            _inode.new_file_facts(-1)
        assert info.value.errno == errno.EBADF
        # glibc < 2.28 (no statx symbol) cannot be caused here: the binding is removed.
        monkeypatch.setattr(_linux, "_statx", None)
        assert _inode.new_file_facts(fd) == (*facts, -1)
    finally:
        os.close(fd)
