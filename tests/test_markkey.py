"""_markkey: the per-user key that authenticates sweep marks, and every way it is refused."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from _gates import require_root
from _helpers_euid import as_euid
from hardtemp import _markkey
from hardtemp._codes import KeyReason

SRC = str(Path(__file__).resolve().parent.parent / "src")


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh XDG_STATE_HOME (not made yet), with the key cache forgotten around the test."""
    d = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(d))
    _markkey.reset()
    yield d
    _markkey.reset()


def test_a_creator_makes_a_private_key_once_and_reuses_it(state: Path) -> None:
    key = _markkey.load(create=True)
    assert key is not None
    assert len(key) == 32
    path = state / "hardtemp" / "sweep.key"
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert (st.st_uid, st.st_nlink) == (os.geteuid(), 1)
    assert stat.S_IMODE((state / "hardtemp").stat().st_mode) == 0o700
    assert os.listdir(state / "hardtemp") == ["sweep.key"]  # no temporary name left
    _markkey.reset()
    assert _markkey.load(create=False) == key
    assert _markkey.problem() is None


def test_the_sweeper_never_makes_a_key(state: Path) -> None:
    assert _markkey.load(create=False) is None
    problem = _markkey.problem()
    assert problem is not None
    assert problem.missing
    assert problem.reason == f"{state}/hardtemp: no key directory"
    assert problem.code == problem.reason.code == KeyReason.NO_DIR
    assert not state.exists()
    (state / "hardtemp").mkdir(parents=True, mode=0o700)
    problem = _markkey.problem()
    assert problem is not None
    assert (problem.missing, problem.reason) == (
        True,
        f"{state}/hardtemp/sweep.key: no key yet",
    )
    assert problem.code == KeyReason.NONE_YET


def test_concurrent_creators_agree_on_one_key(state: Path) -> None:
    # All creators wait at one gate (a pipe the test closes), then race to make the key.
    code = (
        "import os, sys; from hardtemp import _markkey; os.read(int(sys.argv[1]), 1); "
        "key = _markkey.load(create=True); "
        "print(key.hex() if key else repr(_markkey.problem()))"
    )
    env = dict(os.environ, PYTHONPATH=SRC)
    gate_r, gate_w = os.pipe()
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, str(gate_r)],
                stdout=subprocess.PIPE,
                env=env,
                text=True,
                pass_fds=(gate_r,),
            )
            for _ in range(8)
        ]
    finally:
        os.close(gate_r)
        os.close(gate_w)  # EOF: every creator starts at once
    keys = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(keys) == 1, keys
    assert len(next(iter(keys))) == 64
    assert os.listdir(state / "hardtemp") == ["sweep.key"]


def test_a_new_key_never_shows_a_second_name_to_a_concurrent_reader(state: Path) -> None:
    # A key with two links is refused (test below): a reader that opened the key between
    # a creator's link and unlink refused it, and a concurrent creator got no key at all
    # (CI, seen once in six creators). An observer process stats the key as fast as it can
    # while this process makes it 300 times: with link + unlink it sees two links within
    # 100 rounds; moved into place with RENAME_NOREPLACE, never.
    key = _key_file(state)
    os.unlink(key)
    stop = state / "stop"
    spin = (
        "import os, sys\nkey, stop = sys.argv[1:]\nmost = 0\n"
        "while not os.path.exists(stop):\n"
        "    try:\n        most = max(most, os.stat(key).st_nlink)\n"
        "    except FileNotFoundError:\n        pass\n"
        "print(most)\n"
    )
    observer = subprocess.Popen(
        [sys.executable, "-c", spin, str(key), str(stop)], stdout=subprocess.PIPE, text=True
    )
    try:
        for _ in range(300):
            assert _markkey.load(create=True) is not None
            os.unlink(key)
            _markkey.reset()
    finally:
        stop.touch()
        most = observer.communicate(timeout=60)[0].strip()
    assert most == "1"


