"""What every runtime module yields, and where on disk it looks."""

from __future__ import annotations

import json
import os

from ctrfs._record import dataclass, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The containerds Kubernetes distributions run beside (or instead of) the system's, as (state dir,
# root dir); each is looked in too, and one that is missing costs one failed stat. From each
# project's source:
# - k3s: state "/run/k3s/containerd" (pkg/agent/config/config_linux.go,
#   applyContainerdStateAndAddress), root "<data-dir>/agent/containerd" (pkg/agent/config/config.go,
#   Containerd.Root), data-dir /var/lib/rancher/k3s.
# - RKE2 runs k3s's agent code with data-dir /var/lib/rancher/rke2 (rke2 pkg/cli/cmds, the data-dir
#   flag's default): the same state dir, root /var/lib/rancher/rke2/agent/containerd.
# - microk8s: "--state ${SNAP_COMMON}/run/containerd", "--root ${SNAP_COMMON}/var/lib/containerd"
#   (microk8s-resources/default-args/containerd), SNAP_COMMON = /var/snap/microk8s/common.
# - k0s: "--state=/run/k0s/containerd", "--root=/var/lib/k0s/containerd" (k0s docs/runtime.md).
# Upstream containerd's own defaults (/run/containerd, /var/lib/containerd) are the primary pair.
# CRI-O keeps its containers in containers/storage at the defaults of ``storage``/``storage_run``
# (cri-o docs/crio.conf.5.md: root /var/lib/containers/storage, runroot /var/run/containers/storage;
# /var/run is a link to /run, which is read directly so that no absolute link is followed below
# --host-root).
KUBE_CONTAINERDS: tuple[tuple[str, str], ...] = (
    ("/run/k3s/containerd", "/var/lib/rancher/k3s/agent/containerd"),
    ("/run/k3s/containerd", "/var/lib/rancher/rke2/agent/containerd"),
    ("/var/snap/microk8s/common/run/containerd", "/var/snap/microk8s/common/var/lib/containerd"),
    ("/run/k0s/containerd", "/var/lib/k0s/containerd"),
)


@dataclass(frozen=True)
class Roots:
    """Where ctrfs looks. Every root is configurable so a host mounted at /host works."""

    host: str = "/"  # where the host's filesystem is seen (paths from mountinfo are below it)
    proc: str = "/proc"
    docker: str = "/var/lib/docker"
    docker_run: str = "/run/docker"
    containerd_run: str = "/run/containerd"
    containerd_root: str = "/var/lib/containerd"
    storage: str = "/var/lib/containers/storage"
    storage_run: str = "/run/containers/storage"
    runc_dirs: tuple[str, ...] = ("/run/runc", "/run/crun")
    lxc: str = "/var/lib/lxc"  # lxc-create's default lxcpath

    @classmethod
    def under(cls, prefix: str) -> Roots:
        """All default roots below ``prefix`` (a host filesystem mounted elsewhere)."""
        d = cls()
        j = lambda p: os.path.join(prefix, p.lstrip("/"))  # noqa: E731
        return cls(
            host=prefix, proc=j(d.proc), docker=j(d.docker), docker_run=j(d.docker_run),
            containerd_run=j(d.containerd_run), containerd_root=j(d.containerd_root),
            storage=j(d.storage), storage_run=j(d.storage_run), runc_dirs=tuple(j(p) for p in d.runc_dirs),
            lxc=j(d.lxc),
        )

    @property
    def containerd_runs(self) -> tuple[str, ...]:
        """Every containerd state dir to look in: the configured one first, then those of the
        Kubernetes distributions (KUBE_CONTAINERDS, below the host root)."""
        return tuple(dict.fromkeys((self.containerd_run,
                                    *(self.host_path(run) for run, _ in KUBE_CONTAINERDS))))

    @property
    def containerd_roots(self) -> tuple[str, ...]:
        """Every containerd root dir (content store, snapshots), the configured one first: for
        readers of containerd's images. Layer directories are named wherever they lie (their path
        in mountinfo says which snapshotter, runtimes/snapshots.py), so discovery needs none."""
        return tuple(dict.fromkeys((self.containerd_root,
                                    *(self.host_path(root) for _, root in KUBE_CONTAINERDS))))

    def host_path(self, path: str) -> str:
        """A host path (as mountinfo or runtime state names it) as this process can open it."""
        if self.host in ("", "/"):
            return path
        return os.path.join(self.host, path.lstrip("/"))

    def on_host(self, path: str) -> str:
        """The inverse of :meth:`host_path`: a path this process opens (a root option below
        ``--host-root``) as the host itself names it."""
        host = self.host.rstrip("/")
        if host and path.startswith(host + "/"):
            return path[len(host):]
        return path


@dataclass(frozen=True)
class Pod:
    namespace: str | None
    name: str | None
    uid: str | None
    container: str | None  # the container's name within the pod
    sandbox_id: str | None = None
    is_sandbox: bool = False


