"""Attacks on `hardtemp sweep` (issue 10), each with real processes, users and tools.

Every finding of the issue is performed for real: a kept (renamed) file, a
creator in a PID namespace and one without /proc, forged marks over a third
user's files swept by root, a symlinked TMPDIR, `hardtemp run` SIGKILLed while
its command writes, a `sed -i` replacement, another user's mount-namespace
look-alike, another user trying to hold our lock, and the real
systemd-tmpfiles ageing a directory at age 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile as std_tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hardtemp import _owner
from hardtemp._sweep import SweepResult, sweep

pytestmark = pytest.mark.attack

SRC = str(Path(__file__).resolve().parent.parent.parent / "src")
NOBODY = 65534
THIRD = 4242  # a third local user: neither the attacker nor root
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root: namespaces, other users")

CREATOR = r"""
import os, sys, hardtemp, hardtemp.compat
mod = hardtemp.compat if sys.argv[2] == "compat" else hardtemp
d = sys.argv[1] if sys.argv[1] != "-" else None
f = mod.NamedTemporaryFile(dir=d, prefix="f-")
f.write(b"SECRET"); f.flush()
t = mod.TemporaryDirectory(dir=d, prefix="d-")
with open(os.path.join(t.name, "inner"), "w") as g:
    g.write("SECRET")
what = sys.argv[3] if len(sys.argv) > 3 else ""
if what.startswith("rename"):  # keep both the way tempfile code does: a plain rename
    os.rename(f.name, f.name + ".kept")
    os.rename(t.name, t.name + ".kept")
pid = os.getpid()
if what.startswith("fork"):  # a child inherits the lock descriptors and keeps using them
    pid = os.fork()
    if pid == 0:
        import signal
        h = open(os.path.join(t.name, "inner"))
        signal.pause()
print(f.name, t.name, pid, flush=True)  # (the child's pid when forked)
if what == "rename-exit":
    sys.exit(0)
if what.endswith("kill"):
    os.kill(os.getpid(), 9)
