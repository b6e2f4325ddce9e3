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
from collections.abc import Collection, Iterator

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
