"""The audit behind ``hardtemp check``: where would sensitive temp data go here?

:func:`audit` inspects each :func:`~hardtemp._tempdir.candidate_tempdir_list`
entry and each directory it is given, plus the machine-wide settings that
decide what other local users and a later reader of the disk can do, and
returns structured :class:`Finding` objects. Nothing is changed: the only
thing created is an unnamed ``O_TMPFILE`` inode in a *verified* directory,
closed at once (it never has a name and its blocks are freed on close).

Levels, from least to most severe (see :data:`LEVELS`):

* ``ok``: a check passed; shown so an auditor sees what was checked.
* ``info``: a fact worth knowing that weakens nothing hardtemp promises
  (a candidate that does not exist, ``O_TMPFILE`` unsupported, ``noexec``
  missing, ``XDG_RUNTIME_DIR`` unset).
* ``warning``: data may outlive its file or other programs are exposed:
  the overwrite is not reliable on that filesystem, swap is active (or
  cannot be determined), a ``fs.protected_*`` sysctl is off, ``nodev``/``nosuid`` are missing on a
  directory others can write, ``XDG_RUNTIME_DIR`` is not private.
* ``error``: another local user can attack temp files right now: a
  candidate or given directory (or an ancestor, or a symlink on the way) is
  not trusted, a given directory is missing, or no candidate is usable.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

import psutil  # type: ignore[import-untyped]

from . import _fsinfo
from ._codes import FindingCode, Level, TrustReason
from ._dirtrust import DirHandle, check_dir, trusted_dir
from ._tempdir import candidate_tempdir_list, gettempdir
from .exceptions import HardtempError, UnsafeDirectoryError

__all__ = [
    "LEVELS",
    "SCHEMA",
    "Audit",
    "DirAudit",
    "Finding",
    "audit",
    "level_rank",
]

#: Severity levels, least severe first.
LEVELS = tuple(Level)
#: The ``schema`` field of the JSON document; bumped on incompatible changes.
SCHEMA = "hardtemp-check/1"

_SYSCTLS = ("protected_symlinks", "protected_hardlinks", "protected_regular", "protected_fifos")
# O_TMPFILE|O_EXCL: the probe inode can never be given a name, so nothing is left behind.
_TMPFILE_PROBE = os.O_RDWR | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_TMPFILE", 0)


def level_rank(level: str) -> int:
    """Position of ``level`` in :data:`LEVELS`.

    Raises:
        ValueError: ``level`` is not one of :data:`LEVELS`.
    """
    try:
        return LEVELS.index(level)
    except ValueError:
        raise ValueError(f"unknown level {level!r}; expected one of {', '.join(LEVELS)}") from None


@dataclass(frozen=True)
class Finding:
    """One result: how severe, a stable ``code``, what it is about, what to do."""

    level: Level
    code: FindingCode
    subject: str
    message: str
    details: tuple[str, ...] = ()
    hint: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "code": self.code,
            "subject": self.subject,
            "message": self.message,
            "details": list(self.details),
            "hint": self.hint,
        }


@dataclass
class DirAudit:
    """Everything found about one directory."""

    path: str
    origins: list[str]
    selected: bool = False
    exists: bool = False
    real_path: str | None = None
    trusted: bool | None = None
    shared: bool | None = None
    writable: bool | None = None
    filesystem: _fsinfo.FsInfo | None = None
    o_tmpfile: bool | None = None
    findings: list[Finding] = field(default_factory=list)

    def add(
        self, level: Level, code: FindingCode, message: str, *details: str, hint: str = ""
    ) -> None:
        self.findings.append(Finding(level, code, self.path, message, tuple(details), hint))

    def to_json(self) -> dict[str, Any]:
        fs = self.filesystem
        return {
            "path": self.path,
            "origins": list(self.origins),
            "selected": self.selected,
            "exists": self.exists,
            "real_path": self.real_path,
            "trusted": self.trusted,
            "shared": self.shared,
            "writable": self.writable,
            "filesystem": None
            if fs is None
            else {
                "fstype": fs.fstype,
                "mountpoint": fs.mountpoint,
                "source": fs.source,
                # Mount and superblock options both say rw/ro: each listed once.
                "options": list(dict.fromkeys(fs.options)),
                "verdict": fs.verdict,
                "reasons": list(fs.reasons),
                "reason_codes": list(fs.codes),
            },
            "o_tmpfile": self.o_tmpfile,
            "findings": [f.to_json() for f in self.findings],
        }


@dataclass
class Audit:
    """The whole audit: per-directory results and machine-wide findings."""

    tempdir: str | None
    directories: list[DirAudit]
    system: list[Finding]
    swap: dict[str, Any]
    sysctls: dict[str, int | None]
    xdg_runtime_dir: str | None
    #: ``check --ignore``: ``CODE`` (every finding with that code) or ``CODE:SUBJECT``.
    ignore: list[str] = field(default_factory=list)

    def findings(self) -> list[Finding]:
        out = [f for d in self.directories for f in d.findings]
        return out + self.system

    def ignored(self, f: Finding) -> bool:
        """Whether ``--ignore`` accepts ``f`` (a warning or error): it is then shown, marked,
        but never fails the gate. ok and info findings are never marked: they fail nothing."""
        if level_rank(f.level) < level_rank(Level.WARNING):
            return False
        return f.code in self.ignore or f"{f.code}:{f.subject}" in self.ignore

    def unmatched_ignores(self) -> list[str]:
        """The ``--ignore`` entries that matched no finding (a typo, or fixed meanwhile)."""
        found = {key for f in self.findings() for key in (f.code, f"{f.code}:{f.subject}")}
        return [i for i in self.ignore if i not in found]

    def ignore_notes(self) -> list[str]:
        """One note per ``--ignore`` entry that matched no finding, saying when its code is
        none of the :class:`~hardtemp._codes.FindingCode` codes (a typo, never a match)."""
        notes = []
        for entry in self.unmatched_ignores():
            code = entry.partition(":")[0]
            known = code in set(FindingCode)
            notes.append(
                f"--ignore {entry} matched no finding"
                + ("" if known else f": {code} is not a finding code")
            )
        return notes

    def max_level(self) -> str:
        levels = (f.level for f in self.findings() if not self.ignored(f))
        return max(levels, key=level_rank, default=Level.OK)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys((*LEVELS, "ignored"), 0)
        for f in self.findings():
            counts["ignored" if self.ignored(f) else f.level] += 1
        return counts

    def reaches(self, fail_on: str) -> bool:
        """Whether any finding is at least as severe as ``fail_on`` (never for ``"never"``).

        Raises:
            ValueError: ``fail_on`` is not a level nor ``"never"``.
        """
        if fail_on == "never":
            return False
        return level_rank(self.max_level()) >= level_rank(fail_on)

    def to_json(self, fail_on: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schema": SCHEMA,
            "hardtemp_version": _version(),
            "euid": os.geteuid(),
            "tempdir": self.tempdir,
            "fail_on": fail_on,
            "ignore": list(self.ignore),
            "max_level": self.max_level(),
            "failed": self.reaches(fail_on),
            "counts": self.counts(),
            "directories": [d.to_json() for d in self.directories],
            "system": {
                "swap": self.swap,
                "sysctls": {f"fs.{k}": v for k, v in self.sysctls.items()},
                "xdg_runtime_dir": self.xdg_runtime_dir,
                "findings": [f.to_json() for f in self.system],
            },
        }
        pairs = [
            (f, j)
            for d, dj in zip(self.directories, data["directories"], strict=True)
            for f, j in zip(d.findings, dj["findings"], strict=True)
        ]
        pairs += list(zip(self.system, data["system"]["findings"], strict=True))
        for f, j in pairs:
            j["ignored"] = self.ignored(f)
        return data


def _version() -> str:
    pkg = sys.modules.get("hardtemp")
    return str(getattr(pkg, "__version__", "unknown"))


# --------------------------------------------------------------------------- directories


def _absolute(path: str) -> str:
    """``path`` made absolute WITHOUT resolving ``..`` lexically.

    ``os.path.abspath("/tmp/link/..")`` is ``/tmp``, but a program writing to
    ``$TMPDIR/x`` reaches the parent of wherever ``link`` points: the trust walk
    must see the ``..`` after the symlink (a hostile link then shows as untrusted).
    Only empty and ``.`` components, which mean nothing, are dropped.
    """
    if not path.startswith("/"):
        path = os.getcwd().rstrip("/") + "/" + path
    parts = [c for c in path.split("/") if c not in ("", ".")]
    return "/" + "/".join(parts)


def _candidates(extra: list[str]) -> list[tuple[str, list[str]]]:
    """(absolute path, origins) for every candidate and given directory, merged."""
    cands = candidate_tempdir_list()
    env = [f"${v}" for v in ("TMPDIR", "TEMP", "TMP") if os.getenv(v)]
    named: list[tuple[str, str]] = []
    for i, cand in enumerate(cands):
        if i < len(env):
            origin = env[i]
        elif i >= len(env) + 3:
            origin = "current directory, last resort"
        else:
            origin = "default candidate"
        named.append((cand, origin))
    named += [(d, "argument") for d in extra]
    merged: dict[str, list[str]] = {}
    for path, origin in named:
        origins = merged.setdefault(_absolute(path), [])
        if origin not in origins:
            origins.append(origin)
    return list(merged.items())


def _severity_for_missing(d: DirAudit) -> Level:
    if "argument" in d.origins:
        return Level.ERROR  # the user asked about it
    if any(o.startswith("$") for o in d.origins):
        return Level.WARNING  # set in the environment but unusable: programs fall back elsewhere
    return Level.INFO


def _skip_notes(d: DirAudit, only_last_resort: bool) -> list[str]:
    if only_last_resort:
        return ["hardtemp skips it (the current directory is used only when all else fails)"]
    env = [o for o in d.origins if o.startswith("$")]
    if env:
        return [
            f"hardtemp skips it (with an UnsafeCandidateWarning) although {env[0]} names it; "
            "programs using the standard tempfile module, shells and compilers use it as is"
        ]
    return []


def _trust_hint(exc: UnsafeDirectoryError) -> str:
    """What fixes it: ownership for another user's directory or symlink, else the mode."""
    me = "root" if os.geteuid() == 0 else f"uid {os.geteuid()}"
    code = getattr(exc.reason, "code", None)  # matched by code, never by the sentence
    if code == TrustReason.SYMLINK_OTHER_OWNER:
        return (
            f"replace the symlink {exc.path} by one owned by {me} (or root), or point TMPDIR "
            "at the directory it leads to"
        )
    if code == TrustReason.OTHER_OWNER:
        return (
            f"make it root's or yours (e.g. chown {os.geteuid()} {exc.path}; only its owner, "
            f"{me}, should be able to change it), or point TMPDIR at a private 0700 directory"
        )
    return (
        f"fix the mode of {exc.path} (chmod +t to add the sticky bit, or chmod go-w), "
        "or point TMPDIR at a private 0700 directory"
    )


