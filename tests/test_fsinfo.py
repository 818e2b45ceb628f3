"""_fsinfo: the filesystem of an open descriptor, and whether an overwrite lands in place.

Every classification is checked on a real mount (loop images, tmpfs, overlayfs).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import struct
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import pytest

from _gates import require_loop, require_mkfs, require_root, require_unshare, skip
from _helpers_core import (
    MOUNT_ID_KINDS,
    delalloc_extents,
    run_python,
    run_with_mount_ids,
    unique_mount_ids,
)
from _helpers_euid import NOBODY, as_euid
from hardtemp import _fsinfo
from hardtemp._codes import FsReason, Reason
from hardtemp._fsinfo import (
    BEST_EFFORT,
    IN_PLACE,
    NOT_IN_PLACE,
    VOLATILE,
    FsInfo,
    file_info_for_fd,
    fs_info_for_fd,
    fs_info_for_path,
    set_nocow,
)


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    # Loop devices and mount ids are reused between tests: start each one clean.
    _fsinfo.clear_cache()
    yield
    _fsinfo.clear_cache()


def _new_file(directory: Path, name: str = "f") -> int:
    return os.open(directory / name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)


_CLONE_NEWNS = 0x00020000
_MS_REC, _MS_PRIVATE = 0x4000, 0x40000


def _in_own_mount_namespace(fn: Callable[[], None]) -> None:
    """Run ``fn`` in a forked child with a mount namespace of its own, of private propagation.

    The caches are cleared by any mount or umount in the process's mount namespace, whoever
    made it: in the initial namespace another process's (CI's other lane loop-mounts an image
    or a tmpfs) lands between two looks and makes a "nothing asked again" check fail (seen:
    14 of 2,000 windows with a tmpfs mounted and unmounted every 10 ms elsewhere). In a
    namespace of its own the only changes are the test's. ``fn`` opens its files there (the
    copies of the mounts are other mounts, with other ids); an exception it raises fails the
    test with its traceback."""
    require_root("for a private mount namespace (unshare)")
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is saved by coverage's fork patch
        report = ""
        try:
            os.close(rfd)
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(_CLONE_NEWNS) or libc.mount(
                None, b"/", None, _MS_REC | _MS_PRIVATE, None
            ):
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) / mount --make-rprivate /")
            _fsinfo.clear_cache()
            fn()
        except BaseException:
            report = traceback.format_exc() or "failed"
        finally:
            with contextlib.suppress(BaseException):
                os.write(wfd, report.encode())
            os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as inp:
        report = inp.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    if report:
        pytest.fail(f"in the private mount namespace:\n{report}", pytrace=False)


def _count_calls(monkeypatch: pytest.MonkeyPatch, name: str) -> list[Any]:
    """The first argument of every call of ``_fsinfo.<name>`` from now on (each call still
    made): what a cache is asked again."""
    calls: list[Any] = []
    real = getattr(_fsinfo, name)

    def counting(*args: Any) -> Any:
        calls.append(args[0])
        return real(*args)

    monkeypatch.setattr(_fsinfo, name, counting)
    return calls


def test_ext4_data_ordered_is_in_place(loopfs: Callable[..., Any]) -> None:
    fs = loopfs("ext4")
    info = fs_info_for_path(fs.mountpoint)
    assert info.fstype == "ext4"
    assert info.verdict == IN_PLACE
    assert info.mountpoint == str(fs.mountpoint)
    assert info.source.startswith("/dev/loop")
    assert info.codes[0] == FsReason.DATA_ORDERED
    # The device under it is described too (here a loop device backed by the image file).
    (loop,) = [r for r in info.reasons if r.code == FsReason.LOOP_DEVICE]
    assert str(fs.image) in loop


def test_ext4_data_journal_is_not_in_place(loopfs: Callable[..., Any]) -> None:
    fs = loopfs("ext4", options="data=journal")
    info = fs_info_for_path(fs.mountpoint)
    assert info.verdict == NOT_IN_PLACE
    assert info.codes[0] == FsReason.DATA_JOURNAL


_CAP_SYS_RESOURCE = 24


def _has_effective_capability(cap: int) -> bool:
    with open("/proc/self/status", encoding="ascii") as f:
        (line,) = [x for x in f if x.startswith("CapEff:")]
    return bool(int(line.split()[1], 16) >> cap & 1)


def test_ext4_journal_data_file_flag_is_not_in_place(loopfs: Callable[..., Any]) -> None:
    # The flag is written into the unmounted image's inode with debugfs (e2fsprogs), as
    # chattr +j would leave it: the kernel lets only CAP_SYS_RESOURCE set it, which a root
    # in a container often lacks; the file read back after the mount has it all the same.
    fs = loopfs("ext4")
    before = {}
    for name in ("f", "g"):
        fd = _new_file(fs.mountpoint, name)
        try:
            assert file_info_for_fd(fd).verdict == IN_PLACE
            before[name] = _fsinfo.get_file_flags(fd)
        finally:
            os.close(fd)
    flags = before["f"]
    assert flags is not None
    assert not flags & _fsinfo.FS_JOURNAL_DATA_FL
    _fsinfo.clear_cache()
    fs.unmount()  # and its superblock gone: the mount below reads the inode from the image
    set_flag = f"set_inode_field /f flags {flags | _fsinfo.FS_JOURNAL_DATA_FL:#x}"
    subprocess.run(
        ["debugfs", "-w", "-R", set_flag, str(fs.image)], check=True, capture_output=True
    )
    fs.mount()
    fd = os.open(fs.mountpoint / "f", os.O_RDWR | os.O_CLOEXEC)
    gfd = os.open(fs.mountpoint / "g", os.O_RDWR | os.O_CLOEXEC)
    try:
        assert _fsinfo.get_file_flags(fd) == flags | _fsinfo.FS_JOURNAL_DATA_FL  # the premise
        info = file_info_for_fd(fd)
        assert info.verdict == NOT_IN_PLACE
        assert info.codes[0] == FsReason.JOURNAL_DATA_FLAG
        assert file_info_for_fd(gfd).verdict == IN_PLACE  # the flag is the file's own
    finally:
        os.close(fd)
        os.close(gfd)


def test_ext4_journal_data_flag_set_on_an_open_file_is_seen(loopfs: Callable[..., Any]) -> None:
    if not _has_effective_capability(_CAP_SYS_RESOURCE):
        # The machine's configuration, not a missing tool: a plain skip. The case without the
        # live change (the flag set in the image) runs anyway, just above.
        pytest.skip(
            "ext4 lets only CAP_SYS_RESOURCE change a file's journal-data flag (chattr +j: "
            "EPERM without it), and this process lacks it (not in its effective set)"
        )
    fs = loopfs("ext4")
    fd = _new_file(fs.mountpoint)
    try:
        assert file_info_for_fd(fd).verdict == IN_PLACE
        subprocess.run(["chattr", "+j", str(fs.mountpoint / "f")], check=True)
        info = file_info_for_fd(fd)
        assert info.verdict == NOT_IN_PLACE
        assert info.codes[0] == FsReason.JOURNAL_DATA_FLAG
    finally:
        os.close(fd)


def test_btrfs_is_not_in_place(loopfs: Callable[..., Any]) -> None:
    fs = loopfs("btrfs")
    info = fs_info_for_path(fs.mountpoint)
    assert info.fstype == "btrfs"
    assert info.verdict == NOT_IN_PLACE
    assert info.codes[0] == FsReason.COPY_ON_WRITE


def test_btrfs_set_nocow_on_empty_file_makes_it_in_place(loopfs: Callable[..., Any]) -> None:
    fs = loopfs("btrfs")
    fd = _new_file(fs.mountpoint)
    try:
        assert file_info_for_fd(fd).verdict == NOT_IN_PLACE
        assert set_nocow(fd) is True
        os.write(fd, b"x" * 65536)
        info = file_info_for_fd(fd)
        assert info.verdict == IN_PLACE
        assert info.codes[0] == FsReason.NOCOW_IN_PLACE
        lsattr = subprocess.run(
            ["lsattr", str(fs.mountpoint / "f")], check=True, capture_output=True, text=True
        ).stdout
        assert "C" in lsattr.split()[0]
    finally:
        os.close(fd)


def test_set_nocow_refuses_a_non_empty_file(loopfs: Callable[..., Any]) -> None:
    fs = loopfs("btrfs")
    fd = _new_file(fs.mountpoint)
    try:
        os.write(fd, b"data")
        assert set_nocow(fd) is False
        assert file_info_for_fd(fd).verdict == NOT_IN_PLACE
    finally:
        os.close(fd)


def test_btrfs_nocow_file_sharing_extents_with_a_reflink_is_not_in_place(
    loopfs: Callable[..., Any],
) -> None:
    fs = loopfs("btrfs")
    fd = _new_file(fs.mountpoint)
    try:
        assert set_nocow(fd)
        os.write(fd, b"y" * 65536)
        os.fsync(fd)
        # A snapshot-like shared extent: a reflink copy forces the next write to be copied.
        clone = fs.mountpoint / "clone"
        cfd = _new_file(fs.mountpoint, "clone")
        os.close(cfd)
        set_nocow_ok = subprocess.run(["chattr", "+C", str(clone)], check=False).returncode == 0
        assert set_nocow_ok
        subprocess.run(["cp", "--reflink=always", str(fs.mountpoint / "f"), str(clone)], check=True)
        info = file_info_for_fd(fd)
        assert info.verdict == NOT_IN_PLACE
        assert info.codes[0] == FsReason.NOCOW_SHARED
    finally:
        os.close(fd)


def test_set_nocow_is_false_on_ext4(loopfs: Callable[..., Any]) -> None:
    fs = loopfs("ext4")
    fd = _new_file(fs.mountpoint)
    try:
        assert set_nocow(fd) is False
    finally:
        os.close(fd)


def test_tmpfs_without_swap_is_volatile(small_tmpfs: Callable[[int], Path]) -> None:
    import psutil

    mnt = small_tmpfs(1024)
    info = fs_info_for_path(mnt)
    assert info.fstype == "tmpfs"
    if psutil.swap_memory().total:
        assert info.verdict == BEST_EFFORT
        assert FsReason.SWAP_ACTIVE in info.codes
    else:
        assert info.verdict == VOLATILE
        assert FsReason.NO_SWAP in info.codes


def test_tmpfs_with_active_swap_is_only_best_effort(
    small_tmpfs: Callable[[int], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Enabling real swap on this machine is not ours to do: the swap total is the one input faked.
    mnt = small_tmpfs(1024)

    monkeypatch.setattr(_fsinfo, "_swap_bytes", lambda: 1 << 30)
    _fsinfo.clear_cache()
    info = fs_info_for_path(mnt)
    assert info.verdict == BEST_EFFORT
    (swap,) = [r for r in info.reasons if r.code == FsReason.SWAP_ACTIVE]
    assert "(1024 MiB)" in swap  # the size is data, shown in the sentence


def test_tmpfs_noswap_mount_stays_volatile_even_with_swap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_root("to mount a tmpfs")
    mnt = tmp_path / "ns"
    mnt.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "noswap,size=1m", "tmpfs", str(mnt)]
    ).returncode:
        pytest.skip("this kernel has no tmpfs noswap option (Linux >= 6.4)")
    try:
        monkeypatch.setattr(_fsinfo, "_swap_bytes", lambda: 1 << 30)
        info = fs_info_for_path(mnt)
        assert info.verdict == VOLATILE
        assert FsReason.NOSWAP_MOUNT in info.codes
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_overlayfs_is_not_in_place(tmp_path: Path) -> None:
    require_root("to mount overlayfs")
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    for d in (lower, upper, work, merged):
        d.mkdir()
    opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
    if subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)]).returncode:
        pytest.skip("cannot mount overlayfs here")
    try:
        info = fs_info_for_path(merged)
        assert info.fstype == "overlay"
        assert info.verdict == NOT_IN_PLACE
        assert info.codes[0] == FsReason.OVERLAY
    finally:
        subprocess.run(["umount", "-l", str(merged)], check=False)


def test_unknown_filesystem_is_best_effort_and_says_so() -> None:
    info = fs_info_for_path("/proc/self")
    assert info.fstype == "proc"
    assert info.verdict == BEST_EFFORT
    assert info.codes[0] == FsReason.UNKNOWN_FS


def test_fs_info_for_path_does_not_follow_a_final_symlink(
    loopfs: Callable[..., Any], small_tmpfs: Callable[[int], Path]
) -> None:
    fs = loopfs("ext4")
    mnt = small_tmpfs(1024)
    (mnt / "link").symlink_to(fs.mountpoint)
    assert fs_info_for_path(mnt / "link").fstype == "tmpfs"
    assert fs_info_for_path(fs.mountpoint).fstype == "ext4"


def test_fs_info_for_path_missing_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        fs_info_for_path(tmp_path / "missing")


def test_fs_info_by_superblock_is_the_filesystem_fs_info_for_fd_finds(tmp_path: Path) -> None:
    for where in (tmp_path, Path("/dev/shm"), Path("/proc")):
        if not where.is_dir():
            continue
        fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY)
        try:
            full = _fsinfo.fs_info_for_fd(fd)
            info = _fsinfo.fs_info_by_superblock(fd, os.fstat(fd).st_dev)
        finally:
            os.close(fd)
        assert (info.fstype, info.verdict, info.f_type) == (full.fstype, full.verdict, full.f_type)


def test_fs_info_for_fd_bad_descriptor_raises_oserror() -> None:
    fd = os.open("/", os.O_RDONLY)
    os.close(fd)
    with pytest.raises(OSError, match="Bad file descriptor"):
        fs_info_for_fd(fd)


def test_classification_is_cached_per_mount(
    loopfs: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = loopfs("ext4")

    def looks() -> None:  # no one else's mount clears the cache there
        first = fs_info_for_path(fs.mountpoint)
        calls = _count_calls(monkeypatch, "_mount_entry")
        for _ in range(50):
            assert fs_info_for_path(fs.mountpoint) == first
        assert calls == []  # mountinfo is not parsed again on the hot path

    _in_own_mount_namespace(looks)


def test_a_new_filesystem_on_a_reused_loop_device_is_not_served_from_the_cache(
    loopfs: Callable[..., Any],
) -> None:
    fs = loopfs("ext4")
    assert fs_info_for_path(fs.mountpoint).verdict == IN_PLACE
    fs.unmount()
    fs.options = "data=journal"
    fs.mount()  # same image, often the same loop device and mount id
    assert fs_info_for_path(fs.mountpoint).verdict == NOT_IN_PLACE


def test_fsinfo_is_a_frozen_dataclass() -> None:
    info = fs_info_for_path("/")
    assert isinstance(info, FsInfo)
    with pytest.raises(AttributeError):
        info.verdict = IN_PLACE  # type: ignore[misc]
    assert all(isinstance(r, Reason) and r and r.code in set(FsReason) for r in info.reasons)


def test_a_mountpoint_with_spaces_is_reported_unescaped(tmp_path: Path) -> None:
    # mountinfo escapes spaces as \040: the mount must still be found and named right.
    require_root("to mount a tmpfs")
    mnt = tmp_path / "with space\tand tab"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        info = fs_info_for_path(mnt)
        assert info.fstype == "tmpfs"
        assert info.mountpoint == str(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


# --- more real filesystems --------------------------------------------------------------------


@contextlib.contextmanager
def _image(tmp_path: Path, mkfs: list[str], fstype: str, size_mb: int = 16) -> Iterator[Path]:
    """A loop-mounted image made with ``mkfs`` (a list ending before the image path)."""
    require_root("to loop-mount images")
    require_mkfs(mkfs[0].removeprefix("mkfs."))
    image = tmp_path / "fs.img"
    with open(image, "wb") as f:
        f.truncate(size_mb << 20)
    subprocess.run([*mkfs, str(image)], check=True, capture_output=True)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", fstype, "-o", "loop", str(image), str(mnt)], capture_output=True, text=True
    )
    if done.returncode:
        skip(f"cannot loop-mount {fstype} here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_ext2_has_no_journal_and_is_in_place(tmp_path: Path) -> None:
    with _image(tmp_path, ["mkfs.ext2", "-q", "-F"], "ext2") as mnt:
        info = fs_info_for_path(mnt)
        fd = _new_file(mnt)
        try:
            finfo = file_info_for_fd(fd)
        finally:
            os.close(fd)
    assert info.fstype == "ext2"
    assert info.verdict == IN_PLACE
    assert info.codes[0] == FsReason.NO_JOURNAL
    assert finfo.verdict == IN_PLACE


def test_ext4_without_a_journal_is_in_place(tmp_path: Path) -> None:
    with _image(tmp_path, ["mkfs.ext4", "-q", "-F", "-O", "^has_journal"], "ext4") as mnt:
        info = fs_info_for_path(mnt)
    assert info.fstype == "ext4"
    assert info.verdict == IN_PLACE
    assert info.codes[0] == FsReason.NO_JOURNAL


def test_ext4_file_with_inline_data_is_not_in_place(tmp_path: Path) -> None:
    with _image(tmp_path, ["mkfs.ext4", "-q", "-F", "-O", "inline_data"], "ext4") as mnt:
        fd = _new_file(mnt)
        try:
            os.write(fd, b"tiny secret")
            os.fsync(fd)
            info = file_info_for_fd(fd)
        finally:
            os.close(fd)
        big = _new_file(mnt, "big")
        try:
            os.write(big, b"b" * 65536)  # too big for the inode: ordinary blocks
            os.fsync(big)
            big_info = file_info_for_fd(big)
        finally:
            os.close(big)
    assert info.verdict == NOT_IN_PLACE
    assert info.codes[0] == FsReason.INLINE_DATA
    assert big_info.verdict == IN_PLACE


def test_ramfs_is_volatile(tmp_path: Path) -> None:
    require_root("to mount ramfs")
    mnt = tmp_path / "ram"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "ramfs", "ramfs", str(mnt)], check=True)
    try:
        info = fs_info_for_path(mnt)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    assert info.fstype == "ramfs"
    assert info.verdict == VOLATILE
    assert info.codes[0] == FsReason.RAMFS


def _non_rotational_device() -> str | None:
    for name in sorted(os.listdir("/sys/block")):
        base = f"/sys/block/{name}"
        try:
            rot = Path(base, "queue", "rotational").read_text().strip()
        except OSError:
            continue
        if rot == "0" and not os.path.exists(f"{base}/loop") and os.path.exists(f"/dev/{name}"):
            return f"/dev/{name}"
    return None


def _virtual_disk() -> str | None:
    for name in sorted(os.listdir("/sys/block")):
        driver = os.path.basename(os.path.realpath(f"/sys/block/{name}/device/driver"))
        if driver == "virtio_blk" and os.path.exists(f"/dev/{name}"):
            return f"/dev/{name}"
    return None


@pytest.mark.parametrize("kind", ["missing", "char-device", "non-rotational", "virtio"])
def test_the_device_under_a_filesystem_is_described_truthfully(tmp_path: Path, kind: str) -> None:
    # proc accepts any source name: a real mount whose "device" is whatever we name.
    require_root("to mount proc")
    source = {"missing": "/dev/ht-no-such-device", "char-device": "/dev/null"}.get(kind)
    if kind == "non-rotational":
        source = _non_rotational_device()
        if source is None:
            pytest.skip("no non-rotational block device here")
    if kind == "virtio":
        source = _virtual_disk()
        if source is None:
            pytest.skip("no virtio disk here")
    assert source is not None
    mnt = tmp_path / "p"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "proc", source, str(mnt)], check=True)
    try:
        info = fs_info_for_path(mnt)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    assert info.source == source
    assert info.verdict == BEST_EFFORT
    device = info.reasons[-1]
    assert device.startswith(source)
    expected = {
        "missing": FsReason.DEVICE_UNINSPECTABLE,
        "char-device": FsReason.DEVICE_KIND_UNKNOWN,
        "non-rotational": FsReason.NON_ROTATIONAL,
        # Its rotational flag describes the emulated disk, never "a rotational (magnetic) device".
        "virtio": FsReason.VIRTUAL_DISK,
    }[kind]
    assert device.code == expected
    if kind == "virtio":
        assert "(virtio_blk)" in device
    assert "(magnetic) device" not in device


def test_ext4_with_an_unknown_journalling_mode_is_only_best_effort() -> None:
    # No data= option and no /proc/fs/ext4 entry for the device (as on a kernel without it).
    mount = _fsinfo._Mount(
        mnt_id=1,
        devno=(0, 0),
        mountpoint="/x",
        fstype="ext4",
        source="/dev/x",
        mount_options=("rw",),
        super_options=("rw",),
    )
    verdict, reasons = _fsinfo._classify(_fsinfo._EXT_MAGIC, mount)
    assert verdict == BEST_EFFORT
    assert reasons[0].code == FsReason.DATA_MODE_UNKNOWN


@pytest.mark.parametrize(
    ("magic", "verdict", "code"),
    [
        (0x58465342, IN_PLACE, FsReason.XFS),
        (0x2FC12FC1, NOT_IN_PLACE, FsReason.COPY_ON_WRITE),
        (0xF2F52010, NOT_IN_PLACE, FsReason.LOG_STRUCTURED),
        (0x6969, NOT_IN_PLACE, FsReason.REMOTE),
        (0x65735546, NOT_IN_PLACE, FsReason.REMOTE),
    ],
)
def test_filesystems_not_mountable_here_are_classified_by_magic(
    magic: int, verdict: str, code: FsReason
) -> None:
    # No xfs/zfs/f2fs/nfs/fuse here: the classification table itself, by f_type.
    got, reasons = _fsinfo._classify(magic, None)
    assert got == verdict
    assert reasons[0].code == code


# --- btrfs NOCOW details ----------------------------------------------------------------------


def test_btrfs_empty_nocow_file_is_in_place(loopfs: Callable[..., Any]) -> None:
    fs = loopfs("btrfs")
    fd = _new_file(fs.mountpoint)
    try:
        assert set_nocow(fd) is True
        assert set_nocow(fd) is True  # already set: still true, nothing changed
        info = file_info_for_fd(fd)
    finally:
        os.close(fd)
    assert info.verdict == IN_PLACE


_FICLONERANGE = (1 << 30) | (32 << 16) | (0x94 << 8) | 13  # _IOW(0x94, 13, file_clone_range)


def test_btrfs_nocow_file_with_many_extents_is_checked_to_its_end(
    loopfs: Callable[..., Any],
) -> None:
    # More extents than one FIEMAP batch: the extents after the first batch are read too.
    fs = loopfs("btrfs")
    fd = _new_file(fs.mountpoint)
    count = 3 * _fsinfo._FIEMAP_BATCH
    try:
        assert set_nocow(fd)
        for i in range(count):
            os.pwrite(fd, b"z" * 4096, i * 8192)  # a hole between every two extents
        os.fsync(fd)
        alone = file_info_for_fd(fd)
        # Share only the very last extent (a reflink of 4 KiB): a check that stopped
        # after the first batch would miss it.
        clone = _new_file(fs.mountpoint, "clone")
        try:
            assert set_nocow(clone)
            arg = struct.pack("=qQQQ", fd, (count - 1) * 8192, 4096, 0)
            fcntl.ioctl(clone, _FICLONERANGE, arg)
        finally:
            os.close(clone)
        _fsinfo.clear_cache()
        shared = file_info_for_fd(fd)
    finally:
        os.close(fd)
    assert alone.verdict == IN_PLACE
    assert shared.verdict == NOT_IN_PLACE
    assert shared.codes[0] == FsReason.NOCOW_SHARED


def test_btrfs_nocow_file_whose_extents_cannot_be_read_is_best_effort(
    loopfs: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_fiemap(fd: int) -> tuple[bool, bool]:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")  # btrfs has FIEMAP: injected

    fs = loopfs("btrfs")
    fd = _new_file(fs.mountpoint)
    try:
        assert set_nocow(fd)
        os.write(fd, b"x" * 65536)
        monkeypatch.setattr(_fsinfo, "_fiemap_flags", no_fiemap)
        info = file_info_for_fd(fd)
    finally:
        os.close(fd)
    assert info.verdict == BEST_EFFORT
    assert info.codes[0] == FsReason.NOCOW_UNCHECKED


def test_set_nocow_without_a_usable_descriptor_is_false(loopfs: Callable[..., Any]) -> None:
    fs = loopfs("btrfs")
    fd = _new_file(fs.mountpoint)
    os.close(fd)
    assert set_nocow(fd) is False  # closed
    pfd = os.open(fs.mountpoint / "f", os.O_PATH)  # fstat works, the flags ioctl does not
    try:
        assert set_nocow(pfd) is False
    finally:
        os.close(pfd)
    assert "C" not in _lsattr(fs.mountpoint / "f")


def test_set_nocow_on_another_users_file_is_false_and_changes_nothing(
    loopfs: Callable[..., Any],
) -> None:
    fs = loopfs("btrfs")
    os.close(_new_file(fs.mountpoint))
    os.chmod(fs.mountpoint / "f", 0o644)
    fd = os.open(fs.mountpoint / "f", os.O_RDONLY)
    try:
        with as_euid(NOBODY):  # only the owner may set inode flags
            assert set_nocow(fd) is False
    finally:
        os.close(fd)
    assert "C" not in _lsattr(fs.mountpoint / "f")


def _lsattr(path: Path) -> str:
    out = subprocess.run(["lsattr", str(path)], check=True, capture_output=True, text=True)
    return out.stdout.split()[0]


# --- descriptors that are not what they should be --------------------------------------------


def test_helpers_on_a_closed_or_unusual_descriptor_fail_softly_or_clearly() -> None:
    fd = os.open("/", os.O_RDONLY)
    os.close(fd)
    assert _fsinfo.is_btrfs(fd) is False
    assert _fsinfo._mnt_id(fd) == -1
    with pytest.raises(OSError) as info:
        _fsinfo._statfs(fd)
    assert info.value.errno == errno.EBADF
    r, w = os.pipe()
    try:
        assert _fsinfo.get_file_flags(r) is None  # a pipe has no inode flags
    finally:
        os.close(r)
        os.close(w)


# --- mountinfo parsing ------------------------------------------------------------------------

_MOUNTINFO = (
    "garbage without the separator\n"
    "1 2 8:1 / /short - ext4\n"  # too few fields on the right
    "3 2 8:1\n"
    "21 1 7:3 / /first rw - ext4 /dev/loop3 rw\n"
    "22 1 7:3 / /mnt/with\\040space rw,noatime - ext4 /dev/loop3 rw,data=ordered\n"
)


def _fake_mountinfo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str | None) -> None:
    fake = tmp_path / "mountinfo"
    if text is not None:
        fake.write_text(text)
    real_open = open

    def fake_open(path: Any, *args: Any, **kw: Any) -> Any:
        if path == "/proc/self/mountinfo":
            return real_open(fake, *args, **kw)
        return real_open(path, *args, **kw)

    monkeypatch.setattr(_fsinfo, "open", fake_open, raising=False)


def test_mountinfo_parsing_skips_malformed_lines_and_finds_the_mount_id(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_mountinfo(monkeypatch, tmp_path, _MOUNTINFO)
    dev = os.makedev(7, 3)
    found = _fsinfo._mount_entry(21, dev)
    assert found is not None
    assert (found.mountpoint, found.source, found.fstype) == ("/first", "/dev/loop3", "ext4")
    # Without a mount id (no fdinfo): the last, i.e. topmost, mount of the device.
    top = _fsinfo._mount_entry(-1, dev)
    assert top is not None
    assert top.mountpoint == "/mnt/with space"
    assert top.mount_options == ("rw", "noatime")
    assert top.super_options == ("rw", "data=ordered")
    # A mount id that is not listed: unknown, never another mount of the same device.
    assert _fsinfo._mount_entry(99, dev) is None
    assert _fsinfo._mount_entry(-1, os.makedev(9, 9)) is None


def test_an_unreadable_mountinfo_gives_no_mount_entry(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_mountinfo(monkeypatch, tmp_path, None)  # the file does not exist
    assert _fsinfo._mount_entry(-1, os.makedev(7, 3)) is None


def test_without_a_mount_watch_the_cache_is_never_trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.open

    def no_mountinfo(path: Any, *args: Any, **kw: Any) -> int:
        if path == "/proc/self/mountinfo":
            raise PermissionError(errno.EACCES, "Permission denied")  # e.g. a locked-down /proc
        return real(path, *args, **kw)

    watch = _fsinfo._MountWatch()
    monkeypatch.setattr(_fsinfo.os, "open", no_mountinfo)
    assert watch.changed() is True
    assert watch.poller is None
    assert watch.changed() is True  # still: every lookup re-reads the mount table
    assert watch.changed() is True


def test_the_cache_is_bounded(loopfs: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_fsinfo, "_CACHE_MAX", 1)
    fs = loopfs("ext4", size_mb=16)
    a = fs_info_for_path(fs.mountpoint)
    b = fs_info_for_path("/proc/self")
    assert len(_fsinfo._cache) == 1
    assert fs_info_for_path(fs.mountpoint) == a
    assert b.fstype == "proc"


def test_the_swap_total_is_what_psutil_reports() -> None:
    # Read from /proc/meminfo ourselves (psutil costs 46 ms to import on the close path).
    assert _fsinfo._swap_bytes() == psutil.swap_memory().total


def test_a_close_on_tmpfs_does_not_import_psutil(small_tmpfs: Callable[[int], Path]) -> None:
    code = (
        "import sys, hardtemp\n"
        "with hardtemp.TemporaryFile(dir=sys.argv[1], encrypt=False) as f:\n"
        "    f.write(b'x')\n"
        "print('psutil' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(small_tmpfs(1024))],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False", out.stderr


def test_a_meminfo_without_a_swap_line_is_an_oserror(monkeypatch: pytest.MonkeyPatch) -> None:
    # Faked: no kernel here lacks the line; the caller then calls the wipe best effort.
    real_open = os.open

    def open_comm(path: str, flags: int) -> int:  # a /proc file with no SwapTotal line
        return real_open("/proc/self/comm" if path == "/proc/meminfo" else path, flags)

    monkeypatch.setattr(os, "open", open_comm)
    with pytest.raises(OSError) as info:
        _fsinfo._swap_bytes()
    assert info.value.errno == errno.ENODATA


def test_the_swap_total_is_reused_for_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def swap() -> int:
        calls.append(1)
        return 0

    monkeypatch.setattr(_fsinfo, "_swap_bytes", swap)
    _fsinfo.clear_cache()
    for _ in range(5):
        assert _fsinfo._swap_total() == 0
    assert len(calls) == 1


def test_journal_data_flag_read_from_the_inode_makes_the_file_not_in_place(
    loopfs: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Setting +j needs CAP_SYS_RESOURCE, which this sandbox may lack (the real test above
    # then skips): here only the flags word read from a real ext4 inode gets the bit added.
    fs = loopfs("ext4", size_mb=16)
    fd = _new_file(fs.mountpoint)
    real = _fsinfo.get_file_flags

    def with_journal_flag(fd: int) -> int | None:
        flags = real(fd)
        assert flags is not None
        return flags | _fsinfo.FS_JOURNAL_DATA_FL

    try:
        assert file_info_for_fd(fd).verdict == IN_PLACE
        monkeypatch.setattr(_fsinfo, "get_file_flags", with_journal_flag)
        info = file_info_for_fd(fd)
    finally:
        os.close(fd)
    assert info.verdict == NOT_IN_PLACE
    assert info.codes[0] == FsReason.JOURNAL_DATA_FLAG


# --- the removal hot path: per-superblock cache, and whether data reached the disk ------------


def test_file_info_is_cached_per_superblock_without_reading_fdinfo(
    loopfs: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = loopfs("ext4", size_mb=16)

    def looks() -> None:  # no one else's mount clears the cache there
        fd = _new_file(fs.mountpoint)
        try:
            first = file_info_for_fd(fd)
            assert first.verdict == IN_PLACE
            calls = _count_calls(monkeypatch, "_mnt_id")
            for _ in range(20):
                assert file_info_for_fd(fd) is first
            assert calls == []  # neither /proc/self/fdinfo nor mountinfo on the hot path
        finally:
            os.close(fd)

    _in_own_mount_namespace(looks)


def test_file_info_of_a_remounted_filesystem_is_not_served_from_the_cache(
    loopfs: Callable[..., Any],
) -> None:
    fs = loopfs("ext4", size_mb=16)
    fd = _new_file(fs.mountpoint)
    try:
        assert file_info_for_fd(fd).verdict == IN_PLACE
    finally:
        os.close(fd)
    fs.unmount()
    fs.options = "data=journal"
    fs.mount()  # same image, same device number, often the same fsid
    fd = _new_file(fs.mountpoint, "g")
    try:
        assert file_info_for_fd(fd).verdict == NOT_IN_PLACE
    finally:
        os.close(fd)


def test_file_info_on_tmpfs_follows_swap_appearing(
    small_tmpfs: Callable[[int], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Enabling real swap on this machine is not ours to do: the swap total is the one input faked.
    total = [0]
    monkeypatch.setattr(_fsinfo, "_swap_bytes", lambda: total[0])
    fd = _new_file(small_tmpfs(1024))
    try:
        first = file_info_for_fd(fd)
        assert first.verdict == VOLATILE
        assert file_info_for_fd(fd) is first  # reused while the swap total stays
        total[0] = 1 << 30
        _fsinfo._swap_state[0] = -1e9  # the 2 s reuse of the swap total is over
        assert file_info_for_fd(fd).verdict == BEST_EFFORT
    finally:
        os.close(fd)


def test_the_superblock_cache_is_bounded(
    loopfs: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_fsinfo, "_CACHE_MAX", 1)
    fs = loopfs("ext4", size_mb=16)
    fd = _new_file(fs.mountpoint)
    pfd = os.open("/proc/self/status", os.O_RDONLY)
    try:
        a = file_info_for_fd(fd)
        file_info_for_fd(pfd)
        assert len(_fsinfo._sb_cache) == 1
        assert file_info_for_fd(fd) == a
    finally:
        os.close(fd)
        os.close(pfd)


def _write_fresh(directory: Path, data: bytes, name: str = "f") -> int:
    fd = _new_file(directory, name)
    os.write(fd, data)
    return fd


_WINDOWS = 10  # fresh files tried until one's look is not overtaken by writeback elsewhere


def _conclusive(window: Callable[[int], bool]) -> None:
    """Run ``window(n)`` for n = 0, 1, ... until it returns True: a window no writeback from
    elsewhere reached, whose assertions (made inside, each failing at once) all held. False:
    the oracle found the fresh data allocated, so this window tells nothing (it is not a
    failure of the code under test: its assertions never ran on it). All overtaken fails."""
    for n in range(_WINDOWS):
        if window(n):
            return
    pytest.fail(f"writeback from elsewhere overtook all {_WINDOWS} fresh files before the look")


def _fresh_look(directory: Path, n: int) -> tuple[int, int | None]:
    """A fresh file ``f<n>`` of 10,000 bytes in ``directory`` (its descriptor, the caller's
    to close), looked at with ``data_on_disk`` at once, which must say False. Its
    filesystem type, or None where the look tells nothing: the oracle found the data
    written back (by someone else, before the look or after it)."""
    fd = _write_fresh(directory, os.urandom(10_000), f"f{n}")
    try:
        f_type = file_info_for_fd(fd).f_type
        before = _fsinfo.data_on_disk(fd, f_type)
        extents = delalloc_extents(directory / f"f{n}")
        if not all(extents):
            return fd, None
        assert extents  # the data is there, as delayed extents
        assert before is False  # delayed allocation only
    except BaseException:
        os.close(fd)
        raise
    return fd, f_type


@pytest.mark.parametrize("how", ["fsync", "fdatasync", "sync-by-another-process"])
def test_data_on_disk_is_false_before_writeback_and_true_after(
    loopfs: Callable[..., Any], how: str
) -> None:
    fs = loopfs("ext4", size_mb=16)

    def window(n: int) -> bool:
        fd, f_type = _fresh_look(fs.mountpoint, n)
        try:
            if f_type is None:
                return False
            if how == "fsync":
                os.fsync(fd)
            elif how == "fdatasync":
                os.fdatasync(fd)
            else:
                subprocess.run(["sync"], check=True)
            assert _fsinfo.data_on_disk(fd, f_type) is True
            return True
        finally:
            os.close(fd)

    _conclusive(window)


def test_data_on_disk_of_an_empty_file_is_false(loopfs: Callable[..., Any]) -> None:
    fs = loopfs("ext4", size_mb=16)
    fd = _new_file(fs.mountpoint)
    try:
        assert _fsinfo.data_on_disk(fd, file_info_for_fd(fd).f_type) is False
    finally:
        os.close(fd)


def test_data_on_disk_reads_every_extent_of_a_fragmented_file(loopfs: Callable[..., Any]) -> None:
    # 80 separate delayed extents: more than one FIEMAP batch (32) must be read.
    fs = loopfs("ext4", size_mb=16)
    libc = ctypes.CDLL(None, use_errno=True)
    sync_range = libc.sync_file_range
    sync_range.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)

    def window(n: int) -> bool:
        fd = _new_file(fs.mountpoint, f"f{n}")
        try:
            for i in range(80):
                os.pwrite(fd, b"x", i * 16384)
            f_type = file_info_for_fd(fd).f_type
            before = _fsinfo.data_on_disk(fd, f_type)
            # Only the last block written to the disk (sync_file_range of its page alone):
            # found past the first batches of delayed extents.
            os.pwrite(fd, b"y", 100 * 16384)
            assert sync_range(fd, 100 * 16384, 4096, 1 | 2 | 4) == 0, ctypes.get_errno()
            after = _fsinfo.data_on_disk(fd, f_type)
            extents = delalloc_extents(fs.mountpoint / f"f{n}")
            if extents != [True] * 80 + [False]:
                return False  # the 80 were written back by someone else: this tells nothing
            assert before is False
            assert after is True
            return True
        finally:
            os.close(fd)

    _conclusive(window)


def test_data_on_disk_on_btrfs_follows_the_delayed_allocation(loopfs: Callable[..., Any]) -> None:
    fs = loopfs("btrfs")

    def window(n: int) -> bool:
        fd, f_type = _fresh_look(fs.mountpoint, n)
        try:
            if f_type is None:
                return False
            os.fsync(fd)
            assert _fsinfo.data_on_disk(fd, f_type) is True
            return True
        finally:
            os.close(fd)

    _conclusive(window)


def test_data_on_disk_is_true_where_it_cannot_be_told(
    small_tmpfs: Callable[[int], Path], loopfs: Callable[..., Any]
) -> None:
    # tmpfs has no delayed allocation to report: never assumed off the disk.
    fd = _write_fresh(small_tmpfs(1024), b"data")
    try:
        assert _fsinfo.data_on_disk(fd, file_info_for_fd(fd).f_type) is True
    finally:
        os.close(fd)
    # FIEMAP itself failing (an O_PATH descriptor accepts no ioctl): assumed on the disk.
    fs = loopfs("ext4", size_mb=16)
    os.close(_write_fresh(fs.mountpoint, b"data"))
    pfd = os.open(fs.mountpoint / "f", os.O_PATH)
    try:
        assert _fsinfo.data_on_disk(pfd, _fsinfo._EXT_MAGIC) is True
    finally:
        os.close(pfd)


def _count_statfs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The descriptors ``fstatfs`` is asked about from now on (the real call still made)."""
    return _count_calls(monkeypatch, "_statfs")


