"""The ``hardtemp`` command, run as users run it: ``python -m hardtemp`` in a subprocess
(and ``main()`` in process where a fault is easier to cause there)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import hardtemp
from _gates import needs_root, require_root, require_tool
from _helpers_core import NOBODY
from _helpers_euid import as_euid
from hardtemp import _check, _fsinfo, _tempdir
from hardtemp._cli import main
from hardtemp.exceptions import NoTrustedTempDirError

# Another run's sysctl_set (CI runs its stages side by side) must not flip a sysctl
# between the audit's reading and the test's (tests/_helpers_core.sysctls_held).
pytestmark = pytest.mark.usefixtures("steady_sysctls")

SRC = str(Path(__file__).resolve().parent.parent / "src")


def ht(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m hardtemp ARGS`` with a controlled environment."""
    base = {k: v for k, v in os.environ.items() if k not in ("TMPDIR", "TEMP", "TMP", "NO_COLOR")}
    base.update(PYTHONPATH=SRC, TMPDIR=str(cwd))
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "hardtemp", *args],
        cwd=cwd,
        env=base,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A private, trusted working directory (and TMPDIR) for the command."""
    d = tmp_path / "home"
    d.mkdir(mode=0o700)
    return d


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("hardtemp")


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("command", [[], ["check"], ["run"], ["wipe"], ["sweep"]])
def test_every_command_has_help(home: Path, command: list[str]) -> None:
    proc = ht(*command, "--help", cwd=home)
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: hardtemp")
    assert proc.stderr == ""


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["frobnicate"],
        ["check", "--fail-on", "bogus"],
        ["check", "--no-such-option"],
        ["check", ""],
        ["run"],
        ["run", "--"],
        ["wipe"],
        ["wipe", "--passes", "0", "x"],
        ["wipe", "--passes", "many", "x"],
        ["wipe", "--pattern", "ones", "x"],
        ["sweep", "--color", "purple"],
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(home: Path, args: list[str]) -> None:
    _one_line_error(ht(*args, cwd=home))


# --------------------------------------------------------------------------- check


def _check_json(home: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = ht("check", "--json", *args, cwd=home, env=env)
    data: dict[str, Any] = json.loads(proc.stdout)
    data["_exit"] = proc.returncode
    return data


def test_check_json_has_the_documented_schema(home: Path) -> None:
    data = _check_json(home, "--fail-on", "never")
    assert data["_exit"] == 0
    assert data["schema"] == "hardtemp-check/1"
    assert set(data) >= {
        "hardtemp_version",
        "euid",
        "tempdir",
        "fail_on",
        "ignore",
        "max_level",
        "failed",
        "counts",
        "directories",
        "system",
    }
    assert data["tempdir"] == str(home)
    assert set(data["counts"]) == {"ok", "info", "warning", "error", "ignored"}
    assert data["ignore"] == []
    mine = next(d for d in data["directories"] if d["path"] == str(home))
    assert mine["origins"] == ["$TMPDIR", "current directory, last resort"]
    assert mine["selected"] is True
    assert mine["trusted"] is True
    assert mine["shared"] is False
    # The very verdict of this directory's filesystem, not "any verdict" (issue 16).
    here = _fsinfo.fs_info_for_path(home)
    assert mine["filesystem"]["verdict"] == here.verdict
    # Additive: the sentences stay, each with its stable code at the same position.
    assert mine["filesystem"]["reasons"] == list(here.reasons)
    assert mine["filesystem"]["reason_codes"] == list(here.codes)
    for f in mine["findings"]:
        assert set(f) == {"level", "code", "subject", "message", "details", "hint", "ignored"}
        assert f["subject"] == str(home)
        assert f["ignored"] is False
    codes = {f["code"] for f in mine["findings"]}
    assert {"dir.trusted", "fs.verdict", "mount.options", "o_tmpfile"} <= codes
    system = data["system"]
    assert set(system) == {"swap", "sysctls", "xdg_runtime_dir", "findings"}
    for name in ("protected_symlinks", "protected_hardlinks", "protected_regular"):
        expected = int(Path(f"/proc/sys/fs/{name}").read_text())
        assert system["sysctls"][f"fs.{name}"] == expected
    assert {f["code"] for f in system["findings"]} >= {"swap", "sysctl", "xdg_runtime_dir"}


def test_check_finds_o_tmpfile_working_on_ext4(home: Path) -> None:
    data = _check_json(home, "--fail-on", "never")
    mine = next(d for d in data["directories"] if d["path"] == str(home))
    if mine["filesystem"]["fstype"] not in ("ext4", "xfs", "btrfs", "tmpfs"):
        pytest.skip(f"O_TMPFILE support unknown on {mine['filesystem']['fstype']}")
    assert mine["o_tmpfile"] is True


def test_check_of_a_trusted_directory_passes_at_error_level(home: Path) -> None:
    proc = ht("check", str(home), cwd=home)
    # This machine's own candidates (/tmp, /var/tmp) are part of the audit too.
    data = _check_json(home, str(home))
    assert proc.returncode == (1 if data["counts"]["error"] else 0)
    assert "trusted" in proc.stdout
    assert "--fail-on error" in proc.stdout


def test_check_fails_on_a_world_writable_tmpdir_without_sticky_bit(home: Path) -> None:
    hostile = home / "hostile"
    hostile.mkdir()
    os.chmod(hostile, 0o777)
    proc = ht("check", cwd=home, env={"TMPDIR": str(hostile)})
    assert proc.returncode == 1
    assert f"NOT TRUSTED: {hostile}: directory is writable by others without the sticky bit" in (
        proc.stdout
    )
    data = _check_json(home, env={"TMPDIR": str(hostile)})
    assert data["_exit"] == 1
    assert data["failed"] is True
    (entry,) = [d for d in data["directories"] if d["path"] == str(hostile)]
    assert entry["trusted"] is False
    (finding,) = [f for f in entry["findings"] if f["code"] == "dir.untrusted"]
    assert finding["level"] == "error"
    assert str(hostile) in finding["message"]


@needs_root("to give a directory to another user")
def test_check_fails_on_a_tmpdir_owned_by_another_user(home: Path) -> None:
    theirs = home / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, NOBODY, NOBODY)
    proc = ht("check", cwd=home, env={"TMPDIR": str(theirs)})
    assert proc.returncode == 1
    assert f"{theirs}: directory is owned by uid {NOBODY}" in proc.stdout
    # The suggestion fixes ownership (chmod would not), and root is not called "uid 0".
    assert f"chown {os.geteuid()} {theirs}" in proc.stdout
    assert "chmod" not in proc.stdout.split(str(theirs), 1)[1].split("\n\n", 1)[0]
    assert "or uid 0" not in proc.stdout  # this test runs as root (gated)
    assert f"owned by uid {NOBODY}, not by root:" in proc.stdout


def test_check_names_the_untrusted_ancestor(home: Path) -> None:
    parent = home / "open"
    parent.mkdir()
    child = parent / "private"
    child.mkdir(mode=0o700)
    os.chmod(parent, 0o777)
    proc = ht("check", str(child), cwd=home)
    assert proc.returncode == 1
    assert f"NOT TRUSTED: {parent}: directory is writable by others" in proc.stdout


def test_check_fails_on_a_missing_directory_argument(home: Path) -> None:
    proc = ht("check", str(home / "nope"), cwd=home)
    assert proc.returncode == 1
    assert "does not exist" in proc.stdout


def test_check_fail_on_never_always_exits_0(home: Path) -> None:
    hostile = home / "hostile"
    hostile.mkdir()
    os.chmod(hostile, 0o777)
    assert ht("check", "--fail-on", "never", str(hostile), cwd=home).returncode == 0


def test_check_fail_on_warning_fails_on_a_shared_dir_without_nodev_nosuid(
    home: Path, small_tmpfs: Any
) -> None:
    mnt = small_tmpfs(1024)  # mounted without nodev, nosuid
    shared = mnt / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    data = _check_json(home, "--fail-on", "warning", str(shared))
    (entry,) = [d for d in data["directories"] if d["path"] == str(shared)]
    (mount,) = [f for f in entry["findings"] if f["code"] == "mount.options"]
    assert mount["level"] == "warning"
    assert "nodev" in mount["message"]
    assert "nosuid" in mount["message"]
    assert data["_exit"] == 1
    assert ht("check", "--fail-on", "error", str(shared), cwd=home).returncode == (
        1 if data["counts"]["error"] else 0
    )


def test_check_colours_only_when_asked_or_on_a_terminal(home: Path) -> None:
    assert "\033[" not in ht("check", "--fail-on", "never", cwd=home).stdout
    assert "\033[" in ht("check", "--fail-on", "never", "--color", "always", cwd=home).stdout


def test_check_respects_no_color_on_a_terminal(home: Path) -> None:
    # script(1) gives the command a real terminal.
    require_tool("script", "bsdutils")
    env = dict(os.environ, PYTHONPATH=SRC, TMPDIR=str(home), TERM="xterm")
    cmd = f"{sys.executable} -m hardtemp check --fail-on never"
    tty = subprocess.run(
        ["script", "-qec", cmd, "/dev/null"], env=env, cwd=home, capture_output=True, text=True
    )
    assert "\033[" in tty.stdout
    env["NO_COLOR"] = "1"
    plain = subprocess.run(
        ["script", "-qec", cmd, "/dev/null"], env=env, cwd=home, capture_output=True, text=True
    )
    assert "hardtemp check" in plain.stdout
    assert "\033[" not in plain.stdout


# --------------------------------------------------------------------------- run


def test_run_passes_the_exit_status_through(home: Path) -> None:
    assert ht("run", "--", "sh", "-c", "exit 7", cwd=home).returncode == 7
    assert ht("run", "true", cwd=home).returncode == 0


def test_run_gives_a_private_tmpdir_and_removes_it(home: Path) -> None:
    script = (
        'echo "$TMPDIR $TMP $TEMP"; stat -c %a:%u "$TMPDIR"; '
        'echo secret > "$TMPDIR/f"; mkdir "$TMPDIR/d"; echo x > "$TMPDIR/d/g"'
    )
    proc = ht("run", "--", "sh", "-c", script, cwd=home)
    assert proc.returncode == 0, proc.stderr
    line, mode = proc.stdout.splitlines()
    tmpdir, tmp, temp = line.split()
    assert tmpdir == tmp == temp
    assert Path(tmpdir).parent == home
    assert mode == f"700:{os.geteuid()}"
    assert not Path(tmpdir).exists()
    assert list(home.iterdir()) == []


def test_run_keep_leaves_the_directory_and_says_where(home: Path) -> None:
    proc = ht("run", "--keep", "--", "sh", "-c", 'echo kept > "$TMPDIR/f"; echo $TMPDIR', cwd=home)
    assert proc.returncode == 0
    kept = Path(proc.stdout.strip())
    assert f"kept {kept}" in proc.stderr
    assert (kept / "f").read_text() == "kept\n"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o700


def test_run_dir_option_chooses_the_parent(home: Path) -> None:
    other = home / "other"
    other.mkdir(mode=0o700)
    proc = ht("run", "--dir", str(other), "--", "sh", "-c", "echo $TMPDIR", cwd=home)
    assert Path(proc.stdout.strip()).parent == other


def test_run_refuses_an_untrusted_dir(home: Path) -> None:
    hostile = home / "hostile"
    hostile.mkdir()
    os.chmod(hostile, 0o777)
    proc = ht("run", "--dir", str(hostile), "--", "true", cwd=home)
    assert proc.returncode == 125
    assert str(hostile) in proc.stderr
    assert list(hostile.iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGABRT])
def test_run_dies_by_the_signal_that_killed_the_command(home: Path, sig: signal.Signals) -> None:
    proc = ht(
        "run", "--", sys.executable, "-c", f"import os; os.kill(os.getpid(), {int(sig)})", cwd=home
    )
    assert proc.returncode == -sig
    assert list(home.iterdir()) == []  # cleaned up before dying
    assert not any(p.name.startswith("core") for p in home.iterdir())


def test_run_forwards_sigterm_to_the_command_and_cleans_up(home: Path) -> None:
    child = (
        "import os, signal, sys, time\n"
        "def bye(n, f):\n"
        "    open(os.environ['TMPDIR'] + '/got', 'w').write(str(n))\n"
        "    sys.exit(42)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print(os.environ['TMPDIR'], flush=True)\n"
        "time.sleep(60)\n"
    )
    env = dict(os.environ, PYTHONPATH=SRC, TMPDIR=str(home))
    proc = subprocess.Popen(
        [sys.executable, "-m", "hardtemp", "run", "--", sys.executable, "-c", child],
        cwd=home,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    tmpdir = Path(proc.stdout.readline().strip())
    assert tmpdir.is_dir()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 42
    proc.stdout.close()
    assert not tmpdir.exists()


def test_run_reports_missing_and_unexecutable_commands(home: Path) -> None:
    missing = ht("run", "--", "no-such-command-hardtemp", cwd=home)
    assert missing.returncode == 127
    assert "command not found" in missing.stderr
    script = home / "noexec.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o600)
    noexec = ht("run", "--", str(script), cwd=home)
    assert noexec.returncode == 126
    assert list(p for p in home.iterdir() if p != script) == []


def test_run_exit_status_follows_the_shells_rule_past_a_path_directory_it_cannot_search(
    inproc: Path,
    shared_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # As an ordinary user (uid 65534 when we are root): glibc's execvp reported EACCES for
    # the unsearchable directory, so a missing command exited 126 ("not executable").
    # The reference is bash (POSIX's rule; dash exits 127 for a found, unexecutable file).
    require_tool("bash", "bash")
    user = NOBODY if os.geteuid() == 0 else os.geteuid()
    mine = shared_dir / "mine"  # the user's TMPDIR for the run
    mine.mkdir(mode=0o700)
    os.chown(mine, user, user)
    locked = shared_dir / "locked"  # searchable by nobody but root (mode 000)
    locked.mkdir()
    bindir = shared_dir / "bin"
    bindir.mkdir(mode=0o755)
    (bindir / "noexec-hardtemp").write_text("#!/bin/sh\n")
    os.chmod(bindir / "noexec-hardtemp", 0o644)
    os.chmod(locked, 0)
    path = f"{locked}:{bindir}:/usr/bin:/bin"
    monkeypatch.setenv("PATH", path)
    monkeypatch.setenv("TMPDIR", str(mine))
    as_user = as_euid(NOBODY) if os.geteuid() == 0 else contextlib.nullcontext()
    with as_user:
        assert os.geteuid() == user
        statuses = [
            main(["run", "--", name]) for name in ("no-such-hardtemp", "noexec-hardtemp", "true")
        ]
        shell = [
            subprocess.run(["bash", "-c", name], env={"PATH": path}, check=False).returncode
            for name in ("no-such-hardtemp", "noexec-hardtemp", "true")
        ]
    err = capsys.readouterr().err
    assert statuses == shell == [127, 126, 0]
    assert "no-such-hardtemp: command not found" in err
    assert "noexec-hardtemp: Permission denied" in err
    assert list(mine.iterdir()) == []


def test_run_finds_a_program_by_a_path_with_a_slash_or_in_an_empty_path_entry(
    inproc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prog = inproc / "prog-hardtemp"
    prog.write_text("#!/bin/sh\nexit 7\n")
    prog.chmod(0o700)
    (inproc / "adir-hardtemp").mkdir()  # a directory of that name is not a program
    monkeypatch.setenv("PATH", "/usr/bin")
    assert main(["run", "--", "./prog-hardtemp"]) == 7  # a name with a slash: not searched
    monkeypatch.setenv("PATH", ":/usr/bin")  # an empty entry is the working directory
    assert main(["run", "--", "prog-hardtemp"]) == 7
    monkeypatch.setenv("PATH", f"{inproc}:/usr/bin")
    assert main(["run", "--", "adir-hardtemp"]) == 127
    monkeypatch.delenv("PATH")  # the system's default search path
    assert main(["run", "--", "true"]) == 0


# --------------------------------------------------------------------------- wipe


def test_wipe_overwrites_and_removes_a_file(home: Path) -> None:
    f = home / "secret"
    f.write_bytes(b"s" * 10000)
    proc = ht("wipe", str(f), cwd=home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not f.exists()
    assert re.search(
        rf"{re.escape(str(f))}: [0-9.]+ KiB overwritten \(1 pass\(es\), random\)", proc.stdout
    )


def test_wipe_json_reports_each_path(home: Path) -> None:
    a = home / "a"
    a.write_bytes(b"a" * 5000)
    with open(a, "rb") as f:
        expected = _fsinfo.file_info_for_fd(f.fileno()).verdict  # what this file's fs gives
    proc = ht("wipe", "--json", "--passes", "2", "--pattern", "zeros", str(a), cwd=home)
    assert proc.returncode == 0
    (entry,) = json.loads(proc.stdout)["results"]
    assert entry["ok"] is True
    assert entry["kind"] == "file"
    report = entry["report"]
    assert report["passes"] == 2
    assert report["pattern"] == "zeros"
    assert report["bytes_overwritten"] >= 2 * 5000
    assert report["removed"] is True
    assert report["verdict"] == expected


def test_wipe_fails_for_a_missing_path_but_wipes_the_others(home: Path) -> None:
    good = home / "good"
    good.write_bytes(b"x")
    proc = ht("wipe", str(home / "missing"), str(good), cwd=home)
    assert proc.returncode == 1
    assert f"FAILED  {home / 'missing'}: No such file or directory" in proc.stdout
    assert not good.exists()


def test_wipe_refuses_a_directory_without_r(home: Path) -> None:
    d = home / "d"
    d.mkdir()
    (d / "f").write_text("x")
    proc = ht("wipe", str(d), cwd=home)
    assert proc.returncode == 1
    assert "use -r" in proc.stdout
    assert (d / "f").exists()


def test_wipe_r_removes_a_tree_without_following_symlinks(home: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("keep me")
    d = home / "d"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "f").write_text("secret")
    (d / "link").symlink_to(outside)
    (d / "dirlink").symlink_to(tmp_path)
    proc = ht("wipe", "-r", str(d), cwd=home)
    assert proc.returncode == 0, proc.stdout
    assert not d.exists()
    assert outside.read_text() == "keep me"


def test_wipe_refuses_symlinks_and_fifos(home: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("keep me")
    link = home / "link"
    link.symlink_to(target)
    fifo = home / "fifo"
    os.mkfifo(fifo)
    proc = ht("wipe", str(link), str(fifo), cwd=home)
    assert proc.returncode == 1
    assert proc.stdout.count("not a regular file") == 2
    assert link.is_symlink()
    assert target.read_text() == "keep me"
    assert fifo.exists()


# --------------------------------------------------------------------------- sweep

CHILD = r"""
import sys, hardtemp
f = hardtemp.NamedTemporaryFile(dir=sys.argv[1])
print(f.name, flush=True)
sys.stdin.read()
"""


def test_sweep_command_removes_a_killed_processes_file(home: Path) -> None:
    area = home / "area"
    area.mkdir(mode=0o700)
    name = _killed_child_file(area)
    dry = ht("sweep", "--dry-run", str(area), cwd=home)
    assert dry.returncode == 0
    assert f"would remove   file {name}: pid " in dry.stdout
    assert " no longer runs, and no process holds its lock" in dry.stdout
    assert Path(name).exists()
    proc = ht("sweep", "--json", str(area), cwd=home)
    assert proc.returncode == 0
    data = json.loads(proc.stdout)
    assert [(e["path"], e["action"]) for e in data["entries"]] == [(name, "removed")]
    assert [e["code"] for e in data["entries"]] == ["sweep.orphan"]
    assert data["missing_dirs"] == []
    assert data["key_problem"] is None
    assert data["key_code"] is None
    assert not Path(name).exists()


def test_sweep_command_fails_on_an_untrusted_directory(home: Path) -> None:
    hostile = home / "hostile"
    hostile.mkdir()
    os.chmod(hostile, 0o777)
    proc = ht("sweep", str(hostile), cwd=home)
    assert proc.returncode == 1
    assert f"{hostile}: not trusted" in proc.stdout


def _killed_child_file(where: Path) -> str:
    """A NamedTemporaryFile left in ``where`` by a hardtemp process killed with SIGKILL."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(where)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=SRC),
        text=True,
    )
    assert child.stdout is not None
    assert child.stdin is not None
    name = child.stdout.readline().strip()
    child.kill()
    child.wait()
    child.stdout.close()
    child.stdin.close()
    return name


