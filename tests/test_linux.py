"""_linux: the libc door (renameat2, statx, fstatfs), on real files and real mounts."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import _gates
from _helpers_core import MOUNT_ID_KINDS, SRC, run_with_mount_ids, start_threads
from hardtemp import _linux

needs_root = _gates.needs_root("for mount and unshare -m")


def test_rename_noreplace_moves_and_never_replaces(tmp_path: Path, dfd: int) -> None:
    (tmp_path / "a").write_bytes(b"A")
    _linux.rename_noreplace(dfd, "a", dfd, "b")
    assert (tmp_path / "b").read_bytes() == b"A"
    (tmp_path / "c").write_bytes(b"C")
    with pytest.raises(FileExistsError) as info:
        _linux.rename_noreplace(dfd, "c", dfd, "b")
    assert info.value.filename == "b"
    assert (tmp_path / "b").read_bytes() == b"A"
    assert (tmp_path / "c").read_bytes() == b"C"


def test_rename_noreplace_to_a_path_relative_to_the_cwd(tmp_path: Path, dfd: int) -> None:
    (tmp_path / "a").write_bytes(b"A")
    _linux.rename_noreplace(dfd, "a", _linux.AT_FDCWD, str(tmp_path / "elsewhere"))
    assert (tmp_path / "elsewhere").read_bytes() == b"A"


def test_without_renameat2_the_fallback_links_and_still_never_replaces(
    tmp_path: Path, dfd: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # glibc < 2.28 has no renameat2 symbol: cannot be caused here, so the binding is removed.
    monkeypatch.setattr(_linux, "_renameat2", None)
    (tmp_path / "a").write_bytes(b"A")
    (tmp_path / "b").write_bytes(b"B")
    with pytest.raises(FileExistsError):
        _linux.rename_noreplace(dfd, "a", dfd, "b")
    assert (tmp_path / "b").read_bytes() == b"B"
    os.unlink(tmp_path / "b")
    _linux.rename_noreplace(dfd, "a", dfd, "b")
    assert sorted(os.listdir(tmp_path)) == ["b"]
    assert (tmp_path / "b").read_bytes() == b"A"
    assert os.stat(tmp_path / "b").st_nlink == 1


def test_without_renameat2_an_unguessable_target_is_renamed_atomically(
    tmp_path: Path, dfd: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A directory cannot be hard-linked: the unguessable plain rename still moves it.
    monkeypatch.setattr(_linux, "_renameat2", None)
    (tmp_path / "d").mkdir()
    _linux.rename_noreplace(dfd, "d", dfd, ".ht-random", unguessable=True)
    assert os.listdir(tmp_path) == [".ht-random"]


def _fake_renameat2(errnos: list[int]) -> Callable[..., int]:
    real = _linux._renameat2

    def fake(*args: Any) -> int:
        if errnos:
            ctypes.set_errno(errnos.pop(0))
            return -1
        assert real is not None
        return int(real(*args))

    return fake


def test_a_filesystem_without_rename_noreplace_falls_back_and_eintr_is_retried(
    tmp_path: Path, dfd: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A filesystem refusing RENAME_NOREPLACE (EINVAL) and a signal mid-call (EINTR) cannot
    # be caused on demand here: the binding fails once with each errno, then the real one.
    monkeypatch.setattr(_linux, "_renameat2", _fake_renameat2([errno.EINTR]))
    (tmp_path / "a").write_bytes(b"A")
    _linux.rename_noreplace(dfd, "a", dfd, "b")
    assert os.listdir(tmp_path) == ["b"]
    monkeypatch.setattr(_linux, "_renameat2", _fake_renameat2([errno.EINVAL]))
    _linux.rename_noreplace(dfd, "b", dfd, "c")
    assert os.listdir(tmp_path) == ["c"]
    assert os.stat(tmp_path / "c").st_nlink == 1


def test_rename_noreplace_of_a_missing_name_raises_file_not_found(dfd: int) -> None:
    with pytest.raises(FileNotFoundError):
        _linux.rename_noreplace(dfd, "missing", dfd, "b")


def test_fstatfs_reads_the_filesystem_and_reports_a_bad_descriptor(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        sfs = _linux.fstatfs(fd)
        assert sfs.f_bsize > 0
        assert sfs.f_namelen >= 255
    finally:
        os.close(fd)
    with pytest.raises(OSError) as info:
        _linux.fstatfs(fd)
    assert info.value.errno == errno.EBADF


def test_statx_of_a_name_and_of_a_descriptor_agree_with_stat(tmp_path: Path, dfd: int) -> None:
    (tmp_path / "f").write_bytes(b"12345")
    st = os.stat(tmp_path / "f")
    by_name = _linux.statx(dfd, "f")
    fd = os.open(tmp_path / "f", os.O_PATH)
    try:
        by_fd = _linux.statx(fd)
        # The unique id where the kernel has them (Linux >= 6.8), else the old one fdinfo lists.
        assert by_fd.mnt_id in (_linux.unique_mount_id(fd), _linux.fdinfo_mount_id(fd))
        assert _linux.old_mount_id(fd) == _linux.fdinfo_mount_id(fd) > 0
    finally:
        os.close(fd)
    for sx in (by_name, by_fd):
        assert (sx.dev, sx.ino, sx.mode, sx.nlink, sx.uid, sx.size) == (
            st.st_dev,
            st.st_ino,
            st.st_mode,
            st.st_nlink,
            st.st_uid,
            5,
        )
    assert by_name.mnt_id == by_fd.mnt_id > 0


def test_statx_never_follows_a_symlink(tmp_path: Path, dfd: int) -> None:
    (tmp_path / "target").mkdir()
    os.symlink("target", tmp_path / "link")
    sx = _linux.statx(dfd, "link")
    assert sx.ino == os.lstat(tmp_path / "link").st_ino != os.stat(tmp_path / "target").st_ino


def test_statx_reports_the_birth_time_where_the_filesystem_keeps_one(
    loopfs: Callable[..., Any],
) -> None:
    fs = loopfs("ext4")
    (fs.mountpoint / "f").write_bytes(b"x")
    fd = os.open(fs.mountpoint / "f", os.O_PATH)
    try:
        sx = _linux.statx(fd)
    finally:
        os.close(fd)
    assert sx.btime is not None
    assert abs(sx.btime - os.stat(fs.mountpoint / "f").st_mtime) < 5


def test_statx_errors_name_the_entry(dfd: int) -> None:
    with pytest.raises(FileNotFoundError) as info:
        _linux.statx(dfd, "missing")
    assert info.value.filename == "missing"


def test_without_statx_in_libc_statx_raises_enosys_and_mount_id_uses_fdinfo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fd = os.open(tmp_path, os.O_PATH)
    try:
        # Without statx every id comes from fdinfo: the old ids, in the whole process.
        expected = _linux.old_mount_id(fd)
        # glibc < 2.28 has no statx symbol: cannot be caused here, so the binding is removed.
        monkeypatch.setattr(_linux, "_statx", None)
        monkeypatch.setattr(_linux, "_libc_statx", None)
        with pytest.raises(OSError) as info:
            _linux.statx(fd)
        assert info.value.errno == errno.ENOSYS
        assert _linux.mount_id(fd) == _linux.old_mount_id(fd) == expected > 0
        assert _linux.unique_mount_id(fd) == -1
        with pytest.raises(OSError) as info:
            _linux.statx_fd(fd)
        assert info.value.errno == errno.ENOSYS
        (tmp_path / "entry").write_bytes(b"")
        assert _linux.mount_id_at(fd, "entry") == expected  # O_PATH + fdinfo instead
    finally:
        os.close(fd)


def test_statx_fd_reports_type_owner_links_size_blocks_and_mount(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"x" * 5000)
    fd = os.open(p, os.O_RDONLY)
    try:
        sx = _linux.statx_fd(fd)
        st = os.fstat(fd)
        assert (sx.mode, sx.uid, sx.nlink, sx.size) == (st.st_mode, st.st_uid, 1, 5000)
        assert (sx.blocks, sx.blksize) == (st.st_blocks, st.st_blksize)
        assert sx.mnt_id == _linux.mount_id(fd) > 0
    finally:
        os.close(fd)


def test_statx_reader_reads_what_statx_fd_reads_with_one_buffer(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"x" * 5000)
    fd = os.open(p, os.O_RDONLY)
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        reader = _linux.StatxReader()
        assert reader.read(fd) == _linux.statx_fd(fd)
        assert reader.read(dfd) == _linux.statx_fd(dfd)  # the buffer is reused, not stale
        # The lean layout is struct statx's: every field at the offset ctypes puts it.
        buf = _linux._StatxBuf
        assert [
            buf.stx_mask.offset,
            buf.stx_blksize.offset,
            buf.stx_nlink.offset,
            buf.stx_uid.offset,
            buf.stx_mode.offset,
            buf.stx_size.offset,
            buf.stx_blocks.offset,
            buf.stx_mnt_id.offset,
        ] == [0, 4, 16, 20, 28, 40, 48, 144]
        assert _linux._LEAN_FIELDS.size == buf.stx_mnt_id.offset + 8
    finally:
        os.close(fd)
        os.close(dfd)


def test_statx_reader_raises_the_real_errno_and_enosys_without_statx(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    os.close(fd)  # a descriptor number no longer open: a real EBADF
    reader = _linux.StatxReader()
    with pytest.raises(OSError) as info:
        reader.read(fd)
    assert info.value.errno == errno.EBADF
    # glibc < 2.28 has no statx symbol: cannot be caused here, so the binding is removed.
    monkeypatch.setattr(_linux, "_lean_statx", None)
    with pytest.raises(OSError) as info:
        reader.read(0)
    assert info.value.errno == errno.ENOSYS


def test_sync_file_range_writes_and_rejects_a_bad_descriptor(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"data")
        _linux.sync_file_range(fd, _linux.SYNC_FILE_RANGE_WRITE | _linux.SYNC_FILE_RANGE_WAIT_AFTER)
    finally:
        os.close(fd)
    with pytest.raises(OSError) as info:
        _linux.sync_file_range(fd, _linux.SYNC_FILE_RANGE_WRITE)
    assert info.value.errno == errno.EBADF


def test_fdinfo_mount_id_of_a_closed_descriptor_is_unknown() -> None:
    fd = os.open("/", os.O_PATH)
    os.close(fd)
    assert _linux.fdinfo_mount_id(fd) == -1
    assert _linux.mount_id(fd) == -1


@needs_root
def test_a_bind_mount_of_the_same_filesystem_has_another_mount_id_but_the_same_device(
    tmp_path: Path,
) -> None:
    # The reason mount ids exist here: st_dev cannot see a bind mount of the same filesystem.
    _gates.require_unshare()
    (tmp_path / "src").mkdir()
    (tmp_path / "tree" / "mnt").mkdir(parents=True)
    code = (
        "import os, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from hardtemp import _linux\n"
        "t = sys.argv[2]\n"
        "a = os.open(t + '/tree', os.O_PATH); b = os.open(t + '/tree/mnt', os.O_PATH)\n"
        "sa, sb = _linux.statx(a), _linux.statx(b)\n"
        "print(sa.dev == sb.dev, sa.mnt_id != sb.mnt_id, sa.mnt_id, sb.mnt_id)\n"
    )
    script = (
        "mount --make-rprivate / && "
        f"mount --bind {tmp_path}/src {tmp_path}/tree/mnt && "
        f'exec {sys.executable} -c "$0" {SRC} {tmp_path}'
    )
    out = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    same_dev, other_mount, *_ = out.stdout.split()
    assert (same_dev, other_mount) == ("True", "True")


_FUSE_CODE = r"""
import errno, json, os, sys
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2])
from _helpers_fuse import mount_failing
from hardtemp import _linux
mnt, err, own = sys.argv[3], getattr(errno, sys.argv[4]), sys.argv[5]
mount_failing(mnt, err)
out = {}
for name, call in [
    ("statx", lambda: _linux.statx_buf(-100, os.fsencode(mnt), 0x100, 0xFFF, mnt)),
    ("lean", lambda: _linux.statx_raw(-100, os.fsencode(mnt), 0x100, 0xFFF, mnt)),
]:
    try:
        call()
        out[name] = "answered"
    except OSError as exc:
        out[name] = [errno.errorcode.get(exc.errno, exc.errno), exc.filename]
