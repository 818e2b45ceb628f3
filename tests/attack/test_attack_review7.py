"""Adversarial review of issue 13's cuts made this session (review7).

NamedTemporaryFile's cleanup of files never exited is a weak reference per file in a dict
of pending cleanups, drained newest first by one atexit hook (it was a
``weakref.finalize`` per file). ``weakref.finalize``'s exit hook runs every finalizer in
its own ``try``: one file whose cleanup raises (hardtemp raises ``UnsafeFileError`` when our
name now holds something not ours to remove) is reported and the others are still
overwritten and removed. Each case here runs a real interpreter to its real exit.

Its close overwrites our inode through the sweep claim's own duplicate of the file's
descriptor (review6: a number other code closed twice and open() gave another file must not
be written). Here the number freed and reused is the claim's dup itself.

Interrupts: a real signal (``signal.raise_signal``, its handler raising) made pending at one
chosen point, found by ``sys.monitoring``, so it is handled at the very eval-breaker check a
timer's signal could land on there: the close's flush of buffered data, and the instant
``_NamedFileIO(...)`` (a ``PlainFileIO``) has returned in ``NamedTemporaryFile`` and its result
is not yet stored.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import CodeType
from typing import Any

import pytest

import hardtemp
import hardtemp._files
from _helpers_attack import hand_number_to, other_descriptors_of
from hardtemp._files import _NamedFileIO
from hardtemp._plainio import PlainFileIO

# Two named files left open and unexited (the older holds the marker); with "dir" the newer
# one's name is replaced by a directory, so its cleanup at exit raises UnsafeFileError.
_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import hardtemp

    older = hardtemp.NamedTemporaryFile(dir=sys.argv[1])
    older.write(b"REVIEW7-OLDER-FILE-PLAINTEXT" * 8)
    older.flush()
    newer = hardtemp.NamedTemporaryFile(dir=sys.argv[1])
    newer.write(b"x")
    newer.flush()
    if sys.argv[2] == "dir":
        os.unlink(newer.name)
        os.mkdir(newer.name)  # not ours to remove: its cleanup raises at exit
    print(older.name, newer.name, flush=True)
    """
)


