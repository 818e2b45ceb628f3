"""Random-access AES-256-GCM encryption of a temporary file's contents.

:class:`EncryptedRawIO` is a raw, seekable, readable and writable file over a
backing file descriptor (normally an unnamed ``O_TMPFILE`` file). Only
ciphertext ever reaches the backing file; the key exists only in this
process's memory.

Layout of the backing file: logical block ``i`` (``block_size`` bytes of
plaintext, the last one possibly shorter) is stored at offset
``i * (block_size + 16)`` as ``ciphertext || tag``. A block that was never
written (a hole left by seeking past the end or by ``truncate`` up) is not on
disk at all and reads as zeros.

Authoritative metadata lives in memory, never on disk: the logical size and,
per block, the 64-bit counter that was the nonce of its current ciphertext
(0 = sparse). So the stored data cannot roll itself back, move or shrink:

* a flipped bit fails the GCM tag;
* a block copied to another position fails (the associated data binds the
  block index, and the expected nonce differs);
* an older version of a block (rollback) fails: it was sealed under an older
  counter value than the one this object expects;
* a backing file truncated or extended: its length differs from the one the
  metadata implies. Reads spanning several blocks and read-modify-writes check
  it with ``fstat``; the single-block read fast path checks it with the
  ``pread`` itself (short read = truncated; for the last block on disk it asks
  for one byte more, and getting it = extended), which costs nothing extra.

Any of these raises :class:`hardtemp.exceptions.IntegrityError`, after zeroing
whatever plaintext had been decrypted into the caller's buffer in that call.
"""

from __future__ import annotations

import array
import collections
import contextlib
import errno
import io
import mmap
import operator
import os
import stat
import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._iostack import check_mode, raw_mode, wrap_raw
from .exceptions import InsecureOperationError, IntegrityError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

__all__ = ["DEFAULT_BLOCK_SIZE", "EncryptedRawIO", "open_encrypted"]

#: Plaintext bytes per block; chosen from benchmarks/bench_crypt.py (see docs): a
#: random 4 KiB read must decrypt a whole block, so smaller is faster there, and 8 KiB
#: is the smallest size whose state (8 bytes per block) stays within 1 MiB per GiB.
DEFAULT_BLOCK_SIZE: Final = 8 * 1024
TAG_SIZE: Final = 16
MIN_BLOCK_SIZE: Final = 16
MAX_BLOCK_SIZE: Final = 16 * 1024 * 1024
#: Largest counter; a 64-bit counter per block keeps the per-block state at 8 bytes.
_MAX_COUNTER: Final = 2**64 - 1
_MAX_OFF_T: Final = 2**63 - 1
#: Ciphertext moved per pread/pwrite call (bounds the reused buffer, never the file).
_CHUNK_BYTES: Final = 1024 * 1024
#: Buffer of the BufferedRandom/Reader/Writer: a page, so that a page-aligned 4 KiB
#: read costs one block (a larger buffer often straddles two blocks and must decrypt
#: both); large transfers bypass the buffer anyway.
ENCRYPTED_BUFFER_SIZE: Final = 4096

#: Recent cryptography releases have the allocation-free encrypt_into/decrypt_into
#: (the installed 50.0.2 does; its changelog does not list them up to 45.0). With
#: older versions (pyproject allows >= 42) the slower, allocating fallback is used.
_HAVE_INTO: bool = hasattr(AESGCM, "encrypt_into") and hasattr(AESGCM, "decrypt_into")

_FORK_MESSAGE: Final = (
    "this encrypted temporary file was inherited through fork(); writing to it from the "
    "child would reuse AES-GCM nonces that the parent also uses, so the child may only read "
    "(and sees an IntegrityError once the parent rewrites what it reads). Write from the "
    "parent, or create a new temporary file in the child"
)
_FILENO_MESSAGE: Final = (
    "an encrypted temporary file has no file descriptor that other programs could use: its "
    "backing file holds only ciphertext whose key lives in this process. Use encrypt=False "
    "or NamedTemporaryFile to hand a file to another program"
)

# --- fork handling -------------------------------------------------------------------------

_live: weakref.WeakSet[EncryptedRawIO] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # The parent keeps writing with the same key and counter sequence, so a child
    # that wrote would seal different plaintext under nonces the parent also uses
    # (nonce reuse exposes the GCM hash key and the XOR of plaintexts): make every
    # inherited file read-only in the child.
    for obj in list(_live):
        obj._forked = True
        obj._lock = threading.Lock()  # may have been held by a parent thread at fork time


os.register_at_fork(after_in_child=_after_fork_in_child)


def _consume(iterator: Iterator[object]) -> None:
    """Run ``iterator`` to its end in C, keeping nothing (itertools' "consume" recipe)."""
    collections.deque(iterator, maxlen=0)


class _TagFailure(Exception):
    """Internal: a block failed authentication (turned into IntegrityError)."""


