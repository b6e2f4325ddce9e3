"""The objects the plugin creates, as data: the ephemeral node pod and the agent DaemonSet.

Both run the same container: hostPID (the node's processes, so ``/host/proc/PID/root`` reaches
every container), the node's ``/`` read-only at ``/host`` (ctrfs runs with ``--host-root /host``),
a few capabilities instead of ``privileged``, every taint tolerated, nothing from the API (no
service account token). ``deploy/ctrfs-agent.yaml`` is :func:`agent_yaml` written out
(``python3 -m ctrfs.kube.manifests > deploy/ctrfs-agent.yaml``); a test keeps the two equal.
"""

from __future__ import annotations

import json
import re
import sys

from ctrfs.kube.boot import SLEEPER

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_IMAGE = "python:3.12-slim"
AGENT_NAMESPACE = "ctrfs"
AGENT_NAME = "ctrfs-agent"
AGENT_CONTAINER = "agent"
NODE_CONTAINER = "ctrfs"
BOOT_DIR = "/ctrfs"
HOST_ROOT = "/host"
# An ephemeral node pod removes itself after this long even if the plugin never gets to
# (killed with SIGKILL, laptop closed): a backstop, not the normal way out.
DEFAULT_DEADLINE = 3600
# What ctrfs needs on the node, and nothing more: deploy/CAPABILITIES says why each one (and the
# node-mode tests show each needed). Kept here too so the package and the pyz carry it.
CAPABILITIES = ("SYS_PTRACE", "DAC_READ_SEARCH", "SYS_ADMIN")
PART_OF = {"app.kubernetes.io/part-of": "ctrfs", "app.kubernetes.io/managed-by": "kubectl-ctrfs"}
NODE_POD_LABEL = {"app.kubernetes.io/name": "ctrfs-node"}
AGENT_LABEL = {"app.kubernetes.io/name": AGENT_NAME}


def container(name: str, image: str, *, privileged: bool) -> dict[str, Any]:
    if privileged:
        security: dict[str, Any] = {"privileged": True, "runAsUser": 0}
    else:
        security = {"privileged": False, "runAsUser": 0, "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"], "add": list(CAPABILITIES)}}
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python3", "-c", SLEEPER],
        "env": [{"name": "CTRFS_BOOT_DIR", "value": BOOT_DIR}],
        "securityContext": security,
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
        "volumeMounts": [
            # HostToContainer: mounts the node makes later (a new container's rootfs) show up too.
            {"name": "host", "mountPath": HOST_ROOT, "readOnly": True,
             "mountPropagation": "HostToContainer"},
            {"name": "boot", "mountPath": BOOT_DIR},
        ],
    }


def _pod_spec(image: str, *, privileged: bool, name: str) -> dict[str, Any]:
    return {
        "hostPID": True,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 1,
        # Every taint: the node of the pod being inspected may be tainted (NoSchedule, NoExecute).
        "tolerations": [{"operator": "Exists"}],
        "containers": [container(name, image, privileged=privileged)],
        "volumes": [
            {"name": "host", "hostPath": {"path": "/", "type": "Directory"}},
            {"name": "boot", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        ],
    }


def node_pod(name: str, node: str, image: str = DEFAULT_IMAGE, *, privileged: bool = False,
             deadline: int = DEFAULT_DEADLINE, namespace: str | None = None) -> dict[str, Any]:
    """The short-lived pod of ephemeral mode, pinned to ``node`` (no scheduler involved)."""
    meta: dict[str, Any] = {"name": name, "labels": {**NODE_POD_LABEL, **PART_OF}}
    if namespace:
        meta["namespace"] = namespace
    spec = _pod_spec(image, privileged=privileged, name=NODE_CONTAINER)
    spec = {"nodeName": node, "restartPolicy": "Never", "activeDeadlineSeconds": deadline, **spec}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def agent_objects(image: str = DEFAULT_IMAGE, *, privileged: bool = False) -> list[dict[str, Any]]:
    """Namespace, ServiceAccount, the users' Role and the DaemonSet of agent mode."""
    ns = AGENT_NAMESPACE
    labels = {**AGENT_LABEL, **PART_OF}
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {
        **PART_OF,
        # Pod Security Admission: hostPID and a hostPath volume are "privileged"-level only.
        "pod-security.kubernetes.io/enforce": "privileged",
        "pod-security.kubernetes.io/audit": "privileged",
        "pod-security.kubernetes.io/warn": "privileged"}}}
    # The agent never calls the API: no Role is bound to it and it gets no token.
    account = {"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": AGENT_NAME, "namespace": ns, "labels": labels},
               "automountServiceAccountToken": False}
    # What a user of the agents needs here (bind it: kubectl -n ctrfs create rolebinding NAME
    # --role=ctrfs-user --user=USER): find the agents, exec into them. Nothing else.
    user_role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                 "metadata": {"name": "ctrfs-user", "namespace": ns, "labels": dict(PART_OF)},
                 "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
                           {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}]}
    spec = _pod_spec(image, privileged=privileged, name=AGENT_CONTAINER)
    spec = {"serviceAccountName": AGENT_NAME, **spec}
    daemonset = {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": AGENT_NAME, "namespace": ns, "labels": labels},
        "spec": {
            "selector": {"matchLabels": dict(AGENT_LABEL)},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%"}},
            "template": {"metadata": {"labels": labels}, "spec": spec},
        },
    }
    return [namespace, account, user_role, daemonset]


def agent_yaml(image: str = DEFAULT_IMAGE, *, privileged: bool = False) -> str:
    head = ("# ctrfs node agents: `kubectl ctrfs deploy` applies this, `kubectl ctrfs undeploy` removes it.\n"
            "# Generated by `python3 -m ctrfs.kube.manifests`; edit src/ctrfs/kube/manifests.py instead.\n")
    return head + "".join("---\n" + to_yaml(o) for o in agent_objects(image, privileged=privileged))


# -- a YAML writer for these objects (maps, lists, strings, numbers, booleans) ------------------
_PLAIN = re.compile(r"[A-Za-z/_.][A-Za-z0-9_./-]*")
_RESERVED = frozenset({"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"})


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    s = str(v)
    if _PLAIN.fullmatch(s) and s.lower() not in _RESERVED:
        return s
    return json.dumps(s)  # a JSON string is a YAML double-quoted scalar


def to_yaml(obj: Any, indent: int = 0) -> str:
    pad = " " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out.append(f"{pad}{_scalar(k)}:\n{to_yaml(v, indent + 2)}")
            else:
                out.append(f"{pad}{_scalar(k)}: {_empty(v)}\n")
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, (dict, list)) and v:
                inner = to_yaml(v, indent + 2)
                out.append(f"{pad}- {inner[indent + 2:]}")
            else:
                out.append(f"{pad}- {_empty(v)}\n")
    else:
        out.append(f"{pad}{_scalar(obj)}\n")
    return "".join(out)


def _empty(v: Any) -> str:
    if isinstance(v, dict):
        return "{}"
    if isinstance(v, list):
        return "[]"
    return _scalar(v)


if __name__ == "__main__":
    sys.stdout.write(agent_yaml())
