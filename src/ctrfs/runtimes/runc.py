"""Low-level OCI runtime state: runc ``state.json`` and crun ``status`` files.

Every higher runtime leaves these too (Docker under ``/run/docker/runtime-runc/moby``, containerd
under ``<containerd state>/runc/<ns>``, podman under ``/run/runc`` or ``/run/crun``); those records
merge into the higher runtime's record by ID. What remains is a container started by runc/crun
directly.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator

from ctrfs.runtimes.base import ContainerRecord, Roots, listdir, read_json


def _state_dirs(roots: Roots) -> list[str]:
    dirs = list(roots.runc_dirs)
    dirs.append(os.path.join(roots.docker_run, "runtime-runc", "moby"))
    for run in roots.containerd_runs:
        # one state dir per containerd namespace (containerd's runc shim: <state>/runc/<ns>)
        dirs.extend(os.path.join(run, "runc", ns) for ns in sorted(listdir(os.path.join(run, "runc"))))
    return dirs


def discover(roots: Roots, known: Collection[str] = ()) -> Iterator[ContainerRecord]:
    for d in _state_dirs(roots):
        kind = "crun" if os.path.basename(d) == "crun" else "runc"
        for cid in listdir(d):
            if cid in known:
                yield ContainerRecord(id=cid, runtime=kind, sources=[os.path.join(d, cid)])
                continue
            state = read_json(os.path.join(d, cid, "state.json"))
            if isinstance(state, dict):
                cfg = state.get("config") or {}
                labels = dict(x.split("=", 1) for x in cfg.get("labels") or [] if "=" in x)
                rec = ContainerRecord(
                    id=state.get("id", cid), runtime=kind, pid=state.get("init_process_pid") or None,
                    rootfs=cfg.get("rootfs"), bundle=labels.get("bundle"), state="unknown",
                    sources=[os.path.join(d, cid, "state.json")],
                )
                rec.extra["init_process_start"] = state.get("init_process_start")
                yield rec
                continue
            status = read_json(os.path.join(d, cid, "status"))  # crun
            if isinstance(status, dict):
                yield ContainerRecord(
                    id=status.get("id", cid), runtime=kind, pid=status.get("pid") or None,
                    rootfs=status.get("rootfs"), bundle=status.get("bundle"), state="unknown",
                    sources=[os.path.join(d, cid, "status")],
                )
