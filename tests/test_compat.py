"""hardtemp.compat: the tempfile drop-in, and install()/uninstall()."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import multiprocessing.connection
import os
import re
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import types
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import hardtemp.compat as compat
from _helpers_core import start_threads
from hardtemp import _install, _tempdir
from hardtemp.exceptions import (
    InsecureOperationError,
    StaleBindingWarning,
    UnsafeCandidateWarning,
    UnsafeDirectoryError,
)

PY312 = sys.version_info >= (3, 12)
SRC = str(Path(compat.__file__).resolve().parent.parent)

# install() late in a test process cannot reach pytest's own earlier bindings (e.g.
# _pytest.capture.TemporaryFile): that warning is tested on its own below.
pytestmark = pytest.mark.filterwarnings("ignore::hardtemp.exceptions.StaleBindingWarning")
NAME = re.compile(r"[a-z2-7]{16}")  # hardtemp's random part: 80 bits of base32


@pytest.fixture(autouse=True)
def _restore_globals() -> Iterator[None]:
    """Every test leaves compat's globals and the tempfile module as it found them."""
    saved = (compat.tempdir, compat.template, tempfile.tempdir, tempfile.template)
    try:
        yield
    finally:
        compat.uninstall()
        compat.tempdir, compat.template, tempfile.tempdir, tempfile.template = saved


@pytest.fixture
def private_dir(tmp_path: Path) -> Path:
    d = tmp_path / "private"
    d.mkdir(mode=0o700)
    return d


@pytest.fixture
def untrusted_dir(tmp_path: Path) -> Path:
    """World-writable without the sticky bit: anyone can rename or replace entries."""
    d = tmp_path / "open"
    d.mkdir()
    os.chmod(d, 0o777)
    return d


@contextlib.contextmanager
def warnings_as_errors() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def _plain(sig: inspect.Signature) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in sig.parameters.values()]


# -- the names and signatures of the running Python's tempfile ------------------------------


def test_exports_exactly_the_names_of_the_running_tempfile() -> None:
    assert sorted(compat.__all__) == sorted(tempfile.__all__)
    for name in tempfile.__all__:
        assert hasattr(compat, name), name


@pytest.mark.parametrize(
    "name",
    [n for n in tempfile.__all__ if callable(getattr(tempfile, n))],
)
def test_signature_matches_the_running_tempfile(name: str) -> None:
    ours = inspect.signature(getattr(compat, name))
    theirs = inspect.signature(getattr(tempfile, name))
    assert _plain(ours) == _plain(theirs)


def test_version_specific_parameters_exist_exactly_where_tempfile_has_them() -> None:
    ntf = inspect.signature(compat.NamedTemporaryFile).parameters
    td = inspect.signature(compat.TemporaryDirectory).parameters
    assert ("delete_on_close" in ntf) is PY312
    assert ("delete" in td) is PY312
    if not PY312:
        with pytest.raises(TypeError):
            compat.NamedTemporaryFile(delete_on_close=False)  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            compat.TemporaryDirectory(delete=False)  # type: ignore[call-arg]


def test_module_constants_behave_like_tempfile() -> None:
    assert compat.gettempprefix() == "tmp"
    assert compat.gettempprefixb() == b"tmp"
    assert isinstance(compat.TMP_MAX, int)
    assert compat.TMP_MAX > 0
    compat.template = "custom"
    assert compat.gettempprefix() == "custom"
    fd, name = compat.mkstemp()
    os.close(fd)
    os.unlink(name)
    assert os.path.basename(name).startswith("custom")


# -- behaviour ------------------------------------------------------------------------------


