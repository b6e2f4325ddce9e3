"""A STAND-IN for kubectl (and the cluster behind it), for testing the kubectl-ctrfs plugin.

It is not Kubernetes: no API server, scheduler or kubelet can run on the test machines. It
answers the calls the plugin makes with objects shaped as the Kubernetes API returns them
(core/v1 Pod and List, apps/v1 Deployment; the error lines kubectl prints), records every call,
and for ``exec`` into a node pod or an agent it really runs the command here, in a mount
namespace shaped like that pod: this host's ``/`` read-only at ``/host``, a scratch tmpfs at the
pod's emptyDir path, the host's PID namespace. So ``ctrfs --host-root /host`` really reads this
host's containers, as it would on a node.

State lives in ``$FAKE_KUBE_DIR``: ``cluster.json`` (written by the test: pods, workloads, agents,
how node pods behave), ``calls.jsonl`` (appended here: argv, stdin of create/apply/delete),
``nodepods/NAME.json`` (pods the plugin created).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

STATE = Path(os.environ["FAKE_KUBE_DIR"])


def cluster() -> dict[str, Any]:
    return json.loads((STATE / "cluster.json").read_text())


def record(entry: dict[str, Any]) -> None:
    with open(STATE / "calls.jsonl", "a") as f:
        f.write(json.dumps(entry) + "\n")


def fail(msg: str, code: int = 1) -> None:
    sys.stderr.write(msg + "\n")
    sys.exit(code)


def parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    opts: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            rest += argv[i:]
            break
        if a in ("--namespace", "-n", "--context", "--kubeconfig", "-o", "-l", "-c", "-f"):
            opts[a.lstrip("-")] = argv[i + 1]
            i += 2
            continue
        if a.startswith("--request-timeout") or a.startswith("--ignore-not-found") \
                or a.startswith("--wait"):
            i += 1
            continue
        rest.append(a)
        i += 1
    if "namespace" in opts:
        opts["n"] = opts.pop("namespace")
    return opts, rest


def ns_of(opts: dict[str, str], c: dict[str, Any]) -> str:
    return opts.get("n") or c.get("default_namespace", "default")


def node_pod(name: str) -> dict[str, Any] | None:
    p = STATE / "nodepods" / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def node_pod_status(pod: dict[str, Any], behaviour: str) -> dict[str, Any]:
    ctr = pod["spec"]["containers"][0]
    image = ctr["image"]
    base = {"hostIP": "10.0.0.2", "startTime": "2026-12-01T10:00:00Z", "qosClass": "Burstable"}
    if behaviour == "pending":
        return {**base, "phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-12-01T10:00:00Z"}],
            "containerStatuses": [{"name": ctr["name"], "image": image, "imageID": "", "ready": False,
                                   "restartCount": 0, "started": False,
                                   "state": {"waiting": {"reason": "ContainerCreating"}},
                                   "lastState": {}}]}
    if behaviour == "no-python":
        msg = ('failed to create containerd task: failed to create shim task: OCI runtime create '
               'failed: runc create failed: unable to start container process: exec: "python3": '
               'executable file not found in $PATH: unknown')
        return {**base, "phase": "Failed", "containerStatuses": [{
            "name": ctr["name"], "image": image, "imageID": "", "ready": False, "restartCount": 0,
            "started": False, "containerID": "containerd://" + "f" * 64, "lastState": {},
            "state": {"terminated": {"exitCode": 128, "reason": "StartError", "message": msg,
                                     "startedAt": "1970-01-01T00:00:00Z",
                                     "finishedAt": "2026-12-01T10:00:01Z",
                                     "containerID": "containerd://" + "f" * 64}}}]}
    if behaviour == "old-python":  # the node pod's main process refused an old Python: status 97
        return {**base, "phase": "Failed", "containerStatuses": [{
            "name": ctr["name"], "image": image, "imageID": "", "ready": False, "restartCount": 0,
            "started": False, "containerID": "containerd://" + "d" * 64, "lastState": {},
            "state": {"terminated": {"exitCode": 97, "reason": "Error", "startedAt": "2026-12-01T10:00:01Z",
                                     "finishedAt": "2026-12-01T10:00:01Z",
                                     "containerID": "containerd://" + "d" * 64}}}]}
    return {**base, "phase": "Running", "podIP": "10.0.0.2", "containerStatuses": [{
        "name": ctr["name"], "image": image, "imageID": "docker.io/library/" + image + "@sha256:" + "a" * 64,
        "ready": True, "restartCount": 0, "started": True, "containerID": "containerd://" + "e" * 64,
        "lastState": {}, "state": {"running": {"startedAt": "2026-12-01T10:00:01Z"}}}]}


def pod_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}


def matches(labels: dict[str, str], selector: str) -> bool:
    for term in selector.split(","):
        k, _, v = term.partition("=")
        if labels.get(k) != v:
            return False
    return True


def get(opts: dict[str, str], rest: list[str], c: dict[str, Any]) -> None:
    ns = ns_of(opts, c)
    what = rest[1:]
    if what[0] in ("pod", "pods") and len(what) == 2:
        name = what[1]
        if name.startswith("ctrfs-node-"):
            pod = node_pod(name)
            if pod is None:
                fail(f'Error from server (NotFound): pods "{name}" not found')
            assert pod is not None
            print(json.dumps({**pod, "status": node_pod_status(pod, c.get("node_pod", "run"))}))
            return
        for p in c.get("pods", []):
            if p["metadata"]["name"] == name and p["metadata"]["namespace"] == ns:
                print(json.dumps(p))
                return
        fail(f'Error from server (NotFound): pods "{name}" not found')
    if what[0] == "pods" and "l" in opts:
        pool = c.get("agents", []) if ns == "ctrfs" else c.get("pods", [])
        if ns == "ctrfs" and c.get("agents_forbidden"):
            fail('Error from server (Forbidden): pods is forbidden: User "alice" cannot list resource '
                 '"pods" in API group "" in the namespace "ctrfs"')
        items = [p for p in pool if p["metadata"]["namespace"] == ns
                 and matches(p["metadata"].get("labels", {}), opts["l"])]
        print(json.dumps(pod_list(items)))
        return
    if "/" in what[0]:
        kind, _, name = what[0].partition("/")
        for w in c.get("workloads", []):
            meta = w["metadata"]
            if w["kind"].lower() == kind and meta["name"] == name and meta["namespace"] == ns:
                print(json.dumps(w))
                return
        fail(f'Error from server (NotFound): {kind}s.apps "{name}" not found')
    fail(f"error: the stand-in cannot answer: get {' '.join(what)}")


def create(opts: dict[str, str], c: dict[str, Any], stdin: bytes) -> None:
    if c.get("create_forbidden"):
        fail('Error from server (Forbidden): error when creating "STDIN": pods is forbidden: User "alice" '
             'cannot create resource "pods" in API group "" in the namespace "' + ns_of(opts, c) + '"')
    pod = json.loads(stdin)
    pod.setdefault("metadata", {}).setdefault("namespace", ns_of(opts, c))
    pod["metadata"]["uid"] = "6f1c8a52-7d2b-4f3e-9a41-0c5d2e8b7a19"
    (STATE / "nodepods").mkdir(exist_ok=True)
    (STATE / "nodepods" / f"{pod['metadata']['name']}.json").write_text(json.dumps(pod))
    print(f"pod/{pod['metadata']['name']} created")


POD_SHAPED = r"""
set -e
R=/mnt
mount -t tmpfs kfake-root "$R"
for d in bin sbin lib lib32 lib64 usr etc root opt; do
    if [ -d "/$d" ] && [ ! -L "/$d" ]; then mkdir -p "$R/$d"; mount --rbind "/$d" "$R/$d"; fi
    if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$R/$d"; fi
