"""Everyday lifecycles, hardtemp against the standard library, side by side (issue 13).

Each lifecycle runs the same loop with :mod:`tempfile` and with :mod:`hardtemp`, in
one process, in interleaved rounds (who goes first alternates), and prints the median
of the per-round ratios hardtemp time / tempfile time (lower is better; goal <= 2x):

* ``NamedTemporaryFile``: create, write 1,000 bytes, close (hardtemp overwrites on close);
* ``TemporaryFile(encrypt=False)``: create, write 1,000 bytes, seek, read, close;
* a *floor* after each of the first two: the system calls hardtemp's defences need for
  that lifecycle, made by a minimal hand-written loop with no Python around them
  (:class:`_Floor`), as a ratio to the standard library in the same rounds -- the least
  this design can cost, so how much of the gap is our Python;
* ``TemporaryFile()`` encrypted (the standard side is the plain ``TemporaryFile``), and
  two **floors** for it: the least any AES-256-GCM temp file must do for that lifecycle
  (an ``O_TMPFILE`` open, a fresh key from ``getrandom``, ``AESGCM(key)``, one
  ``encrypt_into`` + ``pwrite``, one ``preadv`` + ``decrypt_into``, close), once bare
  once with the key in memory set up per file as a careful design must keep it
  (a private anonymous mapping, ``MADV_DONTDUMP`` + ``MADV_WIPEONFORK``, ``mlock``,
  zeroed and unmapped at close), and once with such memory set up once and its slot
  zeroed after each file (what a pool costs at least): if a floor is above 2x, no
  design of that kind reaches the goal;
* ``TemporaryDirectory`` with 4 files of 1,000 bytes written by ``open()``;
* the cleanup of a ``TemporaryDirectory`` holding 5,000 files of 200 bytes (only the
  cleanup is timed; the files are written beforehand, outside the clock), and of one
  holding 100 directories of 10 such files (on a disk: one ``syncfs`` for the tree);
* with ``--scale``: the same cleanup with 100,000 files, and trees 100 and 1,000 deep
  (a file at every level; ``shutil.rmtree`` cannot remove 1,000 levels: RecursionError).

The machine this runs on is usually shared: read ratios, never absolute times, and
repeat a run before concluding. ``--dir`` chooses the directory (e.g. ``/dev/shm`` for
tmpfs, ``/var/tmp`` or a loop-mounted ext4 for a disk filesystem).

    python benchmarks/bench_lifecycle.py [--dir DIR] [--rounds 7] [--files 300] [--scale]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import fcntl
import mmap
import os
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from types import ModuleType

import hardtemp
from hardtemp._fsinfo import RENAME_HIDES_NOTHING, fs_info_for_path
from hardtemp._linux import FIEMAP_EXTENT, FIEMAP_HEADER, FS_IOC_FIEMAP, FS_IOC_GETFLAGS, LONG_SIZE

PAYLOAD = os.urandom(1000)
SMALL = os.urandom(200)

# A cycle returns its wall seconds, or (wall, CPU) seconds when only part of it is timed
# (the cleanups: the files are written outside the clock, so not in the CPU time either).
Cycle = Callable[[ModuleType, str, int], "float | tuple[float, float]"]
Floor = Callable[[str, int], "float | tuple[float, float]"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NEW_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_TMPFILE_FLAGS = os.O_RDWR | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_TMPFILE", 0)
_MARK = b"0" * 114  # the size of a real sweep mark, computed once (ours: HMAC per file)
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_renameat2 = _libc.renameat2
_renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
_RENAME_NOREPLACE = 1


class _Floor:
    """The least each lifecycle can cost with hardtemp's defences (issue 13): their system
    calls, in a minimal loop, with no Python around them. Not safe code; the yardstick.

    Named file: reopen the verified directory and ``fstat`` it (still the inode we
    verified?), ``openat(O_EXCL|O_NOFOLLOW)`` and ``fstat`` the new file (ours, 0600), the
    sweep lock (``dup`` + ``flock``) and mark (``fsetxattr`` of a precomputed value), the
    write; at close a look at the name (``newfstatat``, standing in for our ``statx``:
    still our inode, not a mount point), random bytes and the ``pwrite`` over the data,
    on a disk one FIEMAP (did a block reach it? then an ``fdatasync`` too) and the hiding
    ``renameat2(RENAME_NOREPLACE)`` (only where a rename hides the name: not on tmpfs,
    ext2/3/4, btrfs or xfs),
    the unlink, three closes. Unnamed file: the
    directory as above, ``O_TMPFILE|O_EXCL`` and its ``fstat``, write, seek, read, an
    ``fstat`` at close (what others cut), the overwrite as above, close.
    """

    def __init__(self, d: str) -> None:
        info = fs_info_for_path(d)
        self.on_disk = info.verdict != "volatile"
        # hardtemp's close renames first only where that hides the name from a disk's reader
        self.names_on_disk = info.f_type not in RENAME_HIDES_NOTHING
        self.fiemap = bytearray(FIEMAP_HEADER.size + 32 * FIEMAP_EXTENT.size)

    def _sync_if_on_disk(self, fd: int) -> None:
        if not self.on_disk:
            return  # tmpfs: nothing below to reach
        buf = self.fiemap
        FIEMAP_HEADER.pack_into(buf, 0, 0, 0xFFFFFFFFFFFFFFFF, 0, 0, 32, 0)
        fcntl.ioctl(fd, FS_IOC_FIEMAP, buf, True)
        mapped = FIEMAP_HEADER.unpack_from(buf, 0)[3]
        if mapped and FIEMAP_EXTENT.unpack_from(buf, FIEMAP_HEADER.size)[5] & 0x4 == 0:
            os.fdatasync(fd)  # a block (not delayed allocation): the overwrite must reach it

    def named(self, d: str, n: int) -> float:
        names = [secrets.token_hex(8) for _ in range(2 * n)]  # outside the clock
        bd = os.fsencode(d)
        t = time.perf_counter()
        for i in range(n):
            name, hidden = "tmp" + names[2 * i], ".ht-" + names[2 * i + 1]
            dfd = os.open(bd, _DIR_FLAGS)
            os.fstat(dfd)
            fd = os.open(name, _NEW_FLAGS, 0o600, dir_fd=dfd)
            os.fstat(fd)
            lock = os.dup(fd)
            fcntl.flock(lock, fcntl.LOCK_SH)
            os.setxattr(lock, "user.hardtemp.owner", _MARK)
            os.write(fd, PAYLOAD)
            os.stat(name, dir_fd=dfd, follow_symlinks=False)
            os.pwrite(fd, os.urandom(1000), 0)
            self._sync_if_on_disk(fd)
            if self.names_on_disk:  # the name may reach a disk: hidden first
                _renameat2(dfd, name.encode(), dfd, hidden.encode(), _RENAME_NOREPLACE)
                name = hidden
            os.unlink(name, dir_fd=dfd)
            os.close(lock)
            os.close(dfd)
            os.close(fd)
        return time.perf_counter() - t

    def unnamed(self, d: str, n: int) -> float:
        bd = os.fsencode(d)
        t = time.perf_counter()
        for _ in range(n):
            dfd = os.open(bd, _DIR_FLAGS)
            os.fstat(dfd)
            fd = os.open(".", _TMPFILE_FLAGS, 0o600, dir_fd=dfd)
            os.fstat(fd)
            os.close(dfd)
            os.write(fd, PAYLOAD)
            os.lseek(fd, 0, os.SEEK_SET)
            os.read(fd, 8192)
            os.fstat(fd)
            os.pwrite(fd, os.urandom(1000), 0)
            self._sync_if_on_disk(fd)
            os.close(fd)
        return time.perf_counter() - t


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


def _protected_map(mlock: Callable[..., int]) -> mmap.mmap:
    """A private anonymous mapping of 3 pages, DONTDUMP + WIPEONFORK, mlocked."""
    m = mmap.mmap(-1, 3 * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    m.madvise(mmap.MADV_DONTDUMP)
    m.madvise(getattr(mmap, "MADV_WIPEONFORK", 18))
    anchor = ctypes.c_char.from_buffer(m)
    mlock(ctypes.addressof(anchor), len(m))
    del anchor
    return m


def _floor_cycle(memory: str) -> Cycle:
    """The least an AES-256-GCM TemporaryFile lifecycle must do (see the module doc),
    with the key in ``memory``: "heap" (a bytearray), "mapping" (a protected mapping
    set up and torn down per file) or "pool" (one protected mapping set up once, its
    slot zeroed after each file); the standard side is the plain ``TemporaryFile``."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    mlock = ctypes.CDLL(None, use_errno=True).mlock
    mlock.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    nonce, ad = bytes(11) + b"\x01", bytes(24)

    def cycle(mod: ModuleType, d: str, n: int) -> float:
        if mod is not hardtemp:
            return unnamed_encrypted(mod, d, n)
        ct, out = bytearray(len(PAYLOAD) + 16), bytearray(len(PAYLOAD))
        cts = [memoryview(ct)]
        pool = _protected_map(mlock) if memory == "pool" else None
        heap = bytearray(32)
        t = time.perf_counter()
        for _ in range(n):
            fd = os.open(d, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
            m = _protected_map(mlock) if memory == "mapping" else pool
            kv = memoryview(heap if m is None else m)[:32]
            kv[:] = os.getrandom(32)
            aead = AESGCM(kv)
            kv[:] = bytes(32)
            aead.encrypt_into(nonce, PAYLOAD, ad, ct)
            os.pwrite(fd, ct, 0)
            os.preadv(fd, cts, 0)
            aead.decrypt_into(nonce, ct, ad, out)
            kv.release()
            if m is not None:
                m[:] = bytes(len(m))
                if memory == "mapping":
                    m.close()
            os.close(fd)
        t = time.perf_counter() - t
        if pool is not None:
            pool.close()
        return t

    return cycle


def tempdir_4_files(mod: ModuleType, d: str, n: int) -> float:
    make = mod.TemporaryDirectory
    t = time.perf_counter()
    for _ in range(n):
        with make(dir=d) as p:
            for i in range(4):
                with open(f"{p}/f{i}", "wb") as f:
                    f.write(PAYLOAD)
    return time.perf_counter() - t


_FILE_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_SUBDIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _TreeFloor:
    """The least a tree cleanup can cost with hardtemp's defences (issue 13): its system
    calls in a minimal loop, no Python around them. Not safe code; the yardstick.

    Per regular file of a private directory: ``openat(O_RDWR|O_NOFOLLOW|O_NONBLOCK)``, an
    ``fstat`` (standing in for our ``statx``: type, owner, links, mount), on ext4 the inode
    flags, the ``pwrite`` of random bytes (one ``getrandom`` per 16 files: our pool), on a
    disk one FIEMAP, close, unlink. Per directory: a look at the name (``newfstatat``, for
    our mount id ``statx``), ``openat(O_DIRECTORY|O_NOFOLLOW)``, ``fstat``, the listing,
    close; on a disk the move into the top (``renameat2``) and its ``rmdir`` after the
    walk, on tmpfs ``rmdir`` in place. Without the one ``syncfs`` per tree, which the code
    skips when nothing reached the disk (see SECURITY.md) and pays otherwise.
    """

    def __init__(self, d: str, fill: Callable[[str, int], None], size: int) -> None:
        info = fs_info_for_path(d)
        self.on_disk = info.verdict != "volatile"
        self.ext4 = info.f_type == 0xEF53
        self.fill, self.size = fill, size
        self.fiemap = bytearray(FIEMAP_HEADER.size + 32 * FIEMAP_EXTENT.size)
        self.flags = bytearray(LONG_SIZE)

    def __call__(self, d: str, n: int) -> tuple[float, float]:
        total = cpu = 0.0
        for _ in range(n):
            top = os.path.join(d, "floor-" + secrets.token_hex(8))
            os.mkdir(top, 0o700)
            self.fill(top, self.size)
            c, t = time.process_time(), time.perf_counter()
            self._remove(top)
            total += time.perf_counter() - t
            cpu += time.process_time() - c
        return total, cpu

    def _file(self, dfd: int, name: str, pool: bytes, off: int) -> None:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dfd)
        st = os.fstat(fd)
        if self.ext4:
            fcntl.ioctl(fd, FS_IOC_GETFLAGS, self.flags, True)
        os.pwrite(fd, pool[off : off + st.st_size], 0)
        if self.on_disk:
            FIEMAP_HEADER.pack_into(self.fiemap, 0, 0, 0xFFFFFFFFFFFFFFFF, 0, 0, 32, 0)
            fcntl.ioctl(fd, FS_IOC_FIEMAP, self.fiemap, True)
        os.close(fd)
        os.unlink(name, dir_fd=dfd)

    def _scan(self, fd: int, files: list[int], pool: list[bytes]) -> list[str]:
        """Remove the files of ``fd``; return its subdirectories' names."""
        subdirs = []
        with os.scandir(fd) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.name)
                    continue
                if files[0] % 16 == 0:
                    pool[0] = os.urandom(4096)
                self._file(fd, entry.name, pool[0], (files[0] % 16) * 256)
                files[0] += 1
        return subdirs

    def _remove(self, top: str) -> None:
        tfd = os.open(top, _DIR_FLAGS)
        os.fstat(tfd)
        graves: list[bytes] = []
        files, pool = [0], [b""]
        # (fd, parent fd, name, subdirectories still to visit)
        stack = [(tfd, -1, "", self._scan(tfd, files, pool))]
        while stack:
            fd, parent, name, pending = stack[-1]
            if pending:
                sub = pending.pop()
                os.stat(sub, dir_fd=fd, follow_symlinks=False)
                sfd = os.open(sub, _SUBDIR_FLAGS, dir_fd=fd)
                os.fstat(sfd)
                stack.append((sfd, fd, sub, self._scan(sfd, files, pool)))
                continue
            stack.pop()
            if parent < 0:
                break
            if self.on_disk:
                grave = (".ht-" + secrets.token_hex(8)).encode()
                _renameat2(parent, name.encode(), tfd, grave, _RENAME_NOREPLACE)
                graves.append(grave)
            else:
                os.rmdir(name, dir_fd=parent)
            os.close(fd)
        for grave in graves:
            os.rmdir(grave, dir_fd=tfd)
        os.close(tfd)
        os.rmdir(top)


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


