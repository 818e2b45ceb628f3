"""The file objects: TemporaryFile, NamedTemporaryFile and TemporaryDirectory."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import io
import os
import stat
import sys
import types
import warnings
import weakref
from collections.abc import Iterator
from types import GenericAlias, TracebackType
from typing import IO, TYPE_CHECKING, Any, Literal, cast

from . import _owner, _track
from ._create import (
    Created,
    create_dir,
    create_file_statx,
    create_unnamed,
    create_unnamed_cached,
    resolve_dir,
)
from ._dirsettle import disk_stamp
from ._dirtrust import DirHandle
from ._fsinfo import set_nocow
from ._inode import NameStat, lstat_mount, proc_path
from ._iostack import check_mode, raw_mode
from ._names import sanitize_params
from ._plainio import PlainFileIO, warn_unwiped, wrap_created
from ._publish import publish_dir, publish_named
from ._remove import remove_entry, remove_own_small, rmtree_at
from ._wipe import WipeReport, overwrite_fd, overwrite_small
from .exceptions import ReplacedFileWarning, UnsafeFileError

if TYPE_CHECKING:
    from _typeshed import StrOrBytesPath

__all__ = ["NamedTemporaryFile", "TemporaryDirectory", "TemporaryFile"]


_fileio_close = io.FileIO.close  # PlainFileIO has no close of its own


class _NamedFileIO(PlainFileIO):
    """A ``NamedTemporaryFile``'s raw file whose sweep lock is held through its own
    descriptor (``delete_on_close=True``): a close that does not remove the file (the
    application closing the underlying file object, ``f.file``, through a wrapper of its
    own) first moves the lock to a descriptor of the claim's, since the file lives on by its
    name until the wrapper's cleanup, and an unlocked live file is a sweeper's orphan in
    another PID namespace (review9)."""

    _claim: _owner.Claim | None = None  # set only for such a file, in its creating process
    _owner_pid = -1

    def close(self) -> None:
        claim = self._claim
        if (
            claim is not None
            and claim.borrowed
            and claim.fd >= 0
            and not self.closed
            and _owner.pid() == self._owner_pid  # (a forked child's copy: the parent's lock)
        ):
            claim.adopt()
        _fileio_close(self)


class _WipingFileIO(PlainFileIO):
    """A plaintext raw file whose close first overwrites the (unnamed) file's data in place.

    Only the creating process overwrites: a forked child closing its copy must
    not destroy the parent's data. Truncation wipes first (see :class:`PlainFileIO`);
    data another program cut off is reported at close, after the overwrite.
    """

    _owner_pid: int = 0
    _mnt_id: int = -1  # the mount the file was created on (its descriptor's), -1: unknown
    _ident = (-1, -1)  # (st_dev, st_ino) of the file created: set with _owner_pid

    def close(self) -> None:
        if self.closed:
            return
        shrunk = None
        try:
            if _owner.pid() == self._owner_pid:
                self._owner_pid = 0
                fd = self.fileno()
                # One fstat for both: what others cut, and what the overwrite covers.
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) != self._ident:
                    # Other code closed our descriptor (a double close) and the number now
                    # holds another file: never overwrite it. Ours died with that close.
                    shrunk = _NUMBER_REUSED
                else:
                    shrunk = self.shrink_report(st, fd)
                    # The common small file in one straight line; anything else the general
                    # way. By the mount the descriptor is on, known since its creation:
                    # st_dev alone may name two filesystems (an overlay file on a kernel
                    # before 4.17).
                    if overwrite_small(fd, st, self._mnt_id) is None:
                        # Without O_APPEND (fcntl may have set it since): reopened if so.
                        _overwrite_unnamed(fd, None, st)
        finally:
            _fileio_close(self)  # super().close(), without building the super object
        if shrunk is not None:
            # After the close: a warning turned into an error must not leak the descriptor.
            warn_unwiped(None, shrunk, stacklevel=3)


_NUMBER_REUSED = (
    "its descriptor was closed by other code (a double close) and its number now refers to "
    "another file, which was left untouched: the data of ours was freed without an overwrite"
)


def _overwrite_unnamed(fd: int, path: str | None, st: os.stat_result | None = None) -> None:
    """Overwrite the inode at ``fd``, which no name reaches any more, through ``fd``
    (``st``: its ``fstat``, just taken).

    Raises:
        WipeError: the overwrite failed or (policy ``"error"``) cannot be trusted.
        OSError: ``fd`` is read-only and ``/proc`` cannot reopen it for writing.
    """
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    if flags & os.O_APPEND and flags & os.O_ACCMODE != os.O_RDONLY:
        # pwrite would append (O_APPEND, also one set later by fcntl): cleared on our own
        # description, which is being closed (no /proc needed, unlike a second descriptor).
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_APPEND)
    elif flags & os.O_ACCMODE == os.O_RDONLY:
        # Not writable: a second descriptor of the same inode, through the magic link (no
        # name to look up: there is none left).
        wfd = os.open(proc_path(fd), os.O_RDWR | os.O_CLOEXEC | os.O_NOCTTY)
        try:
            overwrite_fd(wfd, path=path)
        finally:
            os.close(wfd)
        return
    overwrite_fd(fd, path=path, st=st)


def _show_warning(message: str, category: type[Warning]) -> None:
    """Show a warning without letting a filter turn it into an exception (compat's
    ``__exit__`` must behave as the stdlib's, which does not raise there)."""
    warnings.showwarning(message, category, __file__, 0)


def TemporaryFile(  # long: the stdlib's signature and a full docstring; 26 lines of code
    mode: str = "w+b",
    buffering: int = -1,
    encoding: str | None = None,
    newline: str | None = None,
    suffix: str | bytes | None = None,
    prefix: str | bytes | None = None,
    dir: StrOrBytesPath | None = None,
    *,
    errors: str | None = None,
    encrypt: bool | Literal["until-fileno"] = True,
    linkable: bool = False,
) -> IO[Any]:
    """An unnamed temporary file: no other process can open it by name.

    Created with ``O_TMPFILE|O_EXCL`` in the verified directory where the
    kernel and filesystem allow (it never has a name, so it can never be
    linked into place unless ``linkable=True``, and nothing is left behind even
    after SIGKILL), else
    created like :func:`mkstemp` and unlinked at once after verifying the
    inode.

    With ``encrypt=True`` (the default) the contents are AES-256-GCM
    encrypted with a key that exists only in this process: the disk only
    ever sees ciphertext, and dropping the key on close is a cryptographic
    erase. While its contents fit in 4 KiB they stay in this process's memory
    (zeroed on close, and when the file outgrows them): the disk sees nothing
    at all, and no key is drawn until then. ``fileno()`` raises
    :class:`io.UnsupportedOperation`. With ``encrypt=False`` the file is
    plaintext (``fileno()`` works) and is overwritten in place when closed.
    ``encrypt="until-fileno"`` (what :mod:`hardtemp.compat` uses) is encrypted
    until the first ``fileno()``, which turns it into such a plaintext file,
    with the same contents and position, for the program it is handed to.

    ``linkable=True`` (needs ``encrypt=False`` and ``O_TMPFILE``) creates it without
    ``O_EXCL``, so that :func:`hardtemp.publish` can give the finished file a name
    (``linkat``); until then it has none, and a crash leaves nothing behind.

    Raises:
        UnsafeDirectoryError: as :func:`mkstemp`.
        NoTrustedTempDirError: as :func:`mkstemp`.
        UnsafeFileError: as :func:`mkstemp`.
        ValueError: as :func:`mkstemp`, and for an invalid ``mode`` or combination
            (``linkable`` with ``encrypt``).
        TypeError: as :func:`mkstemp`.
        OSError: as :func:`mkstemp`; ``EOPNOTSUPP`` for ``linkable`` without ``O_TMPFILE``.
    """
    check_mode(mode, buffering, encoding, errors, newline)
    if isinstance(encrypt, str) and encrypt != "until-fileno":
        raise ValueError(f"encrypt must be True, False or 'until-fileno', not {encrypt!r}")
    if linkable and encrypt:
        raise ValueError("linkable=True needs encrypt=False (its key dies with the process)")
    prefix, suffix, dir, output_type = sanitize_params(prefix, suffix, dir)
    # Only "until-fileno" needs the directory again (its plaintext file, at the switch).
    fast = None if encrypt == "until-fileno" or linkable else create_unnamed_cached(dir)
    handle: DirHandle | None = None
    base: str | bytes = ""
    if fast is not None:
        fd, btrfs, mnt_id, ident = fast  # a cached verification that still holds, as mkstemp's
    else:
        handle, base = resolve_dir(dir, output_type)
        fd, mnt_id, ident = create_unnamed(handle, base, prefix, suffix, linkable=linkable)
        btrfs = handle.btrfs
    raw: io.RawIOBase | None = None
    plain: _WipingFileIO | None = None
    try:
        if encrypt:
            raw = _encrypted_raw(fd, mode, encrypt, handle, base, prefix, suffix)
        else:
            if btrfs:
                set_nocow(fd)  # plaintext on btrfs: make its overwrite on close land in place
            plain = _WipingFileIO(fd, raw_mode(mode))  # just created: empty
            plain._owner_pid = _owner.pid()
            plain._mnt_id, plain._ident = mnt_id, ident
    except BaseException:
        os.close(fd)
        raise
    file: IO[Any]
    if plain is not None:
        file = wrap_created(plain, mode, buffering, encoding, errors, newline)
    else:
        # Layers a forked child resets (stale read-ahead); the package as _encrypted_raw loaded it.
        crypt = _crypt_pkg or _load_crypt()
        file = crypt.wrap_encrypted(raw, mode, buffering, encoding, errors, newline)
    if _track.hook is not None:
        _track_unnamed(file, fd)
    return file


_crypt_pkg: types.ModuleType | None = None  # hardtemp._crypt, once _load_crypt imported it


def _load_crypt() -> types.ModuleType:
    """The package :mod:`hardtemp._crypt`, imported at the first encrypted file (`import
    hardtemp.compat` must not load cryptography) and kept in a global: an import statement
    in a function costs each call a module lookup and importlib's ``_handle_fromlist``
    (about a tenth of a small encrypted file's lifecycle)."""
    global _crypt_pkg
    if _crypt_pkg is None:
        from . import _crypt

        _crypt_pkg = _crypt
    return _crypt_pkg


def _encrypted_raw(
    fd: int,
    mode: str,
    encrypt: bool | str,
    handle: DirHandle | None,
    base: str | bytes,
    prefix: str | bytes,
    suffix: str | bytes,
) -> io.RawIOBase:
    """The raw layer of an encrypted TemporaryFile (``encrypt`` True or "until-fileno") over
    ``fd``, an unnamed file just created and verified (regular, ours, empty); ``handle`` (its
    directory) is needed for "until-fileno" only."""
    crypt = _crypt_pkg or _load_crypt()
    if encrypt != "until-fileno":
        # In memory until it outgrows a block (nothing on the disk, no key drawn until then);
        # the fd was made and fstat-verified by create_unnamed a moment ago.
        raw: io.RawIOBase = crypt.MemoryFirstRawIO(fd, name=fd, mode=raw_mode(mode))
        return raw
    from ._crypt._switch import SwitchingRawIO

    if handle is None:  # pragma: no cover - TemporaryFile resolves it for "until-fileno"
        raise ValueError("until-fileno needs the directory handle")
    rmode = raw_mode(mode)
    where = handle

    def plain() -> io.FileIO:
        # The plaintext file the descriptor is handed out for: as encrypt=False makes it.
        pfd, mnt_id, ident = create_unnamed(where, base, prefix, suffix)
        try:
            if where.btrfs:
                set_nocow(pfd)
            raw = _WipingFileIO(pfd, rmode)  # just created: empty
        except BaseException:
            os.close(pfd)
            raise
        raw._owner_pid = _owner.pid()
        raw._mnt_id, raw._ident = mnt_id, ident
        return raw

    # The encrypted side must be readable to be copied at the switch.
    enc_mode = {"wb": "rb+", "ab": "ab+", "xb": "xb+"}.get(rmode, rmode)
    enc = crypt.EncryptedRawIO(fd, name=fd, mode=enc_mode, _fresh=True)
    return SwitchingRawIO(enc, plain, rmode)


def _track_unnamed(file: IO[Any], fd: int) -> None:
    """Tell the (enabled) creation hook about a new TemporaryFile."""
    st = os.fstat(fd)
    if _track.hook is not None:
        _track.hook("TemporaryFile", file, None, fd, (st.st_dev, st.st_ino))


def _holds(fd: int, ident: tuple[int, int]) -> bool:
    """Whether the open number ``fd`` holds the inode ``ident`` (``(st_dev, st_ino)``)."""
    try:
        st = os.fstat(fd)
    except OSError:  # EBADF: closed
        return False
    return (st.st_dev, st.st_ino) == ident


class _NamedState:
    """Everything needed to remove a named temp file, without the wrapper itself
    (so a finalizer holding it does not keep the wrapper alive)."""

    def __init__(
        self,
        file: IO[Any],
        raw: PlainFileIO,
        made: Created,
        delete: bool,
        delete_on_close: bool,
        claim: _owner.Claim | None = None,
    ):
        self.file = file
        self.raw = raw
        self.fd = raw.fileno()
        self.claim = claim  # liveness lock + sweeper mark (hardtemp._owner)
        self.shrunk: str | None = None  # what shrink_report() said before the file was closed
        self.made = made
        self.delete = delete
        self.delete_on_close = delete_on_close
        self.owner_pid = _owner.pid()
        self.removed = False
        self.unlinked = False  # we unlinked its only name (so no name keeps its mark)
        self.claim_checked = False  # _our_fd found the claim's number ours, just before release
        # compat: a replaced name is reported without ever raising from close/__exit__
        # (the stdlib just unlinks; click's edit() test runs with warnings as errors).
        self.stdlib_exit = False

    def remove(self, fd: int | None) -> None:
        """Overwrite and remove the file (only in the creating process).

        Our inode is overwritten through the descriptor we hold (``fd``, or the claim's
        duplicate once the file is closed) whatever happened to the name; see
        :meth:`_remove_named`.
        """
        if self.removed or not self.delete or _owner.pid() != self.owner_pid:
            return
        self.removed = True
        path = self.made.path
        if type(path) is not str:  # os.fsdecode's own test, without its call for a str
            path = os.fsdecode(path)
        sys.audit("hardtemp.remove", path)
        still_open = fd is not None  # else close() looked at what others cut, while open
        try:
            # Closed by the user: the lock's duplicate still holds the inode (_our_fd).
            self._remove_named(fd, path, still_open)
        finally:
            try:
                claim = self.claim  # _release(), inline: the creating process, checked above
                if claim is not None:
                    claim.release(
                        self.made.handle.fd,
                        self.made.name,
                        unlinked=self.unlinked,
                        checked=self.claim_checked,
                    )
            finally:
                self.made.release()  # done with the directory: it must not stay pinned
        if self.shrunk is not None:
            warn_unwiped(path, self.shrunk, stacklevel=4)

    def _remove_named(self, fd: int | None, path: str, still_open: bool) -> None:
        made = self.made
        fd = self._our_fd(fd)
        name = made.name if type(made.name) is str else os.fsdecode(made.name)  # (no call)
        try:
            found: NameStat | None = lstat_mount(made.handle.fd, name)
        except FileNotFoundError:
            found = None
        st_name = None if found is None else found.st
        ours = st_name is not None and (st_name.st_dev, st_name.st_ino) == (made.dev, made.ino)
        if still_open:
            # The name still leads to our inode: its statx is that inode now (our descriptor
            # holds the same one), so it gives the size without an fstat.
            self.shrunk = self.raw.shrink_report(st_name if ours else None, fd)
        if ours and found is not None:
            # The common case in one straight line (remove_entry's very checks and result):
            # our descriptor, not a mount root (a bind mount over the name takes the general
            # way, which refuses it), a single link, a small file whose overwrite needs no sync.
            if (
                fd is not None
                and found.mount_root is False
                and remove_own_small(made.handle.fd, name, fd, found.st, found.mnt_id)
            ):
                self.unlinked = True  # one link, overwritten, then unlinked by us
                return
            # The general way may write for long (a large file, a sync): through a number of
            # our own that no library's double close reaches, as another thread's could ours
            # meanwhile (review9); and the release looks at the claim's number again.
            self.claim_checked = False
            wfd = None if fd is None else _owner.high_dup(fd)
            try:
                report = self._remove_entry(name, path, wfd, found)
            finally:
                if wfd is not None:
                    os.close(wfd)
            # One link when overwritten, then unlinked by us: no name is left to unmark.
            self.unlinked = report.removed and report.hard_links == 1
            return
        # The name no longer leads to our inode. Unlinked (by the caller, or replaced by an
        # atomic save): no name reaches it, but its blocks would be freed with the plaintext
        # at our last close, so overwrite it through our descriptor first.
        wiped = fd is not None and os.fstat(fd).st_nlink == 0
        if wiped:
            self.claim_checked = False  # (as above: a long write; the release looks again)
            wfd = _owner.high_dup(cast(int, fd))
            try:
                _overwrite_unnamed(wfd, path)
            finally:
                os.close(wfd)
        elif fd is None and st_name is None:
            warn_unwiped(path, _NUMBER_REUSED, stacklevel=5)  # nothing of ours reaches it now
        # Still linked elsewhere (the user moved it away to keep it): left alone.
        if st_name is not None:
            self._remove_replacement(st_name, path, wiped)

    def _remove_entry(self, name: str, path: str, fd: int | None, found: NameStat) -> WipeReport:
        """:meth:`_remove_named`'s general way (:func:`remove_entry`) for our entry ``name``
        as ``found`` just now, overwritten through ``fd``."""
        made = self.made
        return remove_entry(
            made.handle.fd,
            name,
            display_path=path,
            fd=fd,
            expect=(made.dev, made.ino),
            own_file=True,
            st_name=found.st,  # just taken: a second lstat would learn nothing new
            name_mount=(found.mnt_id, found.mount_root),  # the same statx: no second one
            # fd is our descriptor of the inode made.dev/made.ino (fstat'ed at creation;
            # the claim's is its dup): the name's statx stands for its fstat.
            fd_is_expect=fd is not None,
            # Our verified directory lets no other user rename or replace our entry
            # (private, or sticky: _dirtrust), and we just saw our inode at the name:
            # the checks around the hiding rename would stop no one in the threat model.
            name_stable=True,
            # No directory fsync: it would only make the unlink survive a power loss,
            # and a name that comes back holds the synced overwrite or, if the data
            # never reached the disk, nothing; the sweeper removes it (marked, unlocked).
            sync_dir=False,
        )

    def _our_fd(self, fd: int | None) -> int | None:
        """A descriptor that holds our inode now: the claim's own dup, else ``fd``, else None.

        A number is just a number: code that closes one twice (a library's double close)
        frees it for the next ``open()``, whose unrelated file our overwrite would destroy
        (review6, review7), or which may be the application's own open of our name, which
        our close would then close (review8). The claim's dup must still be our open file
        description of our inode (:meth:`hardtemp._owner.Claim.ours`); one that is not is
        forgotten: never closed. ``fd`` (the file's own, still open) is ``fstat``-ed.
        """
        claim = self.claim
        if claim is not None and claim.fd >= 0:
            if claim.ours():
                self.claim_checked = True  # (its release needs no second look)
                return claim.fd
            claim.forget()  # its number is someone else's now: never closed by us
        return fd if fd is not None and _holds(fd, (self.made.dev, self.made.ino)) else None

    def _remove_replacement(self, st: os.stat_result, path: str, wiped: bool) -> None:
        """Another file sits at our name (``sed -i``, an editor's or ``os.replace`` save)."""
        made = self.made
        # Our verified directory admits only root and us (private, or sticky so others
        # cannot rename over our entry): a regular single-link file of ours there was put
        # by this user, with our data in it; remove it as the stdlib would, wiped first.
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_uid == os.geteuid():
            remove_entry(
                made.handle.fd,
                os.fsdecode(made.name),
                display_path=path,
                expect=(st.st_dev, st.st_ino),
                own_file=True,
            )
            ours = (
                "ours was overwritten through our descriptor"
                if wiped
                else "ours lives on under another name"
            )
            message = (
                f"{path}: the name was replaced by another file of yours (an atomic save, "
                "e.g. sed -i or an editor): it was overwritten and removed, as the standard "
                f"library would remove it; {ours}"
            )
            if self.stdlib_exit:
                _show_warning(message, ReplacedFileWarning)
            else:
                warnings.warn(message, ReplacedFileWarning, stacklevel=5)
            return
        # Someone else's file, a link, a symlink...: not ours to delete. Said loudly.
        raise UnsafeFileError(
            path,
            f"the name now refers to another file (uid {st.st_uid}, {stat.filemode(st.st_mode)},"
            f" {st.st_nlink} link(s)) that is not ours to remove: left in place"
            + ("; ours was overwritten through our descriptor" if wiped else ""),
        )

    def release(self) -> None:
        """Drop the liveness lock (unmarking the inode if the user moved it away)."""
        # A released claim has fd -1: nothing to do, and no getpid to ask.
        if self.claim is not None and self.claim.fd >= 0 and _owner.pid() == self.owner_pid:
            self._release()

    def _release(self) -> None:
        """:meth:`release` for a caller that checked it runs in the creating process."""
        if self.claim is not None:
            self.claim.release(
                self.made.handle.fd,
                self.made.name,
                unlinked=self.unlinked,
                checked=self.claim_checked,
            )

    def close(self) -> None:
        """Close the file; with delete_on_close, overwrite and remove it first."""
        if self.file.closed:
            if self.delete_on_close:
                # The application closed the file object (f.file) itself: our close is still
                # the documented removal, or the plaintext stays at its name (review10).
                self.remove(None)
            return
        flushed = False
        try:
            if self.delete_on_close:
                try:  # (a try, not contextlib.suppress: three Python calls fewer per file)
                    self.file.flush()  # our data must be on the inode before we overwrite it
                    flushed = True
                except (OSError, ValueError):
                    pass
                self.remove(self.fd)
            elif self.delete and _owner.pid() == self.owner_pid:
                with contextlib.suppress(OSError, ValueError):
                    self.file.flush()
                # Removed later, by name: look now, while we still have the descriptor.
                self.shrunk = self.raw.shrink_report()
        finally:
            if flushed and self.removed:
                # Flushed, then removed: the layers above would only flush nothing again (and
                # pay an lseek); closing the raw file closes them all (their close is a no-op).
                self.raw.close()
            self.file.close()
            if self.removed or not self.delete or _owner.pid() != self.owner_pid:
                self.made.release()  # nothing left to do by name: nothing pins the directory

    def finalize(self) -> None:
        """The wrapper is gone (or the interpreter exits): close and remove."""
        try:
            self.close()
        finally:
            try:
                self.remove(None)
            finally:
                self.release()


def _wrap_like(method: Any, func: Any) -> None:
    """``functools.update_wrapper(method, func)``, cheaply for a method of a C type.

    Every ``NamedTemporaryFile`` builds one such wrapper per method it is used through
    (``f.write``...). Such a builtin method has no ``__dict__``, ``__annotations__`` or
    ``__type_params__``: ``update_wrapper`` pays two caught ``AttributeError`` for nothing
    there, so only the four names it would copy, and ``__wrapped__``, are set.
    """
    if type(func) is not types.BuiltinMethodType:
        functools.update_wrapper(method, func)  # a Python method (buffering=0): copy all
        return
    method.__module__ = func.__module__
    method.__name__ = func.__name__
    method.__qualname__ = func.__qualname__
    method.__doc__ = func.__doc__
    method.__wrapped__ = func


class _Closer:
    """The object whose lifetime decides when a named temp file is cleaned up."""

    __slots__ = ("__weakref__",)


# The cleanups still to run: a weak reference to each live file's _Closer -> its state.
# What weakref.finalize does (run when the token is collected, or at interpreter exit,
# newest first), without its Python-level bookkeeping per file; a file whose __exit__ ran
# has nothing left to do and leaves at once (no callback when it is collected).
_pending: dict[weakref.ref[_Closer], _NamedState] = {}


def _collected(ref: weakref.ref[_Closer]) -> None:
    """The token of a file left open was collected: close and remove it."""
    state = _pending.pop(ref, None)
    if state is not None:
        state.finalize()


@atexit.register
def _at_exit() -> None:
    """The interpreter exits: what is still open is closed and removed, newest first
    (only in the creating process; a forked child's exit leaves its parent's files).

    Each file in its own ``try``, as ``weakref.finalize``'s exit hook does: one cleanup that
    raises (``UnsafeFileError``: our name now holds something not ours) is reported and the
    others still run. Stopping there left every older file on the disk with its plaintext,
    and their weakref callbacks ran in the interpreter's teardown (a segfault in ctypes)."""
    while _pending:
        state = _pending.popitem()[1]
        try:
            state.finalize()
        except Exception:  # reported; the next file's cleanup still runs
            sys.excepthook(*sys.exc_info())


_new_object = object.__new__


class _TemporaryFileWrapper:
    """The object :func:`NamedTemporaryFile` returns: a file with a name that
    is removed (after an overwrite) as the ``delete``/``delete_on_close``
    options say. Attribute access is delegated to the underlying ``file``."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if args and not isinstance(args[0], _NamedState):
            # Under hardtemp.compat.install() tempfile._TemporaryFileWrapper is this class
            # (aiofiles checks type(f) against it); the standard NamedTemporaryFile, still
            # bound elsewhere, calls it with its own arguments: give it the standard wrapper.
            from ._install import original

            stdlib_wrapper = original("_TemporaryFileWrapper")
            if stdlib_wrapper is not None:
                return stdlib_wrapper(*args, **kwargs)
        return super().__new__(cls)

    def __init__(self, state: _NamedState, name: str | bytes) -> None:
        self._state = state
        self.file = state.file
        self.name = name
        self.delete = state.delete
        # Cleanup is tied to this token, not to the wrapper: a method taken from the
        # wrapper holds the token, so `w = f.write; del f; w(b"x")` still works (as in
        # tempfile, CPython issue #18879) without a reference cycle to the wrapper.
        self._closer = _Closer()
        self._pending = ref = weakref.ref(self._closer, _collected)
        _pending[ref] = state

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not found on the wrapper: delegate to the file.
        try:
            file = self.__dict__["file"]
        except KeyError:  # not initialised (copy, unpickling): no file to delegate to
            raise AttributeError(name) from None
        attr = getattr(file, name)
        if callable(attr):
            func = attr
            closer = self.__dict__["_closer"]

            def method(*args: Any, **kwargs: Any) -> Any:
                return func(*args, **kwargs)

            _wrap_like(method, func)
            method._closer = closer  # type: ignore[attr-defined]
            attr = method
        if not isinstance(attr, int):
            # Cached as CPython does: `f.write is f.write`, and later lookups cost nothing
            # (ints such as a position are not: they change).
            setattr(self, name, attr)
        return attr

    def __enter__(self) -> _TemporaryFileWrapper:
        self.file.__enter__()
        return self

    def __exit__(
        self, exc: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        state = self._state
        try:
            state.close()  # self.close(), inline
            if not state.removed:  # (state.remove returns at once if so)
                state.remove(None)
        finally:
            # Removed (or kept): what the finalizer would do is done. Not when the close was
            # interrupted before the removal began (a signal in the flush): collection or
            # exit must still remove the file.
            if state.removed or not state.delete:
                _pending.pop(self._pending, None)

    def close(self) -> None:
        """Close the file; with ``delete_on_close`` (the default), overwrite and remove it."""
        self._state.close()

    def __iter__(self) -> Iterator[Any]:
        # A generator over the file: keeps the wrapper (and so the file) alive while iterating.
        yield from self.file

    def persist(
        self, path: str | bytes | os.PathLike[str] | os.PathLike[bytes], *, durable: bool = False
    ) -> str | bytes:
        """Atomically move the file to ``path`` (replacing what is there) and keep it.

        Afterwards the object is an ordinary open file named ``path``: it is no
        longer removed on close. Returns the new name. ``path`` shows the complete
        file or its old contents, never a part of ours, even after a crash.

        With ``durable=True``: ``fsync`` of the file, the rename, ``fsync`` of the
        destination directory (and of ours, if it differs), so the new name survives
        a power loss.

        Raises:
            UnsafeFileError: our name no longer refers to the file we created (or,
                once closed, its directory was replaced).
            UnsafeDirectoryError: (once closed) its directory is no longer trusted.
            ValueError: the file was already removed or persisted.
            OSError: the move failed (e.g. ``EXDEV`` across filesystems), or an
                ``fsync`` did (``EIO``).
        """
        return self._persist(path, noclobber=False, durable=durable)

    def persist_noclobber(
        self, path: str | bytes | os.PathLike[str] | os.PathLike[bytes], *, durable: bool = False
    ) -> str | bytes:
        """As :meth:`persist`, but never replaces an existing file, not even one another
        process creates at the same moment (``renameat2(RENAME_NOREPLACE)``).

        Raises:
            FileExistsError: ``path`` exists (nothing changed).
            UnsafeFileError: as :meth:`persist`.
            UnsafeDirectoryError: as :meth:`persist`.
            ValueError: as :meth:`persist`.
            OSError: as :meth:`persist`.
        """
        return self._persist(path, noclobber=True, durable=durable)

    def _persist(self, path: Any, *, noclobber: bool, durable: bool) -> str | bytes:
        state = self._state
        # Removed only if it was: a file whose underlying file object the application closed
        # itself (f.file.close()) still exists, with its data, until our close() removes it.
        if state.removed:
            raise ValueError("the temporary file was already removed")
        made = state.made
        try:
            self._persist_in(made.reacquire(), path, noclobber=noclobber, durable=durable)
        finally:
            if state.file.closed and (state.removed or not state.delete):
                made.release()  # closed and kept (or still only the user's): nothing pinned
        return self.name

    def _persist_in(self, handle: DirHandle, path: Any, *, noclobber: bool, durable: bool) -> None:
        state = self._state
        made = state.made
        st = os.stat(os.fsdecode(made.name), dir_fd=handle.fd, follow_symlinks=False)
        if (st.st_dev, st.st_ino) != (made.dev, made.ino):
            raise UnsafeFileError(os.fsdecode(made.path), "name no longer refers to our file")
        target = os.fspath(path)
        if not state.file.closed:
            state.file.flush()
        # A kept file is no temp file: the sweeper must never remove it, so the
        # mark goes before the move (and comes back if the move fails).
        claim = state.claim
        if claim is not None:
            claim.unmark()
        try:
            publish_named(
                made,
                os.fsdecode(target),
                noclobber=noclobber,
                durable=durable,
                fd=None if state.file.closed else state.fd,
            )
        except BaseException:
            if claim is not None and state.delete:
                # Still a temp file: a crash now must leave it to the sweeper.
                claim.remark(handle.fd, made.name)
            raise
        state.delete = False
        state.removed = True
        state.release()
        self.delete = False
        self.name = target


def NamedTemporaryFile(  # long: the stdlib's signature and its docstring; 40 lines of code
    mode: str = "w+b",
    buffering: int = -1,
    encoding: str | None = None,
    newline: str | None = None,
    suffix: str | bytes | None = None,
    prefix: str | bytes | None = None,
    dir: StrOrBytesPath | None = None,
    delete: bool = True,
    *,
    errors: str | None = None,
    delete_on_close: bool = True,
) -> _TemporaryFileWrapper:
    """A temporary file with a name, created as by :func:`mkstemp`.

    ``delete``/``delete_on_close`` behave as in Python 3.12 on every
    supported version: with ``delete`` true the file is removed on close
    (``delete_on_close=True``) or else when the context manager exits or the
    object is finalized. Removal first overwrites the contents in place (see
    :func:`wipe`) and checks that the name still refers to our inode; it
    happens only in the creating process (a forked child never removes it).
    ``persist(path)`` / ``persist_noclobber(path)`` move it into place and keep it.

    The contents are plaintext on disk (other programs may open it by name);
    use :func:`TemporaryFile` for encrypted contents.

    Raises: as :func:`mkstemp`; ValueError also for an invalid ``mode``.
    """
    check_mode(mode, buffering, encoding, errors, newline)
    prefix, suffix, dir, output_type = sanitize_params(prefix, suffix, dir)
    handle, base = resolve_dir(dir, output_type)
    fd, made, new_statx = create_file_statx(handle, base, prefix, suffix)
    raw: PlainFileIO | None = None
    claim = None
    try:
        if delete:
            # Locked while we live, marked for `hardtemp sweep`: through the file's own
            # descriptor when the close removes it (no second number for a double close to
            # free), else through a dup (locked while closed, until its removal at exit).
            claim = _owner.claim(
                fd,
                handle.fd,
                made.name,
                dup=not delete_on_close,
                borrow=delete_on_close,
                dir_ident=(handle.dev, handle.ino),  # fstat'ed when the handle was verified
                real_fd=True,  # create_file opened it O_RDWR, never O_PATH
                euid=handle.euid,  # the handle was verified for it in this call: no geteuid
                ident=(made.dev, made.ino),
                statx=new_statx,  # the creation's check took it: its birth time, no statx
            )
        else:
            _owner.lock_shared(fd)  # kept by the user: locked only while open
        sys.audit("tempfile.mkstemp", made.path)
        # raw owns fd from here: when a layer above fails (an unknown encoding), fd is
        # closed exactly once, never a second time (that could close another thread's file).
        raw = _NamedFileIO(fd, raw_mode(mode))  # create_file made it, O_EXCL: empty
        raw.name = made.path  # as tempfile does on 3.12+
        if claim is not None and claim.borrowed:
            raw._claim, raw._owner_pid = claim, _owner.pid()
        # closes raw on failure
        file = wrap_created(raw, mode, buffering, encoding, errors, newline)
    except BaseException:
        # An interrupt as PlainFileIO(...) returned drops the new object, which closes fd:
        # the number is then free, or another thread's. Used and closed only while ours.
        fd_ours = raw is None and _holds(fd, (made.dev, made.ino))
        try:
            with contextlib.suppress(OSError):
                remove_entry(
                    handle.fd,
                    os.fsdecode(made.name),
                    display_path=os.fsdecode(made.path),
                    fd=fd if fd_ours else None,  # else by name (inode checked)
                    expect=(made.dev, made.ino),
                )
        finally:
            try:
                # Exactly once: a second close could hit a descriptor another thread opened.
                if raw is not None:
                    raw.close()
                elif fd_ours:
                    os.close(fd)
            finally:
                if claim is not None:
                    claim.close()
        raise
    state = _NamedState(file, raw, made, delete, delete_on_close, claim)
    # Built without the class call: its __new__ (a Python function) only serves compat's
    # stdlib callers.
    wrapper = _new_object(_TemporaryFileWrapper)
    _TemporaryFileWrapper.__init__(wrapper, state, made.path)
    if _track.hook is not None:
        _track.hook("NamedTemporaryFile", wrapper, made.path, fd, (made.dev, made.ino))
    return wrapper


class TemporaryDirectory:
    """A temporary directory removed, with everything in it, on cleanup.

    Created as by :func:`mkdtemp`. Cleanup (on ``cleanup()``, context exit or
    finalization, only in the creating process) walks the tree by descriptor
    and never follows a symlink; every regular file with a single link is
    overwritten before it is unlinked (a file with several links may be a
    link to data outside and is only unlinked); read-only subdirectories of
    ours are made writable through their own descriptor; mount points are not
    entered; entries added meanwhile are removed too.

    Raises: as :func:`mkdtemp` on creation; ``cleanup()`` raises the first
    ``OSError`` met (after removing all it could) unless
    ``ignore_cleanup_errors`` is true.
    """

    def __init__(
        self,
        suffix: str | bytes | None = None,
        prefix: str | bytes | None = None,
        dir: StrOrBytesPath | None = None,
        ignore_cleanup_errors: bool = False,
        *,
        delete: bool = True,
    ) -> None:
        prefix, suffix, dir, output_type = sanitize_params(prefix, suffix, dir)
        handle, base = resolve_dir(dir, output_type)
        # Before the mkdir: while this disk's write count stays the same, no block of the
        # tree can have reached it, and its cleanup needs no syncfs (_dirsettle.Fresh).
        stamp = disk_stamp(handle.dev)
        fd, made = create_dir(handle, base, prefix, suffix)
        try:
            # fd stays open, locked, for our lifetime; marked for `hardtemp sweep` if deleted.
            claim = _owner.claim(
                fd, handle.fd, made.name, dup=False, marked=delete, ident=(made.dev, made.ino)
            )
        except BaseException:
            os.close(fd)
            # Nothing of ours may stay behind when the constructor fails.
            with contextlib.suppress(OSError):
                rmtree_at(
                    handle.fd,
                    os.fsdecode(made.name),
                    expect=(made.dev, made.ino),
                    display_path=os.fsdecode(made.path),
                )
            raise
        sys.audit("tempfile.mkdtemp", made.path)
        self.name = made.path
        self._made = made
        self._claim = claim
        self._ignore_cleanup_errors = ignore_cleanup_errors
        self._delete = delete
        self._finalizer = weakref.finalize(
            self,
            self._cleanup,
            made,
            _owner.pid(),
            warn_message=f"Implicitly cleaning up {self!r}",
            ignore_errors=ignore_cleanup_errors,
            delete=delete,
            claim=claim,
            stamp=stamp,
        )
        if _track.hook is not None:
            _track.hook("TemporaryDirectory", self, made.path, None, (made.dev, made.ino))

    @classmethod
    def _cleanup(
        cls,
        made: Created,
        owner_pid: int,
        warn_message: str,
        ignore_errors: bool = False,
        delete: bool = True,
        claim: _owner.Claim | None = None,
        stamp: int | None = None,
    ) -> None:
        try:
            if delete and _owner.pid() == owner_pid:
                _rmtree(made, ignore_errors, stamp)
                warnings.warn(warn_message, ResourceWarning, stacklevel=2)
        finally:
            _release(claim, made, owner_pid)
            made.release()

    def __repr__(self) -> str:
        return f"<{self.__class__.__name__} {self.name!r}>"

    def __enter__(self) -> str | bytes:
        return self.name

    def __exit__(
        self, exc: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._delete:
            self.cleanup()
        else:
            # Kept: nothing of ours may pin it (a later cleanup() or persist() reopens it).
            if self._claim is not None:
                self._claim.close()
            self._made.release()

    def cleanup(self) -> None:
        """Remove the directory now (once; later calls do nothing).

        Only the creating process removes it: a forked child's cleanup is a no-op.
        """
        info = self._finalizer.detach()
        if info is not None:
            try:
                if _owner.pid() == info[2][1]:
                    _rmtree(self._made, self._ignore_cleanup_errors, info[3].get("stamp"))
            finally:
                _release(self._claim, self._made, info[2][1])
                self._made.release()  # removed: nothing of ours pins its parent any more

    def persist(
        self, path: str | bytes | os.PathLike[str] | os.PathLike[bytes], *, durable: bool = False
    ) -> str | bytes:
        """Move the directory, with everything in it, to ``path`` and keep it.

        Never replaces anything (``renameat2(RENAME_NOREPLACE)``); afterwards the
        directory is no longer removed (``cleanup()`` does nothing) and ``name`` is
        ``path``. With ``durable=True`` every file and directory inside is synced,
        then the rename, then the destination directory. Returns ``path``.

        Raises:
            FileExistsError: ``path`` exists (nothing changed).
            UnsafeFileError: our name no longer refers to the directory we created.
            ValueError: the directory was already removed or persisted.
            OSError: the move failed (``EXDEV`` across filesystems...) or an ``fsync``.
        """
        if not self._finalizer.alive:
            raise ValueError("the temporary directory was already removed or persisted")
        claim, made = self._claim, self._made
        made.reacquire()  # released by a delete=False exit: verified and reopened

        def unmark(fd: int) -> None:
            if claim is not None:
                claim.unmark()  # a kept directory is no temp directory: the sweeper leaves it

        def remark(fd: int) -> None:
            if claim is not None and self._delete:  # still ours to remove: mark it again
                claim.remark(made.handle.fd, made.name)

        try:
            publish_dir(made, os.fsdecode(path), durable=durable, unmark=unmark, remark=remark)
        except BaseException:
            if not self._delete:
                made.release()  # kept (delete=False): as it was before the call
            raise
        made.release()  # moved away and kept: nothing of ours pins either directory
        if claim is not None:
            claim.close()  # no longer a temp directory: drop its lock
        self._finalizer.detach()
        self._delete = False
        self.name = os.fspath(path)
        return self.name

    __class_getitem__: Any = classmethod(GenericAlias)


def _release(claim: _owner.Claim | None, made: Created, owner_pid: int) -> None:
    """Drop the directory's lock; the creator also unmarks it if the user moved it away."""
    if claim is None:
        return
    if _owner.pid() == owner_pid:
        claim.release(made.handle.fd, made.name)
    else:
        claim.close()  # a forked child: only its own copy of the descriptor


def _rmtree(made: Created, ignore_errors: bool, stamp: int | None = None) -> None:
    try:
        made.reacquire()  # released by a delete=False exit: verified and reopened
        rmtree_at(
            made.handle.fd,
            os.fsdecode(made.name),
            expect=(made.dev, made.ino),
            display_path=os.fsdecode(made.path),
            onerror=(lambda exc: None) if ignore_errors else None,
            stamp=stamp,
        )
    except FileNotFoundError:
        pass  # removed by the caller already
    except OSError:
        if not ignore_errors:
            raise
