"""Who owns a temp entry, and whether it is an orphan: the one module that decides.

hardtemp *claims* every object it will remove itself (``NamedTemporaryFile``
and ``TemporaryDirectory`` with ``delete=True``, the directory of ``hardtemp
run``) in two ways:

* **A liveness lock**: ``flock(LOCK_SH)`` on an open file description of the
  object, held for the object's whole lifetime (a ``dup`` of the file's own
  descriptor; the directory's own descriptor). The kernel drops it when the
  last descriptor of that description closes: on exit, on SIGKILL, whatever
  the PID namespace or the visibility of ``/proc``. A forked child, or a
  command that inherited the descriptor, keeps it. systemd-tmpfiles' ageing
  skips a directory (and, from systemd 254, a file) on which a lock is held.
* **An authenticated mark**: the extended attribute ``user.hardtemp.owner``, 45
  bytes: the creator's tag (a version byte, the boot id's 16 bytes, the pid, the
  start time) and ``mac``, HMAC-SHA256 cut to 128 bits, under the user's sweep
  key (:mod:`hardtemp._markkey`) over the tag *and* the entry's place and
  identity: device, inode, birth time (statx), the device and inode of the
  directory it was made in, and its name there. 45 bytes fit in a 256-byte ext4
  inode (the 112-byte text mark of version 4 took an xattr block of its own per
  file); version 4 marks, ``"<boot id> <pid> <start time> <hex mac>"``, still verify.

Invariants:

* :func:`judge` is the only place that calls an entry an orphan, and only when
  all hold: it is a regular file or directory owned by the effective user; its
  mark verifies under the effective user's key against its *current* identity,
  directory and name (a moved, renamed, copied or forged entry never matches);
  ``LOCK_EX|LOCK_NB`` succeeds on it (the caller keeps that lock while it
  removes); and the second opinion (boot id, pid, start time) does not say the
  creator still runs. No decision reads other processes' descriptors.
* :func:`claim` takes the lock *before* it writes the mark: a marked entry of a
  live object is always locked.
* A descriptor of a claim is closed, unlocked or unmarked only while it is our
  open file description of the object (:meth:`Claim.ours`: its inode, and our
  ``F_SETOWN`` owner or a ``flock`` of that very description); a claim's
  duplicate lives just below the soft ``RLIMIT_NOFILE``, at most :data:`_FD_CAP`
  (:func:`high_dup`), out of reach of a double close of a number a library held.
* Another user cannot hold the lock to keep our orphan alive: ``flock`` needs
  a descriptor opened for reading or writing (an ``O_PATH`` one gives
  ``EBADF``), and our files are 0600, our directories 0700.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import hmac
import mmap
import os
import stat
import struct
from dataclasses import dataclass
from enum import Enum

from . import _markkey
from ._codes import Reason, SweepReason
from ._inode import proc_path
from ._linux import (
    AT_EMPTY_PATH,
    AT_SYMLINK_NOFOLLOW,
    STATX_BASIC_STATS,
    STATX_BTIME,
    fdinfo,
    statx_anyway,
    statx_raw,
)

TYPE_CHECKING = False  # the hash state's type, for annotations only
if TYPE_CHECKING:
    from _hashlib import HASH

__all__ = [
    "OWNER_XATTR",
    "Claim",
    "Judgement",
    "OwnerTag",
    "Verdict",
    "claim",
    "current_tag",
    "judge",
    "lock_shared",
    "mark",
    "owner_alive",
    "pid",
    "read_mark",
    "write_mark",
]

OWNER_XATTR = "user.hardtemp.owner"
# 5: a binary tag and a 128-bit MAC, 45 bytes (4: text tag and hex MAC, 112 bytes: an ext4
# xattr block per file; 3: the place as decimal text; 2: a float). Marks of 4 still verify.
_DOMAIN = b"hardtemp-mark/5\0"
_DOMAIN_4 = b"hardtemp-mark/4\0"
_VERSION = 5
# The tag: version, boot id (its UUID's 16 bytes; all 0xff: unknown, never a random UUID's
# version nibble), pid, start time in clock ticks.
_TAG = struct.Struct("=B16sIQ")
_MAC_SIZE = 16  # 128 bits: a forger's chance per try is 2**-128
_MARK_SIZE = _TAG.size + _MAC_SIZE  # 45: fits a 256-byte ext4 inode's ~56 bytes of xattr room
_UNKNOWN_BOOT = b"\xff" * 16


def _read(path: str) -> str:
    with open(path, "rb") as f:
        return f.read().decode("ascii", "replace")


def _boot_id() -> str:
    try:
        text = _read("/proc/sys/kernel/random/boot_id").strip()
    except OSError:  # no /proc: the tag says "unknown", the lock still decides
        return "unknown"
    try:  # what a tag can hold; anything else (a stand-in /proc's file) is no boot id
        boot = bytes.fromhex(text.replace("-", ""))
    except ValueError:
        return "unknown"
    return _boot_text(boot) if len(boot) == 16 else "unknown"


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: start time in clock ticks since boot."""
    try:
        data = _read(f"/proc/{pid}/stat")
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    return data[data.rindex(")") + 2 :].split()[19]


