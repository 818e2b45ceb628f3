"""_remove.rmtree_at: error paths, read-only trees, races, on real filesystems.

Permission paths run in this very process with a dropped effective uid
(``as_euid``), so the kernel's real permission checks apply and coverage sees them.
Races (an entry vanishing or being swapped between the scan and the removal) are
made deterministic by doing the concurrent change from a wrapper around one of
the walk's steps: the change itself is a real filesystem operation.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import secrets
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import _gates
from _helpers_core import NOBODY, SRC, make_dir, nobody_dir, open_fds
from _helpers_euid import as_euid
from hardtemp import _dirsettle, _remove, _treefile
from hardtemp._fsinfo import fs_info_for_path
from hardtemp.exceptions import UnsafeFileError

needs_root = _gates.needs_root("for chattr, mount and setuid")


def _rmtree(
    parent: Path,
    name: str,
    *,
    expect: bool = True,
    onerror: Callable[[BaseException], None] | None = None,
) -> None:
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        ident = None
        if expect:
            st = os.lstat(parent / name)
            ident = (st.st_dev, st.st_ino)
        _remove.rmtree_at(fd, name, expect=ident, display_path=str(parent / name), onerror=onerror)
    finally:
        os.close(fd)


def _chattr(path: Path, flag: str) -> None:
    proc = subprocess.run(["chattr", flag, str(path)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"chattr {flag} is not possible here: {proc.stderr.strip()}")


@pytest.fixture
def immutable() -> Iterator[Callable[[Path], None]]:
    made: list[Path] = []

    def make(path: Path) -> None:
        _chattr(path, "+i")
        made.append(path)

    yield make
    for p in made:
        subprocess.run(["chattr", "-i", str(p)], check=False)


# --- the top directory ----------------------------------------------------------------------


def test_a_missing_top_raises_file_not_found_with_the_display_path(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(FileNotFoundError) as info:
            _remove.rmtree_at(fd, "gone", expect=None, display_path="/shown/gone")
    finally:
        os.close(fd)
    assert info.value.filename == "/shown/gone"


@pytest.mark.parametrize("kind", ["symlink", "file"])
def test_a_top_that_is_no_directory_raises_not_a_directory_and_is_kept(
    tmp_path: Path, kind: str
) -> None:
    target = make_dir(tmp_path / "target", 0o755)
    (target / "keep").write_bytes(b"keep")
    if kind == "symlink":
        (tmp_path / "top").symlink_to(target)
    else:
        (tmp_path / "top").write_bytes(b"a file")
    with pytest.raises(NotADirectoryError):
        _rmtree(tmp_path, "top", expect=False)
    assert os.path.lexists(tmp_path / "top")
    assert (target / "keep").read_bytes() == b"keep"


@needs_root
def test_top_in_an_immutable_parent_is_emptied_and_its_rmdir_error_raised(
    tmp_path: Path, immutable: Callable[[Path], None]
) -> None:
    parent = make_dir(tmp_path / "parent", 0o755)
    top = make_dir(parent / "top", 0o700)
    (top / "f").write_bytes(b"x")
    (top / "sub").mkdir()
    immutable(parent)
    with pytest.raises(PermissionError) as info:
        _rmtree(parent, "top")
    assert info.value.errno == errno.EPERM
    assert os.listdir(top) == []  # everything that could go went


@needs_root
def test_entries_added_to_the_top_after_its_scan_are_removed_in_another_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    top = make_dir(tmp_path / "top", 0o700)
    (top / "a").write_bytes(b"a")
    real = _remove._Tree._first_subdir_after_files
    added: list[str] = []

    def scan_then_add(self: Any, frame: Any, top_dev: int) -> Any:
        child = real(self, frame, top_dev)
        if child is None and frame.path == str(top) and not added:
            (top / "late").write_bytes(b"late")  # a concurrent writer, right after our scan
            added.append("late")
        return child

    monkeypatch.setattr(_remove._Tree, "_first_subdir_after_files", scan_then_add)
    _rmtree(tmp_path, "top")
    assert added == ["late"]
    assert not top.exists()


# --- subdirectories -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o700, 0o777], ids=["graveyard", "in-place"])
def test_entries_added_to_a_subdirectory_after_its_scan_are_removed_in_another_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int
) -> None:
    # On a disk a private subdirectory is moved into the top's graveyard when emptied (the
    # late entry then fails its removal, and the top's next round finds it); one others
    # can write is removed in place (its rmdir fails, and it is scanned again).
    top = make_dir(tmp_path / "top", 0o700)
    make_dir(top / "sub", mode)
    (top / "sub" / "f").write_bytes(b"f")
    real = _remove._Tree._first_subdir_after_files
    added: list[str] = []

    def scan_then_add(self: Any, frame: Any, top_dev: int) -> Any:
        child = real(self, frame, top_dev)
        if child is None and frame.name == "sub" and not added:
            (top / "sub" / "late").mkdir()
            added.append("late")
        return child

    monkeypatch.setattr(_remove._Tree, "_first_subdir_after_files", scan_then_add)
    errors: list[BaseException] = []
    _rmtree(tmp_path, "top", onerror=errors.append)
    assert added == ["late"]
    assert errors == []
    assert not top.exists()


def test_entries_that_vanish_meanwhile_are_not_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another remover deletes a file after our scan, and a whole emptied directory
    # before our rmdir: neither is an error, the result is what was wanted.
    top = make_dir(tmp_path / "top", 0o700)
    (top / "gone-file").write_bytes(b"x")
    (top / "sub").mkdir()
    (top / "sub" / "last").write_bytes(b"y")
    real = _remove._Tree.remove_file  # every file's removal, fast way or general way
    real_flush = _remove._Tree._flush_files  # the end of a directory's files
    seen: list[str] = []

    def racing(self: Any, dir_fd: int, name: str, parent: str, files: Any) -> bool:
        seen.append(name)
        if name == "gone-file":
            os.unlink(top / "gone-file")  # vanishes before we get to it
        return real(self, dir_fd, name, parent, files)

    def flushed(self: Any, frame: Any) -> None:
        # Once sub's files are gone (one written back meanwhile, by the flusher or another
        # process's sync, keeps its name until this batched sync: not before), the
        # emptied directory vanishes before our rmdir.
        real_flush(self, frame)
        if frame.name == "sub":
            os.rmdir(top / "sub")

    monkeypatch.setattr(_remove._Tree, "remove_file", racing)
    monkeypatch.setattr(_remove._Tree, "_flush_files", flushed)
    errors: list[BaseException] = []
    _rmtree(tmp_path, "top", onerror=errors.append)
    assert sorted(seen) == ["gone-file", "last"]
    assert errors == []
    assert not top.exists()


def test_a_subdirectory_swapped_for_a_symlink_after_the_scan_is_unlinked_not_entered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = make_dir(tmp_path / "outside", 0o755)
    (outside / "keep").write_bytes(b"keep")
    top = make_dir(tmp_path / "top", 0o700)
    (top / "sub").mkdir()
    real = _remove._open_subdir

    def swap_then_open(parent_fd: int, name: str, euid: int) -> tuple[int, Any] | None:
        if name == "sub":  # the attacker's swap, between our scan and our open
            os.rmdir(top / "sub")
            os.symlink(outside, top / "sub")
        return real(parent_fd, name, euid)

    monkeypatch.setattr(_remove, "_open_subdir", swap_then_open)
    errors: list[BaseException] = []
    _rmtree(tmp_path, "top", onerror=errors.append)
    assert errors == []
    assert not top.exists()
    assert (outside / "keep").read_bytes() == b"keep"


@needs_root
def test_a_subdirectory_that_cannot_be_removed_is_reported_once(
    tmp_path: Path, immutable: Callable[[Path], None]
) -> None:
    top = make_dir(tmp_path / "top", 0o700)
    (top / "a" / "b").mkdir(parents=True)
    (top / "c").mkdir()
    immutable(top / "a")  # neither b (in a) nor a itself can be removed: EPERM
    errors: list[BaseException] = []
    _rmtree(tmp_path, "top", onerror=errors.append)
    # Each failure reported once (not retried), and not again as "top is not empty".
    assert sorted(str(getattr(e, "filename", None)) for e in errors) == ["a", "b"], errors
    assert all(isinstance(e, PermissionError) and e.errno == errno.EPERM for e in errors)
    assert (top / "a" / "b").is_dir()
    assert os.listdir(top) == ["a"]


def test_an_onerror_that_raises_stops_the_walk_and_leaks_no_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    top = make_dir(tmp_path / "top", 0o700)
    deep = top / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "f").write_bytes(b"x")

    def failing(*args: Any, **kw: Any) -> Any:
        raise OSError(errno.EIO, "Input/output error")  # a disk error: cannot be made here

    monkeypatch.setattr(_remove, "remove_entry", failing)
    monkeypatch.setattr(_treefile.TreeFiles, "remove", failing)  # the fast way fails alike

    class Stop(Exception):
        pass

    def stop(exc: BaseException) -> None:
        raise Stop from exc

    before = open_fds()
    with pytest.raises(Stop):
        _rmtree(tmp_path, "top", onerror=stop)
    assert open_fds() == before
    assert (deep / "f").exists()


# --- read-only trees ------------------------------------------------------------------------


@needs_root
def test_read_only_and_unreadable_subdirectories_of_ours_are_removed(shared_dir: Path) -> None:
    base = nobody_dir(shared_dir)
    with as_euid(NOBODY):
        top = base / "top"
        top.mkdir(mode=0o700)
        for sub in ("ro/nested", "none/inner", "wx"):
            (top / sub).mkdir(parents=True)
        for sub in ("ro", "ro/nested", "none", "none/inner", "wx"):
            (top / sub / "f").write_bytes(b"x")
        for sub, mode in (("ro/nested", 0o500), ("ro", 0o500), ("none/inner", 0), ("none", 0)):
            os.chmod(top / sub, mode)
        os.chmod(top / "wx", 0o300)
        os.chmod(top, 0)  # even the top: unreadable
        _rmtree(base, "top")
        left = os.listdir(base)
    assert left == []


@needs_root
def test_another_users_unreadable_directory_inside_is_reported_never_chmodded(
    shared_dir: Path,
) -> None:
    base = nobody_dir(shared_dir)
    top = make_dir(base / "top", 0o700, NOBODY, NOBODY)
    (top / "mine").write_bytes(b"x")
    os.chown(top / "mine", NOBODY, NOBODY)
    theirs = make_dir(top / "theirs", 0o755)
    (theirs / "data").write_bytes(b"root's data")
    os.chmod(theirs, 0o000)  # root's, unreadable to us
    errors: list[BaseException] = []
    with as_euid(NOBODY):
        _rmtree(base, "top", onerror=errors.append)
    assert len(errors) == 1, [str(e) for e in errors]
    assert isinstance(errors[0], PermissionError)
    assert "another user's directory" in str(errors[0])
    assert stat.S_IMODE(os.stat(theirs).st_mode) == 0o000
    assert (theirs / "data").read_bytes() == b"root's data"
    assert os.listdir(top) == ["theirs"]


@needs_root
def test_a_read_only_filesystem_reports_every_entry_and_removes_nothing(
    loopfs: Callable[..., Any],
) -> None:
    fs = loopfs("ext4", size_mb=16)
    top = make_dir(fs.mountpoint / "top", 0o700)
    (top / "f").write_bytes(b"x")
    make_dir(top / "ro", 0o500)  # ours but read-only: its mode cannot be fixed on a ro fs
    subprocess.run(["mount", "-o", "remount,ro", str(fs.mountpoint)], check=True)
    errors: list[BaseException] = []
    _rmtree(fs.mountpoint, "top", onerror=errors.append)
    assert sorted(os.listdir(top)) == ["f", "ro"]
    # ro (its mode cannot be fixed), f (cannot be unlinked), top itself (cannot be removed).
    assert len(errors) == 3, [str(e) for e in errors]
    assert all(isinstance(e, OSError) and e.errno == errno.EROFS for e in errors)
    names = sorted(str(getattr(e, "filename", None)) for e in errors)
    assert names == sorted([str(top / "ro"), "f", "top"])  # every error says where
    assert stat.S_IMODE(os.stat(top / "ro").st_mode) == 0o500


@needs_root
def test_a_read_only_top_on_a_read_only_filesystem_raises_and_leaks_nothing(
    loopfs: Callable[..., Any],
) -> None:
    fs = loopfs("ext4", size_mb=16)
    top = make_dir(fs.mountpoint / "top", 0o500)
    subprocess.run(["mount", "-o", "remount,ro", str(fs.mountpoint)], check=True)
    before = open_fds()
    with pytest.raises(OSError) as info:
        _rmtree(fs.mountpoint, "top")
    assert info.value.errno == errno.EROFS
    assert open_fds() == before
    assert top.is_dir()


def test_unsafe_top_swapped_for_another_directory_is_refused(tmp_path: Path) -> None:
    top = make_dir(tmp_path / "top", 0o700)
    st = os.stat(top)
    os.rename(top, tmp_path / "ours-moved")  # keeps our inode alive: no number reuse
    impostor = make_dir(tmp_path / "top", 0o700)
    (impostor / "theirs").mkdir()
    impostor.chmod(0o500)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(UnsafeFileError):
            _remove.rmtree_at(fd, "top", expect=(st.st_dev, st.st_ino), display_path=str(top))
    finally:
        os.close(fd)
    assert (impostor / "theirs").is_dir()
    assert stat.S_IMODE(os.stat(impostor).st_mode) == 0o500
    impostor.chmod(0o700)  # an ordinary user's next run could not empty its basetemp


@needs_root
def test_an_unreadable_impostor_top_is_refused_before_its_mode_is_touched(
    shared_dir: Path,
) -> None:
    # The direct open fails (EACCES): the pinned way must still check the inode first.
    base = nobody_dir(shared_dir)
    with as_euid(NOBODY):
        top = base / "top"
        top.mkdir(mode=0o700)
        st = os.stat(top)
        os.rename(top, base / "ours-moved")  # keeps our inode alive: no number reuse
        impostor = base / "top"
        impostor.mkdir(mode=0o700)
        (impostor / "theirs").mkdir()
        impostor.chmod(0o000)
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with pytest.raises(UnsafeFileError):
                _remove.rmtree_at(fd, "top", expect=(st.st_dev, st.st_ino), display_path=str(top))
        finally:
            os.close(fd)
        mode = stat.S_IMODE(os.stat(impostor).st_mode)
        impostor.chmod(0o700)
        kept = (impostor / "theirs").is_dir()
    assert mode == 0o000
    assert kept


def test_running_out_of_descriptors_mid_walk_is_reported_and_leaks_nothing(
    tmp_path: Path,
) -> None:
    # Real EMFILE: the limit leaves room for the top directory and its listing only.
    top = make_dir(tmp_path / "top", 0o700)
    (top / "sub").mkdir()
    (top / "sub" / "f").write_bytes(b"x")
    os.chmod(top / "sub", 0o500)
    errors: list[BaseException] = []
    before = open_fds()
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    st = os.stat(top)
    # The two lowest free descriptor numbers (an earlier test may have left holes).
    first, second = os.dup(0), os.dup(0)
    os.close(first)
    os.close(second)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # top's O_PATH handle + its readable descriptor, then the listing's dup: no room for sub.
    resource.setrlimit(resource.RLIMIT_NOFILE, (second + 1, hard))
    try:
        _remove.rmtree_at(
            fd, "top", expect=(st.st_dev, st.st_ino), display_path=str(top), onerror=errors.append
        )
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        os.close(fd)
    assert [getattr(e, "errno", None) for e in errors] == [errno.EMFILE], errors
    assert open_fds() == before
    assert (top / "sub" / "f").read_bytes() == b"x"
    # Only the listing of sub found no descriptor left (sub itself was opened, and made
    # writable for its removal): nothing below it was removed.
    assert errors[0].filename == str(top / "sub")


# --- depth: a bounded number of descriptors, however deep ------------------------------------


def _deep_tree(top: Path, depth: int) -> list[str]:
    """``top/d/d/.../d``, a file at every level; returns the relative dir names, top down."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.close(os.open("f", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=fd))
            os.mkdir("d", dir_fd=fd)
            sub = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = sub
    finally:
        os.close(fd)
    return ["d"] * depth


