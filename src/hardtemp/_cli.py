"""The ``hardtemp`` command: check, run, wipe, sweep.

Exit statuses (every command): 0 success, 1 the command's own failure
(a finding at ``--fail-on``, a file not wiped, an entry not swept), 2 bad
arguments or configuration (one line on stderr naming the subcommand, never a
traceback). ``hardtemp run`` passes its command's status through instead; see
:func:`_cmd_run`. When the reader of our output goes away (``| head``), we end
silently with 141 (128 + SIGPIPE, what a shell reports for a filter killed by
SIGPIPE), never with a failed gate's status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import resource
import shutil
import signal
import stat
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO

from . import __version__, _check, _policy, _sweep
from ._codes import Action, Level, Verdict
from ._create import mkdtemp
from ._files import TemporaryDirectory
from ._policy import wipe_policy
from ._remove import rmtree_at, wipe
from ._tempdir import candidate_tempdir_list
from ._wipe import PATTERNS, WipeReport
from .exceptions import HardtempError, PlaintextLeftWarning, WipeError

__all__ = ["main"]

PROG = "hardtemp"
# Statuses of `hardtemp run` itself, as env(1) and timeout(1) use them.
RUN_FAILED = 125  # hardtemp could not set up or clean up the private directory
RUN_NOT_EXECUTABLE = 126
RUN_NOT_FOUND = 127
# Signals `hardtemp run` forwards to its command (when another process sent them to us).
_FORWARD = (
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
_PROGRESS_MIN = 16 << 20  # files smaller than this are wiped without a progress line


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (exit 2) instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class _UsageError(Exception):
    """A bad argument found after parsing (reported like argparse's, exit 2)."""


# --------------------------------------------------------------------------- output helpers


_COLOURS = {"ok": "32", "info": "36", "warning": "33", "error": "1;31", "dim": "2"}


class _Out:
    """Writes to a stream, in colour only on a terminal (and never with NO_COLOR set)."""

    def __init__(self, stream: TextIO, mode: str) -> None:
        self.stream = stream
        if mode == "always":
            self.colour = True
        elif mode == "never":
            self.colour = False
        else:
            self.colour = (
                stream.isatty()
                and not os.environ.get("NO_COLOR")
                and os.environ.get("TERM") != "dumb"
            )
        # Wrapped to the terminal; unwrapped into pipes and CI logs, so lines stay greppable.
        self.width = (
            max(60, min(shutil.get_terminal_size((100, 24)).columns, 120))
            if stream.isatty()
            else None
        )

    def paint(self, text: str, style: str) -> str:
        if not self.colour or style not in _COLOURS:
            return text
        return f"\033[{_COLOURS[style]}m{text}\033[0m"

    def line(self, text: str = "") -> None:
        self.stream.write(text + "\n")

    def wrapped(self, text: str, indent: int, first: str = "") -> None:
        """``first`` (already painted) then ``text`` wrapped at ``indent``."""
        if self.width is None:
            self.line(first + text)
            return
        lines = textwrap.wrap(
            text, self.width - indent, break_long_words=False, break_on_hyphens=False
        ) or [""]
        self.line(first + lines[0])
        for rest in lines[1:]:
            self.line(" " * indent + rest)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover - unreachable


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


# --------------------------------------------------------------------------- check


_LABEL = {Level.OK: "ok", Level.INFO: "info", Level.WARNING: "WARNING", Level.ERROR: "ERROR"}


def _show_finding(out: _Out, f: _check.Finding, verbose: bool, ignored: bool = False) -> None:
    # An accepted (--ignore) finding is still shown, marked, so the log says what was accepted.
    label = out.paint("ignored ", "dim") if ignored else out.paint(f"{_LABEL[f.level]:<8}", f.level)
    code = f"{f.code:<16}"
    out.wrapped(f.message, 30, f"  {label}  {code}  ")
    if f.level != Level.OK or verbose:
        for d in f.details:
            out.wrapped(d, 32, " " * 30 + out.paint("- ", "dim"))
    if f.hint and (f.level != Level.OK or verbose):
        out.wrapped(f.hint, 32, " " * 30 + out.paint("> ", "dim"))


def _cmd_check(args: argparse.Namespace) -> int:
    result = _check.audit(args.dirs)
    result.ignore = list(args.ignore)
    for note in result.ignore_notes():  # a typo must not pass unnoticed
        print(f"{PROG} check: note: {note}", file=sys.stderr)
    failed = result.reaches(args.fail_on)
    if args.json:
        _print_json(result.to_json(args.fail_on))
        return 1 if failed else 0
    out = _Out(sys.stdout, args.color)
    out.line(f"hardtemp check: where temporary data goes on this machine (euid {os.geteuid()})")
    if result.tempdir is not None:
        out.line(f"hardtemp.gettempdir() -> {result.tempdir}")
    for d in result.directories:
        out.line()
        tags = list(d.origins) + (["used by hardtemp"] if d.selected else [])
        out.line(out.paint(d.path, "dim" if not d.exists else "") + f"  ({'; '.join(tags)})")
        for f in d.findings:
            _show_finding(out, f, args.verbose, result.ignored(f))
    out.line()
    out.line("system")
    for f in result.system:
        _show_finding(out, f, args.verbose, result.ignored(f))
    counts = result.counts()
    out.line()
    summary = (
        f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info, "
        f"{counts['ok']} ok"
        + (f", {counts['ignored']} ignored" if counts["ignored"] else "")
        + f"; --fail-on {args.fail_on}: "
    )
    verdict = out.paint("FAIL (exit 1)", "error") if failed else out.paint("pass (exit 0)", "ok")
    out.line(summary + verdict)
    if not args.verbose:
        out.line(out.paint("(-v shows the details of passed checks)", "dim"))
    return 1 if failed else 0


# --------------------------------------------------------------------------- run


def _lock_fd(tmp: TemporaryDirectory | None) -> int | None:
    """The descriptor holding the private directory's liveness lock (hardtemp._owner)."""
    claim = None if tmp is None else tmp._claim
    return None if claim is None or claim.fd < 0 else claim.fd


def _find_program(name: str, env: dict[str, str]) -> str:
    """The file to execute for ``name``, by the shell's rule (POSIX "Command Search").

    A name with a ``/`` is used as is. Otherwise the first executable regular
    file ``DIR/name`` along ``$PATH`` wins; failing that, the first such file
    that is not executable (then the exec fails: 126, as in the shell).
    Directories we cannot search are skipped, as the shell skips them (glibc's
    execvp reports EACCES for them, which made an unknown command look
    "not executable").

    Raises:
        FileNotFoundError: no file of that name along ``$PATH`` (127).
    """
    if "/" in name:
        return name
    found = None
    for directory in env.get("PATH", os.confstr("CS_PATH") or "/bin:/usr/bin").split(":"):
        candidate = os.path.join(directory or ".", name)
        try:
            st = os.stat(candidate)
        except OSError:  # absent, or a directory we may not search: not found there
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        if os.access(candidate, os.X_OK, effective_ids=True):
            return candidate
        found = found or candidate
    if found is None:
        raise FileNotFoundError(errno.ENOENT, "command not found", name)
    return found


def _spawn(
    cmd: list[str], env: dict[str, str], mask: set[int | signal.Signals], lock_fd: int | None
) -> int:
    # The command inherits the directory's locked descriptor: if we are SIGKILLed
    # while it runs, the sweeper sees the directory locked and leaves it alone.
    if lock_fd is not None:
        os.set_inheritable(lock_fd, True)
    try:
        # setsigmask: the command starts with the signal mask we had before blocking;
        # setsigdef: dispositions we (or Python: SIGPIPE, SIGXFSZ) changed are reset.
        return os.posix_spawn(
            _find_program(cmd[0], env),
            cmd,
            env,
            setsigmask=mask,
            setsigdef=(*_FORWARD, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD),
        )
    finally:
        if lock_fd is not None:
            os.set_inheritable(lock_fd, False)


def _wait_forwarding(pid: int, waited: set[signal.Signals]) -> int:
    """Wait for ``pid``, forwarding signals sent to us; return its wait status.

    Signals the kernel sent us (a terminal's Ctrl-C, si_code > 0) are not
    forwarded: the command, in our process group, received them too.
    """
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return status
        info = signal.sigtimedwait(waited, 1.0)
        if info is None or info.si_signo == signal.SIGCHLD:
            continue
        if info.si_code <= 0 and info.si_pid != pid:  # SI_USER, SI_QUEUE, SI_TKILL
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, info.si_signo)


