"""Encrypted temp files against the limit on this machine, and against the standard file.

Runs in one process, on the same directory, interleaving the candidates so
that page cache and CPU-frequency effects hit all alike; prints medians of
several repeats and throughput ratios (higher is better):

* sequential: write ``--mib`` MiB (128-256) in 1 MiB calls, then read it back
  in 1 MiB calls (``readinto`` a reused buffer), compared with a **minimal
  hand loop** doing the least any AES-256-GCM file must do: per 1 MiB call,
  ``AESGCM.encrypt_into`` of 64 KiB blocks into one buffer and one ``pwrite``;
  then one ``preadv`` and ``decrypt_into`` per block, into an unnamed file.
  Goal: >= 0.9x the hand loop (issue 13). The standard file is shown for context.
* random: ``seek`` + ``read(4096)`` at random 4 KiB-aligned offsets of that
  file, against the standard ``tempfile.TemporaryFile``. Goal: >= 0.35x.
  Also on a second pair of files written in 4 KiB calls (``--small-mib``),
  which the default block-size choice gives 4 KiB blocks (4-byte counters).
* memory: bytes of per-block state per GiB of file (goal: <= 1 MiB), measured for
  a file written in 1 MiB calls, one written in 4 KiB calls, and fixed 8 KiB blocks.
* per-file fixed costs, as fractions of one standard ``TemporaryFile`` lifecycle
  (create, write 1,000 bytes, seek, read, close): ``AESGCM(key)`` alone, a 32-byte
  ``getrandom``, and one file's protected memory, as a mapping of its own and as a
  slot of the pool the default blocks use (the lifecycle floors themselves are rows
  of ``bench_lifecycle.py``).

The first row is the default, ``block_size=None``: the file's first write
chooses its block size (64 KiB for a first write of at least 64 KiB, as here;
4 KiB for one of at most 4 KiB; else 8 KiB), as every ``TemporaryFile`` does;
``--block-sizes`` adds rows with a fixed size.

Ratios are from wall-clock time and, in the "(cpu)" columns, from the
process's CPU time (user + system), which other load on a shared machine
disturbs less; "min-max" is the spread of the per-repeat ratios. The load
average before and after is printed.

Usage: python benchmarks/bench_crypt.py [--dir DIR] [--mib 256] [--repeats 5]
       [--reads 20000] [--block-sizes 8,16,64] [--small-mib 32]
"""

from __future__ import annotations

import argparse
import array
import io
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import IO, Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hardtemp._crypt import (
    DEFAULT_BLOCK_SIZE,
    LARGE_BLOCK_SIZE,
    SMALL_BLOCK_SIZE,
    EncryptedRawIO,
    open_encrypted,
)

MiB = 1024 * 1024
HAND_BLOCK = 64 * 1024
Clock = tuple[float, float]


def _clocks() -> Clock:
    return time.perf_counter(), time.process_time()


def _since(t0: Clock) -> Clock:
    w, c = _clocks()
    return w - t0[0], c - t0[1]


def _unnamed(directory: str) -> int:
    return os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)


