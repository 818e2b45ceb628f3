"""gettempdir(): the first *trusted* candidate, never a hostile one."""

from __future__ import annotations

import gc
import os
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import hardtemp
from _gates import needs_root
from _helpers_core import NOBODY, make_dir
from hardtemp import _dirtrust, _tempdir
from hardtemp.exceptions import NoTrustedTempDirError, UnsafeCandidateWarning, UnsafeDirectoryError

pytestmark = needs_root("to make other users' dirs")


@pytest.fixture(autouse=True)
def _reset(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in ("TMPDIR", "TEMP", "TMP"):
        monkeypatch.delenv(var, raising=False)
    _tempdir.tempdir = None
    _dirtrust.clear_cache()
    yield
    _tempdir.tempdir = None
    _dirtrust.clear_cache()


def test_default_is_tmp_here() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hardtemp.gettempdir() == "/tmp"
    assert hardtemp.gettempdirb() == b"/tmp"


def test_trusted_tmpdir_is_used_without_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hardtemp.gettempdir() == str(tmp_path)
    fd, path = hardtemp.mkstemp()
    os.close(fd)
    assert os.path.dirname(path) == str(tmp_path)


def test_result_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    assert hardtemp.gettempdir() == str(tmp_path)
    monkeypatch.setenv("TMPDIR", "/var/tmp")
    assert hardtemp.gettempdir() == str(tmp_path)


@pytest.mark.parametrize(
    ("mode", "uid", "reason"),
    [
        (0o777, 0, "writable by others without the sticky bit"),
        (0o775, 0, "writable by its group without the sticky bit"),
        (0o1777, NOBODY, f"owned by uid {NOBODY}"),
        (0o755, NOBODY, f"owned by uid {NOBODY}"),
    ],
)
def test_untrusted_tmpdir_is_skipped_with_a_warning_for_the_next_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int, uid: int, reason: str
) -> None:
    hostile = make_dir(tmp_path / "hostile", mode, uid, uid)
    good = make_dir(tmp_path / "good", 0o700)
    monkeypatch.setenv("TMPDIR", str(hostile))
    monkeypatch.setenv("TEMP", str(good))
    with pytest.warns(UnsafeCandidateWarning) as record:
        assert hardtemp.gettempdir() == str(good)
    messages = [str(w.message) for w in record]
    assert any(str(hostile) in m and reason in m for m in messages), messages
    fd, path = hardtemp.mkstemp()
    os.close(fd)
    assert os.listdir(hostile) == []
    assert os.path.dirname(path) == str(good)


def test_missing_tmpdir_is_skipped_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path / "missing"))
    with pytest.warns(UnsafeCandidateWarning, match="missing"):
        assert hardtemp.gettempdir() == "/tmp"


def test_hostile_parent_of_tmpdir_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    theirs = make_dir(tmp_path / "theirs", 0o755, NOBODY, NOBODY)
    ours = make_dir(theirs / "ours", 0o700)
    monkeypatch.setenv("TMPDIR", str(ours))
    with pytest.warns(UnsafeCandidateWarning, match=str(theirs)):
        assert hardtemp.gettempdir() == "/tmp"


def test_no_trusted_candidate_raises_and_says_why_for_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ww = make_dir(tmp_path / "ww", 0o777)
    theirs = make_dir(tmp_path / "theirs", 0o1777, NOBODY, NOBODY)
    missing = tmp_path / "missing"
    cands = [str(ww), str(theirs), str(missing)]
    monkeypatch.setattr(_tempdir, "candidate_tempdir_list", lambda: list(cands))
    with pytest.raises(NoTrustedTempDirError) as info:
        hardtemp.gettempdir()
    exc = info.value
    assert isinstance(exc, FileNotFoundError)
    assert isinstance(exc, UnsafeDirectoryError)
    for c in cands:
        assert c in exc.reason
    assert "without the sticky bit" in exc.reason
    assert f"owned by uid {NOBODY}" in exc.reason
    assert _tempdir.tempdir is None  # nothing hostile was cached
    with pytest.raises(NoTrustedTempDirError):
        hardtemp.mkstemp()
    assert os.listdir(ww) == []
    assert os.listdir(theirs) == []


def test_candidates_follow_the_standard_library_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", "/a")
    monkeypatch.setenv("TEMP", "/b")
    monkeypatch.setenv("TMP", "/c")
    monkeypatch.chdir(tmp_path)
    assert _tempdir.candidate_tempdir_list() == [
        "/a",
        "/b",
        "/c",
        "/tmp",
        "/var/tmp",
        "/usr/tmp",
        str(tmp_path),
    ]


