"""The shared fixtures give what their docstrings promise: every other runtime test builds on them."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import harness
from harness import RunningContainer


def _root(c: RunningContainer) -> Path:
    return Path(f"/proc/{c.pid}/root")


def _cgroup_paths(pid: int) -> set[str]:
    return {line.split(":", 2)[2] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()}


def _root_mount(pid: int) -> list[str]:
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == "/":
            return fields
    raise AssertionError(f"no / mount for pid {pid}")


def _ticks(c: RunningContainer) -> list[str]:
    return (_root(c) / "var/log/app.log").read_text().splitlines()


def _assert_logger_running(c: RunningContainer) -> None:
    first = _ticks(c)
    assert first and first[0] == "tick 1"
    harness.wait_until(lambda: len(_ticks(c)) > len(first), "another tick", timeout=5)
    ticks = _ticks(c)
    assert ticks == [f"tick {n}" for n in range(1, len(ticks) + 1)]


def test_docker_shellless_has_no_shell(docker_shellless: RunningContainer) -> None:
    root = _root(docker_shellless)
    assert sorted(p.name for p in root.iterdir()) == sorted(
        ["app", "etc", "proc", "sys", "dev", "tmp", "var", ".dockerenv"])
    assert not (root / "bin").exists()
    assert "ID=ctrfs-shellless" in (root / "etc/os-release").read_text()
    _assert_logger_running(docker_shellless)
    assert _cgroup_paths(docker_shellless.pid) >= {f"/docker/{docker_shellless.id}"}
    assert _root_mount(docker_shellless.pid)[-3] == "overlay"


def test_docker_busybox_exec(docker_busybox: RunningContainer) -> None:
    res = harness.docker_exec(docker_busybox, "sh", "-c", "mkfifo /tmp/f && ls -l /tmp/f && echo $0")
    assert res.stdout.decode().startswith("p")
    assert (_root(docker_busybox) / "tmp/f").is_fifo()
    assert harness.docker_exec(docker_busybox, "cat", input=b"piped").stdout == b"piped"


def test_docker_multilayer_content(docker_multilayer: RunningContainer) -> None:
    root = _root(docker_multilayer)
    assert (root / "data/a.txt").read_text() == "v2\n"
    assert not (root / "gone.txt").exists()
    assert sorted(os.listdir(root / "olddir")) == ["new"]
    lowerdirs = _root_mount(docker_multilayer.pid)[-1].split("lowerdir=", 1)[1].split(",", 1)[0].split(":")
    # init layer + layer3 + layer2 + busybox, top first; each short link resolves to a layer's diff dir.
    assert len(lowerdirs) == 1 + len(docker_multilayer.info["layers"])
    layer3, layer2 = (Path(os.path.realpath(d)) for d in lowerdirs[1:3])
    assert (layer3 / "data/a.txt").read_text() == "v2\n"
    assert (layer2 / "data/a.txt").read_text() == "v1\n"
    gone = os.lstat(layer3 / "gone.txt")
    assert (gone.st_mode & 0o170000, gone.st_rdev) == (0o020000, 0)  # overlay whiteout: char 0/0
    assert os.getxattr(layer3 / "olddir", "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(layer2 / "olddir")) == ["f1", "f2"]


def test_podman_shellless(podman_shellless: RunningContainer) -> None:
    assert not (_root(podman_shellless) / "bin").exists()
    _assert_logger_running(podman_shellless)
    assert _cgroup_paths(podman_shellless.pid) >= {f"/libpod_parent/libpod-{podman_shellless.id}"}
    assert "/var/lib/containers/storage/overlay/" in _root_mount(podman_shellless.pid)[-1]
    limits = Path(f"/proc/{podman_shellless.pid}/limits").read_text()
    assert "Max open files            1024                 1024" in limits


def test_containerd_cri_shape(containerd_cri: RunningContainer) -> None:
    c = containerd_cri
    assert re.fullmatch(r"[0-9a-f]{64}", c.id), c.id  # a CRI container ID
    bundle = Path(c.info["bundle"])
    assert int((bundle / "init.pid").read_text()) == c.pid
    spec = json.loads((bundle / "config.json").read_text())
    ann = spec["annotations"]
    assert ann[harness.CRI_CONTAINER_TYPE] == "container"
    assert ann[harness.CRI_CONTAINER_NAME] == c.name
    assert ann[harness.CRI_SANDBOX_ID] == c.info["sandbox_id"]
    assert ann[harness.CRI_SANDBOX_NAME] == c.info["pod_name"]
    assert ann[harness.CRI_SANDBOX_NAMESPACE] == c.info["pod_namespace"]
    assert ann[harness.CRI_SANDBOX_UID] == c.info["pod_uid"]
    assert _cgroup_paths(c.pid) >= {f"/kubepods/besteffort/pod{c.info['pod_uid']}/{c.id}"}
    sandbox = c.info["sandbox_pid"]
    assert os.readlink(f"/proc/{c.pid}/ns/net") == os.readlink(f"/proc/{sandbox}/ns/net")
    assert os.readlink(f"/proc/{c.pid}/ns/mnt") != os.readlink(f"/proc/{sandbox}/ns/mnt")
    _assert_logger_running(c)


def test_bare_container(bare_container: RunningContainer) -> None:
    c = bare_container
    root = _root_mount(c.pid)
    assert root[-3] == "overlay" and f"upperdir={c.info['upperdir']}" in root[-1]
    assert os.readlink(f"/proc/{c.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    # like a runtime's shim, the parent stays in the host's namespaces
    assert os.readlink(f"/proc/{c.info['unshare_pid']}/ns/mnt") == os.readlink("/proc/self/ns/mnt")
    assert os.readlink(f"/proc/{c.pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    status = Path(f"/proc/{c.pid}/status").read_text()
    assert f"NSpid:\t{c.pid}\t1\n" in status
    _assert_logger_running(c)
    # the container's writes land in the upper dir on the host, although nothing is mounted there
    assert (Path(c.info["upperdir"]) / "var/log/app.log").read_text().startswith("tick 1\n")
    assert not os.listdir(c.info["merged"])
