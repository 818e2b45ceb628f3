"""What each defence of a ``NamedTemporaryFile`` lifecycle costs (issue 13).

The lifecycle of ``bench_lifecycle.py`` (create, write 1,000 bytes, close: hardtemp
overwrites on close) is run in full and with one defence switched off at a time, all
against the standard library's in the same interleaved rounds (who goes first rotates),
in one process; CPU time, medians of the rounds. Printed: each variant's ratio to the
standard library, and what the defence it lacks costs (full minus variant, as a ratio of
the standard library's lifecycle).

The variants are **measurements only**, made by replacing a private function of hardtemp
inside this process: none is a mode hardtemp offers, and none must be used for data.

* no sweep claim: no liveness lock and no sweep mark (``hardtemp sweep`` could neither
  tell the file from an orphan nor find it after a crash);
* no sweep mark: the lock kept, no authenticated mark (the ``fsetxattr``, its HMAC, the
  identity it binds); and the mark's steps one by one (the tag and the key look-up, then
  the identity, then the MAC, never the ``fsetxattr``), to tell what each costs;
* no shrink report: what another program cut off or punched out of the file is not
  reported at close (the ``SEEK_HOLE`` and the size comparison);
* no mount watch: the cached filesystem verdict is trusted without asking whether the
  mount table changed (a ``poll``);
* no overwrite: the close removes the name without overwriting the data (the ``F_GETFL``
  and the ``pwrite``; on a disk also the FIEMAP): the standard library's close;
* all of them at once.

    python benchmarks/bench_defences.py [--dir DIR] [--rounds 9] [--files 2000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import hardtemp
from hardtemp import _fsinfo, _markkey, _owner, _plainio, _remove, _wipe

PAYLOAD = os.urandom(1000)

# (object, attribute, stand-in): each taken here, at import, so that a renamed private name
# fails `--help` (tests/test_benchmarks.py), not a measurement later.
_ORIGINALS = {
    "claim": (_owner, "claim", _owner.claim),
    "mark": (_owner, "mark", _owner.mark),
    "shrink": (_plainio.PlainFileIO, "shrink_report", _plainio.PlainFileIO.shrink_report),
    "watch": (_fsinfo._watch, "changed", _fsinfo._watch.changed),
    "overwrite": (_remove, "overwrite_small", _wipe.overwrite_small),  # (imported there)
}


def _no_claim(*args: Any, **kwargs: Any) -> None:
    return None


def _no_mark(*args: Any, **kwargs: Any) -> bool:
    return False


def _mark_parts(parts: int) -> Callable[..., bool]:
    """A stand-in for the mark that does only its first ``parts`` steps, and writes nothing:
    1 the tag and the key look-up, 2 also the identity it binds, 3 also the MAC."""

    def mark(fd: int, dir_fd: int, name: str | bytes, **kw: Any) -> bool:
        tag, key = _owner.current_tag(), _markkey.load(create=True, euid=kw.get("euid"))
        if parts >= 2 and key is not None:
            place = _owner._place(fd, kw["dir_ident"], os.fsencode(name), kw.get("statx"))
            if parts >= 3 and place is not None:
                _owner._mark_mac(key, tag, place)
        return False

    return mark


def _no_shrink(self: Any, st: Any = None, fd: Any = None) -> None:
    return None


def _unchanged() -> bool:
    return False


def _no_overwrite(fd: int, st: os.stat_result, mnt_id: int = -1) -> _fsinfo.FsInfo:
    return _fsinfo.file_info_for_fd(fd, st, mnt_id=mnt_id)  # the verdict only, no write


# name -> (the original it replaces, the stand-in)
_STAND_INS: dict[str, tuple[str, Callable[..., Any]]] = {
    "claim": ("claim", _no_claim),
    "mark": ("mark", _no_mark),
    "mark-1": ("mark", _mark_parts(1)),
    "mark-2": ("mark", _mark_parts(2)),
    "mark-3": ("mark", _mark_parts(3)),
    "shrink": ("shrink", _no_shrink),
    "watch": ("watch", _unchanged),
    "overwrite": ("overwrite", _no_overwrite),
}

VARIANTS: dict[str, tuple[str, ...]] = {
    "full": (),
    "no sweep claim (lock + mark)": ("claim",),
    "no sweep mark (lock kept)": ("mark",),
    "mark: tag and key only": ("mark-1",),
    "mark: + the identity it binds": ("mark-2",),
    "mark: + its MAC (no fsetxattr)": ("mark-3",),
    "no shrink report": ("shrink",),
    "no mount watch": ("watch",),
    "no overwrite": ("overwrite",),
    "all of them": ("claim", "shrink", "watch", "overwrite"),
}


@contextmanager
def switched_off(names: tuple[str, ...]) -> Iterator[None]:
    """hardtemp with the defences ``names`` replaced by their stand-ins, until the exit."""
    try:
        for name in names:
            target, stand_in = _STAND_INS[name]
            obj, attr, _ = _ORIGINALS[target]
            setattr(obj, attr, stand_in)
        yield
    finally:
        for obj, attr, original in _ORIGINALS.values():
            setattr(obj, attr, original)


def _named(module: Any, d: str, n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        with module.NamedTemporaryFile(dir=d) as f:
            f.write(PAYLOAD)
    return time.process_time() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=None, help="where to work (default: gettempdir())")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--files", type=int, default=2000, help="lifecycles per round")
    args = ap.parse_args()
    d = os.path.abspath(args.dir or hardtemp.gettempdir())
    info = _fsinfo.fs_info_for_path(d)
    print(f"in {d}: {info.fstype} ({info.verdict}); NamedTemporaryFile, 1,000 B; CPU time")
    runs: dict[str, list[float]] = {name: [] for name in ("stdlib", *VARIANTS)}
    order = ["stdlib", *VARIANTS]
    for name in order:  # warm-up, untimed
        with switched_off(VARIANTS.get(name, ())):
            _named(tempfile if name == "stdlib" else hardtemp, d, args.files // 4)
    for r in range(args.rounds):
        for name in order[r % len(order) :] + order[: r % len(order)]:
            with switched_off(VARIANTS.get(name, ())):
                module = tempfile if name == "stdlib" else hardtemp
                runs[name].append(_named(module, d, args.files))
    std = statistics.median(runs["stdlib"])
    full = statistics.median(runs["full"])
    print(f"{'variant':32s} {'ratio':>7s}  {'the defence costs':>18s}")
    for name in VARIANTS:
        t = statistics.median(runs[name])
        cost = "" if name == "full" else f"{(full - t) / std:+.2f}x the stdlib"
        print(f"{name:32s} {t / std:6.2f}x  {cost:>18s}")
    print(f"(median of {args.rounds} rounds of {args.files}; stand-ins for measurement only)")


if __name__ == "__main__":
    main()
