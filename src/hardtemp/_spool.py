"""SpooledTemporaryFile: in memory until ``max_size``, then an (encrypted) TemporaryFile."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from types import GenericAlias, TracebackType
from typing import Any, Literal

from ._files import TemporaryFile
from ._iostack import check_mode
from ._membuf import SecureBytesIO

__all__ = ["SpooledTemporaryFile"]


class SpooledTemporaryFile(io.IOBase):
    """A temporary file kept in memory until it grows past ``max_size`` bytes
    (or ``fileno()`` / ``rollover()`` is called), then moved to a
    :func:`TemporaryFile`.

    In memory, the data lives in a buffer that is zeroed on growth, on
    rollover and on close (:class:`io.BytesIO` leaves copies behind). The
    rollover file is encrypted by default (``encrypt=True``), so the data
    never reaches the disk in plaintext; with ``encrypt=False`` it is a
    plaintext unnamed file that is overwritten when closed; with
    ``encrypt="until-fileno"`` it is encrypted until its first ``fileno()``
    (see :func:`TemporaryFile`).

    Raises: ValueError for an invalid ``mode``; on rollover, what
    :func:`TemporaryFile` raises.
    """

    _rolled = False

    def __init__(
        self,
        max_size: int = 0,
        mode: str = "w+b",
        buffering: int = -1,
        encoding: str | None = None,
        newline: str | None = None,
        suffix: str | bytes | None = None,
        prefix: str | bytes | None = None,
        dir: Any = None,
        *,
        errors: str | None = None,
        encrypt: bool | Literal["until-fileno"] = True,
    ) -> None:
        check_mode(mode, buffering, encoding, errors, newline)
        self._file: Any
        if "b" in mode:
            self._file = SecureBytesIO()
        else:
            encoding = io.text_encoding(encoding)
            self._file = io.TextIOWrapper(
                SecureBytesIO(), encoding=encoding, errors=errors, newline=newline
            )
        self._max_size = max_size
        self._rolled = False
        self._TemporaryFileArgs = {
            "mode": mode,
            "buffering": buffering,
            "suffix": suffix,
            "prefix": prefix,
            "encoding": encoding,
            "newline": newline,
            "dir": dir,
            "errors": errors,
            "encrypt": encrypt,
        }

    __class_getitem__: Any = classmethod(GenericAlias)

    def _check(self, file: Any) -> None:
        if self._rolled:
            return
        max_size = self._max_size
        if max_size and file.tell() > max_size:
            self.rollover()

    def rollover(self) -> None:
        """Move the data to a :func:`TemporaryFile` now, zeroing the memory copy."""
        if self._rolled:
            return
        file = self._file
        newfile = self._file = TemporaryFile(**self._TemporaryFileArgs)
        del self._TemporaryFileArgs
        pos = file.tell()
        membuf: SecureBytesIO = file.detach() if hasattr(file, "buffer") else file
        try:
            # Straight from the buffer: a getvalue() copy would be freed without zeroing.
            with membuf.getbuffer() as data:
                if hasattr(newfile, "buffer"):
                    newfile.buffer.write(data)
                else:
                    newfile.write(data)
            newfile.seek(pos, 0)
        finally:
            membuf.close()  # zeroes the in-memory plaintext
        self._rolled = True

    # The methods of a file, delegated to the current backing file.
    def __enter__(self) -> SpooledTemporaryFile:
        if self._file.closed:
            raise ValueError("Cannot enter context with closed file")
        return self

    def __exit__(
        self, exc: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._file.close()

    def __iter__(self) -> Iterator[Any]:
        return self._file.__iter__()  # type: ignore[no-any-return]

    def __del__(self) -> None:
        # "_file" is missing when __init__ raised (e.g. an invalid mode): nothing to close.
        if "_file" in self.__dict__ and not self.closed:
            self.close()

    def close(self) -> None:
        self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed  # type: ignore[no-any-return]

    @property
    def encoding(self) -> str:
        return self._file.encoding  # type: ignore[no-any-return]

    @property
    def errors(self) -> str | None:
        return self._file.errors  # type: ignore[no-any-return]

    def fileno(self) -> int:
        self.rollover()
        return self._file.fileno()  # type: ignore[no-any-return]

    def flush(self) -> None:
        self._file.flush()

    def isatty(self) -> bool:
        return self._file.isatty()  # type: ignore[no-any-return]

    @property
    def mode(self) -> str:
        try:
            return self._file.mode  # type: ignore[no-any-return]
        except AttributeError:
            return self._TemporaryFileArgs["mode"]  # type: ignore[no-any-return]

    @property
    def name(self) -> Any:
        try:
            return self._file.name
        except AttributeError:
            return None

    @property
    def newlines(self) -> Any:
        return self._file.newlines

    def readable(self) -> bool:
        return self._file.readable()  # type: ignore[no-any-return]

    def read(self, *args: Any) -> Any:
        return self._file.read(*args)

    def read1(self, *args: Any) -> Any:
        return self._file.read1(*args)

    def readinto(self, b: Any) -> Any:
        return self._file.readinto(b)

    def readinto1(self, b: Any) -> Any:
        return self._file.readinto1(b)

    def readline(self, *args: Any) -> Any:
        return self._file.readline(*args)

    def readlines(self, *args: Any) -> list[Any]:
        return self._file.readlines(*args)  # type: ignore[no-any-return]

    def seekable(self) -> bool:
        return self._file.seekable()  # type: ignore[no-any-return]

    def seek(self, *args: Any) -> int:
        return self._file.seek(*args)  # type: ignore[no-any-return]

    def tell(self) -> int:
        return self._file.tell()  # type: ignore[no-any-return]

    def truncate(self, size: int | None = None) -> int:
        if size is None:
            return self._file.truncate()  # type: ignore[no-any-return]
        if size > self._max_size:
            self.rollover()
        return self._file.truncate(size)  # type: ignore[no-any-return]

    def writable(self) -> bool:
        return self._file.writable()  # type: ignore[no-any-return]

    def write(self, s: Any) -> int:
        file = self._file
        rv: int = file.write(s)
        self._check(file)
        return rv

    def writelines(self, iterable: Iterable[Any]) -> None:
        file = self._file
        for line in iterable:
            file.write(line)
            self._check(file)
            file = self._file

    def detach(self) -> Any:
        return self._file.detach()

    def __getstate__(self) -> Any:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")
