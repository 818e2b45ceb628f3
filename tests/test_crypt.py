"""hardtemp._crypt: EncryptedRawIO and open_encrypted behave like a real file.

The model for the stateful tests is io.BytesIO, patched where a real file
differs: ``truncate`` to a larger size grows the file with zeros (BytesIO
ignores it). Small block sizes make every sequence cross block boundaries.
"""

from __future__ import annotations

import array
import errno
import gc
import io
import os
import pickle
import subprocess
import sys
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from _helpers_core import SRC, start_threads
from _helpers_crypt import backing_fd, raw_of, record_nonces
from _helpers_crypt import in_child as _in_child
from hardtemp import _crypt
from hardtemp._crypt import DEFAULT_BLOCK_SIZE, EncryptedRawIO, open_encrypted
from hardtemp._crypt._sealer import MAX_COUNTER, MAX_COUNTER32
from hardtemp.exceptions import InsecureOperationError, IntegrityError

# --- the stateful model test --------------------------------------------------------------


class _Model:
    """io.BytesIO with real-file truncate semantics."""

    def __init__(self) -> None:
        self.b = io.BytesIO()

    def truncate(self, size: int) -> None:
        cur = len(self.b.getbuffer())
        if size > cur:
            pos = self.b.tell()
            self.b.seek(0, io.SEEK_END)
            self.b.write(bytes(size - cur))
            self.b.seek(pos)
        else:
            self.b.truncate(size)


