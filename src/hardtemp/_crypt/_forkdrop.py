"""A forked child drops what the buffered and text layers of an encrypted file cached.

``io.BufferedRandom`` keeps up to a buffer of read-ahead plaintext and of
unflushed writes; ``io.TextIOWrapper`` keeps decoded characters and pending
text. After ``fork()`` the child holds copies of both. Read-ahead would give
the child bytes of a block the parent has rewritten since (stale data, where a
read from the backing file raises ``IntegrityError``); flushing the pending
writes would make the child write the backing file it shares with the parent.

Invariants:

* an encrypted file object's buffered and text layers are instances of the
  plain subclasses below, which add nothing to any call in the parent but
  ``BufferedRandom.seek``'s repair after a failed seek (CPython 3.11 and 3.12
  return a wrong position from the next seek otherwise);
* in a child forked through Python's fork hooks (``os.fork``,
  ``multiprocessing``), each such layer wears a twin class until its first
  use; that first use (any attribute, iteration, finalization at exit or by
  the garbage collector) first drops the layer's read-ahead and discards its
  unflushed writes, the encrypted raw file accepting and dropping them
  without touching the backing file, and keeps the position; only then does
  the call proceed, under the plain class again (so the child reads from the
  backing file: authenticated data, or ``IntegrityError``);
* nothing is done at fork time but a class swap: no lock of a layer is taken
  in the fork hook (another parent thread may have held it);
* a layer whose position cannot be kept (a text file being iterated:
  ``tell()`` is disabled) is closed in the child instead (still without
  writing), so it can never return stale data;
* files that already switched to plaintext (``encrypt="until-fileno"`` after
  ``fileno()``) behave like the standard file;
* not covered: a ``fork()`` that bypasses Python's hooks (a C extension
  calling ``fork(2)``): the raw file still refuses writes there, but the
  buffered layers keep what they held (see SECURITY.md).
"""

from __future__ import annotations

import contextlib
import io
import os
import weakref
from typing import IO, Any, ClassVar, Final

from .._iostack import StackClasses
from ._raw import EncryptedRawIO
from ._switch import SwitchingRawIO

__all__ = ["STACK_CLASSES", "register"]

_SEEK_END: Final = os.SEEK_END  # a module global may be gone during interpreter shutdown
#: Where a drop interrupted between its reset and its restoring seek keeps the position.
_POS_KEY: Final = "_hardtemp_fork_position"


_buffered_seek: Final = io.BufferedRandom.seek


class BufferedRandom(io.BufferedRandom):
    """``io.BufferedRandom`` of an encrypted file (see the module docstring)."""

    def seek(self, offset: int, whence: int = os.SEEK_SET, /) -> int:
        """As ``io.BufferedRandom.seek``; a failed seek leaves the layer consistent.

        Raises:
            OSError: as the standard seek (``EINVAL`` for a negative position).
        """
        try:
            return _buffered_seek(self, offset, whence)  # (no super object per seek)
        except OSError:
            # CPython 3.11/3.12: a seek that fails after a write keeps a stale raw
            # position, and the next seek returns a wrong offset (e.g. -30 for 0). A
            # seek to the end and back resets it; a further failure changes nothing.
            with contextlib.suppress(OSError):
                pos = super().tell()
                super().seek(0, _SEEK_END)
                super().seek(pos)
            raise


class BufferedReader(io.BufferedReader):
    """``io.BufferedReader`` of an encrypted file (see the module docstring)."""


class BufferedWriter(io.BufferedWriter):
    """``io.BufferedWriter`` of an encrypted file (see the module docstring)."""


class TextIOWrapper(io.TextIOWrapper):
    """``io.TextIOWrapper`` of an encrypted file (see the module docstring)."""


STACK_CLASSES: Final = StackClasses(BufferedRandom, BufferedReader, BufferedWriter, TextIOWrapper)


class _InChild:
    """Mixin of the twin a layer wears in a forked child until its first use."""

    __slots__ = ()
    _plain: ClassVar[type]

    def __getattribute__(self, name: str) -> Any:
        _drop(self)
        return getattr(self, name)

    def __iter__(self) -> Any:  # iteration is a type slot: __getattribute__ does not see it
        _drop(self)
        return iter(self)

    def __next__(self) -> Any:
        _drop(self)
        return next(self)


def _twin(plain: type) -> type:
    return type(f"{plain.__name__}InForkedChild", (_InChild, plain), {"_plain": plain})


_TWINS: Final[dict[type, type]] = {c: _twin(c) for c in STACK_CLASSES}
# Weak references to the layers registered; each removes itself when its layer is
# collected (set.discard as the callback: no Python frame, unlike a WeakSet's).
_tops: set[weakref.ref[Any]] = set()


def register(file: IO[Any]) -> IO[Any]:
    """Note ``file`` (the top of an encrypted stack, any layer) for the fork hook;
    returns it. A raw file (``buffering=0``) needs nothing: it caches nothing
    the child could read stale (its own fork handling is in ``_raw``)."""
    kind = type(file)
    if kind in _TWINS:
        _tops.add(weakref.ref(file, _tops.discard))
        if kind is TextIOWrapper:  # (a binary layer has no .buffer: no AttributeError raised)
            buffer = file.buffer  # type: ignore[attr-defined]
            if type(buffer) in _TWINS:
                _tops.add(weakref.ref(buffer, _tops.discard))  # reachable on its own
    return file


def _after_fork_in_child() -> None:
    for ref in list(_tops):
        obj = ref()
        twin = _TWINS.get(type(obj))
        if twin is not None:
            # Only a class swap: the layer's lock may be held by a parent thread.
            object.__setattr__(obj, "__class__", twin)


os.register_at_fork(after_in_child=_after_fork_in_child)


def _drop(obj: Any) -> None:
    """First use in the child: wear the plain class again, then reset the layer."""
    twin = type(obj)
    object.__setattr__(obj, "__class__", twin._plain)
    try:
        _reset(obj)
    except BaseException:
        # An interrupt (a signal handler raising): the next use retries the reset.
        object.__setattr__(obj, "__class__", twin)
        raise


def _encrypted_under(obj: Any) -> EncryptedRawIO | None:
    buffered = obj.buffer if isinstance(obj, io.TextIOWrapper) else obj
    raw = buffered.raw
    if isinstance(raw, SwitchingRawIO):
        raw = raw.current
    return raw if isinstance(raw, EncryptedRawIO) and not raw.closed else None


def _reset(obj: Any) -> None:
    enc = _encrypted_under(obj)
    if enc is None or obj.closed:
        return
    state = obj.__dict__
    with enc.discarding_writes():  # flushes below reach the raw file and go nowhere
        if _POS_KEY not in state:
            try:
                state[_POS_KEY] = obj.tell()
            except OSError:  # e.g. tell() disabled while a text file is iterated
                with contextlib.suppress(Exception):
                    obj.close()  # no position to keep: never stale data instead
                return
        # Not a seek inside the buffer (which would keep it): flush, raw seek, reset.
        obj.seek(0, _SEEK_END)
        obj.seek(state[_POS_KEY])
        del state[_POS_KEY]