def test_mkdtemp_returns_what_this_pythons_mkdtemp_returns_for_a_relative_dir(
    private_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(private_dir)
    ours = compat.mkdtemp(dir=".")
    theirs = tempfile.mkdtemp(dir=".")
    try:
        # 3.12+: absolute; 3.11: os.path.join(dir, name) with dir as given.
        assert os.path.isabs(ours) is os.path.isabs(theirs) is PY312
        assert os.path.dirname(ours) == os.path.dirname(theirs)
        assert os.path.isdir(ours)
    finally:
        os.rmdir(ours)
        os.rmdir(theirs)
    with compat.TemporaryDirectory(dir=".") as name:
        assert os.path.isabs(name) is PY312
        assert os.path.isdir(name)


@pytest.mark.parametrize("kind", [str, bytes])
def test_return_types_follow_the_arguments_like_tempfile(kind: type, private_dir: Path) -> None:
    d = kind(os.fsencode(private_dir)) if kind is bytes else str(private_dir)
    pre = kind(b"p") if kind is bytes else "p"
    fd, name = compat.mkstemp(prefix=pre, dir=d)
    os.close(fd)
    assert type(name) is kind
    path = compat.mkdtemp(prefix=pre, dir=d)
    assert type(path) is kind
    with compat.NamedTemporaryFile(prefix=pre, dir=d) as f:
        assert type(f.name) is kind
    with compat.TemporaryDirectory(prefix=pre, dir=d) as t:
        assert type(t) is kind


def test_bytes_tempdir_makes_the_defaults_bytes_like_tempfile(private_dir: Path) -> None:
    compat.tempdir = os.fsencode(private_dir)
    fd, name = compat.mkstemp()
    os.close(fd)
    assert isinstance(name, bytes)
    assert os.path.dirname(name) == os.fsencode(private_dir)
    assert compat.gettempdir() == str(private_dir)
    assert compat.gettempdirb() == os.fsencode(private_dir)
    fd, name = compat.mkstemp(suffix=".txt")
    os.close(fd)
    assert isinstance(name, str)


def test_names_have_80_random_bits_and_modes_ignore_the_umask(private_dir: Path) -> None:
    old = os.umask(0)
    try:
        fd, name = compat.mkstemp(prefix="a", suffix=".z", dir=private_dir)
        os.close(fd)
        path = compat.mkdtemp(dir=private_dir)
    finally:
        os.umask(old)
    base = os.path.basename(name)
    assert NAME.fullmatch(base[1:-2]), base
    assert stat.S_IMODE(os.stat(name).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700


def test_descriptors_are_not_inherited_by_programs_we_exec(private_dir: Path) -> None:
    # CPython checks this in its private-helper class (_mkstemp_inner), which is not run.
    fd, _ = compat.mkstemp(dir=private_dir)
    try:
        assert os.get_inheritable(fd) is False
    finally:
        os.close(fd)
    with compat.NamedTemporaryFile(dir=private_dir) as f, compat.TemporaryFile() as g:
        assert os.get_inheritable(f.fileno()) is False
        assert os.get_inheritable(g.fileno()) is False


def test_fileno_works_because_encryption_is_off(private_dir: Path) -> None:
    with compat.TemporaryFile(dir=private_dir) as f:
        f.write(b"plain")
        f.flush()
        assert os.pread(f.fileno(), 5, 0) == b"plain"
    with compat.NamedTemporaryFile(dir=private_dir) as g:
        g.write(b"named")
        g.flush()
        assert Path(g.name).read_bytes() == b"named"
        assert g.file.name == g.name  # as tempfile: the raw file is named by its path
    spooled = compat.SpooledTemporaryFile(max_size=100, dir=private_dir)
    spooled.write(b"x")
    assert spooled.fileno() >= 0
    spooled.close()


def test_mktemp_raises_and_names_the_safe_alternatives(private_dir: Path) -> None:
    with pytest.raises(InsecureOperationError) as info:
        compat.mktemp(dir=str(private_dir))
    assert isinstance(info.value, RuntimeError)
    message = str(info.value)
    for alternative in ("NamedTemporaryFile", "mkstemp", "mkdtemp", "TemporaryDirectory"):
        assert alternative in message
    assert os.listdir(private_dir) == []


def test_prefix_with_a_separator_is_refused(private_dir: Path) -> None:
    (private_dir / "sub").mkdir()
    with pytest.raises(ValueError, match="separator"):
        compat.mkstemp(prefix="sub/", dir=private_dir)
    # Control: the standard module lets the prefix leave the directory.
    fd, name = tempfile.mkstemp(prefix="sub/", dir=private_dir)
    os.close(fd)
    assert os.path.dirname(name) == str(private_dir / "sub")


# -- tempdir: honoured and verified ---------------------------------------------------------


def test_setting_tempdir_is_honoured_by_every_function(private_dir: Path) -> None:
    compat.tempdir = str(private_dir)
    assert compat.gettempdir() == str(private_dir)
    fd, name = compat.mkstemp()
    os.close(fd)
    assert os.path.dirname(name) == str(private_dir)
    assert os.path.dirname(compat.mkdtemp()) == str(private_dir)
    with compat.NamedTemporaryFile() as f:
        assert os.path.dirname(f.name) == str(private_dir)
    with compat.TemporaryDirectory() as t:
        assert os.path.dirname(t) == str(private_dir)
    with compat.TemporaryFile() as u:
        # An unnamed (O_TMPFILE) file: /proc shows the directory it lives in.
        assert os.readlink(f"/proc/self/fd/{u.fileno()}").startswith(f"{private_dir}/")


def test_spooled_file_rolls_over_into_tempdir_as_it_is_at_rollover(private_dir: Path) -> None:
    f = compat.SpooledTemporaryFile(max_size=4)
    compat.tempdir = str(private_dir)  # set after creation, as tempfile resolves at rollover
    f.write(b"more than four")
    assert f._rolled
    assert os.readlink(f"/proc/self/fd/{f.fileno()}").startswith(f"{private_dir}/")
    f.close()


def test_an_untrusted_tempdir_is_refused_not_used(untrusted_dir: Path) -> None:
    compat.tempdir = str(untrusted_dir)
    makers: list[Callable[[], Any]] = [
        compat.mkstemp,
        compat.mkdtemp,
        compat.NamedTemporaryFile,
        compat.TemporaryFile,
        compat.TemporaryDirectory,
        lambda: compat.SpooledTemporaryFile(max_size=1).write(b"xx"),
    ]
    for make in makers:
        with pytest.raises(UnsafeDirectoryError, match="without the sticky bit"):
            make()
    assert os.listdir(untrusted_dir) == []
    # Control: the standard module uses it.
    tempfile.tempdir = str(untrusted_dir)
    fd, name = tempfile.mkstemp()
    os.close(fd)
    assert os.path.dirname(name) == str(untrusted_dir)


def _rename_away(path: str) -> str:
    os.rename(path, path + ".stolen")
    return "renamed"


@pytest.mark.attack
def test_the_refused_tempdir_really_lets_another_user_take_our_file(
    shared_dir: Path, other_user: Callable[..., Any]
) -> None:
    untrusted_dir = shared_dir / "open"  # reachable by the other user, unlike tmp_path
    untrusted_dir.mkdir()
    os.chmod(untrusted_dir, 0o777)
    # Control with the standard module: another local user renames our file away
    # (and could plant their own under its name).
    tempfile.tempdir = str(untrusted_dir)
    fd, name = tempfile.mkstemp()
    os.close(fd)
    assert other_user(_rename_away, name) == "renamed"
    assert not os.path.exists(name)
    # hardtemp.compat never creates anything there.
    compat.tempdir = str(untrusted_dir)
    with pytest.raises(UnsafeDirectoryError):
        compat.mkstemp()


def test_an_untrusted_tmpdir_candidate_is_skipped_with_a_warning(
    untrusted_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(untrusted_dir))
    compat.tempdir = None
    with pytest.warns(UnsafeCandidateWarning, match=re.escape(str(untrusted_dir))):
        chosen = compat.gettempdir()
    assert chosen != str(untrusted_dir)
    assert compat.tempdir == chosen  # stored, as tempfile does
    # Control: the standard module takes it.
    tempfile.tempdir = None
    assert tempfile.gettempdir() == str(untrusted_dir)


# -- install() / uninstall() ----------------------------------------------------------------


@pytest.fixture
def thirdparty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """A library that imported tempfile (both ways) before install()."""
    src = tmp_path / "lib"
    src.mkdir()
    (src / "thirdparty_tmp.py").write_text(
        textwrap.dedent(
            """
            import tempfile
            from tempfile import NamedTemporaryFile

            def via_module():
                return tempfile.NamedTemporaryFile()

            def via_name():
                return NamedTemporaryFile()
            """
        )
    )
    monkeypatch.syspath_prepend(str(src))
    mod = importlib.import_module("thirdparty_tmp")
    try:
        yield mod
    finally:
        sys.modules.pop("thirdparty_tmp", None)


def _is_hardened(f: Any) -> bool:
    hardened = NAME.fullmatch(os.path.basename(f.name)[3:]) is not None
    f.close()
    return hardened


def _snapshot(mod: types.ModuleType) -> tuple[type, dict[str, Any]]:
    return type(mod), dict(vars(mod))


def _same(a: tuple[type, dict[str, Any]], b: tuple[type, dict[str, Any]]) -> bool:
    return a[0] is b[0] and a[1].keys() == b[1].keys() and all(a[1][k] is b[1][k] for k in a[1])


def test_install_reaches_module_attribute_lookups_and_uninstall_restores_exactly(
    thirdparty: types.ModuleType,
) -> None:
    before = _snapshot(tempfile)
    assert not _is_hardened(thirdparty.via_module())
    compat.install()
    assert tempfile.NamedTemporaryFile is compat.NamedTemporaryFile
    assert _is_hardened(thirdparty.via_module())
    # `from tempfile import X` done earlier is out of reach: documented, and reported.
    assert not _is_hardened(thirdparty.via_name())
    assert "thirdparty_tmp.NamedTemporaryFile" in compat.stale_bindings()
    compat.uninstall()
    assert _same(before, _snapshot(tempfile))
    assert not _is_hardened(thirdparty.via_module())


def test_install_rebinds_only_in_modules_handed_to_it(thirdparty: types.ModuleType) -> None:
    original = thirdparty.NamedTemporaryFile
    before = _snapshot(thirdparty)
    compat.install(thirdparty)
    assert _is_hardened(thirdparty.via_name())
    assert "thirdparty_tmp.NamedTemporaryFile" not in compat.stale_bindings()
    compat.uninstall()
    assert thirdparty.NamedTemporaryFile is original
    assert _same(before, _snapshot(thirdparty))


def test_install_is_a_context_manager_and_nesting_keeps_the_outer_one(
    thirdparty: types.ModuleType,
) -> None:
    before = _snapshot(tempfile)
    with compat.install():
        with compat.install():
            assert _is_hardened(thirdparty.via_module())
        assert _is_hardened(thirdparty.via_module())  # the inner call did not install
    assert _same(before, _snapshot(tempfile))


def test_install_is_idempotent() -> None:
    before = _snapshot(tempfile)
    compat.install()
    compat.install()
    compat.uninstall()
    assert _same(before, _snapshot(tempfile))
    compat.uninstall()  # not installed: nothing to do
    assert _same(before, _snapshot(tempfile))


def test_tempfile_tempdir_is_honoured_and_verified_while_installed(
    private_dir: Path, untrusted_dir: Path
) -> None:
    original = tempfile.tempdir
    with compat.install():
        tempfile.tempdir = str(private_dir)
        assert compat.tempdir == str(private_dir)
        fd, name = tempfile.mkstemp()
        os.close(fd)
        assert os.path.dirname(name) == str(private_dir)
        tempfile.tempdir = str(untrusted_dir)
        with pytest.raises(UnsafeDirectoryError):
            tempfile.mkstemp()
    assert tempfile.tempdir is original


def test_a_tempdir_set_before_install_is_kept(private_dir: Path) -> None:
    tempfile.tempdir = str(private_dir)
    with compat.install():
        assert tempfile.gettempdir() == str(private_dir)
        assert os.path.dirname(tempfile.mkdtemp()) == str(private_dir)
    assert tempfile.tempdir == str(private_dir)


def test_uninstall_undoes_its_copy_of_tempdir_but_keeps_a_value_set_meanwhile(
    private_dir: Path, tmp_path: Path
) -> None:
    compat.tempdir = None
    tempfile.tempdir = str(private_dir)
    with compat.install():
        assert compat.tempdir == str(private_dir)  # copied from tempfile
    assert compat.tempdir is None  # our copy undone
    assert tempfile.tempdir == str(private_dir)
    with compat.install():
        compat.tempdir = str(tmp_path)  # the user's own setting, through hardtemp.compat
    assert compat.tempdir == str(tmp_path)
    assert tempfile.tempdir == str(private_dir)


def test_installed_mktemp_raises_unless_kept() -> None:
    original = tempfile.mktemp
    with compat.install():
        with pytest.raises(InsecureOperationError):
            tempfile.mktemp()  # noqa: S306 - installed: this is the refusal under test
        # What that breaks: multiprocessing's default AF_UNIX listener address.
        with pytest.raises(InsecureOperationError):
            multiprocessing.connection.arbitrary_address("AF_UNIX")
    with compat.install(keep_mktemp=True):
        assert tempfile.mktemp is original
        assert multiprocessing.connection.arbitrary_address("AF_UNIX")


def test_uninstall_leaves_a_value_someone_else_set_meanwhile() -> None:
    def theirs() -> None:
        pass

    original = tempfile.mkstemp
    compat.install()
    tempfile.mkstemp = theirs  # type: ignore[assignment]
    try:
        compat.uninstall()
        assert tempfile.mkstemp is theirs
    finally:
        tempfile.mkstemp = original


def test_install_refuses_what_is_not_a_module() -> None:
    with pytest.raises(TypeError, match="modules"):
        compat.install("tempfile")  # type: ignore[arg-type]


def test_install_and_uninstall_are_thread_safe(private_dir: Path) -> None:
    before = _snapshot(tempfile)
    barrier = threading.Barrier(8, timeout=60)
    errors: list[BaseException] = []

    def toggler() -> None:
        try:
            barrier.wait()
            for _ in range(200):
                compat.install()
                compat.uninstall()
        except BaseException as exc:
            errors.append(exc)

    def user() -> None:
        try:
            barrier.wait()
            for _ in range(100):
                fd, name = tempfile.mkstemp(dir=private_dir)
                os.close(fd)
                os.unlink(name)
        except BaseException as exc:
            errors.append(exc)

    threads = start_threads([*((toggler, ()) for _ in range(6)), (user, ()), (user, ())])
    for t in threads:
        t.join()
    assert errors == []
    compat.uninstall()
    assert _same(before, _snapshot(tempfile))
    assert os.listdir(private_dir) == []


# --------------------------------------------------------------------------- install corners


def test_install_refuses_a_tempfile_entry_that_is_not_a_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = _snapshot(tempfile)
    monkeypatch.setitem(sys.modules, "tempfile", object())
    with pytest.raises(RuntimeError, match=r"sys.modules\['tempfile'\] is not a module"):
        compat.install()
    with pytest.raises(RuntimeError, match="is not a module"):
        compat.stale_bindings()
    monkeypatch.undo()
    assert _same(before, _snapshot(tempfile))
    compat.uninstall()  # nothing was installed: nothing to undo
    assert _same(before, _snapshot(tempfile))


def test_install_when_tempfile_already_is_compat_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def public(mod: types.ModuleType) -> tuple[type, dict[str, Any]]:
        return type(mod), {k: v for k, v in vars(mod).items() if not k.startswith("_")}

    before = _snapshot(tempfile)
    compat_before = public(compat)
    monkeypatch.setitem(sys.modules, "tempfile", compat)
    with compat.install():
        assert importlib.import_module("tempfile") is compat
        assert _same(compat_before, public(compat))
    assert _same(compat_before, public(compat))
    assert _same(before, _snapshot(tempfile))


def test_a_name_the_tempfile_module_lacked_is_added_then_removed_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(tempfile, "gettempprefixb")
    monkeypatch.delattr(tempfile, "gettempdirb")
    with compat.install():
        assert tempfile.gettempprefixb is compat.gettempprefixb
        assert tempfile.gettempdirb is compat.gettempdirb

        def theirs() -> bytes:
            return b"theirs"

        tempfile.gettempdirb = theirs  # someone else's value, set while installed
    assert not hasattr(tempfile, "gettempprefixb")
    assert tempfile.gettempdirb is theirs


@pytest.fixture
def twobindings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """A library that bound two of tempfile's functions by name."""
    src = tmp_path / "lib2"
    src.mkdir()
    (src / "twobindings_tmp.py").write_text("from tempfile import mkdtemp, mkstemp\n")
    monkeypatch.syspath_prepend(str(src))
    mod = importlib.import_module("twobindings_tmp")
    try:
        yield mod
    finally:
        sys.modules.pop("twobindings_tmp", None)


def test_modules_handed_twice_are_rebound_once_and_restored_exactly(
    thirdparty: types.ModuleType, twobindings: types.ModuleType
) -> None:
    before = (_snapshot(tempfile), _snapshot(thirdparty), _snapshot(twobindings))
    with compat.install(tempfile, thirdparty, twobindings):
        compat.install(thirdparty, twobindings)  # already rebound: skipped
        assert twobindings.mkstemp is compat.mkstemp
        assert twobindings.mkdtemp is compat.mkdtemp
        assert _is_hardened(thirdparty.via_name())
        assert _install._installed is not None
        rebound = [(m.__name__, a) for m, a, _ in _install._installed.rebound]
        assert sorted(rebound) == [
            ("thirdparty_tmp", "NamedTemporaryFile"),
            ("twobindings_tmp", "mkdtemp"),
            ("twobindings_tmp", "mkstemp"),
        ]
    after = (_snapshot(tempfile), _snapshot(thirdparty), _snapshot(twobindings))
    assert all(_same(a, b) for a, b in zip(before, after, strict=True))


def test_uninstall_leaves_a_rebound_name_someone_changed_meanwhile(
    thirdparty: types.ModuleType,
) -> None:
    def theirs() -> None:
        pass

    compat.install(thirdparty)
    setattr(thirdparty, "NamedTemporaryFile", theirs)  # noqa: B010 - a module of unknown type
    compat.uninstall()
    assert thirdparty.NamedTemporaryFile is theirs


def test_uninstall_keeps_a_module_class_someone_else_set_meanwhile() -> None:
    class Theirs(types.ModuleType):
        pass

    original: type[types.ModuleType] = type(tempfile)
    compat.install()
    try:
        tempfile.__class__ = Theirs
        compat.uninstall()
        assert type(tempfile) is Theirs  # not ours to undo
    finally:
        tempfile.__class__ = original  # type: ignore[assignment]


def test_stale_bindings_without_install_and_with_odd_sys_modules_entries(
    thirdparty: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _snapshot(thirdparty)
    monkeypatch.setitem(sys.modules, "an_int_in_sys_modules", 42)  # vars() raises TypeError
    monkeypatch.setitem(sys.modules, "a_none_in_sys_modules", None)
    found = compat.stale_bindings()
    assert "thirdparty_tmp.NamedTemporaryFile" in found
    assert not any(f.startswith(("an_int_", "a_none_")) for f in found)
    assert _same(before, _snapshot(thirdparty))  # reads only


def test_reading_tempfile_tempdir_while_installed_reads_ours(private_dir: Path) -> None:
    with compat.install():
        compat.tempdir = str(private_dir)
        assert tempfile.tempdir == str(private_dir)
        assert tempfile.gettempdir() == str(private_dir)


# ------------------------------------------------------------------ real third-party idioms


def _write_module(tmp_path: Path, name: str, source: str) -> None:
    src = tmp_path / f"lib-{name}"
    src.mkdir()
    (src / f"{name}.py").write_text(textwrap.dedent(source))
    sys.path.insert(0, str(src))


AIOFILES_LIKE = """
    from tempfile import NamedTemporaryFile as syncNamedTemporaryFile
    from tempfile import _TemporaryFileWrapper as syncTemporaryFileWrapper

    def wrap():
        f = syncNamedTemporaryFile()
        # aiofiles.tempfile._temporary_file_wrapper: anything else is "Unsupported IO type".
        if type(f) is not syncTemporaryFileWrapper:
            f.close()
            raise TypeError("Unsupported IO type")
        return f
"""


@pytest.fixture
def aiofiles_like(tmp_path: Path) -> Iterator[Callable[[], types.ModuleType]]:
    """aiofiles' idiom: the private wrapper class bound by name, and type(f) compared with it."""
    _write_module(tmp_path, "aiofiles_like_tmp", AIOFILES_LIKE)
    try:
        yield lambda: importlib.import_module("aiofiles_like_tmp")
    finally:
        sys.modules.pop("aiofiles_like_tmp", None)
        sys.path.remove(str(tmp_path / "lib-aiofiles_like_tmp"))


def test_aiofiles_imported_after_install_gets_our_wrapper_class(
    aiofiles_like: Callable[[], types.ModuleType],
) -> None:
    with compat.install():
        assert tempfile._TemporaryFileWrapper is compat._TemporaryFileWrapper
        mod = aiofiles_like()
        assert _is_hardened(mod.wrap())
    assert tempfile._TemporaryFileWrapper is not compat._TemporaryFileWrapper


def test_aiofiles_imported_before_install_is_reported_and_fixed_by_handing_it_in(
    aiofiles_like: Callable[[], types.ModuleType],
) -> None:
    mod = aiofiles_like()
    before = _snapshot(mod)
    with compat.install():
        # Out of reach, and said so: its private binding too, not only the functions.
        found = compat.stale_bindings()
        assert "aiofiles_like_tmp.syncTemporaryFileWrapper" in found
        assert "aiofiles_like_tmp.syncNamedTemporaryFile" in found
        assert not _is_hardened(mod.wrap())  # the standard function, still working
        compat.install(mod)
        assert not [b for b in compat.stale_bindings() if b.startswith("aiofiles_like_tmp.")]
        assert _is_hardened(mod.wrap())  # rebinding both: hardened and not broken
    assert _same(before, _snapshot(mod))


def test_a_stale_standard_named_temporary_file_still_works_while_the_wrapper_is_aliased(
    thirdparty: types.ModuleType,
) -> None:
    with compat.install():
        f = thirdparty.via_name()  # the standard function: it calls tempfile._TemporaryFileWrapper
        assert type(f) is _install.original("_TemporaryFileWrapper")
        assert not _is_hardened(f)
    assert _install.original("_TemporaryFileWrapper") is None


def test_install_reapplies_after_importlib_reload_of_tempfile(
    thirdparty: types.ModuleType,
) -> None:
    with compat.install():
        importlib.reload(tempfile)
        # The reload brought the standard functions back: visible, not silent.
        assert tempfile.mkstemp is not compat.mkstemp
        assert "tempfile.mkstemp" in compat.stale_bindings()
        assert not _is_hardened(thirdparty.via_module())
        compat.install()  # idempotent in effect: applies itself again
        assert tempfile.mkstemp is compat.mkstemp
        assert tempfile._TemporaryFileWrapper is compat._TemporaryFileWrapper
        assert _is_hardened(thirdparty.via_module())
        with pytest.raises(InsecureOperationError):
            tempfile.mktemp()  # noqa: S306 - installed: this is the refusal under test
        assert not [b for b in compat.stale_bindings() if b.startswith("tempfile.")]
        reloaded_mkstemp = _install.original("mkstemp")
    # Uninstall restores the reloaded module's own functions.
    assert tempfile.mkstemp is reloaded_mkstemp
    assert type(tempfile) is types.ModuleType
    assert not _is_hardened(thirdparty.via_module())


def test_install_reapplies_to_a_replaced_tempfile_module_and_uninstall_restores_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    spec = importlib.util.find_spec("tempfile")
    assert spec is not None
    assert spec.loader is not None
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)
    before = (_snapshot(tempfile), _snapshot(fresh))
    with compat.install():
        monkeypatch.setitem(sys.modules, "tempfile", fresh)
        assert "tempfile.mkstemp" in compat.stale_bindings()
        compat.install()
        assert fresh.mkstemp is compat.mkstemp
        assert tempfile.mkstemp is compat.mkstemp  # the first one stays installed
        fresh.tempdir = "/somewhere"  # forwarded to the one store
        assert compat.tempdir == "/somewhere"
        compat.tempdir = None
    monkeypatch.undo()
    after = (_snapshot(tempfile), _snapshot(fresh))
    assert all(_same(a, b) for a, b in zip(before, after, strict=True))


def test_a_late_install_warns_naming_the_bindings_it_cannot_reach(
    thirdparty: types.ModuleType,
) -> None:
    with pytest.warns(StaleBindingWarning, match=r"thirdparty_tmp\.NamedTemporaryFile") as rec:
        compat.install()
    assert "stale_bindings()" in str(rec[0].message)
    assert rec[0].filename == __file__  # attributed to the caller of install()
    compat.uninstall()
    with warnings_as_errors():
        compat.install(warn_stale=False)  # asked not to: silent
        compat.install()  # nothing changed by this call: nothing new to say
    compat.uninstall()


def test_install_from_a_sitecustomize_is_silent_even_with_warnings_as_errors(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import hardtemp.compat\nhardtemp.compat.install()\n")
    code = (
        "import sys, tempfile, hardtemp.compat as c\n"
        "assert tempfile.NamedTemporaryFile is c.NamedTemporaryFile\n"
        "print(c.stale_bindings())\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), SRC]))
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "[]\n"
    assert proc.stderr == ""


@pytest.mark.parametrize(
    "code",
    [
        "import hardtemp.compat",
        # A sitecustomize's install(): every Python process pays for what it imports.
        "import hardtemp.compat; hardtemp.compat.install()",
    ],
)
def test_import_and_install_of_hardtemp_compat_load_no_heavy_module(code: str) -> None:
    # What made `import hardtemp.compat` cost 8x `import tempfile` (benchmarks/bench_import.py
    # measures the ratio): the crypto stack, psutil, ctypes and hardtemp's file machinery.
    # Compared with a process that imports tempfile alone, so that whatever the interpreter
    # (or coverage's subprocess hook) loads anyway is not counted.
    heavy = ("cryptography", "psutil", "ctypes", "dataclasses", "typing", "secrets")
    ours = ("hardtemp._files", "hardtemp._crypt", "hardtemp._fsinfo", "hardtemp._dirtrust")
    env = dict(os.environ, PYTHONPATH=SRC)

    def loaded(code: str) -> set[str]:
        proc = subprocess.run(
            [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return set(proc.stdout.split())

    added = loaded(code) - loaded("import tempfile")
    assert sorted(m for m in added if m.split(".")[0] in heavy or m in ours) == []


def test_installed_classes_load_at_first_access_and_are_ours() -> None:
    env = dict(os.environ, PYTHONPATH=SRC)
    code = (
        "import sys, tempfile, hardtemp.compat as c\n"
        "c.install()\n"
        "assert 'hardtemp._files' not in sys.modules\n"
        "from tempfile import SpooledTemporaryFile, TemporaryDirectory, _TemporaryFileWrapper\n"
        "assert SpooledTemporaryFile is c.SpooledTemporaryFile\n"
        "assert TemporaryDirectory is c.TemporaryDirectory\n"
        "assert _TemporaryFileWrapper is c._TemporaryFileWrapper\n"
        "with tempfile.NamedTemporaryFile() as f:\n"
        "    assert type(f) is tempfile._TemporaryFileWrapper\n"
        "print('ok')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "ok\n", "")


def test_a_class_assigned_to_tempfile_while_installed_is_kept_by_uninstall() -> None:
    standard = vars(tempfile)["SpooledTemporaryFile"]

    class Theirs(standard):  # type: ignore[misc, valid-type]
        pass

    with compat.install():
        assert tempfile.SpooledTemporaryFile is compat.SpooledTemporaryFile
        tempfile.SpooledTemporaryFile = Theirs  # type: ignore[misc]
        assert tempfile.SpooledTemporaryFile is Theirs
        del tempfile.SpooledTemporaryFile  # theirs removed: ours again
        assert tempfile.SpooledTemporaryFile is compat.SpooledTemporaryFile
        with pytest.raises(AttributeError, match="install"):
            del tempfile.SpooledTemporaryFile  # ours cannot be deleted while installed
        tempfile.SpooledTemporaryFile = Theirs  # type: ignore[misc]
    assert tempfile.SpooledTemporaryFile is Theirs  # someone else's value is left alone
    tempfile.SpooledTemporaryFile = standard  # type: ignore[misc]
    with compat.install():
        pass
    assert tempfile.SpooledTemporaryFile is standard


def test_mock_patch_of_an_installed_class_puts_ours_back_on_exit() -> None:
    from unittest import mock

    with compat.install():
        # mock.patch saves tempfile.__dict__'s value (the standard class) and sets it back.
        with mock.patch("tempfile.TemporaryDirectory") as fake:
            assert tempfile.TemporaryDirectory is fake
        assert tempfile.TemporaryDirectory is compat.TemporaryDirectory  # not the standard one
    assert tempfile.TemporaryDirectory is vars(tempfile)["TemporaryDirectory"]
    assert tempfile.TemporaryDirectory is not compat.TemporaryDirectory


def test_the_installed_classes_survive_a_reload_and_uninstall_restores_the_reloaded_ones() -> None:
    with compat.install():
        importlib.reload(tempfile)
        assert tempfile.TemporaryDirectory is compat.TemporaryDirectory
        reloaded = vars(tempfile)["TemporaryDirectory"]
        assert "tempfile.TemporaryDirectory" not in compat.stale_bindings()
        compat.install()
        assert _install.original("TemporaryDirectory") is reloaded
    assert tempfile.TemporaryDirectory is reloaded


def test_one_store_for_the_default_directory_and_one_scan_of_the_candidates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_dir: Path
) -> None:
    import hardtemp

    hostile = tmp_path / "hostile"
    hostile.mkdir()
    os.chmod(hostile, 0o777)  # writable by others without the sticky bit: skipped
    monkeypatch.setenv("TMPDIR", str(hostile))
    monkeypatch.setenv("TEMP", str(private_dir))
    monkeypatch.delenv("TMP", raising=False)
    compat.tempdir = None
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        seen = [compat.gettempdir(), hardtemp.gettempdir(), compat.gettempdir()]
    assert seen == [str(private_dir)] * 3
    # The candidates were scanned once, for both: one warning about the hostile $TMPDIR.
    assert [w.category for w in rec] == [UnsafeCandidateWarning]
    assert str(hostile) in str(rec[0].message)
    assert _tempdir.tempdir == str(private_dir)
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    compat.tempdir = str(other)  # compat's setting is hardtemp's
    assert hardtemp.gettempdir() == str(other)
    _tempdir.tempdir = str(private_dir)  # and the reverse
    assert compat.tempdir == str(private_dir)
    assert compat.gettempdir() == str(private_dir)


def test_the_install_warning_sees_a_module_imported_since_the_last_install(
    tmp_path: Path,
) -> None:
    compat.install()
    compat.uninstall()  # a first scan, remembered for a loop of install()/uninstall()
    _write_module(tmp_path, "late_binding_tmp", "from tempfile import mkdtemp\n")
    try:
        importlib.import_module("late_binding_tmp")
        with pytest.warns(StaleBindingWarning, match=r"late_binding_tmp\.mkdtemp"):
            compat.install()
    finally:
        compat.uninstall()
        sys.modules.pop("late_binding_tmp", None)
        sys.path.remove(str(tmp_path / "lib-late_binding_tmp"))