class OwnerTag:
    """``(boot_id, pid, start_time)`` of a process: the mark's second opinion."""

    __slots__ = ("boot_id", "pid", "start_time")

    def __init__(self, boot_id: str, pid: int, start_time: str) -> None:
        self.boot_id, self.pid, self.start_time = boot_id, pid, start_time

    def encode(self) -> bytes:
        """The tag's bytes in a mark (:data:`_TAG`).

        Raises:
            ValueError: a boot id that is neither a UUID nor ``"unknown"``, a pid or a
                start time that is not a non-negative integer of the tag's width.
        """
        boot = _UNKNOWN_BOOT
        if self.boot_id != "unknown":
            try:
                boot = bytes.fromhex(self.boot_id.replace("-", ""))
            except ValueError:
                boot = b""
            if len(boot) != 16 or boot == _UNKNOWN_BOOT:
                raise ValueError(f"not a boot id: {self.boot_id!r}")
        try:
            return _TAG.pack(_VERSION, boot, self.pid, int(self.start_time))
        except (struct.error, ValueError) as exc:
            raise ValueError(f"not a tag: pid {self.pid}, start {self.start_time!r}") from exc

    @classmethod
    def decode(cls, raw: bytes) -> OwnerTag | None:
        """The tag :meth:`encode` made, or a version 4 mark's text tag; None: neither."""
        if len(raw) == _TAG.size and raw[0] == _VERSION:
            _, boot, pid, start = _TAG.unpack(raw)
            return cls(_boot_text(boot), pid, str(start))
        try:
            text = raw.decode("ascii")
            boot_id, pid_text, start_text = text.split(" ")
            if not pid_text.isdigit() or not start_text.isdigit():
                return None
            return cls(boot_id, int(pid_text), start_text)
        except ValueError:
            return None

    def __repr__(self) -> str:
        return f"OwnerTag(boot_id={self.boot_id!r}, pid={self.pid}, start_time={self.start_time!r})"


def _boot_text(boot: bytes) -> str:
    """A tag's boot id as ``/proc/sys/kernel/random/boot_id`` writes it, or ``"unknown"``."""
    if boot == _UNKNOWN_BOOT:
        return "unknown"
    h = boot.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_BOOT_ID = _boot_id()
_current: bytes | None = None


def current_tag() -> bytes:
    """This process's tag (recomputed after ``fork``, also one that bypassed Python's hooks)."""
    global _current
    pid()  # a wiped canary (any fork) forgets the parent's tag: marks name their real creator
    if _current is None:
        _current = OwnerTag(_BOOT_ID, os.getpid(), _start_time(os.getpid()) or "0").encode()
    return _current


def _wipe_on_fork_page() -> mmap.mmap | None:
    """One private page the kernel zeroes in every child, however it was forked
    (``MADV_WIPEONFORK``, Linux 4.14+); None where that cannot be had."""
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        page.madvise(getattr(mmap, "MADV_WIPEONFORK", 18))
    except (OSError, ValueError, AttributeError):
        return None
    page[0] = 1
    return page


_canary = _wipe_on_fork_page()
_forks = 0  # forks this process descends through since the module was loaded
_pid = os.getpid()  # this process's token (below); the pid itself until the first fork


def pid() -> int:
    """This process's token for the "only the creating process removes" checks (twice per
    file): its pid combined with the number of forks it descends through, so that every
    forked child differs from its parent even where their pids are equal (the parent is
    pid 1 of a PID namespace and the child pid 1 of a new one). No system call while the
    canary page still holds its byte: not a forked child. A child finds it zeroed by the
    kernel (also after a ``fork()`` that bypassed Python's fork hooks: a C extension,
    ``ctypes``), counts the fork and asks ``getpid`` once; without the page every call
    asks (and the fork hook counts)."""
    global _pid, _forks, _current
    if _canary is not None and _canary[0]:
        return _pid
    if _canary is not None:
        _forks += 1  # the kernel wiped it: a forked child, however it was forked
        _canary[0] = 1
        _current = None  # nor is the parent's tag ours (its marks would name the parent)
    _pid = os.getpid() | (_forks << 32)  # pid_max is at most 2**22
    return _pid


def _forget_after_fork() -> None:
    global _current, _forks
    _current = None
    _forks += 1  # a child (by os.fork & co.): differs from its parent even without a canary


os.register_at_fork(after_in_child=_forget_after_fork)


def owner_alive(tag: OwnerTag) -> bool:
    """Second opinion: whether the process that wrote ``tag`` still runs (pid reuse seen).

    Only ever a reason to *keep* an entry: a pid seen in another PID namespace,
    or a creator without ``/proc`` ("unknown" boot id), says nothing here.
    """
    if tag.boot_id != _BOOT_ID or tag.boot_id == "unknown":
        return False
    start = _start_time(tag.pid)
    return start is not None and start == tag.start_time


