"""hardtemp._check: the audit's findings, levels and JSON, in process."""

from __future__ import annotations

import errno
import gc
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import pytest

from _gates import require_root, require_unshare
from _helpers_core import NOBODY
from hardtemp import _check, _dirtrust, _tempdir
from hardtemp._check import LEVELS, audit, level_rank
from hardtemp.exceptions import NoTrustedTempDirError

# Another run's sysctl_set (CI runs its stages side by side) must not flip a sysctl
# between the audit's reading and the test's (tests/_helpers_core.sysctls_held).
pytestmark = pytest.mark.usefixtures("steady_sysctls")


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


# --------------------------------------------------------------------------- more findings


def test_a_directory_named_twice_is_audited_once_with_every_origin(home: Path) -> None:
    result = audit([str(home), str(home) + "/", str(home)])
    (d,) = [d for d in result.directories if d.path == str(home)]
    assert d.origins == ["$TMPDIR", "current directory, last resort", "argument"]


def test_a_sticky_shared_directory_is_trusted_but_reported_shared(home: Path) -> None:
    shared = home / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    d = _dir(audit([str(shared)]), shared)
    assert d.trusted
    assert d.shared is True
    f = _codes(d.findings)["dir.trusted"]
    assert f.level == "ok"
    assert "shared with other users but sticky" in f.message


