"""The one module of ctrfs that talks to libc/syscalls through ctypes (docs/conventions.md rule 2).

Every function declares ``argtypes``/``restype`` once, is loaded with ``use_errno=True`` and
raises ``OSError(errno, os.strerror(errno), path)``. Nothing here knows about containers.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

# openat2(2), x86_64 syscall number (arch/x86/entry/syscalls/syscall_64.tbl). Same number on
# aarch64 and the other "generic" syscall tables, since it was added after the unification.
SYS_openat2 = 437

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

# statx(2)
AT_EMPTY_PATH = 0x1000
AT_SYMLINK_NOFOLLOW = 0x100
AT_STATX_SYNC_AS_STAT = 0x0000
STATX_MNT_ID = 0x1000

# inotify(7)
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVE_SELF = 0x00000800
IN_DELETE_SELF = 0x00000400
IN_CREATE = 0x00000100
IN_MOVED_TO = 0x00000080
IN_IGNORED = 0x00008000
IN_Q_OVERFLOW = 0x00004000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

# The mount API (Linux 5.2: open_tree; 5.12: mount_setattr). Numbers from the unified table of
# syscalls added after 5.1 (include/uapi/asm-generic/unistd.h), the same on every architecture.
SYS_open_tree = 428
SYS_mount_setattr = 442
OPEN_TREE_CLONE = 0x1  # include/uapi/linux/mount.h
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MS_PRIVATE = 1 << 18  # include/uapi/linux/mount.h (MS_PRIVATE), a mount_attr propagation
CLONE_NEWNS = 0x00020000

# How many times openat2 is retried when it reports EAGAIN (a concurrent rename or mount
# changed the tree while RESOLVE_IN_ROOT was resolving "..", see openat2(2) ERRORS).
EAGAIN_RETRIES = 128


class _OpenHow(ctypes.Structure):
    # struct open_how { __u64 flags; __u64 mode; __u64 resolve; } (include/uapi/linux/openat2.h)
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


class _MountAttr(ctypes.Structure):
    # struct mount_attr { __u64 attr_set, attr_clr, propagation, userns_fd; } (linux/mount.h)
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)

# CDLL.__getitem__ returns a fresh function object each time, so the variadic syscall(2) gets
# one object per syscall, each with its own fixed prototype.
_syscall_openat2 = _libc["syscall"]
_syscall_openat2.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p,
                             ctypes.POINTER(_OpenHow), ctypes.c_size_t]
_syscall_openat2.restype = ctypes.c_long

_syscall_open_tree = _libc["syscall"]
_syscall_open_tree.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
_syscall_open_tree.restype = ctypes.c_long
_syscall_mount_setattr = _libc["syscall"]
_syscall_mount_setattr.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint,
                                   ctypes.POINTER(_MountAttr), ctypes.c_size_t]
_syscall_mount_setattr.restype = ctypes.c_long
_setns = _libc.setns
_setns.argtypes = [ctypes.c_int, ctypes.c_int]
_setns.restype = ctypes.c_int

_statx = getattr(_libc, "statx", None)
if _statx is not None:
    _statx.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint,
                       ctypes.c_void_p]
    _statx.restype = ctypes.c_int

_fstatfs = _libc.fstatfs
_fstatfs.argtypes = [ctypes.c_int, ctypes.c_void_p]
_fstatfs.restype = ctypes.c_int

_inotify_init1 = _libc.inotify_init1
_inotify_init1.argtypes = [ctypes.c_int]
_inotify_init1.restype = ctypes.c_int
_inotify_add_watch = _libc.inotify_add_watch
_inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_inotify_add_watch.restype = ctypes.c_int
_inotify_rm_watch = _libc.inotify_rm_watch
_inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
_inotify_rm_watch.restype = ctypes.c_int


def _raise(path: str | bytes | None = None) -> None:
    err = ctypes.get_errno()
    raise OSError(err, os.strerror(err), os.fsdecode(path) if path is not None else None)


def have_openat2() -> bool:
    """Whether this machine's kernel and architecture can run openat2 at all."""
    # os.uname rather than the platform module: one import less at every start
    return os.uname().machine in ("x86_64", "aarch64", "riscv64", "s390x", "ppc64le")


