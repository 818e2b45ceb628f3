"""Shared test machinery: a real second local user, and real filesystems.

* ``as_other_user(fn, *args)`` forks a child that drops to uid/gid 65534
  ("nobody") and runs ``fn`` there. The child can only use modules that were
  imported before the fork (the interpreter lives under /root, which nobody
  cannot enter), so attack functions use ``os`` and friends only.
* ``loopfs`` mounts a small real ext4 / btrfs image on a loop device;
  ``image_contains`` then searches the raw image bytes for a marker.
* ``small_tmpfs`` mounts a size-limited tmpfs, for real ENOSPC.

Everything that needs root skips with a reason when not root, through the gates
of ``_gates`` (which also make such skips failures under ``HARDTEMP_REQUIRE_ALL=1``).
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import shutil
import subprocess
import tempfile as std_tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from _gates import pytest_configure as pytest_configure
from _gates import pytest_runtest_makereport as pytest_runtest_makereport
from _gates import pytest_terminal_summary as pytest_terminal_summary
from _gates import require_loop, require_root, skip
from _helpers_core import AUDITED_SYSCTLS, NOBODY, sysctls_held
from _helpers_core import marker as marker
from hardtemp import _dirtrust

# The sweep key that authenticates marks (hardtemp._markkey) lives in the state
# directory: the test run gets its own, never the real user's (subprocesses inherit it).
# Removed when the run ends, by the process that made it (never by a forked child).
_STATE_HOME = std_tempfile.mkdtemp(prefix="ht-state-")
_STATE_OWNER = os.getpid()
os.environ["XDG_STATE_HOME"] = _STATE_HOME


def pytest_unconfigure(config: pytest.Config) -> None:
    if os.getpid() == _STATE_OWNER:
        shutil.rmtree(_STATE_HOME, ignore_errors=True)


@pytest.fixture
def dfd(tmp_path: Path) -> Iterator[int]:
    """A descriptor of ``tmp_path`` (``O_DIRECTORY``), closed after the test."""
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield fd
    finally:
        os.close(fd)


class OtherUserError(Exception):
    """An exception raised inside the other user's process, re-raised here."""

    def __init__(self, kind: str, message: str, tb: str) -> None:
        super().__init__(f"{kind}: {message}\n--- in the other user's process ---\n{tb}")
        self.kind = kind
        self.message = message


def as_other_user(fn: Callable[..., Any], *args: Any, uid: int = NOBODY, gid: int = NOBODY) -> Any:
    """Run ``fn(*args)`` in a forked child running as ``uid``/``gid``.

    Returns what ``fn`` returned (it must pickle); an exception in the child
    is re-raised here as :class:`OtherUserError` whose ``kind`` is the
    exception's class name (e.g. ``"PermissionError"``).
    """
    require_root("to become another user")
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, whose coverage is not saved
        status = 0
        try:
            os.close(rfd)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            try:
                payload = ("ok", fn(*args))
            except BaseException as exc:
                payload = ("err", (type(exc).__name__, str(exc), traceback.format_exc()))
            data = pickle.dumps(payload)
            with os.fdopen(wfd, "wb") as out:
                out.write(data)
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as inp:
        data = inp.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the other user's process failed to report"
    kind, value = pickle.loads(data)  # noqa: S301 - our own child's data
    if kind == "err":
        raise OtherUserError(*value)
    return value


@pytest.fixture
def steady_sysctls() -> Iterator[None]:
    """The audited sysctls cannot change during the test: another run's ``sysctl_set``
    (CI's stages run side by side) waits until it ends (``sysctls_held``, shared)."""
    with sysctls_held(*AUDITED_SYSCTLS):
        yield


