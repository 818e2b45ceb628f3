"""hardtemp._check: the audit's findings, levels and JSON, in process."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import pytest

from hardtemp import _check, _tempdir
from hardtemp._check import LEVELS, audit, level_rank
from hardtemp.exceptions import NoTrustedTempDirError


@pytest.fixture(autouse=True)
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """TMPDIR and the working directory are a private directory; gettempdir() is recomputed."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    for var in ("TEMP", "TMP", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TMPDIR", str(home))
    monkeypatch.chdir(home)
    monkeypatch.setattr(_tempdir, "tempdir", None)
    return home


def _dir(result: _check.Audit, path: Path) -> _check.DirAudit:
    (d,) = [d for d in result.directories if d.path == str(path)]
    return d


def _codes(findings: list[_check.Finding]) -> dict[str, _check.Finding]:
    return {f.code: f for f in findings}


def test_levels_are_ordered_and_unknown_ones_rejected() -> None:
    assert [level_rank(x) for x in LEVELS] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="unknown level 'fatal'"):
        level_rank("fatal")


def test_audit_rejects_bad_directory_names() -> None:
    with pytest.raises(ValueError, match="invalid directory name"):
        audit(["a\0b"])
    with pytest.raises(ValueError, match="invalid directory name"):
        audit([""])


def test_a_private_tmpdir_is_trusted_selected_and_unchanged(home: Path) -> None:
    (home / "existing").write_text("x")
    before = sorted(os.listdir(home))
    result = audit()
    assert result.tempdir == str(home)
    d = _dir(result, home)
    assert d.selected
    assert d.trusted
    assert d.writable
    assert d.shared is False
    assert d.origins == ["$TMPDIR", "current directory, last resort"]
    assert _codes(d.findings)["dir.trusted"].level == "ok"
    # The O_TMPFILE probe leaves nothing behind; nothing else is created.
    assert sorted(os.listdir(home)) == before


def test_an_untrusted_argument_is_an_error_naming_the_component(home: Path) -> None:
    hostile = home / "hostile"
    hostile.mkdir()
    os.chmod(hostile, 0o777)
    result = audit([str(hostile)])
    f = _codes(_dir(result, hostile).findings)["dir.untrusted"]
    assert f.level == "error"
    assert f.message == (
        f"NOT TRUSTED: {hostile}: directory is writable by others without the sticky bit"
    )
    assert "chmod" in f.hint
    assert result.reaches("error")
    assert not result.reaches("never")


def test_an_untrusted_working_directory_is_only_a_warning(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The current directory is the last-resort candidate: used only if all else fails.
    hostile = home / "cwd"
    hostile.mkdir()
    os.chmod(hostile, 0o777)
    monkeypatch.chdir(hostile)
    f = _codes(_dir(audit(), hostile).findings)["dir.untrusted"]
    assert f.level == "warning"


def test_a_missing_tmpdir_is_a_warning_and_a_missing_argument_an_error(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = home / "gone"
    monkeypatch.setenv("TMPDIR", str(gone))
    monkeypatch.setattr(_tempdir, "tempdir", None)
    assert _codes(_dir(audit(), gone).findings)["dir.missing"].level == "warning"
    monkeypatch.setenv("TMPDIR", str(home))
    assert _codes(_dir(audit([str(gone)]), gone).findings)["dir.missing"].level == "error"


def test_no_usable_candidate_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_check, "gettempdir", _raise_no_tempdir)
    (f,) = [f for f in audit().system if f.code == "tempdir.none"]
    assert f.level == "error"


def _raise_no_tempdir() -> str:
    raise NoTrustedTempDirError(None, "every candidate refused")


def test_swap_finding_matches_the_machine() -> None:
    result = audit()
    (f,) = [f for f in result.system if f.code == "swap"]
    total = psutil.swap_memory().total
    assert result.swap["total_bytes"] == total
    assert (f.level == "ok") == (total == 0)


def test_sysctl_findings_match_proc() -> None:
    result = audit()
    for name in ("protected_symlinks", "protected_hardlinks", "protected_regular"):
        value = int(Path(f"/proc/sys/fs/{name}").read_text())
        (f,) = [f for f in result.system if f.subject == f"fs.{name}"]
        assert result.sysctls[name] == value
        assert f.level == ("warning" if value == 0 else "ok")


def test_xdg_runtime_dir_unset_private_and_not_private(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def xdg() -> _check.Finding:
        (f,) = [f for f in audit().system if f.code == "xdg_runtime_dir"]
        return f

    assert xdg().level == "info"
    private = home / "run"
    private.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(private))
    assert xdg().level == "ok"
    os.chmod(private, 0o755)
    f = xdg()
    assert f.level == "warning"
    assert "not private" in f.message


def test_json_round_trips_and_counts_add_up() -> None:
    result = audit()
    data: dict[str, Any] = json.loads(json.dumps(result.to_json("warning")))
    assert data["schema"] == _check.SCHEMA
    assert sum(data["counts"].values()) == len(result.findings())
    assert data["failed"] == result.reaches("warning")
    assert data["max_level"] == result.max_level()
