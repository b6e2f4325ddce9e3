"""kubectl-ctrfs against a kubectl STAND-IN (tests/kube/fake_kubectl.py), not a cluster.

No Kubernetes control plane or kubelet can run on the test machines. The kubectl boundary alone is
replaced: a fake ``kubectl`` first on PATH records every call and answers with objects shaped as
the Kubernetes API returns them; ``exec`` into the node pod or an agent really runs the command
on this host in a mount namespace shaped like that pod (host ``/`` read-only at ``/host``, host
PID namespace), so what comes back is what ctrfs really reads from real containers here. The
real kubectl is used where it can be: ``kubectl plugin list`` and ``kubectl ctrfs --help``.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from conftest import CTRFS, NODE, VENV_BIN, FakeKube, agent_pod, api_deployment, api_pod
from ctrfs.kube import manifests
from harness import RunningContainer


def listed_capabilities() -> list[str]:
    """The capabilities deploy/CAPABILITIES lists (found by the node-mode tests), in its order."""
    text = (Path(__file__).resolve().parents[2] / "deploy" / "CAPABILITIES").read_text()
    return [ln.split()[0] for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def ctrfs(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(CTRFS), *args], capture_output=True, check=False)


def cri_pod(fk: FakeKube, c: RunningContainer, **kw: object) -> str:
    """The API object of the CRI-shaped containerd container's pod, added to the stand-in."""
    name = c.info["pod_name"]
    fk.cluster["pods"].append(api_pod(name, c.info["pod_namespace"], NODE,
                                      [(c.info["container_name"], f"containerd://{c.id}")],
                                      uid=c.info["pod_uid"], **kw))  # type: ignore[arg-type]
    fk.save()
    return name


def some_pod(fk: FakeKube) -> str:
    """A running pod whose container is never reached (the test stops before the node runs it)."""
    cid = "containerd://" + "9" * 64
    fk.cluster["pods"].append(api_pod("web-7d9f-x1", "ctrfs-test", NODE, [("app", cid)]))
    fk.save()
    return "web-7d9f-x1"


def node_pod_spec(fk: FakeKube) -> dict:
    pods = fk.created_pods()
    assert len(pods) == 1, pods
    return pods[0]


# -- ephemeral mode ----------------------------------------------------------------------------
def test_ephemeral_pod_spec_and_answer(fake_kube: FakeKube, containerd_cri: RunningContainer) -> None:
    pod = cri_pod(fake_kube, containerd_cri)
    r = fake_kube.plugin("-n", "ctrfs-test", "ls", "-l", f"{pod}:/etc")
    assert r.rc == 0, r.err
    # The answer is ctrfs's on the node, for the container the pod's status names.
    local = ctrfs("ls", "-l", f"{containerd_cri.target}:/etc")
    assert local.returncode == 0
    assert r.out == local.stdout
    assert b"os-release" in r.out

    spec = node_pod_spec(fake_kube)
    s = spec["spec"]
    assert spec["metadata"]["namespace"] == "ctrfs-test"
    assert s["nodeName"] == NODE
    assert s["hostPID"] is True
    assert s["activeDeadlineSeconds"] == manifests.DEFAULT_DEADLINE
    assert s["restartPolicy"] == "Never"
    assert s["tolerations"] == [{"operator": "Exists"}]
    assert s["automountServiceAccountToken"] is False
    (ctr,) = s["containers"]
    assert ctr["image"] == "python:3.12-slim"
    sec = ctr["securityContext"]
    assert sec["privileged"] is False
    assert sec["capabilities"] == {"drop": ["ALL"], "add": listed_capabilities()}
    host = next(v for v in s["volumes"] if v["name"] == "host")
    assert host["hostPath"]["path"] == "/"
    mount = next(m for m in ctr["volumeMounts"] if m["name"] == "host")
    assert mount["mountPath"] == "/host" and mount["readOnly"] is True

    # ctrfs ran there with the host root and the container given by its runtime ID.
    (ex,) = fake_kube.verbs("exec")
    argv = ex["argv"]
    assert argv[argv.index("--namespace") + 1] == "ctrfs-test"
    assert spec["metadata"]["name"] in argv
    tail = argv[argv.index("--") + 1:]
    assert tail[:2] == ["python3", "-c"]
    assert tail[-5:] == ["--host-root", "/host", "ls", "-l", f"containerd://k8s.io/{containerd_cri.id}:/etc"]
    # ... and the node pod is gone.
    (delete,) = fake_kube.verbs("delete")
    assert spec["metadata"]["name"] in delete["argv"]
    assert fake_kube.live_node_pods() == []


