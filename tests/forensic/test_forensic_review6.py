"""Adversarial review of issue 13's cuts (review6): the claims attacked on real images.

The filesystem classification cache (``_fsinfo``: ``_mnt_cache`` by mount id and
``st_dev``, ``_dev_cache`` by ``st_dev`` alone) is trusted only while the mount table
watch (``/proc/self/mountinfo`` polled for ``POLLPRI``) reports no change. Mount ids
and anonymous device numbers are both handed out lowest-free by the kernel, so after an
``umount`` of a tmpfs the next overlayfs mounted there gets the very same pair (checked
here on every run). Since Linux 6.8 the caches are keyed by the mount's unique id, which no
later mount gets: each case runs with those ids, and with the old ones forced (what an
older kernel gives), where the watch alone stands. Each case below lets a long-lived
process classify a tmpfs, swaps it for an overlayfs whose upper layer is a loop-mounted
ext4, and then closes a ``NamedTemporaryFile`` and a ``TemporaryFile(encrypt=False)`` whose
data was synced to that ext4: the raw image must not keep the marker afterwards. A stale "volatile"
verdict skips the overwrite's sync (and the warning), and the unlink drops the unsynced
overwrite: the marker stays in the freed blocks.

Everything runs in a private mount namespace (``unshare -m``), which takes its mounts
(and the autoclear loop device) with it.
"""

from __future__ import annotations

import ctypes
import fcntl
import gc
import json
import mmap
import os
import secrets
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import hardtemp
from _gates import require_loop, require_unshare
from _helpers_core import MOUNT_ID_KINDS, marker, run_with_mount_ids
from forensic.test_forensic_names import _find_all, _journal_blocks
from hardtemp import _dirsettle, _dirtrust, _linux

pytestmark = pytest.mark.forensic

# What the scripts run in a private mount namespace share: run a command, and a path's
# [st_dev, old mount id] (needs os, subprocess and hardtemp's _linux imported): the old id is
# the one the kernel reuses, which these cases need the replacing mount to get.
_SCRIPT_TOOLS = r"""
def run(*cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def ident(path):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return [os.fstat(fd).st_dev, _linux.old_mount_id(fd)]
    finally:
        os.close(fd)
"""

