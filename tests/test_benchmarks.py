"""benchmarks/: every script still imports what it measures (they use private names, which
move; a renamed one broke bench_lifecycle.py unnoticed, since no test ran it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import hardtemp

BENCHMARKS = sorted((Path(__file__).parents[1] / "benchmarks").glob("bench_*.py"))


def test_the_benchmarks_are_found() -> None:
    assert len(BENCHMARKS) >= 7, BENCHMARKS  # the control: the glob finds the scripts


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.name)
def test_a_benchmark_imports_and_parses_its_options(script: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(script), "--help"],
        env=dict(os.environ, PYTHONPATH=str(Path(hardtemp.__file__).parents[1])),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
