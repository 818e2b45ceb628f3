"""Building ``io.open``'s object stack (buffer, text layer) over a raw file of ours."""

from __future__ import annotations

import io
import warnings
from typing import IO, Any

__all__ = ["check_mode", "raw_mode", "wrap_raw"]


def check_mode(
    mode: str, buffering: int, encoding: str | None, errors: str | None, newline: str | None
) -> None:
    """Validate ``mode`` and its companions exactly as :func:`open` does.

    Raises:
        TypeError: ``mode`` is not a string.
        ValueError: an invalid mode or a combination :func:`open` rejects.
    """
    if not isinstance(mode, str):
        raise TypeError(f"mode must be str, not {type(mode).__name__}")
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
    elif buffering == 0:
        raise ValueError("can't have unbuffered text I/O")


def raw_mode(mode: str) -> str:
    """The :class:`io.FileIO` mode :func:`open` derives from a valid ``mode``."""
    return "".join(c for c in "xrwa" if c in mode) + ("+" if "+" in mode else "")


def wrap_raw(
    raw: io.RawIOBase,
    mode: str,
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
) -> IO[Any]:
    """Wrap ``raw`` in the buffered and text layers :func:`open` would build for ``mode``.

    The raw file must already be open; ``mode`` is validated first (see
    :func:`check_mode`). Returns ``raw`` itself for ``buffering=0`` in binary mode.
    """
    check_mode(mode, buffering, encoding, errors, newline)
    binary = "b" in mode
    if binary and buffering == 1:
        warnings.warn(
            "line buffering (buffering=1) isn't supported in binary mode, "
            "the default buffer size will be used",
            RuntimeWarning,
            stacklevel=3,
        )
    line_buffering = buffering == 1
    if buffering in (1, -1) or buffering < 0:
        buffering = io.DEFAULT_BUFFER_SIZE
    if buffering == 0:
        return raw  # type: ignore[return-value]
    buffer: io.BufferedIOBase
    if "+" in mode:
        buffer = io.BufferedRandom(raw, buffering)
    elif "r" in mode:
        buffer = io.BufferedReader(raw, buffering)
    else:
        buffer = io.BufferedWriter(raw, buffering)
    if binary:
        return buffer
    text = io.TextIOWrapper(
        buffer,
        io.text_encoding(encoding),
        errors,
        newline,
        line_buffering,
    )
    text.mode = mode  # type: ignore[misc]
    return text