def openat2(dirfd: int, path: bytes, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2): a new fd, or OSError. EAGAIN is retried :data:`EAGAIN_RETRIES` times."""
    how = _OpenHow(flags, mode, resolve)
    size = ctypes.sizeof(how)
    for _ in range(EAGAIN_RETRIES):
        fd = _syscall_openat2(SYS_openat2, dirfd, path, ctypes.byref(how), size)
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err not in (errno.EAGAIN, errno.EINTR):
            raise OSError(err, os.strerror(err), os.fsdecode(path))
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN) + " (gave up after retries)",
                  os.fsdecode(path))


def open_tree(dirfd: int, path: bytes, flags: int) -> int:
    """open_tree(2): an fd on the mount at ``path`` under ``dirfd``; with OPEN_TREE_CLONE a new
    detached copy of it (with AT_RECURSIVE, of its submounts too), unmounted when the fd closes."""
    fd = _syscall_open_tree(SYS_open_tree, dirfd, path, flags)
    if fd < 0:
        _raise(path)
    return int(fd)


def mount_setattr(dirfd: int, path: bytes, flags: int, attr_set: int, *, attr_clr: int = 0,
                  propagation: int = 0) -> None:
    """mount_setattr(2): change per-mount flags (MOUNT_ATTR_*) and propagation of a mount."""
    attr = _MountAttr(attr_set, attr_clr, propagation, 0)
    if _syscall_mount_setattr(SYS_mount_setattr, dirfd, path, flags, ctypes.byref(attr),
                              ctypes.sizeof(attr)) != 0:
        _raise(path)


def setns(fd: int, nstype: int) -> None:
    """setns(2). Joining a mount namespace needs a single-threaded caller (EINVAL otherwise)."""
    if _setns(fd, nstype) != 0:
        _raise()


# struct statx (include/uapi/linux/stat.h): stx_mask u32 @0, ... stx_mnt_id u64 @0x90.
_STATX_SIZE = 256
_StatxBuf = ctypes.c_char * _STATX_SIZE
_STX_MASK_MNT_ID = struct.Struct("=I140xQ")


def mount_id(fd: int, name: bytes = b"") -> int | None:
    """The mount ID (as in mountinfo) of ``name`` under ``fd`` (or of ``fd`` itself), without
    following a final symlink; None if the kernel cannot tell (statx STATX_MNT_ID: Linux 5.8)."""
    if _statx is None:
        return None
    buf = _StatxBuf()  # called for every entry of a walk: the cheapest zeroed buffer
    flags = AT_SYMLINK_NOFOLLOW | (AT_EMPTY_PATH if not name else 0)
    if _statx(fd, name, flags, STATX_MNT_ID, buf) != 0:
        err = ctypes.get_errno()
        if err in (errno.ENOSYS, errno.EINVAL):
            return None
        raise OSError(err, os.strerror(err), os.fsdecode(name) or None)
    mask, mnt = _STX_MASK_MNT_ID.unpack_from(buf)
    if not mask & STATX_MNT_ID:
        return None
    return int(mnt)


PROC_SUPER_MAGIC = 0x9FA0  # statfs(2), include/uapi/linux/magic.h
_STATFS_TYPE = struct.Struct("=l")  # struct statfs starts with __fsword_t f_type (a long)


def fs_type(fd: int) -> int:
    """``f_type`` of the filesystem ``fd`` (O_PATH is fine) lives on, from fstatfs(2)."""
    buf = ctypes.create_string_buffer(256)  # sizeof(struct statfs) is 120 on 64-bit
    if _fstatfs(fd, buf) != 0:
        _raise()
    (ftype,) = _STATFS_TYPE.unpack_from(buf, 0)
    return int(ftype) & 0xFFFFFFFF


def inotify_init(flags: int = IN_CLOEXEC) -> int:
    fd = _inotify_init1(flags)
    if fd < 0:
        _raise()
    return int(fd)


def inotify_add_watch(fd: int, path: bytes, mask: int) -> int:
    wd = _inotify_add_watch(fd, path, mask)
    if wd < 0:
        _raise(path)
    return int(wd)


def inotify_rm_watch(fd: int, wd: int) -> None:
    if _inotify_rm_watch(fd, wd) < 0:
        err = ctypes.get_errno()
        if err != errno.EINVAL:  # watch already gone (file deleted → IN_IGNORED)
            raise OSError(err, os.strerror(err))


_IN_EVENT = struct.Struct("=iIII")  # wd, mask, cookie, len; then len bytes of name


def parse_inotify_events(data: bytes) -> list[tuple[int, int, bytes]]:
    """(wd, mask, name) for each ``struct inotify_event`` in a read(2) buffer."""
    out = []
    off = 0
    while off + _IN_EVENT.size <= len(data):
        wd, mask, _cookie, length = _IN_EVENT.unpack_from(data, off)
        off += _IN_EVENT.size
        name = data[off:off + length].rstrip(b"\0")
        off += length
        out.append((wd, mask, name))
    return out
