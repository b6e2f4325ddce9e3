"""Kernel ABI numbers the path resolution uses (openat2(2), statx(2), statfs(2)), shared by
:mod:`ctrfs.rootfs._calls` and :mod:`ctrfs.rootfs._sys` without importing ctypes."""

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

PROC_SUPER_MAGIC = 0x9FA0  # statfs(2), include/uapi/linux/magic.h

# How many times openat2 is retried when it reports EAGAIN (a concurrent rename or mount
# changed the tree while RESOLVE_IN_ROOT was resolving "..", see openat2(2) ERRORS).
EAGAIN_RETRIES = 128