def test_file_info_by_mount_id_asks_no_fstatfs_until_the_mount_table_changes(
    loopfs: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from hardtemp._linux import mount_id

    fs = loopfs("ext4", size_mb=16)
    other = fs.mountpoint.parent / "other"
    other.mkdir()

    def looks() -> None:  # the only mount-table change there is the one made below
        fd = _new_file(fs.mountpoint)
        calls = _count_statfs(monkeypatch)
        try:
            mnt = mount_id(fd)
            first = file_info_for_fd(fd, mnt_id=mnt)
            assert first.verdict == IN_PLACE
            assert first.mnt_id == mnt
            calls.clear()
            for _ in range(5):
                assert file_info_for_fd(fd, mnt_id=mnt) == first
            assert calls == []  # found by its mount id: the mount is in our table, unchanged
            # Any change of the mount table (here a tmpfs mounted and unmounted elsewhere)
            # forgets it: the next look asks fstatfs again.
            tmpfs = ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(other)]
            subprocess.run(tmpfs, check=True)
            subprocess.run(["umount", str(other)], check=True)
            assert file_info_for_fd(fd, mnt_id=mnt) == first
            assert calls != []
        finally:
            os.close(fd)

    _in_own_mount_namespace(looks)


# argv: work directory, case. In a private mount namespace: one loop device holding an ext4,
# mounted data=ordered, classified by path, unmounted and mounted again data=journal (the
# same st_dev and filesystem id; retried until the mount id is reused too), classified again.
_REMOUNT = r"""
import ctypes, json, os, subprocess, sys
from hardtemp import _fsinfo, _linux

work, case = sys.argv[1], sys.argv[2]
img, mnt = f"{work}/e.img", f"{work}/m"
os.mkdir(mnt)


def run(*cmd):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout.strip()


def mount(opts):
    run("mount", "-o", opts, dev, mnt)
    fd = os.open(mnt, os.O_RDONLY | os.O_CLOEXEC)
    try:
        ident = os.fstat(fd).st_dev, _linux.old_mount_id(fd)  # the id the kernel reuses
        return *ident, _fsinfo.fs_info_for_path(mnt).verdict
    finally:
        os.close(fd)
        run("umount", mnt)


with open(img, "wb") as f:
    f.truncate(16 << 20)
run("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", img)
dev = run("losetup", "-f", "--show", img)
try:
    _fsinfo.fs_info_for_path(work)  # the watch is open (namespace A)
    if case == "unshare":  # through ctypes, as a C extension would: no audit hook sees it
        assert ctypes.CDLL(None, use_errno=True).unshare(0x00020000) == 0  # CLONE_NEWNS
    for _ in range(30):  # other processes mount too: ids are global, retried until reused
        *first, ordered = mount("data=ordered")
        *second, journal = mount("data=journal")
        if first == second:
            break
    print(json.dumps([first == second, ordered.value, journal.value]))
finally:
    subprocess.run(["losetup", "-d", dev], check=False)
"""


