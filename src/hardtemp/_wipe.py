"""STUB (replaced by the wipe branch): removal without overwrite."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .exceptions import UnsafeFileError


@dataclass(frozen=True)
class WipeReport:
    path: str | None
    bytes_overwritten: int
    passes: int
    pattern: str
    filesystem: str
    verdict: str
    reasons: tuple[str, ...]
    hard_links: int
    duration: float
    removed: bool


def overwrite_fd(
    fd: int,
    *,
    path: str | None = None,
    passes: int = 1,
    pattern: str = "random",
    on_unreliable: str | None = None,
) -> WipeReport:
    return WipeReport(path, 0, 0, pattern, "?", "skipped", (), 1, 0.0, False)


def remove_entry(
    dir_fd: int,
    name: str | bytes,
    *,
    display_path: str | None = None,
    fd: int | None = None,
    expect: tuple[int, int] | None = None,
    overwrite: bool = True,
    own_file: bool = True,
    passes: int = 1,
    pattern: str = "random",
    sync_dir: bool = True,
    on_unreliable: str | None = None,
) -> WipeReport:
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if expect is not None and (st.st_dev, st.st_ino) != expect:
        raise UnsafeFileError(display_path, "name no longer refers to the file we created")
    os.unlink(name, dir_fd=dir_fd)
    return WipeReport(display_path, 0, 0, pattern, "?", "skipped", (), st.st_nlink, 0.0, True)
