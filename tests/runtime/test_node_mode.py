"""Node mode: ctrfs run from a pod-shaped container equals ctrfs run on the host.

The pod (tests/nodepod.py) is what the `kubectl ctrfs` node pod is: the host's PID namespace, the
host's ``/`` read-only at ``/host``, a read-only root filesystem, no network, ``--cap-drop ALL`` plus
exactly deploy/CAPABILITIES, and ``python3 -I ctrfs.pyz --host-root /host``. The host side is the
installed ctrfs, with no options. Both look at the same real containers (Docker, podman, a CRI-shaped
containerd pod, a TLS server traced with bpftrace).

deploy/CAPABILITIES is checked from both sides: with the listed capabilities every command agrees,
and without any one of them some command, named in its test, no longer does.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_probes import TLSContainer, _openssl_tree, _start, _stop, bpftrace_pids, need

import harness
import nodepod
from harness import RunningContainer

pytestmark = [pytest.mark.docker, pytest.mark.root]

RUNTIMES = ["docker_shellless", "podman_shellless", "containerd_cri"]
SECRET = b"only uid 1000 may read this\n"
# A container whose upper layer holds what only some capabilities reveal: a file only its owner
# (uid 1000) may read, and an opaque directory (/var removed and made again: overlayfs marks it
# with the trusted.overlay.opaque xattr, which only CAP_SYS_ADMIN can read).
MARKS_SCRIPT = ("mkdir -p /srv && printf 'only uid 1000 may read this\\n' > /srv/secret"
                " && chown 1000:1000 /srv/secret && chmod 600 /srv/secret"
                " && rm -rf /var && mkdir /var && echo new > /var/only && exec sleep 100000")


def host_ctrfs(*argv: str) -> bytes:
    return harness.ctrfs(*argv, text=False).stdout  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return nodepod.build_pyz(tmp_path_factory.mktemp("pyz"))


@pytest.fixture(scope="module")
def pod(pyz: Path) -> Iterator[nodepod.Pod]:
    harness.sweep_stale()
    with nodepod.node_pod(pyz) as p:
        yield p


@pytest.fixture(scope="module")
def marks() -> Iterator[RunningContainer]:
    harness.sweep_stale()
    with harness.run_docker(harness.busybox_image(), cmd=("sh", "-c", MARKS_SCRIPT)) as c:
        harness.wait_until(lambda: os.path.exists(f"/proc/{c.pid}/root/var/only"), "marks container")
        yield c


def _json(data: bytes) -> Any:
    return json.loads(data)


def test_pod_is_shaped_as_declared(pod: nodepod.Pod) -> None:
    # what the pod's process really holds: the listed capabilities, nothing more
    status = pod.exec("cat", "/proc/self/status", check=True).stdout.decode()
    eff = int(re.search(r"^CapEff:\s*([0-9a-f]+)$", status, re.M).group(1), 16)  # type: ignore[union-attr]
    bits = {"SYS_PTRACE": 19, "DAC_READ_SEARCH": 2, "SYS_ADMIN": 21, "CHECKPOINT_RESTORE": 40}
    assert eff == sum(1 << bits[c] for c in nodepod.capabilities())
    assert os.readlink(f"/proc/{pod.pid}/ns/pid") == os.readlink("/proc/self/ns/pid")
    # nothing to write to: the pyz starts without unpacking anything
    assert pod.exec("touch", "/probe-write").returncode != 0
    assert pod.exec("touch", "/host/tmp/probe-write").returncode != 0


@pytest.mark.parametrize("fixture", RUNTIMES)
def test_ps_ids_and_host_pids(fixture: str, pod: nodepod.Pod, request: pytest.FixtureRequest) -> None:
    c: RunningContainer = request.getfixturevalue(fixture)
    host = {r["id"]: r for r in _json(host_ctrfs("ps", "--json"))}
    in_pod = {r["id"]: r for r in _json(pod.ctrfs("ps", "--json").stdout)}
    assert in_pod[c.id] == host[c.id]
    assert in_pod[c.id]["pid"] == c.pid  # a host PID, as the host numbers it
    if fixture == "containerd_cri":
        assert in_pod[c.id]["pod"]["name"] == c.info["pod_name"]
    # the same containers overall (other sessions' containers may come, go or restart between the
    # two runs, so only this session's are compared field by field)
    assert len(set(host) ^ set(in_pod)) <= 2


@pytest.mark.parametrize("fixture", RUNTIMES)
def test_cat_bytes(fixture: str, pod: nodepod.Pod, request: pytest.FixtureRequest) -> None:
    c: RunningContainer = request.getfixturevalue(fixture)
    for path in ("/etc/os-release", "/app"):
        got = pod.ctrfs("cat", f"{c.target}:{path}").stdout
        assert got == host_ctrfs("cat", f"{c.target}:{path}")
        with open(f"/proc/{c.pid}/root{path}", "rb") as f:
            assert got == f.read()


@pytest.mark.parametrize("fixture", [*RUNTIMES, "marks"])
def test_diff(fixture: str, pod: nodepod.Pod, request: pytest.FixtureRequest) -> None:
    c: RunningContainer = request.getfixturevalue(fixture)
    res = pod.ctrfs("diff", c.target)
    assert res.stdout == host_ctrfs("diff", c.target)
    assert res.stderr == b""  # no warning: the pod may read the opaque marks
    got = _json(pod.ctrfs("diff", "--json", c.target).stdout)
    assert _stable_diff(got) == _stable_diff(_json(host_ctrfs("diff", "--json", c.target)))
    if fixture == "marks":
        text = host_ctrfs("diff", c.target).decode()
        assert "A /var/only" in text and "A /srv/secret" in text


def _stable_diff(entries: Any) -> Any:
    # the logger appends to its log between the two runs: that one size may differ
    for e in entries:
        if e["path"] == "/var/log/app.log":
            e.pop("size")
    return entries


def _stable_layers(doc: Any) -> Any:
    # the upper layer of a running logger grows between the two runs: its size and file count
    # are the container's business, every other field must agree
    for la in doc["layers"]:
        if la["role"] == "upper":
            for key in ("size", "files", "dirs"):
                la.pop(key, None)
    return doc


@pytest.mark.parametrize("fixture", [*RUNTIMES, "marks"])
def test_layers(fixture: str, pod: nodepod.Pod, request: pytest.FixtureRequest) -> None:
    c: RunningContainer = request.getfixturevalue(fixture)
    got = _json(pod.ctrfs("layers", "--json", c.target).stdout)
    want = _json(host_ctrfs("layers", "--json", c.target))
    assert _stable_layers(got) == _stable_layers(want)
    # directories as the host names them (no /host prefix), and they exist there
    for la in want["layers"]:
        assert not la["path"].startswith(nodepod.HOST_ROOT + "/") and os.path.isdir(la["path"])


@pytest.mark.parametrize("fixture", RUNTIMES)
def test_mounts(fixture: str, pod: nodepod.Pod, request: pytest.FixtureRequest) -> None:
    c: RunningContainer = request.getfixturevalue(fixture)
    assert pod.ctrfs("mounts", c.target).stdout == host_ctrfs("mounts", c.target)
    got = _json(pod.ctrfs("mounts", "--json", c.target).stdout)
    assert got == _json(host_ctrfs("mounts", "--json", c.target))


def test_mounts_volume_source_is_the_host_path(pod: nodepod.Pod, tmp_path: Path) -> None:
    src = tmp_path / "vol"
    src.mkdir()
    with harness.run_docker(harness.busybox_image(), harness.NAME_PREFIX, "-v", f"{src}:/data:ro",
                            cmd=harness.BUSYBOX_CMD) as c:
        got = _json(pod.ctrfs("mounts", "--json", c.target).stdout)
        assert got == _json(host_ctrfs("mounts", "--json", c.target))
        (data,) = [m for m in got if m["mount_point"] == "/data"]
        assert data["host_path"] == str(src)


def _objects(doc: Any) -> dict[str, dict[str, Any]]:
    return {o["path"]: o for o in doc["objects"]}


@pytest.mark.parametrize("fixture", RUNTIMES)
def test_libs_build_ids_and_host_paths(fixture: str, pod: nodepod.Pod,
                                       request: pytest.FixtureRequest) -> None:
    c: RunningContainer = request.getfixturevalue(fixture)
    got = _objects(_json(pod.ctrfs("libs", "--json", c.target).stdout))
    want = _objects(_json(host_ctrfs("libs", "--json", c.target)))
    assert got.keys() == want.keys() == {"/app"}
    for path, o in got.items():
        w = want[path]
        for key in ("build_id", "host_path", "host_path_via", "map_files_path", "identity", "layer", "pids"):
            if key == "layer":
                ol, wl = o["layer"], w["layer"]
                assert (ol["dir"], ol["verified"]) == (wl["dir"], wl["verified"])
                assert o["layer"]["local_dir"] == nodepod.HOST_ROOT + w["layer"]["dir"]
            else:
                assert o[key] == w[key], key
        # the host's name for the file, and the pod's own path to the same file
        assert o["host_path"] == f"/proc/{o['pids'][0]}/root/app"
        assert o["local_path"] == nodepod.HOST_ROOT + o["host_path"]
    assert pod.ctrfs("libs", c.target).stdout == host_ctrfs("libs", c.target)


# -- TLS: libssl found from the pod, and a uprobe attached on the host to what the pod printed -------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSContainer]:
    harness.sweep_stale()
    root = str(tmp_path_factory.mktemp("openssl-rootfs"))
    _openssl_tree(root)
    image = harness.build_image_from_dir(root, f"{harness.NAME_PREFIX}node-openssl:latest")
    c = _start(image)
    try:
        yield c
    finally:
        _stop(c)


def test_libs_libssl(tls: TLSContainer, pod: nodepod.Pod) -> None:
    got = _objects(_json(pod.ctrfs("libs", tls.name, "--match", "libssl", "--json").stdout))
    want = _objects(_json(host_ctrfs("libs", tls.name, "--match", "libssl", "--json")))
    assert got.keys() == want.keys() and any(p.endswith("/libssl.so.3") for p in got)
    for path, o in got.items():
        w = want[path]
        assert (o["build_id"], o["host_path"], o["version"]) == (w["build_id"], w["host_path"], w["version"])
        assert o["layer"]["dir"] == want[path]["layer"]["dir"]


def test_uprobe_on_the_path_the_pod_printed_fires(tls: TLSContainer, pod: nodepod.Pod) -> None:
    need("bpftrace", "bpftrace")
    printed = pod.ctrfs("probe", tls.name, "--lib", "libssl", "--symbol", "SSL_write").stdout.decode()
    (line,) = printed.split()
    assert line == host_ctrfs("probe", tls.name, "--lib", "libssl", "--symbol", "SSL_write").decode().strip()
    assert re.fullmatch(r"uprobe:/proc/\d+/root/\S+/libssl\.so\.3:SSL_write", line), line
    fired = bpftrace_pids(line)  # attached on the host, to exactly what the pod printed
    assert tls.client_pid in fired and set(fired) <= tls.pids()
    pinned = pod.ctrfs("probe", tls.name, "--lib", "libssl", "--symbol", "SSL_write", "--pin").stdout.decode()
    assert re.fullmatch(r"uprobe:/proc/\d+/map_files/[0-9a-f]+-[0-9a-f]+:SSL_write\n", pinned), pinned
    assert set(bpftrace_pids(pinned.strip())) <= tls.pids()
    doc = _json(pod.ctrfs("probe", tls.name, "--lib", "libssl", "--symbol", "SSL_write",
                          "--format", "json").stdout)
    (t,) = doc["probes"]
    # a tracer in the same pod attaches to its own view of the same file
    assert t["local_path"] == nodepod.HOST_ROOT + t["host_path"]
    assert os.path.samestat(os.stat(t["host_path"]), os.stat(f"/proc/{tls.client_pid}/root{t['path']}"))


# -- every other command, byte for byte -------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ("ls", "-la", "{t}:/etc"), ("stat", "{t}:/etc/passwd"), ("find", "{t}:/", "--xdev", "--type", "f"),
    ("grep", "-r", "-l", "root", "{t}:/etc"), ("tail", "-n", "1", "{t}:/etc/passwd"), ("du", "-s", "{t}"),
    ("which", "{t}:/var/only"), ("inspect", "{t}"), ("cp", "{t}:/etc", "-"), ("export", "{t}"),
    ("cat", "{t}:/srv/secret"),
], ids=lambda a: a[0])
def test_command_agrees(argv: tuple[str, ...], pod: nodepod.Pod, marks: RunningContainer) -> None:
    args = [a.format(t=marks.target) for a in argv]
    got = pod.ctrfs(*args).stdout
    assert got == host_ctrfs(*args)
    if argv[0] == "cat":
        assert got == SECRET


def test_inspect_json_paths_are_the_hosts(pod: nodepod.Pod, containerd_cri: RunningContainer) -> None:
    got = _json(pod.ctrfs("inspect", "--json", containerd_cri.target).stdout)
    want = _json(host_ctrfs("inspect", "--json", containerd_cri.target))
    assert got["host_root"] == nodepod.HOST_ROOT and want["host_root"] == "/"
    got.pop("host_root"), want.pop("host_root")
    assert got == want
    assert got["bundle"] == containerd_cri.info["bundle"]


# -- each listed capability is needed ---------------------------------------------------------------

# What breaks without each capability: (command, why).
WITHOUT = {
    "SYS_PTRACE": ("cat", "{t}:/var/only"),  # /proc/<pid>/root of a process with caps we lack
    "DAC_READ_SEARCH": ("cat", "{t}:/srv/secret"),  # a file only its owner may read
    "SYS_ADMIN": ("diff", "{t}"),  # the opaque /var goes unseen: trusted.* xattrs need SYS_ADMIN
}


def test_every_capability_has_a_reason() -> None:
    assert set(nodepod.capabilities()) == set(WITHOUT)


@pytest.mark.parametrize("cap", sorted(WITHOUT))
def test_without_capability(cap: str, pyz: Path, marks: RunningContainer) -> None:
    argv = [a.format(t=marks.target) for a in WITHOUT[cap]]
    want = host_ctrfs(*argv)
    caps = [c for c in nodepod.capabilities() if c != cap]
    with contextlib.ExitStack() as stack:
        p = stack.enter_context(nodepod.node_pod(pyz, caps))
        res = p.ctrfs(*argv, check=False)
        assert (res.returncode, res.stdout) != (0, want), f"{' '.join(argv)} agreed without {cap}"
        if cap == "SYS_PTRACE":
            assert res.returncode == 4 and b"permission" in res.stderr.lower()
        if cap == "DAC_READ_SEARCH":
            assert res.returncode == 4
        if cap == "SYS_ADMIN":  # diff still runs, and says what it cannot see
            assert res.returncode == 0 and b"warning: without CAP_SYS_ADMIN" in res.stderr


# -- following a file, and a stopped container ------------------------------------------------------


def test_tail_follow(pod: nodepod.Pod, docker_shellless: RunningContainer) -> None:
    # inotify on the container's file, opened through /host/proc/<pid>/root, from the pod
    res = pod.exec("timeout", "--preserve-status", "-s", "INT", "3",
                   "python3", "-I", f"{nodepod.PYZ_DIR}/ctrfs.pyz", "--host-root", nodepod.HOST_ROOT,
                   "tail", "-n", "0", "-f",
                   f"{docker_shellless.target}:/var/log/app.log")
    assert res.returncode == 130, res.stderr  # stopped by SIGINT, as Ctrl-C does
    lines = res.stdout.decode().splitlines()
    assert lines, "tail -f printed nothing in 3 s from a container that logs every second"
    with open(f"/proc/{docker_shellless.pid}/root/var/log/app.log") as f:
        log = f.read()
    assert all(line in log for line in lines)


@pytest.fixture(scope="module")
def stopped() -> Iterator[str]:
    """A Docker container that changed its files and exited: read from runtime state alone."""
    harness.sweep_stale()
    name = harness.unique_name()
    with harness._cleanup(f"docker container {name}", lambda: harness._rm_container("docker", name)):
        harness.run("docker", "run", "--name", name, "--network", "none", "--label", harness._owner_label(),
                    harness.busybox_image(), "sh", "-c", "echo gone > /data.txt && rm -rf /var && mkdir /var")
        yield name


@pytest.mark.parametrize("argv", [
    ("ps", "-a", "--json"), ("cat", "{t}:/data.txt"), ("ls", "-la", "{t}:/"), ("diff", "{t}"),
    ("layers", "--json", "{t}"), ("which", "{t}:/var"), ("export", "{t}"),
], ids=lambda a: a[0])
def test_stopped_container(argv: tuple[str, ...], pod: nodepod.Pod, stopped: str) -> None:
    args = [a.format(t=stopped) for a in argv]
    got, want = pod.ctrfs(*args).stdout, host_ctrfs(*args)
    if argv[0] == "ps":  # the pod itself runs a process more in its own run
        mine = [r for r in _json(got) if r["name"] == stopped]
        assert mine and mine[0]["state"] == "exited"
        assert mine == [r for r in _json(want) if r["name"] == stopped]
        return
    assert got == want
    if argv[0] == "cat":
        assert got == b"gone\n"


# -- process pinning from the pod -------------------------------------------------------------------

PINNED = """
import sys
sys.path.insert(0, sys.argv[1])
from ctrfs.access import open_root
from ctrfs.runtimes.base import Roots
from ctrfs.targets import resolve
root = open_root(resolve(sys.argv[2], Roots.under("/host")))
print(root._pidfd >= 0, root.open_file("/etc/os-release").read().decode().splitlines()[0])
"""


def test_pod_pins_processes_by_pidfd(pod: nodepod.Pod, docker_shellless: RunningContainer) -> None:
    # with hostPID the host's /proc under /host numbers PIDs as the pod does: a pidfd pins them
    res = pod.exec("python3", "-I", "-c", PINNED, f"{nodepod.PYZ_DIR}/ctrfs.pyz", docker_shellless.target)
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode().split(" ", 1) == ["True", 'NAME="ctrfs test ctrfs-shellless"\n']


def test_without_host_pid_namespace_no_pidfd(pyz: Path, docker_shellless: RunningContainer) -> None:
    # /host/proc (the host's procfs, reached through the bind of /) still reads every container,
    # but its PIDs are not this pod's: no pidfd, the start time alone pins the process
    with nodepod.node_pod(pyz, host_pid=False) as p:
        assert os.readlink(f"/proc/{p.pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
        res = p.exec("python3", "-I", "-c", PINNED, f"{nodepod.PYZ_DIR}/ctrfs.pyz", docker_shellless.target)
        assert res.returncode == 0, res.stderr
        assert res.stdout.decode().startswith("False ")
        assert p.ctrfs("cat", f"{docker_shellless.target}:/etc/os-release").stdout == \
            host_ctrfs("cat", f"{docker_shellless.target}:/etc/os-release")
