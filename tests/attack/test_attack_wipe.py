"""Attacks by another local user on hardtemp's removal of files.

The attacker is a real second user (uid 65534) acting in a shared sticky directory,
exactly as in /tmp: planting symlinks, hard links and FIFOs where we remove entries,
or taking a name we meant to remove. In every case the attacker's target must be
untouched; a naive "open, overwrite, unlink" would destroy it or hang.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from _helpers_attack import NOBODY, attacker_in_background, sysctl_set, wait_for
from _helpers_core import marker
from hardtemp._policy import wipe_policy
from hardtemp._remove import remove_entry, wipe
from hardtemp.exceptions import PlaintextLeftWarning, UnsafeDirectoryError, UnsafeFileError

pytestmark = pytest.mark.attack


@pytest.fixture(autouse=True)
def _any_filesystem() -> Iterator[None]:
    # The shared directory is on whatever filesystem /tmp is: the verdict is not the point here.
    with wipe_policy("ignore"):
        yield


@pytest.fixture
def victim(tmp_path: Path) -> tuple[Path, bytes]:
    """A root-owned file outside the shared directory, holding data that must survive."""
    m = marker()
    path = tmp_path / "victim"
    path.write_bytes(m * 10)
    os.chmod(path, 0o644)
    return path, m * 10


def plant_symlink(directory: str, name: str, target: str) -> None:
    os.symlink(target, os.path.join(directory, name))


def plant_hard_link(directory: str, data: bytes) -> None:
    own = os.path.join(directory, "attacker-data")
    fd = os.open(own, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, data)
    os.close(fd)
    os.link(own, os.path.join(directory, "planted"))


def plant_fifo(directory: str, name: str) -> None:
    os.mkfifo(os.path.join(directory, name), 0o666)


def read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def plant_file(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, data)
    os.close(fd)


def test_planted_symlink_is_unlinked_and_its_target_untouched(
    other_user: Callable[..., Any], shared_dir: Path, victim: tuple[Path, bytes]
) -> None:
    path, data = victim
    other_user(plant_symlink, str(shared_dir), "planted", str(path))
    dfd = os.open(shared_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        report = remove_entry(dfd, "planted", own_file=False)
    finally:
        os.close(dfd)
    assert path.read_bytes() == data
    assert not os.path.lexists(shared_dir / "planted")
    assert report.verdict == "skipped"


def test_planted_hard_link_to_the_attackers_file_is_unlinked_not_overwritten(
    other_user: Callable[..., Any], shared_dir: Path
) -> None:
    data = marker()
    other_user(plant_hard_link, str(shared_dir), data)
    dfd = os.open(shared_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.warns(PlaintextLeftWarning, match="2 hard links"):
            report = remove_entry(dfd, "planted", own_file=False)
    finally:
        os.close(dfd)
    assert not os.path.lexists(shared_dir / "planted")
    assert report.hard_links == 2
    assert report.bytes_overwritten == 0
    # Data we were never handed stays intact: the other user reads it back.
    assert other_user(read_file, str(shared_dir / "attacker-data")) == data


@pytest.mark.timeout(20)
def test_planted_fifo_does_not_block_removal(
    other_user: Callable[..., Any], shared_dir: Path
) -> None:
    other_user(plant_fifo, str(shared_dir), "planted")
    dfd = os.open(shared_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        report = remove_entry(dfd, "planted", own_file=False)
    finally:
        os.close(dfd)
    assert report.verdict == "skipped"
    assert not os.path.lexists(shared_dir / "planted")


def test_wipe_refuses_a_planted_symlink_and_the_target_survives(
    other_user: Callable[..., Any], shared_dir: Path, victim: tuple[Path, bytes]
) -> None:
    path, data = victim
    other_user(plant_symlink, str(shared_dir), "report.pdf", str(path))
    with pytest.raises(UnsafeFileError, match="never follows symlinks"):
        wipe(shared_dir / "report.pdf")
    assert path.read_bytes() == data


def test_wipe_refuses_a_planted_parent_symlink_and_the_target_survives(
    other_user: Callable[..., Any], shared_dir: Path, victim: tuple[Path, bytes]
) -> None:
    path, data = victim
    # The user means shared/job/victim; the attacker makes "job" point at the victim's dir.
    other_user(plant_symlink, str(shared_dir), "job", str(path.parent))
    with pytest.raises(UnsafeFileError, match="symbolic link"):
        wipe(shared_dir / "job" / "victim")
    assert path.read_bytes() == data


def test_a_name_taken_by_the_attacker_is_not_removed(
    other_user: Callable[..., Any], shared_dir: Path
) -> None:
    # We expect our own inode under "job.tmp"; the attacker owns what is there now.
    ours = shared_dir / "ours"
    ours.write_bytes(b"ours")
    st = os.stat(ours)
    data = marker()
    other_user(plant_file, str(shared_dir / "job.tmp"), data)
    dfd = os.open(shared_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(UnsafeFileError, match="another file than expected"):
            remove_entry(dfd, "job.tmp", expect=(st.st_dev, st.st_ino))
    finally:
        os.close(dfd)
    assert (shared_dir / "job.tmp").read_bytes() == data
    assert stat.S_ISREG(os.lstat(shared_dir / "job.tmp").st_mode)


# --- wipe() by path: components swapped, hard links planted (issue 11) ------------------------


def _root_dir_with_victim(shared_dir: Path, *parts: str) -> tuple[Path, Path, bytes]:
    """shared/rootdir-<rand>/<parts...>: a root-owned tree the other user can search, not write."""
    top = shared_dir / f"rootdir-{secrets.token_hex(4)}"
    where = top.joinpath(*parts[:-1])
    where.mkdir(parents=True)
    for d in [top, *where.relative_to(top).parents, where.relative_to(top)]:
        os.chmod(top / d, 0o755)
    data = marker() * 10
    victim = where / parts[-1]
    victim.write_bytes(data)
    os.chmod(victim, 0o644)
    return top, victim, data


def test_wipe_never_follows_a_symlink_planted_as_an_earlier_component(
    other_user: Callable[..., Any], shared_dir: Path
) -> None:
    # The user means shared/job/b/victim; the attacker makes "job" (two levels up) a symlink
    # to root's tree. Opening only the parent with O_NOFOLLOW would follow "job".
    top, victim, data = _root_dir_with_victim(shared_dir, "b", "victim")
    other_user(plant_symlink, str(shared_dir), "job", str(top))
    with pytest.raises(UnsafeFileError, match="symbolic link") as info:
        wipe(shared_dir / "job" / "b" / "victim")
    assert info.value.filename == str(shared_dir / "job")
    assert victim.read_bytes() == data


def _flip_component(directory: str, name: str, targets: list[str]) -> None:  # pragma: no cover
    # The other user swaps <directory>/<name> between two symlink targets as fast as it can.
    tmp = os.path.join(directory, name + ".new")
    while True:
        for target in targets:
            try:
                os.symlink(target, tmp)
                os.rename(tmp, os.path.join(directory, name))
            except OSError:
                pass


def test_wipe_through_another_users_directory_is_refused_while_they_swap_a_component(
    shared_dir: Path,
) -> None:
    # The other user owns shared/theirs and flips theirs/a between their own tree and root's:
    # every wipe of theirs/a/b/victim must be refused before anything is opened.
    top, victim, data = _root_dir_with_victim(shared_dir, "b", "victim")
    theirs = shared_dir / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    decoy = theirs / "decoy"
    (decoy / "b").mkdir(parents=True)
    (decoy / "b" / "victim").write_bytes(b"decoy")
    for p in (decoy, decoy / "b", decoy / "b" / "victim"):
        os.chown(p, NOBODY, NOBODY)
    with attacker_in_background(_flip_component, str(theirs), "a", [str(decoy), str(top)]):
        wait_for(lambda: os.path.islink(theirs / "a"))
        refused = 0
        for _ in range(200):
            with pytest.raises(UnsafeDirectoryError) as info:
                wipe(theirs / "a" / "b" / "victim")
            assert info.value.filename == str(theirs)
            refused += 1
    assert refused == 200
    assert victim.read_bytes() == data


def _link_into(source: str, directory: str, name: str) -> None:  # pragma: no cover - other user
    os.link(source, os.path.join(directory, name))


def test_wipe_refuses_a_hard_link_planted_under_the_name_it_is_asked_to_wipe(
    other_user: Callable[..., Any], shared_dir: Path
) -> None:
    # With fs.protected_hardlinks=0 the other user links root's file into the shared
    # directory under the name root is about to wipe: overwriting it would destroy the
    # victim. The sysctl is off only for the link itself.
    _, victim, data = _root_dir_with_victim(shared_dir, "victim")
    with sysctl_set("fs.protected_hardlinks", 0):
        other_user(_link_into, str(victim), str(shared_dir), "report.pdf")
    with pytest.raises(UnsafeFileError, match="2 hard links") as info:
        wipe(shared_dir / "report.pdf")
    assert "nothing removed" in str(info.value)
    assert victim.read_bytes() == data
    assert (shared_dir / "report.pdf").exists()  # not ours to remove


def test_wipe_refuses_a_hard_link_that_appears_between_the_check_and_the_open(
    shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A second name for the same inode arrives after the first look at the name (timed by
    # wrapping the open): the link count is checked again on the descriptor itself.
    from hardtemp import _remove

    ours = shared_dir / "ours"
    data = marker()
    ours.write_bytes(data)
    real = _remove._open_target

    def link_then_open(*args: Any) -> Any:
        os.link(ours, shared_dir / "theirs")
        return real(*args)

    monkeypatch.setattr(_remove, "_open_target", link_then_open)
    with pytest.raises(UnsafeFileError, match="2 hard links"):
        wipe(ours)
    assert ours.read_bytes() == (shared_dir / "theirs").read_bytes() == data


# --- NamedTemporaryFile's close: the name between its one look and the hiding rename ---------


def rename_over_temp_names(directory: str, prefix: str, data: bytes, log: str) -> None:
    """Forever: rename a file of ours over every temp name seen; log each try and its result."""
    own = os.path.join(directory, "attacker-file")
    logfd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    while True:
        for name in os.listdir(directory):
            if not name.startswith(prefix):
                continue
            if not os.path.exists(own):  # renamed to a free name last time: a new one
                plant_file(own, data)
            try:
                os.rename(own, os.path.join(directory, name))
                result = "won"
            except OSError as exc:
                result = str(exc.errno)
            os.write(logfd, f"{name} {result}\n".encode())


def _close_while_attacked(
    shared_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    rounds: int,
    in_window: Callable[[], None] = lambda: None,
) -> tuple[list[str], list[os.stat_result]]:
    """Close ``rounds`` NamedTemporaryFiles in ``shared_dir``, each only after the attacker
    tried to rename their file over its name *inside* the window between the close's one
    look at the name and the hiding rename (timed by wrapping the overwrite). Returns the
    attacker's results on our name inside the windows, and what the name held each time
    the close went on. ``in_window`` runs as each window opens."""
    import hardtemp
    from hardtemp import _remove

    log = shared_dir / "attacker.log"
    current: list[str] = []
    results: list[str] = []
    held: list[os.stat_result] = []

    def window_then(real: Callable[..., Any]) -> Callable[..., Any]:
        def attacked(*args: Any) -> Any:
            attacked_overwrite()
            return real(*args)

        return attacked

    def attacked_overwrite() -> None:
        in_window()
        start = log.stat().st_size if log.exists() else 0
        name = current[0]

        def tried() -> list[str]:
            lines = log.read_bytes()[start:].decode().splitlines() if log.exists() else []
            return [line.split()[1] for line in lines if line.startswith(name + " ")]

        # Two tries: the first logged may have begun before the window opened (a rename
        # in flight while in_window ran, seen failing with EPERM in CI); the attacker is
        # sequential, so the second began inside it.
        wait_for(lambda: len(tried()) >= 2)
        results.extend(tried())
        held.append(os.lstat(shared_dir / name))

    # The window opens at the overwrite, on either way a close takes: the straight line of
    # the common small file, or the general one (a second window on the same name, if the
    # first falls back to it, is attacked too).
    monkeypatch.setattr(_remove, "_overwrite", window_then(_remove._overwrite))
    monkeypatch.setattr(_remove, "overwrite_small", window_then(_remove.overwrite_small))
    data = marker()
    attacker = (rename_over_temp_names, str(shared_dir), "ht-race-", data, str(log))
    with attacker_in_background(*attacker):
        for _ in range(rounds):
            f = hardtemp.NamedTemporaryFile(dir=shared_dir, prefix="ht-race-")
            current[:] = [os.path.basename(f.name)]
            f.write(b"ours")
            f.close()
    return results, held


def test_an_attacker_renaming_over_the_name_during_close_is_refused_by_the_directory(
    shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The close looks at the name once (our inode there), overwrites, then hides it by a
    # rename, with no second look: in the trusted (sticky) directory no other user can
    # replace our entry in between. Here the attacker tries exactly then, every round.
    in_window, held = _close_while_attacked(shared_dir, monkeypatch, rounds=20)
    assert len(in_window) >= 20  # every round was attacked inside the window
    assert set(in_window) == {str(errno.EPERM)}, in_window
    assert all(st.st_uid == os.geteuid() for st in held)  # ours at the name, every time
    # What the attacker renamed to our names once we had removed them is theirs, intact.
    # (attacker-file itself may have been cut short by the attacker's SIGKILL mid-write.)
    for name in os.listdir(shared_dir):
        if name.startswith("ht-race-") and os.lstat(shared_dir / name).st_uid == NOBODY:
            assert (shared_dir / name).read_bytes().startswith(b"HARDTEMP-MARKER-")


def test_rename_attack_control_without_the_sticky_bit_the_attacker_replaces_the_name(
    shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same attack when the directory's owner drops the sticky bit inside the window,
    # after hardtemp trusted it (out of the threat model: root's doing): the attacker wins,
    # and the close removes the attacker's file in place of ours. So the test above can
    # fail; the directory's trust is what makes a second look at the name redundant.
    import hardtemp

    os.chmod(shared_dir, 0o777)
    try:
        with pytest.raises(UnsafeDirectoryError):
            hardtemp.NamedTemporaryFile(dir=shared_dir)  # refused while it is not sticky
    finally:
        os.chmod(shared_dir, 0o1777)
    try:
        results, held = _close_while_attacked(
            shared_dir, monkeypatch, rounds=1, in_window=lambda: os.chmod(shared_dir, 0o777)
        )
    finally:
        os.chmod(shared_dir, 0o1777)
    assert "won" in results, results
    # The attacker's file sat at our name as the close went on to hide and unlink the name
    # without a second look (what it removed was theirs: only they put files there since).
    assert held[0].st_uid == NOBODY
