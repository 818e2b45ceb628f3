"""Forensic proof for MemoryFile: its data never reaches the filesystem it runs next to.

A process whose TMPDIR and working directory are a loop-mounted ext4 writes a
unique marker into a MemoryFile and syncs; the raw image never holds it. The
control does the same with the standard library's TemporaryFile: the marker is
in the image, so the search can find it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import pytest

from _helpers_core import SRC, marker

pytestmark = pytest.mark.forensic

LoopFS = Any  # tests/conftest.py's LoopFS

WRITER = textwrap.dedent(
    """
    import os, sys, tempfile
    import hardtemp
    marker = sys.argv[2].encode()
    if sys.argv[1] == "memfd":
        f = hardtemp.MemoryFile(max_size=None)
    else:
        f = tempfile.TemporaryFile()
    for _ in range(2000):
        f.write(marker)
    f.flush()
    os.fsync(f.fileno())
    os.sync()
    f.seek(0)
    assert f.read(len(marker)) == marker
    os.write(1, b"written")
    os.sync()
    f.close()
    """
)


def run_writer(fs: LoopFS, kind: str, m: bytes) -> None:
    env = dict(os.environ, PYTHONPATH=SRC, TMPDIR=str(fs.mountpoint))
    proc = subprocess.run(
        [sys.executable, "-c", WRITER, kind, m.decode()],
        cwd=fs.mountpoint,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "written"


def test_ext4_memory_file_never_puts_the_marker_on_disk(loopfs: Callable[..., LoopFS]) -> None:
    fs = loopfs("ext4")
    m = marker()
    run_writer(fs, "memfd", m)
    assert os.listdir(fs.mountpoint) == ["lost+found"]
    assert not fs.image_contains(m)


def test_ext4_control_stdlib_temporary_file_puts_the_marker_on_disk(
    loopfs: Callable[..., LoopFS],
) -> None:
    fs = loopfs("ext4")
    m = marker()
    run_writer(fs, "stdlib", m)
    assert fs.image_contains(m), "control: the standard library's file reached the disk"
