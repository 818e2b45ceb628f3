"""A drop-in replacement for :mod:`tempfile`, hardened: ``import hardtemp.compat as tempfile``.

Every name of the running Python's ``tempfile.__all__`` is here, with the
same signature, return types and behaviour as that Python version's
``tempfile`` (3.11: no ``delete_on_close``, no ``TemporaryDirectory(delete=)``;
``mkdtemp`` returns what that version returns), on top of hardtemp's core:
the directory is verified (it and every ancestor changeable only by root or
us), files are created relative to the verified directory descriptor with
``O_EXCL|O_NOFOLLOW|O_CLOEXEC`` and mode exactly 0600/0700, names carry 80
random bits, cleanup is symlink-safe, fork-safe and overwrites before it
unlinks. Encryption is off here (``fileno()`` works, as code written for
``tempfile`` expects); use :mod:`hardtemp` itself for encrypted temp files.

Intentional differences (README, "Differences from tempfile"): ``mktemp()``
raises :class:`~hardtemp.exceptions.InsecureOperationError`; an untrusted
candidate directory is skipped (with a warning) and an untrusted ``dir`` or
``tempdir`` is refused; names are 16 characters, not 8; ``prefix``/``suffix``
may not contain ``/`` or NUL; ``TMP_MAX`` is the number of names we try.

:func:`install` makes code that already imported :mod:`tempfile` use these
functions; see its docstring for exactly what it changes.
"""

import os as _os
import sys as _sys
import tempfile as _stdlib_tempfile
import threading as _threading
import types as _types
import warnings as _warnings
from typing import IO as _IO
from typing import Any as _Any
from typing import AnyStr as _AnyStr
from typing import overload as _overload

from . import _create, _files, _names, _spool, _track
from . import _tempdir as _core_tempdir
from ._dirtrust import trusted_dir as _trusted_dir
from .exceptions import InsecureOperationError as _InsecureOperationError

# Exactly tempfile's: `from hardtemp.compat import *` binds what `from tempfile import *` does.
__all__ = [
    "TMP_MAX",
    "NamedTemporaryFile",
    "SpooledTemporaryFile",
    "TemporaryDirectory",
    "TemporaryFile",
    "gettempdir",
    "gettempdirb",
    "gettempprefix",
    "gettempprefixb",
    "mkdtemp",
    "mkstemp",
    "mktemp",
    "tempdir",
]

_PY312 = _sys.version_info >= (3, 12)

#: The number of random names tried before giving up (80 random bits each:
#: only an attacker flooding the directory with our names gets past the first).
TMP_MAX = _create.TMP_MAX

#: The default prefix, read at every call (as tempfile's undocumented ``template``).
template = "tmp"

#: Set to force the default directory (as ``tempfile.tempdir``); ``None``: the
#: first trusted candidate, computed on first use and stored here. A directory
#: set here is still verified at every use: an untrusted one is refused with
#: :class:`~hardtemp.exceptions.UnsafeDirectoryError`, never used.
tempdir: str | bytes | None = None

_once_lock = _threading.Lock()


# -- parameters and the default directory ------------------------------------------------


def _infer_return_type(*args: _Any) -> type[str] | type[bytes]:
    """str or bytes, from the arguments that are not None, as tempfile does.

    With no such argument: ``str``, unless :data:`tempdir` is bytes.

    Raises:
        TypeError: str and bytes mixed, or an argument of another type.
    """
    if all(arg is None for arg in args):
        return bytes if isinstance(tempdir, bytes) else str
    return _names._infer_type(*args)


def _sanitize_params(
    prefix: _Any, suffix: _Any, dir: _Any
) -> tuple[_Any, _Any, _Any, type[str] | type[bytes]]:
    """tempfile's defaults: ``template``, empty suffix, :func:`gettempdir` in the output type.

    Raises: TypeError (as :func:`_infer_return_type`); ValueError for a prefix
    or suffix containing ``/`` or NUL (it could escape the verified directory).
    """
    output_type = _infer_return_type(prefix, suffix, dir)
    if suffix is None:
        suffix = output_type()
    if prefix is None:
        prefix = template if output_type is str else _os.fsencode(template)
    if dir is None:
        dir = gettempdir() if output_type is str else gettempdirb()
    prefix, suffix, dir, _ = _names.sanitize_params(prefix, suffix, dir)
    return prefix, suffix, dir, output_type


