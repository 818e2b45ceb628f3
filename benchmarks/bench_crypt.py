"""Encrypted temp files vs the standard ``tempfile.TemporaryFile``, side by side.

Runs in one process, on the same directory, interleaving the two so that page
cache and CPU-frequency effects hit both alike; prints medians of several
repeats and the ratio ours/standard (throughput, higher is better).

* sequential: write 256 MiB in 1 MiB calls, then read it back in 1 MiB calls
  (``readinto`` a reused buffer on both sides); target >= 0.45x.
* random: 4 KiB reads at random 4 KiB-aligned offsets of that file
  (``seek`` + ``read(4096)`` on both sides); target >= 0.25x.
* the same for each candidate block size, to justify the default;
* per-block state: bytes of in-memory metadata per GiB of file.

Ratios are standard-time / encrypted-time of the medians (so throughput
ratios: higher is better), from wall-clock time and, in the "(cpu)" columns,
from the process's CPU time (user + system), which other load on a shared
machine disturbs less. Both are printed; the targets refer to wall-clock.

"min-max" is the lowest and highest ratio of the individual repeats (wall-clock),
to show the spread; the load average before and after the run is printed too.

Usage: python benchmarks/bench_crypt.py [--dir DIR] [--mib 256] [--repeats 5]
       [--block-sizes 8,16,32,64]
"""

from __future__ import annotations

import argparse
import array
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import IO, Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from hardtemp import _crypt
from hardtemp._crypt import DEFAULT_BLOCK_SIZE, EncryptedRawIO, open_encrypted

MiB = 1024 * 1024


def std_file(directory: str, _bs: int) -> IO[bytes]:
    return tempfile.TemporaryFile(dir=directory)


