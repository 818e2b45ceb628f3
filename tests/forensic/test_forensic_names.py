"""Forensic proof for names (issue 12, item 5): which names survive, and where.

Names and extended attributes are filesystem metadata: ext4 writes them through its
journal, which keeps them until it wraps; nothing from user space can clear it. What
hardtemp can prevent is names in *freed directory blocks outside the journal*: a
``TemporaryDirectory``'s cleanup lets each emptied directory reach the disk before
removing it. Each case counts the hits of a unique tag outside the journal's blocks of
the raw image (the stdlib is the control: its cleanup leaves them).
"""

from __future__ import annotations

import bisect
import errno
import gc
import os
import secrets
import subprocess
import tempfile
from collections.abc import Callable
from typing import Any

import pytest

import hardtemp
from _helpers_forensic import unmounted_image
from hardtemp import _dirsettle, _dirtrust

LoopFS = Any

pytestmark = pytest.mark.forensic


def _journal_blocks(image: str) -> tuple[int, list[int]]:
    """(block size, sorted block numbers of the journal inode <8>) of an ext4 image."""
    hdr = subprocess.run(["dumpe2fs", "-h", image], capture_output=True, text=True, check=True)
    size = int(
        next(ln.split(":")[1] for ln in hdr.stdout.splitlines() if ln.startswith("Block size"))
    )
    out = subprocess.run(
        ["debugfs", "-R", "blocks <8>", image], capture_output=True, text=True, check=True
    )
    return size, sorted(int(b) for b in out.stdout.split())


def _hits_outside_journal(fs: LoopFS, needle: bytes) -> tuple[int, int]:
    """Unmount, then count ``needle`` in the raw image: (outside the journal, inside)."""
    return _hits_each_outside_journal(fs, [needle])[0]


