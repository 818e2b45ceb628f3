"""The file objects: NamedTemporaryFile, TemporaryDirectory, TemporaryFile, SpooledTemporaryFile."""

from __future__ import annotations

import contextlib
import copy
import errno
import fcntl
import functools
import gc
import io
import json
import os
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import hardtemp
from _gates import needs_root, require_root, require_unshare
from _helpers_core import NOBODY, make_dir, nobody_dir, run_python, traced_calls
from hardtemp import _owner, _remove
from hardtemp._files import _TemporaryFileWrapper
from hardtemp._membuf import SecureBytesIO
from hardtemp._sweep import sweep
from hardtemp.exceptions import PlaintextLeftWarning, UnsafeFileError

# -- NamedTemporaryFile: Python 3.12's delete / delete_on_close on every version ---------------

# (delete, delete_on_close, scenario) -> [exists after step 1, exists after step 2]
#   "close":      f.close(); then del f
#   "with-close": inside `with`, f.close(); then leave the with block
#   "with":       leave the with block without closing; then nothing
#   "del":        del f (no close); then nothing
DELETE_TABLE = [
    (True, True, "close", [False, False]),
    (True, True, "with-close", [False, False]),
    (True, True, "with", [False, False]),
    (True, True, "del", [False, False]),
    (True, False, "close", [True, False]),
    (True, False, "with-close", [True, False]),
    (True, False, "with", [False, False]),
    (True, False, "del", [False, False]),
    (False, True, "close", [True, True]),
    (False, True, "with-close", [True, True]),
    (False, True, "with", [True, True]),
    (False, True, "del", [True, True]),
    (False, False, "close", [True, True]),
    (False, False, "with-close", [True, True]),
    (False, False, "with", [True, True]),
    (False, False, "del", [True, True]),
]


def _scenario(
    factory: Callable[..., Any], d: Path, delete: bool, doc: bool, how: str
) -> list[bool]:
    seen: list[bool] = []
    f = factory(dir=d, delete=delete, delete_on_close=doc)
    name = f.name
    f.write(b"data")
    if how == "close":
        f.close()
        seen.append(os.path.exists(name))
        del f
        gc.collect()
        seen.append(os.path.exists(name))
    elif how == "with-close":
        with f:
            f.close()
            seen.append(os.path.exists(name))
        seen.append(os.path.exists(name))
    elif how == "with":
        with f:
            pass
        seen.append(os.path.exists(name))
        seen.append(os.path.exists(name))
    else:
        del f
        gc.collect()
        seen.append(os.path.exists(name))
        seen.append(os.path.exists(name))
    if os.path.exists(name):
        os.unlink(name)
    return seen


@pytest.mark.parametrize(("delete", "doc", "how", "expected"), DELETE_TABLE)
def test_named_delete_and_delete_on_close_follow_python_3_12(
    tmp_path: Path, delete: bool, doc: bool, how: str, expected: list[bool]
) -> None:
    assert _scenario(hardtemp.NamedTemporaryFile, tmp_path, delete, doc, how) == expected
    if sys.version_info >= (3, 12):  # the table is the standard library's behaviour
        assert _scenario(tempfile.NamedTemporaryFile, tmp_path, delete, doc, how) == expected


def test_named_file_has_name_mode_and_round_trips(tmp_path: Path) -> None:
    with hardtemp.NamedTemporaryFile("w+", dir=tmp_path, suffix=".txt", encoding="utf-8") as f:
        assert os.path.dirname(f.name) == str(tmp_path)
        assert f.name.endswith(".txt")
        assert f.delete is True
        f.write("héllo\n")
        f.seek(0)
        assert f.read() == "héllo\n"
        assert [*f] == []
        f.seek(0)
        assert list(f) == ["héllo\n"]
        assert stat.S_IMODE(os.stat(f.name).st_mode) == 0o600


def test_named_file_method_of_an_unreferenced_wrapper_works(tmp_path: Path) -> None:
    # tempfile keeps the wrapper alive while one of its methods runs.
    # (Not inside an assert: pytest's rewriting would keep the wrapper alive.)
    written = hardtemp.NamedTemporaryFile(dir=tmp_path).write(b"abc")
    assert written == 3
    gc.collect()
    assert os.listdir(tmp_path) == []


def test_named_file_bad_encoding_raises_lookup_error_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(LookupError):
        hardtemp.NamedTemporaryFile("w", encoding="no-such-encoding", dir=tmp_path)
    assert os.listdir(tmp_path) == []


def test_named_file_bad_mode_raises_value_error_and_creates_nothing(tmp_path: Path) -> None:
    for mode in ("q", "rw", "wbt", "w+b+"):
        with pytest.raises(ValueError):
            hardtemp.NamedTemporaryFile(mode, dir=tmp_path)
    with pytest.raises(ValueError):
        hardtemp.NamedTemporaryFile("wb", encoding="utf-8", dir=tmp_path)
    assert os.listdir(tmp_path) == []


def test_named_file_is_marked_for_the_sweeper_only_when_deleted(tmp_path: Path) -> None:
    with hardtemp.NamedTemporaryFile(dir=tmp_path) as f:
        tag = _owner.read_mark(f.fileno())
        assert tag is not None
        assert tag.pid == os.getpid()
        assert _owner.owner_alive(tag)
    with hardtemp.NamedTemporaryFile(dir=tmp_path, delete=False) as g:
        assert _owner.read_mark(g.fileno()) is None
    os.unlink(g.name)


# -- persist -------------------------------------------------------------------------------------


def _has_mark(path: str | Path) -> bool:
    try:
        os.getxattr(path, _owner.OWNER_XATTR)
    except OSError:
        return False
    return True


def test_persist_moves_atomically_and_keeps_the_file_open(tmp_path: Path) -> None:
    target = tmp_path / "out" / "kept.bin"
    target.parent.mkdir()
    target.write_bytes(b"old contents")
    f = hardtemp.NamedTemporaryFile(dir=tmp_path)
    old_name = f.name
    f.write(b"first ")
    ino = os.fstat(f.fileno()).st_ino
    assert _has_mark(old_name)
    assert f.persist(target) == str(target)
    assert f.name == str(target)
    assert f.delete is False
    assert not os.path.exists(old_name)
    assert os.stat(target).st_ino == ino  # moved, not copied
    assert not _has_mark(target)  # the sweeper must never remove a kept file
    f.write(b"second")
    f.close()
    del f
    gc.collect()
    assert target.read_bytes() == b"first second"


def test_persist_of_a_closed_file_removes_the_sweeper_mark(tmp_path: Path) -> None:
    f = hardtemp.NamedTemporaryFile(dir=tmp_path, delete_on_close=False)
    f.write(b"kept")
    f.close()
    assert _has_mark(f.name)
    target = tmp_path / "kept"
    f.persist(str(target))
    del f
    gc.collect()
    assert target.read_bytes() == b"kept"
    assert not _has_mark(target)


def test_persist_noclobber_refuses_an_existing_target(tmp_path: Path) -> None:
    target = tmp_path / "exists"
    target.write_bytes(b"theirs")
    os.chmod(target, 0o644)
    before = os.stat(target)
    with hardtemp.NamedTemporaryFile(dir=tmp_path) as f:
        f.write(b"ours")
        with pytest.raises(FileExistsError):
            f.persist_noclobber(target)
        assert os.path.exists(f.name)  # still ours, still removed on close
        name = f.name
    assert not os.path.exists(name)
    after = os.stat(target)
    assert target.read_bytes() == b"theirs"
    assert (after.st_ino, after.st_mode, after.st_nlink) == (
        before.st_ino,
        before.st_mode,
        before.st_nlink,
    )


def test_persist_noclobber_moves_to_a_free_name(tmp_path: Path) -> None:
    target = tmp_path / "new"
    f = hardtemp.NamedTemporaryFile(dir=tmp_path)
    f.write(b"ours")
    assert f.persist_noclobber(os.fsencode(target)) == os.fsencode(target)
    f.close()
    assert target.read_bytes() == b"ours"
    assert [p.name for p in tmp_path.iterdir()] == ["new"]


def test_persist_across_filesystems_fails_and_changes_nothing(
    tmp_path: Path, small_tmpfs: Callable[[int], Path]
) -> None:
    other_fs = small_tmpfs(256)
    f = hardtemp.NamedTemporaryFile(dir=tmp_path)
    f.write(b"ours")
    with pytest.raises(OSError) as info:
        f.persist(other_fs / "target")
    assert info.value.errno == errno.EXDEV
    assert os.listdir(other_fs) == []
    assert _has_mark(f.name)  # still a temp file: the sweeper may still remove it
    name = f.name
    f.close()
    assert not os.path.exists(name)


