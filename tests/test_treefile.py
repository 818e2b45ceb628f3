"""_treefile: the fast removal of a private directory's regular files, on real filesystems.

Each test removes a real tree through ``rmtree_at`` and looks at what is left: the
data seen through a descriptor kept open (so the overwrite itself is observed), the
other names of a file, a symlink's target, a FIFO. Which way each file went is
counted by wrapping ``TreeFiles.remove`` (the removal itself is real).
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import stat
import subprocess
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from _helpers_core import make_dir, open_fds
from _helpers_crypt import child_result
from hardtemp import _linux, _remove, _treefile, _wipe
from hardtemp._fsinfo import BEST_EFFORT, VOLATILE, FsInfo
from hardtemp.exceptions import PlaintextLeftWarning

PLAIN = b"plaintext-" * 100


def _rmtree(parent: Path, name: str) -> None:
    pfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        _remove.rmtree_at(pfd, name, expect=(st.st_dev, st.st_ino), display_path=str(parent / name))
    finally:
        os.close(pfd)


@pytest.fixture
def fast_ways(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """(name, whether the fast way took it) for every file offered to the fast way."""
    real = _treefile.TreeFiles.remove
    seen: list[tuple[str, bool]] = []

    def counting(self: _treefile.TreeFiles, dir_fd: int, name: str) -> bool:
        took = real(self, dir_fd, name)
        seen.append((name, took))
        return took

    monkeypatch.setattr(_treefile.TreeFiles, "remove", counting)
    return seen


def _write(path: Path, data: bytes = PLAIN) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def test_the_files_of_a_private_tree_are_overwritten_then_unlinked_the_fast_way(
    tmp_path: Path, fast_ways: list[tuple[str, bool]]
) -> None:
    top = make_dir(tmp_path / "top", 0o700)
    sub = make_dir(top / "sub", 0o755)  # no group/other write: private too
    _write(top / "a")
    _write(sub / "b", b"")  # empty: nothing to overwrite, still removed
    _write(sub / "c", PLAIN * 10)  # several blocks: the extents are looked up
    keep = os.open(top / "a", os.O_RDONLY)  # a second descriptor sees the same data
    try:
        _rmtree(tmp_path, "top")
        after = os.pread(keep, len(PLAIN) + 10, 0)
    finally:
        os.close(keep)
    assert not top.exists()
    assert sorted(fast_ways) == [("a", True), ("b", True), ("c", True)]
    assert len(after) == len(PLAIN)  # the size is kept (no tail left past EOF)
    assert after != PLAIN
    assert PLAIN[:10] not in after


def test_a_file_with_another_link_keeps_that_names_data(
    tmp_path: Path, fast_ways: list[tuple[str, bool]]
) -> None:
    # Another name may be someone's link to data outside the tree: never overwritten.
    top = make_dir(tmp_path / "top", 0o700)
    _write(top / "linked")
    os.link(top / "linked", tmp_path / "outside-name")
    with pytest.warns(PlaintextLeftWarning, match="2 hard links"):
        _rmtree(tmp_path, "top")
    assert not top.exists()
    assert (tmp_path / "outside-name").read_bytes() == PLAIN
    assert fast_ways == [("linked", False)]  # declined: the general way decided


def test_symlinks_and_fifos_are_unlinked_never_opened(
    tmp_path: Path, fast_ways: list[tuple[str, bool]]
) -> None:
    top = make_dir(tmp_path / "top", 0o700)
    target = tmp_path / "target"
    _write(target)
    os.symlink(target, top / "link")
    os.mkfifo(top / "fifo", 0o600)  # opening it without O_NONBLOCK would hang the walk
    _rmtree(tmp_path, "top")
    assert not top.exists()
    assert target.read_bytes() == PLAIN
    assert fast_ways == []  # not listed as regular files: never offered to the fast way


def test_a_directory_others_can_write_goes_the_general_way(
    tmp_path: Path, fast_ways: list[tuple[str, bool]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Group write: someone else could swap a name between our checks, so each file is
    # pinned, re-checked and hidden by the general way.
    top = make_dir(tmp_path / "top", 0o700)
    shared = make_dir(top / "shared", 0o770)
    _write(shared / "f")
    _write(top / "g")
    general: list[str] = []
    real = _remove.remove_entry

    def spy(dir_fd: int, name: str, **kw: Any) -> Any:
        general.append(name)
        return real(dir_fd, name, **kw)

    monkeypatch.setattr(_remove, "remove_entry", spy)
    _rmtree(tmp_path, "top")
    assert not top.exists()
    assert general == ["f"]
    assert fast_ways == [("g", True)]


def test_a_read_only_file_of_ours_is_declined_and_still_overwritten(
    tmp_path: Path, fast_ways: list[tuple[str, bool]]
) -> None:
    top = make_dir(tmp_path / "top", 0o700)
    _write(top / "ro")
    os.chmod(top / "ro", 0o400)
    keep = os.open(top / "ro", os.O_RDONLY)
    try:
        if os.geteuid() == 0:
            pytest.skip("root opens a 0400 file for writing: the decline is an ordinary user's")
        _rmtree(tmp_path, "top")
        after = os.pread(keep, len(PLAIN), 0)
    finally:
        os.close(keep)
    assert fast_ways == [("ro", False)]  # EACCES: the general way makes it writable
    assert after != PLAIN


def test_the_files_of_a_tree_in_ram_are_overwritten_with_zeros(
    small_tmpfs: Callable[[int], Path], fast_ways: list[tuple[str, bool]]
) -> None:
    # RAM overwritten in place by the CPU: zeros destroy it as random bytes would, without
    # their getrandom (SECURITY.md, "The overwrite pattern"); off RAM the pool's random
    # bytes stay (the fork test below sees three different overwrites on /tmp).
    top = make_dir(small_tmpfs(1024) / "top", 0o700)
    _write(top / "one", PLAIN)  # one block: the straight line
    _write(top / "many", PLAIN * 20)  # 20,000 bytes, five blocks: the extents' way
    keep = [os.open(top / n, os.O_RDONLY) for n in ("one", "many")]
    try:
        _rmtree(top.parent, "top")
        after = [os.pread(k, len(PLAIN) * 20 + 10, 0) for k in keep]
    finally:
        for k in keep:
            os.close(k)
    assert sorted(fast_ways) == [("many", True), ("one", True)]
    assert after == [bytes(len(PLAIN)), bytes(len(PLAIN) * 20)]  # every byte, the size kept


def test_a_verdict_that_warns_is_left_to_the_general_way() -> None:
    def info(verdict: str) -> FsInfo:
        return FsInfo("x", "", "", (), verdict, ("why",), 0, 1)

    assert _treefile.TreeFiles(info(VOLATILE), 5, os.geteuid()).usable
    assert not _treefile.TreeFiles(info(BEST_EFFORT), 5, os.geteuid()).usable  # it warns per file
    assert not _treefile.TreeFiles(info(VOLATILE), -1, os.geteuid()).usable  # mount id unknown


def _in_overwrite(frame: types.FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code is _wipe.overwrite_fresh.__code__:
            return True
        frame = frame.f_back
    return False


def test_an_interrupt_during_a_fast_overwrite_still_removes_the_file(
    small_tmpfs: Callable[[int], Path], fast_ways: list[tuple[str, bool]]
) -> None:
    # A real SIGALRM, re-armed until it lands inside the overwrite, where it raises.
    mnt = small_tmpfs(200 * 1024)
    top = make_dir(mnt / "top", 0o700)
    with open(top / "big", "wb") as f:
        f.write(os.urandom(1 << 20) * 96)
    hits: list[bool] = []

    def interrupt(signum: int, frame: types.FrameType | None) -> None:
        if _in_overwrite(frame):
            hits.append(True)
            raise KeyboardInterrupt
        signal.setitimer(signal.ITIMER_REAL, 0.001)  # one-shot, re-armed: no nesting

    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.001)
        with pytest.raises(KeyboardInterrupt):
            _rmtree(mnt, "top")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert hits
    assert os.listdir(top) == []  # the name went before the interrupt propagated
    os.rmdir(top)


def test_private_dir_reads_owner_and_write_bits() -> None:
    me = os.geteuid()
    assert _treefile.private_dir(me, stat.S_IFDIR | 0o700, me)
    assert not _treefile.private_dir(me, stat.S_IFDIR | 0o1777, me)  # others may write
    assert not _treefile.private_dir(me, stat.S_IFDIR | 0o720, me)  # the group may write
    assert not _treefile.private_dir(me + 1, stat.S_IFDIR | 0o700, me)  # not ours


def _on_disk_tree(fs_root: Path, count: int) -> Path:
    top = make_dir(fs_root / "top", 0o700)
    for i in range(count):
        fd = os.open(top / f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, PLAIN)
        os.fsync(fd)  # on the disk: its overwrite must be synced (batched) before the unlink
        os.close(fd)
    return top


def test_files_on_the_disk_are_synced_in_batches_with_bounded_descriptors(
    loopfs: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = loopfs("ext4")
    top = _on_disk_tree(fs.mountpoint, 150)
    before = len(open_fds())
    peak = [0]
    syncs: list[int] = []
    real_remove, real_fdatasync = _treefile.TreeFiles.remove, os.fdatasync

    def watching(self: _treefile.TreeFiles, dir_fd: int, name: str) -> bool:
        peak[0] = max(peak[0], len(open_fds()) - before)
        return real_remove(self, dir_fd, name)

    def counting(fd: int) -> None:
        syncs.append(fd)
        real_fdatasync(fd)

    monkeypatch.setattr(_treefile.TreeFiles, "remove", watching)
    monkeypatch.setattr(_treefile.os, "fdatasync", counting)  # the one os: counted, not faked
    _rmtree(fs.mountpoint, "top")
    assert not top.exists()
    assert len(syncs) == 3  # 150 files: batches of 64, 64 and 22, one device flush each
    assert peak[0] <= _treefile._BATCH + 4  # the held files, the walk's own, the listing


def test_a_file_whose_batched_sync_fails_goes_the_general_way(
    loopfs: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = loopfs("ext4")
    top = _on_disk_tree(fs.mountpoint, 3)
    real = _treefile.sync_file_range
    general: list[str] = []
    real_entry = _remove.remove_entry

    def eio_on_wait(fd: int, flags: int) -> None:
        if flags & _linux.SYNC_FILE_RANGE_WAIT_AFTER:
            raise OSError(errno.EIO, "Input/output error")  # a disk error: cannot be made here
        real(fd, flags)

    def spy(dir_fd: int, name: str, **kw: Any) -> Any:
        general.append(name)
        return real_entry(dir_fd, name, **kw)

    monkeypatch.setattr(_treefile, "sync_file_range", eio_on_wait)
    monkeypatch.setattr(_remove, "remove_entry", spy)
    _rmtree(fs.mountpoint, "top")
    assert not top.exists()
    assert sorted(general) == ["f0", "f1", "f2"]  # each synced alone (fdatasync), removed


def test_small_files_on_tmpfs_are_overwritten_without_any_sync(
    small_tmpfs: Callable[[int], Path], fast_ways: list[tuple[str, bool]]
) -> None:
    mnt = small_tmpfs(4096)
    top = make_dir(mnt / "top", 0o700)
    _write(top / "small")
    keep = os.open(top / "small", os.O_RDONLY)
    try:
        _rmtree(mnt, "top")
        after = os.pread(keep, len(PLAIN) + 10, 0)
    finally:
        os.close(keep)
    assert fast_ways == [("small", True)]
    assert len(after) == len(PLAIN)
    assert PLAIN[:10] not in after


def test_a_short_write_of_a_small_file_on_tmpfs_goes_the_general_way(
    small_tmpfs: Callable[[int], Path],
    fast_ways: list[tuple[str, bool]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # In RAM the fast way's overwrite is one pwrite of its own (no FIEMAP, tail or sync): a
    # short one (ENOSPC mid-write, not causable on demand: the first call writes one byte
    # less) is declined before the unlink, and the general way overwrites again.
    mnt = small_tmpfs(4096)
    top = make_dir(mnt / "top", 0o700)
    _write(top / "small")
    real = os.pwrite
    calls = [0]

    def short(fd: int, data: Any, offset: int) -> int:
        calls[0] += 1
        if calls[0] == 1:
            return real(fd, bytes(data)[:-1], offset)
        return real(fd, data, offset)

    general: list[str] = []
    real_entry = _remove.remove_entry

    def spy(dir_fd: int, name: str, **kw: Any) -> Any:
        general.append(name)
        return real_entry(dir_fd, name, **kw)

    monkeypatch.setattr(_treefile.os, "pwrite", short)
    monkeypatch.setattr(_remove, "remove_entry", spy)
    keep = os.open(top / "small", os.O_RDONLY)
    try:
        _rmtree(mnt, "top")
        after = os.pread(keep, len(PLAIN), 0)
    finally:
        os.close(keep)
    assert fast_ways == [("small", False)]  # declined before the unlink...
    assert general == ["small"]  # ...and overwritten again, the general way
    assert PLAIN[-10:] not in after  # the byte the short write left is overwritten too
    assert not top.exists()


def test_without_statx_every_file_goes_the_general_way(
    tmp_path: Path, fast_ways: list[tuple[str, bool]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # glibc < 2.28 has no statx symbol: cannot be caused here, so the binding is removed.
    monkeypatch.setattr(_linux, "_statx", None)
    top = make_dir(tmp_path / "top", 0o700)
    _write(top / "f")
    _rmtree(tmp_path, "top")
    assert not top.exists()
    assert fast_ways in ([], [("f", False)])  # no mount id: no fast way at all, or declined


def test_a_small_file_that_never_reached_the_disk_is_overwritten_without_any_sync(
    loopfs: Callable[..., Any], fast_ways: list[tuple[str, bool]], monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = loopfs("ext4")
    answers: list[bool] = []
    syncs: list[int] = []
    real_look, real_fdatasync = _wipe.data_on_disk, os.fdatasync

    def looking(fd: int, f_type: int) -> bool:
        answers.append(real_look(fd, f_type))
        return answers[-1]

    def counting(fd: int) -> None:
        syncs.append(fd)
        real_fdatasync(fd)

    monkeypatch.setattr(_wipe, "data_on_disk", looking)
    monkeypatch.setattr(_treefile.os, "fdatasync", counting)  # counted, not faked
    # Another process's sync (CI's other lane unmounting its loop images) can write the file
    # back before the cleanup: then it did reach the disk, and must have been synced; a new
    # file is tried (at most 5), until one that never reached the disk shows the case.
    for _ in range(5):
        fast_ways.clear(), answers.clear(), syncs.clear()
        top = make_dir(fs.mountpoint / "top", 0o700)
        _write(top / "small")  # in the page cache only: delayed allocation, no block yet
        keep = os.open(top / "small", os.O_RDONLY)
        try:
            _rmtree(fs.mountpoint, "top")
            after = os.pread(keep, len(PLAIN) + 10, 0)
        finally:
            os.close(keep)
        if answers != [True]:
            break
        assert syncs, "written back before the cleanup, yet overwritten without a sync"
    assert fast_ways == [("small", True)]
    assert answers == [False]  # asked once, after the overwrite (the old first look is gone)
    assert syncs == []
    assert len(after) == len(PLAIN)
    assert PLAIN[:10] not in after


def test_a_small_file_on_the_disk_has_its_block_overwritten_and_its_size_restored(
    loopfs: Callable[..., Any], fast_ways: list[tuple[str, bool]]
) -> None:
    fs = loopfs("ext4")
    top = _on_disk_tree(fs.mountpoint, 1)
    (top / "full").write_bytes(b"F" * 4096)  # exactly one block: no tail to cover
    fd = os.open(top / "full", os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    keep = [os.open(top / n, os.O_RDONLY) for n in ("f0", "full")]
    try:
        _rmtree(fs.mountpoint, "top")
        sizes = [os.fstat(k).st_size for k in keep]
        after = [os.pread(k, 8192, 0) for k in keep]
    finally:
        for k in keep:
            os.close(k)
    assert sorted(fast_ways) == [("f0", True), ("full", True)]
    assert sizes == [len(PLAIN), 4096]  # the padding to the block's end cut off again
    assert PLAIN[:10] not in after[0]
    assert b"F" * 16 not in after[1]


@pytest.mark.parametrize("short_call", [1, 2])
def test_a_short_write_of_a_small_file_goes_the_general_way(
    loopfs: Callable[..., Any],
    fast_ways: list[tuple[str, bool]],
    monkeypatch: pytest.MonkeyPatch,
    short_call: int,
) -> None:
    # A short pwrite of a few hundred bytes (ENOSPC mid-write) cannot be caused on demand:
    # the call that short_call names writes one byte less.
    fs = loopfs("ext4")
    top = _on_disk_tree(fs.mountpoint, 1)  # on the disk: data, then the tail (2 writes)
    real = os.pwrite
    calls = [0]

    def short(fd: int, data: Any, offset: int) -> int:
        calls[0] += 1
        if calls[0] == short_call:
            return real(fd, bytes(data)[:-1], offset)
        return real(fd, data, offset)

    general: list[str] = []
    real_entry = _remove.remove_entry

    def spy(dir_fd: int, name: str, **kw: Any) -> Any:
        general.append(name)
        return real_entry(dir_fd, name, **kw)

    monkeypatch.setattr(_treefile.os, "pwrite", short)
    monkeypatch.setattr(_remove, "remove_entry", spy)
    keep = os.open(top / "f0", os.O_RDONLY)
    try:
        _rmtree(fs.mountpoint, "top")
        after = os.pread(keep, len(PLAIN), 0)
    finally:
        os.close(keep)
    assert fast_ways == [("f0", False)]  # declined before the unlink...
    assert general == ["f0"]  # ...and overwritten again, the general way
    assert PLAIN[:10] not in after
    assert not top.exists()


# --- The random pool outlives one removal (issue 13) -------------------------------------


def _overwritten(tmp_path: Path, name: str) -> bytes:
    """The bytes a real removal of a fresh tree writes over its one file of PLAIN."""
    top = make_dir(tmp_path / name, 0o700)
    _write(top / "f")
    keep = os.open(top / "f", os.O_RDONLY)  # a second descriptor sees the overwrite
    try:
        _rmtree(tmp_path, name)
        return os.pread(keep, len(PLAIN), 0)
    finally:
        os.close(keep)


_libc_fork = ctypes.CDLL(None, use_errno=True).fork  # runs no Python fork hook


@pytest.mark.parametrize("fork", [os.fork, _libc_fork], ids=["os.fork", "raw fork"])
def test_a_forked_child_never_writes_the_random_bytes_its_parent_will(
    tmp_path: Path, fork: Callable[[], int], fast_ways: list[tuple[str, bool]]
) -> None:
    # The pool a removal leaves for the next one is the process's: a child (forked with or
    # without Python's hooks) that continued it would overwrite its files with the very
    # bytes the parent's next removal writes.
    first = _overwritten(tmp_path, "first")
    theirs = child_result(lambda: _overwritten(tmp_path, "child"), fork)
    mine = _overwritten(tmp_path, "next")
    assert isinstance(theirs, bytes), theirs
    assert fast_ways == [("f", True), ("f", True)]  # the pool's bytes (the child's not seen)
    assert len({first, theirs, mine}) == 3
    assert PLAIN[:10] not in theirs + mine


def test_the_next_removal_continues_the_pool_and_two_at_once_never_share_one(
    tmp_path: Path,
) -> None:
    info = FsInfo("tmpfs", "", "", (), VOLATILE, (), 0x01021994, 1)
    _overwritten(tmp_path, "first")  # leaves its pool for the next removal
    one = _treefile.TreeFiles(info, 1, os.geteuid())  # takes it...
    two = _treefile.TreeFiles(info, 1, os.geteuid())  # ...a removal meanwhile gets another
    assert one._pool is not two._pool
    one.close()
    assert _treefile.TreeFiles(info, 1, os.geteuid())._pool is one._pool  # handed on, not refilled


def _remove_append_only(base: Path, *, synced: bool) -> list[BaseException]:
    """Remove ``base/top`` whose ``sub`` is append-only (``chattr +a``): a real EPERM at the
    unlink only (the file can be opened and overwritten, never unlinked); its errors."""
    top = make_dir(base / "top", 0o700)
    sub = make_dir(top / "sub", 0o700)
    fd = os.open(sub / "f", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, PLAIN)
        if synced:
            os.fsync(fd)  # its data on the disk: the fast way holds it for the batch's sync
    finally:
        os.close(fd)
    proc = subprocess.run(["chattr", "+a", str(sub)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"chattr +a is not possible here: {proc.stderr.strip()}")
    errors: list[BaseException] = []
    try:
        pfd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
        try:
            st = os.stat("top", dir_fd=pfd, follow_symlinks=False)
            _remove.rmtree_at(
                pfd,
                "top",
                expect=(st.st_dev, st.st_ino),
                display_path=str(top),
                onerror=errors.append,
            )
        finally:
            os.close(pfd)
        assert (sub / "f").exists()
        assert (sub / "f").read_bytes() != PLAIN  # overwritten all the same
    finally:
        subprocess.run(["chattr", "-a", str(sub)], check=True)
    return errors


def _assert_f_then_sub_reported(errors: list[BaseException]) -> None:
    # The file's own failure (reported by the general way), then sub's rmdir (an append-only
    # directory cannot be removed either): a fast way that took f for removed loses the first.
    assert [type(e) for e in errors] == [PermissionError, PermissionError]
    assert [os.path.basename(str(e.filename)) for e in errors if isinstance(e, OSError)] == [
        "f",
        "sub",
    ]


def test_an_unlink_the_fast_way_cannot_make_is_reported_and_the_file_kept(
    small_tmpfs: Callable[[int], Path], fast_ways: list[tuple[str, bool]]
) -> None:
    # On tmpfs the fast way overwrites and unlinks inline (nothing is ever held for a sync):
    # its unlink's EPERM must make it decline, never count the file as removed. (On a disk
    # filesystem the same file may be written back before the removal and then be held:
    # the next test.)
    errors = _remove_append_only(small_tmpfs(1024), synced=False)
    assert fast_ways == [("f", False)]  # declined once, never taken for removed
    _assert_f_then_sub_reported(errors)


def test_a_held_file_whose_unlink_fails_goes_the_general_way_and_is_reported(
    loopfs: Callable[..., Any],
    fast_ways: list[tuple[str, bool]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A file whose data is on the disk is taken (held, name and all) for the batch's sync;
    # the unlink after it fails with EPERM: the flush must hand it back to the general way.
    real_flush = _treefile.TreeFiles.flush
    handed_back: list[str] = []

    def recording(self: _treefile.TreeFiles) -> list[str]:
        failed = real_flush(self)
        handed_back.extend(failed)
        return failed

    monkeypatch.setattr(_treefile.TreeFiles, "flush", recording)
    errors = _remove_append_only(loopfs("ext4").mountpoint, synced=True)
    assert fast_ways == [("f", True)]  # held for the sync...
    assert handed_back == ["f"]  # ...then given back, not counted as removed
    _assert_f_then_sub_reported(errors)


def test_on_btrfs_nocow_files_go_the_fast_way_and_copy_on_write_ones_the_general_way(
    loopfs: Callable[..., Any], fast_ways: list[tuple[str, bool]]
) -> None:
    # btrfs's own verdict is "not in place" (copy-on-write); a NOCOW file with unshared
    # extents is in place, so it takes the fast way; a COW file among them goes the general
    # way, which warns that its overwrite cannot reach the old blocks.
    from hardtemp._fsinfo import set_nocow

    fs = loopfs("btrfs")
    top = make_dir(fs.mountpoint / "top", 0o700)
    for name, nocow in (("nocow", True), ("cow", False)):
        fd = os.open(top / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            if nocow:
                assert set_nocow(fd)
            os.write(fd, PLAIN)
        finally:
            os.close(fd)
    with pytest.warns(UserWarning, match="copy-on-write"):
        _rmtree(fs.mountpoint, "top")
    assert not top.exists()
    assert sorted(fast_ways) == [("cow", False), ("nocow", True)]


def test_on_xfs_a_file_sharing_extents_with_a_reflink_copy_goes_the_general_way(
    loopfs: Callable[..., Any], fast_ways: list[tuple[str, bool]]
) -> None:
    # The raw-image side is in tests/forensic/test_forensic_xfs.py.
    fs = loopfs("xfs")
    top = make_dir(fs.mountpoint / "top", 0o700)
    _write(top / "own")
    _write(fs.mountpoint / "original")
    subprocess.run(["sync"], check=True)
    done = subprocess.run(
        ["cp", "--reflink=always", str(fs.mountpoint / "original"), str(top / "copy")],
        capture_output=True,
    )
    if done.returncode:
        pytest.skip(f"this xfs has no reflink: {done.stderr.decode().strip()}")
    with pytest.warns(UserWarning, match="reflink"):
        _rmtree(fs.mountpoint, "top")
    assert sorted(fast_ways) == [("copy", False), ("own", True)]
    assert (fs.mountpoint / "original").read_bytes() == PLAIN
