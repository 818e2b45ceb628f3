"""Building the file-object stack over :class:`EncryptedRawIO`, as :func:`io.open` would.

Invariant: the returned object owns the backing descriptor from the moment
the raw file exists (closing it on any failure while the stack is built).
"""

from __future__ import annotations

import io
from typing import IO, Any, Final

from .._iostack import check_mode, raw_mode, wrap_raw
from ._forkdrop import STACK_CLASSES, register
from ._raw import EncryptedRawIO

__all__ = ["ENCRYPTED_BUFFER_SIZE", "open_encrypted", "wrap_encrypted"]

#: Buffer of the BufferedRandom/Reader/Writer: a page, so that a page-aligned 4 KiB
#: read costs one block (a larger buffer often straddles two blocks and must decrypt
#: both); large transfers bypass the buffer anyway.
ENCRYPTED_BUFFER_SIZE: Final = 4096


def open_encrypted(
    fd: int,
    mode: str = "w+b",
    buffering: int = -1,
    encoding: str | None = None,
    newline: str | None = None,
    errors: str | None = None,
    *,
    name: object = None,
    block_size: int | None = None,
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
    ``block_size``: see :class:`EncryptedRawIO` (``None``: chosen by the first write).
    Once the raw file exists, the object owns ``fd`` and closes it when closed
    (also when this function fails after creating it); if creating the raw
    file fails, ``fd`` stays open and the caller's.

    Raises:
        TypeError: wrong argument types.
        ValueError: invalid mode or combination (e.g. ``buffering=0`` in text
            mode, an encoding in binary mode), or ``fd`` is not an empty
            regular file.
        LookupError: unknown ``encoding``.
        OSError: ``fstat`` of ``fd`` failed, or the protected memory could not be
            mapped (``fd`` is then left open: it is still the caller's).
    """
    check_mode(mode, buffering, encoding, errors, newline)
    if "b" not in mode:
        # Resolved here, so that -X warn_default_encoding points at our caller (as io.open does).
        encoding = io.text_encoding(encoding)
    raw = EncryptedRawIO(fd, block_size=block_size, name=name, mode=raw_mode(mode))
    return wrap_encrypted(raw, mode, buffering, encoding, errors, newline)


def wrap_encrypted(
    raw: io.RawIOBase,
    mode: str,
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
) -> IO[Any]:
    """The buffered/text stack over an encrypted raw file (an :class:`EncryptedRawIO`
    or a ``SwitchingRawIO``), as :func:`hardtemp._iostack.wrap_raw` builds it, with
    layers that a forked child resets before their first use (``_forkdrop``).
    ``raw`` is closed if wrapping fails.

    Raises:
        LookupError: unknown ``encoding``.
    """
    if buffering == -1 and "b" in mode and "+" in mode:
        # TemporaryFile()'s own mode: what wrap_raw builds for it, without its questions.
        try:
            buffered = STACK_CLASSES.random(raw, ENCRYPTED_BUFFER_SIZE)
        except BaseException:
            raw.close()
            raise
        return register(buffered)
    file = wrap_raw(
        raw,
        mode,
        buffering,
        encoding,
        errors,
        newline,
        buffer_size=ENCRYPTED_BUFFER_SIZE,
        classes=STACK_CLASSES,
    )
    return register(file)
