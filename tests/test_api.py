"""The public surface: names, exception hierarchy, pickling."""

from __future__ import annotations

import errno
import pickle

import pytest

import hardtemp
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

EXPECTED_ALL = [
    "HardtempError",
    "HardtempWarning",
    "InsecureOperationError",
    "IntegrityError",
    "MemoryFile",
    "NamedTemporaryFile",
    "NoTrustedTempDirError",
    "SizeLimitError",
    "SpooledTemporaryFile",
    "TemporaryDirectory",
    "TemporaryFile",
    "TrustReport",
    "UnsafeCandidateWarning",
    "UnsafeDirectoryError",
    "UnsafeFileError",
    "WipeError",
    "WipeReport",
    "WipeUnreliableWarning",
    "check_dir",
    "exceptions",
    "get_wipe_policy",
    "gettempdir",
    "gettempdirb",
    "mkdtemp",
    "mkstemp",
    "set_wipe_policy",
    "wipe",
    "wipe_policy",
]


def test_all_is_exactly_the_expected_sorted_list() -> None:
    assert hardtemp.__all__ == EXPECTED_ALL
    assert hardtemp.__all__ == sorted(hardtemp.__all__)


def test_every_public_name_resolves() -> None:
    for name in hardtemp.__all__:
        assert getattr(hardtemp, name) is not None
    ns: dict[str, object] = {}
    exec("from hardtemp import *", ns)  # noqa: S102 - the star import itself is under test
    assert set(EXPECTED_ALL) <= set(ns)


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


def test_version_is_a_string() -> None:
    assert isinstance(hardtemp.__version__, str)