def _death(tag: OwnerTag) -> str:
    """Why the second opinion does not object (after owner_alive said False)."""
    if tag.boot_id == "unknown":
        return "creator could not read /proc (no second opinion)"
    if tag.boot_id != _BOOT_ID:
        return "created before the last reboot (boot id differs)"
    if _start_time(tag.pid) is None:
        return f"pid {tag.pid} no longer runs"
    return f"pid {tag.pid} was reused by another process (start time differs)"


# --------------------------------------------------------------------------- marks


def _place(
    fd: int, dir_ident: tuple[int, int], name: bytes, raw: bytes | None = None
) -> bytes | None:
    """What a mark is bound to: the inode's identity and birth, and where it was named.

    Fixed-width binary fields, then the name (last, so the encoding is unambiguous): whether
    the birth time is known, the inode number, the birth time (seconds and nanoseconds), the
    device's major and minor, the directory's device and inode. ``statx``'s bytes are taken
    as they are: no integer is built or formatted (that was most of a mark's cost).
    ``raw``: the caller's ``struct statx`` of this very inode (mask :data:`_PLACE_MASK`),
    if it has one (the creation's check took it): no second ``statx``.
    None: neither a birth time nor a generation tells this inode from a later one with its
    number: no mark can be bound to it (none is written; none verifies).
    """
    if raw is None:
        try:
            raw = statx_raw(fd, b"", _FD_FLAGS, _PLACE_MASK, None)
        except OSError:
            try:
                # Switched off by one refusal (another thread's own seccomp filter): asked
                # anyway, so that this thread's marks still match a sweeper's (review9).
                raw = statx_anyway(fd, _PLACE_MASK)
            except OSError:
                raw = None
    if raw is None:  # no statx at all (a seccomp profile refusing it): the generation
        return _generation_place(fd, dir_ident, name)
    # Birth time: an inode number reused by a later file never matches an old mark.
    if _MASK(raw)[0] & STATX_BTIME:  # stx_mask says it is set
        head = b"\1" + raw[32:40] + raw[80:92] + raw[136:144]  # ino, btime, dev
    else:
        # No birth time (ext4 with 128-byte inodes, ext2/3): the inode's generation, which
        # ext4 draws anew for every inode it allocates, tells a reused number (review8).
        head = b"\2" + raw[32:40] + _generation(fd) + raw[136:144]
    return head + _DIR_IDENT(*dir_ident) + name


def _generation_place(fd: int, dir_ident: tuple[int, int], name: bytes) -> bytes | None:
    """:func:`_place`'s generation form (flag 2) from ``fstat`` and ``FS_IOC_GETVERSION``,
    byte for byte what it builds from a ``statx`` without birth time; None where the
    filesystem has no generation either. Without it a mark bound to device, inode and
    place alone verified on a later file given the same number (review10)."""
    st = os.fstat(fd)  # (EBADF: not open; raised, as a statx would)
    gen = _generation(fd)
    if gen in (_NO_GENERATION, _UNKNOWN_GENERATION):
        return None
    head = _GEN_INO(2, st.st_ino) + gen + _GEN_DEV(os.major(st.st_dev), os.minor(st.st_dev))
    return head + _DIR_IDENT(*dir_ident) + name


