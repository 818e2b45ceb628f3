"""Directory trust: every hostile directory shape is refused, naming the component and the rule."""

from __future__ import annotations

import errno
import os
import pickle
import stat
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import hardtemp
from _gates import needs_root
from _helpers_core import NOBODY, make_dir, start_threads
from _helpers_euid import as_euid
from hardtemp import _dirtrust
from hardtemp._codes import TrustReason
from hardtemp.exceptions import UnsafeDirectoryError

pytestmark = needs_root("to make other users' dirs")


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    _dirtrust.clear_cache()


def refused(path: Path | str, component: Path | str, reason: str) -> UnsafeDirectoryError:
    """check_dir, trusted_dir and mkstemp all refuse ``path``, naming ``component``."""
    with pytest.raises(UnsafeDirectoryError) as info:
        hardtemp.check_dir(path)
    exc = info.value
    assert exc.path == str(component)
    assert reason in exc.reason
    assert getattr(exc.reason, "code", None) in set(TrustReason)  # every refusal says its rule
    assert isinstance(exc, PermissionError)
    assert exc.errno == errno.EACCES
    with pytest.raises(UnsafeDirectoryError):
        _dirtrust.trusted_dir(path)
    before = os.listdir(path) if os.path.isdir(path) else None
    with pytest.raises(UnsafeDirectoryError):
        hardtemp.mkstemp(dir=path)
    if before is not None:
        assert os.listdir(path) == before  # refused before anything was created
    return exc


def test_check_dir_reports_every_component(tmp_path: Path) -> None:
    report = hardtemp.check_dir(tmp_path)
    assert isinstance(report, hardtemp.TrustReport)
    assert report.path == str(tmp_path)
    assert report.real_path == str(tmp_path)
    paths = [c.path for c in report.components]
    expected = ["/"]
    for part in tmp_path.parts[1:]:
        expected.append(os.path.join(expected[-1], part))
    assert paths == expected
    assert all(c.kind == "directory" for c in report.components)
    tmp = next(c for c in report.components if c.path == "/tmp")
    assert "sticky" in tmp.why
    text = str(report)
    assert str(tmp_path) in text
    assert "drwx" in text


def test_check_dir_accepts_bytes_and_pathlike(tmp_path: Path) -> None:
    assert hardtemp.check_dir(os.fsencode(tmp_path)).real_path == str(tmp_path)
    assert hardtemp.check_dir(tmp_path).real_path == str(tmp_path)


def test_root_is_trusted() -> None:
    report = hardtemp.check_dir("/")
    assert report.real_path == "/"


def test_world_writable_without_sticky_bit_is_refused(tmp_path: Path) -> None:
    d = make_dir(tmp_path / "ww", 0o777)
    refused(d, d, "writable by others without the sticky bit")


def test_group_writable_without_sticky_bit_is_refused(tmp_path: Path) -> None:
    d = make_dir(tmp_path / "gw", 0o770)
    refused(d, d, "writable by its group without the sticky bit")


def _grant_acl_write(path: Path, uid: int) -> None:
    """setfacl -m u:<uid>:rwx, via the raw system.posix_acl_access xattr."""
    undefined = 0xFFFFFFFF
    entries = [(0x01, 7, undefined), (0x02, 7, uid), (0x04, 0, undefined)]
    entries += [(0x10, 7, undefined), (0x20, 0, undefined)]
    blob = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)
    try:
        os.setxattr(path, "system.posix_acl_access", blob)
    except OSError as exc:
        pytest.skip(f"POSIX ACLs unsupported here: {exc}")


def test_acl_granting_another_user_write_is_refused(
    shared_dir: Path, other_user: Callable[..., Any]
) -> None:
    # The ACL mask shows up as group bits: a 0700 directory plus u:nobody:rwx is 0770.
    d = make_dir(shared_dir / "acl", 0o700)
    _grant_acl_write(d, NOBODY)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o770
    # Control: the other user really can create entries there.
    other_user(os.mkdir, str(d / "planted"))
    os.rmdir(d / "planted")
    refused(d, d, "writable by its group without the sticky bit")


def test_sticky_world_writable_owned_by_root_is_trusted(tmp_path: Path) -> None:
    d = make_dir(tmp_path / "sticky", 0o1777)
    assert "sticky" in hardtemp.check_dir(d).components[-1].why


def test_sticky_but_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    # The owner of a sticky directory may still rename and delete everything in it.
    d = make_dir(tmp_path / "theirs-sticky", 0o1777, NOBODY, NOBODY)
    refused(d, d, f"owned by uid {NOBODY}")