out["statx_on"] = _linux._statx is not None and _linux._lean_statx is not None
fd = os.open(own, os.O_RDONLY)
out["own_mount_id_unique"] = _linux.is_unique_mount_id(_linux.mount_id(fd))
os.close(fd)
print(json.dumps(out))  # the mount goes with this process's private mount namespace
"""


@needs_root
@pytest.mark.parametrize("answer", ["EPERM", "ENOSYS"])
def test_a_fuse_filesystem_refusing_statx_of_its_file_leaves_statx_on_for_the_process(
    tmp_path: Path, answer: str
) -> None:
    # Another user's FUSE daemon answers statx of its own file with EPERM (or ENOSYS): that
    # call fails with the file's own error, and statx stays on for every other file (it
    # switched off for the whole process, as a seccomp filter's refusal does: old mount ids,
    # fallbacks everywhere, marks without a birth time). A real refusal still switches it
    # off: tests/attack/test_attack_review10.py's seccomp filter.
    _gates.require_unshare()
    if not os.path.exists("/dev/fuse"):
        _gates.skip("no /dev/fuse: this kernel or container has no FUSE")
    (tmp_path / "mnt").mkdir()
    (tmp_path / "own").write_bytes(b"")
    out = subprocess.run(
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            'mount --make-rprivate / && exec "$@"',
            "sh",
            sys.executable,
            "-c",
            _FUSE_CODE,
            SRC,
            str(Path(__file__).parent),
            str(tmp_path / "mnt"),
            answer,
            str(tmp_path / "own"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    shown = str(tmp_path / "mnt")
    assert result["statx"] == [answer, shown]  # the file's own error, naming it
    assert result["lean"] == [answer, shown]
    assert result["statx_on"] is True
    fd = os.open(tmp_path / "own", os.O_RDONLY)
    try:  # the next file's mount id is still the unique one where the kernel has them
        assert result["own_mount_id_unique"] is _linux.is_unique_mount_id(_linux.mount_id(fd))
    finally:
        os.close(fd)


_MOUNT_ROOT_CODE = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
from hardtemp import _linux, _remove
from hardtemp.exceptions import UnsafeFileError
t, fallback = sys.argv[2], sys.argv[3] == "fallback"
if fallback:  # a kernel before 5.8 reports no STATX_ATTR_MOUNT_ROOT: cannot be caused here
    real = _linux.mount_root_at
    _remove.mount_root_at = lambda d, n: (real(d, n)[0], None)
d = os.open(t + "/dir", os.O_RDONLY | os.O_DIRECTORY)
out = {"bound": _linux.mount_root_at(d, "bound"), "plain": _linux.mount_root_at(d, "plain")}
out["dir_mnt"] = _linux.mount_id(d)
try:
    _remove.remove_entry(d, "bound")
    out["refused"] = ""
except UnsafeFileError as exc:
    out["refused"] = str(exc)
_remove.remove_entry(d, "plain")
out["left"] = sorted(os.listdir(t + "/dir"))
print(json.dumps(out))
"""