def test_a_tree_deeper_than_the_descriptor_limit_is_removed(tmp_path: Path) -> None:
    # Real EMFILE territory: 600 levels under a limit of ~150 descriptors. Holding one
    # descriptor per level (as before) failed there and left the tree behind.
    top = make_dir(tmp_path / "top", 0o700)
    _deep_tree(top, 600)
    # The mount watch (per process, opened at the first filesystem look; under the lowered
    # limit below it would land at a low number) is not the walk's: opened first.
    fs_info_for_path(tmp_path)
    before = open_fds()
    probe = os.dup(0)
    os.close(probe)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (probe + _remove._MAX_OPEN_FRAMES + 80, hard))
    try:
        _rmtree(tmp_path, "top")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert not top.exists()
    assert open_fds() == before


def test_a_parked_directory_moved_out_of_the_tree_is_never_reentered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The move is a real rename, done when the walk reaches the bottom (deterministic).
    top = make_dir(tmp_path / "top", 0o700)
    depth = _remove._MAX_OPEN_FRAMES + 10
    _deep_tree(top, depth)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_bytes(b"theirs")
    level3 = top / "d" / "d" / "d"
    real = _remove._Tree.remove_file
    moved: list[bool] = []

    def move_then_remove(self: Any, dir_fd: int, name: str, parent: str, files: Any) -> bool:
        if not moved and parent.count("/d") == depth - 1:  # the deepest file
            os.rename(level3, outside / "d")  # level 3 (parked by now) leaves the tree
            moved.append(True)
        return real(self, dir_fd, name, parent, files)

    monkeypatch.setattr(_remove._Tree, "remove_file", move_then_remove)
    before = open_fds()
    with pytest.raises(UnsafeFileError, match="moved out of the tree"):
        _rmtree(tmp_path, "top")
    assert moved
    assert open_fds() == before
    assert (outside / "keep").read_bytes() == b"theirs"  # nothing outside touched
    assert (outside / "d").is_dir()  # what was moved out is not ours to finish removing


