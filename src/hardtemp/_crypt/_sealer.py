"""The block sealer: the one place that holds the key and builds nonces and associated data.

Invariants (audit nonce uniqueness here, and only here):

* one fresh 256-bit AES-GCM key per sealer, from the OS CSPRNG (``getrandom(2)``
  writing straight to the protected memory's address: the sealer's own call, or
  the seed area's, which draws the next files' seeds in one call and hands each
  out once, see :mod:`._secpool`; ``/dev/urandom`` read into it where that call
  is missing), in protected memory (:mod:`._secmem`, :mod:`._secpool`) and
  zeroed there as soon as ``AESGCM`` has taken its copy; it never passes
  through a Python object and is never written anywhere else by us;
* the nonce of every seal is a counter value handed out by :meth:`take`, which
  only ever increases (values are never given back, not even when the write
  that used them fails and is rolled back); 12 bytes, big-endian; counter 0 is
  never used (it means "no ciphertext" to the block map); past :attr:`limit`
  (``2**64 - 1``, or ``2**32 - 1`` for a file whose block map keeps 4-byte
  counters: :meth:`narrow`, which only :meth:`widen` undoes, and only before
  the first :meth:`take`) the sealer refuses (``EOVERFLOW``) instead of
  wrapping, so a nonce never repeats under one key;
* a forked child must not seal (it would reuse the parent's counter values):
  the raw file refuses writes there before they reach :meth:`seal_run`;
* the associated data is ``file_id || block index`` (8 bytes, big-endian), so
  a block's ciphertext opens only at its own position; the 16-byte file id
  comes from the key's own ``getrandom`` call where the caller leaves room
  for it (not secret: it is copied out and zeroed there with the key);
* :meth:`open` / :meth:`open_run` either leave authenticated plaintext in the
  destination or zero what they decrypted and raise :class:`TagFailure`.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Final, NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = [
    "ID_SIZE",
    "MAX_COUNTER",
    "MAX_COUNTER32",
    "SEED_SIZE",
    "TAG_SIZE",
    "BlockSealer",
    "TagFailure",
]

TAG_SIZE: Final = 16
KEY_SIZE: Final = 32
ID_SIZE: Final = 16  # the per-file id in the associated data
#: Key and file id, drawn by one getrandom call (see :class:`BlockSealer`).
SEED_SIZE: Final = KEY_SIZE + ID_SIZE
_ZERO_KEY: Final = bytes(KEY_SIZE)
_ZERO_ID: Final = bytes(ID_SIZE)
#: Largest counter; 64 bits keep the per-block state at 8 bytes.
MAX_COUNTER: Final = 2**64 - 1
#: Largest counter of a file with 4-byte counters (small blocks: 4 bytes of state per 4 KiB).
MAX_COUNTER32: Final = 2**32 - 1


class TagFailure(Exception):
    """A block failed authentication; ``args[0]`` is its index."""


def _consume(results: Iterable[object]) -> None:
    """Run an iterator to its end in C, keeping nothing (itertools' "consume" recipe)."""
    collections.deque(results, maxlen=0)


def _closed(*args: object) -> NoReturn:
    raise ValueError("I/O operation on closed file")


_getrandom = getattr(ctypes.CDLL(None, use_errno=True), "getrandom", None)  # glibc >= 2.25
if _getrandom is not None:  # pragma: no branch - every supported glibc has it
    # No argtypes: every call passes a c_void_p, a c_size_t and a small int (the flags),
    # so ctypes converts nothing (argtypes conversion was half of the call's cost).
    _getrandom.restype = ctypes.c_ssize_t
_SIZES: Final = {n: ctypes.c_size_t(n) for n in (32, 48)}  # the lengths of every key's call


def _fill_random(view: memoryview, address: int | None = None) -> None:
    """OS CSPRNG bytes straight into ``view`` (no intermediate bytes object that
    would be freed unzeroed): with ``getrandom(2)`` at ``address`` (the address
    of ``view``'s first byte) if given, else read from /dev/urandom; os.urandom
    only where neither works.

    Raises:
        OSError: the OS CSPRNG failed.
    """
    if address is not None and _getrandom is not None:
        got, n = 0, len(view)
        while got < n:
            want = n - got
            r = _getrandom(
                ctypes.c_void_p(address + got), _SIZES.get(want) or ctypes.c_size_t(want), 0
            )
            if r < 0:  # pragma: no cover - cannot be caused here (32 bytes never fail)
                err = ctypes.get_errno()
                if err == errno.EINTR:
                    continue
                if err == errno.ENOSYS:  # kernels before 3.17: /dev/urandom below
                    break
                raise OSError(err, os.strerror(err))
            got += r
        if got == n:  # pragma: no branch - else only after ENOSYS, above
            return
    try:
        fd = os.open("/dev/urandom", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # a container without /dev/urandom: a short-lived copy is the cost
        view[:] = os.urandom(len(view))
        return
    try:
        got = 0
        while got < len(view):
            got += os.readv(fd, [view[got:]])
    finally:
        os.close(fd)


class BlockSealer:
    """AES-256-GCM for the blocks of one file.

    Raises:
        OSError: reading the OS CSPRNG failed.
    """

    __slots__ = ("_aead", "_decrypt", "_decrypt_into", "_encrypt", "_file_id", "_next", "limit")

    def __init__(
        self,
        key: memoryview,
        address: int | None = None,
        *,
        narrow: bool = False,
        drawn: bool = False,
    ) -> None:
        # ``key``: KEY_SIZE bytes of protected memory (``address``: where it starts, for
        # getrandom), or SEED_SIZE for the file id to come from the same call; the key is
        # generated there (no copy in the Python heap, which frees without zeroing) and
        # zeroed again once AESGCM holds its own. ``drawn``: the caller has just filled
        # ``key`` with fresh OS randomness used by no one else (a seed of the seed area).
        # ``narrow``: as :meth:`narrow`, at once.
        if not drawn:
            _fill_random(key, address)
        try:
            self._aead: AESGCM | None = AESGCM(key[:KEY_SIZE])
        finally:
            key[:KEY_SIZE] = _ZERO_KEY
        # Defence in depth: binds each block to this file object; with one fresh
        # key per file it stops no attack on its own (a block of another file
        # fails the tag anyway). Not secret: it is in every block's associated data.
        if len(key) >= SEED_SIZE:
            self._file_id = bytes(key[KEY_SIZE:SEED_SIZE])
            key[KEY_SIZE:SEED_SIZE] = _ZERO_ID
        else:
            self._file_id = os.urandom(ID_SIZE)
        self._next = 1
        self.limit = MAX_COUNTER32 if narrow else MAX_COUNTER
        self._use(self._aead)

    def _use(self, aead: AESGCM) -> None:
        """Seal and open with ``aead`` (its methods bound once: the single-block read is
        the hot path of small random reads, and a small file's one append and one
        read-all are most of its life). Tests wrap the cipher through here."""
        self._aead = aead
        self._decrypt_into: Callable[..., object] = aead.decrypt_into
        self._encrypt: Callable[..., bytes] = aead.encrypt
        self._decrypt: Callable[..., bytes] = aead.decrypt

    # --- counters ---------------------------------------------------------------------------

    def take(self, count: int) -> int:
        """Reserve ``count`` fresh counter values; returns the first.

        Raises:
            OSError: ``EOVERFLOW`` when the file's counter space is exhausted.
        """
        first = self._next
        if first + count - 1 > self.limit:
            # Wrapping would repeat a nonce under this key (the GCM hash key and the XOR
            # of two plaintexts would leak): the file refuses further writes instead.
            raise OSError(errno.EOVERFLOW, "encryption counter exhausted for this file")
        self._next = first + count
        return first

    def narrow(self) -> None:
        """Limit the counters to 4 bytes (:data:`MAX_COUNTER32`), for a block map
        that stores them so; only before the first :meth:`take` beyond that."""
        self.limit = min(self.limit, MAX_COUNTER32)

    def widen(self) -> None:
        """Undo :meth:`narrow` (8-byte counters) before any counter was taken: a file
        whose first write chose wider blocks than the provisional 4 KiB ones.

        Raises:
            ValueError: a counter was already taken (its map may store only 4 bytes).
        """
        if self._next != 1:
            raise ValueError("the counter width is fixed once a counter was taken")
        self.limit = MAX_COUNTER

    # --- sealing ----------------------------------------------------------------------------

    def _cipher(self) -> AESGCM:
        aead = self._aead
        if aead is None:
            raise ValueError("I/O operation on closed file")
        return aead

    def seal(self, index: int, ctr: int, src: memoryview, dst: memoryview) -> None:
        """Encrypt ``src`` as block ``index`` under counter ``ctr`` into ``dst``
        (``len(src) + TAG_SIZE`` bytes)."""
        self._cipher().encrypt_into(
            ctr.to_bytes(12, "big"), src, self._file_id + index.to_bytes(8, "big"), dst
        )

    def seal_bytes(self, index: int, ctr: int, src: ReadableBuffer) -> bytes:
        """The ciphertext and tag of ``src`` sealed as block ``index`` under ``ctr``, as a
        new bytes object (ciphertext only: nothing secret is left in the heap)."""
        return self._encrypt(ctr.to_bytes(12, "big"), src, self._file_id + index.to_bytes(8, "big"))

    def seal_run(
        self, index: int, ctr: int, srcs: Sequence[memoryview], dsts: Sequence[memoryview]
    ) -> None:
        """Seal consecutive blocks ``index, index + 1, ...`` under counters
        ``ctr, ctr + 1, ...`` (the per-block loop runs in C: map over lists)."""
        n, fid = len(srcs), self._file_id
        _consume(
            map(
                self._cipher().encrypt_into,
                [c.to_bytes(12, "big") for c in range(ctr, ctr + n)],
                srcs,
                [fid + b.to_bytes(8, "big") for b in range(index, index + n)],
                dsts,
            )
        )

    # --- opening ----------------------------------------------------------------------------

    def open(self, index: int, ctr: int, src: memoryview, dst: memoryview) -> None:
        """Decrypt and authenticate block ``index`` sealed under ``ctr``.

        Raises:
            TagFailure: authentication failed; ``dst`` was zeroed.
        """
        try:
            self._decrypt_into(
                ctr.to_bytes(12, "big"), src, self._file_id + index.to_bytes(8, "big"), dst
            )
        except InvalidTag:
            dst[:] = bytes(len(dst))  # decrypt_into leaves unauthenticated plaintext behind
            raise TagFailure(index) from None

    def open_bytes(self, index: int, ctr: int, src: ReadableBuffer) -> bytes:
        """Block ``index``'s authenticated plaintext, as a new bytes object (for a read
        that returns it as is: no buffer to copy out of and zero).

        Raises:
            TagFailure: authentication failed (nothing was decrypted into a buffer).
        """
        try:
            return self._decrypt(
                ctr.to_bytes(12, "big"), src, self._file_id + index.to_bytes(8, "big")
            )
        except InvalidTag:
            raise TagFailure(index) from None

    def open_run(
        self,
        index: int,
        ctrs: Sequence[int],
        srcs: Sequence[memoryview],
        dsts: Sequence[memoryview],
    ) -> None:
        """Open consecutive stored blocks (every counter non-zero).

        Raises:
            TagFailure: a block failed; the caller zeroes all of ``dsts``.
        """
        fid = self._file_id
        try:
            _consume(
                map(
                    self._cipher().decrypt_into,
                    [c.to_bytes(12, "big") for c in ctrs],
                    srcs,
                    [fid + b.to_bytes(8, "big") for b in range(index, index + len(ctrs))],
                    dsts,
                )
            )
        except InvalidTag:
            for k, (ctr, src, dst) in enumerate(zip(ctrs, srcs, dsts, strict=True)):
                self.open(index + k, ctr, src, dst)  # finds and reports the failing block
            raise TagFailure(index) from None  # pragma: no cover - the loop raised

    def close(self) -> None:
        """Drop the cipher (the only reference to the key schedule)."""
        self._aead = None
        self._decrypt_into = self._encrypt = self._decrypt = _closed
