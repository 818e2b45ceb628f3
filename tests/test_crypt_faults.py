"""Encrypted files keep every byte across real faults: fork, ENOSPC, interrupts.

Only the public file-object API is used to drive and check the files (so the
same tests show the faults of an implementation without the defences):

* fork: real ``os.fork()`` children that close, exit, ``sys.exit``, read
  other blocks, read after the parent rewrote, try to write; afterwards the
  parent's data is compared byte for byte;
* ENOSPC: a real size-limited tmpfs, filled by a filler file, while
  appending to a partial block, rewriting the middle across a hole, and
  truncating up;
* interrupts: a real ``setitimer`` signal whose handler raises, hundreds of
  times inside large writes and truncates; afterwards the file must read
  without error and hold, outside the interrupted call's range, exactly what
  the earlier calls wrote.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import io
import os
import pickle
import random
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from _gates import IS_ROOT
from _helpers_core import run_python
from _helpers_crypt import backing_fd, raw_of
from _helpers_crypt import in_child as _in_child
from hardtemp._crypt import (
    DEFAULT_BLOCK_SIZE,
    LARGE_BLOCK_SIZE,
    TAG_SIZE,
    EncryptedRawIO,
    open_encrypted,
)
from hardtemp.exceptions import InsecureOperationError, IntegrityError

BS = 4096


def _pattern(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


# --- fork ------------------------------------------------------------------------------------


@pytest.mark.parametrize("buffering", [0, -1], ids=["unbuffered", "buffered"])
@pytest.mark.parametrize("child_does", ["close", "read_other_blocks", "write", "truncate"])
def test_nothing_a_forked_child_does_changes_what_the_parent_reads_or_writes(
    buffering: int, child_does: str
) -> None:
    data = _pattern(10 * BS + 123, 1)
    with open_encrypted(backing_fd(), "w+b", buffering=buffering) as f:
        f.write(data)
        f.flush()
        f.seek(100)
        assert f.read(10) == data[100:110]  # block 0 is now the cached block

        def child() -> object:
            if child_does == "read_other_blocks":
                for k in (3, 7, 9):
                    f.seek(k * BS + 5)
                    f.read(20)  # loads block k into the child's scratch
                return None
            if child_does == "write":
                f.seek(50)
                f.write(b"child was here")
                f.flush()
            if child_does == "truncate":
                f.truncate(7)
            f.close()
            return None

        kind, _ = _in_child(child)
        assert kind == ("InsecureOperationError" if child_does in ("write", "truncate") else "ok")
        # The parent's cached block, its partial rewrite, and everything else are intact.
        f.seek(100)
        assert f.read(10) == data[100:110]
        f.seek(200)
        f.write(b"PARENT")
        f.flush()
        expected = data[:200] + b"PARENT" + data[206:]
        f.seek(0)
        assert f.read() == expected


_EXIT_SCRIPT = """
import os, sys
from hardtemp._crypt import open_encrypted
how, buffering = sys.argv[1], int(sys.argv[2])
fd = os.open("/tmp", os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
f = open_encrypted(fd, "w+b", buffering=buffering)
data = bytes(range(256)) * 200
f.write(data)
f.flush()
f.seek(100)
assert f.read(10) == data[100:110]
pid = os.fork()
if pid == 0:
    f.seek(30000)
    f.read(10)  # another block into the child's scratch
    if how == "sys.exit":
        sys.exit(0)  # unwinds; interpreter shutdown finalizes (closes) the file
    # "exit": falls off the end of the script: a normal interpreter exit
else:
    os.waitpid(pid, 0)
    f.seek(100)
    assert f.read(10) == data[100:110], "parent's cached block changed"
    f.seek(150)
    f.write(b"P")
    f.flush()
    f.seek(0)
    assert f.read() == data[:150] + b"P" + data[151:], "parent's data changed"
    print("parent intact")
"""


@pytest.mark.parametrize("buffering", [0, -1], ids=["unbuffered", "buffered"])
@pytest.mark.parametrize("how", ["exit", "sys.exit"])
def test_a_forked_child_exiting_normally_does_not_change_the_parents_data(
    buffering: int, how: str
) -> None:
    proc = run_python(_EXIT_SCRIPT, how, str(buffering))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("parent intact") == 1


@pytest.mark.parametrize("buffering", [0, -1], ids=["unbuffered", "buffered"])
def test_forked_child_gets_integrity_error_for_a_cached_block_the_parent_rewrote(
    buffering: int,
) -> None:
    data = _pattern(3 * BS, 2)
    with open_encrypted(backing_fd(), "w+b", buffering=buffering) as f:
        f.write(data)
        f.flush()
        f.seek(10)
        assert f.read(5) == data[10:15]  # block 0 cached in parent (and, at fork, in the child)
        go_r, go_w = os.pipe()

        def child() -> object:
            os.read(go_r, 1)  # until the parent rewrote block 0
            # Still block 0, outside the 4 KiB read-ahead (inside it: test_crypt_forkdrop.py).
            f.seek(5000)
            return f.read(5)

        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                try:
                    res = ("ok", repr(child()))
                except BaseException as exc:
                    res = (type(exc).__name__, str(exc))
                os.write(w, pickle.dumps(res))
            finally:
                os._exit(0)
        os.close(w)
        f.seek(0)
        f.write(b"rewritten")
        f.flush()
        os.write(go_w, b"x")
        with os.fdopen(r, "rb") as inp:
            kind, _ = pickle.loads(inp.read())  # noqa: S301 - our own child
        os.waitpid(pid, 0)
        os.close(go_r)
        os.close(go_w)
        assert kind == "IntegrityError"  # never the stale bytes


def test_forked_child_may_read_what_was_written_before_the_fork() -> None:
    data = _pattern(5 * BS + 7, 3)
    with open_encrypted(backing_fd(), "w+b", buffering=0) as f:
        f.write(data)

        def child() -> object:
            f.seek(0)
            return f.read()

        assert _in_child(child) == ("ok", repr(data))


# --- ENOSPC on a real full filesystem --------------------------------------------------------


@contextlib.contextmanager
def _full(mnt: Path) -> Iterator[Path]:
    """Fill the filesystem at ``mnt`` to the last page with a filler file."""
    filler = mnt / "filler"
    with open(filler, "wb", buffering=0) as out:
        chunk = b"\xff" * 4096
        with contextlib.suppress(OSError):
            while True:
                out.write(chunk)
        with contextlib.suppress(OSError):
            while True:
                out.write(b"\xff")
    try:
        yield filler
    finally:
        filler.unlink()


def _enc_on(mnt: Path, buffering: int = 0) -> Any:
    fd = os.open(mnt, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    return open_encrypted(fd, "w+b", buffering=buffering)


def _assert_enospc(call: Callable[[], object]) -> None:
    with pytest.raises(OSError) as info:
        call()
    assert info.value.errno == errno.ENOSPC
    assert not isinstance(info.value, IntegrityError)


def test_enospc_while_appending_to_a_partial_block_keeps_its_bytes(
    small_tmpfs: Callable[[int], Path],
) -> None:
    mnt = small_tmpfs(512)
    with _enc_on(mnt) as f:
        head = _pattern(100, 4)
        f.write(head)  # block 0: 116 bytes on disk, one page
        with _full(mnt):
            # Re-sealing block 0 at full length needs a second page: none is left.
            _assert_enospc(lambda: f.write(_pattern(BS, 5)))
            f.seek(0)
            assert f.read() == head
            assert f.seek(0, io.SEEK_END) == 100
        f.seek(0, io.SEEK_END)
        f.write(b"more")  # space again: the file works on
        f.seek(0)
        assert f.read() == head + b"more"


def test_enospc_in_the_middle_of_appending_a_new_block_cuts_the_torn_bytes_off(
    small_tmpfs: Callable[[int], Path],
) -> None:
    mnt = small_tmpfs(512)
    bs = DEFAULT_BLOCK_SIZE
    with _enc_on(mnt) as f:
        head = _pattern(bs, 20)
        f.write(head)  # one whole block: bs + 16 bytes on disk, its last page mostly free
        fd = raw_of(f)._fd
        with _full(mnt):
            # The new block's first bytes fit that page: a torn pwrite, then ENOSPC.
            _assert_enospc(lambda: f.write(_pattern(bs, 21)))
            assert os.fstat(fd).st_size == bs + TAG_SIZE  # the torn part was cut off
            f.seek(0)
            assert f.read() == head  # never an IntegrityError ("extended")
        f.seek(0, io.SEEK_END)
        f.write(b"more")
        f.seek(0)
        assert f.read() == head + b"more"


def test_enospc_while_rewriting_the_middle_across_a_hole_keeps_earlier_blocks(
    small_tmpfs: Callable[[int], Path],
) -> None:
    mnt = small_tmpfs(512)
    with _enc_on(mnt) as f:
        first = _pattern(4 * BS, 6)
        f.write(first)
        f.seek(40 * BS)
        f.write(b"tail")  # blocks 4..39 are a hole: no pages allocated
        with _full(mnt):
            f.seek(2 * BS + 10)
            # Overwrites blocks 2 and 3 in place (pages exist), then needs pages for the hole.
            _assert_enospc(lambda: f.write(_pattern(30 * BS, 7)))
            f.seek(0)
            assert f.read(4 * BS) == first
            assert f.read(36 * BS) == bytes(36 * BS)
            assert f.read() == b"tail"


def test_enospc_while_truncating_up_keeps_size_and_contents(
    small_tmpfs: Callable[[int], Path],
) -> None:
    mnt = small_tmpfs(512)
    with _enc_on(mnt) as f:
        head = _pattern(3 * BS + 100, 8)
        f.write(head)
        with _full(mnt):
            # The partial last block must be re-sealed at full length: a new page.
            _assert_enospc(lambda: f.truncate(20 * BS))
            assert f.seek(0, io.SEEK_END) == len(head)
            f.seek(0)
            assert f.read() == head


def test_enospc_with_the_buffered_stack_raises_and_keeps_flushed_data(
    small_tmpfs: Callable[[int], Path],
) -> None:
    mnt = small_tmpfs(512)
    with _enc_on(mnt, buffering=-1) as f:
        head = _pattern(1000, 9)
        f.write(head)
        f.flush()
        with _full(mnt):
            _assert_enospc(lambda: (f.write(_pattern(100_000, 10)), f.flush()))
            f.seek(0)
            assert f.read(1000) == head


# --- interrupts ------------------------------------------------------------------------------


class _Interrupt(Exception):
    """Raised by the signal handler: what a KeyboardInterrupt does to the code it hits."""


@contextlib.contextmanager
def _raising_timer(interval: float) -> Iterator[list[bool]]:
    """A real repeating SIGALRM whose handler raises while ``armed[0]`` is true."""
    armed = [False]

    def handler(signum: int, frame: Any) -> None:
        if not armed[0]:
            # Nothing at all once disarmed: a later tick lands while our exception unwinds
            # (inside a C call that has set it), where even a dict.get in here raised
            # SystemError (seen in CI's ordinary-user lane).
            return
        # Only inside hardtemp's own code (not in an unrelated callback such as a
        # weakref finalizer, where Python would swallow the exception). f_globals, not
        # f_code: reading f_code raises an audit event, and other tests' audit hooks then
        # ran inside this handler until a RecursionError (seen on 3.11 in a whole run).
        module = frame.f_globals.get("__name__", "") if frame is not None else ""
        if armed[0] and (module == "hardtemp" or module.startswith("hardtemp.")):
            armed[0] = False
            raise _Interrupt

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, interval, interval)
    try:
        yield armed
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _check_interrupted_write(old: bytes, new: bytes, pos: int, data: bytes) -> None:
    """After an interrupted write of ``data`` at ``pos``: bytes outside its range
    are the old ones (zeros in a hole), bytes inside are old or new."""
    end = pos + len(data)
    assert len(old) <= len(new) <= max(len(old), end)
    assert new[: min(pos, len(old))] == old[: min(pos, len(old))]
    if len(new) > len(old):
        gap = new[len(old) : min(pos, len(new))]
        assert gap == bytes(len(gap))
    assert new[end:] == old[end:]
    for p in range(pos, min(end, len(new))):
        was = old[p] if p < len(old) else 0
        if new[p] not in (was, data[p - pos]):  # pragma: no cover - the failure report
            pytest.fail(f"byte {p} is {new[p]}, neither old {was} nor written {data[p - pos]}")


def _read_all(f: Any) -> bytes:
    f.seek(0)
    out: bytes = f.read()
    return out


@pytest.mark.parametrize("block_size", [64, 4096, None], ids=["64", "4096", "large"])
def test_interrupts_inside_writes_and_truncates_never_lose_earlier_data(
    block_size: int | None,
) -> None:
    rnd = random.Random(block_size or 1)
    interrupted = 0
    with EncryptedRawIO(backing_fd(), block_size=block_size) as f:
        model = b""
        if block_size is None:  # the first write chooses LARGE_BLOCK_SIZE blocks
            model = rnd.randbytes(200_000)
            f.write(model)
            assert f._bs == LARGE_BLOCK_SIZE
            block_size = LARGE_BLOCK_SIZE
        with _raising_timer(0.0002) as armed:
            for step in range(1500):
                size = len(model)
                op = rnd.random()
                pos = rnd.randrange(0, size + 3 * block_size + 1)
                data = rnd.randbytes(rnd.choice([1, 100, 5000, 60_000, 200_000]))
                try:
                    armed[0] = True
                    if op < 0.85:
                        f.seek(pos)
                        f.write(data)
                    else:
                        f.truncate(pos)
                    armed[0] = False
                except _Interrupt:
                    interrupted += 1
                    armed[0] = False
                    now = _read_all(f)
                    if op < 0.85:
                        _check_interrupted_write(model, now, pos, data)
                    else:
                        assert now in (model, (model + bytes(pos))[:pos])
                    model = now
                    continue
                if op < 0.85:
                    model = (
                        (model + bytes(max(0, pos - len(model))))[:pos]
                        + data
                        + model[pos + len(data) :]
                    )
                else:
                    model = (model + bytes(pos))[:pos]
                if step % 50 == 0:
                    armed[0] = False
                    assert _read_all(f) == model
        assert _read_all(f) == model
    assert interrupted >= 200, f"only {interrupted} calls were interrupted"


def test_interrupts_inside_the_first_large_write_leave_a_consistent_file() -> None:
    # The write that chooses the block size, interrupted anywhere (also while it
    # replaces the scratch memory): empty or partly written, then fully usable.
    rnd = random.Random(11)
    interrupted = 0
    for _ in range(300):
        data = rnd.randbytes(rnd.choice([LARGE_BLOCK_SIZE, 3 * LARGE_BLOCK_SIZE + 5]))
        with EncryptedRawIO(backing_fd()) as f, _raising_timer(0.00005) as armed:
            try:
                armed[0] = True
                f.write(data)
                armed[0] = False
            except _Interrupt:
                interrupted += 1
            armed[0] = False
            now = _read_all(f)
            _check_interrupted_write(b"", now, 0, data)
            f.seek(0)
            f.write(data)
            assert _read_all(f) == data
            f._map.check()
    assert interrupted >= 30, f"only {interrupted} first writes were interrupted"


def test_enospc_in_large_blocks_keeps_earlier_data(small_tmpfs: Callable[[int], Path]) -> None:
    mnt = small_tmpfs(512)
    with _enc_on(mnt) as f:
        head = _pattern(LARGE_BLOCK_SIZE + 100, 12)
        f.write(head)  # 64 KiB blocks; block 1 is partial
        assert raw_of(f)._bs == LARGE_BLOCK_SIZE
        with _full(mnt):
            _assert_enospc(lambda: f.write(_pattern(3 * LARGE_BLOCK_SIZE, 13)))
            f.seek(0)
            assert f.read() == head
            f.seek(1000)
            _assert_enospc(lambda: f.write(_pattern(2 * LARGE_BLOCK_SIZE, 14)))  # grows block 1
            f.seek(0)
            assert f.read() == head
        f.seek(0, io.SEEK_END)
        f.write(b"more")
        f.seek(0)
        assert f.read() == head + b"more"


def test_interrupts_inside_buffered_writes_leave_a_readable_consistent_file() -> None:
    interrupted = 0
    rnd = random.Random(7)
    with open_encrypted(backing_fd(), "w+b") as f:
        f.write(b"A" * 10_000)
        f.flush()
        with _raising_timer(0.0002) as armed:
            for _ in range(600):
                try:
                    armed[0] = True
                    f.seek(rnd.randrange(0, 200_000))
                    f.write(b"B" * rnd.choice([10, 5000, 150_000]))
                    f.flush()
                    armed[0] = False
                except _Interrupt:
                    interrupted += 1
                    armed[0] = False
        f.seek(0)
        everything = f.read()  # never an IntegrityError
        assert everything[:10] in (b"A" * 10, everything[:10])
        assert set(everything) <= {0, ord("A"), ord("B")}
    assert interrupted >= 100


# --- small API faults ------------------------------------------------------------------------


def test_unbuffered_read_none_reads_everything_like_fileio() -> None:
    with open_encrypted(backing_fd(), "w+b", buffering=0) as raw:
        raw.write(b"x" * 10_000)
        raw.seek(3)
        assert raw.read(None) == b"x" * 9997
        assert raw.read(None) == b""


def test_forked_child_write_is_refused_even_without_pythons_fork_hooks() -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    with EncryptedRawIO(backing_fd()) as raw:
        raw.write(b"parent")
        r, w = os.pipe()
        pid = libc.fork()  # the raw system call wrapper: no os.register_at_fork hooks run
        if pid == 0:  # pragma: no cover - child
            try:
                try:
                    raw.seek(0)
                    raw.write(b"child")
                    os.write(w, b"written")
                except InsecureOperationError:
                    os.write(w, b"refused")
            finally:
                os._exit(0)
        os.close(w)
        answer = os.read(r, 100)
        os.close(r)
        os.waitpid(pid, 0)
        assert answer == b"refused"
        raw.seek(0)
        assert raw.read() == b"parent"


# --- a stateful test: faults interleaved with every operation -----------------------------------


def _fault_machine(
    directory: Path, can_fill: bool, *, large: bool = False
) -> type[RuleBasedStateMachine]:
    """``large``: a ``block_size=None`` file whose first write (faults included)
    chooses its blocks, explored at the scale of ``LARGE_BLOCK_SIZE``."""
    bs, blocks, most = (LARGE_BLOCK_SIZE, 5, 2) if large else (512, 24, 6)
    offsets = st.one_of(
        st.builds(lambda k, d: max(0, k * bs + d), st.integers(0, blocks), st.integers(-2, 2)),
        st.integers(0, blocks * bs),
    )
    payloads = st.binary(min_size=1, max_size=most * bs)
    if large:  # first writes on both sides of the choice, without hypothesis building 128 KiB
        sized = st.builds(
            lambda n, seed: random.Random(seed).randbytes(n),
            st.integers(bs - 2, most * bs),
            st.integers(0, 2**32),
        )
        payloads = st.one_of(st.binary(min_size=1, max_size=2000), sized)

    class FaultyEncryptedFile(RuleBasedStateMachine):
        """Writes, reads, seeks and truncates against a BytesIO model, with a full
        disk (a real tmpfs filled by a filler file) and real signal interrupts
        raised at a random moment inside the call."""

        def __init__(self) -> None:
            super().__init__()
            fd = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
            self.f = EncryptedRawIO(fd, block_size=None if large else bs)
            self.model = b""
            self.pos = 0
            self.filler: Any = None
            self.faults = 0

        def _call(self, interrupt_after: float | None, fn: Callable[[], object]) -> bool:
            """Run fn; True if it completed, False if it raised ENOSPC or was interrupted."""
            armed = [interrupt_after is not None]

            def handler(signum: int, frame: Any) -> None:
                if not armed[0]:
                    return
                # f_globals, not f_code: reading f_code raises an audit event, and audit
                # hooks left by other tests would run (and be interrupted) in every tick.
                module = frame.f_globals.get("__name__", "") if frame is not None else ""
                if str(module).startswith("hardtemp."):
                    armed[0] = False
                    raise _Interrupt
                # Not in hardtemp's code yet: one more tick shortly. One-shot ticks, re-armed
                # here, never land inside this handler (a repeating timer nested them).
                signal.setitimer(signal.ITIMER_REAL, 0.00005)

            old = signal.signal(signal.SIGALRM, handler)
            # No collection while armed: a tick landing in a gc callback (hypothesis has one)
            # would raise there, where the interrupt is only reported as unraisable.
            gc_was_enabled = gc.isenabled()
            gc.disable()
            if interrupt_after is not None:
                signal.setitimer(signal.ITIMER_REAL, interrupt_after)
            try:
                fn()
            except _Interrupt:
                return False
            except OSError as exc:
                if exc.errno != errno.ENOSPC or isinstance(exc, IntegrityError):
                    raise  # only a full disk is an expected failure here
                return False
            finally:
                armed[0] = False
                signal.setitimer(signal.ITIMER_REAL, 0)
                if gc_was_enabled:
                    gc.enable()
                signal.signal(signal.SIGALRM, old)
            return True

        def _actual(self) -> bytes:
            self.f.seek(0)
            data: bytes = self.f.read()
            self.f.seek(self.pos)
            return data

        @precondition(lambda self: can_fill and self.filler is None)
        @rule()
        def fill_the_disk(self) -> None:
            self.filler = open(directory / "filler", "wb", buffering=0)  # noqa: SIM115
            with contextlib.suppress(OSError):
                while True:
                    self.filler.write(b"\xff" * 4096)

        @precondition(lambda self: self.filler is not None)
        @rule()
        def free_the_disk(self) -> None:
            self.filler.close()
            (directory / "filler").unlink()
            self.filler = None

        @rule(
            pos=offsets,
            data=payloads,
            interrupt=st.one_of(st.none(), st.floats(0.00001, 0.0005)),
        )
        def write_at(self, pos: int, data: bytes, interrupt: float | None) -> None:
            def call() -> None:
                self.f.seek(pos)
                self.f.write(data)

            old = self.model
            if self._call(interrupt, call):
                self.model = (
                    (old + bytes(max(0, pos - len(old))))[:pos] + data + old[pos + len(data) :]
                )
                self.pos = pos + len(data)
            else:
                self.faults += 1
                self.pos = pos
                self.model = self._actual()
                _check_interrupted_write(old, self.model, pos, data)

        @rule(size=offsets, interrupt=st.one_of(st.none(), st.floats(0.00001, 0.0005)))
        def truncate(self, size: int, interrupt: float | None) -> None:
            old = self.model
            new = (old + bytes(size))[:size]
            if self._call(interrupt, lambda: self.f.truncate(size)):
                self.model = new
            else:
                self.faults += 1
                self.model = self._actual()
                assert self.model in (old, new)  # a truncate is all or nothing

        @rule(pos=offsets, n=st.integers(0, 3 * bs))
        def read_at(self, pos: int, n: int) -> None:
            self.f.seek(pos)
            assert self.f.read(n) == self.model[pos : pos + n]
            self.pos = self.f.tell()

        @invariant()
        def whole_file_matches_the_model(self) -> None:
            assert self._actual() == self.model
            self.f._map.check()

        def teardown(self) -> None:
            self.f.close()
            if self.filler is not None:
                self.free_the_disk()

    return FaultyEncryptedFile


@pytest.mark.parametrize("large", [False, True], ids=["512-byte-blocks", "chosen-by-first-write"])
def test_stateful_faults_against_a_bytesio_model(
    request: pytest.FixtureRequest, large: bool
) -> None:
    if IS_ROOT:
        directory, can_fill = request.getfixturevalue("small_tmpfs")(1024 if large else 256), True
    else:  # no tmpfs to fill: interrupts only
        directory, can_fill = Path(tempfile.gettempdir()), False
    machine = _fault_machine(directory, can_fill, large=large)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=40 if large else 120,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
