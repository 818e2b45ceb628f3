"""The wipe policy: what to do when an overwrite cannot be trusted to reach the old blocks.

* ``"warn"`` (default): emit :class:`~hardtemp.exceptions.WipeUnreliableWarning`.
* ``"error"``: raise :class:`~hardtemp.exceptions.WipeError` (after the overwrite and,
  for removals, after the file is gone).
* ``"ignore"``: say nothing; the :class:`WipeReport` still records the verdict.

The process-wide policy starts from the environment variable ``HARDTEMP_WIPE_POLICY``
(read once, at import); :func:`set_wipe_policy` changes it; :func:`wipe_policy`
overrides it for the current thread or asyncio task only, inside a ``with`` block.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "ENV_VAR",
    "POLICIES",
    "check_policy",
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


def _from_environment() -> str:
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if not value:
        return "warn"
    # A misspelt value fails the import loudly rather than silently meaning "warn".
    return check_policy(value, source=f"environment variable {ENV_VAR}")


_global_policy: list[str] = [_from_environment()]
_override: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "hardtemp_wipe_policy", default=None
)


def get_wipe_policy() -> str:
    """The wipe policy in force here: the innermost :func:`wipe_policy` block, else global."""
    override = _override.get()
    return override if override is not None else _global_policy[0]


def set_wipe_policy(policy: str) -> None:
    """Set the process-wide wipe policy: ``"warn"``, ``"error"`` or ``"ignore"``.

    Raises:
        TypeError: ``policy`` is not a string.
        ValueError: ``policy`` is not one of the three names.
    """
    _global_policy[0] = check_policy(policy)


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