def _die_like(signum: int) -> int:
    """Terminate by ``signum`` as the command did; 128+N if that is impossible."""
    sys.stdout.flush()
    sys.stderr.flush()
    if signum not in (signal.SIGKILL, signal.SIGSTOP):
        signal.signal(signum, signal.SIG_DFL)
    # No core file of ours: it would be mistaken for the command's.
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.Signals(signum)})
    os.kill(os.getpid(), signum)
    return 128 + signum  # the signal does not terminate (e.g. its default is to ignore)


def _cmd_run(args: argparse.Namespace) -> int:
    # long: signal forwarding and exit-status mapping of one child, read top to bottom
    """Run a command with TMPDIR/TMP/TEMP set to a fresh private directory.

    Status: the command's exit status; if it was killed by signal N, we kill
    ourselves with N after cleanup (no core file), so the caller sees the same
    death (128+N if that signal cannot end us). 125: the private directory
    could not be created, or (when the command succeeded) not fully removed;
    126: the command cannot be executed; 127: not found.
    """
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise _UsageError("missing command (usage: hardtemp run [--keep] [--dir DIR] -- CMD ...)")
    tmp: TemporaryDirectory | None = None
    try:
        if args.keep:
            # A kept directory carries no sweep mark: `hardtemp sweep` must leave it alone.
            path = os.fsdecode(mkdtemp(prefix="hardtemp-run-", dir=args.dir))
        else:
            # Locked and marked: if we are SIGKILLed, the sweeper removes it once the
            # command (which inherits the lock) is gone too.
            tmp = TemporaryDirectory(prefix="hardtemp-run-", dir=args.dir)
            path = os.fsdecode(tmp.name)
    except (OSError, ValueError) as exc:
        print(f"{PROG} run: cannot create a private temporary directory: {exc}", file=sys.stderr)
        return RUN_FAILED
    env = dict(os.environ, TMPDIR=path, TMP=path, TEMP=path)
    waited = {*_FORWARD, signal.SIGCHLD}
    # Blocked before the spawn, so no signal between spawn and wait is lost or kills us
    # before cleanup; they are waited for with sigtimedwait instead.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    try:
        try:
            pid = _spawn(cmd, env, old_mask, _lock_fd(tmp))
        except FileNotFoundError:
            print(f"{PROG} run: {cmd[0]}: command not found", file=sys.stderr)
            code = RUN_NOT_FOUND
        except OSError as exc:
            print(f"{PROG} run: {cmd[0]}: {exc.strerror}", file=sys.stderr)
            code = RUN_NOT_EXECUTABLE
        else:
            code = os.waitstatus_to_exitcode(_wait_forwarding(pid, waited))
        cleanup_failed = False
        if tmp is not None:
            try:
                tmp.cleanup()  # overwrite and remove, by descriptor, never following symlinks
            except OSError as exc:
                cleanup_failed = True
                print(f"{PROG} run: could not fully remove {path}: {exc}", file=sys.stderr)
        else:
            print(f"{PROG} run: kept {path}", file=sys.stderr)
        # Drain what arrived meanwhile (e.g. the terminal's Ctrl-C that also hit the
        # command): unblocking must not raise KeyboardInterrupt after the command is done.
        while signal.sigtimedwait(waited, 0) is not None:
            pass
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    if code < 0:
        return _die_like(-code)
    if cleanup_failed and code == 0:
        return RUN_FAILED
    return code


