"""Fixtures for the kubectl plugin's tests: a kubectl STAND-IN (tests/kube/fake_kubectl.py) first on
PATH, and pod objects shaped as the Kubernetes API returns them (core/v1 Pod; see the field
reference at kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/).

The stand-in tests the plugin's logic against recorded kubectl calls, not a cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
PLUGIN = VENV_BIN / "kubectl-ctrfs"
CTRFS = VENV_BIN / "ctrfs"
NODE = "node-1"


def api_pod(name: str, namespace: str, node: str | None, containers: list[tuple[str, str | None]], *,
            phase: str = "Running", uid: str = "8d3c3f3e-6a1b-4c55-9b1e-2f4a9c7d1e00",
            labels: dict[str, str] | None = None, waiting: str | None = None,
            annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A core/v1 Pod as `kubectl get pod -o json` prints it (fields the kubelet and API fill in)."""
    labels = labels or {"app": name.rsplit("-", 2)[0]}
    statuses = []
    for cname, cid in containers:
        if waiting:
            state: dict[str, Any] = {"waiting": {"reason": waiting, "message": f"{waiting} for {cname}"}}
        elif cid is None:
            state = {"waiting": {"reason": "ContainerCreating"}}
        else:
            state = {"running": {"startedAt": "2026-12-01T09:00:05Z"}}
        st: dict[str, Any] = {
            "name": cname, "image": "registry.example/app:1.4", "ready": "running" in state,
            "imageID": "registry.example/app@sha256:" + "c" * 64, "restartCount": 0,
            "started": "running" in state, "lastState": {}, "state": state}
        if cid is not None:
            st["containerID"] = cid
        statuses.append(st)
    spec: dict[str, Any] = {
        "containers": [{"name": c, "image": "registry.example/app:1.4", "imagePullPolicy": "IfNotPresent",
                        "resources": {}, "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File"} for c, _ in containers],
        "dnsPolicy": "ClusterFirst", "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority",
        "priority": 0, "restartPolicy": "Always", "schedulerName": "default-scheduler",
        "securityContext": {}, "serviceAccount": "default", "serviceAccountName": "default",
        "terminationGracePeriodSeconds": 30,
        "tolerations": [{"effect": "NoExecute", "key": "node.kubernetes.io/not-ready",
                         "operator": "Exists", "tolerationSeconds": 300}],
    }
    if node:
        spec["nodeName"] = node
    meta: dict[str, Any] = {
        "creationTimestamp": "2026-12-01T09:00:00Z", "generateName": name.rsplit("-", 1)[0] + "-",
        "labels": labels, "name": name, "namespace": namespace, "resourceVersion": "48213", "uid": uid,
        "ownerReferences": [{"apiVersion": "apps/v1", "blockOwnerDeletion": True, "controller": True,
                             "kind": "ReplicaSet", "name": name.rsplit("-", 1)[0],
                             "uid": "0b7e0a3c-1f55-4f7e-8d5b-3c1d9e2a4b66"}]}
    if annotations:
        meta["annotations"] = annotations
    status: dict[str, Any] = {
        "phase": phase, "qosClass": "BestEffort", "startTime": "2026-12-01T09:00:00Z",
        "conditions": [{"type": t, "status": "True" if phase == "Running" else "False",
                        "lastProbeTime": None, "lastTransitionTime": "2026-12-01T09:00:06Z"}
                       for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                                 "PodScheduled")],
        "containerStatuses": statuses}
    if node:
        status.update(hostIP="10.0.0.2", hostIPs=[{"ip": "10.0.0.2"}], podIP="10.244.1.7",
                      podIPs=[{"ip": "10.244.1.7"}])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def api_deployment(name: str, namespace: str, match: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "uid": "3e9f4b1a-8c2d-4e6f-a1b3-5d7c9e0f2a44",
                         "generation": 1, "resourceVersion": "1200"},
            "spec": {"replicas": 2, "selector": {"matchLabels": match},
                     "template": {"metadata": {"labels": match}, "spec": {"containers": [
                         {"name": "app", "image": "registry.example/app:1.4"}]}}},
            "status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2}}


