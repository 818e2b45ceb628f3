"""The raw encrypted file object: io.RawIOBase over a block map, a sealer and a backing file.

Invariants:

* only ciphertext reaches the backing file; the key lives only in the sealer
  (``_sealer``), in memory of this process;
* reads return authenticated plaintext or raise
  :class:`~hardtemp.exceptions.IntegrityError` after zeroing what the call
  had put into the caller's buffer; what the map says is authoritative (the
  disk cannot roll a block back, move it, shrink or grow the file unnoticed);
* every change to the backing file is a transaction (see ``_backing``): a
  write, truncate or re-seal that fails or is interrupted leaves every byte
  written by earlier calls readable and correct, and at most the bytes of
  that call lost; a pending transaction is settled (rolled back, or its
  ``ftruncate`` finished) before the next operation;
* the key is drawn in the process's protected seed area (:mod:`._secpool`; a
  pooled slot while that is in use) and zeroed there once ``AESGCM`` has it;
  plaintext scratch and the cached block live in protected memory set up at the
  first call that needs them (a block merged or read in part: a small file
  written and read whole never needs one), a pooled slot of :mod:`._secpool`
  for the default blocks, else :mod:`._secmem`; never shared with a forked
  child, which sees zeros there); a child may read, never write (nonce reuse),
  and never touches the backing file;
* one lock per object: every method is thread-safe;
* the block size is fixed before anything is stored: with ``block_size=None``
  the first write chooses it (``LARGE_BLOCK_SIZE`` for a write that fills such
  a block, ``SMALL_BLOCK_SIZE`` with 4-byte counters for one of at most that,
  else ``DEFAULT_BLOCK_SIZE``) while the file is empty, and any scratch memory
  is replaced (it held no plaintext yet); until then the file has
  the ``SMALL_BLOCK_SIZE`` geometry with 4-byte counters and a narrowed sealer,
  widened only while no counter was taken (a truncate that grows it first
  chooses ``DEFAULT_BLOCK_SIZE``);
* state: one counter per block up to the last stored block (8 bytes; 4 with
  ``SMALL_BLOCK_SIZE``, whose file refuses writes with ``EOVERFLOW`` once its
  2**32 - 1 counter values are used up, never reusing a nonce), plus about
  1 MiB of reused buffers; the file is never buffered whole.
"""

from __future__ import annotations

import array
import contextlib
import errno
import functools
import io
import operator
import os
import stat
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

from ..exceptions import InsecureOperationError, IntegrityError
from ._backing import Backing, Trim, Txn
from ._blockmap import BlockMap, Snapshot
from ._sealer import SEED_SIZE, TAG_SIZE, BlockSealer, TagFailure
from ._secmem import ProtectedMemory
from ._secpool import Protected, Seed, protected, seed_area

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "LARGE_BLOCK_SIZE",
    "MAX_BLOCK_SIZE",
    "MIN_BLOCK_SIZE",
    "SMALL_BLOCK_SIZE",
    "EncryptedRawIO",
]

#: Plaintext bytes per block; chosen from benchmarks/bench_crypt.py: a random
#: 4 KiB read must decrypt a whole block, so smaller is faster there, and 8 KiB
#: is the smallest size whose state (8 bytes per block) stays within 1 MiB per GiB.
DEFAULT_BLOCK_SIZE: Final = 8 * 1024
#: Block size of a file whose first write is at least this large (``block_size=None``):
#: a file written in large calls is mostly transferred in large calls, and each block
#: costs one AES-GCM call of ~1.6 us fixed cost (8x fewer than at 8 KiB; 1/8 the state).
LARGE_BLOCK_SIZE: Final = 64 * 1024
#: Block size of a file whose first write is at most this large (``block_size=None``):
#: a file written in small calls is mostly read in small calls, and a random 4 KiB read
#: must authenticate its whole block (half the AES work of 8 KiB). Its counters are
#: 4 bytes, so the state stays at 1 MiB per GiB (benchmarks/bench_crypt.py).
SMALL_BLOCK_SIZE: Final = 4 * 1024
MIN_BLOCK_SIZE: Final = 16
MAX_BLOCK_SIZE: Final = 16 * 1024 * 1024
_MAX_OFF_T: Final = 2**63 - 1
#: Ciphertext moved per pread/pwrite call (bounds the reused buffers, never the file).
_CHUNK_BYTES: Final = 1024 * 1024

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

# A weak reference to every file made; each removes itself when its file is collected
# (the callback is set.discard: no Python frame, unlike a WeakSet's add and removal).
_live: set[weakref.ref[EncryptedRawIO]] = set()


def _after_fork_in_child() -> None:
    # The parent keeps writing with the same key and counters: a child that wrote
    # would reuse nonces (exposing the GCM hash key and the XOR of plaintexts).
    for ref in list(_live):
        obj = ref()
        if obj is None:
            continue
        obj._forked = True
        obj._cache_index = -1  # the parent may rewrite that block: re-read (and fail) instead
        obj._lock = threading.Lock()  # may have been held by a parent thread at fork time


os.register_at_fork(after_in_child=_after_fork_in_child)


_RAW_MODES: Final = {
    "rb": (True, False, False),
    "rb+": (True, True, False),
    "wb": (False, True, False),
    "ab": (False, True, True),
    "ab+": (True, True, True),
    "xb": (False, True, False),
    "xb+": (True, True, False),
}
#: Zeros of the default block size, shared by every file (immutable).
_DEFAULT_ZEROS: Final = bytes(DEFAULT_BLOCK_SIZE)
_SMALL_ZEROS: Final = bytes(SMALL_BLOCK_SIZE)
_ZEROS_OF: Final = {DEFAULT_BLOCK_SIZE: _DEFAULT_ZEROS, SMALL_BLOCK_SIZE: _SMALL_ZEROS}
_NO_VIEW: Final = memoryview(b"")  # a closed file's buffers (immutable: shared)
#: The cached counter of a file without scratch memory yet: 0 matches no block, and it is
#: read-only (a block cached without a scratch would raise, never pass unnoticed).
_NO_COUNTER: Final = memoryview(bytes(8)).cast("Q")
_SEEK_SET: Final = os.SEEK_SET
_iobase_close: Final = io.RawIOBase.close
_new_tuple: Final = tuple.__new__  # a NamedTuple's instance without its Python __new__
_SEEK_CUR: Final = os.SEEK_CUR


