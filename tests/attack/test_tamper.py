"""Tampering with an encrypted file's backing file is detected on read.

The attacker edits the ciphertext through /proc/self/fd (the same access an
offline attacker, a buggy co-process of the same user or a corrupting disk
has). Every read that covers a tampered block, and every read after the backing
file was truncated or extended where the checks below say so, must raise
IntegrityError and must not leave plaintext of that read in the caller's buffer.
"""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Iterator
from typing import Any

import pytest

from _helpers_crypt import backing_fd, in_child, proc_path, raw_of
from hardtemp._crypt import SMALL_BLOCK_SIZE, TAG_SIZE, EncryptedRawIO, open_encrypted
from hardtemp.exceptions import InsecureOperationError, IntegrityError

BS = 64
SLOT = BS + TAG_SIZE
NBLOCKS = 4


@pytest.fixture
def raw() -> Iterator[EncryptedRawIO]:
    r = EncryptedRawIO(backing_fd(), block_size=BS)
    # One aligned write of whole blocks: nothing is left in the one-block
    # plaintext cache, so every read below goes to the disk.
    r.write(bytes(range(BS)) * NBLOCKS)
    yield r
    r.close()


def _edit(f: Any, offset: int, data: bytes) -> None:
    with open(proc_path(f), "r+b") as back:
        back.seek(offset)
        back.write(data)


def _flip(f: Any, offset: int, mask: int = 0x01) -> None:
    """Flip bits of one stored byte (a write of a fixed value could be a no-op)."""
    _edit(f, offset, bytes([_read_backing(f, offset, 1)[0] ^ mask]))


def _read_backing(f: Any, offset: int = 0, size: int = -1) -> bytes:
    with open(proc_path(f), "rb") as back:
        back.seek(offset)
        return back.read(size)


def _set_backing(f: Any, content: bytes) -> None:
    with open(proc_path(f), "r+b") as back:
        back.write(content)
        back.truncate(len(content))


def _assert_read_fails(r: EncryptedRawIO, offset: int = 0, size: int | None = None) -> None:
    n = r._map.size - offset if size is None else size
    buf = bytearray(b"\xaa" * n)
    r.seek(offset)
    with pytest.raises(IntegrityError) as info:
        r.readinto(buf)
    assert info.value.errno == errno.EBADMSG
    assert isinstance(info.value, OSError)
    # Nothing this read produced (not even authentic blocks before the bad one) remains.
    assert buf == bytearray(n)
    assert r.tell() == offset  # a failed read does not move the position


def test_untampered_file_reads_back(raw: EncryptedRawIO) -> None:
    raw.seek(0)
    assert raw.read() == bytes(range(BS)) * NBLOCKS


def test_flipped_bit_in_ciphertext_is_detected(raw: EncryptedRawIO) -> None:
    _flip(raw, 1 * SLOT + 10)
    _assert_read_fails(raw)
    _assert_read_fails(raw, 1 * BS + 3, 5)  # single-block fast path too


def test_flipped_bit_in_tag_is_detected(raw: EncryptedRawIO) -> None:
    _flip(raw, 2 * SLOT + BS + 3, 0x80)
    _assert_read_fails(raw)
    _assert_read_fails(raw, 2 * BS, BS)


def test_swapped_blocks_are_detected(raw: EncryptedRawIO) -> None:
    b0 = _read_backing(raw, 0, SLOT)
    b1 = _read_backing(raw, SLOT, SLOT)
    _edit(raw, 0, b1)
    _edit(raw, SLOT, b0)
    _assert_read_fails(raw)
    _assert_read_fails(raw, 0, BS)
    _assert_read_fails(raw, BS, BS)


def test_block_copied_over_another_is_detected(raw: EncryptedRawIO) -> None:
    _edit(raw, 3 * SLOT, _read_backing(raw, 0, SLOT))
    _assert_read_fails(raw, 3 * BS, BS)
    raw.seek(0)
    assert raw.read(BS) == bytes(range(BS))  # the untouched original still reads


def test_block_from_another_encrypted_file_is_detected(raw: EncryptedRawIO) -> None:
    with EncryptedRawIO(backing_fd(), block_size=BS) as other:
        other.write(bytes(range(BS)) * NBLOCKS)  # same plaintext, other key
        _edit(raw, SLOT, _read_backing(other, SLOT, SLOT))
    _assert_read_fails(raw, BS, BS)


def test_replayed_old_version_of_one_block_is_detected(raw: EncryptedRawIO) -> None:
    old = _read_backing(raw, SLOT, SLOT)
    raw.seek(BS)
    raw.write(b"N" * BS)  # a new version of block 1 (same size)
    _edit(raw, SLOT, old)  # roll it back
    _assert_read_fails(raw, BS, BS)
    _assert_read_fails(raw)


