"""hardtemp._plainio: truncation through our plaintext files wipes first; cuts by others warn.

The overwrite of the cut range is shown in process by a second name (a hard link made
before the cut cannot see freed blocks, so the bytes are read back from the extent
through the block-level view in tests/forensic/test_forensic_cut.py); here: the
semantics, the warnings and the policy. Other programs are real processes
(truncate(1), fallocate(1), a shell's ``>``).
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import hardtemp
from hardtemp import _plainio, _wipe, compat
from hardtemp._plainio import MAX_RANGES, PlainFileIO
from hardtemp.exceptions import PlaintextLeftWarning, WipeError, WipeUnreliableWarning


@pytest.fixture(autouse=True)
def _strict() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error", WipeUnreliableWarning)
        with hardtemp.wipe_policy("warn"):
            yield None


def _named(tmp_path: Path, **kw: Any) -> Any:
    return hardtemp.NamedTemporaryFile(dir=tmp_path, **kw)


def _cut_by_others(kind: str, path: str) -> None:
    if kind == "O_TRUNC":
        subprocess.run(["sh", "-c", ': > "$1"', "sh", path], check=True)
    elif kind == "truncate(1)":
        subprocess.run(["truncate", "-s", "100", path], check=True)
    else:
        subprocess.run(["fallocate", "-p", "-o", "4096", "-l", "8192", path], check=True)


def test_truncate_through_our_object_keeps_the_stdlib_semantics(tmp_path: Path) -> None:
    with _named(tmp_path) as f:
        f.write(b"x" * 10000)
        f.seek(3000)
        assert f.truncate() == 3000
        assert f.tell() == 3000
        assert os.fstat(f.fileno()).st_size == 3000
        assert f.truncate(5000) == 5000  # growing: a hole, nothing to overwrite
        f.seek(0)
        assert f.read() == b"x" * 3000 + bytes(2000)


def test_truncate_overwrites_the_cut_range_before_cutting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What reaches the disk is proved on a raw image (forensic); here: which range, synced.
    calls: list[tuple[int, int]] = []
    real = _plainio.overwrite_range

    def spy(fd: int, start: int, end: int) -> int:
        calls.append((start, end))
        assert os.fstat(fd).st_size == end  # still uncut
        return real(fd, start, end)

    monkeypatch.setattr(_plainio, "overwrite_range", spy)
    with _named(tmp_path) as f:
        f.write(b"x" * 10000)
        f.seek(100)
        f.truncate()
        f.truncate(50)
        f.truncate(80)  # growing: nothing cut
    assert calls == [(100, 10000), (50, 100)]


def test_overwrite_range_writes_only_the_data_of_the_range_and_syncs(tmp_path: Path) -> None:
    path = tmp_path / "f"
    with open(path, "wb") as f:
        f.write(b"a" * 4096)
        f.seek(1 << 20)
        f.write(b"b" * 4096)  # a hole of ~1 MiB in between
    fd = os.open(path, os.O_RDWR)
    try:
        done = _wipe.overwrite_range(fd, 100, (1 << 20) + 10, pattern="zeros")
        assert _wipe.overwrite_range(fd, 10, 10) == 0
    finally:
        os.close(fd)
    assert done == (4096 - 100) + 10  # the hole was skipped
    data = path.read_bytes()
    assert data[:100] == b"a" * 100
    assert data[100:4096] == bytes(3996)
    assert data[(1 << 20) : (1 << 20) + 10] == bytes(10)
    assert data[(1 << 20) + 10 :] == b"b" * (4096 - 10)


def test_truncate_of_an_append_mode_file_overwrites_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pwrite on an O_APPEND descriptor appends: the cut is overwritten through a second one.
    seen: list[bytes] = []
    real = _plainio.overwrite_range

    def spy(fd: int, start: int, end: int) -> int:
        done = real(fd, start, end)
        assert os.fstat(fd).st_size == end  # not grown by appending
        with open(f"/proc/self/fd/{fd}", "rb") as check:
            seen.append(os.pread(check.fileno(), end - start, start))
        return done

    monkeypatch.setattr(_plainio, "overwrite_range", spy)
    with _named(tmp_path, mode="a+b") as f:
        # Our own descriptor has no O_APPEND (FileIO emulates "a" on a given fd); a caller
        # may set it, e.g. to share the file with a logger.
        fcntl.fcntl(f.fileno(), fcntl.F_SETFL, fcntl.fcntl(f.fileno(), fcntl.F_GETFL) | os.O_APPEND)
        f.write(b"y" * 5000)
        f.flush()
        f.truncate(10)
        (cut,) = seen
        assert len(cut) == 4990
        assert cut.count(b"y") < 100  # random bytes now, not the data
        assert os.fstat(f.fileno()).st_size == 10
        f.seek(0)
        assert f.read() == b"y" * 10


@pytest.mark.parametrize("kind", ["O_TRUNC", "truncate(1)", "punch"])
def test_a_cut_by_another_program_warns_at_close(tmp_path: Path, kind: str) -> None:
    f = _named(tmp_path)
    f.write(os.urandom(20000))
    f.flush()
    _cut_by_others(kind, f.name)
    with pytest.warns(WipeUnreliableWarning) as caught:
        f.close()
    (w,) = caught
    text = str(w.message)
    assert text.startswith(f"{f.name}: ")
    if kind == "punch":
        assert "a hole was punched at offset 4096" in text
    else:
        assert f"from 20000 to {0 if kind == 'O_TRUNC' else 100} bytes" in text
    assert not os.path.exists(f.name)  # removed all the same


def test_a_cut_by_another_program_warns_when_closed_before_removal(tmp_path: Path) -> None:
    f = _named(tmp_path, delete_on_close=False)
    f.write(b"z" * 9000)
    f.flush()
    _cut_by_others("O_TRUNC", f.name)
    f.close()  # looked at here; reported when the name goes, at exit
    assert os.path.exists(f.name)
    with pytest.warns(WipeUnreliableWarning, match="truncated by another program"):
        f.__exit__(None, None, None)
    assert not os.path.exists(f.name)


def test_a_cut_by_another_program_is_a_wipe_error_under_the_error_policy(tmp_path: Path) -> None:
    f = _named(tmp_path)
    f.write(b"z" * 9000)
    f.flush()
    _cut_by_others("O_TRUNC", f.name)
    with hardtemp.wipe_policy("error"), pytest.raises(WipeError) as info:
        f.close()
    assert info.value.path == f.name
    assert "truncated by another program from 9000 to 0 bytes" in info.value.reason
    assert not os.path.exists(f.name)
    assert f.closed


def test_a_cut_by_another_program_warns_even_under_ignore(tmp_path: Path) -> None:
    # "ignore" is about filesystems that may not overwrite in place; data known to be
    # left behind is never silent.
    f = _named(tmp_path)
    f.write(b"z" * 9000)
    f.flush()
    _cut_by_others("O_TRUNC", f.name)
    with hardtemp.wipe_policy("ignore"), pytest.warns(PlaintextLeftWarning):
        f.close()


def test_our_own_cuts_sparse_writes_and_rewrites_never_warn(tmp_path: Path) -> None:
    with _named(tmp_path, buffering=0) as f:
        f.write(b"a" * 10000)
        f.truncate(10)
        f.seek(1 << 20)
        f.write(b"b" * 10)  # a hole we made ourselves
        f.seek(5)
        f.write(b"c" * 100)
        f.truncate(50)
        f.write(b"d")


def test_random_writes_beyond_the_range_limit_still_detect_a_shrink(tmp_path: Path) -> None:
    f = _named(tmp_path, buffering=0)
    for i in range(MAX_RANGES + 2):
        f.seek(i * 8192)
        f.write(b"r")
    assert f.file._ranges is None  # dropped: holes between our writes are not ours to judge
    _cut_by_others("O_TRUNC", f.name)
    with pytest.warns(WipeUnreliableWarning, match="truncated by another program"):
        f.close()


def test_unnamed_plaintext_files_wipe_their_cut_and_warn_for_others(tmp_path: Path) -> None:
    for make in (
        lambda: hardtemp.TemporaryFile(dir=tmp_path, encrypt=False),
        lambda: compat.TemporaryFile(dir=tmp_path),
    ):
        f = make()
        f.write(b"q" * 10000)
        f.flush()
        f.fileno()  # compat's file is encrypted until its descriptor is handed out
        raw = getattr(f.raw, "_f", f.raw)  # (then plaintext, under the switching layer)
        assert isinstance(raw, PlainFileIO)
        f.truncate(10)
        f.close()  # our own cut: no warning
        g = make()
        g.write(b"q" * 10000)
        g.flush()
        # Another program with the inherited descriptor cuts it (through /proc/self/fd).
        _cut_by_others("truncate(1)", f"/proc/{os.getpid()}/fd/{g.fileno()}")
        with pytest.warns(WipeUnreliableWarning, match="from 10000 to 100 bytes"):
            g.close()


def test_spooled_plaintext_after_rollover_wipes_its_cut(tmp_path: Path) -> None:
    with hardtemp.SpooledTemporaryFile(max_size=10, dir=tmp_path, encrypt=False) as f:
        f.write(b"s" * 5000)
        assert f._rolled
        assert isinstance(f._file.raw, PlainFileIO)
        f.truncate(3)
        assert os.fstat(f.fileno()).st_size == 3


def test_compat_named_file_wipes_its_cut(tmp_path: Path) -> None:
    with compat.NamedTemporaryFile(dir=tmp_path) as f:
        assert isinstance(f.file.raw, PlainFileIO)
        f.write(b"c" * 5000)
        f.seek(0)
        f.truncate()
        f.write(b"short")


def test_a_failed_overwrite_of_the_cut_warns_or_refuses_to_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # EIO on an existing extent cannot be caused on a healthy disk: the failure is faked
    # in hardtemp's own pwrite helper only (not os.pwrite for the whole process).
    def failing(fd: int, data: memoryview, offset: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(_wipe, "_pwrite_all", failing)
    f = _named(tmp_path, buffering=0)
    f.write(b"e" * 5000)
    with pytest.warns(WipeUnreliableWarning, match="could not be overwritten"):
        f.truncate(10)
    assert os.fstat(f.fileno()).st_size == 10  # warned, then cut as asked
    f.write(b"e" * 5000)
    with hardtemp.wipe_policy("error"), pytest.raises(WipeError, match="could not be overwritten"):
        f.truncate(10)
    assert os.fstat(f.fileno()).st_size == 10000  # refused: nothing cut (written at 5000)
    monkeypatch.undo()
    f.close()


def test_plain_file_io_works_without_seek_hole_support(tmp_path: Path) -> None:
    raw = PlainFileIO(os.open(tmp_path / "x", os.O_RDWR | os.O_CREAT, 0o600), "rb+")
    raw.write(b"abc")
    assert raw.shrink_report() is None
    raw.close()
    assert raw.shrink_report() is None  # closed: nothing to look at
    assert isinstance(raw, io.FileIO)


def test_without_seek_hole_a_punched_hole_cannot_be_seen_and_nothing_is_claimed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every filesystem here has SEEK_HOLE: an old one's EINVAL is injected, in this module's
    # own view of os only (not os.lseek for the whole process).
    class _NoSeekHole:
        def __getattr__(self, name: str) -> Any:
            return getattr(os, name)

        @staticmethod
        def lseek(fd: int, pos: int, how: int) -> int:
            if how == os.SEEK_HOLE:
                raise OSError(errno.EINVAL, "Invalid argument")
            return os.lseek(fd, pos, how)

    f = _named(tmp_path, buffering=0)
    f.write(b"w" * 20000)
    _cut_by_others("punch", f.name)
    monkeypatch.setattr(_plainio, "os", _NoSeekHole())
    assert f.file.shrink_report() is None
    monkeypatch.undo()
    with pytest.warns(PlaintextLeftWarning, match="a hole was punched"):
        f.close()


def test_empty_writes_and_cuts_after_many_ranges_keep_the_bookkeeping_right(
    tmp_path: Path,
) -> None:
    with _named(tmp_path, buffering=0) as f:
        assert f.write(b"") == 0
        for i in range(MAX_RANGES + 2):
            f.seek(i * 8192)
            f.write(b"r")
        f.truncate(8192 * 3)  # no ranges kept any more: only the size is followed
        assert os.fstat(f.fileno()).st_size == 8192 * 3


def test_a_plain_file_is_seekable_without_asking_the_kernel_and_not_once_closed(
    tmp_path: Path,
) -> None:
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    raw = PlainFileIO(fd, "rb+")
    assert raw.seekable() is True  # a regular file we created: no lseek needed
    with io.BufferedRandom(raw) as f:
        f.write(b"abc")
        f.seek(1)
        assert f.read() == b"bc"
        assert f.tell() == 3
    with pytest.raises(ValueError, match="closed file"):
        raw.seekable()


@pytest.mark.parametrize(("mode", "buffering"), [("w+b", -1), ("wb", 0), ("w+", -1), ("ab+", -1)])
def test_layers_built_over_a_new_file_know_its_offset_and_later_tells_ask_the_kernel(
    tmp_path: Path, mode: str, buffering: int
) -> None:
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    raw = PlainFileIO(fd, _iostack_raw_mode(mode))
    f = _plainio.wrap_created(raw, mode, buffering, None, None, None)
    try:
        assert f.tell() == 0
        assert raw._fresh is False  # only while the layers were built
        f.write(b"abc" if "b" in mode else "abc")
        f.flush()
        os.lseek(fd, 1, os.SEEK_SET)  # moved behind the objects' back: the kernel is asked
        assert raw.tell() == 1
    finally:
        f.close()


def test_a_failed_wrap_of_a_new_file_closes_it(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    raw = PlainFileIO(fd, "rb+")
    with pytest.raises(LookupError):
        _plainio.wrap_created(raw, "w+", -1, "no-such-encoding", None, None)
    assert raw.closed
    assert raw._fresh is False


def _iostack_raw_mode(mode: str) -> str:
    from hardtemp._iostack import raw_mode

    return raw_mode(mode)