def test_ephemeral_options_shape_the_pod(fake_kube: FakeKube, containerd_cri: RunningContainer) -> None:
    pod = cri_pod(fake_kube, containerd_cri)
    r = fake_kube.plugin("-n", "ctrfs-test", "--context", "prod", "--kubeconfig", "/tmp/kc",
                         "--privileged", "--deadline", "120", "--image", "registry.example/py:3.13",
                         "--node-namespace", "debug", "cat", f"{pod}:/etc/hostname")
    assert r.rc in (0, 1), r.err  # the shell-less image may lack /etc/hostname; the pod is what counts
    spec = node_pod_spec(fake_kube)
    assert spec["metadata"]["namespace"] == "debug"
    assert spec["spec"]["activeDeadlineSeconds"] == 120
    (ctr,) = spec["spec"]["containers"]
    assert ctr["image"] == "registry.example/py:3.13"
    assert ctr["securityContext"]["privileged"] is True
    # Every kubectl call carries the user's context and kubeconfig.
    for call in fake_kube.calls():
        if "argv" in call:
            a = call["argv"]
            assert a[a.index("--context") + 1] == "prod"
            assert a[a.index("--kubeconfig") + 1] == "/tmp/kc"
    assert fake_kube.live_node_pods() == []


def test_cp_stream_is_byte_exact(fake_kube: FakeKube, containerd_cri: RunningContainer,
                                 docker_busybox: RunningContainer, tmp_path: Path) -> None:
    pod = cri_pod(fake_kube, containerd_cri)
    # A tree, and one binary (ELF) file; not / itself, where the logger's file grows meanwhile.
    for path, names in (("/etc", ["etc", "etc/group", "etc/os-release", "etc/passwd"]), ("/app", ["app"])):
        r = fake_kube.plugin("-n", "ctrfs-test", "cp", f"{pod}:{path}", "-")
        assert r.rc == 0, r.err
        local = ctrfs("cp", f"{containerd_cri.target}:{path}", "-")
        assert local.returncode == 0
        assert r.out == local.stdout
        assert sorted(tarfile.open(fileobj=io.BytesIO(r.out)).getnames()) == names
    assert r.out[512:516] == b"\x7fELF"
    # export of a container whose files stay as they are (busybox sleeping), by docker://ID.
    fake_kube.cluster["pods"].append(api_pod("bb-1", "default", NODE, [("bb", f"docker://{docker_busybox.id}")]))
    fake_kube.save()
    r = fake_kube.plugin("export", "bb-1")
    assert r.rc == 0, r.err
    local = ctrfs("export", docker_busybox.target)
    assert local.returncode == 0 and len(local.stdout) > 500_000
    assert r.out == local.stdout
    # -o FILE is written on this machine, complete or not at all.
    out = tmp_path / "bb.tar"
    r = fake_kube.plugin("export", "bb-1", "-o", str(out))
    assert r.rc == 0, r.err
    assert out.read_bytes() == local.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bb.tar", "bin", "kube"]
    assert fake_kube.live_node_pods() == []