@dataclass
class ContainerRecord:
    """Facts one runtime's on-disk state gives about one container."""

    id: str
    runtime: str
    name: str | None = None
    image: str | None = None
    image_id: str | None = None
    state: str = "unknown"  # running, exited, created, paused, unknown
    pid: int | None = None
    namespace: str | None = None  # containerd namespace
    pod: Pod | None = None
    bundle: str | None = None
    rootfs: str | None = None  # rootfs directory from the OCI bundle, host path
    created: str | None = None
    # Overlay layout the runtime itself records (Docker/containers-storage), host paths,
    # lowerdirs top-first. Filled for stopped containers too.
    upperdir: str | None = None
    workdir: str | None = None
    lowerdirs: list[str] | None = None
    mergeddir: str | None = None
    layer_ids: list[str] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def merge(self, other: ContainerRecord) -> None:
        """Fill fields this record lacks from another record about the same container."""
        mine = self.__dict__
        for name, value in other.__dict__.items():
            if value is None:
                continue
            if name in _DICT_FIELDS:
                for k, v in value.items():
                    mine[name].setdefault(k, v)
            elif name == "sources":
                self.sources.extend(s for s in value if s not in self.sources)
            elif name == "state":
                if self.state == "unknown":
                    self.state = value
            elif mine.get(name) is None:
                mine[name] = value


_DICT_FIELDS = frozenset({"labels", "annotations", "extra"})


_JSON_CACHE: dict[str, tuple[tuple[int, int, int], Any]] = {}
_JSON_CACHE_MAX = 8192


def read_json(path: str) -> Any:
    """A JSON file, or None when missing/unreadable/malformed (runtime state is best effort).

    Parsed documents are kept per process, keyed by (inode, mtime, size): a long-running caller
    (an agent polling discovery) re-parses only state files that changed. Runtimes replace their
    state files by rename, which changes the inode. Callers must not mutate what they get.
    """
    hit = _JSON_CACHE.get(path)
    try:
        if hit is not None:
            st = os.stat(path)  # cheaper than open + fstat + close when nothing changed
            if hit[0] == (st.st_ino, st.st_mtime_ns, st.st_size):
                return hit[1]
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
            data = json.loads(read_all(fd))
        finally:
            os.close(fd)
    except (OSError, ValueError):
        return None
    if len(_JSON_CACHE) >= _JSON_CACHE_MAX:
        _JSON_CACHE.clear()
    _JSON_CACHE[path] = (key, data)
    return data


def read_all(fd: int) -> bytes:
    """What is left to read of ``fd``. Discovery reads hundreds of small files (/proc/<pid>/cgroup,
    every container's state): plain reads spare each one the buffered file object and the fstat,
    isatty ioctl and lseek that ``open()`` makes, about half of a small file's cost."""
    chunks: list[bytes] = []
    while True:
        data = os.read(fd, 1 << 16)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def read_text(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return None


def read_int(path: str) -> int | None:
    text = read_text(path)
    try:
        return int(text) if text else None
    except ValueError:
        return None


def listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


# Annotation keys a kubelet's CRI runtime sets on containers (containerd's CRI plugin
# pkg/cri/annotations, CRI-O's pkg/annotations).
CRI_CONTAINERD = {
    "type": "io.kubernetes.cri.container-type",
    "container": "io.kubernetes.cri.container-name",
    "sandbox_id": "io.kubernetes.cri.sandbox-id",
    "pod": "io.kubernetes.cri.sandbox-name",
    "namespace": "io.kubernetes.cri.sandbox-namespace",
    "uid": "io.kubernetes.cri.sandbox-uid",
    "image": "io.kubernetes.cri.image-name",
}
CRI_O = {
    "type": "io.kubernetes.cri-o.ContainerType",
    "container": "io.kubernetes.container.name",
    "sandbox_id": "io.kubernetes.cri-o.SandboxID",
    "pod": "io.kubernetes.pod.name",
    "namespace": "io.kubernetes.pod.namespace",
    "uid": "io.kubernetes.pod.uid",
    "image": "io.kubernetes.cri-o.ImageName",
}


def pod_from_annotations(ann: dict[str, str]) -> Pod | None:
    for keys in (CRI_CONTAINERD, CRI_O):
        if keys["pod"] in ann or keys["uid"] in ann:
            kind = ann.get(keys["type"], "container")
            return Pod(
                namespace=ann.get(keys["namespace"]),
                name=ann.get(keys["pod"]),
                uid=ann.get(keys["uid"]),
                container=ann.get(keys["container"]),
                sandbox_id=ann.get(keys["sandbox_id"]),
                is_sandbox=kind == "sandbox",
            )
    return None


def image_from_annotations(ann: dict[str, str]) -> str | None:
    return ann.get(CRI_CONTAINERD["image"]) or ann.get(CRI_O["image"])