# --- mount points inside a tree, on every removal path (issue 11) ----------------------------

_MOUNT_SCRIPT = r"""
import json, os, signal, subprocess, sys
sys.path.insert(0, sys.argv[1])
import hardtemp
from hardtemp import _sweep
base, how, mark = sys.argv[2], sys.argv[3], sys.argv[4].encode()
outside = base + "/outside"
os.makedirs(outside + "/dir")
with open(outside + "/dir/keep", "wb") as f:
    f.write(mark)
with open(outside + "/file", "wb") as f:
    f.write(mark)
work = base + "/work"
os.mkdir(work, 0o700)

def populate(tree):
    os.makedirs(tree + "/sub/mnt")
    for name in ("sub/file", "plain"):
        with open(tree + "/" + name, "wb") as f:
            f.write(b"ours")
    # A directory and a file bind-mounted from the same filesystem: same st_dev.
    subprocess.run(["mount", "--bind", outside + "/dir", tree + "/sub/mnt"], check=True)
    subprocess.run(["mount", "--bind", outside + "/file", tree + "/sub/file"], check=True)

errors = []
if how == "tempdir":
    t = hardtemp.TemporaryDirectory(dir=work)
    tree = t.name
    populate(tree)
    try:
        t.cleanup()
    except OSError as exc:
        errors.append(str(exc))
elif how == "run":
    tree_file = base + "/tree-name"
    cmd = (
        'echo "$TMPDIR" > ' + tree_file + ' && mkdir -p "$TMPDIR/sub/mnt" && '
        'echo ours > "$TMPDIR/sub/file" && echo ours > "$TMPDIR/plain" && '
        'mount --bind ' + outside + '/dir "$TMPDIR/sub/mnt" && '
        'mount --bind ' + outside + '/file "$TMPDIR/sub/file"'
    )
    out = subprocess.run(
        [sys.executable, "-m", "hardtemp", "run", "--dir", work, "--", "sh", "-c", cmd],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=sys.argv[1]),
    )
    errors.append(f"status {out.returncode}: {out.stderr.strip()}")
    tree = open(tree_file).read().strip()
elif how == "wipe-r":
    tree = work + "/tree"
    os.mkdir(tree)
    populate(tree)
    out = subprocess.run(
        [sys.executable, "-m", "hardtemp", "wipe", "-r", "--color", "never", tree],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=sys.argv[1]),
    )
    errors.append(f"status {out.returncode}: {out.stdout.strip()} {out.stderr.strip()}")
elif how == "sweep":
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        t = hardtemp.TemporaryDirectory(dir=work)
        os.write(w, t.name.encode())
        os.kill(os.getpid(), signal.SIGKILL)
    os.close(w)
    tree = os.read(r, 4096).decode()
    os.waitpid(pid, 0)
    populate(tree)
    result = _sweep.sweep([work])
    errors.extend(f"{e.path}: {e.reason}" for e in result.failed)
keep = open(outside + "/dir/keep", "rb").read()
theirs = open(outside + "/file", "rb").read()
left = sorted(
    os.path.relpath(os.path.join(d, n), tree) for d, ds, fs in os.walk(tree) for n in ds + fs
)
for m in ("sub/mnt", "sub/file"):
    subprocess.run(["umount", tree + "/" + m], check=False)
print(json.dumps({"dir_intact": keep == mark, "file_intact": theirs == mark, "left": left,
                  "errors": errors}))
"""


