"""The one module of ctrfs that talks to libc/syscalls through ctypes (docs/conventions.md rule 2).
The path resolution's three calls are read through :mod:`ctrfs.rootfs._calls`, which takes them
from the C core when it is built; the ones here are the reference and the fallback.

Every function declares ``argtypes``/``restype`` once, is loaded with ``use_errno=True`` and
raises ``OSError(errno, os.strerror(errno), path)``. Nothing here knows about containers.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from ctrfs.rootfs._abi import (  # noqa: F401 (the path resolution's numbers, also read from here)
    AT_EMPTY_PATH,
    AT_STATX_SYNC_AS_STAT,
    AT_SYMLINK_NOFOLLOW,
    EAGAIN_RETRIES,
    PROC_SUPER_MAGIC,
    RESOLVE_BENEATH,
    RESOLVE_IN_ROOT,
    RESOLVE_NO_MAGICLINKS,
    RESOLVE_NO_SYMLINKS,
    RESOLVE_NO_XDEV,
    STATX_MNT_ID,
    SYS_openat2,
)

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


class _OpenHow(ctypes.Structure):
    # struct open_how { __u64 flags; __u64 mode; __u64 resolve; } (include/uapi/linux/openat2.h)
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)

# CDLL.__getitem__ returns a fresh function object each time, so the variadic syscall(2) gets
# one object per syscall, each with its own fixed prototype.
_syscall_openat2 = _libc["syscall"]
_syscall_openat2.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p,
                             ctypes.POINTER(_OpenHow), ctypes.c_size_t]
_syscall_openat2.restype = ctypes.c_long

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


# ---------------------------------------------------------------------------------------------------
# Namespaces, the mount API and process attributes, for ``ctrfs exec`` (ctrfs.exec). The mount API
# numbers (open_tree … mount_setattr) are the same on every architecture: they were added after
# the syscall tables were unified (include/uapi/asm-generic/unistd.h).

SYS_open_tree = 428
SYS_move_mount = 429
SYS_fsopen = 430
SYS_fsconfig = 431
SYS_fsmount = 432
SYS_mount_setattr = 442
# pivot_root has no libc wrapper and predates the unified numbers.
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
AT_RECURSIVE = 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x04
FSOPEN_CLOEXEC = 1
FSMOUNT_CLOEXEC = 1
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
MOUNT_ATTR_RDONLY = 0x01
MOUNT_ATTR_NOSUID = 0x02
MOUNT_ATTR_NODEV = 0x04
MOUNT_ATTR_NOEXEC = 0x08

MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _MountAttr(ctypes.Structure):
    # struct mount_attr (include/uapi/linux/mount.h), MOUNT_ATTR_SIZE_VER0
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_setns = _libc.setns
_setns.argtypes = [ctypes.c_int, ctypes.c_int]
_setns.restype = ctypes.c_int
_unshare = _libc.unshare
_unshare.argtypes = [ctypes.c_int]
_unshare.restype = ctypes.c_int
_mount = _libc.mount
_mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_mount.restype = ctypes.c_int
_umount2 = _libc.umount2
_umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_umount2.restype = ctypes.c_int
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_prctl.restype = ctypes.c_int
_capget = _libc.capget
_capget.argtypes = [ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData * 2)]
_capget.restype = ctypes.c_int
_capset = _libc.capset
_capset.argtypes = [ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData * 2)]
_capset.restype = ctypes.c_int

_syscall_open_tree = _libc["syscall"]
_syscall_open_tree.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
_syscall_open_tree.restype = ctypes.c_long
_syscall_move_mount = _libc["syscall"]
_syscall_move_mount.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                                ctypes.c_char_p, ctypes.c_uint]
_syscall_move_mount.restype = ctypes.c_long
_syscall_fsopen = _libc["syscall"]
_syscall_fsopen.argtypes = [ctypes.c_long, ctypes.c_char_p, ctypes.c_uint]
_syscall_fsopen.restype = ctypes.c_long
_syscall_fsconfig = _libc["syscall"]
_syscall_fsconfig.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_uint, ctypes.c_char_p,
                              ctypes.c_char_p, ctypes.c_int]
_syscall_fsconfig.restype = ctypes.c_long
_syscall_fsmount = _libc["syscall"]
_syscall_fsmount.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_uint, ctypes.c_uint]
_syscall_fsmount.restype = ctypes.c_long
_syscall_mount_setattr = _libc["syscall"]
_syscall_mount_setattr.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint,
                                   ctypes.POINTER(_MountAttr), ctypes.c_size_t]
_syscall_mount_setattr.restype = ctypes.c_long
_syscall_pivot_root = _libc["syscall"]
_syscall_pivot_root.argtypes = [ctypes.c_long, ctypes.c_char_p, ctypes.c_char_p]
_syscall_pivot_root.restype = ctypes.c_long


def _check(rv: int, path: str | bytes | None = None) -> int:
    if rv < 0:
        _raise(path)
    return int(rv)


def setns(fd: int, nstype: int = 0) -> None:
    """setns(2); ``os.setns`` exists only from Python 3.12."""
    _check(_setns(fd, nstype))


def unshare(flags: int) -> None:
    """unshare(2); ``os.unshare`` exists only from Python 3.12."""
    _check(_unshare(flags))


def make_rprivate(path: bytes = b"/") -> None:
    """``mount --make-rprivate PATH``: nothing mounted below PATH propagates to or from peers."""
    _check(_mount(None, path, None, MS_REC | MS_PRIVATE, None), path)


def umount_detach(path: bytes) -> None:
    _check(_umount2(path, MNT_DETACH), path)


def pivot_root(new_root: bytes, put_old: bytes) -> None:
    nr = _SYS_PIVOT_ROOT.get(os.uname().machine)
    if nr is None:
        raise OSError(errno.ENOSYS, "pivot_root: unknown syscall number on this architecture")
    _check(_syscall_pivot_root(nr, new_root, put_old), new_root)


def open_tree(dirfd: int, path: bytes, flags: int) -> int:
    """open_tree(2): with OPEN_TREE_CLONE a detached copy of the mount (tree) at ``path``."""
    return _check(_syscall_open_tree(SYS_open_tree, dirfd, path, flags), path)


def move_mount(from_fd: int, from_path: bytes, to_fd: int, to_path: bytes, flags: int) -> None:
    _check(_syscall_move_mount(SYS_move_mount, from_fd, from_path, to_fd, to_path, flags), to_path)


def fsopen(fstype: bytes) -> int:
    return _check(_syscall_fsopen(SYS_fsopen, fstype, FSOPEN_CLOEXEC), fstype)


def fsconfig_string(fsfd: int, key: bytes, value: bytes) -> None:
    _check(_syscall_fsconfig(SYS_fsconfig, fsfd, FSCONFIG_SET_STRING, key, value, 0), key)


def fsconfig_create(fsfd: int) -> None:
    _check(_syscall_fsconfig(SYS_fsconfig, fsfd, FSCONFIG_CMD_CREATE, None, None, 0))


def fsmount(fsfd: int, attr_flags: int = 0) -> int:
    """fsmount(2): a detached mount of the configured superblock, as an O_PATH-like fd."""
    return _check(_syscall_fsmount(SYS_fsmount, fsfd, FSMOUNT_CLOEXEC, attr_flags))


def mount_setattr(fd: int, attr_set: int, *, recursive: bool = True, propagation: int = 0) -> None:
    """mount_setattr(2) on the mount (tree) ``fd`` refers to; ``propagation`` (MS_PRIVATE...)
    also changes its propagation type."""
    attr = _MountAttr(attr_set, 0, propagation, 0)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    _check(_syscall_mount_setattr(SYS_mount_setattr, fd, b"", flags, ctypes.byref(attr),
                                  ctypes.sizeof(attr)))


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_prctl(option, arg2, arg3, arg4, arg5))


def capget() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of the calling thread, as 64-bit masks."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_capget(ctypes.byref(header), ctypes.byref(data)))
    lo, hi = data[0], data[1]
    return (lo.effective | hi.effective << 32, lo.permitted | hi.permitted << 32,
            lo.inheritable | hi.inheritable << 32)


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) of the calling thread; each set is a 64-bit mask of capability numbers."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in (0, 1):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_capset(ctypes.byref(header), ctypes.byref(data)))
