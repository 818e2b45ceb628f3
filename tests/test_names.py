"""Names: 80 random bits from ``secrets`` in a filesystem-safe alphabet; safe prefixes."""

from __future__ import annotations

import os
import random
import string
from collections import Counter
from pathlib import Path

import pytest

import hardtemp
from _helpers_core import start_threads
from hardtemp import _names

ALPHABET = set(string.ascii_lowercase + "234567")
N_NAMES = 20000


def chi_square(chars: str, alphabet: set[str]) -> float:
    counts = Counter(chars)
    expected = len(chars) / len(alphabet)
    return sum((counts.get(c, 0) - expected) ** 2 / expected for c in alphabet)


# 31 degrees of freedom: mean 31, sd ~7.9. P(chi2 > 130) is below 1e-13, so a
# correct generator never trips this; a biased one (see the control) does.
CHI2_LIMIT = 130.0


def test_name_has_at_least_80_random_bits_in_16_base32_characters() -> None:
    assert _names.NAME_BITS >= 80
    name = _names.random_name()
    assert len(name) == 16
    assert set(name) <= ALPHABET
    # 16 characters from a 32-symbol alphabet are exactly 80 bits.
    assert len(name) * 5 >= 80


def test_thousands_of_names_are_all_distinct_and_use_only_the_alphabet() -> None:
    names = [_names.random_name() for _ in range(N_NAMES)]
    assert len(set(names)) == N_NAMES
    assert set("".join(names)) <= ALPHABET


def test_characters_are_uniformly_distributed() -> None:
    chars = "".join(_names.random_name() for _ in range(N_NAMES))
    assert set(chars) == ALPHABET  # every symbol is used
    assert chi_square(chars, ALPHABET) < CHI2_LIMIT


def test_uniformity_check_rejects_a_biased_generator() -> None:
    # Control: the same check on names that never use one symbol (31 of 32) fails.
    rng = random.Random(1)
    biased = "".join(rng.choices(sorted(ALPHABET - {"q"}), k=N_NAMES * 16))
    assert chi_square(biased, ALPHABET) > CHI2_LIMIT


def test_created_names_are_prefix_random_suffix(tmp_path: Path) -> None:
    fd, path = hardtemp.mkstemp(prefix="pre-", suffix=".suf", dir=tmp_path)
    os.close(fd)
    base = os.path.basename(path)
    assert base.startswith("pre-")
    assert base.endswith(".suf")
    middle = base[len("pre-") : -len(".suf")]
    assert len(middle) == 16
    assert set(middle) <= ALPHABET


def test_default_prefix_is_tmp(tmp_path: Path) -> None:
    path = hardtemp.mkdtemp(dir=tmp_path)
    assert os.path.basename(path).startswith("tmp")
    assert len(os.path.basename(path)) == 3 + 16


def _creators(tmp_path: Path) -> dict[str, object]:
    def with_dir(fn: object) -> object:
        def call(**kw: object) -> object:
            kw.setdefault("dir", tmp_path)
            return fn(**kw)  # type: ignore[operator]

        return call

    return {
        "mkstemp": with_dir(hardtemp.mkstemp),
        "mkdtemp": with_dir(hardtemp.mkdtemp),
        "NamedTemporaryFile": with_dir(hardtemp.NamedTemporaryFile),
        "TemporaryFile": with_dir(hardtemp.TemporaryFile),
        "TemporaryDirectory": with_dir(hardtemp.TemporaryDirectory),
    }


BAD_PARTS = ["../escape", "a/b", "/abs", "nul\0", b"../escape", b"a/b", b"nul\0"]
API = ["mkstemp", "mkdtemp", "NamedTemporaryFile", "TemporaryFile", "TemporaryDirectory"]


@pytest.mark.parametrize("api", API)
@pytest.mark.parametrize("part", ["prefix", "suffix"])
@pytest.mark.parametrize("bad", BAD_PARTS, ids=repr)
def test_separator_or_nul_in_prefix_or_suffix_raises_value_error_and_creates_nothing(
    tmp_path: Path, api: str, part: str, bad: str | bytes
) -> None:
    target = tmp_path / "dir"
    target.mkdir()
    create = _creators(target)[api]
    kw: dict[str, object] = {part: bad}
    if isinstance(bad, bytes):
        kw["dir"] = os.fsencode(target)
    with pytest.raises(ValueError, match=r"separator|NUL"):
        create(**kw)  # type: ignore[operator]
    assert os.listdir(tmp_path) == ["dir"]
    assert os.listdir(target) == []