# --------------------------------------------------------------------------- wipe


def _report_json(r: WipeReport) -> dict[str, Any]:
    return {
        "bytes_overwritten": r.bytes_overwritten,
        "passes": r.passes,
        "pattern": r.pattern,
        "filesystem": r.filesystem,
        "verdict": r.verdict,
        "reasons": list(r.reasons),
        "reason_codes": list(r.codes),
        "hard_links": r.hard_links,
        "duration": round(r.duration, 6),
        "removed": r.removed,
        "data_left": r.data_left,
    }


class _Progress:
    """A progress line on a terminal while a large file is overwritten.

    The wipe module has no progress callback: progress is read from this
    process's write counter (``wchar`` in /proc/self/io), which ``pwrite``
    advances as the overwrite proceeds.
    """

    def __init__(self, path: str, total: int) -> None:
        self.path, self.total = path, max(total, 1)
        self.stop = threading.Event()
        self.start = self._wchar()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _wchar() -> int:
        try:
            with open("/proc/self/io", encoding="ascii") as f:
                for line in f:
                    if line.startswith("wchar:"):
                        return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return 0

    def _run(self) -> None:
        begun = time.monotonic()
        while True:  # the first line at once, then every 0.25 s until the wipe is done
            done = min(self._wchar() - self.start, self.total)
            pct = 100 * done // self.total
            # Writes land in the page cache first; the fdatasync after each pass takes the time.
            what = f"{pct:3d}% written" if done < self.total else "written, syncing to disk"
            sys.stderr.write(
                f"\r{PROG} wipe: {self.path}: {what} ({_size(self.total)}, "
                f"{time.monotonic() - begun:.0f}s)\033[K"
            )
            sys.stderr.flush()
            if self.stop.wait(0.25):
                break
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()

    def __enter__(self) -> _Progress:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def _open_parent(path: str) -> tuple[int, str]:
    parent, name = os.path.split(path)
    if not name or name in (".", ".."):
        raise _UsageError(f"{path!r} does not name a file or directory to remove")
    # O_NOFOLLOW: as wipe() does, a parent that is a symlink is refused, never followed.
    fd = os.open(parent or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    return fd, name


def _wipe_tree(path: str) -> list[str]:
    """``-r``: remove a directory tree, overwriting every single-link regular file
    (one random pass: the tree walk uses the wipe module's defaults)."""
    errors: list[BaseException] = []
    dir_fd, name = _open_parent(path)
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        rmtree_at(
            dir_fd,
            name,
            expect=(st.st_dev, st.st_ino),
            display_path=path,
            overwrite=True,
            onerror=errors.append,
        )
    finally:
        os.close(dir_fd)
    return [str(e) for e in errors]


def _wipe_one(path: str, args: argparse.Namespace) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": path, "kind": None, "ok": False, "report": None}
    entry["error"] = None
    caught: list[warnings.WarningMessage] = []
    try:
        # "d2/" (as tab completion writes it) names the directory d2 itself: strip the
        # slash, then lstat, so a symlink named d2 is refused, never followed.
        slashed = len(path) > 1 and path.endswith("/")
        target = path.rstrip("/") or "/" if slashed else path
        st = os.lstat(target)
        if slashed and not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(
                errno.ENOTDIR,
                "a trailing '/' names a directory, and this is "
                + ("a symlink (never followed)" if stat.S_ISLNK(st.st_mode) else "not one"),
            )
        if stat.S_ISDIR(st.st_mode):
            entry["kind"] = "directory"
            if not args.recursive:
                raise IsADirectoryError(errno.EISDIR, "is a directory (use -r to remove a tree)")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                errors = _wipe_tree(target)
            # A file removed without being overwritten is never counted as wiped.
            left = [str(w.message) for w in caught if issubclass(w.category, PlaintextLeftWarning)]
            if errors or left:
                entry["error"] = "; ".join(errors + left)
            else:
                entry["ok"] = True
        else:
            entry["kind"] = "file" if stat.S_ISREG(st.st_mode) else "other"
            if not stat.S_ISREG(st.st_mode):
                # Never overwrite a device, FIFO or socket; a symlink's target is not ours.
                raise ValueError(
                    f"not a regular file ({stat.filemode(st.st_mode)[0]}); nothing removed"
                )
            show = sys.stderr.isatty() and not args.json and st.st_size >= _PROGRESS_MIN
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                progress = _Progress(path, st.st_size * args.passes) if show else None
                with progress or contextlib.nullcontext():
                    report = wipe(
                        path,
                        passes=args.passes,
                        pattern=args.pattern,
                        remove_unwiped=args.remove_unwiped,
                    )
            entry["report"] = _report_json(report)
            entry["ok"] = True
    except WipeError as exc:
        entry["error"] = str(exc)
        if exc.report is not None:
            entry["report"] = _report_json(exc.report)
    except (OSError, ValueError, _UsageError) as exc:
        if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, HardtempError):
            entry["error"] = exc.strerror
        else:
            entry["error"] = str(exc)
    entry["warnings"] = sorted({str(w.message) for w in caught})
    return entry


