"""The pytest plugin, run by pytester in a separate pytest process (the path factory
also in process)."""

from __future__ import annotations

import json
import os
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from hardtemp import _tempdir
from hardtemp._pytest_plugin import HardtempPathFactory

pytest_plugins = ["pytester"]

SRC = str(Path(__file__).resolve().parent.parent / "src")


def _installed() -> bool:
    """Whether the pytest11 entry point registers the plugin already (pip install)."""
    return any(ep.value == "hardtemp._pytest_plugin" for ep in entry_points(group="pytest11"))


# Installed: the entry point loads it; -p as well would register the module twice.
PLUGIN = [] if _installed() else ["-p", "hardtemp._pytest_plugin"]


@pytest.fixture
def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PYTHONPATH", SRC)
    # The inner tests' temp files (leaked ones too) stay in this test's own directory.
    inner_tmp = tmp_path / "inner-tmp"
    inner_tmp.mkdir(mode=0o700)
    monkeypatch.setenv("TMPDIR", str(inner_tmp))

    def go(*args: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess(*PLUGIN, "-p", "no:cacheprovider", *args)

    return go


def test_hardtemp_path_is_private_and_removed_after_the_test(
    pytester: pytest.Pytester, run, tmp_path: Path
) -> None:
    record = tmp_path / "seen.json"
    pytester.makepyfile(
        f"""
        import json, os, stat

        def test_uses_it(hardtemp_path):
            st = os.stat(hardtemp_path)
            (hardtemp_path / "secret").write_text("s3cret")
            (hardtemp_path / "sub").mkdir()
            (hardtemp_path / "sub" / "more").write_text("s3cret")
            base = hardtemp_path.parent
            json.dump({{"path": str(hardtemp_path), "mode": stat.S_IMODE(st.st_mode),
                       "uid": st.st_uid, "base": str(base),
                       "base_mode": stat.S_IMODE(os.stat(base).st_mode)}},
                      open({str(record)!r}, "w"))

        def test_another_gets_a_fresh_one(hardtemp_path):
            assert list(hardtemp_path.iterdir()) == []
        """
    )
    result = run()
    result.assert_outcomes(passed=2)
    seen = json.loads(record.read_text())
    assert seen["mode"] == 0o700
    assert seen["base_mode"] == 0o700
    assert seen["uid"] == os.geteuid()
    assert not Path(seen["path"]).exists()
    assert not Path(seen["base"]).exists()  # the session's base is gone too


def test_hardtemp_path_factory_makes_numbered_private_directories(
    pytester: pytest.Pytester, run
) -> None:
    pytester.makepyfile(
        """
        import os, stat, pytest

        def test_factory(hardtemp_path_factory):
            a = hardtemp_path_factory.mktemp("data")
            b = hardtemp_path_factory.mktemp("data")
            c = hardtemp_path_factory.mktemp("exact", numbered=False)
            assert (a.name, b.name, c.name) == ("data0", "data1", "exact")
            assert a.parent == hardtemp_path_factory.getbasetemp()
            for p in (a, b, c):
                assert stat.S_IMODE(os.stat(p).st_mode) == 0o700
            with pytest.raises(FileExistsError):
                hardtemp_path_factory.mktemp("exact", numbered=False)
            with pytest.raises(ValueError):
                hardtemp_path_factory.mktemp("../escape")
        """
    )
    run().assert_outcomes(passed=1)


LEAKY = """
import os
import hardtemp

kept = []

def test_clean(hardtemp_path, hardtemp_path_factory):
    with hardtemp.NamedTemporaryFile() as f:
        f.write(b"x")
    with hardtemp.TemporaryDirectory() as d:
        open(os.path.join(d, "f"), "w").close()
    with hardtemp.TemporaryFile() as t:
        t.write(b"x")
    fd, path = hardtemp.mkstemp(dir=hardtemp_path)  # removed with hardtemp_path
    os.close(fd)
    fd, path = hardtemp.mkstemp()
    os.close(fd)
    os.unlink(path)
    os.rmdir(hardtemp.mkdtemp())
    hardtemp_path_factory.mktemp("session-owned")

def test_leaks_a_named_file():
    f = hardtemp.NamedTemporaryFile(prefix="leaky-")
    kept.append(f)

def test_leaks_mkstemp():
    fd, path = hardtemp.mkstemp(prefix="leaky-mkstemp-")
    os.close(fd)
    kept.append(path)

def test_leaks_an_unnamed_file():
    kept.append(hardtemp.TemporaryFile(encrypt=False))

def test_leaks_a_directory():
    kept.append(hardtemp.TemporaryDirectory(prefix="leaky-dir-"))
"""


def _line(source: str, text: str) -> int:
    """Line number of ``text`` in the file pytester writes from ``source``."""
    lines = source.lstrip("\n").splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def test_strict_mode_fails_leaking_tests_and_names_the_creation_site(
    pytester: pytest.Pytester, run
) -> None:
    pytester.makepyfile(test_leaky=LEAKY)
    result = run("--hardtemp-strict")
    # The test bodies pass; each leak fails the test in its teardown.
    result.assert_outcomes(passed=5, errors=4)
    out = result.stdout.str()
    assert "ERROR at teardown of test_clean" not in out
    result.stdout.fnmatch_lines(
        [
            "*hardtemp strict: test_leaky.py::test_leaks_a_named_file left 1 temporary object*",
            "NamedTemporaryFile */leaky-*: left open, left on disk; created at:",
            '  File "*test_leaky.py", line '
            f"{_line(LEAKY, 'NamedTemporaryFile(prefix')}, in test_leaks_a_named_file",
            '    f = hardtemp.NamedTemporaryFile(prefix="leaky-")',
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "mkstemp */leaky-mkstemp-*: left on disk; created at:",
            '  File "*test_leaky.py", line '
            f"{_line(LEAKY, 'mkstemp(prefix')}, in test_leaks_mkstemp",
        ]
    )
    result.stdout.fnmatch_lines(["TemporaryFile (unnamed): left open; created at:"])
    result.stdout.fnmatch_lines(["TemporaryDirectory */leaky-dir-*: not cleaned up; created at:"])
    for name in ("test_leaks_a_named_file", "test_leaks_mkstemp", "test_leaks_an_unnamed_file"):
        assert f"ERROR test_leaky.py::{name}" in out


def test_without_strict_mode_leaks_are_not_reported(pytester: pytest.Pytester, run) -> None:
    pytester.makepyfile(test_leaky=LEAKY)
    result = run()
    result.assert_outcomes(passed=5)
    assert "hardtemp strict" not in result.stdout.str()


def test_strict_mode_from_the_ini_file(pytester: pytest.Pytester, run) -> None:
    pytester.makeini("[pytest]\nhardtemp_strict = true\n")
    pytester.makepyfile(
        """
        import hardtemp
        kept = []
        def test_leak():
            kept.append(hardtemp.NamedTemporaryFile())
        """
    )
    result = run()
    result.assert_outcomes(passed=1, errors=1)


def test_strict_mode_allows_what_a_fixture_cleans_up(pytester: pytest.Pytester, run) -> None:
    pytester.makepyfile(
        """
        import pytest, hardtemp

        @pytest.fixture
        def tmpfile():
            with hardtemp.NamedTemporaryFile() as f:
                yield f

        def test_uses_fixture(tmpfile):
            tmpfile.write(b"x")
        """
    )
    run("--hardtemp-strict").assert_outcomes(passed=1)


def test_strict_mode_flags_an_unnamed_file_left_open_by_its_descriptor(
    pytester: pytest.Pytester, run
) -> None:
    # psutil's open_files() does not list O_TMPFILE files: the plugin must still see it.
    pytester.makepyfile(
        """
        import os, hardtemp
        kept = []
        def test_leak():
            f = hardtemp.TemporaryFile(encrypt=False)
            kept.append(f)
            target = os.readlink(f"/proc/self/fd/{f.fileno()}")
            assert "(deleted)" in target or "#" in target
        """
    )
    result = run("--hardtemp-strict")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["TemporaryFile (unnamed): left open; created at:"])


