"""ctrfs: inspect any Linux container's filesystem from the host.

Public API::

    import ctrfs
    for c in ctrfs.containers():           # every runtime, no daemon calls
        print(c.display_name, c.runtime, c.pid)
    c = ctrfs.container("web")              # or "docker://web", "k8s://ns/pod/ctr", "pid://42"
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# Imported eagerly and before the function ``container`` below is defined: a first import of the
# submodule ``ctrfs.container`` would otherwise rebind the package attribute to the module.
from ctrfs.container import Container
from ctrfs.errors import (
    AccessDenied,
    Ambiguous,
    CtrfsError,
    NotFound,
    ProcessGone,
    TargetNotFound,
    UnsafePath,
    Unsupported,
    UsageError,
)

if TYPE_CHECKING:
    from ctrfs.runtimes.base import Roots

__all__ = [
    "AccessDenied",
    "Ambiguous",
    "Container",
    "CtrfsError",
    "NotFound",
    "ProcessGone",
    "TargetNotFound",
    "UnsafePath",
    "Unsupported",
    "UsageError",
    "container",
    "containers",
]


def containers(all: bool = False, roots: Roots | None = None) -> list[Container]:  # noqa: A002
    """Every container on this host, of every runtime; ``all`` adds stopped ones."""
    from ctrfs.discovery import discover

    return discover(roots, include_stopped=all)


def container(target: str, roots: Roots | None = None) -> Container:
    """The one container a TARGET names (see DESIGN.md "Targets")."""
    from ctrfs.targets import resolve

    return resolve(target, roots)
