"""The file classes of :mod:`hardtemp.compat` whose bases are heavy to import.

``hardtemp.compat`` loads this module on first access of ``SpooledTemporaryFile``,
``TemporaryDirectory`` or ``_TemporaryFileWrapper`` (PEP 562), so that
``import hardtemp.compat`` (and ``install()`` in a ``sitecustomize``) does not import
the encryption, wipe and filesystem-inspection stack that every process would
then pay for. Invariant: these are exactly the classes ``hardtemp.compat`` exposes
under those names; nothing else uses this module.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import TYPE_CHECKING

from . import _files, _spool, compat
from ._files import _TemporaryFileWrapper

if TYPE_CHECKING:
    from _typeshed import StrOrBytesPath

__all__ = ["SpooledTemporaryFile", "TemporaryDirectory", "_TemporaryFileWrapper"]


class SpooledTemporaryFile(_spool.SpooledTemporaryFile):
    """As tempfile.SpooledTemporaryFile: in memory (zeroed on growth, rollover
    and close) until ``max_size`` bytes or ``fileno()``, then a
    :func:`TemporaryFile` (encrypted until its first ``fileno()``, see there)
    in the directory resolved at rollover, as tempfile does.

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
        dir: StrOrBytesPath | None = None,
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
            encrypt="until-fileno",
        )

    def rollover(self) -> None:
        """Move the data to a :func:`TemporaryFile` now (honouring :data:`tempdir` as it is now)."""
        if self._rolled:
            return
        args = self._TemporaryFileArgs
        given = args.copy()
        args["prefix"], args["suffix"], args["dir"] = compat._resolved(
            args["prefix"], args["suffix"], args["dir"]
        )
        try:
            super().rollover()
        except BaseException:
            self._TemporaryFileArgs = given  # a later rollover resolves again
            raise

    def __del__(self) -> None:
        if not self.closed:
            warnings.warn(f"Unclosed file {self!r}", ResourceWarning, stacklevel=2, source=self)
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

    if sys.version_info >= (3, 12):

        def __init__(
            self,
            suffix: str | bytes | None = None,
            prefix: str | bytes | None = None,
            dir: StrOrBytesPath | None = None,
            ignore_cleanup_errors: bool = False,
            *,
            delete: bool = True,
        ) -> None:
            prefix, suffix, dir = compat._resolved(prefix, suffix, dir)
            super().__init__(suffix, prefix, dir, ignore_cleanup_errors, delete=delete)

    else:

        def __init__(
            self,
            suffix: str | bytes | None = None,
            prefix: str | bytes | None = None,
            dir: StrOrBytesPath | None = None,
            ignore_cleanup_errors: bool = False,
        ) -> None:
            prefix, suffix, given, _ = compat._sanitize_params(prefix, suffix, dir)
            super().__init__(suffix, prefix, given, ignore_cleanup_errors)
            # 3.11's mkdtemp returns os.path.join(dir, name) with dir as given.
            self.name = os.path.join(given, self._made.name)
