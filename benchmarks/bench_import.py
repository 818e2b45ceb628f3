"""Start-up cost: ``python -c "import hardtemp.compat"`` against ``python -c "import tempfile"``.

Whole processes (interpreter start-up included, as a ``sitecustomize`` that
calls ``install()`` costs every Python process), run alternately, several
rounds; prints the median wall-clock and CPU time (user + system of the
child) of each, their ratios, and the load average. Target (issue 14):
``import hardtemp.compat`` at most 1.5x ``import tempfile``.

Then the first use, side by side: the import and a first ``mkstemp``, ``NamedTemporaryFile``
or ``TemporaryFile`` lifecycle (what a short-lived CLI pays), each against ``tempfile`` doing
the same in the same run. Every child works in a private directory the benchmark makes and
removes; it fails if a case leaves anything there.

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
# First use: the same code with `tempfile` and with `hardtemp` as M; D is the private directory.
_FIRST_USE = {
    "mkstemp": "fd, p = M.mkstemp(dir=D); os.close(fd); os.unlink(p)",
    "NamedTemporaryFile": "with M.NamedTemporaryFile(dir=D) as f: f.write(b'x')",
    "TemporaryFile": "with M.TemporaryFile(dir=D) as f: f.write(b'x')",
}
_PRELUDE = "import os, {m} as M; D = os.environ['BENCH_IMPORT_DIR']\n"
FIRST_USE = {
    name: (_PRELUDE.format(m="tempfile") + code, _PRELUDE.format(m="hardtemp") + code)
    for name, code in _FIRST_USE.items()
}
# hardtemp's TemporaryFile encrypts by default (and loads the crypto stack); without it too:
FIRST_USE["TemporaryFile(encrypt=False)"] = (
    FIRST_USE["TemporaryFile"][0],
    FIRST_USE["TemporaryFile"][1].replace("(dir=D)", "(dir=D, encrypt=False)"),
)
for _name, (_std, _ours) in FIRST_USE.items():
    CASES[f"tempfile: {_name}"] = _std
    CASES[f"hardtemp: {_name}"] = _ours


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
    env["TMPDIR"] = env["BENCH_IMPORT_DIR"] = private
    try:
        times = _measure(args.runs, env)
        left = os.listdir(private)
    finally:
        shutil.rmtree(private)
    if left:
        sys.exit(f"the cases left {sorted(left)} in their temporary directory")

    print(f"{sys.executable} ({sys.version.split()[0]}), {args.runs} processes per case")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs")
    _report(times)


def _report(times: dict[str, list[tuple[float, float]]]) -> None:
    def med(name: str, kind: int) -> float:
        return statistics.median(t[kind] for t in times[name])

    print(f"  {'':34s} {'wall':>9s} {'':>7s}  {'CPU':>9s}")
    for name in CASES:
        if name.startswith(("tempfile: ", "hardtemp: ")):
            continue  # below, side by side
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
    print("first use (import + first call), hardtemp against tempfile doing the same:")
    print(f"  {'':28s} {'tempfile wall':>13s} {'hardtemp wall':>13s} {'':>6s}  {'CPU':>5s}")
    for name in FIRST_USE:
        std, ours = f"tempfile: {name}", f"hardtemp: {name}"
        print(
            f"  {name:28s} {med(std, 0) * 1000:10.1f} ms {med(ours, 0) * 1000:10.1f} ms"
            f" {med(ours, 0) / med(std, 0):5.2f}x  {med(ours, 1) / med(std, 1):4.2f}x"
        )


if __name__ == "__main__":
    main()
