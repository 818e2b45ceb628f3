"""The stable codes: one list of every verdict, level, action and reason hardtemp reports.

Prose changes; codes do not. Callers, tests and the JSON output of ``hardtemp check``,
``wipe --json`` and ``sweep --json`` match these codes, never the sentences.

Invariants:

* A code's value never changes once released, and is never reused for another meaning
  (add a new member instead; a retired one stays listed, documented as retired).
* Every reason sentence hardtemp produces is a :class:`Reason`: the type checker refuses a
  plain ``str`` where a reason is expected, so no sentence goes out without its code.
* A :class:`Reason` *is* its sentence (a ``str``): code that shows, joins or compares the
  prose is unchanged; ``.code`` is the stable part. It pickles with its code.
* The lists in ``docs/cli.md`` and ``docs/wipe.md`` are tested to name exactly these codes.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self

__all__ = [
    "Action",
    "FindingCode",
    "FsReason",
    "KeyReason",
    "Level",
    "Reason",
    "SweepReason",
    "TrustReason",
    "Verdict",
    "WipeReason",
]


class Verdict(StrEnum):
    """How far an overwrite in place can be trusted (``FsInfo.verdict``, ``WipeReport.verdict``)."""

    IN_PLACE = "in place"
    NOT_IN_PLACE = "not in place"
    VOLATILE = "volatile"
    BEST_EFFORT = "best effort"
    SKIPPED = "skipped"  # a wipe only: not overwritten on purpose

    @property
    def trustworthy(self) -> bool:
        """Whether no readable copy of the old data is known to survive an overwrite."""
        return self in (Verdict.IN_PLACE, Verdict.VOLATILE)


class Level(StrEnum):
    """Severity of a ``hardtemp check`` finding, least severe first."""

    OK = "ok"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class FindingCode(StrEnum):
    """The ``code`` of a ``hardtemp check`` finding: what ``--ignore CODE`` takes."""

    DIR_TRUSTED = "dir.trusted"
    DIR_UNTRUSTED = "dir.untrusted"
    DIR_MISSING = "dir.missing"
    DIR_UNUSABLE = "dir.unusable"
    DIR_NOT_WRITABLE = "dir.not_writable"
    FS_VERDICT = "fs.verdict"
    FS_UNKNOWN = "fs.unknown"
    MOUNT_OPTIONS = "mount.options"
    O_TMPFILE = "o_tmpfile"
    SWAP = "swap"
    SYSCTL = "sysctl"
    XDG_RUNTIME_DIR = "xdg_runtime_dir"
    TEMPDIR_NONE = "tempdir.none"


class Action(StrEnum):
    """What ``sweep`` did to a marked entry."""

    REMOVED = "removed"
    WOULD_REMOVE = "would remove"  # a dry run
    KEPT = "kept"
    FAILED = "failed"


class FsReason(StrEnum):
    """Why a filesystem or file got its verdict (``FsInfo.reasons``)."""

    NO_JOURNAL = "fs.no_journal"
    DATA_JOURNAL = "fs.data_journal"
    DATA_ORDERED = "fs.data_ordered"
    DATA_WRITEBACK = "fs.data_writeback"
    DATA_MODE_UNKNOWN = "fs.data_mode_unknown"
    XFS = "fs.xfs_in_place"
    COPY_ON_WRITE = "fs.copy_on_write"
    LOG_STRUCTURED = "fs.log_structured"
    RAMFS = "fs.ramfs"
    TMPFS = "fs.tmpfs"
    OVERLAY = "fs.overlay"
    REMOTE = "fs.remote"
    UNKNOWN_FS = "fs.unrecognized"
    NOSWAP_MOUNT = "swap.noswap_mount"
    NO_SWAP = "swap.none"
    SWAP_ACTIVE = "swap.active"
    DEVICE_UNKNOWN = "device.unknown"
    DEVICE_UNINSPECTABLE = "device.uninspectable"
    LOOP_DEVICE = "device.loop"
    VIRTUAL_DISK = "device.virtual"
    ROTATIONAL = "device.rotational"
    NON_ROTATIONAL = "device.non_rotational"
    DEVICE_KIND_UNKNOWN = "device.kind_unknown"
    JOURNAL_DATA_FLAG = "file.journal_data_flag"
    INLINE_DATA = "file.inline_data"
    NOCOW_UNCHECKED = "file.nocow_unchecked"
    NOCOW_INLINE = "file.nocow_inline"
    NOCOW_SHARED = "file.nocow_shared"
    NOCOW_IN_PLACE = "file.nocow_in_place"
    SHARED_EXTENTS = "file.shared_extents"
    SHARED_UNCHECKED = "file.shared_unchecked"


class WipeReason(StrEnum):
    """Why a wipe got its verdict or what went wrong (``WipeReport.reasons``), on top of the
    :class:`FsReason` codes of the file's filesystem."""

    FS_UNIDENTIFIED = "wipe.fs_unidentified"
    OVERWRITE_FAILED = "wipe.overwrite_failed"
    OVERWRITE_INTERRUPTED = "wipe.overwrite_interrupted"
    OPEN_FAILED = "wipe.open_failed"
    NOT_WRITABLE = "wipe.not_writable_not_ours"
    HARD_LINKS_SKIPPED = "wipe.hard_links_skipped"
    HARD_LINKS_OVERWRITTEN = "wipe.hard_links_overwritten"
    NOT_REGULAR = "wipe.not_regular"
    NOT_REQUESTED = "wipe.not_requested"
    HIDE_FAILED = "wipe.hide_failed"
    DIR_SYNC_FAILED = "wipe.dir_sync_failed"