def _show_wipe(out: _Out, e: dict[str, Any]) -> None:
    r = e["report"]
    if not e["ok"]:
        out.wrapped(f"{e['path']}: {e['error']}", 4, out.paint("FAILED  ", "error"))
    elif e["kind"] == "directory":
        out.wrapped(
            f"{e['path']}: directory tree removed (regular files with one link overwritten "
            "first, one random pass; symlinks removed, never followed)",
            4,
            out.paint("wiped   ", "ok"),
        )
    else:
        style = "ok" if Verdict(r["verdict"]).trustworthy else "warning"
        out.wrapped(
            f"{e['path']}: {_size(r['bytes_overwritten'])} overwritten "
            f"({r['passes']} pass(es), {r['pattern']}) on {r['filesystem'] or '?'}: "
            + out.paint(f"overwrite {r['verdict']}", style)
            + ("; removed" if r["removed"] else "; NOT removed"),
            4,
            out.paint("wiped   ", "ok"),
        )
    if r is not None:
        for reason in r["reasons"]:
            out.wrapped(reason, 6, "    - ")
    for w in e.get("warnings", []):
        out.wrapped(w, 6, "    ! ")


def _cmd_wipe(args: argparse.Namespace) -> int:
    if args.passes < 1:
        raise _UsageError(f"--passes must be at least 1, not {args.passes}")
    out = _Out(sys.stdout, args.color)
    results = []
    # "error" makes an untrustworthy overwrite a failure; otherwise the report says it.
    for path in args.paths:  # all of them before acting: a bad one must not stop halfway
        if not path or "\0" in path:
            raise _UsageError(f"invalid path {path!r}; nothing was wiped")
    with wipe_policy("error" if args.require_reliable else "ignore"):
        for path in args.paths:
            entry = _wipe_one(path, args)
            results.append(entry)
            if not args.json:
                _show_wipe(out, entry)
    if args.json:
        _print_json({"results": results})
    return 0 if all(e["ok"] for e in results) else 1


