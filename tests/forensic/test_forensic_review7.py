"""Adversarial review of issue 13's cuts made this session (review7), on real images.

The mount-table watch (``_fsinfo._MountWatch``) is one descriptor of
``/proc/self/mountinfo``, polled for ``POLLPRI``; while it reports nothing, a close is
classified from the cache by (mount id, ``st_dev``) alone. This session's fixes made it
reopen after any fork and after a change of mount namespace. Attacked here: the
descriptor-number reuse review6 found in the named close (a library's double close frees
the number, the application's next ``open()`` takes it), aimed at the watch's own number.
A regular file polled for ``POLLPRI`` never reports anything, so every later mount change
goes unseen. The scenario is review6's (``tests/forensic/test_forensic_review6.py``): a
classified tmpfs replaced by an overlayfs (ext4 upper on a loop image) with the same
``st_dev`` and mount id, a synced marker in a named and an unnamed plain file, the raw
image grepped after their closes; in a private mount namespace (``unshare -m``).

The watch now tells its own file by the poll answer (``db1794c``); attacked again with the
number taken by the application's own open of ``/proc/self/mountinfo`` after a change: that
file answers as an unchanged watch. Closed where the kernel has unique mount ids (Linux >= 6.8:
the caches are keyed by them, and the overlay's is not the tmpfs's); open with the old ids,
forced here as an older kernel gives them (a strict xfail).

Also attacked (held): a cache hit on a stale entry after ``unshare(CLONE_NEWNS)``, before
the first miss would notice the new namespace; the kernel's numbers are checked for reuse.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import hardtemp
from _gates import require_unshare
from _helpers_core import MOUNT_ID_KINDS
from forensic.test_forensic_review6 import _SCRIPT, _SCRIPT_TOOLS, _check
from forensic.test_forensic_review6 import _run as _run_script

pytestmark = pytest.mark.forensic

_ANCHOR = "hardtemp.TemporaryFile(dir=work, encrypt=False).close()  # the watch is open"
# Right after the watch is opened: a library closes its number a second time by mistake,
# and the application's next open() (here the image, read-only) takes that number.
_STEAL = r"""
if case == "{case}":
    watch = next(
        int(n)
        for n in os.listdir("/proc/self/fd")
        if os.path.exists(f"/proc/self/fd/{{n}}")
        and os.readlink(f"/proc/self/fd/{{n}}").endswith("/mountinfo")
    )
    os.close(watch)  # a library's double close: the number is free again
    theirs = os.open({opened}, os.O_RDONLY | os.O_CLOEXEC)
    if theirs != watch:
        os.dup2(theirs, watch)
        os.close(theirs)
