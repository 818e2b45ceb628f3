"""Test gates: every capability a test may need from the machine, decided in one place.

A test that needs something this machine or user may lack says so with a gate
from here, never with its own ``os.geteuid()`` check:

* marks, for a whole test or module: ``@needs_root("to mount a tmpfs")``,
  ``@needs_tool("script", "bsdutils")``, ``pytestmark = needs_root(...)``;
* calls, inside a test or fixture once the need is known:
  ``require_root(...)``, ``require_tool(...)``, ``require_mkfs("btrfs")``,
  ``require_unshare()``, ``require_module(...)``, and ``skip(reason)`` for a
  capability found missing by trying (a loop mount that fails).

Every gate skips with a reason that says what is missing and why the test needs it.

Invariant: with ``HARDTEMP_REQUIRE_ALL=1`` in the environment (CI, which runs as
root with loop devices, mkfs and unshare installed), a test stopped by a gate
**fails** instead of skipping (see :func:`pytest_runtest_makereport`), so the
attack and forensic tests can never go silently missing there. Skips that
are about the machine's configuration rather than a capability (e.g. a
sysctl that makes an attack impossible) are plain ``pytest.skip`` and stay skips.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest

IS_ROOT = os.geteuid() == 0

#: The reasons the gates gave, so the report hook knows a gate's skip from any other.
_GATE_REASONS: set[str] = set()


def require_all() -> bool:
    """Whether a gate's skip must fail this run (``HARDTEMP_REQUIRE_ALL=1``)."""
    return os.environ.get("HARDTEMP_REQUIRE_ALL") == "1"


def _gate(reason: str) -> str:
    _GATE_REASONS.add(reason)
    return reason


def skip(reason: str) -> NoReturn:
    """Skip for a missing capability (a failure under ``HARDTEMP_REQUIRE_ALL=1``)."""
    __tracebackhide__ = True  # the skip is reported at the test's line, not here
    pytest.skip(_gate(reason))


def _root_reason(why: str) -> str:
    return f"needs root {why}"


def needs_root(why: str) -> pytest.MarkDecorator:
    """Mark: skip unless root. ``why`` completes "needs root ...": "to mount a tmpfs"."""
    return pytest.mark.skipif(not IS_ROOT, reason=_gate(_root_reason(why)))


def require_root(why: str) -> None:
    """Skip now unless root (see :func:`needs_root`)."""
    __tracebackhide__ = True  # the skip is reported at the test's line, not here
    if not IS_ROOT:
        skip(_root_reason(why))


def _tool_reason(tool: str, package: str) -> str:
    return f"{tool} is not installed (Debian package {package})"


def needs_tool(tool: str, package: str) -> pytest.MarkDecorator:
    """Mark: skip unless the program ``tool`` is on PATH."""
    return pytest.mark.skipif(shutil.which(tool) is None, reason=_gate(_tool_reason(tool, package)))


def require_tool(tool: str, package: str) -> None:
    """Skip now unless the program ``tool`` is on PATH."""
    __tracebackhide__ = True  # the skip is reported at the test's line, not here
    if shutil.which(tool) is None:
        skip(_tool_reason(tool, package))


_MKFS_PACKAGES = {
    "ext4": "e2fsprogs",
    "ext2": "e2fsprogs",
    "btrfs": "btrfs-progs",
    "xfs": "xfsprogs",
}


def require_mkfs(fstype: str) -> str:
    """Skip unless ``mkfs.<fstype>`` is installed; return its name."""
    __tracebackhide__ = True  # the skip is reported at the test's line, not here
    tool = f"mkfs.{fstype}"
    require_tool(tool, _MKFS_PACKAGES.get(fstype, fstype))
    return tool


def require_loop(fstype: str) -> str:
    """Skip unless root with ``mkfs.<fstype>``, as loop-mounting an image needs; return mkfs."""
    __tracebackhide__ = True  # the skip is reported at the test's line, not here
    require_root("to loop-mount filesystem images")
    return require_mkfs(fstype)


def require_unshare() -> None:
    """Skip unless root with unshare(1), for a private mount namespace."""
    __tracebackhide__ = True  # the skip is reported at the test's line, not here
    require_root("for a private mount namespace (unshare -m)")
    require_tool("unshare", "util-linux")


def require_module(name: str, why: str) -> None:
    """Skip unless the module ``name`` can be imported by this interpreter."""
    __tracebackhide__ = True  # the skip is reported at the test's line, not here
    try:
        found = importlib.util.find_spec(name) is not None
    except ImportError:  # a missing parent package
        found = False
    if not found:
        skip(f"this interpreter has no {name} ({why})")


def is_gate_skip(longrepr: Any) -> str | None:
    """The gate's reason if a skip report's ``longrepr`` came from a gate, else None."""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2]).removeprefix("Skipped: ")
        if reason in _GATE_REASONS:
            return reason
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """Under ``HARDTEMP_REQUIRE_ALL=1``, turn a gate's skip into a failure that names it."""
    report = yield
    if report.skipped and require_all():
        reason = is_gate_skip(report.longrepr)
        if reason is not None:
            report.outcome = "failed"
            report.longrepr = (
                f"HARDTEMP_REQUIRE_ALL=1 forbids this skip: {reason}. "
                "CI must run every attack and forensic test."
            )
    return report


_GATE_OFF = pytest.StashKey[float]()


def pytest_configure(config: pytest.Config) -> None:
    """Not root: the coverage gate (``fail_under``, met by the whole suite) does not apply.

    The root-only tests skip for an ordinary user, so the coverage they bring is
    missing by design; the figure is still reported. As root the gate is unchanged.
    """
    if IS_ROOT:
        return
    options = getattr(config.pluginmanager.getplugin("_cov"), "options", None)
    fail_under = getattr(options, "cov_fail_under", None)
    if fail_under:
        config.stash[_GATE_OFF] = fail_under
        options.cov_fail_under = None  # type: ignore[union-attr]


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Say so when the coverage gate was not applied."""
    if _GATE_OFF in config.stash:
        terminalreporter.write_line(
            f"hardtemp: coverage gate (fail_under={config.stash[_GATE_OFF]:g}) not applied: "
            f"not root (euid {os.geteuid()}), so the root-only tests skipped; it applies as root"
        )