# --------------------------------------------------------------------------- sweep


def _cmd_sweep(args: argparse.Namespace) -> int:
    explicit = list(args.dirs)
    dirs = explicit or candidate_tempdir_list()
    result = _sweep.sweep(dirs, dry_run=args.dry_run)
    given = {os.path.abspath(d) for d in explicit}
    missing = [p for p in result.missing_dirs if p in given]  # absent candidates: nothing to do
    bad_dir = bool(missing) or any(p in given for p, _ in result.skipped_dirs)
    bad_key = result.key_problem is not None and not result.key_missing
    status = 1 if result.failed or bad_dir or bad_key else 0
    # One line each on stderr: a typo in a cron job must not pass as "0 removed".
    for path in missing:
        print(f"{PROG} sweep: {path}: no such directory", file=sys.stderr)
    if bad_key:
        print(f"{PROG} sweep: cannot verify marks: {result.key_problem}", file=sys.stderr)
    if args.json:
        data = result.to_json()
        data["ok"] = status == 0  # the exit status, for a reader of the JSON alone
        data["dry_run"] = args.dry_run
        data["directories"] = [os.path.abspath(d) for d in dirs]
        _print_json(data)
        return status
    out = _Out(sys.stdout, args.color)
    styles = {
        Action.REMOVED: "ok",
        Action.WOULD_REMOVE: "info",
        Action.KEPT: "dim",
        Action.FAILED: "error",
    }
    for e in result.entries:
        if e.action == Action.KEPT and not args.verbose:
            continue
        label = out.paint(f"{e.action:<13}", styles[e.action])
        out.wrapped(f"{e.kind} {e.path}: {e.reason}", 15, f"{label}  ")
    for path, reason in result.skipped_dirs:
        out.wrapped(f"{path}: {reason}", 15, out.paint(f"{'skipped dir':<13}", "warning") + "  ")
    not_swept = len(missing) + sum(1 for p, _ in result.skipped_dirs if p in given)
    if explicit and not_swept == len(given) and not result.entries:
        return status  # nothing was swept: no summary that could pass for "0 removed"
    n = {a: sum(1 for e in result.entries if e.action == a) for a in Action}
    done = (
        f"{n[Action.WOULD_REMOVE]} would be removed"
        if args.dry_run
        else f"{n[Action.REMOVED]} removed"
    )
    # A failed sweep says so first: a summary of zeros must not look like a clean sweep.
    head = "sweep incomplete" if status else "sweep"
    tail = f"; {not_swept} of the directories given not swept" if not_swept else ""
    out.line(
        f"{head}: {done}, {n[Action.KEPT]} kept (in use), {n[Action.FAILED]} failed; "
        f"ignored {result.unmarked} unmarked and {result.other_users} other users' entries{tail}"
    )
    return status


