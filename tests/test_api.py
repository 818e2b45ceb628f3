"""The public surface: names, exception hierarchy, pickling."""

from __future__ import annotations

import ast
import errno
import importlib.metadata
import pickle
import types
from pathlib import Path

import pytest

import hardtemp
import hardtemp.compat
from hardtemp import exceptions as exc_mod
from hardtemp.exceptions import (
    HardtempError,
    HardtempWarning,
    InsecureOperationError,
    IntegrityError,
    NoTrustedTempDirError,
    SizeLimitError,
    UnsafeCandidateWarning,
    UnsafeDirectoryError,
    UnsafeFileError,
    WipeError,
    WipeUnreliableWarning,
)


def _reexported(module: types.ModuleType) -> list[str]:
    """The names ``module``'s own source re-exports (``from ._x import Y as Y``) or imports
    as public submodules (``from . import exceptions as exceptions``): derived, as httpx
    does, so a name added to the package but forgotten in ``__all__`` (or the reverse)
    fails here."""
    tree = ast.parse(Path(module.__file__ or "").read_text())
    names = {
        alias.asname
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 1
        for alias in node.names
        if alias.asname is not None and alias.asname == alias.name
    }
    return sorted(n for n in names if not n.startswith("_"))


def test_all_is_exactly_what_the_package_reexports_and_sorted() -> None:
    assert hardtemp.__all__ == _reexported(hardtemp)
    assert hardtemp.__all__ == sorted(hardtemp.__all__)
    public = {n for n in vars(hardtemp) if not n.startswith("_")}
    # Nothing public in the namespace beyond __all__ and the package's own submodules.
    assert public - set(hardtemp.__all__) <= {
        name for name, value in vars(hardtemp).items() if isinstance(value, types.ModuleType)
    }


def test_all_of_the_public_submodules_resolves() -> None:
    import tempfile

    assert exc_mod.__all__ == sorted(exc_mod.__all__)
    # compat's is derived from the standard library's, not from a list of ours.
    assert set(hardtemp.compat.__all__) == set(tempfile.__all__)
    for module in (hardtemp.compat, exc_mod):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_every_public_name_resolves() -> None:
    for name in hardtemp.__all__:
        assert getattr(hardtemp, name) is not None
    ns: dict[str, object] = {}
    exec("from hardtemp import *", ns)  # noqa: S102 - the star import itself is under test
    assert set(hardtemp.__all__) <= set(ns)


def test_exceptions_module_all_resolves() -> None:
    assert exc_mod.__all__ == sorted(exc_mod.__all__)
    for name in exc_mod.__all__:
        assert isinstance(getattr(exc_mod, name), type)


def test_stdlib_signatures_are_kept() -> None:
    import inspect
    import tempfile

    for name in ("mkstemp", "mkdtemp", "TemporaryFile", "NamedTemporaryFile"):
        ours = inspect.signature(getattr(hardtemp, name)).parameters
        theirs = inspect.signature(getattr(tempfile, name)).parameters
        for pname, p in theirs.items():
            assert pname in ours, (name, pname)
            assert ours[pname].kind == p.kind, (name, pname)
            assert ours[pname].default == p.default, (name, pname)
    for cls in ("TemporaryDirectory", "SpooledTemporaryFile"):
        ours = inspect.signature(getattr(hardtemp, cls)).parameters
        theirs = inspect.signature(getattr(tempfile, cls)).parameters
        for pname, p in theirs.items():
            assert pname in ours, (cls, pname)
            assert ours[pname].default == p.default, (cls, pname)


