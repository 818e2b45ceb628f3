"""The pool of protected-memory slots (hardtemp._crypt._secpool), attacked for real.

* reuse: a closed file's plaintext scratch reads as zeros in its slot, and the
  next file handed that very slot sees only zeros;
* the seed area: every key is drawn there and zeroed there at once; held by
  this very thread (a signal handler interrupting its holder) or another, a
  new file takes a pooled slot for its key instead of waiting or sharing;
* fork, by ``os.fork`` and by a raw ``fork()`` that bypasses Python's hooks:
  new files in the child get slots of a pool, and keys from a seed area, made
  (and ``mlock``-ed) in the child, never the parent's (not locked there:
  ``mlock`` is not inherited) -- also after the child closed an inherited
  file; the parent's data stays right; ``locked`` agrees with
  /proc/self/smaps everywhere;
* ``RLIMIT_MEMLOCK`` set low in a child: the whole-arena lock fails, slots
  lock one by one up to the limit, the rest are quietly unlocked and say so;
* a child with the parent's very pid (pid 1 of a new PID namespace, forked by
  pid 1 of another): the wiped canary tells, the pid alone could not;
* growth by whole mappings, given back once their files are closed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from _gates import IS_ROOT, require_unshare
from _helpers_core import SRC
from _helpers_crypt import backing_fd, child_result
from _helpers_euid import as_euid
from _helpers_inject import Injected, raise_at_opcode
from hardtemp._crypt import EncryptedRawIO, _secpool
from hardtemp._crypt._sealer import SEED_SIZE
from hardtemp._crypt._secpool import SLOT_SIZE, Slot

MARKER = b"slot-secret-" * 700  # 8,400 bytes: block 0 whole and part of block 1


def _with_scratch(raw: EncryptedRawIO) -> Slot:
    """The pooled slot of ``raw``'s plaintext scratch, set up (a file written and read
    whole needs none) by a read of part of block 0, which ``raw`` must hold."""
    pos = raw.tell()
    raw.seek(1)
    raw.read(1)
    raw.seek(pos)
    slot = raw._mem
    assert isinstance(slot, Slot)
    return slot


def _vmflags(address: int) -> set[str]:
    """VmFlags of the mapping of this process that contains ``address``."""
    current: list[int] | None = None
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            current = [int(x, 16) for x in head.split("-")]
        elif head == "VmFlags:" and current and current[0] <= address < current[1]:
            return set(line.split()[1:])
    raise AssertionError(f"no mapping contains {address:#x}")


_libc = ctypes.CDLL(None, use_errno=True)
FORKS = {"os.fork": os.fork, "raw fork": _libc.fork}  # the latter runs no Python fork hooks


def test_a_closed_files_slot_is_zeroed_and_the_next_file_sees_only_zeros(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A pool of our own: files other tests left open (or not yet collected) could have filled
    # the process pool's first arena, and a later arena is unmapped once its last file closes.
    monkeypatch.setattr(_secpool, "_pool", _secpool._Pool())
    raw = EncryptedRawIO(backing_fd())
    raw.write(MARKER)
    raw.seek(8192 + 3)
    assert raw.read(5) == MARKER[8195:8200]  # block 1's plaintext now sits in the scratch
    mem = raw._mem
    assert isinstance(mem, Slot)
    arena, index = mem._arena, mem._index
    assert arena is not None
    where = slice(index * SLOT_SIZE, (index + 1) * SLOT_SIZE)
    assert MARKER[8192:8208] in bytes(arena.map[where])
    raw.close()
    assert bytes(arena.map[where]) == bytes(SLOT_SIZE)  # scratch and counter
    second = EncryptedRawIO(backing_fd())
    try:
        assert second.read() == b""
        second._scratch()  # what a file's first merge or partial read sets up
        again = second._mem
        assert isinstance(again, Slot)
        assert again.address == mem.address  # the very slot (the pool reuses the last freed)
        assert again.view == bytes(len(again.view))
    finally:
        second.close()


def _ids(files: list[EncryptedRawIO]) -> list[bytes]:
    ids = []
    for raw in files:
        assert raw._sealer is not None
        ids.append(raw._sealer._file_id)
    return ids


def test_every_key_is_a_seed_of_the_seed_area_taken_once_and_left_there_as_zeros(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_secpool, "_seed", None)  # an area of this test's own
    draws: list[tuple[int | None, bytes]] = []
    fill = _secpool._fill_random

    def spy(view: memoryview, address: int | None = None) -> None:
        fill(view, address)
        draws.append((address, bytes(view)))  # what getrandom(2) wrote there

    # A spy (the real getrandom runs): where the keys were drawn, and what.
    monkeypatch.setattr(_secpool, "_fill_random", spy)
    files = [EncryptedRawIO(backing_fd()) for _ in range(200)]
    try:
        seed = _secpool.seed_area(SEED_SIZE)
        assert seed.count == (os.sysconf("SC_PAGE_SIZE") - 1) // SEED_SIZE  # 85 a page
        assert len(draws) == -(-200 // seed.count)  # one getrandom per page of seeds
        assert {address for address, _ in draws} == {seed.address}
        drawn = [d[i : i + SEED_SIZE] for _, d in draws for i in range(0, len(d), SEED_SIZE)]
        # Each file's id is the tail of the next seed, in order: every seed used once.
        assert _ids(files) == [x[32:] for x in drawn[:200]]
        assert len(set(_ids(files))) == 200
        assert bytes(16) not in _ids(files)
        used = seed.next
        assert all(bytes(x) == bytes(SEED_SIZE) for x in seed.seeds[:used])  # zeroed after use
        assert all(
            bytes(x) == drawn[-seed.count + i] for i, x in enumerate(seed.seeds) if i >= used
        )
        assert all(raw._mem is None for raw in files)  # no slot until a block needs one
    finally:
        for raw in files:
            raw.close()


def test_a_file_made_while_another_thread_holds_the_seed_area_takes_a_slot() -> None:
    seed = _secpool.seed_area(SEED_SIZE)
    release, taken = threading.Event(), threading.Event()

    def hold() -> None:
        with seed.lock:
            taken.set()
            release.wait(30)

    keeper = threading.Thread(target=hold, daemon=True)
    keeper.start()
    assert taken.wait(10)
    made: list[EncryptedRawIO] = []
    try:
        before = seed.next
        maker = threading.Thread(target=lambda: made.append(EncryptedRawIO(backing_fd())))
        maker.daemon = True
        maker.start()
        maker.join(timeout=20)
        assert made, "the new file waited for the seed area"
        assert seed.lock.locked()  # untouched: still the holder's
        assert seed.next == before  # no seed taken from it
    finally:
        release.set()
        keeper.join(10)
    with made[0] as raw, EncryptedRawIO(backing_fd()) as other:
        assert _keystream(raw) != _keystream(other)
        assert len(set(_ids([raw, other]))) == 2
        raw.write(MARKER)
        raw.seek(0)
        assert raw.read() == MARKER


def _keystream(raw: EncryptedRawIO) -> bytes:
    """The first keystream bytes under ``raw``'s key (nonce 0): equal for equal keys."""
    assert raw._sealer is not None
    aead = raw._sealer._aead
    assert aead is not None
    return bytes(aead.encrypt(bytes(12), bytes(16), None))[:16]


