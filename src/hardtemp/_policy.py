"""The wipe policy: what to do when an overwrite cannot be trusted to reach the old blocks.

* ``"warn"`` (default): emit :class:`~hardtemp.exceptions.WipeUnreliableWarning`.
* ``"error"``: raise :class:`~hardtemp.exceptions.WipeError` (after the overwrite and,
  for removals, after the file is gone).
* ``"ignore"``: say nothing; the :class:`WipeReport` still records the verdict.

The process-wide policy starts from the environment variable ``HARDTEMP_WIPE_POLICY``
(read once, at import); :func:`set_wipe_policy` changes it; :func:`wipe_policy`
overrides it for the current thread or asyncio task only, inside a ``with`` block.

Invariant: a value of ``HARDTEMP_WIPE_POLICY`` that is none of the three never
weakens anything: the policy is then ``"error"`` (the strictest), a
:class:`~hardtemp.exceptions.HardtempWarning` says so when it is first used, and
:func:`environment_error` returns the one-line message the ``hardtemp`` command
and the pytest plugin report (exit status 2) instead of running.
"""

from __future__ import annotations

import contextvars
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from .exceptions import HardtempWarning as _HardtempWarning

__all__ = [
    "ENV_VAR",
    "POLICIES",
    "check_policy",
    "environment_error",
    "get_wipe_policy",
    "set_wipe_policy",
    "wipe_policy",
]

ENV_VAR = "HARDTEMP_WIPE_POLICY"
POLICIES = ("warn", "error", "ignore")


def check_policy(policy: object, *, source: str = "wipe policy") -> str:
    """Return ``policy`` if it is one of ``"warn"``, ``"error"``, ``"ignore"``.

    Raises:
        TypeError: ``policy`` is not a string.
        ValueError: any other string (a typo must never silently weaken the policy).
    """
    if not isinstance(policy, str):
        raise TypeError(f"{source} must be a str, one of {POLICIES}, not {type(policy).__name__}")
    if policy not in POLICIES:
        raise ValueError(f"{source} must be one of {POLICIES}, not {policy!r}")
    return policy


def _from_environment() -> tuple[str, str | None]:
    """The policy the environment asks for, and the error message if it is invalid."""
    raw = os.environ.get(ENV_VAR, "")
    value = raw.strip().lower()
    if not value:
        return "warn", None
    if value in POLICIES:
        return value, None
    # A misspelt value must never silently mean "warn": the strictest policy, said loudly.
    return "error", (
        f"environment variable {ENV_VAR}={raw!r} is invalid: allowed values are "
        f"{', '.join(POLICIES)} (or unset for warn)"
    )


_initial, _env_error = _from_environment()
_global_policy: list[str] = [_initial]
_unwarned = [_env_error is not None]  # the environment's error is said once, at first use


def environment_error() -> str | None:
    """The one-line message for an invalid ``HARDTEMP_WIPE_POLICY``, or None when it is valid."""
    return _env_error


_override: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "hardtemp_wipe_policy", default=None
)


def get_wipe_policy() -> str:
    """The wipe policy in force here: the innermost :func:`wipe_policy` block, else global.

    Warns (once, :class:`~hardtemp.exceptions.HardtempWarning`) when the global
    policy is ``"error"`` because ``HARDTEMP_WIPE_POLICY`` was invalid.
    """
    override = _override.get()
    if override is not None:
        return override
    if _unwarned[0]:
        _unwarned[0] = False
        warnings.warn(
            f"{_env_error}; using the strictest policy, error", _HardtempWarning, stacklevel=3
        )
    return _global_policy[0]


def set_wipe_policy(policy: str) -> None:
    """Set the process-wide wipe policy: ``"warn"``, ``"error"`` or ``"ignore"``
    (replacing the environment's, invalid or not).

    Raises:
        TypeError: ``policy`` is not a string.
        ValueError: ``policy`` is not one of the three names.
    """
    _global_policy[0] = check_policy(policy)
    _unwarned[0] = False


@contextmanager
def wipe_policy(policy: str) -> Iterator[None]:
    """Use ``policy`` inside the ``with`` block, for this thread / asyncio task only.

    Raises:
        TypeError: ``policy`` is not a string.
        ValueError: ``policy`` is not one of the three names.
    """
    token = _override.set(check_policy(policy))
    try:
        yield
    finally:
        _override.reset(token)
