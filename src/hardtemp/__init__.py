"""hardtemp: security-hardened temporary files, a drop-in for :mod:`tempfile`.

Same names and parameters as the standard module; new options are
keyword-only. See README.md for the guarantees and SECURITY.md for the
threat model.

PYTEST_DONT_REWRITE: hardtemp registers a pytest plugin but has no assertions
for pytest to rewrite; without this mark pytest warns when hardtemp was imported
first (``install()`` in a ``sitecustomize``), which aborts suites run with ``-W error``.
"""

from . import exceptions as exceptions
from .exceptions import HardtempError as HardtempError
from .exceptions import HardtempWarning as HardtempWarning
from .exceptions import InsecureOperationError as InsecureOperationError
from .exceptions import IntegrityError as IntegrityError
from .exceptions import NoTrustedTempDirError as NoTrustedTempDirError
from .exceptions import PlaintextLeftWarning as PlaintextLeftWarning
from .exceptions import ReplacedFileWarning as ReplacedFileWarning
from .exceptions import SizeLimitError as SizeLimitError
from .exceptions import StaleBindingWarning as StaleBindingWarning
from .exceptions import UnsafeCandidateWarning as UnsafeCandidateWarning
from .exceptions import UnsafeDirectoryError as UnsafeDirectoryError
from .exceptions import UnsafeFileError as UnsafeFileError
from .exceptions import WipeError as WipeError
from .exceptions import WipeUnreliableWarning as WipeUnreliableWarning

# Lazy re-exports: `import hardtemp.compat` (or `install()` in a sitecustomize, which every
# Python process then runs) must not pay for the crypto stack, psutil and ctypes up front.
# Each name below is imported from its module on first access (PEP 562); type checkers
# see the plain re-exports.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._create import mkdtemp as mkdtemp
    from ._create import mkstemp as mkstemp
    from ._dirtrust import TrustReport as TrustReport
    from ._dirtrust import check_dir as check_dir
    from ._files import NamedTemporaryFile as NamedTemporaryFile
    from ._files import TemporaryDirectory as TemporaryDirectory
    from ._files import TemporaryFile as TemporaryFile
    from ._link import publish as publish
    from ._memfd import MemoryFile as MemoryFile
    from ._policy import get_wipe_policy as get_wipe_policy
    from ._policy import set_wipe_policy as set_wipe_policy
    from ._policy import wipe_policy as wipe_policy
    from ._remove import wipe as wipe
    from ._spool import SpooledTemporaryFile as SpooledTemporaryFile
    from ._tempdir import gettempdir as gettempdir
    from ._tempdir import gettempdirb as gettempdirb
    from ._wipe import WipeReport as WipeReport
del TYPE_CHECKING

_LAZY = {
    "mkdtemp": "_create",
    "mkstemp": "_create",
    "TrustReport": "_dirtrust",
    "check_dir": "_dirtrust",
    "NamedTemporaryFile": "_files",
    "TemporaryDirectory": "_files",
    "TemporaryFile": "_files",
    "publish": "_link",
    "MemoryFile": "_memfd",
    "get_wipe_policy": "_policy",
    "set_wipe_policy": "_policy",
    "wipe_policy": "_policy",
    "SpooledTemporaryFile": "_spool",
    "gettempdir": "_tempdir",
    "gettempdirb": "_tempdir",
    "WipeReport": "_wipe",
    "wipe": "_remove",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hardtemp' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"hardtemp.{module}"), name)
    globals()[name] = value  # later lookups are plain module attributes
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__version__ = "0.1.0"

__all__ = [
    "HardtempError",
    "HardtempWarning",
    "InsecureOperationError",
    "IntegrityError",
    "MemoryFile",
    "NamedTemporaryFile",
    "NoTrustedTempDirError",
    "PlaintextLeftWarning",
    "ReplacedFileWarning",
    "SizeLimitError",
    "SpooledTemporaryFile",
    "StaleBindingWarning",
    "TemporaryDirectory",
    "TemporaryFile",
    "TrustReport",
    "UnsafeCandidateWarning",
    "UnsafeDirectoryError",
    "UnsafeFileError",
    "WipeError",
    "WipeReport",
    "WipeUnreliableWarning",
    "check_dir",
    "exceptions",
    "get_wipe_policy",
    "gettempdir",
    "gettempdirb",
    "mkdtemp",
    "mkstemp",
    "publish",
    "set_wipe_policy",
    "wipe",
    "wipe_policy",
]