def test_persist_after_removal_raises_value_error(tmp_path: Path) -> None:
    f = hardtemp.NamedTemporaryFile(dir=tmp_path)
    f.close()
    with pytest.raises(ValueError, match="removed"):
        f.persist(tmp_path / "x")
    assert os.listdir(tmp_path) == []


def test_persist_after_the_application_closed_the_underlying_file_keeps_its_data(
    tmp_path: Path,
) -> None:
    # f.file.close() (code handed f.file closes it) leaves the file and its data in place
    # until f.close(): persist() must keep it, not claim it was removed and then delete it.
    f = hardtemp.NamedTemporaryFile(dir=tmp_path)
    f.write(b"kept after f.file.close()")
    f.file.close()
    target = tmp_path / "kept"
    assert f.persist(target) == str(target)
    f.close()
    assert target.read_bytes() == b"kept after f.file.close()"
    assert not _has_mark(target)
    assert os.listdir(tmp_path) == ["kept"]


def test_persist_refuses_when_our_name_was_swapped(tmp_path: Path) -> None:
    f = hardtemp.NamedTemporaryFile(dir=tmp_path)
    os.rename(f.name, tmp_path / "moved")
    Path(f.name).write_bytes(b"impostor")
    # Two links: not a file close would take for our own atomic save (issue 10, finding 6).
    os.link(f.name, tmp_path / "impostor-link")
    with pytest.raises(UnsafeFileError):
        f.persist(tmp_path / "target")
    assert not (tmp_path / "target").exists()
    with pytest.raises(UnsafeFileError):
        f.close()
    assert Path(f.name).read_bytes() == b"impostor"


def test_a_hard_link_the_caller_made_keeps_no_sweep_mark_after_close(tmp_path: Path) -> None:
    # The inode lives on under the caller's second name (overwritten, see SECURITY.md): the
    # mark goes, so `hardtemp sweep` never mistakes the kept name for a temporary file.
    f = hardtemp.NamedTemporaryFile(dir=tmp_path)
    f.write(b"data")
    os.link(f.name, tmp_path / "second")
    assert _has_mark(tmp_path / "second")
    with pytest.warns(hardtemp.WipeUnreliableWarning, match="2 hard links"):
        f.close()
    assert os.listdir(tmp_path) == ["second"]
    assert not _has_mark(tmp_path / "second")


def test_a_closed_named_file_leaves_nothing_and_drops_its_lock(tmp_path: Path) -> None:
    f = hardtemp.NamedTemporaryFile(dir=tmp_path)
    state = f._state
    f.write(b"data")
    f.close()
    assert state.unlinked
    assert state.claim is not None
    assert state.claim.fd == -1
    assert os.listdir(tmp_path) == []


# -- removal checks the inode --------------------------------------------------------------------


def test_named_file_swapped_at_close_raises_and_the_impostor_survives(tmp_path: Path) -> None:
    f = hardtemp.NamedTemporaryFile(dir=tmp_path)
    name = f.name
    os.rename(name, tmp_path / "ours-moved")
    Path(name).write_bytes(b"impostor")
    # Two links: it may be a link to data elsewhere, so never taken for our atomic save.
    os.link(name, tmp_path / "impostor-link")
    with pytest.raises(UnsafeFileError, match="not ours to remove: left in place") as info:
        f.close()
    assert info.value.path == name
    assert f.closed
    assert Path(name).read_bytes() == b"impostor"
    gc.collect()
    assert Path(name).read_bytes() == b"impostor"


def test_named_file_removed_by_the_caller_closes_quietly(tmp_path: Path) -> None:
    with hardtemp.NamedTemporaryFile(dir=tmp_path) as f:
        os.unlink(f.name)
    assert os.listdir(tmp_path) == []


def test_temporary_directory_swapped_raises_and_the_impostor_survives(tmp_path: Path) -> None:
    d = hardtemp.TemporaryDirectory(dir=tmp_path)
    os.rename(d.name, tmp_path / "ours-moved")
    os.mkdir(d.name)
    Path(d.name, "theirs").write_bytes(b"impostor")
    with pytest.raises(UnsafeFileError):
        d.cleanup()
    assert Path(d.name, "theirs").read_bytes() == b"impostor"


def test_temporary_directory_swapped_is_not_even_chmodded(tmp_path: Path) -> None:
    d = hardtemp.TemporaryDirectory(dir=tmp_path)
    os.rename(d.name, tmp_path / "ours-moved")
    os.mkdir(d.name)
    Path(d.name, "theirs").write_bytes(b"impostor")
    os.chmod(d.name, 0o500)
    with pytest.raises(UnsafeFileError):
        d.cleanup()
    assert stat.S_IMODE(os.stat(d.name).st_mode) == 0o500
    os.chmod(d.name, 0o700)


def test_temporary_directory_replaced_by_a_symlink_is_left_alone(tmp_path: Path) -> None:
    outside = make_dir(tmp_path / "outside", 0o500)
    d = hardtemp.TemporaryDirectory(dir=tmp_path)
    os.rmdir(d.name)
    os.symlink(outside, d.name)
    with pytest.raises(UnsafeFileError):
        d.cleanup()
    assert os.readlink(d.name) == str(outside)
    assert stat.S_IMODE(os.stat(outside).st_mode) == 0o500


def test_temporary_directory_removed_by_the_caller_cleans_up_quietly(tmp_path: Path) -> None:
    with hardtemp.TemporaryDirectory(dir=tmp_path) as name:
        os.rmdir(name)
    d = hardtemp.TemporaryDirectory(dir=tmp_path)
    os.rmdir(d.name)
    d.cleanup()
    assert os.listdir(tmp_path) == []


# -- TemporaryDirectory --------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["NamedTemporaryFile", "TemporaryDirectory"])
def test_failure_to_mark_for_the_sweeper_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    # A fault we cannot cause on demand (an EIO from setxattr): simulated at the mark's
    # setxattr itself.
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EIO, "injected")

    monkeypatch.setattr(_owner.os, "setxattr", fail)
    with pytest.raises(OSError, match="injected"):
        getattr(hardtemp, api)(dir=tmp_path)
    assert os.listdir(tmp_path) == []


def test_temporary_directory_cleanup_removes_a_tree(tmp_path: Path) -> None:
    d = hardtemp.TemporaryDirectory(dir=tmp_path, prefix="td-")
    assert repr(d) == f"<TemporaryDirectory {d.name!r}>"
    os.makedirs(os.path.join(d.name, "a", "b", "c"))
    for sub in ("", "a", "a/b", "a/b/c"):
        Path(d.name, sub, "f").write_bytes(b"x")
    os.mkfifo(os.path.join(d.name, "fifo"))
    os.symlink("dangling", os.path.join(d.name, "a", "link"))
    d.cleanup()
    assert os.listdir(tmp_path) == []
    d.cleanup()  # a second call is a no-op


def test_temporary_directory_context_manager_and_delete_false(tmp_path: Path) -> None:
    with hardtemp.TemporaryDirectory(dir=tmp_path) as name:
        assert os.path.isdir(name)
    assert not os.path.exists(name)
    keep = hardtemp.TemporaryDirectory(dir=tmp_path, delete=False)
    with keep as name2:
        Path(name2, "f").write_bytes(b"x")
    assert os.path.isdir(name2)
    del keep
    gc.collect()
    assert os.path.isdir(name2)
    # Explicit cleanup() still removes it (as in Python 3.12).
    keep2 = hardtemp.TemporaryDirectory(dir=tmp_path, delete=False)
    keep2.cleanup()
    assert not os.path.exists(keep2.name)
    assert hardtemp.TemporaryDirectory[str] is not None


def _immutable(path: Path, on: bool) -> None:
    subprocess.run(["chattr", "+i" if on else "-i", str(path)], check=True)


@pytest.fixture
def immutable_file(tmp_path: Path) -> Any:
    made: list[Path] = []

    def make(path: Path) -> Path:
        path.write_bytes(b"stuck")
        _immutable(path, True)
        made.append(path)
        return path

    yield make
    for p in made:
        _immutable(p, False)


@needs_root("for chattr +i")
def test_cleanup_raises_the_error_after_removing_everything_else(
    tmp_path: Path, immutable_file: Callable[[Path], Path]
) -> None:
    d = hardtemp.TemporaryDirectory(dir=tmp_path)
    os.makedirs(os.path.join(d.name, "a", "b"))
    for i in range(5):
        Path(d.name, f"f{i}").write_bytes(b"x")
    stuck = immutable_file(Path(d.name, "a", "b", "stuck"))
    with pytest.raises(PermissionError) as info:
        d.cleanup()
    assert info.value.filename in (str(stuck), "stuck")
    assert sorted(os.listdir(d.name)) == ["a"]
    _immutable(stuck, False)


