"""Runtime modules: each reads one runtime's on-disk state and yields ContainerRecords.

The registry is in priority order: when two modules describe the same container ID (Docker's
bundle in its containerd, podman's runc state), the earlier module's record wins and the later
one only fills gaps.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator

from ctrfs.runtimes import containerd, docker, lxc, runc, storage
from ctrfs.runtimes.base import ContainerRecord, Pod, Roots

REGISTRY: tuple[tuple[str, Callable[[Roots, Collection[str]], Iterator[ContainerRecord]]], ...] = (
    ("docker", docker.discover),
    ("containers-storage", storage.discover),
    ("containerd", containerd.discover),
    ("runc", runc.discover),
    ("lxc", lxc.discover),
)

__all__ = ["REGISTRY", "ContainerRecord", "Pod", "Roots"]