@pytest.mark.parametrize("api", API)
@pytest.mark.parametrize(
    "kw",
    [
        {"prefix": "a", "suffix": b"b"},
        {"prefix": b"a", "suffix": "b"},
        {"prefix": b"a", "dir_bytes": False},
        {"suffix": "a", "dir_bytes": True},
    ],
    ids=[
        "str-prefix-bytes-suffix",
        "bytes-prefix-str-suffix",
        "bytes-prefix-str-dir",
        "str-suffix-bytes-dir",
    ],
)
def test_mixing_str_and_bytes_raises_type_error(
    tmp_path: Path, api: str, kw: dict[str, object]
) -> None:
    kw = dict(kw)
    dir_bytes = kw.pop("dir_bytes", None)
    if dir_bytes is not None:
        kw["dir"] = os.fsencode(tmp_path) if dir_bytes else str(tmp_path)
    creators = {
        "mkstemp": hardtemp.mkstemp,
        "mkdtemp": hardtemp.mkdtemp,
        "NamedTemporaryFile": hardtemp.NamedTemporaryFile,
        "TemporaryFile": hardtemp.TemporaryFile,
        "TemporaryDirectory": hardtemp.TemporaryDirectory,
    }
    kw.setdefault("dir", str(tmp_path))
    with pytest.raises(TypeError):
        creators[api](**kw)  # type: ignore[operator]
    assert os.listdir(tmp_path) == []


def test_prefix_of_another_type_raises_type_error(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="int"):
        hardtemp.mkstemp(prefix=3, dir=tmp_path)  # type: ignore[call-overload]


def test_bytes_arguments_give_bytes_paths(tmp_path: Path) -> None:
    bdir = os.fsencode(tmp_path)
    fd, path = hardtemp.mkstemp(prefix=b"p", suffix=b"s", dir=bdir)
    os.close(fd)
    assert isinstance(path, bytes)
    assert path.startswith(bdir + b"/p")
    assert path.endswith(b"s")
    assert os.path.isfile(path)
    dpath = hardtemp.mkdtemp(prefix=b"d", dir=bdir)
    assert isinstance(dpath, bytes)
    assert os.path.isdir(dpath)
    # bytes prefix alone (no dir): the default directory, as bytes.
    fd, path2 = hardtemp.mkstemp(prefix=b"ht-bytes-")
    os.close(fd)
    os.unlink(path2)
    assert isinstance(path2, bytes)
    assert path2.startswith(hardtemp.gettempdirb() + b"/ht-bytes-")
    with hardtemp.TemporaryDirectory(prefix=b"x", dir=bdir) as name:
        assert isinstance(name, bytes)
    with hardtemp.NamedTemporaryFile(suffix=b".b", dir=bdir) as f:
        assert isinstance(f.name, bytes)


def test_pathlike_dir_gives_str_paths(tmp_path: Path) -> None:
    fd, path = hardtemp.mkstemp(dir=tmp_path)
    os.close(fd)
    assert isinstance(path, str)
    assert os.path.dirname(path) == str(tmp_path)


def test_non_ascii_bytes_prefix_round_trips(tmp_path: Path) -> None:
    fd, path = hardtemp.mkstemp(prefix=b"\xff\xfe-", dir=os.fsencode(tmp_path))
    os.close(fd)
    assert os.path.basename(path).startswith(b"\xff\xfe-")
    assert os.path.exists(path)


def test_a_forked_child_never_draws_the_names_its_parent_draws_next() -> None:
    # Names are drawn 64 at a time: the child must not inherit the parent's pool.
    _names.random_name()  # the pool is now full
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not saved
        try:
            os.close(rfd)
            os.write(wfd, "".join(_names.random_name() for _ in range(8)).encode())
        finally:
            os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as f:
        theirs = f.read().decode()
    os.waitpid(pid, 0)
    ours = "".join(_names.random_name() for _ in range(8))
    assert len(theirs) == len(ours) == 128
    assert {theirs[i : i + 16] for i in range(0, 128, 16)}.isdisjoint(
        {ours[i : i + 16] for i in range(0, 128, 16)}
    )


def test_threads_drawing_names_at_once_never_get_the_same_one() -> None:
    import threading

    got: list[list[str]] = [[] for _ in range(8)]
    barrier = threading.Barrier(8, timeout=60)

    def draw(out: list[str]) -> None:
        barrier.wait()
        out.extend(_names.random_name() for _ in range(2000))

    threads = start_threads((draw, (out,)) for out in got)
    for t in threads:
        t.join()
    every = [n for out in got for n in out]
    assert len(set(every)) == len(every) == 16000