def new_sealer(seed: Seed, *, narrow: bool) -> BlockSealer:
    """A sealer with a fresh key, drawn in ``seed``, the process's protected seed area
    (``seed_area(SEED_SIZE)``; a pooled slot of its own while another caller holds it).

    Raises:
        OSError: the protected memory cannot be mapped (``ENOMEM``); the OS CSPRNG failed.
    """
    if seed.lock.acquire(blocking=False):
        try:
            # A seed of the area's last draw, ours alone; the sealer zeroes it at once.
            return BlockSealer(seed.take(), narrow=narrow, drawn=True)
        finally:
            seed.lock.release()
    # Held (another thread, or a signal handler that interrupted its holder in this one):
    # never shared. An interrupt between the acquire and the try leaves it held: every
    # later key takes this path (slower, as safe).
    return _sealer_in_a_slot(narrow=narrow)


def seek_target(pos: int, offset: int, whence: int, size: Callable[[], int]) -> int:
    """Where a seek from ``pos`` by ``offset`` and ``whence`` lands (``size()``: the file's,
    asked for ``SEEK_END`` only), as :meth:`io.FileIO.seek` computes it.

    Raises:
        ValueError: ``whence`` is not 0, 1 or 2.
        OSError: ``EINVAL``: the position would be negative.
    """
    if whence == os.SEEK_SET:
        new = offset
    elif whence == os.SEEK_CUR:
        new = pos + offset
    elif whence == os.SEEK_END:
        new = size() + offset
    else:
        raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
    if new < 0:
        raise OSError(errno.EINVAL, "Invalid argument: negative seek position")
    return new


ZEROS: Final = memoryview(bytes(SMALL_BLOCK_SIZE))  # a block of zeros, sliced without a copy


def zero_small_buffer(raw: EncryptedRawIO) -> None:
    """Zero and drop the in-memory contents of a small file (``_small``'s
    ``MemoryFirstRawIO``), after its spill or at its close (also of one whose constructor
    failed half-way: whatever it had set up)."""
    d = raw.__dict__
    view = d.pop("_view", None)
    buf = d.pop("_buf", None)
    if view is not None:
        hw = d.get("_hw", SMALL_BLOCK_SIZE)  # the end of everything ever copied in
        view[:hw] = ZEROS[:hw]  # in place: the buffer is never reallocated
        view.release()
    elif buf is not None:
        buf[:] = ZEROS[: len(buf)]


def _sealer_in_a_slot(*, narrow: bool) -> BlockSealer:
    """A sealer whose key is drawn in a pooled slot of its own, zeroed at once.

    Raises:
        OSError: the slot cannot be mapped (``ENOMEM``); the OS CSPRNG failed.
    """
    mem = protected(SEED_SIZE)
    try:
        return BlockSealer(mem.view, mem.address, narrow=narrow)
    finally:
        mem.close()  # zeroed


def _parse_raw_mode(mode: str) -> tuple[bool, bool, bool]:
    """FileIO-style raw mode -> (readable, writable, append)."""
    if not isinstance(mode, str):
        raise TypeError(f"mode must be str, not {type(mode).__name__}")
    if mode not in _RAW_MODES:
        raise ValueError(f"invalid raw mode {mode!r}; expected one of {', '.join(_RAW_MODES)}")
    return _RAW_MODES[mode]


def _check_block_size(block_size: object) -> int:
    if block_size is None:
        return DEFAULT_BLOCK_SIZE  # until the first write chooses (see EncryptedRawIO)
    if not isinstance(block_size, int) or isinstance(block_size, bool):
        raise TypeError(f"block_size must be an int, not {type(block_size).__name__}")
    if not MIN_BLOCK_SIZE <= block_size <= MAX_BLOCK_SIZE:
        raise ValueError(
            f"block_size must be between {MIN_BLOCK_SIZE} and {MAX_BLOCK_SIZE}, got {block_size}"
        )
    return block_size


