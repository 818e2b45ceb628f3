"""Encrypted until fileno(): compat's TemporaryFile, SpooledTemporaryFile, encrypt="until-fileno".

Before the first ``fileno()`` only ciphertext is on the disk (checked by
reading the backing file); after it the file behaves like the standard one,
checked by running the same scenario on :mod:`tempfile` and comparing, with
real ``subprocess`` children writing to it (stdout) and reading it (stdin).
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import hardtemp
import hardtemp.compat
from _helpers_core import open_fds
from _helpers_crypt import raw_of
from hardtemp import _dirtrust
from hardtemp._crypt import EncryptedRawIO
from hardtemp._crypt._switch import SwitchingRawIO

MARK = b"SWITCH-MARKER-" + os.urandom(8).hex().encode()


def _switching(f: Any) -> SwitchingRawIO:
    obj = f
    while not isinstance(obj, SwitchingRawIO):
        obj = (
            obj.buffer
            if hasattr(obj, "buffer")
            else obj._file
            if hasattr(obj, "_file")
            else obj.raw
        )
    return obj


def _backing_bytes(f: Any) -> bytes:
    """Everything the backing file of an encrypted file holds (what the disk gets)."""
    enc = _switching(f)._f
    assert isinstance(enc, EncryptedRawIO)
    with open(f"/proc/self/fd/{enc._fd}", "rb") as back:
        return back.read()


def test_compat_temporary_file_is_encrypted_until_fileno() -> None:
    with hardtemp.compat.TemporaryFile() as f:
        f.write(MARK * 100)
        f.flush()
        assert _switching(f).encrypted
        assert MARK not in _backing_bytes(f)
        assert len(_backing_bytes(f)) > len(MARK) * 100  # ciphertext and tags
        f.seek(7)
        fd = f.fileno()
        assert not _switching(f).encrypted
        assert f.name == fd  # as the standard TemporaryFile: the name is the descriptor
        assert os.pread(fd, len(MARK), 0) == MARK  # now plain, for another program
        assert os.lseek(fd, 0, os.SEEK_CUR) == 7  # same position
        assert f.read(len(MARK)) == (MARK * 2)[7 : 7 + len(MARK)]
        assert f.fileno() == fd  # switches once


def _run_both(scenario: Callable[[Any], bytes]) -> tuple[bytes, bytes]:
    with tempfile.TemporaryFile() as std:
        want = scenario(std)
    with hardtemp.compat.TemporaryFile() as ours:
        got = scenario(ours)
    return want, got


def test_subprocess_writing_to_it_as_stdout_works_like_the_stdlib() -> None:
    def scenario(f: Any) -> bytes:
        f.write(b"before:")
        f.flush()
        subprocess.run([sys.executable, "-c", "print('from the child')"], stdout=f, check=True)
        f.write(b":after")
        f.seek(0)
        return bytes(f.read())

    want, got = _run_both(scenario)
    assert want == got == b"before:from the child\n:after"


def test_subprocess_reading_it_as_stdin_works_like_the_stdlib() -> None:
    def scenario(f: Any) -> bytes:
        f.write(b"line one\nline two\n" * 1000)
        f.seek(9)
        proc = subprocess.run(["cat"], stdin=f, capture_output=True, check=True)
        return bytes(proc.stdout)

    want, got = _run_both(scenario)
    assert want == got
    assert got.startswith(b"line two\n")


def test_text_mode_and_spooled_rollover_switch_on_fileno() -> None:
    with hardtemp.compat.TemporaryFile("w+", encoding="utf-8") as t:
        t.write("héllo")
        t.flush()
        assert _switching(t).encrypted
        os.fstat(t.fileno())
        t.seek(0)
        assert t.read() == "héllo"
    with hardtemp.compat.SpooledTemporaryFile(max_size=10) as s:
        s.write(MARK * 10)  # rolls over: encrypted on disk
        assert _switching(s).encrypted
        assert MARK not in _backing_bytes(s)
        s.fileno()
        assert not _switching(s).encrypted
        s.seek(0)
        assert s.read() == MARK * 10


def test_native_until_fileno_and_bad_values() -> None:
    with hardtemp.TemporaryFile(encrypt="until-fileno") as f:
        f.write(b"x" * 100_000)
        f.seek(0, io.SEEK_END)
        f.truncate(1 << 30)  # a sparse GiB: the switch keeps it sparse
        f.fileno()
        assert os.fstat(f.fileno()).st_size == 1 << 30
        assert os.fstat(f.fileno()).st_blocks * 512 < 10 * 1024 * 1024
        f.seek(99_998)
        assert f.read(4) == b"xx\0\0"
    with pytest.raises(ValueError, match="until-fileno"):
        hardtemp.TemporaryFile(encrypt="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["wb", "ab", "xb", "rb", "a+b", "w+"])
def test_modes_are_kept_across_the_switch(mode: str) -> None:
    with hardtemp.compat.TemporaryFile(mode, encoding=None if "b" in mode else "utf-8") as f:
        readable, writable = f.readable(), f.writable()
        with tempfile.TemporaryFile(mode, encoding=None if "b" in mode else "utf-8") as std:
            assert (readable, writable) == (std.readable(), std.writable())
        if not readable:
            with pytest.raises(io.UnsupportedOperation):
                f.read()
        if writable:
            f.write(b"data" if "b" in mode else "data")
        f.fileno()
        assert (f.readable(), f.writable()) == (readable, writable)
        if not readable:
            with pytest.raises(io.UnsupportedOperation):
                f.read()


def test_a_failed_switch_leaves_the_file_encrypted_and_intact(
    small_tmpfs: Callable[[int], Path],
) -> None:
    mnt = small_tmpfs(1024)
    before = open_fds()
    with hardtemp.compat.TemporaryFile(dir=str(mnt)) as f:
        data = os.urandom(700 * 1024)  # the plain copy would need another 700 KiB
        f.write(data)
        f.flush()
        with pytest.raises(OSError) as info:
            f.fileno()
        assert info.value.errno == errno.ENOSPC
        assert _switching(f).encrypted
        f.seek(0)
        assert f.read() == data
        assert os.statvfs(mnt).f_bfree * os.statvfs(mnt).f_frsize > 200 * 1024  # copy freed
    _dirtrust.clear_cache()  # the verified directory's descriptor is cached, not leaked
    assert open_fds() <= before


def test_a_forked_child_switching_does_not_touch_the_parents_file() -> None:
    with hardtemp.compat.TemporaryFile() as f:
        f.write(b"parent data")
        f.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                f.fileno()
                f.seek(0)
                f.write(b"CHILD")
                f.flush()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        assert _switching(f).encrypted
        f.seek(0)
        assert f.read() == b"parent data"
        assert isinstance(raw_of_switch(f), EncryptedRawIO)


def raw_of_switch(f: Any) -> Any:
    return _switching(f)._f


def test_switching_raw_delegates_and_closes() -> None:
    f = hardtemp.TemporaryFile(encrypt="until-fileno", buffering=0)
    assert isinstance(f, SwitchingRawIO)
    assert f.seekable()
    assert not f.isatty()
    assert f.write(b"abc") == 3
    f.seek(0)
    assert f.read(None) == b"abc"
    f.seek(0)
    assert f.readall() == b"abc"
    buf = bytearray(2)
    f.seek(1)
    assert f.readinto(buf) == 2
    assert f.truncate(2) == 2
    assert f.tell() == 3
    f.flush()
    with pytest.raises(TypeError):
        pickle.dumps(f)
    f.close()
    f.close()
    assert f.closed
    with pytest.raises(ValueError, match="closed"):
        f.fileno()
    assert isinstance(raw_of(hardtemp.TemporaryFile()), EncryptedRawIO)
