"""Forensic proof for data cut off a plaintext temp file (issue 12, item 2).

``truncate()`` through hardtemp's own objects overwrites the range before the kernel
frees it: the marker is gone from the raw ext4 image right after the cut, while the
file is still open (the overwrite at close cannot reach freed blocks, so only the
overwrite before the cut can explain it). The standard library is the control.
A cut made by another program (``O_TRUNC``, a punched hole) cannot be undone: the
marker stays in the image, and hardtemp says so with a warning at close.
"""

from __future__ import annotations

import gc
import os
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import hardtemp
from hardtemp import _dirtrust, _fsinfo, compat
from hardtemp.exceptions import WipeUnreliableWarning

LoopFS = Any  # tests/conftest.py's LoopFS

pytestmark = pytest.mark.forensic


@pytest.fixture(autouse=True)
def _strict() -> Iterator[None]:
    _fsinfo.clear_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("error", WipeUnreliableWarning)
        yield


def _marker() -> bytes:
    import secrets

    return b"HARDTEMP-MARKER-" + secrets.token_hex(24).encode() + b"-END"


def _on_disk(fs: LoopFS, needle: bytes) -> bool:
    os.sync()
    return needle in fs.image.read_bytes()


def _gone_after_unmount(fs: LoopFS, needle: bytes) -> bool:
    gc.collect()
    _dirtrust.clear_cache()
    gc.collect()
    return not fs.image_contains(needle)


_MAKERS: dict[str, Callable[[str], Any]] = {
    "NamedTemporaryFile": lambda d: hardtemp.NamedTemporaryFile(dir=d),
    "TemporaryFile(encrypt=False)": lambda d: hardtemp.TemporaryFile(dir=d, encrypt=False),
    "SpooledTemporaryFile(encrypt=False)": lambda d: hardtemp.SpooledTemporaryFile(
        max_size=16, dir=d, encrypt=False
    ),
    "compat.NamedTemporaryFile": lambda d: compat.NamedTemporaryFile(dir=d),
    "compat.TemporaryFile": lambda d: compat.TemporaryFile(dir=d),
}


@pytest.mark.parametrize("how", ["seek(0); truncate()", "truncate(100)"])
@pytest.mark.parametrize("kind", list(_MAKERS))
def test_ext4_truncate_through_our_object_leaves_no_marker(
    loopfs: Callable[..., LoopFS], kind: str, how: str
) -> None:
    fs = loopfs("ext4")
    m = _marker()
    f = _MAKERS[kind](str(fs.mountpoint))
    f.write(b"k" * 4096 + m * 300)
    f.flush()
    os.fsync(f.fileno())
    assert _on_disk(fs, m)
    if how == "truncate(100)":
        f.truncate(100)
    else:
        f.seek(0)
        f.truncate()
    assert not _on_disk(fs, m), "the cut range was freed with the marker in it"
    f.write(b"short")
    f.close()
    del f  # it holds the verified directory's descriptor: the mount would stay busy
    assert _gone_after_unmount(fs, m)


def test_ext4_control_stdlib_truncate_leaves_the_marker(loopfs: Callable[..., LoopFS]) -> None:
    fs = loopfs("ext4")
    m = _marker()
    with tempfile.NamedTemporaryFile(dir=fs.mountpoint) as f:
        f.write(m * 300)
        f.flush()
        os.fsync(f.fileno())
        f.seek(0)
        f.truncate()
        assert _on_disk(fs, m), "control: the freed blocks still hold the marker"
    del f
    assert not _gone_after_unmount(fs, m)


def _o_trunc(path: str) -> None:
    subprocess.run(["sh", "-c", ': > "$1"', "sh", path], check=True)


def _punch(path: str) -> None:
    subprocess.run(["fallocate", "-p", "-o", "0", "-l", str(1 << 20), path], check=True)


@pytest.mark.parametrize("cut", [_o_trunc, _punch], ids=["O_TRUNC", "punch"])
def test_ext4_a_cut_by_another_program_warns_and_the_marker_is_honestly_still_there(
    loopfs: Callable[..., LoopFS], cut: Callable[[str], None]
) -> None:
    fs = loopfs("ext4")
    m = _marker()
    f = hardtemp.NamedTemporaryFile(dir=fs.mountpoint)
    f.write(m * 300)
    f.flush()
    os.fsync(f.fileno())
    assert _on_disk(fs, m)
    cut(f.name)  # the program we handed the name to
    with pytest.warns(WipeUnreliableWarning, match="freed without an overwrite"):
        f.close()
    assert os.listdir(fs.mountpoint) == ["lost+found"]
    del f
    # What the warning says is true: no overwrite can reach blocks already freed.
    assert not _gone_after_unmount(fs, m)
