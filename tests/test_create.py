"""Creation: exact modes whatever the umask, fstat verification, close-on-exec,
audit events, concurrency, no descriptor leaks, unnamed files leave nothing."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import gc
import os
import re
import resource
import signal
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import hardtemp
from _gates import needs_root, require_root
from _helpers_core import NOBODY, make_dir, nobody_dir, open_fds, umask
from _helpers_euid import as_euid
from hardtemp import _create, _dirtrust, _inode, _linux
from hardtemp.exceptions import UnsafeFileError

UMASKS = [0, 0o022, 0o077, 0o277, 0o777]

# -- audit events: hooks cannot be removed, so one module-level hook records -------
_AUDIT: list[tuple[str, tuple[Any, ...]]] = []


def _audit_hook(event: str, args: tuple[Any, ...]) -> None:
    if event.startswith(("tempfile.", "hardtemp.")):
        _AUDIT.append((event, args))


sys.addaudithook(_audit_hook)


@pytest.fixture
def audit() -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
    _AUDIT.clear()
    yield _AUDIT
    _AUDIT.clear()


# -- modes ------------------------------------------------------------------------


def _modes_of_everything(d: str) -> dict[str, int]:
    """Create with every API in ``d``; return the permission bits of each."""
    modes: dict[str, int] = {}
    fd, path = hardtemp.mkstemp(dir=d)
    modes["mkstemp"] = stat.S_IMODE(os.fstat(fd).st_mode)
    assert stat.S_IMODE(os.stat(path).st_mode) == modes["mkstemp"]
    os.close(fd)
    modes["mkdtemp"] = stat.S_IMODE(os.stat(hardtemp.mkdtemp(dir=d)).st_mode)
    with hardtemp.NamedTemporaryFile(dir=d) as f:
        modes["NamedTemporaryFile"] = stat.S_IMODE(os.stat(f.name).st_mode)
    with hardtemp.TemporaryFile(dir=d, encrypt=False) as t:
        modes["TemporaryFile"] = stat.S_IMODE(os.fstat(t.fileno()).st_mode)
    with hardtemp.TemporaryDirectory(dir=d) as name:
        modes["TemporaryDirectory"] = stat.S_IMODE(os.stat(name).st_mode)
    return modes


EXPECTED_MODES = {
    "mkstemp": 0o600,
    "mkdtemp": 0o700,
    "NamedTemporaryFile": 0o600,
    "TemporaryFile": 0o600,
    "TemporaryDirectory": 0o700,
}


@pytest.mark.parametrize("mask", UMASKS, ids=oct)
def test_modes_are_exact_whatever_the_umask(tmp_path: Path, mask: int) -> None:
    with umask(mask):
        modes = _modes_of_everything(str(tmp_path))
    assert modes == EXPECTED_MODES


def _modes_as_other_user(d: str, masks: list[int]) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for mask in masks:
        os.umask(mask)
        try:
            out[mask] = _modes_of_everything(d)
        except Exception as exc:
            out[mask] = f"{type(exc).__name__}: {exc}"
    return out


def test_modes_are_exact_whatever_the_umask_for_a_non_root_user(
    shared_dir: Path, other_user: Callable[..., Any]
) -> None:
    # Root ignores permissions; an ordinary user cannot even open a 0000 directory.
    d = nobody_dir(shared_dir)
    result = other_user(_modes_as_other_user, str(d), UMASKS)
    assert result == dict.fromkeys(UMASKS, EXPECTED_MODES)
    for entry in os.scandir(d):
        st = entry.stat(follow_symlinks=False)
        assert st.st_uid == NOBODY
        assert stat.S_IMODE(st.st_mode) in (0o600, 0o700)


def test_mkdtemp_under_umask_0777_as_non_root_leaves_exactly_its_directory(
    shared_dir: Path, other_user: Callable[..., Any]
) -> None:
    d = nobody_dir(shared_dir)

    def make() -> str:
        os.umask(0o777)
        return hardtemp.mkdtemp(dir=str(d))

    path = other_user(make)
    assert os.listdir(d) == [os.path.basename(path)]


def _everything_in_unreadable_dir(d: str) -> dict[str, Any]:  # pragma: no cover - child
    os.chmod(d, 0o300)  # write+search, no read: only an O_PATH handle is possible
    out: dict[str, Any] = {}
    fd, p = hardtemp.mkstemp(dir=d)
    os.close(fd)
    os.unlink(p)
    with hardtemp.NamedTemporaryFile(dir=d) as f:
        f.write(b"x")
        out["named"] = f.name
    with hardtemp.TemporaryDirectory(dir=d) as t:
        os.mkdir(os.path.join(t, "sub"))
        out["tdir"] = t
    with hardtemp.TemporaryFile(dir=d, encrypt=False) as u:
        u.write(b"x")
    out["left"] = [os.path.exists(out["named"]), os.path.exists(out["tdir"])]
    os.chmod(d, 0o700)
    out["listing"] = os.listdir(d)
    return out


def test_write_only_directory_works_for_a_non_root_user(
    shared_dir: Path, other_user: Callable[..., Any]
) -> None:
    d = nobody_dir(shared_dir)
    result = other_user(_everything_in_unreadable_dir, str(d))
    assert result["left"] == [False, False]
    assert result["listing"] == []


# -- fstat verification ----------------------------------------------------------------


def test_verify_rejects_every_impostor_shape(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"")
    os.chmod(f, 0o600)
    _create._verify(os.stat(f), str(f), directory=False)  # the good shape passes
    cases: list[tuple[Callable[[], os.stat_result], bool, str]] = []

    def readable() -> os.stat_result:
        os.chmod(f, 0o640)
        try:
            return os.stat(f)
        finally:
            os.chmod(f, 0o600)

    cases = [
        (readable, False, "group/other bits"),
        (lambda: os.stat(tmp_path), False, "not a regular file"),
        (lambda: os.stat(f), True, "not a directory"),
    ]
    for get, directory, why in cases:
        with pytest.raises(UnsafeFileError, match=why) as info:
            _create._verify(get(), str(f), directory=directory)
        assert info.value.path == str(f)


@needs_root("to give a file to another user")
def test_verify_rejects_a_file_owned_by_another_user(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"")
    os.chmod(f, 0o600)
    os.chown(f, NOBODY, NOBODY)
    with pytest.raises(UnsafeFileError, match=f"owned by uid {NOBODY}") as info:
        _create._verify(os.stat(f), str(f), directory=False)
    assert info.value.path == str(f)


def test_verify_accepts_a_second_link_to_the_file_we_just_made(tmp_path: Path) -> None:
    # O_EXCL made the inode: a second name is someone's hard link, not an impostor.
    f = tmp_path / "f"
    f.write_bytes(b"")
    os.chmod(f, 0o600)
    os.link(f, tmp_path / "second")
    _create._verify(os.stat(f), str(f), directory=False)


def test_a_new_file_linked_before_it_is_checked_is_still_handed_out(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The race (another user hard-links the new file between open and its check, possible
    # where fs.protected_hardlinks=0) cannot be won on demand: make the link from inside
    # the check's statx of the new file instead (the real inotify attack:
    # tests/attack/test_attack_links.py).
    linked: list[int] = []
    real_statx = _create.statx_raw

    def link_before_statx(fd: int, *args: Any) -> bytes:
        if not linked:
            linked.append(fd)
            os.link(os.readlink(f"/proc/self/fd/{fd}"), shared_dir / "attacker-link")
        return real_statx(fd, *args)

    monkeypatch.setattr(_create, "statx_raw", link_before_statx)
    fd, path = hardtemp.mkstemp(dir=shared_dir)
    monkeypatch.undo()
    os.close(fd)
    assert linked
    assert os.stat(path).st_nlink == 2
    assert sorted(os.listdir(shared_dir)) == sorted(["attacker-link", os.path.basename(path)])


@needs_root("to give the new file to another user")
def test_a_new_file_failing_verification_is_not_left_behind(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An impostor shape cannot be made on demand between open and its check: give the new
    # file away from inside the check's statx (as a swapped-in inode would look).
    given: list[int] = []
    real_statx = _create.statx_raw

    def chown_before_statx(fd: int, *args: Any) -> bytes:
        if not given:
            given.append(fd)
            os.fchown(fd, NOBODY, NOBODY)
        return real_statx(fd, *args)

    monkeypatch.setattr(_create, "statx_raw", chown_before_statx)
    with pytest.raises(UnsafeFileError, match=f"owned by uid {NOBODY}"):
        hardtemp.mkstemp(dir=shared_dir)
    monkeypatch.undo()
    assert given
    assert os.listdir(shared_dir) == []  # our name is gone


@needs_root("to give the new file to another user")
def test_without_statx_a_new_file_failing_verification_is_not_left_behind(
    shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A libc without statx: the check takes the fstat, given away from inside it.
    given: list[int] = []

    class ChownBeforeFstat:
        def __getattr__(self, name: str) -> Any:
            return getattr(os, name)

        def fstat(self, fd: int) -> os.stat_result:
            if not given:
                given.append(fd)
                os.fchown(fd, NOBODY, NOBODY)
            return os.fstat(fd)

    monkeypatch.setattr(_linux, "_statx", None)
    monkeypatch.setattr(_create, "os", ChownBeforeFstat())
    with pytest.raises(UnsafeFileError, match=f"owned by uid {NOBODY}"):
        hardtemp.mkstemp(dir=shared_dir)
    monkeypatch.undo()
    assert given
    assert os.listdir(shared_dir) == []  # our name is gone


def test_unlink_verified_leaves_a_swapped_name_alone(tmp_path: Path) -> None:
    # The create+unlink fallback removes the name only while it is still our inode.
    handle = _dirtrust.trusted_dir(tmp_path)
    fd, made = _create.create_file(handle, str(tmp_path), "tmp", "")
    os.close(fd)
    os.rename(made.path, tmp_path / "ours")
    Path(made.path).write_bytes(b"impostor")
    with pytest.raises(UnsafeFileError):
        _inode.unlink_verified(made.handle.fd, made.name, (made.dev, made.ino), str(made.path))
    assert Path(made.path).read_bytes() == b"impostor"
    os.unlink(tmp_path / "ours")
    os.unlink(made.path)
    with pytest.raises(FileNotFoundError):
        _inode.unlink_verified(made.handle.fd, made.name, (made.dev, made.ino), str(made.path))


# -- close-on-exec ---------------------------------------------------------------------


def _cloexec(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)


def test_every_descriptor_is_close_on_exec(tmp_path: Path) -> None:
    fd, _ = hardtemp.mkstemp(dir=tmp_path)
    named = hardtemp.NamedTemporaryFile(dir=tmp_path)
    unnamed = hardtemp.TemporaryFile(dir=tmp_path, encrypt=False)
    handle = _dirtrust.trusted_dir(tmp_path)
    try:
        for d in (fd, named.fileno(), unnamed.fileno(), handle.fd):
            assert _cloexec(d)
            assert not os.get_inheritable(d)
    finally:
        os.close(fd)
        named.close()
        unnamed.close()


def test_descriptors_do_not_reach_an_executed_program(tmp_path: Path) -> None:
    fd, path = hardtemp.mkstemp(dir=tmp_path)
    named = hardtemp.NamedTemporaryFile(dir=tmp_path, suffix=".named")
    # Control: a deliberately inheritable duplicate does reach the program.
    leak_path = tmp_path / "control"
    leak_fd = os.open(leak_path, os.O_RDWR | os.O_CREAT, 0o600)
    os.set_inheritable(leak_fd, True)
    try:
        out = subprocess.run(
            ["ls", "-l", "/proc/self/fd/"],
            close_fds=False,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.close(fd)
        os.close(leak_fd)
        named.close()
    assert str(leak_path) in out  # the check can see an inherited descriptor
    assert path not in out
    assert ".named" not in out
    assert str(tmp_path) not in out.replace(str(leak_path), "")  # not even the directory


# -- audit events -----------------------------------------------------------------------


def test_mkstemp_and_mkdtemp_raise_the_standard_audit_events(
    tmp_path: Path, audit: list[tuple[str, tuple[Any, ...]]]
) -> None:
    fd, path = hardtemp.mkstemp(dir=tmp_path)
    os.close(fd)
    dpath = hardtemp.mkdtemp(dir=tmp_path)
    assert ("tempfile.mkstemp", (path,)) in audit
    assert ("tempfile.mkdtemp", (dpath,)) in audit


def test_file_objects_raise_creation_and_removal_events(
    tmp_path: Path, audit: list[tuple[str, tuple[Any, ...]]]
) -> None:
    with hardtemp.NamedTemporaryFile(dir=tmp_path) as f:
        name = f.name
    with hardtemp.TemporaryDirectory(dir=tmp_path) as d:
        pass
    assert ("tempfile.mkstemp", (name,)) in audit
    assert ("hardtemp.remove", (name,)) in audit
    assert ("tempfile.mkdtemp", (d,)) in audit
    assert ("hardtemp.rmtree", (d,)) in audit


def test_public_wipe_raises_its_audit_event(
    tmp_path: Path, audit: list[tuple[str, tuple[Any, ...]]]
) -> None:
    victim = tmp_path / "exported.csv"
    victim.write_bytes(b"data")
    hardtemp.wipe(str(victim))
    assert ("hardtemp.wipe", (str(victim),)) in audit
    assert not victim.exists()


def test_no_event_for_a_refused_directory(
    tmp_path: Path, audit: list[tuple[str, tuple[Any, ...]]]
) -> None:
    ww = make_dir(tmp_path / "ww", 0o777)
    with pytest.raises(PermissionError):
        hardtemp.mkstemp(dir=ww)
    assert audit == []


# -- concurrency ----------------------------------------------------------------------------

PROCS = 4
PER_PROC = 1500


def _creator(d: str, go_fd: int, out_path: str) -> None:  # pragma: no cover - child
    os.read(go_fd, 1)  # everyone starts at once
    names = []
    for i in range(PER_PROC):
        if i % 3 == 0:
            names.append(hardtemp.mkdtemp(dir=d))
        else:
            fd, p = hardtemp.mkstemp(dir=d)
            os.close(fd)
            names.append(p)
    with open(out_path, "w") as out:
        out.write("\n".join(names))


def test_four_processes_creating_thousands_of_files_at_once_never_collide(tmp_path: Path) -> None:
    d = make_dir(tmp_path / "shared", 0o700)
    rfd, wfd = os.pipe()
    pids = []
    for n in range(PROCS):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 1
            try:
                os.close(wfd)
                _creator(str(d), rfd, str(tmp_path / f"out{n}"))
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    os.close(rfd)
    os.write(wfd, b"x" * PROCS)
    os.close(wfd)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    names: list[str] = []
    for n in range(PROCS):
        names += (tmp_path / f"out{n}").read_text().split("\n")
    assert len(names) == PROCS * PER_PROC
    assert len(set(names)) == len(names)
    assert sorted(os.listdir(d)) == sorted(os.path.basename(n) for n in names)


@pytest.mark.parametrize("lock", ["_dirtrust._cache_lock", "_tempdir._lock"])
def test_fork_while_another_thread_holds_a_lock_does_not_hang_the_child(
    tmp_path: Path, lock: str
) -> None:
    from hardtemp import _tempdir

    module, attr = lock.split(".")
    held = getattr({"_dirtrust": _dirtrust, "_tempdir": _tempdir}[module], attr)
    _dirtrust.clear_cache()
    _tempdir.tempdir = None  # so the child must take _tempdir's lock too
    assert held.acquire(timeout=5)  # as another thread would hold it at fork()
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 1
            try:
                hardtemp.mkstemp(dir=tmp_path)
                hardtemp.gettempdir()
                code = 0
            finally:
                os._exit(code)
    finally:
        held.release()
    for _ in range(200):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the child hung on a lock held at fork time")
    assert os.waitstatus_to_exitcode(status) == 0


# -- no descriptor leaks ------------------------------------------------------------------------

CYCLES = 1000


def _cycle_all(d: str, ww: str) -> None:
    fd, p = hardtemp.mkstemp(dir=d)
    os.close(fd)
    os.unlink(p)
    os.rmdir(hardtemp.mkdtemp(dir=d))
    with hardtemp.NamedTemporaryFile(dir=d) as f:
        f.write(b"x")
    f2 = hardtemp.NamedTemporaryFile(dir=d, delete_on_close=False)
    f2.close()
    del f2
    with hardtemp.TemporaryDirectory(dir=d) as t:
        os.mkdir(os.path.join(t, "sub"))
        with open(os.path.join(t, "sub", "f"), "wb"):
            pass
    with hardtemp.TemporaryFile(dir=d, encrypt=False) as u:
        u.write(b"x")
    with hardtemp.TemporaryFile(dir=d) as u:
        u.write(b"x")
    with hardtemp.SpooledTemporaryFile(max_size=4, dir=d) as s:
        s.write(b"123456")
    hardtemp.check_dir(d)
    with contextlib.suppress(PermissionError):
        hardtemp.mkstemp(dir=ww)
    with contextlib.suppress(ValueError):
        hardtemp.NamedTemporaryFile(dir=d, prefix="a/b")


def test_no_descriptor_leaks_over_thousands_of_cycles_of_every_api(tmp_path: Path) -> None:
    d = str(make_dir(tmp_path / "d", 0o700))
    ww = str(make_dir(tmp_path / "ww", 0o777))
    _cycle_all(d, ww)  # warm the trust cache
    before = open_fds()
    for _ in range(CYCLES):
        _cycle_all(d, ww)
    assert open_fds() == before
    assert os.listdir(d) == []


def test_no_descriptor_leaks_when_creating_in_many_directories(tmp_path: Path) -> None:
    _dirtrust.clear_cache()
    before = open_fds()
    for i in range(300):
        sub = make_dir(tmp_path / f"d{i}", 0o700)
        fd, _ = hardtemp.mkstemp(dir=sub)
        os.close(fd)
    # The trust cache keeps at most its bound of descriptors.
    assert len(open_fds() - before) <= _dirtrust._CACHE_SIZE
    _dirtrust.clear_cache()
    assert open_fds() == before


# -- unnamed files ------------------------------------------------------------------------------


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "encrypted"])
def test_temporary_file_has_no_directory_entry(tmp_path: Path, encrypt: bool) -> None:
    with hardtemp.TemporaryFile(dir=tmp_path, encrypt=encrypt) as f:
        f.write(b"data")
        f.flush()
        assert os.listdir(tmp_path) == []
        f.seek(0)
        assert f.read() == b"data"
    assert os.listdir(tmp_path) == []


def test_temporary_file_without_o_tmpfile_is_unlinked_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fault we cannot cause here (every local filesystem has O_TMPFILE): force the fallback.
    monkeypatch.setattr(_create, "_UNNAMED_FLAGS", _create._UNNAMED_FLAGS & ~os.O_TMPFILE)
    for _ in range(2):  # the first walks the directory, the second finds it cached
        with hardtemp.TemporaryFile(dir=tmp_path, encrypt=False) as f:
            assert os.listdir(tmp_path) == []
            st = os.fstat(f.fileno())
            assert st.st_nlink == 0
            assert stat.S_IMODE(st.st_mode) == 0o600
            f.write(b"abc")
            f.seek(0)
            assert f.read() == b"abc"


def _child_holding_temp_file(d: str, kind: str, report_fd: int) -> None:  # pragma: no cover
    if kind == "named":
        f: Any = hardtemp.NamedTemporaryFile(dir=d)
    else:
        f = hardtemp.TemporaryFile(dir=d, encrypt=kind == "encrypted")
    f.write(b"secret" * 1000)
    f.flush()
    fd = f.fileno() if kind != "encrypted" else _only_fd_in(d)
    os.write(report_fd, str(fd).encode())
    os.close(report_fd)
    while True:
        time.sleep(10)


def _only_fd_in(d: str) -> int:  # pragma: no cover - child
    for n in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{n}").startswith(d + "/"):
                return int(n)
        except OSError:
            pass
    raise AssertionError("no descriptor in the directory")


@pytest.mark.parametrize("kind", ["plain", "encrypted", "named"])
def test_nothing_is_left_after_sigkill(tmp_path: Path, kind: str) -> None:
    d = str(make_dir(tmp_path / "d", 0o700))
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(rfd)
            _child_holding_temp_file(d, kind, wfd)
        finally:
            os._exit(1)
    os.close(wfd)
    try:
        fd = int(os.read(rfd, 64))
        link = os.readlink(f"/proc/{pid}/fd/{fd}")
        entries = os.listdir(d)
    finally:
        os.close(rfd)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    after = os.listdir(d)
    if kind == "named":
        # Control: a named file survives SIGKILL; the test can tell.
        assert len(entries) == 1
        assert after == entries
        return
    assert re.fullmatch(rf"{re.escape(d)}/#\d+ \(deleted\)", link), link  # O_TMPFILE
    assert entries == []
    assert after == []


class _Inotify:
    """The kernel's own record of names created in a directory (inotify via libc)."""

    IN_CREATE = 0x100
    IN_DELETE = 0x200

    def __init__(self, path: Path) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            pytest.skip("inotify is not available")
        mask = self.IN_CREATE | self.IN_DELETE
        if libc.inotify_add_watch(self.fd, os.fsencode(path), mask) < 0:
            os.close(self.fd)
            pytest.skip("inotify_add_watch failed")

    def events(self) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return out
        while data:
            _wd, mask, _cookie, length = struct.unpack("iIII", data[:16])
            name = data[16 : 16 + length].rstrip(b"\0").decode()
            out.append((mask & (self.IN_CREATE | self.IN_DELETE), name))
            data = data[16 + length :]
        return out

    def close(self) -> None:
        os.close(self.fd)


