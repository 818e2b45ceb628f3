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
import re
import shutil
import signal
import subprocess
import sys
import tempfile as std_tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import _gates
from _gates import require_tool
from _helpers_core import NOBODY
from hardtemp import _owner
from hardtemp._codes import Reason, SweepReason
from hardtemp._sweep import SweepResult, sweep

pytestmark = pytest.mark.attack

SRC = str(Path(__file__).resolve().parent.parent.parent / "src")
THIRD = 4242  # a third local user: neither the attacker nor root
needs_root = _gates.needs_root("for namespaces and other users")

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


def _actions(result: SweepResult) -> dict[str, tuple[str, Reason]]:
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
    tag = _owner.OwnerTag.decode(os.getxattr(c.file, _owner.OWNER_XATTR)[:29])
    assert tag is not None
    assert (tag.boot_id, tag.pid, tag.start_time) == ("unknown", c.pid, "0")
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
        done.append(os.getxattr(target, "user.hardtemp.owner").hex())
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
    dead_4 = f"{_owner._BOOT_ID} {orphan.pid} 1".encode()
    dead = _owner.OwnerTag(_owner._BOOT_ID, orphan.pid, "1").encode()
    forged = [
        dead_4,  # the unauthenticated mark of earlier versions
        dead_4 + b" " + b"0" * 64,  # version 4's shape, a made-up MAC
        dead + bytes(16),  # this version's shape, a made-up MAC
        genuine,  # a real mark of root's, copied from another entry (if it ever leaked)
    ]
    for value in forged:
        assert other_user(_forge_marks, str(bait), [value]) == [value.hex()]
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
    assert reason.code == SweepReason.FOREIGN_INSIDE
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


# --------------------------------------------------------------------------- finding 5

RUN_SCRIPT = 'echo "$TMPDIR $$"; while :; do echo data >> "$TMPDIR/log"; sleep 0.05; done'


def test_hardtemp_run_sigkilled_while_its_command_writes_keeps_the_directory(area: Path) -> None:
    run = subprocess.Popen(
        [sys.executable, "-m", "hardtemp", "run", "--dir", str(area), "--", "sh", "-c", RUN_SCRIPT],
        stdout=subprocess.PIPE,
        env=_env(),
        text=True,
    )
    assert run.stdout is not None
    tmpdir, command = run.stdout.readline().split()
    log = Path(tmpdir) / "log"
    try:
        run.kill()  # SIGKILL: no cleanup by hardtemp; the command goes on writing
        run.wait()
        time.sleep(0.2)
        deadline = time.monotonic() + 10  # its first write, however loaded the machine
        while not log.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        before = log.stat().st_size
        result = sweep([str(area)])
        assert _actions(result) == {tmpdir: ("kept", "locked: a live process holds it")}
        # Still writing, into the same file: it writes every 0.05 s; a loaded machine may
        # take longer than the 0.3 s this waited once, so wait for the growth (up to 10 s).
        deadline = time.monotonic() + 10
        while log.stat().st_size <= before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.stat().st_size > before
    finally:
        os.kill(int(command), signal.SIGKILL)
        run.stdout.close()
    _gone(int(command))
    result = sweep([str(area)])
    assert _actions(result)[tmpdir][0] == "removed"
    assert not Path(tmpdir).exists()


# --------------------------------------------------------------------------- finding 6

REPLACED = r"""
import os, sys, subprocess, hardtemp
f = hardtemp.NamedTemporaryFile(dir=sys.argv[1], prefix="r-")
f.write(b"SECRET old\n"); f.flush()
if sys.argv[2] == "sed":  # sed -i: a new file renamed over the name
    subprocess.run(["sed", "-i", "s/old/new/", f.name], check=True)
else:  # a copy with our xattrs (cp --preserve=all) moved over the name
    subprocess.run(["cp", "--preserve=all", f.name, f.name + ".new"], check=True)
    with open(f.name + ".new", "r+b") as g:  # edited in place: the xattrs stay
        g.write(b"SECRET new\n")
    os.replace(f.name + ".new", f.name)
print(f.name, flush=True)
os.kill(os.getpid(), 9)
"""


