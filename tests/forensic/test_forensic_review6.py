"""Adversarial review of issue 13's cuts (review6): the claims attacked on real images.

The filesystem classification cache (``_fsinfo``: ``_mnt_cache`` by mount id and
``st_dev``, ``_dev_cache`` by ``st_dev`` alone) is trusted only while the mount table
watch (``/proc/self/mountinfo`` polled for ``POLLPRI``) reports no change. Mount ids
and anonymous device numbers are both handed out lowest-free by the kernel, so after an
``umount`` of a tmpfs the next overlayfs mounted there gets the very same pair (checked
here on every run). Each case below lets a long-lived process classify a tmpfs, swaps it
for an overlayfs whose upper layer is a loop-mounted ext4, and then closes a
``NamedTemporaryFile`` and a ``TemporaryFile(encrypt=False)`` whose data was synced to
that ext4: the raw image must not keep the marker afterwards. A stale "volatile"
verdict skips the overwrite's sync (and the warning), and the unlink drops the unsynced
overwrite: the marker stays in the freed blocks.

Everything runs in a private mount namespace (``unshare -m``), which takes its mounts
(and the autoclear loop device) with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hardtemp
from _gates import require_loop, require_unshare

pytestmark = pytest.mark.forensic

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


def run(*cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def ident(path):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return [os.fstat(fd).st_dev, _linux.mount_id(fd)]
    finally:
        os.close(fd)


with open(img, "wb") as f:
    f.truncate(32 << 20)
run("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", img)
hardtemp.TemporaryFile(dir=work, encrypt=False).close()  # the watch is open (namespace A)
if case == "unshare":
    os.unshare(os.CLONE_NEWNS)  # the service sandboxes itself (namespace B, private)
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
for kind in ("named", "unnamed"):
    m = f"HARDTEMP-REVIEW6-{kind}-".encode() + os.urandom(12).hex().encode()
    if kind == "named":
        f = hardtemp.NamedTemporaryFile(dir=mnt)
    else:
        f = hardtemp.TemporaryFile(dir=mnt, encrypt=False)
    f.write(m * 64)
    f.flush()
    os.fsync(f.fileno())  # the caller made its data durable: it is on the ext4 now
    with open(img, "rb") as fh:
        before = m in fh.read()
    f.close()
    results[kind] = m.decode(), before
run("umount", mnt)
run("umount", ext)
with open(img, "rb") as fh:
    data = fh.read()
out = {k: [before, m.encode() in data] for k, (m, before) in results.items()}
print(json.dumps({"tmpfs": tmpfs, "overlay": overlay, "closes": out}))
"""


def _run(tmp_path: Path, case: str) -> dict[str, object]:
    require_unshare()
    require_loop("ext4")
    if not Path("/sys/module/overlay").exists():
        subprocess.run(["modprobe", "overlay"], check=False, capture_output=True)
    src = str(Path(hardtemp.__file__).resolve().parents[1])
    out = subprocess.run(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            sys.executable,
            "-c",
            _SCRIPT,
            str(tmp_path),
            case,
        ],
        env=dict(os.environ, PYTHONPATH=src),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if out.returncode != 0 and "overlay" in out.stderr and "unknown filesystem" in out.stderr:
        pytest.skip("this kernel has no overlayfs")
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout.splitlines()[-1])
    return result


def _check(result: dict[str, object]) -> None:
    if result["tmpfs"] != result["overlay"]:
        pytest.skip(f"the overlay did not reuse the tmpfs's st_dev and mount id: {result}")
    closes = result["closes"]
    assert isinstance(closes, dict)
    for kind, (before, after) in closes.items():
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
        pytest.param("fork-look", marks=pytest.mark.xfail(strict=True, reason=_STALE)),
        "fork-quiet",
    ],
    ids=["raw-forked-child-looks", "control-raw-forked-child-quiet"],
)
def test_a_raw_forked_child_s_look_does_not_hide_a_mount_change_from_its_parent(
    tmp_path: Path, case: str
) -> None:
    _check(_run(tmp_path, case))


_UNSHARED = (
    "review6 break: the mount-table watch keeps polling the mount namespace the process "
    "had when it first classified a filesystem; after the process's own "
    "unshare(CLONE_NEWNS) (or setns) the mounts and umounts of its new namespace never "
    "reach that poll, so a tmpfs classified there and replaced by an overlay (ext4 upper) "
    "with the same st_dev and mount id is still taken as volatile: the marker stays"
)


@pytest.mark.parametrize(
    "case",
    [pytest.param("unshare", marks=pytest.mark.xfail(strict=True, reason=_UNSHARED)), "stay"],
    ids=["process-unshared-its-mount-namespace", "control-same-namespace"],
)
def test_a_mount_change_after_the_process_changed_its_mount_namespace_is_seen(
    tmp_path: Path, case: str
) -> None:
    _check(_run(tmp_path, case))
