"""The per-user sweep key that authenticates hardtemp's marks.

The key is 32 random bytes in ``$XDG_STATE_HOME/hardtemp/sweep.key``
(default ``~/.local/state/hardtemp/sweep.key``, ``~`` from the password
database, not ``$HOME``). A state directory, not ``$XDG_RUNTIME_DIR``: the
runtime directory is emptied at logout and reboot, so orphans a crash left
in ``/var/tmp`` before a reboot could never be verified (and cron jobs and
services often have no runtime directory at all).

Invariants:

* The key is used only from a regular file owned by the effective user, mode
  0600 (no group/other bits), with one link, 32 bytes long, in a directory
  owned by the effective user without group/other bits whose ancestors pass
  :func:`~hardtemp.check_dir` (only root or the user can replace anything on
  the way). Anything else: no key, and the reason. Another user can neither
  read it (to forge marks) nor replace it (to make ours look forged).
* Only creators make the key (``create=True``), atomically (written under a
  temporary name, then moved into place with ``RENAME_NOREPLACE``, which never
  replaces a key another process made first and never shows the key under two
  names; without it, ``link`` + ``unlink``, and readers wait out the two links).
  The sweeper never creates one.
* A creation that fails (a full disk, a file-size limit) leaves no temporary behind and
  is tried again a second later, never given up for the process; only whole keys are
  placed. A temporary name still linking the key (a creator of the ``link`` + ``unlink``
  fallback killed between the two) is removed by the next creator.
* An ``OSError`` no system call raised (a signal handler's ``TimeoutError``) propagates.
* No key means no mark is written (the object is still locked and works) and
  no mark verifies (nothing is swept): every failure is on the safe side.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import secrets
import stat
import threading
import time

from ._codes import KeyReason, Reason
from ._dirtrust import trusted_dir
from ._linux import rename_noreplace
from .exceptions import UnsafeDirectoryError

__all__ = ["KEY_NAME", "KeyUnavailable", "key_dir", "load", "problem", "reset"]

KEY_NAME = "sweep.key"
_KEY_SIZE = 32
_LINK_RETRIES = 50
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class KeyUnavailable(Exception):
    """Why there is no usable key: ``reason`` (with its stable ``code``, a
    :class:`~hardtemp._codes.KeyReason`); ``missing`` true: it was simply never made;
    ``transient`` true: a system call failed (a full disk), worth trying again later."""

    def __init__(self, reason: Reason, *, missing: bool = False, transient: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.missing = missing
        self.transient = transient

    @property
    def code(self) -> str:
        """The stable code of :attr:`reason` (match this, not the prose)."""
        return self.reason.code


def _unavailable(
    code: KeyReason, text: str, *, missing: bool = False, transient: bool = False
) -> KeyUnavailable:
    return KeyUnavailable(Reason(code, text), missing=missing, transient=transient)


_homes: dict[int, str] = {}  # per effective uid, once per process: NSS reads /etc/passwd


def _home(euid: int) -> str:
    home = _homes.get(euid)
    if home is None:
        try:
            home = pwd.getpwuid(euid).pw_dir
        except KeyError:
            home = "/nonexistent"
        _homes[euid] = home
    return home


def key_dir() -> str:
    """Where the key lives for the effective user."""
    base = os.environ.get("XDG_STATE_HOME", "")
    if not base.startswith("/"):  # the XDG rule: a relative value is ignored
        base = os.path.join(_home(os.geteuid()), ".local", "state")
    return os.path.join(base, "hardtemp")


def _private(st: os.stat_result, what: str, path: str) -> None:
    if st.st_uid != os.geteuid():
        raise _unavailable(
            KeyReason.NOT_OWNED, f"{path}: {what} is owned by uid {st.st_uid}, not by us"
        )
    if st.st_mode & (0o077 if what == "key" else 0o022):
        # Readable: others could forge our marks; writable: replace the key.
        raise _unavailable(
            KeyReason.BAD_MODE, f"{path}: {what} has mode {stat.filemode(st.st_mode)}"
        )


def _open_dir(path: str, create: bool) -> int:
    """A descriptor of the key directory, made (0700) with its parents when ``create``."""
    parts = path.strip("/").split("/")
    # The deepest existing ancestor, verified as a temp directory would be.
    for i in range(len(parts), -1, -1):
        existing = "/" + "/".join(parts[:i])
        try:
            handle = trusted_dir(existing)
        except FileNotFoundError:
            continue
        except UnsafeDirectoryError as exc:
            raise _unavailable(KeyReason.DIR_UNTRUSTED, f"{existing}: {exc.reason}") from None
        break
    fd = os.open(".", _DIR_FLAGS, dir_fd=handle.fd)
    try:
        for name in parts[i:]:
            if not create:
                raise _unavailable(KeyReason.NO_DIR, f"{path}: no key directory", missing=True)
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o700, dir_fd=fd)
            # O_NOFOLLOW relative to the verified parent: a planted symlink is never entered.
            sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = sub
            _private(os.fstat(fd), "directory", path)
        _private(os.fstat(fd), "directory", path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_key(dir_fd: int, path: str) -> bytes:
    # O_NOFOLLOW: a symlink planted as the key is refused, never followed.
    fd = os.open(
        KEY_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd
    )
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _unavailable(KeyReason.NOT_REGULAR, f"{path}: not a regular file")
        _private(st, "key", path)
        if st.st_nlink != 1:
            # A second link is a copy someone else may reach.
            raise _unavailable(KeyReason.LINKS, f"{path}: has {st.st_nlink} links")
        data = os.read(fd, _KEY_SIZE + 1)
    finally:
        os.close(fd)
    if len(data) != _KEY_SIZE:
        raise _unavailable(KeyReason.BAD_SIZE, f"{path}: is {len(data)} bytes, not {_KEY_SIZE}")
    return data


def _make_key(dir_fd: int) -> None:
    """Make a whole key under a temporary name and move it into place, or raise and leave
    nothing behind (the temporary is removed on any error or interruption)."""
    tmp = f".{KEY_NAME}.{secrets.token_hex(8)}"
    fd = os.open(
        tmp,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
        dir_fd=dir_fd,
    )
    try:
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            key = memoryview(secrets.token_bytes(_KEY_SIZE))
            while key:
                # Every byte or an error: RLIMIT_FSIZE (SIGXFSZ ignored) or a full disk
                # makes a short write, and a cut key placed would be refused for good.
                done = os.write(fd, key)
                if not done:
                    raise OSError(errno.EIO, "short write", KEY_NAME)
                key = key[done:]
            os.fsync(fd)
        finally:
            os.close(fd)
        # RENAME_NOREPLACE: a key another process made first stays the key, and ours never
        # has two names (a concurrent reader would refuse a key with two links).
        rename_noreplace(dir_fd, tmp, dir_fd, KEY_NAME)
    except FileExistsError:
        os.unlink(tmp, dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    os.fsync(dir_fd)


def _drop_stale_links(dir_fd: int) -> None:
    """Remove the temporary names that still link the key (a creator of the ``link`` +
    ``unlink`` fallback killed between the two). Only in the key's own directory, which
    only the user can write (:func:`_private`): nobody else's file can be named there."""
    try:
        key = os.stat(KEY_NAME, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return
    for name in os.listdir(dir_fd):
        if not name.startswith(f".{KEY_NAME}."):
            continue
        with contextlib.suppress(OSError):
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            # The key's own inode only: a creator's temporary still being written is not.
            if (st.st_dev, st.st_ino) == (key.st_dev, key.st_ino):
                os.unlink(name, dir_fd=dir_fd)


def _read_settled_key(dir_fd: int, path: str, create: bool) -> bytes:
    """:func:`_read_key`, waiting out a concurrent creator. Where the filesystem has no
    ``RENAME_NOREPLACE`` (NFS), a creator's new key has two names between its ``link``
    and ``unlink``: two links are looked at again for up to about 0.1 s; then a creator
    removes a temporary name of the key's inode that a killed creator left, and any other
    second link is refused."""
    for _ in range(_LINK_RETRIES):
        try:
            return _read_key(dir_fd, path)
        except KeyUnavailable as exc:
            if exc.code != KeyReason.LINKS:
                raise
        time.sleep(0.002)
    if create:
        _drop_stale_links(dir_fd)
    return _read_key(dir_fd, path)


def _from_a_call(exc: OSError) -> None:
    """Re-raise ``exc`` unless a system call failed with it: an ``OSError`` without an
    errno (a signal handler's ``TimeoutError``, an application's time limit) is the
    caller's, never 'no key'."""
    if exc.errno is None:
        raise exc


def _load(create: bool) -> bytes:
    """The key, or :class:`KeyUnavailable` (``transient`` when a system call failed: a
    full disk, a file-size limit; looked for again later)."""
    directory = key_dir()
    path = os.path.join(directory, KEY_NAME)
    try:
        dir_fd = _open_dir(directory, create)
    except OSError as exc:
        _from_a_call(exc)
        text = f"{directory}: {exc.strerror or exc}"
        raise _unavailable(KeyReason.DIR_UNUSABLE, text, transient=True) from None
    try:
        try:
            return _read_settled_key(dir_fd, path, create)
        except FileNotFoundError:
            if not create:
                raise _unavailable(
                    KeyReason.NONE_YET, f"{path}: no key yet", missing=True
                ) from None
        _make_key(dir_fd)
        return _read_settled_key(dir_fd, path, create)
    except OSError as exc:
        _from_a_call(exc)
        text = f"{path}: {exc.strerror or exc}"
        raise _unavailable(KeyReason.UNREADABLE, text, transient=True) from None
    finally:
        os.close(dir_fd)


_RETRY_AFTER = 1.0  # seconds before a transient failure is tried again (at most once a second)
_lock = threading.Lock()
_cache: dict[tuple[int, str, bool], tuple[bytes | KeyUnavailable, float]] = {}


def _get(create: bool) -> bytes | KeyUnavailable:
    ck = (os.geteuid(), key_dir(), create)
    with _lock:
        hit = _cache.get(ck)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
        got: bytes | KeyUnavailable
        try:
            got = _load(create)
        except KeyUnavailable as exc:
            got = exc
        # A missing key is looked for again next time (a creator may make it); a failed
        # system call (a full disk, a size limit) again a second later, so a long-lived
        # process marks its files once the cause is gone; a spoilt key is kept refused.
        if isinstance(got, KeyUnavailable) and got.missing:
            _cache.pop(ck, None)
        elif isinstance(got, KeyUnavailable) and got.transient:
            _cache[ck] = (got, now + _RETRY_AFTER)
        else:
            _cache[ck] = (got, float("inf"))
    return got


_last: tuple[int, object, bytes] | None = None  # (euid, $XDG_STATE_HOME as stored, key): hot path
_ENV_KEY = os.environ.encodekey("XDG_STATE_HOME") if hasattr(os.environ, "encodekey") else None


def _state_home_raw() -> object:
    """``$XDG_STATE_HOME`` as :data:`os.environ` stores it (None if unset), only to tell
    whether it changed: one dict look-up. ``os.environ.get`` of an unset name raises and
    catches two ``KeyError``s (5-10k instructions, per named file)."""
    data = getattr(os.environ, "_data", None)
    if _ENV_KEY is not None and isinstance(data, dict):
        return data.get(_ENV_KEY)
    return os.environ.get("XDG_STATE_HOME")  # os.environ replaced by something else


def load(*, create: bool, euid: int | None = None) -> bytes | None:
    """The effective user's key, or None when there is none (see :func:`problem`).

    ``euid``: the effective uid if the caller just learnt it (a directory verified for it
    in this very call), which saves a ``geteuid``."""
    global _last
    euid = os.geteuid() if euid is None else euid
    last, env = _last, _state_home_raw()
    if last is not None and last[0] == euid and last[1] == env:
        return last[2]
    got = _get(create)
    if isinstance(got, KeyUnavailable):
        return None
    _last = (euid, env, got)
    return got


def problem() -> KeyUnavailable | None:
    """Why the sweeper has no key (None: it has one)."""
    got = _get(False)
    return got if isinstance(got, KeyUnavailable) else None


def reset() -> None:
    """Forget the cached key (tests; a changed ``$XDG_STATE_HOME``)."""
    global _last
    with _lock:
        _cache.clear()
        _homes.clear()
        _last = None


def _after_fork() -> None:
    global _lock
    _lock = threading.Lock()  # another thread may have held it at fork()


os.register_at_fork(after_in_child=_after_fork)