@needs_root
@pytest.mark.parametrize("kernel", ["mount_root", "fallback"])
def test_a_file_bind_mounted_over_a_name_is_a_mount_root_and_remove_entry_refuses_it(
    tmp_path: Path, kernel: str
) -> None:
    # One statx says whether a name is a mount point (STATX_ATTR_MOUNT_ROOT); without it
    # remove_entry compares mount ids with its directory's. Either way the outside file
    # bind-mounted over the name is never overwritten or unlinked.
    _gates.require_unshare()
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "bound").write_bytes(b"")
    (tmp_path / "dir" / "plain").write_bytes(b"plain")
    (tmp_path / "outside").write_bytes(b"keep me")
    script = (
        "mount --make-rprivate / && "
        f"mount --bind {tmp_path}/outside {tmp_path}/dir/bound && "
        f'exec {sys.executable} -c "$0" {SRC} {tmp_path} {kernel}'
    )
    out = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, _MOUNT_ROOT_CODE],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result = json.loads(out.stdout.splitlines()[-1])
    bound_mnt, bound_root = result["bound"]
    plain_mnt, plain_root = result["plain"]
    assert (bound_root, plain_root) == (True, False), result
    assert plain_mnt == result["dir_mnt"] != bound_mnt, result
    assert "is a mount point" in result["refused"], result
    assert result["left"] == ["bound"], result
    assert (tmp_path / "outside").read_bytes() == b"keep me"