def test_sweep_command_defaults_to_the_candidates(home: Path) -> None:
    # TMPDIR=home is the first candidate: an orphan there is found without naming it.
    # (--dry-run: the other candidates are this machine's real /tmp and /var/tmp.)
    orphan = _killed_child_file(home)
    proc = ht("sweep", "--dry-run", cwd=home)
    assert proc.returncode == 0
    assert f"would remove   file {orphan}" in proc.stdout
    assert os.path.exists(orphan)


def test_sweep_command_of_a_missing_directory_fails_with_one_line(home: Path) -> None:
    proc = ht("sweep", str(home / "does" / "not" / "exist"), str(home), cwd=home)
    assert proc.returncode == 1
    assert proc.stderr == f"hardtemp sweep: {home}/does/not/exist: no such directory\n"
    assert "Traceback" not in proc.stderr
    # The other directory was swept: the summary says the sweep is incomplete.
    assert proc.stdout.startswith("sweep incomplete: 0 removed,"), proc.stdout
    assert proc.stdout.endswith("; 1 of the directories given not swept\n")


def test_sweep_command_of_only_missing_directories_prints_no_summary(home: Path) -> None:
    proc = ht("sweep", "/missing-hardtemp", cwd=home)
    assert (proc.returncode, proc.stdout) == (1, "")  # no "sweep: 0 removed, ..." line
    assert proc.stderr == "hardtemp sweep: /missing-hardtemp: no such directory\n"
    proc = ht("sweep", "--json", "/missing-hardtemp", cwd=home)
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert (data["ok"], data["missing_dirs"]) == (False, ["/missing-hardtemp"])


