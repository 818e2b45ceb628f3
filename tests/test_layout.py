"""The code layout rules the project keeps: short functions, an ``__init__`` that only
re-exports, a complexity gate ruff enforces.

* Every function in ``src/hardtemp`` longer than :data:`MAX_LINES` lines carries a
  ``# long: <reason>`` comment on its ``def`` line or before its body starts.
* ``ruff``'s ``C901`` (mccabe) is selected with ``max-complexity`` at most 15.
* ``hardtemp/__init__.py`` defines nothing of its own: re-exports, the lazy-import table
  that mirrors them, ``__version__`` and a sorted ``__all__``.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import hardtemp

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "hardtemp"
MAX_LINES = 60
_LONG = re.compile(r"#\s*long:\s*\S")


def long_functions_without_reason(source: str, max_lines: int = MAX_LINES) -> list[str]:
    """``name:line (N lines)`` for every function over ``max_lines`` lines (``def`` to its
    last line) with no ``# long: <reason>`` between its ``def`` line and its body."""
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        length = (node.end_lineno or node.lineno) - node.lineno + 1
        if length <= max_lines:
            continue
        header = lines[node.lineno - 1 : node.body[0].lineno]  # def line(s) .. first body line
        if not any(_LONG.search(line) for line in header):
            found.append(f"{node.name}:{node.lineno} ({length} lines)")
    return found


def test_every_function_over_60_lines_says_why_it_is_long() -> None:
    offenders = {
        str(path.relative_to(SRC)): bad
        for path in sorted(SRC.rglob("*.py"))
        if (bad := long_functions_without_reason(path.read_text()))
    }
    assert offenders == {}, "split these, or add '# long: <reason>' on the def line"


def test_the_length_check_finds_a_long_function_and_accepts_a_reason() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_LINES))
    bare = f"def f(\n    a: int,\n) -> None:\n{body}"
    assert long_functions_without_reason(bare) == [f"f:1 ({MAX_LINES + 3} lines)"]
    indented = body.replace("\n    ", "\n        ")
    nested = f"class C:\n    async def g(self) -> None:\n    {indented}"
    assert long_functions_without_reason(nested) == [f"g:2 ({MAX_LINES + 1} lines)"]
    on_def = f"def f(a: int) -> None:  # long: one table\n{body}"
    after_signature = f"def f(\n    a: int,\n) -> None:\n    # long: one table\n{body}"
    assert long_functions_without_reason(on_def) == []
    assert long_functions_without_reason(after_signature) == []
    # An empty reason is no reason; a comment deeper in the body is not the header.
    assert long_functions_without_reason(f"def f() -> None:  # long:\n{body}") != []
    late = f"def f() -> None:\n{body}    # long: too late\n"
    assert long_functions_without_reason(late) != []
    short = "def f() -> None:\n" + "".join(f"    x{i} = {i}\n" for i in range(MAX_LINES - 1))
    assert long_functions_without_reason(short) == []


def test_ruff_enforces_complexity_15_on_src() -> None:
    lint = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    assert "C901" in lint["select"] or "C90" in lint["select"]
    assert lint["mccabe"]["max-complexity"] <= 15
    assert "C901" not in lint.get("ignore", [])


def _type_checking_imports(tree: ast.Module) -> dict[str, str]:
    """``name -> module`` of the ``if TYPE_CHECKING:`` re-exports."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom), ast.unparse(imp)
                for alias in imp.names:
                    assert alias.asname == alias.name, ast.unparse(imp)
                    out[alias.name] = (imp.module or "").removeprefix("hardtemp.")
    return out


def test_init_only_reexports() -> None:
    tree = ast.parse(Path(hardtemp.__file__ or "").read_text())
    allowed_functions = {"__getattr__", "__dir__"}  # PEP 562: the lazy re-exports
    allowed_names = {"TYPE_CHECKING", "_LAZY", "__version__", "__all__"}
    for node in tree.body:
        match node:
            case ast.Expr(value=ast.Constant(value=str())):  # the docstring
                pass
            case ast.ImportFrom(level=1, names=names):
                assert all(a.asname == a.name for a in names), ast.unparse(node)
            case ast.If() | ast.Delete(targets=[ast.Name(id="TYPE_CHECKING")]):  # checked below
                pass
            case ast.FunctionDef(name=name):
                assert name in allowed_functions, f"__init__ defines {name}()"
            case ast.Assign(targets=[ast.Name(id=name)]) | ast.AnnAssign(target=ast.Name(id=name)):
                assert name in allowed_names, f"__init__ assigns {name}"
            case _:
                raise AssertionError(f"__init__ holds more than re-exports: {ast.unparse(node)}")
    # The lazy table names exactly the typed re-exports, each from the same module.
    lazy = vars(hardtemp)["_LAZY"]
    assert lazy == _type_checking_imports(tree)
    assert hardtemp.__all__ == sorted(hardtemp.__all__)