@pytest.mark.parametrize("case", ["unshare", "stay"], ids=["unshared", "control-same-namespace"])
@pytest.mark.parametrize("kind", MOUNT_ID_KINDS)
def test_a_remount_after_the_process_changed_its_mount_namespace_is_seen_by_path(
    tmp_path: Path, case: str, kind: str
) -> None:
    # fs_info_for_path/fs_info_for_fd (hardtemp check's look) cache by (st_dev, mount id,
    # type, fsid): after unshare the watch must follow the new namespace on that path's
    # first miss too, or the data=journal mount that took the data=ordered one's device and
    # mount id there is reported "in place". With unique mount ids (Linux >= 6.8) the new
    # mount's id is never the old one's: the cache misses whatever the watch saw.
    require_unshare()
    require_loop("ext4")
    cmd = ["unshare", "-m", "--propagation", "private", sys.executable, "-c", _REMOUNT]
    out = run_with_mount_ids([*cmd, str(tmp_path), case], kind)
    assert out.returncode == 0, out.stderr
    reused, ordered, journal = json.loads(out.stdout.splitlines()[-1])
    if not reused:
        pytest.skip("the second mount did not reuse the first one's mount id")
    assert (ordered, journal) == (IN_PLACE, NOT_IN_PLACE)


def test_a_mount_id_not_in_our_mount_table_is_never_cached(loopfs: Callable[..., Any]) -> None:
    # An id of no mount we can see (a descriptor from another mount namespace) could be
    # reused unseen by our watch: that file is classified by fstatfs, and not remembered.
    fs = loopfs("ext4", size_mb=16)
    fd = _new_file(fs.mountpoint)
    try:
        assert file_info_for_fd(fd, mnt_id=1 << 40).verdict == IN_PLACE
        assert _fsinfo._mnt_cache == {}
    finally:
        os.close(fd)