def test_sweep_command_of_an_unreadable_directory_fails(
    inproc: Path,
    shared_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_root("to act as another user")
    d = shared_dir / "unreadable"  # the other user's own, write+search only
    d.mkdir(mode=0o300)
    state = shared_dir / "state"
    state.mkdir(mode=0o700)
    for p in (d, state):
        os.chown(p, NOBODY, NOBODY)
    monkeypatch.setenv("XDG_STATE_HOME", str(state))  # nobody's own (empty) state directory
    with as_euid(NOBODY):
        status = main(["sweep", "--color", "never", str(d)])
    assert status == 1
    out = capsys.readouterr().out
    assert f"skipped dir    {d}: cannot list it (no read permission)" in out
    assert "sweep:" not in out  # nothing swept: no summary


def test_sweep_command_with_an_unusable_key_fails_and_removes_nothing(home: Path) -> None:
    orphan = _killed_child_file(home)
    key = Path(os.environ["XDG_STATE_HOME"], "hardtemp", "sweep.key")
    os.chmod(key, 0o644)  # readable by others: anyone could have forged marks with it
    try:
        proc = ht("sweep", str(home), cwd=home)
    finally:
        os.chmod(key, 0o600)
    assert proc.returncode == 1
    assert proc.stderr == f"hardtemp sweep: cannot verify marks: {key}: key has mode -rw-r--r--\n"
    assert os.path.exists(orphan)
    proc = ht("sweep", str(home), cwd=home)
    assert proc.returncode == 0
    assert not os.path.exists(orphan)


def test_sweep_command_without_any_key_removes_nothing_and_succeeds(home: Path) -> None:
    state = home / "state"
    state.mkdir(mode=0o700)
    proc = ht("sweep", "--json", str(home), cwd=home, env={"XDG_STATE_HOME": str(state)})
    assert proc.returncode == 0
    data = json.loads(proc.stdout)
    assert data["key_problem"] == f"{state}/hardtemp: no key directory"
    assert data["key_code"] == "key.no_dir"
    assert not (state / "hardtemp").exists()  # the sweeper never makes a key


def test_wipe_shows_progress_for_a_large_file_only_on_a_terminal(home: Path) -> None:
    require_tool("script", "bsdutils")
    big = home / "big"
    with open(big, "wb") as f:
        for _ in range(256):
            f.write(os.urandom(1 << 20))
    env = dict(os.environ, PYTHONPATH=SRC, TMPDIR=str(home))
    cmd = f"{sys.executable} -m hardtemp wipe --passes 2 {big}"
    tty = subprocess.run(
        ["script", "-qec", cmd, "/dev/null"], env=env, cwd=home, capture_output=True, text=True
    )
    assert tty.returncode == 0
    assert f"hardtemp wipe: {big}:" in tty.stdout  # the progress line (stderr on the terminal)
    assert not big.exists()
    small = home / "small"
    small.write_bytes(os.urandom(1 << 20))
    piped = ht("wipe", "--passes", "2", str(small), cwd=home)
    assert "hardtemp wipe:" not in piped.stderr


def _try_to_read(tmpdir: str) -> list[str]:
    # Runs as the other user: everything it manages to see or read.
    got: list[str] = []
    with contextlib.suppress(PermissionError):
        got += os.listdir(tmpdir)
    with contextlib.suppress(PermissionError), open(os.path.join(tmpdir, "f"), "rb") as f:
        got.append(f.read().decode())
    return got


@pytest.mark.attack
def test_run_tmpdir_cannot_be_read_by_another_user(
    home: Path, shared_dir: Path, other_user: Any
) -> None:
    # --dir a sticky world-writable directory, as /tmp: the other user can reach it.
    env = dict(os.environ, PYTHONPATH=SRC, TMPDIR=str(home))
    script = 'echo secret > "$TMPDIR/f"; echo "$TMPDIR"; read x'
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hardtemp",
            "run",
            "--dir",
            str(shared_dir),
            "--",
            "sh",
            "-c",
            script,
        ],
        cwd=home,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    tmpdir = proc.stdout.readline().strip()
    try:
        assert Path(tmpdir).parent == shared_dir
        assert (Path(tmpdir) / "f").read_text() == "secret\n"
        assert other_user(_try_to_read, tmpdir) == []
    finally:
        proc.stdin.write("\n")
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
        proc.stdout.close()
    assert not Path(tmpdir).exists()


