"""hardtemp._sweep: removes orphans of dead hardtemp processes, and nothing else.

Real processes (killed with SIGKILL), real locks, real extended attributes, a
real other user; marks are written with a chosen creator tag (with our real
key) only to stand for what cannot be caused here (a reboot, a reused pid).
The attacks (forged marks, namespaces, temp cleaners) are in
tests/attack/test_attack_sweep.py.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import tempfile as std_tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _gates import require_root
from _helpers_core import NOBODY
from hardtemp import _owner
from hardtemp._codes import Reason, SweepReason
from hardtemp._sweep import sweep

SRC = str(Path(__file__).resolve().parent.parent / "src")

CHILD = r"""
import sys, hardtemp
d = sys.argv[1]
f = hardtemp.NamedTemporaryFile(dir=d, prefix="child-")
f.write(b"child secret"); f.flush()
t = hardtemp.TemporaryDirectory(dir=d, prefix="child-")
with open(t.name + "/inner", "w") as g:
    g.write("child secret")
print(f.name, t.name, flush=True)
sys.stdin.read()
"""


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=SRC)


class Child:
    """A live hardtemp process holding a NamedTemporaryFile and a TemporaryDirectory."""

    def __init__(self, where: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(where)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_env(),
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        assert len(line) == 2, "the child did not report its temp files"
        self.file, self.dir = Path(line[0]), Path(line[1])

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        assert self.proc.returncode == -signal.SIGKILL

    def finish(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def area() -> Iterator[Path]:
    """A private (trusted) directory to sweep, so the real /tmp is never touched."""
    d = Path(std_tempfile.mkdtemp(prefix="ht-sweep-"))
    yield d
    subprocess.run(["rm", "-rf", "--one-file-system", str(d)], check=False)


def _plain_file(path: Path, data: bytes = b"data") -> Path:
    path.write_bytes(data)
    return path


def _mark(path: Path, tag: _owner.OwnerTag | bytes) -> None:
    """A valid mark (our key, bound to ``path``) with the creator ``tag``, no lock held."""
    raw = tag if isinstance(tag, bytes) else tag.encode()
    pfd = os.open(path, os.O_PATH | os.O_NOFOLLOW)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert _owner.write_mark(pfd, dfd, path.name, raw)
    finally:
        os.close(pfd)
        os.close(dfd)


def _dead_tag() -> _owner.OwnerTag:
    """The tag of a process that has exited (its pid is not running)."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(proc.stdout)
    assert not Path(f"/proc/{pid}").exists()
    return _owner.OwnerTag(_owner._BOOT_ID, pid, "12345")


def _start_time(pid: int) -> str:
    st = _owner._start_time(pid)
    assert st is not None
    return st


def test_sweep_removes_a_sigkilled_owners_entries_and_keeps_a_live_owners(area: Path) -> None:
    dead, live = Child(area), Child(area)
    try:
        dead.kill()
        result = sweep([str(area)])
        assert not dead.file.exists()
        assert not dead.dir.exists()
        assert live.file.exists()
        assert (live.dir / "inner").read_text() == "child secret"
        removed = {e.path: e for e in result.entries if e.action == "removed"}
        assert set(removed) == {str(dead.file), str(dead.dir)}
        assert removed[str(dead.file)].kind == "file"
        assert removed[str(dead.dir)].kind == "directory"
        assert removed[str(dead.file)].reason == (
            f"pid {dead.proc.pid} no longer runs, and no process holds its lock"
        )
        assert removed[str(dead.file)].code == SweepReason.ORPHAN
        assert {e.code for e in result.entries if e.action == "kept"} == {SweepReason.LOCKED}
        kept = {e.path: e.reason for e in result.entries if e.action == "kept"}
        assert kept == {
            str(live.file): "locked: a live process holds it",
            str(live.dir): "locked: a live process holds it",
        }
    finally:
        live.finish()
        dead.finish()
    # The live owner cleans up its own as usual.
    assert not live.file.exists()
    assert not live.dir.exists()


def test_sweep_dry_run_removes_nothing(area: Path) -> None:
    dead = Child(area)
    dead.kill()
    result = sweep([str(area)], dry_run=True)
    assert dead.file.exists()
    assert dead.dir.exists()
    assert {e.action for e in result.entries} == {"would remove"}
    dead.finish()


def test_sweep_leaves_entries_without_a_valid_mark_untouched(area: Path) -> None:
    plain = _plain_file(area / "tmpplainfile")
    (area / "tmpplaindir").mkdir()
    _plain_file(area / "tmpplaindir" / "inside")
    bad = _plain_file(area / "badmark")
    os.setxattr(bad, _owner.OWNER_XATTR, b"not a tag")
    # The unauthenticated mark of earlier versions: anyone who can write the file can forge it.
    old = _plain_file(area / "oldmark")
    dead = _dead_tag()
    os.setxattr(old, _owner.OWNER_XATTR, f"{dead.boot_id} {dead.pid} {dead.start_time}".encode())
    # This version's tag alone, without its MAC.
    bare = _plain_file(area / "baretag")
    os.setxattr(bare, _owner.OWNER_XATTR, dead.encode())
    result = sweep([str(area)])
    assert plain.read_bytes() == b"data"
    assert (area / "tmpplaindir" / "inside").exists()
    assert bad.exists()
    assert old.exists()
    assert bare.exists()
    assert result.entries == []
    assert result.unmarked == 5