def test_unnamed_file_never_has_a_name_even_for_a_moment(tmp_path: Path) -> None:
    # O_TMPFILE: no directory entry ever exists, so no SIGKILL at any instant leaves one.
    watch = _Inotify(tmp_path)
    try:
        with hardtemp.TemporaryFile(dir=tmp_path, encrypt=False) as f:
            link = os.readlink(f"/proc/self/fd/{f.fileno()}")
            f.write(b"x")
        assert watch.events() == []
    finally:
        watch.close()
    assert re.fullmatch(rf"{re.escape(str(tmp_path))}/#\d+ \(deleted\)", link), link


def test_unnamed_control_the_create_unlink_fallback_has_a_name_for_a_moment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Control: the fallback (kernels/filesystems without O_TMPFILE) is seen by inotify.
    monkeypatch.setattr(_create, "_UNNAMED_FLAGS", _create._UNNAMED_FLAGS & ~os.O_TMPFILE)
    watch = _Inotify(tmp_path)
    try:
        with hardtemp.TemporaryFile(dir=tmp_path, encrypt=False):
            pass
        kinds = [k for k, _ in watch.events()]
    finally:
        watch.close()
    assert kinds == [_Inotify.IN_CREATE, _Inotify.IN_DELETE]


def test_unnamed_file_is_not_reachable_by_name(tmp_path: Path) -> None:
    with hardtemp.TemporaryFile(dir=tmp_path, encrypt=False) as f:
        link = os.readlink(f"/proc/self/fd/{f.fileno()}")
        assert not os.path.exists(link.removesuffix(" (deleted)"))
        # O_TMPFILE|O_EXCL: the inode can never be given a name.
        with pytest.raises(OSError):
            os.link(f"/proc/self/fd/{f.fileno()}", tmp_path / "linked", follow_symlinks=True)
    assert os.listdir(tmp_path) == []


