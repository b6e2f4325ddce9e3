"""containerd tasks from the v2 shim's bundle dirs (no API call).

``<state>/io.containerd.runtime.v2.task/<namespace>/<id>/`` holds ``config.json`` (the OCI spec
with CRI annotations), ``init.pid`` and the mounted ``rootfs``. Docker's own containerd keeps its
bundles under ``<docker run>/containerd/daemon/…/moby``; those merge into the Docker records.
Every containerd state dir of ``Roots.containerd_runs`` is read: the system's and those of
Kubernetes distributions (k3s, RKE2, microk8s, k0s; see ``runtimes.base.KUBE_CONTAINERDS``).
Record paths (bundle, rootfs) are host paths, as the rest of the record's.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Collection, Iterator

from ctrfs.runtimes._bolt import Bolt, BoltError, Bucket, uvarint
from ctrfs.runtimes.base import (
    ContainerRecord,
    Roots,
    image_from_annotations,
    listdir,
    pod_from_annotations,
    read_int,
    read_json,
)

TASK_DIR = "io.containerd.runtime.v2.task"
# The overlayfs snapshotter's layer dirs: <root>/io.containerd.snapshotter.v1.overlayfs/snapshots/<id>/fs,
# matched under any containerd root (the system's, or a Kubernetes distribution's: Roots.containerd_roots)
SNAPSHOT_DIR = re.compile(r"^(.*/io\.containerd\.snapshotter\.v1\.overlayfs)/snapshots/(\d+)/fs$")
_SNAPSHOT_KINDS = {1: "view", 2: "active", 3: "committed"}


def _task_roots(roots: Roots) -> list[tuple[str, str]]:
    tasks = [(os.path.join(run, TASK_DIR), "containerd") for run in roots.containerd_runs]
    tasks.append((os.path.join(roots.docker_run, "containerd", "daemon", TASK_DIR), "docker"))
    return tasks


def discover(roots: Roots, known: Collection[str] = ()) -> Iterator[ContainerRecord]:
    for base, runtime in _task_roots(roots):
        for ns in listdir(base):
            for cid in listdir(os.path.join(base, ns)):
                local = os.path.join(base, ns, cid)
                bundle = roots.on_host(local)
                if cid in known:
                    # Docker's (or an already described) container: the path alone says enough.
                    yield ContainerRecord(id=cid, runtime=runtime, namespace=ns, bundle=bundle,
                                          sources=[os.path.join(local, "config.json")])
                    continue
                spec = read_json(os.path.join(local, "config.json"))
                if not isinstance(spec, dict):
                    continue
                ann = dict(spec.get("annotations") or {})
                pod = pod_from_annotations(ann)
                root = (spec.get("root") or {}).get("path") or "rootfs"
                name = pod.container if pod and runtime == "containerd" else None
                rec = ContainerRecord(
                    id=cid,
                    runtime=runtime,
                    name=name,
                    image=image_from_annotations(ann),
                    state="unknown",
                    pid=read_int(os.path.join(local, "init.pid")),
                    namespace=ns,
                    pod=pod,
                    bundle=bundle,
                    rootfs=root if os.path.isabs(root) else os.path.join(bundle, root),
                    annotations=ann,
                    sources=[os.path.join(local, "config.json")],
                )
                rec.extra["cgroups_path"] = (spec.get("linux") or {}).get("cgroupsPath")
                yield rec


def snapshots(snapshotter_root: str) -> dict[str, tuple[str, str]]:
    """snapshot ID → (key, kind) from the overlayfs snapshotter's metadata.db (best effort)."""
    try:
        db = Bolt.open(os.path.join(snapshotter_root, "metadata.db"))
        snaps = db.bucket(b"v1", b"snapshots")
        out: dict[str, tuple[str, str]] = {}
        for name, bucket in (snaps.items() if snaps else ()):
            if not isinstance(bucket, Bucket):
                continue
            sid = bucket.get(b"id")
            kind = bucket.get(b"kind")
            if not isinstance(sid, bytes):
                continue
            # Keys are "<namespace>/<sequence>/<key>" (containerd's metadata snapshotter).
            key = name.decode("utf-8", "replace").split("/", 2)[-1]
            k = kind[0] if isinstance(kind, bytes) and kind else 0
            out[str(uvarint(sid))] = (key, _SNAPSHOT_KINDS.get(k, ""))
        return out
    except (OSError, BoltError, struct.error, IndexError):
        return {}
