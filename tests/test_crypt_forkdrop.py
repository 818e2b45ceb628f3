"""A forked child never gets stale bytes from, nor flushes, an encrypted file's buffered layers.

Real ``os.fork()`` children of files built every way a caller gets one
(``open_encrypted``, ``TemporaryFile()``, ``encrypt="until-fileno"``; binary
buffered, read-only, write-only and text). The parent reads (so the buffered
layer holds read-ahead), or writes without flushing, then forks; the checks:

* read-ahead, then the parent rewrites that block: the child's read inside
  the old read-ahead raises ``IntegrityError``, never the stale bytes;
* read-ahead of bytes the parent does not rewrite: the child reads them right;
* unflushed writes at fork: the child's close, normal exit, ``sys.exit``,
  garbage collection and reads never write them (the backing file is
  byte-for-byte what the parent left, and no error is printed); the parent's
  data is byte-for-byte right after its own flush.

Without ``_forkdrop`` the first check returns the stale bytes and the third
prints the raw file's refusal from the child's flush at exit/close.
"""

from __future__ import annotations

import io
import os
import pickle
import signal
from collections.abc import Callable
from typing import IO, Any

import pytest

import hardtemp
from _helpers_core import run_python
from _helpers_crypt import backing_fd, raw_of
from hardtemp._crypt import open_encrypted, wrap_encrypted
from hardtemp._crypt._forkdrop import _InChild
from hardtemp.exceptions import IntegrityError

DATA = bytes(range(256)) * 64  # 16 KiB: two 8 KiB blocks


def _make(how: str, mode: str = "w+b") -> IO[Any]:
    if how == "open_encrypted":
        return open_encrypted(backing_fd(), mode)
    if how == "TemporaryFile":
        return hardtemp.TemporaryFile(mode)
    return hardtemp.TemporaryFile(mode, encrypt="until-fileno")


MAKERS = ["open_encrypted", "TemporaryFile", "until-fileno"]


def _fork_then(
    parent_does: Callable[[], None], child_does: Callable[[], object]
) -> tuple[str, str]:
    """Fork; the parent runs ``parent_does()``, then the child runs ``child_does()``;
    returns the child's (exception class name or 'ok', repr of the result or message)."""
    go_r, go_w = os.pipe()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.read(go_r, 1)
            try:
                res = ("ok", repr(child_does()))
            except BaseException as exc:
                res = (type(exc).__name__, str(exc))
            os.write(w, pickle.dumps(res))
        finally:
            os._exit(0)
    os.close(w)
    os.close(go_r)
    try:
        parent_does()
    finally:
        os.write(go_w, b"x")
        os.close(go_w)
    with os.fdopen(r, "rb") as inp:
        data = inp.read()
    os.waitpid(pid, 0)
    result: tuple[str, str] = pickle.loads(data)  # noqa: S301 - our own child
    return result


def _backing_bytes(f: IO[Any]) -> bytes:
    fd = raw_of(f)._fd
    return os.pread(fd, os.fstat(fd).st_size, 0)


# --- read-ahead ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", MAKERS)
def test_child_read_inside_the_read_ahead_of_a_block_the_parent_rewrote_raises(how: str) -> None:
    with _make(how) as f:
        f.write(DATA)
        f.flush()
        f.seek(0)
        assert f.read(10) == DATA[:10]  # the buffered layer now holds bytes 0..4095

        def parent() -> None:
            f.seek(0)
            f.write(b"rewritten by the parent")
            f.flush()

        def child() -> object:
            f.seek(100)  # inside the read-ahead: the buffered layer would answer alone
            return f.read(5)

        kind, _ = _fork_then(parent, child)
        assert kind == "IntegrityError"  # never DATA[100:105], the stale bytes
        f.seek(0)
        assert f.read() == b"rewritten by the parent" + DATA[23:]


@pytest.mark.parametrize("how", MAKERS)
def test_child_reads_the_read_ahead_of_an_unchanged_block_correctly(how: str) -> None:
    with _make(how) as f:
        f.write(DATA)
        f.flush()
        f.seek(8192 + 7)
        assert f.read(3) == DATA[8199:8202]

        def parent() -> None:
            f.seek(0)
            f.write(b"block 0 only")  # block 1, which the read-ahead is of, is unchanged
            f.flush()

        def child() -> object:
            first = f.read(20)  # continues at the inherited position
            f.seek(9000)
            return first, f.read(100), f.tell()

        kind, got = _fork_then(parent, child)
        assert (kind, got) == ("ok", repr((DATA[8202:8222], DATA[9000:9100], 9100)))


