"""ctrfs ps / inspect / targets on real containers of every runtime, checked against each
runtime's own tool (docker inspect, podman inspect, ctr task ls)."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest

import harness
from harness import RunningContainer


def ctrfs(*argv: str, check: bool = True, user: int | None = None) -> subprocess.CompletedProcess[str]:
    drop = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] if user is not None else None
    return harness.ctrfs(*argv, check=check, prefix=drop, timeout=60)


def ps_json(*extra: str) -> list[dict[str, Any]]:
    return json.loads(ctrfs("ps", "--json", *extra).stdout)


def by_id(rows: list[dict[str, Any]], cid: str) -> dict[str, Any]:
    found = [r for r in rows if r["id"] == cid]
    assert len(found) == 1, f"{cid} listed {len(found)} times in {[r['id'] for r in rows]}"
    return found[0]


def graph_driver(cli: str, name: str) -> dict[str, str]:
    return json.loads(harness.out(cli, "inspect", "-f", "{{json .GraphDriver.Data}}", name))


def assert_same_layers(inspected: dict[str, Any], gd: dict[str, str]) -> None:
    fs = inspected["rootfs"]
    assert fs["fstype"] == "overlay"
    assert fs["upperdir"] == gd["UpperDir"]
    assert fs["workdir"] == gd["WorkDir"]
    assert fs["lowerdirs"] == gd["LowerDir"].split(":")


def _pidns(pid: int) -> list[int]:
    ns = os.readlink(f"/proc/{pid}/ns/pid")
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.readlink(f"/proc/{d}/ns/pid") == ns:
                    found.append(int(d))
            except OSError:
                pass
    return sorted(found)


def test_ps_docker_matches_docker_inspect(docker_shellless: RunningContainer) -> None:
    """Every field of the row, each from docker inspect or the process's own /proc entries."""
    row = by_id(ps_json(), docker_shellless.id)
    (info,) = json.loads(harness.out("docker", "inspect", docker_shellless.id))
    cgroup_v1 = {line.split(":", 2)[2] for line in
                 open(f"/proc/{docker_shellless.pid}/cgroup").read().splitlines()} - {"/"}
    assert row == {
        "id": info["Id"], "short_id": info["Id"][:12], "name": info["Name"].lstrip("/"),
        "runtime": "docker", "runtime_namespace": "moby",  # containerd's namespace for dockerd
        "image": info["Config"]["Image"], "state": info["State"]["Status"],
        "pid": info["State"]["Pid"], "pids": _pidns(docker_shellless.pid),
        "cgroup": row["cgroup"], "pod": None,
        "rootfs_kind": {"overlay2": "overlay"}[info["GraphDriver"]["Name"]],
        "created": info["Created"],
    }
    assert row["cgroup"] in cgroup_v1 and row["cgroup"].endswith(info["Id"])
    assert (row["name"], row["pid"], row["image"]) == (docker_shellless.name, docker_shellless.pid,
                                                       docker_shellless.image)


def test_inspect_docker_layers_match_graphdriver(docker_shellless: RunningContainer) -> None:
    data = json.loads(ctrfs("inspect", "--json", docker_shellless.name).stdout)
    gd = graph_driver("docker", docker_shellless.name)
    assert_same_layers(data, gd)
    assert data["rootfs"]["merged"] == gd["MergedDir"]
    assert data["pids"] == [docker_shellless.pid]
    assert data["namespaces"]["mnt"] == os.stat(f"/proc/{docker_shellless.pid}/ns/mnt").st_ino
    assert data["start_time"] > 0


def test_inspect_multilayer_lowerdirs_in_order(docker_multilayer: RunningContainer) -> None:
    data = json.loads(ctrfs("inspect", "--json", f"docker://{docker_multilayer.id[:12]}").stdout)
    gd = graph_driver("docker", docker_multilayer.name)
    assert len(gd["LowerDir"].split(":")) >= 4  # init layer + three image layers
    assert_same_layers(data, gd)


def test_ps_podman_matches_podman_inspect(podman_shellless: RunningContainer) -> None:
    row = by_id(ps_json(), podman_shellless.id)
    pid = int(harness.out("podman", "inspect", "-f", "{{.State.Pid}}", podman_shellless.name))
    assert row["pid"] == pid == podman_shellless.pid
    assert (row["name"], row["runtime"]) == (podman_shellless.name, "podman")
    data = json.loads(ctrfs("inspect", "--json", f"podman://{podman_shellless.name}").stdout)
    assert_same_layers(data, graph_driver("podman", podman_shellless.name))


