"""Adversarial review of issue 13's cuts made this session (review7).

NamedTemporaryFile's cleanup of files never exited is a weak reference per file in a dict
of pending cleanups, drained newest first by one atexit hook (it was a
``weakref.finalize`` per file). ``weakref.finalize``'s exit hook runs every finalizer in
its own ``try``: one file whose cleanup raises (hardtemp raises ``UnsafeFileError`` when our
name now holds something not ours to remove) is reported and the others are still
overwritten and removed. Each case here runs a real interpreter to its real exit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Two named files left open and unexited (the older holds the marker); with "dir" the newer
# one's name is replaced by a directory, so its cleanup at exit raises UnsafeFileError.
_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import hardtemp

    older = hardtemp.NamedTemporaryFile(dir=sys.argv[1])
    older.write(b"REVIEW7-OLDER-FILE-PLAINTEXT" * 8)
    older.flush()
    newer = hardtemp.NamedTemporaryFile(dir=sys.argv[1])
    newer.write(b"x")
    newer.flush()
    if sys.argv[2] == "dir":
        os.unlink(newer.name)
        os.mkdir(newer.name)  # not ours to remove: its cleanup raises at exit
    print(older.name, newer.name, flush=True)
    """
)


@pytest.mark.parametrize(
    "newer",
    [
        pytest.param("file", id="control-both-removed"),
        # Found in review (review7): the atexit drain stopped at the first cleanup that
        # raised; each file now has its own try, as weakref.finalize's exit hook did.
        pytest.param("dir", id="newer-cleanup-raises"),
    ],
)
def test_one_named_files_failing_cleanup_at_exit_leaves_the_others_removed(
    tmp_path: Path, newer: str
) -> None:
    script = tmp_path / "script.py"
    script.write_text(_SCRIPT)
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(
        [sys.executable, str(script), str(work), newer],
        capture_output=True,
        timeout=60,
        check=False,
    )
    older_name, newer_name = done.stdout.decode().split()
    if newer == "dir":
        # The break's precondition happened: the newer file's cleanup did raise.
        assert b"UnsafeFileError" in done.stderr, done.stderr
        assert os.path.isdir(newer_name)
        os.rmdir(newer_name)
    else:
        assert not os.path.lexists(newer_name)
    left = {p.name: p.read_bytes() for p in work.iterdir()}
    assert not os.path.lexists(older_name), f"older file left with its data: {left}"
    assert done.returncode == 0, done.stderr.decode()