def _add_untrusted(d: DirAudit, exc: UnsafeDirectoryError) -> None:
    d.exists = True
    d.trusted = False
    d.shared = True  # others can change it (or a component on the way): treat as shared
    only_last_resort = d.origins == ["current directory, last resort"]
    d.add(
        Level.WARNING if only_last_resort else Level.ERROR,
        FindingCode.DIR_UNTRUSTED,
        f"NOT TRUSTED: {exc.path}: {exc.reason}",
        "another local user can rename, replace or plant entries there: a program "
        "using this directory can have its temp files read, swapped or redirected",
        *_skip_notes(d, only_last_resort),
        hint=_trust_hint(exc),
    )


def _check_trust(d: DirAudit) -> DirHandle | None:
    """Trust of the directory and its ancestors; its handle (an O_PATH-or-better fd, open
    while the handle lives) when trusted."""
    try:
        report = check_dir(d.path)
    except UnsafeDirectoryError as exc:
        _add_untrusted(d, exc)
        return None
    except FileNotFoundError:
        d.add(_severity_for_missing(d), FindingCode.DIR_MISSING, "does not exist")
        return None
    except (OSError, ValueError) as exc:
        d.exists = True
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        d.add(_severity_for_missing(d), FindingCode.DIR_UNUSABLE, f"cannot be checked: {why}")
        return None
    d.exists = True
    d.trusted = True
    d.real_path = report.real_path
    try:
        handle = trusted_dir(d.path)
    except (OSError, ValueError) as exc:  # changed between the two walks
        d.add(Level.ERROR, FindingCode.DIR_UNTRUSTED, f"changed while being checked: {exc}")
        d.trusted = False
        return None
    st = os.fstat(handle.fd)
    d.shared = bool(st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))
    where = f" (resolves to {report.real_path})" if report.real_path != d.path else ""
    if d.shared:
        summary = (
            f"trusted{where}: every component is owned by root or you; shared with "
            "other users but sticky, so they cannot rename or delete your entries"
        )
    else:
        summary = f"trusted{where}: private, only root and you can change it"
    d.add(
        Level.OK,
        FindingCode.DIR_TRUSTED,
        summary,
        *(
            f"{c.kind} {c.path}: uid {c.uid} {stat.filemode(c.mode)}: {c.why}"
            for c in report.components
        ),
    )
    d.writable = os.access(".", os.W_OK | os.X_OK, dir_fd=handle.fd, effective_ids=True)
    if not d.writable:
        d.add(
            Level.INFO,
            FindingCode.DIR_NOT_WRITABLE,
            "not writable by you: hardtemp will not use it",
        )
    return handle


