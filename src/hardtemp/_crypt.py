"""STUB (replaced by the crypt branch)."""

from __future__ import annotations

from typing import IO, Any


def open_encrypted(
    fd: int,
    mode: str = "w+b",
    buffering: int = -1,
    encoding: str | None = None,
    newline: str | None = None,
    errors: str | None = None,
    *,
    name: object = None,
) -> IO[Any]:
    return open(fd, mode, buffering, encoding, errors, newline)