def test_replayed_old_version_of_whole_file_same_size_is_detected(raw: EncryptedRawIO) -> None:
    old = _read_backing(raw)
    raw.seek(0)
    raw.write(b"new contents".ljust(BS * NBLOCKS, b"."))
    assert len(_read_backing(raw)) == len(old)
    _set_backing(raw, old)
    _assert_read_fails(raw)
    for k in range(NBLOCKS):
        _assert_read_fails(raw, k * BS, BS)


def test_replayed_old_version_after_growth_is_detected(raw: EncryptedRawIO) -> None:
    old = _read_backing(raw)
    raw.seek(0, io.SEEK_END)
    raw.write(b"more" * 100)
    _set_backing(raw, old)  # the whole older file, as it was
    _assert_read_fails(raw)


@pytest.mark.parametrize(
    "keep",
    [0, SLOT, 2 * SLOT, 3 * SLOT, 3 * SLOT + 20, 4 * SLOT - 1],
    ids=["empty", "1-block", "2-blocks", "3-blocks-boundary", "mid-block", "last-byte"],
)
def test_truncated_backing_file_is_detected(raw: EncryptedRawIO, keep: int) -> None:
    os.truncate(proc_path(raw), keep)
    _assert_read_fails(raw)
    _assert_read_fails(raw, 3 * BS, BS)  # the last block, read on its own


def test_truncation_at_block_boundary_is_detected_through_the_full_stack() -> None:
    with open_encrypted(backing_fd(), "w+", encoding="utf-8", block_size=BS) as t:
        t.write("line of text\n" * 40)
        t.flush()
        size = os.stat(proc_path(t)).st_size
        os.truncate(proc_path(t), size - (size % SLOT or SLOT))  # drop the last block exactly
        t.seek(0)
        with pytest.raises(IntegrityError):
            t.read()


@pytest.mark.parametrize("extra", [b"\x00", b"x" * SLOT])
def test_extended_backing_file_is_detected(raw: EncryptedRawIO, extra: bytes) -> None:
    with open(proc_path(raw), "ab") as back:
        back.write(extra)
    _assert_read_fails(raw)
    _assert_read_fails(raw, (NBLOCKS - 1) * BS + 5, 10)  # the last block on its own


def test_extended_with_a_valid_copied_block_is_detected(raw: EncryptedRawIO) -> None:
    with open(proc_path(raw), "ab") as back:
        back.write(_read_backing(raw, 0, SLOT))
    _assert_read_fails(raw)


def test_zeroed_block_is_detected(raw: EncryptedRawIO) -> None:
    # As if the block had been punched out or lost: reads as zeros on disk.
    _edit(raw, SLOT, bytes(SLOT))
    _assert_read_fails(raw, BS, BS)


def test_tampering_is_detected_on_read_modify_write(raw: EncryptedRawIO) -> None:
    # A partial overwrite must authenticate the rest of the block first; it
    # must not silently re-seal attacker-chosen bytes under a fresh tag.
    _flip(raw, SLOT + 5)
    raw.seek(BS + 40)
    with pytest.raises(IntegrityError):
        raw.write(b"ok")


def test_tampering_is_detected_through_buffered_and_text_layers() -> None:
    with open_encrypted(backing_fd(), "w+b", block_size=BS) as f:
        f.write(b"\x01" * (BS * 3))
        f.flush()
        _flip(f, SLOT)
        f.seek(0)
        with pytest.raises(IntegrityError):
            f.read()
    with open_encrypted(backing_fd(), "w+", encoding="utf-8", block_size=BS) as t:
        t.write("sensitive\n" * 30)
        t.flush()
        _flip(t, 0)
        t.seek(0)
        with pytest.raises(IntegrityError):
            t.readline()


def test_integrity_error_names_the_file_when_named() -> None:
    with EncryptedRawIO(backing_fd(), block_size=BS, name="/tmp/report.bin") as r:
        r.write(b"x" * BS)
        _flip(r, 3)
        r.seek(0)
        with pytest.raises(IntegrityError) as info:
            r.read()
        assert info.value.path == "/tmp/report.bin"
        assert "block 0" in info.value.reason


