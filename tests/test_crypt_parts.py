"""The parts of hardtemp._crypt: block map arithmetic, protected memory, sealer, ownership.

* the block map is pure: hypothesis drives it through random commits,
  grows, shrinks and snapshot/restore pairs and checks its invariants;
* protected memory: /proc/self/smaps shows the mapping do-not-dump and
  wipe-on-fork, a real forked child sees zeros there;
* ownership of the descriptor: ENOMEM injected at the mapping (the one
  place a mock is fair: it cannot be caused reliably) must not close an
  unrelated file that reused the descriptor number.
"""

from __future__ import annotations

import array
import contextlib
import errno
import gc
import os
import pickle
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hardtemp
from _gates import IS_ROOT, require_unshare
from _helpers_core import SRC
from _helpers_crypt import backing_fd, raw_of
from _helpers_euid import as_euid
from hardtemp._crypt import EncryptedRawIO, _secpool, open_encrypted
from hardtemp._crypt._blockmap import BlockMap
from hardtemp._crypt._sealer import SEED_SIZE, TAG_SIZE, BlockSealer, TagFailure
from hardtemp._crypt._secmem import ProtectedMemory

# --- the block map ----------------------------------------------------------------------------

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("commit"), st.integers(0, 40), st.integers(1, 6), st.integers(0, 50)),
        st.tuples(st.just("grow"), st.integers(0, 45 * 64)),
        st.tuples(st.just("append"), st.integers(1, 64)),
        st.tuples(st.just("shrink"), st.integers(0, 45 * 64)),
        st.tuples(st.just("rollback"), st.integers(0, 40), st.integers(1, 6), st.integers(0, 50)),
    ),
    max_size=40,
)


