"""The toolbox: static tools of the host, copied into a private read-only tmpfs at ``/.ctrfs/bin``.

The copy is what sessions execute, never the host file: a container process that writes through
``/proc/<session pid>/exe`` (CVE-2019-5736, where runc's own binary was overwritten that way)
reaches a read-only mount of a private tmpfs, and the host's busybox is not behind it at all.
Only static executables are offered: the host's dynamic libraries are never used inside.
"""

from __future__ import annotations

import os
import stat
import struct
import subprocess
from dataclasses import dataclass

from ctrfs.errors import Unsupported, UsageError
from ctrfs.rootfs import _sys

MOUNT_POINT = b"/.ctrfs/bin"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox", "/usr/sbin/busybox")
_PT_INTERP = 3
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class Toolbox:
    """What goes into ``/.ctrfs/bin``: busybox with its applets, then the user's own directories."""

    busybox: str | None
    applets: tuple[str, ...]
    extra_dirs: tuple[str, ...] = ()
    dynamic: tuple[str, ...] = ()  # ELF files of extra_dirs that need a program interpreter


def is_static_elf(header: bytes) -> bool:
    """Whether an ELF file (its first 64 KiB) has no program interpreter (PT_INTERP)."""
    if len(header) < 52 or header[:4] != b"\x7fELF":
        return False
    end = "<" if header[5] == 1 else ">"
    if header[4] == 2:  # ELFCLASS64
        phoff, = struct.unpack_from(end + "Q", header, 0x20)
        phentsize, phnum = struct.unpack_from(end + "HH", header, 0x36)
    else:
        phoff, = struct.unpack_from(end + "I", header, 0x1C)
        phentsize, phnum = struct.unpack_from(end + "HH", header, 0x2A)
    for i in range(phnum):
        off = phoff + i * phentsize
        if off + 4 > len(header):
            return False  # program headers beyond what was read: cannot tell, not offered
        p_type, = struct.unpack_from(end + "I", header, off)
        if p_type == _PT_INTERP:
            return False
    return True


def find_busybox() -> str | None:
    """The host's static busybox (Debian's busybox-static installs /bin/busybox), or None."""
    for path in BUSYBOX_CANDIDATES:
        try:
            with open(path, "rb") as f:
                if is_static_elf(f.read(65536)):
                    return path
        except OSError:
            continue
    return None


def prepare(extra_dirs: tuple[str, ...] = ()) -> Toolbox:
    """Find the toolbox's parts on the host; raise if there is nothing to offer."""
    for d in extra_dirs:
        if not os.path.isdir(d):
            raise UsageError(f"--toolbox {d}: not a directory")
    busybox = find_busybox()
    if busybox is None and not extra_dirs:
        raise Unsupported("no static busybox on this host for the toolbox",
                          hint="apt-get install busybox-static, or give --toolbox DIR")
    applets: tuple[str, ...] = ()
    if busybox is not None:
        # The host's own busybox, run on the host: it lists the applets it was built with.
        res = subprocess.run([busybox, "--list"], capture_output=True, check=False, timeout=10)
        applets = tuple(a for a in res.stdout.decode("ascii", "replace").split()
                        if a and "/" not in a and a not in (".", ".."))
    return Toolbox(busybox, applets, tuple(extra_dirs), _dynamic_elves(extra_dirs))


def _dynamic_elves(dirs: tuple[str, ...]) -> tuple[str, ...]:
    """The dynamically linked executables among ``dirs``: inside, they would load the
    container's libraries (or fail), never the host's."""
    out = []
    for d in dirs:
        for top, _dirs, files in os.walk(d):
            for f in sorted(files):
                path = os.path.join(top, f)
                try:
                    st = os.lstat(path)
                    if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
                        continue
                    with open(path, "rb") as fh:
                        head = fh.read(65536)
                except OSError:
                    continue
                if head[:4] == b"\x7fELF" and not is_static_elf(head):
                    out.append(path)
    return tuple(out)


def build(tb: Toolbox) -> int:
    """A detached tmpfs mount holding the toolbox, read-only, nosuid, nodev; returns its fd.

    Called in the helper before it joins any namespace: the files are copied from the host.
    """
    size = _tree_size(tb)
    fsfd = _sys.fsopen(b"tmpfs")
    try:
        _sys.fsconfig_string(fsfd, b"mode", b"0755")
        _sys.fsconfig_string(fsfd, b"size", str(size + (4 << 20)).encode())
        _sys.fsconfig_create(fsfd)
        mnt = _sys.fsmount(fsfd)
    finally:
        os.close(fsfd)
    try:
        for d in tb.extra_dirs:
            _copy_tree(os.fsencode(d), mnt)
        if tb.busybox is not None:
            if not _exists(mnt, b"busybox"):
                _copy_file(os.fsencode(tb.busybox), mnt, b"busybox", 0o755)
            for applet in tb.applets:
                name = os.fsencode(applet)
                if not _exists(mnt, name):
                    os.symlink(b"busybox", name, dir_fd=mnt)
        _sys.mount_setattr(mnt, _sys.MOUNT_ATTR_RDONLY | _sys.MOUNT_ATTR_NOSUID | _sys.MOUNT_ATTR_NODEV)
    except BaseException:
        os.close(mnt)
        raise
    return mnt


def _exists(dirfd: int, name: bytes) -> bool:
    try:
        os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _tree_size(tb: Toolbox) -> int:
    total = os.stat(tb.busybox).st_size if tb.busybox else 0
    for d in tb.extra_dirs:
        for top, _dirs, files in os.walk(d):
            for f in files:
                try:
                    total += os.lstat(os.path.join(top, f)).st_size + 4096
                except OSError:
                    pass
    return total


def _copy_file(src: bytes, dirfd: int, name: bytes, mode: int) -> None:
    fd_in = os.open(src, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        fd_out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode & 0o777,
                         dir_fd=dirfd)
        try:
            while True:
                n = os.sendfile(fd_out, fd_in, None, _COPY_CHUNK)
                if n == 0:
                    break
            os.fchmod(fd_out, mode & 0o777)  # no setuid/setgid bits in the toolbox
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)


def _copy_tree(src: bytes, dst_dirfd: int) -> None:
    """Copy the user's toolbox directory ``src`` (a host directory they chose) into ``dst_dirfd``."""
    stack = [(src, os.dup(dst_dirfd))]
    while stack:
        path, dfd = stack.pop()
        try:
            with os.scandir(path) as it:
                for e in it:
                    st = e.stat(follow_symlinks=False)
                    if _exists(dfd, e.name):
                        continue
                    if stat.S_ISLNK(st.st_mode):
                        os.symlink(os.readlink(e.path), e.name, dir_fd=dfd)
                    elif stat.S_ISDIR(st.st_mode):
                        os.mkdir(e.name, 0o755, dir_fd=dfd)
                        sub = os.open(e.name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dfd)
                        stack.append((e.path, sub))
                    elif stat.S_ISREG(st.st_mode):
                        _copy_file(e.path, dfd, e.name, st.st_mode)
        finally:
            os.close(dfd)