class EncryptedRawIO(io.RawIOBase):
    """Random-access AES-256-GCM encrypted file over a backing file descriptor.

    ``EncryptedRawIO(fd, *, block_size=DEFAULT_BLOCK_SIZE, closefd=True,
    name=None, mode="rb+")``

    ``fd`` must be an empty regular file opened read-write (normally an
    unnamed ``O_TMPFILE`` file); this object owns it and closes it on
    :meth:`close` unless ``closefd`` is false. ``mode`` is the :class:`io.FileIO`
    style mode (``"rb+"``, ``"rb"``, ``"wb"``, ``"ab"``, ``"ab+"``,
    ``"xb"``, ``"xb+"``); it only restricts what this object allows, since the
    backing file is always new and empty. ``name`` is exposed as ``.name``.

    Guarantees:

    * a fresh 256-bit key per file from the OS CSPRNG, never written anywhere;
      dropped on :meth:`close`;
    * nonces are a per-file counter and never repeat, also not across
      ``fork()`` (the child may read but any write raises
      :class:`~hardtemp.exceptions.InsecureOperationError`);
    * reads return only authenticated plaintext, or raise
      :class:`~hardtemp.exceptions.IntegrityError` (and zero what this call had
      decrypted into the caller's buffer);
    * all methods are thread-safe (one lock per file);
    * in-memory state is 8 bytes per block up to the last block stored on
      disk (1 MiB per GiB at 8 KiB blocks; a sparse tail costs nothing, but
      one block written far out costs the state of every block before it)
      plus at most about 1 MiB of reused buffers; the file is never buffered
      whole.

    ``readinto`` and ``write`` always transfer the whole request (up to the
    end of file for reads), like :class:`io.FileIO` on a regular file.

    Raises:
        TypeError: ``fd`` or ``block_size`` is not an int.
        ValueError: ``block_size`` out of range, bad ``mode``, or ``fd`` is not
            an empty regular file.
        OSError: ``fstat`` of ``fd`` fails (e.g. ``EBADF``).
    """

    # Class-level defaults make close()/__del__ safe on a half-initialised object.
    _fd: int = -1
    _closefd: bool = False
    _aead: AESGCM | None = None
    _ptmap: mmap.mmap | None = None
    _ptv: memoryview | None = None
    _ct1v: memoryview = memoryview(b"")

    def __init__(
        self,
        fd: int,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        closefd: bool = True,
        name: object = None,
        mode: str = "rb+",
    ) -> None:
        super().__init__()
        self._lock = threading.Lock()
        if not isinstance(fd, int) or isinstance(fd, bool):
            raise TypeError(f"fd must be an int, not {type(fd).__name__}")
        if not isinstance(block_size, int) or isinstance(block_size, bool):
            raise TypeError(f"block_size must be an int, not {type(block_size).__name__}")
        if not MIN_BLOCK_SIZE <= block_size <= MAX_BLOCK_SIZE:
            raise ValueError(
                f"block_size must be between {MIN_BLOCK_SIZE} and {MAX_BLOCK_SIZE}, "
                f"got {block_size}"
            )
        readable, writable, append = _parse_raw_mode(mode)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"fd {fd} is not a regular file")
        if st.st_size != 0:
            # Existing bytes cannot be authenticated (we have no key for them).
            raise ValueError(f"fd {fd} is not empty: an encrypted file must start empty")
        self._fd = fd
        self._closefd = bool(closefd)
        self.name = name
        self.mode = mode
        self._readable = readable
        self._writable = writable
        self._append = append
        self._bs = block_size
        self._slot = block_size + TAG_SIZE
        self._chunk_blocks = max(1, _CHUNK_BYTES // block_size)
        # Fresh key from the OS CSPRNG, only ever held by the AESGCM object.
        self._aead = AESGCM(AESGCM.generate_key(bit_length=256))
        # Bound into every block's associated data, with the block index.
        self._file_id = os.urandom(16)
        self._next_ctr = 1  # 0 means "sparse block, not on disk"
        self._ctrs = array.array("Q")  # per block: nonce counter of its current ciphertext
        self._size = 0  # logical size (authoritative)
        self._disk_end = 0  # expected st_size of the backing file
        self._pos = 0
        self._forked = False
        self._zeros = bytes(block_size)
        self._ct = bytearray()  # reused ciphertext buffer, grown up to one chunk
        self._ct_one: bytearray | None = None
        # Single-block read buffer (+1 byte to notice a backing file that grew).
        self._ct1v = memoryview(bytearray(self._slot + 1))
        self._ct1_all = [self._ct1v]  # preadv buffer lists of the single-block read path
        self._ct1_mid = [self._ct1v[: self._slot]]
        # Plaintext scratch block in its own mapping, excluded from core dumps.
        self._ptmap = mmap.mmap(-1, block_size)
        if hasattr(mmap, "MADV_DONTDUMP"):
            self._ptmap.madvise(mmap.MADV_DONTDUMP)
        self._ptv = memoryview(self._ptmap)
        self._cache_index = -1  # block whose current plaintext is in the scratch block
        self._cache_ctr = 0
        _live.add(self)

    # --- io.RawIOBase protocol -------------------------------------------------------------

    def readable(self) -> bool:
        self._check_open()
        return self._readable

    def writable(self) -> bool:
        self._check_open()
        return self._writable

    def seekable(self) -> bool:
        self._check_open()
        return True

    def fileno(self) -> int:
        """Always raises :class:`io.UnsupportedOperation`: the backing file holds
        only ciphertext, so handing its descriptor out would be useless at best."""
        self._check_open()
        raise io.UnsupportedOperation(_FILENO_MESSAGE)

    def isatty(self) -> bool:
        self._check_open()
        return False

    def tell(self) -> int:
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the position like :meth:`io.FileIO.seek` (whence 0, 1 or 2).

        Seeking past the end is allowed; a later write leaves a sparse hole.

        Raises:
            ValueError: closed file, or unsupported ``whence``.
            OSError: ``EINVAL`` if the resulting position would be negative.
            TypeError: ``offset`` is not an integer.
        """
        if self.closed:
            raise ValueError("I/O operation on closed file")
        if offset.__class__ is not int:
            offset = operator.index(offset)
        if whence == os.SEEK_CUR and offset == 0:
            # What io.BufferedRandom asks before every read: a plain tell()
            # (one attribute read, consistent without the lock, as in tell()).
            return self._pos
        with self._lock:
            if whence == os.SEEK_SET:
                new = offset
            elif whence == os.SEEK_CUR:
                new = self._pos + offset
            elif whence == os.SEEK_END:
                new = self._size + offset
            else:
                raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
            if new < 0:
                raise OSError(errno.EINVAL, "Invalid argument: negative seek position")
            self._pos = new
            return new

    def readinto(self, buffer: WriteableBuffer) -> int:
        """Read up to ``len(buffer)`` bytes at the current position.

        Returns the number of bytes read (0 at end of file); only fewer than
        requested when the end of file is reached.

        Raises:
            IntegrityError: the backing file does not hold what this object
                wrote (modified, moved, replayed, truncated or extended). The
                part of ``buffer`` this call wrote is zeroed first.
            io.UnsupportedOperation: the file is not readable (mode).
            ValueError: the file is closed.
            OSError: reading the backing file failed.
        """
        if self.closed:
            raise ValueError("I/O operation on closed file")
        if not self._readable:
            raise io.UnsupportedOperation("File not open for reading")
        out = memoryview(buffer)
        if out.format != "B" or out.ndim != 1:
            out = out.cast("B")
        with self._lock:
            pos = self._pos
            n = self._size - pos
            if len(out) < n:
                n = len(out)
            elif n > 0:
                out = out[:n]
            if n <= 0:
                return 0
            bs = self._bs
            k = pos // bs
            lo = pos - k * bs
            if lo + n <= bs:  # the common small read: one block
                try:
                    self._read_one(k, lo, out)
                except BaseException:
                    out[:] = self._zeros[:n]  # same contract as _read_range
                    raise
            else:
                self._read_range(pos, out)
            self._pos = pos + n
            return n

    def readall(self) -> bytes:
        """Read from the current position to the end of file (see :meth:`readinto`)."""
        self._check_open()
        with self._lock:
            remaining = max(0, self._size - self._pos)
        buf = bytearray(remaining)
        got = self.readinto(buf) if remaining else 0
        data = bytes(memoryview(buf)[:got])
        buf[:] = bytes(len(buf))  # do not leave a second plaintext copy behind
        return data

    def write(self, b: ReadableBuffer) -> int:
        """Encrypt and write all of ``b`` at the current position (at the end in
        append mode); returns ``len(b)``. Writing past the end leaves a sparse,
        zero-reading hole.

        Raises:
            InsecureOperationError: called in a process forked after this file
                was created (would reuse nonces).
            IntegrityError: a block that is partly overwritten failed
                authentication while being read back.
            io.UnsupportedOperation: the file is not writable (mode).
            ValueError: the file is closed.
            OSError: ``EFBIG`` if the backing file would exceed the largest
                file offset; writing the backing file failed (e.g. ``ENOSPC``); the
                blocks not fully written keep their previous authenticated
                content or read as IntegrityError, never as wrong data.
        """
        self._check_open()
        self._check_writable()
        with memoryview(b) as view, view.cast("B") as data, self._lock:
            n = len(data)
            if n == 0:
                return 0
            pos = self._size if self._append else self._pos
            end = pos + n
            self._check_size_limit(end)
            if end > self._size:
                self._grow_last_block(end, pos)
            self._write_range(pos, data, max(end, self._size))
            self._pos = end
            return n

    def truncate(self, size: int | None = None) -> int:
        """Resize the file to ``size`` bytes (default: the current position);
        the position does not move. Growing adds a sparse hole that reads as
        zeros and takes no disk space; shrinking frees the ciphertext beyond.

        Raises:
            InsecureOperationError: called in a forked child (see :meth:`write`).
            IntegrityError: the block cut in the middle failed authentication.
            io.UnsupportedOperation: the file is not writable.
            ValueError: the file is closed.
            OSError: ``EINVAL`` for a negative size; ``EFBIG`` if the backing
                file would exceed the largest file offset; ``ftruncate`` failed.
        """
        self._check_open()
        self._check_writable()
        with self._lock:
            new = self._pos if size is None else operator.index(size)
            if new < 0:
                raise OSError(errno.EINVAL, "Invalid argument: negative size")
            if new > self._size:
                self._check_size_limit(new)
                self._grow_last_block(new, None)
                self._size = new
            elif new < self._size:
                self._shrink(new)
            return new

    def flush(self) -> None:
        """Nothing is buffered in this object; checks that it is open."""
        self._check_open()

    def close(self) -> None:
        """Drop the key (cryptographic erase), zero the plaintext scratch, and
        close the backing descriptor if ``closefd``. Idempotent.

        Raises:
            OSError: closing the backing descriptor failed.
        """
        if self.closed:
            return
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        try:
            super().close()
        finally:
            self._aead = None  # the only reference to the key: unreachable from now on
            self._cache_index = -1
            if self._ptv is not None:
                self._ptv[:] = bytes(len(self._ptv))
                self._ptv.release()
                self._ptv = None
            if self._ptmap is not None:
                with contextlib.suppress(BufferError):  # a view kept alive by a traceback
                    self._ptmap.close()
                self._ptmap = None
            self._ct = bytearray()
            self._ct_one = None
            self._ct1v = memoryview(b"")
            self._ct1_all, self._ct1_mid = [], []
            self._ctrs = array.array("Q")
            fd, self._fd = self._fd, -1
            if self._closefd and fd >= 0:
                os.close(fd)

    def __reduce__(self) -> Any:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object (it holds a key)")

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"size={self._size}"
        return f"<hardtemp.EncryptedRawIO name={self.name!r} block_size={self._bs} {state}>"

    # --- helpers ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def _check_writable(self) -> None:
        if not self._writable:
            raise io.UnsupportedOperation("File not open for writing")
        if self._forked:
            raise InsecureOperationError(self._err_path(), _FORK_MESSAGE)

    def _check_size_limit(self, size: int) -> None:
        # Every stored block's offset must fit in off_t; like a filesystem's own
        # limit, refuse with EFBIG instead of failing deep inside pwrite.
        if -(-size // self._bs) * self._slot > _MAX_OFF_T:
            raise OSError(errno.EFBIG, f"File too large: {size} bytes")

    def _err_path(self) -> str | None:
        return self.name if isinstance(self.name, str) else None

    def _integrity(self, reason: str) -> IntegrityError:
        return IntegrityError(self._err_path(), reason)

    def _ctr(self, index: int) -> int:
        return self._ctrs[index] if index < len(self._ctrs) else 0

    def _stored_len(self, index: int, size: int) -> int:
        return min(self._bs, size - index * self._bs)

    def _take_counters(self, count: int) -> int:
        first = self._next_ctr
        if first + count - 1 > _MAX_COUNTER:
            raise OSError(errno.EOVERFLOW, "encryption counter exhausted for this file")
        self._next_ctr = first + count
        return first

    def _ct_buffer(self, nbytes: int) -> bytearray:
        if len(self._ct) < nbytes:
            self._ct = bytearray(nbytes)
        return self._ct

    def _scratch(self) -> memoryview:
        if self._ptv is None:
            raise ValueError("I/O operation on closed file")
        return self._ptv

    def _ct1(self) -> bytearray:
        # Single-block ciphertext buffer, separate from the chunk buffer so a
        # read-modify-write never clobbers ciphertext sealed earlier in a chunk.
        if self._ct_one is None:
            self._ct_one = bytearray(self._slot)
        return self._ct_one

    def _check_disk_size(self) -> None:
        # Cheap truncation/extension check: one fstat per call that reads the disk.
        actual = os.fstat(self._fd).st_size
        if actual != self._disk_end:
            change = "truncated" if actual < self._disk_end else "extended"
            raise self._integrity(
                f"backing file was {change}: {actual} bytes on disk, {self._disk_end} expected"
            )

    def _pread_exact(self, view: memoryview, offset: int) -> None:
        got = 0
        while got < len(view):
            n = os.preadv(self._fd, [view[got:]], offset + got)
            if n == 0:
                raise self._integrity("backing file is shorter than its blocks")
            got += n

    def _pwrite_all(self, view: memoryview, offset: int) -> None:
        """Write all of ``view``; on failure (e.g. ENOSPC) cut the backing file
        back to its expected length, so that one failed write does not make
        every later read report an extended file. Blocks the failed write
        touched then fail authentication (their counters were not advanced);
        no block ever reads back as data that was not written to it."""
        done = 0
        try:
            while done < len(view):
                done += os.pwrite(self._fd, view[done:], offset + done)
        except OSError:
            with contextlib.suppress(OSError):
                if os.fstat(self._fd).st_size > self._disk_end:
                    os.ftruncate(self._fd, self._disk_end)
            raise

    def _seal(self, jobs: Sequence[tuple[int, int, memoryview, memoryview]]) -> None:
        aead, fid = self._aead, self._file_id
        if aead is None:
            raise ValueError("I/O operation on closed file")
        for index, ctr, src, dst in jobs:
            # Nonce = the block's fresh counter value; AD = file id || block index.
            if _HAVE_INTO:
                aead.encrypt_into(ctr.to_bytes(12, "big"), src, fid + index.to_bytes(8, "big"), dst)
            else:
                dst[:] = aead.encrypt(
                    ctr.to_bytes(12, "big"), bytes(src), fid + index.to_bytes(8, "big")
                )

    def _open(self, jobs: Sequence[tuple[int, int, memoryview, memoryview]]) -> None:
        aead, fid = self._aead, self._file_id
        if aead is None:
            raise ValueError("I/O operation on closed file")
        for index, ctr, src, dst in jobs:
            try:
                if _HAVE_INTO:
                    aead.decrypt_into(
                        ctr.to_bytes(12, "big"), src, fid + index.to_bytes(8, "big"), dst
                    )
                else:
                    dst[:] = aead.decrypt(
                        ctr.to_bytes(12, "big"), bytes(src), fid + index.to_bytes(8, "big")
                    )
            except InvalidTag:
                # decrypt_into leaves unauthenticated plaintext behind: never let it out.
                dst[:] = self._zeros[: len(dst)]
                raise _TagFailure(index) from None

    def _load_block(self, index: int, length: int) -> memoryview:
        """Put block ``index``'s authenticated plaintext (``length`` stored bytes)
        into the scratch block and return the scratch view (tail not cleared)."""
        pt = self._scratch()
        ctr = self._ctr(index)
        if ctr == 0:
            pt[:length] = self._zeros[:length]
        elif not (self._cache_index == index and self._cache_ctr == ctr):
            self._cache_index = -1
            self._check_disk_size()
            ct = memoryview(self._ct1())[: length + TAG_SIZE]
            self._pread_exact(ct, index * self._slot)
            try:
                self._open([(index, ctr, ct, pt[:length])])
            except _TagFailure:
                raise self._integrity(
                    f"block {index} failed authentication (modified, moved or replayed)"
                ) from None
        self._cache_index, self._cache_ctr = index, ctr
        return pt

    def _grow_last_block(self, new_size: int, write_pos: int | None) -> None:
        """Before the size grows to ``new_size``: re-seal the current last block
        at its new stored length if it is partial, on disk, and not going to be
        rewritten by a write starting at ``write_pos`` (``None``: no write
        follows). It keeps its bytes; the new tail is zeros."""
        size, bs = self._size, self._bs
        if size % bs == 0:
            return
        last = size // bs
        if self._ctr(last) == 0:
            return
        if write_pos is not None and write_pos < (last + 1) * bs:
            return  # the write's read-modify-write of this block does it
        old_len = size - last * bs
        new_len = self._stored_len(last, new_size)
        pt = self._load_block(last, old_len)
        pt[old_len:new_len] = self._zeros[: new_len - old_len]
        self._cache_index = -1
        ctr = self._take_counters(1)
        ct = memoryview(self._ct1())[: new_len + TAG_SIZE]
        self._seal([(last, ctr, pt[:new_len], ct)])
        self._pwrite_all(ct, last * self._slot)
        self._ctrs[last] = ctr
        self._cache_index, self._cache_ctr = last, ctr
        self._size = last * bs + new_len
        self._disk_end = max(self._disk_end, last * self._slot + new_len + TAG_SIZE)

    def _write_range(self, pos: int, data: memoryview, new_size: int) -> None:
        first, last = pos // self._bs, (pos + len(data) - 1) // self._bs
        if len(self._ctrs) <= last:
            self._ctrs.extend(bytes(last + 1 - len(self._ctrs)))
        try:
            self._write_chunks(pos, data, new_size, first, last)
        finally:
            # After a failed write: the last entry must be the last block on disk
            # (the single-block read path relies on it to notice an extended file).
            ctrs = self._ctrs
            while ctrs and ctrs[-1] == 0:
                ctrs.pop()

    def _write_chunks(
        self, pos: int, data: memoryview, new_size: int, first: int, last: int
    ) -> None:
        # Hot loop of sequential writes: kept inline (no per-block calls or tuples).
        bs, slot, fid, aead = self._bs, self._slot, self._file_id, self._aead
        if aead is None:
            raise ValueError("I/O operation on closed file")
        end = pos + len(data)
        i = first
        while i <= last:
            j = min(last, i + self._chunk_blocks - 1)
            count = j - i + 1
            ctr0 = self._take_counters(count)
            nbytes = (count - 1) * slot + min(bs, new_size - j * bs) + TAG_SIZE
            ctv = memoryview(self._ct_buffer(nbytes))
            cached = -1
            start, off, ctr = i * bs, 0, ctr0
            k = i
            while k <= j:
                if _HAVE_INTO and start >= pos and start + bs <= end:
                    # A run of whole blocks that the caller's data replaces completely
                    # (all of a large sequential write): seal each straight from it.
                    # The per-block loop runs in C (map), its arguments are built by
                    # comprehensions: less than half the Python overhead of a for loop.
                    stop = min(j + 1, end // bs)
                    run, at = stop - k, start - pos
                    _consume(
                        map(
                            aead.encrypt_into,
                            # Nonce = each block's fresh counter value; AD = file id || index.
                            [c.to_bytes(12, "big") for c in range(ctr, ctr + run)],
                            [data[x : x + bs] for x in range(at, at + run * bs, bs)],
                            [fid + b.to_bytes(8, "big") for b in range(k, stop)],
                            [ctv[x : x + slot] for x in range(off, off + run * slot, slot)],
                        )
                    )
                    k, start, off, ctr = stop, stop * bs, off + run * slot, ctr + run
                    continue
                new_len = min(bs, new_size - start)
                if start >= pos and start + new_len <= end:
                    # Every stored byte is replaced: seal straight from the caller's data.
                    src = data[start - pos : start - pos + new_len]
                else:
                    src = self._merge_partial(k, start, pos, data, new_len)
                    cached = k
                # Nonce = this block's fresh counter value; AD = file id || block index.
                nonce, ad = ctr.to_bytes(12, "big"), fid + k.to_bytes(8, "big")
                if _HAVE_INTO:
                    aead.encrypt_into(nonce, src, ad, ctv[off : off + new_len + TAG_SIZE])
                else:
                    ctv[off : off + new_len + TAG_SIZE] = aead.encrypt(nonce, bytes(src), ad)
                k, start, off, ctr = k + 1, start + bs, off + slot, ctr + 1
            self._pwrite_all(ctv[:nbytes], i * slot)
            self._ctrs[i : j + 1] = array.array("Q", range(ctr0, ctr0 + count))
            if cached >= 0:
                self._cache_index, self._cache_ctr = cached, self._ctrs[cached]
            self._size = max(self._size, min(new_size, (j + 1) * bs))
            self._disk_end = max(self._disk_end, i * slot + nbytes)
            i = j + 1

    def _merge_partial(
        self, index: int, start: int, pos: int, data: memoryview, new_len: int
    ) -> memoryview:
        """Read-modify-write: the block's current plaintext (zeros where it had
        none) with the overlapping part of ``data`` copied in, in the scratch
        block; returns the ``new_len`` bytes to seal."""
        bs = self._bs
        end = pos + len(data)
        lo, hi = max(pos, start) - start, min(end, start + bs) - start
        old_len = max(0, min(bs, self._size - start)) if self._ctr(index) else 0
        pt = self._load_block(index, old_len) if old_len else self._scratch()
        self._cache_index = -1  # the scratch no longer matches any sealed block
        if new_len > old_len:
            pt[old_len:new_len] = self._zeros[: new_len - old_len]
        pt[lo:hi] = data[start + lo - pos : start + hi - pos]
        return pt[:new_len]

    def _read_one(self, index: int, lo: int, out: memoryview) -> None:
        """Fast path of :meth:`readinto` for a read inside block ``index``.

        Kept lean (it is most of the cost of small random reads). Instead of an
        ``fstat`` it checks the backing file's length with the read itself: a
        short read means truncated; for the last block on disk it asks for one
        byte more than expected, and getting it means extended.
        """
        ctrs = self._ctrs
        last = len(ctrs) - 1
        ctr = ctrs[index] if index <= last else 0
        if not ctr:  # sparse: zeros, the disk is not touched
            out[:] = self._zeros[: len(out)]
            return
        pt = self._ptv
        aead = self._aead
        if pt is None or aead is None:
            raise ValueError("I/O operation on closed file")
        if index == self._cache_index and ctr == self._cache_ctr:
            out[:] = pt[lo : lo + len(out)]
            return
        slot = self._slot
        if index < last:  # a stored block before the last one is always whole
            length, want = self._bs, slot
            bufs = self._ct1_mid
        else:
            length = self._size - index * self._bs
            if length >= self._bs:
                length, want = self._bs, slot
                bufs = self._ct1_all  # one byte more: getting it means extended
            else:
                want = length + TAG_SIZE
                bufs = [self._ct1v[: want + 1]]
        ct = self._ct1v
        got = os.preadv(self._fd, bufs, index * slot)
        if got != want:
            if got < want:
                got += self._pread_rest(ct[got:want], index * slot + got)
            if got != want:
                change = "extended" if got > want else "truncated"
                raise self._integrity(f"backing file was {change} (block {index})")
        # whole block: straight into the caller's buffer, else into the scratch block
        whole = lo == 0 and len(out) == length
        dst = out if whole else pt if length == self._bs else pt[:length]
        self._cache_index = -1
        try:
            if _HAVE_INTO:
                aead.decrypt_into(
                    ctr.to_bytes(12, "big"),
                    ct[:want],
                    self._file_id + index.to_bytes(8, "big"),
                    dst,
                )
            else:
                dst[:] = aead.decrypt(
                    ctr.to_bytes(12, "big"),
                    bytes(ct[:want]),
                    self._file_id + index.to_bytes(8, "big"),
                )
        except InvalidTag:
            dst[:] = self._zeros[: len(dst)]  # decrypt_into leaves unauthenticated plaintext
            raise self._integrity(
                f"block {index} failed authentication (modified, moved or replayed)"
            ) from None
        if not whole:
            self._cache_index, self._cache_ctr = index, ctr
            out[:] = pt[lo : lo + len(out)]

    def _pread_rest(self, view: memoryview, offset: int) -> int:
        """Keep reading after a short pread; returns how many more bytes came."""
        got = 0
        while got < len(view):
            n = os.preadv(self._fd, [view[got:]], offset + got)
            if n == 0:
                break
            got += n
        return got

    def _read_range(self, pos: int, out: memoryview) -> None:
        try:
            self._read_range_unchecked(pos, out)
        except BaseException:
            out[:] = bytes(len(out))  # no partial plaintext from a failed read
            raise

    def _read_range_unchecked(self, pos: int, out: memoryview) -> None:
        bs, slot = self._bs, self._slot
        end = pos + len(out)
        first, last = pos // bs, (end - 1) // bs
        checked = False
        i = first
        while i <= last:
            j = min(last, i + self._chunk_blocks - 1)
            ctrs = self._ctrs[i : j + 1]
            if len(ctrs) <= j - i:  # blocks past the last one on disk are sparse
                ctrs.extend(bytes(j - i + 1 - len(ctrs)))
            stored = [i + x for x, c in enumerate(ctrs) if c]
            ctv = memoryview(self._ct)
            base = 0
            if stored:
                if not checked:
                    self._check_disk_size()
                    checked = True
                k_hi = stored[-1]
                span_end = k_hi * slot + self._stored_len(k_hi, self._size) + TAG_SIZE
                span_start = stored[0] * slot
                ctv = memoryview(self._ct_buffer(span_end - span_start))
                self._pread_exact(ctv[: span_end - span_start], span_start)
                base = span_start
            partial: list[tuple[int, int, int, int, int]] = []
            size, fid, aead = self._size, self._file_id, self._aead
            if aead is None:
                raise ValueError("I/O operation on closed file")
            nxt = i
            while nxt <= j:
                k = nxt
                start = k * bs
                if _HAVE_INTO and start >= pos and start + bs <= end:
                    # A run of whole blocks the caller asked for completely (all of
                    # a large sequential read): decrypt each straight into its buffer.
                    stop = min(j + 1, end // bs)
                    dec, o, at = aead.decrypt_into, start - pos, k * slot - base
                    run, cs = stop - k, ctrs[k - i : stop - i]
                    if 0 not in cs:
                        # All stored (the common case): the loop runs in C, see _write_chunks.
                        try:
                            _consume(
                                map(
                                    dec,
                                    [c.to_bytes(12, "big") for c in cs],
                                    [ctv[x : x + slot] for x in range(at, at + run * slot, slot)],
                                    [fid + b.to_bytes(8, "big") for b in range(k, stop)],
                                    [out[x : x + bs] for x in range(o, o + run * bs, bs)],
                                )
                            )
                            nxt = stop
                            continue
                        except InvalidTag:
                            pass  # the loop below finds the failing block and raises
                    for b in range(k, stop):
                        ctr = ctrs[b - i]
                        if ctr:
                            try:
                                dec(
                                    ctr.to_bytes(12, "big"),
                                    ctv[at : at + slot],
                                    fid + b.to_bytes(8, "big"),
                                    out[o : o + bs],
                                )
                            except InvalidTag:
                                # The caller's buffer is zeroed by _read_range.
                                raise self._integrity(
                                    f"block {b} failed authentication (modified, moved or replayed)"
                                ) from None
                        else:
                            out[o : o + bs] = self._zeros
                        o, at = o + bs, at + slot
                    nxt = stop
                    continue
                ctr = ctrs[k - i]
                nxt = k + 1
                lo, hi = max(pos, start) - start, min(end, start + bs) - start
                dst = out[start + lo - pos : start + hi - pos]
                if ctr == 0:
                    dst[:] = self._zeros[: hi - lo]
                    continue
                length = min(bs, size - start)
                if lo == 0 and hi == length:  # whole block: straight into the caller's buffer
                    at = k * slot - base
                    src = ctv[at : at + length + TAG_SIZE]
                    nonce, ad = ctr.to_bytes(12, "big"), fid + k.to_bytes(8, "big")
                    try:
                        if _HAVE_INTO:
                            aead.decrypt_into(nonce, src, ad, dst)
                        else:
                            dst[:] = aead.decrypt(nonce, bytes(src), ad)
                    except InvalidTag:
                        # The caller's buffer is zeroed by _read_range.
                        raise self._integrity(
                            f"block {k} failed authentication (modified, moved or replayed)"
                        ) from None
                elif self._cache_index == k and self._cache_ctr == ctr:
                    dst[:] = self._scratch()[lo:hi]
                else:
                    partial.append((k, ctr, length, lo, hi))
            try:
                for k, ctr, length, lo, hi in partial:
                    pt = self._scratch()
                    at = k * slot - base
                    self._cache_index = -1
                    self._open([(k, ctr, ctv[at : at + length + TAG_SIZE], pt[:length])])
                    self._cache_index, self._cache_ctr = k, ctr
                    start = k * bs
                    out[start + lo - pos : start + hi - pos] = pt[lo:hi]
            except _TagFailure as exc:
                raise self._integrity(
                    f"block {exc.args[0]} failed authentication (modified, moved or replayed)"
                ) from None
            i = j + 1

    def _shrink(self, new: int) -> None:
        bs = self._bs
        if new % bs and self._ctr(new // bs):
            last = new // bs
            old_len = self._stored_len(last, self._size)
            new_len = new - last * bs
            pt = self._load_block(last, old_len)
            self._cache_index = -1
            ctr = self._take_counters(1)
            ct = memoryview(self._ct1())[: new_len + TAG_SIZE]
            self._seal([(last, ctr, pt[:new_len], ct)])
            self._pwrite_all(ct, last * self._slot)
            self._ctrs[last] = ctr
            self._cache_index, self._cache_ctr = last, ctr
        # Forget every block past the new end, then shrink the backing file to
        # exactly what the remaining blocks occupy.
        keep = -(-new // bs)
        if len(self._ctrs) > keep:
            del self._ctrs[keep:]
        while self._ctrs and self._ctrs[-1] == 0:
            self._ctrs.pop()
        if self._cache_index >= keep:
            self._cache_index = -1
        self._size = new
        if self._ctrs:
            hi = len(self._ctrs) - 1
            self._disk_end = hi * self._slot + self._stored_len(hi, new) + TAG_SIZE
        else:
            self._disk_end = 0
        os.ftruncate(self._fd, self._disk_end)


def _parse_raw_mode(mode: str) -> tuple[bool, bool, bool]:
    """FileIO-style raw mode -> (readable, writable, append)."""
    if not isinstance(mode, str):
        raise TypeError(f"mode must be str, not {type(mode).__name__}")
    table = {
        "rb": (True, False, False),
        "rb+": (True, True, False),
        "wb": (False, True, False),
        "ab": (False, True, True),
        "ab+": (True, True, True),
        "xb": (False, True, False),
        "xb+": (True, True, False),
    }
    if mode not in table:
        raise ValueError(f"invalid raw mode {mode!r}; expected one of {', '.join(table)}")
    return table[mode]


def open_encrypted(
    fd: int,
    mode: str = "w+b",
    buffering: int = -1,
    encoding: str | None = None,
    newline: str | None = None,
    errors: str | None = None,
    *,
    name: object = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> IO[Any]:
    """Open an encrypted file object over the new, empty backing file ``fd``,
    building the stack :func:`io.open` would: :class:`EncryptedRawIO`, then a
    buffered object (unless ``buffering=0`` in binary mode), then
    :class:`io.TextIOWrapper` in text mode.

    Accepts the modes :func:`tempfile.TemporaryFile` accepts and behaves like
    that mode on a fresh file (``"r"`` gives an empty read-only file, ``"a"``
    appends, ``"x"`` is like ``"w"``). ``buffering``: 0 unbuffered (binary
    only), 1 line buffering (text only; in binary mode a RuntimeWarning and the
    default, as with :func:`io.open`), >1 the buffer size, <0 the default.
    The object owns ``fd`` and closes it when closed (also when this function
    fails after creating it).

    Raises:
        TypeError: wrong argument types.
        ValueError: invalid mode or combination (e.g. ``buffering=0`` in text
            mode, an encoding in binary mode), or ``fd`` is not an empty
            regular file.
        LookupError: unknown ``encoding``.
        OSError: ``fstat`` of ``fd`` failed.
    """
    check_mode(mode, buffering, encoding, errors, newline)
    raw = EncryptedRawIO(fd, block_size=block_size, name=name, mode=raw_mode(mode))
    return wrap_raw(
        raw, mode, buffering, encoding, errors, newline, buffer_size=ENCRYPTED_BUFFER_SIZE
    )