def test_node_option_takes_ctrfs_targets(fake_kube: FakeKube, containerd_cri: RunningContainer) -> None:
    r = fake_kube.plugin("--node", "node-7", "cat", f"pid://{containerd_cri.pid}:/etc/os-release")
    assert r.rc == 0, r.err
    assert r.out == ctrfs("cat", f"{containerd_cri.target}:/etc/os-release").stdout
    assert node_pod_spec(fake_kube)["spec"]["nodeName"] == "node-7"
    # No pod was looked up: only the agents, then the node pod's status.
    gets = [c["argv"] for c in fake_kube.verbs("get")]
    assert "app.kubernetes.io/name=ctrfs-agent" in gets[0]
    assert all(any(a.startswith("ctrfs-node-") for a in g) for g in gets[1:])


def test_cp_to_a_local_directory(fake_kube: FakeKube, containerd_cri: RunningContainer,
                                 tmp_path: Path) -> None:
    pod = cri_pod(fake_kube, containerd_cri)
    mine, theirs = tmp_path / "plugin", tmp_path / "local"
    r = fake_kube.plugin("-n", "ctrfs-test", "cp", f"{pod}:/etc", str(mine))
    assert r.rc == 0, r.err
    assert ctrfs("cp", f"{containerd_cri.target}:/etc", str(theirs)).returncode == 0

    def tree(root: Path) -> dict[str, tuple[int, int, bytes]]:
        out = {}
        for dirpath, dirnames, filenames in os.walk(root):
            for n in dirnames + filenames:
                p = Path(dirpath, n)
                st = p.lstat()
                data = p.read_bytes() if p.is_file() and not p.is_symlink() else os.fsencode(
                    os.readlink(p)) if p.is_symlink() else b""
                out[str(p.relative_to(root))] = (st.st_mode, int(st.st_mtime), data)
        return out

    assert tree(mine) == tree(theirs)
    assert sorted(tree(mine)) == ["group", "os-release", "passwd"]
    # Into an existing directory: under SRC's base name, as docker cp does.
    r = fake_kube.plugin("-n", "ctrfs-test", "cp", f"{pod}:/app", str(mine))
    assert r.rc == 0, r.err
    assert (mine / "app").read_bytes() == ctrfs("cat", f"{containerd_cri.target}:/app").stdout
    assert (mine / "app").stat().st_mode & 0o777 == 0o755
    # Nothing else was left next to it (the temporary tree is renamed, not copied).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "kube", "local", "plugin"]


