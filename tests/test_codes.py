"""_codes: stable codes for every verdict, level, action and reason, documented in one list."""

from __future__ import annotations

import json
import pickle
import re
from enum import StrEnum
from pathlib import Path

import pytest

import hardtemp
from hardtemp import _check
from hardtemp._codes import (
    Action,
    FindingCode,
    FsReason,
    KeyReason,
    Level,
    Reason,
    SweepReason,
    TrustReason,
    Verdict,
    WipeReason,
)
from hardtemp.exceptions import WipeError

ROOT = Path(__file__).resolve().parent.parent

#: The released values. A code never changes once released: if this list must change,
#: add a member instead (and a line here) — never edit or remove one.
RELEASED = {
    Verdict: ["in place", "not in place", "volatile", "best effort", "skipped"],
    Level: ["ok", "info", "warning", "error"],
    Action: ["removed", "would remove", "kept", "failed"],
    FindingCode: [
        "dir.trusted",
        "dir.untrusted",
        "dir.missing",
        "dir.unusable",
        "dir.not_writable",
        "fs.verdict",
        "fs.unknown",
        "mount.options",
        "o_tmpfile",
        "swap",
        "sysctl",
        "xdg_runtime_dir",
        "tempdir.none",
    ],
    FsReason: [
        "fs.no_journal",
        "fs.data_journal",
        "fs.data_ordered",
        "fs.data_writeback",
        "fs.data_mode_unknown",
        "fs.xfs_in_place",
        "fs.copy_on_write",
        "fs.log_structured",
        "fs.ramfs",
        "fs.tmpfs",
        "fs.overlay",
        "fs.remote",
        "fs.unrecognized",
        "swap.noswap_mount",
        "swap.none",
        "swap.active",
        "device.unknown",
        "device.uninspectable",
        "device.loop",
        "device.virtual",
        "device.rotational",
        "device.non_rotational",
        "device.kind_unknown",
        "file.journal_data_flag",
        "file.inline_data",
        "file.nocow_unchecked",
        "file.nocow_inline",
        "file.nocow_shared",
        "file.nocow_in_place",
        "file.shared_extents",
        "file.shared_unchecked",
    ],
    WipeReason: [
        "wipe.fs_unidentified",
        "wipe.overwrite_failed",
        "wipe.overwrite_interrupted",
        "wipe.open_failed",
        "wipe.not_writable_not_ours",
        "wipe.hard_links_skipped",
        "wipe.hard_links_overwritten",
        "wipe.not_regular",
        "wipe.not_requested",
        "wipe.hide_failed",
        "wipe.dir_sync_failed",
    ],
    SweepReason: [
        "sweep.orphan",
        "sweep.locked",
        "sweep.creator_runs",
        "sweep.lock_untestable",
        "sweep.foreign_inside",
        "sweep.removal_failed",
        "sweep.other_user",
        "sweep.no_mark",
        "sweep.mark_invalid",
        "sweep.mark_removed",
        "sweep.dir_untrusted",
        "sweep.dir_unusable",
        "sweep.dir_unreadable",
    ],
    KeyReason: [
        "key.none_yet",
        "key.no_dir",
        "key.dir_untrusted",
        "key.dir_unusable",
        "key.not_owned",
        "key.bad_mode",
        "key.not_regular",
        "key.links",
        "key.bad_size",
        "key.unreadable",
    ],
    TrustReason: [
        "trust.other_owner",
        "trust.writable_no_sticky",
        "trust.symlink_other_owner",
    ],
}


@pytest.mark.parametrize("enum", list(RELEASED), ids=lambda e: e.__name__)
def test_released_code_values_never_change(enum: type[StrEnum]) -> None:
    assert [m.value for m in enum] == RELEASED[enum]


def test_no_code_means_two_things() -> None:
    enums = (FindingCode, FsReason, WipeReason, SweepReason, KeyReason, TrustReason)
    codes = [m.value for e in enums for m in e]
    assert len(codes) == len(set(codes))


def test_only_in_place_and_volatile_are_trustworthy() -> None:
    assert {v for v in Verdict if v.trustworthy} == {Verdict.IN_PLACE, Verdict.VOLATILE}


def test_check_levels_are_the_level_enum_least_severe_first() -> None:
    assert tuple(Level) == _check.LEVELS
    assert [_check.level_rank(level) for level in Level] == [0, 1, 2, 3]


def test_a_reason_is_its_sentence_and_carries_its_code() -> None:
    r = Reason(WipeReason.NOT_REGULAR, "not a regular file")
    assert r == "not a regular file"
    assert isinstance(r, str)
    assert r.code == "wipe.not_regular"
    assert type(r.code) is str  # the plain value, not the enum member
    assert f"{r}: x" == "not a regular file: x"
    assert json.dumps([r]) == '["not a regular file"]'
    assert repr(r) == "Reason('wipe.not_regular', 'not a regular file')"


def test_a_reason_pickles_with_its_code() -> None:
    r = Reason(FsReason.TMPFS, "tmpfs lives in RAM")
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        back = pickle.loads(pickle.dumps(r, protocol))  # noqa: S301 - our own bytes
        assert (type(back), back, back.code) == (Reason, r, "fs.tmpfs")


def test_a_wipe_error_keeps_the_reason_codes_across_pickling(tmp_path: Path) -> None:
    # A real wipe's report, in the error a worker process would pickle back to its parent.
    victim = tmp_path / "f"
    victim.write_bytes(b"secret")
    report = hardtemp.wipe(victim)
    assert report.codes
    err = WipeError(str(victim), report.reasons[0], report)
    back = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own bytes
    assert back.report.codes == report.codes
    assert all(isinstance(r, Reason) for r in back.report.reasons)
    assert back.reason == report.reasons[0]


def _documented(doc: str, heading: str) -> set[str]:
    """The backticked first-column cells of the tables under ``heading`` in ``doc``."""
    text = (ROOT / "docs" / doc).read_text()
    level = heading.split(" ")[0]
    start = text.index(f"\n{heading}\n")
    end = text.find(f"\n{level} ", start + 1)
    section = text[start : end if end >= 0 else len(text)]
    return set(re.findall(r"^\| `([^`]+)` \|", section, re.MULTILINE))


def test_docs_list_exactly_the_finding_codes() -> None:
    assert _documented("cli.md", "### Finding codes") == set(FindingCode)


def test_docs_list_exactly_the_sweep_codes() -> None:
    assert _documented("cli.md", "### Sweep codes") == set(SweepReason)


def test_docs_list_exactly_the_key_codes() -> None:
    assert _documented("cli.md", "### Key codes") == set(KeyReason)


def test_docs_list_exactly_the_trust_codes() -> None:
    assert _documented("api.md", "#### Trust codes") == set(TrustReason)


def test_docs_list_exactly_the_filesystem_and_wipe_reason_codes() -> None:
    assert _documented("wipe.md", "## Reason codes") == set(FsReason) | set(WipeReason)


def test_every_code_check_can_report_is_a_finding_code() -> None:
    # The codes --ignore takes are the codes findings carry: a real audit of this machine.
    result = _check.audit([str(ROOT)])
    assert result.findings()
    assert {f.code for f in result.findings()} <= set(FindingCode)
    assert all(isinstance(f.code, FindingCode) for f in result.findings())