sys.stdin.read()
"""


def _env(**extra: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=SRC, **extra)


class Creator:
    """A hardtemp process (optionally run under ``prefix``) holding a file and a directory."""

    def __init__(
        self,
        where: str,
        api: str = "native",
        what: str = "",
        prefix: tuple[str, ...] = (),
        **env: str,
    ) -> None:
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-c", CREATOR, where, api, what],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_env(**env),
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        assert len(line) == 3, "the creator did not report its temp files"
        self.file, self.dir, self.pid = Path(line[0]), Path(line[1]), int(line[2])

    def end(self, sig: int | None = None) -> None:
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def area() -> Iterator[Path]:
    """A private (trusted) directory to sweep: the real /tmp is never touched."""
    d = Path(std_tempfile.mkdtemp(prefix="ht-attack-sweep-"))
    yield d
    subprocess.run(["rm", "-rf", "--one-file-system", str(d)], check=False)


def _actions(result: SweepResult) -> dict[str, tuple[str, str]]:
    return {e.path: (e.action, e.reason) for e in result.entries}


def _gone(pid: int) -> None:
    for _ in range(200):
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} still runs")


# --------------------------------------------------------------------------- finding 1


@pytest.mark.parametrize("api", ["native", "compat"])
@pytest.mark.parametrize("how", ["rename-exit", "rename-kill"])
def test_a_kept_renamed_file_and_directory_are_never_swept(area: Path, api: str, how: str) -> None:
    c = Creator(str(area), api, how)
    c.end()
    kept_file, kept_dir = Path(f"{c.file}.kept"), Path(f"{c.dir}.kept")
    assert not c.file.exists()
    assert not c.dir.exists()
    result = sweep([str(area)])
    assert kept_file.read_bytes() == b"SECRET"
    assert (kept_dir / "inner").read_text() == "SECRET"
    assert result.entries == []
    assert result.unmarked == 2
    if how == "rename-exit":
        # The cleanup saw the rename through its descriptors: it removed the marks too.
        assert _owner.OWNER_XATTR not in os.listxattr(kept_file)
        assert _owner.OWNER_XATTR not in os.listxattr(kept_dir)
    else:
        # SIGKILLed right after the rename: the mark stays, but it names the old place.
        assert _owner.OWNER_XATTR in os.listxattr(kept_file)


# --------------------------------------------------------------------------- finding 2


@needs_root
def test_a_live_creator_in_a_pid_namespace_is_never_swept(area: Path) -> None:
    ns = ("unshare", "--pid", "--fork", "--mount-proc", "--kill-child")
    c = Creator(str(area), prefix=ns)
    assert c.pid in (1, 2)  # its pid as seen inside the namespace: another process's outside
    result = sweep([str(area)])
    assert _actions(result) == {
        str(c.file): ("kept", "locked: a live process holds it"),
        str(c.dir): ("kept", "locked: a live process holds it"),
    }
    assert (c.dir / "inner").read_text() == "SECRET"
    c.end(signal.SIGKILL)  # unshare dies; --kill-child: the creator gets SIGKILL too
    for _ in range(100):
        result = sweep([str(area)])
        if {a for a, _ in _actions(result).values()} == {"removed"}:
            break
        time.sleep(0.05)
    assert {a for a, _ in _actions(result).values()} == {"removed"}
    assert os.listdir(area) == []


@needs_root
def test_a_live_creator_without_proc_is_never_swept(area: Path) -> None:
    # A private mount namespace with an empty tmpfs on /proc: no boot id, no start time.
    script = 'mount --make-rprivate / && mount -t tmpfs none /proc && exec "$@"'
    c = Creator(str(area), prefix=("unshare", "-m", "sh", "-c", script, "sh"))
    raw = os.getxattr(c.file, _owner.OWNER_XATTR)
    assert raw.startswith(f"unknown {c.pid} 0 ".encode())
    result = sweep([str(area)])
    assert {a for a, _ in _actions(result).values()} == {"kept"}
    assert c.file.read_bytes() == b"SECRET"
    c.end(signal.SIGKILL)
    result = sweep([str(area)])
    assert _actions(result) == {
        str(c.file): (
            "removed",
            "creator could not read /proc (no second opinion), and no process holds its lock",
        ),
        str(c.dir): (
            "removed",
            "creator could not read /proc (no second opinion), and no process holds its lock",
        ),
    }


# --------------------------------------------------------------------------- finding 3


def _forge_marks(target: str, values: list[bytes]) -> list[str]:
    # Runs as the attacker: user.* xattrs need only write permission on the entry.
    done = []
    for v in values:
        os.setxattr(target, "user.hardtemp.owner", v)
        done.append(os.getxattr(target, "user.hardtemp.owner").decode())
    return done


def _third_users_tree(top: Path) -> Path:
    """``top/victim``: a third user's directory and file the attacker can neither write nor
    delete (they are not in the attacker's power: only root's sweep could destroy them)."""
    victim = top / "victim"
    victim.mkdir(mode=0o755)
    (victim / "secret").write_text("third user's data")
    os.chown(victim / "secret", THIRD, THIRD)
    os.chmod(victim / "secret", 0o644)
    os.chown(victim, THIRD, THIRD)
    return victim


@needs_root
def test_forged_marks_over_a_third_users_files_are_ignored_by_roots_sweep(
    other_user: Callable[..., Any], shared_dir: Path
) -> None:
    # A root-owned 0777 directory inside the swept directory: the attacker can write its
    # xattrs. Inside: a third user's tree the attacker can neither write nor delete.
    bait = shared_dir / "bait"
    bait.mkdir()
    os.chmod(bait, 0o777)
    victim = _third_users_tree(bait)
    # A genuine orphan of root's, so the sweep demonstrably removes what it should.
    orphan = Creator(str(shared_dir))
    orphan.end(signal.SIGKILL)
    genuine = os.getxattr(orphan.file, _owner.OWNER_XATTR)
    dead = f"{_owner._BOOT_ID} {orphan.pid} 1".encode()
    forged = [
        dead,  # the unauthenticated mark of earlier versions
        dead + b" " + b"0" * 64,  # the right shape, a made-up MAC
        genuine,  # a real mark of root's, copied from another entry (if it ever leaked)
    ]
    for value in forged:
        assert other_user(_forge_marks, str(bait), [value]) == [value.decode()]
        result = sweep([str(shared_dir)])
        assert str(bait) not in _actions(result)
        assert (victim / "secret").read_text() == "third user's data"
        assert os.stat(victim).st_uid == THIRD
    assert not orphan.file.exists()  # the real orphan went on the first sweep
    assert not orphan.dir.exists()


@needs_root
def test_roots_sweep_never_touches_another_users_entry_inside_roots_own_orphan(
    shared_dir: Path,
) -> None:
    c = Creator(str(shared_dir))
    victim = _third_users_tree(c.dir)
    c.end(signal.SIGKILL)
    result = sweep([str(shared_dir)])
    action, reason = _actions(result)[str(c.dir)]
    assert action == "failed"
    assert reason.endswith(f"not removed: {victim} is owned by uid {THIRD} (never touched)")
    assert (victim / "secret").read_text() == "third user's data"  # not overwritten
    assert (c.dir / "inner").read_text() == "SECRET"  # the tree is left whole
    assert _actions(result)[str(c.file)][0] == "removed"


# --------------------------------------------------------------------------- finding 4


@needs_root
def test_a_live_childs_directory_under_a_symlinked_tmpdir_is_never_swept(
    area: Path, tmp_path: Path
) -> None:
    link = tmp_path / "tmp-link"
    link.symlink_to(area)
    c = Creator("-", what="fork-kill", TMPDIR=str(link))
    assert str(c.dir).startswith(str(link))
    c.end()  # the creator SIGKILLed itself; its forked child lives on
    child = c.pid
    try:
        for swept in (link, area):
            result = sweep([str(swept)])
            assert {a for a, _ in _actions(result).values()} == {"kept"}
        assert (area / c.dir.name / "inner").read_text() == "SECRET"
    finally:
        os.kill(child, signal.SIGKILL)
    _gone(child)
    result = sweep([str(link)])
    assert {a for a, _ in _actions(result).values()} == {"removed"}
    assert os.listdir(area) == []