def _raw_or_closed() -> EncryptedRawIO:
    """An encrypted file on a new backing descriptor, which is closed if the constructor
    raises (the caller's, as with io.FileIO(fd)): an injected exception leaked one per
    opcode, ~300, and later tests that lower RLIMIT_NOFILE ran out (found by review9)."""
    fd = backing_fd()
    try:
        return EncryptedRawIO(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise


@pytest.mark.parametrize("landing", ["a file made there", "an exception raised there"])
def test_what_lands_at_any_opcode_of_a_key_draw_never_hands_a_seed_out_twice(
    monkeypatch: pytest.MonkeyPatch, landing: str
) -> None:
    # A signal handler (or a finalizer run by gc) runs between any two opcodes: one that
    # makes a file there must neither wait for the area (a deadlock) nor take the seed the
    # interrupted draw is taking (two files, one key); one that raises must leave every
    # later file a seed of its own. Three seeds per draw, so the draws themselves are
    # interrupted too.
    zero_key = _keystream_of(bytes(32))
    n = 1
    while True:
        area = _secpool.Seed(SEED_SIZE, count=3)
        monkeypatch.setattr(_secpool, "_seed", area)
        files: list[EncryptedRawIO] = []

        def nested(files: list[EncryptedRawIO] = files) -> None:
            files.append(_raw_or_closed())

        action = nested if landing == "a file made there" else None
        with raise_at_opcode(n, (_secpool,), action) as traced:
            try:
                for _ in range(7):
                    files.append(_raw_or_closed())
            except Injected:
                pass
        if traced() < n:
            break  # n is past the last opcode of the whole sequence
        assert not area.lock.locked()  # released however the draw ended
        files += [EncryptedRawIO(backing_fd()) for _ in range(4)]
        keys = [_keystream(raw) for raw in files]
        assert zero_key not in keys
        assert len(set(keys)) == len(files), f"two files share a key (opcode {n})"
        assert len(set(_ids(files))) == len(files), f"two files share a seed (opcode {n})"
        for raw in files:
            raw.close()
        n += 1
    assert n > 30  # every opcode of seed_area, Seed.take and current was a landing place


def _keystream_of(key: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return bytes(AESGCM(key).encrypt(bytes(12), bytes(16), None))[:16]


@pytest.mark.parametrize("how", FORKS)
def test_new_files_in_a_forked_child_get_slots_locked_in_the_child(how: str) -> None:
    parent_file = EncryptedRawIO(backing_fd())
    parent_file.write(MARKER)
    mem = _with_scratch(parent_file)
    arenas = [(a.address, a.address + len(a.map)) for a in _secpool._pool.arenas]
    parent_seed = _secpool.seed_area(SEED_SIZE)
    arenas.append((parent_seed.address, parent_seed.address + parent_seed.count * SEED_SIZE))
    # The ids of the seeds the parent has not handed out yet: its next files'.
    parent_next = {bytes(x[32:]) for x in parent_seed.seeds[parent_seed.next :]}

    def child() -> object:
        seen: list[object] = []
        ids: list[bytes] = []
        first = EncryptedRawIO(backing_fd())
        parent_file.close()  # its slot must not reach the child's pool
        for raw in (first, EncryptedRawIO(backing_fd())):
            raw.write(b"child data")
            slot = _with_scratch(raw)
            raw.seek(0)
            assert raw.read() == b"child data"
            inherited = any(lo <= slot.address < hi for lo, hi in arenas)
            seen.append((inherited, slot.locked, "lo" in _vmflags(slot.address), slot.forked))
            assert raw._sealer is not None
            ids.append(raw._sealer._file_id)
            raw.close()
        seed = _secpool.seed_area(SEED_SIZE)  # where the child's two keys were drawn
        inherited = any(lo <= seed.address < hi for lo, hi in arenas)
        seen.append((inherited, seed.mem.locked, "lo" in _vmflags(seed.address), seed.mem.forked))
        return [*seen, ids]

    try:
        seen = child_result(child, FORKS[how])
        assert isinstance(seen, list), seen
        assert len(seen) == 4  # two files' slots, the seed area, the two files' ids
        ids = seen.pop()
        assert len(set(ids)) == 2
        assert not set(ids) & parent_next  # never a seed the parent will hand out
        assert bytes(16) not in ids  # nor a wiped one
        for inherited, locked, lo, forked in seen:
            assert not inherited  # never the parent's slots or seed area (unlocked in the child)
            assert locked == lo  # `locked` is the truth about this process
            assert not forked
            if IS_ROOT:
                assert locked  # CAP_IPC_LOCK: the child's own pool is locked
        parent_file.seek(0)
        assert parent_file.read() == MARKER  # the child's close changed nothing here
        assert mem.locked == ("lo" in _vmflags(mem.address))
    finally:
        parent_file.close()


def test_an_inherited_slot_reads_zeros_and_reports_itself_unlocked_in_the_child() -> None:
    raw = EncryptedRawIO(backing_fd())
    try:
        raw.write(MARKER[:100])
        slot = _with_scratch(raw)
        assert MARKER[:16] in bytes(slot.view)  # block 0's plaintext, in the parent
        got = child_result(lambda: (slot.locked, slot.forked, bytes(slot.view)))
        assert got == (False, True, bytes(len(slot.view)))
    finally:
        raw.close()


_SAME_PID_CHILD = r"""
import ctypes, os, sys
from hardtemp._crypt import EncryptedRawIO, _secpool

def new_file():
    raw = EncryptedRawIO(os.open(sys.argv[1], os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600))
    raw.write(b"data")
    raw.seek(1)
    raw.read(1)  # part of a block: its plaintext scratch is set up
    return raw

assert os.getpid() == 1, os.getpid()
parent = new_file()
arenas = [(a.address, a.address + len(a.map)) for a in _secpool._pool.arenas]
seed = _secpool.seed_area(48).address
if ctypes.CDLL(None, use_errno=True).unshare(0x20000000) != 0:  # CLONE_NEWPID
    raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWPID)")
r, w = os.pipe()
pid = os.fork()  # pid 1 of the new namespace: the same pid as this process
if pid == 0:
    try:
        assert os.getpid() == 1
        at = new_file()._mem.address
        mine = _secpool.seed_area(48).address != seed  # where that file's key was drawn
        own = mine and not any(lo <= at < hi for lo, hi in arenas)
        os.write(w, b"own" if own else b"inherited")
    finally:
        os._exit(0)
os.close(w)
print(os.read(r, 100).decode())
os.waitpid(pid, 0)
"""


def test_a_child_with_the_parents_very_pid_still_gets_its_own_slots() -> None:
    require_unshare()
    env = dict(os.environ, PYTHONPATH=SRC)
    cmd = ["unshare", "--pid", "--fork", sys.executable, "-c", _SAME_PID_CHILD, "/dev/shm"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "own"), done.stderr


def test_rlimit_memlock_exhaustion_locks_slot_by_slot_then_quietly_not() -> None:
    def child() -> object:
        hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]
        # After fork nothing is locked in the child: room for exactly two slots.
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (2 * SLOT_SIZE, hard))
        # As root, CAP_IPC_LOCK ignores the limit: act as another user (effective uid).
        with as_euid() if IS_ROOT else contextlib.nullcontext():
            slots = [Slot(100) for _ in range(3)]  # a fresh pool: the arena lock fails
            files = [EncryptedRawIO(backing_fd("/dev/shm")) for _ in range(2)]
        report = [(s.locked, "lo" in _vmflags(s.address), s.dontdump) for s in slots]
        seed = _secpool.seed_area(SEED_SIZE).mem  # the child's own, made past the limit
        report.append((seed.locked, "lo" in _vmflags(seed.address), seed.dontdump))
        for raw in files:
            raw.write(MARKER)
            with as_euid() if IS_ROOT else contextlib.nullcontext():
                slot = _with_scratch(raw)  # the pool's fourth slot, then a fifth
            assert not slot.locked  # past the limit: still works, says unlocked
            raw.seek(0)
            assert raw.read() == MARKER
            raw.close()
        for s in slots:
            s.close()
        return report

    locked, unlocked = (True, True, True), (False, False, True)
    assert child_result(child) == [locked, locked, unlocked, unlocked]