def test_gc_of_everything_is_clean(tmp_path: Path) -> None:
    # Objects dropped without close are finalized without errors or leftovers.
    f = hardtemp.NamedTemporaryFile(dir=tmp_path)
    t = hardtemp.TemporaryFile(dir=tmp_path, encrypt=False)
    holder = [hardtemp.TemporaryDirectory(dir=tmp_path)]
    with pytest.warns(ResourceWarning, match="Implicitly cleaning up"):
        holder.clear()  # the last reference: finalized right here
    del f, t
    gc.collect()
    assert os.listdir(tmp_path) == []


# --- unusual directories and faults, in this process -------------------------------------------


def test_mkdtemp_under_umask_0777_as_an_ordinary_user_gives_a_usable_0700_directory(
    shared_dir: Path,
) -> None:
    # mkdir under umask 0o777 gives d---------: we cannot even open it, only fix it by inode.
    d = nobody_dir(shared_dir)
    with as_euid(NOBODY), umask(0o777):
        path = hardtemp.mkdtemp(dir=str(d))
        fd, inner = hardtemp.mkstemp(dir=path)
        os.close(fd)
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o700
    assert st.st_uid == NOBODY
    assert os.listdir(d) == [os.path.basename(path)]
    assert os.listdir(path) == [os.path.basename(inner)]


