"""No plaintext of an encrypted temp file ever reaches a real filesystem.

A unique marker is written through EncryptedRawIO / open_encrypted onto an
unnamed O_TMPFILE file on loop-mounted ext4 and btrfs, fsync'ed, closed, the
filesystem unmounted, and the raw image searched. The controls do the same with
plain os.write and find the marker, so the search can fail. The one-line switch
(``hardtemp.compat.TemporaryFile``) is checked the hard way: the writing process
is SIGKILLed after a ``sync``, against the standard module as the control. Mounted with
``nodiscard`` so that freed blocks keep what was written to them (btrfs would
otherwise discard them asynchronously and hide a leak).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from _helpers_core import SRC
from conftest import LoopFS, marker
from hardtemp._crypt import EncryptedRawIO, open_encrypted

pytestmark = pytest.mark.forensic

FSTYPES = ["ext4", "btrfs", "xfs"]


def _tmpfile(fs: LoopFS) -> int:
    return os.open(fs.mountpoint, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)


def _keep(fs: LoopFS, fd: int, name: str) -> None:
    """Give the unnamed file a name so its blocks stay allocated in the image."""
    dfd = os.open(fs.mountpoint, os.O_DIRECTORY | os.O_RDONLY)
    try:  # with dst_dir_fd, os.link uses linkat(AT_SYMLINK_FOLLOW) on the magic link
        os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dfd, follow_symlinks=True)
    finally:
        os.close(dfd)
    assert os.fstat(fd).st_nlink == 1


def _write_everything(f: Any, m: bytes, text: bool) -> None:
    """Small writes, a large multi-block write, a partial overwrite, a hole,
    truncation down and up: every code path that seals blocks."""
    data: Any = m.decode() if text else m
    for _ in range(50):
        f.write(data)
    f.write(data * 3000)  # ~250 KiB in one call
    f.seek(7)
    f.write(data)  # read-modify-write of the first blocks
    f.seek(0, os.SEEK_END)
    end = f.tell()
    if not text:
        f.seek(end + 100_000)  # leave a sparse hole, then write past it
        f.write(m)
        f.truncate(end + 50)
        f.truncate(end + 70_000)
    f.flush()


@pytest.mark.parametrize("fstype", FSTYPES)
@pytest.mark.parametrize("mode", ["raw", "w+b", "w+"])
@pytest.mark.parametrize("linked", [False, True], ids=["unlinked", "linked"])
def test_marker_never_reaches_the_image_through_an_encrypted_file(
    loopfs: Callable[..., LoopFS], fstype: str, mode: str, linked: bool
) -> None:
    fs = loopfs(fstype, options="nodiscard")
    m = marker()
    fd = _tmpfile(fs)
    if mode == "raw":
        f: Any = EncryptedRawIO(fd, block_size=16384)
    else:
        f = open_encrypted(fd, mode, encoding="ascii" if "b" not in mode else None)
    _write_everything(f, m, text="b" not in mode and mode != "raw")
    os.fsync(fd)  # the ciphertext is on disk now
    if linked:
        _keep(fs, fd, "kept.bin")
    f.close()
    assert not fs.image_contains(m)


@pytest.mark.parametrize("fstype", FSTYPES)
@pytest.mark.parametrize("linked", [False, True], ids=["unlinked", "linked"])
def test_control_plain_write_leaves_the_marker_in_the_image(
    loopfs: Callable[..., LoopFS], fstype: str, linked: bool
) -> None:
    fs = loopfs(fstype, options="nodiscard")
    m = marker()
    fd = _tmpfile(fs)
    for _ in range(50):
        os.write(fd, m)
    os.write(fd, m * 3000)
    os.fsync(fd)
    if linked:
        _keep(fs, fd, "kept.bin")
    os.close(fd)
    assert fs.image_contains(m)


_KILLED_WRITER = """
import os, sys, time
if sys.argv[1] == "compat":
    import hardtemp.compat as tempfile
else:
    import tempfile
m = bytes.fromhex(sys.argv[3])
f = tempfile.TemporaryFile(dir=sys.argv[2])
for _ in range(200):
    f.write(m)
f.write(m * 3000)
f.flush()
os.sync()  # everything written is on the disk now
print("ready", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("module", ["compat", "stdlib"])
def test_sigkilled_compat_temporary_file_leaves_no_marker_and_the_stdlib_control_does(
    loopfs: Callable[..., LoopFS], module: str
) -> None:
    fs = loopfs("ext4", options="nodiscard")
    m = marker()
    env = dict(os.environ, PYTHONPATH=SRC)
    args = [sys.executable, "-c", _KILLED_WRITER, module, str(fs.mountpoint), m.hex()]
    with subprocess.Popen(args, stdout=subprocess.PIPE, env=env) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGKILL)  # no close, no finalizer, no cleanup of any kind
        proc.wait()
    assert fs.image_contains(m) is (module == "stdlib")