def _generation(fd: int) -> bytes:
    """The inode's generation number (``FS_IOC_GETVERSION``), as 12 bytes, zero where the
    filesystem has none; ``fd`` may be an ``O_PATH`` descriptor (then reopened read-only
    through ``/proc``: zero without it, so that such a mark never verifies wrongly)."""
    buf = bytearray(8)
    try:
        fcntl.ioctl(fd, _FS_IOC_GETVERSION, buf)
    except OSError as exc:
        if exc.errno != errno.EBADF:  # ENOTTY, EOPNOTSUPP: no generation on this filesystem
            return bytes(12)
        try:  # an O_PATH descriptor (the sweeper's): a read-only one of the very inode
            rfd = os.open(proc_path(fd), os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError:
            return _UNKNOWN_GENERATION  # unknown: never equal to what the writer bound
        try:
            fcntl.ioctl(rfd, _FS_IOC_GETVERSION, buf)
        except OSError:  # ENOTTY, EOPNOTSUPP: no generation, as the writer saw
            return bytes(12)
        finally:
            os.close(rfd)
    return bytes(buf[:4]) + bytes(8)


_FD_FLAGS = AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH  # the open fd itself (O_PATH ones too)
_PLACE_MASK = STATX_BASIC_STATS | STATX_BTIME
# The layout of _place's head: flag, stx_ino, stx_btime (tv_sec, tv_nsec), dev major, minor.
_GEN_INO = struct.Struct("=BQ").pack  # flag, stx_ino (as statx lays them out)
_GEN_DEV = struct.Struct("=II").pack  # stx_dev_major, stx_dev_minor
_NO_GENERATION = bytes(12)
_UNKNOWN_GENERATION = b"\xff" * 12
_DIR_IDENT = struct.Struct("=QQ").pack
_MASK = struct.Struct("=I").unpack_from  # stx_mask
_FS_IOC_GETVERSION = 0x80087601  # _IOR('v', 1, long); ext4 writes the 32-bit generation


def _mac(key: bytes, tag: bytes, place: bytes) -> bytes:
    # hmac.digest: the one-shot HMAC-SHA256 (the same value as hmac.new().digest()),
    # without building two hash objects in Python for every mark.
    return hmac.digest(key, _DOMAIN + tag + b"\0" + place, "sha256")[:_MAC_SIZE]


def _mac_4(key: bytes, tag: bytes, place: bytes) -> bytes:
    """A version 4 mark's MAC (hex text), for the marks that earlier versions left."""
    return hmac.digest(key, _DOMAIN_4 + tag + b"\0" + place, "sha256").hex().encode()


# HMAC (RFC 2104) over SHA-256 by hand for this process's own marks: the two hash states
# after the key's pads are kept, and copied per mark. The same value as hmac.new (tested);
# copying two SHA-256 states costs half what copying OpenSSL 3's HMAC context does (0.85
# against 1.8 us per mark in a tight loop; about 1% of a named file's lifecycle).
_BLOCK = 64  # SHA-256's block size: the length HMAC pads its key to
_IPAD = bytes(x ^ 0x36 for x in range(256))  # translate() tables: each key byte XOR the pad
_OPAD = bytes(x ^ 0x5C for x in range(256))

# (key, tag, SHA-256 state after the inner pad, the domain and the tag, the outer pad's)
_mark_base: tuple[bytes, bytes, HASH, HASH] | None = None


def _mark_mac(key: bytes, tag: bytes, place: bytes) -> bytes:
    """:func:`_mac` for this process's own marks: the HMAC's inner state after the domain
    and the tag, and its outer state (the same for every mark a process writes under one
    key) are computed once and copied per mark, not rebuilt from the key each time (the
    same value as :func:`hmac.new`'s, tested)."""
    global _mark_base
    base = _mark_base
    if base is None or base[0] is not key or base[1] != tag:
        # A new key (another euid, $XDG_STATE_HOME) or tag (a forked child): built anew.
        padded = (hashlib.sha256(key).digest() if len(key) > _BLOCK else key).ljust(_BLOCK, b"\0")
        inner = hashlib.sha256(padded.translate(_IPAD))
        inner.update(_DOMAIN + tag + b"\0")
        base = (key, tag, inner, hashlib.sha256(padded.translate(_OPAD)))
        _mark_base = base
    inner = base[2].copy()  # one C call under the object's lock: threads never share state
    inner.update(place)
    outer = base[3].copy()
    outer.update(inner.digest())
    return outer.digest()[:_MAC_SIZE]


def _split(raw: bytes) -> tuple[OwnerTag, bytes, bytes, bool] | None:
    """``(tag, tag bytes, mac, version 4?)`` of a stored mark, or None if it is not one."""
    if len(raw) == _MARK_SIZE and raw[0] == _VERSION:
        head, mac = raw[: _TAG.size], raw[_TAG.size :]
        tag = OwnerTag.decode(head)
        return None if tag is None else (tag, head, mac, False)
    head, sep, mac = raw.rpartition(b" ")  # version 4: "<boot id> <pid> <start> <hex mac>"
    tag = OwnerTag.decode(head) if sep else None
    if tag is None or len(mac) != 64:
        return None
    return tag, head, mac, True


def _mac_matches(key: bytes, parts: tuple[OwnerTag, bytes, bytes, bool], place: bytes) -> bool:
    """Whether a split mark's MAC is the one ``key`` gives its tag at ``place``."""
    _, head, mac, version_4 = parts
    want = _mac_4(key, head, place) if version_4 else _mac(key, head, place)
    return hmac.compare_digest(want, mac)


def _on(fd: int) -> int | str:
    """What the xattr calls take for ``fd``: itself, or for an ``O_PATH`` descriptor
    (which f*xattr refuse) ``/proc/self/fd/N``, the very inode it pins."""
    return proc_path(fd) if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_PATH else fd


def read_mark(fd: int) -> OwnerTag | None:
    """The (unverified) creator tag of the mark on the inode open at ``fd``, or None."""
    try:
        parts = _split(os.getxattr(_on(fd), OWNER_XATTR))
    except OSError:
        return None
    return None if parts is None else parts[0]


_SKIP_MARK = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.EACCES, errno.ENOSPC)


def mark(
    fd: int,
    dir_fd: int,
    name: str | bytes,
    *,
    dir_ident: tuple[int, int] | None = None,
    real_fd: bool = False,
    euid: int | None = None,
    statx: bytes | None = None,
) -> bool:
    """Write our authenticated mark on ``fd``'s inode, made as ``name`` in ``dir_fd``.

    Returns False (nothing written) where the filesystem has no user xattrs
    or this user has no usable sweep key: the entry is then never swept.
    ``dir_ident``: ``dir_fd``'s ``(st_dev, st_ino)`` if the caller holds it (saves an
    ``fstat``); ``real_fd``: the caller knows ``fd`` is not ``O_PATH`` (saves an ``fcntl``);
    ``euid``: the effective uid ``dir_fd`` was just verified for (saves a ``geteuid``);
    ``statx``: the caller's ``struct statx`` of ``fd``'s very inode, with the mask
    :data:`_PLACE_MASK` (saves a ``statx``: the creation's check took it).

    Raises:
        OSError: another failure to write it (``EIO``...).
    """
    return write_mark(
        fd,
        dir_fd,
        name,
        current_tag(),
        dir_ident=dir_ident,
        real_fd=real_fd,
        euid=euid,
        statx=statx,
    )


