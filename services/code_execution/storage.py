"""A session's /mnt/data as a size-limited tmpfs mounted on the host (root only).

The quota is the file system's size: a write past it fails with ENOSPC, nothing lands on the data
dir's disk, and the server still reaches the files at the same host path for the file API. The
mount outlives the session's interpreter (a timeout restarts it, the files stay) and is removed
with the session.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

MNT_DETACH = 2
MS_NOSUID, MS_NODEV = 2, 4
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def mount_quota(path: str, size_bytes: int, uid: int | None) -> str | None:
    """Mount a tmpfs of ``size_bytes`` at ``path``; None when done, else why not."""
    if os.geteuid() != 0:
        return "not root"
    owner = f",uid={uid},gid={uid}" if uid is not None else ""
    options = f"size={size_bytes},mode=0700{owner}".encode()
    if _libc.mount(b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options) != 0:
        return os.strerror(ctypes.get_errno())
    return None


def unmount(path: str) -> None:
    """Detach the tmpfs (lazily: a dying interpreter may still hold it); its pages are freed."""
    _libc.umount2(path.encode(), MNT_DETACH)


def is_mount(path: str) -> bool:
    return os.path.ismount(path)
