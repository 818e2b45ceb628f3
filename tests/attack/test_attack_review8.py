"""Adversarial review of issue 13's last cuts this session (review8).

203826c reads a whole stored 4 KiB block before the last one "inline": when ``readinto``
gets a writable contiguous ``memoryview`` of the block's size, one ``preadv`` and the
block is decrypted straight into the caller's view. The general path casts the caller's
buffer to bytes first (``out.cast("B")``); the inline one hands the view to the cipher as
it is, and tests only its ``nbytes``. A view of another item format (``"Q"``: an
``array.array("Q")``, or a ``bytearray`` cast to 64-bit words, as a reader filling a word
array does) is a valid buffer for ``io.RawIOBase.readinto`` -- the standard library's
``TemporaryFile`` and hardtemp's own general path (8 KiB blocks) fill it -- but the cipher
refuses it: a valid read raises ``TypeError``, and a tampered block raises ``TypeError``
instead of ``IntegrityError``.

2ca2e12 binds a sweep mark to a "birth known" flag and the inode's birth time; on a
filesystem whose statx reports no birth time (ext4 made with ``-I 128``) both are zero on
the writer's and the verifier's side, and a mark restored onto a reused inode number
verifies.

d5637fc made the small-overwrite pool's lock reentrant (review7's hang); its inline take
reads the pool's position, calls ``len()`` and only then stores the new one. A real signal
lands at that CALL's eval-breaker check (seen with an ``ITIMER_REAL`` at 20 us: the handler's
frame at that very instruction); here it is raised there with ``sys.monitoring``, and its
handler overwrites another small file, as a named file closed or collected there does.

33ccd60: the named close forgets the claim's dup number when it "holds another inode"
(review7: a library's double close freed it, the application's open() took it). The
application's own open of the temp file's *name* -- what a named temp file is for -- holds
our very inode: told apart by (st_dev, st_ino) alone, it is closed by our close.

A read racing a close in another thread: ``readinto`` checks the descriptor before taking
the file's lock; the close (holding it) empties the counters but keeps the size, so the read
then returns zeros as data. The close is held inside its locked section at the slot pool's
lock (which it really takes), so the order is certain, not a timing hope.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import CodeType
from typing import Any

import pytest

import hardtemp
from _helpers_attack import other_descriptors_of
from _helpers_core import SRC
from hardtemp import _linux, _markkey, _owner, _wipe
from hardtemp.exceptions import IntegrityError

_BLOCK = 4096


def _file_of_4k_blocks(data: bytes) -> io.RawIOBase:
    """An encrypted file (``buffering=0``: the raw file itself) whose first write chose
    the 4 KiB blocks (a first write of at most 4 KiB), then three stored blocks."""
    f = hardtemp.TemporaryFile(buffering=0)
    f.write(data[:_BLOCK])  # the first write: at most 4 KiB, so 4 KiB blocks
    f.write(data[_BLOCK:])
    assert f._bs == _BLOCK  # type: ignore[attr-defined]
    return f  # type: ignore[return-value]


def _words_view(nbytes: int) -> tuple[bytearray, memoryview]:
    buf = bytearray(nbytes)
    return buf, memoryview(buf).cast("Q")


def test_control_the_standard_library_and_the_general_path_fill_a_word_view() -> None:
    data = os.urandom(3 * _BLOCK)
    with tempfile.TemporaryFile(buffering=0) as std:
        std.write(data)
        std.seek(_BLOCK)
        buf, view = _words_view(_BLOCK)
        assert std.readinto(view) == _BLOCK
        assert bytes(buf) == data[_BLOCK : 2 * _BLOCK]
    # hardtemp's general path (8 KiB blocks: a 4 KiB read is not the inline one) casts it.
    with hardtemp.TemporaryFile(buffering=0) as f:
        f.write(data)
        assert f._bs == 2 * _BLOCK  # type: ignore[attr-defined]
        f.seek(_BLOCK)
        buf, view = _words_view(_BLOCK)
        assert f.readinto(view) == _BLOCK  # type: ignore[attr-defined]
        assert bytes(buf) == data[_BLOCK : 2 * _BLOCK]


def test_control_the_inline_read_into_a_byte_view_is_right_and_detects_tampering() -> None:
    data = os.urandom(3 * _BLOCK)
    with _file_of_4k_blocks(data) as f:
        f.seek(_BLOCK)
        buf = bytearray(_BLOCK)
        assert f.readinto(memoryview(buf)) == _BLOCK
        assert bytes(buf) == data[_BLOCK : 2 * _BLOCK]
        assert f.tell() == 2 * _BLOCK
        _flip_a_bit_of_block_0(f)
        f.seek(0)
        buf = bytearray(b"\xaa" * _BLOCK)
        with pytest.raises(IntegrityError):
            f.readinto(memoryview(buf))
        assert bytes(buf) == bytes(_BLOCK)
        assert f.tell() == 0


def _flip_a_bit_of_block_0(f: Any) -> None:
    """Flip one ciphertext bit of block 0 in ``f``'s backing file (a tampered block)."""
    fd = f._fd
    b = os.pread(fd, 1, 10)
    os.pwrite(fd, bytes([b[0] ^ 1]), 10)