# argv: work directory, case. Prints one JSON line: the ids of the tmpfs and of the
# overlay that replaced it, and per close whether the marker was on the disk before the
# close (it must be: the case is only meaningful then) and after it.
_SCRIPT = r"""
import ctypes, json, os, subprocess, sys, warnings
import hardtemp
from hardtemp import _linux

work, case = sys.argv[1], sys.argv[2]
img, ext, mnt = f"{work}/e.img", f"{work}/e", f"{work}/m"
holds = [f"{work}/h1", f"{work}/h2"]
for d in (ext, mnt, *holds):
    os.mkdir(d)

# tools


with open(img, "wb") as f:
    f.truncate(32 << 20)
run("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", img)
hardtemp.TemporaryFile(dir=work, encrypt=False).close()  # the watch is open (namespace A)
helper = None
if case == "unshare":
    os.unshare(os.CLONE_NEWNS)  # the service sandboxes itself (namespace B, private)
elif case == "setns":
    # It enters another process's mount namespace (B, private) with setns(2).
    helper = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sleep", "600"])
    mine = os.stat("/proc/self/ns/mnt").st_ino
    while os.stat(f"/proc/{helper.pid}/ns/mnt").st_ino == mine:
        pass  # until unshare(1) made its namespace
    nsfd = os.open(f"/proc/{helper.pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    os.setns(nsfd, os.CLONE_NEWNS)
    os.close(nsfd)
run("mount", "-o", "loop", img, ext)
for d in ("lower", "upper", "work"):
    os.mkdir(f"{ext}/{d}")
child = -1
if case.startswith("fork"):
    # A fork that bypasses Python's fork hooks (a C extension's fork(2)): the child shares
    # the parent's /proc/self/mountinfo open file description, poll state included.
    r, w = os.pipe()
    child = ctypes.CDLL(None, use_errno=True).fork()
    if child == 0:
        os.read(r, 1)
        if case == "fork-look":
            # The child uses hardtemp after the mount change: its poll sees the event.
            hardtemp.TemporaryFile(dir=ext, encrypt=False).close()
        os._exit(0)
opts = f"lowerdir={ext}/lower,upperdir={ext}/upper,workdir={ext}/work"
for attempt in range(30):  # other processes mount too: ids are global, retried until reused
    # Two placeholder mounts hold the ids the overlay's private clones of its layers
    # take, so that the overlay itself gets the tmpfs's mount id once all three are gone.
    for h in holds:
        run("mount", "--bind", h, h)
    run("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", mnt)
    tmpfs = ident(mnt)
    # The long-lived process classifies the tmpfs ("volatile" without swap, else "best
    # effort"), cached for both kinds of close.
    with hardtemp.NamedTemporaryFile(dir=mnt) as f:
        f.write(b"x")
    with hardtemp.TemporaryFile(dir=mnt, encrypt=False) as f:
        f.write(b"x")
    with hardtemp.TemporaryDirectory(dir=mnt) as d:  # and for a tree's cleanup
        with open(f"{d}/f", "wb") as out:
            out.write(b"x")
    for m in (mnt, *holds):
        run("umount", m)
    run("mount", "-t", "overlay", "-o", opts, "overlay", mnt)
    overlay = ident(mnt)
    if overlay == tmpfs:
        break
    run("umount", mnt)
os.chmod(mnt, 0o755)
if child > 0:
    os.write(w, b"x")
    os.waitpid(child, 0)
results = {}
warnings.simplefilter("ignore")  # the overlay's honest WipeUnreliableWarning
for kind in ("named", "unnamed", "tree"):
    m = f"HARDTEMP-REVIEW6-{kind}-".encode() + os.urandom(12).hex().encode()
    tree = None
    if kind == "named":
        f = hardtemp.NamedTemporaryFile(dir=mnt)
    elif kind == "unnamed":
        f = hardtemp.TemporaryFile(dir=mnt, encrypt=False)
    else:  # a file of a TemporaryDirectory, written by open() and removed by its cleanup
        tree = hardtemp.TemporaryDirectory(dir=mnt)
        f = open(f"{tree.name}/f", "wb")
    f.write(m * 64)
    f.flush()
    os.fsync(f.fileno())  # the caller made its data durable: it is on the ext4 now
    with open(img, "rb") as fh:
        before = m in fh.read()
    f.close()
    if tree is not None:
        tree.cleanup()
    results[kind] = m.decode(), before
run("umount", mnt)
run("umount", ext)
with open(img, "rb") as fh:
    data = fh.read()
out = {k: [before, m.encode() in data] for k, (m, before) in results.items()}
if helper is not None:
    helper.kill()
    helper.wait()
print(json.dumps({"tmpfs": tmpfs, "overlay": overlay, "closes": out}))
""".replace("# tools\n", _SCRIPT_TOOLS)


def _run(tmp_path: Path, case: str, kind: str, script: str = _SCRIPT) -> dict[str, object]:
    """Run ``script`` for ``case`` with ``kind`` mount ids (:data:`MOUNT_ID_KINDS`) in a
    private mount namespace; its JSON line."""
    require_unshare()
    require_loop("ext4")
    if not Path("/sys/module/overlay").exists():
        subprocess.run(["modprobe", "overlay"], check=False, capture_output=True)
    cmd = ["unshare", "-m", "--propagation", "private", sys.executable, "-c", script]
    out = run_with_mount_ids([*cmd, str(tmp_path), case], kind)
    if out.returncode != 0 and "overlay" in out.stderr and "unknown filesystem" in out.stderr:
        pytest.skip("this kernel has no overlayfs")
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout.splitlines()[-1])
    return result


def _check(result: dict[str, object], kinds: tuple[str, ...] = ("named", "unnamed")) -> None:
    if result["tmpfs"] != result["overlay"]:
        pytest.skip(f"the overlay did not reuse the tmpfs's st_dev and mount id: {result}")
    closes = result["closes"]
    assert isinstance(closes, dict)
    for kind in kinds:
        before, after = closes[kind]
        assert before, f"{kind}: the marker never reached the disk: the case proves nothing"
        assert not after, f"{kind}: the marker stayed on the disk after the close ({result})"


_STALE = (
    "review6 break: the mount-table watch is one /proc/self/mountinfo open file "
    "description, and its poll state (seq_file poll_event) is shared with a child forked "
    "without Python's hooks (_MountWatch.forget runs only from os.register_at_fork): the "
    "child's poll consumes the umount+mount event, the parent keeps its tmpfs entries, and "
    "an overlay (ext4 upper) that reused the tmpfs's st_dev and mount id is taken as "
    "volatile: no sync of the overwrite, no warning, the synced marker stays on the disk"
)