def write_mark(
    fd: int,
    dir_fd: int,
    name: str | bytes,
    tag: bytes,
    *,
    dir_ident: tuple[int, int] | None = None,
    real_fd: bool = False,
    euid: int | None = None,
    statx: bytes | None = None,
) -> bool:
    """:func:`mark` with a given creator ``tag`` (tests stand in for a reboot or a reused pid).

    Raises:
        ValueError: ``tag`` is not one :meth:`OwnerTag.encode` makes.
        OSError: as :func:`mark`.
    """
    if len(tag) != _TAG.size or tag[0] != _VERSION:
        raise ValueError("not a tag of this version (OwnerTag.encode makes one)")
    key = _markkey.load(create=True, euid=euid)
    if key is None:
        return False
    if dir_ident is None:
        dir_st = os.fstat(dir_fd)
        dir_ident = (dir_st.st_dev, dir_st.st_ino)
    place = _place(fd, dir_ident, os.fsencode(name), statx)
    if place is None:
        return False  # nothing tells this inode from a later one: a mark would outlive it
    value = tag + _mark_mac(key, tag, place)  # 45 bytes: in the inode on ext4, no block
    try:
        os.setxattr(fd if real_fd else _on(fd), OWNER_XATTR, value)  # no /proc for a creator
    except OSError as exc:
        if exc.errno in _SKIP_MARK:
            return False  # not sweepable there; everything else still works
        raise
    return True


class Claim:
    """The lock (and mark) on one object hardtemp will remove itself.

    ``fd`` is a descriptor of the object's open file description holding
    ``LOCK_SH``; it stays open until :meth:`release`. ``ident``: the object's
    ``(st_dev, st_ino)``; ``owner``: the pid :func:`claim` made the description's
    ``F_SETOWN`` owner (0: none; how :meth:`ours` tells our description from another).
    """

    __slots__ = ("borrowed", "fd", "ident", "marked", "owner")

    def __init__(
        self,
        fd: int,
        marked: bool,
        ident: tuple[int, int] | None = None,
        owner: int = 0,
        borrowed: bool = False,
    ) -> None:
        self.fd, self.marked, self.ident, self.owner = fd, marked, ident, owner
        self.borrowed = borrowed  # fd is the caller's own (it closes it): never closed here

    def ours(self) -> bool:
        """Whether ``fd`` is still our open file description of the object.

        A number is just a number: code that closes it twice (a library's double close)
        frees it for the next ``open()``, of another file or of this very object by name
        (review8). Such a description has another inode (``fstat``), or no owner (a new
        description's ``F_GETOWN`` is 0; ours is the claiming pid since :func:`claim`, also
        in a forked child, which shares the description) and no ``flock`` of its own. The
        user's own use of its file may change that owner (a program handed it that makes
        itself the owner, a lease given back), never drop our ``flock`` short of unlocking
        it (review9): an owner that is not ours asks whether this very description holds a
        ``flock`` (:func:`_holds_flock`). Never raises.
        """
        return self._stat_if_ours() is not None

    def _stat_if_ours(self) -> os.stat_result | None:
        """:meth:`ours`, keeping its ``fstat`` of ``fd`` for the caller (None: not ours)."""
        fd = self.fd
        if fd < 0:
            return None
        try:
            # An open() of our own name on our freed number: same inode, not our description.
            other = bool(self.owner) and fcntl.fcntl(fd, fcntl.F_GETOWN) != self.owner
            st = os.fstat(fd)  # another file's open() on our freed number
        except OSError:  # EBADF: closed
            return None
        if self.ident is not None and (st.st_dev, st.st_ino) != self.ident:
            return None
        # Our inode, another owner: the user's use of its file (whose description ours is)
        # or another open() of our name; only ours holds the flock claim() took (review9).
        if other and not _holds_flock(fd):
            return None
        return st

    def adopt(self) -> None:
        """The borrowed descriptor is about to be closed while the object lives on (the
        application closed the underlying file object, not the wrapper that removes it):
        the lock is held from now on through a duplicate of our own, as ``claim(dup=True)``
        holds it, so that the live, named object is never taken for an orphan (review9).
        Best effort: without a free descriptor it stays unlocked (the second opinion, our
        pid, still guards it where the sweeper can see it)."""
        if not self.ours():
            # A double close freed the number for another file (the application's pipe):
            # a duplicate of that would be forgotten later, never closed (review10).
            self.forget()
            return
        try:
            fd = high_dup(self.fd)
        except OSError:  # EMFILE
            return
        self.fd, self.owner, self.borrowed = fd, _own(fd), False

    def forget(self) -> None:
        """The number is someone else's now: never closed, unlocked or unmarked by us."""
        self.fd = -1

    def unmark(self) -> None:
        """Remove the mark through our descriptor: the user keeps the object."""
        if self.marked:
            if not self.ours():
                self.forget()  # removexattr there would unmark another file (its owner's)
            else:
                self._unmark()

    def _unmark(self) -> None:
        with contextlib.suppress(OSError):
            os.removexattr(self.fd, OWNER_XATTR)
        self.marked = False

    def remark(self, dir_fd: int, name: str | bytes) -> None:
        """Mark again (a failed persist: still a temp file); best effort."""
        if not self.ours():
            self.forget()  # never a mark on a file another open() put at our number
            return
        with contextlib.suppress(OSError):
            self.marked = mark(self.fd, dir_fd, name)

    def release(
        self, dir_fd: int, name: str | bytes, *, unlinked: bool = False, checked: bool = False
    ) -> None:
        """Done with the object: drop the lock; if the inode lives on under another
        name (the user moved it away to keep it), remove its mark first.

        ``unlinked``: the caller has just unlinked the object's only name itself, so it
        lives on under no name (nothing to look at). ``checked``: the caller has just
        found :meth:`ours` true. A number that is no longer ours is forgotten, not closed.
        """
        if self.fd < 0:
            return
        st = None if checked else self._stat_if_ours()
        if not checked and st is None:
            self.forget()  # closing it would close the application's file (review8)
            return
        try:
            # fstat of our own open descriptor (the check's, if it made one); _named and
            # _unmark never raise.
            if (
                self.marked
                and not unlinked
                and (st or os.fstat(self.fd)).st_nlink > 0
                and not _named(self.fd, dir_fd, name)
            ):
                self._unmark()
        finally:
            self.close(checked=True)

    def close(self, *, checked: bool = False) -> None:
        """Drop this process's hold on the lock (a forked child: the parent keeps its own);
        a number that is no longer :meth:`ours` is forgotten, not closed (unless
        ``checked``: the caller has just found it ours)."""
        if self.fd >= 0:
            if self.borrowed:
                self.forget()  # the caller's descriptor: its owner closes it
                return
            if not checked and not self.ours():
                self.forget()  # closing it would close another file's descriptor
                return
            fd, self.fd = self.fd, -1
            os.close(fd)