def test_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    d = make_dir(tmp_path / "theirs", 0o755, NOBODY, NOBODY)
    refused(d, d, f"owned by uid {NOBODY}")


def test_our_directory_under_another_users_parent_is_refused(tmp_path: Path) -> None:
    # They can rename our directory away and put theirs (or a symlink) in its place.
    parent = make_dir(tmp_path / "theirs", 0o755, NOBODY, NOBODY)
    ours = make_dir(parent / "ours", 0o700)
    refused(ours, parent, f"owned by uid {NOBODY}")


def test_our_directory_under_world_writable_ancestor_is_refused(tmp_path: Path) -> None:
    ww = make_dir(tmp_path / "ww", 0o777)
    ours = make_dir(ww / "a", 0o700)
    deep = make_dir(ours / "b", 0o700)
    refused(deep, ww, "writable by others without the sticky bit")


def test_symlink_owned_by_another_user_is_refused(
    shared_dir: Path, tmp_path: Path, other_user: Callable[..., Any]
) -> None:
    # The link's owner chooses, and can change at any time, where our files go.
    target = make_dir(tmp_path / "target", 0o755)
    link = shared_dir / "link"
    other_user(os.symlink, str(target), str(link))
    assert os.lstat(link).st_uid == NOBODY
    assert os.path.isdir(link)  # the kernel (and the standard library) would follow it
    refused(link, link, f"symlink owned by uid {NOBODY}")
    assert os.listdir(target) == []


def test_symlink_owned_by_another_user_deeper_in_the_path_is_refused(
    shared_dir: Path, tmp_path: Path, other_user: Callable[..., Any]
) -> None:
    target = make_dir(tmp_path / "target", 0o755)
    make_dir(target / "sub", 0o700)
    link = shared_dir / "link"
    other_user(os.symlink, str(target), str(link))
    refused(link / "sub", link, f"symlink owned by uid {NOBODY}")


def test_root_symlink_in_a_trusted_directory_is_followed(tmp_path: Path) -> None:
    target = make_dir(tmp_path / "target", 0o700)
    link = tmp_path / "link"
    link.symlink_to(target)
    report = hardtemp.check_dir(link)
    assert report.real_path == str(target)
    kinds = [(c.kind, c.path) for c in report.components]
    assert ("symlink", str(link)) in kinds
    sym = next(c for c in report.components if c.kind == "symlink")
    assert str(target) in sym.why
    fd, path = hardtemp.mkstemp(dir=link)
    os.close(fd)
    assert os.path.dirname(path) == str(link)  # the caller's path, as the stdlib returns
    assert os.listdir(target) == [os.path.basename(path)]


def test_relative_symlink_with_dotdot_is_followed(tmp_path: Path) -> None:
    target = make_dir(tmp_path / "target", 0o700)
    sub = make_dir(tmp_path / "sub", 0o700)
    (sub / "link").symlink_to("../target")
    assert hardtemp.check_dir(sub / "link").real_path == str(target)


def test_trusted_symlink_leading_to_an_untrusted_directory_is_refused(tmp_path: Path) -> None:
    hostile = make_dir(tmp_path / "ww", 0o777)
    link = tmp_path / "link"
    link.symlink_to(hostile)
    refused(link, hostile, "writable by others without the sticky bit")


def test_symlink_chain_through_an_untrusted_directory_is_refused(tmp_path: Path) -> None:
    ww = make_dir(tmp_path / "ww", 0o777)
    target = make_dir(tmp_path / "target", 0o700)
    (ww / "hop").symlink_to(target)  # root-owned, but in a directory others can rewrite
    link = tmp_path / "link"
    link.symlink_to(ww / "hop")
    refused(link, ww, "writable by others without the sticky bit")


def test_dotdot_does_not_excuse_an_untrusted_component_on_the_way(tmp_path: Path) -> None:
    ww = make_dir(tmp_path / "ww", 0o777)
    good = make_dir(tmp_path / "good", 0o700)
    path = f"{ww}/../good"
    assert os.path.realpath(path) == str(good)
    refused(path, ww, "writable by others without the sticky bit")


def test_dotdot_and_dot_are_resolved_lexically_on_verified_descriptors(tmp_path: Path) -> None:
    a = make_dir(tmp_path / "a", 0o700)
    b = make_dir(tmp_path / "b", 0o700)
    assert hardtemp.check_dir(f"{a}/./../b/.").real_path == str(b)
    assert hardtemp.check_dir("/../../").real_path == "/"


