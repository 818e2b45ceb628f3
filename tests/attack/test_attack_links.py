"""Hard links planted by another local user (uid 65534) against creation (issue 11, item 4).

With ``fs.protected_hardlinks=0`` anyone can link a file they cannot read. An attacker
watching a shared sticky directory with inotify links every new name the moment it
appears. The link gives them no read access (our files are 0600), but it keeps our
inode alive after we remove our name. Defences tested here: creation never fails
because of such a link, and a named file hardtemp removes is overwritten through our
descriptor before the unlink, so the inode the attacker keeps holds none of our bytes.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import struct
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import hardtemp
from _helpers_attack import attacker_in_background, sysctl_set, wait_for
from _helpers_core import marker
from hardtemp.exceptions import UnsafeFileError

pytestmark = pytest.mark.attack

ROUNDS = 300  # of each of NamedTemporaryFile and mkstemp: 600 creations
_IN_CREATE = 0x100
_LINK_PREFIX = "stolen-"
_NAMED = "named-"  # the prefix of our NamedTemporaryFile names


def _link_every_new_file(directory: str) -> None:  # pragma: no cover - other user
    """As uid 65534: inotify on ``directory``; hard-link each new entry as it appears."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    ifd = libc.inotify_init1(os.O_CLOEXEC)
    if ifd < 0 or libc.inotify_add_watch(ifd, os.fsencode(directory), _IN_CREATE) < 0:
        return
    ready = os.path.join(directory, "attacker-ready")
    os.close(os.open(ready, os.O_WRONLY | os.O_CREAT, 0o644))
    while True:
        data = os.read(ifd, 65536)
        while data:
            _wd, _mask, _cookie, length = struct.unpack("iIII", data[:16])
            name = data[16 : 16 + length].rstrip(b"\0").decode()
            data = data[16 + length :]
            if name.startswith(_LINK_PREFIX) or name == "attacker-ready":
                continue
            with contextlib.suppress(OSError):
                os.link(os.path.join(directory, name), os.path.join(directory, _LINK_PREFIX + name))


def _try_read(path: str) -> str:  # pragma: no cover - other user
    try:
        with open(path, "rb") as f:
            return "READ:" + f.read().decode(errors="replace")
    except OSError as exc:
        return type(exc).__name__


def _stolen(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.startswith(_LINK_PREFIX)]


def _run_attack(
    directory: Path, make_named: object, make_fd: object
) -> tuple[int, int, int, list[bytes]]:
    """``ROUNDS`` named files and ``ROUNDS`` mkstemp files made under the watch.

    Returns (failed creations, attacker links to our named files, those links still
    holding one of our markers, the markers).
    """
    failed = 0
    secrets: list[bytes] = []
    with attacker_in_background(_link_every_new_file, str(directory)):
        wait_for(lambda: (directory / "attacker-ready").exists())
        for _ in range(ROUNDS):
            data = marker()
            try:
                f = make_named(dir=directory, prefix=_NAMED)  # type: ignore[operator]
            except UnsafeFileError:
                failed += 1
            else:
                secrets.append(data)
                f.write(data)
                f.flush()
                # Give the attacker its link before we close (a loaded CI machine let it
                # win only 57 of 300 races): every round is then a real attack.
                theirs = directory / (_LINK_PREFIX + os.path.basename(f.name))
                with contextlib.suppress(AssertionError):
                    wait_for(theirs.exists, timeout=0.5)
                f.close()  # removal: overwrite through our descriptor, then unlink
            try:
                fd, path = make_fd(dir=directory)  # type: ignore[operator]
            except UnsafeFileError:
                failed += 1
            else:
                os.close(fd)
                os.unlink(path)  # the caller removes a mkstemp file (as with tempfile)
        # The attacker's last links: let it finish the queue before it is killed.
        with contextlib.suppress(AssertionError):
            wait_for(lambda: len(_stolen(directory)) >= ROUNDS, timeout=2)
    stolen = [p for p in _stolen(directory) if p.name.startswith(_LINK_PREFIX + _NAMED)]
    kept = 0
    for link in stolen:  # as root, through the attacker's names
        content = link.read_bytes()
        kept += any(s in content for s in secrets)
    return failed, len(stolen), kept, secrets


def test_creation_under_an_inotify_linking_attacker_never_fails_and_leaves_no_bytes(
    shared_dir: Path,
) -> None:
    # Defence: a link to a file we just created with O_EXCL is tolerated (the inode is
    # still ours and 0600), and removal overwrites through our descriptor before unlink.
    with sysctl_set("fs.protected_hardlinks", 0), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "this temporary file had 2 hard links"
        failed, links, kept, _ = _run_attack(
            shared_dir, hardtemp.NamedTemporaryFile, hardtemp.mkstemp
        )
    assert links >= ROUNDS * 9 // 10  # the attack is real: the attacker linked our named files
    assert failed == 0
    assert kept == 0  # no inode the attacker keeps holds one of our markers


def test_links_control_the_stdlib_leaves_its_data_on_the_attackers_links(
    shared_dir: Path,
) -> None:
    # Control: the same attack against tempfile, which unlinks without overwriting.
    with sysctl_set("fs.protected_hardlinks", 0):
        failed, links, kept, _ = _run_attack(
            shared_dir, tempfile.NamedTemporaryFile, tempfile.mkstemp
        )
    assert failed == 0
    assert links >= ROUNDS * 9 // 10
    assert kept == links  # our data lives on through every one of the attacker's links


def test_the_attackers_link_cannot_read_what_it_keeps(
    shared_dir: Path, other_user: Callable[..., Any]
) -> None:
    # What the link does not give: read access (0600, root's) to the file it names.
    data = marker()
    with sysctl_set("fs.protected_hardlinks", 0):
        f = hardtemp.NamedTemporaryFile(dir=shared_dir)
        f.write(data)
        f.flush()
        theirs = shared_dir / "theirs"
        other_user(os.link, f.name, str(theirs))
    try:
        assert other_user(_try_read, str(theirs)) == "PermissionError"
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f.close()
    assert theirs.stat().st_nlink == 1
    assert data not in theirs.read_bytes()  # overwritten through our descriptor