def _holds_flock(fd: int) -> bool:
    """Whether the open file description at ``fd`` itself holds a ``flock`` (its line in
    ``/proc/self/fdinfo/N``, which lists only the locks of that very description: a new
    ``open()`` of the same inode shows none until its opener locks it). False without
    ``/proc`` (then the claim is forgotten, never closed: the cautious side)."""
    text = fdinfo(fd, 65536)
    if text is None:
        return False
    return any(line.startswith(b"lock:") and b" FLOCK " in line for line in text.splitlines())


#: :func:`pid`'s bits that are the pid itself (the rest count forks).
_PID_MASK = 0xFFFFFFFF


def _named(fd: int, dir_fd: int, name: str | bytes) -> bool:
    """Whether ``name`` in ``dir_fd`` still refers to ``fd``'s inode."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def lock_shared(fd: int) -> None:
    """``LOCK_SH`` on ``fd`` for as long as it is open (best effort: never fails)."""
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_SH)  # temp cleaners (systemd-tmpfiles >= 254) skip it


def claim(  # long: the dup, its owner, the lock and the mark, each undone on failure
    fd: int,
    dir_fd: int,
    name: str | bytes,
    *,
    dup: bool,
    borrow: bool = False,
    marked: bool = True,
    dir_ident: tuple[int, int] | None = None,
    real_fd: bool = False,
    euid: int | None = None,
    ident: tuple[int, int] | None = None,
    statx: bytes | None = None,
) -> Claim:
    """Lock the object open at ``fd`` (``LOCK_SH``) and, if ``marked``, mark it for the sweeper.

    With ``dup`` the lock is held through a duplicate of ``fd`` (the same open
    file description: the object stays locked after the caller closes ``fd``,
    and the caller's own ``flock`` calls on ``fd`` convert this very lock), at a
    high descriptor number (:func:`high_dup`); with ``borrow`` through ``fd``
    itself, which stays the caller's (for an object removed before ``fd`` is
    closed: no second descriptor, so none whose number a double close can free);
    otherwise the returned claim owns ``fd``. Where ``flock`` is unsupported
    the object is not marked either (an unlocked mark would look orphaned).
    ``dir_ident``, ``real_fd``, ``euid``, ``statx``: as for :func:`mark` (``statx`` of
    ``fd``'s inode: the duplicate's is the same); ``ident``: the object's
    ``(st_dev, st_ino)``, which :meth:`Claim.ours` compares.

    Raises:
        OSError: ``dup`` or writing the mark failed (``EMFILE``, ``EIO``...);
            nothing is left open or marked.
    """
    lock_fd = high_dup(fd) if dup else fd
    try:
        owner = 0 if borrow else _own(lock_fd)  # (a borrowed number: the caller's alone)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_SH)
        except OSError:  # e.g. ENOLCK on some network filesystems: not sweepable there
            return Claim(lock_fd, False, ident, owner, borrow)
        # The mark only after the lock: a marked live object is never seen unlocked.
        return Claim(
            lock_fd,
            marked
            and mark(
                lock_fd,
                dir_fd,
                name,
                dir_ident=dir_ident,
                real_fd=real_fd,
                euid=euid,
                statx=statx,
            ),
            ident,
            owner,
            borrow,
        )
    except BaseException:
        if dup:
            os.close(lock_fd)
        raise


def _own(fd: int) -> int:
    """Make our process ``fd``'s open file description's ``F_SETOWN`` owner; returns our
    pid, or 0 where that failed (``ENOMEM``: the claim is then told by its inode alone).

    A later ``open()`` on our number, freed by a double close, is another description
    (owner 0) even of our very inode (:meth:`Claim.ours`)."""
    owner = pid() & _PID_MASK
    try:
        fcntl.fcntl(fd, fcntl.F_SETOWN, owner)
    except OSError:
        return 0
    return owner


def high_dup(fd: int) -> int:
    """A close-on-exec duplicate of ``fd`` at the highest free number below :func:`_top`
    (any free number where none is to be had).

    Numbers are handed out lowest-free: a library that closes a number twice closes one it
    once held, which ``open()`` or ``dup()`` gave it, so one below the most this process
    ever had open at once. A duplicate at the top of the range is never that number in a
    process that did not nearly fill it (a busy server's 700 sockets included), so no such
    double close frees it for the application's next ``open()`` or ``dup()`` (review8,
    review9), which our cleanup would take for ours (a ``dup`` is our very description).

    ``F_DUPFD`` gives the lowest free number at or above its floor. With the limit at or
    below the cap, the floor starts just below the top and goes down by doubling steps
    while all above it are taken (one ``fcntl`` with the top free, about log2(n) more with
    n numbers of ours up there). Above the cap, a number at or above it would grow the
    kernel's table (:data:`_FD_CAP`): the top few numbers are looked at one by one
    (``F_GETFD``) and the first free one taken; with all of them taken, the lowest free
    number from half the cap up.

    Raises:
        OSError: no descriptor is free (``EMFILE``).
    """
    top, capped = _top()
    if capped:
        for n in range(top - 1, top - 1 - _PROBES, -1):
            try:
                fcntl.fcntl(n, fcntl.F_GETFD)  # taken
            except OSError:  # EBADF: free, and F_DUPFD's lowest free number from n
                return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, n)
        floors = [top // 2]
    else:
        floors = [top - step for step in _STEPS if step <= top]
    for floor in floors:
        try:
            return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor)
        except OSError as exc:
            # EMFILE: all from the floor up are taken; EINVAL: the limit was lowered since.
            if exc.errno not in (errno.EINVAL, errno.EMFILE):
                raise
    return os.dup(fd)  # (all below the top are taken: any free number)


_PROBES = 8  # above the cap: how many numbers below it are looked at one by one
_STEPS = [1 << k for k in range(31)]  # the floor's steps below the top, at or below the cap


#: The highest number a claim's duplicate is put just below, whatever the limit: the kernel
#: sizes a process's descriptor table (and every forked or spawned child's copy, kept after
#: exec) to the power of two above its highest open number: 32 KiB at 4096 (measured: about
#: 130 KiB of unreclaimable kernel memory per child at 16384, 270 KiB at 20000), so a process
#: with more than about 4000 descriptors open at once can reach it (SECURITY.md).
_FD_CAP = 4096

try:
    from resource import RLIMIT_NOFILE as _NOFILE
    from resource import getrlimit as _getrlimit
except ImportError:  # pragma: no cover - every Linux Python has resource
    _getrlimit = None  # type: ignore[assignment]


def _top() -> tuple[int, bool]:
    """The number a claim's duplicate goes just below, and whether the soft
    ``RLIMIT_NOFILE`` is above it (capped): that limit (asked at every claim: an
    application that raises it after import moves the top up), at most :data:`_FD_CAP`.
    ``F_DUPFD`` refuses a floor at or above that limit; ``RLIM_INFINITY`` is -1 here."""
    if _getrlimit is None:  # pragma: no cover
        return _FD_CAP, True
    try:
        soft = _getrlimit(_NOFILE)[0]
    except (OSError, ValueError):  # pragma: no cover - getrlimit of our own process
        return _FD_CAP, True
    return (soft, False) if 0 <= soft <= _FD_CAP else (_FD_CAP, True)


# --------------------------------------------------------------------------- the verdict


class Verdict(Enum):
    """What :func:`judge` decided about one entry."""

    ORPHAN = "orphan"  # remove it (while holding Judgement.lock_fd)
    IN_USE = "in use"  # locked, or the creator still runs
    UNMARKED = "unmarked"  # no mark, or one that does not verify: not ours to touch
    OTHER_USER = "other user"  # owned by someone else: never touched
    UNCHECKABLE = "uncheckable"  # ours and marked, but its lock cannot be tested


@dataclass
class Judgement:
    """A verdict, why, the creator's pid (if marked) and, for ORPHAN, the held lock."""

    verdict: Verdict
    reason: Reason  # a sentence with its stable code (SweepReason)
    owner_pid: int | None = None
    lock_fd: int = -1

    def close(self) -> None:
        """Drop the exclusive lock (after removal, or when not removing)."""
        if self.lock_fd >= 0:
            fd, self.lock_fd = self.lock_fd, -1
            os.close(fd)