def _gettempdir() -> str | bytes:
    global tempdir
    value = tempdir  # one read: another thread may reset it to None meanwhile
    if value is None:
        with _once_lock:
            if tempdir is None:
                # The first *trusted* candidate; untrusted ones are skipped with a warning.
                tempdir = _core_tempdir._find_tempdir()
            value = tempdir
    return value


def gettempprefix() -> str:
    """The default prefix for temporary names, as str."""
    return _os.fsdecode(template)


def gettempprefixb() -> bytes:
    """The default prefix for temporary names, as bytes."""
    return _os.fsencode(template)


def gettempdir() -> str:
    """The default directory for temporary files, as str.

    :data:`tempdir` if set (it is verified when files are created in it), else
    the first *trusted* and writable candidate among ``$TMPDIR``, ``$TEMP``,
    ``$TMP``, /tmp, /var/tmp, /usr/tmp and the current directory (stored in
    :data:`tempdir`). An untrusted candidate is skipped with an
    :class:`~hardtemp.exceptions.UnsafeCandidateWarning`.

    Raises:
        NoTrustedTempDirError: no candidate is trusted and writable (also a
            ``FileNotFoundError``, as tempfile raises).
    """
    return _os.fsdecode(_gettempdir())


def gettempdirb() -> bytes:
    """:func:`gettempdir` as bytes."""
    return _os.fsencode(_gettempdir())


# -- low level -----------------------------------------------------------------------------


@_overload
def mkstemp(
    suffix: None = None, prefix: None = None, dir: None = None, text: bool = False
) -> tuple[int, str]: ...
@_overload
def mkstemp(
    suffix: _AnyStr | None = None,
    prefix: _AnyStr | None = None,
    dir: _Any = None,
    text: bool = False,
) -> tuple[int, _AnyStr]: ...
def mkstemp(
    suffix: _Any = None, prefix: _Any = None, dir: _Any = None, text: bool = False
) -> tuple[int, _Any]:
    """Create a new temporary file; return ``(fd, absolute path)``, as tempfile.mkstemp.

    The directory and its ancestors are verified; the file is created with
    ``O_EXCL|O_NOFOLLOW|O_CLOEXEC`` relative to the verified directory
    descriptor, mode exactly 0600 whatever the umask, checked with ``fstat``.
    The caller owns (and removes) the file. ``text`` has no effect on POSIX.

    Raises:
        UnsafeDirectoryError: the directory (or an ancestor) is not trusted.
        NoTrustedTempDirError: ``dir`` is None and no candidate is trusted.
        UnsafeFileError: the created file failed verification.
        ValueError: ``prefix``/``suffix`` contain ``/`` or NUL.
        TypeError: str and bytes mixed.
        OSError: creation failed (``FileNotFoundError``, ``NotADirectoryError``,
            ``PermissionError``, ``FileExistsError`` after :data:`TMP_MAX` names...).
    """
    prefix, suffix, dir, _ = _sanitize_params(prefix, suffix, dir)
    # tempfile joins the name to abspath(dir): verify and create in exactly that directory.
    base = _os.path.abspath(dir)
    fd, made = _create.create_file(_trusted_dir(base), base, prefix, suffix)
    _sys.audit("tempfile.mkstemp", made.path)
    if _track.hook is not None:  # pytest --hardtemp-strict: a leak through compat is a leak
        _track.hook("mkstemp", None, made.path, fd, (made.dev, made.ino))
    return fd, made.path


@_overload
def mkdtemp(suffix: None = None, prefix: None = None, dir: None = None) -> str: ...
@_overload
def mkdtemp(
    suffix: _AnyStr | None = None, prefix: _AnyStr | None = None, dir: _Any = None
) -> _AnyStr: ...
def mkdtemp(suffix: _Any = None, prefix: _Any = None, dir: _Any = None) -> _Any:
    """Create a new temporary directory (mode exactly 0700); return its path, as tempfile.mkdtemp.

    Python 3.12+: the absolute path. Python 3.11: ``os.path.join(dir, name)``
    with ``dir`` as given (relative if ``dir`` is). Verified like
    :func:`mkstemp`; the caller owns (and removes) the directory.

    Raises: as :func:`mkstemp`.
    """
    prefix, suffix, dir, _ = _sanitize_params(prefix, suffix, dir)
    base = _os.path.abspath(dir) if _PY312 else dir
    fd, made = _create.create_dir(_trusted_dir(base), base, prefix, suffix)
    _os.close(fd)
    _sys.audit("tempfile.mkdtemp", made.path)
    if _track.hook is not None:
        _track.hook("mkdtemp", None, made.path, None, (made.dev, made.ino))
    return made.path


