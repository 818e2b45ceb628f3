"""hardtemp: security-hardened temporary files, a drop-in for :mod:`tempfile`."""

from . import exceptions as exceptions
from .exceptions import HardtempError as HardtempError

__all__ = [
    "HardtempError",
    "exceptions",
]