def test_mount_root_at_without_statx_or_the_attribute_falls_back_to_the_mount_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "entry").write_bytes(b"")
    fd = os.open(tmp_path, os.O_PATH)
    try:
        expected = _linux.mount_id(fd)
        assert _linux.mount_root_at(fd, "entry") == (expected, False)
        with pytest.raises(FileNotFoundError) as info:
            _linux.mount_root_at(fd, "missing")
        assert info.value.filename == "missing"
        # glibc < 2.28 (no statx symbol) cannot be caused here: the binding is removed. Every
        # id then comes from fdinfo: the old one.
        old = _linux.old_mount_id(fd)
        monkeypatch.setattr(_linux, "_statx", None)
        assert _linux.mount_root_at(fd, "entry") == (old, None)
    finally:
        os.close(fd)


def test_birth_ident_and_dir_statx_agree_with_statx_and_fstat_and_need_statx(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o640)
    calls = (_linux.birth_ident, _linux.dir_statx)
    try:
        sx = _linux.statx(fd)
        assert _linux.birth_ident(fd) == (sx.dev, sx.ino, sx.btime)
        st = os.fstat(fd)
        assert _linux.dir_statx(fd) == (
            st.st_dev,
            st.st_ino,
            st.st_mode,
            st.st_uid,
            sx.btime,
            sx.mnt_id,
        )
        assert _linux.birth_ident(fd)[:2] == (st.st_dev, st.st_ino)
        assert _linux.dir_statx(fd)[5] == _linux.mount_id(fd)
        # glibc < 2.28 (no statx symbol) cannot be caused here: the binding is removed.
        monkeypatch.setattr(_linux, "_statx", None)
        for call in calls:
            with pytest.raises(OSError) as info:
                call(fd)
            assert info.value.errno == errno.ENOSYS
    finally:
        os.close(fd)
    monkeypatch.undo()
    for call in calls:
        with pytest.raises(OSError) as info:
            call(fd)
        assert info.value.errno == errno.EBADF