# --------------------------------------------------------------------------- parser


def _colour_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the output: auto (default) = only on a terminal and without NO_COLOR",
    )


def build_parser() -> argparse.ArgumentParser:
    # long: one declarative table of every subcommand and option
    """The argument parser of the ``hardtemp`` command."""
    parser = _Parser(
        prog=PROG,
        description="Audit and operate hardened temporary files: check where temp data goes, "
        "run a command with a private TMPDIR, wipe files, sweep orphans.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    levels = (*_check.LEVELS[1:], "never")
    p = sub.add_parser(
        "check",
        help="audit the temporary directories and the machine's settings",
        description="Audit every temporary-directory candidate ($TMPDIR, $TEMP, $TMP, /tmp, "
        "/var/tmp, /usr/tmp, the current directory) and each DIR: trust of the directory and "
        "its ancestors, filesystem and whether an in-place overwrite is reliable, mount "
        "options, O_TMPFILE; and swap, the fs.protected_* sysctls and XDG_RUNTIME_DIR. "
        "Levels: ok < info < warning < error. Exit 1 when a finding reaches --fail-on.",
    )
    p.add_argument("dirs", nargs="*", metavar="DIR", help="more directories to audit")
    p.add_argument("--json", action="store_true", help="print JSON (schema hardtemp-check/1)")
    p.add_argument(
        "--fail-on",
        choices=levels,
        default="error",
        metavar="LEVEL",
        help=f"exit 1 when a finding is at least this severe: {', '.join(levels)} (default: error)",
    )
    p.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="CODE[:SUBJECT]",
        help="accept a known finding (its code, e.g. swap, or code:subject, e.g. "
        "sysctl:fs.protected_regular): still shown, marked ignored, but never fails the "
        "gate; repeatable",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="details of passed checks too")
    _colour_option(p)
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser(
        "run",
        help="run a command with TMPDIR set to a fresh private directory",
        description="Run CMD with TMPDIR, TMP and TEMP set to a fresh private (0700) directory "
        "that is removed, every file overwritten, when CMD ends. The exit status is CMD's; if "
        "CMD is killed by a signal, hardtemp kills itself with the same signal after cleanup. "
        "SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1 and SIGUSR2 sent to hardtemp are forwarded "
        "to CMD. CMD inherits a descriptor holding the directory's lock, so `hardtemp sweep` "
        "leaves the directory alone while CMD runs, even if hardtemp is SIGKILLed. "
        "125: the directory could not be created (or removed, when CMD succeeded); "
        "126: CMD cannot be executed; 127: CMD not found.",
    )
    p.add_argument("--keep", action="store_true", help="keep the directory and print its path")
    p.add_argument("--dir", metavar="DIR", help="create the private directory in DIR")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "wipe",
        help="overwrite files in place, then remove them",
        description="Overwrite each regular file in place (fdatasync after each pass), rename "
        "it to a random name and remove it; report whether the overwrite can be trusted on its "
        "filesystem. Symlinks, devices, FIFOs and sockets are refused (nothing is followed, "
        "nothing removed), as is a PATH whose parent is a symlink. Directories are refused "
        "unless -r. Exit 1 if any PATH failed.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument(
        "-r",
        "--recursive",
        action="store_true",
        help="remove directories and their contents (regular files with one link are "
        "overwritten first; symlinks inside are removed, never followed; mount points are "
        "not entered)",
    )
    p.add_argument("--passes", type=int, default=1, help="overwrite passes per file (default 1)")
    p.add_argument("--pattern", choices=PATTERNS, default="random", help="default: random")
    p.add_argument(
        "--require-reliable",
        action="store_true",
        help="fail (exit 1) when the overwrite cannot be trusted on the file's filesystem",
    )
    p.add_argument(
        "--remove-unwiped",
        action="store_true",
        help="also remove a file that could not be overwritten (e.g. another user's file you "
        "may not write); it still counts as failed (exit 1), since its data stays on the disk. "
        "Without it such a file is left in place, as shred -u does",
    )
    p.add_argument("--json", action="store_true", help="print the reports as JSON")
    _colour_option(p)
    p.set_defaults(func=_cmd_wipe)

    p = sub.add_parser(
        "sweep",
        help="remove temp files left behind by dead hardtemp processes",
        description="Remove, with an overwrite, the temporary files and directories that "
        "hardtemp created in the top level of each DIR (default: the temporary-directory "
        "candidates) and that no process uses any more: the entry carries this user's "
        "authenticated mark (extended attribute user.hardtemp.owner, bound to this very "
        "entry, its directory and its name), no process holds its lock (flock), and its "
        "creator is not known to run. Never touches unmarked, moved or renamed entries, "
        "entries of other users (nor their entries inside a marked directory), or anything "
        "through a symlink; untrusted directories are skipped. Exit 1 if a removal failed, "
        "a given DIR does not exist or could not be swept, or the sweep key is unusable.",
    )
    p.add_argument("dirs", nargs="*", metavar="DIR")
    p.add_argument("-n", "--dry-run", action="store_true", help="only say what would be removed")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="also list what was kept")
    _colour_option(p)
    p.set_defaults(func=_cmd_sweep)
    return parser


