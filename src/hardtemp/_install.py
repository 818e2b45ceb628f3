"""``hardtemp.compat.install()``: make code that uses :mod:`tempfile` use ``hardtemp.compat``.

Invariants:

* Only ``sys.modules["tempfile"]`` (every module object it has been while
  installed) and the modules handed to :func:`install` are changed; :func:`uninstall`
  restores exactly what was changed, and leaves alone any value someone else
  set meanwhile.
* :func:`install` is idempotent in effect: called again after
  ``importlib.reload(tempfile)`` or with another module object in
  ``sys.modules["tempfile"]``, it applies itself again (and :func:`uninstall`
  then restores every module object it patched).
* ``tempfile.tempdir``/``tempfile.template`` read and write hardtemp's own
  (``hardtemp._tempdir.tempdir``: one store of the default directory).
* ``tempfile._TemporaryFileWrapper`` is hardtemp's class while installed
  (code such as aiofiles checks ``type(f) is _TemporaryFileWrapper``); the
  standard ``NamedTemporaryFile``, still bound elsewhere, keeps working (its
  global lookup finds the standard wrapper).
* The three classes (``SpooledTemporaryFile``, ``TemporaryDirectory``,
  ``_TemporaryFileWrapper``) are properties of the module's class, loaded at
  first access: install() imports neither the file machinery nor its
  dependencies, so a ``sitecustomize`` calling it costs every process little.
  A value assigned to one of them while installed is kept by uninstall(); assigning
  the standard class back (as ``unittest.mock.patch`` does on exit) means ours.
* Bindings out of reach (``from tempfile import X`` done earlier elsewhere)
  are reported by :func:`stale_bindings` and, at install, by one
  :class:`~hardtemp.exceptions.StaleBindingWarning`.
"""

from __future__ import annotations

import _thread
import sys
import types
import warnings

from .exceptions import StaleBindingWarning

TYPE_CHECKING = False  # no `typing` at run time: installing from a sitecustomize stays cheap
if TYPE_CHECKING:
    from typing import Any
del TYPE_CHECKING

__all__ = ["install", "original", "stale_bindings", "uninstall"]

# Set on the tempfile module object to this module's values.
_PATCHED = (
    "NamedTemporaryFile",
    "TemporaryFile",
    "SpooledTemporaryFile",
    "TemporaryDirectory",
    "_TemporaryFileWrapper",
    "mkstemp",
    "mkdtemp",
    "mktemp",
    "TMP_MAX",
    "gettempprefix",
    "gettempprefixb",
    "gettempdir",
    "gettempdirb",
)
# _TemporaryFileWrapper: aiofiles checks `type(f) is tempfile._TemporaryFileWrapper`.
_FORWARDED = ("tempdir", "template")
# Properties of the module's class, not entries of its dict: loading them would import the
# whole file stack (cryptography, psutil, ctypes...) into every process a sitecustomize runs.
_LAZY = frozenset({"SpooledTemporaryFile", "TemporaryDirectory", "_TemporaryFileWrapper"})
_MISSING = object()
_STALE_SHOWN = 5  # bindings named in the install-time warning (stale_bindings() has all)
_install_lock = _thread.RLock()


def _compat() -> types.ModuleType:
    from . import compat

    return compat


def _ours(name: str) -> Any:
    """This module's value for ``name`` (loads a lazy class)."""
    return getattr(_compat(), name)


class _Patched:
    """What install() changed on one tempfile module object."""

    def __init__(self, module: types.ModuleType) -> None:
        self.module = module
        self.old_class: type[types.ModuleType] = type(module)
        self.new_class: type[types.ModuleType] | None = None
        self.originals: dict[str, Any] = {}
        self.absent: set[str] = set()
        # A lazy class someone assigned while installed (uninstall() leaves it in place).
        self.overrides: dict[str, Any] = {}


class _Installed:
    """What install() changed, so that uninstall() can undo exactly that."""

    def __init__(self, keep_mktemp: bool) -> None:
        self.keep_mktemp = keep_mktemp
        self.patched: list[_Patched] = []
        # name -> (our value before install, the tempfile module's value copied over it)
        self.copied: dict[str, tuple[Any, Any]] = {}
        # (module handed to install(), attribute name, original value)
        self.rebound: list[tuple[types.ModuleType, str, Any]] = []
        # id -> (name, value): every original replaced, also those of a reloaded tempfile.
        self.seen: dict[int, tuple[str, Any]] = {}


_installed: _Installed | None = None


def _get_forwarded(name: str) -> Any:
    if name == "tempdir":
        from . import _tempdir

        return _tempdir.tempdir
    return vars(_compat())[name]


def _set_forwarded(name: str, value: Any) -> None:
    if name == "tempdir":
        from . import _tempdir

        _tempdir.tempdir = value
    else:
        vars(_compat())[name] = value


