"""Attacks on creation by a real other local user (uid 65534).

Each test names the defence it exercises; where cheap, a control performs the
same attack against the standard library or a naive implementation to show
the attack is real here.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import hardtemp
from _gates import require_root
from _helpers_core import NOBODY, sysctl, umask
from hardtemp import _dirtrust, _names
from hardtemp.exceptions import UnsafeDirectoryError

pytestmark = pytest.mark.attack

SECRET = b"our secret data"


# -- functions the attacker runs (only modules imported before the fork) ---------------


def _plant(entries: list[tuple[str, str, str]]) -> None:  # pragma: no cover - other user
    """Plant ("symlink", path, target) / ("file", path, content) / ("dir", path, "")."""
    for kind, path, arg in entries:
        if kind == "symlink":
            os.symlink(arg, path)
        elif kind == "file":
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            os.write(fd, arg.encode())
            os.close(fd)
        elif kind == "fifo":
            os.mkfifo(path, 0o666)
        else:
            os.mkdir(path, 0o777)
        if kind != "symlink":
            os.chmod(path, 0o777 if kind == "dir" else 0o666)


def _try_read(path: str) -> str:  # pragma: no cover - other user
    try:
        with open(path, "rb") as f:
            return "READ:" + f.read().decode(errors="replace")
    except OSError as exc:
        return type(exc).__name__


def _try_list(path: str) -> str:  # pragma: no cover - other user
    try:
        return "LISTED:" + ",".join(os.listdir(path))
    except OSError as exc:
        return type(exc).__name__


def _try(op: str, *args: str) -> str:  # pragma: no cover - other user
    try:
        if op == "rename":
            os.rename(args[0], args[1])
        elif op == "unlink":
            os.unlink(args[0])
        elif op == "symlink":
            os.symlink(args[0], args[1])
        elif op == "create":
            os.close(os.open(args[0], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        elif op == "mkdir":
            os.mkdir(args[0])
        return "OK"
    except OSError as exc:
        return type(exc).__name__


def _mkdir_own(path: str, mode: int) -> None:  # pragma: no cover - other user
    os.mkdir(path)
    os.chmod(path, mode)


# -- fixtures ---------------------------------------------------------------------------


# -- the planted-names attack, shared with test_attack_aio.py ----------------------------


def plant_the_next_names(
    shared_dir: Path, victim: Path, other_user: Callable[..., Any]
) -> tuple[list[str], dict[str, os.stat_result]]:
    """As the other user, plant at the five names creation will try first (``tmp`` +
    name): a symlink to ``victim``, one to its directory, a file, a directory, a FIFO.
    Returns the names and each planted path's ``lstat``."""
    planted = [f"{i:016d}" for i in range(5)]
    entries = [
        ("symlink", str(shared_dir / f"tmp{planted[0]}"), str(victim)),
        ("symlink", str(shared_dir / f"tmp{planted[1]}"), str(victim.parent)),
        ("file", str(shared_dir / f"tmp{planted[2]}"), "attacker file"),
        ("dir", str(shared_dir / f"tmp{planted[3]}"), ""),
        ("fifo", str(shared_dir / f"tmp{planted[4]}"), ""),
    ]
    other_user(_plant, entries)
    return planted, {p: os.lstat(p) for _, p, _ in entries}