_FS_MESSAGE = {
    _fsinfo.IN_PLACE: "an overwrite before removal reaches the old blocks",
    _fsinfo.VOLATILE: "data lives in RAM only and is gone at unmount or power-off",
    _fsinfo.BEST_EFFORT: "an overwrite before removal may not reach every old copy",
    _fsinfo.NOT_IN_PLACE: "an overwrite before removal does NOT reach the old blocks",
}


def _check_fs(d: DirAudit) -> None:
    try:
        info = _fsinfo.fs_info_for_path(d.real_path or d.path)
    except OSError as exc:
        d.add(
            Level.INFO, FindingCode.FS_UNKNOWN, f"filesystem not identified: {exc.strerror or exc}"
        )
        return
    d.filesystem = info
    level = Level.OK if info.verdict.trustworthy else Level.WARNING
    # Without a readable mount table only statfs() named the filesystem.
    where = f"{info.source} on {info.mountpoint}" if info.mountpoint else "mount point unknown"
    d.add(
        level,
        FindingCode.FS_VERDICT,
        f"{info.fstype} ({where}): overwrite {info.verdict}: "
        f"{_FS_MESSAGE.get(info.verdict, info.verdict)}",
        *info.reasons,
        hint=""
        if level is Level.OK
        else "keep sensitive data in hardtemp.TemporaryFile (encrypted by default), or "
        "point TMPDIR at a filesystem where the overwrite is reliable (ext4 data=ordered, "
        "xfs) or at a tmpfs on a machine without swap",
    )
    opts = set(info.options)
    missing = [o for o in ("nodev", "nosuid", "noexec") if o not in opts]
    present = [o for o in ("nodev", "nosuid", "noexec") if o in opts]
    if not missing:
        d.add(Level.OK, FindingCode.MOUNT_OPTIONS, "mounted nodev,nosuid,noexec")
        return
    serious = [o for o in missing if o in ("nodev", "nosuid")]
    if d.shared and serious:
        d.add(
            Level.WARNING,
            FindingCode.MOUNT_OPTIONS,
            f"shared directory on a filesystem mounted without {','.join(missing)}"
            + (f" (has {','.join(present)})" if present else ""),
            "nosuid: a setuid program hard-linked or planted there keeps its privileges",
            "nodev: a device node there opens the device it names",
            hint="mount a dedicated filesystem (e.g. tmpfs) on it with nodev,nosuid,noexec",
        )
    else:
        d.add(
            Level.INFO,
            FindingCode.MOUNT_OPTIONS,
            f"mounted without {','.join(missing)}"
            + (f" (has {','.join(present)})" if present else "")
            + ("" if d.shared else ": only root and you can write there"),
            hint="noexec stops payloads dropped there from being run directly"
            if "noexec" in missing
            else "",
        )


