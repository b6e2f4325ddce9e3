"""containerd's overlayfs snapshotter: which snapshot a layer directory is, from its bolt database.

Layer dirs are ``<root>/io.containerd.snapshotter.v1.overlayfs/snapshots/<id>/fs``; the
snapshotter's ``metadata.db`` next to them (bucket ``v1/snapshots/<namespace>/<seq>/<key>`` with
``id`` as a uvarint, containerd snapshots/storage/bolt.go) gives each one's key: the container ID
for a container's own snapshot, ``sha256:<chain-id>`` for a committed image layer. Kept apart from
runtimes/containerd.py so that discovery does not load the bolt reader.
"""

from __future__ import annotations

import os
import re
import struct

from ctrfs.runtimes._bolt import Bolt, BoltError, Bucket, uvarint

# Matched under any containerd root: the system's /var/lib/containerd or a Kubernetes
# distribution's (k3s, RKE2, microk8s, k0s: runtimes.base.KUBE_CONTAINERDS).
SNAPSHOT_DIR = re.compile(r"^(.*/io\.containerd\.snapshotter\.v1\.overlayfs)/snapshots/(\d+)/fs$")
_SNAPSHOT_KINDS = {1: "view", 2: "active", 3: "committed"}


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