def test_a_directory_swapped_between_the_two_walks_is_an_error(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The attacker's move, made for real at the worst moment: after the first walk
    # trusted the directory, it becomes world-writable before the descriptor is taken.
    target = home / "racy"
    target.mkdir(mode=0o700)
    real_check_dir = _dirtrust.check_dir

    def check_then_loosen(path: str) -> Any:
        report = real_check_dir(path)
        if path == str(target):
            os.chmod(target, 0o777)
        return report

    monkeypatch.setattr(_check, "check_dir", check_then_loosen)
    d = _dir(audit([str(target)]), target)
    f = _codes(d.findings)["dir.untrusted"]
    assert f.level == "error"
    assert f.message.startswith("changed while being checked:")
    assert d.trusted is False
    assert d.o_tmpfile is None  # no probe in a directory that is not trusted


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


@pytest.fixture
def mounts(tmp_path: Path) -> Iterator[list[Path]]:
    require_root("to mount")
    mounted: list[Path] = []
    yield mounted
    _dirtrust.clear_cache()  # the cached verified descriptors keep the mounts busy
    gc.collect()
    for m in reversed(mounted):
        subprocess.run(["umount", str(m)], check=True)


def test_a_read_only_hardened_mount_is_not_writable_and_not_probed(
    home: Path, mounts: list[Path]
) -> None:
    ro = home / "ro"
    ro.mkdir()
    _mount("-t", "tmpfs", "-o", "ro,nodev,nosuid,noexec,size=64k,mode=0700", "tmpfs", str(ro))
    mounts.append(ro)
    d = _dir(audit([str(ro)]), ro)
    codes = _codes(d.findings)
    assert d.writable is False
    assert codes["dir.not_writable"].level == "info"
    assert codes["mount.options"].level == "ok"
    assert codes["mount.options"].message == "mounted nodev,nosuid,noexec"
    assert "o_tmpfile" not in codes  # nothing is attempted where we cannot write
    assert d.o_tmpfile is None


def test_an_o_tmpfile_failure_other_than_unsupported_is_a_warning(
    home: Path, mounts: list[Path]
) -> None:
    # A tmpfs whose only inode is its root: O_TMPFILE is supported but fails with ENOSPC.
    full = home / "full"
    full.mkdir()
    _mount("-t", "tmpfs", "-o", "nr_inodes=1,size=64k,mode=0700", "tmpfs", str(full))
    mounts.append(full)
    d = _dir(audit([str(full)]), full)
    f = _codes(d.findings)["o_tmpfile"]
    assert f.level == "warning"
    assert f.message == f"O_TMPFILE failed: {os.strerror(errno.ENOSPC)}"
    assert d.o_tmpfile is False
    assert os.listdir(full) == []


def test_a_platform_without_o_tmpfile_is_only_info(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Cannot be caused on Linux: the probe flags of a platform without O_TMPFILE.
    monkeypatch.setattr(_check, "_TMPFILE_PROBE", os.O_RDWR | os.O_EXCL | os.O_CLOEXEC)
    d = _dir(audit(), home)
    f = _codes(d.findings)["o_tmpfile"]
    assert f.level == "info"
    assert "not available" in f.message
    assert d.o_tmpfile is False


def test_a_shared_directory_without_nodev_nosuid_is_a_warning(
    home: Path, mounts: list[Path]
) -> None:
    shared = home / "shm"
    shared.mkdir()
    _mount("-t", "tmpfs", "-o", "noexec,size=64k,mode=1777", "tmpfs", str(shared))
    mounts.append(shared)
    f = _codes(_dir(audit([str(shared)]), shared).findings)["mount.options"]
    assert f.level == "warning"
    assert f.message == (
        "shared directory on a filesystem mounted without nodev,nosuid (has noexec)"
    )


def test_xdg_runtime_dir_untrusted_or_unusable_is_a_warning_naming_it(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def xdg() -> _check.Finding:
        (f,) = [f for f in audit().system if f.code == "xdg_runtime_dir"]
        return f

    hostile = home / "hostile"
    hostile.mkdir()
    os.chmod(hostile, 0o777)
    (hostile / "run").mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(hostile / "run"))
    f = xdg()
    assert f.level == "warning"
    assert f.message.startswith(f"{hostile / 'run'} is NOT TRUSTED")
    assert str(hostile) in f.message
    a_file = home / "file"
    a_file.write_text("")
    for bad in (a_file, home / "missing"):
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(bad))
        f = xdg()
        assert f.level == "warning"
        assert f.message.startswith(f"{bad}: ")
    assert a_file.read_text() == ""  # audited, never changed


# ---------------------------------------------------------------- machine settings, faked /proc
#
# Swap and the sysctls are machine-wide: they are changed only inside a private mount
# namespace of a forked child (bind mounts over /proc files), never for the machine.

SRC = str(Path(__file__).resolve().parent.parent / "src")

_IN_NS = r"""
import json, sys, types
from pathlib import Path
import psutil
from hardtemp import _check
swap_total, files = json.loads(sys.argv[1])
for path, text in files.items():
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)
if swap_total is not None:
    # Swap cannot be switched on here: its size is the one value faked in memory.
    psutil.swap_memory = lambda: types.SimpleNamespace(total=swap_total)
result = _check.audit()
print(json.dumps({
    "system": [f.to_json() for f in result.system],
    "swap": result.swap,
    "sysctls": result.sysctls,
    "directories": [d.to_json() for d in result.directories],
}))
"""


def _audit_in_mount_ns(
    *mounts: list[str], swap_total: int | None = None, files: dict[str, str] | None = None
) -> dict[str, Any]:
    """In a private mount namespace (unshare -m: the machine's mounts are never
    changed) run each ``mount`` argument list, write ``files``, audit there."""
    require_unshare()
    script = "; ".join(shlex.join(["mount", *args]) for args in mounts) or "true"
    ns = ["unshare", "-m", "--propagation", "private", "sh", "-ec", f'{script}; exec "$@"', "sh"]
    proc = subprocess.run(
        [*ns, sys.executable, "-c", _IN_NS, json.dumps([swap_total, files or {}])],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=SRC),
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    parsed: dict[str, Any] = json.loads(proc.stdout)
    return parsed


def _system(data: dict[str, Any], code: str) -> list[dict[str, Any]]:
    return [f for f in data["system"] if f["code"] == code]


def test_swap_on_a_disk_is_a_warning_naming_the_device(tmp_path: Path) -> None:
    swaps = tmp_path / "swaps"
    swaps.write_text(
        "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
        "/swap\\040file\t\t\t\tfile\t\t1048572\t\t0\t\t-2\n"
        "/dev/zram0\t\t\t\tpartition\t1048572\t\t0\t\t100\n"
        "garbage\n"
    )
    data = _audit_in_mount_ns(["--bind", str(swaps), "/proc/swaps"], swap_total=2 << 30)
    (f,) = _system(data, "swap")
    assert f["level"] == "warning"
    assert f["message"].startswith("swap is active (2048 MiB on /swap file): ")
    assert "encrypted swap" in f["hint"]
    assert data["swap"]["devices"] == [
        {"device": "/swap file", "type": "file"},
        {"device": "/dev/zram0", "type": "partition", "backing_dev": None},
    ]


def test_swap_only_on_zram_is_info(tmp_path: Path) -> None:
    swaps = tmp_path / "swaps"
    swaps.write_text("Filename Type Size Used Priority\n/dev/zram0 partition 1048572 0 100\n")
    data = _audit_in_mount_ns(["--bind", str(swaps), "/proc/swaps"], swap_total=1 << 30)
    (f,) = _system(data, "swap")
    assert f["level"] == "info"
    assert "only on compressed RAM (/dev/zram0)" in f["message"]


_ZRAM_SWAPS = "Filename Type Size Used Priority\n/dev/zram0 partition 1048572 0 100\n"


@pytest.mark.parametrize(
    ("backing", "level", "shown"),
    [
        (None, "info", None),  # no CONFIG_ZRAM_WRITEBACK: no backing_dev file at all
        ("none\n", "info", None),
        ("/dev/vdb\n", "warning", "/dev/zram0 (writes back to /dev/vdb)"),
    ],
)
def test_zram_swap_with_a_backing_device_is_swap_on_disk(
    tmp_path: Path, backing: str | None, level: str, shown: str | None
) -> None:
    # A real sysfs cannot be given a zram backing device here (no CONFIG_ZRAM_WRITEBACK,
    # and swap must not be switched on for the machine): a tmpfs over /sys/block in a
    # private mount namespace holds what the kernel would publish.
    swaps = tmp_path / "swaps"
    swaps.write_text(_ZRAM_SWAPS)
    files = {"/sys/block/zram0/size": "0\n"}
    if backing is not None:
        files["/sys/block/zram0/backing_dev"] = backing
    data = _audit_in_mount_ns(
        ["--bind", str(swaps), "/proc/swaps"],
        ["-t", "tmpfs", "-o", "size=64k", "tmpfs", "/sys/block"],
        swap_total=1 << 30,
        files=files,
    )
    (f,) = _system(data, "swap")
    assert f["level"] == level
    if shown is None:
        assert "only on compressed RAM (/dev/zram0)" in f["message"]
        assert data["swap"]["devices"][0]["backing_dev"] is None
    else:
        assert f["message"].startswith(f"swap is active (1024 MiB on {shown}): ")
        assert data["swap"]["devices"][0]["backing_dev"] == "/dev/vdb"


def test_an_unreadable_zram_backing_dev_is_not_taken_for_ram(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A backing_dev we may not read (a directory in its place gives a real EISDIR here;
    # sysfs makes it 0644, so only a hardened kernel would refuse us): unknown, so warned.
    fake = tmp_path / "block"
    (fake / "zram0" / "backing_dev").mkdir(parents=True)
    monkeypatch.setattr(_check, "_SYS_BLOCK", str(fake))
    backing = _check._zram_backing("/dev/zram0")
    assert backing is not None
    assert backing.startswith("an unknown device (backing_dev unreadable: ")


def test_without_proc_the_audit_reports_swap_unknown_instead_of_crashing(home: Path) -> None:
    # A chroot or sandbox without /proc: psutil cannot read /proc/meminfo. The audit
    # must still finish, and unknown swap is not reported as "no swap".
    data = _audit_in_mount_ns(["-t", "tmpfs", "-o", "size=64k", "tmpfs", "/proc"])
    (f,) = _system(data, "swap")
    assert f["level"] == "warning"
    assert f["message"].startswith("whether swap is active cannot be determined")
    assert data["swap"] == {"total_bytes": None, "devices": []}


@pytest.mark.parametrize(
    ("listing", "level", "message"),
    [
        ("", "ok", "no swap is active: memory never reaches disk"),
        (
            "/dev/sda2 partition 1048572 0 -2\n",
            "warning",
            "swap is active (size unknown on /dev/sda2)",
        ),
    ],
)
def test_with_the_size_unknown_the_swap_list_decides(
    listing: str, level: str, message: str
) -> None:
    # /proc replaced by a tmpfs holding only a swaps file: psutil cannot read meminfo.
    data = _audit_in_mount_ns(
        ["-t", "tmpfs", "-o", "size=64k", "tmpfs", "/proc"],
        files={"/proc/swaps": "Filename Type Size Used Priority\n" + listing},
    )
    (f,) = _system(data, "swap")
    assert f["level"] == level
    assert f["message"].startswith(message)


def test_without_proc_swap_sysctls_and_mount_are_reported_unknown(home: Path) -> None:
    # An empty tmpfs over /proc: /proc/swaps, the sysctls and mountinfo cannot be read.
    data = _audit_in_mount_ns(
        ["-t", "tmpfs", "-o", "size=64k", "tmpfs", "/proc"], swap_total=1 << 30
    )
    (f,) = _system(data, "swap")
    assert f["level"] == "warning"  # the size alone decides: the device list is unknown
    assert f["message"].startswith("swap is active (1024 MiB): ")
    assert data["swap"]["devices"] == []
    assert data["sysctls"] == dict.fromkeys(
        ("protected_symlinks", "protected_hardlinks", "protected_regular", "protected_fifos")
    )
    for f in _system(data, "sysctl"):
        assert f["level"] == "info"
        assert f["message"] == f"{f['subject']} cannot be read"
    (d,) = [d for d in data["directories"] if d["path"] == str(home)]
    (fs,) = [f for f in d["findings"] if f["code"] == "fs.verdict"]
    # Only statfs() identifies the filesystem: no empty "( on )" for the unknown mount.
    assert f"({d['filesystem']['fstype']} (mount point unknown): " in f" ({fs['message']}"
    assert d["filesystem"]["mountpoint"] == ""
    assert d["trusted"] is True  # the trust walk does not depend on /proc


def test_garbled_sysctls_are_info_and_null(tmp_path: Path) -> None:
    garbled = tmp_path / "garbled"
    garbled.write_text("not a number\n")
    one = tmp_path / "one"
    one.write_text("1\n")
    data = _audit_in_mount_ns(
        ["--bind", str(garbled), "/proc/sys/fs/protected_symlinks"],
        ["--bind", "/dev/null", "/proc/sys/fs/protected_hardlinks"],
        ["--bind", str(one), "/proc/sys/fs/protected_fifos"],
    )
    assert data["sysctls"]["protected_symlinks"] is None
    assert data["sysctls"]["protected_hardlinks"] is None
    assert data["sysctls"]["protected_fifos"] == 1
    by_subject = {f["subject"]: f for f in _system(data, "sysctl")}
    for name in ("protected_symlinks", "protected_hardlinks"):
        f = by_subject[f"fs.{name}"]
        assert f["level"] == "info"
        assert f["message"] == f"fs.{name} cannot be read"
    assert by_subject["fs.protected_fifos"]["level"] == "ok"


def test_a_file_given_as_directory_is_an_unusable_error_and_untouched(home: Path) -> None:
    a_file = home / "file"
    a_file.write_text("data")
    d = _dir(audit([str(a_file)]), a_file)
    f = _codes(d.findings)["dir.unusable"]
    assert f.level == "error"
    assert f.message == f"cannot be checked: {os.strerror(errno.ENOTDIR)}"
    assert d.trusted is None
    assert a_file.read_text() == "data"


def test_an_untrusted_tmpdir_says_hardtemp_skips_it_but_other_programs_do_not(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hostile = home / "hostile"
    hostile.mkdir()
    os.chmod(hostile, 0o777)
    monkeypatch.setenv("TMPDIR", str(hostile))
    result = audit()
    f = _codes(_dir(result, hostile).findings)["dir.untrusted"]
    assert f.level == "error"
    assert any("although $TMPDIR names it" in x for x in f.details)
    assert result.tempdir != str(hostile)


def test_a_tmpdir_dotdot_through_another_users_symlink_is_untrusted_and_named(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # TMPDIR=<home>/link/.. : lexically that is <home> (trusted), but `$TMPDIR/x` goes
    # through the link, which its owner (uid 65534) points wherever they like.
    require_root("to give a symlink to another user")
    theirs = home / "theirs"
    theirs.mkdir()
    (theirs / "sub").mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    link = home / "link"
    link.symlink_to(theirs / "sub")
    os.lchown(link, NOBODY, NOBODY)
    tmpdir = f"{link}/.."
    monkeypatch.setenv("TMPDIR", tmpdir)
    result = audit()
    d = _dir(result, Path(tmpdir))
    f = _codes(d.findings)["dir.untrusted"]
    assert f.level == "error"
    assert f.message.startswith(f"NOT TRUSTED: {link}: symlink owned by uid {NOBODY}")
    assert d.trusted is False
    assert result.tempdir not in (tmpdir, str(home))  # gettempdir() skipped it too
    from hardtemp._cli import main

    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert str(link) in out
    assert "NOT TRUSTED" in out


def test_a_tmpdir_dotdot_through_a_trusted_symlink_shows_where_it_really_leads(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Our own symlink: trusted, and the audit names the directory `..` really reaches.
    elsewhere = home / "a" / "b"
    elsewhere.mkdir(parents=True)
    (home / "link").symlink_to(elsewhere)
    tmpdir = f"{home}/./link//.."
    monkeypatch.setenv("TMPDIR", tmpdir)
    d = _dir(audit(), Path(f"{home}/link/.."))
    assert d.trusted is True
    assert d.real_path == str(home / "a")
    assert f"(resolves to {home / 'a'})" in _codes(d.findings)["dir.trusted"].message


def test_protected_hardlinks_off_says_that_hardtemp_is_affected_too(tmp_path: Path) -> None:
    # The real sysctl stays as it is: a file reading 0 is bind-mounted over it in a private
    # mount namespace. Off, another user can link our named files: it is not "not affected".
    zero = tmp_path / "zero"
    zero.write_text("0\n")
    data = _audit_in_mount_ns(["--bind", str(zero), "/proc/sys/fs/protected_hardlinks"])
    assert data["sysctls"]["protected_hardlinks"] == 0
    (f,) = [f for f in _system(data, "sysctl") if f["subject"] == "fs.protected_hardlinks"]
    assert f["level"] == "warning"
    said = " ".join(f["details"])
    assert "hardtemp is affected too" in said
    assert "not affected" not in said
    # What is true since creation tolerates such links (tests/attack/test_attack_links.py):
    assert "does not make creation fail" in said
    assert "overwrites through its descriptor" in said
    assert "making its creation fail" not in said


@pytest.mark.parametrize(
    ("fstype", "options", "verdict", "level"),
    [
        ("ext4", "", "in place", "ok"),
        ("ext4", "data=journal", "not in place", "warning"),
        ("btrfs", "", "not in place", "warning"),
    ],
)
def test_the_filesystem_finding_is_ok_exactly_when_its_overwrite_is_trustworthy(
    loopfs: Callable[..., Any], fstype: str, options: str, verdict: str, level: str
) -> None:
    # Real filesystems, checked as a directory the user names.
    fs = loopfs(fstype, options=options, size_mb=128)
    result = audit([str(fs.mountpoint)])
    (d,) = [d for d in result.directories if d.path == str(fs.mountpoint)]
    assert d.filesystem is not None
    assert d.filesystem.verdict == verdict
    (f,) = [f for f in d.findings if f.code == "fs.verdict"]
    assert f.level == level
    assert bool(f.hint) == (level != "ok")  # what to do, only when something is wrong


def test_an_ignore_that_matches_nothing_is_noted_and_a_code_that_is_none_is_named(
    home: Path,
) -> None:
    result = audit([str(home)])
    result.ignore = ["swap", "swap:nowhere", "no.such-code", "no.such-code:x"]
    assert result.ignore_notes() == [
        "--ignore swap:nowhere matched no finding",
        "--ignore no.such-code matched no finding: no.such-code is not a finding code",
        "--ignore no.such-code:x matched no finding: no.such-code is not a finding code",
    ]
