"""A private, read-only, detached copy of a container's root mount: its root filesystem alone.

``/proc/<pid>/root`` shows what the container sees: the root filesystem with every other mount
on top (volumes, binds, ``/proc``, the runtime's ``/dev``, ``/etc/hosts``...). ``docker export``
shows the root filesystem alone, what lies beneath those mount points included. A clone of the
root mount made with ``open_tree(OPEN_TREE_CLONE)`` and without ``AT_RECURSIVE`` carries none of
the submounts (open_tree(2)): walked by fd, it is exactly the root filesystem.

The kernel only clones a mount of the caller's own mount namespace (``open_tree`` on a mount
reached through ``/proc/<pid>/root`` from the host fails with EINVAL), so a forked child joins
the container's mount namespace (setns(2) needs a single-threaded caller, which a fresh child
is), clones, and hands the fd back over a socketpair with SCM_RIGHTS. The clone outlives the
child; it is unmounted when its fd is closed. The clone is made private (no mount events
propagate into or out of it) and read-only, nodev, nosuid, noexec (mount_setattr(2)): flags of
this one mount, the container's own mounts and superblock are left as they were.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

from ctrfs.rootfs import _sys

_RDONLY_ATTRS = (_sys.MOUNT_ATTR_RDONLY | _sys.MOUNT_ATTR_NOSUID | _sys.MOUNT_ATTR_NODEV
                 | _sys.MOUNT_ATTR_NOEXEC)
_ERRNO = struct.Struct("=i")
_FD = struct.Struct("=i")


def clone_root_mount(mntns_fd: int, root_fd: int, *, recursive: bool = False) -> int:
    """A detached read-only clone of the mount ``root_fd`` (the container's root, opened as
    ``/proc/<pid>/root``) is on, made inside the mount namespace ``mntns_fd``
    (``/proc/<pid>/ns/mnt``); an ``O_PATH`` directory fd the caller closes.

    ``recursive`` clones the submounts too (the container's whole view). Raises OSError with
    the errno the kernel gave (ENOSYS: no mount API; EPERM: not allowed here).
    """
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        pid = os.fork()
        if pid == 0:  # the child: only syscalls, then _exit, whatever happens
            code = 0
            try:
                parent.close()
                code = _child(child, mntns_fd, root_fd, recursive)
            finally:
                os._exit(code)
        child.close()
        try:
            msg, fds = _recv_fd(parent)
        finally:
            _reap(pid)
    finally:
        parent.close()
        if child.fileno() >= 0:
            child.close()
    if fds:
        return fds[0]
    err = _ERRNO.unpack(msg[:_ERRNO.size])[0] if len(msg) >= _ERRNO.size else errno.EIO
    raise OSError(err, os.strerror(err) + " (cloning the container's root mount)")


def _child(sock: socket.socket, mntns_fd: int, root_fd: int, recursive: bool) -> int:
    try:
        _sys.setns(mntns_fd, _sys.CLONE_NEWNS)
        flags = _sys.OPEN_TREE_CLONE | _sys.OPEN_TREE_CLOEXEC | _sys.AT_EMPTY_PATH
        if recursive:
            flags |= _sys.AT_RECURSIVE
        fd = _sys.open_tree(root_fd, b"", flags)
        _sys.mount_setattr(fd, _RDONLY_ATTRS, recursive=recursive, propagation=_sys.MS_PRIVATE)
    except OSError as err:
        sock.send(_ERRNO.pack(err.errno or errno.EIO))
        return 1
    except BaseException:  # noqa: BLE001 - the child must reach _exit
        sock.send(_ERRNO.pack(errno.EIO))
        return 1
    socket.send_fds(sock, [b"ok"], [fd])
    return 0


def _recv_fd(sock: socket.socket) -> tuple[bytes, list[int]]:
    # The received fd is a new one of ours, close-on-exec only with MSG_CMSG_CLOEXEC (unix(7));
    # socket.recv_fds drops its flags argument (CPython 3.11), hence recvmsg here.
    msg, anc, _, _ = sock.recvmsg(64, socket.CMSG_SPACE(_FD.size), socket.MSG_CMSG_CLOEXEC)
    fds = [_FD.unpack_from(data, i)[0]
           for level, kind, data in anc
           if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
           for i in range(0, len(data) - len(data) % _FD.size, _FD.size)]
    for extra in fds[1:]:
        os.close(extra)
    return msg, fds[:1]


def _reap(pid: int) -> None:
    while True:
        try:
            os.waitpid(pid, 0)
            return
        except ChildProcessError:
            return
        except InterruptedError:
            continue