# --------------------------------------------------------------------------- in process


@pytest.fixture
def inproc(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``main()`` in this process, with TMPDIR and the working directory at ``home``."""
    for var in ("TEMP", "TMP", "NO_COLOR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TMPDIR", str(home))
    monkeypatch.chdir(home)
    monkeypatch.setattr(_tempdir, "tempdir", None)
    return home


def test_check_verbose_shows_the_checked_components_without_colour_when_told(
    inproc: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "-v", "--color", "never", "--fail-on", "never"]) == 0
    out = capsys.readouterr().out
    assert "\033[" not in out
    assert "(-v shows" not in out
    assert f"hardtemp.gettempdir() -> {inproc}\n" in out
    # The trust walk's components are listed for an ok finding only with -v.
    component = rf"- directory {re.escape(str(inproc))}: uid {os.geteuid()} drwx------"
    assert re.search(component, out), out
    assert main(["check", "--color", "never", "--fail-on", "never"]) == 0
    quiet = capsys.readouterr().out
    assert "(-v shows the details of passed checks)" in quiet
    assert f"directory {inproc}: uid 0" not in quiet


def test_check_without_a_usable_tempdir_fails_and_names_no_selection(
    inproc: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def none() -> str:
        raise NoTrustedTempDirError(None, "every candidate refused")

    monkeypatch.setattr(_check, "gettempdir", none)
    assert main(["check", "--color", "never"]) == 1
    out = capsys.readouterr().out
    assert "gettempdir() ->" not in out
    assert re.search(r"ERROR\s+tempdir\.none\s+no trusted, writable temporary directory", out)
    assert "FAIL (exit 1)" in out


def test_check_into_a_closed_pipe_exits_141_without_a_traceback(
    inproc: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `hardtemp check | head -1`: the reader is gone (a real pipe, read end closed).
    r, w = os.pipe()
    os.close(r)
    with open(w, "w", buffering=1, closefd=True) as stream:
        monkeypatch.setattr(sys, "stdout", stream)
        # 128 + SIGPIPE, as a shell reports `cat` killed by SIGPIPE: never a failed gate's 1.
        assert main(["check", "--fail-on", "never"]) == 128 + signal.SIGPIPE
        # Later writes (the interpreter's flush at exit) go to /dev/null, not to an error.
        assert os.path.samestat(os.fstat(stream.fileno()), os.stat(os.devnull))
    assert capsys.readouterr().err == ""


def test_check_onto_a_full_device_reports_the_error_and_exits_1(home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TEMP", "TMP")}
    env.update(PYTHONPATH=SRC, TMPDIR=str(home))
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "hardtemp", "check", "--json"],
            cwd=home,
            env=env,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    assert proc.returncode == 1
    # One line naming the command and the error; no traceback, nothing else.
    assert proc.stderr == f"hardtemp check: [Errno {errno.ENOSPC}] {os.strerror(errno.ENOSPC)}\n"


def test_wipe_rejects_an_empty_path_before_touching_anything(
    inproc: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = inproc / "victim"
    victim.write_text("keep")
    assert main(["wipe", str(victim), ""]) == 2
    assert capsys.readouterr().err == "hardtemp wipe: error: invalid path ''; nothing was wiped\n"
    # Every path is checked before any is acted on: the valid one is still there.
    assert victim.read_text() == "keep"


@pytest.mark.parametrize("name", [".", ".."])
def test_wipe_r_refuses_dot_and_dotdot_and_removes_nothing(
    inproc: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    work = inproc / "work"
    (work / "tree").mkdir(parents=True)
    (work / "tree" / "f").write_text("data")
    (work / "g").write_text("data")
    os.chdir(work)
    assert main(["wipe", "-r", "--json", name]) == 1
    (entry,) = json.loads(capsys.readouterr().out)["results"]
    assert entry["ok"] is False
    assert entry["error"] == f"{name!r} does not name a file or directory to remove"
    assert (work / "tree" / "f").read_text() == "data"
    assert (work / "g").read_text() == "data"


def test_wipe_r_does_not_enter_a_mount_point_and_fails_naming_it(
    inproc: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_root("to mount a tmpfs")
    tree = inproc / "tree"
    (tree / "mnt").mkdir(parents=True)
    (tree / "plain").write_text("data")
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(tree / "mnt")], check=True
    )
    try:
        (tree / "mnt" / "other-fs").write_text("not ours to remove")
        assert main(["wipe", "-r", "--color", "never", str(tree)]) == 1
        out = capsys.readouterr().out
        assert f"FAILED  {tree}: {tree}/mnt: is a mount point; not descending into it" in out
        assert (tree / "mnt" / "other-fs").read_text() == "not ours to remove"
        assert not (tree / "plain").exists()
    finally:
        subprocess.run(["umount", str(tree / "mnt")], check=True)


def test_wipe_require_reliable_fails_on_ext4_data_journal_with_the_report(
    home: Path, loopfs: Callable[..., Any]
) -> None:
    fs = loopfs("ext4", options="data=journal", size_mb=32)
    victim = fs.mountpoint / "secret"
    victim.write_bytes(b"s" * 8192)
    proc = ht("wipe", "--require-reliable", "--json", str(victim), cwd=home)
    assert proc.returncode == 1
    (entry,) = json.loads(proc.stdout)["results"]
    assert entry["ok"] is False
    assert str(victim) in entry["error"]
    assert entry["report"]["verdict"] == "not in place"
    assert entry["report"]["reason_codes"][0] == "fs.data_journal"
    assert len(entry["report"]["reason_codes"]) == len(entry["report"]["reasons"])


def test_sweep_verbose_lists_a_live_processes_file_as_kept_and_keeps_it(
    inproc: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    area = inproc / "area"
    area.mkdir(mode=0o700)
    with hardtemp.NamedTemporaryFile(dir=area) as f:
        name = os.fsdecode(f.name)
        assert main(["sweep", "-v", "--color", "never", str(area)]) == 0
        out = capsys.readouterr().out
        assert re.search(rf"^kept\s+file {re.escape(name)}: ", out, re.M), out
        assert "0 removed, 1 kept" in out
        assert os.path.exists(name)
        assert main(["sweep", "--color", "never", str(area)]) == 0
        assert name not in capsys.readouterr().out  # kept entries only with -v


def test_run_fails_125_when_the_directory_cannot_be_removed(home: Path) -> None:
    require_root("to mount a tmpfs")
    # The command leaves a mount point in its TMPDIR: the cleanup must not descend
    # into another filesystem, so the directory stays and the success becomes 125.
    script = (
        'mkdir "$TMPDIR/m" && mount -t tmpfs -o size=64k tmpfs "$TMPDIR/m" '
        '&& echo x > "$TMPDIR/m/f"'
    )
    proc = ht("run", "--dir", str(home), "--", "sh", "-c", script, cwd=home)
    (made,) = list(home.glob("hardtemp-run-*"))
    try:
        assert proc.returncode == 125, proc.stderr
        assert proc.stderr.startswith(f"hardtemp run: could not fully remove {made}: ")
        assert (made / "m" / "f").read_text() == "x\n"
    finally:
        subprocess.run(["umount", str(made / "m")], check=False)
    # A failing command keeps its own status even when the cleanup also fails.
    script = 'mkdir "$TMPDIR/m" && mount -t tmpfs -o size=64k tmpfs "$TMPDIR/m"; exit 3'
    proc = ht("run", "--dir", str(home), "--", "sh", "-c", script, cwd=home)
    (second,) = [p for p in home.glob("hardtemp-run-*") if p != made]
    subprocess.run(["umount", str(second / "m")], check=False)
    assert proc.returncode == 3
    assert f"could not fully remove {second}" in proc.stderr


# write(2)'s number, the first field of /proc/PID/task/TID/syscall while a thread is in it.
SYS_WRITE = {"x86_64": 1, "aarch64": 64, "riscv64": 64}.get(os.uname().machine)


def _blocked_in_write(tid: int, fd: int) -> bool:
    """Whether thread ``tid`` of this process sleeps inside write(2) on ``fd`` right now.

    In write(2) on a pipe nobody reads, and asleep (state S): the pipe cannot take the
    write, and never will, so the thread stays blocked until a signal interrupts it.
    """
    task = Path(f"/proc/self/task/{tid}")

    def in_write() -> bool:
        fields = (task / "syscall").read_text().split()
        return len(fields) > 1 and fields[0] == str(SYS_WRITE) and int(fields[1], 16) == fd

    if not in_write():
        return False
    state = (task / "stat").read_text().rpartition(")")[2].split()[0]
    return state == "S" and in_write()


def test_ctrl_c_while_blocked_on_output_exits_130_without_a_traceback(
    inproc: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A real SIGINT, delivered while the command is blocked writing to a full pipe
    # (`hardtemp check -v | less`, then Ctrl-C). The signal must land *inside* the blocked
    # write(2): one handled just before the write starts is lost (Python only notes it,
    # and the write then blocks for ever), so we wait until the kernel shows the main
    # thread in write() on our pipe (/proc/self/task/TID/syscall) before sending it.
    tid = threading.main_thread().native_id
    assert tid is not None
    if SYS_WRITE is None:
        pytest.skip(f"write(2)'s system call number is not known for {os.uname().machine}")
    try:
        _blocked_in_write(tid, -1)
    except OSError as exc:  # a kernel without CONFIG_HAVE_ARCH_TRACEHOOK, or /proc missing
        pytest.skip(f"cannot see which system call a thread is in: {exc}")
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)
    dirs = [str(inproc / f"missing-{i}") for i in range(100)]  # well over 4 KiB of output
    done = threading.Event()
    sent = threading.Event()
    main_thread = threading.main_thread().ident
    assert main_thread is not None

    def interrupt_once_blocked() -> None:
        # main() cannot finish meanwhile (its output is several times what the pipe holds).
        while not done.is_set():
            if _blocked_in_write(tid, w):
                # To the main thread, so its blocked write() is the call interrupted.
                signal.pthread_kill(main_thread, signal.SIGINT)
                sent.set()
                return
            time.sleep(0.005)

    interrupter = threading.Thread(target=interrupt_once_blocked)
    # Python turns SIGINT into KeyboardInterrupt only if it was not ignored at startup (a
    # background job of a non-interactive shell inherits SIG_IGN): set up what a terminal has.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    with open(w, "w", buffering=1) as stream:
        monkeypatch.setattr(sys, "stdout", stream)
        interrupter.start()
        try:
            status = main(["check", "-v", "--fail-on", "never", *dirs])
        finally:
            done.set()
            interrupter.join()
            signal.signal(signal.SIGINT, previous)
            monkeypatch.undo()
            os.close(r)
            with contextlib.suppress(OSError):
                stream.close()
    assert sent.is_set()
    assert status == 128 + signal.SIGINT
    assert capsys.readouterr().err == ""


def test_wipe_of_a_hard_linked_file_is_refused_and_says_why_in_the_text_output(
    inproc: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The other name may be another user's link to a file we never meant to destroy.
    a, b = inproc / "a", inproc / "b"
    a.write_bytes(b"secret data")
    os.link(a, b)
    assert main(["wipe", "--color", "never", str(a)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"FAILED  {a}: ")
    assert "has 2 hard links" in out
    assert "nothing removed" in out
    assert a.read_bytes() == b.read_bytes() == b"secret data"


# --------------------------------------------------------------------------- compat's CLI fixes


def test_version_prints_the_installed_version_once(home: Path) -> None:
    proc = ht("--version", cwd=home)
    assert proc.returncode == 0
    assert proc.stdout == f"hardtemp {hardtemp.__version__}\n"
    assert proc.stderr == ""


@pytest.mark.parametrize("command", ["check", "wipe", "sweep"])
def test_an_unknown_option_names_the_subcommand(home: Path, command: str) -> None:
    proc = ht(command, "--no-such-option", "x", cwd=home)
    _one_line_error(proc)
    assert proc.stderr.startswith(f"hardtemp {command}: error: unrecognized arguments: ")
    assert "--no-such-option" in proc.stderr
    assert f"'hardtemp {command} --help'" in proc.stderr


@pytest.mark.parametrize("command", [["check"], ["wipe", "x"], ["sweep"], ["run", "true"]])
def test_an_invalid_wipe_policy_in_the_environment_is_one_line_and_exit_2(
    home: Path, command: list[str]
) -> None:
    victim = home / "x"
    victim.write_text("keep")
    proc = ht(*command, cwd=home, env={"HARDTEMP_WIPE_POLICY": "strict"})
    _one_line_error(proc)
    assert proc.stderr == (
        f"hardtemp {command[0]}: error: environment variable HARDTEMP_WIPE_POLICY='strict' "
        "is invalid: allowed values are warn, error, ignore (or unset for warn)\n"
    )
    assert victim.read_text() == "keep"  # nothing was done


def test_check_into_a_pipe_whose_reader_left_exits_141_quietly_as_a_process(home: Path) -> None:
    # `hardtemp check | head -1` after head left: a real pipe with its read end closed,
    # the whole process (the interpreter's own flush at exit included).
    base = {k: v for k, v in os.environ.items() if k not in ("TEMP", "TMP")}
    base.update(PYTHONPATH=SRC, TMPDIR=str(home))
    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "hardtemp", "check", "--fail-on", "never"],
            cwd=home,
            env=base,
            stdout=w,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(w)
    assert proc.stderr == ""
    assert proc.returncode == 128 + signal.SIGPIPE


def test_wipe_r_accepts_a_trailing_slash_on_a_directory(
    inproc: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = inproc / "work"
    (work / "tree").mkdir(parents=True)
    (work / "tree" / "f").write_text("data")
    os.chdir(work)
    assert main(["wipe", "-r", "--json", "tree/"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)["results"]
    assert entry["ok"] is True
    assert entry["path"] == "tree/"
    assert not (work / "tree").exists()


@pytest.mark.parametrize(
    ("kind", "why"), [("link", "a symlink (never followed)"), ("file", "not one")]
)
def test_wipe_r_refuses_a_trailing_slash_on_a_symlink_or_file_and_touches_nothing(
    inproc: Path, capsys: pytest.CaptureFixture[str], kind: str, why: str
) -> None:
    work = inproc / "work"
    (work / "tree").mkdir(parents=True)
    (work / "tree" / "f").write_text("data")
    (work / "file").write_text("data")
    (work / "link").symlink_to("tree")
    os.chdir(work)
    assert main(["wipe", "-r", "--json", f"{kind}/"]) == 1
    (entry,) = json.loads(capsys.readouterr().out)["results"]
    assert entry["ok"] is False
    assert why in entry["error"]
    assert (work / "tree" / "f").read_text() == "data"
    assert (work / "file").read_text() == "data"
    assert (work / "link").is_symlink()


# ---------------------------------------------------------------- wipe: a file we may not write


def _unwritable_for_nobody(base: Path) -> tuple[Path, Path, bytes]:
    """A directory uid 65534 may write (under ``base``, a sticky /tmp-like directory it
    can reach), holding root's 0644 file: removable by uid 65534, not writable."""
    require_root("to act as uid 65534 on root's file")
    theirs_dir = base / "shared"
    theirs_dir.mkdir()
    os.chown(theirs_dir, NOBODY, NOBODY)
    victim = theirs_dir / "report.csv"
    data = b"SECRET-" + os.urandom(8).hex().encode()
    victim.write_bytes(data)
    os.chmod(victim, 0o644)
    return theirs_dir, victim, data


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_wipe_of_a_file_it_cannot_overwrite_fails_and_leaves_it(
    inproc: Path, shared_dir: Path, capsys: pytest.CaptureFixture[str], as_json: bool
) -> None:
    from _helpers_euid import as_euid

    _, victim, data = _unwritable_for_nobody(shared_dir)
    argv = ["wipe", *(["--json"] if as_json else []), str(victim)]
    with as_euid(NOBODY):
        status = main(argv)
    out = capsys.readouterr().out
    assert status == 1
    assert victim.read_bytes() == data  # never overwritten, and not removed: nothing hidden
    if as_json:
        (entry,) = json.loads(out)["results"]
        assert entry["ok"] is False
        assert entry["report"]["data_left"] is True
        assert entry["report"]["removed"] is False
        assert entry["report"]["bytes_overwritten"] == 0
    else:
        first = out.splitlines()[0]
        assert first.startswith(f"FAILED  {victim}: ")
        assert "not writable and not ours" in first or "not writable" in out
        assert "not removed" in out
        assert "wiped" not in out.split("FAILED")[0]


def test_wipe_remove_unwiped_removes_the_name_and_still_fails(
    inproc: Path, shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from _helpers_euid import as_euid

    _, victim, data = _unwritable_for_nobody(shared_dir)
    keep = os.open(victim, os.O_RDONLY)
    try:
        with as_euid(NOBODY):
            status = main(["wipe", "--json", "--remove-unwiped", str(victim)])
        (entry,) = json.loads(capsys.readouterr().out)["results"]
        assert status == 1
        assert entry["ok"] is False
        assert entry["report"]["removed"] is True
        assert entry["report"]["data_left"] is True
        assert not victim.exists()
        assert os.pread(keep, 100, 0) == data  # the data really is still there
    finally:
        os.close(keep)


def test_wipe_require_reliable_also_fails_for_a_file_it_cannot_overwrite(
    inproc: Path, shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from _helpers_euid import as_euid

    _, victim, data = _unwritable_for_nobody(shared_dir)
    with as_euid(NOBODY):
        status = main(["wipe", "--require-reliable", str(victim)])
    assert status == 1
    assert victim.read_bytes() == data
    assert capsys.readouterr().out.startswith(f"FAILED  {victim}")


def test_wipe_recursive_of_a_tree_with_a_file_it_cannot_overwrite_fails(
    inproc: Path, shared_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from _helpers_euid import as_euid

    theirs_dir, victim, _ = _unwritable_for_nobody(shared_dir)
    tree = theirs_dir / "tree"
    tree.mkdir()
    os.chown(tree, NOBODY, NOBODY)
    os.rename(victim, tree / "report.csv")
    with as_euid(NOBODY):
        status = main(["wipe", "-r", "--json", str(tree)])
    (entry,) = json.loads(capsys.readouterr().out)["results"]
    assert status == 1
    assert entry["ok"] is False
    assert "report.csv: the file is not writable and not ours" in entry["error"]


def test_check_ignore_accepts_one_known_finding_and_nothing_else(home: Path) -> None:
    hostile = home / "hostile"
    hostile.mkdir()
    os.chmod(hostile, 0o777)
    failing = _check_json(home, str(hostile))
    assert failing["failed"] is True
    # Accepting exactly that finding (code:subject) passes the gate; it is still reported.
    data = _check_json(home, str(hostile), "--ignore", f"dir.untrusted:{hostile}")
    assert data["failed"] is False
    assert data["ignore"] == [f"dir.untrusted:{hostile}"]
    (d,) = [d for d in data["directories"] if d["path"] == str(hostile)]
    (f,) = [f for f in d["findings"] if f["code"] == "dir.untrusted"]
    assert f["ignored"] is True
    assert f["level"] == "error"
    assert data["counts"]["ignored"] >= 1
    # Another finding at the same level still fails; so does the same code elsewhere.
    other = home / "other"
    other.mkdir()
    os.chmod(other, 0o777)
    again = _check_json(home, str(hostile), str(other), "--ignore", f"dir.untrusted:{hostile}")
    assert again["failed"] is True
    # By code alone: every finding with that code.
    both = _check_json(home, str(hostile), str(other), "--ignore", "dir.untrusted")
    assert both["failed"] is False


def test_check_ignore_that_matches_nothing_says_so_and_changes_nothing(home: Path) -> None:
    proc = ht("check", "--fail-on", "never", "--ignore", "no.such-code", cwd=home)
    assert proc.returncode == 0
    assert proc.stderr == (
        "hardtemp check: note: --ignore no.such-code matched no finding: "
        "no.such-code is not a finding code\n"
    )
    assert "ignored" not in proc.stdout
    # A real code that matches nothing here (a subject that does not exist) is only unmatched.
    known = ht("check", "--fail-on", "never", "--ignore", "swap:nowhere", cwd=home)
    assert known.returncode == 0
    assert known.stderr == "hardtemp check: note: --ignore swap:nowhere matched no finding\n"


def test_check_json_lists_each_mount_option_once(home: Path) -> None:
    data = _check_json(home, "--fail-on", "never")
    filesystems = [d["filesystem"] for d in data["directories"] if d["filesystem"]]
    assert filesystems
    for fs in filesystems:
        assert len(fs["options"]) == len(set(fs["options"])), fs["options"]
        assert "rw" in fs["options"] or "ro" in fs["options"]


def test_run_reports_a_skipped_tmpdir_as_one_line_of_its_own(home: Path) -> None:
    hostile = home / "hostile"
    hostile.mkdir()
    os.chmod(hostile, 0o777)  # writable by others without the sticky bit: skipped
    env = {"TMPDIR": str(hostile), "TEMP": str(home)}
    proc = ht("run", "--", "true", cwd=home, env=env)
    assert proc.returncode == 0
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(
        f"hardtemp run: warning: skipped temporary directory candidate {hostile}"
    )
    assert "UnsafeCandidateWarning" not in proc.stderr
    assert ".py:" not in proc.stderr  # no "file.py:LINE:" of a raw Python warning