def _verified(
    pfd: int, raw: bytes, key: bytes | None, dir_st: os.stat_result, name: str
) -> OwnerTag | None:
    """The creator tag of ``raw`` if it is our mark for this very entry and place."""
    parts = _split(raw)
    if parts is None or key is None:
        return None
    ident, bname = (dir_st.st_dev, dir_st.st_ino), os.fsencode(name)
    place = _place(pfd, ident, bname)
    if place is not None and _mac_matches(key, parts, place):
        return parts[0]
    if place is not None and place[0] == 1:
        # A writer without statx (a seccomp profile) bound the generation, as strong where
        # the filesystem has one: its leftovers are still ours to sweep.
        place = _generation_place(pfd, ident, bname)
        if place is not None and _mac_matches(key, parts, place):
            return parts[0]
    return None


# O_NONBLOCK|O_NOCTTY: opening for the lock test never blocks or acquires a terminal.
_LOCK_OPEN = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def _try_lock(pfd: int, st: os.stat_result) -> tuple[int, str | None]:
    """``(fd holding LOCK_EX, None)``, or ``(-1, why not)``."""
    try:
        fd = os.open(proc_path(pfd), _LOCK_OPEN)  # the inode pfd pins, not a new lookup
    except OSError as exc:  # pragma: no cover - reading the mark needed read permission too
        return -1, f"cannot open it to test its lock: {exc.strerror}"
    try:
        got = os.fstat(fd)
        if (got.st_dev, got.st_ino) != (st.st_dev, st.st_ino):  # pragma: no cover - kernel
            raise OSError(errno.ESTALE, "reopened another inode")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return -1, None
    except OSError as exc:
        os.close(fd)
        return -1, f"cannot test its lock: {exc.strerror}"
    return fd, ""


