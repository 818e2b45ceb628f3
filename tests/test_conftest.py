"""The test machinery itself: a run leaves nothing behind in the temporary directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