def test_a_forked_child_watches_the_mount_table_with_its_own_descriptor() -> None:
    # The parent's descriptor watches the parent's mount namespace: after fork the child
    # drops it (at-fork hook: no getpid on every look) and opens its own on first use.
    _fsinfo.fs_info_for_path("/")
    assert _fsinfo._watch.opened
    parent_fd = _fsinfo._watch.fd
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not saved
        try:
            state = [_fsinfo._watch.opened, _fsinfo._watch.fd]
            try:
                os.fstat(parent_fd)
                state.append("parent's still open")
            except OSError:
                state.append("closed")
            _fsinfo.fs_info_for_path("/")
            state.append(_fsinfo._watch.opened)
            os.write(wfd, repr(state).encode())
        finally:
            os._exit(0)
    os.close(wfd)
    try:
        got = os.read(rfd, 200).decode()
    finally:
        os.close(rfd)
        os.waitpid(pid, 0)
    assert got == repr([False, -1, "closed", True])


def test_forgetting_the_watch_closes_its_descriptor_and_the_next_look_reopens_it() -> None:
    # What the at-fork hook does in a child, done here where coverage sees it.
    watch = _fsinfo._MountWatch()
    assert watch.changed() is True  # first use: opened
    fd = watch.fd
    assert fd >= 0
    watch.forget()
    assert (watch.opened, watch.fd, watch.poller) == (False, -1, None)
    with pytest.raises(OSError):
        os.fstat(fd)
    assert watch.changed() is True  # reopened: the cache is not trusted across it
    assert watch.changed() is False
    watch.forget()