class SweepReason(StrEnum):
    """Why ``sweep`` judged a marked entry as it did (``SweepEntry.code``)."""

    ORPHAN = "sweep.orphan"
    LOCKED = "sweep.locked"
    CREATOR_RUNS = "sweep.creator_runs"
    LOCK_UNTESTABLE = "sweep.lock_untestable"
    FOREIGN_INSIDE = "sweep.foreign_inside"
    REMOVAL_FAILED = "sweep.removal_failed"
    # Counted, not listed as entries (``unmarked``, ``other_users``):
    OTHER_USER = "sweep.other_user"
    NO_MARK = "sweep.no_mark"
    MARK_INVALID = "sweep.mark_invalid"
    MARK_REMOVED = "sweep.mark_removed"
    # Why a directory was not swept (``skipped_dirs``):
    DIR_UNTRUSTED = "sweep.dir_untrusted"
    DIR_UNUSABLE = "sweep.dir_unusable"
    DIR_UNREADABLE = "sweep.dir_unreadable"


class TrustReason(StrEnum):
    """Which trust rule a directory or symlink broke (``UnsafeDirectoryError.reason.code``)."""

    OTHER_OWNER = "trust.other_owner"
    WRITABLE_NO_STICKY = "trust.writable_no_sticky"
    SYMLINK_OTHER_OWNER = "trust.symlink_other_owner"


class KeyReason(StrEnum):
    """Why there is no usable sweep key (``SweepResult.key_code``, ``key_problem``)."""

    NONE_YET = "key.none_yet"  # never made: not an error
    NO_DIR = "key.no_dir"  # its directory was never made: not an error
    DIR_UNTRUSTED = "key.dir_untrusted"
    DIR_UNUSABLE = "key.dir_unusable"
    NOT_OWNED = "key.not_owned"
    BAD_MODE = "key.bad_mode"
    NOT_REGULAR = "key.not_regular"
    LINKS = "key.links"
    BAD_SIZE = "key.bad_size"
    UNREADABLE = "key.unreadable"


class Reason(str):
    """A reason sentence that carries its stable :attr:`code`.

    Equal to (and shown as) its sentence; ``code`` is what callers should match.
    """

    code: str

    def __new__(cls, code: str, text: str) -> Self:
        self = super().__new__(cls, text)
        self.code = str(code)
        return self

    def __reduce__(self) -> tuple[type[Reason], tuple[str, str]]:
        return (type(self), (self.code, str(self)))

    def __repr__(self) -> str:
        return f"Reason({self.code!r}, {str(self)!r})"
