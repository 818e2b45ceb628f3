"""MemoryFile: no name anywhere, a real size limit, seals a child cannot break, zeroed on close."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import mmap
import os
import pickle
import subprocess
import sys
import textwrap

import pytest

import hardtemp
from _gates import require_tool
from _helpers_core import SRC, open_fds, run_python
from hardtemp import MemoryFile, SizeLimitError

F_SEAL_EXEC = 0x0020
ALL_SEALS = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL


def kernel_at_least(major: int, minor: int) -> bool:
    release = os.uname().release.split("-")[0].split(".")
    return (int(release[0]), int(release[1])) >= (major, minor)


# --- no name in any filesystem --------------------------------------------------------------


def fd_targets() -> dict[int, str]:
    """What every open descriptor refers to, as the kernel names it."""
    targets = {}
    for fd in open_fds():
        with contextlib.suppress(FileNotFoundError):  # the descriptor listdir itself used
            targets[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return targets


def test_the_only_trace_under_proc_fd_is_an_anonymous_memfd() -> None:
    MemoryFile().close()  # the filesystem probe of the first close keeps a mount watcher open
    before = fd_targets()
    with MemoryFile() as f:
        f.write(b"secret")
        after = fd_targets()
        new = {fd: t for fd, t in after.items() if before.get(fd) != t}
        assert new == {f.fileno(): "/memfd:hardtemp (deleted)"}
        st = os.fstat(f.fileno())
        assert st.st_nlink == 0
    assert fd_targets() == before


def test_descriptor_is_0600_not_executable_and_close_on_exec() -> None:
    with MemoryFile() as f:
        st = os.fstat(f.fileno())
        assert st.st_mode & 0o7777 == 0o600
        assert not os.get_inheritable(f.fileno())
        if kernel_at_least(6, 3):
            assert f.seals & F_SEAL_EXEC  # MFD_NOEXEC_SEAL: exec bits can never come back
            with pytest.raises(PermissionError):
                os.fchmod(f.fileno(), 0o700)


def test_an_exec_ed_program_does_not_inherit_the_descriptor() -> None:
    with MemoryFile() as f:
        f.write(b"secret")
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                "import os, glob; print(os.popen('ls -l /proc/%d/fd' % os.getpid()).read())",
            ],
            close_fds=False,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    assert "memfd:" not in out


# --- behaves like a file ------------------------------------------------------------------------


def test_read_write_seek_truncate_round_trip() -> None:
    with MemoryFile() as f:
        assert isinstance(f, io.RawIOBase)
        assert f.readable()
        assert f.writable()
        assert f.seekable()
        assert f.write(b"hello world") == 11
        f.seek(6)
        assert f.read() == b"world"
        f.seek(20)
        f.write(b"!")
        f.seek(0)
        assert f.read() == b"hello world" + bytes(9) + b"!"
        assert f.truncate(5) == 5
        f.seek(0)
        assert f.read() == b"hello"
        assert repr(f).startswith("<hardtemp.MemoryFile fd=")
    assert f.closed
    assert "closed" in repr(f)
    f.close()  # a second close does nothing


def test_text_and_buffered_layers_work_on_top() -> None:
    f = MemoryFile()
    with io.TextIOWrapper(io.BufferedRandom(f), encoding="utf-8") as t:
        t.write("zeile 1\nzeile 2\n")
        t.seek(0)
        assert t.readlines() == ["zeile 1\n", "zeile 2\n"]
    assert f.closed


def test_closed_file_refuses_io_and_sealing() -> None:
    f = MemoryFile()
    f.close()
    with pytest.raises(ValueError, match="closed"):
        f.write(b"x")
    with pytest.raises(ValueError, match="closed"):
        f.seal()
    with pytest.raises(ValueError, match="closed"):
        _ = f.seals


def test_cannot_be_pickled() -> None:
    with MemoryFile() as f, pytest.raises(TypeError, match="pickle"):
        pickle.dumps(f)


# --- size limit -------------------------------------------------------------------------------


def test_default_limit_is_64_mib() -> None:
    with MemoryFile() as f:
        assert f.max_size == 64 * 1024 * 1024


def test_writes_up_to_the_limit_succeed_and_past_it_raise_without_writing() -> None:
    with MemoryFile(max_size=10) as f:
        assert f.write(b"0123456789") == 10
        with pytest.raises(SizeLimitError) as info:
            f.write(b"x")
        assert info.value.errno == errno.EFBIG
        assert isinstance(info.value, OSError)
        assert "max_size 10" in info.value.reason
        assert os.fstat(f.fileno()).st_size == 10
        f.seek(5)
        with pytest.raises(SizeLimitError):
            f.write(b"abcdef")  # would end at 11
        f.seek(0)
        assert f.read() == b"0123456789"  # nothing of the refused write landed
        f.seek(0)
        f.write(b"ABCDEFGHIJ")  # overwriting inside the limit is fine
        f.seek(0)
        assert f.read() == b"ABCDEFGHIJ"
        assert f.write(b"") == 0  # an empty write at the limit is no growth


def test_seeking_past_the_limit_then_writing_raises() -> None:
    with MemoryFile(max_size=100) as f:
        f.seek(1000)
        with pytest.raises(SizeLimitError):
            f.write(b"x")
        assert os.fstat(f.fileno()).st_size == 0


def test_truncate_past_the_limit_raises_and_changes_nothing() -> None:
    with MemoryFile(max_size=100) as f:
        f.write(b"abc")
        with pytest.raises(SizeLimitError):
            f.truncate(101)
        f.seek(200)
        with pytest.raises(SizeLimitError):
            f.truncate()  # the current position, 200
        assert os.fstat(f.fileno()).st_size == 3
        assert f.truncate(100) == 100


def test_limit_holds_through_a_buffered_layer() -> None:
    raw = MemoryFile(max_size=4096)
    b = io.BufferedRandom(raw)
    b.write(b"x" * 4000)
    b.write(b"y" * 200)  # still in the buffer
    with pytest.raises(SizeLimitError):
        b.flush()
    assert os.fstat(raw.fileno()).st_size == 0
    raw.close()
    b.close()  # the refused bytes die with the buffer


def test_no_limit_with_none() -> None:
    with MemoryFile(max_size=None) as f:
        assert f.max_size is None
        f.seek(128 * 1024 * 1024)
        f.write(b"x")  # sparse: no memory used for the gap


@pytest.mark.parametrize(("bad", "exc"), [(-1, ValueError), (1.5, TypeError), (True, TypeError)])
def test_invalid_max_size_is_refused_before_anything_is_created(bad: object, exc: type) -> None:
    before = open_fds()
    with pytest.raises(exc, match="max_size"):
        MemoryFile(max_size=bad)  # type: ignore[arg-type]
    assert open_fds() == before


# --- seals: a child handed the descriptor can only read -----------------------------------------

CHILD = textwrap.dedent(
    """
    import errno, fcntl, mmap, os, sys
    fd = int(sys.argv[1])
    results = {"read": os.pread(fd, 100, 0).decode()}
    def attempt(name, fn):
        try:
            fn()
            results[name] = "ok"
        except OSError as exc:
            results[name] = errno.errorcode[exc.errno]
    attempt("write", lambda: os.pwrite(fd, b"EVIL", 0))
    attempt("append", lambda: os.pwrite(fd, b"EVIL", 1000))
    attempt("shrink", lambda: os.ftruncate(fd, 0))
    attempt("grow", lambda: os.ftruncate(fd, 1 << 20))
    attempt("mmap_write", lambda: mmap.mmap(fd, 4, mmap.MAP_SHARED, mmap.PROT_WRITE))
    def reopen_write():
        g = os.open(f"/proc/self/fd/{fd}", os.O_RDWR)
        try:
            os.write(g, b"EVIL")
        finally:
            os.close(g)
    attempt("reopen_write", reopen_write)
    attempt("unseal", lambda: fcntl.fcntl(fd, fcntl.F_ADD_SEALS, 0))
    attempt("fallocate", lambda: os.posix_fallocate(fd, 0, 1 << 20))
    results["after"] = os.pread(fd, 100, 0).decode()
    print(repr(results))
    """
)


def run_child_with(f: MemoryFile) -> dict[str, str]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(f.fileno())],
        pass_fds=[f.fileno()],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result: dict[str, str] = eval(proc.stdout)  # noqa: S307 - our own child's repr of a dict
    return result


def test_a_child_given_a_sealed_descriptor_cannot_write_grow_or_shrink_it() -> None:
    with MemoryFile() as f:
        f.write(b"read-only payload")
        f.seal()
        assert f.sealed
        assert f.seals & ALL_SEALS == ALL_SEALS
        r = run_child_with(f)
    assert r["read"] == "read-only payload"
    for attack in ("write", "append", "shrink", "grow", "mmap_write", "reopen_write", "unseal"):
        assert r[attack] == "EPERM", (attack, r)
    assert r["fallocate"] == "EPERM", r
    assert r["after"] == "read-only payload"


def test_control_an_unsealed_descriptor_is_writable_by_the_child() -> None:
    # Shows the test above can fail: without the seal every attack succeeds.
    with MemoryFile() as f:
        f.write(b"read-only payload")
        assert not f.sealed
        r = run_child_with(f)
    assert r["write"] == "ok"
    assert r["shrink"] == "ok"


def test_sealed_file_refuses_our_own_writes_too() -> None:
    with MemoryFile() as f:
        f.write(b"abc")
        f.seal()
        with pytest.raises(PermissionError):
            f.write(b"x")
        with pytest.raises(PermissionError):
            f.truncate(0)
        f.seek(0)
        assert f.read() == b"abc"
        f.seal()  # sealing again is a no-op, not an error
        assert f.sealed


def test_sealing_with_a_writable_shared_mapping_is_refused_clearly() -> None:
    with MemoryFile() as f:
        f.write(b"x" * 4096)
        m = mmap.mmap(f.fileno(), 4096, mmap.MAP_SHARED, mmap.PROT_WRITE | mmap.PROT_READ)
        try:
            with pytest.raises(OSError, match="writable shared mmap") as info:
                f.seal()
            assert info.value.errno == errno.EBUSY
            assert not f.sealed
        finally:
            m.close()
        f.seal()
        assert f.sealed


def test_a_sealed_file_stays_intact_for_the_child_after_we_close() -> None:
    f = MemoryFile()
    f.write(b"handed over")
    f.seal()
    held = os.dup(f.fileno())  # what a child holding the descriptor has
    f.close()
    try:
        assert os.pread(held, 100, 0) == b"handed over"
    finally:
        os.close(held)


# --- zeroed and released on close ----------------------------------------------------------------


def test_close_empties_the_file_and_frees_its_pages_even_for_other_holders() -> None:
    f = MemoryFile(max_size=None)
    chunk = b"S" * (1 << 20)
    for _ in range(16):
        f.write(chunk)
    # A second, independent open file description of the same memfd: sees what others see.
    other = os.open(f"/proc/self/fd/{f.fileno()}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        before = os.fstat(other)
        assert before.st_size == 16 << 20
        assert before.st_blocks * 512 >= 16 << 20  # 16 MiB of pages held
        f.close()
        after = os.fstat(other)
        assert after.st_size == 0
        assert after.st_blocks == 0  # every page released, though a descriptor is still open
        assert os.pread(other, 100, 0) == b""
    finally:
        os.close(other)


def test_close_writes_zeros_over_the_data_before_truncating() -> None:
    # Seen by a real tracer: the zeros land on every page before ftruncate(fd, 0).
    require_tool("strace", "strace")
    code = textwrap.dedent(
        """
        import os, sys, hardtemp
        f = hardtemp.MemoryFile()
        f.write(b"Q" * 12288)
        print(f.fileno(), flush=True)
        os.write(2, b"CLOSING\\n")
        f.close()
        os.write(2, b"CLOSED\\n")
        """
    )

    env = dict(os.environ, PYTHONPATH=SRC)
    proc = subprocess.run(
        ["strace", "-qq", "-e", "trace=write,pwrite64,ftruncate,close", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    fd = proc.stdout.strip()
    trace = proc.stderr.split("CLOSING", 1)[1].split("CLOSED", 1)[0]
    calls = [line for line in trace.splitlines() if f"({fd}," in line or f"({fd})" in line]
    zero_writes = [c for c in calls if c.startswith(("write", "pwrite64")) and '"\\0\\0\\0' in c]
    written = sum(int(c.rsplit("=", 1)[1]) for c in zero_writes)
    trunc = next(i for i, c in enumerate(calls) if c.startswith("ftruncate"))
    assert written >= 12288, trace
    assert all(calls.index(c) < trunc for c in zero_writes), trace
    assert calls[-1].startswith("close"), trace


def test_a_forked_child_closing_its_copy_leaves_the_parents_data() -> None:
    with MemoryFile() as f:
        f.write(b"parent data")
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's coverage is not needed
            code = 0
            try:
                f.close()
            except BaseException:
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        f.seek(0)
        assert f.read() == b"parent data"


def test_module_level_export() -> None:
    assert hardtemp.MemoryFile is MemoryFile
    assert run_python("import hardtemp; hardtemp.MemoryFile().close()").returncode == 0


def test_a_kernel_without_mfd_noexec_seal_still_gets_a_sealable_memfd(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Kernels before 6.3 reject MFD_NOEXEC_SEAL with EINVAL. An unknown flag bit makes this
    # kernel really return EINVAL for the first memfd_create (no mock of os).
    from hardtemp import _memfd

    monkeypatch.setattr(_memfd, "_MFD_NOEXEC_SEAL", 0x4000_0000)
    with MemoryFile() as f:
        f.write(b"x")
        f.seal()
        assert f.sealed


def test_out_of_descriptors_raises_the_kernels_error_and_leaves_nothing() -> None:
    # A real EMFILE: every descriptor below a lowered limit is taken.
    code = textwrap.dedent(
        """
        import errno, os, resource, hardtemp
        hardtemp.MemoryFile().close()  # the first close opens a mount watcher: not a leak
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        fill = []
        try:
            while True:
                fill.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        os.close(fill.pop())
        before = len(os.listdir("/proc/self/fd"))  # through the one free slot
        fill.append(os.open("/dev/null", os.O_RDONLY))
        try:
            hardtemp.MemoryFile()
        except OSError as exc:
            print(errno.errorcode[exc.errno])
        os.close(fill.pop())
        print(len(os.listdir("/proc/self/fd")) == before)
        """
    )
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["EMFILE", "True"]