def test_strict_mode_flags_a_mkstemp_descriptor_left_open(pytester: pytest.Pytester, run) -> None:
    pytester.makepyfile(
        """
        import os, hardtemp
        def test_leak():
            fd, path = hardtemp.mkstemp()
            os.unlink(path)  # removed, but the descriptor stays open
        """
    )
    result = run("--hardtemp-strict")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.re_match_lines([r".*mkstemp.*descriptor \d+ left open.*"])


# ----------------------------------------------------------------------- the factory, in process


@pytest.fixture
def private_tmpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "tmpdir"
    d.mkdir(mode=0o700)
    monkeypatch.setenv("TMPDIR", str(d))
    monkeypatch.setattr(_tempdir, "tempdir", None)
    return d


def test_factory_removes_only_what_it_made_and_refuses_bad_names(
    private_tmpdir: Path, tmp_path: Path
) -> None:
    factory = HardtempPathFactory()
    try:
        other = tmp_path / "not-made-here"
        other.mkdir()
        with pytest.raises(ValueError, match=f"{other} was not made by this factory"):
            factory.remove(other)
        assert other.exists()
        made = factory.mktemp("x")
        (made / "f").write_text("data")
        factory.remove(made)
        assert not made.exists()
        with pytest.raises(ValueError, match="was not made by this factory"):
            factory.remove(made)  # only once
        gone = factory.mktemp("y")
        gone.rmdir()  # the test removed it itself: not an error
        factory.remove(gone)
        exact = factory.mktemp("exact", numbered=False)
        assert exact.name == "exact"
        with pytest.raises(FileExistsError):
            factory.mktemp("exact", numbered=False)
        for bad in ("", ".", "..", "a/b", "a\0b"):
            with pytest.raises(ValueError, match="basename must be a plain directory name"):
                factory.mktemp(bad)
        base = factory.getbasetemp()
        assert base.parent == private_tmpdir
    finally:
        factory.cleanup()
    assert not base.exists()
    assert other.exists()