def _swap_new_dir_for(
    monkeypatch: pytest.MonkeyPatch, directory: Path, impostor: Path
) -> list[str]:
    """After our mkdir, the name is made to refer to ``impostor`` (an attacker's rename)."""
    real = os.mkdir
    made: list[str] = []

    def mkdir_then_swap(name: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        real(name, mode, dir_fd=dir_fd)
        made.append(os.fsdecode(name))
        os.rename(impostor, directory / os.fsdecode(name))  # replaces our empty directory

    monkeypatch.setattr(_create.os, "mkdir", mkdir_then_swap)
    return made


def test_an_unreadable_directory_swapped_in_for_ours_is_refused_never_chmodded(
    shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = nobody_dir(shared_dir)
    impostor = make_dir(d / "impostor", 0o000)  # root's, unreadable to us
    made = _swap_new_dir_for(monkeypatch, d, impostor)
    with as_euid(NOBODY), umask(0o777):
        handle, base = _create.resolve_dir(str(d), str)
        with pytest.raises(UnsafeFileError, match="owned by uid 0"):
            _create.create_dir(handle, base, "tmp", "")
    monkeypatch.undo()
    st = os.stat(d / made[0])
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o000)  # left exactly as it was


@pytest.mark.parametrize("mode", [0o700, 0o755])
def test_a_directory_swapped_in_for_ours_is_refused_never_chmodded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int
) -> None:
    require_root("to make another user's directory")
    d = make_dir(tmp_path / "d", 0o755)
    impostor = make_dir(tmp_path / "d" / "impostor", mode, NOBODY, NOBODY)
    handle, base = _create.resolve_dir(str(d), str)
    made = _swap_new_dir_for(monkeypatch, d, impostor)
    before = open_fds()
    with pytest.raises(UnsafeFileError, match="owned by uid 65534"):
        _create.create_dir(handle, base, "tmp", "")
    monkeypatch.undo()
    assert open_fds() == before
    st = os.stat(d / made[0])
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (NOBODY, mode)  # not even chmod-ed