def _check_tmpfile(d: DirAudit, fd: int) -> None:
    if not _TMPFILE_PROBE & getattr(os, "O_TMPFILE", 0):
        d.o_tmpfile = False
        d.add(Level.INFO, FindingCode.O_TMPFILE, "O_TMPFILE is not available on this platform")
        return
    if not d.writable:
        return
    try:
        probe = os.open(".", _TMPFILE_PROBE, 0o600, dir_fd=fd)
    except OSError as exc:
        d.o_tmpfile = False
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            d.add(
                Level.INFO,
                FindingCode.O_TMPFILE,
                "O_TMPFILE is not supported here: TemporaryFile creates a 0600 name and "
                "unlinks it at once (after checking it is still our inode)",
            )
        else:
            d.add(Level.WARNING, FindingCode.O_TMPFILE, f"O_TMPFILE failed: {exc.strerror}")
        return
    os.close(probe)
    d.o_tmpfile = True
    d.add(
        Level.OK, FindingCode.O_TMPFILE, "O_TMPFILE works: TemporaryFile never has a name on disk"
    )


def _audit_dir(path: str, origins: list[str], selected: str | None) -> DirAudit:
    d = DirAudit(path, origins, selected=(path == selected))
    handle = _check_trust(d)  # kept alive while its descriptor is used
    if d.exists:
        _check_fs(d)
    if handle is not None:
        _check_tmpfile(d, handle.fd)
    return d