def _one_line_warning(where: str) -> Any:
    def show(message: Warning | str, *args: object, **kwargs: object) -> None:
        text = " ".join(str(message).split())  # one line, whatever the message holds
        print(f"{where}: warning: {text}", file=sys.stderr)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``hardtemp`` command with ``argv`` (default: ``sys.argv[1:]``); return its status."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
    except SystemExit as exc:  # --help/--version (0) or a bad argument (2)
        return exc.code if isinstance(exc.code, int) else 2
    where = f"{PROG} {args.subcommand}"
    if extra:
        # Name the subcommand whose options were meant, not just "hardtemp".
        print(
            f"{where}: error: unrecognized arguments: {' '.join(extra)} (see '{where} --help')",
            file=sys.stderr,
        )
        return 2
    problem = _policy.environment_error()
    if problem is not None:
        print(f"{where}: error: {problem}", file=sys.stderr)
        return 2
    try:
        with warnings.catch_warnings():
            # Warnings (e.g. a skipped untrusted $TMPDIR) as the tool's own one-line messages,
            # never Python's "file:line: Category: ..." plus a source line.
            warnings.showwarning = _one_line_warning(where)
            status = int(args.func(args))
        sys.stdout.flush()  # a reader gone away shows up here, not at interpreter exit
        return status
    except _UsageError as exc:
        print(f"{where}: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"{where}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except BrokenPipeError:
        # The reader went away (| head): no traceback, no second error on exit, and
        # the status a shell reports for a filter killed by SIGPIPE, not a failed gate's 1.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as exc:
        print(f"{where}: {exc}", file=sys.stderr)
        return 1
