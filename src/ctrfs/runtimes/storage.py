"""containers/storage: podman and CRI-O, from ``<driver>-containers/containers.json`` and userdata.

Root's store and every user's rootless store (runtimes/stores.py), each driver present
(``overlay``, ``vfs``).

``containers.json`` lists id, names, image, layer and a JSON ``metadata`` string. The run root's
``overlay-containers/<id>/userdata/pidfile`` holds the container's host PID while it runs, and
the graph root's ``userdata/config.json`` is its OCI spec (annotations). CRI-O containers carry
``pod-name``/``pod-id`` in metadata and Kubernetes annotations.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterator

from ctrfs.runtimes.base import (
    ContainerRecord,
    Roots,
    image_from_annotations,
    pod_from_annotations,
    read_int,
    read_json,
)
from ctrfs.runtimes.overlaydirs import layer_dirs
from ctrfs.runtimes.stores import VALID_ID, Store, storage_stores

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def discover(roots: Roots, known: Collection[str] = ()) -> Iterator[ContainerRecord]:
    for store in storage_stores(roots):
        yield from _discover_store(store, roots)


def _discover_store(store: Store, roots: Roots) -> Iterator[ContainerRecord]:
    cdir = os.path.join(store.graphroot, f"{store.driver}-containers")
    listing = read_json(os.path.join(cdir, "containers.json"))
    if not isinstance(listing, list):
        return
    host_overlay = os.path.join(roots.on_host(store.graphroot), store.driver)
    rundir = os.path.join(store.runroot, f"{store.driver}-containers")
    vfs_layers: dict[str, dict[str, Any]] | None = None
    for item in listing:
        if not isinstance(item, dict) or not VALID_ID.match(str(item.get("id"))):
            continue
        cid = item["id"]
        try:
            meta = json.loads(item.get("metadata") or "{}")
        except ValueError:
            meta = {}
        if not isinstance(meta, dict):
            meta = {}
        spec = read_json(os.path.join(cdir, cid, "userdata", "config.json"))
        ann = dict((spec or {}).get("annotations") or {}) if isinstance(spec, dict) else {}
        is_crio = "pod-name" in meta or "io.kubernetes.cri-o.ContainerType" in ann
        names = item.get("names") or []
        pid = read_int(os.path.join(rundir, cid, "userdata", "pidfile"))
        rec = ContainerRecord(
            id=cid,
            runtime="cri-o" if is_crio else "podman",
            name=meta.get("name") or (names[0] if names else None),
            image=meta.get("image-name") or image_from_annotations(ann),
            image_id=item.get("image"),
            state="unknown",
            pid=pid,
            pod=pod_from_annotations(ann),
            created=item.get("created"),
            annotations=ann,
            sources=[os.path.join(cdir, "containers.json")],
        )
        rec.extra.update(driver=store.driver, user=store.user, uid=store.uid)
        if store.rootless:
            rec.extra.update(uid_map=store.uid_map, gid_map=store.gid_map)
        layer = item.get("layer")
        if isinstance(layer, str) and VALID_ID.match(layer):
            if store.driver == "vfs":
                # A vfs layer is a full copy of its parent plus the container's writes: the
                # parent is what `podman diff` compares it with (containers/storage NaiveDiff).
                rec.rootfs = os.path.join(host_overlay, "dir", layer)
                if vfs_layers is None:
                    vfs_layers = layers_by_id(store.graphroot, "vfs")
                parent = (vfs_layers.get(layer) or {}).get("parent")
                if isinstance(parent, str) and VALID_ID.match(parent):
                    rec.extra["vfs_parent"] = os.path.join(host_overlay, "dir", parent)
            else:
                up, work, lowers, merged = layer_dirs(host_overlay, layer, roots)
                rec.upperdir, rec.workdir, rec.lowerdirs, rec.mergeddir = up, work, lowers, merged
                rec.layer_ids = [layer]
        yield rec


def layers_by_id(graphroot: str, driver: str = "overlay") -> dict[str, dict[str, Any]]:
    """A store's layers.json by layer id (``graphroot`` as this process opens it)."""
    data = read_json(os.path.join(graphroot, f"{driver}-layers", "layers.json"))
    if not isinstance(data, list):
        return {}
    return {d["id"]: d for d in data if isinstance(d, dict) and isinstance(d.get("id"), str)}