def test_an_unused_factory_creates_nothing_and_cleans_up_nothing(private_tmpdir: Path) -> None:
    factory = HardtempPathFactory()
    factory.cleanup()
    factory.cleanup()
    assert os.listdir(private_tmpdir) == []


# --------------------------------------------------------------------------- compat and config


COMPAT_LEAKY = """
import os, tempfile
import hardtemp.compat

kept = []

def test_compat_mkstemp_leak():
    fd, path = hardtemp.compat.mkstemp(prefix="leaky-compat-mkstemp-")
    kept.append(fd)

def test_compat_mkdtemp_leak():
    kept.append(hardtemp.compat.mkdtemp(prefix="leaky-compat-mkdtemp-"))

def test_tempfile_under_install_leak():
    with hardtemp.compat.install():
        fd, path = tempfile.mkstemp(prefix="leaky-installed-")
    os.close(fd)

def test_compat_clean():
    fd, path = hardtemp.compat.mkstemp()
    os.close(fd)
    os.unlink(path)
    os.rmdir(hardtemp.compat.mkdtemp())
"""


def test_strict_mode_tracks_compat_and_installed_tempfile_functions(
    pytester: pytest.Pytester, run
) -> None:
    pytester.makepyfile(test_compat_leaky=COMPAT_LEAKY)
    result = run("--hardtemp-strict")
    result.assert_outcomes(passed=4, errors=3)
    result.stdout.fnmatch_lines(
        ["mkstemp */leaky-compat-mkstemp-*: descriptor * left open, left on disk; created at:"]
    )
    result.stdout.fnmatch_lines(["mkdtemp */leaky-compat-mkdtemp-*: left on disk; created at:"])
    result.stdout.fnmatch_lines(["mkstemp */leaky-installed-*: left on disk; created at:"])
    assert "ERROR test_compat_leaky.py::test_compat_clean" not in result.stdout.str()


