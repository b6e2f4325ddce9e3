"""Kubernetes node layouts are found with no flags: a real standalone containerd with k3s's dirs.

A second containerd runs with ``--root /var/lib/rancher/k3s/agent/containerd --state
/run/k3s/containerd`` (tests/kubelayouts.py) and holds a pod shaped as containerd's CRI plugin
shapes one (harness.containerd_cri: sandbox + app container, CRI annotations, kubepods cgroups).
``ctrfs ps`` and ``ctrfs inspect k8s://NS/POD/CTR``, given no root option, must find it there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

import harness
import kubelayouts
from harness import RunningContainer

pytestmark = [pytest.mark.containerd, pytest.mark.root]


@pytest.fixture(scope="module")
def k3s_pod() -> Iterator[RunningContainer]:
    harness.sweep_stale()
    with kubelayouts.standalone_containerd(kubelayouts.K3S) as layout, \
            harness.containerd_cri(pod_namespace="ctrfs-k3s", address=layout.address,
                                   state=layout.state) as c:
        yield c


def test_k3s_layout_dirs_are_the_ones_k3s_uses(k3s_pod: RunningContainer) -> None:
    bundle = k3s_pod.info["bundle"]
    assert bundle.startswith("/run/k3s/containerd/io.containerd.runtime.v2.task/k8s.io/")
    # the task's rootfs is an overlay of snapshots under k3s's root, not the system containerd's
    with open(f"/proc/{k3s_pod.pid}/mountinfo") as f:
        root_line = next(line for line in f if line.split()[4] == "/")
    snapshots = "/var/lib/rancher/k3s/agent/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/"
    assert snapshots in root_line


def test_ps_finds_k3s_pod_with_no_flags(k3s_pod: RunningContainer) -> None:
    rows = {r["id"]: r for r in json.loads(harness.ctrfs("ps", "--json").stdout)}
    row = rows[k3s_pod.id]
    assert row["runtime"] == "containerd"
    assert row["runtime_namespace"] == "k8s.io"
    assert row["name"] == k3s_pod.info["container_name"]
    assert row["pid"] == k3s_pod.pid
    assert row["pod"]["namespace"] == "ctrfs-k3s"
    assert row["pod"]["name"] == k3s_pod.info["pod_name"]
    assert row["pod"]["uid"] == k3s_pod.info["pod_uid"]
    assert row["pod"]["container"] == k3s_pod.info["container_name"]
    assert row["image"] == k3s_pod.image
    sandbox = rows[k3s_pod.info["sandbox_id"]]
    assert sandbox["pod"]["is_sandbox"] is True
    assert sandbox["pod"]["name"] == k3s_pod.info["pod_name"]


def test_k8s_target_resolves_in_k3s_containerd(k3s_pod: RunningContainer) -> None:
    info = json.loads(harness.ctrfs("inspect", k3s_pod.info["k8s_target"], "--json").stdout)
    assert info["id"] == k3s_pod.id
    assert info["pid"] == k3s_pod.pid
    assert info["bundle"] == k3s_pod.info["bundle"]
    assert info["pod"]["container"] == "app"
    layers = info["rootfs"]["lowerdirs"] + [info["rootfs"]["upperdir"]]
    assert all(d.startswith("/var/lib/rancher/k3s/agent/containerd/") for d in layers), layers


def test_k3s_pod_read_through_ctrfs(k3s_pod: RunningContainer) -> None:
    # the file the logger writes, read with the k8s:// target, equals the container's own bytes
    want = open(f"/proc/{k3s_pod.pid}/root/etc/os-release", "rb").read()
    got = harness.ctrfs("cat", f"{k3s_pod.info['k8s_target']}:/etc/os-release", text=False).stdout
    assert got == want
