"""Overwrite a file's data in place, then remove its name: honest about the filesystem.

Every plaintext file hardtemp removes goes through :func:`remove_entry`; users call
:func:`wipe`. The overwrite covers the file's data extents only (holes are skipped:
writing into them would allocate fresh blocks that never held our data and could hit
ENOSPC), one pass of an AES-CTR keystream by default, each pass followed by
``fdatasync`` so that every pass reaches the device. The last partial block is
written up to the block boundary so its tail is covered too, and the file size is
restored afterwards. Whether the overwrite reaches the old blocks depends on the
filesystem (see :mod:`hardtemp._fsinfo`); every result says so in a
:class:`WipeReport`, and the wipe policy (:mod:`hardtemp._policy`) decides whether an
untrustworthy overwrite warns, raises or stays quiet.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import secrets
import stat
import sys
import time
import warnings
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ._fsinfo import BEST_EFFORT, IN_PLACE, VOLATILE, file_info_for_fd
from ._policy import check_policy, get_wipe_policy
from .exceptions import UnsafeFileError, WipeError, WipeUnreliableWarning

__all__ = ["SKIPPED", "WipeReport", "overwrite_fd", "remove_entry", "wipe"]

SKIPPED = "skipped"
PATTERNS = ("random", "zeros")

_CHUNK = 1 << 20  # bytes per pwrite: large enough to stream, small enough to stay in cache
_MAX_TAIL_BLOCK = 1 << 16  # cap on st_blksize rounding (NFS reports 1 MiB "blocks")
_ZEROS = bytes(_CHUNK + 16)  # shared, read-only: input of the keystream and the "zeros" pattern
_ZEROS_VIEW = memoryview(_ZEROS)

_RENAME_NOREPLACE = 1
_libc = ctypes.CDLL(None, use_errno=True)
try:
    _renameat2 = _libc.renameat2
    _renameat2.argtypes = (
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    )
    _renameat2.restype = ctypes.c_int
    _HAVE_RENAMEAT2 = True
except AttributeError:  # glibc < 2.28
    _HAVE_RENAMEAT2 = False


@dataclass(frozen=True)
class WipeReport:
    """What a wipe did, and how far it can be trusted.

    Attributes:
        path: the path (or name) wiped, if known.
        bytes_overwritten: bytes written over the file's data, all passes together.
        passes: overwrite passes completed (each one written and ``fdatasync``-ed).
        pattern: ``"random"`` (AES-CTR keystream) or ``"zeros"``.
        filesystem: the filesystem type (``"ext4"``, ``"btrfs"``...), "" if not looked at.
        verdict: ``"in place"``, ``"not in place"``, ``"volatile"``, ``"best effort"``
            (see :class:`hardtemp._fsinfo.FsInfo`) or ``"skipped"`` (not overwritten on
            purpose: not a regular file, a possible link to outside data, not ours...).
            An overwrite that failed part-way is ``"best effort"`` at most.
        reasons: human-readable sentences explaining the verdict.
        hard_links: the link count seen when wiping.
        duration: seconds spent.
        removed: whether the name was removed.
    """

    path: str | None
    bytes_overwritten: int
    passes: int
    pattern: str
    filesystem: str
    verdict: str
    reasons: tuple[str, ...]
    hard_links: int
    duration: float
    removed: bool


@dataclass
class _Progress:
    """Mutable account of an overwrite, so an interrupted one still reports what it did."""

    bytes_overwritten: int = 0
    passes: int = 0
    filesystem: str = ""
    verdict: str = SKIPPED
    reasons: list[str] = field(default_factory=list)
    hard_links: int = 0
    error: OSError | None = None

    def report(self, path: str | None, pattern: str, start: float, removed: bool) -> WipeReport:
        return WipeReport(
            path=path,
            bytes_overwritten=self.bytes_overwritten,
            passes=self.passes,
            pattern=pattern,
            filesystem=self.filesystem,
            verdict=self.verdict,
            reasons=tuple(self.reasons),
            hard_links=self.hard_links,
            duration=time.monotonic() - start,
            removed=removed,
        )


def _check_options(passes: object, pattern: object, on_unreliable: object) -> str:
    if isinstance(passes, bool) or not isinstance(passes, int):
        raise TypeError(f"passes must be an int, not {type(passes).__name__}")
    if passes < 1:
        raise ValueError(f"passes must be at least 1, not {passes} (use overwrite=False to skip)")
    if not isinstance(pattern, str) or pattern not in PATTERNS:
        raise ValueError(f"pattern must be one of {PATTERNS}, not {pattern!r}")
    if on_unreliable is None:
        return get_wipe_policy()
    return check_policy(on_unreliable, source="on_unreliable")


class _Pattern:
    """Overwrite data: AES-256-CTR keystream (fresh key and nonce per wipe) or zeros."""

    def __init__(self, pattern: str, largest: int) -> None:
        self._zeros = pattern == "zeros"
        if not self._zeros:
            # A fresh random key and nonce per wipe: the keystream is unpredictable and
            # never repeats, and encrypting the shared zero buffer needs no fresh memory.
            cipher = Cipher(algorithms.AES(os.urandom(32)), modes.CTR(os.urandom(16)))
            self._enc = cipher.encryptor()
            self._out = bytearray(min(largest, _CHUNK) + 16)
            self._view = memoryview(self._out)

    def take(self, n: int) -> memoryview:
        if self._zeros:
            return _ZEROS_VIEW[:n]
        self._enc.update_into(_ZEROS_VIEW[:n], self._out)
        return self._view[:n]


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset``: retries short writes and EINTR."""
    done = 0
    while done < len(data):
        try:
            n = os.pwrite(fd, data[done:], offset + done)
        except InterruptedError:  # PEP 475 retries already; kept for handlers that return
            continue
        if n <= 0:
            raise OSError(errno.EIO, "pwrite wrote nothing")
        done += n


