"""Adversarial review of issue 13's last cuts this session (review8).

203826c reads a whole stored 4 KiB block before the last one "inline": when ``readinto``
gets a writable contiguous ``memoryview`` of the block's size, one ``preadv`` and the
block is decrypted straight into the caller's view. The general path casts the caller's
buffer to bytes first (``out.cast("B")``); the inline one hands the view to the cipher as
it is, and tests only its ``nbytes``. A view of another item format (``"Q"``: an
``array.array("Q")``, or a ``bytearray`` cast to 64-bit words, as a reader filling a word
array does) is a valid buffer for ``io.RawIOBase.readinto`` -- the standard library's
``TemporaryFile`` and hardtemp's own general path (8 KiB blocks) fill it -- but the cipher
refuses it: a valid read raises ``TypeError``, and a tampered block raises ``TypeError``
instead of ``IntegrityError``.
"""

from __future__ import annotations

import io
import os
import tempfile

import pytest

import hardtemp
from hardtemp.exceptions import IntegrityError

_BLOCK = 4096


def _file_of_4k_blocks(data: bytes) -> io.RawIOBase:
    """An encrypted file (``buffering=0``: the raw file itself) whose first write chose
    the 4 KiB blocks (a first write of at most 4 KiB), then three stored blocks."""
    f = hardtemp.TemporaryFile(buffering=0)
    f.write(data[:_BLOCK])  # the first write: at most 4 KiB, so 4 KiB blocks
    f.write(data[_BLOCK:])
    assert f._bs == _BLOCK  # type: ignore[attr-defined]
    return f  # type: ignore[return-value]


def _words_view(nbytes: int) -> tuple[bytearray, memoryview]:
    buf = bytearray(nbytes)
    return buf, memoryview(buf).cast("Q")


def test_control_the_standard_library_and_the_general_path_fill_a_word_view() -> None:
    data = os.urandom(3 * _BLOCK)
    with tempfile.TemporaryFile(buffering=0) as std:
        std.write(data)
        std.seek(_BLOCK)
        buf, view = _words_view(_BLOCK)
        assert std.readinto(view) == _BLOCK  # type: ignore[attr-defined]
        assert bytes(buf) == data[_BLOCK : 2 * _BLOCK]
    # hardtemp's general path (8 KiB blocks: a 4 KiB read is not the inline one) casts it.
    with hardtemp.TemporaryFile(buffering=0) as f:
        f.write(data)
        assert f._bs == 2 * _BLOCK  # type: ignore[attr-defined]
        f.seek(_BLOCK)
        buf, view = _words_view(_BLOCK)
        assert f.readinto(view) == _BLOCK
        assert bytes(buf) == data[_BLOCK : 2 * _BLOCK]


def test_control_the_inline_read_into_a_byte_view_is_right_and_detects_tampering() -> None:
    data = os.urandom(3 * _BLOCK)
    with _file_of_4k_blocks(data) as f:
        f.seek(_BLOCK)
        buf = bytearray(_BLOCK)
        assert f.readinto(memoryview(buf)) == _BLOCK
        assert bytes(buf) == data[_BLOCK : 2 * _BLOCK]
        assert f.tell() == 2 * _BLOCK
        fd = f._fd  # type: ignore[attr-defined]
        b = os.pread(fd, 1, 10)
        os.pwrite(fd, bytes([b[0] ^ 1]), 10)  # flip one ciphertext bit of block 0
        f.seek(0)
        buf = bytearray(b"\xaa" * _BLOCK)
        with pytest.raises(IntegrityError):
            f.readinto(memoryview(buf))
        assert bytes(buf) == bytes(_BLOCK)
        assert f.tell() == 0


@pytest.mark.xfail(
    strict=True,
    raises=TypeError,
    reason="review8: 203826c's inline 4 KiB read hands the caller's memoryview to "
    "AESGCM.decrypt_into without casting it to bytes (the general path does "
    "out.cast('B')): a 4096-byte view of format 'Q' -- valid for RawIOBase.readinto, "
    "filled by the stdlib and by hardtemp's 8 KiB-block path -- raises TypeError "
    "('Cannot convert memoryview to a buffer') on a valid read",
)
def test_a_valid_inline_read_into_a_word_view_returns_the_plaintext() -> None:
    data = os.urandom(3 * _BLOCK)
    with _file_of_4k_blocks(data) as f:
        f.seek(_BLOCK)
        buf, view = _words_view(_BLOCK)
        assert f.readinto(view) == _BLOCK
        assert bytes(buf) == data[_BLOCK : 2 * _BLOCK]
        assert f.tell() == 2 * _BLOCK


@pytest.mark.xfail(
    strict=True,
    raises=TypeError,
    reason="review8: the inline 4 KiB read of a tampered block into a 'Q'-format view "
    "raises TypeError from the cipher's buffer conversion, not the IntegrityError "
    "readinto documents (the view is zeroed); a caller catching IntegrityError to "
    "handle tampering misses it",
)
def test_a_tampered_block_read_inline_into_a_word_view_raises_integrity_error() -> None:
    data = os.urandom(3 * _BLOCK)
    with _file_of_4k_blocks(data) as f:
        fd = f._fd  # type: ignore[attr-defined]
        b = os.pread(fd, 1, 10)
        os.pwrite(fd, bytes([b[0] ^ 1]), 10)  # flip one ciphertext bit of block 0
        f.seek(0)
        buf, view = _words_view(_BLOCK)
        buf[:] = b"\xaa" * _BLOCK
        with pytest.raises(IntegrityError):
            f.readinto(view)
        assert bytes(buf) == bytes(_BLOCK)
        assert f.tell() == 0
