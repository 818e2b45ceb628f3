"""CPython's own test_tempfile, run against hardtemp.compat (issue 5), as part of the suite.

The runner compares every public-API test against the standard module and fails
when one that passes there fails against ours, outside the listed exclusions.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from _gates import require_module

RUNNER = Path(__file__).parent / "cpython" / "run_cpython_tempfile_tests.py"


def test_cpython_test_tempfile_passes_against_compat() -> None:
    # Debian's /usr/bin/python3 comes without its test package (libpython3.X-testsuite).
    require_module("test.test_tempfile", "CPython's own tests: Debian ships them separately")
    env = dict(os.environ)
    src = str(Path(__file__).parent.parent / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, str(RUNNER)], env=env, capture_output=True, text=True, timeout=600
    )
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    assert "hardtemp.compat on CPython" in proc.stdout
