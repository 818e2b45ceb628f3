"""Random-access AES-256-GCM encryption of a temporary file's contents (a private package).

Layout, one job per module (each states its invariants):

* ``_sealer``: the key, counters, nonces and associated data (audit nonce uniqueness here);
* ``_blockmap``: counters, size and slot arithmetic, pure;
* ``_backing``: positional I/O on the backing file and the undo journal (the
  transaction design of a block update);
* ``_secmem``: protected memory for the key and the plaintext scratch;
* ``_secpool``: a per-process pool of such memory, one slot per file;
* ``_raw``: :class:`EncryptedRawIO`, the raw file object;
* ``_small``: :class:`MemoryFirstRawIO`, the one that stays in memory while it fits a block;
* ``_stack``: :func:`open_encrypted`, the buffered/text stack over it;
* ``_forkdrop``: a forked child drops what those layers cached;
* ``_switch``: the file that is encrypted until its first ``fileno()``.
"""

from ._raw import DEFAULT_BLOCK_SIZE as DEFAULT_BLOCK_SIZE
from ._raw import LARGE_BLOCK_SIZE as LARGE_BLOCK_SIZE
from ._raw import MAX_BLOCK_SIZE as MAX_BLOCK_SIZE
from ._raw import MIN_BLOCK_SIZE as MIN_BLOCK_SIZE
from ._raw import SMALL_BLOCK_SIZE as SMALL_BLOCK_SIZE
from ._raw import EncryptedRawIO as EncryptedRawIO
from ._sealer import TAG_SIZE as TAG_SIZE
from ._small import MemoryFirstRawIO as MemoryFirstRawIO
from ._stack import ENCRYPTED_BUFFER_SIZE as ENCRYPTED_BUFFER_SIZE
from ._stack import open_encrypted as open_encrypted
from ._stack import wrap_encrypted as wrap_encrypted

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "ENCRYPTED_BUFFER_SIZE",
    "LARGE_BLOCK_SIZE",
    "MAX_BLOCK_SIZE",
    "MIN_BLOCK_SIZE",
    "SMALL_BLOCK_SIZE",
    "TAG_SIZE",
    "EncryptedRawIO",
    "MemoryFirstRawIO",
    "open_encrypted",
    "wrap_encrypted",
]
