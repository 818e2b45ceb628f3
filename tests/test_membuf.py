"""SecureBytesIO: the in-memory plaintext leaves no copy behind in the process's memory.

Proved on a real process: a forked child handles a secret (written in two
halves, so the whole only ever exists in the buffer under test), stops, and
we search every writable mapping of its memory for the secret.
"""

from __future__ import annotations

import gc
import io
import os
import secrets
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import hardtemp
from hardtemp._membuf import SecureBytesIO

pytestmark = pytest.mark.skipif(
    not os.access("/proc/self/mem", os.R_OK), reason="needs /proc/<pid>/mem"
)


def _count_in_memory(pid: int, needle: bytes) -> int:
    hits = 0
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            addr, perms, *_ = line.split()
            if "r" not in perms or "w" not in perms:
                continue
            lo, hi = (int(x, 16) for x in addr.split("-"))
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except OSError:
                continue
            hits += data.count(needle)
    return hits


def copies_left_by(scenario: Callable[[bytes, bytes], Any]) -> int:
    """Run ``scenario(half1, half2)`` in a child; count the joined secret in its memory."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(rfd)
            h1 = secrets.token_hex(16).encode()
            h2 = secrets.token_hex(16).encode()
            scenario(h1, h2)
            gc.collect()
            os.write(wfd, h1 + b"," + h2)
            os.close(wfd)
            os.kill(os.getpid(), signal.SIGSTOP)
        finally:
            os._exit(0)
    os.close(wfd)
    try:
        halves = os.read(rfd, 256)
        os.waitpid(pid, os.WUNTRACED)
        assert b"," in halves, "the child failed"
        h1, h2 = halves.split(b",")
        return _count_in_memory(pid, h1 + h2)
    finally:
        os.close(rfd)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _grow_and_close(factory: Callable[[], Any]) -> Callable[[bytes, bytes], None]:
    def run(h1: bytes, h2: bytes) -> None:
        b = factory()
        b.write(b"p" * 100)
        b.write(h1)
        b.write(h2)
        for _ in range(20):  # several reallocations
            b.write(b"q" * 300)
        b.seek(100)
        into = bytearray(64)
        b.readinto(into)
        into[:] = bytes(64)
        b.close()

    return run


def test_secure_bytes_io_leaves_no_copy_after_growth_and_close() -> None:
    assert copies_left_by(_grow_and_close(SecureBytesIO)) == 0


def test_control_bytes_io_leaves_copies_behind() -> None:
    # The same scenario with io.BytesIO: the search does find leftovers.
    assert copies_left_by(_grow_and_close(io.BytesIO)) > 0


def test_secure_bytes_io_holds_exactly_one_copy_while_open() -> None:
    def run(h1: bytes, h2: bytes) -> None:
        b = SecureBytesIO()
        b.write(b"p" * 100)
        b.write(h1)
        b.write(h2)
        for _ in range(20):
            b.write(b"q" * 300)
        run.keep = b  # type: ignore[attr-defined]

    assert copies_left_by(run) == 1  # the live buffer: the search sees what is there


def test_spooled_rollover_leaves_no_copy_in_memory(tmp_path: Any) -> None:
    def run(h1: bytes, h2: bytes) -> None:
        f = hardtemp.SpooledTemporaryFile(
            max_size=2000, buffering=0, dir=str(tmp_path), encrypt=False
        )
        f.write(b"p" * 100)
        f.write(h1)
        f.write(h2)
        f.write(b"q" * 3000)  # rolls over
        assert f._rolled
        f.close()

    assert copies_left_by(run) == 0


# --- the file-like API, against io.BytesIO ------------------------------------------------------


def test_seek_and_truncate_behave_like_bytes_io() -> None:
    ours, ref = SecureBytesIO(), io.BytesIO()
    steps: list[tuple[str, tuple[int, ...]]] = [
        ("write", (b"0123456789",)),  # type: ignore[list-item]
        ("seek", (-3, 1)),
        ("tell", ()),
        ("seek", (-100, 1)),  # clamps at 0
        ("seek", (-4, 2)),
        ("read", ()),
        ("seek", (-100, 2)),
        ("truncate", ()),  # at the position (0 here)
        ("write", (b"abcdef",)),  # type: ignore[list-item]
        ("seek", (2,)),
        ("truncate", ()),
        ("getvalue", ()),
        ("tell", ()),
    ]
    for name, args in steps:
        assert getattr(ours, name)(*args) == getattr(ref, name)(*args), (name, args)


def test_truncate_past_the_end_grows_with_zeros_like_the_rolled_over_file(
    tmp_path: Path,
) -> None:
    # Unlike io.BytesIO (which ignores it), growing truncate extends with zeros, as the
    # real file a SpooledTemporaryFile rolls over to does: the same result either way.
    ours = SecureBytesIO()
    with open(tmp_path / "f", "w+b") as real:
        for f in (ours, real):
            f.write(b"abcdef")
            f.seek(2)
            assert f.truncate(600) == 600
            assert f.tell() == 2
        assert ours.getvalue() == (tmp_path / "f").read_bytes() == b"abcdef" + bytes(594)
        assert ours.truncate() == real.truncate() == 2
    assert ours.getvalue() == b"ab"


@pytest.mark.parametrize(("call", "args"), [("seek", (-1,)), ("seek", (0, 3)), ("truncate", (-1,))])
def test_bad_seek_and_truncate_arguments_raise_value_error(
    call: str, args: tuple[int, ...]
) -> None:
    with pytest.raises(ValueError):
        getattr(io.BytesIO(), call)(*args)
    f = SecureBytesIO()
    f.write(b"data")
    with pytest.raises(ValueError):
        getattr(f, call)(*args)
    assert f.getvalue() == b"data"


def test_growing_by_truncate_zeroes_the_old_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    from hardtemp import _membuf

    zeroed: list[bytearray] = []
    real = _membuf._zero

    def spy(buf: bytearray) -> None:
        real(buf)
        zeroed.append(buf)

    monkeypatch.setattr(_membuf, "_zero", spy)
    f = SecureBytesIO()
    secret = secrets.token_bytes(200)
    f.write(secret)
    zeroed.clear()
    f.truncate(10_000)  # reallocates: the old buffer held the secret
    assert len(zeroed) == 1
    assert len(zeroed[0]) >= len(secret)
    assert not any(zeroed[0])
    assert f.getvalue()[:200] == secret
    assert not any(f.getvalue()[200:])


def test_detach_is_unsupported_as_for_bytes_io() -> None:
    with pytest.raises(io.UnsupportedOperation):
        io.BytesIO().detach()
    with pytest.raises(io.UnsupportedOperation):
        SecureBytesIO().detach()