def test_the_pool_grows_by_whole_mappings_and_gives_them_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_secpool, "_pool", _secpool._Pool())  # measure a pool of our own
    slots = [Slot(64) for _ in range(13)]  # 4 + 8 slots, then a third arena
    pool = _secpool._pool
    assert [a.nslots for a in pool.arenas] == [4, 8, 16]
    assert len({s.address for s in slots}) == 13
    third = pool.arenas[2]
    for s in reversed(slots):
        s.close()
        s.close()  # idempotent
    assert [a.nslots for a in pool.arenas] == [4]  # the first arena stays for the next file
    assert third.map.closed
    assert len(pool.free) == 4


def test_a_file_closed_while_this_thread_holds_the_pool_does_not_deadlock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Mock: a finalizer (run by gc during take's allocations) or a signal handler closing a
    # file at the very moment this thread holds the pool's lock cannot be timed for real;
    # the re-entry into the pool is real.
    monkeypatch.setattr(_secpool, "_pool", _secpool._Pool())
    early = [Slot(64) for _ in range(4)]  # the first arena, all taken: the next one grows
    grow = _secpool._Arena.__init__

    def growing(arena: _secpool._Arena, nslots: int) -> None:
        early[0].close()  # what that finalizer does, inside take(), under the lock
        grow(arena, nslots)

    monkeypatch.setattr(_secpool._Arena, "__init__", growing)
    got: list[Slot] = []
    worker = threading.Thread(target=lambda: got.append(Slot(64)), daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert got, "deadlocked: the pool's lock was taken again by the same thread"
    pool = _secpool._pool
    assert sum(a.in_use for a in pool.arenas) == 4  # three early slots and the new one
    assert len(pool.free) + 4 == sum(a.nslots for a in pool.arenas)
    for s in [*early, *got]:
        s.close()


def _pool_invariants(pool: _secpool._Pool, held: list[Slot]) -> None:
    """No slot free twice, none both free and held, every free slot in a listed,
    mapped arena, and no arena counting fewer holders than it has."""
    free = [(id(a), i) for a, i in pool.free]
    assert len(free) == len(set(free)), "a slot is on the free list twice"
    listed = {id(a) for a in pool.arenas}
    assert all(id(a) in listed and not a.map.closed for a, _ in pool.free)
    live = [s for s in held if s._arena is not None]
    assert not {(id(s._arena), s._index) for s in live} & set(free), "a held slot is free"
    for arena in pool.arenas:
        assert arena.in_use >= sum(1 for s in live if s._arena is arena)


def _grow_and_shrink(held: list[Slot]) -> None:
    """Five files (the first arena holds 4: a second arena is mapped), the fifth closed
    first (the second arena unmapped), then the rest."""
    for _ in range(5):
        held.append(Slot(64))
    held[-1].close()
    for slot in held[:-1]:
        slot.close()


def test_an_interrupt_at_any_opcode_of_the_pool_never_hands_a_slot_out_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An interrupt between a list.remove and the free-list filter (seen in CI under a
    # raising SIGALRM) left a slot of an unmapped arena free: every later encrypted file
    # of the process failed. Here an exception lands at each opcode in turn.
    n = 1
    while True:
        pool = _secpool._Pool()
        monkeypatch.setattr(_secpool, "_pool", pool)
        held: list[Slot] = []
        with raise_at_opcode(n, (_secpool,)) as traced:
            try:
                _grow_and_shrink(held)
            except Injected:
                pass
            else:
                break  # n is past the last opcode of the whole sequence
        assert traced() >= n  # it landed (instructions of the unwinding may follow)
        _pool_invariants(pool, held)
        for slot in held:
            slot.close()  # an interrupted close is finished by the next (idempotent)
        _pool_invariants(pool, held)
        # The pool still works: 20 files at once get 20 distinct slots, zeroed.
        more = [Slot(64) for _ in range(20)]
        assert len({(id(s._arena), s._index) for s in more}) == 20
        assert all(bytes(s.view) == bytes(64) for s in more)
        _pool_invariants(pool, held + more)
        for slot in more:
            slot.close()
        _pool_invariants(pool, held + more)
        n += 1
    assert n > 100  # every opcode of take, give_back, Slot and close was a landing place
