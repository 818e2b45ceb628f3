"""Building ``io.open``'s object stack (buffer, text layer) over a raw file of ours."""

from __future__ import annotations

import io
import warnings
from typing import IO, Any, NamedTuple

__all__ = ["STDLIB_CLASSES", "StackClasses", "check_mode", "raw_mode", "wrap_raw"]


class StackClasses(NamedTuple):
    """The classes :func:`wrap_raw` builds the layers of a stack from."""

    random: type[io.BufferedRandom]
    reader: type[io.BufferedReader]
    writer: type[io.BufferedWriter]
    text: type[io.TextIOWrapper]


STDLIB_CLASSES = StackClasses(
    io.BufferedRandom, io.BufferedReader, io.BufferedWriter, io.TextIOWrapper
)


def check_mode(
    mode: str, buffering: int, encoding: str | None, errors: str | None, newline: str | None
) -> None:
    """Validate ``mode`` and its companions exactly as :func:`open` does.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: an invalid mode or a combination :func:`open` rejects.
    """
    # Every file checks its mode: a mode already found valid with the default buffering
    # and no text options is valid again (exact str and int: no subclass's __eq__ or
    # __hash__ decides; the set is bounded by the finite number of valid mode strings).
    if (
        buffering == -1
        and encoding is None
        and errors is None
        and newline is None
        and type(mode) is str
        and type(buffering) is int
        and mode in _VALID_DEFAULT
    ):
        return
    _check_mode(mode, buffering, encoding, errors, newline)
    plain = encoding is None and errors is None and newline is None
    if plain and buffering == -1 and type(buffering) is int and type(mode) is str:
        _VALID_DEFAULT.add(mode)


_VALID_DEFAULT: set[str] = set()  # modes check_mode() passed with buffering=-1 and no options


def _check_mode(
    mode: str, buffering: int, encoding: str | None, errors: str | None, newline: str | None
) -> None:
    """:func:`check_mode`, every time. Raises: as :func:`check_mode`."""
    if not isinstance(mode, str):
        raise TypeError(f"mode must be str, not {type(mode).__name__}")
    if not isinstance(buffering, int) or isinstance(buffering, bool):
        raise TypeError(f"buffering must be an int, not {type(buffering).__name__}")
    for label, value in (("encoding", encoding), ("errors", errors), ("newline", newline)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{label} must be str or None, not {type(value).__name__}")
    modes = set(mode)
    if modes - set("axrwb+t") or len(mode) > len(modes):
        raise ValueError(f"invalid mode: {mode!r}")
    if sum(c in modes for c in "xrwa") != 1:
        raise ValueError("must have exactly one of create/read/write/append mode")
    if "t" in modes and "b" in modes:
        raise ValueError("can't have text and binary mode at once")
    if "b" in modes:
        for name, value in (
            ("an encoding", encoding),
            ("an errors", errors),
            ("a newline", newline),
        ):
            if value is not None:
                raise ValueError(f"binary mode doesn't take {name} argument")
    else:
        if buffering == 0:
            raise ValueError("can't have unbuffered text I/O")
        if newline not in (None, "", "\n", "\r", "\r\n"):
            raise ValueError(f"illegal newline value: {newline!r}")


def raw_mode(mode: str) -> str:
    """The :class:`io.FileIO` mode for an :func:`open` mode (``"w+"`` -> ``"rb+"``)."""
    raw = _RAW_MODES.get(mode)
    if raw is not None:
        return raw
    kind = next(c for c in mode if c in "xrwa")
    raw = f"{kind}b"
    if "+" in mode:
        raw = "xb+" if kind == "x" else "ab+" if kind == "a" else "rb+"
    if type(mode) is str and len(_RAW_MODES) < 512:  # bounded: valid modes are few
        _RAW_MODES[mode] = raw
    return raw


_RAW_MODES: dict[str, str] = {}  # open() mode -> FileIO mode, as computed before


def wrap_raw(
    raw: io.RawIOBase,
    mode: str,
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    *,
    buffer_size: int = io.DEFAULT_BUFFER_SIZE,
    classes: StackClasses = STDLIB_CLASSES,
) -> IO[Any]:
    """Wrap ``raw`` in the buffered and text layers :func:`open` would build for ``mode``.

    ``mode`` must have passed :func:`check_mode`. The layers are instances of
    ``classes`` (subclasses of :mod:`io`'s, for encrypted files). Returns ``raw`` itself for
    ``buffering=0`` in binary mode. ``raw`` is closed if wrapping fails (e.g.
    an unknown encoding), so the caller never closes its descriptor twice.

    Raises:
        LookupError: unknown ``encoding``.
    """
    binary = "b" in mode
    if binary and buffering == 1:
        warnings.warn(
            "line buffering (buffering=1) isn't supported in binary mode, "
            "the default buffer size will be used",
            RuntimeWarning,
            stacklevel=3,
        )
    line_buffering = buffering == 1 and not binary
    if buffering == 0:
        return raw  # type: ignore[return-value]
    size = buffer_size if buffering < 0 or buffering == 1 else buffering
    result: Any = raw
    try:
        if "+" in mode:
            result = classes.random(raw, size)
        elif "r" in mode:
            result = classes.reader(raw, size)
        else:
            result = classes.writer(raw, size)
        if binary:
            return result  # type: ignore[no-any-return]
        result = classes.text(result, io.text_encoding(encoding), errors, newline, line_buffering)
        result.mode = mode
        return result  # type: ignore[no-any-return]
    except BaseException:
        result.close()
        raise