HIERARCHY = [
    (UnsafeDirectoryError, (HardtempError, PermissionError, OSError)),
    (NoTrustedTempDirError, (UnsafeDirectoryError, FileNotFoundError, OSError)),
    (UnsafeFileError, (HardtempError, PermissionError, OSError)),
    (InsecureOperationError, (HardtempError, RuntimeError)),
    (IntegrityError, (HardtempError, OSError)),
    (SizeLimitError, (HardtempError, OSError)),
    (WipeError, (HardtempError, OSError)),
    (HardtempError, (Exception,)),
    (HardtempWarning, (UserWarning,)),
    (WipeUnreliableWarning, (HardtempWarning,)),
    (UnsafeCandidateWarning, (HardtempWarning,)),
]


@pytest.mark.parametrize(("cls", "bases"), HIERARCHY, ids=lambda x: getattr(x, "__name__", ""))
def test_exception_hierarchy(cls: type, bases: tuple[type, ...]) -> None:
    for base in bases:
        assert issubclass(cls, base)


def test_integrity_error_is_not_a_permission_error() -> None:
    assert not issubclass(IntegrityError, PermissionError)
    assert not issubclass(InsecureOperationError, OSError)


ERRNOS = {
    UnsafeDirectoryError: errno.EACCES,
    NoTrustedTempDirError: errno.ENOENT,
    UnsafeFileError: errno.EACCES,
    IntegrityError: errno.EBADMSG,
    SizeLimitError: errno.EFBIG,
    WipeError: errno.EIO,
}


@pytest.mark.parametrize("cls", list(ERRNOS), ids=lambda c: c.__name__)
def test_os_errors_carry_path_reason_and_errno(cls: type[HardtempError]) -> None:
    e = cls("/some/path", "a reason")
    assert e.path == "/some/path"
    assert e.reason == "a reason"
    assert isinstance(e, OSError)
    assert e.errno == ERRNOS[cls]
    assert e.strerror == "a reason"
    assert e.filename == "/some/path"
    assert str(e) == "/some/path: a reason"


@pytest.mark.parametrize(
    "cls",
    [HardtempError, InsecureOperationError, *ERRNOS],
    ids=lambda c: c.__name__,
)
@pytest.mark.parametrize("path", ["/p/q", None])
def test_exceptions_pickle_round_trip(cls: type[HardtempError], path: str | None) -> None:
    e = cls(path, "why it failed")
    e.extra = "kept"  # type: ignore[attr-defined]
    back = pickle.loads(pickle.dumps(e))  # noqa: S301 - our own object
    assert type(back) is cls
    assert back.path == path
    assert back.reason == "why it failed"
    assert str(back) == str(e)
    assert back.extra == "kept"  # type: ignore[attr-defined]
    if isinstance(e, OSError):
        assert back.errno == e.errno  # type: ignore[attr-defined]
        assert back.filename == e.filename  # type: ignore[attr-defined]
        assert back.strerror == e.strerror  # type: ignore[attr-defined]
    if path is None:
        assert str(back) == "why it failed"


def test_wipe_error_pickles_its_report() -> None:
    e = WipeError("/f", "overwrite failed", report={"passes": 1})
    back = pickle.loads(pickle.dumps(e))  # noqa: S301 - our own object
    assert back.report == {"passes": 1}
    assert back.errno == errno.EIO


def test_raised_errors_pickle_round_trip(tmp_path: object) -> None:
    import os

    d = os.path.join(str(tmp_path), "ww")
    os.mkdir(d)
    os.chmod(d, 0o777)
    with pytest.raises(UnsafeDirectoryError) as info:
        hardtemp.mkstemp(dir=d)
    back = pickle.loads(pickle.dumps(info.value))  # noqa: S301 - our own object
    assert (back.path, back.reason, back.errno) == (d, info.value.reason, errno.EACCES)


def test_version_has_one_source_the_package_and_the_metadata_agree() -> None:
    # pyproject.toml reads the version from the package (hatch dynamic version).
    assert isinstance(hardtemp.__version__, str)
    assert importlib.metadata.version("hardtemp") == hardtemp.__version__
    pyproject = (Path(hardtemp.__file__).parents[2] / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert "\nversion =" not in pyproject
