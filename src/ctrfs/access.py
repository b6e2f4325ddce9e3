"""open_root(container): the one way from a Container to a Root that ops work on.

A running container's root is its main process's ``/proc/<pid>/root``, pinned
(:class:`~ctrfs.rootfs.proc.ProcRoot`); a stopped one's is its overlay layers merged in user space
(:class:`~ctrfs.overlay.root.OverlayRoot`). Both are :class:`~ctrfs.rootfs.base.Root`, so every
operation works on either.
"""

from __future__ import annotations

from ctrfs.container import Container
from ctrfs.errors import NotFound, Unsupported
from ctrfs.rootfs.base import Root
from ctrfs.rootfs.proc import ProcRoot

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ctrfs.overlay.layers import LayerStack

__all__ = ["open_root"]


def open_root(container: Container) -> Root:
    """A Root for ``container``: its live root while it runs, else its layers merged offline."""
    if container.pid is not None:
        return ProcRoot(container)
    stack = _stopped_overlay(container)
    if stack is not None:
        # Imported here so that a running container's commands do not pay for the offline merge
        # at start-up (docs/conventions.md rule 11).
        from ctrfs.overlay.root import OverlayRoot

        return OverlayRoot(stack, target=container.display_name)
    raise Unsupported("container is not running and its runtime recorded no overlay layers to "
                      "read offline", target=container.display_name)


def _stopped_overlay(container: Container) -> LayerStack | None:
    """The layer stack of a stopped container whose runtime recorded its overlay dirs."""
    from ctrfs.overlay.layers import layer_stack  # start-up: see open_root

    try:
        stack = layer_stack(container)
    except NotFound:
        return None
    return stack if stack.is_overlay and stack.layers else None