# --------------------------------------------------------------------------- system


def _swap_devices() -> list[dict[str, Any]] | None:
    """The active swap devices from ``/proc/swaps``, ``None`` if it cannot be read."""
    devices: list[dict[str, Any]] = []
    try:
        with open("/proc/swaps", encoding="ascii", errors="replace") as f:
            for line in f.read().splitlines()[1:]:
                parts = line.split()
                if len(parts) >= 3:
                    devices.append({"device": parts[0].replace("\\040", " "), "type": parts[1]})
    except OSError:
        return None
    return devices


def _swap_places(devices: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """``(on_disk, in_ram)``: the devices whose pages can reach a disk, and zram without
    writeback. Records each zram device's ``backing_dev`` in its entry."""
    on_disk: list[str] = []
    in_ram: list[str] = []
    for x in devices:
        dev = x["device"]
        if dev.startswith("/dev/zram"):
            backing = _zram_backing(dev)
            x["backing_dev"] = backing
            if backing is None:
                in_ram.append(dev)
                continue
            # zram writeback: idle or incompressible pages go to this device in the clear.
            dev = f"{dev} (writes back to {backing})"
        on_disk.append(dev)
    return on_disk, in_ram


def _swap(out: list[Finding]) -> dict[str, Any]:
    listed = _swap_devices()
    devices = [] if listed is None else listed
    total: int | None
    try:
        total = int(psutil.swap_memory().total)
    except OSError:  # no readable /proc/meminfo (a chroot or sandbox without /proc)
        total = None
    on_disk, in_ram = _swap_places(devices)
    if total == 0 or (total is None and listed == []):
        out.append(
            Finding(
                Level.OK, FindingCode.SWAP, "system", "no swap is active: memory never reaches disk"
            )
        )
    elif total is None and not devices:
        # Unknown is not "no swap": the promise that memory stays in RAM is unverified.
        out.append(
            Finding(
                Level.WARNING,
                FindingCode.SWAP,
                "system",
                "whether swap is active cannot be determined (/proc/swaps and "
                "/proc/meminfo cannot be read): pages of temp data and keys may reach disk",
                hint="run the check where /proc is mounted, or verify with swapon --show",
            )
        )
    elif on_disk or not devices:
        out.append(
            Finding(
                Level.WARNING,
                FindingCode.SWAP,
                "system",
                "swap is active ("
                + ("size unknown" if total is None else f"{total // (1 << 20)} MiB")
                + (f" on {', '.join(on_disk)}" if on_disk else "")
                + "): pages of temp data, tmpfs files and keys may be written to disk "
                "and survive there",
                hint="disable swap, use encrypted swap (dm-crypt with a random key) or zram",
            )
        )
    else:
        out.append(
            Finding(
                Level.INFO,
                FindingCode.SWAP,
                "system",
                f"swap is active only on compressed RAM ({', '.join(in_ram)}): "
                "nothing reaches a disk",
            )
        )
    return {"total_bytes": total, "devices": devices}


#: Where zram devices publish ``backing_dev`` (a module constant so tests can point it elsewhere
#: inside a private mount namespace; the real one is read otherwise).
_SYS_BLOCK = "/sys/block"


def _zram_backing(device: str) -> str | None:
    """The device a zram swap writes pages back to, or None when it keeps them in RAM.

    ``backing_dev`` is missing when the kernel has no ``CONFIG_ZRAM_WRITEBACK`` (pages
    can then never leave RAM) and reads ``none`` when writeback is not configured. A
    file that cannot be read is reported as an unknown device: unverified is not "in RAM".
    """
    name = os.path.basename(device)
    try:
        with open(f"{_SYS_BLOCK}/{name}/backing_dev", encoding="utf-8", errors="replace") as f:
            value = f.read().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"an unknown device (backing_dev unreadable: {exc.strerror or exc})"
    return None if value in ("", "none") else value


# The value to recommend: 2 also covers group-writable sticky directories.
_SYSCTL_GOOD = {
    "protected_symlinks": 1,
    "protected_hardlinks": 1,
    "protected_regular": 2,
    "protected_fifos": 2,
}
_SYSCTL_TEXT = {
    "protected_symlinks": (
        "following another user's symlink in a sticky world-writable directory",
        "a symlink planted in /tmp redirects other programs' writes to files they can write",
    ),
    "protected_hardlinks": (
        "hard links to files the linker cannot write",
        "a hard link planted in /tmp makes other programs overwrite or chmod a file they own",
    ),
    "protected_regular": (
        "O_CREAT on another user's regular file in a sticky directory",
        "a file pre-created in /tmp under a predictable name is opened by other programs",
    ),
    "protected_fifos": (
        "O_CREAT on another user's FIFO in a sticky directory",
        "a FIFO pre-created in /tmp under a predictable name captures other programs' data",
    ),
}


_NOT_AFFECTED = (
    "hardtemp itself is not affected: it creates with O_EXCL|O_NOFOLLOW in verified directories"
)
# What the sysctl being off means for hardtemp itself, where that is not "nothing".
_HARDTEMP_TEXT = {
    "protected_hardlinks": (
        "hardtemp is affected too: another user can hard-link each new named temp file in a "
        "shared directory. The link gives no read access (0600) and does not make creation "
        "fail; NamedTemporaryFile overwrites through its descriptor before removing its name, "
        "so their link keeps no data, but a file you unlink yourself (mkstemp, or before "
        "close), or one left by a killed process, keeps its data on their link, readable "
        "by you and root only, until they delete it; wipe() refuses a file with several "
        "links. In a shared directory prefer TemporaryFile (no name) or a private directory"
    ),
}


def _sysctls(out: list[Finding]) -> dict[str, int | None]:
    values: dict[str, int | None] = {}
    for name in _SYSCTLS:
        try:
            with open(f"/proc/sys/fs/{name}", encoding="ascii") as f:
                values[name] = int(f.read().strip())
        except (OSError, ValueError):
            values[name] = None
        value = values[name]
        what, attack = _SYSCTL_TEXT[name]
        subject = f"fs.{name}"
        if value is None:
            out.append(
                Finding(Level.INFO, FindingCode.SYSCTL, subject, f"{subject} cannot be read")
            )
        elif value == 0:
            out.append(
                Finding(
                    Level.INFO if name == "protected_fifos" else Level.WARNING,
                    FindingCode.SYSCTL,
                    subject,
                    f"{subject} = 0: the kernel allows {what}",
                    (f"{attack} ({_HARDTEMP_TEXT.get(name, _NOT_AFFECTED)})",),
                    hint=f"sysctl -w {subject}={_SYSCTL_GOOD[name]} (persist it in /etc/sysctl.d/)",
                )
            )
        else:
            out.append(
                Finding(
                    Level.OK,
                    FindingCode.SYSCTL,
                    subject,
                    f"{subject} = {value}: the kernel refuses {what}",
                )
            )
    return values


def _xdg(out: list[Finding]) -> str | None:
    path = os.environ.get("XDG_RUNTIME_DIR") or None
    subject = "XDG_RUNTIME_DIR"
    if path is None:
        out.append(
            Finding(
                Level.INFO,
                FindingCode.XDG_RUNTIME_DIR,
                subject,
                "XDG_RUNTIME_DIR is not set: no per-user private RAM directory is advertised",
                hint="on a systemd machine a login session sets it (/run/user/UID, a 0700 tmpfs)",
            )
        )
        return None
    try:
        report = check_dir(path)
        fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            info = _fsinfo.fs_info_for_fd(fd)
        finally:
            os.close(fd)
    except UnsafeDirectoryError as exc:
        out.append(
            Finding(
                Level.WARNING, FindingCode.XDG_RUNTIME_DIR, subject, f"{path} is NOT TRUSTED: {exc}"
            )
        )
        return path
    except (OSError, ValueError) as exc:
        out.append(Finding(Level.WARNING, FindingCode.XDG_RUNTIME_DIR, subject, f"{path}: {exc}"))
        return path
    if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
        out.append(
            Finding(
                Level.WARNING,
                FindingCode.XDG_RUNTIME_DIR,
                subject,
                f"{path} is not private (uid {st.st_uid}, {stat.filemode(st.st_mode)}); "
                "the XDG spec requires owner-only 0700",
            )
        )
        return path
    out.append(
        Finding(
            Level.OK,
            FindingCode.XDG_RUNTIME_DIR,
            subject,
            f"{report.real_path} is private (0700, yours) on {info.fstype}: "
            f"overwrite {info.verdict}",
            hint="TMPDIR=$XDG_RUNTIME_DIR keeps temp files in this private directory"
            if info.verdict == _fsinfo.VOLATILE
            else "",
        )
    )
    return path


def audit(dirs: list[str] | None = None) -> Audit:
    """Audit every temp-dir candidate, each of ``dirs``, and the machine settings.

    Never raises for what it finds: every problem becomes a :class:`Finding`.

    Raises:
        ValueError: a directory in ``dirs`` is empty or contains NUL.
    """
    extra = list(dirs or [])
    for d in extra:
        if not d or "\0" in d:
            raise ValueError(f"invalid directory name {d!r}")
    system: list[Finding] = []
    selected: str | None = None
    with warnings.catch_warnings():
        # gettempdir() warns about every skipped candidate: those are findings here.
        warnings.simplefilter("ignore")
        try:
            selected = gettempdir()
        except HardtempError as exc:
            system.append(
                Finding(
                    Level.ERROR,
                    FindingCode.TEMPDIR_NONE,
                    "gettempdir",
                    "no trusted, writable temporary directory: hardtemp cannot create "
                    "temp files without an explicit dir=",
                    (exc.reason,),
                )
            )
    results = [_audit_dir(p, o, selected) for p, o in _candidates(extra)]
    swap = _swap(system)
    sysctls = _sysctls(system)
    xdg = _xdg(system)
    return Audit(selected, results, system, swap, sysctls, xdg)