@pytest.fixture
def other_user() -> Callable[..., Any]:
    """The :func:`as_other_user` runner (skips when not root)."""
    require_root("to become another user")
    return as_other_user


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A fresh sticky, world-writable directory owned by root: a private /tmp.

    Both we and the other user can create entries there, exactly as in /tmp.
    """
    base = Path(std_tempfile.mkdtemp(prefix="ht-shared-"))
    os.chmod(base, 0o1777)
    try:
        yield base
    finally:
        remove_test_tree(base)


def remove_test_tree(base: Path) -> None:
    """Remove a test's own tree, also its mode-000 directories (tests make them to be
    unsearchable): an ordinary user's rmtree cannot list them, and left every such
    shared_dir in /tmp (two per CI run)."""
    for top, dirs, _ in os.walk(base):  # top-down: each directory is opened after its chmod
        for name in dirs:
            path = os.path.join(top, name)
            if not os.path.islink(path):  # (os.walk lists a symlink to a directory too)
                with contextlib.suppress(OSError):  # another user's, in a root run: root can
                    os.chmod(path, 0o700)
    shutil.rmtree(base, ignore_errors=True)


@dataclass
class LoopFS:
    """A real filesystem on a loop-mounted image file."""

    fstype: str
    image: Path
    mountpoint: Path
    options: str
    mounted: bool = field(default=False)

    def mount(self) -> None:
        cmd = ["mount", "-o", f"loop,{self.options}" if self.options else "loop"]
        subprocess.run([*cmd, str(self.image), str(self.mountpoint)], check=True)
        self.mounted = True

    def unmount(self, *, wait: bool = True) -> None:
        """Unmount; ``wait``: until the superblock is gone too (a later mount is a new one)."""
        if self.mounted:
            subprocess.run(["sync"], check=False)
            subprocess.run(["umount", str(self.mountpoint)], check=True)
            self.mounted = False
            if wait:
                self._wait_superblock_gone()

    def _wait_superblock_gone(self, timeout: float = 60.0) -> None:
        """Wait until no loop device holds the image: its superblock is then gone.

        A mount namespace made elsewhere while the image was mounted (another run's
        ``unshare -m``, CI's lanes side by side) keeps a private copy of the mount, hence the
        superblock and its loop device, after our umount; mount(8) then reuses that loop
        device and the kernel that superblock, ignoring new options: a "remount" with
        data=journal would still be the old data=ordered filesystem."""
        deadline = time.monotonic() + timeout
        while True:
            done = subprocess.run(
                ["losetup", "-j", str(self.image)], capture_output=True, text=True, check=False
            )
            held = done.stdout.strip() or done.stderr.strip()
            if not done.returncode and not held:
                return  # a losetup that failed tells nothing: asked again
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.image} is still on a loop device {timeout:.0f} s after umount "
                    f"(a mount namespace elsewhere holds its filesystem): {held}"
                )
            time.sleep(0.05)

    def image_contains(self, needle: bytes) -> bool:
        """Unmount (flushing everything) and search the raw image for ``needle``."""
        self.unmount()
        data = self.image.read_bytes()
        return needle in data


XFS_MIN_MB = 300  # mkfs.xfs refuses smaller filesystems (xfsprogs 5.19 and later)


def _mkfs(fstype: str, image: Path, extra: tuple[str, ...] = ()) -> None:
    if fstype == "ext4":
        cmd = ["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"]
    elif fstype == "btrfs":
        cmd = ["mkfs.btrfs", "-q", "-f"]
    elif fstype == "xfs":
        cmd = ["mkfs.xfs", "-q", "-f"]  # an image of at least XFS_MIN_MB
    else:  # pragma: no cover - test-suite misuse
        raise ValueError(fstype)
    require_loop(fstype)
    subprocess.run([*cmd, *extra, str(image)], check=True, stdout=subprocess.DEVNULL)


@pytest.fixture
def loopfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., LoopFS]]:
    """Factory: ``loopfs("ext4" | "btrfs" | "xfs", options="data=journal")`` -> mounted LoopFS.

    ``size_mb``: the image's size (sparse); xfs images are at least :data:`XFS_MIN_MB`.

    ``mkfs_args``: more options for mkfs (``("-I", "128")``), so that an image of another
    format is made before its first mount: formatting an image again after an unmount races
    with any mount namespace made elsewhere meanwhile, which keeps the old superblock, and
    mount(8) then reuses its loop device and the kernel that superblock over the new format
    (mkdir failed with EBADMSG, the block bitmaps' checksums those of the new format)."""
    require_root("to loop-mount filesystem images")
    made: list[LoopFS] = []

    def make(
        fstype: str, options: str = "", size_mb: int = 160, mkfs_args: tuple[str, ...] = ()
    ) -> LoopFS:
        if fstype == "xfs":
            size_mb = max(size_mb, XFS_MIN_MB)
        work = tmp_path_factory.mktemp(f"loop-{fstype}")
        image = work / "fs.img"
        with open(image, "wb") as f:
            f.truncate(size_mb * 1024 * 1024)
        _mkfs(fstype, image, mkfs_args)
        mnt = work / "mnt"
        mnt.mkdir()
        fs = LoopFS(fstype, image, mnt, options)
        try:
            fs.mount()
        except subprocess.CalledProcessError as exc:
            skip(f"cannot loop-mount {fstype} here: {exc}")
        os.chmod(mnt, 0o755)
        made.append(fs)
        return fs

    yield make
    # The trust cache keeps verified directory descriptors open: drop them so the
    # mounts are not busy; a mount still busy is detached lazily rather than leaked.
    gc.collect()
    _dirtrust.clear_cache()
    gc.collect()
    for fs in made:
        try:
            fs.unmount(wait=False)  # nothing mounts it again
        except subprocess.CalledProcessError:
            subprocess.run(["umount", "-l", str(fs.mountpoint)], check=False)
            fs.mounted = False


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """Factory: ``small_tmpfs(size_kib)`` -> a mounted size-limited tmpfs (real ENOSPC)."""
    require_root("to mount a tmpfs")
    mounted: list[Path] = []

    def make(size_kib: int) -> Path:
        mnt = tmp_path / f"tmpfs{len(mounted)}"
        mnt.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(mnt)],
            check=True,
        )
        mounted.append(mnt)
        return mnt

    yield make
    for mnt in mounted:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def strict_wipe_warnings() -> Iterator[None]:
    """Fresh filesystem facts, and every ``WipeUnreliableWarning`` an error (a test that
    expects one records it itself): the forensic suites' wipes must say nothing is wrong."""
    from hardtemp import _fsinfo
    from hardtemp.exceptions import WipeUnreliableWarning

    _fsinfo.clear_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("error", WipeUnreliableWarning)
        yield