@pytest.mark.parametrize("how", ["sed", "copy-with-xattrs"])
def test_a_replacement_by_rename_is_never_swept(area: Path, how: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", REPLACED, str(area), how],
        capture_output=True,
        text=True,
        env=_env(),
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    name = Path(proc.stdout.strip())
    if how != "sed":
        assert _owner.OWNER_XATTR in os.listxattr(name)  # our mark's bytes, on another inode
    result = sweep([str(area)])
    assert name.read_bytes() == b"SECRET new\n"  # not ours to remove: the program's file
    assert result.entries == []
    assert result.unmarked == 1


# --------------------------------------------------------------------------- finding 8


@needs_root
def test_a_look_alike_path_in_another_users_namespace_does_not_keep_roots_orphan(
    shared_dir: Path,
) -> None:
    c = Creator(str(shared_dir))
    c.end(signal.SIGKILL)
    # The attacker mounts a tmpfs over the swept path in their own user+mount namespace,
    # makes the orphan's name there and holds a file open inside it, for as long as they like.
    script = (
        f"mount -t tmpfs none {shared_dir} && mkdir {c.dir} && : > {c.dir}/x && "
        f"echo ready && exec sleep 60 < {c.dir}/x"
    )
    attacker = subprocess.Popen(
        ["unshare", "-Urm", "sh", "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd="/",
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
    )
    assert attacker.stdout is not None
    try:
        if attacker.stdout.readline().strip() != "ready":
            pytest.skip("unprivileged user namespaces are not available here")
        result = sweep([str(shared_dir)])
        assert {a for a, _ in _actions(result).values()} == {"removed"}
        assert not c.dir.exists()
        assert not c.file.exists()
    finally:
        attacker.kill()
        attacker.wait()
        attacker.stdout.close()


# --------------------------------------------------------------------------- the lock itself


def _try_to_hold(paths: list[str]) -> list[str]:
    # Runs as the other user: every way to get a descriptor of our entries to flock.
    import fcntl

    got = []
    for p in paths:
        for flags in (os.O_RDONLY, os.O_WRONLY, os.O_PATH):
            try:
                fd = os.open(p, flags | os.O_NONBLOCK)
            except OSError as exc:
                got.append(f"open {flags}: {exc.strerror}")
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                got.append(f"flock {flags}: LOCKED")
            except OSError as exc:
                got.append(f"flock {flags}: {exc.strerror}")
            finally:
                os.close(fd)
    return got


@needs_root
def test_another_user_cannot_take_the_lock_of_our_entries(
    other_user: Callable[..., Any], shared_dir: Path
) -> None:
    c = Creator(str(shared_dir))
    try:
        got = other_user(_try_to_hold, [str(c.file), str(c.dir)])
    finally:
        c.end(signal.SIGKILL)
    assert got == [
        f"open {os.O_RDONLY}: Permission denied",  # 0600 file
        f"open {os.O_WRONLY}: Permission denied",
        f"flock {os.O_PATH}: Bad file descriptor",  # O_PATH pins, but cannot lock
        f"open {os.O_RDONLY}: Permission denied",  # 0700 directory
        f"open {os.O_WRONLY}: Is a directory",
        f"flock {os.O_PATH}: Bad file descriptor",
    ]
    result = sweep([str(shared_dir)])
    assert {a for a, _ in _actions(result).values()} == {"removed"}


# --------------------------------------------------------------------------- temp cleaners

STDLIB_AND_OURS = r"""
import os, sys, tempfile, hardtemp
d = sys.argv[1]
ours_dir = hardtemp.TemporaryDirectory(dir=d, prefix="ours-")
with open(os.path.join(ours_dir.name, "inner"), "w") as g:
    g.write("data")
ours_file = hardtemp.NamedTemporaryFile(dir=d, prefix="ours-")
std_dir = tempfile.TemporaryDirectory(dir=d, prefix="std-")
with open(os.path.join(std_dir.name, "inner"), "w") as g:
    g.write("data")
std_file = tempfile.NamedTemporaryFile(dir=d, prefix="std-")
old = 1_000_000_000  # 2001: long past any age
for p in (ours_dir.name, ours_file.name, std_dir.name, std_file.name):
    os.utime(p, (old, old))
os.utime(os.path.join(ours_dir.name, "inner"), (old, old))
os.utime(os.path.join(std_dir.name, "inner"), (old, old))
print(ours_dir.name, ours_file.name, std_dir.name, std_file.name, flush=True)
sys.stdin.read()
ours_file.close(); ours_dir.cleanup()
"""


def _systemd_version() -> int:
    require_tool("systemd-tmpfiles", "systemd")
    tool = shutil.which("systemd-tmpfiles")
    assert tool is not None
    out = subprocess.run([tool, "--version"], capture_output=True, text=True, check=True).stdout
    m = re.match(r"systemd (\d+)", out)
    assert m is not None, out
    return int(m.group(1))


@needs_root
def test_systemd_tmpfiles_ageing_skips_our_locked_directory_and_removes_the_stdlibs(
    area: Path, tmp_path: Path
) -> None:
    version = _systemd_version()
    conf = tmp_path / "hardtemp-test.conf"
    conf.write_text(f"e {area} - - - 0\n")  # age 0: everything not protected goes
    proc = subprocess.Popen(
        [sys.executable, "-c", STDLIB_AND_OURS, str(area)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=_env(),
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    ours_dir, ours_file, std_dir, std_file = proc.stdout.readline().split()
    try:
        time.sleep(1.1)  # ctime cannot be set back: let it be older than "now - 0"
        subprocess.run(["systemd-tmpfiles", "--clean", str(conf)], check=True)
        assert Path(ours_dir, "inner").read_text() == "data"  # locked: skipped
        assert not os.path.exists(std_dir)  # the control: the same ageing removes the stdlib's
        assert not os.path.exists(std_file)
        # Files: honoured only by newer systemd (tmpfiles.d(5): 254); 252 removes ours too.
        assert os.path.exists(ours_file) is (version >= 254)
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
        proc.stdout.close()
    assert proc.returncode == 0
    assert os.listdir(area) == []  # our live object cleaned up after itself as usual