def _fill_wide(top: str, count: int) -> None:
    """``count`` subdirectories of 10 files each (an unpacked source tree)."""
    for i in range(count):
        os.mkdir(f"{top}/d{i}")
        _fill_flat(f"{top}/d{i}", 10)


def _cleanup(fill: Callable[[str, int], None], size: int) -> Cycle:
    def cycle(mod: ModuleType, d: str, n: int) -> tuple[float, float]:
        total = cpu = 0.0
        for _ in range(n):
            tmp = mod.TemporaryDirectory(dir=d)
            fill(tmp.name, size)
            c, t = time.process_time(), time.perf_counter()
            tmp.cleanup()
            total += time.perf_counter() - t
            cpu += time.process_time() - c
        return total, cpu

    return cycle


def _timed(cycle: Cycle, mod: ModuleType, d: str, n: int) -> tuple[float, float]:
    """(wall seconds as the cycle measured them, process CPU seconds of the same part: the
    whole call, or what the cycle timed itself)."""
    c0 = time.process_time()
    got = cycle(mod, d, n)
    if isinstance(got, tuple):
        return got
    return got, time.process_time() - c0


def _as_cycle(floor: Floor) -> Cycle:
    return lambda _mod, d, n: floor(d, n)


def compare(
    label: str, cycle: Cycle, d: str, n: int, rounds: int, floor: Floor | None = None
) -> tuple[float, float, float]:
    """Median wall-clock ratio, and median seconds per iteration of each side.

    The CPU-time ratio is printed too: on a shared machine other jobs stretch wall
    time, not our CPU time (but CPU time misses what is spent waiting for the disk; for
    the cleanups it is the cleanup's own, as the wall clock: until issue 13's last round
    it included writing the files, which made the cleanups' CPU ratios look lower).
    With ``floor`` it runs in the same rounds (the order rotates) and a second line
    gives the floor against the standard library and hardtemp against the floor.
    """
    std_t: list[float] = []
    ours_t: list[float] = []
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    floor_r: list[tuple[float, float, float, float]] = []  # floor/std, ours/floor: wall, cpu
    for r in range(rounds):
        # Rotate who goes first: drift (writeback, other jobs) hits all alike.
        try:
            sides: list[ModuleType | None] = [tempfile, hardtemp]
            if floor is not None:
                sides.append(None)
            got: dict[str, tuple[float, float]] = {}
            for i in range(len(sides)):
                mod = sides[(r + i) % len(sides)]
                if mod is None:
                    assert floor is not None
                    got["floor"] = _timed(_as_cycle(floor), tempfile, d, n)
                else:
                    got[mod.__name__] = _timed(cycle, mod, d, n)
            (std, std_cpu), (ours, ours_cpu) = got["tempfile"], got["hardtemp"]
        except RecursionError:
            # shutil.rmtree recurses once per level: 1,000 deep exceeds Python's limit.
            ours, _ = _timed(cycle, hardtemp, d, n)
            print(
                f"  {label:<52} tempfile fails (RecursionError, tree left behind); "
                f"hardtemp {ours / n * 1e6:9.1f} us",
                flush=True,
            )
            return float("nan"), float("nan"), ours / n * 1e6
        std_t.append(std / n)
        ours_t.append(ours / n)
        ratios.append(ours / std)
        cpu_ratios.append(ours_cpu / std_cpu if std_cpu > 0 else float("nan"))
        if "floor" in got:
            low, low_cpu = got["floor"]
            floor_r.append((low / std, ours / low, low_cpu / std_cpu, ours_cpu / low_cpu))
    ratio = statistics.median(ratios)
    spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
    s_us = statistics.median(std_t) * 1e6
    o_us = statistics.median(ours_t) * 1e6
    print(
        f"  {label:<52} {ratio:6.2f}x  cpu {statistics.median(cpu_ratios):5.2f}x  "
        f"(rounds {spread}; tempfile {s_us:9.1f} us, hardtemp {o_us:9.1f} us)",
        flush=True,
    )
    if floor_r:
        med = [statistics.median(x[k] for x in floor_r) for k in range(4)]
        print(
            f"    {'floor: its system calls, no Python around them':<50} {med[0]:6.2f}x  "
            f"cpu {med[2]:5.2f}x the stdlib; hardtemp {med[1]:.2f}x the floor "
            f"(cpu {med[3]:.2f}x)",
            flush=True,
        )
    return ratio, s_us, o_us


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"{name} is not installed")
    return path


