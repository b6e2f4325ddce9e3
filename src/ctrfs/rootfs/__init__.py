"""Safe access to a container's root filesystem (SECURITY.md "The recipe").

``open_root(container)`` returns a :class:`Root`: every path is resolved with the container
root as ``/`` (openat2 RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS, or a component walker where the
kernel lacks openat2). :mod:`ctrfs.ops` is written only against :class:`Root`/:class:`Entry`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ctrfs.rootfs.base import Entry, NotRegularFile, Root, WalkWarning

if TYPE_CHECKING:
    from ctrfs.container import Container

__all__ = ["Entry", "NotRegularFile", "Root", "WalkWarning", "open_root"]


def open_root(container: Container) -> Root:
    """A Root for ``container``: its live root (``/proc/<pid>/root``) while it runs."""
    from ctrfs.errors import Unsupported

    if container.pid is not None:
        from ctrfs.rootfs.proc import ProcRoot

        return ProcRoot(container)
    raise Unsupported("container is not running (offline access to stopped containers is not "
                      "available yet)", target=container.display_name)