def test_without_renameat2_a_reader_waits_out_a_creator_s_second_name(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A filesystem without RENAME_NOREPLACE (NFS) cannot be mounted here: the fallback is
    # forced. Its creator's key has two names until its unlink; a reader (creator or
    # sweeper) looks again instead of refusing the key for good.
    from hardtemp import _linux

    monkeypatch.setattr(_linux, "_renameat2", None)
    key = _key_file(state)
    os.link(key, key.parent / ".sweep.key.0123456789abcdef")
    timer = threading.Timer(0.03, os.unlink, (key.parent / ".sweep.key.0123456789abcdef",))
    timer.start()
    try:
        assert _markkey.load(create=False) == key.read_bytes()
    finally:
        timer.join()
    assert _markkey.problem() is None
    _markkey.reset()
    key.unlink()
    assert _markkey.load(create=True) is not None  # made by link + unlink
    assert os.listdir(key.parent) == ["sweep.key"]
    assert key.stat().st_nlink == 1


def _key_file(state: Path) -> Path:
    assert _markkey.load(create=True) is not None
    _markkey.reset()
    return state / "hardtemp" / "sweep.key"


@pytest.mark.parametrize(
    ("spoil", "reason", "code"),
    [
        (lambda p: os.chmod(p, 0o640), "key has mode -rw-r-----", KeyReason.BAD_MODE),
        (lambda p: p.write_bytes(b"short"), "is 5 bytes, not 32", KeyReason.BAD_SIZE),
        (lambda p: os.link(p, p.parent / "second-name"), "has 2 links", KeyReason.LINKS),
    ],
)
def test_an_unusable_key_is_refused_with_the_reason_and_its_code(
    state: Path, spoil: object, reason: str, code: KeyReason
) -> None:
    path = _key_file(state)
    spoil(path)  # type: ignore[operator]
    assert _markkey.load(create=True) is None  # a creator does not replace it either
    problem = _markkey.problem()
    assert problem is not None
    assert not problem.missing
    assert problem.reason == f"{path}: {reason}"
    assert problem.code == code


def test_a_symlink_or_directory_as_the_key_is_refused_never_followed(
    state: Path, tmp_path: Path
) -> None:
    path = _key_file(state)
    real = tmp_path / "elsewhere.key"
    real.write_bytes(path.read_bytes())
    os.chmod(real, 0o600)
    path.unlink()
    path.symlink_to(real)
    problem = _markkey.problem()
    assert problem is not None
    assert "Too many levels of symbolic links" in problem.reason
    assert problem.code == KeyReason.UNREADABLE
    _markkey.reset()
    path.unlink()
    path.mkdir()
    problem = _markkey.problem()
    assert problem is not None
    assert problem.reason == f"{path}: not a regular file"
    assert problem.code == KeyReason.NOT_REGULAR


def test_a_key_directory_writable_by_others_is_refused(state: Path) -> None:
    path = _key_file(state)
    os.chmod(path.parent, 0o777)  # others could replace the key
    problem = _markkey.problem()
    assert problem is not None
    assert (
        problem.reason == f"{path.parent}: directory is writable by others without the sticky bit"
    )
    assert problem.code == KeyReason.DIR_UNTRUSTED


def test_a_relative_xdg_state_home_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")
    home = pwd.getpwuid(os.geteuid()).pw_dir
    assert _markkey.key_dir() == f"{home}/.local/state/hardtemp"


def test_a_key_in_another_users_directory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # E.g. root run with an ordinary user's $XDG_STATE_HOME: that user could write root's key.
    require_root("to give a directory to another user")
    theirs = tmp_path / "theirs"
    (theirs / "hardtemp").mkdir(parents=True, mode=0o700)
    os.chown(theirs, 65534, 65534)
    os.chown(theirs / "hardtemp", 65534, 65534)
    monkeypatch.setenv("XDG_STATE_HOME", str(theirs))
    _markkey.reset()
    try:
        assert _markkey.load(create=True) is None
        problem = _markkey.problem()
        assert problem is not None
        assert "not trusted" in problem.reason or "owned by uid 65534" in problem.reason
        assert problem.code in (KeyReason.DIR_UNTRUSTED, KeyReason.NOT_OWNED)
        assert os.listdir(theirs / "hardtemp") == []  # nothing written there
    finally:
        _markkey.reset()


def test_a_key_directory_that_cannot_be_reached_is_reported(
    shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private = shared_dir / "root-only"
    private.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_STATE_HOME", str(private / "state"))
    _markkey.reset()
    try:
        with as_euid():
            assert _markkey.load(create=True) is None
            problem = _markkey.problem()
        assert problem is not None
        assert not problem.missing
        assert problem.reason.endswith("Permission denied")
        assert problem.code == KeyReason.DIR_UNUSABLE
    finally:
        _markkey.reset()


def test_a_key_owned_by_another_user_is_refused_with_its_code(state: Path) -> None:
    # Root with a key another user owns (in root's own private directory): that user
    # could read it and forge root's marks.
    require_root("to give the key to another user")
    path = _key_file(state)
    os.chown(path, 65534, 65534)
    assert _markkey.load(create=True) is None
    problem = _markkey.problem()
    assert problem is not None
    assert problem.reason == f"{path}: key is owned by uid 65534, not by us"
    assert problem.code == KeyReason.NOT_OWNED


def test_a_changed_or_unset_state_home_is_noticed_without_a_reset(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hot path compares $XDG_STATE_HOME as os.environ stores it, with no reset between.
    first = _markkey.load(create=True)
    assert _markkey.load(create=True) == first
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "other"))
    second = _markkey.load(create=True)
    assert second is not None
    assert second != first
    assert (tmp_path / "other" / "hardtemp" / "sweep.key").read_bytes() == second
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    assert _markkey.load(create=True) == first
    # Unset (the key then lives in the passwd home: not made here) is a value of its own.
    monkeypatch.delenv("XDG_STATE_HOME")
    assert _markkey._state_home_raw() is None
    monkeypatch.setenv("XDG_STATE_HOME", "")
    assert _markkey._state_home_raw() is not None
