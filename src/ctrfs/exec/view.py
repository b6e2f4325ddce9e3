"""The session's root: the container's filesystem in a private mount namespace, plus the toolbox.

Nothing of it is made in the container's root filesystem or in its mount namespace (cntr 2.x
showed the way with the mount API):

1. join the container's mount namespace, then ``unshare(CLONE_NEWNS)`` into a private copy of it,
   and make every mount of the copy private, so nothing mounted next propagates back to the
   container (or to the host, through shared volume mounts);
2. clone (``open_tree(OPEN_TREE_CLONE|AT_RECURSIVE)``) each entry of the container's ``/`` with
   the mounts below it, read-only unless ``--rw`` (``mount_setattr(MOUNT_ATTR_RDONLY)``);
3. make a fresh tmpfs skeleton holding one empty directory or file per entry (symlinks are copied
   as they are) and ``/.ctrfs/bin``, attach it, move each clone onto its entry and the toolbox
   onto ``/.ctrfs/bin``, then make the skeleton read-only;
4. ``pivot_root`` into the skeleton and detach the old root: the container's root is then ``/``,
   so its absolute symlinks resolve inside it, and no path leads back to the host.

The copy lives as long as a process of the session does; when the last one exits the kernel
frees it with every mount made here. Entries added to the container's ``/`` after the session
started are not seen by it (the entries below them are: those are the container's own mounts).
"""

from __future__ import annotations

import os
import stat

from ctrfs.rootfs import _sys

_AT_FDCWD = -100
_CLONE = _sys.OPEN_TREE_CLONE | _sys.OPEN_TREE_CLOEXEC | _sys.AT_RECURSIVE
TOOLBOX_DIR = b".ctrfs"
PTS_DIR = TOOLBOX_DIR + b"/pts"
PTMX = b"/" + PTS_DIR + b"/ptmx"


def enter(mnt_ns_fd: int | None, toolbox_fd: int, *, rw: bool, pts: bool = False) -> None:
    """Move the calling (single-threaded) process into a private view of the container's root.

    ``mnt_ns_fd`` is the container's mount namespace (None: the caller is already in it). With
    ``pts``, a devpts instance of the session's own is mounted at ``/.ctrfs/pts``: a pty made
    there has a name inside the session, and nothing appears in the container's ``/dev/pts``.
    """
    if mnt_ns_fd is not None:
        _sys.setns(mnt_ns_fd, _sys.CLONE_NEWNS)
    _sys.unshare(_sys.CLONE_NEWNS)
    _sys.make_rprivate(b"/")
    entries = _clone_root_entries(rw)
    try:
        skel = _skeleton(entries)
        try:
            _sys.move_mount(skel, b"", _AT_FDCWD, b"/", _sys.MOVE_MOUNT_F_EMPTY_PATH)
            for name, kind, value in entries:
                if kind != "link":
                    assert isinstance(value, int)
                    _sys.move_mount(value, b"", skel, name, _sys.MOVE_MOUNT_F_EMPTY_PATH)
            _sys.move_mount(toolbox_fd, b"", skel, TOOLBOX_DIR + b"/bin", _sys.MOVE_MOUNT_F_EMPTY_PATH)
            if pts:
                _mount_devpts(skel)
            _sys.mount_setattr(skel, _sys.MOUNT_ATTR_RDONLY | _sys.MOUNT_ATTR_NOSUID
                               | _sys.MOUNT_ATTR_NODEV, recursive=False)
            # pivot_root(".", ".") stacks the old root on the new one; detaching it leaves the
            # skeleton as the only root (pivot_root(2), "new_root and put_old may be the same").
            os.fchdir(skel)
            _sys.pivot_root(b".", b".")
            _sys.umount_detach(b".")
            os.chdir(b"/")
        finally:
            os.close(skel)
    finally:
        for _name, kind, value in entries:
            if kind != "link":
                assert isinstance(value, int)
                os.close(value)


def _clone_root_entries(rw: bool) -> list[tuple[bytes, str, int | bytes]]:
    """(name, "dir" | "file" | "link", clone fd or link target) for each entry of ``/``."""
    out: list[tuple[bytes, str, int | bytes]] = []
    try:
        for name in sorted(os.listdir(b"/")):
            if name == TOOLBOX_DIR:
                continue  # ours shadows it: the container's /.ctrfs is not shown
            path = b"/" + name
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out.append((name, "link", os.readlink(path)))
                continue
            fd = _sys.open_tree(_AT_FDCWD, path, _CLONE)
            out.append((name, "dir" if stat.S_ISDIR(st.st_mode) else "file", fd))
            if not rw:
                _sys.mount_setattr(fd, _sys.MOUNT_ATTR_RDONLY)
    except BaseException:
        for _name, kind, value in out:
            if kind != "link":
                assert isinstance(value, int)
                os.close(value)
        raise
    return out


def _skeleton(entries: list[tuple[bytes, str, int | bytes]]) -> int:
    fsfd = _sys.fsopen(b"tmpfs")
    try:
        _sys.fsconfig_string(fsfd, b"mode", b"0755")
        _sys.fsconfig_string(fsfd, b"size", b"1m")
        _sys.fsconfig_create(fsfd)
        skel = _sys.fsmount(fsfd)
    finally:
        os.close(fsfd)
    try:
        for name, kind, value in entries:
            if kind == "dir":
                os.mkdir(name, 0o755, dir_fd=skel)
            elif kind == "file":
                os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644,
                                 dir_fd=skel))
            else:
                assert isinstance(value, bytes)
                os.symlink(value, name, dir_fd=skel)
        os.mkdir(TOOLBOX_DIR, 0o755, dir_fd=skel)
        os.mkdir(TOOLBOX_DIR + b"/bin", 0o755, dir_fd=skel)
        os.mkdir(PTS_DIR, 0o755, dir_fd=skel)
    except BaseException:
        os.close(skel)
        raise
    return skel


def _mount_devpts(skel: int) -> None:
    fsfd = _sys.fsopen(b"devpts")  # always a new instance through the mount API
    try:
        _sys.fsconfig_string(fsfd, b"ptmxmode", b"0666")
        _sys.fsconfig_string(fsfd, b"mode", b"0620")
        _sys.fsconfig_create(fsfd)
        mnt = _sys.fsmount(fsfd, _sys.MOUNT_ATTR_NOSUID | _sys.MOUNT_ATTR_NOEXEC)
    finally:
        os.close(fsfd)
    try:
        _sys.move_mount(mnt, b"", skel, PTS_DIR, _sys.MOVE_MOUNT_F_EMPTY_PATH)
    finally:
        os.close(mnt)