def test_relative_paths_are_resolved_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_dir(tmp_path / "a", 0o700)
    make_dir(tmp_path / "a" / "b", 0o700)
    monkeypatch.chdir(tmp_path / "a")
    report = hardtemp.check_dir("b/../b")
    assert report.real_path == str(tmp_path / "a" / "b")
    assert report.path == str(tmp_path / "a" / "b/../b")
    make_dir(tmp_path / "a" / "ww", 0o777)
    refused("ww", tmp_path / "a" / "ww", "without the sticky bit")


def test_symlink_loop_raises_eloop(tmp_path: Path) -> None:
    (tmp_path / "l1").symlink_to(tmp_path / "l2")
    (tmp_path / "l2").symlink_to(tmp_path / "l1")
    with pytest.raises(OSError, match="symbolic links") as info:
        hardtemp.check_dir(tmp_path / "l1")
    assert info.value.errno == errno.ELOOP
    (tmp_path / "self").symlink_to("self")
    with pytest.raises(OSError) as info2:
        hardtemp.check_dir(tmp_path / "self")
    assert info2.value.errno == errno.ELOOP


def test_long_but_finite_symlink_chain_is_followed(tmp_path: Path) -> None:
    target = make_dir(tmp_path / "target", 0o700)
    prev = target
    for i in range(30):
        link = tmp_path / f"l{i}"
        link.symlink_to(prev)
        prev = link
    assert hardtemp.check_dir(prev).real_path == str(target)


def test_regular_file_raises_not_a_directory(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_bytes(b"x")
    with pytest.raises(NotADirectoryError) as info:
        hardtemp.check_dir(f)
    assert info.value.filename == str(f)
    with pytest.raises(NotADirectoryError):
        hardtemp.check_dir(f / "below")
    with pytest.raises(NotADirectoryError):
        hardtemp.mkstemp(dir=f)


def test_symlink_to_a_file_raises_not_a_directory(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_bytes(b"x")
    (tmp_path / "link").symlink_to(f)
    with pytest.raises(NotADirectoryError):
        hardtemp.check_dir(tmp_path / "link")


def test_missing_directory_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        hardtemp.check_dir(tmp_path / "missing" / "deeper")
    assert info.value.filename == str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError):
        hardtemp.mkdtemp(dir=tmp_path / "missing")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError):
        hardtemp.check_dir(tmp_path / "dangling")


def test_nul_in_path_raises_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="null"):
        hardtemp.check_dir(f"{tmp_path}/a\0b")


def test_unsearchable_ancestor_raises_permission_error_for_the_other_user(
    tmp_path: Path, other_user: Callable[..., Any]
) -> None:
    # tmp_path's ancestors include root's 0700 pytest directory.
    def probe(path: str) -> str:
        try:
            hardtemp.check_dir(path)
        except PermissionError as exc:
            return f"{type(exc).__name__}:{exc.filename}"
        return "ok"

    result = other_user(probe, str(tmp_path))
    assert result.startswith("PermissionError:")


# -- the cache ------------------------------------------------------------------


def test_trusted_dir_reuses_the_cached_verification_with_a_descriptor_per_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h1 = _dirtrust.trusted_dir(tmp_path)
    walks: list[str] = []
    real_walk = _dirtrust._walk
    monkeypatch.setattr(_dirtrust, "_walk", lambda p: walks.append(p) or real_walk(p))
    h2 = _dirtrust.trusted_dir(str(tmp_path))
    assert walks == []  # a cache hit: the ancestors are not walked again
    # Each caller owns its descriptor: none can be closed under another (a shared handle
    # could be finalized in one thread while another thread was handed it).
    assert h1 is not h2
    assert h1.fd != h2.fd
    for h in (h1, h2):
        st = os.fstat(h.fd)
        assert (st.st_dev, st.st_ino) == (os.stat(tmp_path).st_dev, os.stat(tmp_path).st_ino)


def test_cache_rewalks_when_the_directory_was_replaced(tmp_path: Path) -> None:
    d = make_dir(tmp_path / "d", 0o700)
    h1 = _dirtrust.trusted_dir(d)
    d.rename(tmp_path / "old")
    make_dir(d, 0o700)
    h2 = _dirtrust.trusted_dir(d)
    assert h2 is not h1
    assert h2.ino == os.stat(d).st_ino
    fd, path = hardtemp.mkstemp(dir=d)
    os.close(fd)
    assert os.listdir(d) == [os.path.basename(path)]
    assert os.listdir(tmp_path / "old") == []  # not the old inode the cache held


def test_cache_refuses_when_the_directory_was_replaced_by_a_hostile_one(tmp_path: Path) -> None:
    d = make_dir(tmp_path / "d", 0o700)
    _dirtrust.trusted_dir(d)
    d.rename(tmp_path / "old")
    make_dir(d, 0o755, NOBODY, NOBODY)
    refused(d, d, f"owned by uid {NOBODY}")
    assert os.listdir(tmp_path / "old") == []


