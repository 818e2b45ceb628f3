"""Adversarial review of issue 13's cuts (review6): the 4-byte counters of small encrypted files.

A file whose first write is at most 4 KiB gets 4 KiB blocks whose per-block counters are
stored in 4 bytes; its nonces are the sealer's counter values, which must never repeat
under the file's key: not after failed (real ENOSPC) and rolled-back writes, truncation
and re-extension, in a child forked with or without Python's fork hooks (which shares the
key and the counter state), at the 2**32 - 1 limit, nor around the ``"until-fileno"``
switch made in a child. Every seal goes through the real AES-GCM; the recorder only
watches the nonces (``_helpers_crypt.record_nonces``). Each case is checked to have
happened (ENOSPC met, blocks rewritten, the limit reached), so the test cannot pass
vacuously.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import random
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import hardtemp.compat
from _helpers_attack import hand_number_to
from _helpers_crypt import child_result, record_nonces
from hardtemp._crypt import EncryptedRawIO
from hardtemp._crypt._sealer import MAX_COUNTER32
from hardtemp.exceptions import InsecureOperationError, PlaintextLeftWarning

SMALL = 4096
_FORKS: dict[str, Callable[[], int]] = {
    "os.fork": os.fork,
    "raw fork": ctypes.CDLL(None, use_errno=True).fork,  # runs no Python fork hooks
}


def _child_tries_to_seal(raw: EncryptedRawIO, rec: Any, fork: Callable[[], int]) -> object:
    """In a forked child: every way of writing, and how many nonces the child used."""

    def task() -> tuple[list[str], int]:
        before = len(rec.nonces)
        refused = []
        for attempt in (
            lambda: raw.write(b"child"),
            lambda: raw.truncate(7),
            lambda: raw.truncate(3 * SMALL + 1),
        ):
            try:
                attempt()
            except InsecureOperationError:
                refused.append("refused")
            else:
                refused.append("done")
        return refused, len(rec.nonces) - before

    return child_result(task, fork)


def _fill_leaving(mnt: Path, room: int) -> None:
    """Fill the filesystem at ``mnt`` until only about ``room`` bytes are free."""
    with open(mnt / "filler", "wb", buffering=0) as out, contextlib.suppress(OSError):
        while os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize > room:
            out.write(b"\xff" * 4096)


def test_a_4_byte_counter_file_never_repeats_a_nonce_under_faults_forks_and_its_limit(
    small_tmpfs: Callable[[int], Path],
) -> None:
    mnt = small_tmpfs(512)
    raw = EncryptedRawIO(os.open(mnt, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600))
    rec = record_nonces(raw)
    model = bytearray(b"a" * 100)
    raw.write(bytes(model))  # a small first write: 4 KiB blocks, 4-byte counters
    assert raw._bs == SMALL
    assert raw._map.ctrs.itemsize == 4
    _fill_leaving(mnt, 6 * SMALL)  # a few blocks of room: larger writes meet real ENOSPC
    rng = random.Random(20261202)
    enospc = rewrites = 0
    for step in range(400):
        op = rng.random()
        try:
            if op < 0.6:
                pos = rng.randrange(0, 12 * SMALL)
                data = rng.randbytes(rng.choice([1, 100, SMALL - 1, SMALL, SMALL + 1, 3 * SMALL]))
                raw.seek(pos)
                raw.write(data)
                if pos < len(model):
                    rewrites += 1
                if pos > len(model):
                    model.extend(bytes(pos - len(model)))
                model[pos : pos + len(data)] = data
            else:  # truncation, down and up again (re-extension leaves a zero hole)
                new = rng.randrange(0, 10 * SMALL)
                raw.truncate(new)
                del model[new:]
                model.extend(bytes(new - len(model)))
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            enospc += 1  # rolled back: the model keeps what was there
        if step % 100 == 50:
            for fork in _FORKS.values():
                assert _child_tries_to_seal(raw, rec, fork) == (["refused"] * 3, 0)
    assert enospc > 10, enospc  # the faults did happen...
    assert rewrites > 50, rewrites  # ...and so did rewrites of stored blocks (new nonces)
    raw.seek(0)
    assert raw.read() == bytes(model)
    (mnt / "filler").unlink()
    # The limit (test hook: a few counter values left): the file stops before a repeat.
    assert raw._sealer is not None
    raw._sealer._next = MAX_COUNTER32 - 3
    for _ in range(2):  # two blocks a write: the last four values
        raw.seek(0)
        raw.write(b"z" * (2 * SMALL))
    raw.seek(0)
    with pytest.raises(OSError) as info:
        raw.write(b"y" * (2 * SMALL))
    assert info.value.errno == errno.EOVERFLOW
    assert rec.repeats == []
    assert max(int.from_bytes(n, "big") for n in rec.nonces) == MAX_COUNTER32
    assert max(raw._map.ctrs) <= MAX_COUNTER32
    model[: 2 * SMALL] = b"z" * (2 * SMALL)
    raw.seek(0)
    assert raw.read() == bytes(model)  # what the refused write would have changed is intact
    raw.close()


@pytest.mark.parametrize("how", _FORKS)
def test_the_until_fileno_switch_in_a_child_seals_nothing_and_the_parent_repeats_no_nonce(
    how: str,
) -> None:
    f = hardtemp.compat.TemporaryFile(buffering=0)
    switching: Any = f  # the SwitchingRawIO itself (buffering=0)
    assert switching.encrypted
    f.write(b"b" * 100)  # small first write: 4-byte counters
    enc = switching.current
    assert isinstance(enc, EncryptedRawIO)
    assert enc._bs == SMALL
    rec = record_nonces(enc)

    def child() -> tuple[bool, bytes, int]:
        before = len(rec.nonces)
        fd = f.fileno()  # the switch, in the child: a plain copy of its own
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 200)
        f.write(b"c" * 10)  # the child writes its plain copy, never the shared ciphertext
        return switching.encrypted, data, len(rec.nonces) - before

    assert child_result(child, _FORKS[how]) == (False, b"b" * 100, 0)
    assert switching.encrypted  # the parent is still encrypted, its key still its own
    for i in range(50):
        f.seek(i * 37)
        f.write(b"p" * 300)
    assert rec.repeats == []
    f.close()


# --- A descriptor number reused by another file before the close (a double-close bug) --------
#
# The closes of plain files overwrite "through the descriptor we hold", trusting that a
# descriptor never changes inode (issue 13 dropped the named close's fstat of it). A
# descriptor *number* does: a library that closes a descriptor it did not own (a classic
# double close) lets the next open() take the number, and our close then writes its random
# overwrite into that unrelated file. The standard library only closes the number there.

_REUSED = (
    "review6 break: the close overwrites whatever file the descriptor number now refers to: "
    "NamedTemporaryFile's straight-line close passes the name's statx for the descriptor "
    "(fd_is_expect, since a132af6) and TemporaryFile(encrypt=False)'s close fstats the "
    "descriptor but never compares it with the inode it created, so a number freed by a "
    "library's double close and reused by open() gets our random overwrite: an unrelated "
    "file's data is destroyed, silently (the stdlib control leaves it intact)"
)


@pytest.mark.parametrize(
    "kind",
    [
        "named",  # fixed: the overwrite goes through the claim's own duplicate
        "unnamed",  # fixed: the descriptor's fstat is compared with the inode created
        "control-stdlib",
    ],
)
def test_a_descriptor_number_reused_by_another_file_is_never_overwritten_at_close(
    tmp_path: Path, kind: str
) -> None:
    victim = tmp_path / "ledger.db"
    data = b"IMPORTANT DATA " * 20
    victim.write_bytes(data)
    if kind == "named":
        f: Any = hardtemp.NamedTemporaryFile(dir=tmp_path)
    elif kind == "unnamed":
        f = hardtemp.TemporaryFile(dir=tmp_path, encrypt=False)
    else:
        f = tempfile.NamedTemporaryFile(dir=tmp_path)  # noqa: SIM115 - closed below
    f.write(b"secret " * 10)
    f.flush()
    number = f.fileno()
    hand_number_to(number, victim)  # a double close, and the application's next open()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with contextlib.suppress(OSError):  # what the close may say about the lost file is fine
            f.close()
    with contextlib.suppress(OSError):
        os.close(number)  # the close may or may not have closed the number itself
    assert victim.read_bytes() == data, "an unrelated file was overwritten by our close"
    left = [str(w.message) for w in caught if issubclass(w.category, PlaintextLeftWarning)]
    if kind == "unnamed":
        # Our inode died with the other code's close, never overwritten: said, not hidden.
        assert len(left) == 1, left
        assert "closed by other code" in left[0]
    else:
        # Named: the claim's own duplicate still held our inode, and overwrote it.
        assert left == []