def _machine(block_size: int, buffered: bool) -> type[RuleBasedStateMachine]:
    bs = block_size
    near_boundary = st.builds(
        lambda k, d: max(0, k * bs + d), st.integers(0, 7), st.integers(-2, 2)
    )
    offsets = st.one_of(near_boundary, st.integers(0, 8 * bs))
    sizes = st.one_of(
        st.sampled_from([0, 1, bs - 1, bs, bs + 1, 2 * bs, 3 * bs + 1]), st.integers(0, 5 * bs)
    )

    class EncryptedFileMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            fd = backing_fd()
            if buffered:
                self.f: Any = open_encrypted(fd, "w+b", buffering=3 * bs // 2, block_size=bs)
            else:
                self.f = EncryptedRawIO(fd, block_size=bs)
            self.raw = raw_of(self.f)
            self.nonces = record_nonces(self.f)
            self.m = _Model()

        @rule(pos=offsets, data=st.binary(max_size=4 * bs))
        def write_at(self, pos: int, data: bytes) -> None:
            self.f.seek(pos)
            self.m.b.seek(pos)
            assert self.f.write(data) == len(data)
            self.m.b.write(data)

        @rule(data=st.binary(max_size=3 * bs))
        def write_here(self, data: bytes) -> None:
            assert self.f.write(data) == len(data)
            self.m.b.write(data)

        @rule(pos=offsets, n=st.one_of(st.just(-1), sizes))
        def read_at(self, pos: int, n: int) -> None:
            self.f.seek(pos)
            self.m.b.seek(pos)
            assert self.f.read(n) == self.m.b.read(n)

        @rule(n=sizes)
        def readinto_here(self, n: int) -> None:
            buf = bytearray(b"\xaa" * n)
            got = self.f.readinto(buf)
            want = self.m.b.read(n)
            assert got == len(want)
            assert bytes(buf[:got]) == want

        @rule(offset=st.integers(-3 * bs, 8 * bs), whence=st.sampled_from([0, 1, 2]))
        def seek(self, offset: int, whence: int) -> None:
            target = {0: 0, 1: self.m.b.tell(), 2: len(self.m.b.getbuffer())}[whence] + offset
            if target < 0:
                with pytest.raises(OSError) as info:
                    self.f.seek(offset, whence)
                assert info.value.errno == errno.EINVAL
                return
            assert self.f.seek(offset, whence) == self.m.b.seek(offset, whence) == target

        @rule(size=offsets)
        def truncate(self, size: int) -> None:
            assert self.f.truncate(size) == size
            self.m.truncate(size)

        @rule()
        def truncate_here(self) -> None:
            pos = self.m.b.tell()
            assert self.f.truncate() == pos
            self.m.truncate(pos)

        @precondition(lambda self: buffered)
        @rule()
        def flush(self) -> None:
            self.f.flush()

        @rule()
        def whole_file_matches(self) -> None:
            pos = self.f.tell()
            self.f.seek(0)
            assert self.f.read() == self.m.b.getvalue()
            self.f.seek(pos)

        @invariant()
        def position_matches(self) -> None:
            assert self.f.tell() == self.m.b.tell()

        @invariant()
        def nonces_never_repeat(self) -> None:
            assert self.nonces.repeats == []

        @invariant()
        def state_is_compact(self) -> None:
            # Per-block state: one 8-byte counter per block, none past the last stored one.
            assert self.raw._map.ctrs.itemsize == 8
            assert len(self.raw._map.ctrs) <= -(-self.raw._map.size // bs)

        def teardown(self) -> None:
            self.f.close()

    return EncryptedFileMachine


_SETTINGS = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

TestRawBlock32 = _machine(32, buffered=False).TestCase
TestRawBlock32.settings = _SETTINGS
TestRawBlock64 = _machine(64, buffered=False).TestCase
TestRawBlock64.settings = _SETTINGS
TestBufferedBlock32 = _machine(32, buffered=True).TestCase
TestBufferedBlock32.settings = _SETTINGS


# --- file-object behaviour ------------------------------------------------------------------


@pytest.fixture
def f() -> Any:
    fobj = open_encrypted(backing_fd(), "w+b", block_size=64)
    yield fobj
    fobj.close()


def test_default_block_size_keeps_state_under_1_mib_per_gib() -> None:
    assert 8 * (1024**3 // DEFAULT_BLOCK_SIZE) <= 1024 * 1024


def test_binary_stack_is_buffered_random_over_encrypted_raw(f: Any) -> None:
    assert isinstance(f, io.BufferedRandom)
    assert isinstance(f.raw, EncryptedRawIO)
    assert f.readable()
    assert f.writable()
    assert f.seekable()
    assert f.mode == "rb+"


def test_read_read1_readinto_readline_iteration(f: Any) -> None:
    lines = [b"first line\n", b"x" * 150 + b"\n", b"\n", b"last without newline"]
    f.writelines(lines)
    f.seek(0)
    assert f.readline() == lines[0]
    assert f.read(5) == b"xxxxx"
    assert len(f.read1(10)) <= 10
    f.seek(0)
    assert list(f) == lines
    f.seek(0)
    assert f.readlines() == lines
    f.seek(3)
    buf = bytearray(8)
    assert f.readinto(buf) == 8
    assert bytes(buf) == b"st line\n"[:8]
    f.seek(0)
    assert f.read() == b"".join(lines)
    assert f.read() == b""


def test_seek_every_whence_and_tell(f: Any) -> None:
    f.write(b"0123456789" * 20)
    assert f.tell() == 200
    assert f.seek(10) == 10
    assert f.seek(5, io.SEEK_CUR) == 15
    assert f.read(3) == b"567"
    assert f.seek(-4, io.SEEK_END) == 196
    assert f.read() == b"6789"
    assert f.seek(1000) == 1000
    assert f.read() == b""
    with pytest.raises(OSError) as info:
        f.seek(-1)
    assert info.value.errno == errno.EINVAL
    with pytest.raises(ValueError, match="whence"):
        f.raw.seek(0, 7)


def test_seek_past_end_then_write_leaves_zero_hole(f: Any) -> None:
    f.write(b"abc")
    f.seek(300)
    f.write(b"xyz")
    f.seek(0)
    assert f.read() == b"abc" + bytes(297) + b"xyz"


def test_truncate_down_and_up(f: Any) -> None:
    f.write(bytes(range(256)) * 2)
    assert f.truncate(100) == 100
    assert f.tell() == 512  # truncate does not move the position
    f.seek(0)
    assert f.read() == bytes(range(100))
    assert f.truncate(1000) == 1000
    f.seek(0)
    assert f.read() == bytes(range(100)) + bytes(900)
    f.seek(50)
    assert f.truncate() == 50
    f.seek(0, io.SEEK_END)
    assert f.tell() == 50


def test_truncate_up_is_sparse_and_never_touches_disk() -> None:
    fd = backing_fd()
    raw = EncryptedRawIO(fd)
    try:
        raw.write(b"head")
        assert os.fstat(fd).st_size == 4 + 16
        raw.truncate(1 << 40)  # one TiB of logical zeros
        # Only the partial last block was re-sealed at full length; nothing else on disk.
        before = os.fstat(fd).st_size
        assert raw._bs == SMALL  # chosen by the 4-byte first write
        assert before == SMALL + 16
        assert len(raw._map.ctrs) == 1  # no per-block state for the sparse tail
        raw.seek((1 << 40) - 10)
        assert raw.read() == bytes(10)
        raw.seek(DEFAULT_BLOCK_SIZE * 1000)
        assert raw.read(5) == bytes(5)
        assert os.fstat(fd).st_size == before
    finally:
        raw.close()


def test_flush_closed_and_context_manager() -> None:
    with open_encrypted(backing_fd(), "w+b") as f:
        f.write(b"data")
        f.flush()
        assert not f.closed
        raw = f.raw
    assert f.closed
    assert raw.closed
    with pytest.raises(ValueError, match="closed"):
        f.read()
    with pytest.raises(ValueError, match="closed"):
        raw.readinto(bytearray(1))
    with pytest.raises(ValueError, match="closed"):
        raw.write(b"x")
    for call in (raw.seekable, lambda: raw.seek(0), lambda: raw.seek(0, os.SEEK_CUR)):
        with pytest.raises(ValueError, match="closed"):
            call()
    raw.close()  # idempotent


def test_close_drops_key_and_closes_fd() -> None:
    fd = backing_fd()
    raw = EncryptedRawIO(fd)
    raw.write(b"secret")
    raw.close()
    assert raw._sealer is None
    assert raw._pt is None
    with pytest.raises(OSError) as info:
        os.fstat(fd)
    assert info.value.errno == errno.EBADF


def test_closefd_false_leaves_fd_open() -> None:
    fd = backing_fd()
    try:
        raw = EncryptedRawIO(fd, closefd=False)
        raw.write(b"x" * 100)
        raw.close()
        assert raw._sealer is None
        assert os.fstat(fd).st_size > 100  # still open; holds only ciphertext + tags
    finally:
        os.close(fd)


def test_fileno_raises_unsupported_operation_with_advice(f: Any) -> None:
    for obj in (f, f.raw):
        with pytest.raises(io.UnsupportedOperation) as info:
            obj.fileno()
        msg = str(info.value)
        assert "encrypted" in msg
        assert "encrypt=False" in msg
        assert "NamedTemporaryFile" in msg
    assert not f.isatty()


def test_name_is_exposed() -> None:
    with open_encrypted(backing_fd(), "w+", name="<hardtemp>", encoding="utf-8") as t:
        assert t.name == "<hardtemp>"
        assert t.buffer.name == "<hardtemp>"
        assert t.mode == "w+"


def test_text_mode_encoding_newline_errors() -> None:
    with open_encrypted(backing_fd(), "w+", encoding="utf-8", newline="\r\n") as t:
        t.write("héllo\nwörld\n")
        t.seek(0)
        assert t.buffer.read() == "héllo\r\nwörld\r\n".encode()
        t.seek(0)
        assert t.read() == "héllo\r\nwörld\r\n"  # newline="\r\n": untranslated on input
    with open_encrypted(backing_fd(), "w+t", encoding="ascii", errors="replace") as t:
        t.write("naïve")
        t.seek(0)
        assert t.read() == "na?ve"
    with open_encrypted(backing_fd(), "w+", encoding="utf-8", newline="") as t:
        t.write("a\r\nb\rc\n")
        t.seek(0)
        assert t.readlines() == ["a\r\n", "b\r", "c\n"]


def test_text_mode_tell_seek_roundtrip() -> None:
    with open_encrypted(backing_fd(), "w+", encoding="utf-8") as t:
        t.write("αβγ\n" * 5000)
        t.seek(0)
        t.readline()
        cookie = t.tell()
        rest = t.read()
        t.seek(cookie)
        assert t.read() == rest


def test_line_buffering_in_text_mode() -> None:
    with open_encrypted(backing_fd(), "w+", buffering=1, encoding="utf-8") as t:
        assert t.line_buffering
        t.write("line\n")
        assert raw_of(t)._map.size == 5  # reached the raw file without flush()


def test_binary_line_buffering_warns_like_io_open() -> None:
    with pytest.warns(RuntimeWarning, match="line buffering"):
        f = open_encrypted(backing_fd(), "w+b", buffering=1)
    f.close()


def test_buffering_zero_binary_is_unbuffered_raw() -> None:
    with open_encrypted(backing_fd(), "w+b", buffering=0) as raw:
        assert isinstance(raw, EncryptedRawIO)
        raw.write(b"abc")
        assert raw._map.size == 3
        raw.seek(0)
        assert raw.read(10) == b"abc"
        assert raw.readall() == b""


@pytest.mark.parametrize(
    ("offset", "whence"), [(-1, os.SEEK_SET), (-5, os.SEEK_CUR), (-100, os.SEEK_END)]
)
def test_a_failed_seek_after_a_write_leaves_the_next_seeks_result_right(
    offset: int, whence: int
) -> None:
    # Found by the stateful test: CPython 3.11/3.12's BufferedRandom then returns -30 for seek(0).
    with open_encrypted(backing_fd(), "w+b", buffering=48, block_size=32) as f:
        f.truncate(32)
        f.seek(0)
        f.read(1)
        f.write(b"\x01")
        with pytest.raises(OSError) as info:
            f.seek(offset, whence)
        assert info.value.errno == errno.EINVAL
        assert f.tell() == 2
        assert f.seek(0) == 0
        assert f.seek(0, os.SEEK_CUR) == 0
        assert f.read(3) == b"\x00\x01\x00"


def test_buffer_size_is_honoured() -> None:
    with open_encrypted(backing_fd(), "w+b", buffering=100) as f:
        f.write(b"x" * 99)
        assert raw_of(f)._map.size == 0
        f.write(b"x" * 2)
        assert raw_of(f)._map.size > 0


@pytest.mark.parametrize(
    ("mode", "readable", "writable", "raw_mode"),
    [
        ("w+b", True, True, "rb+"),
        ("wb", False, True, "wb"),
        ("rb", True, False, "rb"),
        ("r+b", True, True, "rb+"),
        ("ab", False, True, "ab"),
        ("a+b", True, True, "ab+"),
        ("xb", False, True, "xb"),
        ("x+b", True, True, "xb+"),
    ],
)
def test_binary_modes_behave_like_on_a_fresh_file(
    mode: str, readable: bool, writable: bool, raw_mode: str
) -> None:
    with open_encrypted(backing_fd(), mode) as f:
        assert f.readable() is readable
        assert f.writable() is writable
        assert f.raw.mode == raw_mode
        if readable:
            assert f.read() == b""
        else:
            with pytest.raises(io.UnsupportedOperation):
                f.read()
        if writable:
            f.write(b"hello")
            f.flush()
        else:
            with pytest.raises(io.UnsupportedOperation):
                f.write(b"x")
            with pytest.raises(io.UnsupportedOperation):
                f.truncate(0)


def test_append_mode_always_writes_at_end() -> None:
    with open_encrypted(backing_fd(), "a+b", block_size=32) as f:
        f.write(b"abc")
        f.seek(0)
        f.write(b"def")
        f.seek(0)
        assert f.read() == b"abcdef"
    with open_encrypted(backing_fd(), "a+", encoding="utf-8") as t:
        t.write("x")
        t.seek(0)
        t.write("y")
        t.seek(0)
        assert t.read() == "xy"


@pytest.mark.parametrize("mode", ["w+", "w+t", "r+", "a+", "x+", "w", "r", "rt"])
def test_text_modes_are_accepted(mode: str) -> None:
    with open_encrypted(backing_fd(), mode, encoding="utf-8") as t:
        assert isinstance(t, io.TextIOWrapper)
        assert t.mode == mode


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "w+b", "buffering": 0, "encoding": "utf-8"}, "encoding"),
        ({"mode": "w+", "buffering": 0}, "unbuffered text"),
        ({"mode": "rw"}, "exactly one"),
        ({"mode": ""}, "exactly one"),
        ({"mode": "w+bt"}, "text and binary"),
        ({"mode": "w+bb"}, "invalid mode"),
        ({"mode": "w+q"}, "invalid mode"),
        ({"mode": "U"}, "invalid mode"),
        ({"mode": "wb", "errors": "strict"}, "errors"),
        ({"mode": "wb", "newline": "\n"}, "newline"),
        ({"mode": "w", "newline": "x", "encoding": "utf-8"}, "newline"),
    ],
)
def test_bad_modes_raise_value_error_like_io_open(kwargs: dict[str, Any], message: str) -> None:
    fd = backing_fd()
    try:
        with pytest.raises(ValueError, match=message):
            open_encrypted(fd, **kwargs)
    finally:
        os.close(fd)