def _hits_each_outside_journal(fs: LoopFS, needles: list[bytes]) -> list[tuple[int, int]]:
    """Unmount, then per needle: its hits in the raw image (outside the journal, inside)."""
    data = unmounted_image(fs)
    size, journal = _journal_blocks(str(fs.image))
    counts = []
    for needle in needles:
        outside = inside = 0
        pos = data.find(needle)
        while pos >= 0:
            i = bisect.bisect_left(journal, pos // size)
            if i < len(journal) and journal[i] == pos // size:
                inside += 1
            else:
                outside += 1
            pos = data.find(needle, pos + 1)
        counts.append((outside, inside))
    return counts


def _named_on_disk_then_closed(fs: LoopFS) -> tuple[str, bytes, bytes]:
    """A NamedTemporaryFile in a private directory of ``fs`` whose entry reached the disk
    (synced), then closed; a sibling stays. Returns (the directory, our name, the sibling's)."""
    d = os.path.join(fs.mountpoint, "work")
    os.mkdir(d, 0o700)
    tag = _tag()
    with hardtemp.NamedTemporaryFile(dir=d, prefix=f"upload-{tag}-") as f:
        f.write(b"y" * 1000)
        with open(os.path.join(d, f"kept-{tag}"), "wb") as kept:
            kept.write(b"k")
        subprocess.run(["sync"], check=True)
        ours = os.path.basename(f.name).encode()
        assert ours in fs.image.read_bytes()  # the entry did reach the disk
    return d, ours, f"kept-{tag}".encode()


def test_ext4_named_file_closed_without_a_hiding_rename_leaves_its_name_only_in_the_journal(
    loopfs: Callable[..., LoopFS],
) -> None:
    # The close unlinks the name as is (no rename to a random name first): ext4's unlink
    # wipes the directory entry itself (Linux 5.13+), so a rename would hide nothing more.
    # The entry reached the disk before the close; the sibling that stays is the control:
    # the search finds a live entry's name in the directory block.
    fs = loopfs("ext4")
    _, ours, kept = _named_on_disk_then_closed(fs)
    (ours_out, ours_in), (kept_out, _) = _hits_each_outside_journal(fs, [ours, kept])
    assert kept_out > 0, "control: a live entry's name is in its directory block"
    assert ours_out == 0, f"{ours_out} copies of the closed file's name outside the journal"
    assert ours_in > 0  # what SECURITY.md says: the journal keeps it until it wraps


def test_btrfs_named_file_s_name_stays_in_old_metadata_renamed_first_or_not(
    loopfs: Callable[..., LoopFS],
) -> None:
    # Why the close does not rename on btrfs either: copy-on-write keeps the old metadata
    # blocks, with the name, whether or not it was renamed first. Ours (unlinked as is)
    # and a sibling removed the old way (rename to a random name, then unlink): both found.
    fs = loopfs("btrfs")
    d, ours, kept = _named_on_disk_then_closed(fs)
    hidden = os.path.join(d, ".ht-" + secrets.token_hex(8))
    os.rename(os.path.join(d, os.fsdecode(kept)), hidden)
    os.unlink(hidden)
    subprocess.run(["sync"], check=True)
    data = unmounted_image(fs)
    assert data.count(ours) > 0  # unlinked as is: in the old metadata
    assert data.count(kept) > 0  # renamed first: there just the same


def _fill(d: str, tag: str, activity: str) -> None:
    """Files (and a subdirectory) whose prefixes/suffixes carry ``tag``, amid other writes."""
    os.mkdir(os.path.join(d, f"sub-{tag}"))
    for i in range(30):
        for where in (d, os.path.join(d, f"sub-{tag}")):
            with open(os.path.join(where, f"patient-{tag}-{i:02d}.csv"), "wb") as f:
                f.write(b"x" * 100)
        # Ordinary activity elsewhere on the filesystem while the job runs.
        with open(os.path.join(activity, f"log-{i}"), "ab") as f:
            f.write(os.urandom(3000))
    subprocess.run(["sync"], check=True)


def _tag() -> str:
    return "TAG" + secrets.token_hex(6)


def test_ext4_temporary_directory_leaves_no_names_outside_the_journal(
    loopfs: Callable[..., LoopFS],
) -> None:
    fs = loopfs("ext4")
    activity = os.path.join(fs.mountpoint, "activity")
    os.mkdir(activity)
    tag = _tag()
    with hardtemp.TemporaryDirectory(dir=fs.mountpoint, prefix=f"job-{tag}-") as d:
        _fill(d, tag, activity)
        with hardtemp.NamedTemporaryFile(dir=d, prefix=f"upload-{tag}-", suffix=".pdf") as f:
            f.write(b"y")
        assert tag.encode() in fs.image.read_bytes()  # the names did reach the disk
    with open(os.path.join(activity, "after"), "wb") as f:
        f.write(os.urandom(20000))  # and life goes on
    outside, inside = _hits_outside_journal(fs, tag.encode())
    assert outside == 0, f"{outside} copies of the names in blocks outside the journal"
    # What the docs say: the journal keeps names until it wraps (here it has them).
    assert inside > 0


def test_ext4_control_stdlib_temporary_directory_leaves_names_in_freed_blocks(
    loopfs: Callable[..., LoopFS],
) -> None:
    fs = loopfs("ext4")
    activity = os.path.join(fs.mountpoint, "activity")
    os.mkdir(activity)
    tag = _tag()
    with tempfile.TemporaryDirectory(dir=fs.mountpoint, prefix=f"job-{tag}-") as d:
        _fill(d, tag, activity)
    outside, _ = _hits_outside_journal(fs, tag.encode())
    assert outside > 0, "control: freed directory blocks keep the names"


def _fill_deep(d: str, tag: str, activity: str, depth: int = 4) -> int:
    """A tree ``depth`` levels below ``d``, two subdirectories per directory, files at every
    level, every name carrying ``tag``; synced, so every name reached its home block."""
    dirs = [d]
    for level in range(depth + 1):
        below = []
        for where in dirs:
            for i in range(6):
                with open(os.path.join(where, f"rec-{tag}-L{level}-{i}.csv"), "wb") as f:
                    f.write(b"x" * 100)
            if level < depth:
                for side in "ab":
                    sub = os.path.join(where, f"dir-{tag}-L{level}{side}")
                    os.mkdir(sub)
                    below.append(sub)
        dirs = below
        with open(os.path.join(activity, f"log-{level}"), "ab") as f:
            f.write(os.urandom(3000))
    subprocess.run(["sync"], check=True)
    return 2 ** (depth + 1) - 2  # directories below d


@pytest.mark.parametrize("settled", [True, False], ids=["one-syncfs", "control-no-syncfs"])
def test_ext4_deep_tree_cleanup_syncs_once_and_leaves_no_names_outside_the_journal(
    loopfs: Callable[..., LoopFS], monkeypatch: pytest.MonkeyPatch, settled: bool
) -> None:
    # Emptied directories are moved into the top and removed after ONE syncfs for the
    # whole tree. The control keeps that walk but makes the settle a no-op: the freed
    # directory blocks then keep the names, so the test can fail.
    from hardtemp import _dirsettle, _remove

    calls: list[int] = []

    def counted(info: Any) -> Callable[[int], None] | None:
        real = _dirsettle.settler_for(info)
        assert real is not None  # ext4: settled

        def settle(fd: int) -> None:
            calls.append(fd)
            if settled:
                real(fd)

        return settle

    monkeypatch.setattr(_remove, "settler_for", counted)
    fs = loopfs("ext4")
    activity = os.path.join(fs.mountpoint, "activity")
    os.mkdir(activity)
    tag = _tag()
    with hardtemp.TemporaryDirectory(dir=fs.mountpoint, prefix=f"job-{tag}-") as d:
        subdirs = _fill_deep(d, tag, activity)
        assert tag.encode() in fs.image.read_bytes()  # the names did reach the disk
    assert subdirs == 30
    assert len(calls) == 1, f"{len(calls)} syncfs for one tree of {subdirs} directories"
    with open(os.path.join(activity, "after"), "wb") as f:
        f.write(os.urandom(20000))
    outside, _ = _hits_outside_journal(fs, tag.encode())
    if settled:
        assert outside == 0, f"{outside} copies of the names in blocks outside the journal"
    else:
        assert outside > 0, "control: without the syncfs, freed directory blocks keep names"


def _fill_up(fs: LoopFS) -> None:
    """Leave the filesystem without one free block, for root too (ext4's pool kept for
    metadata, ``reserved_clusters``, set to 0 first: a directory may grow into it)."""
    dev = subprocess.run(
        ["findmnt", "-no", "SOURCE", str(fs.mountpoint)], capture_output=True, text=True
    ).stdout.strip()
    with open(f"/sys/fs/ext4/{os.path.basename(dev)}/reserved_clusters", "w") as f:
        f.write("0")
    fd = os.open(os.path.join(fs.mountpoint, "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        written = -1
        while written:  # until a round after a sync finds no block (delalloc guesses)
            written = 0
            try:
                while True:
                    written += os.write(fd, b"\0" * 1024)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
            os.fsync(fd)
    finally:
        os.close(fd)


def test_ext4_full_disk_graveyard_falls_back_in_place_and_leaves_no_names(
    loopfs: Callable[..., LoopFS], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Real ENOSPC: the filesystem is filled up before the cleanup, so once the top's
    # directory block is full of grave names it cannot grow; those moves fail and the
    # directories are synced and removed where they are. All of it goes, and no name stays
    # outside the journal.
    from hardtemp import _dirsettle, _remove

    calls: list[int] = []
    taken: list[str] = []
    real_take = _dirsettle.Graveyard.take

    def counted(info: Any) -> Callable[[int], None] | None:
        real = _dirsettle.settler_for(info)
        assert real is not None

        def settle(fd: int) -> None:
            calls.append(fd)
            real(fd)

        return settle

    def take(self: Any, parent_fd: int, name: str, fd: int = -1) -> bool:
        moved: bool = real_take(self, parent_fd, name, fd)
        if moved:
            taken.append(name)
        return moved

    monkeypatch.setattr(_remove, "settler_for", counted)
    monkeypatch.setattr(_dirsettle.Graveyard, "take", take)
    fs = loopfs("ext4", size_mb=16)
    tag = _tag()
    depth = 400  # a grave name takes 28 bytes: a 4 KiB block holds ~145 of them
    with hardtemp.TemporaryDirectory(dir=fs.mountpoint) as d:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for level in range(depth):
                name = f"dir-{tag}-{level:03d}"
                os.mkdir(name, dir_fd=fd)
                sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
                os.close(fd)
                fd = sub
        finally:
            os.close(fd)
        subprocess.run(["sync"], check=True)
        _fill_up(fs)
    assert not os.path.exists(d)
    outside, _ = _hits_outside_journal(fs, tag.encode())
    assert outside == 0, f"{outside} copies of the names in blocks outside the journal"
    assert 0 < len(taken) < depth, len(taken)  # some moved, the rest in place
    assert len(calls) == depth - len(taken) + 1  # (measured: 382 moved, 18 in place)


# --- The syncfs skipped for a tree nothing of which reached the disk (issue 13) ---------


def _fill_quiet(d: str, tag: str, files: int = 20) -> None:
    """Tagged files in ``d`` and in a tagged subdirectory, nothing synced."""
    sub = os.path.join(d, f"sub-{tag}")
    os.mkdir(sub)
    for i in range(files):
        for where in (d, sub):
            with open(os.path.join(where, f"patient-{tag}-{i:02d}.csv"), "wb") as f:
                f.write(b"x" * 100)


def test_ext4_tree_removed_before_any_commit_skips_the_sync_and_no_name_reaches_the_disk(
    loopfs: Callable[..., LoopFS],
) -> None:
    # commit=300: no periodic commit during the test; nothing else writes to this disk.
    fs = loopfs("ext4", options="commit=300")
    tag = _tag()
    before = dict(_dirsettle.counts)
    with hardtemp.TemporaryDirectory(dir=fs.mountpoint, prefix=f"job-{tag}-") as d:
        _fill_quiet(d, tag)
    assert _dirsettle.counts["skipped"] > before["skipped"]
    assert _dirsettle.counts["synced"] == before["synced"]
    outside, inside = _hits_outside_journal(fs, tag.encode())
    # Never committed: the forgotten blocks reached neither their home nor the journal.
    assert (outside, inside) == (0, 0)


@pytest.mark.parametrize("wrong_skip", [False, True], ids=["detected", "control-skip-anyway"])
def test_ext4_commit_forced_by_another_process_between_creation_and_cleanup_makes_it_sync(
    loopfs: Callable[..., LoopFS], monkeypatch: pytest.MonkeyPatch, wrong_skip: bool
) -> None:
    fs = loopfs("ext4", options="commit=300")
    tag = _tag()
    if wrong_skip:  # the defence disabled: the disk is taken as untouched whatever it saw
        monkeypatch.setattr(_dirsettle.Fresh, "quiet", lambda self: True)
    synced = _dirsettle.counts["synced"]
    with hardtemp.TemporaryDirectory(dir=fs.mountpoint, prefix=f"job-{tag}-") as d:
        _fill_quiet(d, tag)
        # Another process commits the journal and writes the name-holding blocks home.
        subprocess.run(["sync", "-f", str(fs.mountpoint)], check=True)
    outside, _ = _hits_outside_journal(fs, tag.encode())
    if wrong_skip:
        assert outside > 0, "control: a skip after a commit leaves the names in freed blocks"
    else:
        assert _dirsettle.counts["synced"] > synced
        assert outside == 0, f"{outside} copies of the names in blocks outside the journal"


def _sync_loop(mountpoint: str, stop: float) -> None:  # pragma: no cover - a forked child
    """Commit the journal at random moments until ``stop`` (in a forked child)."""
    import random
    import time

    fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY)
    while time.monotonic() < stop:
        time.sleep(random.uniform(0, 0.03))
        os.fsync(fd)  # a directory fsync: commits the running transaction
        subprocess.run(["sync", "-f", mountpoint], check=False)
    os._exit(0)


def test_ext4_commits_racing_creation_and_cleanup_never_leave_names_outside_the_journal(
    loopfs: Callable[..., LoopFS],
) -> None:
    import random
    import time

    # commit=1 and a child committing at random moments: commits land before, during and
    # after creation and cleanup; both ways (skip and sync) must occur, names never stay.
    fs = loopfs("ext4", options="commit=1")
    tags = [_tag() for _ in range(40)]
    before = dict(_dirsettle.counts)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        _sync_loop(str(fs.mountpoint), time.monotonic() + 30)
    try:
        for tag in tags:
            with hardtemp.TemporaryDirectory(dir=fs.mountpoint, prefix=f"job-{tag}-") as d:
                _fill_quiet(d, tag, files=3)
                time.sleep(random.uniform(0, 0.04))
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    skipped = _dirsettle.counts["skipped"] - before["skipped"]
    synced = _dirsettle.counts["synced"] - before["synced"]
    gc.collect()
    _dirtrust.clear_cache()
    fs.unmount()
    size, journal = _journal_blocks(str(fs.image))
    data = fs.image.read_bytes()
    journal_set = set(journal)
    found = [t for t in tags for m in _find_all(data, t.encode()) if m // size not in journal_set]
    assert not found, f"names outside the journal: {sorted(set(found))}"
    assert skipped > 0, (skipped, synced)  # both ways were taken in the race
    assert synced > 0, (skipped, synced)


def _find_all(data: bytes, needle: bytes) -> list[int]:
    found, pos = [], data.find(needle)
    while pos >= 0:
        found.append(pos)
        pos = data.find(needle, pos + 1)
    return found


@pytest.mark.parametrize("wrong_skip", [False, True], ids=["detected", "control-skip-anyway"])
def test_ext4_old_directory_moved_into_a_fresh_tree_makes_its_cleanup_sync(
    loopfs: Callable[..., LoopFS], monkeypatch: pytest.MonkeyPatch, wrong_skip: bool
) -> None:
    import time

    fs = loopfs("ext4", options="commit=300")
    tag = _tag()
    old = os.path.join(fs.mountpoint, f"old-{tag}")
    os.mkdir(old)
    for i in range(20):  # empty: no overwrite to sync (which would write to the disk)
        with open(os.path.join(old, f"patient-{tag}-{i:02d}.csv"), "wb"):
            pass
    subprocess.run(["sync", "-f", str(fs.mountpoint)], check=True)  # its names are home now
    time.sleep(0.05)  # born a clock tick before the tree
    if wrong_skip:  # the defence disabled: every directory taken as born in the tree
        monkeypatch.setattr(_dirsettle.Fresh, "young", lambda self, fd: True)
        # And the disk taken as untouched: a global `sync` by another process (CI's other
        # lane) moving the write count would make the cleanup sync, and the control fail
        # for a reason that is not the defence under test (seen once).
        monkeypatch.setattr(_dirsettle.Fresh, "quiet", lambda self: True)
    synced = _dirsettle.counts["synced"]
    with hardtemp.TemporaryDirectory(dir=fs.mountpoint) as d:
        os.rename(old, os.path.join(d, "moved"))  # the disk's write count does not change
    outside, _ = _hits_outside_journal(fs, tag.encode())
    if wrong_skip:
        assert outside > 0, "control: the moved-in directory's freed blocks keep the names"
    else:
        assert _dirsettle.counts["synced"] > synced
        assert outside == 0, f"{outside} copies of the names in blocks outside the journal"