done
mkdir -p "$R/host" "$R/proc" "$R/dev" "$R/tmp" "$R$BOOT_DIR"
mount --rbind / "$R/host"
mount -o remount,bind,ro "$R/host"
mount --rbind /proc "$R/proc"
mount --rbind /dev "$R/dev"
mount -t tmpfs kfake-tmp "$R/tmp"
if [ -n "$SCRATCH" ]; then mount --bind "$SCRATCH" "$R$BOOT_DIR"
else mount -t tmpfs kfake-boot "$R$BOOT_DIR"; fi
cd /
exec chroot "$R" "$@"
"""


def exec_(opts: dict[str, str], rest: list[str], c: dict[str, Any]) -> None:
    pod_name = rest[1] if rest[1] != "-i" else rest[2]
    ns = ns_of(opts, c)
    cmd = rest[rest.index("--") + 1:]
    if c.get("exec_forbidden"):
        fail(f'Error from server (Forbidden): pods "{pod_name}" is forbidden: User "alice" cannot '
             f'create resource "pods/exec" in API group "" in the namespace "{ns}"')
    if pod_name.startswith("ctrfs-node-"):
        pod = node_pod(pod_name)
        scratch = ""
        if pod is None:
            fail(f'Error from server (NotFound): pods "{pod_name}" not found')
    else:
        pods = [p for p in c.get("agents", []) if p["metadata"]["name"] == pod_name]
        if not pods:
            fail(f'Error from server (NotFound): pods "{pod_name}" not found')
        pod = pods[0]
        scratch = str(STATE / "scratch" / pod_name)  # an agent's emptyDir outlives one exec
        os.makedirs(scratch, exist_ok=True)
    assert pod is not None
    ctr = pod["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in ctr.get("env", [])}
    if cmd[0] == "python3":  # the image's python3: here, the interpreter running this stand-in
        cmd = [os.path.realpath(sys.executable), *cmd[1:]]
    child_env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", **env,
                 "BOOT_DIR": env.get("CTRFS_BOOT_DIR", "/ctrfs"), "SCRATCH": scratch}
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", POD_SHAPED, "sh", *cmd]
    child = subprocess.Popen(argv, env=child_env, start_new_session=True)
    record({"exec_pid": child.pid, "pod": pod_name})

    def stop(signum: int, frame: object) -> None:
        # kubectl going away closes the exec stream: the command's stdin ends, its group is gone.
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except OSError:
            pass
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    rc = child.wait()
    if rc != 0:
        sys.stderr.write(f"command terminated with exit code {rc}\n")
    sys.exit(rc)


def main() -> None:
    argv = sys.argv[1:]
    opts, rest = parse(argv)
    c = cluster()
    if c.get("kubectl_broken"):
        fail("error: You must be logged in to the server (Unauthorized)")
    verb = rest[0] if rest else ""
    stdin = b""
    if verb in ("create", "apply", "delete") and opts.get("f") == "-":
        stdin = sys.stdin.buffer.read()
    record({"argv": argv, "stdin": stdin.decode("utf-8", "replace") if stdin else None,
            "time": time.time()})
    if verb == "get":
        get(opts, rest, c)
    elif verb == "create":
        create(opts, c, stdin)
    elif verb == "exec":
        exec_(opts, rest, c)
    elif verb == "delete" and rest[1:2] == ["pod"]:
        p = STATE / "nodepods" / f"{rest[2]}.json"
        if p.exists():
            p.unlink()
        print(f'pod "{rest[2]}" deleted')
    elif verb in ("apply", "delete"):
        for line in stdin.decode().splitlines():
            if line.startswith("kind: "):
                print(f"{line[6:].lower()}/… {'configured' if verb == 'apply' else 'deleted'}")
    else:
        fail(f"error: the stand-in cannot answer: {' '.join(argv)}")


if __name__ == "__main__":
    main()