class EncryptedRawIO(io.RawIOBase):
    """Random-access AES-256-GCM encrypted file over a backing file descriptor.

    ``EncryptedRawIO(fd, *, block_size=None, closefd=True, name=None, mode="rb+")``

    ``block_size=None`` chooses per file at the first write: ``LARGE_BLOCK_SIZE``
    (64 KiB) if that write is at least that long (a file written in large
    calls), ``SMALL_BLOCK_SIZE`` (4 KiB) if it is at most that, else
    ``DEFAULT_BLOCK_SIZE`` (8 KiB). An int fixes it.

    ``fd`` must be an empty regular file opened read-write (normally an
    unnamed ``O_TMPFILE`` file). Once the constructor returns, this object
    owns it and closes it on :meth:`close` unless ``closefd`` is false; if the
    constructor raises, ``fd`` is left open and still the caller's. ``mode``
    is the :class:`io.FileIO` style mode (``"rb+"``, ``"rb"``, ``"wb"``,
    ``"ab"``, ``"ab+"``, ``"xb"``, ``"xb+"``); it only restricts what this
    object allows. ``name`` is exposed as ``.name``. ``_fresh`` (internal): the
    caller has just created ``fd`` and verified it (an empty regular file of
    ours), so it is not ``fstat``-ed again.

    Guarantees: see the module docstring (one fresh key per file, unique
    nonces also across ``fork()``, authenticated reads, failure atomicity per
    block update, thread safety, bounded state).

    Raises:
        TypeError: ``fd`` or ``block_size`` is not an int.
        ValueError: ``block_size`` out of range, bad ``mode``, or ``fd`` is not
            an empty regular file.
        OSError: ``fstat`` of ``fd`` fails (e.g. ``EBADF``); the protected
            memory the key is drawn in cannot be mapped (``ENOMEM``); the OS
            CSPRNG cannot be read.
    """

    # The state every read, seek and write uses lives in slots: an attribute in the
    # instance dict of an io.RawIOBase subclass cannot use CPython's fast attribute
    # paths (its base is a C type with its own dict), and costs ~3x a slot's load.
    __slots__ = (
        "_append",
        "_auto",
        "_birth",
        "_bs",
        "_cache_index",
        "_cc",
        "_ct1_all",
        "_ct1_mid",
        "_ct1_slot",
        "_ct1v",
        "_discard",
        "_fd",
        "_forked",
        "_io",
        "_lock",
        "_map",
        "_mem",
        "_pending",
        "_pos",
        "_pt",
        "_readable",
        "_sealer",
        "_slot",
        "_writable",
        "_zeros",
    )
    _fd: int
    _sealer: BlockSealer | None
    _mem: Protected | None
    _pt: memoryview | None
    _birth: ProtectedMemory
    _pending: Txn | Trim | None
    _forked: bool
    _discard: int  # > 0: a forked child dropping its buffered layer's writes (_forkdrop)
    # Class-level defaults make close()/__del__ safe on a half-initialised object.
    _closefd: bool = False
    _ct_one: bytearray | None = None
    _ct1_all: tuple[memoryview, ...]
    _ct1_mid: tuple[memoryview, ...]
    name: Any = None

    def __init__(
        self,
        fd: int,
        *,
        block_size: int | None = None,
        closefd: bool = True,
        name: object = None,
        mode: str = "rb+",
        _fresh: bool = False,
    ) -> None:
        # No super().__init__(): io.RawIOBase's is object's (nothing to set up).
        # First, before anything can fail: close()/__del__ read these.
        self._fd, self._sealer, self._mem, self._pt, self._pending = -1, None, None, None, None
        self._forked, self._discard = False, 0
        self._lock = threading.Lock()
        if fd.__class__ is not int and (not isinstance(fd, int) or isinstance(fd, bool)):
            raise TypeError(f"fd must be an int, not {type(fd).__name__}")
        auto = block_size is None  # the first write chooses the block size
        bs = SMALL_BLOCK_SIZE if auto else _check_block_size(block_size)
        flags = _RAW_MODES.get(mode) if mode.__class__ is str else None
        self._readable, self._writable, self._append = flags or _parse_raw_mode(mode)
        if not _fresh:  # else the caller has just made fd and verified it (internal)
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ValueError(f"fd {fd} is not a regular file")
            if st.st_size != 0:
                # Existing bytes cannot be authenticated (we have no key for them).
                raise ValueError(f"fd {fd} is not empty: an encrypted file must start empty")
        self.name = name
        self.mode = mode
        self._io = Backing(fd)
        self._pos = 0
        self._ct = bytearray()  # reused ciphertext buffer, grown up to one chunk
        self._auto = auto
        # The key and file id come from the process's protected seed area (set up once per
        # process, not per file: no slot to take and give back for a file that never needs
        # plaintext scratch; one getrandom for the seeds of many files, not one ctypes
        # call each). Its canary tells a forked child however it was forked.
        seed = seed_area(SEED_SIZE)
        self._birth = seed.mem
        # The provisional 4 KiB blocks keep 4-byte counters (narrow): else nonce reuse.
        self._sealer = new_sealer(seed, narrow=auto)
        self._set_geometry(bs, None, wide=not auto)
        # Last, after everything that can fail: from here on the descriptor is ours
        # (a failed constructor closing it would hit whatever file reuses the number).
        self._fd = fd
        self._closefd = bool(closefd)
        _live.add(weakref.ref(self, _live.discard))

    def _set_geometry(self, bs: int, mem: Protected | None, *, wide: bool = True) -> None:
        """Block size ``bs`` with ``mem`` (scratch block | cached counter) as the
        protected memory (``None``: set up when first needed, see :meth:`_scratch`),
        8-byte counters unless not ``wide``; only while nothing is stored."""
        slot = bs + TAG_SIZE
        # One statement of plain stores: no signal handler can run between them. The
        # single-block read buffer comes at the first read that needs it (_read_one):
        # until then the inline read's preadv into no buffer reads 0 bytes, and falls
        # through to the general path, which sets it up.
        (
            self._map,
            self._bs,
            self._slot,
            self._chunk_blocks,
            self._zeros,
            self._ct_one,
            self._ct1v,
            self._ct1_all,
            self._ct1_mid,
            self._ct1_slot,
            self._mem,
            self._pt,
            self._cc,
            self._cache_index,  # block whose current plaintext is in the scratch block
        ) = (
            BlockMap(bs, wide=wide),
            bs,
            slot,
            max(1, _CHUNK_BYTES // bs),
            _ZEROS_OF.get(bs) or bytes(bs),
            None,
            _NO_VIEW,
            (),
            (),
            _NO_VIEW,
            mem,
            None if mem is None else mem.view[:bs],
            _NO_COUNTER if mem is None else mem.view[bs : bs + 8].cast("Q"),
            -1,
        )

    def _new_ct1(self) -> memoryview:
        """Set up the single-block read buffer (ciphertext only) and its views; returns it."""
        slot = self._slot
        ct1v = memoryview(bytearray(slot + 1))  # one byte more: the file was extended?
        ct1_slot = ct1v[:slot]
        # One statement: installed whole.
        self._ct1v, self._ct1_all, self._ct1_mid, self._ct1_slot = (
            ct1v,
            (ct1v,),
            (ct1_slot,),
            ct1_slot,
        )
        return ct1v

    def _choose_block_size(self, first_write: int) -> None:
        """At the first write (or growing truncate) of a ``block_size=None`` file:
        large blocks if that write fills one (see ``LARGE_BLOCK_SIZE``), the
        provisional small ones (4-byte counters) if it is at most
        ``SMALL_BLOCK_SIZE``, else the default ones. The file is still empty, so
        only memory changes; if the larger scratch cannot be mapped, the file
        quietly takes the default blocks."""
        self._auto = False
        if self._map.size or self._pending is not None:  # pragma: no cover - never: empty
            return
        if first_write <= SMALL_BLOCK_SIZE:
            return
        sealer, old, pt, cc = self._sealer_or_closed(), self._mem, self._pt, self._cc
        mem: Protected | None = None
        if first_write >= LARGE_BLOCK_SIZE:
            with contextlib.suppress(OSError):  # no memory for it: the default blocks
                mem = ProtectedMemory(LARGE_BLOCK_SIZE + 8)
        sealer.widen()  # no counter was taken yet: 8-byte counters from the start
        self._set_geometry(LARGE_BLOCK_SIZE if mem is not None else DEFAULT_BLOCK_SIZE, mem)
        if old is not None and pt is not None:  # a scratch of the provisional blocks
            pt.release()
            cc.release()
            old.close()  # held no plaintext yet (nothing was written); zeroed anyway

    # --- io.RawIOBase protocol -------------------------------------------------------------

    def readable(self) -> bool:
        if self._fd < 0:  # closed (see _check_open): a slot, not the property
            raise ValueError("I/O operation on closed file")
        return self._readable

    def writable(self) -> bool:
        if self._fd < 0:  # closed (see _check_open): a slot, not the property
            raise ValueError("I/O operation on closed file")
        return self._writable

    def seekable(self) -> bool:
        if self._fd < 0:  # closed (see _check_open); io.BufferedRandom asks before every seek
            raise ValueError("I/O operation on closed file")
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
        if self._fd < 0:  # closed (see _check_open): a slot, not the property
            raise ValueError("I/O operation on closed file")
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the position like :meth:`io.FileIO.seek` (whence 0, 1 or 2).

        Raises:
            ValueError: closed file, or unsupported ``whence``.
            OSError: ``EINVAL`` if the resulting position would be negative;
                settling an interrupted update failed.
            TypeError: ``offset`` is not an integer.
        """
        if self._fd < 0:  # closed (see _check_open)
            raise ValueError("I/O operation on closed file")
        if offset.__class__ is not int:
            offset = operator.index(offset)
        if whence == _SEEK_CUR and offset == 0:
            return self._pos  # what io.BufferedRandom asks before every read: a plain tell()
        if whence == _SEEK_SET and offset >= 0:
            self._pos = offset  # one store: consistent without the lock, as in tell()
            return offset
        with self._lock:
            self._pos = new = seek_target(self._pos, offset, whence, self._size_locked)
            return new

    def read(self, size: int | None = -1) -> bytes:
        """As :meth:`io.FileIO.read`: ``None`` or a negative size reads to the end."""
        return super().read(-1 if size is None else size)

    def readinto(self, buffer: WriteableBuffer) -> int:
        """Read up to ``len(buffer)`` bytes at the current position; returns the
        number read (0 at end of file, fewer only at the end of file).

        Raises:
            IntegrityError: the backing file does not hold what this object
                wrote (modified, moved, replayed, truncated or extended). The
                part of ``buffer`` this call wrote is zeroed first.
            io.UnsupportedOperation: the file is not readable (mode).
            ValueError: the file is closed.
            OSError: reading the backing file failed; ``ENOMEM`` when the
                protected scratch memory a part of a block needs cannot be mapped.
        """
        if self._fd < 0:  # closed (see _check_open)
            raise ValueError("I/O operation on closed file")
        if not self._readable:
            raise io.UnsupportedOperation("File not open for reading")
        with self._lock:
            sealer, pos, bs, ctrs = self._sealer, self._pos, self._bs, self._map.ctrs
            k = pos // bs
            # The common random read, inline: a whole stored block before the last one
            # (so all inside the file) into a writable contiguous memoryview of its size
            # (a 4 KiB read of 4 KiB blocks through the buffered layer): one preadv,
            # decrypted straight into the caller's buffer. Anything else, a short read
            # included, takes the general path (which reports truncation and tampering).
            if (
                pos == k * bs
                and k < len(ctrs) - 1
                and self._pending is None
                and sealer is not None  # else closed meanwhile (_fd is then -1)
                and buffer.__class__ is memoryview
                and buffer.nbytes == bs
                and buffer.format == "B"  # bytes (a 'Q' view: the general path casts it)
                and buffer.ndim == 1  # (a 2-D byte view too)
                and buffer.c_contiguous
                and not buffer.readonly
            ):
                ctr, slot = ctrs[k], self._slot
                if ctr and os.preadv(self._fd, self._ct1_mid, k * slot) == slot:
                    self._open_into(sealer, k, ctr, buffer)
                    self._pos = pos + bs
                    return bs
            return self._readinto_locked(buffer)

    def _open_into(self, sealer: BlockSealer, k: int, ctr: int, out: memoryview) -> None:
        """Block ``k``'s ciphertext, in the single-block buffer, opened into ``out``
        (all of it); on any failure ``out`` is zeroed first (no unauthenticated
        plaintext, nor plaintext of a read that raised)."""
        try:
            sealer.open(k, ctr, self._ct1_slot, out)
        except BaseException as exc:
            out.cast("B")[:] = self._zeros[: out.nbytes]
            if isinstance(exc, TagFailure):
                raise self._tag_failed(k) from None
            raise

    def _readinto_locked(self, buffer: WriteableBuffer) -> int:
        """:meth:`readinto`'s general path, under the lock. Raises: as :meth:`readinto`."""
        self._still_open()
        out = memoryview(buffer)
        if out.format != "B" or out.ndim != 1:
            out = out.cast("B")
        if self._pending is not None:
            self._settle()
        pos = self._pos
        n = self._map.size - pos
        if n <= 0:
            return 0
        if len(out) < n:
            n = len(out)
        elif len(out) > n:
            out = out[:n]
        k = pos // self._bs
        lo = pos - k * self._bs
        try:
            if lo + n <= self._bs:  # the common small read: one block
                self._read_one(k, lo, out)
            else:
                self._read_range(pos, out)
        except BaseException:
            out[:] = bytes(n)  # no partial plaintext from a failed read
            raise
        self._pos = pos + n
        return n

    def readall(self) -> bytes:
        """Read from the current position to the end of file (see :meth:`readinto`)."""
        if self._fd < 0:  # closed (see _check_open)
            raise ValueError("I/O operation on closed file")
        if not self._readable:
            raise io.UnsupportedOperation("File not open for reading")
        with self._lock:  # one lock for the size and the read: no other writer between
            if self._pending is not None:
                self._settle()
            m, pos, bs, sealer = self._map, self._pos, self._bs, self._sealer
            remaining = m.size - pos
            if remaining <= 0:
                return b""
            k = pos // bs
            # A small file read whole (what BufferedRandom.read() asks): the rest is all of
            # the last block, which is stored. One preadv (one byte more than the block:
            # getting it means extended) and one decrypt into the bytes returned; anything
            # else, a short or long read included, takes the general path, which reports it.
            if (
                pos == k * bs
                and k == len(m.ctrs) - 1
                and remaining <= bs
                and sealer is not None  # else closed meanwhile (_fd is then -1)
            ):
                want = remaining + TAG_SIZE
                ct = os.pread(self._fd, want + 1, k * self._slot)  # ciphertext: a bytes is fine
                if len(ct) == want:
                    try:
                        # On a failed tag the garbage freed here is the keystream XOR the
                        # attacker's bytes, in the heap that also holds the key schedule.
                        data = sealer.open_bytes(k, m.ctrs[k], ct)
                    except TagFailure:
                        raise self._tag_failed(k) from None
                    self._pos = pos + remaining
                    return data
            buf = bytearray(remaining)
            got = self._readinto_locked(buf)
        data = bytes(buf) if got == remaining else bytes(memoryview(buf)[:got])
        buf[:] = bytes(remaining)  # do not leave a second plaintext copy behind
        return data

    def write(self, b: ReadableBuffer) -> int:
        """Encrypt and write all of ``b`` at the current position (at the end in
        append mode); returns ``len(b)``. Writing past the end leaves a sparse,
        zero-reading hole.

        If it raises, every byte written by earlier calls is still readable and
        correct; of this call's bytes, each block update either fully happened
        or not at all.

        Raises:
            InsecureOperationError: called in a process forked after this file
                was created (would reuse nonces).
            IntegrityError: a block that is partly overwritten failed
                authentication while being read back.
            io.UnsupportedOperation: the file is not writable (mode).
            ValueError: the file is closed.
            OSError: ``EFBIG`` past the largest file offset; ``EOVERFLOW`` when
                the counters are exhausted; writing the backing file failed
                (e.g. ``ENOSPC``, ``EIO``); ``ENOMEM`` when the protected scratch
                memory a block merge needs cannot be mapped (before that block's
                update: as any failure, see above).
        """
        if self._fd < 0:  # closed (see _check_open): a slot, not the property
            raise ValueError("I/O operation on closed file")
        # _check_writable's questions first, inline (its call only when one says no).
        if (not self._writable or self._forked or self._birth.forked) and self._check_writable():
            return memoryview(b).nbytes  # discarded: never written, never sealed
        with memoryview(b) as view:
            if view.ndim == 1 and view.format == "B":  # bytes, or the buffered layer's flush
                with self._lock:
                    return self._write_locked(view)
            with view.cast("B") as data, self._lock:
                return self._write_locked(data)

    def _write_locked(self, data: memoryview) -> int:
        """:meth:`write` of the bytes ``data``, under the lock. Raises: as :meth:`write`."""
        if self._fd < 0:  # _still_open, inline
            raise ValueError("I/O operation on closed file")
        n = len(data)
        if n == 0:
            return 0
        if self._pending is not None:
            self._settle()
        if self._auto:
            if n <= SMALL_BLOCK_SIZE:
                self._auto = False  # what _choose_block_size decides: the provisional blocks
            else:
                self._choose_block_size(n)
        m, bs = self._map, self._bs
        pos = m.size if self._append else self._pos
        end = pos + n
        if pos == m.size == len(m.ctrs) * bs and n <= bs:
            # The small file's write: one new block at the end (its size check inline: the
            # file's blocks plus this one must fit in off_t, as _check_size_limit asks).
            if (len(m.ctrs) + 1) * self._slot > _MAX_OFF_T:
                raise OSError(errno.EFBIG, f"File too large: {end} bytes")
            self._append_block(data)
        else:
            self._check_size_limit(end)
            if end > m.size:
                self._grow_last_block(end, pos)
            self._write_range(pos, data, max(end, m.size))
        self._pos = end
        return n

    def truncate(self, size: int | None = None) -> int:
        """Resize the file to ``size`` bytes (default: the current position);
        the position does not move. Growing adds a sparse hole that reads as
        zeros; shrinking frees the ciphertext beyond. Atomic: if it raises, the
        file keeps its old size and contents.

        Raises:
            InsecureOperationError: called in a forked child (see :meth:`write`).
            IntegrityError: the block cut in the middle failed authentication.
            io.UnsupportedOperation: the file is not writable.
            ValueError: the file is closed.
            OSError: ``EINVAL`` for a negative size; ``EFBIG`` past the largest
                file offset; writing or ``ftruncate`` failed; ``ENOMEM`` as
                :meth:`write`.
        """
        self._check_open()
        if self._check_writable():
            raise InsecureOperationError(self._err_path(), _FORK_MESSAGE)
        with self._lock:
            self._still_open()
            new = self._pos if size is None else operator.index(size)
            if new < 0:
                raise OSError(errno.EINVAL, "Invalid argument: negative size")
            if self._pending is not None:
                self._settle()
            if self._auto and new > self._map.size:
                # Grown before its first write: the default blocks (not the provisional 4 KiB).
                self._choose_block_size(DEFAULT_BLOCK_SIZE)
            m = self._map
            if new > m.size:
                self._check_size_limit(new)
                if not self._grow_last_block(new, None, grow_to=new):
                    m.grow(new)  # one store: nothing on disk changes
            elif new < m.size:
                self._shrink(new)
            return new

    def flush(self) -> None:
        """Nothing is buffered in this object; checks that it is open."""
        # The property, not the descriptor: a constructor that failed leaves the descriptor
        # at -1 and the object open, and its close (IOBase.close flushes first) must work.
        # (The descriptor first: an open file's flush, every close's, asks nothing more.)
        if self._fd < 0:
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

    def _close_locked(self, *, release_fd: bool = False) -> None:
        try:
            _iobase_close(self)  # (flushes, then marks it closed; no super object)
        finally:
            if "_buf" in self.__dict__:
                zero_small_buffer(self)  # a small file's, left by a spill interrupted after it
            if self._sealer is not None:
                self._sealer.close()  # the only reference to the key schedule
                self._sealer = None
            self._cache_index = -1
            if self._pt is not None:
                self._pt.release()
                self._cc.release()
                self._pt = None
            if self._mem is not None:
                self._mem.close()  # zeroes the scratch and the cached counter
                self._mem = None
            # Ciphertext buffers only (nothing secret): dropped for shared empty ones.
            # (Unconditionally: a constructor that failed early never set them.)
            self._ct, self._ct_one = bytearray(), None
            self._ct1v = self._ct1_slot = _NO_VIEW
            self._ct1_all = self._ct1_mid = ()
            if hasattr(self, "_map"):  # absent when the constructor failed early
                self._map.ctrs = array.array("Q")
                self._io.release()
            fd, self._fd = self._fd, -1
            if self._closefd and fd >= 0 and not release_fd:
                os.close(fd)

    def __reduce__(self) -> Any:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object (it holds a key)")

    def __repr__(self) -> str:
        state = "closed" if self.closed or not hasattr(self, "_map") else f"size={self._map.size}"
        return f"<hardtemp.EncryptedRawIO name={self.name!r} block_size={self._bs} {state}>"

    # --- checks ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        # The hot paths test ``self._fd < 0`` instead (a slot, not the property's dict
        # lookup): the same, since the descriptor is set last in __init__ and dropped
        # by close (which holds the lock from its start to that point).
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def _size_locked(self) -> int:
        """The logical size, under the lock (an interrupted update settled first)."""
        self._still_open()
        if self._pending is not None:
            self._settle()
        return self._map.size

    def _still_open(self) -> None:
        # Under the lock: a close() by another thread may have run while this call waited
        # for it (the check before the lock passed), emptying the block map but not its
        # size: a read would return zeros as data, a write seal under a dropped key (review8).
        if self._fd < 0:
            raise ValueError("I/O operation on closed file")

    def _in_child(self) -> bool:
        # The fork hook, or (for a fork that bypassed Python's hooks) the wiped canary.
        return self._forked or self._birth.forked

    def _check_writable(self) -> bool:
        """Raise unless this process may write; True: discard the write (see
        :meth:`discarding_writes`)."""
        if not self._writable:
            raise io.UnsupportedOperation("File not open for writing")
        if self._in_child():
            self._forked = True
            if self._discard:
                return True
            raise InsecureOperationError(self._err_path(), _FORK_MESSAGE)
        return False

    @contextlib.contextmanager
    def discarding_writes(self) -> Iterator[None]:
        """In a forked child, while inside: :meth:`write` accepts and drops its
        bytes (the buffered layer's unflushed writes from before the fork) without
        touching the backing file, whose nonces the parent keeps using. In the
        parent this changes nothing: writes are written."""
        self._discard += 1
        try:
            yield
        finally:
            self._discard -= 1

    def _check_size_limit(self, size: int) -> None:
        # Every stored block's offset must fit in off_t; like a filesystem's own
        # limit, refuse with EFBIG instead of failing deep inside pwrite.
        if -(-size // self._bs) * self._slot > _MAX_OFF_T:
            raise OSError(errno.EFBIG, f"File too large: {size} bytes")

    def _err_path(self) -> str | None:
        return self.name if isinstance(self.name, str) else None

    def _integrity(self, reason: str) -> IntegrityError:
        return IntegrityError(self._err_path(), reason)

    def _tag_failed(self, index: int) -> IntegrityError:
        return self._integrity(f"block {index} failed authentication (modified, moved or replayed)")

    def _check_disk_size(self) -> None:
        # Cheap truncation/extension check: one fstat per chunk that reads the disk.
        actual, expected = self._io.length(), self._map.disk_end
        if actual != expected:
            change = "truncated" if actual < expected else "extended"
            raise self._integrity(
                f"backing file was {change}: {actual} bytes on disk, {expected} expected"
            )

    # --- buffers and cache -----------------------------------------------------------------

    def _ct_buffer(self, nbytes: int) -> memoryview:
        if len(self._ct) < nbytes:
            self._ct = bytearray(nbytes)
        return memoryview(self._ct)

    def _ct1(self) -> memoryview:
        # Single-block ciphertext buffer, separate from the chunk buffer so a
        # read-modify-write never clobbers ciphertext sealed earlier in a chunk.
        if self._ct_one is None:
            self._ct_one = bytearray(self._slot)
        return memoryview(self._ct_one)

    def _scratch(self) -> memoryview:
        """The plaintext scratch block, set up at the first call that needs it.

        Raises:
            ValueError: the file is closed.
            OSError: the protected memory cannot be mapped (``ENOMEM``).
        """
        pt = self._pt
        if pt is None:
            if self._fd < 0:
                raise ValueError("I/O operation on closed file")
            bs = self._bs
            mem = protected(bs + 8)  # scratch block | the cached block's counter
            pt = mem.view[:bs]
            # One statement of stores: installed whole (an interrupt before it: a leak).
            self._mem, self._pt, self._cc = mem, pt, mem.view[bs:].cast("Q")
        return pt

    def _sealer_or_closed(self) -> BlockSealer:
        if self._sealer is None:
            raise ValueError("I/O operation on closed file")
        return self._sealer

    def _set_cache(self, index: int, ctr: int) -> None:
        # Counters are unique per file, so a torn update of the pair never matches.
        self._cc[0] = ctr
        self._cache_index = index

    def _cached(self, index: int, ctr: int) -> bool:
        return index == self._cache_index and ctr == self._cc[0]

    # --- transactions (design: see _backing) -----------------------------------------------

    def _settle(self) -> None:
        """Finish what an interrupted or failed update left pending.

        Raises:
            OSError: the rollback or trim failed; it stays pending.
        """
        pending = self._pending
        if pending is None or self._in_child():
            return  # a forked child never writes the backing file it shares
        self._cache_index = -1
        if isinstance(pending, Trim):
            self._io.trim(pending.length)
        else:
            self._io.rollback(pending)
            self._map.restore(pending.snap)
        self._pending = None

    def _abort(self) -> None:
        # On failure it stays pending: the next operation retries, and raises until it succeeds.
        with contextlib.suppress(OSError):
            self._settle()

    def _update(
        self, first: int, last: int, offset: int, ct: memoryview, commit: Callable[[], None]
    ) -> None:
        """Write ``ct`` (the new ciphertext of blocks ``first..last``) at
        ``offset`` and ``commit()`` the map, as one transaction."""
        m = self._map
        txn = self._io.begin(m.stored_segments(first, last), m.disk_end, m.snapshot(first, last))
        self._pending = txn  # published before the file is touched
        try:
            self._io.write_all(ct, offset)
            commit()
        except BaseException:
            self._abort()
            raise
        self._pending = None  # the commit point

    # --- writing ---------------------------------------------------------------------------

    def _append_block(self, data: memoryview) -> None:
        """Fast path of :meth:`write`: ``data`` (at most one block) becomes a new
        block right after the last one, in a file whose every block is stored
        and whole. Nothing on disk is overwritten, so the transaction's undo is
        only the old length (see :meth:`_update`)."""
        m, sealer = self._map, self._sealer
        if sealer is None:  # pragma: no cover - the caller checked, under the lock
            raise ValueError("I/O operation on closed file")
        index, ctr = len(m.ctrs), sealer.take(1)
        ct = sealer.seal_bytes(index, ctr, data)  # ciphertext only: a new bytes object is fine
        end = m.disk_end
        # Published before the file changes (what m.snapshot(index, index) returns, built
        # as the tuple it is: no Python-level __new__).
        snap = _new_tuple(Snapshot, (m.size, end, index, index, m.ctrs[index:index]))
        self._pending = Txn([], end, snap)
        try:
            offset = index * self._slot
            done = os.pwrite(self._fd, ct, offset)  # all of it, almost always
            if done < len(ct):
                self._io.write_all(memoryview(ct)[done:], offset + done)
            m.append(ctr, len(data))
        except BaseException:
            self._abort()  # ENOSPC, EIO, or an interrupt: back to the old length and map
            raise
        self._pending = None  # the commit point

    def _write_range(self, pos: int, data: memoryview, new_size: int) -> None:
        bs = self._bs
        first, last = pos // bs, (pos + len(data) - 1) // bs
        i = first
        while i <= last:
            j = min(last, i + self._chunk_blocks - 1)
            self._write_chunk(i, j, pos, data, new_size)
            i = j + 1

    def _write_chunk(self, i: int, j: int, pos: int, data: memoryview, new_size: int) -> None:
        m, count = self._map, j - i + 1
        ctr0 = self._sealer_or_closed().take(count)
        nbytes = m.chunk_bytes(i, j, new_size)
        ctv = self._ct_buffer(nbytes)
        cached = self._seal_chunk(i, j, ctr0, pos, data, new_size, ctv)
        commit = functools.partial(m.commit_run, i, ctr0, count, new_size)
        self._update(i, j, i * self._slot, ctv[:nbytes], commit)
        if cached >= 0:
            self._set_cache(cached, ctr0 + cached - i)

    def _seal_chunk(
        self,
        i: int,
        j: int,
        ctr0: int,
        pos: int,
        data: memoryview,
        new_size: int,
        ctv: memoryview,
    ) -> int:
        """Seal blocks ``i..j`` of the file with ``data`` written at ``pos`` into
        ``ctv``; returns the block whose plaintext is left in the scratch, or -1."""
        bs, slot, sealer = self._bs, self._slot, self._sealer_or_closed()
        end = pos + len(data)
        cached = -1
        k = i
        while k <= j:
            start, off = k * bs, (k - i) * slot
            if start >= pos and start + bs <= end:
                # A run of whole blocks the caller's data replaces (all of a large
                # sequential write): seal each straight from it, the loop in C.
                stop = min(j + 1, end // bs)
                at = start - pos
                srcs = [data[x : x + bs] for x in range(at, at + (stop - k) * bs, bs)]
                dsts = [ctv[x : x + slot] for x in range(off, off + (stop - k) * slot, slot)]
                sealer.seal_run(k, ctr0 + k - i, srcs, dsts)
                k = stop
                continue
            new_len = min(bs, new_size - start)
            if start >= pos and start + new_len <= end:
                src = data[start - pos : start - pos + new_len]  # every stored byte replaced
            else:
                src = self._merge_partial(k, start, pos, data, new_len)
                cached = k
            sealer.seal(k, ctr0 + k - i, src, ctv[off : off + new_len + TAG_SIZE])
            k += 1
        return cached

    def _merge_partial(
        self, index: int, start: int, pos: int, data: memoryview, new_len: int
    ) -> memoryview:
        """Read-modify-write: the block's current plaintext (zeros where it had
        none) with the overlapping part of ``data`` copied in, in the scratch
        block; returns the ``new_len`` bytes to seal."""
        m, bs = self._map, self._bs
        end = pos + len(data)
        lo, hi = max(pos, start) - start, min(end, start + bs) - start
        old_len = max(0, min(bs, m.size - start)) if m.ctr(index) else 0
        pt = self._load_block(index, old_len) if old_len else self._scratch()
        self._cache_index = -1  # the scratch no longer matches any sealed block
        if new_len > old_len:
            pt[old_len:new_len] = self._zeros[: new_len - old_len]
        pt[lo:hi] = data[start + lo - pos : start + hi - pos]
        return pt[:new_len]

    def _load_block(self, index: int, length: int) -> memoryview:
        """Put block ``index``'s authenticated plaintext (``length`` stored bytes)
        into the scratch block and return the scratch view (tail not cleared)."""
        pt = self._scratch()
        ctr = self._map.ctr(index)
        if ctr == 0:
            pt[:length] = self._zeros[:length]
            self._cache_index = -1
            return pt
        if not self._cached(index, ctr):
            self._cache_index = -1
            self._check_disk_size()
            ct = self._ct1()[: length + TAG_SIZE]
            if self._io.read_full(ct, index * self._slot) != len(ct):
                raise self._integrity("backing file is shorter than its blocks")
            self._open(index, ctr, ct, pt[:length])
            self._set_cache(index, ctr)
        return pt

    def _reseal_cut(self, index: int, old_len: int, new_len: int) -> tuple[int, memoryview]:
        """Seal block ``index`` at ``new_len`` bytes (its first ``old_len`` from
        the disk, the rest zeros) into the single-block buffer; returns (ctr, ct)."""
        pt = self._load_block(index, old_len)
        self._cache_index = -1
        if new_len > old_len:
            pt[old_len:new_len] = self._zeros[: new_len - old_len]
        sealer = self._sealer_or_closed()
        ctr = sealer.take(1)
        ct = self._ct1()[: new_len + TAG_SIZE]
        sealer.seal(index, ctr, pt[:new_len], ct)
        return ctr, ct

    def _grow_last_block(
        self, new_size: int, write_pos: int | None, *, grow_to: int | None = None
    ) -> bool:
        """Before the size grows to ``new_size``: re-seal the current last block
        at its new stored length if it is partial, on disk, and not going to be
        rewritten by a write starting at ``write_pos`` (``None``: no write
        follows). It keeps its bytes; the new tail is zeros. With ``grow_to``
        the size becomes that in the same transaction (an atomic truncate up).
        Returns whether it re-sealed."""
        m, bs = self._map, self._bs
        if m.size % bs == 0:
            return False
        last = m.size // bs
        if m.ctr(last) == 0:
            return False
        if write_pos is not None and write_pos < (last + 1) * bs:
            return False  # the write's read-modify-write of this block does it
        new_len = m.stored_len(last, new_size)
        ctr, ct = self._reseal_cut(last, m.size - last * bs, new_len)

        def commit() -> None:
            m.commit_run(last, ctr, 1, last * bs + new_len)
            if grow_to is not None:
                m.grow(grow_to)

        self._update(last, last, last * self._slot, ct, commit)
        self._set_cache(last, ctr)
        return True

    def _shrink(self, new: int) -> None:
        m, bs = self._map, self._bs
        cut = new // bs
        ctr, ct = 0, memoryview(b"")
        if new % bs and m.ctr(cut):
            ctr, ct = self._reseal_cut(cut, m.stored_len(cut), new - cut * bs)
        offset = cut * self._slot
        segs = m.stored_segments(cut, cut) if ctr else []
        txn = self._io.begin(segs, m.disk_end, m.snapshot(cut, len(m.ctrs) - 1))
        self._pending = txn
        try:
            self._io.write_all(ct, offset)
            m.shrink(new, ctr)
            trim = self._pending = Trim(m.disk_end)  # the commit point
        except BaseException:
            self._abort()
            raise
        self._cache_index = -1
        self._io.trim(trim.length)  # if this fails, the next operation retries it
        self._pending = None
        if ctr:
            self._set_cache(cut, ctr)

    # --- reading ---------------------------------------------------------------------------

    def _open(self, index: int, ctr: int, src: memoryview, dst: memoryview) -> None:
        try:
            self._sealer_or_closed().open(index, ctr, src, dst)
        except TagFailure:
            raise self._tag_failed(index) from None

    def _read_one(self, index: int, lo: int, out: memoryview) -> None:
        """Fast path of :meth:`readinto` for a read inside block ``index``.

        Kept lean (it is most of the cost of small random reads: attribute
        loads and calls are hoisted or inlined). Instead of an ``fstat`` it
        checks the backing file's length with the read itself: a short read
        means truncated; for the last block on disk it asks for one byte more
        than expected, and getting it means extended.
        """
        ctrs = self._map.ctrs
        last = len(ctrs) - 1
        ctr = ctrs[index] if index <= last else 0
        n = len(out)
        if not ctr:  # sparse: zeros, the disk is not touched
            out[:] = self._zeros[:n]
            return
        if self._sealer is None:
            raise ValueError("I/O operation on closed file")
        pt = self._pt
        if index == self._cache_index and ctr == self._cc[0] and pt is not None:
            out[:] = pt[lo : lo + n]
            return
        bs, slot = self._bs, self._slot
        if not self._ct1_all:
            self._new_ct1()
        if index < last:  # a stored block before the last one is always whole
            length, want, bufs = bs, slot, self._ct1_mid
        else:
            length = self._map.size - index * bs
            if length >= bs:
                length, want, bufs = bs, slot, self._ct1_all  # one byte more: extended?
            else:
                want = length + TAG_SIZE
                bufs = (self._ct1v[: want + 1],)
        ct = self._ct1v
        got = os.preadv(self._fd, bufs, index * slot)
        if got != want:
            if got < want:
                got += self._io.read_full(ct[got:want], index * slot + got)
            if got != want:
                change = "extended" if got > want else "truncated"
                raise self._integrity(f"backing file was {change} (block {index})")
        # whole block: straight into the caller's buffer, else into the scratch block
        whole = lo == 0 and n == length
        if whole:
            dst = out
        else:
            if pt is None:
                pt = self._scratch()
            dst = pt if length == bs else pt[:length]
        self._cache_index = -1
        try:
            self._sealer.open(index, ctr, ct[:want], dst)
        except TagFailure:
            raise self._tag_failed(index) from None
        if not whole:
            self._cc[0] = ctr  # see _set_cache
            self._cache_index = index
            out[:] = dst[lo : lo + n]  # the scratch (lo + n <= length)

    def _read_range(self, pos: int, out: memoryview) -> None:
        bs = self._bs
        end = pos + len(out)
        i, last = pos // bs, (end - 1) // bs
        while i <= last:
            j = min(last, i + self._chunk_blocks - 1)
            ctrs = self._map.window(i, j)
            ctv, base = self._fetch(i, ctrs)
            k = i
            while k <= j:
                start = k * bs
                if start >= pos and start + bs <= end:  # whole blocks: into the caller's buffer
                    stop = min(j + 1, end // bs)
                    dst = out[start - pos : stop * bs - pos]
                    self._open_whole(k, ctrs[k - i : stop - i], ctv, k * self._slot - base, dst)
                    k = stop
                else:
                    self._read_part(k, ctrs[k - i], ctv, base, pos, out)
                    k += 1
            i = j + 1

    def _fetch(self, i: int, ctrs: array.array[int]) -> tuple[memoryview, int]:
        """Read the ciphertext span covering the stored blocks among ``i..``;
        returns (buffer, file offset of its first byte)."""
        stored = [x for x, c in enumerate(ctrs) if c]
        if not stored:
            return memoryview(b""), 0
        self._check_disk_size()
        k0, k1 = i + stored[0], i + stored[-1]
        start = k0 * self._slot
        stop = k1 * self._slot + self._map.stored_len(k1) + TAG_SIZE
        ctv = self._ct_buffer(stop - start)[: stop - start]
        if self._io.read_full(ctv, start) != len(ctv):
            raise self._integrity("backing file is shorter than its blocks")
        return ctv, start

    def _open_whole(
        self, k: int, ctrs: array.array[int], ctv: memoryview, at: int, dst: memoryview
    ) -> None:
        """Decrypt the whole blocks ``k, k+1, ...`` (counters ``ctrs``; their
        ciphertext at ``ctv[at:]``) straight into ``dst``."""
        bs, slot = self._bs, self._slot
        run = len(ctrs)
        if 0 not in ctrs:  # all stored (the common case): one call, the loop in C
            srcs = [ctv[x : x + slot] for x in range(at, at + run * slot, slot)]
            dsts = [dst[x : x + bs] for x in range(0, run * bs, bs)]
            try:
                self._sealer_or_closed().open_run(k, ctrs, srcs, dsts)
            except TagFailure as exc:
                raise self._tag_failed(exc.args[0]) from None
            return
        for b, ctr in enumerate(ctrs):
            if ctr:
                self._open(k + b, ctr, ctv[at + b * slot : at + (b + 1) * slot], dst[b * bs :][:bs])
            else:
                dst[b * bs : (b + 1) * bs] = self._zeros

    def _read_part(
        self, k: int, ctr: int, ctv: memoryview, base: int, pos: int, out: memoryview
    ) -> None:
        """The part of block ``k`` that ``out`` (at file position ``pos``) covers."""
        bs = self._bs
        start = k * bs
        lo, hi = max(pos, start) - start, min(pos + len(out), start + bs) - start
        dst = out[start + lo - pos : start + hi - pos]
        if not ctr:
            dst[:] = self._zeros[: hi - lo]
            return
        length = self._map.stored_len(k)
        at = k * self._slot - base
        src = ctv[at : at + length + TAG_SIZE]
        if lo == 0 and hi == length:  # all of a short last block
            self._open(k, ctr, src, dst)
            return
        pt = self._scratch()
        if not self._cached(k, ctr):
            self._cache_index = -1
            self._open(k, ctr, src, pt[:length])
            self._set_cache(k, ctr)
        dst[:] = pt[lo:hi]
