"""Create + close + remove of temporary files: hardtemp against the standard library.

Runs both side by side in one process, alternating, several rounds, and
prints the median ratio (hardtemp time / tempfile time). Target (issue 2):
``mkstemp`` at most 1.3x the standard library's.

    python benchmarks/bench_create.py [--files 1000] [--rounds 7] [--dir DIR] [--cpu]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable

import hardtemp

_clock = time.perf_counter  # --cpu: time.process_time (this process only: less load noise)


def _mkstemp_cycle(mod: object, n: int, d: str) -> float:
    mkstemp = mod.mkstemp  # type: ignore[attr-defined]
    start = _clock()
    for _ in range(n):
        fd, path = mkstemp(dir=d)
        os.close(fd)
        os.unlink(path)
    return _clock() - start


class _Floor:
    """The least a descriptor-relative ``mkstemp`` that pins nothing can do (issue 11).

    Reopen the verified directory by path, ``fstat`` it (is it still the inode we
    verified?), create relative to it with ``O_EXCL|O_NOFOLLOW``, ``fstat`` the new file
    (ours, 0600, regular), close the directory: no trust cache, no checks, no names
    pool beyond ``secrets``. It is not safe code; it is the yardstick.
    """

    @staticmethod
    def mkstemp(dir: str) -> tuple[int, str]:
        dfd = os.open(dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fstat(dfd)
            name = "tmp" + secrets.token_hex(8)
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(name, flags, 0o600, dir_fd=dfd)
            os.fstat(fd)
        finally:
            os.close(dfd)
        return fd, f"{dir}/{name}"


def _mkdtemp_cycle(mod: object, n: int, d: str) -> float:
    mkdtemp = mod.mkdtemp  # type: ignore[attr-defined]
    start = _clock()
    for _ in range(n):
        os.rmdir(mkdtemp(dir=d))
    return _clock() - start


def _named_cycle(mod: object, n: int, d: str) -> float:
    named = mod.NamedTemporaryFile  # type: ignore[attr-defined]
    start = _clock()
    for _ in range(n):
        with named(dir=d) as f:
            f.write(b"x" * 100)
    return _clock() - start


def _unnamed_cycle(mod: object, n: int, d: str, **kw: object) -> float:
    tmpfile = mod.TemporaryFile  # type: ignore[attr-defined]
    start = _clock()
    for _ in range(n):
        with tmpfile(dir=d, **kw) as f:
            f.write(b"x" * 100)
    return _clock() - start


def compare(
    name: str, cycle: Callable[..., float], n: int, rounds: int, d: str, **kw: object
) -> float:
    ratios = []
    for _ in range(rounds):
        std = cycle(tempfile, n, d)
        ours = cycle(hardtemp, n, d, **kw) if kw else cycle(hardtemp, n, d)
        ratios.append(ours / std)
    ratio = statistics.median(ratios)
    print(f"{name:44} {ratio:5.2f}x the standard library  (median of {rounds}, {n} files)")
    return ratio


def floor(n: int, rounds: int, d: str) -> None:
    """The floor against the stdlib, and hardtemp against the floor, interleaved."""
    to_std, to_floor = [], []
    for _ in range(rounds):
        std = _mkstemp_cycle(tempfile, n, d)
        low = _mkstemp_cycle(_Floor, n, d)
        ours = _mkstemp_cycle(hardtemp, n, d)
        to_std.append(low / std)
        to_floor.append(ours / low)
    print(
        f"{'  floor: minimal create pinning nothing':44} {statistics.median(to_std):5.2f}x "
        "the standard library"
    )
    print(f"{'  hardtemp.mkstemp against that floor':44} {statistics.median(to_floor):5.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--dir", default=None, help="directory to create in (default: gettempdir())")
    ap.add_argument("--cpu", action="store_true", help="CPU time of this process, not wall time")
    args = ap.parse_args()
    global _clock
    if args.cpu:
        _clock = time.process_time
    d = args.dir or hardtemp.gettempdir()
    # Warm both up (imports, the trust cache) outside the measurement.
    _mkstemp_cycle(tempfile, 10, d)
    _mkstemp_cycle(hardtemp, 10, d)
    print(f"in {d}, {'CPU' if args.cpu else 'wall'} time")
    compare("mkstemp + close + unlink", _mkstemp_cycle, args.files, args.rounds, d)
    floor(args.files, args.rounds, d)
    compare("mkdtemp + rmdir", _mkdtemp_cycle, args.files, args.rounds, d)
    compare("NamedTemporaryFile (100 B, wiped on close)", _named_cycle, args.files, args.rounds, d)
    compare(
        "TemporaryFile(encrypt=False) (100 B)",
        _unnamed_cycle,
        args.files,
        args.rounds,
        d,
        encrypt=False,
    )
    compare("TemporaryFile() encrypted (100 B)", _unnamed_cycle, args.files, args.rounds, d)


if __name__ == "__main__":
    main()
