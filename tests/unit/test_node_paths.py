"""Pure parts of node mode: where ctrfs looks below --host-root, and which program the pyz runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ctrfs._launcher import CTRFS, KUBECTL_CTRFS, choose
from ctrfs.rootfs.proc import own_pid_namespace
from ctrfs.runtimes.base import Roots


def test_containerd_state_dirs_of_every_kubernetes_layout() -> None:
    assert Roots().containerd_runs == (
        "/run/containerd", "/run/k3s/containerd", "/var/snap/microk8s/common/run/containerd",
        "/run/k0s/containerd")
    assert set(Roots().containerd_roots) == {
        "/var/lib/containerd", "/var/lib/rancher/k3s/agent/containerd",
        "/var/lib/rancher/rke2/agent/containerd", "/var/snap/microk8s/common/var/lib/containerd",
        "/var/lib/k0s/containerd"}


def test_layouts_below_host_root_and_back() -> None:
    r = Roots.under("/host")
    assert r.containerd_runs[0] == "/host/run/containerd"
    assert "/host/run/k3s/containerd" in r.containerd_runs
    assert all(p.startswith("/host/") for p in (*r.containerd_runs, *r.containerd_roots))
    for p in ("/proc/12/root/usr/lib/libssl.so.3", "/var/lib/docker/overlay2/x/diff"):
        assert r.on_host(r.host_path(p)) == p
    assert r.on_host("/hostile/x") == "/hostile/x"  # a sibling of the host root is not below it
    assert Roots().on_host("/proc/1/root") == "/proc/1/root"


def test_an_explicit_containerd_state_comes_first_and_the_layouts_stay() -> None:
    r = Roots(containerd_run="/srv/containerd-state")
    assert r.containerd_runs[0] == "/srv/containerd-state" and "/run/k3s/containerd" in r.containerd_runs


@pytest.mark.parametrize(("argv0", "args", "want"), [
    ("dist/ctrfs.pyz", ["ps"], (CTRFS, ["ps"])),
    ("/usr/local/bin/ctrfs", ["ls", "web:/"], (CTRFS, ["ls", "web:/"])),
    ("/usr/local/bin/kubectl-ctrfs", ["ls", "pod:/"], (KUBECTL_CTRFS, ["ls", "pod:/"])),
    ("kubectl-ctrfs.pyz", [], (KUBECTL_CTRFS, [])),
    ("ctrfs.pyz", ["kubectl-ctrfs", "-n", "x", "ps"], (KUBECTL_CTRFS, ["-n", "x", "ps"])),
    ("ctrfs.pyz", ["ctrfs", "--version"], (CTRFS, ["--version"])),
    ("ctrfs.pyz", ["cat", "kubectl-ctrfs:/x"], (CTRFS, ["cat", "kubectl-ctrfs:/x"])),
])
def test_launcher_dispatch(argv0: str, args: list[str], want: tuple[str, list[str]]) -> None:
    assert choose(argv0, args) == want


def _fake_proc(tmp_path: Path, nspid: str | None) -> str:
    (tmp_path / "self").mkdir(parents=True)
    lines = "Name:\tpython3\n" + (f"NSpid:\t{nspid}\n" if nspid is not None else "")
    (tmp_path / "self" / "status").write_text(lines)
    return str(tmp_path)


def test_own_pid_namespace(tmp_path: Path) -> None:
    assert own_pid_namespace("/proc")
    me = str(os.getpid())
    assert own_pid_namespace(_fake_proc(tmp_path / "same", me))
    assert not own_pid_namespace(_fake_proc(tmp_path / "parent", f"4242\t{me}"))  # an ancestor's procfs
    assert not own_pid_namespace(_fake_proc(tmp_path / "old", None))  # no NSpid (Linux < 4.1)
    assert not own_pid_namespace(str(tmp_path / "missing"))  # a procfs we are not in: no self
