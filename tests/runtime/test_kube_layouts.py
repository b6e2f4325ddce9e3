"""Kubernetes node layouts are found with no flags: a real standalone containerd with each
distribution's dirs.

A second containerd runs with, e.g. for k3s, ``--root /var/lib/rancher/k3s/agent/containerd --state
/run/k3s/containerd`` (tests/kubelayouts.py: k3s, RKE2, microk8s, k0s, one after the other) and
holds a pod shaped as containerd's CRI plugin shapes one (harness.containerd_cri: sandbox + app
container, CRI annotations, kubepods cgroups). ``ctrfs ps`` and ``ctrfs inspect k8s://NS/POD/CTR``,
given no root option, must find it there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

import harness
import kubelayouts
from harness import RunningContainer

pytestmark = [pytest.mark.containerd, pytest.mark.root]


@pytest.fixture(scope="module", params=kubelayouts.LAYOUTS, ids=lambda la: la.name)
def layout_pod(request: pytest.FixtureRequest) -> Iterator[tuple[kubelayouts.Layout, RunningContainer]]:
    harness.sweep_stale()
    with kubelayouts.standalone_containerd(request.param) as layout, \
            harness.containerd_cri(pod_namespace=f"ctrfs-{layout.name}", address=layout.address,
                                   state=layout.state) as c:
        yield layout, c


@pytest.fixture
def pod(layout_pod: tuple[kubelayouts.Layout, RunningContainer]) -> RunningContainer:
    return layout_pod[1]


@pytest.fixture
def layout(layout_pod: tuple[kubelayouts.Layout, RunningContainer]) -> kubelayouts.Layout:
    return layout_pod[0]


def test_layout_dirs_are_the_distributions(pod: RunningContainer, layout: kubelayouts.Layout) -> None:
    bundle = pod.info["bundle"]
    assert bundle.startswith(f"{layout.state}/io.containerd.runtime.v2.task/k8s.io/")
    # the task's rootfs is an overlay of snapshots under the layout's root, not the system containerd's
    with open(f"/proc/{pod.pid}/mountinfo") as f:
        root_line = next(line for line in f if line.split()[4] == "/")
    assert f"{layout.root}/io.containerd.snapshotter.v1.overlayfs/snapshots/" in root_line


def test_ps_finds_the_pod_with_no_flags(pod: RunningContainer, layout: kubelayouts.Layout) -> None:
    rows = {r["id"]: r for r in json.loads(harness.ctrfs("ps", "--json").stdout)}
    row = rows[pod.id]
    assert row["runtime"] == "containerd"
    assert row["runtime_namespace"] == "k8s.io"
    assert row["name"] == pod.info["container_name"]
    assert row["pid"] == pod.pid
    assert row["pod"]["namespace"] == f"ctrfs-{layout.name}"
    assert row["pod"]["name"] == pod.info["pod_name"]
    assert row["pod"]["uid"] == pod.info["pod_uid"]
    assert row["pod"]["container"] == pod.info["container_name"]
    assert row["image"] == pod.image
    sandbox = rows[pod.info["sandbox_id"]]
    assert sandbox["pod"]["is_sandbox"] is True
    assert sandbox["pod"]["name"] == pod.info["pod_name"]


def test_k8s_target_resolves(pod: RunningContainer, layout: kubelayouts.Layout) -> None:
    info = json.loads(harness.ctrfs("inspect", pod.info["k8s_target"], "--json").stdout)
    assert info["id"] == pod.id
    assert info["pid"] == pod.pid
    assert info["bundle"] == pod.info["bundle"]
    assert info["pod"]["container"] == "app"
    layers = info["rootfs"]["lowerdirs"] + [info["rootfs"]["upperdir"]]
    assert all(d.startswith(f"{layout.root}/") for d in layers), layers
    assert any(la["names"] for la in _json_layers(pod)), "snapshot keys read from the layout's bolt db"


def _json_layers(c: RunningContainer) -> list[dict[str, object]]:
    return json.loads(harness.ctrfs("layers", "--json", "--no-count", c.info["k8s_target"]).stdout)["layers"]


def test_pod_read_through_ctrfs(pod: RunningContainer) -> None:
    # the file the logger writes, read with the k8s:// target, equals the container's own bytes
    want = open(f"/proc/{pod.pid}/root/etc/os-release", "rb").read()
    got = harness.ctrfs("cat", f"{pod.info['k8s_target']}:/etc/os-release", text=False).stdout
    assert got == want
