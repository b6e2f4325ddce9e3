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
    from ctrfs.overlay.layers import LayerStack

__all__ = ["Entry", "NotRegularFile", "Root", "WalkWarning", "open_root"]


def open_root(container: Container) -> Root:
    """A Root for ``container``: its live root (``/proc/<pid>/root``) while it runs; for a
    stopped one, its overlay layers merged in user space (:class:`ctrfs.overlay.root.OverlayRoot`)."""
    from ctrfs.errors import Unsupported

    if container.pid is not None:
        from ctrfs.rootfs.proc import ProcRoot

        return ProcRoot(container)
    stack = _stopped_overlay(container)
    if stack is not None:
        from ctrfs.overlay.root import OverlayRoot

        return OverlayRoot(stack, target=container.display_name)
    raise Unsupported("container is not running and its runtime recorded no overlay layers to "
                      "read offline", target=container.display_name)


def _stopped_overlay(container: Container) -> LayerStack | None:
    """The layer stack of a stopped container whose runtime recorded its overlay dirs."""
    from ctrfs.errors import NotFound
    from ctrfs.overlay.layers import layer_stack

    try:
        stack = layer_stack(container)
    except NotFound:
        return None
    return stack if stack.is_overlay and stack.layers else None
