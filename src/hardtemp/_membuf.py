"""An in-memory binary file whose buffer is zeroed when it grows, rolls over or closes."""

from __future__ import annotations

import io
import threading
from typing import Any

__all__ = ["SecureBytesIO"]


def _zero(buf: bytearray) -> None:
    buf[:] = bytes(len(buf)) if len(buf) < 4096 else b"\0" * len(buf)


class SecureBytesIO(io.BufferedIOBase):
    """Like :class:`io.BytesIO`, but the plaintext never outlives the object.

    ``io.BytesIO`` reallocates (leaving old copies in freed memory) and
    cannot be cleared; here the bytes live in one ``bytearray`` that is
    zeroed before it is dropped: on growth (the old buffer), on :meth:`wipe`
    and on :meth:`close`. Memory can still reach swap or a core dump while
    the object lives; see SECURITY.md.
    """

    def __init__(self) -> None:
        super().__init__()
        self._buf = bytearray()
        self._size = 0
        self._pos = 0
        self._lock = threading.Lock()

    # -- helpers ---------------------------------------------------------
    def _check(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file.")

    def _reserve(self, size: int) -> bytearray | None:
        """Grow to hold ``size`` bytes; return the old buffer, which the caller
        must zero once it no longer reads from it (it may be the source of a
        write: ``f.write(f.getbuffer())``)."""
        if size <= len(self._buf):
            return None
        new = bytearray(max(size, 2 * len(self._buf), 256))
        # memoryview to memoryview: bytearray slice assignment (new[:n] = ...) first
        # copies any non-bytearray source into a temporary that is freed unzeroed.
        with memoryview(new) as dst, memoryview(self._buf) as src:
            dst[: self._size] = src[: self._size]
        old, self._buf = self._buf, new
        return old

    # -- io API ----------------------------------------------------------
    def readable(self) -> bool:
        self._check()
        return True

    def writable(self) -> bool:
        self._check()
        return True

    def seekable(self) -> bool:
        self._check()
        return True

    def getvalue(self) -> bytes:
        """A copy of the contents (the caller's to keep; see :meth:`getbuffer`)."""
        self._check()
        with memoryview(self._buf) as view:
            return bytes(view[: self._size])  # one copy, not a slice copy and then another

    def getbuffer(self) -> memoryview:
        """A read-only view of the contents, without copying them.

        Valid until the next write, truncate, wipe or close.
        """
        self._check()
        return memoryview(self._buf).toreadonly()[: self._size]

    def read(self, size: int | None = -1) -> bytes:
        self._check()
        if size is None or size < 0:
            size = self._size
        end = min(self._size, self._pos + size)
        with memoryview(self._buf) as view:
            data = bytes(view[self._pos : end]) if end > self._pos else b""
        self._pos = max(self._pos, end)
        return data

    read1 = read

    def readinto(self, b: Any) -> int:
        self._check()
        with memoryview(b) as target, target.cast("B") as view:
            end = max(self._pos, min(self._size, self._pos + len(view)))
            n = end - self._pos
            # Buffer to buffer: no intermediate bytes object left unzeroed in freed memory.
            with memoryview(self._buf) as src:
                view[:n] = src[self._pos : end]
            self._pos = end
        return n

    readinto1 = readinto

    def write(self, b: Any) -> int:
        self._check()
        data = memoryview(b).cast("B")
        n = len(data)
        with self._lock:
            end = self._pos + n
            old = self._reserve(end)
            try:
                # Writing past the end leaves the gap as zeros, as a real file does.
                # Through a memoryview: bytearray slice assignment would copy ``data``
                # into a temporary that is freed unzeroed.
                with memoryview(self._buf) as view:
                    view[self._pos : end] = data
            finally:
                if old is not None:
                    _zero(old)  # the old copy must not linger in freed memory
            self._pos = end
            self._size = max(self._size, end)
        return n

    def seek(self, pos: int, whence: int = 0) -> int:
        self._check()
        if whence == 0:
            if pos < 0:
                raise ValueError(f"negative seek value {pos}")
            self._pos = pos
        elif whence == 1:
            self._pos = max(0, self._pos + pos)
        elif whence == 2:
            self._pos = max(0, self._size + pos)
        else:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        return self._pos

    def tell(self) -> int:
        self._check()
        return self._pos

    def truncate(self, size: int | None = None) -> int:
        self._check()
        if size is None:
            size = self._pos
        if size < 0:
            raise ValueError(f"negative size value {size}")
        with self._lock:
            if size < self._size:
                self._buf[size : self._size] = bytes(self._size - size)
            else:
                old = self._reserve(size)
                if old is not None:
                    _zero(old)  # the old copy must not linger in freed memory
            self._size = size
        return size

    def detach(self) -> Any:
        raise io.UnsupportedOperation("detach")

    def wipe(self) -> None:
        """Zero the whole buffer and empty the file."""
        with self._lock:
            _zero(self._buf)
            self._buf = bytearray()
            self._size = self._pos = 0

    def close(self) -> None:
        if not self.closed:
            self.wipe()
        super().close()

    def __getstate__(self) -> Any:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")
