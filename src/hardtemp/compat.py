"""A drop-in replacement for :mod:`tempfile`, hardened: ``import hardtemp.compat as tempfile``.

Every name of the running Python's ``tempfile.__all__`` is here, with the
same signature, return types and behaviour as that Python version's
``tempfile`` (3.11: no ``delete_on_close``, no ``TemporaryDirectory(delete=)``;
``mkdtemp`` returns what that version returns), on top of hardtemp's core:
the directory is verified (it and every ancestor changeable only by root or
us), files are created relative to the verified directory descriptor with
``O_EXCL|O_NOFOLLOW|O_CLOEXEC`` and mode exactly 0600/0700, names carry 80
random bits, cleanup is symlink-safe, fork-safe and overwrites before it
unlinks. ``TemporaryFile`` and ``SpooledTemporaryFile`` (after rollover) are
encrypted until their first ``fileno()``, which turns them into plain
hardened files, so code written for ``tempfile`` keeps working.

Intentional differences (README, "Differences from tempfile"): ``mktemp()``
raises :class:`~hardtemp.exceptions.InsecureOperationError`; an untrusted
candidate directory is skipped (with a warning) and an untrusted ``dir`` or
``tempdir`` is refused; names are 16 characters, not 8; ``prefix``/``suffix``
may not contain ``/`` or NUL; ``TMP_MAX`` is the number of names we try.

:func:`install` makes code that already imported :mod:`tempfile` use these
functions; see its docstring for exactly what it changes.
"""

from __future__ import annotations

import os as _os
import sys as _sys
import types as _types

from . import _names, _track
from . import _tempdir as _core_tempdir
from ._install import install as install
from ._install import stale_bindings as stale_bindings
from ._install import uninstall as uninstall
from .exceptions import InsecureOperationError as _InsecureOperationError

# Cheap to import (as `import tempfile`): the creating machinery (_create, _files, the
# encryption and wipe stack, psutil) is imported at the first call that needs it, and the
# classes SpooledTemporaryFile, TemporaryDirectory and _TemporaryFileWrapper at first
# access (module __getattr__ below); `tempdir` is a property of this module's class, so
# that it reads and writes the one store of the default directory, _tempdir.tempdir.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO as _IO
    from typing import Any as _Any
    from typing import AnyStr as _AnyStr
    from typing import overload as _overload

    from . import _files
    from ._compat_files import SpooledTemporaryFile as SpooledTemporaryFile
    from ._compat_files import TemporaryDirectory as TemporaryDirectory
    from ._compat_files import _TemporaryFileWrapper as _TemporaryFileWrapper

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
TMP_MAX = _names.TMP_MAX

#: The default prefix, read at every call (as tempfile's undocumented ``template``).
template = "tmp"

#: Set to force the default directory (as ``tempfile.tempdir``); ``None``: the
#: first trusted candidate, computed on first use and stored here. A directory
#: set here is still verified at every use: an untrusted one is refused with
#: :class:`~hardtemp.exceptions.UnsafeDirectoryError`, never used. The same
#: value as ``hardtemp``'s own default directory (one store, one scan).
tempdir: str | bytes | None  # a property of the module class below


class _CompatModule(_types.ModuleType):
    """This module's class: ``tempdir`` is ``hardtemp._tempdir.tempdir``, not a copy."""

    @property
    def tempdir(self) -> str | bytes | None:
        return _core_tempdir.tempdir

    @tempdir.setter
    def tempdir(self, value: str | bytes | None) -> None:
        _core_tempdir.tempdir = value


_sys.modules[__name__].__class__ = _CompatModule

_LAZY_CLASSES = frozenset({"SpooledTemporaryFile", "TemporaryDirectory", "_TemporaryFileWrapper"})


def __getattr__(name: str) -> _Any:
    if name not in _LAZY_CLASSES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import _compat_files

    value = getattr(_compat_files, name)
    globals()[name] = value  # later lookups are plain module attributes
    return value


# -- parameters and the default directory ------------------------------------------------


def _infer_return_type(*args: _Any) -> type[str] | type[bytes]:
    """str or bytes, from the arguments that are not None, as tempfile does.

    With no such argument: ``str``, unless :data:`tempdir` is bytes.

    Raises:
        TypeError: str and bytes mixed, or an argument of another type.
    """
    if all(arg is None for arg in args):
        return bytes if isinstance(_core_tempdir.tempdir, bytes) else str
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
    # The first *trusted* candidate (untrusted ones are skipped with a warning), found
    # once for hardtemp and compat alike; verified where it is used.
    return _core_tempdir.current(3)


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


if TYPE_CHECKING:  # the overloads cost `import typing` at run time, for type checkers only

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
    from ._create import create_file
    from ._dirtrust import trusted_dir

    base = _os.path.abspath(dir)
    fd, made = create_file(trusted_dir(base), base, prefix, suffix)
    _sys.audit("tempfile.mkstemp", made.path)
    if _track.hook is not None:  # pytest --hardtemp-strict: a leak through compat is a leak
        _track.hook("mkstemp", None, made.path, fd, (made.dev, made.ino))
    return fd, made.path


if TYPE_CHECKING:

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
    from ._create import create_dir
    from ._dirtrust import trusted_dir

    base = _os.path.abspath(dir) if _PY312 else dir
    fd, made = create_dir(trusted_dir(base), base, prefix, suffix)
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
    ) -> _files._TemporaryFileWrapper:
        """A temporary file with a name, as tempfile.NamedTemporaryFile (created as by
        :func:`mkstemp`).

        With ``delete`` true it is removed on close (``delete_on_close``) or on
        context exit / finalization, only by the creating process, after its
        contents are overwritten and only while the name still refers to our inode.

        Raises: as :func:`mkstemp`; ValueError/TypeError for a bad ``mode``;
        LookupError for an unknown encoding (nothing is left behind).
        """
        from . import _files

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
    ) -> _files._TemporaryFileWrapper:
        """A temporary file with a name, as Python 3.11's tempfile.NamedTemporaryFile
        (created as by :func:`mkstemp`).

        With ``delete`` true it is removed on close, only by the creating
        process, after its contents are overwritten and only while the name
        still refers to our inode.

        Raises: as :func:`mkstemp`; ValueError/TypeError for a bad ``mode``;
        LookupError for an unknown encoding (nothing is left behind).
        """
        from . import _files

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
    checking the inode. Encrypted (AES-256-GCM, key only in this process)
    until the first ``fileno()``, which ``subprocess``, ``shutil`` and ``os``
    functions call: that turns it, transparently, into a plaintext unnamed
    file with the same contents and position (overwritten when closed), as
    another program needs. ``name`` is the current descriptor number.

    Raises: as :func:`mkstemp`; ValueError/TypeError for a bad ``mode``;
    LookupError for an unknown encoding.
    """
    from . import _files

    prefix, suffix, dir = _resolved(prefix, suffix, dir)
    return _files.TemporaryFile(
        mode,
        buffering,
        encoding,
        newline,
        suffix,
        prefix,
        dir,
        errors=errors,
        encrypt="until-fileno",
    )


del TYPE_CHECKING