_MKTEMP_REASON = (
    "mktemp() is refused: it returns a name without creating the file, so another local "
    "user can create that name first (a symlink that redirects your writes, or a file "
    "they can read). Use NamedTemporaryFile() or mkstemp() for a file, mkdtemp() or "
    "TemporaryDirectory() for a directory (any name inside that private directory is safe)"
)


def mktemp(suffix: str = "", prefix: str = template, dir: _Any = None) -> str:
    """Refused: always raises.

    tempfile.mktemp returns a name that does not exist *yet*; between that
    check and the caller's use, another local user can create it.

    Raises:
        InsecureOperationError: always (also a ``RuntimeError``); the message
            names the safe alternatives.
    """
    raise _InsecureOperationError(None, _MKTEMP_REASON)


# -- file objects --------------------------------------------------------------------------


def _resolved(prefix: _Any, suffix: _Any, dir: _Any) -> tuple[_Any, _Any, _Any]:
    """``(prefix, suffix, absolute dir)`` with tempfile's defaults, all of one type.

    Raises: TypeError/ValueError as :func:`_sanitize_params`.
    """
    prefix, suffix, dir, _ = _sanitize_params(prefix, suffix, dir)
    return prefix, suffix, _os.path.abspath(dir)


if _sys.version_info >= (3, 12):

    def NamedTemporaryFile(
        mode: str = "w+b",
        buffering: int = -1,
        encoding: str | None = None,
        newline: str | None = None,
        suffix: str | bytes | None = None,
        prefix: str | bytes | None = None,
        dir: _Any = None,
        delete: bool = True,
        *,
        errors: str | None = None,
        delete_on_close: bool = True,
    ) -> "_files._TemporaryFileWrapper":
        """A temporary file with a name, as tempfile.NamedTemporaryFile (created as by
        :func:`mkstemp`).

        With ``delete`` true it is removed on close (``delete_on_close``) or on
        context exit / finalization, only by the creating process, after its
        contents are overwritten and only while the name still refers to our inode.

        Raises: as :func:`mkstemp`; ValueError/TypeError for a bad ``mode``;
        LookupError for an unknown encoding (nothing is left behind).
        """
        prefix, suffix, dir = _resolved(prefix, suffix, dir)
        f = _files.NamedTemporaryFile(
            mode,
            buffering,
            encoding,
            newline,
            suffix,
            prefix,
            dir,
            delete,
            errors=errors,
            delete_on_close=delete_on_close,
        )
        f._state.stdlib_exit = True  # a replaced name never raises from close/__exit__
        return f

else:
    # mypy cannot prune on an aliased `sys`: the two variants differ by design.
    def NamedTemporaryFile(  # type: ignore[misc]
        mode: str = "w+b",
        buffering: int = -1,
        encoding: str | None = None,
        newline: str | None = None,
        suffix: str | bytes | None = None,
        prefix: str | bytes | None = None,
        dir: _Any = None,
        delete: bool = True,
        *,
        errors: str | None = None,
    ) -> "_files._TemporaryFileWrapper":
        """A temporary file with a name, as Python 3.11's tempfile.NamedTemporaryFile
        (created as by :func:`mkstemp`).

        With ``delete`` true it is removed on close, only by the creating
        process, after its contents are overwritten and only while the name
        still refers to our inode.

        Raises: as :func:`mkstemp`; ValueError/TypeError for a bad ``mode``;
        LookupError for an unknown encoding (nothing is left behind).
        """
        prefix, suffix, dir = _resolved(prefix, suffix, dir)
        f = _files.NamedTemporaryFile(
            mode, buffering, encoding, newline, suffix, prefix, dir, delete, errors=errors
        )
        f._state.stdlib_exit = True  # a replaced name never raises from close/__exit__
        return f


