"""First use loads only what it needs: a short-lived process (a CLI, a test runner, a
``sitecustomize`` that installs hardtemp.compat) pays for every module its first call
imports. Checked in fresh processes, by module name, never by time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")

# Removal and wiping (and the marks, HMAC and key file behind them) are needed only where a
# file is removed; the tree walk only where a directory is cleaned; the crypto stack only for
# encrypted files.
REMOVAL = ("hardtemp._remove", "hardtemp._wipe", "hardtemp._owner", "hardtemp._markkey")
TREE = ("hardtemp._treefile",)
CRYPTO = ("cryptography", "hardtemp._crypt")


def _loaded(code: str, tmp: Path) -> set[str]:
    """The modules a fresh process has loaded after running ``code`` (``D``: ``tmp``)."""
    proc = subprocess.run(
        [sys.executable, "-c", f"import sys\nD = {str(tmp)!r}\n{code}\nprint(*sys.modules)"],
        env=dict(os.environ, PYTHONPATH=SRC),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


def _found(loaded: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in loaded if any(m == n or m.startswith(n + ".") for n in names))


MKSTEMP = "import hardtemp, os\nfd, path = hardtemp.mkstemp(dir=D)\nos.close(fd)\nos.unlink(path)"
MKDTEMP = "import hardtemp, os\nos.rmdir(hardtemp.mkdtemp(dir=D))"
NAMED = "import hardtemp\nwith hardtemp.NamedTemporaryFile(dir=D) as f:\n    f.write(b'x')"
PLAIN = (
    "import hardtemp\nwith hardtemp.TemporaryFile(dir=D, encrypt=False) as f:\n    f.write(b'x')"
)


@pytest.mark.parametrize("code", [MKSTEMP, MKDTEMP], ids=["mkstemp", "mkdtemp"])
def test_mkstemp_and_mkdtemp_load_no_removal_tree_walk_or_crypto(code: str, tmp_path: Path) -> None:
    loaded = _loaded(code, tmp_path)
    assert "hardtemp._create" in loaded  # the control: the call ran
    assert _found(loaded, REMOVAL + TREE + CRYPTO) == []
    assert list(tmp_path.iterdir()) == []


# Synced before its close (or written back by another process's sync, which made the case
# above fail in CI): on a disk the close takes the general way, a tail block and a sync.
SYNCED = (
    "import hardtemp, os\nwith hardtemp.NamedTemporaryFile(dir=D) as f:\n"
    "    f.write(b'x' * 3000)\n    f.flush()\n    os.fsync(f.fileno())"
)


@pytest.mark.parametrize(
    "code", [NAMED, PLAIN, SYNCED], ids=["NamedTemporaryFile", "TemporaryFile", "synced"]
)
def test_a_plain_file_lifecycle_loads_no_tree_walk_or_crypto(code: str, tmp_path: Path) -> None:
    loaded = _loaded(code, tmp_path)
    assert "hardtemp._files" in loaded  # the control: the call ran
    assert _found(loaded, TREE + CRYPTO) == []
    assert list(tmp_path.iterdir()) == []


def test_a_directory_cleanup_loads_the_tree_walk_but_no_crypto(tmp_path: Path) -> None:
    # The control for the tree walk: the test above would pass if the names were wrong.
    code = (
        "import hardtemp\nwith hardtemp.TemporaryDirectory(dir=D) as d:\n"
        "    open(d + '/a', 'w').close()"
    )
    loaded = _loaded(code, tmp_path)
    assert _found(loaded, REMOVAL + TREE) == sorted(REMOVAL + TREE)
    assert _found(loaded, CRYPTO) == []
    assert list(tmp_path.iterdir()) == []


def test_an_encrypted_file_loads_the_crypto_stack(tmp_path: Path) -> None:
    code = "import hardtemp\nwith hardtemp.TemporaryFile(dir=D) as f:\n    f.write(b'x')"
    loaded = _loaded(code, tmp_path)
    assert "cryptography" in loaded  # the control for CRYPTO's names
    assert list(tmp_path.iterdir()) == []
