"""Exceptions and warnings raised by hardtemp.

Every error subclasses the built-in exception a caller of the standard
:mod:`tempfile` module would already catch, so switching to hardtemp never
lets a failure slip past an existing ``except`` clause::

    Exception
    └── HardtempError
        ├── UnsafeDirectoryError          (also PermissionError)
        │   └── NoTrustedTempDirError     (also FileNotFoundError)
        ├── UnsafeFileError               (also PermissionError)
        ├── InsecureOperationError        (also RuntimeError)
        ├── IntegrityError                (also OSError, errno EBADMSG)
        ├── SizeLimitError                (also OSError, errno EFBIG)
        └── WipeError                     (also OSError)

    Warning
    └── HardtempWarning                   (also UserWarning)
        ├── WipeUnreliableWarning
        │   └── PlaintextLeftWarning
        ├── UnsafeCandidateWarning
        ├── ReplacedFileWarning
        └── StaleBindingWarning

Errors carry the offending path as ``path`` and the reason as ``reason``
(plain strings, or ``None`` where no path applies); the ``OSError``
subclasses also fill in ``errno``, ``strerror`` and ``filename`` as usual.
All of them survive :mod:`pickle`, so they cross process boundaries intact.
"""

from __future__ import annotations

import errno as _errno

TYPE_CHECKING = False  # no `typing` at run time: `import hardtemp.compat` stays cheap
if TYPE_CHECKING:
    from typing import Any

    from ._wipe import WipeReport
del TYPE_CHECKING

__all__ = [
    "HardtempError",
    "HardtempWarning",
    "InsecureOperationError",
    "IntegrityError",
    "NoTrustedTempDirError",
    "PlaintextLeftWarning",
    "ReplacedFileWarning",
    "SizeLimitError",
    "StaleBindingWarning",
    "UnsafeCandidateWarning",
    "UnsafeDirectoryError",
    "UnsafeFileError",
    "WipeError",
    "WipeUnreliableWarning",
]


class HardtempError(Exception):
    """Base class of every error hardtemp raises.

    Attributes:
        path: the offending path (or path component), or ``None``.
        reason: a human-readable explanation of what was wrong.
    """

    path: str | None
    reason: str

    def __init__(self, path: str | None, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(self._message())

    def _message(self) -> str:
        return f"{self.path}: {self.reason}" if self.path is not None else self.reason

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.reason), self.__dict__.copy())

    def __setstate__(self, state: dict[str, Any] | None) -> None:
        if state:
            self.__dict__.update(state)


class _OSHardtempError(HardtempError, OSError):
    """Shared machinery for the errors that are also ``OSError``."""

    _errno: int = _errno.EACCES

    def __init__(self, path: str | None, reason: str) -> None:
        self.path = path
        self.reason = reason
        # OSError's own __init__ fills errno/strerror/filename from these.
        OSError.__init__(self, self._errno, reason, path)

    def __str__(self) -> str:
        return self._message()


class UnsafeDirectoryError(_OSHardtempError, PermissionError):
    """A directory (or one of its ancestors, or a symlink on the way) is not
    trusted: another local user could create, rename or replace entries in it.

    ``path`` is the offending component, ``reason`` says which rule it broke.
    """


class NoTrustedTempDirError(UnsafeDirectoryError, FileNotFoundError):
    """No candidate temporary directory is trusted.

    ``path`` is ``None``; ``reason`` lists every candidate and why it was
    refused. Also a ``FileNotFoundError``, which is what the standard
    ``tempfile.gettempdir()`` raises when it finds no usable directory.
    """

    _errno = _errno.ENOENT


class UnsafeFileError(_OSHardtempError, PermissionError):
    """A file hardtemp created, or is about to remove, is not what it should
    be (wrong owner, type, link count or mode, or swapped for another file)."""


class InsecureOperationError(HardtempError, RuntimeError):
    """The requested operation is insecure by design (e.g. ``mktemp()``) and
    hardtemp refuses it; ``reason`` names the safe alternative."""


class IntegrityError(_OSHardtempError):
    """Encrypted temp contents failed authentication: a block was modified,
    moved, replayed from an older version, or the backing file was truncated
    or extended. No unauthenticated plaintext is ever returned."""

    _errno = _errno.EBADMSG


class SizeLimitError(_OSHardtempError):
    """A write or truncation would take a size-limited file (``MemoryFile``)
    past its ``max_size``; nothing was written. ``errno`` is ``EFBIG``, as
    for a write past the process's file-size limit."""

    _errno = _errno.EFBIG


class WipeError(_OSHardtempError):
    """Overwriting a file before removal failed, or the wipe policy is
    ``"error"`` and the overwrite could not be trusted on this filesystem.

    ``report`` holds the :class:`hardtemp.WipeReport` of what was done (or
    ``None``). The file has still been removed unless ``reason`` says otherwise.
    """

    _errno = _errno.EIO

    def __init__(self, path: str | None, reason: str, report: WipeReport | None = None) -> None:
        super().__init__(path, reason)
        self.report = report

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.reason, self.report), self.__dict__.copy())


class HardtempWarning(UserWarning):
    """Base class of hardtemp's warnings."""


class WipeUnreliableWarning(HardtempWarning):
    """An overwrite was performed but cannot be trusted to reach the old
    blocks on this filesystem (copy-on-write, journalled data, flash, ...).
    Prefer encryption (the default for ``TemporaryFile``) for such places."""


class PlaintextLeftWarning(WipeUnreliableWarning):
    """Data was not overwritten at all and is still on the disk: a file we may not
    write (another user's), a possible hard link to data outside, or blocks another
    program freed (``O_TRUNC``, a punched hole) before we could overwrite them. The
    message names the file and the reason. A :class:`WipeUnreliableWarning`, so
    filters on that class catch it too."""


class UnsafeCandidateWarning(HardtempWarning):
    """A candidate temporary directory (e.g. ``$TMPDIR``) was skipped because
    it is not trusted; the message names it and the reason."""


class ReplacedFileWarning(HardtempWarning):
    """A ``NamedTemporaryFile``'s name was replaced by another file of the same user
    (an atomic save such as ``sed -i``): at removal both were overwritten and the name
    removed, as the standard library would remove it."""


class StaleBindingWarning(HardtempWarning):
    """``hardtemp.compat.install()`` could not reach earlier bindings of tempfile's
    functions (``from tempfile import X`` done before it): they stay unhardened.
    The message names them; ``hardtemp.compat.stale_bindings()`` lists them all."""
