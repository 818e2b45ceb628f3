"""_crypt._small: the encrypted TemporaryFile that stays in memory while it fits a block.

Each test drives a real ``hardtemp.TemporaryFile()`` and looks at its backing file through
the raw layer's descriptor: empty while the file is small, the ciphertext an
:class:`EncryptedRawIO` stores once it spilled. Full disks are a real size-limited tmpfs,
children are real forks, interrupts land at every bytecode of the spill in turn.
"""

from __future__ import annotations

import array
import ctypes
import errno
import io
import os
import random
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import hardtemp
from _helpers_core import start_threads
from _helpers_crypt import child_result
from _helpers_inject import raise_where_a_signal_can
from hardtemp._crypt import (
    SMALL_BLOCK_SIZE,
    EncryptedRawIO,
    MemoryFirstRawIO,
    _small,
)
from hardtemp.exceptions import InsecureOperationError

BS = SMALL_BLOCK_SIZE


def _raw_of(f: Any) -> Any:
    """The raw layer of ``f`` (``f`` itself when unbuffered)."""
    return f if isinstance(f, EncryptedRawIO) else f.raw


def _backing_size(f: Any) -> int:
    return os.fstat(_raw_of(f)._fd).st_size


def test_a_small_file_reads_back_what_was_written_and_its_backing_file_stays_empty() -> None:
    with hardtemp.TemporaryFile() as f:
        assert type(_raw_of(f)) is MemoryFirstRawIO
        f.write(b"secret" * 100)
        f.seek(0)
        assert f.read() == b"secret" * 100
        f.seek(BS - 10)
        f.write(b"0123456789")  # up to the block's very end: still in memory
        f.flush()
        assert type(_raw_of(f)) is MemoryFirstRawIO
        assert _backing_size(f) == 0  # nothing on the disk, not even ciphertext
        f.seek(0, os.SEEK_END)
        assert f.tell() == BS
        f.seek(0)
        assert f.read() == b"secret" * 100 + bytes(BS - 610) + b"0123456789"  # hole: zeros


def test_the_file_spills_to_encrypted_blocks_when_it_outgrows_one_and_keeps_every_byte() -> None:
    with hardtemp.TemporaryFile() as f:
        f.write(b"a" * 3000)
        f.flush()
        assert type(_raw_of(f)) is MemoryFirstRawIO
        f.write(b"b" * 3000)  # past the block: spilled
        f.flush()
        assert type(_raw_of(f)) is EncryptedRawIO
        assert f.raw._bs == BS  # the first write (3000 bytes) chose the 4 KiB blocks
        assert _backing_size(f) > 6000  # ciphertext and tags
        assert "_buf" not in f.raw.__dict__  # the in-memory copy is gone
        f.seek(0)
        assert f.read() == b"a" * 3000 + b"b" * 3000
        data = os.pread(f.raw._fd, 1 << 16, 0)
        assert b"aaaa" not in data
        assert b"bbbb" not in data


def test_a_first_write_larger_than_a_block_chooses_its_blocks_as_before() -> None:
    with hardtemp.TemporaryFile() as f:
        f.write(b"x" * (64 * 1024))
        f.flush()
        assert type(_raw_of(f)) is EncryptedRawIO
        assert f.raw._bs == 64 * 1024  # what EncryptedRawIO's first write chooses
    with hardtemp.TemporaryFile() as f:
        f.truncate(100)  # growing a file nothing was written to: the default blocks
        assert type(_raw_of(f)) is EncryptedRawIO
        assert f.raw._bs == 8 * 1024
        f.seek(0)
        assert f.read() == bytes(100)


def _outcome(call: Callable[[], object]) -> tuple[str, object]:
    try:
        return ("ok", call())
    except OSError as exc:
        return ("error", exc.errno)


def _apply(f: Any, model: Any, op: tuple[Any, ...]) -> None:
    kind, *args = op
    ours = _outcome(lambda: getattr(f, kind)(*args))
    theirs = _outcome(lambda: getattr(model, kind)(*args))
    assert ours == theirs, op