@needs_root("for chattr +i")
def test_ignore_cleanup_errors_removes_what_it_can_quietly(
    tmp_path: Path, immutable_file: Callable[[Path], Path]
) -> None:
    d = hardtemp.TemporaryDirectory(dir=tmp_path, ignore_cleanup_errors=True)
    os.makedirs(os.path.join(d.name, "a", "b"))
    Path(d.name, "other").write_bytes(b"x")
    immutable_file(Path(d.name, "a", "b", "stuck"))
    d.cleanup()
    assert os.listdir(d.name) == ["a"]


@needs_root("for chattr +i")
def test_a_persistent_error_is_reported_once_not_retried_forever(
    tmp_path: Path, immutable_file: Callable[[Path], Path]
) -> None:
    top = make_dir(tmp_path / "top", 0o700)
    deep = top / "a" / "b" / "c"
    deep.mkdir(parents=True)
    immutable_file(deep / "stuck")
    errors: list[BaseException] = []
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        st = os.stat(top)
        _remove.rmtree_at(
            fd, "top", expect=(st.st_dev, st.st_ino), display_path=str(top), onerror=errors.append
        )
    finally:
        os.close(fd)
    # The stuck file, reported once; the directories above it stay because of it.
    assert len(errors) == 1, [str(e) for e in errors[:10]]
    assert isinstance(errors[0], PermissionError)
    assert os.listdir(top) == ["a"]


def _cleanup_while_adding(tmp_path: Path, where: str) -> int:
    """Clean up a tree while a thread adds entries (at the top or deep inside); how many it
    added once the cleanup had started. The cleanup must succeed and leave nothing."""
    d = hardtemp.TemporaryDirectory(dir=tmp_path)
    for i in range(100):
        os.mkdir(os.path.join(d.name, f"pre{i}"))
        Path(d.name, f"pre{i}", "f").write_bytes(b"x")
    target = d.name if where == "top" else os.path.join(d.name, "pre99", "deep")
    os.makedirs(target, exist_ok=True)
    stop = threading.Event()
    added = [0, 0]  # before / after cleanup started
    started = threading.Event()

    def adder() -> None:
        for i in range(800):
            if stop.is_set():
                return
            try:
                sub = os.path.join(target, f"new{i}")
                os.mkdir(sub)
                with open(os.path.join(sub, "f"), "wb"):
                    pass
            except OSError:
                if not os.path.exists(target):
                    return  # the cleanup got there: nowhere left to add
                continue  # this one was removed under us: keep adding
            added[started.is_set()] += 1

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    t = threading.Thread(target=adder)
    t.start()
    try:
        while added[0] < 50 and t.is_alive():
            pass
        started.set()
        d.cleanup()
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(old)
    assert not os.path.exists(d.name)
    return added[1]


@pytest.mark.parametrize("where", ["top", "deep"])
def test_entries_added_during_cleanup_do_not_make_it_fail(tmp_path: Path, where: str) -> None:
    # Until a round raced (the walk may reach the deep target before the adder runs again:
    # such a round proves nothing, and a faster walk makes it likelier); every round must
    # succeed and leave nothing.
    raced = 0
    for _ in range(10):
        raced = _cleanup_while_adding(tmp_path, where)
        if raced:
            break
    assert raced > 0, "nothing was added while cleanup ran in 10 rounds: the test proved nothing"


def _outside_fixture(root: Path) -> dict[str, Any]:
    """Files and a directory outside the temp dir, some read-only."""
    out = make_dir(root / "outside", 0o755)
    (out / "file").write_bytes(b"outside data")
    os.chmod(out / "file", 0o644)
    (out / "ro-file").write_bytes(b"read-only data")
    os.chmod(out / "ro-file", 0o444)
    sub = make_dir(out / "ro-dir", 0o755)
    (sub / "inner").write_bytes(b"inner data")
    os.chmod(sub, 0o555)
    return {"dir": out}


def _snapshot(path: Path) -> dict[str, tuple[int, bytes | None]]:
    snap: dict[str, tuple[int, bytes | None]] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            snap[os.path.relpath(p, path)] = (
                st.st_mode,
                Path(p).read_bytes() if stat.S_ISREG(st.st_mode) else None,
            )
    st = os.lstat(path)
    snap["."] = (st.st_mode, None)
    return snap


def test_symlinks_inside_pointing_outside_are_unlinked_never_followed(tmp_path: Path) -> None:
    out = _outside_fixture(tmp_path)["dir"]
    before = _snapshot(out)
    d = hardtemp.TemporaryDirectory(dir=tmp_path)
    sub = os.path.join(d.name, "sub")
    os.mkdir(sub)
    for where in (d.name, sub):
        os.symlink(out / "file", os.path.join(where, "l-file"))
        os.symlink(out / "ro-file", os.path.join(where, "l-ro-file"))
        os.symlink(out, os.path.join(where, "l-dir"))
        os.symlink(out / "ro-dir", os.path.join(where, "l-ro-dir"))
    os.link(out / "file", os.path.join(d.name, "hardlink"))  # a second name of outside data
    os.chmod(sub, 0o500)
    with pytest.warns(PlaintextLeftWarning, match="hardlink: the file has 2 hard links"):
        d.cleanup()  # unlinked, not overwritten, and said so
    assert not os.path.exists(d.name)
    assert _snapshot(out) == before


def test_subdirectory_swapped_for_a_symlink_mid_walk_is_not_entered(tmp_path: Path) -> None:
    # The walk classifies entries first; a directory swapped for a symlink after that
    # must still not be entered (O_NOFOLLOW), only unlinked as an entry.
    outside = make_dir(tmp_path / "outside", 0o755)
    (outside / "keep").write_bytes(b"keep")
    (tmp_path / "link").symlink_to(outside)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert _remove._open_subdir(fd, "link", os.geteuid()) is None
        (tmp_path / "file").write_bytes(b"")
        assert _remove._open_subdir(fd, "file", os.geteuid()) is None
        assert _remove._open_subdir(fd, "missing", os.geteuid()) is None
    finally:
        os.close(fd)
    assert (outside / "keep").read_bytes() == b"keep"


def _cleanup_read_only_tree_as_nobody(base: str) -> dict[str, Any]:  # pragma: no cover - child
    d = hardtemp.TemporaryDirectory(dir=base)
    name = d.name
    os.makedirs(os.path.join(name, "ro", "nested"))
    os.makedirs(os.path.join(name, "none", "inner"))
    os.makedirs(os.path.join(name, "wx"))
    for sub in ("ro", "ro/nested", "none", "none/inner", "wx"):
        with open(os.path.join(name, sub, "f"), "wb") as f:
            f.write(b"x")
    os.chmod(os.path.join(name, "ro", "nested"), 0o500)
    os.chmod(os.path.join(name, "ro"), 0o500)
    os.chmod(os.path.join(name, "none", "inner"), 0o000)
    os.chmod(os.path.join(name, "none"), 0o000)
    os.chmod(os.path.join(name, "wx"), 0o300)
    os.chmod(name, 0o500)
    error = None
    try:
        d.cleanup()
    except OSError as exc:
        error = f"{type(exc).__name__}: {exc}"
    return {"exists": os.path.exists(name), "error": error, "left": os.listdir(base)}


def test_read_only_subdirectories_are_removed_as_a_non_root_user(
    shared_dir: Path, other_user: Callable[..., Any]
) -> None:
    base = nobody_dir(shared_dir)
    result = other_user(_cleanup_read_only_tree_as_nobody, str(base))
    assert result == {"exists": False, "error": None, "left": []}


def _cve_2023_6597_shape(base: str, use_stdlib: bool) -> dict[str, Any]:  # pragma: no cover
    outside_file = os.path.join(base, "target-file")
    with open(outside_file, "wb") as f:
        f.write(b"keep me")
    os.chmod(outside_file, 0o444)
    outside_dir = os.path.join(base, "target-dir")
    os.mkdir(outside_dir)
    os.chmod(outside_dir, 0o555)
    mod: Any = tempfile if use_stdlib else hardtemp
    d = mod.TemporaryDirectory(dir=base)
    ro = os.path.join(d.name, "ro")
    os.mkdir(ro)
    os.symlink(outside_file, os.path.join(ro, "to-file"))
    os.symlink(outside_dir, os.path.join(ro, "to-dir"))
    os.chmod(ro, 0o500)  # unlinking the symlinks now fails with EACCES for us
    with contextlib.suppress(OSError):
        d.cleanup()
    return {
        "file_mode": stat.S_IMODE(os.stat(outside_file).st_mode),
        "dir_mode": stat.S_IMODE(os.stat(outside_dir).st_mode),
        "content": open(outside_file, "rb").read().decode(),
        "removed": not os.path.exists(d.name),
    }


def test_cve_2023_6597_shape_cleanup_never_chmods_a_symlink_target(
    shared_dir: Path, other_user: Callable[..., Any]
) -> None:
    base = nobody_dir(shared_dir)
    result = other_user(_cve_2023_6597_shape, str(base), False)
    assert result == {"file_mode": 0o444, "dir_mode": 0o555, "content": "keep me", "removed": True}