def test_sweep_sees_through_pid_reuse_a_live_pid_with_another_start_time(area: Path) -> None:
    # A live process now holds the pid the mark names: the start time tells them apart.
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        reused = _plain_file(area / "reused")
        _mark(reused, _owner.OwnerTag(_owner._BOOT_ID, sleeper.pid, "1"))
        honest = _plain_file(area / "honest")
        _mark(honest, _owner.OwnerTag(_owner._BOOT_ID, sleeper.pid, _start_time(sleeper.pid)))
        result = sweep([str(area)])
        assert not reused.exists()
        assert honest.exists()  # the second opinion: its creator runs, though not locked
        actions = {e.path: (e.action, e.reason) for e in result.entries}
        assert actions == {
            str(reused): (
                "removed",
                f"pid {sleeper.pid} was reused by another process (start time differs), "
                "and no process holds its lock",
            ),
            str(honest): ("kept", f"not locked, but creator pid {sleeper.pid} runs"),
        }
    finally:
        sleeper.kill()
        sleeper.wait()


def test_sweep_removes_marks_from_a_previous_boot_even_if_the_pid_lives(area: Path) -> None:
    me = os.getpid()
    old = _plain_file(area / "old-boot")
    _mark(old, _owner.OwnerTag("00000000-0000-0000-0000-000000000000", me, _start_time(me)))
    result = sweep([str(area)])
    assert not old.exists()
    assert "reboot" in result.entries[0].reason


def test_sweep_keeps_an_unlocked_entry_whose_creator_still_runs(area: Path) -> None:
    # E.g. user code released the lock with flock(LOCK_UN): the pid still protects it.
    mine = _plain_file(area / "mine")
    _mark(mine, _owner.current_tag())
    result = sweep([str(area)])
    assert mine.exists()
    assert [(e.action, e.reason) for e in result.entries] == [
        ("kept", f"not locked, but creator pid {os.getpid()} runs")
    ]


def test_sweep_keeps_a_locked_entry_whatever_its_mark_says(area: Path) -> None:
    held = _plain_file(area / "held")
    _mark(held, _dead_tag())
    # Any process holding the lock (here flock(1), shared, as hardtemp's own) keeps it.
    holder = subprocess.Popen(["flock", "--shared", "--no-fork", str(held), "sleep", "60"])
    try:
        for _ in range(100):
            result = sweep([str(area)], dry_run=True)
            if result.entries[0].action == "kept":
                break
            time.sleep(0.05)
        result = sweep([str(area)])
        assert held.read_bytes() == b"data"
        assert [(e.action, e.reason) for e in result.entries] == [
            ("kept", "locked: a live process holds it")
        ]
    finally:
        holder.kill()
        holder.wait()
    assert [e.action for e in sweep([str(area)]).entries] == ["removed"]
    assert not held.exists()


def test_sweep_never_follows_a_symlink(area: Path, tmp_path: Path) -> None:
    # Dead-marked targets outside the swept directory, reached only through symlinks.
    target_file = _plain_file(tmp_path / "target-file", b"keep me")
    _mark(target_file, _dead_tag())
    target_dir = tmp_path / "target-dir"
    target_dir.mkdir()
    _plain_file(target_dir / "inside", b"keep me")
    _mark(target_dir, _dead_tag())
    (area / "link-to-file").symlink_to(target_file)
    (area / "link-to-dir").symlink_to(target_dir)
    result = sweep([str(area)])
    assert target_file.read_bytes() == b"keep me"
    assert (target_dir / "inside").read_bytes() == b"keep me"
    assert (area / "link-to-file").is_symlink()
    assert (area / "link-to-dir").is_symlink()
    assert result.entries == []


def test_sweep_of_a_dead_directory_does_not_follow_symlinks_inside_it(
    area: Path, tmp_path: Path
) -> None:
    outside = _plain_file(tmp_path / "outside", b"keep me")
    dead = area / "deaddir"
    dead.mkdir(mode=0o700)
    (dead / "link").symlink_to(outside)
    (dead / "sub").mkdir()
    (dead / "sub" / "link").symlink_to(tmp_path)
    _mark(dead, _dead_tag())
    sweep([str(area)])
    assert not dead.exists()
    assert outside.read_bytes() == b"keep me"


FORKED_CHILD = r"""
import os, sys, hardtemp
d = sys.argv[1]
f = hardtemp.NamedTemporaryFile(dir=d, prefix="fork-")
f.write(b"shared secret"); f.flush()
t = hardtemp.TemporaryDirectory(dir=d, prefix="fork-")
r, w = os.pipe()
if os.fork() == 0:  # the child inherits the lock descriptors and keeps working
    os.read(r, 1)  # (it holds w too: its parent's death is no EOF)
    os._exit(0)
print(f.name, t.name, flush=True)
sys.stdin.read()
"""


