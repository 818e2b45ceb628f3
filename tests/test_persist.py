"""Publishing results: persist(durable=True), TemporaryDirectory.persist(), publish().

The order of the system calls is read from a real tracer (strace), crashes are
real SIGKILLs that strace delivers at a chosen system call, and the no-clobber
race is run by many processes at the same moment.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import hardtemp
import hardtemp.aio as aio
from _gates import needs_root, needs_tool
from _helpers_core import SRC, open_fds
from hardtemp import _owner

needs_strace = needs_tool("strace", "strace")


def has_mark(path: str | Path) -> bool:
    try:
        os.getxattr(path, _owner.OWNER_XATTR, follow_symlinks=False)
    except OSError:
        return False
    return True


# --- persist(durable=True) ------------------------------------------------------------------


def test_durable_persist_moves_the_file_and_keeps_it(tmp_path: Path) -> None:
    f = hardtemp.NamedTemporaryFile(dir=tmp_path)
    f.write(b"result")
    target = tmp_path / "out" / "result.bin"
    target.parent.mkdir()
    assert f.persist(target, durable=True) == str(target)
    assert f.name == str(target)
    assert not f.delete
    f.close()
    assert target.read_bytes() == b"result"
    assert not has_mark(target)
    assert os.listdir(tmp_path) == ["out"]


def test_durable_noclobber_never_replaces_and_keeps_the_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_bytes(b"theirs")
    with hardtemp.NamedTemporaryFile(dir=tmp_path) as f:
        f.write(b"ours")
        with pytest.raises(FileExistsError):
            f.persist_noclobber(target, durable=True)
        assert target.read_bytes() == b"theirs"
        assert has_mark(f.name)  # still a temp file for the sweeper
        name = f.name
    assert not os.path.exists(name)
    assert os.listdir(tmp_path) == ["taken"]


def test_durable_persist_of_a_closed_file_syncs_it_through_its_verified_name(
    tmp_path: Path,
) -> None:
    f = hardtemp.NamedTemporaryFile(dir=tmp_path, delete_on_close=False)
    f.write(b"closed first")
    f.close()
    fds = open_fds()
    assert f.persist_noclobber(str(tmp_path / "r"), durable=True) == str(tmp_path / "r")
    assert open_fds() <= fds  # the descriptor opened to sync it is closed again
    assert (tmp_path / "r").read_bytes() == b"closed first"


def test_persist_to_a_missing_directory_fails_and_changes_nothing(tmp_path: Path) -> None:
    with hardtemp.NamedTemporaryFile(dir=tmp_path) as f:
        with pytest.raises(FileNotFoundError):
            f.persist(tmp_path / "nowhere" / "x", durable=True)
        with pytest.raises(IsADirectoryError):
            f.persist(str(tmp_path) + "/", durable=True)
        assert os.path.exists(f.name)
        assert f.delete


# --- TemporaryDirectory.persist() ----------------------------------------------------------------


def test_directory_persist_keeps_the_tree_and_stops_cleanup(tmp_path: Path) -> None:
    t = hardtemp.TemporaryDirectory(dir=tmp_path)
    Path(t.name, "sub").mkdir()
    Path(t.name, "sub", "a").write_bytes(b"A")
    os.symlink("/etc/passwd", os.path.join(t.name, "link"))  # synced? never followed
    os.mkfifo(os.path.join(t.name, "fifo"))  # never opened for writing, never blocks
    target = tmp_path / "kept"
    fds = open_fds()
    assert t.persist(target, durable=True) == str(target)
    assert open_fds() < fds  # the directory's lock descriptor is released, nothing opened
    assert t.name == str(target)
    t.cleanup()  # nothing: it is no temp directory any more
    with t:
        pass
    assert (target / "sub" / "a").read_bytes() == b"A"
    assert os.readlink(target / "link") == "/etc/passwd"
    assert not has_mark(target)
    with pytest.raises(ValueError, match="already removed or persisted"):
        t.persist(tmp_path / "again")


def test_directory_persist_never_replaces_even_an_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    t = hardtemp.TemporaryDirectory(dir=tmp_path)
    Path(t.name, "x").write_bytes(b"x")
    assert has_mark(t.name)
    with pytest.raises(FileExistsError):
        t.persist(tmp_path / "empty", durable=True)
    assert has_mark(t.name)  # still a temp directory: the sweeper's mark is back
    t.cleanup()  # and cleanup still removes it
    assert sorted(os.listdir(tmp_path)) == ["empty"]
    assert os.listdir(tmp_path / "empty") == []


def test_a_persisted_directory_refuses_a_directory_swapped_in_under_our_name(
    tmp_path: Path,
) -> None:
    t = hardtemp.TemporaryDirectory(dir=tmp_path)
    os.rename(t.name, tmp_path / "moved")
    os.mkdir(t.name)  # someone else's directory under our name
    with pytest.raises(hardtemp.UnsafeFileError):
        t.persist(tmp_path / "target")
    assert not (tmp_path / "target").exists()
    os.rmdir(t.name)
    shutil.rmtree(tmp_path / "moved")
    t.cleanup()


# --- publish(): an unnamed file linked into place -----------------------------------------------


def test_publish_gives_a_linkable_unnamed_file_its_name(tmp_path: Path) -> None:
    f = hardtemp.TemporaryFile(dir=tmp_path, encrypt=False, linkable=True)
    f.write(b"finished result")
    assert os.fstat(f.fileno()).st_nlink == 0
    assert os.listdir(tmp_path) == []  # no name at all until published
    target = tmp_path / "result"
    assert hardtemp.publish(f, target, durable=True) == str(target)
    st = os.stat(target)
    assert st.st_nlink == 1
    assert st.st_mode & 0o777 == 0o600
    f.write(b"!")  # still the caller's open file
    f.close()  # no overwrite any more: it is a kept file
    assert target.read_bytes() == b"finished result!"
    with pytest.raises(ValueError, match="closed"):
        hardtemp.publish(f, tmp_path / "again")


def test_publish_in_text_mode_and_unbuffered(tmp_path: Path) -> None:
    t = hardtemp.TemporaryFile("w+", encoding="utf-8", dir=tmp_path, encrypt=False, linkable=True)
    t.write("text")  # still in the text layer's buffer: publish flushes it
    hardtemp.publish(t, tmp_path / "t.txt")
    t.close()
    u = hardtemp.TemporaryFile(buffering=0, dir=tmp_path, encrypt=False, linkable=True)
    u.write(b"raw")
    hardtemp.publish(u, str(tmp_path / "u.bin"))
    u.close()
    assert (tmp_path / "t.txt").read_text() == "text"
    assert (tmp_path / "u.bin").read_bytes() == b"raw"


def test_publish_never_replaces_and_the_file_stays_a_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_bytes(b"theirs")
    with hardtemp.TemporaryFile(dir=tmp_path, encrypt=False, linkable=True) as f:
        f.write(b"ours")
        with pytest.raises(FileExistsError):
            hardtemp.publish(f, target, durable=True)
        assert os.fstat(f.fileno()).st_nlink == 0
        hardtemp.publish(f, tmp_path / "free")
        with pytest.raises(ValueError, match="name already"):
            hardtemp.publish(f, tmp_path / "twice")
    assert target.read_bytes() == b"theirs"
    assert (tmp_path / "free").read_bytes() == b"ours"


def test_publish_refuses_files_that_were_not_created_linkable(tmp_path: Path) -> None:
    # The default unnamed file is O_TMPFILE|O_EXCL: the kernel itself refuses to link it.
    with hardtemp.TemporaryFile(dir=tmp_path, encrypt=False) as f:
        f.write(b"x")
        with pytest.raises(ValueError, match="not created linkable"):
            hardtemp.publish(f, tmp_path / "x")
    with hardtemp.TemporaryFile(dir=tmp_path) as e, pytest.raises(ValueError, match="linkable"):
        hardtemp.publish(e, tmp_path / "x")
    with hardtemp.NamedTemporaryFile(dir=tmp_path) as n, pytest.raises(ValueError):
        hardtemp.publish(n, tmp_path / "x")
    with pytest.raises(ValueError, match="encrypt=False"):
        hardtemp.TemporaryFile(dir=tmp_path, linkable=True)
    assert os.listdir(tmp_path) == []


def test_linkable_without_o_tmpfile_is_refused_not_silently_unlinkable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A kernel or filesystem without O_TMPFILE (cannot be caused here: simulated by
    # clearing the flag, as tests/attack does): the created+unlinked fallback could never
    # be linked, so linkable=True fails clearly and leaves nothing.
    from hardtemp import _create

    monkeypatch.setattr(_create, "_UNNAMED_FLAGS", _create._UNNAMED_FLAGS & ~os.O_TMPFILE)
    with pytest.raises(OSError, match="needs O_TMPFILE") as info:
        hardtemp.TemporaryFile(dir=tmp_path, encrypt=False, linkable=True)
    assert info.value.errno == 95  # EOPNOTSUPP
    assert os.listdir(tmp_path) == []


@needs_root("for unshare -m and umount /proc")
def test_publish_without_proc_fails_clearly_and_keeps_the_data(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import os, sys, hardtemp
        f = hardtemp.TemporaryFile(dir={str(tmp_path)!r}, encrypt=False, linkable=True)
        f.write(b"data")
        os.system("umount -l /proc")
        assert not os.path.exists("/proc/self")
        try:
            hardtemp.publish(f, {str(tmp_path / "r")!r})
        except FileNotFoundError as exc:
            print("refused:", exc)
        f.seek(0)
        print("data:", f.read().decode())
        """
    )
    proc = subprocess.run(
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            'mount --make-rprivate / && exec "$0" -c "$1"',
            sys.executable,
            code,
        ],
        env=dict(os.environ, PYTHONPATH=SRC),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "refused:" in proc.stdout
    assert "needs /proc mounted" in proc.stdout
    assert "data: data" in proc.stdout
    assert os.listdir(tmp_path) == []