def test_hardtemp_imported_before_pytest_gives_no_assert_rewrite_warning(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A sitecustomize that calls install(), as the README suggests, then pytest with -W error
    # (click, werkzeug and pytest's own suite): pytest must not warn that it cannot rewrite us.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import hardtemp.compat\nhardtemp.compat.install()\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), SRC]))
    inner_tmp = tmp_path / "inner-tmp"
    inner_tmp.mkdir(mode=0o700)
    monkeypatch.setenv("TMPDIR", str(inner_tmp))
    pytester.makepyfile(
        """
        import sys, tempfile
        def test_installed():
            assert "hardtemp.compat" in sys.modules
            assert tempfile.mkstemp.__module__ == "hardtemp.compat"
        """
    )
    result = pytester.runpytest_subprocess(*PLUGIN, "-p", "no:cacheprovider", "-W", "error")
    assert "PytestAssertRewriteWarning" not in result.stderr.str() + result.stdout.str()
    result.assert_outcomes(passed=1)
    assert result.ret == 0


def test_an_invalid_wipe_policy_stops_pytest_with_one_line_and_exit_2(
    pytester: pytest.Pytester, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARDTEMP_WIPE_POLICY", "strict")
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = run()
    assert result.ret == 2  # not 3 (an internal error)
    err = result.stderr.str()
    assert "Traceback" not in err
    assert err.strip().splitlines() == [
        "Exit: hardtemp: environment variable HARDTEMP_WIPE_POLICY='strict' is invalid: "
        "allowed values are warn, error, ignore (or unset for warn)"
    ]


def _factory_under_umask_0o777(tmpdir: str) -> tuple[int, list[str]]:
    from hardtemp import _tempdir as td

    td.tempdir = tmpdir
    os.umask(0o777)
    factory = HardtempPathFactory()
    try:
        made = factory.mktemp("x")
        mode = os.stat(made).st_mode & 0o7777
    finally:
        factory.cleanup()
    return mode, os.listdir(tmpdir)


def test_factory_mktemp_is_0700_under_umask_0o777_for_an_ordinary_user(
    tmp_path: Path, shared_dir: Path
) -> None:
    # An ordinary user cannot open the d--------- that mkdir makes under umask 0o777: the
    # factory must go through the core creation step (as mkdtemp does), not its own copy.
    if os.geteuid() == 0:
        from _helpers_core import nobody_dir
        from conftest import as_other_user

        d = nobody_dir(shared_dir)
        mode, left = as_other_user(_factory_under_umask_0o777, str(d))
    else:
        d = tmp_path / "own"
        d.mkdir(mode=0o700)
        old = os.umask(0o022)
        try:
            mode, left = _factory_under_umask_0o777(str(d))
        finally:
            os.umask(old)
            _tempdir.tempdir = None
    assert mode == 0o700
    assert left == []  # no mode-000 directory left behind


def test_strict_mode_shows_the_creation_site_of_a_test_below_a_directory_named_pytest(
    pytester: pytest.Pytester, run
) -> None:
    # A project (or a CI's --basetemp) under .../pytest/... is not pytest's own code: its
    # frames are the creation site, whatever the directory is called.
    sub = pytester.path / "work" / "pytest"  # not on sys.path: never shadows pytest itself
    sub.mkdir(parents=True)
    (sub / "test_leaky_sub.py").write_text(
        "import hardtemp\n\nkept = []\n\n"
        "def test_leaks():\n"
        '    kept.append(hardtemp.NamedTemporaryFile(prefix="leaky-"))\n'
    )
    result = run("--hardtemp-strict", str(sub))
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "NamedTemporaryFile */leaky-*: left open, left on disk; created at:",
            '  File "*/pytest/test_leaky_sub.py", line 6, in test_leaks',
        ]
    )
