"""The test machinery itself: a run leaves nothing behind in the temporary directory, and
runs side by side cannot undo each other's sysctls."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from _gates import require_root, require_unshare
from _helpers_attack import sysctl_set
from _helpers_core import AUDITED_SYSCTLS, sysctl, sysctl_path, sysctls_held

ROOT = Path(__file__).resolve().parent.parent


def test_a_test_run_removes_its_state_directory(tmp_path: Path) -> None:
    # A real inner pytest run of one quick test, with its own TMPDIR: conftest makes the
    # run's XDG_STATE_HOME there (ht-state-*), and must remove it when the run ends.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    env.pop("XDG_STATE_HOME", None)
    env.pop("COV_CORE_SOURCE", None)  # no coverage of the inner run: only its leftovers count
    test = "tests/test_layout.py::test_ruff_enforces_complexity_15_on_src"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    assert sorted(p.name for p in tmp.iterdir() if p.name.startswith("ht-state-")) == []


# --- sysctls shared by test runs side by side (CI runs its stages at once) ------------------

_SYSCTL = "fs.protected_hardlinks"


class _OtherRun:
    """Another test run, in a forked child made before we take any lock (a child forked
    inside our block would share our lock): on cue it enters ``sysctl_set``, says so, and
    leaves its block on a second cue."""

    def __init__(self) -> None:
        go_r, self.go = os.pipe()
        self.entered, entered_w = os.pipe()
        leave_r, self.leave = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - child
            status = 1
            try:
                os.read(go_r, 1)
                with sysctl_set(_SYSCTL, 0):
                    os.write(entered_w, b"1")
                    select.select([leave_r], [], [], 10)
                status = 0
            finally:
                os._exit(status)
        for fd in (go_r, entered_w, leave_r):
            os.close(fd)

    def start(self) -> None:
        os.write(self.go, b"1")

    def came_in(self, timeout: float) -> bool:
        return select.select([self.entered], [], [], timeout)[0] != []

    def finish(self) -> bool:
        """Let it leave its block; whether it entered it at all and ended well."""
        os.write(self.leave, b"1")
        got = self.came_in(10) and os.read(self.entered, 1) == b"1"
        _, status = os.waitpid(self.pid, 0)
        for fd in (self.go, self.entered, self.leave):
            os.close(fd)
        return got and os.waitstatus_to_exitcode(status) == 0


def _settled(name: str) -> int:
    """The sysctl's value while no run is inside a ``sysctl_set`` of it (read under the shared
    lock): not another run's temporary value (CI's other lane sets this one too; read
    without the lock, its 0 failed the 3.11 lane's comparison once)."""
    with sysctls_held(name):
        return sysctl(name)


def _restore(name: str, value: int) -> None:
    """Put ``value`` back (a test that failed inside its block), under the exclusive lock:
    never flipping it under another run's block."""
    with sysctls_held(name, exclusive=True):
        sysctl_path(name).write_text(f"{value}\n")


def test_two_runs_setting_one_sysctl_side_by_side_leave_it_as_it_was() -> None:
    # The interleaving that broke it: we set, the other run sets (and takes our temporary
    # value for the one to restore), we restore, the other run restores our temporary value.
    require_root("to set a sysctl")
    before = _settled(_SYSCTL)
    other = _OtherRun()
    try:
        with sysctl_set(_SYSCTL, 0):
            other.start()
            inside_with_us = other.came_in(2)  # time to come in beside us: it must not
        assert other.finish()
        assert not inside_with_us
        assert _settled(_SYSCTL) == before
    finally:
        _restore(_SYSCTL, before)


def test_a_test_comparing_sysctls_sees_no_other_runs_flip() -> None:
    # What the steady_sysctls fixture holds (shared) for a test that compares a sysctl it
    # read with what the audit read: the other run's sysctl_set waits until it ends.
    require_root("to set a sysctl")
    before = _settled(_SYSCTL)
    other = _OtherRun()
    try:
        with sysctls_held(*AUDITED_SYSCTLS):
            other.start()
            flipped = other.came_in(2)
            during = sysctl(_SYSCTL)
        assert other.finish()  # it could set it once we were done
        assert not flipped
        assert during == before
    finally:
        _restore(_SYSCTL, before)


def test_a_loop_filesystem_mounted_again_is_a_new_superblock(loopfs: Any) -> None:
    # Another run's private mount namespace, made while the image is mounted, keeps the
    # superblock alive after our umount: without the fixture's wait, the mount below reuses
    # it (and its loop device) and drops data=journal (test_fsinfo's remount tests flaked so).
    require_unshare()
    fs = loopfs("ext4", size_mb=16)
    holder = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sleep", "2"])
    try:
        time.sleep(0.5)  # the namespace is made, with its copy of the mount
        fs.unmount()
        fs.options = "data=journal"
        fs.mount()
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            line = next(ln for ln in f if f" {fs.mountpoint} " in ln)
        assert "data=journal" in line.split(" - ")[1], line
    finally:
        holder.wait()


