"""Adversarial review (review10) of 547d306's unique mount ids against 1a84362's refusal.

547d306 keys every filesystem classification by the mount's unique id (Linux >= 6.8), so
that "no such swap is served stale, whatever the watch missed" (SECURITY.md), closing
review7's last open case: other code closes the mount watch's number and opens
``/proc/self/mountinfo`` into it, the watch is blind, and an overlay (ext4 upper) mounted
in place of a classified tmpfs with its ``st_dev`` and old mount id is served "volatile"
(no sync of the overwrite). 1a84362 turns ``statx`` off for the whole process at its first
refusal, and d1ddb86 keeps asking it only for the sweep mark: one thread that sandboxes
itself with a seccomp filter refusing ``statx`` (filters are per thread) is enough to put
every other thread back on the old, reusable mount ids, and review7's case is open again.
The scenario is review7's (``tests/forensic/test_forensic_review7.py``), on a real loop
image, in a private mount namespace; a worker thread's own filter is the one change.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from forensic.test_forensic_review6 import _check
from forensic.test_forensic_review6 import _run as _run_script
from forensic.test_forensic_review7 import _ANCHOR
from forensic.test_forensic_review7 import _script as _review7_script

pytestmark = pytest.mark.forensic

# Right after the watch is opened: a worker thread sandboxes itself (its own seccomp filter,
# statx refused with EPERM, as profiles older than statx did) and makes one named file.
_THREAD_FILTER = r"""
if os.environ.get("REVIEW10_THREAD_FILTER") == "1":
    import struct, threading
    def _sandboxed():
        libc = ctypes.CDLL(None, use_errno=True)
        prog = [(0x20, 0, 0, 0), (0x15, 0, 1, 332), (0x06, 0, 0, 0x00050001),
                (0x06, 0, 0, 0x7FFF0000)]  # nr == __NR_statx (x86_64) ? ERRNO(EPERM) : ALLOW
        code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in prog))
        class Fprog(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
        fprog = Fprog(len(prog), ctypes.cast(code, ctypes.c_void_p))
        assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
        assert libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0  # this thread only
        hardtemp.NamedTemporaryFile(dir=work).close()
    _t = threading.Thread(target=_sandboxed)
    _t.start()
    _t.join()
    assert _linux._statx is None  # the premise: statx is off for the whole process
"""


def _script() -> str:
    script = _review7_script()
    at = script.index(_ANCHOR)  # review7's script changed: this test must be looked at
    end = script.index("\n", at) + 1
    return script[:end] + _THREAD_FILTER + script[end:]


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the filter names x86_64's statx")
@pytest.mark.parametrize(
    "thread_filter",
    [
        pytest.param(False, id="control-no-thread-filtered"),
        pytest.param(
            True,
            id="a-worker-thread-refused-statx",
            # Was a break (review10), fixed: 547d306 + 1a84362: one thread's own seccomp filter
            # refusing statx  (EPERM) makes _linux._refused() switch statx off for the process,
            # unique_mount_id() then answers -1 and every classification is keyed by the  old,
            # reusable mount id (fdinfo) again: with the watch blinded by a mountinfo  open on
            # its number (review7's case), the overlay that took the tmpfs's  st_dev and old id
            # is served 'volatile' by the named file's close, its  overwrite is not synced and
            # the marker stays on the disk, on Linux >= 6.8,  where SECURITY.md says no swap is
            # served stale whatever the watch missed
        ),
    ],
)
def test_a_thread_s_statx_refusal_leaves_the_unique_mount_ids_in_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, thread_filter: bool
) -> None:
    monkeypatch.setenv("REVIEW10_THREAD_FILTER", "1" if thread_filter else "0")
    _check(_run_script(tmp_path, "watch-number-reused-by-mountinfo", "unique-ids", _script()))