def test_ps_containerd_matches_ctr(containerd_cri: RunningContainer) -> None:
    tasks = harness.out("ctr", "-n", "k8s.io", "task", "ls")
    ctr_pid = next(int(line.split()[1]) for line in tasks.splitlines() if line.startswith(containerd_cri.id))
    rows = ps_json()
    row = by_id(rows, containerd_cri.id)
    assert row["pid"] == ctr_pid == containerd_cri.pid
    assert row["runtime"] == "containerd" and row["runtime_namespace"] == "k8s.io"
    info = containerd_cri.info
    assert row["pod"]["namespace"] == info["pod_namespace"] and row["pod"]["name"] == info["pod_name"]
    assert row["pod"]["uid"] == info["pod_uid"] and row["pod"]["container"] == info["container_name"]
    assert row["cgroup"] == info["cgroup"]
    sandbox = by_id(rows, info["sandbox_id"])
    assert sandbox["pod"]["is_sandbox"] and sandbox["pid"] == info["sandbox_pid"]


def test_k8s_target_resolves_cri_container(containerd_cri: RunningContainer) -> None:
    info = containerd_cri.info
    for target in (info["k8s_target"], f"k8s://{info['pod_namespace']}/{info['pod_name']}",
                   containerd_cri.target):
        data = json.loads(ctrfs("inspect", "--json", target).stdout)
        assert data["id"] == containerd_cri.id and data["pid"] == containerd_cri.pid, target
    missing = ctrfs("inspect", f"k8s://{info['pod_namespace']}/{info['pod_name']}/nope", check=False)
    assert missing.returncode == 3 and "no such container" in missing.stderr


def test_runc_container_matches_runc_state(runc_container: RunningContainer) -> None:
    """A container run by runc alone (no daemon, no image store): found from /run/runc, with
    the PID runc reports and its plain-directory root shown for what it is."""
    state = json.loads(harness.out("runc", "state", runc_container.id))
    row = by_id(ps_json(), runc_container.id)
    assert row["pid"] == state["pid"] == runc_container.pid
    assert row["runtime"] == "runc" and row["state"] == "running"
    data = json.loads(ctrfs("inspect", "--json", runc_container.target).stdout)
    assert data["bundle"] == state["bundle"] == runc_container.info["bundle"]
    fs = data["rootfs"]
    assert fs["fstype"] != "overlay" and fs["upperdir"] is None and fs["lowerdirs"] == []
    assert fs["merged"] == runc_container.info["rootfs"]  # where the host sees that directory
    assert data["sources"] == [f"{harness.RUNC_STATE}/{runc_container.id}/state.json"]


def test_bare_container_found_from_proc_alone(bare_container: RunningContainer) -> None:
    rows = ps_json()
    row = next(r for r in rows if r["pid"] == bare_container.pid)
    assert row["runtime"] == "none" and bare_container.pid in row["pids"]
    data = json.loads(ctrfs("inspect", "--json", f"pid://{bare_container.pid}").stdout)
    assert data["id"] == row["id"] and data["rootfs"]["fstype"] == "overlay"
    assert data["rootfs"]["upperdir"] == bare_container.info["upperdir"]
    assert data["rootfs"]["lowerdirs"] == [bare_container.info["lowerdir"]]


def test_pid_target_of_a_docker_process(docker_shellless: RunningContainer) -> None:
    data = json.loads(ctrfs("inspect", "--json", f"pid://{docker_shellless.pid}").stdout)
    assert data["id"] == docker_shellless.id and data["name"] == docker_shellless.name


def test_pid_target_of_a_host_process() -> None:
    data = json.loads(ctrfs("inspect", "--json", f"pid://{os.getpid()}").stdout)
    assert data["runtime"] == "host" and data["pid"] == os.getpid()


def test_unknown_target_lists_nearest(docker_shellless: RunningContainer) -> None:
    typo = docker_shellless.name[:-1] + ("x" if docker_shellless.name[-1] != "x" else "y")
    res = ctrfs("inspect", typo, check=False)
    assert res.returncode == 3
    assert "no such container" in res.stderr and docker_shellless.name in res.stderr
    assert "Traceback" not in res.stderr


def test_same_name_on_two_runtimes_is_ambiguous(docker_shellless: RunningContainer) -> None:
    image = harness.shellless_image("podman")
    name = docker_shellless.name
    harness.run("podman", "run", "-d", "--name", name, "--network", "none", *harness.PODMAN_RUN_OPTS,
                "--label", f"{harness.OWNER_LABEL}={os.getpid()}", image)
    try:
        res = ctrfs("inspect", name, check=False)
        assert res.returncode == 3 and "ambiguous" in res.stderr
        assert "docker://" in res.stderr and "podman://" in res.stderr
        assert json.loads(ctrfs("inspect", "--json", f"docker://{name}").stdout)["runtime"] == "docker"
    finally:
        harness.run("podman", "rm", "-f", name, check=False)