def _lazy(name: str, patched: _Patched) -> property:
    """``tempfile.NAME`` for a class of :data:`_LAZY`: ours (imported at first access),
    unless someone assigned another value while installed."""

    def get(mod: types.ModuleType) -> Any:
        value = patched.overrides.get(name, _MISSING)
        return _ours(name) if value is _MISSING else value

    def set_(mod: types.ModuleType, value: Any) -> None:
        if value is vars(mod).get(name, _MISSING):
            # The standard class put back (unittest.mock.patch restores the module dict's
            # value): ours again, never a silent return to the unhardened class.
            patched.overrides.pop(name, None)
        else:
            patched.overrides[name] = value

    def del_(mod: types.ModuleType) -> None:
        if patched.overrides.pop(name, _MISSING) is _MISSING:
            raise AttributeError(f"hardtemp.compat.install() provides tempfile.{name}")

    return property(get, set_, del_, doc=f"hardtemp.compat.{name}")


def _forwarding_class(base: type[types.ModuleType], patched: _Patched) -> type[types.ModuleType]:
    """A subclass of the tempfile module's class whose ``tempdir``/``template``
    read and write hardtemp's, so existing ``tempfile.tempdir = ...`` lines keep working,
    and whose lazy classes are ours (:func:`_lazy`)."""

    def forward(name: str) -> property:
        def get(mod: types.ModuleType) -> Any:
            return _get_forwarded(name)

        def set_(mod: types.ModuleType, value: Any) -> None:
            _set_forwarded(name, value)

        return property(get, set_, doc=f"hardtemp.compat.{name}")

    namespace: dict[str, Any] = {name: forward(name) for name in _FORWARDED}
    namespace.update((name, _lazy(name, patched)) for name in _LAZY)
    namespace["__slots__"] = ()
    return type(f"HardtempCompat{base.__name__}", (base,), namespace)


class _Installation:
    """Returned by :func:`install`; as a context manager, uninstalls on exit if
    this call was the one that installed."""

    def __init__(self, installed_now: bool) -> None:
        self.installed_now = installed_now

    def __enter__(self) -> _Installation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.installed_now:
            uninstall()


def install(  # long: a 47-line public docstring; 26 lines of code
    *modules: types.ModuleType, keep_mktemp: bool = False, warn_stale: bool = True
) -> _Installation:
    """Make code that uses the :mod:`tempfile` module use the hardened functions.

    Changes exactly this, all undone by :func:`uninstall`:

    * on the module object ``sys.modules["tempfile"]`` (the one every
      ``import tempfile`` returned, before and after), the attributes
      NamedTemporaryFile, TemporaryFile, SpooledTemporaryFile,
      TemporaryDirectory, mkstemp, mkdtemp, mktemp (unless ``keep_mktemp``),
      TMP_MAX, gettempprefix, gettempprefixb, gettempdir, gettempdirb and the
      private ``_TemporaryFileWrapper`` (which code such as aiofiles compares
      ``type(f)`` with) become hardtemp.compat's;
    * that module object's class is set to a subclass whose ``tempdir`` and
      ``template`` read and write hardtemp's, so ``tempfile.tempdir = d``
      still chooses the directory (and ``d`` is still verified). A value the
      tempfile module already had (set by you, or its cached default) is
      copied first;
    * in each module you hand in ``modules`` (and only those), every global
      that is one of the original tempfile objects above (``from tempfile
      import NamedTemporaryFile``) is rebound to ours.

    It cannot reach names bound before the call anywhere else (``from
    tempfile import X`` in modules you did not hand in, default arguments,
    closures, subclasses such as ``urllib.response.addbase``): unless
    ``warn_stale`` is false, a :class:`~hardtemp.exceptions.StaleBindingWarning`
    names them (all of them: :func:`stale_bindings`). Objects already created
    stay what they are.

    Idempotent in effect: a second call rebinds newly handed modules and
    applies the changes again where they were undone (``importlib.reload(tempfile)``,
    or another module object put in ``sys.modules["tempfile"]``); its
    ``keep_mktemp`` is ignored. Between such an undoing and the next call the
    standard functions are back (``stale_bindings()`` lists them as
    ``tempfile.NAME``). Thread-safe (install and uninstall are serialized; a
    thread calling tempfile at that moment gets either the old or the new function).

    ``keep_mktemp=True`` leaves ``tempfile.mktemp`` working (e.g. for
    :mod:`multiprocessing`'s default AF_UNIX listener addresses, which call it
    inside a private 0700 directory); by default it raises
    :class:`~hardtemp.exceptions.InsecureOperationError` like ours.

    Usable as a context manager: ``with hardtemp.compat.install(): ...``
    uninstalls on exit if that call installed.

    Raises:
        TypeError: an item of ``modules`` is not a module.
        RuntimeError: ``sys.modules["tempfile"]`` is not a module object.
    """
    global _installed
    for mod in modules:
        if not isinstance(mod, types.ModuleType):
            raise TypeError(f"install() takes modules, not {type(mod).__name__}")
    with _install_lock:
        module = _tempfile_module()
        installed_now = _installed is None
        if _installed is None:
            _installed = _Installed(keep_mktemp)
        state = _installed
        changed = _apply(state, module)
        _rebind(state, modules)
        targets = _targets(state) if (changed and warn_stale) else None
    # The scan reads every module's globals: outside the lock, so install()/uninstall() in
    # other threads are not held up by it (what it finds is reported, never changed).
    stale = _scan_for_warning(*targets) if targets is not None else []
    if stale:
        shown = ", ".join(stale[:_STALE_SHOWN]) + (", ..." if len(stale) > _STALE_SHOWN else "")
        warnings.warn(
            f"hardtemp.compat.install() cannot reach {len(stale)} earlier binding(s) of "
            f"tempfile's functions, which stay unhardened: {shown}; hand their modules to "
            "install() (hardtemp.compat.stale_bindings() lists them all)",
            StaleBindingWarning,
            stacklevel=2,
        )
    return _Installation(installed_now)