def TemporaryFile(
    mode: str = "w+b",
    buffering: int = -1,
    encoding: str | None = None,
    newline: str | None = None,
    suffix: str | bytes | None = None,
    prefix: str | bytes | None = None,
    dir: _Any = None,
    *,
    errors: str | None = None,
) -> _IO[_Any]:
    """A temporary file without a name, as tempfile.TemporaryFile.

    ``O_TMPFILE`` in the verified directory where supported (it never has a
    name), else created as by :func:`mkstemp` and unlinked at once after
    checking the inode. Plaintext (``fileno()`` works); overwritten when closed.

    Raises: as :func:`mkstemp`; ValueError/TypeError for a bad ``mode``;
    LookupError for an unknown encoding.
    """
    prefix, suffix, dir = _resolved(prefix, suffix, dir)
    return _files.TemporaryFile(
        mode, buffering, encoding, newline, suffix, prefix, dir, errors=errors, encrypt=False
    )


class SpooledTemporaryFile(_spool.SpooledTemporaryFile):
    """As tempfile.SpooledTemporaryFile: in memory (zeroed on growth, rollover
    and close) until ``max_size`` bytes or ``fileno()``, then a
    :func:`TemporaryFile` (plaintext, overwritten when closed) in the
    directory resolved at rollover, as tempfile does.

    Raises: ValueError for a bad ``mode``; on rollover, what
    :func:`TemporaryFile` raises.
    """

    def __init__(
        self,
        max_size: int = 0,
        mode: str = "w+b",
        buffering: int = -1,
        encoding: str | None = None,
        newline: str | None = None,
        suffix: str | bytes | None = None,
        prefix: str | bytes | None = None,
        dir: _Any = None,
        *,
        errors: str | None = None,
    ) -> None:
        super().__init__(
            max_size,
            mode,
            buffering,
            encoding,
            newline,
            suffix,
            prefix,
            dir,
            errors=errors,
            encrypt=False,
        )

    def rollover(self) -> None:
        """Move the data to a :func:`TemporaryFile` now (honouring :data:`tempdir` as it is now)."""
        if self._rolled:
            return
        args = self._TemporaryFileArgs
        given = dict(args)
        args["prefix"], args["suffix"], args["dir"] = _resolved(
            args["prefix"], args["suffix"], args["dir"]
        )
        try:
            super().rollover()
        except BaseException:
            self._TemporaryFileArgs = given  # a later rollover resolves again
            raise

    def __del__(self) -> None:
        if not self.closed:
            _warnings.warn(f"Unclosed file {self!r}", ResourceWarning, stacklevel=2, source=self)
            self.close()


class TemporaryDirectory(_files.TemporaryDirectory):
    """As tempfile.TemporaryDirectory: created as by :func:`mkdtemp` (``name``
    is what this Python's ``mkdtemp`` returns), removed with everything in it
    on ``cleanup()``, context exit or finalization, only by the creating
    process: symlinks are never followed, files are overwritten before they
    are unlinked, mount points are not entered.

    Raises: as :func:`mkdtemp` on creation; ``cleanup()`` raises the first
    ``OSError`` met unless ``ignore_cleanup_errors`` is true.
    """

    if _sys.version_info >= (3, 12):

        def __init__(
            self,
            suffix: str | bytes | None = None,
            prefix: str | bytes | None = None,
            dir: _Any = None,
            ignore_cleanup_errors: bool = False,
            *,
            delete: bool = True,
        ) -> None:
            prefix, suffix, dir = _resolved(prefix, suffix, dir)
            super().__init__(suffix, prefix, dir, ignore_cleanup_errors, delete=delete)

    else:

        def __init__(  # type: ignore[misc]
            self,
            suffix: str | bytes | None = None,
            prefix: str | bytes | None = None,
            dir: _Any = None,
            ignore_cleanup_errors: bool = False,
        ) -> None:
            prefix, suffix, given, _ = _sanitize_params(prefix, suffix, dir)
            super().__init__(suffix, prefix, given, ignore_cleanup_errors)
            # 3.11's mkdtemp returns os.path.join(dir, name) with dir as given.
            self.name = _os.path.join(given, self._made.name)


# -- install() / uninstall() ---------------------------------------------------------------

