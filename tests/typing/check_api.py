"""Static checks of the public API's types: mypy (CI, ``files`` in pyproject.toml) checks
this file; it is never run. Each ``assert_type`` fails the type check if the API's
declared type changes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any, assert_type

import hardtemp
from hardtemp import aio


def public_api(p: Path, pb: os.PathLike[bytes]) -> None:
    # mkstemp/mkdtemp: str parts give str, bytes parts bytes (typeshed's overloads).
    assert_type(hardtemp.mkstemp(), tuple[int, str])
    assert_type(hardtemp.mkstemp(dir=p), tuple[int, str])
    assert_type(hardtemp.mkstemp(suffix=b".x"), tuple[int, bytes])
    assert_type(hardtemp.mkstemp(dir=pb), tuple[int, bytes])
    assert_type(hardtemp.mkdtemp(), str)
    assert_type(hardtemp.mkdtemp(dir=b"/tmp"), bytes)
    assert_type(hardtemp.gettempdir(), str)
    assert_type(hardtemp.gettempdirb(), bytes)
    # dir= takes any path type the stdlib's does.
    assert_type(hardtemp.TemporaryFile(dir=p), IO[Any])
    assert_type(hardtemp.TemporaryFile(dir=b"/tmp"), IO[Any])
    with hardtemp.NamedTemporaryFile(dir=p) as f:
        assert_type(f.name, str | bytes)
    with hardtemp.TemporaryDirectory(dir=p) as d:
        assert_type(d, str | bytes)
    report = hardtemp.wipe(p)
    assert_type(report, hardtemp.WipeReport)
    assert_type(report.codes, tuple[str, ...])
    assert_type(report.verdict.trustworthy, bool)
    err = hardtemp.WipeError(None, "why", report)
    assert_type(err.report, hardtemp.WipeReport | None)
    assert_type(hardtemp.check_dir(p), hardtemp.TrustReport)


async def async_api(p: Path) -> None:
    assert_type(await aio.mkstemp(dir=p), tuple[int, str])
    assert_type(await aio.mkstemp(dir=b"/tmp"), tuple[int, bytes])
    assert_type(await aio.mkdtemp(dir=p), str)
    assert_type(await aio.mkdtemp(prefix=b"x"), bytes)