def test_an_overlay_file_reporting_its_upper_filesystems_st_dev_is_classified_as_overlay(
    loopfs: Callable[..., Any],
) -> None:
    # Kernels before 4.17 report an overlay file's st_dev as its upper (or lower)
    # filesystem's: one st_dev for two superblocks. A file on that ext4, classified first,
    # must not lend the overlay file its "in place" (the st_dev-only cache did). Real
    # mounts; the st_dev such a kernel reports stands in for this kernel's own.
    from hardtemp._linux import mount_id

    require_root("to mount overlayfs")
    fs = loopfs("ext4", size_mb=16)
    lower, upper, work, merged = (fs.mountpoint / n for n in ("lower", "upper", "work", "m"))
    for d in (lower, upper, work, merged):
        d.mkdir()
    opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
    if subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)]).returncode:
        pytest.skip("cannot mount overlayfs here")
    ext_fd = _new_file(fs.mountpoint)
    ovl_fd = os.open(merged / "f", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        ext_st = os.fstat(ext_fd)
        assert file_info_for_fd(ext_fd).verdict == IN_PLACE
        assert file_info_for_fd(ext_fd, mnt_id=mount_id(ext_fd)).verdict == IN_PLACE
        fields = list(os.fstat(ovl_fd)[:10])
        fields[2] = ext_st.st_dev  # what a kernel before 4.17 reports for this file
        old_kernel_st = os.stat_result(fields)
        for mnt in (-1, mount_id(ovl_fd)):  # its mount unknown (no STATX_MNT_ID), or known
            info = file_info_for_fd(ovl_fd, old_kernel_st, mnt_id=mnt)
            assert (info.fstype, info.verdict) == ("overlay", NOT_IN_PLACE), mnt
        # The ext4 file keeps its own classification (the overlay's did not replace it).
        assert file_info_for_fd(ext_fd, mnt_id=mount_id(ext_fd)).verdict == IN_PLACE
    finally:
        os.close(ovl_fd)
        os.close(ext_fd)
        subprocess.run(["umount", str(merged)], check=True)


@pytest.mark.parametrize("kind", MOUNT_ID_KINDS)
def test_a_file_whose_mount_is_not_given_is_found_by_its_unique_mount_id_else_by_fstatfs(
    loopfs: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    # Without a unique mount id nothing but fstatfs (type, fsid) tells two superblocks that
    # report one st_dev apart: asked every time, never served by st_dev alone. With one
    # (Linux >= 6.8), that id is asked instead (one statx for the fstatfs) and finds the
    # mount's own entry.
    if kind == "old-ids":
        monkeypatch.setattr(_fsinfo, "_unique_mnt_id", lambda fd: -1)  # a kernel before 6.8
    elif not unique_mount_ids():
        pytest.skip("this kernel has no unique mount ids (STATX_MNT_ID_UNIQUE, Linux 6.8)")
    fs = loopfs("ext4", size_mb=16)

    def looks() -> None:  # no one else's mount clears the cache there
        fd = _new_file(fs.mountpoint)
        try:
            first = file_info_for_fd(fd)
            calls = _count_statfs(monkeypatch)
            for _ in range(3):
                assert file_info_for_fd(fd) is first  # the superblock's entry, by fstatfs or id
            assert calls == ([fd] * 3 if kind == "old-ids" else [])
        finally:
            os.close(fd)

    _in_own_mount_namespace(looks)


def test_the_mount_watch_is_never_a_number_a_library_held_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A library's double close hits a number it once had; descriptors are handed out
    # lowest-free, so the watch opened just after that library's first close would get that
    # very number, and the second close (then the application's own open of mountinfo,
    # whose poll answers like an unchanged watch) would blind it (review7).
    watch = _fsinfo._MountWatch()
    monkeypatch.setattr(_fsinfo, "_watch", watch)
    theirs = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    os.close(theirs)  # the library's first close: the number is the lowest free one
    assert watch.changed()  # opened now
    try:
        assert watch.fd != theirs
        assert watch.fd >= min(_fsinfo._HIGH_FD, os.sysconf("SC_OPEN_MAX") // 2)
        with contextlib.suppress(OSError):
            os.close(theirs)  # the double close: not the watch's number
        table = os.open("/proc/self/mountinfo", os.O_RDONLY | os.O_CLOEXEC)
        os.close(table)
        assert os.readlink(f"/proc/self/fd/{watch.fd}").endswith("mountinfo")
        assert not watch.changed()  # still our own, unchanged
    finally:
        watch.forget()


def test_the_mount_watch_stays_low_when_the_descriptor_limit_is_small() -> None:
    # A limit below twice the high floor: the watch stays at a number the limit allows.
    script = (
        "import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64));"
        "from hardtemp import _fsinfo as f; assert f._watch.changed();"
        "assert 32 <= f._watch.fd < 64, f._watch.fd; assert not f._watch.changed()"
    )
    done = run_python(script)
    assert done.returncode == 0, done.stderr


def test_a_look_at_the_mount_watch_reentered_inside_a_look_says_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A collection at an allocation inside the look (the poll's result list) can close a
    # file of ours, whose classification looks again: the outer poll may just have consumed
    # a change its caller has not cleared the caches for yet, so the inner look must not
    # say "unchanged" (it would serve a stale verdict).
    watch = _fsinfo._MountWatch()
    monkeypatch.setattr(_fsinfo, "_watch", watch)
    assert watch.changed()  # opened now
    real = watch.poller
    assert real is not None
    inner: list[bool] = []

    class Reentering:
        def poll(self, timeout: int) -> list[tuple[int, int]]:
            inner.append(watch.changed())  # what the collected file's close does
            return real.poll(timeout)

    watch.poller = Reentering()  # type: ignore[assignment]
    try:
        assert not watch.changed()
        assert inner == [True]
        assert not watch.looking
    finally:
        watch.forget()


def _blind_the_watch() -> int:
    """What review7 did to the mount watch, for real: its number closed by other code and
    taken by the application's own open of /proc/self/mountinfo, whose poll state starts at
    its open (a change made before it is never reported). Returns that number."""
    number = _fsinfo._watch.fd
    assert number >= 0
    os.close(number)
    theirs = os.open("/proc/self/mountinfo", os.O_RDONLY | os.O_CLOEXEC)
    if theirs != number:
        os.dup2(theirs, number)
        os.close(theirs)
    return number


@pytest.mark.parametrize("how", ["by-mount-id", "by-descriptor", "by-superblock"])
def test_a_blinded_watch_never_serves_a_mount_the_verdict_of_the_one_it_replaced(
    tmp_path: Path, how: str
) -> None:
    # review7's open case, on one loop device: an ext4 classified data=ordered ("in place"),
    # unmounted, and mounted data=journal from the same device (same st_dev, type and fsid:
    # the superblock key is the same; the old mount id often too) while the watch is blind.
    # With unique mount ids (Linux >= 6.8) the new mount is never found by the old one's
    # entry: not by id (a named or unnamed close gives the file's), not by superblock (a
    # tree's top, a file whose mount is not given: asked by its unique id). The old ids
    # (forced) break this: the review7 case of tests/forensic/test_forensic_review7.py.
    require_loop("ext4")
    if not unique_mount_ids():
        pytest.skip("this kernel has no unique mount ids (STATX_MNT_ID_UNIQUE, Linux 6.8)")
    from hardtemp._linux import mount_id

    img, mnt = tmp_path / "e.img", tmp_path / "m"
    mnt.mkdir()
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    mkfs = ["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", str(img)]
    subprocess.run(mkfs, check=True)
    dev = subprocess.run(
        ["losetup", "-f", "--show", str(img)], check=True, capture_output=True, text=True
    ).stdout.strip()
    mounted = False

    def classify(name: str) -> tuple[FsInfo, int]:
        fd = _new_file(mnt, name)
        try:
            st = os.fstat(fd)
            if how == "by-mount-id":
                return file_info_for_fd(fd, st, mnt_id=mount_id(fd)), st.st_dev
            if how == "by-descriptor":
                return file_info_for_fd(fd, st), st.st_dev
            return _fsinfo.fs_info_by_superblock(fd, st.st_dev), st.st_dev
        finally:
            os.close(fd)

    try:
        subprocess.run(["mount", "-o", "data=ordered", dev, str(mnt)], check=True)
        mounted = True
        before, dev_before = classify("f")
        assert before.verdict == IN_PLACE
        subprocess.run(["umount", str(mnt)], check=True)
        subprocess.run(["mount", "-o", "data=journal", dev, str(mnt)], check=True)
        _blind_the_watch()
        assert not _fsinfo._watch.changed()  # blind: the umount and mount go unseen
        after, dev_after = classify("g")
        assert dev_after == dev_before  # the same device: the same superblock key
        assert after.verdict == NOT_IN_PLACE, after
        assert after.mnt_id != before.mnt_id
    finally:
        _fsinfo._watch.forget()  # closes that number (this test's own file now)
        if mounted:
            subprocess.run(["umount", str(mnt)], check=False)
        subprocess.run(["losetup", "-d", dev], check=False)


def test_xfs_file_is_in_place_until_its_extents_are_shared_and_unknown_if_fiemap_fails(
    loopfs: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The raw-image proof is tests/forensic/test_forensic_xfs.py; here the verdicts. A
    # FIEMAP failure cannot be caused on a real xfs: it is the one fault stood in for.
    fs = loopfs("xfs")
    fd = _new_file(fs.mountpoint)
    try:
        os.write(fd, b"x" * 65536)
        assert file_info_for_fd(fd).verdict == IN_PLACE  # dirty, not yet on the disk
        os.fsync(fd)
        assert file_info_for_fd(fd).verdict == IN_PLACE
        src, copy = str(fs.mountpoint / "f"), str(fs.mountpoint / "copy")
        done = subprocess.run(["cp", "--reflink=always", src, copy], capture_output=True)
        if done.returncode:
            skip(f"this xfs has no reflink: {done.stderr.decode().strip()}")
        info = file_info_for_fd(fd)
        assert info.verdict == NOT_IN_PLACE
        assert info.reasons[0].code == FsReason.SHARED_EXTENTS
        # (The copy's removal frees its share only when xfs inactivates its inode, later:
        # until then the verdict stays "not in place", the safe side.)

        def refused(fd: int) -> tuple[bool, bool]:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(_fsinfo, "_fiemap_flags", refused)
        info = file_info_for_fd(fd)
        assert info.verdict == BEST_EFFORT
        assert info.reasons[0].code == FsReason.SHARED_UNCHECKED
    finally:
        os.close(fd)
