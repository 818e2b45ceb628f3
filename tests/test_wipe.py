"""_wipe and _policy: overwrite in place, remove safely, report honestly, obey the policy.

The overwrite itself is observed through a read-only descriptor opened before the
wipe: it keeps the inode alive after the unlink, so the bytes the wipe left behind
can be read back. Filesystems are real loop mounts (ext4: "in place"; btrfs:
"not in place", to exercise the policy).
"""

from __future__ import annotations

import ctypes
import errno
import os
import pickle
import signal
import stat
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from _helpers_core import NOBODY, marker
from _helpers_crypt import child_result
from _helpers_euid import as_euid
from hardtemp import _fsinfo, _linux, _owner, _remove, _wipe
from hardtemp._codes import FsReason, WipeReason
from hardtemp._policy import get_wipe_policy, set_wipe_policy, wipe_policy
from hardtemp._remove import remove_entry, wipe
from hardtemp._wipe import WipeReport, overwrite_fd
from hardtemp.exceptions import (
    PlaintextLeftWarning,
    UnsafeFileError,
    WipeError,
    WipeUnreliableWarning,
)


@pytest.fixture(autouse=True)
def _strict_warnings() -> Iterator[None]:
    # An unexpected WipeUnreliableWarning must fail the test, not scroll by.
    _fsinfo.clear_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("error", WipeUnreliableWarning)
        yield


@pytest.fixture
def ext4(loopfs: Callable[..., Any]) -> Path:
    """A directory on a real ext4 (data=ordered): overwrites land in place."""
    fs = loopfs("ext4")
    d = fs.mountpoint / "work"
    d.mkdir()
    return Path(d)


@pytest.fixture
def btrfs(loopfs: Callable[..., Any]) -> Path:
    """A directory on a real btrfs: copy-on-write, overwrites are not in place."""
    fs = loopfs("btrfs")
    d = fs.mountpoint / "work"
    d.mkdir()
    return Path(d)


@pytest.fixture
def dir_fd(ext4: Path) -> Iterator[int]:
    fd = os.open(ext4, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


class _ScopedOs:
    """``os`` as one hardtemp module sees it, with some functions replaced: patching
    ``module.os.pwrite`` would replace ``os.pwrite`` for the whole process (pytest,
    other threads), this replaces it for that module's code only."""

    def __init__(self, **overrides: Any) -> None:
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def scoped_os(monkeypatch: pytest.MonkeyPatch, module: Any, **overrides: Any) -> None:
    """Replace ``os.<name>`` for ``module``'s code only (its global ``os``)."""
    monkeypatch.setattr(module, "os", _ScopedOs(**overrides))


def make_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def held(path: Path) -> int:
    """A read-only descriptor that outlives the name: reads what the wipe left behind."""
    return os.open(path, os.O_RDONLY)


def read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    return os.pread(fd, size, 0)


# --- wipe() -------------------------------------------------------------------------------


def test_wipe_overwrites_every_byte_then_removes_the_file(ext4: Path) -> None:
    m = marker()
    data = m * 300
    p = ext4 / "secret"
    make_file(p, data)
    keep = held(p)
    try:
        report = wipe(p)
        left = read_all(keep)
    finally:
        os.close(keep)
    assert not p.exists()
    assert len(left) == len(data)  # size restored after the tail block was covered
    assert m not in left
    assert left.count(0) < len(left) // 2  # random pattern, not zeros
    block = os.statvfs(ext4).f_bsize
    assert report == WipeReport(
        path=str(p),
        bytes_overwritten=-(-len(data) // block) * block,
        passes=1,
        pattern="random",
        filesystem="ext4",
        verdict="in place",
        reasons=report.reasons,
        hard_links=1,
        duration=report.duration,
        removed=True,
    )
    assert report.duration >= 0
    assert FsReason.DATA_ORDERED in report.codes


def test_wipe_zeros_pattern_leaves_only_zeros(ext4: Path) -> None:
    p = ext4 / "z"
    make_file(p, marker() * 10)
    keep = held(p)
    try:
        report = wipe(p, pattern="zeros")
        assert read_all(keep) == bytes(os.fstat(keep).st_size)
    finally:
        os.close(keep)
    assert report.pattern == "zeros"


def test_wipe_counts_every_pass(ext4: Path) -> None:
    p = ext4 / "p"
    make_file(p, b"x" * 10000)
    report = wipe(p, passes=3)
    block = os.statvfs(ext4).f_bsize
    assert report.passes == 3
    assert report.bytes_overwritten == 3 * (-(-10000 // block) * block)


def test_wipe_of_an_empty_file_writes_nothing_and_removes_it(ext4: Path) -> None:
    p = ext4 / "empty"
    make_file(p, b"")
    report = wipe(p)
    assert report.bytes_overwritten == 0
    assert report.passes == 1
    assert not p.exists()


def test_wipe_refuses_a_symlink_and_leaves_its_target(ext4: Path) -> None:
    target = ext4 / "target"
    m = marker()
    make_file(target, m)
    link = ext4 / "link"
    link.symlink_to(target)
    with pytest.raises(UnsafeFileError, match="never follows symlinks"):
        wipe(link)
    assert target.read_bytes() == m
    assert link.is_symlink()


def test_wipe_refuses_a_path_whose_parent_is_a_symlink(ext4: Path) -> None:
    real = ext4 / "real"
    real.mkdir()
    m = marker()
    make_file(real / "f", m)
    (ext4 / "alias").symlink_to(real)
    with pytest.raises(UnsafeFileError, match="symbolic link"):
        wipe(ext4 / "alias" / "f")
    assert (real / "f").read_bytes() == m


def test_wipe_of_a_directory_raises_is_a_directory(ext4: Path) -> None:
    (ext4 / "d").mkdir()
    with pytest.raises(IsADirectoryError):
        wipe(ext4 / "d")
    with pytest.raises(IsADirectoryError):
        wipe(str(ext4 / "d") + "/")
    assert (ext4 / "d").is_dir()


def test_wipe_of_a_missing_file_raises_file_not_found(ext4: Path) -> None:
    with pytest.raises(FileNotFoundError):
        wipe(ext4 / "missing")


def test_wipe_refuses_a_fifo_without_blocking(ext4: Path) -> None:
    os.mkfifo(ext4 / "fifo")
    with pytest.raises(UnsafeFileError, match="not a regular file"):
        wipe(ext4 / "fifo")
    assert stat.S_ISFIFO(os.lstat(ext4 / "fifo").st_mode)


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"passes": 0}, ValueError),
        ({"passes": True}, TypeError),
        ({"passes": "2"}, TypeError),
        ({"pattern": "ones"}, ValueError),
    ],
)
def test_wipe_bad_options_raise_and_remove_nothing(
    ext4: Path, kwargs: dict[str, Any], exc: type[Exception]
) -> None:
    p = ext4 / "f"
    make_file(p, b"data")
    with pytest.raises(exc):
        wipe(p, **kwargs)
    assert p.read_bytes() == b"data"


