"""MemoryFile, hardtemp.aio and durable persist against the standard library.

Side by side in one process, interleaved, several rounds; prints median ratios
(hardtemp time / standard time: lower is better). Never read absolute times on
a shared machine.

* MemoryFile vs ``tempfile.TemporaryFile``: write then read 64 MiB in 1 MiB calls, close.
* ``hardtemp.aio.TemporaryFile(encrypt=False)`` vs the same sync hardtemp file: the cost of
  the thread hop, per 64 KiB write (4,096 writes).
* ``persist_noclobber(durable=True)`` vs ``durable=False`` of a 1 MiB file: the cost of the
  two ``fsync`` calls (100 files).

    python benchmarks/bench_features.py [--rounds 5] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import hardtemp
import hardtemp.aio

MiB = 1024 * 1024


def _rw(factory: Callable[[], object]) -> float:
    chunk = b"\xa5" * MiB
    buf = bytearray(MiB)
    start = time.perf_counter()
    f = factory()
    for _ in range(64):
        f.write(chunk)  # type: ignore[attr-defined]
    f.seek(0)  # type: ignore[attr-defined]
    while f.readinto(buf):  # type: ignore[attr-defined]
        pass
    f.close()  # type: ignore[attr-defined]
    return time.perf_counter() - start


def _sync_writes(d: str) -> float:
    data = b"x" * 65536
    start = time.perf_counter()
    with hardtemp.TemporaryFile(dir=d, encrypt=False) as f:
        for _ in range(4096):
            f.write(data)
    return time.perf_counter() - start


def _async_writes(d: str) -> float:
    data = b"x" * 65536

    async def main() -> float:
        start = time.perf_counter()
        async with hardtemp.aio.TemporaryFile(dir=d, encrypt=False) as f:
            for _ in range(4096):
                await f.write(data)
        return time.perf_counter() - start

    return asyncio.run(main())


def _persist(d: str, durable: bool) -> float:
    data = b"y" * MiB
    start = time.perf_counter()
    for i in range(100):
        with hardtemp.NamedTemporaryFile(dir=d) as f:
            f.write(data)
            f.persist_noclobber(os.path.join(d, f"r{i}"), durable=durable)
    elapsed = time.perf_counter() - start
    for i in range(100):
        os.unlink(os.path.join(d, f"r{i}"))
    return elapsed


def ratio(rounds: int, ours: Callable[[], float], theirs: Callable[[], float]) -> float:
    ratios = []
    for _ in range(rounds):
        t_ours, t_theirs = ours(), theirs()
        ratios.append(t_ours / t_theirs)
    return statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    d = args.dir or hardtemp.gettempdir()
    print(f"directory: {d}, rounds: {args.rounds} (ratio = hardtemp / reference, median)")
    r = ratio(
        args.rounds,
        lambda: _rw(lambda: hardtemp.MemoryFile(max_size=None)),
        lambda: _rw(lambda: tempfile.TemporaryFile(dir=d)),  # noqa: SIM115 - _rw closes it
    )
    print(f"MemoryFile 64 MiB write+read+close vs tempfile.TemporaryFile: {r:.2f}x")
    r = ratio(args.rounds, lambda: _async_writes(d), lambda: _sync_writes(d))
    print(f"aio.TemporaryFile 4096 x 64 KiB writes vs the sync hardtemp file: {r:.2f}x")
    r = ratio(args.rounds, lambda: _persist(d, True), lambda: _persist(d, False))
    print(f"persist_noclobber(durable=True) vs durable=False, 100 x 1 MiB: {r:.2f}x")


if __name__ == "__main__":
    main()