def test_statx_raw_gives_every_thread_the_statx_of_its_own_file(tmp_path: Path) -> None:
    # ctypes lets go of the GIL inside statx: a buffer shared by two calls at once would
    # hand one thread the other's result. Each call has a buffer of its own.
    import struct

    size_of = struct.Struct("=40xQ").unpack_from  # stx_size
    wrong: list[tuple[int, int]] = []

    def hammer(size: int) -> None:
        fd = os.open(tmp_path / f"f{size}", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, size)
            for _ in range(3000):
                (got,) = size_of(_linux.statx_raw(fd, b"", 0x1000, 0x7FF, None))
                if got != size:
                    wrong.append((size, got))
        finally:
            os.close(fd)

    threads = start_threads((hammer, (n,)) for n in (1, 2, 3, 4))
    for t in threads:
        t.join()
    assert wrong == []
    with pytest.raises(OSError) as info:
        _linux.statx_raw(-1, b"", 0x1000, 0x7FF, "nothing")
    assert info.value.errno == errno.EBADF


# argv: a directory holding the entry "f". Prints every helper's mount id of it (they must be
# one kind), its old id as /proc/self/fdinfo lists it, and the unique one asked alone.
_IDS = r"""
import json, os, sys
from hardtemp import _inode, _linux

d = sys.argv[1]
dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
fd = os.open(f"{d}/f", os.O_RDONLY)
ids = [
    _linux.statx(fd).mnt_id,
    _linux.statx(dfd, "f").mnt_id,
    _linux.statx_fd(fd).mnt_id,
    _linux.StatxReader().read(fd)[6],
    _linux.dir_statx(fd)[5],
    _linux.mount_id(fd),
    _linux.mount_id_at(dfd, "f"),
    _linux.mount_root_at(dfd, "f")[0],
    _inode.lstat_mount(dfd, "f").mnt_id,
    _inode.new_file_facts(fd)[4],
]
print(json.dumps([ids, _linux.old_mount_id(fd), _linux.fdinfo_mount_id(fd),
                  _linux.unique_mount_id(fd)]))
"""


@pytest.mark.parametrize("kind", MOUNT_ID_KINDS)
def test_every_mount_id_is_the_unique_one_where_the_kernel_has_it_else_the_old_one(
    tmp_path: Path, kind: str
) -> None:
    # One kind per process: a tree's mount compared with its entries', a name's with its
    # directory's, must never mix an old id with a unique one. The old id is the one
    # mountinfo and fdinfo list; the unique ones (Linux >= 6.8) lie above every old one.
    (tmp_path / "f").write_bytes(b"x")
    out = run_with_mount_ids([sys.executable, "-c", _IDS, str(tmp_path)], kind)
    assert out.returncode == 0, out.stderr
    ids, old, fdinfo, unique = json.loads(out.stdout)
    assert old == fdinfo > 0
    assert not _linux.is_unique_mount_id(old)
    if kind == "old-ids":
        assert ids == [old] * len(ids)
        assert unique == -1
    else:
        assert ids == [unique] * len(ids)
        assert _linux.is_unique_mount_id(unique)