def _wait_for(pred: object, what: str, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize(("sig", "group"), [(signal.SIGINT, False), (signal.SIGTERM, False),
                                           (signal.SIGINT, True)])
def test_interrupt_deletes_the_node_pod(fake_kube: FakeKube, containerd_cri: RunningContainer,
                                        sig: signal.Signals, group: bool) -> None:
    """SIGINT or SIGTERM to the plugin alone, or SIGINT to its whole process group (a terminal's
    Ctrl-C, which reaches kubectl too)."""
    pod = cri_pod(fake_kube, containerd_cri)
    p = fake_kube.popen("-n", "ctrfs-test", "tail", "-f", f"{pod}:/var/log/app.log", session=group)
    try:
        assert p.stdout is not None
        first = p.stdout.readline()  # the logger writes a line every few hundred ms
        assert first, p.stderr.read() if p.stderr else ""
        assert len(fake_kube.live_node_pods()) == 1
        if group:
            os.killpg(p.pid, sig)
        else:
            p.send_signal(sig)
        rc = p.wait(60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert rc == 128 + sig
    assert fake_kube.live_node_pods() == []
    (delete,) = fake_kube.verbs("delete")
    assert node_pod_spec(fake_kube)["metadata"]["name"] in delete["argv"]
    # The command on the "node" is gone too.
    (ex,) = [c for c in fake_kube.calls() if "exec_pid" in c]
    _wait_for(lambda: not _group_alive(ex["exec_pid"]), "the node-side tail to end", 10)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def test_failing_command_deletes_the_node_pod(fake_kube: FakeKube, containerd_cri: RunningContainer) -> None:
    pod = cri_pod(fake_kube, containerd_cri)
    r = fake_kube.plugin("-n", "ctrfs-test", "cat", f"{pod}:/no/such/file")
    local = ctrfs("cat", f"{containerd_cri.target}:/no/such/file")
    assert local.returncode != 0
    assert r.rc == local.returncode
    # ctrfs's own message, and not kubectl's "command terminated with exit code N".
    assert r.err == local.stderr.decode()
    assert "no such file or directory" in r.err
    assert len(fake_kube.created_pods()) == 1
    assert fake_kube.live_node_pods() == []


def test_workload_runs_on_each_pod_labelled(fake_kube: FakeKube, containerd_cri: RunningContainer,
                                            docker_shellless: RunningContainer) -> None:
    match = {"app": "web"}
    cri, docker = f"containerd://{containerd_cri.id}", f"docker://{docker_shellless.id}"
    fake_kube.cluster["pods"] += [
        api_pod("web-7d9f-a1", "default", NODE, [("app", cri)], labels=match),
        api_pod("web-7d9f-b2", "default", "node-2", [("app", docker)], labels=match),
        api_pod("other-1", "default", NODE, [("app", docker)], labels={"app": "x"}),
    ]
    fake_kube.cluster["workloads"] = [api_deployment("web", "default", match)]
    fake_kube.save()
    r = fake_kube.plugin("diff", "deploy/web")
    assert r.rc == 0, r.err
    expect = []
    for name, c in (("web-7d9f-a1", containerd_cri), ("web-7d9f-b2", docker_shellless)):
        local = ctrfs("diff", c.target)
        assert local.returncode == 0 and local.stdout  # both loggers changed their filesystem
        expect += [f"{name}  {line}" for line in local.stdout.decode().splitlines()]
    assert r.out.decode().splitlines() == expect
    # One node pod per node, each deleted.
    assert sorted(p["spec"]["nodeName"] for p in fake_kube.created_pods()) == [NODE, "node-2"]
    assert fake_kube.live_node_pods() == []
    # --json: one array, each item tagged with its pod and node.
    r = fake_kube.plugin("diff", "deploy/web", "--json")
    assert r.rc == 0, r.err
    items = json.loads(r.out)
    assert {(i["pod"], i["node"]) for i in items} == {("web-7d9f-a1", NODE), ("web-7d9f-b2", "node-2")}
    # A byte stream cannot be merged: one pod only.
    r = fake_kube.plugin("cat", "deploy/web:/etc/passwd")
    assert r.rc == 3
    assert "web-7d9f-a1, web-7d9f-b2" in r.err


# -- agent mode --------------------------------------------------------------------------------
def test_all_nodes_merges_three_nodes(fake_kube: FakeKube, containerd_cri: RunningContainer) -> None:
    nodes = ["node-a", "node-b", "node-c"]
    fake_kube.cluster["agents"] = [agent_pod(n, i) for i, n in enumerate(nodes)]
    fake_kube.save()
    r = fake_kube.plugin("--all-nodes", "ps", "--json")
    assert r.rc == 0, r.err
    rows = json.loads(r.out)
    (local,) = [row for row in json.loads(ctrfs("ps", "--json").stdout) if row["id"] == containerd_cri.id]
    # Each node's rows are ctrfs ps on that node, tagged with it. All three "nodes" are this host
    # (whose other containers come and go meanwhile), so each has the test's container, as here.
    assert {row["node"] for row in rows} == set(nodes)
    for n in nodes:
        mine = [row for row in rows if row["node"] == n]
        assert all(list(row)[0] == "node" for row in mine)
        (ours,) = [row for row in mine if row["id"] == containerd_cri.id]
        assert {k: v for k, v in ours.items() if k != "node"} == local
    # No node pod: the agents ran it.
    assert fake_kube.created_pods() == []
    execs = [c["pod"] for c in fake_kube.calls() if "exec_pid" in c]
    assert sorted(execs) == sorted(a["metadata"]["name"] for a in fake_kube.cluster["agents"])

    r = fake_kube.plugin("--all-nodes", "ps")
    assert r.rc == 0, r.err
    lines = r.out.decode().splitlines()
    assert lines[0].startswith("NODE") and "CONTAINER ID" in lines[0]
    assert sum(1 for ln in lines if "CONTAINER ID" in ln) == 1
    for n in nodes:
        assert sum(1 for ln in lines[1:] if ln.startswith(f"{n}  {containerd_cri.id[:12]} ")) == 1
    assert all(ln.split()[0] in nodes for ln in lines[1:])


def test_agent_is_used_for_a_pod_on_its_node(fake_kube: FakeKube, containerd_cri: RunningContainer) -> None:
    fake_kube.cluster["agents"] = [agent_pod(NODE, 0)]
    pod = cri_pod(fake_kube, containerd_cri)
    for _ in range(2):
        r = fake_kube.plugin("-n", "ctrfs-test", "cat", f"{pod}:/app")
        assert r.rc == 0, r.err
        assert r.out == ctrfs("cat", f"{containerd_cri.target}:/app").stdout
    assert fake_kube.created_pods() == []
    # The agent kept ctrfs.pyz after the first command (its scratch dir holds one copy).
    cached = list((fake_kube.dir / "scratch").rglob("ctrfs-*.pyz"))
    assert len(cached) == 1


def test_deploy_print_apply_undeploy(fake_kube: FakeKube) -> None:
    repo_yaml = (Path(__file__).resolve().parents[2] / "deploy" / "ctrfs-agent.yaml").read_text()
    r = fake_kube.plugin("deploy", "--print")
    assert r.rc == 0, r.err
    assert r.out.decode() == repo_yaml == manifests.agent_yaml()
    r = fake_kube.plugin("deploy", "--print", "--json")
    assert r.rc == 0, r.err
    listed = json.loads(r.out)
    assert [o["kind"] for o in listed["items"]] == ["Namespace", "ServiceAccount", "Role", "DaemonSet"]
    assert listed["items"][0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert fake_kube.calls() == []  # --print talks to nobody
    r = fake_kube.plugin("deploy")
    assert r.rc == 0, r.err
    (apply,) = fake_kube.verbs("apply")
    assert apply["stdin"] == repo_yaml
    r = fake_kube.plugin("undeploy")
    assert r.rc == 0, r.err
    (delete,) = fake_kube.verbs("delete")
    assert delete["stdin"] == repo_yaml
    assert "--ignore-not-found" in delete["argv"]


def test_all_nodes_without_agents(fake_kube: FakeKube) -> None:
    r = fake_kube.plugin("--all-nodes", "ps")
    assert r.rc == 1
    assert r.err == ("kubectl-ctrfs: --all-nodes needs the node agents, and none is running "
                     "(install them with 'kubectl ctrfs deploy')\n")


# -- errors ------------------------------------------------------------------------------------
def test_pod_not_found(fake_kube: FakeKube) -> None:
    r = fake_kube.plugin("ls", "nope-123:/")
    assert (r.rc, r.err) == (3, 'kubectl-ctrfs: reading pod nope-123: pods "nope-123" not found\n')
    r = fake_kube.plugin("-n", "prod", "diff", "deploy/nope")
    assert (r.rc, r.err) == (3, 'kubectl-ctrfs: reading deployment nope: deployments.apps "nope" not found\n')
    # Without -n kubectl's default namespace applies (none is passed); with -n, that one.
    first, second = (c["argv"] for c in fake_kube.verbs("get"))
    assert "--namespace" not in first
    assert second[second.index("--namespace") + 1] == "prod"


def test_pod_not_running(fake_kube: FakeKube) -> None:
    fake_kube.cluster["pods"].append(api_pod("web-1", "default", None, [("app", None)], phase="Pending"))
    fake_kube.cluster["pods"].append(api_pod("web-2", "default", NODE, [("app", None)]))
    fake_kube.save()
    r = fake_kube.plugin("ls", "web-1:/")
    assert (r.rc, r.err) == (5, "kubectl-ctrfs: pod default/web-1 is not running (phase Pending)\n")
    r = fake_kube.plugin("ls", "web-2:/")
    assert (r.rc, r.err) == (5, "kubectl-ctrfs: container app of pod default/web-2 is not running: "
                                "waiting (ContainerCreating)\n")
    assert fake_kube.created_pods() == []


def test_container_ambiguous_or_unknown(fake_kube: FakeKube) -> None:
    fake_kube.cluster["pods"].append(api_pod("web-1", "default", NODE, [
        ("app", "containerd://" + "1" * 64), ("sidecar", "containerd://" + "2" * 64)]))
    fake_kube.save()
    r = fake_kube.plugin("ls", "web-1:/")
    assert (r.rc, r.err) == (3, "kubectl-ctrfs: pod default/web-1 has 2 containers; choose one with -c: "
                                "app, sidecar\n")
    r = fake_kube.plugin("-c", "db", "ls", "web-1:/")
    assert (r.rc, r.err) == (3, "kubectl-ctrfs: pod default/web-1 has no container 'db'; containers: "
                                "app, sidecar\n")
    assert fake_kube.created_pods() == []


def test_kubectl_missing(fake_kube: FakeKube) -> None:
    env = {"PATH": str(VENV_BIN)}  # no kubectl anywhere on it
    r = fake_kube.plugin("ls", "web-1:/", env=env)
    assert (r.rc, r.err) == (1, "kubectl-ctrfs: kubectl not found on PATH (install kubectl, or name it "
                                "with KUBECTL=/path/to/kubectl)\n")


def test_forbidden_names_verb_and_resource(fake_kube: FakeKube) -> None:
    pod = some_pod(fake_kube)
    fake_kube.cluster["create_forbidden"] = True
    fake_kube.save()
    r = fake_kube.plugin("-n", "ctrfs-test", "ls", f"{pod}:/")
    assert r.rc == 4
    assert r.err.startswith("kubectl-ctrfs: creating node pod ctrfs-node-")
    assert r.err.endswith(': forbidden: you may not create pods in namespace "ctrfs-test" '
                          "(ask for RBAC verb 'create' on 'pods')\n")
    fake_kube.cluster.update(create_forbidden=False, exec_forbidden=True)
    fake_kube.save()
    r = fake_kube.plugin("-n", "ctrfs-test", "ls", f"{pod}:/")
    assert r.rc == 4
    assert r.err.endswith(': forbidden: you may not create pods/exec in namespace "ctrfs-test" '
                          "(ask for RBAC verb 'create' on 'pods/exec')\n")
    assert fake_kube.live_node_pods() == []


def test_node_pod_not_scheduled_in_time(fake_kube: FakeKube) -> None:
    pod = some_pod(fake_kube)
    fake_kube.cluster["node_pod"] = "pending"
    fake_kube.save()
    t0 = time.monotonic()
    r = fake_kube.plugin("-n", "ctrfs-test", "--timeout", "2", "ls", f"{pod}:/")
    assert time.monotonic() - t0 < 30
    assert r.rc == 1
    assert r.err.startswith("kubectl-ctrfs: node pod ctrfs-node-")
    assert r.err.endswith(f" did not start on node {NODE} within 2s (Pending, ContainerCreating) "
                          "(is the node Ready and able to pull the image? wait longer with --timeout)\n")
    assert fake_kube.live_node_pods() == []


def test_interrupt_while_waiting_for_the_node_pod(fake_kube: FakeKube) -> None:
    pod = some_pod(fake_kube)
    fake_kube.cluster["node_pod"] = "pending"
    fake_kube.save()
    p = fake_kube.popen("-n", "ctrfs-test", "--timeout", "120", "ls", f"{pod}:/")
    try:
        _wait_for(lambda: fake_kube.live_node_pods(), "the node pod to be created")
        time.sleep(1)  # polling its status now
        p.send_signal(signal.SIGINT)
        rc = p.wait(60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert rc == 130
    assert fake_kube.live_node_pods() == []
    assert fake_kube.verbs("exec") == []


def test_interrupt_during_a_fan_out_deletes_every_node_pod(fake_kube: FakeKube) -> None:
    match = {"app": "web"}
    fake_kube.cluster["pods"] += [api_pod(f"web-7d9f-{n}", "default", f"node-{n}",
                                          [("app", "containerd://" + n * 64)], labels=match)
                                  for n in ("1", "2", "3")]
    fake_kube.cluster["workloads"] = [api_deployment("web", "default", match)]
    fake_kube.cluster["node_pod"] = "pending"
    fake_kube.save()
    p = fake_kube.popen("--timeout", "300", "diff", "deploy/web")
    try:
        _wait_for(lambda: len(fake_kube.live_node_pods()) == 3, "three node pods")
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        rc = p.wait(60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert rc == 130
    assert time.monotonic() - t0 < 20  # not after the 300 s timeout
    assert fake_kube.live_node_pods() == []
    assert len(fake_kube.verbs("delete")) == 3


def test_image_without_python(fake_kube: FakeKube) -> None:
    pod = some_pod(fake_kube)
    fake_kube.cluster["node_pod"] = "no-python"
    fake_kube.save()
    r = fake_kube.plugin("-n", "ctrfs-test", "--image", "gcr.io/distroless/static", "ls", f"{pod}:/")
    assert (r.rc, r.err) == (1, "kubectl-ctrfs: image gcr.io/distroless/static has no python3 (image "
                                "gcr.io/distroless/static; choose one with Python >= 3.11 with --image)\n")
    assert fake_kube.live_node_pods() == []
    fake_kube.cluster["node_pod"] = "old-python"
    fake_kube.save()
    r = fake_kube.plugin("-n", "ctrfs-test", "--image", "python:3.9-slim", "ls", f"{pod}:/")
    assert (r.rc, r.err) == (1, "kubectl-ctrfs: image python:3.9-slim has a Python older than 3.11 (image "
                                "python:3.9-slim; choose one with Python >= 3.11 with --image)\n")
    assert fake_kube.live_node_pods() == []


def test_usage_errors(fake_kube: FakeKube) -> None:
    r = fake_kube.plugin("ps")
    assert (r.rc, r.err) == (2, "kubectl-ctrfs: 'ps' looks at a whole node: name it with --node NODE, "
                                "or use --all-nodes\n")
    r = fake_kube.plugin("shell", "web-1")
    assert r.rc == 2 and "interactive" in r.err
    r = fake_kube.plugin("frobnicate", "web-1")
    assert r.rc == 2 and "unknown command 'frobnicate'" in r.err


# -- the real kubectl --------------------------------------------------------------------------
def _real_env() -> dict[str, str]:
    # The venv first, then the system's directories only: another kubectl-ctrfs further along the
    # caller's PATH (another checkout's venv) would make `plugin list` warn about a shadowed plugin.
    return {**os.environ, "PATH": f"{VENV_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


def test_real_kubectl_finds_the_plugin() -> None:
    p = subprocess.run(["kubectl", "plugin", "list"], capture_output=True, text=True, env=_real_env(),
                       check=False)
    assert p.returncode == 0, p.stderr
    assert str(VENV_BIN / "kubectl-ctrfs") in p.stdout.splitlines()


def test_command_help_is_ctrfs_own(fake_kube: FakeKube) -> None:
    r = fake_kube.plugin("grep", "--help")
    assert r.rc == 0, r.err
    text = r.out.decode()
    assert text.startswith("kubectl ctrfs [OPTIONS] grep takes the arguments of 'ctrfs grep' below")
    assert "usage: ctrfs grep" in text
    assert text.rstrip().splitlines()[-1].lstrip().startswith("ctrfs grep ")  # its examples, last
    assert fake_kube.calls() == []


def test_real_kubectl_runs_the_plugin_help() -> None:
    p = subprocess.run(["kubectl", "ctrfs", "--help"], capture_output=True, text=True, env=_real_env(),
                       check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("usage: kubectl ctrfs [OPTIONS] COMMAND POD[:PATH]")
    assert "Examples:\n" in p.stdout
    assert p.stdout.rstrip().endswith("remove the agents and everything of theirs")
