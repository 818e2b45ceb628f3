"""Start-up cost: ``python -c "import hardtemp.compat"`` against ``python -c "import tempfile"``.

Whole processes (interpreter start-up included, as a ``sitecustomize`` that
calls ``install()`` costs every Python process), run alternately, several
rounds; prints the median wall-clock time of each and the ratio. Target
(issue 14): ``import hardtemp.compat`` at most 1.5x ``import tempfile``.

    python benchmarks/bench_import.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parent.parent / "src")
CASES = {
    "python -c pass": "pass",
    "import tempfile": "import tempfile",
    "import hardtemp.compat": "import hardtemp.compat",
    "hardtemp.compat.install()": "import hardtemp.compat; hardtemp.compat.install()",
    "import hardtemp": "import hardtemp",
    "hardtemp.mkstemp() (all loaded)": "import hardtemp, os; os.close(hardtemp.mkstemp()[0])",
}


def _run(code: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True)  # noqa: S603 - our code
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="processes per case (default 30)")
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=SRC)
    env.pop("PYTHONSTARTUP", None)
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for code in CASES.values():  # warm the .pyc caches first
        _run(code, env)
    for _ in range(args.runs):
        for name, code in CASES.items():  # interleaved: load changes hit every case alike
            times[name].append(_run(code, env))
    base = statistics.median(times["import tempfile"])
    print(f"{sys.executable} ({sys.version.split()[0]}), {args.runs} processes per case")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"  {name:34s} {med * 1000:7.1f} ms   {med / base:5.2f}x import tempfile")
    ratio = statistics.median(times["import hardtemp.compat"]) / base
    print(f"import hardtemp.compat / import tempfile: {ratio:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