def _remove_with_bind_mounts(tmp_path: Path, how: str) -> dict[str, Any]:
    """Run one removal path in a private mount namespace with real bind mounts inside."""
    _gates.require_unshare()
    mark = "HARDTEMP-MARKER-" + secrets.token_hex(16)
    script = 'mount --make-rprivate / && exec "$0" -c "$1" "$2" "$3" "$4" "$5"'
    args = [sys.executable, _MOUNT_SCRIPT, SRC, str(tmp_path), how, mark]
    out = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    return result


@needs_root
@pytest.mark.parametrize("how", ["tempdir", "run", "wipe-r", "sweep"])
def test_bind_mounted_directories_and_files_inside_a_tree_are_never_touched_and_reported(
    tmp_path: Path, how: str
) -> None:
    result = _remove_with_bind_mounts(tmp_path, how)
    assert result["dir_intact"], result
    assert result["file_intact"], result  # st_dev alone cannot see a file bind mount
    # Only the mount points (and the directory holding them) stay; the rest is gone.
    assert result["left"] == ["sub", "sub/file", "sub/mnt", "sub/mnt/keep"], result
    said = " ".join(result["errors"])
    if how != "wipe-r":  # cleanup raises (and run/sweep report) the first error met
        assert "is a mount point" in said, result
    else:  # wipe -r lists every error
        assert "sub/mnt: is a mount point" in said, result
        assert "sub/file: is a mount point" in said, result