def _data_ranges(fd: int, size: int, block: int) -> list[tuple[int, int]]:
    """The file's data extents as (start, end); the one reaching EOF ends on a block boundary."""
    ranges: list[tuple[int, int]] = []
    pos = 0
    try:
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no data after pos
                    break
                raise
            if start >= size:
                break
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            ranges.append((start, end))
            pos = end
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
            raise
        ranges = [(0, size)] if size else []  # no SEEK_DATA support: everything is data
    if ranges and ranges[-1][1] == size and size % block:
        # The tail of the last block may still hold old bytes: cover it; the size is restored.
        ranges[-1] = (ranges[-1][0], size + block - size % block)
    return ranges


def _overwrite(fd: int, st: os.stat_result, passes: int, pattern: str, prog: _Progress) -> None:
    """The pass itself. OSErrors are recorded in ``prog.error``; other exceptions propagate."""
    prog.hard_links = st.st_nlink
    try:
        info = file_info_for_fd(fd, st)
        prog.filesystem, prog.verdict, prog.reasons = info.fstype, info.verdict, list(info.reasons)
    except OSError as exc:
        prog.verdict = BEST_EFFORT
        prog.reasons = [f"the filesystem could not be identified ({exc})"]
    size = st.st_size
    try:
        offset = os.lseek(fd, 0, os.SEEK_CUR)
    except OSError as exc:
        prog.error = exc
        return
    extended = False
    try:
        ranges = _data_ranges(fd, size, max(512, min(st.st_blksize or 4096, _MAX_TAIL_BLOCK)))
        extended = bool(ranges) and ranges[-1][1] > size
        pat = _Pattern(pattern, max((e - s for s, e in ranges), default=0))
        for _ in range(passes):
            for start, end in ranges:
                pos = start
                while pos < end:
                    n = min(_CHUNK, end - pos)
                    _pwrite_all(fd, pat.take(n), pos)
                    pos += n
                    prog.bytes_overwritten += n
            # Sync every pass: unsynced passes would merge in the page cache and only
            # the last would ever reach the device.
            os.fdatasync(fd)
            prog.passes += 1
    except OSError as exc:
        prog.error = exc
    finally:
        restore: list[OSError] = []
        if extended:
            try:
                os.ftruncate(fd, size)
            except OSError as exc:
                restore.append(exc)
        try:
            os.lseek(fd, offset, os.SEEK_SET)
        except OSError as exc:
            restore.append(exc)
        if restore and prog.error is None:
            prog.error = restore[0]
    if prog.error is not None:
        done = prog.bytes_overwritten
        prog.reasons.insert(
            0,
            f"the overwrite failed after {done} bytes ({prog.error.strerror or prog.error}): "
            "the old data may be partly or wholly intact",
        )
        if prog.verdict not in (SKIPPED,):
            prog.verdict = BEST_EFFORT