# --- the system calls, seen by strace ------------------------------------------------------------

TRACED = "trace=fsync,fdatasync,rename,renameat,renameat2,link,linkat"


def traced(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with ``args`` in a fresh interpreter under strace (descriptors' paths shown)."""
    return subprocess.run(
        ["strace", "-f", "-qq", "-y", "-e", TRACED, sys.executable, "-c", code, *args],
        env=dict(os.environ, PYTHONPATH=SRC),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def calls_between(trace: str, start: str, end: str) -> list[str]:
    part = trace.split(start, 1)[1].split(end, 1)[0]
    return [
        line.split("] ", 1)[-1]
        for line in part.splitlines()
        if line.split("] ", 1)[-1].startswith(("fsync", "fdatasync", "rename", "link"))
    ]


PERSIST = textwrap.dedent(
    """
    import os, sys, hardtemp
    d, kind, durable = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    os.makedirs(d + "/dst", exist_ok=True)
    if kind == "dir":
        t = hardtemp.TemporaryDirectory(dir=d)
        open(t.name + "/inner", "wb").write(b"inner")
    elif kind == "link":
        f = hardtemp.TemporaryFile(dir=d, encrypt=False, linkable=True)
        f.write(b"x" * 100000)
    else:
        f = hardtemp.NamedTemporaryFile(dir=d)
        f.write(b"x" * 100000)
    os.write(2, b"==START==\\n")
    if kind == "dir":
        t.persist(d + "/dst/result", durable=durable)
    elif kind == "link":
        hardtemp.publish(f, d + "/dst/result", durable=durable)
    elif kind == "noclobber":
        f.persist_noclobber(d + "/dst/result", durable=durable)
    else:
        f.persist(d + "/dst/result", durable=durable)
    os.write(2, b"==END==\\n")
    """
)


@needs_strace
@pytest.mark.parametrize("kind", ["replace", "noclobber", "link", "dir"])
def test_durable_publish_syncs_data_then_names_then_syncs_the_directory(
    tmp_path: Path, kind: str
) -> None:
    proc = traced(PERSIST, str(tmp_path), kind, "1")
    assert proc.returncode == 0, proc.stderr
    calls = calls_between(proc.stderr, "==START==", "==END==")
    naming = [i for i, c in enumerate(calls) if c.startswith(("rename", "link"))]
    assert len(naming) == 1, calls
    n = naming[0]
    before, after = calls[:n], calls[n + 1 :]
    # 1. The data is synced before the name appears.
    assert before, calls
    assert all(c.startswith("fsync(") for c in before), calls
    if kind == "dir":
        assert any("/inner>" in c for c in before), calls  # the files inside
        assert "/dst" not in before[-1], calls
    else:
        assert len(before) == 1, calls  # the file itself
    # 2. The name is made relative to a descriptor of the destination directory...
    m = re.search(r"(\d+)<" + re.escape(f"{tmp_path}/dst") + r'>, "result"', calls[n])
    assert m is not None, calls
    if kind in ("noclobber", "dir"):
        assert calls[n].startswith("renameat2("), calls
        assert "RENAME_NOREPLACE" in calls[n], calls
    elif kind == "link":
        assert calls[n].startswith("linkat("), calls
        assert '"/proc/self/fd/' in calls[n], calls
    else:
        assert calls[n].startswith("renameat("), calls
    # 3. ...and that very descriptor's directory is synced right after.
    assert after, calls
    assert after[0].startswith(f"fsync({m.group(1)}<{tmp_path}/dst>)"), calls


@needs_strace
@pytest.mark.parametrize("kind", ["replace", "noclobber", "link", "dir"])
def test_control_without_durable_nothing_is_synced(tmp_path: Path, kind: str) -> None:
    # The same trace without durable: the tracer sees the difference (the test can fail).
    proc = traced(PERSIST, str(tmp_path), kind, "0")
    assert proc.returncode == 0, proc.stderr
    calls = calls_between(proc.stderr, "==START==", "==END==")
    assert not [c for c in calls if c.startswith(("fsync", "fdatasync"))], calls
    assert len([c for c in calls if c.startswith(("rename", "link"))]) == 1, calls


# --- SIGKILL at every step ------------------------------------------------------------------------

CRASH = textwrap.dedent(
    """
    import os, sys, hardtemp
    d, kind = sys.argv[1], sys.argv[2]
    chunk = bytes(range(256)) * 4096  # 1 MiB
    if kind == "naive":  # the control: writing the result in place
        f = open(d + "/result", "wb", buffering=0)
    elif kind == "link":
        f = hardtemp.TemporaryFile(dir=d, encrypt=False, linkable=True, buffering=0)
    else:
        f = hardtemp.NamedTemporaryFile(dir=d, buffering=0)
    for _ in range(8):
        f.write(chunk)
    if kind == "link":
        hardtemp.publish(f, d + "/result", durable=True)
    elif kind != "naive":
        f.persist_noclobber(d + "/result", durable=True)
    os.write(1, b"done")
    """
)

FULL = (bytes(range(256)) * 4096) * 8

# (syscall, which call): mid-data, the file's fsync, the naming call, the directory's fsync.
CRASH_POINTS = [("write", 4), ("fsync", 1), ("NAMING", 1), ("fsync", 2)]


def crash(tmp_path: Path, kind: str, call: str, nth: int) -> None:
    """Run the CRASH child, SIGKILLed by strace when it enters the ``nth`` ``call``."""
    proc = subprocess.run(
        [
            "strace",
            "-f",
            "-qq",
            "-e",
            f"trace={call}",
            "-e",
            f"inject={call}:signal=KILL:when={nth}",
            sys.executable,
            "-c",
            CRASH,
            str(tmp_path),
            kind,
        ],
        env=dict(os.environ, PYTHONPATH=SRC),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.stdout == b"", "the process was not killed"
    assert proc.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), proc.stderr


@needs_strace
@pytest.mark.parametrize("kind", ["noclobber", "link"])
@pytest.mark.parametrize(("call", "nth"), CRASH_POINTS, ids=lambda x: str(x))
def test_sigkill_at_any_step_never_leaves_a_partial_file_at_the_destination(
    tmp_path: Path, kind: str, call: str, nth: int
) -> None:
    if call == "NAMING":
        call = "linkat" if kind == "link" else "renameat2"
    crash(tmp_path, kind, call, nth)
    result = tmp_path / "result"
    if result.exists():
        assert result.read_bytes() == FULL  # the whole file or nothing, never a part
    # Killed before the naming call: nothing at the destination.
    if call in ("write",) or (call == "fsync" and nth == 1):
        assert not result.exists()
    if call == "fsync" and nth == 2:
        assert result.read_bytes() == FULL
    if kind == "link":
        # An unnamed file leaves nothing else behind, whatever the moment of the crash.
        assert os.listdir(tmp_path) in ([], ["result"])


@needs_strace
def test_control_sigkill_while_writing_in_place_leaves_a_partial_file(tmp_path: Path) -> None:
    # Control: writing the result at its final name, the same SIGKILL leaves a part of it.
    crash(tmp_path, "naive", "write", 4)
    data = (tmp_path / "result").read_bytes()
    assert 0 < len(data) < len(FULL)


# --- many processes race for one name ----------------------------------------------------------


def _racer(d: str, go: int, report: int, me: int, how: str) -> None:  # pragma: no cover - child
    code = 1
    try:
        content = f"writer {me}".encode() * 1000
        if how == "persist":
            f = hardtemp.NamedTemporaryFile(dir=d)
            f.write(content)
        elif how == "publish":
            f = hardtemp.TemporaryFile(dir=d, encrypt=False, linkable=True)
            f.write(content)
        os.read(go, 1)  # everyone waits here; the parent releases all at once
        try:
            if how == "persist":
                f.persist_noclobber(d + "/target", durable=True)
            elif how == "publish":
                hardtemp.publish(f, d + "/target")
            elif how == "replace":
                f = hardtemp.NamedTemporaryFile(dir=d)
                f.write(content)
                f.persist(d + "/target")
            else:  # another program: a plain exclusive create
                fd = os.open(d + "/target", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                os.write(fd, content)
                os.close(fd)
            os.write(report, f"{me} won\n".encode())
        except FileExistsError:
            os.write(report, f"{me} lost\n".encode())
        code = 0
    finally:
        os._exit(code)


def race(tmp_path: Path, hows: list[str]) -> tuple[list[int], bytes]:
    d = str(tmp_path)
    go_r, go_w = os.pipe()
    rep_r, rep_w = os.pipe()
    pids = []
    for me, how in enumerate(hows):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            os.close(go_w)
            os.close(rep_r)
            _racer(d, go_r, rep_w, me, how)
        pids.append(pid)
    os.close(go_r)
    os.close(rep_w)
    os.close(go_w)  # EOF: every child's read returns at the same moment
    with os.fdopen(rep_r, "rb") as rep:
        lines = rep.read().decode().split()
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    winners = [int(lines[i]) for i in range(0, len(lines), 2) if lines[i + 1] == "won"]
    return winners, (tmp_path / "target").read_bytes()


@pytest.mark.parametrize("publisher", ["persist", "publish"])
def test_no_clobber_publish_never_replaces_what_another_process_created_at_once(
    tmp_path_factory: pytest.TempPathFactory, publisher: str
) -> None:
    # 12 processes at the same instant: half publish no-clobber, half are another program
    # creating the same name with O_EXCL. Exactly one wins; its content is what stays.
    for _ in range(15):
        d = tmp_path_factory.mktemp("race")
        hows = [publisher, "exclusive"] * 6
        winners, content = race(d, hows)
        assert len(winners) == 1, winners
        assert content == f"writer {winners[0]}".encode() * 1000


def test_control_a_replacing_persist_clobbers_a_file_another_process_created(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # Control: with persist() (replace), a process whose O_EXCL create "won" can have its
    # file replaced afterwards: several "winners", and the survivor need not be the creator.
    clobbered = 0
    for _ in range(15):
        d = tmp_path_factory.mktemp("race")
        winners, _content = race(d, ["replace", "exclusive"] * 6)
        clobbered += len(winners) > 1
    assert clobbered > 0


# --- through hardtemp.aio -----------------------------------------------------------------------


def test_async_durable_persist_directory_persist_and_publish(tmp_path: Path) -> None:
    async def main() -> None:
        f = await aio.NamedTemporaryFile(dir=tmp_path)
        await f.write(b"named")
        await f.persist_noclobber(tmp_path / "a", durable=True)
        await f.close()
        t = await aio.TemporaryDirectory(dir=tmp_path)
        Path(t.name, "x").write_bytes(b"x")
        await t.persist(tmp_path / "b", durable=True)
        assert t.name == str(tmp_path / "b")
        await t.cleanup()
        u = await aio.TemporaryFile(dir=tmp_path, encrypt=False, linkable=True)
        await u.write(b"linked")
        await aio.publish(u, tmp_path / "c", durable=True)
        await u.close()

    asyncio.run(main())
    assert (tmp_path / "a").read_bytes() == b"named"
    assert (tmp_path / "b" / "x").read_bytes() == b"x"
    assert (tmp_path / "c").read_bytes() == b"linked"