def _random_ops(rng: random.Random, n: int) -> Iterator[tuple[Any, ...]]:
    for _ in range(n):
        r = rng.random()
        if r < 0.45:
            yield ("write", rng.randbytes(rng.choice([1, 7, 100, 1000, 2500])))
        elif r < 0.65:
            yield ("seek", rng.randrange(0, 2 * BS), os.SEEK_SET)
        elif r < 0.7:
            yield ("seek", rng.randrange(-50, 1), os.SEEK_END)
        elif r < 0.8:
            yield ("truncate", rng.randrange(0, BS + 500))
        else:
            yield ("read", rng.choice([-1, 1, 100, 5000]))


@pytest.mark.parametrize("seed", range(40))
def test_any_sequence_of_writes_seeks_truncates_and_reads_matches_the_stdlib_file(
    seed: int,
) -> None:
    # Across the spill at any point: before it, at it, after it. The standard library's
    # TemporaryFile (a real file under the same buffered layer) is the truth.
    rng = random.Random(seed)
    with hardtemp.TemporaryFile() as f, tempfile.TemporaryFile() as model:
        for op in _random_ops(rng, 40):
            _apply(f, model, op)
            assert f.tell() == model.tell()
        f.seek(0)
        model.seek(0)
        assert f.read() == model.read()


def test_a_spill_on_a_full_disk_keeps_the_file_in_memory_and_the_next_write_spills(
    small_tmpfs: Callable[[int], Path],
) -> None:
    mnt = small_tmpfs(64)  # 16 pages
    # Unbuffered: what the raw layer does (a buffered layer would retry its failed flush at
    # every later call, as the standard library's does).
    with hardtemp.TemporaryFile(dir=mnt, buffering=0) as f:
        f.write(b"kept" * 1000)
        filler = mnt / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with pytest.raises(OSError) as full:  # noqa: PT012 - until every page is taken
                while True:
                    os.write(fd, b"\0" * 4096)
            assert full.value.errno == errno.ENOSPC
        finally:
            os.close(fd)
        with pytest.raises(OSError) as excinfo:
            f.write(b"more" * 1000)
        assert excinfo.value.errno == errno.ENOSPC  # from the spill's own write
        assert type(_raw_of(f)) is MemoryFirstRawIO  # still in memory...
        f.seek(0)
        assert f.read(4000) == b"kept" * 1000  # ...with every byte written before
        filler.unlink()
        f.seek(4000)
        f.write(b"next" * 1000)  # room again: this write spills
        assert type(_raw_of(f)) is EncryptedRawIO
        f.seek(0)
        assert f.read() == b"kept" * 1000 + b"next" * 1000


# Every place in our own module where a signal handler can run (CPython's eval-breaker
# checks: not between any two bytecodes, where no ``with`` survives an exception).
# EncryptedRawIO's code makes each state change in one statement of stores, where a real
# signal cannot land either, and its interrupts are real timers' (tests/test_crypt_faults.py).
_SPILL_MODULES = (_small,)


def test_an_interrupt_wherever_a_signal_can_land_in_the_spill_loses_no_byte_written_before() -> (
    None
):
    # The write that spills is interrupted at the first place a signal can land, then at
    # the second, and so on until it runs through: every earlier byte stays readable and
    # correct, the file stays usable, the call's own bytes are all there or all absent per
    # block, and the file closes without error.
    old, new = b"o" * 3000, b"n" * 3000
    n, interrupted, in_spill = 0, 0, 0
    while True:
        n += 1
        f = hardtemp.TemporaryFile(buffering=0)
        try:
            f.write(old)
            with raise_where_a_signal_can(n, _SPILL_MODULES, exc=KeyboardInterrupt) as ran:
                try:
                    f.write(new)
                    done = True
                except KeyboardInterrupt:
                    done, interrupted = False, interrupted + 1
                    raw = _raw_of(f)
                    in_spill += type(raw) is MemoryFirstRawIO and raw._tried
            f.seek(0)
            data = f.read()
            assert data[:3000] == old, f"place {n}: earlier bytes lost"
            assert data in (old, old + new[: BS - 3000], old + new), f"place {n}: {len(data)}"
            f.seek(0, os.SEEK_END)
            f.write(b"after")  # still usable
            f.seek(0)
            assert f.read()[-5:] == b"after"
        finally:
            f.close()
        if done and ran() < n:
            break
    assert interrupted == n - 1  # every place but the last interrupted the call
    assert in_spill >= 5  # the spill before its commit: its calls (key, backing, seal...)