# The names install() replaces on the tempfile module object (tempdir and template
# are forwarded instead, so that both modules see one value).
_PATCHED = (
    "NamedTemporaryFile",
    "TemporaryFile",
    "SpooledTemporaryFile",
    "TemporaryDirectory",
    "mkstemp",
    "mkdtemp",
    "mktemp",
    "TMP_MAX",
    "gettempprefix",
    "gettempprefixb",
    "gettempdir",
    "gettempdirb",
)
_FORWARDED = ("tempdir", "template")
_install_lock = _threading.RLock()


class _Installed:
    """What one install() changed, so that uninstall() can undo exactly that."""

    def __init__(self, module: _types.ModuleType) -> None:
        self.module = module
        self.old_class: type[_types.ModuleType] = type(module)
        self.new_class: type[_types.ModuleType] | None = None  # the forwarding class we set
        self.originals: dict[str, _Any] = {}
        self.absent: set[str] = set()
        # name -> (our value before install, the tempfile module's value copied over it)
        self.copied: dict[str, tuple[_Any, _Any]] = {}
        # (module handed to install(), attribute name, original value)
        self.rebound: list[tuple[_types.ModuleType, str, _Any]] = []


_installed: _Installed | None = None


def _forwarding_class(base: type[_types.ModuleType]) -> type[_types.ModuleType]:
    """A subclass of the tempfile module's class whose ``tempdir``/``template``
    read and write this module's, so existing ``tempfile.tempdir = ...`` lines keep working."""

    def forward(name: str) -> property:
        def get(mod: _types.ModuleType) -> _Any:
            return globals()[name]

        def set_(mod: _types.ModuleType, value: _Any) -> None:
            globals()[name] = value

        return property(get, set_, doc=f"hardtemp.compat.{name}")

    namespace: dict[str, _Any] = {name: forward(name) for name in _FORWARDED}
    namespace["__slots__"] = ()
    return type(f"HardtempCompat{base.__name__}", (base,), namespace)


class _Installation:
    """Returned by :func:`install`; as a context manager, uninstalls on exit if
    this call was the one that installed."""

    def __init__(self, installed_now: bool) -> None:
        self.installed_now = installed_now

    def __enter__(self) -> "_Installation":
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.installed_now:
            uninstall()


def _ours(name: str) -> _Any:
    return globals()[name]