def test_cache_refuses_when_the_path_now_is_a_hostile_symlink(tmp_path: Path) -> None:
    d = make_dir(tmp_path / "d", 0o700)
    _dirtrust.trusted_dir(d)
    d.rename(tmp_path / "old")
    ww = make_dir(tmp_path / "ww", 0o777)
    d.symlink_to(ww)
    refused(d, ww, "without the sticky bit")


def test_cache_refuses_when_the_mode_became_unsafe(tmp_path: Path) -> None:
    d = make_dir(tmp_path / "d", 0o700)
    fd, _ = hardtemp.mkstemp(dir=d)  # verified and cached
    os.close(fd)
    before = os.listdir(d)
    os.chmod(d, 0o777)
    with pytest.raises(UnsafeDirectoryError) as info:
        hardtemp.mkstemp(dir=d)
    assert info.value.path == str(d)
    assert os.listdir(d) == before
    os.chmod(d, 0o700)
    fd, _ = hardtemp.mkstemp(dir=d)  # trusted again
    os.close(fd)


def test_cache_refuses_when_the_owner_changed(tmp_path: Path) -> None:
    d = make_dir(tmp_path / "d", 0o700)
    _dirtrust.trusted_dir(d)
    os.chown(d, NOBODY, NOBODY)
    refused(d, d, f"owned by uid {NOBODY}")


def test_cache_is_bounded_and_evicted_handles_close_their_descriptors(tmp_path: Path) -> None:
    from _helpers_core import open_fds

    _dirtrust.trusted_dir(tmp_path)
    before = open_fds()
    for i in range(3 * _dirtrust._CACHE_SIZE):
        _dirtrust.trusted_dir(make_dir(tmp_path / f"d{i}", 0o700))
    assert len(_dirtrust._cache) == _dirtrust._CACHE_SIZE
    assert len(open_fds() - before) <= _dirtrust._CACHE_SIZE
    _dirtrust.clear_cache()
    assert open_fds() - before == set()


def test_judge_rules_on_real_stat_results(tmp_path: Path) -> None:
    cases = {
        (0o700, 0): True,
        (0o755, 0): True,
        (0o1777, 0): True,
        (0o777, 0): False,
        (0o775, 0): False,
        (0o757, 0): False,
        (0o1770, 0): True,
        (0o700, NOBODY): False,
        (0o1777, NOBODY): False,
    }
    for i, ((mode, uid), ok) in enumerate(cases.items()):
        d = make_dir(tmp_path / f"j{i}", mode, uid, uid)
        st = os.stat(d)
        assert stat.S_IMODE(st.st_mode) == mode
        assert _dirtrust.judge(st, 0)[0] is ok, (oct(mode), uid)


# --- as an ordinary user, in this process -------------------------------------------------------


def test_a_root_owned_directory_is_trusted_by_an_ordinary_user_and_says_why(
    shared_dir: Path,
) -> None:
    d = make_dir(shared_dir / "roots", 0o755)
    with as_euid(NOBODY):
        report = hardtemp.check_dir(d)
    last = report.components[-1]
    assert (last.path, last.uid) == (str(d), 0)
    assert last.why == "owned by root; not writable by others"


def test_a_write_and_search_only_directory_still_works_for_its_owner(shared_dir: Path) -> None:
    d = make_dir(shared_dir / "wx", 0o300, NOBODY, NOBODY)
    with as_euid(NOBODY):
        handle = _dirtrust.trusted_dir(d)
        fd, name = hardtemp.mkstemp(dir=d)
        os.close(fd)
        with pytest.raises(PermissionError):
            os.listdir(d)  # the directory really is unreadable to us
    assert handle.readable is False
    assert os.listdir(d) == [os.path.basename(name)]


def test_a_handle_whose_directory_vanished_is_no_longer_trusted(tmp_path: Path) -> None:
    d = make_dir(tmp_path / "d", 0o700)
    handle = _dirtrust.trusted_dir(d)
    assert handle.still_trusted()
    os.rename(d, tmp_path / "moved")
    assert not handle.still_trusted()
    make_dir(d, 0o700)  # a new directory under the old name: verified afresh
    again = _dirtrust.trusted_dir(d)
    assert again is not handle
    assert (again.dev, again.ino) == (os.stat(d).st_dev, os.stat(d).st_ino)


# --- descriptor hygiene: the trust cache pins nothing (issue 11) -------------------------------