def test_bad_argument_types_raise_type_error() -> None:
    fd = backing_fd()
    try:
        with pytest.raises(TypeError):
            open_encrypted(fd, b"w+b")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            open_encrypted(fd, "w+b", buffering="big")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            EncryptedRawIO("3")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            EncryptedRawIO(fd, block_size=1.5)  # type: ignore[arg-type]
    finally:
        os.close(fd)


def test_unknown_encoding_raises_lookup_error_and_closes_fd() -> None:
    fd = backing_fd()
    with pytest.raises(LookupError):
        open_encrypted(fd, "w+", encoding="no-such-codec")
    with pytest.raises(OSError) as info:
        os.fstat(fd)
    assert info.value.errno == errno.EBADF


@pytest.mark.parametrize("size", [0, 15, MAX := _crypt.MAX_BLOCK_SIZE + 1])
def test_block_size_out_of_range_raises_value_error(size: int) -> None:
    fd = backing_fd()
    try:
        with pytest.raises(ValueError, match="block_size"):
            EncryptedRawIO(fd, block_size=size)
    finally:
        os.close(fd)


def test_non_empty_or_non_regular_backing_file_is_refused() -> None:
    fd = backing_fd()
    os.write(fd, b"existing bytes")
    try:
        with pytest.raises(ValueError, match="not empty"):
            EncryptedRawIO(fd)
    finally:
        os.close(fd)
    r, w = os.pipe()
    try:
        with pytest.raises(ValueError, match="not a regular file"):
            EncryptedRawIO(r)
    finally:
        os.close(r)
        os.close(w)