def install(*modules: _types.ModuleType, keep_mktemp: bool = False) -> _Installation:
    """Make code that uses the :mod:`tempfile` module use the hardened functions.

    Changes exactly this, all undone by :func:`uninstall`:

    * on the module object ``sys.modules["tempfile"]`` (the one every
      ``import tempfile`` returned, before and after), the attributes
      NamedTemporaryFile, TemporaryFile, SpooledTemporaryFile,
      TemporaryDirectory, mkstemp, mkdtemp, mktemp (unless ``keep_mktemp``),
      TMP_MAX, gettempprefix, gettempprefixb, gettempdir and gettempdirb are
      set to this module's;
    * that module object's class is set to a subclass whose ``tempdir`` and
      ``template`` read and write this module's, so ``tempfile.tempdir = d``
      still chooses the directory (and ``d`` is still verified). A value the
      tempfile module already had (set by you, or its cached default) is
      copied here first;
    * in each module you hand in ``modules`` (and only those), every global
      that is one of the original tempfile objects above (``from tempfile
      import NamedTemporaryFile``) is rebound to ours.

    It cannot reach names bound before the call anywhere else (``from
    tempfile import X`` in modules you did not hand in, default arguments,
    closures, subclasses such as ``urllib.response.addbase``); see
    :func:`stale_bindings` to find them. Objects already created stay what
    they are. Idempotent: a second call only rebinds newly handed modules
    (its ``keep_mktemp`` is ignored).
    Thread-safe (install and uninstall are serialized; a thread calling
    tempfile at that moment gets either the old or the new function).

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
        if not isinstance(mod, _types.ModuleType):
            raise TypeError(f"install() takes modules, not {type(mod).__name__}")
    with _install_lock:
        installed_now = _installed is None
        if _installed is None:
            _installed = _install_on(_tempfile_module(), keep_mktemp)
        state = _installed
        # TMP_MAX is a number, not a function: a module's equal int is no binding of ours.
        originals = {id(v): n for n, v in state.originals.items() if n != "TMP_MAX"}
        for mod in modules:
            if mod is state.module or any(m is mod for m, _, _ in state.rebound):
                continue
            for attr, value in list(vars(mod).items()):
                name = originals.get(id(value))
                if name is not None and state.originals[name] is value:
                    state.rebound.append((mod, attr, value))
                    setattr(mod, attr, _ours(name))
        return _Installation(installed_now)


def _tempfile_module() -> _types.ModuleType:
    module = _sys.modules.get("tempfile", _stdlib_tempfile)
    if not isinstance(module, _types.ModuleType):
        raise RuntimeError(f"sys.modules['tempfile'] is not a module: {module!r}")
    return module


def _install_on(module: _types.ModuleType, keep_mktemp: bool) -> _Installed:
    state = _Installed(module)
    if module is _sys.modules[__name__]:
        return state  # sys.modules["tempfile"] is already this module: nothing to patch
    mdict = vars(module)
    # Copy what the tempfile module was told (or cached) before we forward to ours.
    for name in _FORWARDED:
        value = mdict.get(name)
        if value is not None and value is not globals()[name]:
            state.copied[name] = (globals()[name], value)
            globals()[name] = value
    # Forward first: our functions never see the module half-installed.
    state.new_class = _forwarding_class(state.old_class)
    module.__class__ = state.new_class
    for name in _PATCHED:
        if keep_mktemp and name == "mktemp":
            continue
        if name in mdict:
            state.originals[name] = mdict[name]
        else:
            state.absent.add(name)
        setattr(module, name, _ours(name))
    return state


def uninstall() -> None:
    """Undo :func:`install`: restore exactly what it changed.

    Every attribute it set (on the tempfile module and in the modules handed
    to it) gets its original value back, unless someone replaced ours
    meanwhile (their value is left alone); the module's class is restored, so
    ``tempfile.tempdir``/``template`` are again the values they had before
    install(); a value install() copied into this module's ``tempdir`` or
    ``template`` is put back as it was, unless it was set meanwhile. Does
    nothing when not installed. Thread-safe.
    """
    global _installed
    with _install_lock:
        state = _installed
        if state is None:
            return
        _installed = None
        for mod, attr, value in reversed(state.rebound):
            if vars(mod).get(attr) is _ours(_name_of(state, value)):
                setattr(mod, attr, value)
        module = state.module
        if module is _sys.modules[__name__]:
            return
        mdict = vars(module)
        for name, value in state.originals.items():
            if mdict.get(name) is _ours(name):
                mdict[name] = value
        for name in state.absent:
            if mdict.get(name) is _ours(name):
                del mdict[name]
        if type(module) is state.new_class:  # a class someone else set meanwhile stays
            module.__class__ = state.old_class
        for name, (before, copied) in state.copied.items():
            if globals()[name] is copied:  # unless set meanwhile (then that value stays)
                globals()[name] = before


def _name_of(state: _Installed, value: _Any) -> str:
    for name, original in state.originals.items():
        if original is value:
            return name
    raise AssertionError("unreachable: rebound only originals")  # pragma: no cover


def stale_bindings() -> list[str]:
    """Where the original tempfile functions are still bound: ``"module.name"`` entries.

    Scans the globals of every module in :data:`sys.modules` for the
    original objects of the names :func:`install` replaces (e.g. after
    ``from tempfile import NamedTemporaryFile``). Reads only; changes nothing.
    Hand the modules you choose to :func:`install` to rebind them.
    """
    with _install_lock:
        if _installed is not None:
            originals = dict(_installed.originals)
        else:
            mdict = vars(_tempfile_module())
            originals = {name: mdict[name] for name in _PATCHED if name in mdict}
    by_id = {id(value): value for value in originals.values() if not isinstance(value, int)}
    tempfile_mod = _tempfile_module()
    found = []
    for modname, mod in list(_sys.modules.items()):
        if mod is None or mod is tempfile_mod or mod is _sys.modules[__name__]:
            continue
        try:
            items = list(vars(mod).items())
        except TypeError:
            continue
        for attr, value in items:
            if id(value) in by_id and by_id[id(value)] is value:
                found.append(f"{modname}.{attr}")
    return sorted(found)
