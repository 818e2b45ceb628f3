"""The machinery of :mod:`hardtemp.aio`: the sync hardtemp objects, driven from worker threads.

Invariants:

* Every call that can block (creation, I/O, flush, close, cleanup) runs in
  the running asyncio loop's default executor, never on the loop's thread;
  the sync objects do the work, so every guarantee of the sync API holds.
* Calls on one async object run one at a time (a per-object lock taken in
  the worker): a call whose task was cancelled while its thread ran finishes
  before the next call on that object starts, so a file is never used by two
  threads at once and every completed write stays readable.
* A call cancelled before its thread started never runs. A call cancelled
  while running finishes in its thread (threads cannot be interrupted).
* ``close()``, ``cleanup()`` and ``async with`` exit run to completion even
  when the awaiting task is cancelled.
* An object whose creation was cancelled is closed, removed, and never
  handed out: nothing is leaked.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
from collections.abc import Awaitable, Callable, Generator, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from . import _files

if TYPE_CHECKING:
    from _typeshed import StrOrBytesPath

__all__ = [
    "AsyncFile",
    "AsyncNamedTemporaryFile",
    "AsyncSpooledTemporaryFile",
    "AsyncTemporaryDirectory",
    "Opening",
    "mkdtemp",
    "mkstemp",
    "open_file",
    "open_named",
    "open_spooled",
    "open_tempdir",
]

T = TypeVar("T")
A = TypeVar("A", bound="_AsyncCM")


def _loop() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "hardtemp.aio needs a running asyncio event loop (under trio, call the sync "
            "hardtemp API through trio.to_thread.run_sync)"
        ) from None


async def _in_thread(fn: Callable[[], T], *, shield: bool = False) -> T:
    """Run ``fn`` in the default executor; with ``shield``, it completes even if we are
    cancelled (the cancellation still reaches the caller, after it has finished)."""
    fut = _loop().run_in_executor(None, fn)
    if not shield:
        return await fut
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        # Closing must not be left half done: wait for it, then let the cancellation through.
        with contextlib.suppress(BaseException):
            await asyncio.wait([fut])
        raise


class _Creation(Generic[T]):
    """Creates an object in a thread; if the waiting task is cancelled, the object is
    discarded (closed and removed) instead of leaked, whenever the thread finishes."""

    def __init__(self, factory: Callable[[], T], discard: Callable[[T], None]) -> None:
        self._factory = factory
        self._discard = discard
        self._lock = threading.Lock()
        self._abandoned = False
        self._made: list[T] = []

    def _run(self) -> T | None:
        obj = self._factory()
        with self._lock:
            if not self._abandoned:
                self._made.append(obj)
                return obj
        self._discard(obj)  # nobody will ever receive it
        return None

    def _abandon(self) -> None:
        with self._lock:
            self._abandoned = True
            made, self._made = self._made, []
        for obj in made:  # finished, but the result never reached the cancelled task
            self._discard(obj)

    async def run(self) -> T:
        fut = _loop().run_in_executor(None, self._run)
        try:
            obj = await asyncio.shield(fut)
        except asyncio.CancelledError:
            self._abandon()
            raise
        assert obj is not None  # noqa: S101 - only None once abandoned, and then we raised
        return obj


class _AsyncCM:
    """Base of the async wrappers: ``async with`` and the thread runner."""

    _lock: threading.Lock

    def _locked(self, fn: Callable[..., T], *args: Any) -> Callable[[], T]:
        def call() -> T:
            with self._lock:  # one call at a time on this object, in our worker threads
                return fn(*args)

        return call

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await _in_thread(self._locked(fn, *args))

    async def __aenter__(self) -> Any:
        raise NotImplementedError

    async def __aexit__(
        self, exc: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        raise NotImplementedError


class AsyncFile(_AsyncCM):
    """An open hardtemp file whose blocking methods are coroutines run in a thread.

    ``wrapped`` is the sync file object; ``fileno()``, ``name``, ``mode``,
    ``closed`` and ``encoding`` are plain (non-blocking) attributes. Iterate
    with ``async for line in f``.
    """

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped
        self._lock = threading.Lock()

    @property
    def name(self) -> Any:
        return self.wrapped.name

    @property
    def mode(self) -> str:
        return self.wrapped.mode  # type: ignore[no-any-return]

    @property
    def closed(self) -> bool:
        return self.wrapped.closed  # type: ignore[no-any-return]

    @property
    def encoding(self) -> str:
        return self.wrapped.encoding  # type: ignore[no-any-return]

    def fileno(self) -> int:
        """The descriptor (``io.UnsupportedOperation`` for an encrypted file)."""
        return self.wrapped.fileno()  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<hardtemp.aio {type(self).__name__} wrapping {self.wrapped!r}>"

    async def read(self, size: int | None = -1) -> Any:
        return await self._call(self.wrapped.read, size)

    async def read1(self, size: int = -1) -> Any:
        return await self._call(self.wrapped.read1, size)

    async def readinto(self, b: Any) -> int:
        return await self._call(self.wrapped.readinto, b)

    async def readline(self, size: int | None = -1) -> Any:
        return await self._call(self.wrapped.readline, size)

    async def readlines(self, hint: int = -1) -> list[Any]:
        return await self._call(self.wrapped.readlines, hint)

    async def write(self, data: Any) -> int:
        return await self._call(self.wrapped.write, data)

    async def writelines(self, lines: Iterable[Any]) -> None:
        await self._call(self.wrapped.writelines, lines)

    async def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return await self._call(self.wrapped.seek, offset, whence)

    async def tell(self) -> int:
        return await self._call(self.wrapped.tell)

    async def truncate(self, size: int | None = None) -> int:
        return await self._call(self.wrapped.truncate, size)

    async def flush(self) -> None:
        await self._call(self.wrapped.flush)

    async def close(self) -> None:
        """Close (and, as the sync object does, wipe or remove) the file; runs to
        completion even if the awaiting task is cancelled."""
        await _in_thread(self._locked(self.wrapped.close), shield=True)

    async def __aenter__(self) -> Any:
        self.wrapped.__enter__()  # ValueError on a closed file, as the sync object
        return self

    async def __aexit__(
        self, exc: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        await _in_thread(self._locked(self.wrapped.__exit__, exc, value, tb), shield=True)

    def __aiter__(self) -> AsyncFile:
        return self

    async def __anext__(self) -> Any:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line


class AsyncNamedTemporaryFile(AsyncFile):
    """:class:`AsyncFile` over a ``NamedTemporaryFile``, with async ``persist``."""

    @property
    def delete(self) -> bool:
        return self.wrapped.delete  # type: ignore[no-any-return]

    async def persist(self, path: StrOrBytesPath, *, durable: bool = False) -> str | bytes:
        """As the sync ``persist()`` (same options), in a thread; raises what it raises."""
        return await self._call(functools.partial(self.wrapped.persist, path, durable=durable))

    async def persist_noclobber(
        self, path: StrOrBytesPath, *, durable: bool = False
    ) -> str | bytes:
        """As the sync ``persist_noclobber()`` (same options), in a thread."""
        return await self._call(
            functools.partial(self.wrapped.persist_noclobber, path, durable=durable)
        )


class AsyncSpooledTemporaryFile(AsyncFile):
    """:class:`AsyncFile` over a ``SpooledTemporaryFile``, with async ``rollover``."""

    async def rollover(self) -> None:
        await self._call(self.wrapped.rollover)


class AsyncTemporaryDirectory(_AsyncCM):
    """A ``TemporaryDirectory`` whose cleanup runs in a thread; ``name`` is its path."""

    def __init__(self, wrapped: _files.TemporaryDirectory) -> None:
        self.wrapped = wrapped
        self.name = wrapped.name
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<hardtemp.aio TemporaryDirectory {self.name!r}>"

    async def persist(self, path: StrOrBytesPath, *, durable: bool = False) -> str | bytes:
        """As the sync ``persist()`` (same options), in a thread; raises what it raises."""
        result = await self._call(functools.partial(self.wrapped.persist, path, durable=durable))
        self.name = self.wrapped.name
        return result

    async def cleanup(self) -> None:
        """Remove the directory and everything in it, as the sync ``cleanup()``;
        runs to completion even if the awaiting task is cancelled."""
        await _in_thread(self._locked(self.wrapped.cleanup), shield=True)

    async def __aenter__(self) -> Any:
        return self.name

    async def __aexit__(
        self, exc: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        await _in_thread(self._locked(self.wrapped.__exit__, exc, value, tb), shield=True)


class Opening(Generic[A]):
    """What the async constructors return: ``await`` it for the object, or use it in
    ``async with`` (which closes / cleans up on exit)."""

    def __init__(self, create: Callable[[], Awaitable[A]]) -> None:
        self._create = create
        self._obj: A | None = None

    def __await__(self) -> Generator[Any, None, A]:
        return self._create().__await__()

    async def __aenter__(self) -> Any:
        self._obj = await self._create()
        return await self._obj.__aenter__()

    async def __aexit__(
        self, exc: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Only reached after __aenter__ stored the object (Python skips __aexit__ otherwise).
        await cast(A, self._obj).__aexit__(exc, value, tb)


def _close_quietly(obj: Any) -> None:
    with contextlib.suppress(Exception):  # best effort: a cancelled creation has no caller
        obj.close()


def _cleanup_quietly(obj: _files.TemporaryDirectory) -> None:
    with contextlib.suppress(Exception):
        obj.cleanup()


def open_file(wrap: type[AsyncFile], factory: Callable[[], Any]) -> Opening[AsyncFile]:
    """An :class:`Opening` that creates ``factory()`` in a thread and wraps it."""

    async def create() -> AsyncFile:
        return wrap(await _Creation(factory, _close_quietly).run())

    return Opening(create)


def open_named(factory: Callable[[], Any]) -> Opening[AsyncFile]:
    return open_file(AsyncNamedTemporaryFile, factory)


def open_spooled(factory: Callable[[], Any]) -> Opening[AsyncFile]:
    return open_file(AsyncSpooledTemporaryFile, factory)


def open_tempdir(
    factory: Callable[[], _files.TemporaryDirectory],
) -> Opening[AsyncTemporaryDirectory]:
    async def create() -> AsyncTemporaryDirectory:
        return AsyncTemporaryDirectory(await _Creation(factory, _cleanup_quietly).run())

    return Opening(create)


def _discard_mkstemp(result: tuple[int, str | bytes]) -> None:
    fd, path = result
    try:
        st, lst = os.fstat(fd), os.lstat(path)
        # Only while the name is still our (empty, new) inode: never remove another file.
        # (The directory was verified: only root or we could swap the name meanwhile.)
        if (st.st_dev, st.st_ino) == (lst.st_dev, lst.st_ino):
            os.unlink(path)
    except OSError:
        pass  # best effort: a cancelled creation has no caller to tell
    finally:
        os.close(fd)


def _discard_mkdtemp(path: str | bytes) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(path)  # just made and empty; never anything else (rmdir refuses non-empty)


async def mkstemp(factory: Callable[[], tuple[int, str | bytes]]) -> tuple[int, str | bytes]:
    return await _Creation(factory, _discard_mkstemp).run()


async def mkdtemp(factory: Callable[[], str | bytes]) -> str | bytes:
    return await _Creation(factory, _discard_mkdtemp).run()