def _apply_policy(report: WipeReport, policy: str, stacklevel: int) -> None:
    """Warn or raise as ``policy`` says when the overwrite cannot be trusted."""
    if report.verdict in (IN_PLACE, VOLATILE, SKIPPED) or policy == "ignore":
        return
    why = report.reasons[0] if report.reasons else "unknown filesystem"
    message = (
        f"the overwrite may not have reached the old data on this {report.filesystem or 'unknown'}"
        f" filesystem ({report.verdict}): {why}. Encrypt sensitive temporary data instead "
        "(dropping the key erases it), or keep such files on a filesystem that overwrites in place."
    )
    if policy == "error":
        raise WipeError(report.path, message, report)
    warnings.warn(
        f"{report.path or 'file'}: {message}", WipeUnreliableWarning, stacklevel=stacklevel
    )


def _check_fd_for_overwrite(fd: int, path: str | None) -> os.stat_result:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFileError(path, "not a regular file: refusing to overwrite it")
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    if flags & os.O_APPEND:
        # With O_APPEND, Linux pwrite ignores the offset and appends: the overwrite would
        # grow the file and leave every old byte in place.
        raise ValueError(f"{path or f'fd {fd}'}: opened with O_APPEND, cannot overwrite in place")
    if flags & os.O_ACCMODE == os.O_RDONLY or flags & os.O_PATH:
        raise ValueError(f"{path or f'fd {fd}'}: descriptor is not open for writing")
    return st


def overwrite_fd(
    fd: int,
    *,
    path: str | None = None,
    passes: int = 1,
    pattern: str = "random",
    on_unreliable: str | None = None,
) -> WipeReport:
    """Overwrite in place the data extents of the regular file open for writing at ``fd``.

    Each pass writes the data extents (holes skipped, the last block to its end) and is
    followed by ``fdatasync``; short writes and EINTR are retried. The file size and the
    descriptor's offset are restored.
    Does not close or unlink; the link count is only reported (see :func:`remove_entry`).

    When the verdict is neither ``"in place"`` nor ``"volatile"``, the wipe policy
    (``on_unreliable`` or :func:`hardtemp.get_wipe_policy`) applies after the overwrite.

    Raises:
        UnsafeFileError: ``fd`` is not a regular file.
        ValueError: ``fd`` has ``O_APPEND`` or is not writable; bad ``pattern``/``passes``/
            ``on_unreliable``.
        TypeError: ``passes`` is not an int.
        OSError: ``fd`` is not an open descriptor.
        WipeError: the overwrite failed (ENOSPC, EIO...; ``.report`` is the partial
            report), or the policy is ``"error"`` and the verdict untrustworthy.
        WipeUnreliableWarning: (warning) the policy is ``"warn"`` and the verdict untrustworthy.
    """
    start = time.monotonic()
    policy = _check_options(passes, pattern, on_unreliable)
    st = _check_fd_for_overwrite(fd, path)
    prog = _Progress()
    _overwrite(fd, st, passes, pattern, prog)
    report = prog.report(path, pattern, start, removed=False)
    if prog.error is not None:
        raise WipeError(path, report.reasons[0], report) from prog.error
    _apply_policy(report, policy, stacklevel=3)
    return report


def _check_name(name: str) -> None:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ValueError(f"{name!r} is not a single directory entry name")


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _reopen_rw(fd: int, st: os.stat_result) -> int | None:
    """A new read-write descriptor of the same inode as ``fd`` (which may be O_PATH or
    read-only), through /proc/self/fd: the magic link names the inode, no path is
    re-resolved. Makes the file owner-writable first if needed and it is ours.
    Returns ``None`` when the file is not writable and not ours."""
    proc = f"/proc/self/fd/{fd}"
    # O_NONBLOCK: never wait on a lease or a FIFO swapped in; O_NOCTTY: never adopt a tty.
    flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
    try:
        return os.open(proc, flags)
    except PermissionError:
        if st.st_uid != os.geteuid():
            return None
    # Our own read-only file (mode 0400): grant ourselves write permission on the inode.
    os.chmod(proc, stat.S_IMODE(st.st_mode) | stat.S_IRUSR | stat.S_IWUSR)
    return os.open(proc, flags)


