"""Start-up cost: ``python -c "import hardtemp.compat"`` against ``python -c "import tempfile"``.

Whole processes (interpreter start-up included, as a ``sitecustomize`` that
calls ``install()`` costs every Python process), run alternately, several
rounds; prints the median wall-clock and CPU time (user + system of the
child) of each, their ratios, and the load average. Target (issue 14):
``import hardtemp.compat`` at most 1.5x ``import tempfile``.

    python benchmarks/bench_import.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parent.parent / "src")
CASES = {
    "python -c pass": "pass",
    "import tempfile": "import tempfile",
    "import hardtemp.compat": "import hardtemp.compat",
    "hardtemp.compat.install()": "import hardtemp.compat; hardtemp.compat.install()",
    "import hardtemp": "import hardtemp",
    # Removes what it made: each run left an empty file in the user's temporary directory.
    "hardtemp.mkstemp() (all loaded)": (
        "import hardtemp, os; fd, p = hardtemp.mkstemp(); os.close(fd); os.unlink(p)"
    ),
}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(code: str, env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one whole process."""
    start, cpu = time.perf_counter(), _cpu()
    subprocess.run([sys.executable, "-c", code], env=env, check=True)  # noqa: S603 - our code
    return time.perf_counter() - start, _cpu() - cpu


def _measure(runs: int, env: dict[str, str]) -> dict[str, list[tuple[float, float]]]:
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in CASES}
    for code in CASES.values():  # warm the .pyc caches first
        _run(code, env)
    for _ in range(runs):
        for name, code in CASES.items():  # interleaved: load changes hit every case alike
            times[name].append(_run(code, env))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="processes per case (default 30)")
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=SRC)
    env.pop("PYTHONSTARTUP", None)
    # The warm-up must leave .pyc files, as an installed package has: without them every
    # process would compile hardtemp's sources and the ratio would measure the compiler.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # The children's files go in a private directory of ours, removed at the end (and checked
    # empty first: a case that leaves something behind is a bug to fix, not to hide).
    private = tempfile.mkdtemp(prefix="bench_import.")
    env["TMPDIR"] = private
    try:
        times = _measure(args.runs, env)
        left = os.listdir(private)
    finally:
        shutil.rmtree(private)
    if left:
        sys.exit(f"the cases left {sorted(left)} in their temporary directory")

    def med(name: str, kind: int) -> float:
        return statistics.median(t[kind] for t in times[name])

    print(f"{sys.executable} ({sys.version.split()[0]}), {args.runs} processes per case")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs")
    print(f"  {'':34s} {'wall':>9s} {'':>7s}  {'CPU':>9s}")
    for name in times:
        wall, cpu = med(name, 0), med(name, 1)
        print(
            f"  {name:34s} {wall * 1000:7.1f} ms {wall / med('import tempfile', 0):5.2f}x"
            f"  {cpu * 1000:7.1f} ms {cpu / med('import tempfile', 1):5.2f}x import tempfile"
        )
    for name in ("import hardtemp.compat", "hardtemp.compat.install()"):
        wall = med(name, 0) / med("import tempfile", 0)
        cpu = med(name, 1) / med("import tempfile", 1)
        target = " (target <= 1.5x)" if name == "import hardtemp.compat" else ""
        print(f"{name} / import tempfile: wall {wall:.2f}x, CPU {cpu:.2f}x{target}")


if __name__ == "__main__":
    main()