def test_running_out_of_descriptors_after_mkdir_leaves_no_directory(tmp_path: Path) -> None:
    # Real EMFILE: the descriptor limit is lowered to the next free descriptor number.
    handle, base = _create.resolve_dir(str(tmp_path), str)
    probe = os.dup(0)
    os.close(probe)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (probe, hard))
    try:
        with pytest.raises(OSError) as info:
            _create.create_dir(handle, base, "tmp", "")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert info.value.errno == errno.EMFILE
    assert os.listdir(tmp_path) == []


def test_an_unnamed_file_on_a_filesystem_without_free_inodes_raises_enospc(
    tmp_path: Path,
) -> None:
    require_root("to mount a tmpfs")
    mnt = tmp_path / "full"
    mnt.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,nr_inodes=2,mode=0755", "tmpfs", str(mnt)],
        check=True,
    )
    try:
        (mnt / "one").mkdir()  # the last free inode
        handle, base = _create.resolve_dir(str(mnt), str)
        with pytest.raises(OSError) as info:
            _create.create_unnamed(handle, base, "tmp", "")
        left = sorted(os.listdir(mnt))
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
    assert info.value.errno == errno.ENOSPC
    assert left == ["one"]


def test_mkstemp_keeps_no_descriptor_but_the_one_it_returns(tmp_path: Path) -> None:
    # Nothing of ours may pin the directory once the call returns (umount must work), on the
    # walk that verifies the directory and on the cached path that reopens it.
    d = make_dir(tmp_path / "d", 0o700)
    before = open_fds()
    fd1, _ = hardtemp.mkstemp(dir=d)  # walked
    fd2, _ = hardtemp.mkstemp(dir=str(d).encode())  # cached, as bytes
    fd3, p3 = hardtemp.mkstemp(dir=d)  # cached
    try:
        assert open_fds() - before == {fd1, fd2, fd3}
        assert p3 == f"{d}/{os.path.basename(p3)}"
    finally:
        for fd in (fd1, fd2, fd3):
            os.close(fd)


def test_mkstemp_in_the_default_directory_refuses_it_once_it_became_unsafe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The default directory is verified at every use, cached or not: made writable by all
    # after the first call, the next one refuses it and creates nothing there.
    from hardtemp import _tempdir
    from hardtemp.exceptions import UnsafeDirectoryError

    d = make_dir(tmp_path / "d", 0o700)
    monkeypatch.setattr(_tempdir, "tempdir", str(d))
    fd, path = hardtemp.mkstemp()
    os.close(fd)
    assert os.path.dirname(path) == str(d)
    os.chmod(d, 0o777)
    with pytest.raises(UnsafeDirectoryError) as info:
        hardtemp.mkstemp()
    assert info.value.path == str(d)
    assert os.listdir(d) == [os.path.basename(path)]
