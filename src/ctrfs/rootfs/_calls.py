"""The system calls every path resolution makes: openat2(2), statx(2)'s mount ID and fstatfs(2)'s
filesystem type, as ``openat2``, ``mount_id`` and ``fs_type``.

They come from the C core (``ctrfs._native``) when it is built, so that a command's start imports
no ctypes (about 4 ms here); else, and with ``CTRFS_NATIVE=0``, from :mod:`ctrfs.rootfs._sys`
(ctypes), the reference. Both retry openat2's EAGAIN alike and raise the same
``OSError(errno, message, path)``.
"""

from __future__ import annotations

import os

from ctrfs.rootfs._abi import PROC_SUPER_MAGIC, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS

try:
    import ctrfs._native as _impl  # the extension module itself, not the package's API
except ImportError:
    _impl = None  # type: ignore[assignment]
if _impl is None or os.environ.get("CTRFS_NATIVE", "1") == "0":
    from ctrfs.rootfs import _sys as _impl  # type: ignore[no-redef]

openat2 = _impl.openat2
mount_id = _impl.mount_id
fs_type = _impl.fs_type
backend = _impl.__name__  # which one answers (the tests run both)

__all__ = ["PROC_SUPER_MAGIC", "RESOLVE_IN_ROOT", "RESOLVE_NO_MAGICLINKS", "backend", "fs_type",
           "mount_id", "openat2"]