def assert_planted_untouched(
    shared_dir: Path, victim: Path, planted: list[str], before: dict[str, os.stat_result]
) -> None:
    """Nothing of the attacker's was followed, opened, changed or removed."""
    assert victim.read_bytes() == b"original victim contents"
    assert stat.S_IMODE(os.stat(victim).st_mode) == 0o644
    assert sorted(os.listdir(victim.parent)) == ["victim"]
    for p, was in before.items():
        now = os.lstat(p)
        assert (now.st_ino, now.st_uid, now.st_mode, now.st_size) == (
            was.st_ino,
            was.st_uid,
            was.st_mode,
            was.st_size,
        )
    assert (shared_dir / f"tmp{planted[2]}").read_bytes() == b"attacker file"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A root-owned file outside the shared directory that the attacker wants overwritten."""
    p = tmp_path / "victim"
    p.write_bytes(b"original victim contents")
    os.chmod(p, 0o644)
    return p


@pytest.fixture
def force_names(monkeypatch: pytest.MonkeyPatch) -> Callable[[list[str]], list[str]]:
    """Make random_name return ``planted`` first (a collision we cannot cause otherwise)."""
    issued: list[str] = []

    def install(planted: list[str]) -> list[str]:
        queue = list(planted)
        real = _names.random_name

        def fake() -> str:
            name = queue.pop(0) if queue else real()
            issued.append(name)
            return name

        monkeypatch.setattr(_names, "random_name", fake)
        return issued

    return install


# -- pre-planted names --------------------------------------------------------------------

CREATORS: dict[str, Callable[[str], Any]] = {
    "mkstemp": lambda d: hardtemp.mkstemp(dir=d, prefix="tmp"),
    "mkdtemp": lambda d: hardtemp.mkdtemp(dir=d, prefix="tmp"),
    "NamedTemporaryFile": lambda d: hardtemp.NamedTemporaryFile(dir=d, prefix="tmp"),
    "TemporaryDirectory": lambda d: hardtemp.TemporaryDirectory(dir=d, prefix="tmp"),
}


def _path_of(obj: Any) -> str:
    if isinstance(obj, tuple):
        os.close(obj[0])
        return str(obj[1])
    if isinstance(obj, str):
        return obj
    return str(obj.name)


@pytest.mark.parametrize("api", list(CREATORS))
def test_planted_names_are_never_followed_or_opened(
    shared_dir: Path,
    victim: Path,
    other_user: Callable[..., Any],
    force_names: Callable[[list[str]], list[str]],
    api: str,
) -> None:
    # Defence: O_CREAT|O_EXCL|O_NOFOLLOW (files) / mkdir (directories) on a fresh name.
    planted, before = plant_the_next_names(shared_dir, victim, other_user)
    issued = force_names(planted)
    obj = CREATORS[api](str(shared_dir))
    path = _path_of(obj)
    assert issued[:5] == planted  # every planted name was tried first...
    assert os.path.basename(path) == f"tmp{issued[5]}"  # ...and skipped for a fresh one
    st = os.lstat(path)
    assert st.st_uid == 0
    assert not stat.S_ISLNK(st.st_mode)
    if hasattr(obj, "write"):
        obj.write(SECRET)
        obj.flush()
    assert_planted_untouched(shared_dir, victim, planted, before)
    if hasattr(obj, "close"):
        obj.close()
    elif hasattr(obj, "cleanup"):
        obj.cleanup()


def test_planted_names_control_a_naive_create_follows_the_symlink(
    shared_dir: Path, victim: Path, other_user: Callable[..., Any]
) -> None:
    # Control: open(path, "w") (what mktemp() users do) writes through the planted link.
    if sysctl("fs.protected_symlinks") == 1:
        pytest.skip("fs.protected_symlinks=1: the kernel blocks this attack on this machine")
    link = shared_dir / "tmpguessed"
    other_user(_plant, [("symlink", str(link), str(victim))])
    with open(link, "wb") as f:
        f.write(SECRET)
    assert victim.read_bytes() == SECRET


def test_exhausted_names_raise_file_exists_and_touch_nothing(
    shared_dir: Path,
    victim: Path,
    other_user: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Defence: a bounded number of attempts, each with O_EXCL, then FileExistsError.
    from hardtemp import _create

    monkeypatch.setattr(_create, "TMP_MAX", 3)
    monkeypatch.setattr(_names, "random_name", lambda: "a" * 16)
    other_user(_plant, [("symlink", str(shared_dir / f"tmp{'a' * 16}"), str(victim))])
    with pytest.raises(FileExistsError):
        hardtemp.mkstemp(dir=shared_dir, prefix="tmp")
    with pytest.raises(FileExistsError):
        hardtemp.mkdtemp(dir=shared_dir, prefix="tmp")
    assert victim.read_bytes() == b"original victim contents"
    assert os.listdir(shared_dir) == [f"tmp{'a' * 16}"]


def test_unnamed_file_fallback_skips_planted_names(
    shared_dir: Path,
    victim: Path,
    other_user: Callable[..., Any],
    force_names: Callable[[list[str]], list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Defence: the create+unlink fallback of TemporaryFile uses the same O_EXCL|O_NOFOLLOW path.
    from hardtemp import _create

    monkeypatch.setattr(_create, "_UNNAMED_FLAGS", _create._UNNAMED_FLAGS & ~os.O_TMPFILE)
    link = shared_dir / f"tmp{'b' * 16}"
    other_user(_plant, [("symlink", str(link), str(victim))])
    force_names(["b" * 16])
    with hardtemp.TemporaryFile(dir=shared_dir, encrypt=False) as f:
        f.write(SECRET)
        f.flush()
    assert victim.read_bytes() == b"original victim contents"
    assert os.readlink(link) == str(victim)  # the attacker's entry is left alone
    assert os.listdir(shared_dir) == [link.name]


def test_thousands_of_planted_random_names_never_collide(
    shared_dir: Path, victim: Path, other_user: Callable[..., Any]
) -> None:
    # Defence: 80-bit names; an attacker planting many guesses never hits one of ours.
    guesses = [
        ("symlink", str(shared_dir / f"tmp{_names.random_name()}"), str(victim))
        for _ in range(2000)
    ]
    other_user(_plant, guesses)
    for _ in range(500):
        fd, _p = hardtemp.mkstemp(dir=shared_dir)
        os.write(fd, SECRET)
        os.close(fd)
    assert victim.read_bytes() == b"original victim contents"


# -- the attacker cannot read what we create ------------------------------------------------


@pytest.mark.parametrize("mask", [0, 0o022])
def test_other_user_cannot_read_anything_we_create(
    shared_dir: Path, other_user: Callable[..., Any], mask: int
) -> None:
    # Defence: 0600 files / 0700 directories by fchmod, whatever the umask.
    with umask(mask):
        fd, p_mkstemp = hardtemp.mkstemp(dir=shared_dir)
        os.write(fd, SECRET)
        os.close(fd)
        named = hardtemp.NamedTemporaryFile(dir=shared_dir)
        named.write(SECRET)
        named.flush()
        d_mkdtemp = hardtemp.mkdtemp(dir=shared_dir)
        tdir = hardtemp.TemporaryDirectory(dir=shared_dir)
        unnamed = hardtemp.TemporaryFile(dir=shared_dir, encrypt=False)
        unnamed.write(SECRET)
        unnamed.flush()
        inner = []
        for d in (d_mkdtemp, tdir.name):
            p = os.path.join(d, "inner")
            with open(p, "wb") as f:  # by the application, with its umask: 0666 & ~mask
                f.write(SECRET)
            inner.append(p)
    try:
        for path in (p_mkstemp, named.name):
            assert other_user(_try_read, path) == "PermissionError"
        for path in inner:
            assert other_user(_try_read, path) == "PermissionError"
        for d in (d_mkdtemp, tdir.name):
            assert other_user(_try_list, d) == "PermissionError"
        fdpath = f"/proc/{os.getpid()}/fd/{unnamed.fileno()}"
        assert other_user(_try_read, fdpath) == "PermissionError"
    finally:
        named.close()
        tdir.cleanup()
        unnamed.close()


def test_unreadable_control_the_attacker_reads_a_naively_created_file(
    shared_dir: Path, other_user: Callable[..., Any]
) -> None:
    # Control: open()+mkdir() under umask 0 give 0666/0777, and the attacker reads both.
    with umask(0):
        path = shared_dir / "naive"
        with open(path, "wb") as f:
            f.write(SECRET)
        d = shared_dir / "naive-dir"
        d.mkdir()
        (d / "inner").write_bytes(SECRET)
    assert other_user(_try_read, str(path)) == "READ:" + SECRET.decode()
    assert other_user(_try_read, str(d / "inner")) == "READ:" + SECRET.decode()


# -- the attacker's directory ----------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o700, 0o777, 0o1777])
@pytest.mark.parametrize(
    "api", ["mkstemp", "mkdtemp", "NamedTemporaryFile", "TemporaryDirectory", "TemporaryFile"]
)
def test_attacker_owned_directory_is_refused_before_anything_is_created(
    shared_dir: Path, other_user: Callable[..., Any], api: str, mode: int
) -> None:
    # Defence: the directory-trust walk (owner must be root or us), before any creation.
    theirs = shared_dir / "theirs"
    other_user(_mkdir_own, str(theirs), mode)
    create = getattr(hardtemp, api)
    with pytest.raises(UnsafeDirectoryError) as info:
        create(dir=theirs)
    assert info.value.path == str(theirs)
    assert f"owned by uid {NOBODY}" in info.value.reason
    assert os.listdir(theirs) == []


def test_attacker_directory_control_they_can_swap_what_root_creates_there(
    shared_dir: Path, victim: Path, other_user: Callable[..., Any]
) -> None:
    # Control: the stdlib creates in their directory, and they replace our file at will.
    theirs = shared_dir / "theirs"
    other_user(_mkdir_own, str(theirs), 0o755)
    with tempfile.NamedTemporaryFile(dir=theirs, delete=False) as f:
        pass
    assert other_user(_try, "rename", f.name, str(theirs / "stolen")) == "OK"
    assert other_user(_try, "symlink", str(victim), f.name) == "OK"
    with open(f.name, "wb") as g:  # we reopen "our" file by name
        g.write(SECRET)
    assert victim.read_bytes() == SECRET


def test_attacker_symlink_as_dir_is_refused(
    shared_dir: Path, tmp_path: Path, other_user: Callable[..., Any]
) -> None:
    # Defence: a symlink on the way must be owned by root or us.
    ours = tmp_path / "ours"
    ours.mkdir(mode=0o700)
    link = shared_dir / "link"
    other_user(_try, "symlink", str(ours), str(link))
    with pytest.raises(UnsafeDirectoryError) as info:
        hardtemp.mkstemp(dir=link)
    assert info.value.path == str(link)
    assert os.listdir(ours) == []
    # Control: the standard library follows the attacker's link wherever it points.
    fd, p = tempfile.mkstemp(dir=link)
    os.close(fd)
    assert os.listdir(ours) == [os.path.basename(p)]


def test_attacker_cannot_swap_our_named_file_in_a_sticky_directory(
    shared_dir: Path, victim: Path, other_user: Callable[..., Any]
) -> None:
    # Defence: we only accept group/other-writable directories with the sticky bit.
    with hardtemp.NamedTemporaryFile(dir=shared_dir) as f:
        f.write(SECRET)
        f.flush()
        assert other_user(_try, "rename", f.name, str(shared_dir / "stolen")) == "PermissionError"
        assert other_user(_try, "unlink", f.name) == "PermissionError"
        assert other_user(_try, "symlink", str(victim), f.name) == "FileExistsError"
        assert other_user(_try, "create", f.name) == "FileExistsError"
        name = f.name
    assert not os.path.exists(name)
    assert victim.read_bytes() == b"original victim contents"


def test_sticky_control_without_the_sticky_bit_they_can_swap_our_file(
    shared_dir: Path, victim: Path, other_user: Callable[..., Any]
) -> None:
    # Control: in a world-writable directory without the sticky bit the swap works,
    # which is why hardtemp refuses such a directory upfront.
    ww = shared_dir / "ww"
    ww.mkdir()
    os.chmod(ww, 0o777)
    with pytest.raises(UnsafeDirectoryError):
        hardtemp.NamedTemporaryFile(dir=ww)
    assert os.listdir(ww) == []
    fd, name = tempfile.mkstemp(dir=ww)
    os.close(fd)
    assert other_user(_try, "rename", name, str(ww / "stolen")) == "OK"
    assert other_user(_try, "symlink", str(victim), name) == "OK"


def test_attacker_cannot_plant_anything_inside_our_directories(
    shared_dir: Path, victim: Path, other_user: Callable[..., Any]
) -> None:
    # Defence: 0700 directories (mkdtemp, TemporaryDirectory) whatever the umask.
    with umask(0):
        d = hardtemp.mkdtemp(dir=shared_dir)
        t = hardtemp.TemporaryDirectory(dir=shared_dir)
    try:
        for base in (d, t.name):
            assert other_user(_try, "symlink", str(victim), os.path.join(base, "x")) == (
                "PermissionError"
            )
            assert other_user(_try, "create", os.path.join(base, "y")) == "PermissionError"
            assert other_user(_try, "mkdir", os.path.join(base, "z")) == "PermissionError"
            assert os.listdir(base) == []
    finally:
        t.cleanup()
        os.rmdir(d)
    # Control: a directory made with os.mkdir under umask 0 lets them in.
    with umask(0):
        naive = shared_dir / "naive"
        naive.mkdir()
    assert other_user(_try, "symlink", str(victim), str(naive / "x")) == "OK"


def test_attacker_chmod_of_cached_directory_is_impossible_and_mode_change_is_detected(
    shared_dir: Path, other_user: Callable[..., Any]
) -> None:
    # Defence: the trust cache re-checks the mode; the attacker cannot chmod our dir anyway.
    ours = shared_dir / "ours"
    ours.mkdir(mode=0o755)
    _dirtrust.trusted_dir(ours)

    def chmod(path: str) -> str:  # pragma: no cover - other user
        try:
            os.chmod(path, 0o777)
            return "OK"
        except OSError as exc:
            return errno.errorcode[exc.errno]

    assert other_user(chmod, str(ours)) == "EPERM"
    os.chmod(ours, 0o777)  # as if we (or root) made the mistake
    with pytest.raises(UnsafeDirectoryError):
        hardtemp.mkstemp(dir=ours)
    assert os.listdir(ours) == []


def _set_acl(path: Path, name: str, entries: list[tuple[int, int, int]]) -> None:
    blob = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)
    try:
        os.setxattr(path, name, blob)
    except OSError as exc:
        pytest.skip(f"POSIX ACLs unsupported here: {exc}")


def test_default_acl_of_the_directory_does_not_open_our_files(
    shared_dir: Path, other_user: Callable[..., Any]
) -> None:
    # Defence: mode 0600/0700 (fchmod) makes the ACL mask ---, bounding every named entry.
    u = 0xFFFFFFFF
    d = shared_dir / "acl"
    d.mkdir(mode=0o700)
    # access ACL u:nobody:r-x (they may enter; mask r-x: not writable, so trusted) and
    # default ACL u:nobody:rwx, inherited by everything created inside.
    _set_acl(
        d, "system.posix_acl_access", [(1, 7, u), (2, 5, NOBODY), (4, 0, u), (16, 5, u), (32, 0, u)]
    )
    _set_acl(
        d,
        "system.posix_acl_default",
        [(1, 7, u), (2, 7, NOBODY), (4, 0, u), (16, 7, u), (32, 0, u)],
    )
    hardtemp.check_dir(d)
    fd, path = hardtemp.mkstemp(dir=d)
    os.write(fd, SECRET)
    os.close(fd)
    with hardtemp.NamedTemporaryFile(dir=d) as f:
        f.write(SECRET)
        f.flush()
        assert other_user(_try_read, path) == "PermissionError"
        assert other_user(_try_read, f.name) == "PermissionError"
    tdir = hardtemp.mkdtemp(dir=d)
    with open(os.path.join(tdir, "inner"), "wb") as g:
        g.write(SECRET)
    assert other_user(_try_read, os.path.join(tdir, "inner")) == "PermissionError"
    # Control: a file created the ordinary way (0666 & ~umask) inherits u:nobody with mask rw-.
    naive = d / "naive"
    with umask(0o022):
        naive.write_bytes(SECRET)
    assert other_user(_try_read, str(naive)) == "READ:" + SECRET.decode()


@pytest.mark.parametrize("change", ["replaced by another user's directory", "made 0777"])
def test_a_cached_directory_that_changed_is_never_used_by_an_unnamed_plain_file(
    shared_dir: Path, change: str
) -> None:
    # TemporaryFile(encrypt=False) takes the cached verification's bare descriptor (as
    # mkstemp does): the path must still lead to the verified inode, whose mode must still
    # pass, or the directory is walked again and refused.
    require_root("to give a directory to another user")
    ours = shared_dir / "ours"
    ours.mkdir(mode=0o700)
    with hardtemp.TemporaryFile(dir=ours, encrypt=False) as f:  # verified and cached
        f.write(b"x")
    if change == "made 0777":
        os.chmod(ours, 0o777)  # as if we (or root) made the mistake
        target = ours
    else:
        ours.rename(shared_dir / "moved")  # root or us only (the parent is sticky)
        target = shared_dir / "ours"
        target.mkdir(mode=0o777)
        os.chown(target, NOBODY, NOBODY)
    with pytest.raises(UnsafeDirectoryError):
        hardtemp.TemporaryFile(dir=target, encrypt=False)
    assert os.listdir(target) == []
