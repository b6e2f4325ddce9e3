"""Safe access to a container's root filesystem (docs/security.md, "Resolving paths").

A :class:`Root` resolves every path with the container root as ``/`` (openat2
RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS, or a component walker where the kernel lacks openat2).
:mod:`ctrfs.ops` is written only against :class:`Root`/:class:`Entry`; :func:`ctrfs.access.open_root`
gives one for a container.
"""

from ctrfs.rootfs.base import Entry, NotRegularFile, Root, WalkWarning

__all__ = ["Entry", "NotRegularFile", "Root", "WalkWarning"]