# Found in review (review8): the inline read took a 'Q'-format view to the cipher uncast;
# it now takes only byte views (others go the general way, which casts).
def test_a_valid_inline_read_into_a_word_view_returns_the_plaintext() -> None:
    data = os.urandom(3 * _BLOCK)
    with _file_of_4k_blocks(data) as f:
        f.seek(_BLOCK)
        buf, view = _words_view(_BLOCK)
        assert f.readinto(view) == _BLOCK
        assert bytes(buf) == data[_BLOCK : 2 * _BLOCK]
        assert f.tell() == 2 * _BLOCK


# Found in review (review8): the inline read took a 'Q'-format view to the cipher uncast;
# it now takes only byte views (others go the general way, which casts).
def test_a_tampered_block_read_inline_into_a_word_view_raises_integrity_error() -> None:
    data = os.urandom(3 * _BLOCK)
    with _file_of_4k_blocks(data) as f:
        _flip_a_bit_of_block_0(f)
        f.seek(0)
        buf, view = _words_view(_BLOCK)
        buf[:] = b"\xaa" * _BLOCK
        with pytest.raises(IntegrityError):
            f.readinto(view)
        assert bytes(buf) == bytes(_BLOCK)
        assert f.tell() == 0


# --- 2ca2e12: the sweep mark's birth binding where the filesystem keeps no birth time -------


def _ext4_of_128_byte_inodes(loopfs: Any) -> Any:
    """A loop-mounted ext4 made with ``-I 128``: its inodes have no room for i_crtime,
    so statx reports no birth time (``mke2fs`` chose such inodes for small filesystems,
    and ext2/ext3-formatted volumes have them). Made so by the fixture before its first
    mount: no second mkfs under a superblock another mount namespace may keep."""
    return loopfs("ext4", mkfs_args=("-I", "128"))


def _birth_known(path: Path) -> bool:
    fd = os.open(path, os.O_PATH)
    try:
        return _linux.birth_ns(fd)[2] is not None
    finally:
        os.close(fd)


