"""Choosing the default temporary directory: the first *trusted* candidate.

Invariants: :data:`tempdir` is the one store of the default directory, for
hardtemp and for :mod:`hardtemp.compat` alike (``compat.tempdir`` and, under
``install()``, ``tempfile.tempdir`` read and write it): the candidates are
scanned at most once per process (and again only after it is reset to None).
Whatever is stored, forced or found, is verified again by :func:`default_dir`
at every use, so a directory that became untrusted is never handed out. A
candidate found is stored as a path to the directory its verification reached
(never a lexical shortening of ``link/..`` that names another one).
"""

from __future__ import annotations

import _thread
import contextlib
import os
import warnings

from .exceptions import NoTrustedTempDirError, UnsafeCandidateWarning, UnsafeDirectoryError

TYPE_CHECKING = False  # _dirtrust (psutil, ctypes) is imported at first use, not by compat
if TYPE_CHECKING:
    from ._dirtrust import DirHandle
del TYPE_CHECKING

__all__ = ["candidate_tempdir_list", "default_dir", "gettempdir", "gettempdirb"]

#: Set this (like ``tempfile.tempdir``) to force a directory; it is still verified.
#: bytes only when set so through :mod:`hardtemp.compat` (as ``tempfile.tempdir`` may be).
tempdir: str | bytes | None = None
_lock = _thread.allocate_lock()


def _reset_after_fork() -> None:
    # A lock held by another thread at fork() would never be released in the child.
    global _lock
    _lock = _thread.allocate_lock()


os.register_at_fork(after_in_child=_reset_after_fork)


def candidate_tempdir_list() -> list[str]:
    """The candidates, in the standard library's order: $TMPDIR, $TEMP, $TMP,
    /tmp, /var/tmp, /usr/tmp, then the current directory."""
    dirlist = [d for env in ("TMPDIR", "TEMP", "TMP") if (d := os.getenv(env))]
    dirlist += ["/tmp", "/var/tmp", "/usr/tmp"]
    with contextlib.suppress(OSError):  # cwd deleted: skip it, as the stdlib does
        dirlist.append(os.getcwd())
    return dirlist


def _usable(path: str) -> tuple[str | None, str]:
    """``(why path cannot be used, None)`` or ``(None, the path to use)`` when it is
    trusted and writable."""
    from ._dirtrust import check_dir, trusted_dir

    try:
        handle = trusted_dir(path)
    except UnsafeDirectoryError as exc:
        return str(exc), path
    except (OSError, ValueError) as exc:
        return f"{path}: {exc.strerror if isinstance(exc, OSError) else exc}", path
    if not os.access(".", os.W_OK | os.X_OK, dir_fd=handle.fd, effective_ids=True):
        return f"{path}: not writable", path
    # The standard library's path (abspath), unless it names another directory than the
    # one verified: `link/..` is shortened lexically, the kernel resolves it after the link.
    lexical = os.path.abspath(path)
    with contextlib.suppress(OSError):
        st = os.stat(lexical)
        if (st.st_dev, st.st_ino) == (handle.dev, handle.ino):
            return None, lexical
    return None, check_dir(path).real_path  # the verified directory, symlinks resolved


def _find_tempdir(stacklevel: int) -> str:
    refused: list[str] = []
    for cand in candidate_tempdir_list():
        why, chosen = _usable(cand)
        if why is None:
            for msg in refused:
                # Say it: the user asked for that directory, and we chose another.
                warnings.warn(
                    f"skipped temporary directory candidate {msg}",
                    UnsafeCandidateWarning,
                    stacklevel=stacklevel,
                )
            return chosen
        refused.append(why)
    raise NoTrustedTempDirError(
        None, "no trusted temporary directory among the candidates: " + "; ".join(refused)
    )


def gettempdir() -> str:
    """The default directory for temporary files: the first trusted candidate.

    Candidates are tried as by :func:`tempfile.gettempdir`, but an untrusted
    one (e.g. a ``$TMPDIR`` writable by others without the sticky bit) is
    skipped with an :class:`~hardtemp.exceptions.UnsafeCandidateWarning`
    instead of used. A candidate is judged as the kernel resolves it (a
    symlink, then ``..``), and the path returned names that very directory:
    the standard library's ``os.path.abspath`` of it, unless that shortens
    ``link/..`` to another directory (then its real path). The result is
    cached, as in the standard library.

    Raises:
        NoTrustedTempDirError: no candidate is trusted and writable (also a
            ``FileNotFoundError``, like the standard library's).
        UnsafeDirectoryError: ``hardtemp._tempdir.tempdir`` was set to an
            untrusted directory, or the cached directory is no longer trusted.
        OSError: the forced or cached directory no longer exists (e.g.
            ``FileNotFoundError``).
    """
    return default_dir()[0]


def current(stacklevel: int = 1) -> str | bytes:
    """:data:`tempdir`, first set to the first trusted candidate if it is None.

    Not verified here (as ``tempfile.gettempdir()``): :func:`default_dir` and the
    creating functions verify it at every use. ``stacklevel`` is that of the
    public caller, for the :class:`~hardtemp.exceptions.UnsafeCandidateWarning`.

    Raises:
        NoTrustedTempDirError: no candidate is trusted and writable.
    """
    global tempdir
    value = tempdir  # one read: another thread may reset it to None meanwhile
    if value is None:
        with _lock:
            if tempdir is None:
                tempdir = _find_tempdir(stacklevel + 2)
            value = tempdir
    return value


def default_dir() -> tuple[str, DirHandle]:
    """:func:`gettempdir` and its verified handle, in one verification.

    Raises: as :func:`gettempdir`.
    """
    from ._dirtrust import trusted_dir

    result = os.fsdecode(current(3))
    # Re-verify (cheap: cached per descriptor): a forced ``tempdir``, or a cached
    # one that has since become writable by others, must never be handed out.
    return result, trusted_dir(result)


def gettempdirb() -> bytes:
    """:func:`gettempdir` as bytes."""
    return os.fsencode(gettempdir())