@pytest.mark.parametrize(
    "case",
    [
        "fork-look",  # was _STALE: fixed (a child by any fork opens its own watch first)
        "fork-quiet",
    ],
    ids=["raw-forked-child-looks", "control-raw-forked-child-quiet"],
)
@pytest.mark.parametrize("kind", MOUNT_ID_KINDS)
def test_a_raw_forked_child_s_look_does_not_hide_a_mount_change_from_its_parent(
    tmp_path: Path, case: str, kind: str
) -> None:
    _check(_run(tmp_path, case, kind))


# review6's break (fixed): the watch kept polling the mount namespace the process had when
# it first classified a filesystem; after its own unshare(CLONE_NEWNS), or a setns(2) into
# another process's namespace, that namespace's umount + mount never reached the poll, and a
# tmpfs replaced by an overlay (ext4 upper) with its st_dev and mount id kept its verdict.
@pytest.mark.parametrize(
    "case",
    ["unshare", "setns", "stay"],  # a cache miss notices the move
    ids=[
        "process-unshared-its-mount-namespace",
        "process-entered-another-mount-namespace",
        "control-same-namespace",
    ],
)
@pytest.mark.parametrize("kind", MOUNT_ID_KINDS)
def test_a_mount_change_after_the_process_changed_its_mount_namespace_is_seen(
    tmp_path: Path, case: str, kind: str
) -> None:
    _check(_run(tmp_path, case, kind))


@pytest.mark.parametrize("case", ["unshare", "stay"])
@pytest.mark.parametrize("kind", MOUNT_ID_KINDS)
def test_a_tree_s_cleanup_asks_its_filesystem_by_fstatfs_whatever_the_mount_watch_missed(
    tmp_path: Path, case: str, kind: str
) -> None:
    # The tree walk looks its filesystem up once per tree, never by old mount id alone:
    # with old ids, an fstatfs (cached by superblock: device, type, filesystem id); with
    # unique ones, that id (one statx in the fstatfs's place). Either way the overlay that
    # took the tmpfs's st_dev and old mount id in a namespace the watch does not see is an
    # overlay to it, so the durable marker of its file is overwritten and synced (tree6;
    # with the fstatfs-free lookup by old mount id the tmpfs's "volatile" was served).
    _check(_run(tmp_path, case, kind), ("tree",))


# --- Claim 2: the small plain file's straight-line close, attacked through the file itself ---
#
# The straight line (``_wipe.overwrite_small``) takes a file of at most a page, one link,
# writable without O_APPEND, "in place"/"volatile", and no block on the disk after its
# overwrite. Each case below changes one of those through the file object's own descriptor
# (what a library handed ``f.fileno()`` does) after the data was synced to a loop ext4:
# whichever way the close goes, no byte of the marker may stay in the raw image.


