"""Shared helpers for the encrypted-file tests (hardtemp._crypt)."""

from __future__ import annotations

import os
import pickle
import tempfile
import threading
from collections.abc import Callable
from typing import Any

from hardtemp._crypt import EncryptedRawIO


def backing_fd(directory: str | None = None) -> int:
    """A new, empty, unnamed file (O_TMPFILE) to put an encrypted file on."""
    return os.open(
        directory or tempfile.gettempdir(), os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600
    )


def raw_of(f: Any) -> EncryptedRawIO:
    """The EncryptedRawIO under a (text or buffered) file object."""
    obj = f
    while not isinstance(obj, EncryptedRawIO):
        obj = obj.buffer if hasattr(obj, "buffer") else obj.raw
    return obj


def proc_path(f: Any) -> str:
    """Path to the backing file through /proc/self/fd (what an attacker edits)."""
    return f"/proc/self/fd/{raw_of(f)._fd}"


class NonceRecorder:
    """Wraps the object's AESGCM and fails the test on any repeated nonce.

    Only observes: every call is passed through to the real AESGCM.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.nonces: set[bytes] = set()
        self.lock = threading.Lock()
        self.repeats: list[bytes] = []

    def _record(self, nonce: bytes) -> None:
        with self.lock:
            if nonce in self.nonces:
                self.repeats.append(nonce)
            self.nonces.add(nonce)

    def encrypt_into(self, nonce: bytes, data: Any, ad: Any, buf: Any) -> int:
        self._record(nonce)
        return int(self.inner.encrypt_into(nonce, data, ad, buf))

    def encrypt(self, nonce: bytes, data: Any, ad: Any) -> bytes:
        self._record(nonce)
        return bytes(self.inner.encrypt(nonce, data, ad))

    def decrypt_into(self, nonce: bytes, data: Any, ad: Any, buf: Any) -> int:
        return int(self.inner.decrypt_into(nonce, data, ad, buf))

    def decrypt(self, nonce: bytes, data: Any, ad: Any) -> bytes:
        return bytes(self.inner.decrypt(nonce, data, ad))


def record_nonces(f: Any) -> NonceRecorder:
    raw = raw_of(f)
    sealer = raw._sealer
    assert sealer is not None
    rec = NonceRecorder(sealer._aead)
    sealer._use(rec)  # type: ignore[arg-type]  # every seal, the bound ones too
    return rec


def child_result(task: Callable[[], object], fork: Callable[[], int] = os.fork) -> object:
    """Run ``task()`` in a child made by ``fork`` (``os.fork``, or a raw ``fork()`` that
    runs no Python hooks); its result, or its exception as ``"Name: message"``."""
    r, w = os.pipe()
    pid = fork()
    if pid == 0:  # pragma: no cover - child (coverage follows os.fork only)
        try:
            os.close(r)
            try:
                res: object = task()
            except BaseException as exc:
                res = f"{type(exc).__name__}: {exc}"
            os.write(w, pickle.dumps(res))
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as inp:
        data = inp.read()
    os.waitpid(pid, 0)
    return pickle.loads(data)  # noqa: S301 - our own child


def in_child(fn: Callable[[], object]) -> tuple[str, str]:
    """Run ``fn()`` in a forked child; return (exception class name or 'ok', repr/message)."""

    def task() -> tuple[str, str]:
        try:
            return ("ok", repr(fn()))
        except BaseException as exc:
            return (type(exc).__name__, str(exc))

    result = child_result(task)
    assert isinstance(result, tuple), result
    return result