def test_sweep_keeps_a_sigkilled_owners_entries_while_its_forked_child_lives(area: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", FORKED_CHILD, str(area)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=_env(),
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    names = [Path(n) for n in proc.stdout.readline().split()]
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    children = [int(c) for c in children]
    assert len(children) == 1
    proc.kill()
    proc.wait()
    try:
        result = sweep([str(area)])
        assert all(n.exists() for n in names)
        assert {(e.path, e.action) for e in result.entries} == {(str(n), "kept") for n in names}
    finally:
        os.kill(children[0], signal.SIGKILL)
        proc.stdin.close()
        proc.stdout.close()
    for _ in range(100):  # the child is reaped by init: wait until its descriptors are gone
        if not Path(f"/proc/{children[0]}").exists():
            break
        time.sleep(0.05)
    result = sweep([str(area)])
    assert {(e.path, e.action) for e in result.entries} == {(str(n), "removed") for n in names}
    assert os.listdir(area) == []


def test_sweep_skips_an_untrusted_directory(tmp_path: Path) -> None:
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    os.chmod(hostile, 0o777)  # writable by everyone, no sticky bit
    victim = _plain_file(hostile / "dead")
    _mark(victim, _dead_tag())
    result = sweep([str(hostile)])
    assert victim.exists()
    assert result.skipped_dirs
    path, reason = result.skipped_dirs[0]
    assert path == str(hostile)
    assert reason.code == SweepReason.DIR_UNTRUSTED
    assert "without the sticky bit" in reason  # the rule it broke, named for people


def test_sweep_reports_missing_directories_and_rejects_bad_names(area: Path) -> None:
    result = sweep([str(area / "nope")])
    assert result.skipped_dirs == []
    assert result.missing_dirs == [str(area / "nope")]
    with pytest.raises(ValueError, match="invalid directory name"):
        sweep(["bad\0name"])


def _plant_marked_file(path: str, tag: bytes) -> None:
    # Runs as the other user: a file of theirs with a mark whose owner is dead.
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.write(fd, b"nobody's data")
    os.setxattr(fd, "user.hardtemp.owner", tag)
    os.close(fd)


@pytest.mark.attack
def test_sweep_by_root_never_removes_another_users_marked_file(
    other_user: object, shared_dir: Path
) -> None:
    # The other user forges a "dead owner" mark on a file of theirs in a shared
    # /tmp-like directory: the mark is no proof, root must not act on it.
    planted = shared_dir / "forged"
    other_user(_plant_marked_file, str(planted), _dead_tag().encode())  # type: ignore[operator]
    assert planted.stat().st_uid == NOBODY
    result = sweep([str(shared_dir)])
    assert planted.exists()
    assert result.entries == []
    assert result.other_users == 1


def test_sweep_reports_a_path_that_is_not_a_directory_and_leaves_it(area: Path) -> None:
    f = _plain_file(area / "a-file")
    _mark(f, _dead_tag())
    result = sweep([str(f)])
    assert result.skipped_dirs == [(str(f), os.strerror(errno.ENOTDIR))]
    assert result.skipped_dirs[0][1].code == SweepReason.DIR_UNUSABLE
    assert result.to_json()["skipped_dirs"][0]["code"] == "sweep.dir_unusable"
    assert result.entries == []
    assert f.read_bytes() == b"data"


def _sweep_unlistable(shared: str) -> list[tuple[str, Reason]]:
    # Runs as the other user: a directory of theirs they may write and enter, not list.
    d = os.path.join(shared, "write-only")
    os.mkdir(d, 0o300)
    return sweep([d]).skipped_dirs


def test_sweep_reports_a_directory_it_cannot_list(other_user: Any, shared_dir: Path) -> None:
    skipped = other_user(_sweep_unlistable, str(shared_dir))
    assert skipped == [(str(shared_dir / "write-only"), "cannot list it (no read permission)")]
    assert skipped[0][1].code == SweepReason.DIR_UNREADABLE  # the code crossed the pickle


def test_sweep_reports_a_failed_removal_and_keeps_the_mounted_filesystem(area: Path) -> None:
    require_root("to mount a tmpfs")
    d = area / "dead-dir"
    (d / "mnt").mkdir(parents=True, mode=0o700)
    _mark(d, _dead_tag())
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d / "mnt")], check=True)
    try:
        (d / "mnt" / "other-fs").write_text("not ours")
        (entry,) = sweep([str(area)]).entries
        assert entry.action == "failed"
        assert entry.code == SweepReason.REMOVAL_FAILED
        assert "no longer runs, and no process holds its lock; removal failed: " in entry.reason
        assert f"{d}/mnt: is a mount point" in entry.reason
        assert (d / "mnt" / "other-fs").read_text() == "not ours"
    finally:
        subprocess.run(["umount", str(d / "mnt")], check=True)
