"""Docker (moby) containers from the daemon's files: no API call.

``<root>/containers/<id>/config.v2.json`` holds name, image, state and pid; the container's
overlay layer is ``<root>/image/<driver>/layerdb/mounts/<id>/mount-id`` → ``<root>/<driver>/<mount-id>``.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator

from ctrfs.runtimes.base import ContainerRecord, Roots, listdir, read_json, read_text
from ctrfs.runtimes.overlaydirs import layer_dirs

NAME = "docker"
_ZERO_TIME = "0001-01-01T00:00:00Z"


def _state(st: dict) -> str:
    if st.get("Running"):
        if st.get("Paused"):
            return "paused"
        if st.get("Restarting"):
            return "restarting"
        return "running"
    if st.get("Dead"):
        return "dead"
    if st.get("StartedAt", _ZERO_TIME) == _ZERO_TIME:
        return "created"
    return "exited"


def discover(roots: Roots, known: Collection[str] = ()) -> Iterator[ContainerRecord]:
    cdir = os.path.join(roots.docker, "containers")
    for cid in listdir(cdir):
        cfg = read_json(os.path.join(cdir, cid, "config.v2.json"))
        if not isinstance(cfg, dict):
            continue
        st = cfg.get("State") or {}
        state = _state(st)
        conf = cfg.get("Config") or {}
        rec = ContainerRecord(
            id=cfg.get("ID", cid),
            runtime=NAME,
            name=(cfg.get("Name") or "").lstrip("/") or None,
            image=conf.get("Image"),
            image_id=cfg.get("Image"),
            state=state,
            pid=(st.get("Pid") or None) if state in ("running", "paused", "restarting") else None,
            created=cfg.get("Created"),
            labels=dict(conf.get("Labels") or {}),
            sources=[os.path.join(cdir, cid, "config.v2.json")],
        )
        driver = cfg.get("Driver") or "overlay2"
        rec.extra["driver"] = driver
        if rec.pid is not None:
            # Running: the kernel's mountinfo is the authority on its layers (read later, once).
            yield rec
            continue
        layerdb = os.path.join(roots.docker, "image", driver, "layerdb")
        mount_id = read_text(os.path.join(layerdb, "mounts", rec.id, "mount-id"))
        if mount_id and driver in ("overlay2", "overlay"):
            # Paths are recorded as the daemon names them: its data root on the host.
            host_driver_root = os.path.join(roots.on_host(roots.docker), driver)
            up, work, lowers, merged = layer_dirs(host_driver_root, mount_id, roots)
            rec.upperdir, rec.workdir, rec.lowerdirs, rec.mergeddir = up, work, lowers, merged
            rec.extra["mount_id"] = mount_id
        yield rec


def layer_cache_ids(roots: Roots) -> dict[str, tuple[str, str | None]]:
    """cache-id (overlay2 dir name) → (chain-id, diff-id) from the layer database."""
    out: dict[str, tuple[str, str | None]] = {}
    base = os.path.join(roots.docker, "image", "overlay2", "layerdb", "sha256")
    for chain in listdir(base):
        cache = read_text(os.path.join(base, chain, "cache-id"))
        if cache:
            out[cache] = ("sha256:" + chain, read_text(os.path.join(base, chain, "diff")))
    return out