# --- hostile trees: any depth with bounded descriptors (issue 11) ----------------------------

_DEEP_SCRIPT = r"""
import os, resource, signal, sys
sys.path.insert(0, sys.argv[1])
import hardtemp
from hardtemp import _sweep
how, base, depth = sys.argv[2], sys.argv[3], int(sys.argv[4])
# The usual per-process limit: a walk holding one descriptor per level dies at ~1,020.
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))

def build(top):
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):  # by descriptor: the path itself would exceed PATH_MAX
        os.mkdir("d", dir_fd=fd)
        with open("f", "wb", opener=lambda p, fl: os.open(p, fl, 0o600, dir_fd=fd)) as f:
            f.write(b"plaintext")
        sub = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = sub
    os.close(fd)

if how == "tempdir":
    t = hardtemp.TemporaryDirectory(dir=base)
    build(t.name)
    t.cleanup()
    print("left", os.listdir(base))
else:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        t = hardtemp.TemporaryDirectory(dir=base)
        os.write(w, t.name.encode())
        os.kill(os.getpid(), signal.SIGKILL)
    os.close(w)
    name = os.read(r, 4096).decode()
    os.waitpid(pid, 0)
    build(name)
    result = _sweep.sweep([base])
    print("failed", [e.reason for e in result.failed])
    print("left", os.listdir(base))
"""


