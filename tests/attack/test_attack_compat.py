"""Attacks on the tempfile drop-in by a real other local user (uid 65534).

Why root refuses an explicit ``dir=`` owned by another ordinary user, even one
only that user can write (python-dotenv's ``set_key()`` on a user's ``.env``,
an editor under sudo): the files we create there stay private (0600, written
through our descriptor), but the *name* we hand back is not ours to keep. The
directory's owner can replace it, between our return and the caller's next
use of that name, with a symlink to any file; root then opens the name and
writes where that user chose. The control below performs exactly that
against the standard library.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import hardtemp
import hardtemp.compat
from _helpers_core import nobody_dir
from hardtemp.exceptions import UnsafeDirectoryError

pytestmark = pytest.mark.attack


def _swap_for_symlink(name: str, target: str) -> None:  # pragma: no cover - other user
    """The directory's owner replaces our name with a symlink (she may: it is her directory)."""
    os.unlink(name)
    os.symlink(target, name)


def test_root_refuses_a_dir_owned_by_another_user_who_could_redirect_the_returned_name(
    shared_dir: Path, other_user: Callable[..., Any], tmp_path: Path
) -> None:
    theirs = nobody_dir(shared_dir)  # 0700, owned by the other user: only she can write it
    victim = tmp_path / "root-only"  # a file of root's the other user cannot even reach
    victim.write_text("root's data")

    # Control: the standard library creates there and returns the name...
    with tempfile.NamedTemporaryFile(dir=theirs, delete=False) as f:
        f.write(b"draft")
    # ...which the directory's owner swaps for a symlink to root's file...
    other_user(_swap_for_symlink, f.name, str(victim))
    # ...so root, reopening the name as callers of delete=False do, writes into that file.
    with open(f.name, "w") as again:  # the caller's own path-based reopen
        again.write("written where the other user chose")
    assert victim.read_text() == "written where the other user chose"
    os.unlink(f.name)

    # hardtemp refuses such a dir= and says why, before creating anything there.
    victim.write_text("root's data")
    for make in (
        lambda: hardtemp.compat.NamedTemporaryFile(dir=theirs, delete=False),
        lambda: hardtemp.compat.mkstemp(dir=theirs),
        lambda: hardtemp.NamedTemporaryFile(dir=theirs),
        lambda: hardtemp.mkdtemp(dir=theirs),
    ):
        with pytest.raises(UnsafeDirectoryError) as info:
            make()
        assert info.value.path == str(theirs)
        assert "not by root: that user can replace any name in it" in info.value.reason
    assert os.listdir(theirs) == []
    assert victim.read_text() == "root's data"