def test_the_contents_in_memory_are_zeroed_at_close_and_after_the_spill() -> None:
    f = hardtemp.TemporaryFile()
    f.write(b"secret" * 100)
    f.flush()
    buf = f.raw._buf
    f.close()
    assert buf == bytes(BS)
    g = hardtemp.TemporaryFile()
    g.write(b"secret" * 100)
    g.flush()
    buf = g.raw._buf
    g.write(b"secret" * 1000)  # spills
    g.flush()
    assert buf == bytes(BS)
    g.seek(0)
    assert g.read() == b"secret" * 1100
    g.close()


@pytest.mark.parametrize("how", ["os.fork", "raw fork"])
def test_a_forked_child_reads_the_small_file_and_may_not_write_it(how: str) -> None:
    fork = os.fork if how == "os.fork" else ctypes.CDLL(None, use_errno=True).fork
    with hardtemp.TemporaryFile(buffering=0) as f:
        f.write(b"before fork")

        def child() -> object:
            f.seek(0)
            seen = f.read()
            try:
                f.write(b"child")
                wrote = "wrote"
            except InsecureOperationError:
                wrote = "refused"
            return (seen, wrote)

        assert child_result(child, fork) == (b"before fork", "refused")
        f.write(b", after")
        f.seek(0)
        assert f.read() == b"before fork, after"
        assert type(_raw_of(f)) is MemoryFirstRawIO


def test_threads_appending_across_the_spill_lose_nothing() -> None:
    # A thread switch after almost every bytecode, and many files: a thread that called the
    # small file's write, then waited for the lock while another spilled it, writes through
    # the spilled file's code (it once looked a method up on what had become another class).
    chunks = [bytes([65 + i]) * 700 for i in range(16)]  # 11,200 bytes: spills midway
    old_interval = sys.getswitchinterval()
    for _ in range(30):
        with hardtemp.TemporaryFile("ab+", buffering=0) as f:
            start = threading.Barrier(len(chunks) + 1, timeout=60)  # and this thread
            failed: list[BaseException] = []

            def append(chunk: bytes, f: Any = f, start: Any = start, failed: Any = failed) -> None:
                try:
                    start.wait()
                    f.write(chunk)
                except BaseException as e:
                    failed.append(e)

            threads = start_threads((append, (c,)) for c in chunks)  # (not all at once)
            sys.setswitchinterval(1e-6)  # every thread is at the barrier: the race begins
            try:
                start.wait()
                for t in threads:
                    t.join()
            finally:
                sys.setswitchinterval(old_interval)
            assert not failed, failed
            f.seek(0)
            data = f.read()
        assert len(data) == sum(map(len, chunks))
        assert sorted(data[i : i + 700] for i in range(0, len(data), 700)) == chunks


def test_the_small_file_refuses_what_the_encrypted_file_refuses() -> None:
    with hardtemp.TemporaryFile() as f:
        with pytest.raises(io.UnsupportedOperation):
            f.fileno()
        with pytest.raises(OSError):
            f.seek(-1, os.SEEK_END)
        with pytest.raises(TypeError):
            f.raw.__reduce__()
    with pytest.raises(ValueError, match="closed"):
        f.raw.readall()
    with pytest.raises(ValueError, match="closed"):
        f.raw.write(b"x")
    with hardtemp.TemporaryFile("rb") as r, pytest.raises(io.UnsupportedOperation):
        r.raw.write(b"x")


