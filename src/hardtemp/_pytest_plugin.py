"""pytest plugin (entry point ``pytest11: hardtemp``): private temp paths and leak checks.

* ``hardtemp_path``: a fresh private (0700) :class:`pathlib.Path` per test, like
  ``tmp_path``, removed after the test with every regular file overwritten.
* ``hardtemp_path_factory``: session-scoped; ``mktemp(basename, numbered=True)``
  makes more such directories (removed, with overwrite, at the end of the session)
  and ``getbasetemp()`` returns their parent.
* ``--hardtemp-strict`` (or ini ``hardtemp_strict = true``): a test that leaves
  a hardtemp object open or on disk fails in its teardown, naming the object and
  the place it was created. ``mkstemp``/``mkdtemp`` results are the caller's to
  remove: those still on disk (or, for ``mkstemp``, still open) fail it too.

Nothing is done at import beyond defining hooks; without ``--hardtemp-strict``
the creation hook stays off (one global lookup per creation) and no fixture
runs for tests that do not ask for one. An invalid ``HARDTEMP_WIPE_POLICY``
stops the run at configuration with one line and exit status 2, as the
``hardtemp`` command does.

PYTEST_DONT_REWRITE: hardtemp has no assertions for pytest to rewrite, and it
is often imported before pytest starts (``install()`` in a ``sitecustomize``).
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import traceback
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# Nothing of hardtemp's is imported at module level: pytest imports entry-point plugins before
# pytest-cov starts measuring, so what this module imported here would count as never run.
# Each hook and fixture imports what it uses when it is first called.
if TYPE_CHECKING:
    from . import _track
    from ._files import TemporaryDirectory

__all__ = ["HardtempPathFactory"]

_HERE = os.path.dirname(os.path.abspath(__file__))


def _package_dirs() -> tuple[str, ...]:
    """The directories of hardtemp, pytest and pluggy as installed: their frames are
    machinery. Matched as path prefixes, not by a directory's name, so a test file
    below a directory that happens to be called ``pytest`` still shows its frames."""
    import _pytest
    import pluggy

    mods = (_pytest, pytest, pluggy)
    return (_HERE, *(os.path.dirname(os.path.abspath(m.__file__ or "")) for m in mods))


_MACHINERY = tuple(d + os.sep for d in _package_dirs())
_STACK_DEPTH = 8  # frames of the creation site shown in a leak report


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hardtemp", "hardtemp temporary files")
    group.addoption(
        "--hardtemp-strict",
        action="store_true",
        default=None,
        help="fail a test that leaves a hardtemp temp file or directory open or on disk "
        "(including mkstemp/mkdtemp results), naming where it was created",
    )
    parser.addini("hardtemp_strict", type="bool", default=False, help="as --hardtemp-strict")


# --------------------------------------------------------------------------- paths


class HardtempPathFactory:
    """Private temporary directories for a test session.

    Every directory is 0700, created (lazily) under one private base directory
    that is itself a :class:`hardtemp.TemporaryDirectory`: marked for
    ``hardtemp sweep`` should the session be killed, and removed with an
    overwrite of every file when the session ends.
    """

    def __init__(self) -> None:
        self._base: TemporaryDirectory | None = None
        self._made: dict[str, tuple[int, int]] = {}

    def getbasetemp(self) -> Path:
        """The base directory (created on first use).

        Raises: as :class:`hardtemp.TemporaryDirectory`.
        """
        if self._base is None:
            from ._files import TemporaryDirectory

            with _paused():
                self._base = TemporaryDirectory(prefix="pytest-hardtemp-")
        return Path(os.fsdecode(self._base.name))

    def mktemp(self, basename: str, numbered: bool = True) -> Path:
        """A new private (0700) directory under :meth:`getbasetemp`.

        With ``numbered`` (the default) the name is ``basename`` followed by the
        lowest free number (as pytest's ``tmp_path_factory``); otherwise exactly
        ``basename``.

        Raises:
            ValueError: ``basename`` is empty, ``.``/``..`` or contains ``/`` or NUL.
            FileExistsError: ``numbered`` is false and ``basename`` exists.
            UnsafeFileError: what was created is not a private directory of ours.
            OSError: the directory could not be created.
        """
        if not basename or basename in (".", "..") or "/" in basename or "\0" in basename:
            raise ValueError(f"basename must be a plain directory name, not {basename!r}")
        from ._create import create_dir_named
        from ._dirtrust import trusted_dir

        base = self.getbasetemp()
        handle = trusted_dir(base)
        for i in range(10000) if numbered else [None]:
            name = basename if i is None else f"{basename}{i}"
            try:
                # The core creation step: 0700 whatever the umask, verified by fstat.
                fd, made = create_dir_named(handle, str(base), name)
            except FileExistsError:
                if i is None:
                    raise
                continue
            break
        else:
            raise FileExistsError(f"no free name for {basename!r} in {base}")
        os.close(fd)
        path = base / name
        self._made[str(path)] = (made.dev, made.ino)
        return path

    def remove(self, path: Path) -> None:
        """Remove a directory made by :meth:`mktemp`, overwriting every file in it.

        Raises:
            ValueError: ``path`` was not made by this factory.
            UnsafeFileError, OSError: as :func:`hardtemp._remove.rmtree_at`.
        """
        ident = self._made.pop(str(path), None)
        if ident is None or self._base is None:
            raise ValueError(f"{path} was not made by this factory")
        from ._dirtrust import trusted_dir
        from ._remove import rmtree_at

        handle = trusted_dir(self.getbasetemp())
        with contextlib.suppress(FileNotFoundError):  # the test removed it itself
            rmtree_at(handle.fd, path.name, expect=ident, display_path=str(path))

    def cleanup(self) -> None:
        """Remove the base directory and everything in it (with overwrite)."""
        self._made.clear()
        if self._base is not None:
            base, self._base = self._base, None
            base.cleanup()


@pytest.fixture(scope="session")
def hardtemp_path_factory() -> Iterator[HardtempPathFactory]:
    """Session-scoped factory of private temp directories (:class:`HardtempPathFactory`)."""
    factory = HardtempPathFactory()
    try:
        yield factory
    finally:
        factory.cleanup()


@pytest.fixture
def hardtemp_path(
    request: pytest.FixtureRequest, hardtemp_path_factory: HardtempPathFactory
) -> Iterator[Path]:
    """A fresh private (0700) directory for this test, removed with overwrite afterwards."""
    name = re.sub(r"\W", "_", request.node.name)[:30] or "test"
    path = hardtemp_path_factory.mktemp(name, numbered=True)
    yield path
    hardtemp_path_factory.remove(path)


# --------------------------------------------------------------------------- strict mode


@dataclass
class _Record:
    kind: str
    path: str | None
    fd: int | None
    ident: tuple[int, int]
    ref: weakref.ref[Any] | None
    where: list[str]

    def problems(self) -> list[str]:
        """What this object left behind now (empty: nothing)."""
        found: list[str] = []
        obj = self.ref() if self.ref is not None else None
        if self.kind in ("NamedTemporaryFile", "TemporaryFile"):
            if obj is not None:
                if not getattr(obj, "closed", True):
                    found.append("left open")
            elif self.ref is None and self.fd is not None and _fd_is(self.fd, self.ident):
                found.append(f"left open (descriptor {self.fd})")
        elif self.kind == "mkstemp" and self.fd is not None and _fd_is(self.fd, self.ident):
            found.append(f"descriptor {self.fd} left open")
        if self.path is not None and _on_disk(self.path, self.ident):
            found.append("left on disk" if self.kind != "TemporaryDirectory" else "not cleaned up")
        return found


def _fd_is(fd: int, ident: tuple[int, int]) -> bool:
    """Descriptor ``fd`` is still open on the inode ``ident`` (an unnamed file too)."""
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == ident


def _on_disk(path: str, ident: tuple[int, int]) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == ident


def _machinery(filename: str) -> bool:
    """Frames of hardtemp itself, pytest and pluggy: not where the test created it."""
    return filename.startswith(_MACHINERY) or filename.startswith("<frozen ")


class _Tracker:
    """Records hardtemp objects created while a test runs (the ``_track`` hook)."""

    def __init__(self) -> None:
        self.records: list[_Record] = []
        self.active = False
        self.paused = 0

    def hook(
        self,
        kind: str,
        obj: object,
        path: str | bytes | None,
        fd: int | None,
        ident: tuple[int, int],
    ) -> None:
        # Called from inside hardtemp's creating functions: it must never raise.
        try:
            if not self.active or self.paused:
                return
            ref: weakref.ref[Any] | None = None
            if obj is not None:
                try:
                    ref = weakref.ref(obj)
                except TypeError:
                    ref = None  # not weakly referenceable: judged by its descriptor
            frames = [f for f in traceback.extract_stack() if not _machinery(f.filename)]
            where = traceback.format_list(frames[-_STACK_DEPTH:])
            name = os.fsdecode(path) if path is not None else None
            self.records.append(_Record(kind, name, fd, ident, ref, where))
        except Exception:  # noqa: S110 - a broken report must not break the code under test
            pass

    def start(self) -> None:
        self.records = []
        self.active = True

    def stop(self) -> list[str]:
        """Stop recording; describe every object left behind."""
        self.active = False
        gc.collect()  # unreachable objects in cycles: let their finalizers run first
        leaks = []
        for r in self.records:
            problems = r.problems()
            if problems:
                what = f"{r.kind} {r.path}" if r.path is not None else f"{r.kind} (unnamed)"
                leaks.append(f"{what}: {', '.join(problems)}; created at:\n" + "".join(r.where))
        self.records = []
        return leaks


_tracker: _Tracker | None = None


class _paused:
    """Objects the plugin itself creates are not the test's."""

    def __enter__(self) -> None:
        if _tracker is not None:
            _tracker.paused += 1

    def __exit__(self, *exc: object) -> None:
        if _tracker is not None:
            _tracker.paused -= 1


class _StrictPlugin:
    """Registered only with ``--hardtemp-strict``: checks every test."""

    def __init__(self, tracker: _Tracker) -> None:
        self.tracker = tracker

    @pytest.fixture(autouse=True)
    def _hardtemp_strict(self, request: pytest.FixtureRequest) -> Iterator[None]:
        # Autouse and function-scoped: set up before, torn down after the test's own
        # function-scoped fixtures, which may legitimately close what the test used.
        self.tracker.start()
        yield
        leaks = self.tracker.stop()
        if leaks:
            n = len(leaks)
            head = f"hardtemp strict: {request.node.nodeid} left {n} temporary object(s) behind"
            pytest.fail(head + ":\n\n" + "\n".join(leaks), pytrace=False)


def _strict(config: pytest.Config) -> bool:
    opt = config.getoption("hardtemp_strict", None)
    return bool(opt) if opt is not None else bool(config.getini("hardtemp_strict"))


_previous: list[tuple[_track.Hook | None, _Tracker | None]] = []


def pytest_configure(config: pytest.Config) -> None:
    global _tracker
    from . import _policy, _track

    problem = _policy.environment_error()
    if problem is not None:
        # A configuration error: one line and status 2, as the hardtemp command, no traceback.
        pytest.exit(f"hardtemp: {problem}", returncode=2)
    if not _strict(config):
        return
    # Saved and restored: a pytester run inside a strict run nests a second session.
    _previous.append((_track.hook, _tracker))
    _tracker = _Tracker()
    _track.hook = _tracker.hook
    config.pluginmanager.register(_StrictPlugin(_tracker), "hardtemp-strict")


def pytest_unconfigure(config: pytest.Config) -> None:
    global _tracker
    from . import _track

    plugin = config.pluginmanager.get_plugin("hardtemp-strict")
    if plugin is None:
        return
    config.pluginmanager.unregister(plugin)
    _track.hook, _tracker = _previous.pop() if _previous else (None, None)
