"""sendmmsg(2) through ctypes: one system call sends a batch of UDP datagrams, each to its own IPv4 address.

The datagrams are the rows of one C-contiguous uint8 array (all of one size), so a batch is built in place
with numpy and sent without a Python object per packet. `available()` says whether libc has sendmmsg; the
caller keeps its sendto loop for when it does not (or when the kernel answers ENOSYS).
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.c_void_p),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", _MsgHdr), ("len", ctypes.c_uint)]


_SOCKADDR_IN = struct.Struct("=HH4s8x")  # sa_family (host order), sin_port (network order), sin_addr
_MMSG_SIZE = ctypes.sizeof(_MMsgHdr)


def _load() -> Callable[[int, int, int, int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.sendmmsg
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


_sendmmsg = _load()


def available() -> bool:
    """libc has sendmmsg (the kernel may still refuse it: then `Datagrams.send` raises OSError ENOSYS)."""
    return _sendmmsg is not None


def sockaddr(host: str, port: int) -> bytes:
    """A struct sockaddr_in; OSError if `host` is not an IPv4 address literal."""
    return _SOCKADDR_IN.pack(socket.AF_INET, socket.htons(port), socket.inet_aton(host))


class Datagrams:
    """The rows of `rows` (a C-contiguous uint8 array, one datagram a row), each bound for its address."""

    def __init__(self, rows: npt.NDArray[np.uint8], addresses: Sequence[bytes]) -> None:
        if rows.dtype != np.uint8 or rows.ndim != 2 or not rows.flags.c_contiguous:
            raise ValueError("rows must be a C-contiguous 2-D uint8 array")
        if len(addresses) != rows.shape[0]:
            raise ValueError("one address per row")
        count, width = rows.shape
        self.rows = rows  # the iovecs point into it: keep it alive
        self.count = count
        self._names = ctypes.create_string_buffer(b"".join(addresses), max(1, 16 * count))
        self._iov = (_IoVec * max(1, count))()
        self._msgs = (_MMsgHdr * max(1, count))()
        data, names = rows.ctypes.data, ctypes.addressof(self._names)
        iov = ctypes.addressof(self._iov)
        iov_size = ctypes.sizeof(_IoVec)
        for i in range(count):
            self._iov[i].base = data + i * width
            self._iov[i].len = width
            hdr = self._msgs[i].hdr
            hdr.name = names + 16 * i
            hdr.namelen = 16
            hdr.iov = iov + i * iov_size
            hdr.iovlen = 1
        self._base = ctypes.addressof(self._msgs)

    def send(self, fd: int) -> list[int]:
        """Send every row, as few system calls as the kernel allows; the indexes of the rows that failed
        (each failure skips that one datagram, like a failed sendto). OSError if sendmmsg is unsupported."""
        if _sendmmsg is None:
            raise OSError(errno.ENOSYS, "sendmmsg is not available")
        failed: list[int] = []
        k, count, base = 0, self.count, self._base
        while k < count:
            sent = _sendmmsg(fd, base + k * _MMSG_SIZE, min(count - k, 1024), 0)
            if sent > 0:
                k += sent
                continue
            code = ctypes.get_errno() if sent < 0 else 0
            if code == errno.EINTR:
                continue
            if code in (errno.ENOSYS, errno.EOPNOTSUPP) and k == 0 and not failed:
                raise OSError(code, "sendmmsg is not supported here")
            failed.append(k)
            k += 1
        return failed