def test_a_call_that_found_the_small_file_s_method_before_another_thread_spilled_it_runs_the_spilled_code() -> (  # noqa: E501
    None
):
    # What a thread that looked the method up, then waited for the lock while another
    # thread spilled the file, runs: the small file's method on what is now the other class.
    small = MemoryFirstRawIO
    f = hardtemp.TemporaryFile(buffering=0)
    raw = _raw_of(f)
    f.write(b"a" * (BS + 1000))
    assert type(raw) is EncryptedRawIO
    assert small.seek(raw, -10, os.SEEK_END) == BS + 990
    buf = bytearray(20)
    assert small.readinto(raw, buf) == 10
    assert bytes(buf) == b"a" * 10 + bytes(10)
    assert small.seek(raw, 0) == 0
    assert small.readall(raw) == b"a" * (BS + 1000)
    assert small.write(raw, b"b") == 1
    assert small.truncate(raw, 100) == 100
    small.close(raw)
    assert raw.closed
    assert f.closed


def test_the_small_file_takes_what_the_standard_raw_file_takes() -> None:
    with hardtemp.TemporaryFile(buffering=0) as f:
        assert f.write(array.array("H", [0x4141, 0x4242])) == 4  # bytes of any format
        assert f.write(b"") == 0
        assert f.seek(True) == 1  # an __index__ offset
        f.seek(0)
        out = array.array("H", [0, 0, 0])
        assert f.readinto(out) == 4  # into a buffer of any format, shorter reads
        assert out.tobytes()[:4] == b"AABB"
        f.seek(1)
        short = bytearray(2)
        assert f.readinto(short) == 2
        assert short == b"AB"
        f.seek(2, os.SEEK_CUR)
        assert f.tell() == 5
        assert f.truncate(3000) == 3000  # grown inside the block: zeros
        assert f.truncate(10) == 10
        assert f.truncate(20) == 20  # grown again, below what was ever copied in
        f.seek(0)
        assert f.read() == b"AABB" + bytes(16)
        assert "in memory size=20" in repr(f)
    assert "in memory closed" in repr(f)


def test_the_small_file_refuses_bad_calls_as_the_encrypted_file_does() -> None:
    with pytest.raises(ValueError, match="invalid raw mode"):
        MemoryFirstRawIO(-1, name=None, mode="r+x")
    with hardtemp.TemporaryFile(buffering=0) as f:
        with pytest.raises(ValueError, match="invalid whence"):
            f.seek(0, 3)
        for whence in (os.SEEK_SET, os.SEEK_CUR):
            with pytest.raises(OSError) as neg:
                f.seek(-1, whence)
            assert neg.value.errno == errno.EINVAL
        with pytest.raises(OSError) as negsize:
            f.truncate(-1)
        assert negsize.value.errno == errno.EINVAL
        assert type(_raw_of(f)) is MemoryFirstRawIO
    for call in (lambda: f.seek(0), lambda: f.readinto(bytearray(1)), lambda: f.write(b"x")):
        with pytest.raises(ValueError, match="closed"):
            call()
    f.close()  # again: nothing
    with hardtemp.TemporaryFile("wb", buffering=0) as w:
        with pytest.raises(io.UnsupportedOperation):
            w.readinto(bytearray(1))
        with pytest.raises(io.UnsupportedOperation):
            w.readall()


def test_a_forked_child_may_not_truncate_the_small_file() -> None:
    with hardtemp.TemporaryFile(buffering=0) as f:
        f.write(b"parent's")

        def child() -> object:
            try:
                f.truncate(1)
            except InsecureOperationError:
                return "refused"
            return "truncated"

        assert child_result(child, os.fork) == "refused"
        f.seek(0)
        assert f.read() == b"parent's"