def _fallocate_keep_size(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    if libc.fallocate(fd, 1, 0, 1 << 20) != 0:  # FALLOC_FL_KEEP_SIZE: blocks past EOF
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _attack(case: str, f: Any, m: bytes) -> None:
    fd = f.fileno()
    if case == "o-append-set-later":
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
    elif case == "fallocate-past-eof":
        _fallocate_keep_size(fd)
    elif case == "grown-past-a-page-by-fd":
        os.pwrite(fd, m * 80, 100)  # straight through the descriptor, not the object
    elif case == "mmap-write-msync":
        with mmap.mmap(fd, len(m)) as mm:
            mm[: len(m)] = m.lower()  # a second, different marker through the mapping
            mm.flush()
    elif case == "second-link-made-and-removed":
        os.link(f.name, f.name + ".2")
        os.unlink(f.name + ".2")
    os.fsync(fd)


_CASES = [
    "o-append-set-later",
    "fallocate-past-eof",
    "grown-past-a-page-by-fd",
    "mmap-write-msync",
    "second-link-made-and-removed",
]


_APPEND_UNNAMED = (
    "review6 break: TemporaryFile(encrypt=False)'s close (_files._WipingFileIO.close) hands a "
    "descriptor that got O_APPEND through fcntl(F_SETFL) to overwrite_fd, which refuses it "
    "(ValueError) after overwrite_small declined it; the finally closes the descriptor, so the "
    "unnamed inode is freed with its synced plaintext (the named close reopens, and "
    "_files._overwrite_unnamed already reopens /proc/self/fd/N without O_APPEND: the fix)"
)


def _param(case: str, kind: str) -> Any:
    # ("o-append-set-later", "unnamed") was _APPEND_UNNAMED: fixed (the close reopens).
    return pytest.param(case, kind, id=f"{case}-{kind}")


@pytest.mark.parametrize(
    ("case", "kind"),
    [
        _param(c, k)
        for c in _CASES
        for k in ("named", "unnamed", "control-stdlib")
        if (c, k) != ("second-link-made-and-removed", "unnamed")  # O_TMPFILE: no name to link
    ],
)
def test_a_small_file_changed_through_its_own_descriptor_leaves_no_marker(
    loopfs: Callable[..., Any], case: str, kind: str
) -> None:
    fs = loopfs("ext4", size_mb=32)
    m = marker()
    if kind == "named":
        f: Any = hardtemp.NamedTemporaryFile(dir=fs.mountpoint)
    elif kind == "unnamed":
        f = hardtemp.TemporaryFile(dir=fs.mountpoint, encrypt=False)
    else:
        f = tempfile.NamedTemporaryFile(dir=fs.mountpoint)  # noqa: SIM115 - closed below
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an honest warning is fine; the bytes decide
        f.write(m + b"." * 40)  # one small block
        f.flush()
        os.fsync(f.fileno())
        _attack(case, f, m)
        synced = m.lower() if case == "mmap-write-msync" else m  # the mapping replaced it
        assert synced in fs.image.read_bytes(), "never reached the disk: the case proves nothing"
        try:
            f.close()
            failed = ""
        except ValueError as exc:  # the close gave up: what did it leave?
            failed = str(exc)
    gc.collect()
    _dirtrust.clear_cache()
    gc.collect()
    fs.unmount()
    data = fs.image.read_bytes()
    left = [x for x in (m, m.lower()) if x in data]
    if kind == "control-stdlib":
        assert left, "control: the standard library's unlink leaves the marker"
    else:
        assert not left, f"{case}: the marker stayed on the disk after the close ({failed})"
        assert not failed, f"{case}: the close raised {failed!r}"


# --- Claim 1: the TemporaryDirectory sync skipped while the disk's write count is unchanged ---
#
# A directory moved into a fresh tree from outside may have its names home already, so the
# skip (_dirsettle.Fresh) also requires every directory removed to be born (statx btime)
# strictly after the top. Birth times come from the kernel's coarse clock (one tick: 4 ms at
# HZ=250): a directory made, filled and synced home in the very tick the top is born in has
# the top's birth time to the nanosecond. Each round waits for a fresh tick, makes such a
# directory, syncs it (its names are home), makes the tree, moves the directory in and
# cleans up; the rounds where both birth times are equal are the attack (review6 found it
# admitted, born <= btime, and the names left in the freed block; fixed by tree6).


def _btime(path: str) -> float:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _, _, born = _linux.birth_ident(fd)
    finally:
        os.close(fd)
    assert born is not None, "no birth time on this ext4 (128-byte inodes?)"
    return born


def _next_tick() -> None:
    """Return right after the coarse realtime clock (the one birth times use) ticks."""
    coarse = 5  # CLOCK_REALTIME_COARSE
    t = time.clock_gettime_ns(coarse)
    while time.clock_gettime_ns(coarse) == t:
        pass


@pytest.mark.parametrize(
    "apart", [False, True], ids=["same-tick-as-the-top", "control-a-tick-apart"]
)
def test_ext4_a_synced_directory_moved_into_a_fresh_tree_makes_its_cleanup_sync(
    loopfs: Callable[..., Any], apart: bool
) -> None:
    # barrier=0: no cache flush per commit, which the loop device would turn into an fsync
    # of the image on the host's disk (slow: the round would no longer fit in one tick).
    fs = loopfs("ext4", options="commit=300,barrier=0", size_mb=64)
    if _dirsettle.disk_stamp(os.stat(fs.mountpoint).st_dev) is None:
        pytest.skip("this kernel does not count the loop device's writes")
    libc = ctypes.CDLL(None, use_errno=True)
    moved: list[str] = []  # the tag of the round that staged the attack
    skipped = False
    for _ in range(100):  # until one round is staged (then stop: a later round would reuse
        tag = "TAG" + secrets.token_hex(6)  # the freed block and hide what stayed)
        old = os.path.join(fs.mountpoint, f"old-{tag}")
        _next_tick()
        os.mkdir(old)
        for i in range(3):
            os.close(os.open(os.path.join(old, f"p-{tag}-{i}"), os.O_CREAT | os.O_WRONLY, 0o600))
        dfd = os.open(old, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            libc.syncfs(dfd)  # committed and written home: its names are on the disk
        finally:
            os.close(dfd)
        if apart:
            _next_tick()  # born a tick before the tree: the defence must see it
        before = _dirsettle.counts["skipped"]
        with hardtemp.TemporaryDirectory(dir=str(fs.mountpoint)) as d:
            same = _btime(old) >= _btime(d)
            os.rename(old, os.path.join(d, "moved"))  # the disk's write count does not change
        if same != apart:
            moved.append(tag)
            skipped = _dirsettle.counts["skipped"] > before
            break
    if not moved:
        pytest.skip("no round fitted in one clock tick here: the case was not staged")
    gc.collect()
    _dirtrust.clear_cache()
    fs.unmount()
    size, blocks = _journal_blocks(str(fs.image))
    journal = set(blocks)
    data = fs.image.read_bytes()
    outside = sorted(
        {t for t in moved for p in _find_all(data, t.encode()) if p // size not in journal}
    )
    assert not outside, f"the moved-in directory's names stayed (sync skipped: {skipped})"
    assert not skipped, "the tree holding a directory older than its stamp skipped its sync"


@pytest.mark.parametrize("who", ["another-process", "inside-the-tree"])
def test_ext4_fast_commits_are_counted_and_a_tree_they_logged_is_synced(
    loopfs: Callable[..., Any], who: str
) -> None:
    # ext4 fast commits (mkfs -O fast_commit) log an fsync'ed inode's changes (directory
    # entries' names included) in a small area at the journal's end without a full jbd2
    # commit: they must move the write count too (checked first, on a real fast commit).
    # During the tree's life an fsync may be a fast or (the tree's sweep mark is an xattr,
    # which makes a transaction fast-commit ineligible) a full commit: either way the
    # cleanup must sync and leave no name outside the journal.
    fs = loopfs("ext4", options="commit=300", size_mb=64)
    fs.unmount()
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-O", "fast_commit", "-E", "lazy_itable_init=0", str(fs.image)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    fs.mount()
    dev = os.stat(fs.mountpoint).st_dev
    if _dirsettle.disk_stamp(dev) is None:
        pytest.skip("this kernel does not count the loop device's writes")
    other = os.path.join(fs.mountpoint, "other")
    with open(other, "wb") as f:
        f.write(b"o")
        os.fsync(f.fileno())
    subprocess.run(["sync", "-f", str(fs.mountpoint)], check=True)  # a transaction boundary
    for _ in range(3):  # the first fsync after the full commit may be ineligible: a full one
        before, fast = _dirsettle._sectors_written(dev), _fast_commits(dev)
        with open(other, "ab") as f:
            f.write(b"x")
            os.fsync(f.fileno())
        if _fast_commits(dev) > fast:
            break
    else:
        pytest.fail("no fast commit happened: the case proves nothing")
    assert _dirsettle._sectors_written(dev) != before, "a fast commit was not counted"
    tag = "TAG" + secrets.token_hex(6)
    synced = _dirsettle.counts["synced"]
    with hardtemp.TemporaryDirectory(dir=str(fs.mountpoint), prefix=f"job-{tag}-") as d:
        sub = os.path.join(d, f"sub-{tag}")
        os.mkdir(sub)
        for i in range(10):
            os.close(os.open(os.path.join(sub, f"p-{tag}-{i}"), os.O_CREAT | os.O_WRONLY, 0o600))
        before = _dirsettle._sectors_written(dev)
        target = other if who == "another-process" else os.path.join(sub, f"p-{tag}-0")
        with open(target, "ab") as f:
            f.write(b"x")
            os.fsync(f.fileno())  # a fast commit, not a full one
        assert _dirsettle._sectors_written(dev) != before, "the commit was not counted"
    assert _dirsettle.counts["synced"] > synced  # so the cleanup synced
    gc.collect()
    _dirtrust.clear_cache()
    fs.unmount()
    size, blocks = _journal_blocks(str(fs.image))
    journal = set(blocks)
    data = fs.image.read_bytes()
    outside = [p for p in _find_all(data, tag.encode()) if p // size not in journal]
    assert not outside, f"{len(outside)} copies of the names outside the journal"


def _fast_commits(dev: int) -> int:
    """Fast commits made so far on the ext4 of device ``dev`` (its ``fc_info``)."""
    name = os.path.basename(os.readlink(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}"))
    with open(f"/proc/fs/ext4/{name}/fc_info") as f:
        lines = f.read().splitlines()
    return int(next(ln for ln in lines if ln.endswith(" commits")).split()[0])