def test_tampered_block_partly_covered_by_a_multi_block_read_is_detected(
    raw: EncryptedRawIO,
) -> None:
    _flip(raw, 5)  # block 0, which the read below covers only from its middle
    _assert_read_fails(raw, BS // 2, BS * 2)
    _flip(raw, 5)  # restore block 0; now break block 2, which it ends inside
    _flip(raw, 2 * SLOT + 5)
    _assert_read_fails(raw, BS // 2, BS * 2)


# --- a file written in 4 KiB calls: 4 KiB blocks, read 4 KiB at a time ------------------------
# Its whole-block read decrypts straight into the caller's buffer (the random-read fast path);
# each attack below is caught there, through the buffered layer, and leaves zeros behind.

SMALL = SMALL_BLOCK_SIZE
SMALL_SLOT = SMALL + TAG_SIZE


@pytest.fixture
def small() -> Iterator[Any]:
    f = open_encrypted(backing_fd(), "w+b")
    for k in range(NBLOCKS):
        f.write(bytes([k + 1]) * SMALL)  # what bench_crypt.py's small file does
    f.flush()
    assert raw_of(f)._bs == SMALL  # chosen by the first write
    yield f
    f.close()


def _small_read_fails(f: Any, block: int) -> None:
    buf = bytearray(b"\xaa" * SMALL)
    f.seek(block * SMALL)
    with pytest.raises(IntegrityError):
        f.readinto(buf)
    # No unauthenticated plaintext in the caller's buffer: zeroed, or (when the buffered
    # layer read into its own buffer, which the raw file zeroed) untouched.
    assert buf in (bytearray(SMALL), bytearray(b"\xaa" * SMALL))
    raw = raw_of(f)
    out = bytearray(b"\xaa" * SMALL)
    raw.seek(block * SMALL)
    with pytest.raises(IntegrityError):
        raw.readinto(out)  # the raw file's own whole-block path
    assert out == bytearray(SMALL)
    view = memoryview(bytearray(b"\xaa" * SMALL))
    raw.seek(block * SMALL)
    with pytest.raises(IntegrityError):
        raw.readinto(view)  # a memoryview of a block's size: the inline random-read path
    assert view == bytes(SMALL)  # decrypt_into's unauthenticated plaintext was zeroed
    assert raw.tell() == block * SMALL


def test_small_blocks_read_back_whole_blocks(small: Any) -> None:
    for k in (2, 0, 3, 1):
        small.seek(k * SMALL)
        assert small.read(SMALL) == bytes([k + 1]) * SMALL


@pytest.mark.parametrize("where", [0, SMALL - 1, SMALL + TAG_SIZE - 1], ids=["data", "last", "tag"])
def test_small_blocks_detect_a_flipped_bit(small: Any, where: int) -> None:
    _flip(small, 2 * SMALL_SLOT + where)
    _small_read_fails(small, 2)
    small.seek(SMALL)
    assert small.read(SMALL) == b"\x02" * SMALL  # the other blocks are untouched


def test_small_blocks_detect_swapped_blocks(small: Any) -> None:
    one, two = (
        _read_backing(small, SMALL_SLOT, SMALL_SLOT),
        _read_backing(small, 2 * SMALL_SLOT, SMALL_SLOT),
    )
    _edit(small, SMALL_SLOT, two)
    _edit(small, 2 * SMALL_SLOT, one)
    _small_read_fails(small, 1)
    _small_read_fails(small, 2)


def test_small_blocks_detect_a_replayed_old_version(small: Any) -> None:
    old = _read_backing(small, SMALL_SLOT, SMALL_SLOT)
    small.seek(SMALL)
    small.write(b"\xff" * SMALL)
    small.flush()
    _edit(small, SMALL_SLOT, old)  # the block as it was: a valid tag under an older counter
    _small_read_fails(small, 1)


@pytest.mark.parametrize("cut", [1, SMALL_SLOT], ids=["one-byte", "whole-block"])
def test_small_blocks_detect_a_truncated_backing_file(small: Any, cut: int) -> None:
    length = len(_read_backing(small))
    _set_backing(small, _read_backing(small, 0, length - cut))
    _small_read_fails(small, NBLOCKS - 1)  # the short read of the last block tells


def test_small_blocks_detect_a_backing_file_truncated_inside_a_middle_block(small: Any) -> None:
    # The inline path's single preadv comes back short: the general path reads again,
    # finds the file shorter than its blocks and says so; the later blocks are gone too.
    # Block 1 is read first, so that the read buffer's tail still holds its ciphertext:
    # decrypting the short read's buffer as if it were whole would authenticate it.
    raw = raw_of(small)
    raw.seek(SMALL)
    assert raw.readinto(memoryview(bytearray(SMALL))) == SMALL
    _set_backing(small, _read_backing(small, 0, SMALL_SLOT + SMALL_SLOT // 2))
    _small_read_fails(small, 1)
    _small_read_fails(small, 2)
    small.seek(0)
    assert small.read(SMALL) == b"\x01" * SMALL  # the block before the cut still reads


def test_small_blocks_detect_an_extended_backing_file(small: Any) -> None:
    _set_backing(small, _read_backing(small) + b"\0")
    _small_read_fails(small, NBLOCKS - 1)  # the one byte more it asks for tells


def test_a_forked_child_reads_small_blocks_authenticated_and_never_writes(small: Any) -> None:
    def child() -> object:
        small.seek(SMALL)
        ok = small.read(SMALL) == b"\x02" * SMALL
        _flip(small, 3 * SMALL_SLOT)  # the child's own view of a tampered block
        try:
            small.seek(3 * SMALL)
            small.read(SMALL)
        except IntegrityError:
            tampered = "detected"
        else:
            tampered = "missed"
        try:
            small.write(b"x")
            small.flush()
        except InsecureOperationError:
            return ok, tampered, "write refused"
        return ok, tampered, "write allowed"

    assert in_child(child) == ("ok", repr((True, "detected", "write refused")))
