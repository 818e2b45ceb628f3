"""Shared by the forensic suites: data that reaches the disk, and searches of raw images."""

from __future__ import annotations

import gc
import os
from typing import Any

from hardtemp import _dirtrust
from hardtemp._fsinfo import set_nocow


def write_synced(path: str, data: bytes, *, nocow: bool = False) -> None:
    """A new 0600 file ``path`` holding ``data``, fsynced (NOCOW first if asked, on btrfs)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if nocow:
            assert set_nocow(fd), "could not set NOCOW on an empty btrfs file"
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def on_disk(fs: Any, needle: bytes) -> bool:
    """Search the raw image while mounted (the loop device writes through to the image)."""
    return needle in fs.image.read_bytes()


def payload(m: bytes, size: int) -> bytes:
    """``size`` bytes of the marker ``m`` repeated (at least one whole marker)."""
    return (m * (size // len(m) + 1))[:size] if size >= len(m) else m


def unmounted_image(fs: Any) -> bytes:
    """Unmount ``fs`` (nothing of ours keeps it busy), then the raw image's bytes."""
    gc.collect()
    _dirtrust.clear_cache()
    gc.collect()
    fs.unmount()
    data: bytes = fs.image.read_bytes()
    return data