@contextlib.contextmanager
def loop_ext4(where: str, size_mb: int = 1024) -> Iterator[str]:
    """A freshly made ext4 image (journal, data=ordered: mkfs defaults), loop-mounted."""
    work = tempfile.mkdtemp(prefix="bench-ext4-", dir=where)
    image, mnt = f"{work}/fs.img", f"{work}/mnt"
    os.mkdir(mnt)
    with open(image, "wb") as f:
        f.truncate(size_mb << 20)
    mkfs, mount, umount = (_tool(t) for t in ("mkfs.ext4", "mount", "umount"))
    subprocess.run([mkfs, "-q", "-F", image], check=True)  # noqa: S603 - fixed argv
    subprocess.run([mount, "-o", "loop", image, mnt], check=True)  # noqa: S603
    try:
        os.chmod(mnt, 0o700)
        yield mnt
    finally:
        from hardtemp import _dirtrust

        _dirtrust.clear_cache()  # our cached descriptors would keep the mount busy
        subprocess.run([umount, mnt], check=False)  # noqa: S603
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=None, help="where to work (default: gettempdir())")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--files", type=int, default=300, help="lifecycles per round")
    ap.add_argument("--scale", action="store_true", help="also 100,000 files and 1,000 deep")
    ap.add_argument("--only", default="", help="comma-separated labels' first words to run")
    ap.add_argument(
        "--loop-ext4",
        action="store_true",
        help="(root) run in a fresh loop-mounted ext4 image made under --dir (or /var/tmp)",
    )
    args = ap.parse_args()
    if args.loop_ext4:
        with loop_ext4(os.path.abspath(args.dir or "/var/tmp")) as mnt:
            run(args, mnt)
    else:
        run(args, os.path.abspath(args.dir or hardtemp.gettempdir()))


