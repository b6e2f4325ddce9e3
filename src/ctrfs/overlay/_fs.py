"""fd-relative reading of overlay layer directories on the host.

Layer directories are host directories whose content the container (upper) or the image
(lowers) controls. Nothing here follows a symlink with the kernel: names are looked up one at a
time with ``*at()`` calls and ``O_NOFOLLOW``; where a runtime's semantics need a symlink followed,
:func:`resolve_in_layer` does it by hand with the layer directory as ``/``.
"""

from __future__ import annotations

import errno
import os
import resource
import stat as st_mod

# O_PATH fds are enough for fstatat/openat/readlinkat relative to a directory; reading entries
# (fdopendir) and fgetxattr need a real O_RDONLY fd.
O_DIR_PATH = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
O_DIR_READ = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK

# overlayfs marks an opaque directory with this xattr = "y"; with the ``userxattr`` mount option
# (rootless) the ``user.`` namespace is used instead (Documentation/filesystems/overlayfs.rst,
# "whiteouts and opaque directories"). Kernel >= 6.7 also writes "x" on directories that merely
# *contain* xwhiteouts: that value does not make a directory opaque.
OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")

_SYMLINK_BUDGET = 40  # Linux's MAXSYMLINKS


def is_whiteout(st: os.stat_result) -> bool:
    """An overlayfs whiteout: a character device with device number 0/0."""
    return st_mod.S_ISCHR(st.st_mode) and st.st_rdev == 0


def opaque_value(dir_fd: int) -> bytes | None:
    """The opaque xattr of an open directory (trusted. first, then user.), or None."""
    for name in OPAQUE_XATTRS:
        try:
            return os.getxattr(dir_fd, name)
        except OSError as err:
            if err.errno in (errno.ENODATA, errno.ENOTSUP, errno.EPERM, errno.EACCES):
                continue
            raise
    return None


def is_opaque(dir_fd: int, *, names: tuple[str, ...] = OPAQUE_XATTRS) -> bool:
    for name in names:
        try:
            if os.getxattr(dir_fd, name) == b"y":
                return True
        except OSError as err:
            if err.errno in (errno.ENODATA, errno.ENOTSUP, errno.EPERM, errno.EACCES):
                continue
            raise
    return False


def lstat_at(dir_fd: int, name: bytes) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None


def open_dir_at(dir_fd: int, name: bytes, flags: int = O_DIR_PATH) -> int | None:
    """Open sub-directory ``name`` (never through a symlink); None when it is not a directory."""
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        if err.errno == errno.ELOOP:  # a symlink (O_NOFOLLOW)
            return None
        raise


def split(path: bytes) -> list[bytes]:
    return [p for p in path.split(b"/") if p and p != b"."]


def resolve_in_layer(root_fd: int, parts: list[bytes], *, follow_final: bool = True,
                     want_dir: bool = False) -> tuple[os.stat_result | None, int | None]:
    """Look ``parts`` up inside one layer directory, following symlinks with the layer as ``/``.

    Returns (stat of what was found or None, an O_PATH fd of it when ``want_dir`` and it is a
    directory, else None). ``..`` never climbs above the layer. Errors other than "missing"
    propagate.
    """
    stack = [os.dup(root_fd)]  # fds of the directories from the layer root down
    todo = list(reversed(parts))
    budget = _SYMLINK_BUDGET
    try:
        while todo:
            name = todo.pop()
            last = not todo
            if name == b"..":
                if len(stack) > 1:
                    os.close(stack.pop())
                if last:
                    return os.fstat(stack[-1]), (os.dup(stack[-1]) if want_dir else None)
                continue
            cur = stack[-1]
            s = lstat_at(cur, name)
            if s is None:
                return None, None
            if st_mod.S_ISLNK(s.st_mode) and (not last or follow_final):
                budget -= 1
                if budget < 0:
                    return None, None
                target = os.readlink(name, dir_fd=cur)
                if target.startswith(b"/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                todo.extend(reversed(split(target)))
                if not todo:  # link to "/" or "."
                    return os.fstat(stack[-1]), (os.dup(stack[-1]) if want_dir else None)
                continue
            if last:
                if want_dir and st_mod.S_ISDIR(s.st_mode):
                    fd = open_dir_at(cur, name)
                    return s, fd
                return s, None
            if not st_mod.S_ISDIR(s.st_mode):
                return None, None
            fd = open_dir_at(cur, name)
            if fd is None:
                return None, None
            stack.append(fd)
        return os.fstat(stack[-1]), (os.dup(stack[-1]) if want_dir else None)
    finally:
        for fd in stack:
            os.close(fd)


def raise_fd_limit() -> None:
    """Deep trees hold one fd per level (plus one per lower layer): use the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def fd_budget() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return int(soft)
