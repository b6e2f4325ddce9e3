"""ctrfs: inspect any Linux container's filesystem from the host.

Public API::

    import ctrfs
    for c in ctrfs.containers():           # every runtime, no daemon calls
        print(c.display_name, c.runtime, c.pid)
    c = ctrfs.container("web")              # or "docker://web", "k8s://ns/pod/ctr", "pid://42"
    with ctrfs.open_root(c) as root:        # paths resolved with the container's root as /
        print(root.open_file("/etc/os-release").read().decode())

Importing ``ctrfs`` imports nothing else: each name is loaded on first use (PEP 562), so a
command pays only for the modules it runs.
"""

from __future__ import annotations

from ctrfs._version import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ctrfs.access import open_root
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
    from ctrfs.model import Container
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
    "__version__",
    "container",
    "containers",
    "open_root",
]

_LAZY = {
    "Container": "ctrfs.model",
    "open_root": "ctrfs.access",
    **dict.fromkeys(("AccessDenied", "Ambiguous", "CtrfsError", "NotFound", "ProcessGone",
                     "TargetNotFound", "UnsafePath", "Unsupported", "UsageError"), "ctrfs.errors"),
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ctrfs' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def containers(all: bool = False, roots: Roots | None = None) -> list[Container]:  # noqa: A002
    """Every container on this host, of every runtime; ``all`` adds stopped ones."""
    from ctrfs.discovery import discover  # the facade imports on use: see the module docstring

    return discover(roots, include_stopped=all)


def container(target: str, roots: Roots | None = None) -> Container:
    """The one container a TARGET names (docs/design.md, "Targets")."""
    from ctrfs.targets import resolve  # the facade imports on use: see the module docstring

    return resolve(target, roots)