"""
_REUSE = _STEAL.format(case="watch-number-reused", opened="img")


_SWAPPED = "os.chmod(mnt, 0o755)"
# After the swap (the overlay has the tmpfs's st_dev and mount id), before the next close:
# the same double close, and the application reads the mount table (psutil, a container
# check): its open() of /proc/self/mountinfo takes the number, a file as fresh as a new
# watch, whose poll state starts after the change it would have had to report.
_REUSE_AS_MOUNTINFO = _STEAL.format(
    case="watch-number-reused-by-mountinfo", opened='"/proc/self/mountinfo"'
) + ("    os.read(watch, 65536)  # the application reads the table (and keeps the file open)\n")


def _script() -> str:
    script = _SCRIPT
    for anchor, step in ((_ANCHOR, _REUSE), (_SWAPPED, _REUSE_AS_MOUNTINFO)):
        at = script.index(anchor)  # review6's script changed: this test must be looked at
        end = script.index("\n", at) + 1
        script = script[:end] + step + script[end:]
    return script


def _run(tmp_path: Path, case: str, kind: str) -> dict[str, object]:
    return _run_script(tmp_path, case, kind, _script())


# review7's break of db1794c's fix, open where the mount ids are the old ones (Linux < 6.8).
_BLINDED_OLD_IDS = (
    "review7 break of db1794c's fix, open before Linux 6.8 (old mount ids, forced here; see "
    "SECURITY.md): the watch tells its file by the poll answer alone (POLLIN: mountinfo, "
    "unchanged); its number closed by other code and taken by the application's own open of "
    "/proc/self/mountinfo answers just that, and that file's poll state starts at its open: a "
    "mount change made before it (the tmpfs swapped for an overlay with its st_dev and old "
    "mount id) is never reported, the stale 'volatile' is served, the synced marker stays. A "
    "library's double close of a number it once held cannot reach the watch (kept at a high "
    "number: test_fsinfo); this test closes the watch's own number on purpose. Closed on "
    "Linux >= 6.8 (the unique-ids case): the caches are keyed by unique mount ids "
    "(STATX_MNT_ID_UNIQUE), which no later mount gets"
)


def _cases() -> list[Any]:
    cases = []
    for kind in MOUNT_ID_KINDS:
        cases += [
            pytest.param("stay", kind, id=f"control-watch-intact-{kind}"),
            # Found in review (review7): a regular file polled for POLLPRI never reported a
            # change. The watch now polls POLLIN|POLLOUT too, and anything but mountinfo's
            # answer (POLLIN, + POLLPRI on a change) makes it reopen its own.
            pytest.param("watch-number-reused", kind, id=f"watch-number-freed-and-reused-{kind}"),
            # Fixed with unique mount ids (review7's named fix); open with the old ones.
            pytest.param(
                "watch-number-reused-by-mountinfo",
                kind,
                id=f"watch-number-reused-by-a-mountinfo-read-{kind}",
                marks=[pytest.mark.xfail(strict=True, reason=_BLINDED_OLD_IDS)]
                if kind == "old-ids"
                else [],
            ),
        ]
    return cases


@pytest.mark.parametrize(("case", "kind"), _cases())
def test_the_mount_watch_s_descriptor_number_reused_by_another_file_misses_no_change(
    tmp_path: Path, case: str, kind: str
) -> None:
    _check(_run(tmp_path, case, kind))


# argv: work directory, case. Prints one JSON line: the tmpfs's [st_dev, mount id] as
# classified in namespace A, and those of the tmpfs mounts made afterwards in namespace B.
_PIN_SCRIPT = r"""
import json, os, subprocess, sys
import hardtemp
from hardtemp import _fsinfo, _linux

work, case = sys.argv[1], sys.argv[2]
mnt = f"{work}/m"
os.mkdir(mnt)

# tools


run("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt)
with hardtemp.TemporaryFile(dir=mnt, encrypt=False) as f:  # classified, cached, watched
    f.write(b"x")
first = ident(mnt)
if case == "unpinned":
    _fsinfo._watch.forget()  # the control: nothing holds namespace A once we leave it
os.unshare(os.CLONE_NEWNS)  # namespace B; we were alone in A
run("mount", "--make-rprivate", "/")
run("umount", mnt)  # B's copy of the tmpfs: with A gone, its superblock is freed
later = []
for _ in range(8):
    run("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt)
    later.append(ident(mnt))
    run("umount", mnt)
print(json.dumps({"first": first, "later": later}))
""".replace("# tools\n", _SCRIPT_TOOLS)


@pytest.mark.parametrize("case", ["pinned", "unpinned"], ids=["held", "control-watch-closed"])
def test_after_unshare_the_old_namespace_s_cached_mount_cannot_be_reborn_unseen(
    tmp_path: Path, case: str
) -> None:
    # Attacked: ab8b2c1 checks the namespace only on a cache miss. A process alone in its
    # namespace that unshares frees that namespace; a tmpfs cached there by (mount id,
    # st_dev) could have both numbers reused by a new mount in the new namespace: a hit
    # on a stale entry before any miss. Held: the watch's open /proc/self/mountinfo holds
    # a reference to the namespace it watches (mounts_open_common), so its mounts, their
    # ids and their superblocks' st_dev stay taken until the first miss reopens the
    # watch, which clears the cache. The control closes the watch first: the old tmpfs's
    # st_dev is then handed out again (so the case can tell the two apart).
    require_unshare()
    cmd = ["unshare", "-m", "--propagation", "private", sys.executable, "-c", _PIN_SCRIPT]
    out = subprocess.run(
        [*cmd, str(tmp_path), case],
        env=dict(os.environ, PYTHONPATH=str(Path(hardtemp.__file__).resolve().parents[1])),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    first, later = result["first"], result["later"]
    reused_dev = [ident for ident in later if ident[0] == first[0]]
    if case == "unpinned":
        if not reused_dev:
            pytest.skip(f"this kernel did not hand the freed st_dev out again: {result}")
    else:
        assert first not in later, f"the cached (st_dev, mount id) was reborn: {result}"
        assert not reused_dev, f"the old namespace's tmpfs st_dev was freed: {result}"