def agent_pod(node: str, index: int) -> dict[str, Any]:
    """A pod of the ctrfs-agent DaemonSet (its template from the plugin's own manifests)."""
    from ctrfs.kube import manifests

    ds = manifests.agent_objects()[-1]
    tmpl = ds["spec"]["template"]
    name = f"ctrfs-agent-{'abcdefgh'[index]}{index}x7q"
    pod = api_pod(name, "ctrfs", node, [("agent", "containerd://" + f"{index:x}" * 64)],
                  labels=dict(tmpl["metadata"]["labels"]))
    pod["spec"] = {**tmpl["spec"], "nodeName": node}
    pod["metadata"]["ownerReferences"][0].update(kind="DaemonSet", name="ctrfs-agent")
    return pod


@dataclass
class Result:
    rc: int
    out: bytes
    err: str


@dataclass
class FakeKube:
    """The stand-in's state directory and the environment that puts it first on PATH."""

    dir: Path
    env: dict[str, str]
    cluster: dict[str, Any] = field(default_factory=dict)

    def save(self) -> None:
        (self.dir / "cluster.json").write_text(json.dumps(self.cluster))

    def calls(self) -> list[dict[str, Any]]:
        path = self.dir / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def verbs(self, verb: str) -> list[dict[str, Any]]:
        out = []
        for c in self.calls():
            argv = [a for a in c.get("argv", []) if not a.startswith("--request-timeout")]
            rest = [a for i, a in enumerate(argv) if not (a.startswith("-") or
                    (i and argv[i - 1] in ("--namespace", "--context", "--kubeconfig")))]
            if rest and rest[0] == verb:
                out.append(c)
        return out

    def created_pods(self) -> list[dict[str, Any]]:
        return [json.loads(c["stdin"]) for c in self.verbs("create")]

    def live_node_pods(self) -> list[str]:
        d = self.dir / "nodepods"
        return sorted(p.stem for p in d.glob("*.json")) if d.exists() else []

    def plugin(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None) -> Result:
        p = subprocess.run([str(PLUGIN), *args], capture_output=True, timeout=timeout,
                           env={**self.env, **(env or {})}, stdin=subprocess.DEVNULL)
        return Result(p.returncode, p.stdout, p.stderr.decode("utf-8", "replace"))

    def popen(self, *args: str, session: bool = False) -> subprocess.Popen[bytes]:
        """The plugin running; with ``session`` in a process group of its own, as a shell's job."""
        return subprocess.Popen([str(PLUGIN), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, env=self.env, start_new_session=session)


@pytest.fixture(scope="session")
def pyz_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ctrfs.pyz the plugin sends, built once from the installed ctrfs (the plugin's default)."""
    from ctrfs.kube import pyz

    path = tmp_path_factory.mktemp("pyz") / "ctrfs.pyz"
    path.write_bytes(pyz.build())
    return path


@pytest.fixture
def fake_kube(tmp_path: Path, pyz_file: Path) -> Iterator[FakeKube]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "kubectl"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {HERE / 'fake_kubectl.py'} \"$@\"\n")
    wrapper.chmod(0o755)
    state = tmp_path / "kube"
    state.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECTL", "KUBECONFIG")}
    env.update(PATH=f"{bindir}:{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}", FAKE_KUBE_DIR=str(state),
               KUBECTL_CTRFS_PYZ=str(pyz_file))
    fk = FakeKube(state, env, {"default_namespace": "default", "pods": []})
    fk.save()
    yield fk
    # Whatever a test left: no stand-in exec may outlive it.
    for c in fk.calls():
        if "exec_pid" in c:
            try:
                os.killpg(c["exec_pid"], 9)
            except OSError:
                pass
