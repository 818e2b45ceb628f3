"""Forensic proof for the tools: what `hardtemp sweep`, `hardtemp run` and the
pytest fixture remove leaves no plaintext in the raw filesystem image.

Each case writes unique markers and fsyncs them, checks they are in the raw
image (the precondition that lets the test fail), removes through the tool,
unmounts and searches the image. The control removes the same way a plain
``rm`` does: there the markers survive.
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from _helpers_core import marker
from hardtemp import _dirtrust, _fsinfo
from hardtemp._sweep import sweep

pytestmark = pytest.mark.forensic
pytest_plugins = ["pytester"]

SRC = str(Path(__file__).resolve().parent.parent.parent / "src")

# The child writes both markers, fsyncs them and reports its file and directory.
CHILD = r"""
import os, sys, hardtemp
d, m1, m2 = sys.argv[1], sys.argv[2].encode(), sys.argv[3].encode()
f = hardtemp.NamedTemporaryFile(dir=d)
f.write(m1 * 200); f.flush(); os.fsync(f.fileno())
t = hardtemp.TemporaryDirectory(dir=d)
with open(os.path.join(t.name, "inner"), "wb") as g:
    g.write(m2 * 200); g.flush(); os.fsync(g.fileno())
print(f.name, t.name, flush=True)
sys.stdin.read()
"""


def _in_image(fs: Any, needle: bytes) -> bool:
    """Search the raw image while mounted (the loop device writes through)."""
    return needle in fs.image.read_bytes()


def _killed_child(where: Path, m1: bytes, m2: bytes) -> tuple[Path, Path]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(where), m1.decode(), m2.decode()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=SRC),
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    name, dname = proc.stdout.readline().split()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    proc.stdin.close()
    return Path(name), Path(dname)


@pytest.mark.parametrize("remover", ["hardtemp sweep", "control: rm"])
def test_sweep_leaves_no_plaintext_of_a_sigkilled_process(
    loopfs: Callable[..., Any], remover: str
) -> None:
    _fsinfo.clear_cache()
    fs = loopfs("ext4")
    m1, m2 = marker(), marker()
    name, dname = _killed_child(fs.mountpoint, m1, m2)
    subprocess.run(["sync"], check=True)
    assert _in_image(fs, m1), "precondition: the file's data reached the disk"
    assert _in_image(fs, m2), "precondition: the directory's file reached the disk"
    if remover == "hardtemp sweep":
        result = sweep([str(fs.mountpoint)])
        assert {e.action for e in result.entries} == {"removed"}
        # The verified-directory cache holds a descriptor of the mount point: drop it to unmount.
        _dirtrust.clear_cache()
        gc.collect()
    else:
        os.unlink(name)
        shutil.rmtree(dname)
    assert not name.exists()
    assert not dname.exists()
    found = (fs.image_contains(m1), fs.image_contains(m2))
    assert found == ((False, False) if remover == "hardtemp sweep" else (True, True))


@pytest.mark.parametrize("runner", ["hardtemp run", "control: rm"])
def test_run_leaves_no_plaintext_of_the_commands_temp_files(
    loopfs: Callable[..., Any], runner: str
) -> None:
    _fsinfo.clear_cache()
    fs = loopfs("ext4")
    m = marker()
    script = (
        f'mkdir -p "$TMPDIR/sub"; for i in $(seq 200); do printf %s {m.decode()}; done '
        f'> "$TMPDIR/sub/data"; sync; grep -qa {m.decode()} "$PRE" && echo ok'
    )
    env = dict(os.environ, PYTHONPATH=SRC, PRE=str(fs.image))
    if runner == "hardtemp run":
        cmd = [sys.executable, "-m", "hardtemp", "run", "--dir", str(fs.mountpoint), "--"]
        proc = subprocess.run([*cmd, "sh", "-c", script], env=env, capture_output=True, text=True)
    else:
        d = fs.mountpoint / "plain"
        d.mkdir()
        proc = subprocess.run(
            ["sh", "-c", f'TMPDIR={d}; {script}; rm -rf "$TMPDIR"'],
            env=env,
            capture_output=True,
            text=True,
        )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok", "precondition: the data reached the disk"
    assert [p.name for p in fs.mountpoint.iterdir() if p.name != "lost+found"] == []
    assert fs.image_contains(m) == (runner != "hardtemp run")


def test_hardtemp_path_leaves_no_plaintext(
    loopfs: Callable[..., Any],
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fsinfo.clear_cache()
    fs = loopfs("ext4")
    m = marker()
    pytester.makepyfile(
        f"""
        import os

        def test_writes(hardtemp_path):
            with open(hardtemp_path / "data", "wb") as f:
                f.write({m!r} * 200)
                f.flush()
                os.fsync(f.fileno())
            assert {m!r} in open({str(fs.image)!r}, "rb").read()  # precondition
        """
    )
    monkeypatch.setenv("PYTHONPATH", SRC)
    monkeypatch.setenv("TMPDIR", str(fs.mountpoint))
    eps = entry_points(group="pytest11")
    installed = any(ep.value == "hardtemp._pytest_plugin" for ep in eps)
    plugin = [] if installed else ["-p", "hardtemp._pytest_plugin"]
    pytester.runpytest_subprocess(*plugin, "-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert [p.name for p in fs.mountpoint.iterdir() if p.name != "lost+found"] == []
    assert not fs.image_contains(m)