def _reseal_last(m: BlockMap, first: int, ctr: int) -> None:
    """The raw file re-seals a partial last block before writing past it (its own transaction)."""
    if m.size % m.bs and m.ctr(m.size // m.bs) and m.size // m.bs < first:
        m.commit_run(m.size // m.bs, ctr, 1, (m.size // m.bs + 1) * m.bs)


def _commit(m: BlockMap, first: int, count: int, extra: int, ctr: int) -> None:
    """What the raw file does for a write of blocks first..first+count-1."""
    last = first + count - 1
    new_size = max(m.size, last * m.bs + 1 + min(extra, m.bs - 1))
    _reseal_last(m, first, ctr + 100_000)
    m.commit_run(first, ctr, count, new_size)


@settings(max_examples=300, deadline=None)
@given(_ops)
def test_block_map_invariants_hold_through_any_sequence(ops: list[tuple[Any, ...]]) -> None:
    m = BlockMap(64)
    ctr = 1
    for op in ops:
        if op[0] == "commit":
            _commit(m, op[1], op[2], op[3], ctr)
            ctr += op[2]
        elif op[0] == "grow":
            if op[1] > m.size and not (m.size % m.bs and m.ctr(m.size // m.bs)):
                m.grow(op[1])
        elif op[0] == "append":
            if m.size == len(m.ctrs) * m.bs:  # the raw file's fast path, when it applies
                m.append(ctr, op[1])
                ctr += 1
        elif op[0] == "shrink":
            if op[1] < m.size:
                m.shrink(op[1], ctr)
                ctr += 1
        else:
            _, first, count, extra = op
            _reseal_last(m, first, ctr + 200_000)
            before = (m.size, m.disk_end, array.array("Q", m.ctrs))
            snap = m.snapshot(first, first + count - 1)
            _commit(m, first, count, extra, ctr)
            ctr += count
            m.restore(snap)
            m.restore(snap)  # idempotent
            assert (m.size, m.disk_end, m.ctrs) == before
        m.check()
        assert len(m.ctrs) * m.ctrs.itemsize <= 8 * -(-m.size // m.bs)


@given(st.integers(0, 30), st.integers(0, 30))
def test_stored_segments_cover_exactly_the_stored_blocks(first: int, span: int) -> None:
    m = BlockMap(64)
    m.commit_run(2, 1, 3, 5 * 64)  # blocks 2..4
    m.commit_run(8, 4, 2, 10 * 64 - 7)  # blocks 8..9, the last one short
    segs = m.stored_segments(first, first + span)
    covered = {k for off, n in segs for k in range(off // m.slot, (off + n - 1) // m.slot + 1)}
    assert covered == {k for k in (2, 3, 4, 8, 9) if first <= k <= first + span}
    for off, n in segs:
        assert off + n <= m.disk_end


def test_block_map_check_reports_each_broken_invariant() -> None:
    m = BlockMap(64)
    m.commit_run(0, 1, 2, 100)
    m.check()
    m.ctrs.append(0)
    with pytest.raises(AssertionError, match="trailing"):
        m.check()
    m.ctrs.pop()
    m.disk_end += 1
    with pytest.raises(AssertionError, match="disk_end"):
        m.check()
    m.disk_end -= 1
    m.size = 10
    with pytest.raises(AssertionError, match="past the end"):
        m.check()


# --- the sealer -------------------------------------------------------------------------------


def test_sealer_counters_only_increase_and_refuse_to_wrap() -> None:
    key = memoryview(bytearray(32))
    s = BlockSealer(key)
    assert key == bytes(32)  # the key bytes were zeroed once AESGCM had its copy
    assert s.take(3) == 1
    assert s.take(1) == 4
    s._next = 2**64 - 1
    assert s.take(1) == 2**64 - 1
    with pytest.raises(OSError) as info:
        s.take(1)
    assert info.value.errno == errno.EOVERFLOW


def test_each_key_is_fresh_os_randomness_written_straight_into_protected_memory() -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    bodies = []
    for _ in range(2):
        slot = _secpool.Slot(64)
        s = BlockSealer(slot.view[:32], slot.address)  # getrandom(2) at that address
        assert slot.view[:32] == bytes(32)  # zeroed there once AESGCM had its copy
        ct = memoryview(bytearray(16 + TAG_SIZE))
        s.seal(0, 1, memoryview(bytes(16)), ct)
        bodies.append(bytes(ct[:16]))  # the keystream: depends on the key and nonce only
        slot.close()
    assert bodies[0] != bodies[1]
    nothing_filled = AESGCM(bytes(32)).encrypt(bytes(11) + b"\x01", bytes(16), b"")[:16]
    assert nothing_filled not in bodies


def test_a_key_and_its_file_id_come_from_one_random_fill_and_leave_only_zeros() -> None:
    ids = []
    for _ in range(2):
        slot = _secpool.Slot(64)
        s = BlockSealer(slot.view[:SEED_SIZE], slot.address)  # key and id: one getrandom
        assert slot.view[:SEED_SIZE] == bytes(SEED_SIZE)  # key and id zeroed in the slot
        ids.append(s._file_id)
        slot.close()
    assert len(ids[0]) == 16
    assert bytes(16) not in ids
    assert ids[0] != ids[1]


def test_widening_the_counters_is_refused_once_a_counter_was_taken() -> None:
    s = BlockSealer(memoryview(bytearray(32)))
    s.narrow()
    s.widen()  # nothing taken yet: the file's first write chose 8-byte counters
    assert s.limit == 2**64 - 1
    s.narrow()
    s.take(1)
    with pytest.raises(ValueError, match="fixed once a counter was taken"):
        s.widen()  # a 4-byte map may hold that counter: never more than 4 bytes now
    assert s.limit == 2**32 - 1


def test_sealer_binds_block_index_and_counter() -> None:
    s = BlockSealer(memoryview(bytearray(32)))
    src = memoryview(b"x" * 64)
    ct = memoryview(bytearray(64 + TAG_SIZE))
    s.seal(5, 7, src, ct)
    out = memoryview(bytearray(b"\xaa" * 64))
    s.open(5, 7, ct, out)
    assert out == src
    for index, ctr in ((6, 7), (5, 8)):
        with pytest.raises(TagFailure):
            s.open(index, ctr, ct, out)
        assert out == bytes(64)  # no unauthenticated plaintext left behind
    s.close()
    with pytest.raises(ValueError, match="closed"):
        s.open(5, 7, ct, out)


# --- protected memory -------------------------------------------------------------------------


def _vmflags(address: int) -> set[str]:
    """VmFlags of the mapping of this process that contains ``address``."""
    current: list[int] | None = None
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            lo, hi = (int(x, 16) for x in head.split("-"))
            current = [lo, hi]
        elif head == "VmFlags:" and current and current[0] <= address < current[1]:
            return set(line.split()[1:])
    raise AssertionError(f"no mapping contains {address:#x}")


def test_scratch_and_key_memory_is_marked_do_not_dump_and_wipe_on_fork() -> None:
    with open_encrypted(backing_fd(), "w+b", buffering=0) as raw:
        raw.write(b"scratch")
        raw.seek(1)
        raw.read(2)  # part of block 0: its plaintext goes through the scratch
        seed = _secpool.seed_area(SEED_SIZE)  # where every key of this process is drawn
        assert seed.seeds[seed.next - 1] == bytes(SEED_SIZE)  # zeroed there once AESGCM had it
        for mem in (raw._mem, seed.mem):
            assert mem is not None
            flags = _vmflags(mem.address)
            assert "dd" in flags  # MADV_DONTDUMP: not in core dumps
            assert "wf" in flags  # MADV_WIPEONFORK: zeros in a child
            if mem.locked:
                assert "lo" in flags  # mlock: never swapped out
            assert mem.dontdump
            assert mem.wipeonfork


def test_a_forked_child_sees_zeros_where_the_parent_keeps_plaintext() -> None:
    with open_encrypted(backing_fd(), "w+b", buffering=0) as raw:
        raw.write(b"S" * 10_000)
        raw.seek(5)
        raw.read(3)  # block 0's plaintext now sits in the scratch block
        mem = raw._mem
        assert mem is not None
        assert bytes(mem.view[:16]) == b"S" * 16
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                os.write(w, pickle.dumps((bytes(mem.view), mem.forked)))
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as inp:
            seen, forked = pickle.loads(inp.read())  # noqa: S301 - our own child
        os.waitpid(pid, 0)
        assert seen == bytes(len(seen))  # scratch, key area and cached counter: all zero
        assert forked is True
        assert bytes(mem.view[:16]) == b"S" * 16  # the parent's copy is untouched
        assert mem.forked is False


def test_protected_memory_is_zeroed_on_close() -> None:
    mem = ProtectedMemory(100)
    mem.view[:] = b"k" * 100
    view = memoryview(mem._map)  # type: ignore[arg-type]  # a view kept alive elsewhere
    mem.close()
    assert view == bytes(len(view))
    view.release()
    mem.close()  # idempotent


def test_mlock_failure_past_the_limit_is_quiet() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, hard))
    try:
        # As root, CAP_IPC_LOCK ignores the limit: act as another user (effective uid).
        with as_euid() if IS_ROOT else contextlib.nullcontext():
            mem = ProtectedMemory(4096)
        assert not mem.locked
        assert mem.dontdump  # the other protections do not depend on the lock
        mem.view[:5] = b"works"
        mem.close()
    finally:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (soft, hard))


# --- descriptor ownership ---------------------------------------------------------------------


def _enomem(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOMEM, "Cannot allocate memory")


def _no_memory_for_new_mappings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every new protected mapping fails with ENOMEM, and neither the slot pool (a
    fresh, empty pool) nor the seed area (none yet) has memory, so the next encrypted
    file needs a new mapping."""
    monkeypatch.setattr(ProtectedMemory, "__init__", _enomem)
    monkeypatch.setattr(_secpool._Arena, "__init__", _enomem)
    monkeypatch.setattr(_secpool, "_pool", _secpool._Pool())
    monkeypatch.setattr(_secpool, "_seed", None)  # and no seed area to draw keys in yet


def test_enomem_at_the_mapping_never_closes_an_unrelated_descriptor(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Mock: ENOMEM from mmap cannot be caused reliably (overcommit); the error path can.
    _no_memory_for_new_mappings(monkeypatch)
    with pytest.raises(OSError) as info:
        hardtemp.TemporaryFile()
    assert info.value.errno == errno.ENOMEM
    unrelated = tmp_path / "unrelated"
    unrelated.write_bytes(b"innocent")
    fd = os.open(unrelated, os.O_RDONLY)  # very likely the number the backing file had
    try:
        del info
        gc.collect()  # the half-built file object (kept alive by the traceback) is finalized
        assert os.pread(fd, 8, 0) == b"innocent"
    finally:
        os.close(fd)


def test_a_failed_constructor_leaves_the_descriptor_to_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _no_memory_for_new_mappings(monkeypatch)
    fd = backing_fd()
    try:
        with pytest.raises(OSError):
            EncryptedRawIO(fd)
        gc.collect()
        os.fstat(fd)  # still open: it is the caller's to close
    finally:
        os.close(fd)


def test_a_failed_constructor_is_finalized_without_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Its finalizer closes it: a close that raised there went to sys.unraisablehook (which
    # CPython 3.12 calls only in development mode; the close itself is called here too).
    seen: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    fd = backing_fd()
    try:
        for bad in ({"block_size": 0}, {"mode": "zb"}, {"block_size": 2**30}):
            raw = EncryptedRawIO.__new__(EncryptedRawIO)
            with pytest.raises(ValueError):
                raw.__init__(fd, **bad)  # type: ignore[misc]
            raw.close()  # what its finalizer does
            assert raw.closed
            del raw
            gc.collect()
        os.fstat(fd)  # still the caller's
    finally:
        os.close(fd)
    assert seen == []


def test_raw_of_helper_finds_the_encrypted_layer() -> None:
    with open_encrypted(backing_fd(), "w+", encoding="utf-8") as t:
        assert isinstance(raw_of(t), EncryptedRawIO)


def _locked_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmLck:"):
            return int(line.split()[1])
    raise AssertionError("no VmLck in /proc/self/status")


def test_closed_protected_memory_is_no_longer_locked() -> None:
    # The unmap is what unlocks (no munlock call): nothing stays counted against
    # RLIMIT_MEMLOCK once the memory is closed, or once a view kept past close goes.
    before = _locked_kib()
    mems = [ProtectedMemory(8192) for _ in range(16)]
    if not all(m.locked for m in mems):
        for m in mems:
            m.close()
        pytest.skip("mlock refused here (RLIMIT_MEMLOCK): nothing to unlock")
    assert _locked_kib() >= before + 16 * 12
    kept = memoryview(mems[0]._map)  # type: ignore[arg-type]  # a view kept past close
    for m in mems:
        m.close()
    assert _locked_kib() == before + 12  # only the mapping still viewed stays locked
    kept.release()
    del kept, mems
    gc.collect()
    assert _locked_kib() == before


_NO_URANDOM_CHILD = """
import os
from hardtemp._crypt._sealer import _fill_random
assert not os.path.exists("/dev/urandom")
a, b = memoryview(bytearray(32)), memoryview(bytearray(32))
_fill_random(a)  # no address: the path that reads /dev/urandom, which is missing here
_fill_random(b)
assert bytes(a) != bytes(32) and bytes(b) != bytes(32) and a != b
print("ok")
"""


def test_a_key_is_still_random_where_dev_urandom_is_missing() -> None:
    # A container without /dev/urandom, for real: an empty tmpfs over /dev in a private
    # mount namespace (nothing is mounted outside it, and it vanishes with the process).
    require_unshare()
    script = (
        "mount --make-rprivate / && mount -t tmpfs -o size=64k hardtemp-nodev /dev && exec "
        f"{shlex.quote(sys.executable)} -c {shlex.quote(_NO_URANDOM_CHILD)}"
    )
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script],
        env=dict(os.environ, PYTHONPATH=SRC),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok"]
