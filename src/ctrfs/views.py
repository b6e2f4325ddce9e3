"""Which files a command walks: the root filesystem alone, or the container's view.

``export``, ``du`` (without ``--all-mounts``) and ``find --xdev`` walk the root filesystem alone,
as ``docker export`` shows it (:func:`rootfs_view`); ``cp`` and ``grep -r`` walk the container's
view, the content of volumes, binds and tmpfs mounts included and kernel interfaces excepted,
as ``docker cp`` copies it (:func:`container_view`). Both take the Root that
:func:`ctrfs.rootfs.open_root` gave and return one to close after it; for a stopped container
(whose offline merge has no mounts) or a plain directory both are the Root itself.

The root filesystem alone comes, in order of preference, from a private read-only clone of the
container's root mount (:mod:`ctrfs.rootfs.clone`, needs the mount API: Linux >= 5.12 and
CAP_SYS_ADMIN), the same overlay mounted in the host namespace (Docker's ``merged`` dir), or
the container's overlay layers merged in user space. ``CTRFS_MOUNT_API=0`` in the environment
skips the clone (the tests run every command both ways).
"""

from __future__ import annotations

import os

from ctrfs.errors import CtrfsError, translate_oserror
from ctrfs.overlay.layers import layer_stack
from ctrfs.overlay.root import OverlayRoot
from ctrfs.rootfs.base import Root
from ctrfs.rootfs.clone import clone_root_mount
from ctrfs.rootfs.fd import DirRoot, FdRoot
from ctrfs.rootfs.proc import ProcRoot
from ctrfs.rootfs.view import BoundRoot, ContainerView

__all__ = ["container_view", "mount_api_enabled", "rootfs_view"]


def mount_api_enabled() -> bool:
    return os.environ.get("CTRFS_MOUNT_API", "1") != "0"


def rootfs_view(root: Root) -> Root:
    """A Root showing the root filesystem of ``root``'s container alone (see the module
    docstring); ``root`` itself when nothing better can be had (it then shows mount points as
    the container sees them, with nothing below)."""
    if not isinstance(root, ProcRoot):
        return root
    if mount_api_enabled():
        fd = _clone(root)
        if fd is not None:
            return BoundRoot(FdRoot(fd, target=root.target, direct_open=True), root, "clone")
    merged = _merged(root)
    if merged is not None:
        return BoundRoot(merged, root, "merged")
    try:
        stack = layer_stack(root.container)
    except CtrfsError:
        stack = None
    if stack is not None and stack.is_overlay and stack.layers:
        return BoundRoot(OverlayRoot(stack, target=root.target), root, "offline")
    return root


def container_view(root: Root) -> Root:
    """A Root whose walks (without ``one_filesystem``) show the container's files as
    ``docker cp`` copies them (see :class:`~ctrfs.rootfs.view.ContainerView`)."""
    if not isinstance(root, ProcRoot):
        return root
    base = rootfs_view(root)
    if base is root:
        return root
    try:
        mounts = root.container.mounts()
    except CtrfsError:
        base.close()
        raise
    return ContainerView(root, base, mounts)


def _clone(root: ProcRoot) -> int | None:
    c = root.container
    with translate_oserror(target=root.target, pid=c.pid, proc_scope=True):
        ns = os.open(c.proc_path("ns", "mnt"), os.O_RDONLY | os.O_CLOEXEC)
    try:
        fd = clone_root_mount(ns, root.fd)
    except OSError:
        return None  # no mount API, or not allowed here: the fallbacks follow
    finally:
        os.close(ns)
    try:
        # The namespace fd was opened after the root: the same process still, or nothing.
        root.check_alive()
    except BaseException:
        os.close(fd)
        raise
    return fd


def _merged(root: ProcRoot) -> Root | None:
    """The container's overlay as mounted in the host namespace, if it is the very same
    filesystem (same root directory inode) as the container's root."""
    fs = root.container.rootfs
    if fs is None or not fs.merged:
        return None
    try:
        d = DirRoot(root.container.roots.host_path(fs.merged), target=root.target)
    except CtrfsError:
        return None
    a, b = os.fstat(d.fd), os.fstat(root.fd)
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino):
        d.close()
        return None
    return d