def test_cannot_be_pickled() -> None:
    with open_encrypted(backing_fd(), "w+b", buffering=0) as raw, pytest.raises(TypeError):
        pickle.dumps(raw)


def test_negative_truncate_raises_einval(f: Any) -> None:
    with pytest.raises(OSError) as info:
        f.truncate(-1)
    assert info.value.errno == errno.EINVAL


def test_backing_file_holds_only_ciphertext_and_tags() -> None:
    fd = backing_fd()
    with EncryptedRawIO(fd, block_size=64, closefd=False) as raw:
        data = b"A" * 1000
        raw.write(data)
        blocks = -(-1000 // 64)
        assert os.fstat(fd).st_size == 1000 + 16 * blocks
        disk = os.pread(fd, 2000, 0)
        assert b"AAAA" not in disk
    os.close(fd)


def test_memoryview_and_array_buffers_are_accepted(f: Any) -> None:
    data = array.array("i", range(100))
    assert f.raw.write(memoryview(data)) == 400
    f.raw.seek(0)
    out = array.array("i", bytes(400))
    assert f.raw.readinto(out) == 400
    assert out == data


def test_large_transfers_roundtrip() -> None:
    fd = backing_fd()
    with EncryptedRawIO(fd, block_size=16384) as raw:
        rec = record_nonces(raw)
        data = os.urandom(3 * 1024 * 1024 + 12345)
        assert raw.write(data) == len(data)
        raw.seek(7)
        assert raw.read(len(data)) == data[7:]
        raw.seek(1000)
        raw.write(data[: 2 * 1024 * 1024])
        raw.seek(0)
        assert raw.read() == data[:1000] + data[: 2 * 1024 * 1024] + data[1000 + 2 * 1024 * 1024 :]
        assert rec.repeats == []


def test_the_nonce_recorder_sees_the_seals_of_the_append_path_too() -> None:
    # The recorder above must watch every seal: the one-block append seals through a
    # bound AESGCM.encrypt, which a recorder swapped in for the cipher alone missed.
    with EncryptedRawIO(backing_fd()) as raw:
        rec = record_nonces(raw)
        for _ in range(5):
            raw.write(b"a" * 4096)  # each one new 4 KiB block at the end
        assert len(rec.nonces) == 5
        assert rec.repeats == []


def test_counter_exhaustion_raises_instead_of_wrapping() -> None:
    fd = backing_fd()
    with EncryptedRawIO(fd, block_size=32) as raw:
        raw.write(b"x" * 10)
        raw._sealer._next = MAX_COUNTER  # one nonce left
        raw.write(b"y")
        with pytest.raises(OSError) as info:
            raw.write(b"z")
        assert info.value.errno == errno.EOVERFLOW
        raw.seek(0)
        assert raw.read() == b"x" * 10 + b"y"


def test_concurrent_writers_and_readers_are_consistent() -> None:
    bs = 64
    fd = backing_fd()
    with EncryptedRawIO(fd, block_size=bs) as raw:
        rec = record_nonces(raw)
        errors: list[BaseException] = []
        region = 10 * bs + 7

        def writer(k: int) -> None:
            try:
                payload = bytes([k]) * region
                for _ in range(50):
                    # seek+write is not atomic as a pair; the file object's own
                    # position is shared, so use a private raw per thread? No:
                    # one object, so serialise the pair on a lock of our own.
                    with pair_lock:
                        raw.seek(k * region)
                        raw.write(payload)
            except BaseException as exc:
                errors.append(exc)

        def reader() -> None:
            try:
                buf = bytearray(3 * bs)
                for _ in range(200):
                    with pair_lock:
                        raw.seek(0)
                        raw.readinto(buf)
            except BaseException as exc:
                errors.append(exc)

        pair_lock = threading.Lock()
        threads = start_threads([*((writer, (k,)) for k in range(4)), (reader, ()), (reader, ())])
        for t in threads:
            t.join()
        assert errors == []
        raw.seek(0)
        assert raw.read() == b"".join(bytes([k]) * region for k in range(4))
        assert rec.repeats == []


def test_concurrent_unsynchronised_writes_never_reuse_nonces() -> None:
    # Without any caller-side locking, interleaved writes may land anywhere,
    # but the object stays consistent and no nonce is ever used twice.
    fd = backing_fd()
    with EncryptedRawIO(fd, block_size=32) as raw:
        rec = record_nonces(raw)

        def hammer(k: int) -> None:
            for i in range(300):
                raw.seek((k * 7 + i * 13) % 500)
                raw.write(bytes([k]) * (i % 70 + 1))

        threads = start_threads((hammer, (k,)) for k in range(4))
        for t in threads:
            t.join()
        raw.seek(0)
        data = raw.read()
        assert len(data) == raw._map.size
        assert set(data) <= {0, 1, 2, 3}
        assert rec.repeats == []


# --- fork -----------------------------------------------------------------------------------


def test_forked_child_may_read_but_never_write() -> None:
    fd = backing_fd()
    with open_encrypted(fd, "w+b", block_size=64) as f:
        raw = raw_of(f)
        rec = record_nonces(f)
        f.write(b"parent data " * 20)
        f.flush()

        def child_reads() -> bytes:
            raw.seek(0)
            return raw.read(12)

        assert _in_child(child_reads) == ("ok", repr(b"parent data "))

        def child_writes() -> None:
            raw.seek(0)
            raw.write(b"child")

        kind, message = _in_child(child_writes)
        assert kind == "InsecureOperationError"
        assert "fork" in message
        assert "nonce" in message

        def child_truncates() -> None:
            raw.truncate(3)

        assert _in_child(child_truncates)[0] == "InsecureOperationError"

        def child_buffered_write() -> None:
            f.seek(0)
            f.write(b"child")
            f.flush()

        assert _in_child(child_buffered_write)[0] == "InsecureOperationError"

        # The parent is unaffected and keeps using fresh nonces.
        f.seek(0)
        f.write(b"PARENT")
        f.seek(0)
        assert f.read(12) == b"PARENT data "
        assert rec.repeats == []


def test_forked_child_sees_integrity_error_after_parent_rewrites() -> None:
    fd = backing_fd()
    with EncryptedRawIO(fd, block_size=64) as raw:
        raw.write(b"version one " * 20)
        r, w = os.pipe()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                os.read(go_r, 1)  # wait until the parent rewrote block 0
                raw.seek(0)
                try:
                    raw.read(10)
                    os.write(w, b"read succeeded")
                except IntegrityError:
                    os.write(w, b"IntegrityError")
            finally:
                os._exit(0)
        raw.seek(0)
        raw.write(b"VERSION TWO ")
        os.write(go_w, b"x")
        assert os.read(r, 100) == b"IntegrityError"
        os.waitpid(pid, 0)
        for x in (r, w, go_r, go_w):
            os.close(x)


def test_forked_child_reads_do_not_deadlock_on_a_parent_thread_lock() -> None:
    fd = backing_fd()
    with EncryptedRawIO(fd, block_size=64) as raw:
        raw.write(b"abc" * 100)
        raw._lock.acquire()  # as if another parent thread were inside a write at fork time
        try:

            def child_reads() -> bytes:
                raw.seek(0)
                return raw.read(3)

            assert _in_child(child_reads) == ("ok", repr(b"abc"))
        finally:
            raw._lock.release()


def test_insecure_operation_error_is_a_runtime_error() -> None:
    assert issubclass(InsecureOperationError, RuntimeError)


def test_encoding_warning_points_at_caller_when_enabled() -> None:
    # io.text_encoding is used like io.open uses it: a warning only with
    # -X warn_default_encoding, and then attributed to the caller's line.
    code = (
        "import os, warnings\n"
        "from hardtemp._crypt import open_encrypted\n"
        "fd = os.open('/tmp', os.O_TMPFILE | os.O_RDWR, 0o600)\n"
        "with warnings.catch_warnings(record=True) as got:\n"
        "    warnings.simplefilter('always')\n"
        "    open_encrypted(fd, 'w+').close()  # line 6\n"
        "print([(w.category.__name__, w.filename, w.lineno) for w in got])\n"
    )
    enabled = subprocess.run(
        [sys.executable, "-X", "warn_default_encoding", "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=SRC),
        check=True,
    )
    assert enabled.stdout.strip() == "[('EncodingWarning', '<string>', 6)]"
    disabled = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=SRC),
        check=True,
    )
    assert disabled.stdout.strip() == "[]"