def _make_and_remove_raw(d: Path) -> list[str]:
    """mkstemp and mkdtemp in ``d``, closed and removed; the paths are returned (kept)."""
    fd, path = hardtemp.mkstemp(dir=d)
    os.close(fd)
    os.unlink(path)
    made = hardtemp.mkdtemp(dir=d)
    os.rmdir(made)
    again = hardtemp.mkdtemp(dir=d)  # a cache hit: verified again without a walk
    os.rmdir(again)
    return [path, made, again]


def _umount(mnt: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["umount", str(mnt)], capture_output=True, text=True, check=False)


def test_a_loop_mounted_ext4_unmounts_right_after_mkstemp_and_mkdtemp_there(
    loopfs: Callable[..., Any],
) -> None:
    # The verification stays cached, but holds no descriptor of the directory.
    fs = loopfs("ext4", size_mb=16)
    d = fs.mountpoint / "work"
    d.mkdir(mode=0o700)
    kept = _make_and_remove_raw(d)
    out = _umount(fs.mountpoint)
    assert out.returncode == 0, out.stderr  # "target is busy" if anything pinned it
    fs.mounted = False
    assert len(kept) == 3


def test_a_tmpfs_unmounts_right_after_mkstemp_and_mkdtemp_there(
    small_tmpfs: Callable[[int], Path],
) -> None:
    mnt = small_tmpfs(4096)
    d = mnt / "work"
    d.mkdir(mode=0o700)
    kept = _make_and_remove_raw(d)
    out = _umount(mnt)
    assert out.returncode == 0, out.stderr
    assert len(kept) == 3


def test_a_cached_directory_replaced_meanwhile_is_walked_again(tmp_path: Path) -> None:
    d = make_dir(tmp_path / "d", 0o700, os.geteuid(), os.getegid())
    first = _dirtrust.trusted_dir(d)
    ident = (first.dev, first.ino)
    del first  # no object made there is alive: the cache keeps the verification only
    os.rename(d, tmp_path / "old")
    make_dir(tmp_path / "d", 0o700, os.geteuid(), os.getegid())
    again = _dirtrust.trusted_dir(d)
    assert (again.dev, again.ino) != ident
    assert (again.dev, again.ino) == (os.stat(d).st_dev, os.stat(d).st_ino)


def test_threads_creating_in_one_directory_never_get_a_closed_directory_descriptor(
    tmp_path: Path,
) -> None:
    # Each mkstemp drops its directory handle at once; another thread's cache hit must never
    # be handed a handle whose descriptor a finalizer is closing (EBADF, or a reused number).
    import threading

    import hardtemp

    d = tmp_path / "shared"
    d.mkdir(mode=0o700)
    errors: list[BaseException] = []
    barrier = threading.Barrier(6, timeout=60)

    def worker() -> None:
        try:
            barrier.wait()
            for _ in range(300):
                fd, name = hardtemp.mkstemp(dir=d)
                os.close(fd)
                os.unlink(name)
        except BaseException as exc:
            errors.append(exc)

    threads = start_threads((worker, ()) for _ in range(6))
    for t in threads:
        t.join()
    assert errors == []
    assert os.listdir(d) == []


def test_the_cache_hits_quick_rule_agrees_with_judge_for_every_mode_and_owner() -> None:
    # passes() is judge() without the reason, for the hot path: the two must never differ.
    import stat as stat_mod

    base = os.stat("/")
    for uid in (0, 1000, NOBODY):
        for euid in (0, 1000):
            for perm in range(0o10000):
                fields = list(base)
                fields[0] = stat_mod.S_IFDIR | perm
                fields[4] = uid
                st = os.stat_result(fields)
                assert _dirtrust.passes(st, euid) is _dirtrust.judge(st, euid)[0], (uid, euid, perm)


def test_each_trust_refusal_carries_the_code_of_the_rule_it_broke(tmp_path: Path) -> None:
    # Callers (and `hardtemp check`'s hints) match the code, never the sentence.
    other = make_dir(tmp_path / "other", 0o700, NOBODY, NOBODY)
    open_dir = make_dir(tmp_path / "open", 0o777)
    link = tmp_path / "link"
    link.symlink_to(make_dir(tmp_path / "target", 0o700))
    os.chown(link, NOBODY, NOBODY, follow_symlinks=False)
    cases = {
        other: TrustReason.OTHER_OWNER,
        open_dir: TrustReason.WRITABLE_NO_STICKY,
        link: TrustReason.SYMLINK_OTHER_OWNER,
    }
    for path, code in cases.items():
        exc = refused(path, path, "")
        assert exc.reason.code == code  # type: ignore[attr-defined]
        back = pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own bytes
        assert (back.reason, back.reason.code) == (exc.reason, code)