def test_the_working_directory_is_the_last_resort(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ww = make_dir(tmp_path / "ww", 0o777)
    good = make_dir(tmp_path / "cwd", 0o700)
    monkeypatch.chdir(good)
    real = _tempdir.candidate_tempdir_list
    monkeypatch.setattr(
        _tempdir,
        "candidate_tempdir_list",
        lambda: [str(ww)] + [c for c in real() if c == str(good)],
    )
    with pytest.warns(UnsafeCandidateWarning):
        assert hardtemp.gettempdir() == str(good)


def test_forced_tempdir_is_still_verified(tmp_path: Path) -> None:
    ww = make_dir(tmp_path / "ww", 0o777)
    _tempdir.tempdir = str(ww)
    with pytest.raises(UnsafeDirectoryError) as info:
        hardtemp.gettempdir()
    assert info.value.path == str(ww)
    with pytest.raises(UnsafeDirectoryError):
        hardtemp.mkstemp()
    assert os.listdir(ww) == []


def test_forced_trusted_tempdir_is_used(tmp_path: Path) -> None:
    _tempdir.tempdir = str(tmp_path)
    assert hardtemp.gettempdir() == str(tmp_path)
    with hardtemp.TemporaryDirectory() as d:
        assert os.path.dirname(d) == str(tmp_path)


def test_cached_default_that_became_hostile_is_refused(tmp_path: Path) -> None:
    d = make_dir(tmp_path / "d", 0o700)
    _tempdir.tempdir = str(d)
    assert hardtemp.gettempdir() == str(d)
    os.chmod(d, 0o777)
    with pytest.raises(UnsafeDirectoryError):
        hardtemp.gettempdir()
    with pytest.raises(UnsafeDirectoryError):
        hardtemp.NamedTemporaryFile()
    assert os.listdir(d) == []


def test_a_read_only_candidate_is_skipped_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k,mode=0700", "tmpfs", str(ro)], check=True
    )
    try:
        monkeypatch.setenv("TMPDIR", str(ro))
        with pytest.warns(UnsafeCandidateWarning, match=f"{ro}: not writable"):
            assert hardtemp.gettempdir() == "/tmp"
    finally:
        _dirtrust.clear_cache()  # the cached verified descriptor keeps the mount busy
        gc.collect()
        subprocess.run(["umount", str(ro)], check=True)


# -- a candidate with `..` after a symlink: the directory verified is the directory used --------


def _link_and_dotdot(tmp_path: Path) -> tuple[Path, Path]:
    """``a/link -> b/sub``: ``a/link/..`` is ``b`` for the kernel, ``a`` for abspath()."""
    a = make_dir(tmp_path / "a", 0o755)
    b = make_dir(tmp_path / "b", 0o755)
    make_dir(b / "sub", 0o755)
    os.symlink(b / "sub", a / "link")
    return a, b


def test_a_tmpdir_with_dotdot_after_our_symlink_is_the_directory_the_kernel_resolves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # abspath() would shorten a/link/../c to a/c, which does not exist (gettempdir then
    # failed for good, though the candidate had passed); b/c is what was verified.
    a, b = _link_and_dotdot(tmp_path)
    make_dir(b / "c", 0o700)
    monkeypatch.setenv("TMPDIR", f"{a}/link/../c")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hardtemp.gettempdir() == str(b / "c")
    fd, path = hardtemp.mkstemp()
    os.close(fd)
    assert os.path.dirname(path) == str(b / "c")


def test_a_tmpdir_with_dotdot_names_what_was_verified_even_when_abspath_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = _link_and_dotdot(tmp_path)
    monkeypatch.setenv("TMPDIR", f"{a}/link/..")
    assert hardtemp.gettempdir() == str(b)  # not a: that directory was never the candidate


def test_a_tmpdir_without_a_symlink_keeps_the_standard_librarys_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = make_dir(tmp_path / "d", 0o700)
    make_dir(d / "x", 0o700)
    monkeypatch.setenv("TMPDIR", f"{d}/x/../")
    assert hardtemp.gettempdir() == str(d) == os.path.abspath(f"{d}/x/../")


def test_a_tmpdir_with_dotdot_after_another_users_symlink_is_skipped(
    shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # abspath(shared/link/..) is the trusted shared directory, but for every other program
    # $TMPDIR/x is inside that user's directory: the candidate is skipped, naming the link.
    theirs = make_dir(shared_dir / "theirs", 0o755, NOBODY, NOBODY)
    link = shared_dir / "link"
    os.symlink(theirs, link)
    os.lchown(link, NOBODY, NOBODY)
    monkeypatch.setenv("TMPDIR", f"{link}/..")
    with pytest.warns(UnsafeCandidateWarning, match=f"{link}: symlink owned by uid {NOBODY}"):
        assert hardtemp.gettempdir() == "/tmp"