def judge(
    pfd: int, st: os.stat_result, dir_st: os.stat_result, name: str, key: bytes | None
) -> Judgement:
    """Decide whether the entry ``name`` (pinned by ``pfd``, ``O_PATH``) is an orphan.

    ``st`` is its ``fstat``, ``dir_st`` that of the directory it is in, ``key``
    the effective user's sweep key (None: nothing verifies). For ORPHAN the
    judgement holds ``LOCK_EX`` on the entry: close it after the removal.

    Raises: nothing (every failure is a verdict that keeps the entry).
    """
    if st.st_uid != os.geteuid():
        # Another user's entry: their data and their sweep (they can write any mark they like).
        return Judgement(
            Verdict.OTHER_USER, Reason(SweepReason.OTHER_USER, f"owned by uid {st.st_uid}")
        )
    try:
        raw = os.getxattr(proc_path(pfd), OWNER_XATTR)
    except OSError:
        return Judgement(Verdict.UNMARKED, Reason(SweepReason.NO_MARK, "no mark"))
    tag = _verified(pfd, raw, key, dir_st, name)
    if tag is None:
        # Forged, copied from another entry, moved or renamed since: never ours to remove.
        return Judgement(Verdict.UNMARKED, Reason(SweepReason.MARK_INVALID, "mark does not verify"))
    lock_fd, why = _try_lock(pfd, st)
    if lock_fd < 0:
        if why is None:
            locked = Reason(SweepReason.LOCKED, "locked: a live process holds it")
            return Judgement(Verdict.IN_USE, locked, tag.pid)
        return Judgement(Verdict.UNCHECKABLE, Reason(SweepReason.LOCK_UNTESTABLE, why), tag.pid)
    judgement = Judgement(Verdict.ORPHAN, Reason(SweepReason.ORPHAN, ""), tag.pid, lock_fd)
    try:
        # Re-read under the lock: a persist() that removed the mark meanwhile wins.
        raw_now = os.getxattr(proc_path(pfd), OWNER_XATTR)
        if raw_now != raw:
            raise OSError(errno.ESTALE, "mark changed")
    except OSError:
        judgement.close()
        removed = Reason(SweepReason.MARK_REMOVED, "mark removed meanwhile")
        return Judgement(Verdict.UNMARKED, removed, tag.pid)
    if owner_alive(tag):
        judgement.close()
        runs = Reason(SweepReason.CREATOR_RUNS, f"not locked, but creator pid {tag.pid} runs")
        return Judgement(Verdict.IN_USE, runs, tag.pid)
    judgement.reason = Reason(SweepReason.ORPHAN, f"{_death(tag)}, and no process holds its lock")
    return judgement


def is_regular_or_dir(st: os.stat_result) -> bool:
    """The only kinds hardtemp creates (symlinks, FIFOs, devices are never swept)."""
    return stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)
