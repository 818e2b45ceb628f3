"""Benchmark: hardtemp's wipe against the least a correct wipe must do, and against unlink.

1. Close-with-wipe of an 8 MiB file (``remove_entry`` through our descriptor, then
   close) against doing by hand only what any correct wipe must: write the data,
   overwrite it once (zeros from a ready buffer), ``fdatasync``, unlink. Goal: <= 1.2x.
   Twice: with the data fsynced first (it reached the disk: both sides must sync the
   overwrite), and with the data still in the page cache (hardtemp then skips the
   sync the hand-written side pays).
2. 1,000 small (4 KiB) files: written, then wiped one by one, against written then
   ``os.unlink``-ed (what the standard library does; it leaves the data on disk).

Both sides run alternately in one process, several repeats, medians compared.
Usage: python benchmarks/bench_wipe.py [DIRECTORY] [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable

from hardtemp._fsinfo import fs_info_for_path
from hardtemp._policy import wipe_policy
from hardtemp._remove import remove_entry

BIG = 8 << 20
SMALL = 4096
N_SMALL = 1000
FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


_FSYNCED = [False]  # whether the big file's data is forced to the disk before the wipe


def _create(dir_fd: int, name: str, data: bytes) -> int:
    fd = os.open(name, FLAGS, 0o600, dir_fd=dir_fd)
    os.write(fd, data)
    if _FSYNCED[0] and name == "big":
        os.fsync(fd)  # the data reached the disk: the wipe must sync its overwrite
    return fd


def big_hardtemp(dir_fd: int, data: bytes, sync_dir: bool = True) -> None:
    fd = _create(dir_fd, "big", data)
    try:
        remove_entry(dir_fd, "big", fd=fd, sync_dir=sync_dir)
    finally:
        os.close(fd)


def big_hardtemp_nodirsync(dir_fd: int, data: bytes) -> None:
    big_hardtemp(dir_fd, data, sync_dir=False)


def big_by_hand(dir_fd: int, data: bytes) -> None:
    zeros = bytes(len(data))
    fd = _create(dir_fd, "big", data)
    try:
        os.pwrite(fd, zeros, 0)
        os.fdatasync(fd)
        os.unlink("big", dir_fd=dir_fd)
    finally:
        os.close(fd)


def small_hardtemp(dir_fd: int, data: bytes) -> None:
    for i in range(N_SMALL):
        os.close(_create(dir_fd, f"s{i}", data))
    for i in range(N_SMALL):
        remove_entry(dir_fd, f"s{i}", own_file=False)


def small_hardtemp_batched(dir_fd: int, data: bytes) -> None:
    # What a TemporaryDirectory cleanup can do: sync the directory once, not per entry.
    for i in range(N_SMALL):
        os.close(_create(dir_fd, f"s{i}", data))
    for i in range(N_SMALL):
        remove_entry(dir_fd, f"s{i}", own_file=False, sync_dir=False)
    os.fsync(dir_fd)


def small_unlink(dir_fd: int, data: bytes) -> None:
    for i in range(N_SMALL):
        os.close(_create(dir_fd, f"s{i}", data))
    for i in range(N_SMALL):
        os.unlink(f"s{i}", dir_fd=dir_fd)


def small_by_hand(dir_fd: int, data: bytes) -> None:
    zeros = bytes(len(data))
    for i in range(N_SMALL):
        os.close(_create(dir_fd, f"s{i}", data))
    for i in range(N_SMALL):
        fd = os.open(f"s{i}", os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        os.pwrite(fd, zeros, 0)
        os.fdatasync(fd)
        os.close(fd)
        os.unlink(f"s{i}", dir_fd=dir_fd)


def race(
    label: str, sides: dict[str, Callable[[int, bytes], None]], dir_fd: int, data: bytes, n: int
) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in sides}
    order = list(sides.items())
    for i in range(n):
        # Alternate, rotating who goes first: drift and noise hit every side alike.
        for name, fn in order[i % len(order) :] + order[: i % len(order)]:
            os.sync()
            t = time.perf_counter()
            fn(dir_fd, data)
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n{label} (median of {n})")
    for k, v in med.items():
        print(f"  {k:<34} {v * 1000:9.2f} ms")
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("directory", nargs="?", default=tempfile.gettempdir())
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--big-only", action="store_true", help="skip the 1,000 small files")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-wipe-", dir=args.directory)
    info = fs_info_for_path(work)
    print(f"directory {work}: {info.fstype} on {info.source}, verdict {info.verdict}")
    dir_fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with wipe_policy("ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            big = os.urandom(BIG)
            for fsynced in (True, False):
                _FSYNCED[0] = fsynced
                how = "written and fsynced" if fsynced else "written (still in the page cache)"
                med = race(
                    f"8 MiB file {how}, then close-with-wipe",
                    {
                        "by hand (zeros, fdatasync, unlink)": big_by_hand,
                        "hardtemp remove_entry": big_hardtemp,
                        "hardtemp remove_entry, no dir fsync": big_hardtemp_nodirsync,
                    },
                    dir_fd,
                    big,
                    args.repeats,
                )
                base = med["by hand (zeros, fdatasync, unlink)"]
                ratio = med["hardtemp remove_entry"] / base
                goal = "   (goal <= 1.2x)" if fsynced else ""
                print(f"  ratio hardtemp / by hand:                {ratio:.2f}x{goal}")
                print(
                    "  ratio hardtemp (no dir fsync) / by hand: "
                    f"{med['hardtemp remove_entry, no dir fsync'] / base:.2f}x"
                )
            _FSYNCED[0] = False
            if args.big_only:
                return
            small = os.urandom(SMALL)
            med = race(
                f"{N_SMALL} files of 4 KiB: write, then remove",
                {
                    "stdlib os.unlink (no wipe)": small_unlink,
                    "by hand (zeros, fdatasync, unlink)": small_by_hand,
                    "hardtemp remove_entry": small_hardtemp,
                    "hardtemp, one dir fsync at the end": small_hardtemp_batched,
                },
                dir_fd,
                small,
                max(3, args.repeats // 3),
            )
            print(
                "  ratio hardtemp / os.unlink:  "
                f"{med['hardtemp remove_entry'] / med['stdlib os.unlink (no wipe)']:.2f}x"
            )
            hand = med["by hand (zeros, fdatasync, unlink)"]
            print(f"  ratio hardtemp / by hand:    {med['hardtemp remove_entry'] / hand:.2f}x")
            batched = med["hardtemp, one dir fsync at the end"]
            print(f"  ratio hardtemp, one dir fsync / by hand:   {batched / hand:.2f}x")
            unl = med["stdlib os.unlink (no wipe)"]
            print(f"  ratio hardtemp, one dir fsync / os.unlink: {batched / unl:.2f}x")
    finally:
        os.close(dir_fd)
        os.rmdir(work)


if __name__ == "__main__":
    main()
