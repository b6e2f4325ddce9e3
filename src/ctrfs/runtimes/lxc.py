"""LXC containers (``lxc-create``/``lxc-start``; Incus and LXD keep the same layout elsewhere).

``<lxcpath>/<NAME>/config`` (lxc.container.conf(5), ``key = value`` lines) holds
``lxc.rootfs.path`` (``dir:/var/lib/lxc/NAME/rootfs``, ``overlay:LOWER:UPPER``, a block device...)
and, for an unprivileged container, ``lxc.idmap = u|g INSIDE OUTSIDE COUNT`` lines. A running
container's processes sit in cgroup ``lxc.payload.NAME`` (LXC 4+, ``lxc/NAME`` before), which
proc/cgroup.py recognises; the record's ID is the container's name.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator

from ctrfs.runtimes.base import ContainerRecord, Roots, listdir

_MAX_CONFIG = 1 << 20


def parse_config(text: str) -> list[tuple[str, str]]:
    """``key = value`` pairs in order (comments and blank lines dropped; keys may repeat)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if sep:
            out.append((key.strip(), value.strip()))
    return out


def rootfs_dir(value: str) -> str | None:
    """The directory of an ``lxc.rootfs.path``: ``dir:PATH`` or a bare path; None for block
    devices and other backends (``overlay:``, ``zfs:``, ``btrfs:`` read only while running)."""
    if value.startswith("dir:"):
        return value[4:]
    if value.startswith("/") and ":" not in value:
        return value
    return None


def id_maps(pairs: list[tuple[str, str]]) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    uids, gids = [], []
    for key, value in pairs:
        if key != "lxc.idmap":
            continue
        f = value.split()
        if len(f) == 4 and f[0] in ("u", "g", "b") and all(x.isdigit() for x in f[1:]):
            entry = (int(f[1]), int(f[2]), int(f[3]))
            if f[0] in ("u", "b"):
                uids.append(entry)
            if f[0] in ("g", "b"):
                gids.append(entry)
    return uids, gids


def discover(roots: Roots, known: Collection[str] = ()) -> Iterator[ContainerRecord]:
    for name in sorted(listdir(roots.lxc)):
        conf = os.path.join(roots.lxc, name, "config")
        try:
            with open(conf, "rb") as f:
                pairs = parse_config(f.read(_MAX_CONFIG).decode("utf-8", "replace"))
        except OSError:
            continue
        values = dict(pairs)
        rec = ContainerRecord(id=name, runtime="lxc", name=name, state="stopped", sources=[conf])
        rootfs = values.get("lxc.rootfs.path")
        if rootfs:
            rec.extra["rootfs_path"] = rootfs
            d = rootfs_dir(rootfs)
            if d is not None:
                rec.rootfs = d
        uids, gids = id_maps(pairs)
        if uids and gids:
            rec.extra.update(uid_map=uids, gid_map=gids, unprivileged=True)
        yield rec