def seq_file(f: IO[bytes], total: int, chunk: bytes) -> Clock:
    """Write ``total`` bytes in 1 MiB calls, read them back in 1 MiB calls."""
    buf = bytearray(MiB)
    t0 = _clocks()
    for _ in range(total // MiB):
        f.write(chunk)
    f.flush()
    f.seek(0)
    while f.readinto(buf):  # type: ignore[attr-defined]
        pass
    return _since(t0)


def seq_hand_loop(directory: str, total: int, chunk: bytes) -> Clock:
    """The least an AES-256-GCM file must do for the same transfer (see module doc)."""
    fd = _unnamed(directory)
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    slot = HAND_BLOCK + 16
    per_call = MiB // HAND_BLOCK
    ct = bytearray(per_call * slot)
    ctv, src = memoryview(ct), memoryview(chunk)
    out = memoryview(bytearray(MiB))
    enc, dec = aead.encrypt_into, aead.decrypt_into
    try:
        t0 = _clocks()
        block = 0
        for call in range(total // MiB):
            for b in range(per_call):
                k = block + b
                enc(
                    k.to_bytes(12, "big"),
                    src[b * HAND_BLOCK : (b + 1) * HAND_BLOCK],
                    k.to_bytes(8, "big"),
                    ctv[b * slot : (b + 1) * slot],
                )
            os.pwrite(fd, ctv, call * per_call * slot)
            block += per_call
        block = 0
        for call in range(total // MiB):
            os.preadv(fd, [ctv], call * per_call * slot)
            for b in range(per_call):
                k = block + b
                dec(
                    k.to_bytes(12, "big"),
                    ctv[b * slot : (b + 1) * slot],
                    k.to_bytes(8, "big"),
                    out[b * HAND_BLOCK : (b + 1) * HAND_BLOCK],
                )
            block += per_call
        return _since(t0)
    finally:
        os.close(fd)


def random_reads(f: IO[bytes], total: int, count: int, seed: int) -> Clock:
    """(wall, cpu) seconds per seek + read(4096) at a random 4 KiB-aligned offset."""
    rnd = random.Random(seed)  # noqa: S311 - offsets, not secrets
    offsets = [rnd.randrange(total // 4096) * 4096 for _ in range(count)]
    t0 = _clocks()
    for off in offsets:
        f.seek(off)
        f.read(4096)
    w, c = _since(t0)
    return w / count, c / count


def small_writes(f: IO[bytes], total: int, chunk: bytes) -> None:
    """Fill ``f`` with ``total`` bytes in 4 KiB calls (untimed)."""
    view = memoryview(chunk)
    for off in range(0, total, 4096):
        f.write(view[off % MiB : off % MiB + 4096])
    f.flush()


def compare(
    directory: str, bs: int | None, total: int, repeats: int, reads: int, small: int
) -> dict[str, Any]:
    chunk = os.urandom(MiB)
    keys = ("hand", "enc", "std", "r_enc", "r_std", "s_enc", "s_std")
    runs: dict[str, list[Clock]] = {k: [] for k in keys}
    chosen = small_bs = 0
    for rep in range(repeats):
        runs["hand"].append(seq_hand_loop(directory, total, chunk))
        enc: IO[bytes] = open_encrypted(_unnamed(directory), "w+b", block_size=bs)
        runs["enc"].append(seq_file(enc, total, chunk))
        chosen = enc.raw._bs  # type: ignore[attr-defined]
        std = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - closed below, timed apart
        runs["std"].append(seq_file(std, total, chunk))
        runs["r_enc"].append(random_reads(enc, total, reads, rep))
        runs["r_std"].append(random_reads(std, total, reads, rep))
        enc.close()
        std.close()
        if small:
            enc = open_encrypted(_unnamed(directory), "w+b", block_size=bs)
            std = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - closed below
            small_writes(enc, small, chunk)
            small_writes(std, small, chunk)
            small_bs = enc.raw._bs  # type: ignore[attr-defined]
            runs["s_enc"].append(random_reads(enc, small, reads, rep))
            runs["s_std"].append(random_reads(std, small, reads, rep))
            enc.close()
            std.close()

    def med(key: str, i: int) -> float:
        return statistics.median(x[i] for x in runs[key])

    def ratio(base: str, ours: str) -> tuple[float, float, float, float]:
        """(wall, cpu, min, max): base time / our time, higher is better."""
        each = [b[0] / o[0] for b, o in zip(runs[base], runs[ours], strict=True)]
        return med(base, 0) / med(ours, 0), med(base, 1) / med(ours, 1), min(each), max(each)

    return {
        "bs": chosen,
        "small_bs": small_bs,
        "small": ratio("s_std", "s_enc") if small else None,
        "enc_mbs": 2 * total / med("enc", 0) / 1e6,
        "hand_mbs": 2 * total / med("hand", 0) / 1e6,
        "vs_hand": ratio("hand", "enc"),
        "vs_std": ratio("std", "enc"),
        "rnd": ratio("r_std", "r_enc"),
        "rnd_us": (med("r_std", 0) * 1e6, med("r_enc", 0) * 1e6),
    }


def state_bytes_per_gib(
    directory: str, bs: int | None, total: int, call: int = MiB
) -> tuple[float, float]:
    """Measured after writing ``total`` bytes in ``call``-byte writes: (bytes the
    per-block counter array holds, bytes it has allocated including growth slack), per GiB."""
    raw = EncryptedRawIO(_unnamed(directory), block_size=bs)
    chunk = bytes(call)
    for _ in range(total // call):
        raw.write(chunk)
    block_map = getattr(raw, "_map", None)
    ctrs: array.array[int] = block_map.ctrs if block_map is not None else raw._ctrs  # type: ignore[attr-defined]
    scale = 1024**3 / total
    used = ctrs.itemsize * len(ctrs) * scale
    allocated = (sys.getsizeof(ctrs) - sys.getsizeof(array.array("Q"))) * scale
    raw.close()
    return used, allocated


def layer_classes(directory: str, repeats: int) -> tuple[float, float]:
    """(wall, cpu) ratio io.BufferedRandom time / the encrypted file's layer class time
    for small buffered calls (16-byte reads and writes): the fork-reset subclass
    must cost the parent nothing (1.00x)."""
    from hardtemp._crypt._forkdrop import BufferedRandom

    def make(cls: type[io.BufferedRandom]) -> io.BufferedRandom:
        f = cls(EncryptedRawIO(_unnamed(directory), block_size=DEFAULT_BLOCK_SIZE), 4096)
        f.write(bytes(MiB))
        f.flush()
        return f

    def loop(f: io.BufferedRandom) -> Clock:
        t0 = _clocks()
        for _ in range(5):
            f.seek(0)
            read, write = f.read, f.write
            for _ in range(4096):
                read(16)
            f.seek(0)
            for _ in range(4096):
                write(b"0123456789abcdef")
            f.flush()
        return _since(t0)

    std, ours = make(io.BufferedRandom), make(BufferedRandom)
    runs: dict[str, list[Clock]] = {"std": [], "ours": []}
    for rep in range(max(41, 8 * repeats + 1)):  # short rounds: many, alternating
        order = [("std", std), ("ours", ours)]
        for key, f in order if rep % 2 else order[::-1]:
            runs[key].append(loop(f))
    std.close()
    ours.close()
    return tuple(  # type: ignore[return-value]
        statistics.median(x[i] for x in runs["std"]) / statistics.median(x[i] for x in runs["ours"])
        for i in (0, 1)
    )


def fixed_costs(directory: str, count: int = 2000) -> dict[str, float]:
    """CPU seconds per call of the per-file fixed costs (see the module doc), medians
    of 5 interleaved rounds; ``"std"`` is one standard TemporaryFile lifecycle."""
    from hardtemp._crypt._secmem import ProtectedMemory
    from hardtemp._crypt._secpool import Slot

    key, payload = bytearray(os.urandom(32)), os.urandom(1000)

    def std() -> None:
        with tempfile.TemporaryFile(dir=directory) as f:
            f.write(payload)
            f.seek(0)
            f.read()

    cases: dict[str, Callable[[], object]] = {
        "std": std,
        "AESGCM(key)": lambda: AESGCM(key),
        "getrandom(32)": lambda: os.getrandom(32),
        "a protected mapping per file": lambda: ProtectedMemory(DEFAULT_BLOCK_SIZE + 40).close(),
        "a pooled protected slot": lambda: Slot(DEFAULT_BLOCK_SIZE + 40).close(),
    }
    runs: dict[str, list[float]] = {k: [] for k in cases}
    for rep in range(5):
        for name, fn in cases.items() if rep % 2 else reversed(cases.items()):
            c0 = time.process_time()
            for _ in range(count):
                fn()
            runs[name].append((time.process_time() - c0) / count)
    return {k: statistics.median(v) for k, v in runs.items()}


def _loadavg() -> str:
    """The 1/5/15-minute load averages: other jobs on the machine skew wall-clock times."""
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def _fmt(r: tuple[float, float, float, float]) -> str:
    return f"{r[0]:>5.2f}x {r[1]:>5.2f}x {r[2]:>4.2f}-{r[3]:<4.2f}"


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--reads", type=int, default=20000)
    ap.add_argument("--block-sizes", default="", help="extra block sizes in KiB, comma-separated")
    ap.add_argument("--small-mib", type=int, default=32, help="file written in 4 KiB calls")
    args = ap.parse_args(argv)
    total = args.mib * MiB
    out(f"dir={args.dir} file={args.mib} MiB repeats={args.repeats} (medians)")
    out(f"load average before: {_loadavg()}")
    out(
        f"default block size: chosen by the first write ({DEFAULT_BLOCK_SIZE // 1024} KiB; "
        f"{LARGE_BLOCK_SIZE // 1024} KiB for a first write of at least that, "
        f"{SMALL_BLOCK_SIZE // 1024} KiB for one of at most that); "
        "hand loop: 64 KiB blocks"
    )
    out("")
    header = (
        f"{'block':>7} | {'vs hand loop':>12} {'(cpu)':>6} {'min-max':>9} {'MB/s':>5} "
        f"{'hand MB/s':>9} | {'vs stdlib':>9} | {'4K vs stdlib':>12} {'(cpu)':>6} {'min-max':>9} "
        f"{'std us':>6} {'enc us':>6}"
    )
    out(header)
    out("-" * len(header))
    extra = [int(k) * 1024 for k in args.block_sizes.split(",") if k]
    sizes: list[int | None] = [None, *extra]
    small_rows = []
    for bs in sizes:
        r = compare(args.dir, bs, total, args.repeats, args.reads, args.small_mib * MiB)
        mark = " (default: chosen by the first write)" if bs is None else ""
        out(
            f"{r['bs'] // 1024:>4}KiB | {_fmt(r['vs_hand']):>29} {r['enc_mbs']:>5.0f} "
            f"{r['hand_mbs']:>9.0f} | {r['vs_std'][0]:>8.2f}x | {_fmt(r['rnd']):>29} "
            f"{r['rnd_us'][0]:>6.1f} {r['rnd_us'][1]:>6.1f}{mark}"
        )
        if r["small"] is not None:
            small_rows.append((bs, r["small_bs"], r["small"]))
    if small_rows:
        out("")
        out(f"random 4 KiB reads of a {args.small_mib} MiB file written in 4 KiB calls:")
        for bs, chosen, small in small_rows:
            size = chosen if bs is None else bs
            label = f"{'default, ' if bs is None else ''}{size // 1024} KiB blocks"
            out(f"  {label:>24}: {_fmt(small)} vs stdlib (wall, cpu, min-max)")
    out("")
    for bs, call in ((None, MiB), (None, 4096), (DEFAULT_BLOCK_SIZE, MiB)):
        used, allocated = state_bytes_per_gib(args.dir, bs, total, call)
        label = "default choice" if bs is None else f"{bs // 1024} KiB blocks"
        calls = "1 MiB" if call == MiB else f"{call // 1024} KiB"
        out(
            f"per-block state, written in {calls} calls, {label} (measured): "
            f"{used / 1024:.0f} KiB per GiB, {allocated / 1024:.0f} KiB allocated (limit 1024 KiB)"
        )
    wall, cpu = layer_classes(args.dir, args.repeats)
    out(
        f"small buffered calls, the encrypted file's layer class vs io.BufferedRandom: "
        f"{wall:.2f}x wall, {cpu:.2f}x cpu (the fork reset must cost nothing: 1.00x)"
    )
    costs = fixed_costs(args.dir)
    std_cost = costs.pop("std")
    out(
        "per-file fixed costs, cpu, as a fraction of one stdlib TemporaryFile lifecycle: "
        + ", ".join(f"{k} {v / std_cost:.3f}x" for k, v in costs.items())
    )
    out(f"load average after: {_loadavg()}")
    out("goals: sequential >= 0.90x the hand loop; random 4 KiB reads >= 0.35x the stdlib")


if __name__ == "__main__":
    main()
