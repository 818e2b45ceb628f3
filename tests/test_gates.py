"""The test gates (tests/_gates.py): skips with reasons, failures under HARDTEMP_REQUIRE_ALL=1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent

# A tiny suite whose gates are certain to trip: the tool and the module do not exist.
CONFTEST = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
from _gates import pytest_runtest_makereport as pytest_runtest_makereport
"""
SUITE = """
import pytest
from _gates import needs_tool, require_module, require_tool

@needs_tool("no-such-tool-hardtemp", "nothing")
def test_marked():
    pass

def test_called():
    require_tool("no-such-tool-hardtemp", "nothing")

def test_module():
    require_module("no_such_module_hardtemp", "to prove the gate")

def test_plain_skip_is_no_gate():
    pytest.skip("a fact about this machine, not a missing capability")
"""


def _run(tmp_path: Path, require_all: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_suite.py").write_text(SUITE)
    env = {k: v for k, v in os.environ.items() if k != "HARDTEMP_REQUIRE_ALL"}
    if require_all is not None:
        env["HARDTEMP_REQUIRE_ALL"] = require_all
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:hardtemp", "-rA"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("value", [None, "0"])
def test_a_gate_skips_with_its_reason_by_default(tmp_path: Path, value: str | None) -> None:
    proc = _run(tmp_path, value)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 skipped" in proc.stdout
    assert "no-such-tool-hardtemp is not installed (Debian package nothing)" in proc.stdout
    assert "this interpreter has no no_such_module_hardtemp (to prove the gate)" in proc.stdout


def test_under_require_all_a_gate_skip_fails_and_a_plain_skip_stays(tmp_path: Path) -> None:
    proc = _run(tmp_path, "1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    # The mark's skip happens in setup (an error), the calls' in the test (failures).
    assert "2 failed, 1 skipped, 1 error" in out, out
    assert "HARDTEMP_REQUIRE_ALL=1 forbids this skip: no-such-tool-hardtemp" in out
    assert "SKIPPED [1] test_suite.py:16: a fact about this machine" in out
