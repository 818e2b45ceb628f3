"""The creation attacks of test_attack_create.py, through hardtemp.aio.

The async API runs the sync objects in worker threads; these tests show the
defences hold there too: a real other local user (uid 65534) plants names,
owns the directory, or tries to read what we created. The attacker runs
between event loops (asyncio.run shuts the worker threads down), so the
fork into the other user never happens with worker threads alive.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_attack_create import (  # the attacker's functions and fixtures, reused
    SECRET,
    _mkdir_own,
    _try,
    _try_list,
    _try_read,
    assert_planted_untouched,
    force_names,
    plant_the_next_names,
    victim,
)

import hardtemp.aio as aio
from _helpers_core import NOBODY, umask
from hardtemp.exceptions import UnsafeDirectoryError

pytestmark = pytest.mark.attack

__all__ = ["force_names", "victim"]  # fixtures used by name


def run(coro: Any) -> Any:
    """asyncio.run, then wait until the worker threads have left the kernel's task list
    too, so the fork into the other user is from a single-threaded process."""
    try:
        return asyncio.run(coro)
    finally:
        for _ in range(1000):
            if len(os.listdir("/proc/self/task")) == 1:
                break
            time.sleep(0.001)


CREATORS: dict[str, Callable[[str], Any]] = {
    "mkstemp": lambda d: aio.mkstemp(dir=d, prefix="tmp"),
    "mkdtemp": lambda d: aio.mkdtemp(dir=d, prefix="tmp"),
    "NamedTemporaryFile": lambda d: aio.NamedTemporaryFile(dir=d, prefix="tmp"),
    "TemporaryDirectory": lambda d: aio.TemporaryDirectory(dir=d, prefix="tmp"),
}


async def _create(api: str, d: str) -> Any:
    obj = await CREATORS[api](d)
    if isinstance(obj, aio.AsyncFile):
        await obj.write(SECRET)
        await obj.flush()
    return obj


def _path_of(obj: Any) -> str:
    if isinstance(obj, tuple):
        os.close(obj[0])
        return str(obj[1])
    if isinstance(obj, str):
        return obj
    return str(obj.name)


async def _dispose(obj: Any) -> None:
    if isinstance(obj, aio.AsyncFile):
        await obj.close()
    elif isinstance(obj, aio.AsyncTemporaryDirectory):
        await obj.cleanup()


@pytest.mark.parametrize("api", list(CREATORS))
def test_planted_names_are_never_followed_or_opened_through_aio(
    shared_dir: Path,
    victim: Path,
    other_user: Callable[..., Any],
    force_names: Callable[[list[str]], list[str]],
    api: str,
) -> None:
    # Defence: O_CREAT|O_EXCL|O_NOFOLLOW / mkdir on a fresh name, in the worker thread too.
    planted, before = plant_the_next_names(shared_dir, victim, other_user)
    issued = force_names(planted)
    obj = run(_create(api, str(shared_dir)))
    path = _path_of(obj)
    assert issued[:5] == planted
    assert os.path.basename(path) == f"tmp{issued[5]}"
    st = os.lstat(path)
    assert st.st_uid == os.geteuid()
    assert not stat.S_ISLNK(st.st_mode)
    assert_planted_untouched(shared_dir, victim, planted, before)
    run(_dispose(obj))


@pytest.mark.parametrize("mask", [0, 0o022])
def test_other_user_cannot_read_anything_we_create_through_aio(
    shared_dir: Path, other_user: Callable[..., Any], mask: int
) -> None:
    # Defence: 0600 / 0700 by fchmod whatever the umask, also from the worker threads.
    async def create() -> tuple[Any, ...]:
        fd, p = await aio.mkstemp(dir=shared_dir)
        os.write(fd, SECRET)
        os.close(fd)
        named = await aio.NamedTemporaryFile(dir=shared_dir)
        await named.write(SECRET)
        await named.flush()
        d = await aio.mkdtemp(dir=shared_dir)
        tdir = await aio.TemporaryDirectory(dir=shared_dir)
        unnamed = await aio.TemporaryFile(dir=shared_dir, encrypt=False)
        await unnamed.write(SECRET)
        await unnamed.flush()
        return p, named, d, tdir, unnamed

    with umask(mask):
        p, named, d, tdir, unnamed = run(create())

    async def dispose() -> None:
        await named.close()
        await tdir.cleanup()
        await unnamed.close()

    try:
        assert other_user(_try_read, p) == "PermissionError"
        assert other_user(_try_read, named.name) == "PermissionError"
        assert other_user(_try_list, d) == "PermissionError"
        assert other_user(_try_list, tdir.name) == "PermissionError"
        assert other_user(_try, "create", os.path.join(tdir.name, "x")) == "PermissionError"
        fdpath = f"/proc/{os.getpid()}/fd/{unnamed.fileno()}"
        assert other_user(_try_read, fdpath) == "PermissionError"
    finally:
        run(dispose())
        os.unlink(p)
        os.rmdir(d)


@pytest.mark.parametrize(
    "api", ["mkstemp", "mkdtemp", "NamedTemporaryFile", "TemporaryDirectory", "TemporaryFile"]
)
def test_attacker_owned_directory_is_refused_through_aio(
    shared_dir: Path, other_user: Callable[..., Any], api: str
) -> None:
    # Defence: the directory-trust walk, before any creation, raised through the await.
    theirs = shared_dir / "theirs"
    other_user(_mkdir_own, str(theirs), 0o1777)

    async def create() -> Any:
        return await getattr(aio, api)(dir=theirs)

    with pytest.raises(UnsafeDirectoryError) as info:
        run(create())
    assert info.value.path == str(theirs)
    assert f"owned by uid {NOBODY}" in info.value.reason
    assert os.listdir(theirs) == []


def test_attacker_symlink_as_dir_is_refused_through_aio(
    shared_dir: Path, tmp_path: Path, other_user: Callable[..., Any]
) -> None:
    # Defence: a symlink on the way must be owned by root or us.
    ours = tmp_path / "ours"
    ours.mkdir(mode=0o700)
    link = shared_dir / "link"
    other_user(_try, "symlink", str(ours), str(link))
    with pytest.raises(UnsafeDirectoryError) as info:
        run(aio.mkstemp(dir=link))
    assert info.value.path == str(link)
    assert os.listdir(ours) == []


def test_attacker_cannot_swap_our_async_named_file_in_a_sticky_directory(
    shared_dir: Path, victim: Path, other_user: Callable[..., Any]
) -> None:
    # Defence: sticky shared directories only; the name stays ours while the file is open.
    f = run(_create("NamedTemporaryFile", str(shared_dir)))
    try:
        assert other_user(_try, "rename", f.name, str(shared_dir / "stolen")) == "PermissionError"
        assert other_user(_try, "unlink", f.name) == "PermissionError"
        assert other_user(_try, "symlink", str(victim), f.name) == "FileExistsError"
    finally:
        run(f.close())
    assert not os.path.exists(f.name)
    assert victim.read_bytes() == b"original victim contents"