def run(args: argparse.Namespace, d: str) -> None:
    info = fs_info_for_path(d)
    print(f"in {d}: {info.fstype} ({info.verdict}); ratio = hardtemp / tempfile, median")
    n = args.files
    low = _Floor(d)
    floors: dict[str, Floor] = {
        "NamedTemporaryFile": low.named,
        "TemporaryFile(encrypt=": low.unnamed,
        "TemporaryDirectory cleanup, 5,000": _TreeFloor(d, _fill_flat, 5000),
        "TemporaryDirectory cleanup, 100 dir": _TreeFloor(d, _fill_wide, 100),
    }
    cases: list[tuple[str, Cycle, int, int]] = [
        ("NamedTemporaryFile, 1,000 B", named, n, args.rounds),
        ("TemporaryFile(encrypt=False), 1,000 B + seek + read", unnamed_plain, n, args.rounds),
        ("TemporaryFile() encrypted, 1,000 B + seek + read", unnamed_encrypted, n, args.rounds),
        *(
            (f"TemporaryFile() floor: {what}", _floor_cycle(memory), n, args.rounds)
            for what, memory in (
                ("by hand, key in a bytearray", "heap"),
                ("+ key memory locked per file", "mapping"),
                ("+ key in a pooled locked slot", "pool"),
            )
        ),
        ("TemporaryDirectory + 4 files by open()", tempdir_4_files, max(1, n // 3), args.rounds),
        (
            "TemporaryDirectory cleanup, 5,000 files of 200 B",
            _cleanup(_fill_flat, 5000),
            1,
            args.rounds,
        ),
        (
            "TemporaryDirectory cleanup, 100 directories of 10 files",
            _cleanup(_fill_wide, 100),
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
                "TemporaryDirectory cleanup, tree 100 deep",
                _cleanup(_fill_deep, 100),
                1,
                args.rounds,
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
            fl = next((f for k, f in floors.items() if label.startswith(k)), None)
            compare(label, cycle, d, count, rounds, fl)


if __name__ == "__main__":
    main()
