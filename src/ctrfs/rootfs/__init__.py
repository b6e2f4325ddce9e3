"""Safe access to a container's root filesystem (SECURITY.md "The recipe").

``open_root(container)`` returns a :class:`Root`: every path is resolved with the container
root as ``/`` (openat2 RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS, or a component walker).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ctrfs.container import Container

Root = Any  # replaced by the real interface in rootfs/base.py


def open_root(container: Container) -> Root:
    raise NotImplementedError("rootfs is being written (issue 3)")