def test_enospc_on_a_real_full_filesystem_keeps_earlier_data_readable(
    small_tmpfs: Any,
) -> None:
    mnt = small_tmpfs(256)
    fd = os.open(mnt, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    with EncryptedRawIO(fd, block_size=4096) as raw:
        first = os.urandom(64 * 1024)
        raw.write(first)
        with pytest.raises(OSError) as info:  # noqa: PT012 - fill until the disk is full
            for _ in range(100):
                raw.write(os.urandom(64 * 1024))
        assert info.value.errno == errno.ENOSPC
        # The backing file was cut back to what the metadata expects ...
        assert os.fstat(fd).st_size == raw._map.disk_end
        # ... so what was written before still reads back, through every path.
        raw.seek(0)
        assert raw.read(len(first)) == first
        raw.seek(100)
        assert raw.read(10) == first[100:110]
        size = raw.seek(0, io.SEEK_END)
        raw.seek(0)
        assert len(raw.read()) == size
        assert raw._map.ctrs[-1] != 0


def test_raw_mode_restricts_reading_and_writing() -> None:
    with EncryptedRawIO(backing_fd(), mode="wb") as w:
        assert not w.readable()
        assert w.writable()
        w.write(b"x")
        with pytest.raises(io.UnsupportedOperation):
            w.readinto(bytearray(1))
    with EncryptedRawIO(backing_fd(), mode="rb") as r:
        assert r.readable()
        assert not r.writable()
        with pytest.raises(io.UnsupportedOperation):
            r.write(b"x")
        with pytest.raises(io.UnsupportedOperation):
            r.truncate(0)
    fd = backing_fd()
    try:
        with pytest.raises(ValueError, match="raw mode"):
            EncryptedRawIO(fd, mode="w+")
        with pytest.raises(TypeError):
            EncryptedRawIO(fd, mode=None)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            open_encrypted(fd, "w+", encoding=b"utf-8")  # type: ignore[arg-type]
    finally:
        os.close(fd)


def test_repr_shows_no_secrets() -> None:
    raw = EncryptedRawIO(backing_fd(), name="x")
    raw.write(b"abc")
    text = repr(raw)
    assert "size=3" in text
    assert "key" not in text.lower()
    raw.close()
    assert "closed" in repr(raw)


def test_partial_blocks_read_modify_write_and_truncate() -> None:
    with EncryptedRawIO(backing_fd(), block_size=32) as raw:
        raw.write(b"a" * 50)
        raw.seek(10)
        raw.write(b"b" * 5)  # read-modify-write
        raw.truncate(40)
        raw.truncate(70)
        raw.seek(12)
        assert raw.read(3) == b"bbb"  # single-block partial read
        raw.seek(0)
        assert raw.read() == b"a" * 10 + b"b" * 5 + b"a" * 25 + bytes(30)


def test_offsets_beyond_the_largest_file_offset_raise_efbig() -> None:
    with EncryptedRawIO(backing_fd()) as raw:
        raw.seek(2**63 - 10)
        with pytest.raises(OSError) as info:
            raw.write(b"x")
        assert info.value.errno == errno.EFBIG
        with pytest.raises(OSError) as info:
            raw.truncate(2**63)
        assert info.value.errno == errno.EFBIG
        assert raw._map.size == 0


# --- the block size chosen by the first write -----------------------------------------------------

LARGE = _crypt.LARGE_BLOCK_SIZE
SMALL = _crypt.SMALL_BLOCK_SIZE


@pytest.mark.parametrize(
    ("first_write", "expected"),
    [
        (LARGE, LARGE),
        (10 * LARGE + 5, LARGE),
        (LARGE - 1, DEFAULT_BLOCK_SIZE),
        (SMALL + 1, DEFAULT_BLOCK_SIZE),
        (SMALL, SMALL),
        (1, SMALL),
    ],
)
def test_the_first_write_chooses_the_block_size(first_write: int, expected: int) -> None:
    data = os.urandom(first_write)
    with EncryptedRawIO(backing_fd()) as raw:
        raw.write(data)
        assert raw._bs == expected
        slots = -(-first_write // expected)
        assert os.fstat(raw._fd).st_size == first_write + slots * _crypt.TAG_SIZE  # the layout
        raw.write(os.urandom(3 * LARGE))  # later writes never change it
        assert raw._bs == expected
        raw.seek(0)
        assert raw.read(first_write) == data


def test_a_small_block_file_stops_at_its_4_byte_counter_limit_and_never_repeats_a_nonce() -> None:
    with EncryptedRawIO(backing_fd()) as raw:
        rec = record_nonces(raw)
        raw.write(b"a" * 100)  # a small first write: 4 KiB blocks, 4-byte counters
        assert raw._bs == SMALL
        assert raw._map.ctrs.itemsize == 4
        assert raw._sealer is not None
        raw._sealer._next = MAX_COUNTER32 - 1  # test hook: two counter values left
        raw.write(b"b" * SMALL)  # rewrites block 0 and adds block 1: both values
        assert raw._map.ctrs.tolist() == [MAX_COUNTER32 - 1, MAX_COUNTER32]
        for attempt in (lambda: raw.write(b"c"), lambda: raw.truncate(50)):
            with pytest.raises(OSError) as info:
                attempt()  # a new block, or the re-seal of a cut block: no value left
            assert info.value.errno == errno.EOVERFLOW
        assert rec.repeats == []
        assert max(int.from_bytes(n, "big") for n in rec.nonces) == MAX_COUNTER32
        raw.seek(0)
        assert raw.read() == b"a" * 100 + b"b" * SMALL  # what was written stays readable
        raw.truncate(SMALL)  # a cut at a block boundary re-seals nothing: still allowed
        raw.seek(0)
        assert raw.read() == b"a" * 100 + b"b" * (SMALL - 100)


@pytest.mark.parametrize(("first_write", "limit"), [(1, MAX_COUNTER32), (SMALL + 1, MAX_COUNTER)])
def test_the_counter_width_follows_the_chosen_blocks(first_write: int, limit: int) -> None:
    # The provisional 4 KiB blocks of an empty file keep 4-byte counters (so does the
    # sealer's limit); a first write that chooses wider blocks widens both at once.
    with EncryptedRawIO(backing_fd()) as raw:
        assert raw._sealer is not None
        assert raw._sealer.limit == MAX_COUNTER32
        raw.write(bytes(first_write))
        assert raw._sealer.limit == limit
        assert raw._map.ctrs.itemsize == (4 if limit == MAX_COUNTER32 else 8)


def test_the_registry_of_live_files_forgets_each_collected_file() -> None:
    from hardtemp._crypt import _forkdrop, _raw

    gc.collect()
    before = len(_raw._live), len(_forkdrop._tops)
    for _ in range(50):
        with open_encrypted(backing_fd(), "w+b") as f:
            f.write(b"x")
    del f
    gc.collect()
    assert (len(_raw._live), len(_forkdrop._tops)) == before


def test_a_fixed_block_size_keeps_8_byte_counters() -> None:
    with EncryptedRawIO(backing_fd(), block_size=SMALL) as raw:
        raw.write(b"a")
        assert raw._map.ctrs.itemsize == 8
        assert raw._sealer is not None
        assert raw._sealer.limit == MAX_COUNTER


def test_a_fixed_block_size_or_a_file_that_is_no_longer_empty_keeps_its_blocks() -> None:
    with EncryptedRawIO(backing_fd(), block_size=DEFAULT_BLOCK_SIZE) as raw:
        raw.write(bytes(LARGE))
        assert raw._bs == DEFAULT_BLOCK_SIZE
    with EncryptedRawIO(backing_fd()) as raw:
        raw.truncate(100)  # grown before its first write: the size is no longer 0
        raw.seek(100)
        raw.write(bytes(LARGE))
        assert raw._bs == DEFAULT_BLOCK_SIZE
        raw.seek(0)
        assert raw.read() == bytes(100 + LARGE)


def test_temporary_file_written_in_large_calls_gets_large_blocks_through_the_buffer() -> None:
    import hardtemp

    big = os.urandom(1 << 20)
    with hardtemp.TemporaryFile() as f:
        f.write(big)  # larger than the buffer: reaches the raw file as one write
        assert raw_of(f)._bs == LARGE
        f.seek(12345)
        assert f.read(4096) == big[12345 : 12345 + 4096]
        f.seek(0)
        assert f.read() == big
    with hardtemp.TemporaryFile() as f:
        for _ in range(100):
            f.write(b"x" * 1000)  # small writes: the buffer hands the raw file 4 KiB
        assert raw_of(f)._bs == SMALL
        assert raw_of(f)._map.ctrs.itemsize == 4  # 4 bytes of state per 4 KiB block


def test_large_blocks_detect_tampering_and_keep_nonces_unique() -> None:
    data = os.urandom(3 * LARGE + 100)
    with EncryptedRawIO(backing_fd()) as raw:
        rec = record_nonces(raw)
        raw.write(data)
        for pos in (5, LARGE - 3, 2 * LARGE + 7):
            raw.seek(pos)
            raw.write(b"partial rewrite")
        assert rec.repeats == []
        slot = LARGE + _crypt.TAG_SIZE
        byte = os.pread(raw._fd, 1, slot + 100)
        os.pwrite(raw._fd, bytes([byte[0] ^ 1]), slot + 100)  # block 1 flipped
        raw.seek(LARGE + 50)
        with pytest.raises(IntegrityError):
            raw.read(10)
        raw.seek(0)
        assert raw.read(20) == data[:5] + b"partial rewrite"


def test_no_memory_for_large_blocks_keeps_the_default_quietly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hardtemp._crypt import _raw

    with EncryptedRawIO(backing_fd()) as raw:

        def no_memory(size: int) -> Any:
            # Mock: ENOMEM from mmap cannot be caused reliably (overcommit); the fallback can.
            raise OSError(errno.ENOMEM, "Cannot allocate memory")

        monkeypatch.setattr(_raw, "ProtectedMemory", no_memory)
        data = os.urandom(2 * LARGE)
        raw.write(data)
        assert raw._bs == DEFAULT_BLOCK_SIZE
        raw.seek(0)
        assert raw.read() == data


def test_the_large_scratch_block_is_protected_memory_wiped_in_a_child() -> None:
    data = os.urandom(2 * LARGE)
    with EncryptedRawIO(backing_fd()) as raw:
        raw.write(data)
        raw.seek(10)
        assert raw.read(5) == data[10:15]  # block 0's plaintext is now in the scratch
        mem = raw._mem
        assert mem is not None
        assert raw._bs == LARGE
        assert mem.dontdump
        assert mem.wipeonfork
        assert raw._pt is not None
        assert bytes(raw._pt[:LARGE]) == data[:LARGE]
        pt = raw._pt
        assert _in_child(lambda: bytes(pt[:LARGE]) == bytes(LARGE)) == ("ok", "True")
