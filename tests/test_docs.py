"""The documentation's examples run as pasted.

Every fenced ``python`` block of README.md and docs/*.md directly preceded by the line
``<!-- runnable -->`` is run in a fresh interpreter, in an empty working directory,
importing this checkout's hardtemp; it must exit 0.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from _helpers_core import SRC

ROOT = Path(__file__).resolve().parent.parent
MARK = "<!-- runnable -->"
_FENCE = re.compile(r"^(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")


def runnable_blocks(text: str) -> list[tuple[int, str]]:
    """``(line number, code)`` of every python block marked runnable in ``text``."""
    lines = text.split("\n")
    found: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i].strip())
        if m is None:
            i += 1
            continue
        fence, start = m.group("fence"), i
        end = start + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        marked = start > 0 and lines[start - 1].strip() == MARK
        if marked:
            if m.group("lang") != "python":
                raise ValueError(f"line {start + 1}: {MARK} before a {m.group('lang')!r} block")
            found.append((start + 1, "\n".join(lines[start + 1 : end]) + "\n"))
        i = end + 1
    return found


def _documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _examples() -> list[pytest.param]:  # type: ignore[valid-type]
    params = []
    for doc in _documents():
        for line, code in runnable_blocks(doc.read_text()):
            name = f"{doc.relative_to(ROOT)}:{line}"
            params.append(pytest.param(code, id=name))
    return params


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=SRC)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("code", _examples())
def test_runnable_example_runs_as_pasted(code: str, tmp_path: Path) -> None:
    proc = _run(code, tmp_path)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"


def test_the_readme_quick_start_is_among_the_runnable_examples() -> None:
    blocks = runnable_blocks((ROOT / "README.md").read_text())
    assert any("hardtemp.TemporaryFile()" in code for _, code in blocks)


def test_only_marked_python_blocks_are_collected() -> None:
    text = "\n".join(
        [
            "```python",
            "not_marked()",
            "```",
            MARK,
            "```python",
            "print('marked')",
            "```",
            MARK,
            "",
            "```python",
            "blank_line_between()",
            "```",
        ]
    )
    assert runnable_blocks(text) == [(5, "print('marked')\n")]


def test_a_marker_before_another_language_is_an_error() -> None:
    with pytest.raises(ValueError, match="'sh' block"):
        runnable_blocks(f"{MARK}\n```sh\nls\n```\n")


def test_a_failing_example_fails(tmp_path: Path) -> None:
    # The check above can fail: an example that raises exits non-zero.
    [(_, code)] = runnable_blocks(f"{MARK}\n```python\nimport hardtemp\nraise SystemExit(3)\n```\n")
    assert _run(code, tmp_path).returncode == 3