@pytest.mark.skipif(
    hasattr(tempfile, "_dont_follow_symlinks"),
    reason="control: this interpreter's tempfile has the CVE-2023-6597 fix (3.11.8+, 3.12.1+)",
)
def test_cve_2023_6597_control_the_vulnerable_stdlib_chmods_the_target(
    shared_dir: Path, other_user: Callable[..., Any]
) -> None:
    base = nobody_dir(shared_dir)
    result = other_user(_cve_2023_6597_shape, str(base), True)
    assert result["file_mode"] != 0o444 or result["dir_mode"] != 0o555


def test_mount_point_inside_is_not_entered(
    tmp_path: Path, small_tmpfs: Callable[[int], Path]
) -> None:
    d = hardtemp.TemporaryDirectory(dir=tmp_path)
    mnt = Path(d.name, "mnt")
    mnt.mkdir()
    import subprocess as sp

    sp.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], check=True)
    try:
        (mnt / "precious").write_bytes(b"on another filesystem")
        with pytest.raises(OSError, match="mount point"):
            d.cleanup()
        assert (mnt / "precious").read_bytes() == b"on another filesystem"
    finally:
        sp.run(["umount", str(mnt)], check=True)
    os.rmdir(mnt)
    os.rmdir(d.name)


# -- fork safety ---------------------------------------------------------------------------------

FORK_SCRIPT = r"""
import gc, json, os, sys, tempfile
import hardtemp
import hardtemp._files

# TemporaryFile(encrypt=False) overwrites its data when closed. An overwrite that
# surely zeroes the file in place, so a child's close that wiped the parent's data shows.
def overwrite_fd(fd, **kw):
    os.pwrite(fd, bytes(os.fstat(fd).st_size), 0)

hardtemp._files.overwrite_fd = overwrite_fd
d = sys.argv[1]
how = sys.argv[2]
named = hardtemp.NamedTemporaryFile(dir=d)
named.write(b"named data"); named.flush()
tdir = hardtemp.TemporaryDirectory(dir=d)
open(os.path.join(tdir.name, "f"), "wb").write(b"dir data")
unnamed = hardtemp.TemporaryFile(dir=d, encrypt=False)
unnamed.write(b"unnamed data"); unnamed.flush()
std_dir = tempfile.TemporaryDirectory(dir=d)
std_named = tempfile.NamedTemporaryFile(dir=d)
names = {"named": named.name, "tdir": tdir.name, "std_dir": std_dir.name,
         "std_named": std_named.name}
pid = os.fork()
if pid == 0:
    if how == "gc":
        del named, tdir, unnamed, std_dir, std_named
        gc.collect()
    sys.exit(0)  # exit handlers (weakref.finalize's atexit hook) run in the child
os.waitpid(pid, 0)
unnamed.seek(0)
state = {k: os.path.exists(v) for k, v in names.items()}
state["named_data"] = open(named.name, "rb").read().decode() if state["named"] else None
state["unnamed_data"] = unnamed.read().decode()
state["tdir_data"] = (open(os.path.join(tdir.name, "f"), "rb").read().decode()
                      if state["tdir"] else None)
print(json.dumps(state))
named.close(); tdir.cleanup(); unnamed.close()
"""


@pytest.mark.parametrize("how", ["gc", "atexit"])
def test_forked_child_never_removes_the_parents_files(tmp_path: Path, how: str) -> None:
    proc = run_python(FORK_SCRIPT, str(tmp_path), how)
    assert proc.returncode == 0, proc.stderr
    state = json.loads(proc.stdout)
    assert state["named"] is True
    assert state["named_data"] == "named data"
    assert state["tdir"] is True
    assert state["tdir_data"] == "dir data"
    assert state["unnamed_data"] == "unnamed data"
    # Control: the standard library's objects were removed by the child.
    assert state["std_dir"] is False
    assert state["std_named"] is False
    assert sorted(os.listdir(tmp_path)) == []


_LEFT_OPEN = r"""
import gc, os, sys, hardtemp
d = sys.argv[1]
seen = os.open(d, os.O_RDONLY)
kept = []
for delete_on_close in (True, False):  # open at exit; closed but never exited
    f = hardtemp.NamedTemporaryFile(dir=d, delete_on_close=delete_on_close)
    f.write(b"left at exit")
    f.flush()
    if not delete_on_close:
        f.close()
    kept.append(f)
dropped = hardtemp.NamedTemporaryFile(dir=d)  # no reference left: collected, not exited
dropped.write(b"dropped")
dropped.flush()
name = os.path.basename(dropped.name)
del dropped
gc.collect()
assert name not in os.listdir(d), "not removed when collected"
assert len(os.listdir(d)) == 2
"""


