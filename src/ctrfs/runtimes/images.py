"""Images of every store, read from disk: Docker's image store and containers/storage.

Docker (moby ``image/overlay2``): ``repositories.json`` maps ``repo`` → ``repo:tag`` → image id;
``imagedb/content/sha256/<id>`` is the image config, whose ``rootfs.diff_ids`` (bottom first)
give the layers. A layer's directory is found through its *chain id* (moby layer/layer.go
``CreateChainID``: the first diff id, then ``sha256(parent_chain + " " + diff_id)``):
``layerdb/sha256/<chain>/cache-id`` names ``overlay2/<cache-id>/diff``; ``size`` is its size.

containers/storage (podman, CRI-O): ``<driver>-images/images.json`` lists id, names and the top
``layer``; ``<driver>-layers/layers.json`` gives each layer's ``parent``, ``diff-digest`` and
``diff-size``. With ``overlay`` a layer is ``overlay/<id>/diff`` (only its own changes); with
``vfs`` it is ``vfs/dir/<id>``, a full copy of the tree, so the top layer alone is the image.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

from ctrfs._record import dataclass, field
from ctrfs.runtimes.base import Roots, listdir, read_json, read_text
from ctrfs.runtimes.stores import Store, storage_stores

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


@dataclass
class ImageLayer:
    path: str  # host path of the layer directory
    id: str | None = None  # Docker cache-id, containers/storage layer id
    diff_id: str | None = None
    chain_id: str | None = None
    size: int | None = None


@dataclass
class ImageRecord:
    """One image as its store records it. ``layers`` are top first (as overlay lowerdirs)."""

    id: str  # "sha256:<hex>"
    runtime: str  # "docker" or "podman" (containers/storage)
    names: list[str]
    layers: list[ImageLayer]
    store: str  # the store's root directory (host path)
    driver: str  # overlay2, overlay, vfs
    created: str | None = None
    user: str | None = None  # owner of a rootless store
    uid: int | None = None
    # For rootless stores: host uid/gid maps of the store's user namespace, as /proc uid_map
    # lines (inside, outside, count); files on disk carry the outside ids.
    uid_map: list[tuple[int, int, int]] = field(default_factory=list)
    gid_map: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[-1][:12]

    @property
    def size(self) -> int | None:
        sizes = [la.size for la in self.layers]
        if not sizes or any(s is None for s in sizes):
            return None
        if self.driver == "vfs":
            return sizes[0]  # each vfs layer is the whole tree
        return sum(s for s in sizes if s is not None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "short_id": self.short_id, "runtime": self.runtime,
            "names": self.names, "repository_tags": [split_name(n) for n in self.names],
            "size": self.size, "layer_count": len(self.layers), "created": self.created,
            "store": self.store, "driver": self.driver, "user": self.user, "uid": self.uid,
            "layers": [la.__dict__ for la in self.layers],
        }


def split_name(name: str) -> tuple[str, str]:
    """``registry:5000/repo:tag`` → (``registry:5000/repo``, ``tag``); no tag → ``<none>``."""
    repo, sep, tag = name.rpartition(":")
    if not sep or "/" in tag:
        return name, "<none>"
    return repo, tag


def chain_ids(diff_ids: list[str]) -> list[str]:
    out: list[str] = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def docker_images(roots: Roots) -> Iterator[ImageRecord]:
    base = os.path.join(roots.docker, "image", "overlay2")
    repos = read_json(os.path.join(base, "repositories.json"))
    names: dict[str, list[str]] = {}
    if isinstance(repos, dict):
        for tags in (repos.get("Repositories") or {}).values():
            for ref, iid in (tags or {}).items():
                if "@" not in ref:  # repo@digest duplicates a tag
                    names.setdefault(iid, []).append(ref)
    content = os.path.join(base, "imagedb", "content", "sha256")
    host_driver = os.path.join(roots.on_host(roots.docker), "overlay2")
    for hexid in listdir(content):
        cfg = read_json(os.path.join(content, hexid))
        if not isinstance(cfg, dict):
            continue
        diff_ids = list(((cfg.get("rootfs") or {}).get("diff_ids")) or [])
        layers: list[ImageLayer] = []
        for diff_id, chain in zip(diff_ids, chain_ids(diff_ids), strict=True):
            ldir = os.path.join(base, "layerdb", "sha256", chain.split(":", 1)[1])
            cache = read_text(os.path.join(ldir, "cache-id"))
            if not cache:
                break  # a layer still being pulled: not an image yet
            layers.append(ImageLayer(path=os.path.join(host_driver, cache, "diff"), id=cache,
                                     diff_id=diff_id, chain_id=chain,
                                     size=_int(read_text(os.path.join(ldir, "size")))))
        else:
            iid = "sha256:" + hexid
            layers.reverse()
            yield ImageRecord(id=iid, runtime="docker", names=sorted(names.get(iid, [])),
                              layers=layers, store=roots.on_host(roots.docker), driver="overlay2",
                              created=cfg.get("created"), user="root", uid=0)


def _storage_images(store: Store, roots: Roots) -> Iterator[ImageRecord]:
    listing = read_json(os.path.join(store.graphroot, f"{store.driver}-images", "images.json"))
    if not isinstance(listing, list):
        return
    layers = read_json(os.path.join(store.graphroot, f"{store.driver}-layers", "layers.json"))
    by_id = {d["id"]: d for d in layers if isinstance(d, dict) and isinstance(d.get("id"), str)} \
        if isinstance(layers, list) else {}
    host_root = roots.on_host(store.graphroot)
    for item in listing:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        chain: list[ImageLayer] = []
        lid = item.get("layer")
        seen: set[str] = set()
        while isinstance(lid, str) and lid and lid not in seen:
            seen.add(lid)
            info = by_id.get(lid) or {}
            if store.driver == "vfs":
                path = os.path.join(host_root, "vfs", "dir", lid)
            else:
                path = os.path.join(host_root, store.driver, lid, "diff")
            chain.append(ImageLayer(path=path, id=lid, diff_id=info.get("diff-digest"),
                                    size=info.get("diff-size")))
            lid = info.get("parent")
        if store.driver == "vfs":
            chain = chain[:1]  # the top vfs layer is already the whole tree
        yield ImageRecord(id="sha256:" + item["id"], runtime="podman",
                          names=list(item.get("names") or []), layers=chain, store=host_root,
                          driver=store.driver, created=item.get("created"), user=store.user,
                          uid=store.uid, uid_map=store.uid_map, gid_map=store.gid_map)


def discover_images(roots: Roots) -> Iterator[ImageRecord]:
    """Every image of Docker's store, root's containers/storage and each user's."""
    yield from docker_images(roots)
    for store in storage_stores(roots):
        yield from _storage_images(store, roots)