def _open_target(
    dir_fd: int, name: str, st_name: os.stat_result, fd: int | None, shown: str
) -> tuple[int | None, bool, str | None]:
    """(descriptor to overwrite through or None, whether we own it, why not overwritable)."""
    if fd is not None:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        if flags & os.O_ACCMODE != os.O_RDONLY and not flags & (os.O_APPEND | os.O_PATH):
            return fd, False, None
        new = _reopen_rw(fd, os.fstat(fd))
        if new is None:
            return None, False, "the file is not writable and not ours: not overwritten"
        return new, True, None
    try:
        # O_NOFOLLOW: a symlink swapped in would redirect the overwrite to its target.
        wfd = os.open(
            name,
            os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK,
            dir_fd=dir_fd,
        )
    except PermissionError:
        # O_PATH: refers to the inode without needing read or write permission.
        pfd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            pst = os.fstat(pfd)
            if not _same(pst, st_name) or not stat.S_ISREG(pst.st_mode):
                raise UnsafeFileError(shown, "was replaced while being opened: nothing removed")
            wfd2 = _reopen_rw(pfd, pst)
        finally:
            os.close(pfd)
        if wfd2 is None:
            return None, False, "the file is not writable and not ours: not overwritten"
        return wfd2, True, None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFileError(shown, "was replaced by a symlink: nothing removed") from exc
        raise
    return wfd, True, None