def test_bad_target_syntax_is_usage_error() -> None:
    res = ctrfs("inspect", "pid://abc", check=False)
    assert res.returncode == 2 and "positive process ID" in res.stderr


def test_not_root_exit_4(docker_shellless: RunningContainer) -> None:
    res = ctrfs("inspect", docker_shellless.name, check=False, user=65534)
    assert res.returncode == 4 and "needs root" in res.stderr and "CAP_SYS_PTRACE" in res.stderr


def test_stopped_container_in_ps_all_only() -> None:
    image = harness.shellless_image()
    name = harness.unique_name()
    harness.run("docker", "create", "--name", name, "--network", "none",
                "--label", f"{harness.OWNER_LABEL}={os.getpid()}", image)
    try:
        cid = harness.out("docker", "inspect", "-f", "{{.Id}}", name).strip()
        assert cid not in {r["id"] for r in ps_json()}
        row = by_id(ps_json("-a"), cid)
        assert (row["state"], row["pid"], row["name"]) == ("created", None, name)
        data = json.loads(ctrfs("inspect", "--json", name).stdout)
        assert_same_layers(data, graph_driver("docker", name))
    finally:
        harness.run("docker", "rm", "-f", name, check=False)


@pytest.fixture
def private_dockerd(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A second, private dockerd (own data root, exec root and socket) that the test may stop
    without disturbing the shared daemon; containers survive its stop (--live-restore)."""
    import tempfile

    top = tempfile.mkdtemp(prefix="ctrfs-pd-", dir="/tmp")  # short: unix socket paths are limited
    data, execroot, sock = f"{top}/data", f"{top}/exec", f"{top}/d.sock"
    argv = ["dockerd", "--data-root", data, "--exec-root", execroot, "-H", f"unix://{sock}",
            "--pidfile", f"{top}/d.pid", "--bridge=none", "--iptables=false", "--ip6tables=false",
            "--live-restore"]
    logf = open(f"{top}/d.log", "wb")  # noqa: SIM115
    state: dict[str, Any] = {"top": top, "data": data, "sock": sock, "argv": argv, "log": logf}

    def start() -> None:
        state["proc"] = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT)
        harness.wait_until(lambda: subprocess.run(["docker", "-H", f"unix://{sock}", "version"],
                                                  capture_output=True).returncode == 0,
                           "private dockerd", timeout=60)

    def stop() -> None:
        p = state.get("proc")
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    state["start"], state["stop"] = start, stop
    start()
    try:
        yield state
    finally:
        try:
            if state["proc"].poll() is not None:
                start()
            ids = harness.out("docker", "-H", f"unix://{sock}", "ps", "-aq").split()
            if ids:
                harness.run("docker", "-H", f"unix://{sock}", "rm", "-f", *ids, check=False, timeout=120)
        finally:
            stop()
            logf.close()
            subprocess.run(["sh", "-c", f"grep -o ' {top}[^ ]*' /proc/self/mountinfo | sort -r | "
                                        "xargs -r -n1 umount -l"], check=False)
            subprocess.run(["rm", "-rf", "--one-file-system", top], check=False)


def test_ps_and_inspect_with_dockerd_stopped(private_dockerd: dict[str, Any]) -> None:
    sock = private_dockerd["sock"]
    dk = ("docker", "-H", f"unix://{sock}")
    image = harness.shellless_image()
    save = subprocess.run(["docker", "save", image], capture_output=True, check=True)
    subprocess.run([*dk, "load"], input=save.stdout, capture_output=True, check=True)
    name = harness.unique_name()
    harness.run(*dk, "run", "-d", "--name", name, "--network", "none", image)
    pid = int(harness.out(*dk, "inspect", "-f", "{{.State.Pid}}", name))
    cid = harness.out(*dk, "inspect", "-f", "{{.Id}}", name).strip()
    gd = json.loads(harness.out(*dk, "inspect", "-f", "{{json .GraphDriver.Data}}", name))

    private_dockerd["stop"]()
    assert subprocess.run([*dk, "ps"], capture_output=True).returncode != 0  # the daemon is gone
    assert harness.pid_alive(pid)  # the container is not (live-restore)

    root = ("--docker-root", private_dockerd["data"])
    rows = json.loads(ctrfs(*root, "ps", "--json").stdout)
    row = by_id(rows, cid)
    assert (row["name"], row["pid"], row["runtime"]) == (name, pid, "docker")
    data = json.loads(ctrfs(*root, "inspect", "--json", name).stdout)
    assert data["id"] == cid
    assert_same_layers(data, gd)
    text = ctrfs(*root, "ps").stdout
    assert name in text and cid[:12] in text
