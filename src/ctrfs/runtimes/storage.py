"""containers/storage: podman and CRI-O, from ``overlay-containers/containers.json`` and userdata.

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

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def discover(roots: Roots, known: Collection[str] = ()) -> Iterator[ContainerRecord]:
    listing = read_json(os.path.join(roots.storage, "overlay-containers", "containers.json"))
    if not isinstance(listing, list):
        return
    host_overlay = os.path.join(roots.on_host(roots.storage), "overlay")
    for item in listing:
        if not isinstance(item, dict) or "id" not in item:
            continue
        cid = item["id"]
        try:
            meta = json.loads(item.get("metadata") or "{}")
        except ValueError:
            meta = {}
        if not isinstance(meta, dict):
            meta = {}
        spec = read_json(os.path.join(roots.storage, "overlay-containers", cid, "userdata", "config.json"))
        ann = dict((spec or {}).get("annotations") or {}) if isinstance(spec, dict) else {}
        is_crio = "pod-name" in meta or "io.kubernetes.cri-o.ContainerType" in ann
        names = item.get("names") or []
        pid = read_int(os.path.join(roots.storage_run, "overlay-containers", cid, "userdata", "pidfile"))
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
            sources=[os.path.join(roots.storage, "overlay-containers", "containers.json")],
        )
        layer = item.get("layer")
        if layer:
            up, work, lowers, merged = layer_dirs(host_overlay, layer, roots)
            rec.upperdir, rec.workdir, rec.lowerdirs, rec.mergeddir = up, work, lowers, merged
            rec.layer_ids = [layer]
        yield rec


def layers_by_id(roots: Roots) -> dict[str, dict[str, Any]]:
    data = read_json(os.path.join(roots.storage, "overlay-layers", "layers.json"))
    if not isinstance(data, list):
        return {}
    return {d["id"]: d for d in data if isinstance(d, dict) and isinstance(d.get("id"), str)}
