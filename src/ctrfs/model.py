"""Container: one container's identity, processes, namespaces and root filesystem facts."""

from __future__ import annotations

import os

from ctrfs._record import asdict, dataclass, field
from ctrfs.errors import ProcessGone, Unsupported, translate_oserror
from ctrfs.proc.mountinfo import Mount, parse_mountinfo
from ctrfs.proc.stat import parse_stat
from ctrfs.proc.userns import userns_owner
from ctrfs.runtimes.base import ContainerRecord, Pod, Roots
from ctrfs.runtimes.stores import user_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    class Loader(Protocol):
        """What builds a Container's deferred facts (discovery passes one in)."""

        def rootfs(self, c: Container) -> RootFS | None: ...
        def namespaces(self, c: Container) -> dict[str, int]: ...


@dataclass
class RootFS:
    """The root mount of a container, from its main process's mountinfo (or runtime state)."""

    fstype: str | None
    source: str | None
    options: tuple[str, ...] = ()
    lowerdirs: list[str] = field(default_factory=list)  # top-first, short links resolved
    lowerdirs_raw: list[str] = field(default_factory=list)  # as the kernel shows them
    upperdir: str | None = None
    workdir: str | None = None
    merged: str | None = None  # where the same overlay is mounted in the host namespace
    # The root mount's mountinfo entry: the container's own, or the host's entry for the same
    # overlay superblock (same device and options; mount point and IDs are the host's).
    mount: Mount | None = None

    @property
    def is_overlay(self) -> bool:
        return self.fstype == "overlay"


LAZY: Any = object()  # Container(rootfs=LAZY, …): loaded on first access by its loader


@dataclass
class Container:
    """A container found on this host: a record of facts. Built by discovery
    (:func:`ctrfs.containers` / :func:`ctrfs.container`); it reads nothing but its own process's
    /proc entries. ``rootfs`` and ``namespaces`` may be given as LAZY, with a ``loader`` that
    builds them on first access."""

    id: str
    runtime: str
    name: str | None
    image: str | None
    state: str
    pid: int | None  # main process, host PID namespace
    start_time: int | None  # of the main process, clock ticks since boot (identity with pid)
    pids: list[int]
    namespaces: dict[str, int]  # ns type → inode
    cgroup: str | None
    pod: Pod | None
    rootfs: RootFS | None
    record: ContainerRecord
    roots: Roots = field(default_factory=Roots)
    loader: Loader | None = field(default=None, repr=False, compare=False)

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def display_name(self) -> str:
        return self.name or self.short_id

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def owner_uid(self) -> int | None:
        """The host user the container belongs to: a rootless store's owner, else the owner of
        its main process's user namespace (0 unless a user ran it in a namespace of its own)."""
        uid = self.record.extra.get("uid")
        if isinstance(uid, int):
            return uid
        if self.pid is None:
            return 0 if self.runtime in ("docker", "containerd", "cri-o") else None
        return userns_owner(self.roots.proc, self.pid)

    @property
    def owner(self) -> str | None:
        """:attr:`owner_uid` as the host names it (its own /etc/passwd)."""
        return self._owner(self.owner_uid)

    def _owner(self, uid: int | None) -> str | None:
        name = self.record.extra.get("user")
        if isinstance(name, str):
            return name
        if uid is None:
            return None
        return "root" if uid == 0 else user_name(self.roots, uid) or str(uid)

    def proc_path(self, *parts: str, pid: int | None = None) -> str:
        """``<procfs>/<pid>/<parts>`` for the main (or given) process."""
        p = pid if pid is not None else self.pid
        if p is None:
            raise Unsupported("container is not running", target=self.display_name)
        return os.path.join(self.roots.proc, str(p), *parts)

    def check_alive(self) -> None:
        """Raise ProcessGone unless the main process is still the one we found (pid + start time)."""
        if self.pid is None:
            raise Unsupported("container is not running", target=self.display_name)
        try:
            with open(self.proc_path("stat"), "rb") as f:
                st = parse_stat(f.read())
        except OSError as err:
            raise ProcessGone(target=self.display_name, pid=self.pid) from err
        if self.start_time is not None and st.start_time != self.start_time:
            raise ProcessGone(target=self.display_name, pid=self.pid,
                              message="the container's process is gone (PID reused)")

    def mounts(self) -> list[Mount]:
        """The container's mount table, from its main process's mountinfo."""
        with translate_oserror(target=self.display_name, pid=self.pid, proc_scope=True):
            with open(self.proc_path("mountinfo"), "rb") as f:
                return parse_mountinfo(f.read())

    @property
    def rootfs_kind(self) -> str | None:
        """The root filesystem type, from runtime state when it says, without reading mountinfo."""
        loaded = self.__dict__.get("_rootfs", LAZY)
        if loaded is LAZY:
            driver = self.record.extra.get("driver")
            if driver in ("overlay2", "overlay") or self.record.layer_ids:
                return "overlay"
        fs = self.rootfs
        return fs.fstype if fs else None

    def summary_dict(self) -> dict[str, Any]:
        """What ``ctrfs ps --json`` lists: identity and state, no layer details (no mountinfo read)."""
        uid = self.owner_uid  # an ioctl on the user namespace: once for both fields
        return {
            "id": self.id,
            "short_id": self.short_id,
            "name": self.name,
            "runtime": self.runtime,
            "runtime_namespace": self.record.namespace,
            "image": self.image,
            "state": self.state,
            "pid": self.pid,
            "pids": self.pids,
            "cgroup": self.cgroup,
            "pod": asdict(self.pod) if self.pod else None,
            "rootfs_kind": self.rootfs_kind,
            "created": self.record.created,
            "user": self._owner(uid),
            "uid": uid,
        }

    def to_dict(self) -> dict[str, Any]:
        rootfs = None
        if self.rootfs is not None:
            rootfs = {k: v for k, v in asdict(self.rootfs).items() if k != "mount"}
            m = self.rootfs.mount
            rootfs["mount_id"] = m.mount_id if m else None
        rec = self.record
        return {
            "id": self.id,
            "short_id": self.short_id,
            "name": self.name,
            "runtime": self.runtime,
            "image": self.image,
            "state": self.state,
            "pid": self.pid,
            "user": self.owner,
            "uid": self.owner_uid,
            "start_time": self.start_time,
            "pids": self.pids,
            "namespaces": self.namespaces,
            "cgroup": self.cgroup,
            "pod": asdict(self.pod) if self.pod else None,
            "rootfs": rootfs,
            "runtime_namespace": rec.namespace,
            "bundle": rec.bundle,
            "created": rec.created,
            "labels": rec.labels,
            "annotations": rec.annotations,
            # Paths are as the host names them; this process sees the host's / at host_root.
            "sources": [self.roots.on_host(s) for s in rec.sources],
            "host_root": self.roots.host,
        }


def _lazy_field(name: str, empty: Any) -> property:
    """A Container field that may be given as LAZY: built on first access by the container's
    loader (``empty`` when it has none)."""
    slot = "_" + name

    def get(self: Container) -> Any:
        value = self.__dict__.get(slot)
        if value is LAZY:
            loader = self.loader
            value = getattr(loader, name)(self) if loader is not None else empty
            self.__dict__[slot] = value
        return value

    def set_(self: Container, value: Any) -> None:
        self.__dict__[slot] = value

    return property(get, set_)


Container.rootfs = _lazy_field("rootfs", None)  # type: ignore[assignment]
Container.namespaces = _lazy_field("namespaces", {})  # type: ignore[assignment]
