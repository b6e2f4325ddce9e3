"""Pods, their containers and workloads, read from the API objects kubectl prints.

A pod's ``status.containerStatuses[].containerID`` is ``RUNTIME://ID`` as the kubelet got it from
the CRI runtime (k8s.io/api core/v1 ContainerStatus); it becomes the ctrfs target that names the
same container on the node.
"""

from __future__ import annotations

from dataclasses import dataclass

from ctrfs.errors import Ambiguous, CtrfsError, TargetNotFound, UsageError
from ctrfs.kube.kubectl import Kubectl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# kubectl's annotation for the container that `kubectl exec/logs` pick when -c is not given.
DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"

# Workload kinds a POD argument may name as KIND/NAME, with kubectl's short names.
WORKLOAD_KINDS = {
    "deploy": "deployment", "deployment": "deployment", "deployments": "deployment",
    "sts": "statefulset", "statefulset": "statefulset", "statefulsets": "statefulset",
    "ds": "daemonset", "daemonset": "daemonset", "daemonsets": "daemonset",
    "rs": "replicaset", "replicaset": "replicaset", "replicasets": "replicaset",
    "job": "job", "jobs": "job",
    "po": "pod", "pod": "pod", "pods": "pod",
}


class NotRunning(CtrfsError):
    """The pod or its container is not running, so there is nothing on a node to look at."""

    exit_code = 5


@dataclass(frozen=True)
class PodContainer:
    name: str
    container_id: str | None  # RUNTIME://ID, None until the runtime created it
    state: str  # running | waiting | terminated | unknown
    reason: str | None


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    uid: str
    node: str | None
    phase: str
    containers: tuple[PodContainer, ...]  # app containers in spec order, then init and ephemeral
    app_containers: tuple[str, ...]
    default_container: str | None

    @classmethod
    def from_api(cls, obj: dict[str, Any]) -> Pod:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        statuses: dict[str, dict[str, Any]] = {}
        for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
            for cs in status.get(key) or ():
                statuses.setdefault(cs.get("name", ""), cs)
        names = [c.get("name", "") for c in spec.get("containers") or ()]
        others = [c.get("name", "") for key in ("initContainers", "ephemeralContainers")
                  for c in spec.get(key) or ()]
        containers = []
        for n in names + others:
            cs = statuses.get(n) or {}
            state = cs.get("state") or {}
            kind = next((k for k in ("running", "waiting", "terminated") if k in state), "unknown")
            containers.append(PodContainer(n, cs.get("containerID") or None, kind,
                                           (state.get(kind) or {}).get("reason")))
        return cls(name=meta.get("name", ""), namespace=meta.get("namespace", ""),
                   uid=meta.get("uid", ""), node=spec.get("nodeName") or None,
                   phase=status.get("phase", "Unknown"), containers=tuple(containers),
                   app_containers=tuple(names),
                   default_container=(meta.get("annotations") or {}).get(DEFAULT_CONTAINER))

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def container(self, want: str | None) -> PodContainer:
        """The container named ``want``; without a name, kubectl's choice (the default-container
        annotation, else the only app container). Refuses when several could be meant."""
        by_name = {c.name: c for c in self.containers}
        if want is None:
            want = self.default_container
            if want is None:
                if len(self.app_containers) != 1:
                    raise Ambiguous(f"pod {self.ref} has {len(self.app_containers)} containers; "
                                    "choose one with -c: " + ", ".join(self.app_containers))
                want = self.app_containers[0]
        c = by_name.get(want)
        if c is None:
            raise TargetNotFound(f"pod {self.ref} has no container {want!r}; containers: "
                                 + ", ".join(by_name))
        return c

    def target(self, c: PodContainer) -> str:
        """The ctrfs target of container ``c`` on the pod's node.

        A container waiting to restart (CrashLoopBackOff) keeps the ID of its last run, which
        ctrfs still reads (stopped containers are read offline from their layers); a pod that is
        not running at all, or a container never created, has nothing to read."""
        if self.phase != "Running" or self.node is None:
            raise NotRunning(f"pod {self.ref} is not running (phase {self.phase})")
        if c.container_id is None:
            why = f" ({c.reason})" if c.reason else ""
            raise NotRunning(f"container {c.name} of pod {self.ref} is not running: {c.state}{why}")
        return container_target(c.container_id)


def container_target(container_id: str) -> str:
    """``containerd://ID`` → ``containerd://k8s.io/ID`` (the CRI plugin's containerd namespace),
    ``cri-o://ID`` and ``docker://ID`` (cri-dockerd) as they are."""
    scheme, sep, ident = container_id.partition("://")
    if not sep or not ident or "/" in ident or ":" in ident:
        raise CtrfsError(f"unexpected container ID {container_id!r} in the pod's status")
    if scheme == "containerd":
        return f"containerd://k8s.io/{ident}"
    if scheme in ("cri-o", "docker"):
        return f"{scheme}://{ident}"
    raise CtrfsError(f"container runtime {scheme!r} is not one ctrfs reads (containerd, cri-o, docker)")


def get_pod(kubectl: Kubectl, name: str, namespace: str | None) -> Pod:
    obj = kubectl.get_json(["pod", name], namespace=namespace, doing=f"reading pod {name}")
    return Pod.from_api(obj)


def split_workload(ref: str) -> tuple[str, str] | None:
    """``deploy/web`` → ("deployment", "web"); a plain pod name → None."""
    if "/" not in ref:
        return None
    kind, _, name = ref.partition("/")
    full = WORKLOAD_KINDS.get(kind.lower())
    if full is None or not name or "/" in name:
        raise UsageError(f"{ref!r}: expected POD or KIND/NAME with KIND one of "
                         "deploy, sts, ds, rs, job, pod")
    return full, name


def selector_string(selector: dict[str, Any]) -> str:
    """A LabelSelector object as kubectl's ``-l`` syntax (k8s.io/apimachinery labels.Parse)."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for e in selector.get("matchExpressions") or ():
        key, op, values = e.get("key", ""), e.get("operator", ""), e.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def workload_pods(kubectl: Kubectl, kind: str, name: str, namespace: str | None) -> list[Pod]:
    """The pods of a workload (those its selector matches), sorted by name."""
    if kind == "pod":
        return [get_pod(kubectl, name, namespace)]
    obj = kubectl.get_json([f"{kind}/{name}"], namespace=namespace, doing=f"reading {kind} {name}")
    selector = (obj.get("spec") or {}).get("selector") or {}
    sel = selector_string(selector)
    if not sel:
        raise CtrfsError(f"{kind} {name} has no pod selector")
    ns = (obj.get("metadata") or {}).get("namespace") or namespace
    listing = kubectl.get_json(["pods", "-l", sel], namespace=ns, doing=f"listing the pods of {kind} {name}")
    pods = sorted((Pod.from_api(p) for p in listing.get("items") or ()), key=lambda p: p.name)
    if not pods:
        raise TargetNotFound(f"{kind} {name} has no pods")
    return pods