def test_wipe_hides_the_name_before_unlinking(ext4: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unlinked: list[str] = []
    real_unlink = os.unlink

    def spy(path: Any, *, dir_fd: int | None = None) -> None:
        unlinked.append(os.fspath(path))
        real_unlink(path, dir_fd=dir_fd)

    scoped_os(monkeypatch, _remove, unlink=spy)
    p = ext4 / "patient-1234.csv"
    make_file(p, b"x")
    wipe(p)
    assert len(unlinked) == 1
    assert unlinked[0] != "patient-1234.csv"
    assert unlinked[0].startswith(".ht-")
    assert os.listdir(ext4) == []


# --- overwrite_fd() -----------------------------------------------------------------------


def test_overwrite_fd_keeps_size_and_offset_and_does_not_unlink(ext4: Path) -> None:
    p = ext4 / "f"
    m = marker()
    make_file(p, m * 100)
    fd = os.open(p, os.O_RDWR)
    try:
        os.lseek(fd, 123, os.SEEK_SET)
        report = overwrite_fd(fd, path=str(p))
        assert os.lseek(fd, 0, os.SEEK_CUR) == 123
        assert os.fstat(fd).st_size == len(m) * 100
        assert m not in read_all(fd)
    finally:
        os.close(fd)
    assert p.exists()
    assert report.removed is False
    assert report.verdict == "in place"


def test_overwrite_fd_refuses_o_append_and_changes_nothing(ext4: Path) -> None:
    # With O_APPEND, pwrite appends on Linux: the "overwrite" would leave every old byte.
    p = ext4 / "f"
    m = marker()
    make_file(p, m)
    fd = os.open(p, os.O_RDWR | os.O_APPEND)
    try:
        with pytest.raises(ValueError, match="O_APPEND"):
            overwrite_fd(fd)
    finally:
        os.close(fd)
    assert p.read_bytes() == m


def test_overwrite_fd_refuses_a_read_only_descriptor(ext4: Path) -> None:
    p = ext4 / "f"
    make_file(p, b"abc")
    fd = os.open(p, os.O_RDONLY)
    try:
        with pytest.raises(ValueError, match="not open for writing"):
            overwrite_fd(fd)
    finally:
        os.close(fd)


def test_overwrite_fd_refuses_non_regular_files(ext4: Path) -> None:
    r, w = os.pipe()
    dfd = os.open(ext4, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(UnsafeFileError, match="not a regular file"):
            overwrite_fd(w)
        with pytest.raises(UnsafeFileError, match="not a regular file"):
            overwrite_fd(dfd)
    finally:
        for fd in (r, w, dfd):
            os.close(fd)


def test_overwrite_fd_skips_holes_so_a_sparse_file_does_not_grow(ext4: Path) -> None:
    p = ext4 / "sparse"
    m = marker()
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, m, 0)
        os.pwrite(fd, m, 32 << 20)
        os.fsync(fd)
        before = os.fstat(fd)
        assert before.st_blocks * 512 < before.st_size // 100  # really sparse
        report = overwrite_fd(fd)
        after = os.fstat(fd)
        data = read_all(fd)
    finally:
        os.close(fd)
    assert after.st_blocks == before.st_blocks  # writing the holes would have allocated 32 MiB
    assert after.st_size == before.st_size
    assert report.bytes_overwritten <= 2 * 65536
    assert m not in data


def test_overwrite_fd_retries_short_writes_and_eintr(
    ext4: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Short writes and EINTR cannot be provoked on demand on a local disk: injected.
    real = os.pwrite
    calls = {"n": 0}

    def flaky(fd: int, data: Any, offset: int) -> int:
        calls["n"] += 1
        if calls["n"] % 3 == 1:
            raise InterruptedError(errno.EINTR, "interrupted")
        return real(fd, bytes(data)[: max(1, len(data) // 3)], offset)

    p = ext4 / "f"
    m = marker()
    make_file(p, m * 1000)
    fd = os.open(p, os.O_RDWR)
    try:
        scoped_os(monkeypatch, _wipe, pwrite=flaky)
        overwrite_fd(fd)
        monkeypatch.undo()
        assert m[:20] not in read_all(fd)
    finally:
        os.close(fd)
    assert calls["n"] > 6


def test_overwrite_fd_eio_raises_wipe_error_with_the_partial_report(
    ext4: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A failing disk cannot be made on demand here: EIO is injected after the first write.
    real = os.pwrite
    calls = {"n": 0}

    def failing(fd: int, data: Any, offset: int) -> int:
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.EIO, "Input/output error")
        return real(fd, data, offset)

    p = ext4 / "f"
    make_file(p, b"x" * (3 << 20))
    fd = os.open(p, os.O_RDWR)
    try:
        scoped_os(monkeypatch, _wipe, pwrite=failing)
        with pytest.raises(WipeError) as info:
            overwrite_fd(fd, path="f")
    finally:
        os.close(fd)
    report = info.value.report
    assert isinstance(report, WipeReport)
    assert report.bytes_overwritten == 1 << 20
    assert report.passes == 0
    assert report.verdict == "best effort"
    assert report.codes[0] == WipeReason.OVERWRITE_FAILED
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.EIO


# --- remove_entry() -----------------------------------------------------------------------


def test_remove_entry_overwrites_through_our_fd_and_leaves_it_open(ext4: Path, dir_fd: int) -> None:
    m = marker()
    fd = os.open(ext4 / "ours", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, m * 50)
        st = os.fstat(fd)
        report = remove_entry(dir_fd, "ours", fd=fd, expect=(st.st_dev, st.st_ino))
        assert m not in read_all(fd)  # fd still usable: not closed by remove_entry
    finally:
        os.close(fd)
    assert report.removed
    assert report.verdict == "in place"
    assert os.listdir(ext4) == []


def test_remove_entry_with_an_append_descriptor_still_overwrites(ext4: Path, dir_fd: int) -> None:
    m = marker()
    fd = os.open(ext4 / "log", os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, m * 10)
        report = remove_entry(dir_fd, "log", fd=fd)
        assert m not in read_all(fd)
        assert os.fstat(fd).st_size == len(m) * 10
    finally:
        os.close(fd)
    assert report.bytes_overwritten > 0


def test_remove_entry_refuses_when_the_name_is_not_the_expected_file(
    ext4: Path, dir_fd: int
) -> None:
    make_file(ext4 / "a", b"A")
    make_file(ext4 / "b", b"B")
    st_b = os.stat(ext4 / "b")
    with pytest.raises(UnsafeFileError, match="another file than expected"):
        remove_entry(dir_fd, "a", expect=(st_b.st_dev, st_b.st_ino))
    assert (ext4 / "a").read_bytes() == b"A"


def test_remove_entry_refuses_when_the_name_no_longer_refers_to_our_fd(
    ext4: Path, dir_fd: int
) -> None:
    fd = os.open(ext4 / "ours", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        make_file(ext4 / "theirs", b"THEIRS")
        os.rename(ext4 / "theirs", ext4 / "ours")  # the name now means another file
        with pytest.raises(UnsafeFileError, match="no longer refers to our file"):
            remove_entry(dir_fd, "ours", fd=fd)
    finally:
        os.close(fd)
    assert (ext4 / "ours").read_bytes() == b"THEIRS"


@pytest.mark.parametrize("own_file", [True, False])
def test_remove_entry_unlinks_a_symlink_and_leaves_its_target(
    ext4: Path, dir_fd: int, tmp_path: Path, own_file: bool
) -> None:
    outside = tmp_path / "outside"
    m = marker()
    outside.write_bytes(m)
    (ext4 / "link").symlink_to(outside)
    report = remove_entry(dir_fd, "link", own_file=own_file)
    assert outside.read_bytes() == m
    assert not (ext4 / "link").is_symlink()
    assert report.verdict == "skipped"
    assert report.bytes_overwritten == 0
    assert report.codes[0] == WipeReason.NOT_REGULAR


def test_remove_entry_of_a_foreign_file_with_two_links_only_unlinks(
    ext4: Path, dir_fd: int
) -> None:
    outside = ext4.parent / "outside"
    m = marker()
    make_file(outside, m)
    os.link(outside, ext4 / "link")
    with pytest.warns(PlaintextLeftWarning, match="2 hard links") as caught:
        report = remove_entry(dir_fd, "link", own_file=False)
    assert len(caught) == 1  # not overwritten is never silent
    assert outside.read_bytes() == m
    assert not (ext4 / "link").exists()
    assert report.verdict == "skipped"
    assert report.data_left
    assert report.hard_links == 2
    assert report.codes[0] == WipeReason.HARD_LINKS_SKIPPED


def test_remove_entry_of_our_file_with_two_links_overwrites_and_warns(
    ext4: Path, dir_fd: int
) -> None:
    other = ext4.parent / "planted-link"
    m = marker()
    make_file(ext4 / "ours", m * 10)
    os.link(ext4 / "ours", other)
    linked = r"had 2 hard links \(another.*no name keeps its data"
    with pytest.warns(WipeUnreliableWarning, match=linked):
        report = remove_entry(dir_fd, "ours", own_file=True)
    assert m not in other.read_bytes()  # their copy is destroyed too
    assert report.hard_links == 2
    assert report.verdict == "in place"
    assert not (ext4 / "ours").exists()


def test_link_warning_turned_into_an_error_still_leaves_no_file_behind(
    ext4: Path, dir_fd: int
) -> None:
    # Warnings are errors in this module: the warning must come after the removal.
    other = ext4.parent / "planted-link"
    m = marker()
    make_file(ext4 / "ours", m * 10)
    os.link(ext4 / "ours", other)
    with pytest.raises(WipeUnreliableWarning):
        remove_entry(dir_fd, "ours")
    assert not (ext4 / "ours").exists()
    assert m not in other.read_bytes()


def test_a_running_program_that_cannot_be_opened_for_writing_is_still_removed(
    ext4: Path, dir_fd: int
) -> None:
    # Real fault: a running executable cannot be opened for writing (ETXTBSY).
    exe = ext4 / "tool"
    exe.write_bytes(Path("/bin/sleep").read_bytes())
    os.chmod(exe, 0o700)
    proc = subprocess.Popen([str(exe), "30"])
    try:
        time.sleep(0.2)
        with pytest.raises(WipeError) as info:
            remove_entry(dir_fd, "tool", own_file=False)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
    assert not exe.exists()
    report = info.value.report
    assert report.removed
    assert report.bytes_overwritten == 0
    assert report.codes[0] == WipeReason.OPEN_FAILED
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.ETXTBSY


def test_remove_entry_unlinks_a_fifo_without_blocking(ext4: Path, dir_fd: int) -> None:
    os.mkfifo(ext4 / "fifo")
    report = remove_entry(dir_fd, "fifo")
    assert report.verdict == "skipped"
    assert os.listdir(ext4) == []


def test_remove_entry_of_a_directory_raises_and_keeps_it(ext4: Path, dir_fd: int) -> None:
    (ext4 / "sub").mkdir()
    with pytest.raises(IsADirectoryError):
        remove_entry(dir_fd, "sub")
    assert (ext4 / "sub").is_dir()


@pytest.mark.parametrize("name", ["", ".", "..", "a/b"])
def test_remove_entry_rejects_names_that_are_not_one_entry(dir_fd: int, name: str) -> None:
    with pytest.raises(ValueError, match="not a single directory entry"):
        remove_entry(dir_fd, name)


def test_remove_entry_without_overwrite_only_unlinks(ext4: Path, dir_fd: int) -> None:
    make_file(ext4 / "enc", b"ciphertext")
    keep = held(ext4 / "enc")
    try:
        report = remove_entry(dir_fd, "enc", overwrite=False)
        assert read_all(keep) == b"ciphertext"
    finally:
        os.close(keep)
    assert report.verdict == "skipped"
    assert report.removed


def test_read_only_file_of_ours_is_still_overwritten(
    other_user: Callable[..., Any], shared_dir: Path
) -> None:
    # As root, permissions never stop us: the check runs as an ordinary user.
    home = shared_dir / "nobody"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)
    m = marker()

    def as_nobody(directory: str, m: bytes) -> tuple[bool, bool, int, str]:
        results = []
        for name, mode in (("ro", 0o400), ("none", 0o000)):
            path = os.path.join(directory, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, m * 20)
            os.close(fd)
            os.chmod(path, 0o400)
            keep = os.open(path, os.O_RDONLY)
            os.chmod(path, mode)
            with wipe_policy("ignore"):  # whatever filesystem /tmp is on
                report = wipe(path)
            left = os.pread(keep, 1 << 20, 0)
            os.close(keep)
            results.append((m in left, os.path.exists(path), report.bytes_overwritten))
        return (
            any(r[0] for r in results),
            any(r[1] for r in results),
            min(r[2] for r in results),
            "ok",
        )

    survived, exists, written, _ = other_user(as_nobody, str(home), m)
    assert not survived
    assert not exists
    assert written > 0


# --- faults: the file is removed anyway ------------------------------------------------------


def test_enospc_during_the_overwrite_removes_the_file_and_raises_wipe_error(
    loopfs: Callable[..., Any],
) -> None:
    # Real ENOSPC: btrfs is copy-on-write, so overwriting needs free space; fill it up first.
    fs = loopfs("btrfs", options="nodiscard")
    victim = fs.mountpoint / "victim"
    make_file(victim, b"v" * (24 << 20))
    filler = os.open(fs.mountpoint / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    chunk = b"f" * (1 << 20)
    try:
        with pytest.raises(OSError, match="No space left"):  # noqa: PT012
            while True:
                os.write(filler, chunk)
        for small in (65536, 4096):
            try:
                while True:
                    os.write(filler, chunk[:small])
            except OSError:
                pass
        os.fsync(filler)
    except OSError:
        pass
    finally:
        os.close(filler)
    subprocess.run(["sync"], check=True)
    dfd = os.open(fs.mountpoint, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(WipeError) as info:
            remove_entry(dfd, "victim", on_unreliable="ignore")
    finally:
        os.close(dfd)
    assert not victim.exists()
    report = info.value.report
    assert report.removed is True
    assert report.passes == 0
    assert report.bytes_overwritten < 24 << 20
    assert report.codes[0] == WipeReason.OVERWRITE_FAILED
    assert "the file was removed" in info.value.reason
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.ENOSPC


def test_keyboard_interrupt_during_the_overwrite_still_removes_the_file(
    small_tmpfs: Callable[[int], Path],
) -> None:
    # A real signal: SIGALRM's handler raises KeyboardInterrupt in the middle of many passes.
    mnt = small_tmpfs(80 * 1024)
    p = mnt / "big"
    make_file(p, b"k" * (64 << 20))
    dfd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    start = time.monotonic()
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(KeyboardInterrupt):
            remove_entry(dfd, "big", passes=1000, on_unreliable="ignore")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        os.close(dfd)
    assert time.monotonic() - start < 30  # interrupted long before 1000 passes of 64 MiB
    assert os.listdir(mnt) == []


# --- policy ---------------------------------------------------------------------------------


def test_policy_default_is_warn_and_bad_values_raise() -> None:
    assert get_wipe_policy() == "warn"
    with pytest.raises(ValueError, match="must be one of"):
        set_wipe_policy("eror")
    with pytest.raises(TypeError):
        set_wipe_policy(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError), wipe_policy("loud"):
        pass
    assert get_wipe_policy() == "warn"


def test_policy_context_manager_restores_the_previous_policy() -> None:
    with wipe_policy("error"):
        assert get_wipe_policy() == "error"
        with wipe_policy("ignore"):
            assert get_wipe_policy() == "ignore"
        assert get_wipe_policy() == "error"
    assert get_wipe_policy() == "warn"
    set_wipe_policy("ignore")
    try:
        assert get_wipe_policy() == "ignore"
    finally:
        set_wipe_policy("warn")


@pytest.mark.parametrize(("value", "expected"), [("error", "error"), (" Ignore ", "ignore")])
def test_policy_is_read_from_the_environment_at_import(value: str, expected: str) -> None:
    env = {**os.environ, "HARDTEMP_WIPE_POLICY": value, "PYTHONPATH": _src()}
    out = subprocess.run(
        [sys.executable, "-c", "import hardtemp._policy as p; print(p.get_wipe_policy())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == expected


def test_a_misspelt_policy_in_the_environment_is_the_strictest_and_said_loudly() -> None:
    # A typo must never silently weaken the policy: "error" applies, a warning says why, and
    # the hardtemp command and the pytest plugin refuse to run (exit 2, see test_cli.py).
    env = {**os.environ, "HARDTEMP_WIPE_POLICY": "warning", "PYTHONPATH": _src()}
    code = (
        "import warnings, hardtemp._policy as p\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    print(p.get_wipe_policy(), p.get_wipe_policy())\n"
        "print(len(w), w[0].category.__name__, w[0].message)\n"
        "print(p.environment_error())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    msg = (
        "environment variable HARDTEMP_WIPE_POLICY='warning' is invalid: allowed values are "
        "warn, error, ignore (or unset for warn)"
    )
    assert out.stdout.splitlines() == [
        "error error",
        f"1 HardtempWarning {msg}; using the strictest policy, error",
        msg,
    ]


def _src() -> str:
    return str(Path(_wipe.__file__).resolve().parent.parent)


def test_warn_policy_warns_on_btrfs_and_recommends_encryption(btrfs: Path) -> None:
    p = btrfs / "f"
    make_file(p, b"x" * 8192)
    with pytest.warns(WipeUnreliableWarning, match="copy-on-write") as rec:
        report = wipe(p)
    assert "Encrypt sensitive temporary data" in str(rec[0].message)
    assert rec[0].filename == __file__  # points at the caller
    assert report.verdict == "not in place"
    assert report.filesystem == "btrfs"
    assert not p.exists()


def test_error_policy_raises_after_removing_the_file(btrfs: Path) -> None:
    p = btrfs / "f"
    make_file(p, b"x" * 8192)
    with wipe_policy("error"), pytest.raises(WipeError, match="copy-on-write") as info:
        wipe(p)
    assert not p.exists()
    assert info.value.report.removed
    assert info.value.report.bytes_overwritten == 8192


def test_error_policy_in_overwrite_fd_raises_after_the_overwrite(btrfs: Path) -> None:
    m = marker()
    p = btrfs / "f"
    make_file(p, m * 100)
    fd = os.open(p, os.O_RDWR)
    try:
        with pytest.raises(WipeError) as info:
            overwrite_fd(fd, on_unreliable="error")
        assert m not in read_all(fd)  # the overwrite was done before raising
    finally:
        os.close(fd)
    assert info.value.report.verdict == "not in place"


def test_ignore_policy_is_silent_but_the_report_tells_the_truth(btrfs: Path) -> None:
    p = btrfs / "f"
    make_file(p, b"x" * 8192)
    with wipe_policy("ignore"):
        report = wipe(p)  # a warning would fail: warnings are errors in this module
    assert report.verdict == "not in place"


def test_per_call_policy_overrides_the_context(btrfs: Path, dir_fd: int) -> None:
    p = btrfs / "f"
    make_file(p, b"x" * 8192)
    bfd = os.open(btrfs, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with wipe_policy("error"):
            report = remove_entry(bfd, "f", on_unreliable="ignore")
    finally:
        os.close(bfd)
    assert report.verdict == "not in place"
    with pytest.raises(ValueError, match="on_unreliable"):
        remove_entry(dir_fd, "x", on_unreliable="loud")


def test_wipe_error_with_its_report_survives_pickle(btrfs: Path) -> None:
    p = btrfs / "f"
    make_file(p, b"x")
    with pytest.raises(WipeError) as info, wipe_policy("error"):
        wipe(p)
    again = pickle.loads(pickle.dumps(info.value))  # noqa: S301 - our own object
    assert again.report == info.value.report
    assert again.path == str(p)


def test_remove_entry_with_a_read_only_descriptor_reopens_the_same_inode(
    ext4: Path, dir_fd: int
) -> None:
    m = marker()
    make_file(ext4 / "ours", m * 10)
    fd = os.open(ext4 / "ours", os.O_RDONLY)
    try:
        report = remove_entry(dir_fd, "ours", fd=fd)
        assert m not in read_all(fd)
    finally:
        os.close(fd)
    assert report.bytes_overwritten > 0
    assert not (ext4 / "ours").exists()


def test_read_only_file_with_our_read_only_descriptor_is_overwritten_as_a_user(
    other_user: Callable[..., Any], shared_dir: Path
) -> None:
    home = shared_dir / "nobody"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)

    def as_nobody(directory: str, m: bytes) -> tuple[bool, bool, int]:
        path = os.path.join(directory, "ro")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, m * 20)
        os.close(fd)
        os.chmod(path, 0o400)
        rfd = os.open(path, os.O_RDONLY)
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        with wipe_policy("ignore"):
            report = remove_entry(dfd, "ro", fd=rfd)
        os.close(dfd)
        left = os.pread(rfd, 1 << 20, 0)
        os.close(rfd)
        return m in left, os.path.exists(path), report.bytes_overwritten

    survived, exists, written = other_user(as_nobody, str(home), marker())
    assert not survived
    assert not exists
    assert written > 0


# --- extents, short writes and other faults ---------------------------------------------------


def test_overwrite_fd_of_a_file_that_is_all_hole_writes_nothing_and_allocates_nothing(
    ext4: Path,
) -> None:
    p = ext4 / "hole"
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.ftruncate(fd, 8 << 20)
        before = os.fstat(fd)
        report = overwrite_fd(fd)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    assert report.bytes_overwritten == 0
    assert report.passes == 1
    assert (after.st_size, after.st_blocks) == (before.st_size, before.st_blocks) == (8 << 20, 0)


def _tail_block(fd: int) -> int:
    """The block the overwrite rounds the last extent up to."""
    return max(512, min(os.fstat(fd).st_blksize or 4096, _wipe._MAX_TAIL_BLOCK))


def _seek_data_fails(monkeypatch: pytest.MonkeyPatch, err: int) -> None:
    real = os.lseek

    def lseek(fd: int, pos: int, how: int) -> int:
        if how in (os.SEEK_DATA, os.SEEK_HOLE):
            raise OSError(err, os.strerror(err))
        return real(fd, pos, how)

    scoped_os(monkeypatch, _wipe, lseek=lseek)


def test_without_seek_data_support_the_whole_file_is_overwritten(
    ext4: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every local filesystem here supports SEEK_DATA: an old one's EINVAL is injected.
    p = ext4 / "f"
    m = marker()
    make_file(p, m * 100)
    size = len(m) * 100
    fd = os.open(p, os.O_RDWR)
    try:
        block = _tail_block(fd)
        _seek_data_fails(monkeypatch, errno.EINVAL)
        report = overwrite_fd(fd)
        monkeypatch.undo()
        assert m not in read_all(fd)
        assert os.fstat(fd).st_size == size
    finally:
        os.close(fd)
    assert size % block
    assert report.bytes_overwritten == size + block - size % block  # the whole last block too


def test_a_seek_data_error_other_than_unsupported_fails_the_wipe(
    ext4: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = ext4 / "f"
    m = marker() * 100  # more than a page: a smaller file's hole map is never read
    assert len(m) > _wipe._SMALL_FILE
    make_file(p, m)
    fd = os.open(p, os.O_RDWR)
    try:
        _seek_data_fails(monkeypatch, errno.EIO)
        with pytest.raises(WipeError) as info:
            overwrite_fd(fd)
        monkeypatch.undo()
        assert read_all(fd) == m  # nothing was written: and the report says so
    finally:
        os.close(fd)
    assert info.value.report.bytes_overwritten == 0
    assert info.value.report.codes[0] == WipeReason.OVERWRITE_FAILED


def test_a_file_of_at_most_a_page_is_overwritten_whole_without_its_hole_map(
    ext4: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real page-sized file with a hole after its data (size 4096, data in the first
    # 1,000 bytes): all of it is overwritten, the offset is untouched, no lseek is made
    # (a SEEK_DATA/SEEK_HOLE failure would fail the wipe: it is never asked).
    p = ext4 / "f"
    m = marker() * 20
    make_file(p, m)
    os.truncate(p, _wipe._SMALL_FILE)
    fd = os.open(p, os.O_RDWR)
    seeks: list[int] = []
    real = os.lseek

    def lseek(fd: int, pos: int, how: int) -> int:
        seeks.append(how)
        if how in (os.SEEK_DATA, os.SEEK_HOLE):
            raise OSError(errno.EIO, "injected: must not be asked")
        return real(fd, pos, how)

    try:
        os.lseek(fd, 123, os.SEEK_SET)
        scoped_os(monkeypatch, _wipe, lseek=lseek)
        report = overwrite_fd(fd)
        monkeypatch.undo()
        assert seeks == []
        assert os.lseek(fd, 0, os.SEEK_CUR) == 123
        data = read_all(fd)
        assert m not in data
        assert len(data) == _wipe._SMALL_FILE
    finally:
        os.close(fd)
    assert report.bytes_overwritten == _wipe._SMALL_FILE


def test_a_pwrite_that_writes_nothing_fails_instead_of_looping(
    ext4: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pwrite returning 0 cannot be provoked on a local disk: injected.
    p = ext4 / "f"
    make_file(p, b"x" * 100)
    fd = os.open(p, os.O_RDWR)
    scoped_os(monkeypatch, _wipe, pwrite=lambda fd, data, offset: 0)
    try:
        with pytest.raises(WipeError) as info:
            overwrite_fd(fd)
    finally:
        os.close(fd)
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.EIO
    assert info.value.report.bytes_overwritten == 0


def test_a_failure_to_restore_the_size_is_reported_as_a_failed_wipe(
    ext4: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The overwrite covers the last block to its end, then truncates back; that truncate
    # failing (EIO: injected) must not pass for a clean wipe.
    p = ext4 / "f"
    make_file(p, b"x" * 100)
    fd = os.open(p, os.O_RDWR)

    def ftruncate(fd: int, size: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    scoped_os(monkeypatch, _wipe, ftruncate=ftruncate)
    try:
        block = _tail_block(fd)
        with pytest.raises(WipeError) as info:
            overwrite_fd(fd)
        grown = os.fstat(fd).st_size
    finally:
        os.close(fd)
    assert grown == block > 100  # the truth: the file kept the block-sized length
    assert info.value.report.bytes_overwritten == block
    assert info.value.report.verdict == "best effort"
    assert info.value.report.codes[0] == WipeReason.OVERWRITE_FAILED
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.EIO


def test_an_unidentified_filesystem_makes_the_verdict_best_effort(
    ext4: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unknown(fd: int, st: Any = None, **kw: Any) -> Any:
        raise OSError(errno.ENOSYS, "fstatfs not supported")  # cannot happen on Linux: injected

    monkeypatch.setattr(_wipe, "file_info_for_fd", unknown)
    p = ext4 / "f"
    m = marker()
    make_file(p, m)
    fd = os.open(p, os.O_RDWR)
    try:
        with pytest.warns(WipeUnreliableWarning, match="could not be identified"):
            report = overwrite_fd(fd)
        assert m not in read_all(fd)
    finally:
        os.close(fd)
    assert report.verdict == "best effort"
    assert report.codes[0] == WipeReason.FS_UNIDENTIFIED


def test_an_unsynced_directory_is_said_in_the_report(
    ext4: Path, dir_fd: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, "Input/output error")  # a failing disk: injected
        real(fd)

    scoped_os(monkeypatch, _remove, fsync=fsync)
    make_file(ext4 / "f", b"x")
    report = remove_entry(dir_fd, "f")
    assert not (ext4 / "f").exists()
    assert WipeReason.DIR_SYNC_FAILED in report.codes


# --- names and paths --------------------------------------------------------------------------


def test_remove_entry_name_must_be_a_str(ext4: Path, dir_fd: int) -> None:
    make_file(ext4 / "f", b"x")
    with pytest.raises(TypeError, match="must be a str"):
        remove_entry(dir_fd, b"f")  # type: ignore[arg-type]
    assert (ext4 / "f").read_bytes() == b"x"


def test_wipe_rejects_bytes_nul_and_non_file_paths(ext4: Path) -> None:
    make_file(ext4 / "f", b"x")
    with pytest.raises(TypeError):
        wipe(os.fsencode(ext4 / "f"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NUL"):
        wipe(str(ext4 / "f") + "\0")
    with pytest.raises(ValueError, match="does not name a file"):
        wipe(str(ext4 / "missing") + "/")
    with pytest.raises(FileNotFoundError):
        wipe(ext4 / "no-such-dir" / "f")
    assert (ext4 / "f").read_bytes() == b"x"


def test_without_renameat2_the_name_is_still_hidden_before_the_unlink(
    ext4: Path, dir_fd: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # glibc < 2.28 has no renameat2: the plain-rename fallback (a random target name).
    monkeypatch.setattr(_linux, "_renameat2", None)
    unlinked: list[str] = []
    real_unlink = os.unlink

    def spy(path: Any, *, dir_fd: int | None = None) -> None:
        unlinked.append(os.fspath(path))
        real_unlink(path, dir_fd=dir_fd)

    scoped_os(monkeypatch, _remove, unlink=spy)
    make_file(ext4 / "secret-name", b"x")
    remove_entry(dir_fd, "secret-name")
    assert len(unlinked) == 1
    assert unlinked[0].startswith(".ht-")
    assert os.listdir(ext4) == []


def test_a_name_that_cannot_be_hidden_is_unlinked_as_is_and_reported(
    ext4: Path, dir_fd: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_rename(dir_fd: int, old: str, new: str) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")  # e.g. an LSM veto: injected

    monkeypatch.setattr(_remove, "_rename_noreplace", no_rename)
    make_file(ext4 / "f", b"x")
    report = remove_entry(dir_fd, "f")
    assert os.listdir(ext4) == []
    assert WipeReason.HIDE_FAILED in report.codes


# --- swaps during the removal (attacks, timed by wrapping one step) ----------------------------


def test_a_file_swapped_for_a_symlink_before_the_open_is_refused_and_kept(
    ext4: Path, dir_fd: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "outside"
    m = marker()
    outside.write_bytes(m)
    make_file(ext4 / "f", b"ours")
    real = _remove._open_target

    def swap_then_open(dir_fd: int, name: str, *args: Any) -> Any:
        os.unlink(ext4 / name)
        os.symlink(outside, ext4 / name)
        return real(dir_fd, name, *args)

    monkeypatch.setattr(_remove, "_open_target", swap_then_open)
    with pytest.raises(UnsafeFileError, match="replaced by a symlink"):
        remove_entry(dir_fd, "f")
    assert (ext4 / "f").is_symlink()
    assert outside.read_bytes() == m


def test_a_file_swapped_in_after_the_overwrite_is_not_removed(
    ext4: Path, dir_fd: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_file(ext4 / "f", b"ours")
    make_file(ext4 / "theirs", b"THEIRS")
    real = _remove._overwrite

    def overwrite_then_swap(*args: Any) -> None:
        real(*args)
        os.rename(ext4 / "theirs", ext4 / "f")

    monkeypatch.setattr(_remove, "_overwrite", overwrite_then_swap)
    with pytest.raises(UnsafeFileError, match="another file"):
        remove_entry(dir_fd, "f")
    assert (ext4 / "f").read_bytes() == b"THEIRS"


def test_a_file_swapped_in_just_before_the_rename_is_put_back(
    ext4: Path, dir_fd: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_file(ext4 / "f", b"ours")
    make_file(ext4 / "theirs", b"THEIRS")
    real = _remove._rename_noreplace
    calls: list[tuple[str, str]] = []

    def swap_then_rename(dir_fd: int, old: str, new: str) -> None:
        if not calls:
            os.rename(ext4 / "theirs", ext4 / "f")
        calls.append((old, new))
        real(dir_fd, old, new)

    monkeypatch.setattr(_remove, "_rename_noreplace", swap_then_rename)
    with pytest.raises(UnsafeFileError, match="replaced during removal"):
        remove_entry(dir_fd, "f")
    assert len(calls) == 2  # hidden, then put back
    assert os.listdir(ext4) == ["f"]
    assert (ext4 / "f").read_bytes() == b"THEIRS"


# --- permissions, in this process as an ordinary user ----------------------------------------


@pytest.fixture
def nobody_home(shared_dir: Path) -> Path:
    home = shared_dir / "nobody"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)
    return home


def test_another_users_file_in_our_directory_is_unlinked_never_overwritten(
    nobody_home: Path,
) -> None:
    m = marker()
    theirs = nobody_home / "theirs"
    make_file(theirs, m, mode=0o644)  # root's, in nobody's directory
    keep = held(theirs)
    try:
        with as_euid(NOBODY), wipe_policy("ignore"):
            dfd = os.open(nobody_home, os.O_RDONLY | os.O_DIRECTORY)
            try:
                # Not overwritten: a warning even under "ignore" (that is about filesystems).
                with pytest.warns(PlaintextLeftWarning, match="not writable and not ours"):
                    report = remove_entry(dfd, "theirs")
            finally:
                os.close(dfd)
        assert read_all(keep) == m
        assert stat.S_IMODE(os.fstat(keep).st_mode) == 0o644  # never chmod-ed
    finally:
        os.close(keep)
    assert not theirs.exists()
    assert report.verdict == "skipped"
    assert report.bytes_overwritten == 0
    assert report.codes[0] == WipeReason.NOT_WRITABLE


def test_wipe_of_another_users_file_raises_and_leaves_it_where_it_is(nobody_home: Path) -> None:
    m = marker()
    theirs = nobody_home / "theirs"
    make_file(theirs, m, mode=0o644)  # root's, in nobody's directory: removable, not writable
    with as_euid(NOBODY), wipe_policy("ignore"), pytest.raises(WipeError) as info:
        wipe(theirs)
    assert theirs.read_bytes() == m  # not overwritten, so not removed (as shred -u refuses)
    report = info.value.report
    assert report.data_left
    assert not report.removed
    assert report.bytes_overwritten == 0
    assert info.value.reason.endswith("its data is still on the disk; not removed")


def test_wipe_remove_unwiped_removes_the_name_but_still_raises(nobody_home: Path) -> None:
    m = marker()
    theirs = nobody_home / "theirs"
    make_file(theirs, m, mode=0o644)
    keep = held(theirs)
    try:
        with as_euid(NOBODY), pytest.raises(WipeError, match="removed as asked") as info:
            wipe(theirs, remove_unwiped=True)
        assert not theirs.exists()
        assert info.value.report.removed
        assert info.value.report.data_left
        assert read_all(keep) == m
    finally:
        os.close(keep)


def test_remove_entry_of_an_unwritable_file_is_a_wipe_error_under_the_error_policy(
    nobody_home: Path,
) -> None:
    theirs = nobody_home / "theirs"
    make_file(theirs, b"data", mode=0o644)
    with as_euid(NOBODY):
        dfd = os.open(nobody_home, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with wipe_policy("error"), pytest.raises(WipeError, match="not writable"):
                remove_entry(dfd, "theirs")
        finally:
            os.close(dfd)
    assert not theirs.exists()  # a tree's cleanup still removes it, then says so


def test_another_users_file_with_our_read_only_descriptor_is_not_overwritten(
    nobody_home: Path,
) -> None:
    m = marker()
    theirs = nobody_home / "theirs"
    make_file(theirs, m, mode=0o644)
    keep = held(theirs)
    try:
        with as_euid(NOBODY), wipe_policy("ignore"):
            dfd = os.open(nobody_home, os.O_RDONLY | os.O_DIRECTORY)
            rfd = os.open(theirs, os.O_RDONLY)
            try:
                with pytest.warns(PlaintextLeftWarning, match="not writable and not ours"):
                    report = remove_entry(dfd, "theirs", fd=rfd)
            finally:
                os.close(rfd)
                os.close(dfd)
        assert read_all(keep) == m
    finally:
        os.close(keep)
    assert not theirs.exists()
    assert report.verdict == "skipped"
    assert report.codes[0] == WipeReason.NOT_WRITABLE


@pytest.mark.parametrize("mode", [0o400, 0o000])
def test_our_own_read_only_file_is_made_writable_and_overwritten(
    nobody_home: Path, mode: int
) -> None:
    m = marker()
    with as_euid(NOBODY), wipe_policy("ignore"):
        p = nobody_home / "ro"
        make_file(p, m * 20)
        keep = held(p)
        os.chmod(p, mode)
        try:
            report = wipe(p)
            left = read_all(keep)
        finally:
            os.close(keep)
    assert m not in left
    assert not p.exists()
    assert report.bytes_overwritten >= len(m) * 20


def test_random_pool_draws_small_fills_first_and_never_hands_out_a_byte_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fills: list[tuple[str, int]] = []  # (getrandom or keystream, size) of every fill
    real_urandom, real_pattern = os.urandom, _wipe._Pattern

    def counting(n: int) -> bytes:
        fills.append(("getrandom", n))
        return real_urandom(n)

    def keystream(pattern: str, largest: int) -> Any:
        fills.append(("keystream", largest))
        with monkeypatch.context() as m:
            m.setattr(_wipe.os, "urandom", real_urandom)  # its key and nonce: not a fill
            return real_pattern(pattern, largest)

    monkeypatch.setattr(_wipe.os, "urandom", counting)  # counted, the real getrandom
    monkeypatch.setattr(_wipe, "_Pattern", keystream)  # counted, the real AES-CTR
    pool = _wipe.RandomPool()
    taken = [bytes(pool.take(1000)) for _ in range(200)]  # 200,000 bytes in all
    big = bytes(pool.take(pool.SIZE))  # larger than what is left: a fill of its own
    # 4 KiB first (a tree of four small files draws 4 KiB, not 64), doubling up to 64 KiB;
    # above 8 KiB a fresh keystream (cheaper than getrandom there).
    assert fills[:5] == [
        ("getrandom", 4096),
        ("getrandom", 8192),
        ("keystream", 16384),
        ("keystream", 32768),
        ("keystream", 65536),
    ]
    assert set(fills[5:]) == {("keystream", pool.SIZE)}
    sizes = [n for _, n in fills]
    assert sum(sizes[:-1]) >= 200_000 > sum(sizes[:-2])
    chunks = {t[i : i + 100] for t in [*taken, big] for i in range(0, len(t), 100)}
    assert len(chunks) == 200 * 10 + pool.SIZE // 100 + 1  # random 100-byte chunks: all differ


def test_small_overwrites_draw_fresh_bytes_from_a_getrandom_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fills: list[int] = []
    real_urandom = os.urandom

    def counting(n: int) -> bytes:
        fills.append(n)
        return real_urandom(n)

    monkeypatch.setattr(_wipe.os, "urandom", counting)  # counted, the real getrandom
    _wipe._fresh_pool_after_fork()  # an empty pool, as in a new process
    taken = [bytes(_wipe._Pattern("random", 1000).take(1000)) for _ in range(50)]
    # One getrandom per 4-8 files, never a keystream (no cryptography for a plain file).
    assert fills[:2] == [4096, 8192]
    assert set(fills[2:]) == {8192}
    assert len(fills) <= 8
    chunks = {t[i : i + 100] for t in taken for i in range(0, 1000, 100)}
    assert len(chunks) == 500  # no byte handed out twice


def test_a_forked_child_never_overwrites_with_the_bytes_its_parent_uses() -> None:
    _wipe._Pattern("random", 1000).take(1000)  # the pool holds bytes at the fork
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.write(write_end, bytes(_wipe._Pattern("random", 1000).take(1000)))
        finally:
            os._exit(0)
    os.close(write_end)
    mine = bytes(_wipe._Pattern("random", 1000).take(1000))
    theirs = b""
    while chunk := os.read(read_end, 4096):
        theirs += chunk
    os.close(read_end)
    os.waitpid(pid, 0)
    assert len(theirs) == 1000
    assert theirs != mine


def test_a_child_forked_without_pythons_hooks_never_overwrites_with_its_parents_bytes() -> None:
    # libc fork() through ctypes (as a C extension would) runs no os.register_at_fork hook:
    # only the wipe-on-fork pid token can tell the child that the pool is its parent's.
    _wipe._Pattern("random", 1000).take(1000)  # the pool holds unused bytes at the fork
    raw_fork = ctypes.CDLL(None, use_errno=True).fork
    theirs = child_result(lambda: bytes(_wipe._Pattern("random", 1000).take(1000)), raw_fork)
    mine = bytes(_wipe._Pattern("random", 1000).take(1000))
    assert isinstance(theirs, bytes), theirs
    assert len(theirs) == 1000
    assert theirs != mine


def test_a_pool_left_by_another_process_is_replaced_before_any_byte_is_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What the raw-forked child above finds (its token differs), in this process: the
    # pool it inherited is dropped, never drawn from.
    _wipe._Pattern("random", 1000).take(1000)
    inherited = _wipe._small_pool
    monkeypatch.setattr(_wipe, "_small_token", -1)  # the token of the process forked from
    _wipe._Pattern("random", 1000).take(1000)
    assert _wipe._small_pool is not inherited
    assert _wipe._small_token == _owner.pid()


def test_a_removal_report_is_the_object_the_dataclass_would_build(tmp_path: Path) -> None:
    import dataclasses

    target = tmp_path / "f"
    target.write_bytes(b"x" * 100)
    report = wipe(target)
    fields = {f.name: getattr(report, f.name) for f in dataclasses.fields(WipeReport)}
    assert set(vars(report)) == set(fields)  # every field, nothing else
    assert report == WipeReport(**fields)
    assert pickle.loads(pickle.dumps(report)) == report  # noqa: S301 - our own object
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.passes = 2  # type: ignore[misc]


# --- the straight line of the common small file (overwrite_small, remove_own_small) ---------


def _small_file(d: Path, name: str, data: bytes, *, sync: bool = False) -> int:
    """A read-write descriptor of a new file ``d/name`` holding ``data`` (fsynced if asked)."""
    fd = os.open(d / name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, data)
    if sync:
        os.fsync(fd)
    return fd


def test_the_straight_line_overwrites_a_small_file_in_ram_with_zeros(
    small_tmpfs: Callable[[int], Path],
) -> None:
    # RAM overwritten in place by the CPU: zeros destroy it as random bytes would, without
    # their getrandom (SECURITY.md, "The overwrite pattern").
    d = small_tmpfs(1024)
    m = marker()
    fd = _small_file(d, "f", m)
    try:
        info = _wipe.overwrite_small(fd, os.fstat(fd))
        assert info is not None
        assert info.verdict == _wipe.VOLATILE
        after = os.pread(fd, len(m) + 1, 0)
    finally:
        os.close(fd)
    assert len(after) == len(m)  # the size is unchanged
    assert m not in after
    assert after == bytes(len(m))


def test_the_straight_line_overwrites_an_unsynced_small_file_on_ext4_without_a_sync(
    ext4: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = marker()
    fd = _small_file(ext4, "f", m)  # closed before writeback: delayed allocation only
    synced: list[int] = []
    scoped_os(monkeypatch, _wipe, fdatasync=synced.append)
    try:
        info = _wipe.overwrite_small(fd, os.fstat(fd))
        after = os.pread(fd, len(m), 0)
    finally:
        os.close(fd)
    assert info is not None
    assert info.verdict == _wipe.IN_PLACE
    assert m not in after
    assert after != bytes(len(m))  # off RAM, random bytes (a controller may drop zeros)
    assert synced == []


@pytest.mark.parametrize(
    "case", ["append", "read-only", "larger than a page", "synced to the disk", "closed"]
)
def test_the_straight_line_leaves_every_other_file_to_the_general_way(
    ext4: Path, case: str
) -> None:
    m = marker()
    size_pad = b"x" * 5000 if case == "larger than a page" else b""
    fd = _small_file(ext4, "f", m + size_pad, sync=case == "synced to the disk")
    st = os.fstat(fd)
    use = fd
    if case in ("append", "read-only"):
        flags = os.O_WRONLY | os.O_APPEND if case == "append" else os.O_RDONLY
        use = os.open(ext4 / "f", flags)
    elif case == "closed":
        use = os.open(ext4, os.O_RDONLY)
        os.close(use)  # a descriptor number nobody holds: EBADF
    try:
        assert _wipe.overwrite_small(use, st) is None
        after = os.pread(fd, st.st_size + 1, 0)
    finally:
        if use not in (fd,) and case != "closed":
            os.close(use)
        os.close(fd)
    if case != "synced to the disk":  # there the page cache already holds the overwrite
        assert after == m + size_pad  # nothing written: the general way does it all
    else:
        assert len(after) == st.st_size  # the general way rounds the tail and syncs


def test_the_straight_line_leaves_a_copy_on_write_file_to_the_general_way(btrfs: Path) -> None:
    m = marker()
    fd = _small_file(btrfs, "f", m)
    try:
        assert _wipe.overwrite_small(fd, os.fstat(fd)) is None  # the policy must see it
        assert os.pread(fd, len(m), 0) == m
    finally:
        os.close(fd)


def test_the_straight_removal_keeps_a_file_with_another_link(
    small_tmpfs: Callable[[int], Path],
) -> None:
    d = small_tmpfs(1024)
    m = marker()
    fd = _small_file(d, "f", m)
    os.link(d / "f", d / "other")
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        st = os.stat("f", dir_fd=dfd, follow_symlinks=False)
        assert not _remove.remove_own_small(dfd, "f", fd, st, -1)
    finally:
        os.close(dfd)
        os.close(fd)
    assert (d / "f").read_bytes() == m  # remove_entry overwrites it and warns
    assert (d / "other").read_bytes() == m


def test_the_straight_removal_unlinks_in_ram_and_on_ext4_without_a_hiding_rename(
    small_tmpfs: Callable[[int], Path], ext4: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renames: list[tuple[str, str]] = []
    real = _remove._rename_noreplace

    def recording(dir_fd: int, old: str, new: str) -> None:
        renames.append((old, new))
        real(dir_fd, old, new)

    monkeypatch.setattr(_remove, "_rename_noreplace", recording)
    for d in (small_tmpfs(1024), ext4):
        m = marker()
        fd = _small_file(d, "f", m)
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            st = os.stat("f", dir_fd=dfd, follow_symlinks=False)
            assert _remove.remove_own_small(dfd, "f", fd, st, -1)
            assert m not in os.pread(fd, len(m), 0)  # overwritten through our descriptor
        finally:
            os.close(dfd)
            os.close(fd)
        assert not (d / "f").exists()
        assert os.listdir(d) == []
    # tmpfs (a name only in the dentry cache) and ext4 (its unlink wipes the entry; a
    # rename hid nothing more: the forensic names suite): unlinked as is.
    assert renames == []


def test_an_interrupted_straight_removal_still_removes_the_name_and_reraises(
    small_tmpfs: Callable[[int], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A signal handler raising inside a 1,000-byte pwrite cannot be timed for real: the
    # handler's exception is raised by a stand-in for pwrite (a fault, not the defence).
    d = small_tmpfs(1024)
    fd = _small_file(d, "f", marker())

    def interrupted(*args: Any) -> int:
        raise KeyboardInterrupt

    scoped_os(monkeypatch, _wipe, pwrite=interrupted)
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        st = os.stat("f", dir_fd=dfd, follow_symlinks=False)
        with pytest.raises(KeyboardInterrupt):
            _remove.remove_own_small(dfd, "f", fd, st, -1)
    finally:
        os.close(dfd)
        os.close(fd)
    assert os.listdir(d) == []  # the name never stays behind


def test_a_short_overwrite_is_left_to_the_general_way(
    small_tmpfs: Callable[[int], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pwrite that writes less than asked and no error cannot be caused on a local
    # filesystem: a stand-in for pwrite reports one byte short.
    d = small_tmpfs(1024)
    fd = _small_file(d, "f", marker())
    scoped_os(monkeypatch, _wipe, pwrite=lambda f, data, offset: len(data) - 1)
    try:
        assert _wipe.overwrite_small(fd, os.fstat(fd)) is None
    finally:
        os.close(fd)


def test_the_straight_removal_leaves_a_synced_file_and_its_name_to_remove_entry(ext4: Path) -> None:
    m = marker()
    fd = _small_file(ext4, "f", m, sync=True)  # a block on the disk: tail and fdatasync
    dfd = os.open(ext4, os.O_RDONLY | os.O_DIRECTORY)
    try:
        st = os.stat("f", dir_fd=dfd, follow_symlinks=False)
        assert not _remove.remove_own_small(dfd, "f", fd, st, -1)
        assert (ext4 / "f").exists()  # nothing removed: remove_entry does it all
        report = _remove.remove_entry(dfd, "f", fd=fd)
    finally:
        os.close(dfd)
        os.close(fd)
    assert report.removed
    assert report.passes == 1
    assert not (ext4 / "f").exists()


def test_the_small_random_pattern_comes_from_the_getrandom_pool_never_a_keystream() -> None:
    # A small file synced before its close gets a 4 KiB tail block of random bytes: from the
    # pool, which never imports cryptography (tests/test_imports.py checks the import).
    assert _wipe._SMALL_RANDOM <= _wipe.RandomPool.GETRANDOM_MAX
    assert _wipe._Pattern("random", _wipe._SMALL_RANDOM)._small
