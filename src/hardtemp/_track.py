"""A creation hook for test tooling (``pytest --hardtemp-strict``); off by default.

When :data:`hook` is None (always, unless the pytest plugin's strict mode
installs one) the creating functions pay one global lookup and nothing else.
The hook is called after a successful creation with
``(kind, obj, path, fd, ident)``: ``kind`` is the creating function's name,
``obj`` the returned object (or None for ``mkstemp``/``mkdtemp``), ``path``
its name (None when unnamed), ``fd`` its descriptor (None when not exposed)
and ``ident`` the ``(st_dev, st_ino)`` of what was created.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Hook", "hook"]

Hook = Callable[[str, object, "str | bytes | None", "int | None", "tuple[int, int]"], None]

#: Installed by ``hardtemp._pytest_plugin`` in strict mode; must not raise.
hook: Hook | None = None