def test_read_only_layer_drops_its_read_ahead_in_the_child() -> None:
    # A read-only encrypted file is empty by construction: build one over a raw that has data.
    raw = raw_of(open_encrypted(backing_fd(), "w+b", buffering=0))
    raw.write(DATA)
    raw.seek(0)
    f = wrap_encrypted(raw, "rb")
    assert isinstance(f, io.BufferedReader)
    with f:
        assert f.read(10) == DATA[:10]

        def parent() -> None:
            raw.seek(0)
            raw.write(b"new")

        kind, _ = _fork_then(parent, lambda: f.read(5))
        assert kind == "IntegrityError"


def test_text_layer_drops_its_decoded_read_ahead_in_the_child() -> None:
    text = "".join(f"line {i}\n" for i in range(3000))
    with hardtemp.TemporaryFile("w+", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        f.seek(0)
        assert f.readline() == "line 0\n"  # the text layer holds decoded characters ahead

        def parent() -> None:
            f.seek(0)
            f.write("LINE 0\nLINE 1\n")
            f.flush()

        kind, _ = _fork_then(parent, f.readline)
        assert kind == "IntegrityError"


def test_text_layer_keeps_its_position_in_the_child() -> None:
    text = "".join(f"línea {i}\n" for i in range(3000))
    with hardtemp.TemporaryFile("w+", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        f.seek(0)
        assert f.readline() == "línea 0\n"
        assert _fork_then(lambda: None, lambda: (f.readline(), f.readline())) == (
            "ok",
            repr(("línea 1\n", "línea 2\n")),
        )


def test_a_text_file_iterated_at_fork_is_closed_in_the_child_never_stale() -> None:
    with hardtemp.TemporaryFile("w+", encoding="ascii") as f:
        f.write("".join(f"{i}\n" for i in range(5000)))
        f.flush()
        f.seek(0)
        assert next(f) == "0\n"  # iterating: tell() is disabled, the position cannot be kept

        def parent() -> None:
            f.seek(0)
            f.write("X\n")
            f.flush()

        kind, _ = _fork_then(parent, lambda: next(f))
        assert kind == "ValueError"  # closed in the child: neither stale "1\n" nor a write
        f.seek(0)
        assert f.read(4) == "X\n1\n"


# --- unflushed writes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "child_does"), [("w+b", "close"), ("wb", "close"), ("w+b", "read")]
)
def test_child_never_writes_the_unflushed_bytes_of_the_parent(mode: str, child_does: str) -> None:
    with _make("TemporaryFile", mode) as f:
        f.write(DATA)
        f.flush()
        f.seek(50)
        f.write(b"PENDING")  # in the buffered layer only, at fork
        before = _backing_bytes(f)

        def child() -> object:
            if child_does == "close":
                f.close()
            else:
                f.seek(0)
                return f.read(60)  # what was written before the fork, without the pending bytes
            return None

        kind, got = _fork_then(lambda: None, child)
        assert kind == "ok", got
        if child_does == "read":
            assert got == repr(DATA[:60])
        assert _backing_bytes(f) == before  # not one byte written by the child
        f.flush()
        assert _backing_bytes(f) != before
        if "+" in mode:
            f.seek(0)
            assert f.read() == DATA[:50] + b"PENDING" + DATA[57:]


@pytest.mark.parametrize("mode", ["w", "a+", "ab", "a+b"])
def test_child_close_never_writes_pending_text_or_appends(mode: str) -> None:
    text = "b" not in mode
    with hardtemp.TemporaryFile(mode, **({"encoding": "utf-8"} if text else {})) as f:
        f.write("x" * 5000 if text else b"x" * 5000)
        f.flush()
        f.write("PENDING" if text else b"PENDING")  # in the text or buffered layer at fork
        before = _backing_bytes(f)
        assert _fork_then(lambda: None, f.close) == ("ok", "None")
        assert _backing_bytes(f) == before
        f.flush()
        assert len(_backing_bytes(f)) > len(before)


_EXIT_SCRIPT = """
import gc, os, sys
from hardtemp import TemporaryFile
how = sys.argv[1]
f = TemporaryFile("w+b")
data = bytes(range(256)) * 64
f.write(data)
f.flush()
f.seek(50)
f.write(b"PENDING")
fd = f.raw._fd
before = os.pread(fd, 1 << 20, 0)
pid = os.fork()
if pid == 0:
    if how == "sys.exit":
        sys.exit(0)  # unwinds; interpreter shutdown finalizes (closes, flushes) the file
    if how == "del":
        del f  # the last reference: finalized (closed, flushed) at once
        gc.collect()
    # "exit": falls off the end of the script: a normal interpreter exit
else:
    _, status = os.waitpid(pid, 0)
    assert status == 0, status
    assert os.pread(fd, 1 << 20, 0) == before, "the child wrote the backing file"
    f.seek(0)
    assert f.read() == data[:50] + b"PENDING" + data[57:], "parent's data changed"
    print("parent intact")
"""


@pytest.mark.parametrize("how", ["exit", "sys.exit", "del"])
def test_child_exit_never_flushes_the_parents_unflushed_bytes(
    how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Release builds silently drop errors raised while finalizing a file; the
    # development mode reports them, so a flush the raw file refused is seen.
    monkeypatch.setenv("PYTHONDEVMODE", "1")
    proc = run_python(_EXIT_SCRIPT, how)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("parent intact") == 1
    assert proc.stderr == ""  # no "Exception ignored" from a refused flush in the child


def test_child_writes_after_the_drop_are_still_refused() -> None:
    with _make("TemporaryFile") as f:
        f.write(DATA)
        f.flush()

        def child() -> object:
            f.seek(0)
            f.write(b"child")
            f.flush()  # reaches the raw file: refused (nonce reuse), not discarded
            return None

        assert _fork_then(lambda: None, child)[0] == "InsecureOperationError"
        f.seek(0)
        assert f.read() == DATA


# --- the mechanism -----------------------------------------------------------------------------


def test_the_parent_keeps_the_plain_layer_classes() -> None:
    with _make("TemporaryFile") as f:
        assert isinstance(f, io.BufferedRandom)
        assert not isinstance(f, _InChild)
        assert type(f).__name__ == "BufferedRandom"
    with _make("TemporaryFile", "w+") as t:
        assert isinstance(t, io.TextIOWrapper)
        assert not isinstance(t, _InChild)
        assert not isinstance(t.buffer, _InChild)


@pytest.mark.parametrize("where", ["tell", "seek"])
def test_an_interrupt_during_the_childs_first_use_is_retried_at_the_next(where: str) -> None:
    with _make("TemporaryFile") as f:
        f.write(DATA)
        f.flush()
        f.seek(0)
        f.read(10)
        raw = raw_of(f)  # here: in the child, this first use would already drop

        def parent() -> None:
            f.seek(0)
            f.write(b"new")
            f.flush()

        def child() -> object:
            def boom(signum: int, frame: object) -> None:
                raise KeyboardInterrupt

            signal.signal(signal.SIGALRM, boom)
            real = getattr(type(raw), where)
            calls = []

            # A real signal, sent at the one point where it must arrive: inside the drop
            # (before it stored the position, or between the reset and the restoring seek).
            def interrupted(self: Any, *args: Any) -> int:
                calls.append(1)
                if len(calls) == 1:
                    os.kill(os.getpid(), signal.SIGALRM)
                return int(real(self, *args))

            setattr(type(raw), where, interrupted)
            try:
                f.tell()
            except KeyboardInterrupt:
                pass
            else:
                return "not interrupted"
            finally:
                setattr(type(raw), where, real)
            position = f.tell()  # the drop, retried: the position is kept
            f.seek(100)
            try:
                f.read(5)
            except IntegrityError:
                return position
            return "stale bytes"

        assert _fork_then(parent, child) == ("ok", "10")


def test_a_grandchild_forked_before_the_child_used_the_file_drops_too() -> None:
    with _make("TemporaryFile") as f:
        f.write(DATA)
        f.flush()
        f.seek(0)
        f.read(10)

        def parent() -> None:
            f.seek(0)
            f.write(b"new")
            f.flush()

        def child() -> object:
            def grandchild() -> object:
                f.seek(100)
                return f.read(5)

            return _fork_then(lambda: None, grandchild)[0]

        assert _fork_then(parent, child) == ("ok", repr("IntegrityError"))


def test_binary_iteration_as_the_first_use_in_the_child_drops_too() -> None:
    lines = b"".join(b"%d\n" % i for i in range(3000))
    with _make("TemporaryFile") as f:
        f.write(lines)
        f.flush()
        f.seek(0)
        assert f.readline() == b"0\n"

        def parent() -> None:
            f.seek(0)
            f.write(b"X\n")
            f.flush()

        assert _fork_then(parent, lambda: next(iter(f)))[0] == "IntegrityError"


def test_a_switched_or_closed_file_needs_no_drop_in_the_child() -> None:
    with _make("until-fileno") as f:
        f.write(DATA)
        f.fileno()  # now a plain file: like the standard one, nothing to drop
        f.seek(0)
        assert _fork_then(lambda: None, lambda: f.read(3)) == ("ok", repr(DATA[:3]))
    g = _make("TemporaryFile")
    g.close()
    assert _fork_then(lambda: None, lambda: g.closed) == ("ok", "True")


def test_the_raw_file_never_truncates_while_discarding_in_a_child() -> None:
    with _make("TemporaryFile") as f:
        f.write(DATA)
        f.flush()
        raw = raw_of(f)

        def child() -> object:
            with raw.discarding_writes():
                raw.truncate(0)
            return None

        assert _fork_then(lambda: None, child)[0] == "InsecureOperationError"
        f.seek(0)
        assert f.read() == DATA
