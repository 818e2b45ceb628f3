"""A FUSE filesystem of a few lines, answering every request with one errno (root only).

For the faults only a filesystem can cause (a statx answered ``EPERM`` by another user's
FUSE daemon): the kernel's own FUSE protocol over ``/dev/fuse``, no library. Mount it in a
private mount namespace (``unshare -m``): it goes with the namespace.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import threading

_IN_HEADER = struct.Struct("=IIQQIIIHH")  # len, opcode, unique, nodeid, uid, gid, pid, ...
_OUT_HEADER = struct.Struct("=IiQ")  # len, error (negative errno), unique
# fuse_init_out (protocol 7.31): major, minor, max_readahead, flags, max_background,
# congestion_threshold, max_write, time_gran, max_pages, map_alignment, flags2, (unused).
_INIT_OUT = struct.Struct("=IIIIHHIIHHII24x")
_INIT, _FORGET, _INTERRUPT, _BATCH_FORGET = 26, 2, 36, 42


def mount_failing(mountpoint: str, err: int) -> None:
    """Mount at ``mountpoint`` a filesystem that answers every request but the handshake
    with ``err`` (``EPERM``...), served by a daemon thread until it is unmounted.

    Raises:
        OSError: ``/dev/fuse`` or the mount failed (not root, no FUSE in this kernel).
    """
    fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    libc = ctypes.CDLL(None, use_errno=True)
    options = f"fd={fd},rootmode=40000,user_id=0,group_id=0".encode()
    if libc.mount(b"hardtemp-test", os.fsencode(mountpoint), b"fuse", 0, options) != 0:
        code = ctypes.get_errno()
        os.close(fd)
        raise OSError(code, os.strerror(code), mountpoint)
    threading.Thread(target=_serve, args=(fd, err), daemon=True).start()


def _serve(fd: int, err: int) -> None:
    while True:
        try:
            request = os.read(fd, 1 << 20)  # at least max_write plus a header
        except OSError as exc:
            if exc.errno in (errno.EINTR, errno.ENOENT):  # ENOENT: the request was interrupted
                continue
            return  # ENODEV: unmounted
        _, opcode, unique, *_ = _IN_HEADER.unpack_from(request)
        if opcode in (_FORGET, _BATCH_FORGET, _INTERRUPT):
            continue  # no reply expected
        if opcode == _INIT:
            body = _INIT_OUT.pack(7, 31, 0, 0, 1, 1, 65536, 1, 16, 0, 0, 0)
            os.write(fd, _OUT_HEADER.pack(_OUT_HEADER.size + len(body), 0, unique) + body)
        else:
            os.write(fd, _OUT_HEADER.pack(_OUT_HEADER.size, -err, unique))
