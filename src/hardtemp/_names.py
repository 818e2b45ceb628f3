"""Random names and the validation of the parts a caller may add to them."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # no `typing`, `secrets` at run time: `import hardtemp.compat` stays cheap
if TYPE_CHECKING:
    from _typeshed import StrOrBytesPath
del TYPE_CHECKING

__all__ = ["NAME_BITS", "TMP_MAX", "random_name", "sanitize_params"]

#: Names tried before giving up (80 random bits each: only an attacker flooding
#: the directory with our names gets past the first).
TMP_MAX = 10000

#: Random bits in every generated name. 80 bits: an attacker who can create
#: names in a shared directory cannot pre-plant ours (CPython uses ~41 bits).
NAME_BITS = 80


_ALPHABET = b"abcdefghijklmnopqrstuvwxyz234567"
_NAME_LEN = NAME_BITS // 5
# Each random byte keeps its low 5 bits: one uniform character of 32.
_TO_ALPHABET = bytes(_ALPHABET[b & 31] for b in range(256))


_POOL_NAMES = 64
# Names drawn ahead, 64 per getrandom(2) (one system call per name cost mkstemp ~3%).
# list.pop() is atomic: two threads never get the same name.
_pool: list[str] = []
# A forked child must not draw the names its parent will use next (both would collide).
os.register_at_fork(after_in_child=_pool.clear)


def random_name() -> str:
    """16 characters of ``a-z2-7`` (5 bits each): 80 bits from the kernel's CSPRNG.

    Lowercase only, so two names never collide on a case-insensitive filesystem.
    """
    try:
        return _pool.pop()
    except IndexError:
        pass
    # os.urandom is what secrets.token_bytes returns (getrandom(2)): names nobody can predict.
    chars = os.urandom(_NAME_LEN * _POOL_NAMES).translate(_TO_ALPHABET).decode("ascii")
    names = [chars[i : i + _NAME_LEN] for i in range(0, len(chars), _NAME_LEN)]
    mine = names.pop()
    _pool.extend(names)
    return mine


def _check_part(what: str, value: str | bytes) -> None:
    # A separator would let a prefix/suffix escape the verified directory ("../x").
    sep: str | bytes = "/" if isinstance(value, str) else b"/"
    nul: str | bytes = "\0" if isinstance(value, str) else b"\0"
    if sep in value:  # type: ignore[operator]
        raise ValueError(f"{what} must not contain a path separator: {value!r}")
    if nul in value:  # type: ignore[operator]
        raise ValueError(f"{what} must not contain a NUL character: {value!r}")


def _infer_type(*args: object) -> type[str] | type[bytes]:
    """str or bytes, from the arguments that are not None (as the stdlib does)."""
    kind: type[str] | type[bytes] | None = None
    for arg in args:
        if arg is None:
            continue
        if isinstance(arg, os.PathLike):
            arg = os.fspath(arg)
        this: type[str] | type[bytes]
        if isinstance(arg, bytes):
            this = bytes
        elif isinstance(arg, str):
            this = str
        else:
            raise TypeError(f"expected str, bytes or os.PathLike, not {type(arg).__name__}")
        if kind is None:
            kind = this
        elif kind is not this:
            raise TypeError("Can't mix bytes and non-bytes in path components.")
    return str if kind is None else kind


def sanitize_params(
    prefix: str | bytes | None, suffix: str | bytes | None, dir: StrOrBytesPath | None
) -> tuple[str | bytes, str | bytes, str | bytes | None, type[str] | type[bytes]]:
    """Validate and default ``prefix``, ``suffix`` and ``dir`` like :mod:`tempfile`.

    Returns ``(prefix, suffix, dir, output_type)``; ``dir`` is ``None`` for
    "the default temporary directory".

    Raises:
        TypeError: str and bytes mixed, or an argument of another type.
        ValueError: a prefix or suffix containing ``/`` or NUL.
    """
    if prefix is None and suffix is None and (dir is None or type(dir) is str):
        return "tmp", "", dir, str  # the common calls: nothing to check
    output_type = _infer_type(prefix, suffix, dir)
    if suffix is None:
        suffix_v: str | bytes = output_type()
    else:
        suffix_v = suffix
    if prefix is None:
        prefix_v: str | bytes = "tmp" if output_type is str else b"tmp"
    else:
        prefix_v = prefix
    _check_part("prefix", prefix_v)
    _check_part("suffix", suffix_v)
    dir_v: str | bytes | None = None
    if dir is not None:
        dir_v = os.fspath(dir)
    return prefix_v, suffix_v, dir_v, output_type


def make_name(prefix: str | bytes, suffix: str | bytes) -> str | bytes:
    """``prefix + random + suffix`` in the type of ``prefix``."""
    rand = random_name()
    if isinstance(prefix, bytes):
        return prefix + rand.encode("ascii") + suffix  # type: ignore[operator]
    return prefix + rand + suffix  # type: ignore[operator]
