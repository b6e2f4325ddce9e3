"""Layer naming from runtime state laid out under tmp_path (as a host mounted at --host-root)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctrfs.errors import NotFound
from ctrfs.model import Container, RootFS
from ctrfs.overlay.layers import layer_stack
from ctrfs.runtimes.base import ContainerRecord, Roots

CHAIN = "c" * 64
CACHE = "a" * 64
MOUNT = "m" * 64
DIFF_ID = "sha256:" + "d" * 64


def container(roots: Roots, rec: ContainerRecord, rootfs: RootFS | None = None,
              pid: int | None = None) -> Container:
    return Container(id=rec.id, runtime=rec.runtime, name=rec.name, image=None, state=rec.state,
                     pid=pid, start_time=None, pids=[], namespaces={}, cgroup=None, pod=None,
                     rootfs=rootfs, record=rec, roots=roots)


def docker_tree(host: Path) -> Roots:
    od = host / "var/lib/docker/overlay2"
    for d in (f"{MOUNT}/diff", f"{MOUNT}-init/diff", f"{CACHE}/diff"):
        (od / d).mkdir(parents=True)
    (od / f"{CACHE}/diff/file").write_bytes(b"12345")
    (od / f"{CACHE}/diff/hard").hardlink_to(od / f"{CACHE}/diff/file")
    db = host / "var/lib/docker/image/overlay2/layerdb/sha256" / CHAIN
    db.mkdir(parents=True)
    (db / "cache-id").write_text(CACHE)
    (db / "diff").write_text(DIFF_ID)
    return Roots.under(str(host))


def test_docker_layers_named_from_layerdb(tmp_path: Path) -> None:
    roots = docker_tree(tmp_path)
    od = "/var/lib/docker/overlay2"
    rec = ContainerRecord(id="x" * 64, runtime="docker", name="web", state="exited",
                          upperdir=f"{od}/{MOUNT}/diff", workdir=f"{od}/{MOUNT}/work",
                          lowerdirs=[f"{od}/{MOUNT}-init/diff", f"{od}/{CACHE}/diff"])
    stack = layer_stack(container(roots, rec), counts=True)
    assert stack.origin == "runtime-state"
    roles = [(la.role, la.id, la.diff_id, la.chain_id) for la in stack.layers]
    assert roles == [("upper", MOUNT, None, None), ("init", MOUNT + "-init", None, None),
                     ("image", CACHE, DIFF_ID, "sha256:" + CHAIN)]
    image = stack.layers[2]
    assert (image.files, image.size, image.label) == (2, 5, "d" * 12)  # hardlink counted once


def test_storage_layers_named_from_layers_json(tmp_path: Path) -> None:
    roots = Roots.under(str(tmp_path))
    st = tmp_path / "var/lib/containers/storage"
    (st / "overlay/L1/diff").mkdir(parents=True)
    (st / "overlay/U1/diff").mkdir(parents=True)
    (st / "overlay-layers").mkdir()
    (st / "overlay-layers/layers.json").write_text(json.dumps([
        {"id": "L1", "names": ["base"], "diff-digest": DIFF_ID},
        {"id": "U1", "names": ["web-layer"], "parent": "L1"}]))
    base = "/var/lib/containers/storage/overlay"
    rec = ContainerRecord(id="y" * 64, runtime="podman", state="exited",
                          upperdir=f"{base}/U1/diff", lowerdirs=[f"{base}/L1/diff"])
    stack = layer_stack(container(roots, rec))
    assert [(la.runtime, la.id, la.diff_id, la.names) for la in stack.layers] == [
        ("storage", "U1", None, ["web-layer"]), ("storage", "L1", DIFF_ID, ["base"])]


def test_non_overlay_root_is_reported_as_is(tmp_path: Path) -> None:
    rec = ContainerRecord(id="z" * 64, runtime="runc", state="running")
    fs = RootFS(fstype="ext4", source="/dev/vdb1", merged="/srv/rootfs")
    stack = layer_stack(container(Roots(), rec, fs, pid=1))
    assert (stack.is_overlay, stack.fstype, stack.layers, stack.merged) == (
        False, "ext4", [], "/srv/rootfs")
    assert stack.to_dict()["upperdir"] is None


def test_no_rootfs_known(tmp_path: Path) -> None:
    rec = ContainerRecord(id="z" * 64, runtime="docker", state="exited")
    with pytest.raises(NotFound, match="no root filesystem"):
        layer_stack(container(Roots(), rec))