def _tempfile_module() -> types.ModuleType:
    import tempfile

    module = sys.modules.get("tempfile", tempfile)
    if not isinstance(module, types.ModuleType):
        raise RuntimeError(f"sys.modules['tempfile'] is not a module: {module!r}")
    return module


def _apply(state: _Installed, module: types.ModuleType) -> bool:
    """Patch ``module`` (again, where it was undone); whether anything changed."""
    if module is _compat():
        return False  # sys.modules["tempfile"] is already hardtemp.compat: nothing to patch
    patched = next((p for p in state.patched if p.module is module), None)
    changed = patched is None
    if patched is None:
        patched = _Patched(module)
        state.patched.append(patched)
        _copy_forwarded(state, module)
    mdict = vars(module)
    # Forward first: our functions never see the module half-installed.
    if patched.new_class is None or type(module) is not patched.new_class:
        patched.old_class = type(module)
        patched.new_class = _forwarding_class(patched.old_class, patched)
        module.__class__ = patched.new_class
        changed = True
    for name in _PATCHED:
        if state.keep_mktemp and name == "mktemp":
            continue
        if name in _LAZY:  # the property answers; the dict keeps the standard class
            if name in mdict and patched.originals.get(name, _MISSING) is not mdict[name]:
                _remember(state, patched, name, mdict[name])  # also a reloaded module's
            continue
        ours = _ours(name)
        current = mdict.get(name, _MISSING)
        if current is ours:
            continue
        _remember(state, patched, name, current)
        mdict[name] = ours
        changed = True
    return changed


def _remember(state: _Installed, patched: _Patched, name: str, value: Any) -> None:
    if value is _MISSING:
        if name not in patched.originals:
            patched.absent.add(name)
        return
    patched.originals[name] = value  # after a reload: the reloaded module's, restored then
    patched.absent.discard(name)
    if name != "TMP_MAX":  # a number, not a function: an equal int is no binding of ours
        state.seen[id(value)] = (name, value)


def _copy_forwarded(state: _Installed, module: types.ModuleType) -> None:
    """Copy what the tempfile module was told (or cached) before we forward to ours."""
    mdict = vars(module)
    for name in _FORWARDED:
        value = mdict.get(name)
        ours = _get_forwarded(name)
        if value is not None and value is not ours and name not in state.copied:
            state.copied[name] = (ours, value)
            _set_forwarded(name, value)


def _rebind(state: _Installed, modules: tuple[types.ModuleType, ...]) -> None:
    for mod in modules:
        if any(p.module is mod for p in state.patched) or any(
            m is mod for m, _, _ in state.rebound
        ):
            continue
        for attr, value in list(vars(mod).items()):
            known = state.seen.get(id(value))
            if known is not None and known[1] is value:
                state.rebound.append((mod, attr, value))
                setattr(mod, attr, _ours(known[0]))


def original(name: str) -> Any:
    """The standard tempfile object install() replaced under ``name`` (None: not installed)."""
    state = _installed
    if state is None:
        return None
    for patched in reversed(state.patched):
        if name in patched.originals:
            return patched.originals[name]
    return None


