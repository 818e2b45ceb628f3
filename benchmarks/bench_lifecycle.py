"""Everyday lifecycles, hardtemp against the standard library, side by side (issue 13).

Each lifecycle runs the same loop with :mod:`tempfile` and with :mod:`hardtemp`, in
one process, in interleaved rounds (who goes first alternates), and prints the median
of the per-round ratios hardtemp time / tempfile time (lower is better; goal <= 2x):

* ``NamedTemporaryFile``: create, write 1,000 bytes, close (hardtemp overwrites on close);
* ``TemporaryFile(encrypt=False)``: create, write 1,000 bytes, seek, read, close;
* ``TemporaryFile()`` encrypted (the standard side is the plain ``TemporaryFile``);
* ``TemporaryDirectory`` with 4 files of 1,000 bytes written by ``open()``;
* the cleanup of a ``TemporaryDirectory`` holding 5,000 files of 200 bytes (only the
  cleanup is timed; the files are written beforehand, outside the clock);
* with ``--scale``: the same cleanup with 100,000 files, and a tree 1,000 deep.

The machine this runs on is usually shared: read ratios, never absolute times, and
repeat a run before concluding. ``--dir`` chooses the directory (e.g. ``/dev/shm`` for
tmpfs, ``/var/tmp`` or a loop-mounted ext4 for a disk filesystem).

    python benchmarks/bench_lifecycle.py [--dir DIR] [--rounds 7] [--files 300] [--scale]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from types import ModuleType

import hardtemp
from hardtemp._fsinfo import fs_info_for_path

PAYLOAD = os.urandom(1000)
SMALL = os.urandom(200)

Cycle = Callable[[ModuleType, str, int], float]


def named(mod: ModuleType, d: str, n: int) -> float:
    make = mod.NamedTemporaryFile
    t = time.perf_counter()
    for _ in range(n):
        with make(dir=d) as f:
            f.write(PAYLOAD)
    return time.perf_counter() - t


def unnamed_plain(mod: ModuleType, d: str, n: int) -> float:
    make = mod.TemporaryFile
    kw = {"encrypt": False} if mod is hardtemp else {}
    t = time.perf_counter()
    for _ in range(n):
        with make(dir=d, **kw) as f:
            f.write(PAYLOAD)
            f.seek(0)
            f.read()
    return time.perf_counter() - t


def unnamed_encrypted(mod: ModuleType, d: str, n: int) -> float:
    make = mod.TemporaryFile
    t = time.perf_counter()
    for _ in range(n):
        with make(dir=d) as f:
            f.write(PAYLOAD)
            f.seek(0)
            f.read()
    return time.perf_counter() - t


def tempdir_4_files(mod: ModuleType, d: str, n: int) -> float:
    make = mod.TemporaryDirectory
    t = time.perf_counter()
    for _ in range(n):
        with make(dir=d) as p:
            for i in range(4):
                with open(f"{p}/f{i}", "wb") as f:
                    f.write(PAYLOAD)
    return time.perf_counter() - t


def _fill_flat(top: str, count: int) -> None:
    for i in range(count):
        fd = os.open(f"{top}/f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, SMALL)
        os.close(fd)


def _fill_deep(top: str, depth: int) -> None:
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            ffd = os.open("f", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=fd)
            os.write(ffd, SMALL)
            os.close(ffd)
            os.mkdir("d", dir_fd=fd)
            sub = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = sub
    finally:
        os.close(fd)


def _cleanup(fill: Callable[[str, int], None], size: int) -> Cycle:
    def cycle(mod: ModuleType, d: str, n: int) -> float:
        total = 0.0
        for _ in range(n):
            tmp = mod.TemporaryDirectory(dir=d)
            fill(tmp.name, size)
            t = time.perf_counter()
            tmp.cleanup()
            total += time.perf_counter() - t
        return total

    return cycle


def compare(label: str, cycle: Cycle, d: str, n: int, rounds: int) -> tuple[float, float, float]:
    """Median ratio, and median seconds per iteration of each side."""
    std_t: list[float] = []
    ours_t: list[float] = []
    ratios: list[float] = []
    for r in range(rounds):
        # Alternate who goes first: drift (writeback, other jobs) hits both alike.
        if r % 2:
            ours = cycle(hardtemp, d, n)
            std = cycle(tempfile, d, n)
        else:
            std = cycle(tempfile, d, n)
            ours = cycle(hardtemp, d, n)
        std_t.append(std / n)
        ours_t.append(ours / n)
        ratios.append(ours / std)
    ratio = statistics.median(ratios)
    spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
    s_us = statistics.median(std_t) * 1e6
    o_us = statistics.median(ours_t) * 1e6
    print(
        f"  {label:<52} {ratio:6.2f}x  (rounds {spread}; "
        f"tempfile {s_us:9.1f} us, hardtemp {o_us:9.1f} us)",
        flush=True,
    )
    return ratio, s_us, o_us


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=None, help="where to work (default: gettempdir())")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--files", type=int, default=300, help="lifecycles per round")
    ap.add_argument("--scale", action="store_true", help="also 100,000 files and 1,000 deep")
    ap.add_argument("--only", default="", help="comma-separated labels' first words to run")
    args = ap.parse_args()
    d = os.path.abspath(args.dir or hardtemp.gettempdir())
    info = fs_info_for_path(d)
    print(f"in {d}: {info.fstype} ({info.verdict}); ratio = hardtemp / tempfile, median")
    n = args.files
    cases: list[tuple[str, Cycle, int, int]] = [
        ("NamedTemporaryFile, 1,000 B", named, n, args.rounds),
        ("TemporaryFile(encrypt=False), 1,000 B + seek + read", unnamed_plain, n, args.rounds),
        ("TemporaryFile() encrypted, 1,000 B + seek + read", unnamed_encrypted, n, args.rounds),
        ("TemporaryDirectory + 4 files by open()", tempdir_4_files, max(1, n // 3), args.rounds),
        (
            "TemporaryDirectory cleanup, 5,000 files of 200 B",
            _cleanup(_fill_flat, 5000),
            1,
            args.rounds,
        ),
    ]
    if args.scale:
        cases += [
            (
                "TemporaryDirectory cleanup, 100,000 files of 200 B",
                _cleanup(_fill_flat, 100_000),
                1,
                3,
            ),
            (
                "TemporaryDirectory cleanup, tree 1,000 deep",
                _cleanup(_fill_deep, 1000),
                1,
                args.rounds,
            ),
        ]
    only = [w for w in args.only.split(",") if w]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "best effort" verdicts: measured, not judged here
        named(tempfile, d, 5)
        named(hardtemp, d, 5)  # warm-up: imports, trust and filesystem caches
        for label, cycle, count, rounds in cases:
            if only and not any(label.startswith(w) for w in only):
                continue
            compare(label, cycle, d, count, rounds)


if __name__ == "__main__":
    main()