def enc_file(directory: str, bs: int) -> IO[bytes]:
    fd = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    f: IO[bytes] = open_encrypted(fd, "w+b", block_size=bs)
    return f


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def sequential(make: Callable[[], IO[bytes]], total: int) -> tuple[tuple[float, float], IO[bytes]]:
    """(wall, cpu) seconds to write ``total`` bytes in 1 MiB calls and read them back."""
    chunk = os.urandom(MiB)
    buf = bytearray(MiB)
    f = make()
    w0, c0 = _clocks()
    for _ in range(total // MiB):
        f.write(chunk)
    f.flush()
    f.seek(0)
    while f.readinto(buf):  # type: ignore[attr-defined]
        pass
    w1, c1 = _clocks()
    return (w1 - w0, c1 - c0), f


def random_reads(f: IO[bytes], total: int, count: int, seed: int) -> tuple[float, float]:
    """(wall, cpu) seconds per seek + read(4096) at a random 4 KiB-aligned offset."""
    rnd = random.Random(seed)  # noqa: S311 - offsets, not secrets
    offsets = [rnd.randrange(total // 4096) * 4096 for _ in range(count)]
    w0, c0 = _clocks()
    for off in offsets:
        f.seek(off)
        f.read(4096)
    w1, c1 = _clocks()
    return (w1 - w0) / count, (c1 - c0) / count


def compare(directory: str, bs: int, total: int, repeats: int, reads: int) -> dict[str, Any]:
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in ("ss", "se", "rs", "re")}
    for rep in range(repeats):
        for label, make in (("s", std_file), ("e", enc_file)):
            t, f = sequential(lambda make=make: make(directory, bs), total)  # type: ignore[misc]
            r = random_reads(f, total, reads, seed=rep)
            f.close()
            runs["s" + label].append(t)
            runs["r" + label].append(r)

    def med(key: str, i: int) -> float:
        return statistics.median(x[i] for x in runs[key])

    def spread(std_key: str, enc_key: str) -> tuple[float, float]:
        """Lowest and highest ratio of the individual (interleaved) repeats."""
        ratios = [s[0] / e[0] for s, e in zip(runs[std_key], runs[enc_key], strict=True)]
        return min(ratios), max(ratios)

    return {
        "bs": bs,
        "seq_enc_mbs": 2 * total / med("se", 0) / 1e6,
        "seq_ratio": med("ss", 0) / med("se", 0),
        "seq_ratio_cpu": med("ss", 1) / med("se", 1),
        "rnd_enc_us": med("re", 0) * 1e6,
        "rnd_std_us": med("rs", 0) * 1e6,
        "rnd_ratio": med("rs", 0) / med("re", 0),
        "rnd_ratio_cpu": med("rs", 1) / med("re", 1),
        "state_per_gib": 8 * (1024**3 // bs),
        "seq_spread": spread("ss", "se"),
        "rnd_spread": spread("rs", "re"),
    }


def state_bytes_per_gib(directory: str, bs: int, total: int) -> tuple[float, float]:
    """Measured after writing ``total`` bytes: (bytes the per-block counter array
    holds, bytes it has allocated including the array's growth slack), per GiB."""
    fd = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    raw = EncryptedRawIO(fd, block_size=bs)
    chunk = bytes(MiB)
    for _ in range(total // MiB):
        raw.write(chunk)
    ctrs = raw._ctrs
    scale = 1024**3 / total
    used = ctrs.itemsize * len(ctrs) * scale
    allocated = (sys.getsizeof(ctrs) - sys.getsizeof(array.array("Q"))) * scale
    raw.close()
    return used, allocated


def _loadavg() -> str:
    """The 1/5/15-minute load averages: other jobs on the machine skew wall-clock times."""
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--reads", type=int, default=20000)
    ap.add_argument("--block-sizes", default="8,16,32,64", help="KiB, comma-separated")
    args = ap.parse_args()
    total = args.mib * MiB
    print(f"dir={args.dir} file={args.mib} MiB repeats={args.repeats} (medians)")
    print(f"load average before: {_loadavg()}")
    print(f"cryptography encrypt_into/decrypt_into: {_crypt._HAVE_INTO}")
    print(f"default block size: {DEFAULT_BLOCK_SIZE // 1024} KiB")
    print()
    header = (
        f"{'block':>7} | {'seq ratio':>9} {'(cpu)':>6} {'min-max':>9} {'enc MB/s':>8} | "
        f"{'4K ratio':>8} {'(cpu)':>6} {'min-max':>9} {'std us':>6} {'enc us':>6} | "
        f"{'state/GiB':>9}"
    )
    print(header)
    print("-" * len(header))
    sizes = [int(k) * 1024 for k in args.block_sizes.split(",")]
    if DEFAULT_BLOCK_SIZE not in sizes:
        sizes.insert(0, DEFAULT_BLOCK_SIZE)
    for bs in sizes:
        r = compare(args.dir, bs, total, args.repeats, args.reads)
        mark = " (default)" if bs == DEFAULT_BLOCK_SIZE else ""
        print(
            f"{bs // 1024:>4}KiB | {r['seq_ratio']:>8.2f}x {r['seq_ratio_cpu']:>5.2f}x "
            f"{r['seq_spread'][0]:>4.2f}-{r['seq_spread'][1]:<4.2f} "
            f"{r['seq_enc_mbs']:>8.0f} | {r['rnd_ratio']:>7.2f}x {r['rnd_ratio_cpu']:>5.2f}x "
            f"{r['rnd_spread'][0]:>4.2f}-{r['rnd_spread'][1]:<4.2f} "
            f"{r['rnd_std_us']:>6.1f} {r['rnd_enc_us']:>6.1f} | "
            f"{r['state_per_gib'] // 1024:>5} KiB{mark}",
            flush=True,
        )
    used, allocated = state_bytes_per_gib(args.dir, DEFAULT_BLOCK_SIZE, total)
    print()
    print(
        f"per-block state at the default block size (measured): "
        f"{used / 1024:.0f} KiB per GiB, {allocated / 1024:.0f} KiB allocated (limit 1024 KiB)"
    )
    print(f"load average after: {_loadavg()}")
    print("targets: sequential >= 0.45x, random 4 KiB reads >= 0.25x")


if __name__ == "__main__":
    main()