_THREAD_STARTS = r"""
import json, sys, threading
sys.path.insert(0, sys.argv[1])
from _helpers_core import start_threads

def tracer(frame, event, arg):
    return None

def installer(frame, event, arg):  # what coverage's threading.settrace hook does in a thread
    sys.settrace(None)
    sys.settrace(tracer)
    return tracer

threading.settrace(installer)
sys.addaudithook(lambda event, args: event.startswith("hardtemp."))  # as this suite's do
lost = []
sys.unraisablehook = lambda u: lost.append(str(u.exc_value))
sys.setswitchinterval(1e-6)
ran = []
rounds, at_once = 0, sys.argv[2] == "all-at-once"
while rounds < int(sys.argv[3]) and not (at_once and lost):
    if at_once:
        threads = [threading.Thread(target=ran.append, args=(1,)) for _ in range(16)]
        for t in threads:
            t.start()
    else:
        threads = start_threads((ran.append, (1,)) for _ in range(16))
    for t in threads:
        t.join()
    rounds += 1
print(json.dumps({"lost": sorted(set(lost)), "ran": len(ran), "started": 16 * rounds}))
"""


def _thread_starts(how: str, rounds: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", _THREAD_STARTS, str(Path(__file__).parent), how, str(rounds)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_threads_started_one_at_a_time_all_run_their_target_under_a_tracer() -> None:
    # A tracer's threading.settrace, a Python audit hook, a switch after every bytecode: what
    # killed one of 16 threads at a Barrier in CI (3.11 with --cov), which then waited for ever.
    got = _thread_starts("start_threads", 400)
    assert got["lost"] == []
    assert got["ran"] == got["started"] == 6400


def test_a_thread_that_reaches_its_target_and_ends_while_the_starter_looks_is_not_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What failed CI once on 3.13 (two lanes on two cores): the starter's wait timed out, the
    # thread then reached its target and ended before the starter asked is_alive(). The
    # timing is stood in for: the first wait returns "not set" only once the thread is done.
    import threading

    import _helpers_core

    class LateWait(threading.Event):
        first = True

        def wait(self, timeout: float | None = None) -> bool:
            if LateWait.first:
                LateWait.first = False
                super().wait()  # the thread is at its target...
                time.sleep(0.2)  # ...and ends, while this wait "times out"
                return False
            return super().wait(timeout)

    monkeypatch.setattr(_helpers_core, "_Event", LateWait)
    ran: list[int] = []
    (thread,) = _helpers_core.start_threads([(ran.append, (1,))])
    thread.join()
    assert ran == [1]
    assert not LateWait.first  # the stand-in did run


def test_control_threads_started_all_at_once_under_a_tracer_lose_one_on_3_11() -> None:
    if sys.version_info >= (3, 12):
        pytest.skip("control: only CPython 3.11's sys.settrace refuses a concurrent install")
    got = _thread_starts("all-at-once", 5000)
    assert got["lost"] == [
        "Cannot install a trace function while another trace function is being installed"
    ]
    assert got["ran"] < got["started"]  # a thread that never ran its target


# --- the shared_dir fixture's cleanup ------------------------------------------------------


def _tree_left_by(remove: str) -> bool:
    """As the other user: a shared_dir-like tree with a mode-000 directory two levels down
    (as test_cli's tests make them), removed the ``remove`` way; whether any of it is left."""
    import shutil
    import tempfile

    from conftest import remove_test_tree

    base = Path(tempfile.mkdtemp(prefix="ht-conftest-"))
    (base / "nobody").mkdir()
    (base / "nobody" / "impostor").mkdir(mode=0o000)
    (base / "locked").mkdir(mode=0o000)
    if remove == "fixture":
        remove_test_tree(base)
    else:
        shutil.rmtree(base, ignore_errors=True)  # the fixture's old cleanup
    left = base.exists()
    if left:  # the control's leftover: removed here, as the fixture now does
        remove_test_tree(base)
    return left


@pytest.mark.parametrize("remove", ["fixture", "control-plain-rmtree"])
def test_an_ordinary_users_shared_dir_with_mode_000_directories_is_removed(
    other_user: Any, remove: str
) -> None:
    # Every CI run left two ht-shared-* directories in /tmp from the ordinary-user stage.
    left = other_user(_tree_left_by, remove)
    assert left is (remove != "fixture")