def _run_script(
    tmp_path: Path, text: str, case: str
) -> tuple[Path, subprocess.CompletedProcess[bytes]]:
    """Run ``text`` as a script in a fresh interpreter to its real exit, with a fresh work
    directory and ``case`` as its arguments; (the work directory, what it did)."""
    script = tmp_path / "script.py"
    script.write_text(text)
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(
        [sys.executable, str(script), str(work), case],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return work, done


@pytest.mark.parametrize(
    "newer",
    [
        pytest.param("file", id="control-both-removed"),
        # Found in review (review7): the atexit drain stopped at the first cleanup that
        # raised; each file now has its own try, as weakref.finalize's exit hook did.
        pytest.param("dir", id="newer-cleanup-raises"),
    ],
)
def test_one_named_files_failing_cleanup_at_exit_leaves_the_others_removed(
    tmp_path: Path, newer: str
) -> None:
    work, done = _run_script(tmp_path, _SCRIPT, newer)
    older_name, newer_name = done.stdout.decode().split()
    if newer == "dir":
        # The break's precondition happened: the newer file's cleanup did raise.
        assert b"UnsafeFileError" in done.stderr, done.stderr
        assert os.path.isdir(newer_name)
        os.rmdir(newer_name)
    else:
        assert not os.path.lexists(newer_name)
    left = {p.name: p.read_bytes() for p in work.iterdir()}
    assert not os.path.lexists(older_name), f"older file left with its data: {left}"
    assert done.returncode == 0, done.stderr.decode()


# Found in review (review7): the named close wrote through the claim's dup (claim.fd)
# without checking what that number holds; every descriptor it writes through is now
# fstat-ed and compared with the inode it created (_NamedState._our_fd).


@pytest.mark.parametrize(
    ("freed", "delete_on_close"),
    [
        pytest.param("file", True, id="files-own-number-close"),  # review6's case: fixed
        # (A file its close removes has no claim's dup since review9: test_attack_review8.)
        pytest.param("claim", False, id="claims-dup-number-exit"),
        pytest.param("stdlib", True, id="control-stdlib"),
    ],
)
def test_a_reused_number_of_the_named_files_other_descriptor_is_never_overwritten(
    tmp_path: Path, freed: str, delete_on_close: bool
) -> None:
    victim = tmp_path / "ledger.db"
    data = b"IMPORTANT DATA " * 20
    victim.write_bytes(data)
    if freed == "stdlib":
        f: Any = tempfile.NamedTemporaryFile(dir=tmp_path)  # noqa: SIM115 - closed below
    else:
        f = hardtemp.NamedTemporaryFile(dir=tmp_path, delete_on_close=delete_on_close)
    f.write(b"secret " * 10)
    f.flush()
    if freed == "claim":
        others = other_descriptors_of(f.fileno())
        assert len(others) == 1, others  # the claim's dup of our file (the sweep lock)
        number = others[0]
    else:
        number = f.fileno()
    hand_number_to(number, victim)  # a double close, and the application's next open()
    with contextlib.suppress(OSError):  # what the close may say about the lost file is fine
        f.__exit__(None, None, None)
    with contextlib.suppress(OSError):
        os.close(number)  # the close may or may not have closed the number itself
    assert victim.read_bytes() == data, "an unrelated file was overwritten by our close"


# Found in review (review7): the claim's dup number, once taken by the application's open(),
# was still closed by our close; a claim whose number holds another file now forgets it.


@pytest.mark.parametrize(
    ("freed", "delete_on_close"),
    [
        # (A file its close removes has no claim's dup since review9: test_attack_review8.)
        pytest.param("none", False, id="control-no-double-close"),
        pytest.param("claim", False, id="claims-dup-number-exit"),
    ],
)
def test_a_reused_number_of_the_claim_s_dup_is_never_closed_by_our_close(
    tmp_path: Path, freed: str, delete_on_close: bool
) -> None:
    victim = tmp_path / "ledger.db"
    victim.write_bytes(b"IMPORTANT DATA " * 20)
    f = hardtemp.NamedTemporaryFile(dir=tmp_path, delete_on_close=delete_on_close)
    f.write(b"secret " * 10)
    f.flush()
    others = other_descriptors_of(f.fileno())
    assert len(others) == 1, others  # the claim's dup of our file (the sweep lock)
    number = others[0]
    if freed == "claim":
        os.close(number)  # a library's double close: the number is free again
    theirs = os.open(victim, os.O_RDWR | os.O_CLOEXEC)  # the application's next open
    if freed == "claim" and theirs != number:  # (put it exactly there)
        os.dup2(theirs, number)
        os.close(theirs)
        theirs = number
    ident = os.fstat(theirs)
    try:
        with contextlib.suppress(OSError):  # what the close may say about the lost file
            f.__exit__(None, None, None)
        try:
            after = os.fstat(theirs)
        except OSError as exc:
            pytest.fail(f"our close closed the application's descriptor: {exc}")
        assert (after.st_dev, after.st_ino) == (ident.st_dev, ident.st_ino)
        os.pwrite(theirs, b"STILL MINE", 0)  # the application goes on using its file
        assert victim.read_bytes().startswith(b"STILL MINE")
    finally:
        with contextlib.suppress(OSError):
            os.close(theirs)


class _Tick(BaseException):
    """Raised by the SIGALRM handler: an interrupt (as KeyboardInterrupt would be)."""


@contextlib.contextmanager
def _signal_at(code: CodeType, event: str, when: Callable[..., bool]) -> Iterator[list[int]]:
    """Make a real SIGALRM pending, once, at the first ``event`` in ``code`` for which
    ``when(*callback_args)`` is true; its handler raises :class:`_Tick` at the next
    eval-breaker check. Yields a list that gets one item when the signal was raised."""
    mon: Any = sys.monitoring  # type: ignore[attr-defined,unused-ignore]
    tool = mon.DEBUGGER_ID
    raised: list[int] = []

    def fire(*args: Any) -> Any:
        if not raised and when(*args):
            raised.append(1)
            signal.raise_signal(signal.SIGALRM)
        return None

    def handler(signum: int, frame: object) -> None:
        raise _Tick

    old = signal.signal(signal.SIGALRM, handler)
    mon.use_tool_id(tool, "review7")
    events = {"start": mon.events.PY_START, "c_return": mon.events.CALL}[event]
    if event == "start":
        mon.register_callback(tool, mon.events.PY_START, fire)
    else:  # C_RETURN is seen only with CALL monitored
        mon.register_callback(tool, mon.events.CALL, lambda *args: None)
        mon.register_callback(tool, mon.events.C_RETURN, fire)
    mon.set_local_events(tool, code, events)
    try:
        yield raised
    finally:
        mon.set_local_events(tool, code, 0)
        for ev in (mon.events.PY_START, mon.events.CALL, mon.events.C_RETURN):
            mon.register_callback(tool, ev, None)
        mon.free_tool_id(tool)
        signal.signal(signal.SIGALRM, old)


def _end(f: Any, how: str) -> None:
    """The user's end of the file: leaving its ``with`` block, or an explicit close()."""
    if how == "exit":
        f.__exit__(None, None, None)
    else:
        f.close()


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring")
@pytest.mark.parametrize(
    "how",
    [
        pytest.param("close", id="control-close-interrupted-then-dropped"),
        # Found in review (review7): __exit__ dropped the pending cleanup of a close
        # interrupted before its removal began; it now keeps it until the removal.
        pytest.param("exit", id="exit-interrupted-then-dropped"),
    ],
)
def test_a_named_file_whose_close_flush_is_interrupted_is_removed_once_dropped(
    tmp_path: Path, how: str
) -> None:
    f: Any = hardtemp.NamedTemporaryFile(dir=tmp_path)
    name = f.name
    f.write(b"REVIEW7-BUFFERED-PLAINTEXT " * 4)  # buffered: the close's flush writes it
    with (
        _signal_at(PlainFileIO.write.__code__, "start", lambda code, offset: True) as raised,
        pytest.raises(_Tick),
    ):
        _end(f, how)
    assert raised  # the interrupt happened, in the close's flush
    assert os.path.exists(name)  # not removed yet: interrupted before the removal
    del f
    gc.collect()
    assert not os.path.exists(name), "the interrupted file was never removed"


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring")
# Found in review (review7): the new file's number, closed when the interrupt dropped the raw
# object, was used and closed again; it is now used and closed only while it holds our inode.
def test_an_interrupt_as_the_raw_file_is_made_leaves_no_file_and_no_double_close(
    tmp_path: Path,
) -> None:
    code = hardtemp._files.NamedTemporaryFile.__code__
    with (
        _signal_at(code, "c_return", lambda c, off, func, arg0: func is _NamedFileIO) as raised,
        pytest.raises(BaseException) as caught,
    ):
        hardtemp.NamedTemporaryFile(dir=tmp_path)
    assert raised
    assert caught.type is _Tick, f"the interrupt was replaced by {caught.value!r}"
    assert os.listdir(tmp_path) == []


# A child forked without Python's hooks (a C extension's fork(2)) that ends through a
# normal interpreter exit: the atexit drain, and the collection of the dropped wrappers,
# run in the child over the parent's pending cleanups. Both files must be left intact.
_RAW_FORK_EXIT = textwrap.dedent(
    """
    import ctypes, gc, os, sys
    import hardtemp

    d, how = sys.argv[1], sys.argv[2]
    open_one = hardtemp.NamedTemporaryFile(dir=d)
    open_one.write(b"parent data")
    open_one.flush()
    closed_one = hardtemp.NamedTemporaryFile(dir=d, delete_on_close=False)
    closed_one.write(b"parent data 2")
    closed_one.close()  # closed, never exited: removed by name at the end
    pid = ctypes.CDLL(None, use_errno=True).fork()
    if pid == 0:
        if how == "gc":
            del open_one, closed_one
            gc.collect()
        sys.exit(0)  # the child's exit handlers run: hardtemp's drain among them
    os.waitpid(pid, 0)
    with open(open_one.name, "rb") as f1, open(closed_one.name, "rb") as f2:
        print(f1.read().decode(), "|", f2.read().decode())
    """
)


@pytest.mark.parametrize("how", ["atexit", "gc"])
def test_a_raw_forked_child_s_exit_never_removes_or_wipes_the_parents_named_files(
    tmp_path: Path, how: str
) -> None:
    # Held: _NamedState.remove and release check _owner.pid(), the wipe-on-fork token.
    script = tmp_path / "script.py"
    script.write_text(_RAW_FORK_EXIT)
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(
        [sys.executable, str(script), str(work), how],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().split() == ["parent", "data", "|", "parent", "data", "2"]
    assert list(work.iterdir()) == []  # and the parent's own exit removed both


# A named file dropped in a reference cycle (a traceback's frame, a callback registry) is
# removed by its weak reference's callback when the cyclic collector runs; that collector
# runs at any allocation of a tracked object, including one made while hardtemp holds a
# lock of its own. The collection is made to happen at one chosen point (sys.monitoring,
# as with the signals above): inside _superblock_info's `with _cache_lock:` (the poll of
# the mount watch allocates there), or, the control, at the start of remove_own_small
# (inside another removal, no lock held).
_GC_SCRIPT = textwrap.dedent(
    """
    import faulthandler, gc, os, sys
    import hardtemp
    from hardtemp import _fsinfo, _remove

    faulthandler.dump_traceback_later(10, exit=True)  # a hang ends the process, loudly
    d, where = sys.argv[1], sys.argv[2]

    class Holder:
        pass

    def drop_in_a_cycle():
        h = Holder()
        h.me = h
        if where == "in-lock-unnamed":  # its io finaliser closes (and overwrites) it
            h.f = hardtemp.TemporaryFile(dir=d, encrypt=False)
            h.f.write(b"REVIEW7-CYCLIC-GARBAGE")
            h.f.flush()
            return "(unnamed)"
        h.f = hardtemp.NamedTemporaryFile(dir=d)
        h.f.write(b"REVIEW7-CYCLIC-GARBAGE")
        h.f.flush()
        return os.path.basename(h.f.name)

    gc.disable()  # the collection happens where the test says, not earlier
    with hardtemp.NamedTemporaryFile(dir=d) as warm:  # classified, the watch open
        warm.write(b"x")
    garbage = drop_in_a_cycle()
    mon = sys.monitoring
    tool = mon.DEBUGGER_ID
    mon.use_tool_id(tool, "review7")
    done = []

    def collect(*args):
        # In the lock: the call of the watch's look, made only inside `with _cache_lock:`.
        looks = (_fsinfo._MountWatch.changed, _fsinfo._watch.changed)
        if not done and (not where.startswith("in-lock") or args[2] in looks):
            done.append(1)
            gc.collect()  # what the automatic collection does at that allocation

    if where.startswith("in-lock"):
        code, event = _fsinfo._superblock_info.__code__, mon.events.CALL
    else:
        code, event = _remove.remove_own_small.__code__, mon.events.PY_START
    mon.register_callback(tool, event, collect)
    mon.set_local_events(tool, code, event)
    with hardtemp.NamedTemporaryFile(dir=d) as f:
        f.write(b"y")
    mon.set_local_events(tool, code, 0)
    print(bool(done), garbage in os.listdir(d))
    """
)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring")
@pytest.mark.parametrize(
    "where",
    [
        pytest.param("in-removal", id="control-collected-inside-another-removal"),
        # Found in review (review7; weakref.finalize did the same): a collection while
        # _fsinfo._cache_lock was held ran the collected file's removal, which waited for
        # that very lock forever. hardtemp's locks are reentrant now, and a look at the
        # mount watch reentered says "changed" (the outer may have consumed the event).
        pytest.param("in-lock", id="collected-while-the-fs-cache-lock-is-held"),
        pytest.param("in-lock-unnamed", id="unnamed-collected-while-the-fs-cache-lock-is-held"),
    ],
)
def test_a_named_file_collected_inside_hardtemp_s_own_critical_section_never_hangs(
    tmp_path: Path, where: str
) -> None:
    _, done = _run_script(tmp_path, _GC_SCRIPT, where)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().split() == ["True", "False"]  # collected there; removed
