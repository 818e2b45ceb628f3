"""The exact system-call floor of the two plain single-file lifecycles (issue 13).

Every system call today's ``NamedTemporaryFile`` and ``TemporaryFile(encrypt=False)`` make on
tmpfs (as ``strace -f`` lists one lifecycle after a warm-up), made bare in a hand loop with no
Python around them, against the standard library's whole lifecycle, interleaved in one
process; CPU time, median of the per-round ratios. Unlike ``bench_lifecycle.py``'s floor
(the calls each defence needs), this one keeps the calls made for other reasons too (the
trust cache's ``geteuid``, the file object's ``fstat``, the range bookkeeping's ``lseek``, the
sweep lock's two checks at close, ``SEEK_HOLE``, ``F_GETFL``, the mount watch's ``poll``):
what is left above it is only our Python. A ``statx`` is made as ``os.stat`` (a little
dearer: it builds a stat result). Not safe code; the yardstick. Update it when the calls change.

    python benchmarks/bench_floor.py [--dir /dev/shm] [--rounds 9] [--files 300]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import secrets
import select
import statistics
import tempfile
import time
from collections.abc import Callable

PAYLOAD = os.urandom(1000)
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NEW = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_TMP = os.O_RDWR | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_TMPFILE", 0)
_MARK = b"0" * 113  # a sweep mark's size


def _watch() -> select.poll:
    fd = os.open("/proc/self/mountinfo", os.O_RDONLY | os.O_CLOEXEC)
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI | select.POLLOUT)
    poller.poll(0)
    return poller


def floor_named(d: str, n: int, watch: select.poll) -> float:
    names = ["tmp" + secrets.token_hex(8) for _ in range(n)]  # outside the clock
    t = time.process_time()
    for name in names:
        os.geteuid()
        dfd = os.open(d, _DIR)
        os.fstat(dfd)
        fd = os.open(name, _NEW, 0o600, dir_fd=dfd)
        os.stat(fd)  # the new file's statx
        lock = os.dup(fd)
        fcntl.fcntl(lock, fcntl.F_SETOWN, 1)
        fcntl.flock(lock, fcntl.LOCK_SH)
        os.setxattr(lock, "user.hardtemp.owner", _MARK)
        os.fstat(fd)  # the file object's own
        os.write(fd, PAYLOAD)
        os.lseek(fd, 0, os.SEEK_CUR)
        os.lseek(fd, 0, os.SEEK_CUR)
        fcntl.fcntl(lock, fcntl.F_GETOWN)
        os.fstat(lock)
        os.stat(name, dir_fd=dfd, follow_symlinks=False)  # the name's statx
        os.lseek(lock, 0, os.SEEK_HOLE)
        fcntl.fcntl(lock, fcntl.F_GETFL)
        watch.poll(0)
        os.pwrite(lock, os.urandom(1000), 0)
        os.unlink(name, dir_fd=dfd)
        os.close(lock)
        os.close(dfd)
        os.close(fd)
    return time.process_time() - t


def floor_unnamed(d: str, n: int, watch: select.poll) -> float:
    t = time.process_time()
    for _ in range(n):
        os.geteuid()
        dfd = os.open(d, _DIR)
        os.fstat(dfd)
        fd = os.open(".", _TMP, 0o600, dir_fd=dfd)
        os.stat(fd)  # the new file's statx
        os.close(dfd)
        os.fstat(fd)  # the file object's own
        os.write(fd, PAYLOAD)
        os.lseek(fd, 0, os.SEEK_CUR)
        os.lseek(fd, 0, os.SEEK_SET)
        os.lseek(fd, 0, os.SEEK_CUR)
        os.lseek(fd, 0, os.SEEK_CUR)
        os.fstat(fd)
        os.read(fd, 1001)
        os.read(fd, 1)
        os.lseek(fd, 0, os.SEEK_CUR)
        os.fstat(fd)  # the close's look
        os.lseek(fd, 0, os.SEEK_HOLE)
        fcntl.fcntl(fd, fcntl.F_GETFL)
        watch.poll(0)
        os.pwrite(fd, os.urandom(1000), 0)
        os.close(fd)
    return time.process_time() - t


def std_named(d: str, n: int, watch: select.poll) -> float:
    t = time.process_time()
    for _ in range(n):
        with tempfile.NamedTemporaryFile(dir=d) as f:
            f.write(PAYLOAD)
    return time.process_time() - t


def std_unnamed(d: str, n: int, watch: select.poll) -> float:
    t = time.process_time()
    for _ in range(n):
        with tempfile.TemporaryFile(dir=d) as f:
            f.write(PAYLOAD)
            f.seek(0)
            f.read()
    return time.process_time() - t


Loop = Callable[[str, int, select.poll], float]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/dev/shm")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--files", type=int, default=300, help="lifecycles per round")
    args = ap.parse_args()
    watch = _watch()
    pairs: list[tuple[str, Loop, Loop]] = [
        ("NamedTemporaryFile", floor_named, std_named),
        ("TemporaryFile(encrypt=False)", floor_unnamed, std_unnamed),
    ]
    for label, floor, std in pairs:
        floor(args.dir, 50, watch)
        std(args.dir, 50, watch)
        ratios, ours, theirs = [], [], []
        for r in range(args.rounds):  # who goes first alternates
            if r % 2:
                x, y = floor(args.dir, args.files, watch), std(args.dir, args.files, watch)
            else:
                y, x = std(args.dir, args.files, watch), floor(args.dir, args.files, watch)
            ratios.append(x / y)
            ours.append(x / args.files * 1e6)
            theirs.append(y / args.files * 1e6)
        print(
            f"{label}: exact floor {statistics.median(ratios):.2f}x the stdlib, CPU "
            f"(rounds {min(ratios):.2f}-{max(ratios):.2f}; floor {statistics.median(ours):.1f} us,"
            f" stdlib {statistics.median(theirs):.1f} us)"
        )


if __name__ == "__main__":
    main()