def test_named_files_left_open_are_removed_when_collected_and_at_interpreter_exit(
    tmp_path: Path,
) -> None:
    # The cleanup of a file never exited runs when its token is collected, and at exit for
    # the ones still alive (as weakref.finalize's atexit hook does), in the creating process.
    proc = run_python(_LEFT_OPEN, str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(tmp_path) == []


def test_a_child_forked_without_pythons_fork_hooks_never_removes_the_parents_file(
    tmp_path: Path,
) -> None:
    import ctypes

    named = hardtemp.NamedTemporaryFile(dir=tmp_path)
    named.write(b"parent data")
    named.flush()
    plain = hardtemp.TemporaryFile(dir=tmp_path, encrypt=False)
    plain.write(b"unnamed data")
    plain.flush()
    pid = ctypes.CDLL(None, use_errno=True).fork()  # the raw wrapper: no at-fork hooks run
    if pid == 0:  # pragma: no cover - child
        try:
            named.close()
            plain.close()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    with open(named.name, "rb") as f:
        assert f.read() == b"parent data"
    plain.seek(0)
    assert plain.read() == b"unnamed data"  # not overwritten by the child's close
    named.close()
    plain.close()
    assert os.listdir(tmp_path) == []


_SAME_PID_CHILD = r"""
import ctypes, os, sys, hardtemp
assert os.getpid() == 1, os.getpid()  # pid 1 of its own PID namespace (unshare --pid)
named = hardtemp.NamedTemporaryFile(dir=sys.argv[1])
named.write(b"parent data")
named.flush()
plain = hardtemp.TemporaryFile(dir=sys.argv[1], encrypt=False)
plain.write(b"unnamed data")
plain.flush()
tdir = hardtemp.TemporaryDirectory(dir=sys.argv[1])
with open(os.path.join(tdir.name, "f"), "wb") as f:
    f.write(b"dir data")
if ctypes.CDLL(None, use_errno=True).unshare(0x20000000) != 0:  # CLONE_NEWPID
    raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWPID)")
pid = os.fork()  # pid 1 of the new namespace: the very pid of its parent
if pid == 0:
    try:
        assert os.getpid() == 1
        named.close()
        plain.close()
        tdir.cleanup()
    finally:
        os._exit(0)
os.waitpid(pid, 0)
plain.seek(0)
with open(named.name, "rb") as f, open(os.path.join(tdir.name, "f"), "rb") as g:
    print(f.read().decode(), plain.read().decode(), g.read().decode())
named.close()
plain.close()
tdir.cleanup()
"""


def test_a_child_with_its_parents_very_pid_never_removes_the_parents_file(
    tmp_path: Path,
) -> None:
    # A service that is pid 1 of its container forks into a new PID namespace: the child is
    # pid 1 too, so a pid comparison takes it for the creator.
    from _gates import require_unshare

    require_unshare()
    env = dict(os.environ, PYTHONPATH=str(Path(hardtemp.__file__).parents[1]))
    cmd = ["unshare", "--pid", "--fork", sys.executable, "-c", _SAME_PID_CHILD, str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, check=False)
    expected = "parent data unnamed data dir data"
    assert (done.returncode, done.stdout.strip()) == (0, expected), done.stderr
    assert os.listdir(tmp_path) == []


def test_forked_child_cleanup_and_close_are_no_ops(tmp_path: Path) -> None:
    named = hardtemp.NamedTemporaryFile(dir=tmp_path)
    tdir = hardtemp.TemporaryDirectory(dir=tmp_path)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            named.close()
            tdir.cleanup()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert os.path.exists(named.name)
    assert os.path.exists(tdir.name)
    named.close()
    tdir.cleanup()
    assert os.listdir(tmp_path) == []


# -- TemporaryFile -------------------------------------------------------------------------------


@pytest.mark.parametrize("encrypt", [False, True])
@pytest.mark.parametrize(
    ("mode", "data"), [("w+b", b"bytes\n"), ("w+", "text\n"), ("w+t", "tëxt\r\n")]
)
def test_temporary_file_modes_round_trip(
    tmp_path: Path, encrypt: bool, mode: str, data: str | bytes
) -> None:
    kw: dict[str, Any] = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    with hardtemp.TemporaryFile(mode, dir=tmp_path, encrypt=encrypt, **kw) as f:
        f.write(data)
        f.seek(0)
        assert f.read() == data
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("mode", ["w+b", "wb", "w+", "w", "a+b", "ab", "a+", "x+b", "r+b", "rb"])
def test_file_objects_have_the_standard_librarys_mode_and_types(tmp_path: Path, mode: str) -> None:
    def shape(factory: Callable[..., Any], **kw: Any) -> tuple[Any, ...]:
        with factory(mode, dir=tmp_path, **kw) as f:
            inner = getattr(f, "file", f)
            return (f.mode, type(inner).__name__, f.readable(), f.writable())

    expected = shape(tempfile.TemporaryFile)
    assert shape(hardtemp.TemporaryFile, encrypt=False) == expected
    assert shape(hardtemp.NamedTemporaryFile) == shape(tempfile.NamedTemporaryFile)


def test_temporary_file_unbuffered_and_write_only(tmp_path: Path) -> None:
    with hardtemp.TemporaryFile("wb", buffering=0, dir=tmp_path, encrypt=False) as f:
        assert isinstance(f, io.FileIO)
        f.write(b"x")
        assert not f.readable()
    with pytest.raises(ValueError):
        hardtemp.TemporaryFile("w", buffering=0, dir=tmp_path)


# -- SpooledTemporaryFile ------------------------------------------------------------------------


def test_spooled_stays_in_memory_until_max_size(tmp_path: Path) -> None:
    with hardtemp.SpooledTemporaryFile(max_size=10, dir=tmp_path) as f:
        f.write(b"0123456789")
        assert not f._rolled
        assert isinstance(f._file, SecureBytesIO)
        f.write(b"a")
        assert f._rolled
        assert f.tell() == 11
        f.seek(0)
        assert f.read() == b"0123456789a"
        assert os.listdir(tmp_path) == []  # rolled over to an unnamed file


def test_spooled_rollover_keeps_the_position(tmp_path: Path) -> None:
    f = hardtemp.SpooledTemporaryFile(dir=tmp_path)
    f.write(b"abcdef")
    f.seek(2)
    f.rollover()
    assert f.tell() == 2
    assert f.read() == b"cdef"
    f.rollover()  # twice is fine
    f.close()
    assert f.closed


def test_spooled_text_mode_rolls_over_with_its_text(tmp_path: Path) -> None:
    with hardtemp.SpooledTemporaryFile(
        max_size=20, mode="w+", dir=tmp_path, encoding="utf-8", newline=None
    ) as f:
        f.write("line one\n")
        assert not f._rolled
        f.write("línea dos\r\n")
        assert f._rolled
        f.seek(0)
        assert f.read() == "line one\nlínea dos\n"
        assert f.encoding == "utf-8"
        assert f.mode == "w+"


def test_spooled_fileno_forces_rollover(tmp_path: Path) -> None:
    with hardtemp.SpooledTemporaryFile(dir=tmp_path, encrypt=False) as f:
        f.write(b"abc")
        fd = f.fileno()
        assert f._rolled
        assert os.pread(fd, 3, 0) == b"abc"


def test_spooled_memory_is_zeroed_on_rollover(tmp_path: Path) -> None:
    f = hardtemp.SpooledTemporaryFile(max_size=1000, dir=tmp_path)
    f.write(b"S" * 600)
    buf = f._file._buf  # hold the very bytearray the plaintext lives in
    assert bytes(buf[:600]) == b"S" * 600
    f.rollover()
    assert buf.count(0) == len(buf)
    f.close()


def test_spooled_text_memory_is_zeroed_on_rollover(tmp_path: Path) -> None:
    f = hardtemp.SpooledTemporaryFile(max_size=1000, mode="w+", dir=tmp_path, encoding="utf-8")
    f.write("T" * 300)
    f.flush()
    buf = f._file.buffer._buf
    assert b"T" * 300 in bytes(buf)
    f.rollover()
    assert buf.count(0) == len(buf)
    f.close()


def test_spooled_memory_is_zeroed_on_close_and_on_growth() -> None:
    f = hardtemp.SpooledTemporaryFile(max_size=10**6)
    f.write(b"G" * 200)
    first = f._file._buf
    f.write(b"H" * 5000)  # grows: the old buffer is dropped
    assert first.count(0) == len(first)
    second = f._file._buf
    assert b"H" * 5000 in bytes(second)
    f.close()
    assert second.count(0) == len(second)


def test_spooled_truncate_zeroes_the_tail() -> None:
    f = hardtemp.SpooledTemporaryFile(max_size=100)
    f.write(b"keepDROP")
    buf = f._file._buf
    f.truncate(4)
    assert bytes(buf[:8]) == b"keep\0\0\0\0"
    f.seek(0)
    assert f.read() == b"keep"
    f.close()


def test_spooled_bad_mode_raises_value_error_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with pytest.raises(ValueError, match="mode"):
        hardtemp.SpooledTemporaryFile(mode="q")
    gc.collect()
    assert unraisable == []  # no "Exception ignored in __del__" from the half-built object


def test_secure_bytes_io_behaves_like_bytes_io() -> None:
    for cls in (io.BytesIO, SecureBytesIO):
        b = cls()
        assert b.write(b"hello world") == 11
        assert b.seek(6) == 6
        assert b.read(3) == b"wor"
        assert b.seek(-2, 2) == 9
        assert b.read() == b"ld"
        b.seek(20)
        b.write(b"!")
        assert b.getvalue() == b"hello world" + b"\0" * 9 + b"!"
        arr = bytearray(4)
        b.seek(0)
        assert b.readinto(arr) == 4
        assert arr == b"hell"
        assert b.truncate(3) == 3
        assert b.getvalue() == b"hel"
        b.close()
        with pytest.raises(ValueError):
            b.read()
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(SecureBytesIO())


def test_secure_bytes_io_write_of_its_own_buffer_survives_growth() -> None:
    b = SecureBytesIO()
    b.write(b"0123456789" * 30)
    with b.getbuffer() as view:
        b.write(view)  # grows: the source is the very buffer being replaced
    assert b.getvalue() == b"0123456789" * 60
    b.close()


def test_spooled_pickling_is_refused() -> None:
    import pickle

    with pytest.raises(TypeError), hardtemp.SpooledTemporaryFile() as f:
        pickle.dumps(f)


def test_spooled_other_user_cannot_read_the_rolled_file(
    tmp_path: Path, other_user: Callable[..., Any]
) -> None:
    with hardtemp.SpooledTemporaryFile(dir=tmp_path, encrypt=False) as f:
        f.write(b"secret")
        fd = f.fileno()

        def peek(pid: int, n: int) -> str:
            try:
                with open(f"/proc/{pid}/fd/{n}", "rb") as g:
                    return g.read().decode()
            except OSError as exc:
                return type(exc).__name__

        assert other_user(peek, os.getpid(), fd) == "PermissionError"


def test_nobody_constant_matches() -> None:
    assert NOBODY == 65534


@pytest.mark.parametrize("rolled", [False, True])
def test_spooled_methods_match_the_standard_library(tmp_path: Path, rolled: bool) -> None:
    def drive(factory: Callable[..., Any], **kw: Any) -> list[Any]:
        out: list[Any] = []
        with factory(**kw) as f:
            f.writelines([b"line one\n", b"line two\n", b"three"])
            if rolled:
                f.rollover()
            out += [f.tell(), f.seekable(), f.readable(), f.writable(), f.isatty()]
            f.seek(0)
            out += [f.readline(), f.readlines()]
            f.seek(0)
            out.append(f.read1(4))
            buf = bytearray(4)
            out += [f.readinto(buf), bytes(buf)]
            buf1 = bytearray(3)
            out += [f.readinto1(buf1), bytes(buf1)]
            out.append(f.truncate())
            f.seek(0)
            out += [f.read(), f.name is None or isinstance(f.name, int), f.mode]
            out.append(list(iter(f)))
            f.flush()
        out.append(f.closed)
        return out

    kw: dict[str, Any] = {"max_size": 1000, "dir": tmp_path}
    ours = drive(hardtemp.SpooledTemporaryFile, encrypt=False, **kw)
    assert ours == drive(tempfile.SpooledTemporaryFile, **kw)


def test_spooled_text_properties_match_the_standard_library(tmp_path: Path) -> None:
    def drive(factory: Callable[..., Any], **kw: Any) -> list[Any]:
        with factory(**kw) as f:
            f.write("a\r\nb\n")
            f.seek(0)
            out = [f.read(), f.newlines, f.encoding, f.errors]
            f.rollover()
            f.seek(0)
            out += [f.read(), f.encoding]
        return out

    kw: dict[str, Any] = {"mode": "w+", "encoding": "utf-8", "newline": None, "dir": tmp_path}
    ours = drive(hardtemp.SpooledTemporaryFile, encrypt=False, **kw)
    assert ours == drive(tempfile.SpooledTemporaryFile, **kw)


def test_spooled_truncate_past_max_size_rolls_over(tmp_path: Path) -> None:
    with hardtemp.SpooledTemporaryFile(max_size=10, dir=tmp_path) as f:
        f.write(b"abc")
        f.truncate(2)
        assert not f._rolled
        f.truncate(20)
        assert f._rolled
        f.seek(0)
        assert f.read() == b"ab" + b"\0" * 18


def test_spooled_enter_after_close_raises(tmp_path: Path) -> None:
    f = hardtemp.SpooledTemporaryFile(dir=tmp_path)
    f.close()
    with pytest.raises(ValueError, match="closed"), f:
        pass


# -- corners --------------------------------------------------------------------------------


def test_ignore_cleanup_errors_leaves_a_swapped_directory_alone_quietly(tmp_path: Path) -> None:
    d = hardtemp.TemporaryDirectory(dir=tmp_path, ignore_cleanup_errors=True)
    os.rename(d.name, tmp_path / "ours-moved")
    os.mkdir(d.name)
    Path(d.name, "theirs").write_bytes(b"impostor")
    d.cleanup()  # the refusal is an error ignored as asked: nothing of theirs removed
    assert Path(d.name, "theirs").read_bytes() == b"impostor"


def test_a_second_close_of_the_raw_file_never_touches_a_reused_descriptor(
    tmp_path: Path,
) -> None:
    f = hardtemp.TemporaryFile(dir=tmp_path, encrypt=False)
    raw = f.raw  # type: ignore[attr-defined]
    fd = f.fileno()
    f.write(b"ours")
    f.close()
    # The number is free again: another file of the program gets it.
    other = tmp_path / "other"
    other.write_bytes(b"not ours to overwrite")
    reused = os.open(other, os.O_RDWR)
    if reused != fd:
        # A lower number was free (descriptors are no longer cached): put the other file
        # at our old number, exactly as the next open would once the lower one is taken.
        os.dup2(reused, fd)
        os.close(reused)
        reused = fd
    try:
        assert reused == fd
        raw.close()
        os.fstat(reused)  # still open
        assert other.read_bytes() == b"not ours to overwrite"
    finally:
        os.close(reused)


def test_a_copy_of_the_wrapper_does_not_remove_or_close_the_file(tmp_path: Path) -> None:
    f = hardtemp.NamedTemporaryFile(dir=tmp_path)
    f.write(b"data")
    f.flush()
    dup = copy.copy(f)
    assert dup.name == f.name
    del dup
    gc.collect()
    assert not f.closed
    f.seek(0)
    assert f.read() == b"data"
    f.close()
    assert os.listdir(tmp_path) == []


def test_an_uninitialised_wrapper_has_no_attributes_instead_of_recursing() -> None:
    wrapper = _TemporaryFileWrapper.__new__(_TemporaryFileWrapper)
    with pytest.raises(AttributeError, match=r"^read$"):
        wrapper.read  # noqa: B018 - the lookup is the test


_FS_IOC_GETFLAGS = 0x80086601
_FS_NOCOW_FL = 0x00800000


def test_a_plaintext_unnamed_file_on_btrfs_is_nocow(loopfs: Callable[..., Any]) -> None:
    fs = loopfs("btrfs", size_mb=128)
    with hardtemp.TemporaryFile(dir=fs.mountpoint, encrypt=False) as f:
        flags = struct.unpack("l", fcntl.ioctl(f.fileno(), _FS_IOC_GETFLAGS, b"\0" * 8))[0]
        assert flags & _FS_NOCOW_FL  # its overwrite on close lands in place


def test_spooled_memory_is_zeroed_when_dropped_without_close() -> None:
    f = hardtemp.SpooledTemporaryFile(max_size=1000)
    f.write(b"S" * 600)
    buf = f._file._buf
    assert bytes(buf[:600]) == b"S" * 600
    del f
    gc.collect()
    assert buf.count(0) == len(buf)


def test_spooled_writelines_rolls_over_once_and_keeps_every_line(tmp_path: Path) -> None:
    with hardtemp.SpooledTemporaryFile(max_size=1000, dir=tmp_path) as f:
        f.writelines([b"a" * 600, b"b" * 600, b"c" * 10])
        assert f._rolled
        f.seek(0)
        assert f.read() == b"a" * 600 + b"b" * 600 + b"c" * 10


def test_spooled_binary_detach_is_unsupported_like_the_standard_library() -> None:
    with hardtemp.SpooledTemporaryFile() as f, tempfile.SpooledTemporaryFile() as g:
        for spooled in (f, g):
            spooled.write(b"kept")
            with pytest.raises(io.UnsupportedOperation):
                spooled.detach()
            spooled.seek(0)
            assert spooled.read() == b"kept"


_FAILED_PERSIST_THEN_CRASH = r"""
import os, signal, sys, hardtemp
d = sys.argv[1]
f = hardtemp.NamedTemporaryFile(dir=d, delete=True, delete_on_close=False)
f.write(b"plaintext left by a crash")
f.close()  # still on disk: removed when the wrapper goes, which the crash prevents
try:
    f.persist_noclobber(os.path.join(d, "taken"))
except FileExistsError:
    print(f.name, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_failed_persist_of_a_closed_file_leaves_it_to_the_sweeper(tmp_path: Path) -> None:
    area = tmp_path / "area"
    area.mkdir(mode=0o700)
    (area / "taken").write_bytes(b"theirs")
    proc = subprocess.run(
        [sys.executable, "-c", _FAILED_PERSIST_THEN_CRASH, str(area)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent / "src")),
        timeout=60,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    orphan = Path(proc.stdout.strip())
    assert orphan.exists()
    (entry,) = sweep([str(area)]).entries
    assert (entry.path, entry.action) == (str(orphan), "removed")
    assert not orphan.exists()
    assert (area / "taken").read_bytes() == b"theirs"


def test_a_failed_persist_of_a_closed_file_restores_its_mark_in_process(tmp_path: Path) -> None:
    (tmp_path / "taken").write_bytes(b"theirs")
    with hardtemp.NamedTemporaryFile(dir=tmp_path, delete_on_close=False) as f:
        f.write(b"data")
        f.close()
        with pytest.raises(FileExistsError):
            f.persist_noclobber(tmp_path / "taken")
        fd = os.open(f.name, os.O_PATH)
        try:
            tag = _owner.read_mark(fd)
        finally:
            os.close(fd)
        assert tag is not None
        assert tag.pid == os.getpid()
        name = f.name
    assert not os.path.exists(name)  # still a temp file: removed at the end of the with
    assert (tmp_path / "taken").read_bytes() == b"theirs"


# -- close when the name no longer leads to our inode (issue 12 item 1, issue 10 finding 6) -------


def _held(name: str) -> int:
    """A read-only descriptor of the inode now at ``name``: sees what close leaves in it."""
    return os.open(name, os.O_RDONLY)


def _contents(fd: int) -> bytes:
    return os.pread(fd, os.fstat(fd).st_size, 0)


def _sed_i(name: str) -> None:
    """A real atomic save: sed writes a new file and renames it over the name."""
    subprocess.run(["sed", "-i", "s/A/B/", name], check=True)


@pytest.mark.parametrize("delete_on_close", [True, False])
def test_a_name_unlinked_before_close_is_still_overwritten_through_our_descriptor(
    tmp_path: Path, delete_on_close: bool
) -> None:
    data = b"SECRET" * 2000
    with hardtemp.NamedTemporaryFile(dir=tmp_path, delete_on_close=delete_on_close) as f:
        f.write(data)
        f.flush()
        seen = _held(f.name)
        os.unlink(f.name)  # by the caller or a program handed the name
        if not delete_on_close:
            f.close()  # then only the lock's duplicate still holds the inode
    try:
        left = _contents(seen)
        assert len(left) == len(data)
        assert b"SECRET" not in left  # overwritten, though no name led to it
    finally:
        os.close(seen)
    assert os.listdir(tmp_path) == []


def test_a_name_moved_away_to_keep_the_file_is_left_intact(tmp_path: Path) -> None:
    with hardtemp.NamedTemporaryFile(dir=tmp_path) as f:
        f.write(b"KEEP")
        f.flush()
        os.rename(f.name, tmp_path / "kept")
    assert (tmp_path / "kept").read_bytes() == b"KEEP"  # still linked: the user's now


def test_a_name_replaced_by_an_atomic_save_of_ours_is_wiped_and_removed_with_a_warning(
    tmp_path: Path,
) -> None:
    f = hardtemp.NamedTemporaryFile(dir=tmp_path)
    f.write(b"A-SECRET" * 1000)
    f.flush()
    original = _held(f.name)
    _sed_i(f.name)
    replacement = _held(f.name)
    try:
        assert _contents(replacement).startswith(b"B-SECRET")
        with pytest.warns(hardtemp.ReplacedFileWarning, match="ours was overwritten through"):
            f.close()  # the stdlib would just unlink; never UnsafeFileError for this
        assert os.listdir(tmp_path) == []
        assert b"SECRET" not in _contents(original)
        assert b"SECRET" not in _contents(replacement)
    finally:
        os.close(original)
        os.close(replacement)


def test_a_name_replaced_by_another_users_file_is_left_and_said_loudly(tmp_path: Path) -> None:
    require_root("to put another user's file at our name")
    f = hardtemp.NamedTemporaryFile(dir=tmp_path)
    f.write(b"A-SECRET" * 1000)
    f.flush()
    original = _held(f.name)
    _sed_i(f.name)
    os.chown(f.name, NOBODY, NOBODY)  # as if theirs (root put it there: out of scope)
    try:
        with pytest.raises(UnsafeFileError, match=f"uid {NOBODY}.*not ours to remove"):
            f.close()
        assert Path(f.name).read_bytes().startswith(b"B-SECRET")  # not ours: untouched
        assert b"SECRET" not in _contents(original)  # ours was wiped all the same
    finally:
        os.close(original)


def test_compat_exit_after_sed_i_does_not_raise_even_with_warnings_as_errors(
    tmp_path: Path,
) -> None:
    # click's edit() test: sed -i on a NamedTemporaryFile, in a suite run with -W error.
    import warnings

    from hardtemp import compat

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("error")
        with compat.NamedTemporaryFile(dir=tmp_path) as f:
            f.write(b"A")
            f.flush()
            _sed_i(f.name)
    assert os.listdir(tmp_path) == []
    (w,) = caught  # shown, not raised
    assert w.category is hardtemp.ReplacedFileWarning


def test_wrapper_attributes_are_cached_as_in_the_stdlib(tmp_path: Path) -> None:
    with hardtemp.NamedTemporaryFile(dir=tmp_path) as f:
        assert f.write is f.write  # one wrapper, built once (issue 16)
        assert "write" in vars(f)
        w = f.write
        w(b"abc")
        f.seek(0)
        assert f.read() == b"abc"
        assert f.closed is False
        assert "closed" not in vars(f)  # a bool is an int: not cached, it changes
    assert f.closed is True


@pytest.mark.parametrize("buffering", [-1, 0])  # a C method (BufferedRandom), a Python one
def test_wrapper_methods_carry_what_functools_wraps_would_copy(
    tmp_path: Path, buffering: int
) -> None:
    with hardtemp.NamedTemporaryFile(dir=tmp_path, buffering=buffering) as f:
        method, inner = f.write, f.file.write
        expected = functools.update_wrapper(lambda: None, inner)
        for attr in ("__module__", "__name__", "__qualname__", "__doc__", "__wrapped__"):
            assert getattr(method, attr) == getattr(expected, attr), attr
        assert set(vars(method)) == set(vars(expected)) | {"_closer"}


def test_a_mode_found_valid_before_is_still_checked_with_other_arguments(
    tmp_path: Path,
) -> None:
    # check_mode remembers modes valid with buffering=-1 and no text options: nothing else.
    for mode in ("w+b", "w+"):
        hardtemp.NamedTemporaryFile(mode, dir=tmp_path).close()
    with pytest.raises(TypeError):
        hardtemp.NamedTemporaryFile("w+b", buffering=-1.0, dir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unbuffered text"):
        hardtemp.NamedTemporaryFile("w+", buffering=0, dir=tmp_path)
    with pytest.raises(ValueError, match="encoding"):
        hardtemp.NamedTemporaryFile("w+b", encoding="utf-8", dir=tmp_path)
    with pytest.raises(ValueError, match="invalid mode"):
        hardtemp.NamedTemporaryFile("w+bb", dir=tmp_path)
    assert os.listdir(tmp_path) == []


def test_an_unlinked_file_in_append_mode_is_overwritten_through_a_second_descriptor(
    tmp_path: Path,
) -> None:
    # pwrite on O_APPEND appends: the overwrite goes through /proc/self/fd without it.
    f = hardtemp.NamedTemporaryFile(dir=tmp_path, buffering=0)
    fcntl.fcntl(f.fileno(), fcntl.F_SETFL, fcntl.fcntl(f.fileno(), fcntl.F_GETFL) | os.O_APPEND)
    f.write(b"SECRET" * 1000)
    seen = _held(f.name)
    os.unlink(f.name)
    try:
        f.close()
        left = _contents(seen)
        assert len(left) == 6000  # not grown by an appending overwrite
        assert b"SECRET" not in left
    finally:
        os.close(seen)


# -- descriptor hygiene: a finished object holds nothing of its directory (issue 11) -------------
# The umount proof on ext4 and tmpfs: tests/attack/test_attack_umount.py.


def _fds_in(d: Path) -> list[str]:
    out = []
    for n in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{n}")
            if target == str(d) or target.startswith(f"{d}/"):
                out.append(target)
    return out


def test_a_closed_kept_named_file_reopens_its_directory_to_persist(tmp_path: Path) -> None:
    f = hardtemp.NamedTemporaryFile(dir=tmp_path, delete=False)
    f.write(b"kept")
    f.close()
    assert _fds_in(tmp_path) == []
    assert f.persist(tmp_path / "final") == str(tmp_path / "final")
    assert (tmp_path / "final").read_bytes() == b"kept"
    assert _fds_in(tmp_path) == []  # released again after the persist


def test_a_failed_persist_after_close_leaves_nothing_pinned(tmp_path: Path) -> None:
    f = hardtemp.NamedTemporaryFile(dir=tmp_path, delete=False)
    f.close()
    (tmp_path / "taken").write_bytes(b"theirs")
    with pytest.raises(FileExistsError):
        f.persist_noclobber(tmp_path / "taken")
    assert _fds_in(tmp_path) == []
    assert os.path.exists(f.name)


def test_persist_after_close_refuses_a_directory_replaced_meanwhile(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir(mode=0o700)
    f = hardtemp.NamedTemporaryFile(dir=d, delete=False)
    f.close()
    os.rename(d, tmp_path / "moved")
    d.mkdir(mode=0o700)
    Path(d, os.path.basename(f.name)).write_bytes(b"impostor")  # same name, other directory
    with pytest.raises(UnsafeFileError, match="directory was replaced") as info:
        f.persist(tmp_path / "final")
    assert info.value.path == f.name
    assert not (tmp_path / "final").exists()
    assert _fds_in(tmp_path) == []


def test_a_named_file_removed_at_exit_holds_its_directory_until_then(tmp_path: Path) -> None:
    # delete_on_close=False: closed but not yet removed, it still needs the directory.
    with hardtemp.NamedTemporaryFile(dir=tmp_path, delete_on_close=False) as f:
        f.close()
        assert _fds_in(tmp_path) != []
        assert os.path.exists(f.name)
    assert not os.path.exists(f.name)
    assert _fds_in(tmp_path) == []


def test_a_kept_temporary_directory_can_still_be_cleaned_up_after_its_exit(tmp_path: Path) -> None:
    t = hardtemp.TemporaryDirectory(dir=tmp_path, delete=False)
    with t as name:
        Path(name, "f").write_bytes(b"x")
    assert _fds_in(tmp_path) == []  # neither its lock nor its parent's descriptor
    assert os.path.isdir(name)
    t.cleanup()  # as the stdlib: an explicit cleanup removes it
    assert not os.path.exists(name)
    t.cleanup()
    assert _fds_in(tmp_path) == []


def test_a_kept_temporary_directory_can_still_be_persisted_after_its_exit(tmp_path: Path) -> None:
    t = hardtemp.TemporaryDirectory(dir=tmp_path, delete=False)
    with t:
        pass
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError):
        t.persist(tmp_path / "taken")
    assert _fds_in(tmp_path) == []
    assert t.persist(tmp_path / "final") == str(tmp_path / "final")
    assert os.path.isdir(tmp_path / "final")
    assert _fds_in(tmp_path) == []


def test_cleanup_of_a_kept_directory_removed_meanwhile_is_quiet(tmp_path: Path) -> None:
    t = hardtemp.TemporaryDirectory(dir=tmp_path, delete=False)
    with t as name:
        pass
    os.rmdir(name)
    t.cleanup()  # FileNotFoundError ignored, as the stdlib's cleanup does


def test_a_released_directory_handle_is_never_the_current_directory(tmp_path: Path) -> None:
    # After release the descriptor is -1: a use fails with EBADF, never resolves via the cwd.
    f = hardtemp.NamedTemporaryFile(dir=tmp_path)
    f.close()
    made = f._state.made
    assert made.handle.fd == -1
    with pytest.raises(OSError) as info:
        os.stat(os.fsdecode(made.name), dir_fd=made.handle.fd)
    assert info.value.errno == errno.EBADF


# --- the system calls of one lifecycle (issue 13), read from a real tracer -------------------

_LIFECYCLE = """
import os, sys, hardtemp
d, kind = sys.argv[1], sys.argv[2]
def once():
    if kind == "named":
        with hardtemp.NamedTemporaryFile(dir=d) as f:
            f.write(b"x" * 1000)
    else:
        with hardtemp.TemporaryFile(dir=d, encrypt=False) as f:
            f.write(b"x" * 1000)
            f.seek(0)
            f.read()
for _ in range(3):
    once()  # warm-up: the sweep key, the mount watch, the filesystem's classification
os.write(1, b"BEGIN\\n")
once()
os.write(1, b"END\\n")
"""


def _lifecycle_calls(directory: Path, kind: str) -> list[str]:
    """The system calls of one warm lifecycle (``strace -f``), one ``name(args`` per line."""
    from _gates import require_tool

    require_tool("strace", "strace")
    for _ in range(5):
        calls = traced_calls(_LIFECYCLE, str(directory), kind)
        # Another process (un)mounted something meanwhile (this machine is shared): the
        # mount watch rightly forgot every classification, and asked again. Trace again.
        if not [c for c in calls if c.startswith("poll(") and " = 1 " in c + " "]:
            break
    return calls


def test_a_named_file_looks_at_its_name_once_at_close_and_asks_no_fstatfs(
    tmp_path: Path,
) -> None:
    # One statx of the name gives its inode, size and mount (root or not); the filesystem
    # facts come from the mount id (no fstatfs); no second look around the hiding rename
    # (the directory is trusted); no getpid.
    calls = _lifecycle_calls(tmp_path, "named")
    # The unlink (or a hiding rename, on a filesystem where one hides the name): where the
    # name is given up.
    rename = next(i for i, c in enumerate(calls) if c.startswith(("renameat2(", "unlinkat(")))
    first_write = next(i for i, c in enumerate(calls) if c.startswith("write("))
    # The layers over the new file (offset 0, regular) are built with no lseek at all.
    assert not [c for c in calls[:first_write] if c.startswith("lseek(")], calls
    made = next(c for c in calls if c.startswith("openat(") and "O_CREAT|O_EXCL" in c)
    name = made.split('"')[1]  # openat(dir, "tmpXXXX", O_RDWR|O_CREAT|O_EXCL...) = fd
    name_lookups = [c for c in calls if c.startswith(("newfstatat(", "statx(")) and name in c]
    assert len(name_lookups) == 1, calls
    assert calls.index(name_lookups[0]) < rename
    assert not [c for c in calls if c.startswith(("fstatfs(", "statfs("))], calls
    # The creating process's pid is known without asking (refreshed in a forked child).
    assert not [c for c in calls if c.startswith("getpid(")], calls
    # One geteuid: the trust check's; the sweep key is looked up for the euid it verified.
    assert len([c for c in calls if c.startswith("geteuid(")]) == 1, calls


@pytest.mark.parametrize("fs", ["tmpfs", "ext4", "btrfs", "xfs"])
def test_a_named_file_is_overwritten_and_unlinked_without_a_hiding_rename(
    small_tmpfs: Callable[[int], Path], loopfs: Callable[..., Any], fs: str
) -> None:
    # A rename to a random name before the unlink hides the name from no reader of these
    # filesystems' disks: tmpfs keeps names only in the dentry cache; on ext4, btrfs and xfs the
    # raw images show the name exactly where a plain unlink leaves it (the forensic names
    # suite). Where a rename still defends (a name that may be swapped: wipe() in any
    # directory) it stays: test_wipe.py's test_wipe_hides_the_name_before_unlinking.
    if fs == "tmpfs":
        where = small_tmpfs(1024)
    else:
        where = loopfs(fs).mountpoint
        os.chmod(where, 0o700)
    calls = _lifecycle_calls(where, "named")
    assert not [c for c in calls if c.startswith("rename")], calls
    (unlink,) = [c for c in calls if c.startswith("unlinkat(")]
    assert '"tmp' in unlink, calls
    assert calls.index(unlink) > max(i for i, c in enumerate(calls) if c.startswith("pwrite"))


def test_an_unnamed_plain_file_stats_its_descriptor_once_at_close_and_asks_no_fstatfs(
    tmp_path: Path,
) -> None:
    calls = _lifecycle_calls(tmp_path, "plain")
    made = next(c for c in calls if "O_TMPFILE" in c)  # openat(dir, ".", ...O_TMPFILE...) = fd
    fd = made.rsplit("=", 1)[1].strip()
    fstats = [c for c in calls if c.startswith((f'newfstatat({fd}, "",', f"fstat({fd},"))]
    # Creation (verify), FileIO's own, the read, and one at close (was 6: the size given
    # to the raw layer, and one fstat shared by the truncation check and the overwrite).
    assert len(fstats) <= 4, calls
    # The close's statx of the descriptor gives its mount: the filesystem's facts come from
    # the mount id (no fstatfs), never from st_dev alone.
    assert [c for c in calls if c.startswith(f'statx({fd}, ""')], calls
    assert not [c for c in calls if c.startswith(("fstatfs(", "statfs("))], calls
    assert not [c for c in calls if c.startswith("getpid(")], calls  # known, fork-refreshed
    # One geteuid, the trust check's: the new inode's owner is compared with its euid.
    assert len([c for c in calls if c.startswith("geteuid(")]) == 1, calls


@needs_root("for mount and unshare -m")
@pytest.mark.parametrize("where", ["disk", "tmpfs"])
def test_a_named_file_bind_mounted_over_its_own_name_is_refused_at_close(
    tmp_path: Path, where: str
) -> None:
    # The mount check reads the name's mount root from the one statx the close makes: a
    # bind mount over the name (here of the very same file, so the inode still matches) is
    # never overwritten or unlinked (issue 11), in a private mount namespace. On a tmpfs the
    # close takes the straight line of the common small file: it must refuse it too.
    from _gates import require_unshare

    require_unshare()
    code = (
        "import json, subprocess, sys, warnings, hardtemp\n"
        "from hardtemp.exceptions import UnsafeFileError\n"
        "f = hardtemp.NamedTemporaryFile(dir=sys.argv[1])\n"
        "f.write(b'kept'); f.flush()\n"
        "subprocess.run(['mount', '--bind', f.name, f.name], check=True)\n"
        "try:\n"
        "    f.close(); out = 'closed'\n"
        "except UnsafeFileError as exc:\n"
        "    out = str(exc)\n"
        "data = open(f.name, 'rb').read()\n"
        "subprocess.run(['umount', f.name], check=True)\n"
        "print(json.dumps([out, data.decode(), sorted(__import__('os').listdir(sys.argv[1]))]))\n"
    )
    work = tmp_path
    tmpfs = ""
    if where == "tmpfs":
        work = tmp_path / "ram"
        work.mkdir(mode=0o700)
        tmpfs = f"mount -t tmpfs -o mode=0700 tmpfs {work} && "  # gone with the namespace
    script = f'mount --make-rprivate / && {tmpfs}exec {sys.executable} -c "$0" {work}'
    out = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, code],
        env=dict(os.environ, PYTHONPATH=str(Path(hardtemp.__file__).parents[1])),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result, data, left = json.loads(out.stdout.splitlines()[-1])
    assert "is a mount point" in result, out
    assert data == "kept"  # neither overwritten...
    assert len(left) == 1  # ...nor unlinked


def test_an_unnamed_file_given_o_append_later_is_overwritten_without_proc(tmp_path: Path) -> None:
    # O_APPEND set on its descriptor by code it was handed to: pwrite would append and
    # leave every old byte. The close clears the flag on its own description; a second
    # descriptor through /proc/self/fd (the way before) fails where /proc is not mounted.
    require_unshare()
    code = textwrap.dedent(
        f"""
        import fcntl, os, hardtemp
        f = hardtemp.TemporaryFile(dir={str(tmp_path)!r}, encrypt=False)
        f.write(b"SECRET-O-APPEND-" * 64)
        f.flush()
        fd = f.fileno()
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
        keep = os.dup(fd)  # the inode outlives the close: look at it afterwards
        os.system("umount -l /proc")
        assert not os.path.exists("/proc/self")
        f.close()
        after = os.pread(keep, 2048, 0)
        print("size", os.fstat(keep).st_size, "left", after.count(b"SECRET"))
        """
    )
    private = 'mount --make-rprivate / && exec "$0" -c "$1"'
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", private, sys.executable, code],
        env=dict(os.environ, PYTHONPATH=str(Path(hardtemp.__file__).resolve().parents[1])),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["size", "1024", "left", "0"], done.stdout
