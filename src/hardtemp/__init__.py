"""hardtemp: security-hardened temporary files, a drop-in for :mod:`tempfile`.

Same names and parameters as the standard module; new options are
keyword-only. See README.md for the guarantees and SECURITY.md for the
threat model.
"""

from . import exceptions as exceptions
from ._create import mkdtemp as mkdtemp
from ._create import mkstemp as mkstemp
from ._dirtrust import TrustReport as TrustReport
from ._dirtrust import check_dir as check_dir
from ._files import NamedTemporaryFile as NamedTemporaryFile
from ._files import TemporaryDirectory as TemporaryDirectory
from ._files import TemporaryFile as TemporaryFile
from ._spool import SpooledTemporaryFile as SpooledTemporaryFile
from ._tempdir import gettempdir as gettempdir
from ._tempdir import gettempdirb as gettempdirb
from .exceptions import HardtempError as HardtempError
from .exceptions import IntegrityError as IntegrityError
from .exceptions import UnsafeDirectoryError as UnsafeDirectoryError

__version__ = "0.1.0"

__all__ = [
    "HardtempError",
    "IntegrityError",
    "NamedTemporaryFile",
    "SpooledTemporaryFile",
    "TemporaryDirectory",
    "TemporaryFile",
    "TrustReport",
    "UnsafeDirectoryError",
    "check_dir",
    "exceptions",
    "gettempdir",
    "gettempdirb",
    "mkdtemp",
    "mkstemp",
]
