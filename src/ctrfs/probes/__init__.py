"""eBPF probe targets: the ELF objects a container's processes map, and uprobe specs for the host.

    from ctrfs.probes import container_libs, uprobe_targets
    libs = container_libs(ctrfs.container("web"), match=r"libssl")
    for t in uprobe_targets(ctrfs.container("web"), ["SSL_write"], lib="libssl"):
        print(t.bpftrace())
"""

from ctrfs.probes.libs import (
    ContainerLibs,
    ElfCache,
    Layer,
    MappedObject,
    all_container_libs,
    container_libs,
)
from ctrfs.probes.uprobe import UprobeTarget, uprobe_targets

__all__ = [
    "ContainerLibs",
    "ElfCache",
    "Layer",
    "MappedObject",
    "UprobeTarget",
    "all_container_libs",
    "container_libs",
    "uprobe_targets",
]
