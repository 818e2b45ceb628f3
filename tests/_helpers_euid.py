"""Acting as another user inside the test process itself (so coverage sees it).

``as_euid(uid)`` switches the effective uid/gid of this very process (root keeps
its saved uid, so it can switch back): permission checks are then the kernel's
real ones for that user. Code run here is measured by coverage, unlike the
forked ``other_user`` child. Only modules already imported can be used inside
(the interpreter lives under /root).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from _gates import require_root
from _helpers_core import NOBODY

__all__ = ["NOBODY", "as_euid"]


@contextlib.contextmanager
def as_euid(uid: int = NOBODY, gid: int = NOBODY) -> Iterator[None]:
    """Run the block with effective uid/gid ``uid``/``gid``; back to root afterwards."""
    require_root("to act as another user")
    groups = os.getgroups()
    os.setgroups([])
    os.setegid(gid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)