def _rename_noreplace(dir_fd: int, old: str, new: str) -> None:
    if _HAVE_RENAMEAT2:
        if _renameat2(dir_fd, os.fsencode(old), dir_fd, os.fsencode(new), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(err, os.strerror(err), old)
    # No renameat2 here: a 192-bit random target name cannot be guessed to pre-exist.
    os.rename(old, new, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def _hide_and_unlink(
    dir_fd: int, name: str, ident: os.stat_result | None, shown: str, reasons: list[str]
) -> None:
    """Rename ``name`` to a random name (hides it, as ``shred -u`` does), then unlink it.

    ``ident``: the inode the name must still refer to; a mismatch removes nothing.
    """
    if ident is not None:
        now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not _same(now, ident):
            raise UnsafeFileError(shown, "the name now refers to another file: nothing removed")
    hidden = ".ht-" + secrets.token_hex(12)
    try:
        _rename_noreplace(dir_fd, name, hidden)
    except OSError as exc:
        reasons.append(f"the name could not be hidden by a rename ({exc.strerror}): unlinked as is")
        os.unlink(name, dir_fd=dir_fd)
        return
    if ident is not None:
        moved = os.stat(hidden, dir_fd=dir_fd, follow_symlinks=False)
        if not _same(moved, ident):
            # Swapped between our check and the rename: put theirs back, delete nothing.
            _rename_noreplace(dir_fd, hidden, name)
            raise UnsafeFileError(shown, "was replaced during removal: nothing removed")
    os.unlink(hidden, dir_fd=dir_fd)


def _sync_dir(dir_fd: int, reasons: list[str]) -> None:
    try:
        os.fsync(dir_fd)
    except OSError as exc:
        reasons.append(f"the directory could not be synced ({exc.strerror})")


def _remove_entry(
    dir_fd: int,
    name: str,
    *,
    display_path: str | None,
    fd: int | None,
    expect: tuple[int, int] | None,
    overwrite: bool,
    own_file: bool,
    passes: int,
    pattern: str,
    sync_dir: bool,
    on_unreliable: str | None,
    stacklevel: int,
    require_regular: bool = False,
) -> WipeReport:
    start = time.monotonic()
    policy = _check_options(passes, pattern, on_unreliable)
    _check_name(name)
    shown = display_path if display_path is not None else name
    st_name = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if expect is not None and (st_name.st_dev, st_name.st_ino) != tuple(expect):
        raise UnsafeFileError(
            shown, "the name refers to another file than expected: nothing removed"
        )
    if stat.S_ISDIR(st_name.st_mode):
        raise IsADirectoryError(
            errno.EISDIR, "is a directory: only single entries are wiped", shown
        )
    if require_regular and stat.S_ISLNK(st_name.st_mode):
        raise UnsafeFileError(
            shown, "is a symbolic link: wipe() never follows symlinks; pass the target's own path"
        )
    if require_regular and not stat.S_ISREG(st_name.st_mode):
        raise UnsafeFileError(shown, "is not a regular file: not wiped, nothing removed")
    if fd is not None and not _same(os.fstat(fd), st_name):
        raise UnsafeFileError(shown, "the name no longer refers to our file: nothing removed")

    prog = _Progress(hard_links=st_name.st_nlink)
    interrupted: BaseException | None = None
    link_warning: str | None = None
    if not stat.S_ISREG(st_name.st_mode):
        # Symlinks, FIFOs, sockets, devices: only the entry goes; unlink never follows it.
        prog.reasons.append("not a regular file: only the directory entry was removed")
    elif not overwrite:
        prog.reasons.append("overwrite not requested")
    else:
        try:
            wfd, close_wfd, why_not = _open_target(dir_fd, name, st_name, fd, shown)
        except UnsafeFileError:
            raise
        except OSError as exc:
            # ETXTBSY (a running program), a lease, EIO...: it cannot be overwritten, but the
            # name must not stay behind: remove it, then report the failure as a WipeError.
            wfd, close_wfd, why_not = None, False, None
            prog.error = exc
            prog.verdict = BEST_EFFORT
            prog.reasons.insert(
                0, f"the file could not be opened for overwriting ({exc.strerror or exc})"
            )
        try:
            if wfd is not None:
                st = os.fstat(wfd)
                if not _same(st, st_name) or not stat.S_ISREG(st.st_mode):
                    raise UnsafeFileError(shown, "was replaced while being opened: nothing removed")
                prog.hard_links = st.st_nlink
                if st.st_nlink > 1 and not own_file:
                    why_not = (
                        f"the file has {st.st_nlink} hard links and may be a link to data outside: "
                        "not overwritten, only this name was removed"
                    )
                elif st.st_nlink > 1:
                    # Emitted only once the file is gone: a warnings filter turned to "error"
                    # must not leave the file behind.
                    link_warning = (
                        f"{shown}: this temporary file had {st.st_nlink} hard links: someone "
                        "linked it; it is overwritten anyway, which destroys the other names' "
                        "data too, but they may have read it already"
                    )
                if why_not is None:
                    try:
                        _overwrite(wfd, st, passes, pattern, prog)
                    except BaseException as exc:  # KeyboardInterrupt: remove first, then re-raise
                        interrupted = exc
                        prog.verdict = BEST_EFFORT
                        prog.reasons.insert(0, f"the overwrite was interrupted ({exc!r})")
                    if st.st_nlink > 1:
                        prog.reasons.append(
                            f"the file had {st.st_nlink} hard links; all of them lost the data"
                        )
        finally:
            if close_wfd and wfd is not None:
                os.close(wfd)
        if why_not is not None:
            prog.verdict = SKIPPED
            prog.reasons.insert(0, why_not)

    ident = st_name
    try:
        _hide_and_unlink(dir_fd, name, ident, shown, prog.reasons)
    except BaseException:
        if interrupted is not None:
            raise interrupted from None
        raise
    if sync_dir:
        _sync_dir(dir_fd, prog.reasons)
    report = prog.report(shown, pattern, start, removed=True)
    if interrupted is not None:
        raise interrupted
    if link_warning is not None:
        warnings.warn(link_warning, WipeUnreliableWarning, stacklevel=stacklevel)
    if prog.error is not None:
        raise WipeError(shown, report.reasons[0] + "; the file was removed", report) from prog.error
    _apply_policy(report, policy, stacklevel=stacklevel + 1)
    return report


def remove_entry(
    dir_fd: int,
    name: str,
    *,
    display_path: str | None = None,
    fd: int | None = None,
    expect: tuple[int, int] | None = None,
    overwrite: bool = True,
    own_file: bool = True,
    passes: int = 1,
    pattern: str = "random",
    sync_dir: bool = True,
    on_unreliable: str | None = None,
) -> WipeReport:
    """Remove the entry ``name`` of directory ``dir_fd``, overwriting it first if a regular file.

    Guarantees:

    * Never follows a symlink: a symlink, FIFO, socket or device is only unlinked.
    * ``fd`` (our read-write descriptor of that file) is used, never closed; if it is
      read-only or ``O_APPEND`` a second descriptor of the same inode is opened through
      ``/proc/self/fd``. The name must refer to ``fd``'s inode, and to ``expect``
      (``(st_dev, st_ino)``) if given, or nothing is removed.
    * ``own_file=True``: a file with several links is still overwritten (destroying the
      other names' data) and a :class:`WipeUnreliableWarning` says someone linked it.
      ``own_file=False``: such a file is never overwritten, only this name removed.
    * A read-only file of ours (mode 0400) is made writable through its inode and overwritten.
    * Then the name is renamed to a random one (hiding it, as ``shred -u`` does), unlinked,
      and the directory is fsynced when ``sync_dir``.
    * If the overwrite fails or is interrupted (KeyboardInterrupt), the file is still removed
      before the error propagates.

    Raises:
        FileNotFoundError: no entry ``name``.
        IsADirectoryError: ``name`` is a directory (nothing removed).
        UnsafeFileError: the name refers to another inode than ``fd``/``expect``, or was
            swapped during removal (nothing of theirs removed).
        ValueError, TypeError: bad ``name``, ``passes``, ``pattern`` or ``on_unreliable``.
        WipeError: the overwrite failed (the file was removed; ``.report`` says what was
            done), or the policy is ``"error"`` and the overwrite untrustworthy.
        OSError: the entry could not be removed (EPERM, EROFS...).
        WipeUnreliableWarning: (warning) see ``own_file`` and the wipe policy.
    """
    return _remove_entry(
        dir_fd,
        name,
        display_path=display_path,
        fd=fd,
        expect=expect,
        overwrite=overwrite,
        own_file=own_file,
        passes=passes,
        pattern=pattern,
        sync_dir=sync_dir,
        on_unreliable=on_unreliable,
        stacklevel=3,
    )


def wipe(path: str | os.PathLike[str], *, passes: int = 1, pattern: str = "random") -> WipeReport:
    """Overwrite the regular file at ``path`` in place, then remove it.

    The parent directory is opened with ``O_DIRECTORY|O_NOFOLLOW`` and the file relative
    to it with ``O_NOFOLLOW``: a symlink given as ``path`` (or as its parent) is refused,
    never followed (pass the real path, e.g. :func:`os.path.realpath`). A file with
    several hard links is overwritten anyway (you handed us this inode: the other names
    lose the data too) and a warning says so. The wipe policy applies.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        IsADirectoryError: ``path`` is a directory.
        UnsafeFileError: ``path`` or its parent is a symlink, or ``path`` is not a regular
            file (nothing removed).
        ValueError, TypeError: bad ``path``, ``passes`` or ``pattern``.
        WipeError: the overwrite failed (the file was removed anyway; ``.report``), or the
            policy is ``"error"`` and the overwrite cannot be trusted here.
        WipeUnreliableWarning: (warning) the overwrite cannot be trusted on this filesystem.
    """
    fspath = os.fspath(path)
    if not isinstance(fspath, str):
        raise TypeError("path must be a str or os.PathLike[str]")
    if "\0" in fspath:
        raise ValueError("path contains a NUL byte")
    parent, name = os.path.split(fspath)
    if not name or name in (".", ".."):
        if os.path.isdir(fspath):
            raise IsADirectoryError(errno.EISDIR, "is a directory: wipe() removes files", fspath)
        raise ValueError(f"{fspath!r} does not name a file")
    sys.audit("hardtemp.wipe", fspath)
    try:
        # O_NOFOLLOW: a parent swapped for a symlink would redirect the wipe elsewhere.
        dir_fd = os.open(parent or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (
            exc.errno == errno.ENOTDIR and os.path.islink(parent or ".")
        ):
            raise UnsafeFileError(
                parent, "is a symbolic link: wipe() never follows symlinks; pass the real path"
            ) from exc
        raise
    try:
        return _remove_entry(
            dir_fd,
            name,
            display_path=fspath,
            fd=None,
            expect=None,
            overwrite=True,
            own_file=True,
            passes=passes,
            pattern=pattern,
            sync_dir=True,
            on_unreliable=None,
            stacklevel=3,
            require_regular=True,
        )
    finally:
        os.close(dir_fd)
