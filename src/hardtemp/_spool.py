"""SpooledTemporaryFile: in memory until ``max_size``, then an (encrypted) TemporaryFile."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from types import GenericAlias, TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypedDict

from ._files import TemporaryFile
from ._iostack import check_mode
from ._membuf import SecureBytesIO

if TYPE_CHECKING:
    from _typeshed import StrOrBytesPath

__all__ = ["SpooledTemporaryFile"]


class _Backing(Protocol):
    """What every backing file has: the in-memory buffer (binary, or text over it) and the
    rollover file. Members only some have (``read1``, ``detach``, ``encoding``...) are looked
    up on :attr:`SpooledTemporaryFile._dynamic`: ``AttributeError`` when missing, as in the
    stdlib."""

    @property
    def closed(self) -> bool: ...
    def close(self) -> None: ...
    def fileno(self) -> int: ...
    def flush(self) -> None: ...
    def isatty(self) -> bool: ...
    def readable(self) -> bool: ...
    def read(self, size: int = ..., /) -> Any: ...
    def readline(self, size: int = ..., /) -> Any: ...
    def readlines(self, hint: int = ..., /) -> list[Any]: ...
    def seekable(self) -> bool: ...
    def seek(self, offset: int, whence: int = ..., /) -> int: ...
    def tell(self) -> int: ...
    def truncate(self, size: int | None = ..., /) -> int: ...
    def writable(self) -> bool: ...
    def write(self, s: Any, /) -> int: ...
    def __iter__(self) -> Iterator[Any]: ...


class TemporaryFileArgs(TypedDict):
    """The arguments the rollover passes to :func:`TemporaryFile` (the stdlib keeps them in
    ``_TemporaryFileArgs`` too)."""

    mode: str
    buffering: int
    suffix: str | bytes | None
    prefix: str | bytes | None
    encoding: str | None
    newline: str | None
    dir: StrOrBytesPath | None
    errors: str | None
    encrypt: bool | Literal["until-fileno"]


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
        dir: StrOrBytesPath | None = None,
        *,
        errors: str | None = None,
        encrypt: bool | Literal["until-fileno"] = True,
    ) -> None:
        check_mode(mode, buffering, encoding, errors, newline)
        self._file: _Backing
        self._membuf = SecureBytesIO()  # the in-memory data until the rollover
        if "b" in mode:
            self._file = self._membuf
        else:
            encoding = io.text_encoding(encoding)
            # type-var: typeshed's TextIOWrapper wants a buffer with .name; ours has none in
            # memory (an AttributeError TextIOWrapper.name passes on, as the stdlib's spool).
            self._file = io.TextIOWrapper(
                self._membuf,  # type: ignore[type-var]
                encoding=encoding,
                errors=errors,
                newline=newline,
            )
        self._max_size = max_size
        self._rolled = False
        self._TemporaryFileArgs: TemporaryFileArgs = {
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

    @property
    def _dynamic(self) -> Any:
        """The backing file, for the members only some backing files have."""
        return self._file

    def _check(self, file: _Backing) -> None:
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
        if isinstance(file, io.TextIOWrapper):
            file.detach()  # flushes pending text into the buffer, which it no longer owns
        membuf = self._membuf
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
        return self._file.__iter__()

    def __del__(self) -> None:
        # "_file" is missing when __init__ raised (e.g. an invalid mode): nothing to close.
        if "_file" in self.__dict__ and not self.closed:
            self.close()

    def close(self) -> None:
        self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed

    @property
    def encoding(self) -> str:
        return self._dynamic.encoding  # type: ignore[no-any-return]

    @property
    def errors(self) -> str | None:
        return self._dynamic.errors  # type: ignore[no-any-return]

    def fileno(self) -> int:
        self.rollover()
        return self._file.fileno()

    def flush(self) -> None:
        self._file.flush()

    def isatty(self) -> bool:
        return self._file.isatty()

    @property
    def mode(self) -> str:
        try:
            return self._dynamic.mode  # type: ignore[no-any-return]
        except AttributeError:
            return self._TemporaryFileArgs["mode"]

    @property
    def name(self) -> Any:
        try:
            return self._dynamic.name
        except AttributeError:
            return None

    @property
    def newlines(self) -> Any:
        return self._dynamic.newlines

    def readable(self) -> bool:
        return self._file.readable()

    def read(self, *args: Any) -> Any:
        return self._file.read(*args)

    def read1(self, *args: Any) -> Any:
        return self._dynamic.read1(*args)

    def readinto(self, b: Any) -> Any:
        return self._dynamic.readinto(b)

    def readinto1(self, b: Any) -> Any:
        return self._dynamic.readinto1(b)

    def readline(self, *args: Any) -> Any:
        return self._file.readline(*args)

    def readlines(self, *args: Any) -> list[Any]:
        return self._file.readlines(*args)

    def seekable(self) -> bool:
        return self._file.seekable()

    def seek(self, *args: Any) -> int:
        return self._file.seek(*args)

    def tell(self) -> int:
        return self._file.tell()

    def truncate(self, size: int | None = None) -> int:
        if size is None:
            return self._file.truncate()
        if size > self._max_size:
            self.rollover()
        return self._file.truncate(size)

    def writable(self) -> bool:
        return self._file.writable()

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
        return self._dynamic.detach()

    def __getstate__(self) -> Any:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")