def uninstall() -> None:
    """Undo :func:`install`: restore exactly what it changed.

    Every attribute it set (on each tempfile module object it patched and in
    the modules handed to it) gets its original value back, unless someone
    replaced ours meanwhile (their value is left alone); the module's class is
    restored, so ``tempfile.tempdir``/``template`` are again the values they
    had before install(); a value install() copied into hardtemp's ``tempdir``
    or ``template`` is put back as it was, unless it was set meanwhile. Does
    nothing when not installed. Thread-safe.
    """
    global _installed
    with _install_lock:
        state = _installed
        if state is None:
            return
        _installed = None
        for mod, attr, value in reversed(state.rebound):
            name = state.seen[id(value)][0]
            if vars(mod).get(attr) is _ours(name):
                setattr(mod, attr, value)
        for patched in reversed(state.patched):
            _restore(patched)
        for name, (before, copied) in state.copied.items():
            if _get_forwarded(name) is copied:  # unless set meanwhile (then that value stays)
                _set_forwarded(name, before)


def _restore(patched: _Patched) -> None:
    module = patched.module
    mdict = vars(module)
    for name, value in patched.originals.items():
        if name not in _LAZY and mdict.get(name, _MISSING) is _ours(name):
            mdict[name] = value
    for name in patched.absent:
        if name not in _LAZY and name in mdict and mdict[name] is _ours(name):
            del mdict[name]
    if type(module) is patched.new_class:  # a class someone else set meanwhile stays
        module.__class__ = patched.old_class
        mdict.update(patched.overrides)  # what someone assigned while installed stays


def _stale(state: _Installed | None) -> list[str]:
    """Under the lock: what to look for; the scan itself runs outside it (:func:`_scan`)."""
    return _scan(*_targets(state))


def _targets(
    state: _Installed | None,
) -> tuple[dict[int, tuple[str, Any]], tuple[types.ModuleType, ...], list[str]]:
    """The originals to look for (by id), the modules to skip, and the names a reload undid."""
    mdict = vars(_tempfile_module())
    if state is not None:
        by_id = dict(state.seen)
        # Undone by a reload or a replaced sys.modules["tempfile"]: the standard ones are back.
        undone = [
            f"tempfile.{name}"
            for name in _PATCHED
            if name != "TMP_MAX"
            and name not in _LAZY  # properties of the class: a reload does not undo them
            and not (state.keep_mktemp and name == "mktemp")
            and name in mdict
            and mdict[name] is not _ours(name)
        ]
    else:
        by_id = {id(mdict[n]): (n, mdict[n]) for n in _PATCHED if n in mdict and n != "TMP_MAX"}
        undone = []
    patched = tuple(p.module for p in state.patched) if state is not None else ()
    return by_id, (_tempfile_module(), _compat(), *patched), undone


# The install-time warning's last scan: (the modules, the originals looked for) -> found.
# A loop of install()/uninstall() with no new imports in between need not read every
# module's globals each time; stale_bindings() always scans afresh.
_last_scan: list[tuple[tuple[frozenset[int], frozenset[int]], list[str]]] = []


def _scan_for_warning(
    by_id: dict[int, tuple[str, Any]], skip: tuple[types.ModuleType, ...], undone: list[str]
) -> list[str]:
    key = (frozenset(map(id, list(sys.modules.values()))), frozenset(by_id))
    if _last_scan and _last_scan[0][0] == key:
        return sorted(_last_scan[0][1] + undone)
    found = _scan(by_id, skip, [])
    _last_scan[:] = [(key, found)]
    return sorted(found + undone)


def _scan(
    by_id: dict[int, tuple[str, Any]], skip: tuple[types.ModuleType, ...], undone: list[str]
) -> list[str]:
    """``module.attr`` for every global of ``sys.modules`` that is one of ``by_id``'s objects."""
    wanted = by_id.keys()
    found = []
    for modname, mod in list(sys.modules.items()):
        if mod is None or any(mod is s for s in skip):
            continue
        try:
            namespace = vars(mod)
        except TypeError:
            continue
        # Ids compared in C first (thousands of globals): most modules hold none of ours.
        if not wanted & set(map(id, list(namespace.values()))):
            continue
        for attr, value in list(namespace.items()):
            known = by_id.get(id(value))
            if known is not None and known[1] is value:
                found.append(f"{modname}.{attr}")
    return sorted(found + undone)


def stale_bindings() -> list[str]:
    """Where the original tempfile functions and classes are still bound: ``"module.name"``.

    Scans the globals of every module in :data:`sys.modules` for the original
    objects of the names :func:`install` replaces (e.g. after ``from tempfile
    import NamedTemporaryFile``, or aiofiles' ``from tempfile import
    _TemporaryFileWrapper``), including those of a tempfile module reloaded
    or replaced since; while installed, also ``"tempfile.NAME"`` for each
    name such a reload brought back (call :func:`install` again). Reads only;
    changes nothing. Hand the modules you choose to :func:`install` to rebind them.

    Raises:
        RuntimeError: ``sys.modules["tempfile"]`` is not a module object.
    """
    with _install_lock:
        return _stale(_installed)
