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

Ratios are of medians; "best-of" columns are ratios of the fastest runs, which
are less disturbed by other load on shared machines.

Usage: python benchmarks/bench_crypt.py [--dir DIR] [--mib 256] [--repeats 5]
       [--block-sizes 16,32,64,128,256]
"""

from __future__ import annotations

import argparse
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


def sequential(make: Callable[[], IO[bytes]], total: int) -> tuple[float, IO[bytes]]:
    chunk = os.urandom(MiB)
    buf = bytearray(MiB)
    f = make()
    t0 = time.perf_counter()
    for _ in range(total // MiB):
        f.write(chunk)
    f.flush()
    f.seek(0)
    while f.readinto(buf):  # type: ignore[attr-defined]
        pass
    return time.perf_counter() - t0, f


def random_reads(f: IO[bytes], total: int, count: int, seed: int) -> float:
    rnd = random.Random(seed)  # noqa: S311 - offsets, not secrets
    offsets = [rnd.randrange(total // 4096) * 4096 for _ in range(count)]
    t0 = time.perf_counter()
    for off in offsets:
        f.seek(off)
        f.read(4096)
    return (time.perf_counter() - t0) / count


def compare(directory: str, bs: int, total: int, repeats: int, reads: int) -> dict[str, Any]:
    seq_std: list[float] = []
    seq_enc: list[float] = []
    rnd_std: list[float] = []
    rnd_enc: list[float] = []
    for rep in range(repeats):
        for label, make in (("std", std_file), ("enc", enc_file)):
            t, f = sequential(lambda make=make: make(directory, bs), total)  # type: ignore[misc]
            r = random_reads(f, total, reads, seed=rep)
            f.close()
            (seq_std if label == "std" else seq_enc).append(t)
            (rnd_std if label == "std" else rnd_enc).append(r)
    s_std, s_enc = statistics.median(seq_std), statistics.median(seq_enc)
    r_std, r_enc = statistics.median(rnd_std), statistics.median(rnd_enc)
    return {
        "seq_ratio_best": min(seq_std) / min(seq_enc),
        "rnd_ratio_best": min(rnd_std) / min(rnd_enc),
        "bs": bs,
        "seq_std_mbs": 2 * total / s_std / 1e6,
        "seq_enc_mbs": 2 * total / s_enc / 1e6,
        "seq_ratio": s_std / s_enc,
        "rnd_std_us": r_std * 1e6,
        "rnd_enc_us": r_enc * 1e6,
        "rnd_ratio": r_std / r_enc,
        "state_per_gib": 8 * (1024**3 // bs),
    }


def state_bytes_per_gib(directory: str, bs: int, total: int) -> float:
    """Measured: size of the per-block counter array after writing ``total`` bytes."""
    fd = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    raw = EncryptedRawIO(fd, block_size=bs)
    chunk = bytes(MiB)
    for _ in range(total // MiB):
        raw.write(chunk)
    ctrs = raw._ctrs
    per_gib = ctrs.itemsize * len(ctrs) * (1024**3 / total)
    raw.close()
    return per_gib


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--reads", type=int, default=20000)
    ap.add_argument("--block-sizes", default="16,32,64,128,256", help="KiB, comma-separated")
    args = ap.parse_args()
    total = args.mib * MiB
    print(f"dir={args.dir} file={args.mib} MiB repeats={args.repeats} (medians)")
    print(f"cryptography encrypt_into/decrypt_into: {_crypt._HAVE_INTO}")
    print(f"default block size: {DEFAULT_BLOCK_SIZE // 1024} KiB")
    print()
    header = (
        f"{'block':>7} | {'seq std MB/s':>12} {'seq enc MB/s':>12} {'ratio':>6} | "
        f"{'4K std us':>9} {'4K enc us':>9} {'ratio':>6} | {'state/GiB':>9} | "
        f"{'best-of seq':>11} {'best-of 4K':>10}"
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
            f"{bs // 1024:>4}KiB | {r['seq_std_mbs']:>12.0f} {r['seq_enc_mbs']:>12.0f} "
            f"{r['seq_ratio']:>5.2f}x | {r['rnd_std_us']:>9.2f} {r['rnd_enc_us']:>9.2f} "
            f"{r['rnd_ratio']:>5.2f}x | {r['state_per_gib'] // 1024:>5} KiB | "
            f"{r['seq_ratio_best']:>10.2f}x {r['rnd_ratio_best']:>9.2f}x{mark}",
            flush=True,
        )
    measured = state_bytes_per_gib(args.dir, DEFAULT_BLOCK_SIZE, total)
    print()
    print(
        f"per-block state at the default block size (measured): "
        f"{measured / 1024:.0f} KiB per GiB (limit 1024 KiB)"
    )
    print("targets: sequential >= 0.45x, random 4 KiB reads >= 0.25x")


if __name__ == "__main__":
    main()
