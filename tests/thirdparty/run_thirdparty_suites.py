"""Run real projects' own test suites with and without ``hardtemp.compat.install()``.

Not part of the test suite (it needs the network and takes many minutes):

    python tests/thirdparty/run_thirdparty_suites.py [--work DIR] [--only NAME ...]

In ``--work`` (default: a new directory under /tmp) it creates a virtual
environment, installs aiofiles, click, diskcache, python-dotenv, werkzeug and
pytest from PyPI as a user would (with their test dependencies), pip-installs
this checkout of hardtemp, and fetches each project's sdist (``pip download
--no-binary :all: --no-deps``, for pytest the installed version) for its tests.
For pytest only its tempfile-heavy test files run (``PYTEST_FILES``). Each suite then runs twice:
plainly, and with a ``sitecustomize`` that calls ``hardtemp.compat.install()``
(the README's advice). It prints the counts of both runs and every test that
fails only under ``install()``; the exit status is 1 if there is such a test.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# project -> (sdist name, extra test dependencies, pytest arguments)
PROJECTS: dict[str, tuple[str, list[str], list[str]]] = {
    "aiofiles": ("aiofiles", ["pytest-asyncio"], ["tests"]),
    # One shared environment: pytest-asyncio (for aiofiles) is kept out of the other suites,
    # which treat its warnings as errors.
    "click": ("click", [], ["tests", "-p", "no:asyncio"]),
    "diskcache": (
        "diskcache",
        [],
        # Its Django cache backend needs Django: not part of this proof.
        [
            "tests",
            "--ignore=tests/test_djangocache.py",
            "--ignore=tests/test_doctest.py",
            "-p",
            "no:asyncio",
        ],
    ),
    "python-dotenv": ("python_dotenv", ["sh", "click"], ["tests", "-p", "no:asyncio"]),
    # pytest's own tests of tmp_path, capture (TemporaryFile), pathlib and legacypath; its
    # pyproject turns warnings into errors. pytester's subprocess runs inherit the sitecustomize.
    "pytest": ("pytest", ["attrs", "hypothesis", "pygments", "xmlschema"], ["-p", "no:asyncio"]),
    "werkzeug": (
        "werkzeug",
        ["cffi", "cryptography", "ephemeral-port-reserve", "pytest-timeout", "watchdog"],
        ["tests", "--timeout=120", "-p", "no:asyncio"],
    ),
}
PYTEST_FILES = [
    "testing/test_tmpdir.py",
    "testing/test_capture.py",
    "testing/test_pathlib.py",
    "testing/test_legacypath.py",
]
SITECUSTOMIZE = "import hardtemp.compat\nhardtemp.compat.install()\n"


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, text=True, check=False, **kw)  # type: ignore[call-overload, no-any-return]


def _setup(work: Path, names: list[str]) -> Path:
    venv = work / "venv"
    if not (venv / "bin" / "python").exists():
        _run([sys.executable, "-m", "venv", str(venv)])
    py = str(venv / "bin" / "python")
    deps = ["pytest"] + [n for n in names] + [d for n in names for d in PROJECTS[n][1]]
    _run([py, "-m", "pip", "install", "-q", *deps])
    # As a user would: with its dependencies (cryptography, psutil), then this very checkout.
    _run([py, "-m", "pip", "install", "-q", str(ROOT)])
    _run([py, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", str(ROOT)])
    sdists = work / "sdists"
    sdists.mkdir(exist_ok=True)
    for name in names:
        project = work / "src" / name
        if project.exists():
            continue
        spec = name
        if name == "pytest":  # its tests must match the pytest that runs them
            version = subprocess.run(
                [py, "-c", "import pytest; print(pytest.__version__)"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            spec = f"pytest=={version}"
        _run(
            [py, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps", spec],
            cwd=sdists,
        )
        archive = next(sdists.glob(f"{PROJECTS[name][0]}-*.tar.gz"))
        with tarfile.open(archive) as tar:
            tar.extractall(work / "src", filter="data")
        (work / "src" / archive.name.removesuffix(".tar.gz")).rename(project)
    return venv


def _outcomes(xml: Path) -> dict[str, str]:
    """test id -> passed / failed / error / skipped, from pytest's junit XML."""
    result: dict[str, str] = {}
    if not xml.exists():
        return result
    for case in ET.parse(xml).getroot().iter("testcase"):  # noqa: S314 - our own file
        test_id = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        if "failure" in kinds:
            result[test_id] = "failed"
        elif "error" in kinds:
            result[test_id] = "error"
        elif "skipped" in kinds:
            result[test_id] = "skipped"
        else:
            result[test_id] = "passed"
    return result


def _suite(venv: Path, work: Path, name: str, installed: bool) -> tuple[dict[str, str], int]:
    project = work / "src" / name
    xml = work / f"{name}-{'installed' if installed else 'plain'}.xml"
    xml.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TMPDIR")}
    if installed:
        site = work / "site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        env["PYTHONPATH"] = str(site)
    cmd = [str(venv / "bin" / "python"), "-m", "pytest", "-q"]
    if name != "pytest":  # pytest's own tests use the cache fixture
        cmd += ["-p", "no:cacheprovider"]
    args = PROJECTS[name][2]
    if name == "pytest":
        args = [*args, *(f for f in PYTEST_FILES if (project / f).exists())]
    proc = _run([*cmd, f"--junitxml={xml}", *args], cwd=project, env=env)
    return _outcomes(xml), proc.returncode


def _counts(outcomes: dict[str, str]) -> str:
    kinds = ("passed", "failed", "error", "skipped")
    return ", ".join(f"{sum(v == k for v in outcomes.values())} {k}" for k in kinds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="working directory (reused)")
    parser.add_argument("--only", nargs="*", choices=sorted(PROJECTS), default=sorted(PROJECTS))
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="hardtemp-thirdparty-"))
    work.mkdir(parents=True, exist_ok=True)
    venv = _setup(work, args.only)
    report = []
    newly_failing: list[str] = []
    for name in args.only:
        plain, plain_rc = _suite(venv, work, name, installed=False)
        inst, inst_rc = _suite(venv, work, name, installed=True)
        new = sorted(
            t
            for t, v in inst.items()
            if v in ("failed", "error") and plain.get(t) not in ("failed", "error")
        )
        newly_failing += [f"{name}: {t}" for t in new]
        report.append(
            f"{name:14s} plain: {_counts(plain)} (exit {plain_rc})\n"
            f"{'':14s} install(): {_counts(inst)} (exit {inst_rc}); newly failing: {len(new)}"
        )
    print("\n".join(["", "hardtemp.compat.install() against real test suites:", *report]))
    for line in newly_failing:
        print("  NEW FAILURE", line)
    return 1 if newly_failing else 0


if __name__ == "__main__":
    sys.exit(main())