@pytest.mark.parametrize("how", ["tempdir", "sweep"])
def test_a_tree_deeper_than_the_descriptor_limit_is_removed_entirely(
    tmp_path: Path, how: str
) -> None:
    # An untrusted tarball with 1,100 nested directories, under `ulimit -n 1024`.
    base = make_dir(tmp_path / "base", 0o700, os.geteuid(), os.getegid())
    out = subprocess.run(
        [sys.executable, "-c", _DEEP_SCRIPT, SRC, how, str(base), "1100"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines()[-1] == "left []", out.stdout[-2000:]
    if how == "sweep":
        assert "failed []" in out.stdout


def test_a_subtree_moved_out_mid_walk_is_reported_and_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With one descriptor kept open, the walk reopens parents by "..": when the subtree it
    # is in was moved elsewhere meanwhile, ".." is no longer the parent it left, and the
    # walk stops rather than remove through the moved chain.
    monkeypatch.setattr(_remove, "_MAX_OPEN_FRAMES", 1)
    top = make_dir(tmp_path / "top", 0o700)
    (top / "a" / "b" / "c").mkdir(parents=True)
    elsewhere = make_dir(tmp_path / "elsewhere", 0o700)
    (elsewhere / "keep").write_bytes(b"keep")
    real = _remove._Tree._first_subdir_after_files
    moved: list[str] = []

    def move_when_deepest(self: Any, frame: Any, top_dev: int) -> Any:
        child = real(self, frame, top_dev)
        if child is None and frame.name == "c" and not moved:
            os.rename(top / "a" / "b" / "c", elsewhere / "c")  # the subtree leaves the tree
            moved.append("c")
        return child

    monkeypatch.setattr(_remove._Tree, "_first_subdir_after_files", move_when_deepest)
    errors: list[BaseException] = []
    _rmtree(tmp_path, "top", onerror=errors.append)
    assert moved == ["c"]
    assert [type(e) for e in errors] == [UnsafeFileError], errors
    assert "was moved out of the tree during removal" in str(errors[0])
    assert (elsewhere / "keep").read_bytes() == b"keep"
    assert (elsewhere / "c").is_dir()
    assert (top / "a" / "b").is_dir()


def test_without_the_mount_root_attribute_remove_entry_compares_mount_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A kernel before 5.8 (no STATX_ATTR_MOUNT_ROOT) cannot be caused here: the answer is
    # replaced by "unknown"; the real mount ids are then compared, and a plain file goes.
    real = _remove.mount_root_at
    asked: list[str] = []

    def unknown(dir_fd: int, name: str) -> tuple[int, bool | None]:
        asked.append(name)
        return real(dir_fd, name)[0], None

    monkeypatch.setattr(_remove, "mount_root_at", unknown)
    (tmp_path / "f").write_bytes(b"secret")
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        report = _remove.remove_entry(dfd, "f")
    finally:
        os.close(dfd)
    assert asked == ["f"]
    assert report.removed
    assert os.listdir(tmp_path) == []


# --- the graveyard: one settle per tree on a disk (issue 13) --------------------------------


def _count_settles(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every settle of the next removals, recorded; the real one (syncfs) still runs, and on
    a RAM filesystem (where none is needed) a no-op one is forced, so the walk is the same."""
    calls: list[int] = []

    def counted(info: Any) -> Callable[[int], None]:
        real = _dirsettle.settler_for(info)

        def settle(fd: int) -> None:
            calls.append(fd)
            if real is not None:
                real(fd)

        return settle

    monkeypatch.setattr(_remove, "settler_for", counted)
    return calls


def _taken(
    monkeypatch: pytest.MonkeyPatch, after: Callable[[str], None] | None = None
) -> list[str]:
    """The names of the directories moved into the graveyard (each a real rename)."""
    names: list[str] = []
    real = _dirsettle.Graveyard.take

    def take(self: Any, parent_fd: int, name: str, fd: int = -1) -> bool:
        moved: bool = real(self, parent_fd, name, fd)
        if moved:
            names.append(name)
            if after is not None:
                after(self._graves[-1])
        return moved

    monkeypatch.setattr(_dirsettle.Graveyard, "take", take)
    return names


def test_a_deep_tree_on_a_disk_is_settled_once_not_once_per_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_settles(monkeypatch)
    taken = _taken(monkeypatch)
    top = make_dir(tmp_path / "top", 0o700)
    _deep_tree(top, _remove._MAX_OPEN_FRAMES + 20)  # parked parents reopened on the way up
    make_dir(tmp_path / "warm", 0o700)
    _rmtree(tmp_path, "warm")  # the per-process caches (the mount table's descriptor) filled
    calls.clear()
    before = open_fds()
    _rmtree(tmp_path, "top")
    assert not top.exists()
    assert len(taken) == _remove._MAX_OPEN_FRAMES + 20
    assert len(calls) == 1  # before: one per directory (85 here)
    assert open_fds() == before


def test_the_graveyard_is_settled_and_emptied_every_few_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_dirsettle, "_GRAVES", 2)  # bounded: the top grows by 2 names at most
    calls = _count_settles(monkeypatch)
    top = make_dir(tmp_path / "top", 0o700)
    for i in range(5):
        (top / f"d{i}").mkdir()
    graves_seen: list[int] = []
    real_bury = _dirsettle.Graveyard.bury

    def bury(self: Any) -> list[OSError]:
        graves_seen.append(len([n for n in os.listdir(top) if n.startswith(".ht-")]))
        return real_bury(self)

    monkeypatch.setattr(_dirsettle.Graveyard, "bury", bury)
    _rmtree(tmp_path, "top")
    assert not top.exists()
    assert graves_seen == [2, 2, 1]
    assert len(calls) == 3


def test_directories_others_can_write_are_removed_in_place_never_moved_into_the_top(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A directory with a group/other write bit may hold (or be given, right after our scan)
    # another user's entries; moving it into our 0700 top would put them out of their
    # reach. Nor is a directory of ours moved out of such a parent: another user could have
    # swapped a directory of theirs in under its name.
    calls = _count_settles(monkeypatch)
    taken = _taken(monkeypatch)
    top = make_dir(tmp_path / "top", 0o700)
    shared = make_dir(top / "shared", 0o777)
    (shared / "mine").mkdir()
    (shared / "f").write_bytes(b"x")
    (top / "own").mkdir()
    _rmtree(tmp_path, "top")
    assert not top.exists()
    assert taken == ["own"]  # the private one was moved: the graveyard is in use here
    assert len(calls) == 3  # shared and mine settled in place, then the top's one


def test_a_grave_name_taken_already_removes_the_directory_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # RENAME_NOREPLACE refuses (EEXIST, from the kernel): the directory is settled and
    # removed where it is. Every grave gets the same name here so the second one collides.
    monkeypatch.setattr(_dirsettle, "random_name", lambda: "samename")
    calls = _count_settles(monkeypatch)
    taken = _taken(monkeypatch)
    top = make_dir(tmp_path / "top", 0o700)
    (top / "a").mkdir()
    (top / "b").mkdir()
    errors: list[BaseException] = []
    _rmtree(tmp_path, "top", onerror=errors.append)
    assert errors == []
    assert not top.exists()
    assert len(taken) == 1
    assert len(calls) == 2  # the one removed in place, then the tree's one


def test_a_grave_that_is_refilled_or_removed_meanwhile_is_handled_by_the_next_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _count_settles(monkeypatch)  # a graveyard even where tmp_path is on tmpfs
    top = make_dir(tmp_path / "top", 0o700)
    for name in ("a", "b"):
        (top / name).mkdir()
    done: list[str] = []

    def meddle(grave: str) -> None:
        if not done:  # an entry added to the first after it was emptied (a writer of ours)
            (top / grave / "late").write_bytes(b"late")
        else:  # the second removed by someone else before our rmdir
            os.rmdir(top / grave)
        done.append(grave)

    _taken(monkeypatch, meddle)
    errors: list[BaseException] = []
    _rmtree(tmp_path, "top", onerror=errors.append)
    assert errors == []
    assert len(done) == 3  # a, b, then the refilled grave once emptied by the next round
    assert not top.exists()


@needs_root
def test_a_grave_that_cannot_be_removed_is_reported_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, immutable: Callable[[Path], None]
) -> None:
    _count_settles(monkeypatch)  # a graveyard even where tmp_path is on tmpfs
    top = make_dir(tmp_path / "top", 0o700)
    (top / "a").mkdir()
    graves: list[str] = []

    def freeze(grave: str) -> None:
        graves.append(grave)
        immutable(top / grave)  # rmdir of it: EPERM, a real refusal

    _taken(monkeypatch, freeze)
    errors: list[BaseException] = []
    _rmtree(tmp_path, "top", onerror=errors.append)
    assert [type(e) for e in errors] == [PermissionError], errors
    assert getattr(errors[0], "filename", None) == f"{top}/{graves[0]}"
    assert os.listdir(top) == graves  # reported, not retried; nothing else left


def test_an_interrupt_mid_walk_still_settles_and_removes_the_graveyard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A KeyboardInterrupt raised where a signal handler would raise it: in the walk, after
    # one directory was moved into the graveyard. Nothing held there is left behind.
    calls = _count_settles(monkeypatch)
    taken = _taken(monkeypatch)
    top = make_dir(tmp_path / "top", 0o700)
    for name in ("a", "b"):
        (top / name).mkdir()
        (top / name / "f").write_bytes(b"x")
    real = _remove._Tree._first_subdir_after_files

    def interrupt(self: Any, frame: Any, top_dev: int) -> Any:
        if frame.name in ("a", "b") and taken:  # the second of them, on its first visit
            raise KeyboardInterrupt
        return real(self, frame, top_dev)

    monkeypatch.setattr(_remove._Tree, "_first_subdir_after_files", interrupt)
    before = open_fds()
    with pytest.raises(KeyboardInterrupt):
        _rmtree(tmp_path, "top")
    assert len(taken) == 1
    assert len(calls) == 1
    # The grave of the first went; the second was not reached (its file is still there).
    assert os.listdir(top) == [n for n in ("a", "b") if n not in taken]
    assert os.listdir(top / os.listdir(top)[0]) == ["f"]
    assert open_fds() == before


@needs_root
def test_a_directory_swapped_in_by_another_user_is_neither_moved_nor_emptied(
    shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The attack, for real: another user who can write a shared (0777, not sticky)
    # subdirectory of our tree renames our emptied directory aside and puts a directory of
    # theirs, with their data, under its name, before we remove it. Moving "it" into our
    # 0700 top (the graveyard) would move theirs out of their reach, and the top's next
    # round would then delete their data; rescanning ours (empty) would retry 1,000 times.
    _count_settles(monkeypatch)  # a graveyard even where tmp_path is on tmpfs
    top = make_dir(shared_dir / "top", 0o711)  # private, but the other user may pass through
    shared = make_dir(top / "shared", 0o777)
    (shared / "mine").mkdir(mode=0o700)
    (shared / "mine" / "f").write_bytes(b"ours")
    real = _remove._Tree._first_subdir_after_files
    swapped: list[bool] = []

    def swap_when_emptied(self: Any, frame: Any, top_dev: int) -> Any:
        child = real(self, frame, top_dev)
        if child is None and frame.name == "mine" and not swapped:
            with as_euid(NOBODY):
                os.rename(shared / "mine", shared / "aside")
                (shared / "mine").mkdir()
                (shared / "mine" / "theirs").write_bytes(b"their data")
            swapped.append(True)
        return child

    monkeypatch.setattr(_remove._Tree, "_first_subdir_after_files", swap_when_emptied)
    errors: list[BaseException] = []
    _rmtree(shared_dir, "top", onerror=errors.append)
    assert swapped
    assert (shared / "mine" / "theirs").read_bytes() == b"their data"
    assert [type(e) for e in errors] == [UnsafeFileError], errors
    assert "was replaced by another directory" in str(errors[0])
    assert [n for n in os.listdir(top) if n.startswith(".ht-")] == []


_KILLED_SCRIPT = r"""
import os, signal, sys
sys.path.insert(0, sys.argv[1])
import hardtemp
from hardtemp import _dirsettle, _remove, _sweep
base = sys.argv[2]
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    t = hardtemp.TemporaryDirectory(dir=base)
    for sub in ("a/b", "c/d"):
        os.makedirs(f"{t.name}/{sub}")
        with open(f"{t.name}/{sub}/f", "wb") as f:
            f.write(b"plaintext")
    os.write(w, t.name.encode())
    real = _dirsettle.Graveyard.take
    _remove.settler_for = lambda info: (lambda fd: None)  # a graveyard even on tmpfs
    def take(self, parent_fd, name, fd=-1):
        moved = real(self, parent_fd, name, fd)
        if len(self._graves) == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # mid-cleanup, graves held, no sync yet
        return moved
    _dirsettle.Graveyard.take = take
    t.cleanup()
    os._exit(3)
os.close(w)
name = os.read(r, 4096).decode()
_, status = os.waitpid(pid, 0)
print("killed", os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL)
print("graves", sum(n.startswith(".ht-") for n in os.listdir(name)))
result = _sweep.sweep([base])
print("failed", [e.reason for e in result.failed])
print("left", os.listdir(base))
"""


def test_a_cleanup_killed_while_directories_wait_in_the_graveyard_is_finished_by_sweep(
    tmp_path: Path,
) -> None:
    # SIGKILL, for real, after two emptied directories were moved into the top and before
    # the one sync: they stay there, empty, under random names; the top keeps its sweep
    # mark, so `hardtemp sweep` removes the rest once the process is gone.
    base = make_dir(tmp_path / "base", 0o700, os.geteuid(), os.getegid())
    out = subprocess.run(
        [sys.executable, "-c", _KILLED_SCRIPT, SRC, str(base)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines == ["killed True", "graves 2", "failed []", "left []"], out.stdout
