"""A container's mounts, with the host directory behind each bind mount and volume.

A bind mount shows in the container's mountinfo as (device, root): the device of the filesystem
and the directory of it that was mounted. The same filesystem is mounted somewhere on the host
(``/proc/1/mountinfo``) with its own root; the host path is that mount point plus the container
mount's root relative to the host mount's root (proc(5), "mountinfo"; the technique of
``findmnt`` and of Docker's own ``volume`` bookkeeping).
"""

from __future__ import annotations

import os

from ctrfs._record import dataclass, field
from ctrfs.hostmounts import HostMounts, rel_under
from ctrfs.proc.mountinfo import Mount
from ctrfs.runtimes.base import Roots, read_json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ctrfs.model import Container

# Filesystems that are never a host directory: the kind is the fstype itself.
_VIRTUAL = {"proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2", "securityfs", "debugfs",
            "tracefs", "bpf", "hugetlbfs", "pstore", "configfs", "fusectl", "binfmt_misc",
            "nsfs", "autofs", "rpc_pipefs", "devtmpfs", "efivarfs", "selinuxfs"}


@dataclass
class ContainerMount:
    mount_point: str  # inside the container
    fstype: str
    source: str
    root: str  # the directory of the filesystem that is mounted
    options: tuple[str, ...]
    super_options: tuple[str, ...]
    read_only: bool
    propagation: str
    kind: str  # root, bind, volume, tmpfs, proc, sysfs, …
    host_path: str | None = None  # where the same directory is on the host
    host_mount: str | None = None  # the host mount point it was found under
    volume: str | None = None  # volume name (Docker / podman named volume)
    mount_id: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mount_point": self.mount_point, "fstype": self.fstype, "source": self.source,
            "root": self.root, "kind": self.kind, "host_path": self.host_path,
            "host_mount": self.host_mount, "volume": self.volume, "read_only": self.read_only,
            "propagation": self.propagation, "options": list(self.options),
            "super_options": list(self.super_options), "mount_id": self.mount_id,
            "recorded": bool(self.extra.get("recorded")),
        }


def _volume(host_path: str | None, roots: Roots) -> str | None:
    """Named volume of a host path under Docker's or containers/storage's volumes dir."""
    if not host_path:
        return None
    for base in (os.path.join(roots.docker, "volumes"), os.path.join(roots.storage, "volumes")):
        rel = rel_under(host_path, base)
        if rel:
            name, _, rest = rel.partition("/")
            if rest == "_data" or rest.startswith("_data/"):
                return name
    return None


def classify(mounts: list[Mount], host: HostMounts) -> list[ContainerMount]:
    out = []
    for m in mounts:
        host_path, host_mount = host.find_mount(m)
        volume = _volume(host_path, host.roots)
        if m.mount_point == "/":
            kind = "root"
        elif m.fstype in _VIRTUAL:
            kind = m.fstype
        elif volume:
            kind = "volume"
        elif host_path is not None:
            kind = "bind"
        elif m.fstype == "tmpfs":
            kind = "tmpfs"
        else:
            kind = m.fstype
        out.append(ContainerMount(
            mount_point=m.mount_point, fstype=m.fstype, source=m.source, root=m.root,
            options=m.options, super_options=m.super_options, read_only=m.read_only,
            propagation=m.propagation, kind=kind, host_path=host_path, host_mount=host_mount,
            volume=volume, mount_id=m.mount_id,
        ))
    return out


def container_mounts(container: Container) -> list[ContainerMount]:
    """The mounts of a container: from its main process's mountinfo while it runs, else the
    mounts its runtime recorded (a stopped container has no mount table)."""
    if container.pid is None:
        return recorded_mounts(container)
    return classify(container.mounts(), HostMounts(container.roots))


def recorded_mounts(container: Container) -> list[ContainerMount]:
    """Binds and volumes a stopped container will get, from runtime state on disk: Docker's
    ``config.v2.json`` ``MountPoints``, else the OCI spec (``config.json``) of podman/CRI-O."""
    roots = container.roots
    out: list[ContainerMount] = []
    if container.runtime == "docker":
        cfg = read_json(os.path.join(roots.docker, "containers", container.id, "config.v2.json"))
        points = (cfg or {}).get("MountPoints") or {}
        for dest in sorted(points):
            mp = points[dest]
            if not isinstance(mp, dict):
                continue
            kind = "volume" if mp.get("Type") == "volume" else (mp.get("Type") or "bind")
            prop = (mp.get("Propagation") or "").removeprefix("r") or "private"
            out.append(ContainerMount(
                mount_point=dest, fstype="", source=mp.get("Source") or "", root="",
                options=(), super_options=(), read_only=not mp.get("RW", True),
                propagation=prop, kind=kind, host_path=mp.get("Source") or None,
                volume=mp.get("Name") or None, extra={"recorded": True}))
        return out
    spec = read_json(os.path.join(roots.storage, "overlay-containers", container.id, "userdata",
                                  "config.json"))
    if spec is None and container.record.bundle:
        spec = read_json(os.path.join(roots.host_path(container.record.bundle), "config.json"))
    for m in (spec or {}).get("mounts") or []:
        if not isinstance(m, dict) or not m.get("destination"):
            continue
        opts = tuple(str(o) for o in m.get("options") or ())
        typ = m.get("type") or ""
        bind = typ == "bind" or "bind" in opts or "rbind" in opts
        src = m.get("source") or ""
        volume = _volume(src, roots) if bind else None
        kind = "volume" if volume else ("bind" if bind else (typ or "unknown"))
        prop = next((o.removeprefix("r") for o in opts
                     if o in ("shared", "rshared", "slave", "rslave", "private", "rprivate")),
                    "private")
        out.append(ContainerMount(
            mount_point=m["destination"], fstype=typ, source=src, root="", options=opts,
            super_options=(), read_only="ro" in opts, propagation=prop, kind=kind,
            host_path=src if bind else None, volume=volume, extra={"recorded": True}))
    return out
