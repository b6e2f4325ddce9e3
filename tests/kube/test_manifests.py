"""The plugin's Kubernetes objects (agent DaemonSet and friends, the ephemeral node pod) pass
``kubernetes-validate --strict`` (no field the API would not know) for every Kubernetes version
from 1.27 to the newest the installed kubernetes-validate ships; deploy/ctrfs-agent.yaml is what
the package generates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import kubernetes_validate.utils as kv

from ctrfs.kube import manifests

REPO = Path(__file__).resolve().parents[2]
VALIDATE = Path(sys.executable).parent / "kubernetes-validate"


def versions() -> list[str]:
    out = []
    for v in kv.all_versions():
        major, minor = (int(x) for x in v.split(".")[:2])
        if (major, minor) >= (1, 27):
            out.append(f"{major}.{minor}.0")
    return sorted(set(out), key=lambda v: tuple(int(x) for x in v.split(".")))


def test_versions_cover_1_27_to_newest() -> None:
    vs = versions()
    assert vs[0] == "1.27.0"
    assert len(vs) >= 10  # 1.27 .. 1.36 at least
    newest = max(kv.all_versions(), key=lambda v: tuple(int(x) for x in v.split(".")[:2]))
    assert vs[-1].split(".")[:2] == newest.split(".")[:2]


def test_repo_manifest_is_the_generated_one() -> None:
    assert (REPO / "deploy" / "ctrfs-agent.yaml").read_text() == manifests.agent_yaml()


def test_capabilities_are_the_listed_ones() -> None:
    text = (REPO / "deploy" / "CAPABILITIES").read_text()
    listed = [ln.split()[0] for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert list(manifests.CAPABILITIES) == listed
    ds = manifests.agent_objects()[-1]
    (ctr,) = ds["spec"]["template"]["spec"]["containers"]
    assert ctr["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": listed}


def test_manifests_validate_strict(tmp_path: Path) -> None:
    node_pod = tmp_path / "node-pod.json"
    node_pod.write_text(json.dumps(manifests.node_pod("ctrfs-node-0a1b2c3d", "node-1", namespace="default")))
    privileged = tmp_path / "privileged.yaml"
    privileged.write_text(manifests.agent_yaml(privileged=True))
    files = [str(REPO / "deploy" / "ctrfs-agent.yaml"), str(privileged), str(node_pod)]
    for v in versions():
        p = subprocess.run([str(VALIDATE), "--strict", "-k", v, *files], capture_output=True, text=True,
                           check=False)
        assert p.returncode == 0, f"{v}: {p.stdout}{p.stderr}"
        passed = [ln for ln in p.stdout.splitlines() if " passed for resource " in ln]
        # namespace, service account, role, daemonset (twice), pod
        assert len(passed) == 9, p.stdout