def _restored_mark_on_a_reused_inode(d: Path) -> tuple[_owner.Verdict, bool]:
    """Our mark on file ``f``, the file removed, a later ``f`` given the very inode number,
    the mark's bytes restored onto it (a backup restored with its xattrs, cp
    --preserve=all): the sweeper's verdict on the later file, and whether it got the very
    inode number (the premise)."""
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = os.open(d / "f", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        first = os.fstat(fd).st_ino
        tag = _owner.OwnerTag(_owner._BOOT_ID, 0x7FFFFFF0, "1").encode()
        assert _owner.write_mark(fd, dfd, "f", tag)
        os.close(fd)
        saved = os.getxattr(d / "f", _owner.OWNER_XATTR)
        j = _judge(d, dfd, "f")
        assert j.verdict is _owner.Verdict.ORPHAN  # the mark verifies on its own inode
        j.close()
        os.unlink(d / "f")
        os.sync()  # the freed inode is free in the bitmap the allocator reads
        fd = os.open(d / "f", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        reused = os.fstat(fd).st_ino == first
        os.close(fd)
        os.setxattr(d / "f", _owner.OWNER_XATTR, saved)
        j = _judge(d, dfd, "f")
        verdict = j.verdict
        j.close()
        return verdict, reused
    finally:
        os.close(dfd)


def _judge(d: Path, dir_fd: int, name: str) -> _owner.Judgement:
    pfd = os.open(name, os.O_PATH | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        return _owner.judge(pfd, os.fstat(pfd), os.fstat(dir_fd), name, _markkey.load(create=False))
    finally:
        os.close(pfd)


def test_control_a_restored_mark_on_a_reused_inode_of_ext4_with_birth_times_is_refused(
    loopfs: Any,
) -> None:
    fs = loopfs("ext4")
    d = fs.mountpoint / "area"
    d.mkdir(mode=0o700)
    assert _birth_known(d)
    verdict, reused = _restored_mark_on_a_reused_inode(d)
    assert reused
    assert verdict is _owner.Verdict.UNMARKED


# Found in review (review8): without birth times the mark bound nothing that tells a
# reused inode number; it now binds the inode's generation there (FS_IOC_GETVERSION).
def test_a_restored_mark_on_a_reused_inode_without_birth_times_is_refused(
    loopfs: Any,
) -> None:
    fs = _ext4_of_128_byte_inodes(loopfs)
    d = fs.mountpoint / "area"
    d.mkdir(mode=0o700)
    assert not _birth_known(d)  # the premise: no birth time on this filesystem
    verdict, reused = _restored_mark_on_a_reused_inode(d)
    assert reused  # the premise: the very inode number again
    assert verdict is _owner.Verdict.UNMARKED


_JUDGE_F = """
import os, sys
from hardtemp import _markkey, _owner
dfd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
pfd = os.open("f", os.O_PATH | os.O_NOFOLLOW, dir_fd=dfd)
j = _owner.judge(pfd, os.fstat(pfd), os.fstat(dfd), "f", _markkey.load(create=False))
print(j.verdict.name)
"""


@pytest.mark.parametrize("proc", [True, False], ids=["with-proc", "without-proc"])
@pytest.mark.parametrize("birth", [True, False], ids=["birth-times", "no-birth-times"])
def test_a_sweeper_without_proc_calls_nothing_an_orphan(
    loopfs: Any, proc: bool, birth: bool
) -> None:
    # The sweeper holds each entry by an O_PATH descriptor (no open by name: another user
    # could swap in a device node), and reads its mark and, without birth times, its
    # generation through /proc/self/fd (f*xattr and ioctl refuse O_PATH): without /proc it
    # verifies no mark, so it removes nothing (SECURITY.md), with or without birth times.
    fs = loopfs("ext4") if birth else _ext4_of_128_byte_inodes(loopfs)
    d = fs.mountpoint / "area"
    d.mkdir(mode=0o700)
    assert _birth_known(d) is birth
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = os.open(d / "f", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        tag = _owner.OwnerTag(_owner._BOOT_ID, 0x7FFFFFF0, "1").encode()  # a creator long gone
        assert _owner.write_mark(fd, dfd, "f", tag)
        os.close(fd)
    finally:
        os.close(dfd)
    hide = "mount --make-rprivate / && mount -t tmpfs none /proc && " if not proc else ""
    judge = [sys.executable, "-c", _JUDGE_F, str(d)]
    out = subprocess.run(
        ["unshare", "-m", "sh", "-c", hide + 'exec "$@"', "sh", *judge],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=SRC),
        timeout=60,
        check=True,
    )
    expected = "ORPHAN" if proc else "UNMARKED"
    assert out.stdout.strip() == expected, out.stderr


# --- d5637fc: the small-overwrite pool's lock made reentrant -------------------------------


class _Reentered(Exception):
    pass


@contextlib.contextmanager
def _handler_at(code: CodeType, when: str, run: Callable[[], None]) -> Iterator[list[int]]:
    """``run`` as a SIGALRM handler, the signal raised (``signal.raise_signal``) at one point
    of ``code`` found by ``sys.monitoring``: ``"start"`` (its first instruction) or ``"len"``
    (the return of its ``len()`` call: the eval-breaker check of that CALL, where a real
    interval timer's signal was seen to land, ``frame.f_lasti`` at that CALL, in
    ``_take_small`` with ``pos`` read and ``pool._pos`` not yet stored). Yields a list that
    gets one item when the signal was raised."""
    mon: Any = sys.monitoring  # type: ignore[attr-defined,unused-ignore]
    tool = mon.DEBUGGER_ID
    raised: list[int] = []

    seen = [0]

    def fire(*args: Any) -> Any:
        seen[0] += 1
        at = when == "start" or (when == "len" and args[2] is len) or when == f"#{seen[0]}"
        if not raised and at:
            raised.append(1)
            signal.raise_signal(signal.SIGALRM)
        return None

    def handler(signum: int, frame: object) -> None:
        run()

    old = signal.signal(signal.SIGALRM, handler)
    mon.use_tool_id(tool, "review8")
    if when == "start":
        mon.register_callback(tool, mon.events.PY_START, fire)
        events = mon.events.PY_START
    elif when.startswith("#"):  # "#N": pending from the N-th instruction it runs
        mon.register_callback(tool, mon.events.INSTRUCTION, fire)
        events = mon.events.INSTRUCTION
    else:  # C_RETURN is seen only with CALL monitored
        mon.register_callback(tool, mon.events.CALL, lambda *args: None)
        mon.register_callback(tool, mon.events.C_RETURN, fire)
        events = mon.events.CALL
    mon.set_local_events(tool, code, events)
    try:
        yield raised
    finally:
        mon.set_local_events(tool, code, 0)
        events_used = (mon.events.PY_START, mon.events.CALL, mon.events.C_RETURN)
        for ev in (*events_used, mon.events.INSTRUCTION):
            mon.register_callback(tool, ev, None)
        mon.free_tool_id(tool)
        signal.signal(signal.SIGALRM, old)


def _two_small_overwrites(tmp_path: Path, when: str) -> tuple[bytes, bytes]:
    """File ``a`` overwritten by ``overwrite_small`` (a named file's close does it) while a
    signal handler, at point ``when`` of the pool's ``_take_small``, overwrites file ``b``
    the same way (a file of ours closed in a handler, or collected there): both contents."""
    paths = [tmp_path / "a", tmp_path / "b"]
    for p in paths:
        p.write_bytes(b"REVIEW8-SECRET" * 64)
    fds = [os.open(p, os.O_RDWR) for p in paths]
    try:
        _wipe._take_small(1)  # the pool's buffer exists: the inline (no refill) case

        def inner() -> None:
            _wipe.overwrite_small(fds[1], os.fstat(fds[1]))

        with _handler_at(_wipe._take_small.__code__, when, inner) as raised:
            _wipe.overwrite_small(fds[0], os.fstat(fds[0]))
        if not raised:
            return b"", b""  # "#N" past the function's last instruction
        return paths[0].read_bytes(), paths[1].read_bytes()
    finally:
        for fd in fds:
            os.close(fd)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring")
def test_control_a_handler_before_the_pool_is_read_gets_other_bytes(tmp_path: Path) -> None:
    a, b = _two_small_overwrites(tmp_path, "start")
    assert b"REVIEW8-SECRET" not in a  # both overwritten
    assert b"REVIEW8-SECRET" not in b
    assert a != b


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring")
# Found in review (review8): a reentered take got the bytes the outer take then handed out
# too; the position now moves before anything that can run a handler or a collection.
def test_a_handler_inside_the_pool_take_never_gets_the_same_bytes(tmp_path: Path) -> None:
    # The signal made pending at each instruction of the take in turn (its handler runs at
    # the next eval-breaker check, wherever the code then is), not only at the len() call
    # the break was found at: no landing place may hand the same bytes out twice.
    landed = 0
    for n in range(1, 200):
        a, b = _two_small_overwrites(tmp_path, f"#{n}")
        if not a:
            break
        landed += 1
        assert b"REVIEW8-SECRET" not in a  # both overwritten
        assert b"REVIEW8-SECRET" not in b
        assert a != b, f"the same bytes, signal pending from instruction {n}"
    assert landed > 10


# --- 203826c: encrypt=True takes the cached verified directory descriptor -----------------


@pytest.mark.parametrize("encrypt", [True, False])
@pytest.mark.parametrize("swap", ["world-writable", "symlink"])
def test_a_directory_changed_after_its_first_use_is_verified_again(
    tmp_path: Path, encrypt: bool, swap: str
) -> None:
    # The first file caches the directory's verification; the second must see the change:
    # a mode that lets other users in, or the path now a symlink to a world-writable place.
    d = tmp_path / "d"
    d.mkdir(mode=0o700)
    hardtemp.TemporaryFile(dir=d, encrypt=encrypt).close()
    if swap == "world-writable":
        d.chmod(0o777)
    else:
        other = tmp_path / "other"
        other.mkdir()
        other.chmod(0o777)
        d.rename(tmp_path / "d.old")
        d.symlink_to(other)
    with pytest.raises(hardtemp.UnsafeDirectoryError):
        hardtemp.TemporaryFile(dir=d, encrypt=encrypt)


# --- 33ccd60: a claim whose dup number holds "another file" forgets it ---------------------


def _steal(number: int, path: str | Path, flags: int) -> int:
    """A library's double close of ``number``, then the application's ``open(path)`` given
    it (put exactly there): returns ``number``, now the application's descriptor."""
    os.close(number)
    theirs = os.open(path, flags | os.O_CLOEXEC)
    if theirs != number:
        os.dup2(theirs, number)
        os.close(theirs)
    return number


def _still_open(theirs: int, ident: os.stat_result) -> None:
    try:
        after = os.fstat(theirs)
    except OSError as exc:
        pytest.fail(f"our cleanup closed the application's descriptor: {exc}")
    assert (after.st_dev, after.st_ino) == (ident.st_dev, ident.st_ino)


@pytest.mark.parametrize(
    "freed",
    [
        pytest.param(False, id="control-no-double-close"),
        # Found in review (review8): told by (st_dev, st_ino) alone, the application's open
        # of our name on the freed number was closed by our close (EBADF on its next use).
        pytest.param(True, id="claims-dup-number-taken-by-an-open-of-our-name"),
    ],
)
def test_the_application_s_open_of_our_name_on_the_claim_s_number_stays_open(
    tmp_path: Path, freed: bool
) -> None:
    # NamedTemporaryFile's purpose: the application opens our name (a reader it hands on),
    # here with the file already closed (delete_on_close=False: removed at exit, locked
    # meanwhile through the claim's dup). Our number is a high one (no library's double
    # close of a number it held reaches it): put there on purpose.
    with hardtemp.NamedTemporaryFile(dir=tmp_path, delete_on_close=False) as f:
        f.write(b"REVIEW8 " * 10)
        f.flush()
        others = other_descriptors_of(f.fileno())
        assert len(others) == 1, others  # the claim's dup of our file (the sweep lock)
        number = others[0]
        assert _owner._top()[0] - 64 <= number < _owner._top()[0]  # just below the limit
        f.close()  # only the claim's dup holds the inode now
        if freed:
            theirs = _steal(number, f.name, os.O_RDONLY)
        else:
            theirs = os.open(f.name, os.O_RDONLY | os.O_CLOEXEC)
        ident = os.fstat(theirs)
        name = f.name
    try:
        _still_open(theirs, ident)
        assert not os.path.exists(name)  # removed all the same
        # ... and overwritten: the application's descriptor reads no plaintext.
        assert b"REVIEW8" not in os.pread(theirs, 4096, 0)
    finally:
        with contextlib.suppress(OSError):
            os.close(theirs)


def test_a_file_its_close_removes_holds_no_second_descriptor(tmp_path: Path) -> None:
    # delete_on_close=True (the default): the sweep lock is held through the file's own
    # descriptor, so there is no number of ours a library's double close could free and
    # the application's next open() or dup() take (review8, review9).
    with hardtemp.NamedTemporaryFile(dir=tmp_path) as f:
        assert other_descriptors_of(f.fileno()) == []
        probe = os.open(f.name, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):  # still locked for the sweeper (LOCK_SH)
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(probe)


@pytest.mark.parametrize("freed", [False, True], ids=["control-no-double-close", "freed"])
@pytest.mark.parametrize("how", ["cleanup", "kept"])
def test_the_application_s_open_of_our_directory_on_its_lock_number_stays_open(
    tmp_path: Path, freed: bool, how: str
) -> None:
    # The same steal for TemporaryDirectory, whose lock is held through its own descriptor:
    # the application opens the directory by name (an os.scandir(fd), a watcher).
    d = hardtemp.TemporaryDirectory(dir=tmp_path, delete=how == "cleanup")
    probe = os.open(d.name, os.O_RDONLY | os.O_DIRECTORY)
    try:
        others = other_descriptors_of(probe)
    finally:
        os.close(probe)
    assert len(others) == 1, others  # the claim's descriptor of our directory
    flags = os.O_RDONLY | os.O_DIRECTORY
    theirs = _steal(others[0], d.name, flags) if freed else os.open(d.name, flags)
    ident = os.fstat(theirs)
    try:
        if how == "cleanup":
            d.cleanup()
            assert not os.path.exists(d.name)
        else:
            d.__exit__(None, None, None)  # kept: the lock is dropped, the tree stays
            assert os.path.isdir(d.name)
        _still_open(theirs, ident)
    finally:
        with contextlib.suppress(OSError):
            os.close(theirs)


def test_a_persist_through_a_stolen_claim_number_leaves_another_file_s_mark(
    tmp_path: Path,
) -> None:
    # The application's open of *another* temp file on our freed claim number: persisting
    # ours unmarks through the claim, and must not strip that file's sweep mark.
    f = hardtemp.NamedTemporaryFile(dir=tmp_path, delete_on_close=False)  # (has a dup)
    g = hardtemp.NamedTemporaryFile(dir=tmp_path)
    try:
        assert os.getxattr(g.name, _owner.OWNER_XATTR)  # (a marking filesystem)
        (number,) = other_descriptors_of(f.fileno())
        theirs = _steal(number, g.name, os.O_RDONLY)
        f.persist(tmp_path / "kept")
        assert os.getxattr(g.name, _owner.OWNER_XATTR)
        _still_open(theirs, os.stat(g.name))
        os.close(theirs)
    finally:
        f.close()
        g.close()


# --- readinto racing a close in another thread (the inline path's "closed meanwhile") ------


def _read_racing_a_close(race: bool) -> tuple[str | None, int | None, bytes]:
    """A 4 KiB-block encrypted file of 0x5a bytes at position 0; with ``race``, another
    thread's close is held inside its locked section (at the slot pool's lock, which the
    close takes to give its slot back) while this thread's readinto passes its open check
    and waits for the file's lock; then the close finishes and the read goes on. Returns
    (exception, count, buffer)."""
    from hardtemp._crypt import _secpool

    f: Any = hardtemp.TemporaryFile(buffering=0)
    f.write(b"\x5a" * _BLOCK)
    f.write(b"\x5a" * (2 * _BLOCK))
    f.seek(1)
    f.read(1)  # part of a block: the file now holds a pooled slot (its plaintext scratch)
    f.seek(0)
    got: dict[str, Any] = {}
    buf = bytearray(b"\xee" * _BLOCK)

    def reader() -> None:
        try:
            got["n"] = f.readinto(buf)  # a bytearray: the general path
        except Exception as exc:  # reported to the test
            got["exc"] = type(exc).__name__

    if not race:
        f.close()
        reader()
        return got.get("exc"), got.get("n"), bytes(buf)
    pool = _secpool._current_pool()
    pool.lock.acquire()
    closer = threading.Thread(target=f.close)
    try:
        closer.start()
        for _ in range(500):  # the close is inside its locked section, waiting for the pool
            if f._lock.locked():
                break
            time.sleep(0.01)
        assert f._lock.locked()
        r = threading.Thread(target=reader)
        r.start()
        time.sleep(0.2)  # past readinto's open check, waiting for the file's lock
        assert f._fd >= 0  # (the close has not reached the descriptor yet)
    finally:
        pool.lock.release()
    closer.join()
    r.join()
    return got.get("exc"), got.get("n"), bytes(buf)


def test_control_a_read_after_close_raises() -> None:
    assert _read_racing_a_close(race=False)[0] == "ValueError"


# Found in review (review8): a read that waited for the lock while another thread closed
# returned zeros as data; every locked section now checks again that the file is open.
def test_a_read_racing_a_close_never_returns_zeros_as_data() -> None:
    exc, n, buf = _read_racing_a_close(race=True)
    assert (exc, n) == ("ValueError", None), (exc, n, set(buf))


# --- 8646c8d (the fix of the 'Q' view): a 2-D byte view still goes inline -----------------


def test_control_a_valid_inline_read_into_a_2d_byte_view_is_right() -> None:
    data = os.urandom(3 * _BLOCK)
    with _file_of_4k_blocks(data) as f:
        f.seek(0)
        buf = bytearray(_BLOCK)
        assert f.readinto(memoryview(buf).cast("B", (64, 64))) == _BLOCK
        assert bytes(buf) == data[:_BLOCK]


# Found in review (review8): a 2-D byte view still went inline; only 1-D ones do now.
def test_a_tampered_block_read_inline_into_a_2d_byte_view_raises_integrity_error() -> None:
    data = os.urandom(3 * _BLOCK)
    with _file_of_4k_blocks(data) as f:
        _flip_a_bit_of_block_0(f)
        f.seek(0)
        buf = bytearray(b"\xaa" * _BLOCK)
        with pytest.raises(IntegrityError):
            f.readinto(memoryview(buf).cast("B", (64, 64)))
        assert bytes(buf) == bytes(_BLOCK)
        assert f.tell() == 0
