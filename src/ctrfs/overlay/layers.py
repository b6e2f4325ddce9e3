"""The layer stack of a container's root filesystem, named the way its runtime names the layers.

Sources of names (all on-disk, no daemon call):

* Docker overlay2: ``<docker>/image/overlay2/layerdb/sha256/<chain-id>/{diff,cache-id}``; the
  cache-id is the directory name under ``<docker>/overlay2/``. A container's own layer is
  ``layerdb/mounts/<container-id>/mount-id``; ``<mount-id>-init`` holds the files the daemon
  creates before start (/etc/hosts, /etc/resolv.conf, /dev/console, /.dockerenv mount points).
* containers/storage (podman, CRI-O): ``overlay-layers/layers.json`` (id, names, parent,
  diff-digest); the directory under ``overlay/`` is the layer id.
* containerd overlayfs snapshotter: ``…/io.containerd.snapshotter.v1.overlayfs/snapshots/<n>/fs``;
  ``<n>`` is the snapshot ID, and the snapshotter's bolt database next to it
  (``metadata.db``: bucket ``v1/snapshots/<namespace>/<seq>/<key>`` with ``id`` as a uvarint,
  containerd snapshots/storage/bolt.go) gives its key: the container ID for the container's
  own snapshot, ``sha256:<chain-id>`` for a committed image layer.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat as st_mod

from ctrfs._record import dataclass, field
from ctrfs.errors import NotFound, translate_oserror
from ctrfs.overlay import _fs
from ctrfs.runtimes import docker, snapshots, storage
from ctrfs.runtimes.base import Roots

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from ctrfs.model import Container


@dataclass
class Layer:
    """One directory of an overlay stack. ``index`` 0 is the top (the upper dir when there is one)."""

    index: int
    role: str  # "upper", "init" (Docker's -init layer), "image"
    path: str  # the real directory, host path (short links resolved)
    raw: str | None = None  # as mountinfo shows it (Docker/podman ``l/`` short link)
    runtime: str | None = None  # whose naming below applies: docker, storage, containerd
    id: str | None = None  # Docker cache-id / mount-id, containers/storage layer id, snapshot id
    diff_id: str | None = None  # Docker layerdb diff / containers/storage diff-digest
    chain_id: str | None = None  # Docker layerdb directory
    names: list[str] = field(default_factory=list)
    files: int | None = None  # non-directory entries
    dirs: int | None = None
    size: int | None = None  # bytes of regular files (each inode once)
    whiteouts: int | None = None
    opaque_dirs: int | None = None
    # bytes of regular files in this layer that the merged view does not show: an upper layer
    # overwrites, deletes (whiteout) or hides them (opaque directory, non-directory above)
    wasted: int | None = None
    exists: bool = True

    @property
    def label(self) -> str:
        """A short human name: 'upper', 'init', or the diff-id/layer id prefix."""
        if self.role == "upper":
            return "upper"
        if self.role == "init":
            return "init"
        ident = self.diff_id or self.id
        if ident:
            return ident.split(":", 1)[-1][:12]
        return f"lower{self.index}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "role": self.role, "label": self.label, "path": self.path,
            "raw": self.raw, "runtime": self.runtime, "id": self.id, "diff_id": self.diff_id,
            "chain_id": self.chain_id, "names": self.names, "files": self.files, "dirs": self.dirs,
            "size": self.size, "whiteouts": self.whiteouts, "opaque_dirs": self.opaque_dirs,
            "wasted": self.wasted, "exists": self.exists,
        }


@dataclass
class LayerStack:
    """A container's root filesystem as layers: ``layers[0]`` is the upper dir (if any)."""

    target: str
    fstype: str | None
    source: str | None
    layers: list[Layer]
    workdir: str | None = None
    merged: str | None = None
    origin: str = "mountinfo"  # or "runtime-state" (stopped container)
    roots: Roots = field(default_factory=Roots, repr=False)

    @property
    def is_overlay(self) -> bool:
        return self.fstype == "overlay"

    @property
    def upper(self) -> Layer | None:
        return self.layers[0] if self.layers and self.layers[0].role == "upper" else None

    @property
    def lowers(self) -> list[Layer]:
        return [la for la in self.layers if la.role != "upper"]

    def host_path(self, path: str) -> str:
        return self.roots.host_path(path)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "fstype": self.fstype, "source": self.source,
            "origin": self.origin, "upperdir": self.upper.path if self.upper else None,
            "workdir": self.workdir, "merged": self.merged,
            "layers": [la.to_dict() for la in self.layers],
            "wasted": self.wasted,
        }

    @property
    def wasted(self) -> int | None:
        """Bytes the layers hold that the merged view hides (see :func:`count_wasted`)."""
        counted = [la.wasted for la in self.layers if la.wasted is not None]
        return sum(counted) if counted else None


def layer_stack(container: Container, *, counts: bool = False) -> LayerStack:
    """The layers of ``container``'s root fs, top first, named where on-disk metadata allows."""
    roots = container.roots
    fs = container.rootfs
    rec = container.record
    target = container.display_name
    if fs is None and rec.upperdir is None and not rec.lowerdirs:
        raise NotFound("no root filesystem found (container not running and no overlay layers "
                       "recorded by its runtime)", target=target)
    running = container.pid is not None and fs is not None
    if fs is not None and not fs.is_overlay:
        return LayerStack(target=target, fstype=fs.fstype, source=fs.source, layers=[],
                          merged=fs.merged, roots=roots)
    if running and fs is not None:
        upper, work, lowers, raw = fs.upperdir, fs.workdir, list(fs.lowerdirs), list(fs.lowerdirs_raw)
        merged, origin = fs.merged, "mountinfo"
    else:
        upper, work, lowers = rec.upperdir, rec.workdir, list(rec.lowerdirs or [])
        raw, merged, origin = [], (fs.merged if fs else None), "runtime-state"
    layers: list[Layer] = []
    if upper:
        layers.append(Layer(index=0, role="upper", path=upper))
    for i, p in enumerate(lowers):
        layers.append(Layer(index=len(layers), role="image", path=p,
                            raw=raw[i] if i < len(raw) and raw[i] != p else None))
    stack = LayerStack(target=target, fstype="overlay", source=fs.source if fs else "overlay",
                       layers=layers, workdir=work, merged=merged, origin=origin, roots=roots)
    _name_layers(stack, container)
    for la in layers:
        la.exists = os.path.isdir(roots.host_path(la.path))
    if counts:
        for la in layers:
            count_layer(stack, la)
        count_wasted(stack)
    return stack


# -- naming -----------------------------------------------------------------------------------

def _name_layers(stack: LayerStack, container: Container) -> None:
    roots = stack.roots
    docker_cache: dict[str, tuple[str, str | None]] | None = None
    storage_layers: dict[str, dict[str, dict[str, Any]]] = {}
    snapshot_keys: dict[str, dict[str, tuple[str, str]]] = {}
    docker_od = os.path.join(roots.docker, "overlay2")
    for la in stack.layers:
        parent, base = os.path.split(os.path.dirname(la.path))
        local_parent = roots.host_path(parent)
        if os.path.basename(la.path) == "diff" and _same_dir(local_parent, docker_od):
            la.runtime = "docker"
            la.id = base
            if base.endswith("-init"):
                la.role = "init" if la.role != "upper" else la.role
                la.names = ["init layer of " + base[: -len("-init")][:12]]
                continue
            if la.role == "upper":
                continue
            if docker_cache is None:
                docker_cache = docker.layer_cache_ids(roots)
            hit = docker_cache.get(base)
            if hit:
                la.chain_id, la.diff_id = hit
        elif os.path.basename(la.path) == "diff" and os.path.basename(parent) == "overlay" \
                and os.path.isdir(os.path.join(os.path.dirname(local_parent), "overlay-layers")):
            # containers/storage: root's store or a rootless user's (<graphroot>/overlay/<id>)
            la.runtime = "storage"
            la.id = base
            graph = os.path.dirname(local_parent)
            if graph not in storage_layers:
                storage_layers[graph] = storage.layers_by_id(graph)
            info = storage_layers[graph].get(base)
            if info:
                la.diff_id = info.get("diff-digest")
                la.names = list(info.get("names") or [])
        else:
            m = snapshots.SNAPSHOT_DIR.search(la.path)
            if m:
                la.runtime = "containerd"
                la.id = m.group(2)
                if m.group(1) not in snapshot_keys:
                    snapshot_keys[m.group(1)] = snapshots.snapshots(roots.host_path(m.group(1)))
                key, kind = snapshot_keys[m.group(1)].get(la.id, ("", ""))
                la.names = [key] if key else [f"snapshot {la.id}"]
                if kind == "committed" and key.startswith("sha256:"):
                    la.chain_id = key


def _same_dir(a: str, b: str) -> bool:
    if os.path.normpath(a) == os.path.normpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# -- counting ---------------------------------------------------------------------------------

@contextlib.contextmanager
def _layer_walk(stack: LayerStack, la: Layer, **kwargs: Any) -> Iterator[_fs.TreeWalk[Any] | None]:
    """An fd walk of one layer directory (None when it does not exist); what goes wrong in it
    comes out as the layer's CtrfsError (EMFILE with the fd budget's advice)."""
    try:
        with translate_oserror(target=stack.target, path=la.path):
            root = os.open(stack.host_path(la.path), _fs.O_DIR_READ)
    except NotFound:
        yield None
        return
    walk = _fs.TreeWalk(_fs.FdOps(), root, budget=_fs.walk_budget(), target=stack.target,
                        **kwargs)
    try:
        yield walk
    except OSError as err:
        if err.errno in (errno.EMFILE, errno.ENFILE):
            raise _fs.emfile(err, stack.target, la.path) from err
        with translate_oserror(target=stack.target, path=la.path):
            raise
    finally:
        walk.close()
        os.close(root)


def count_layer(stack: LayerStack, la: Layer) -> None:
    """Fill files/dirs/size/whiteouts/opaque_dirs by walking the layer directory by fd."""
    files = dirs = size = whiteouts = opaque = 0
    seen: set[tuple[int, int]] = set()
    with _layer_walk(stack, la) as walk:
        if walk is None:
            la.exists = False
            return
        while (item := walk.next()) is not None:
            _, name, s = item
            if st_mod.S_ISDIR(s.st_mode):
                dirs += 1
                fr = walk.enter(name)
                if fr is not None and fr.state is not None and _fs.is_opaque(fr.state):
                    opaque += 1
                continue
            if _fs.is_whiteout(s):
                whiteouts += 1
                continue
            files += 1
            if st_mod.S_ISREG(s.st_mode):
                key = (s.st_dev, s.st_ino)
                if s.st_nlink > 1:
                    if key in seen:
                        continue
                    seen.add(key)
                size += s.st_size
    la.files, la.dirs, la.size, la.whiteouts, la.opaque_dirs = files, dirs, size, whiteouts, opaque


# count_wasted remembers every path of the layers above the one it walks: past this many it gives
# up (``wasted`` stays None) so that memory stays bounded on a huge upper dir (about 20 MiB here).
WASTED_PATHS_MAX = 100_000


def count_wasted(stack: LayerStack) -> None:
    """Fill each layer's ``wasted``: bytes of its regular files (each inode once) that a layer
    above hides, walking the layers top first and remembering what each path is above. The
    paths of the bottom layer are not remembered (nothing lies below it); with more than
    WASTED_PATHS_MAX paths above, no layer's ``wasted`` is filled.

    overlayfs lookup (fs/overlayfs/namei.c): a name found in a layer hides the same name below,
    whatever its type; below a whiteout, a non-directory or an opaque directory nothing of the
    lower layers shows; below a plain directory the lower directories merge."""
    above: dict[bytes, bool] = {}  # path -> True when it ends the merge (nothing below shows)
    present = [la for la in stack.layers if la.exists]
    results: list[tuple[Layer, int]] = []
    for n, la in enumerate(present):
        remember = n < len(present) - 1  # the bottom layer hides nothing
        mine: dict[bytes, bool] = {}
        wasted = 0
        seen: set[tuple[int, int]] = set()
        # A frame's data: True when a layer above hides the whole directory.
        with _layer_walk(stack, la, root_data=False) as walk:
            if walk is None:
                continue
            while (item := walk.next()) is not None:
                fr, name, s = item
                path = fr.path() + b"/" + name
                hidden = bool(fr.data)
                if st_mod.S_ISDIR(s.st_mode):
                    sub = walk.enter(name, data=hidden or above.get(path) is True)
                    opaque = sub is not None and sub.state is not None and _fs.is_opaque(sub.state)
                    if not hidden and remember:
                        mine[path] = opaque
                        if len(mine) + len(above) > WASTED_PATHS_MAX:
                            return
                    continue
                if not hidden and remember:
                    mine[path] = True
                    if len(mine) + len(above) > WASTED_PATHS_MAX:
                        return
                if not st_mod.S_ISREG(s.st_mode) or not (hidden or path in above):
                    continue
                if s.st_nlink > 1:
                    key = (s.st_dev, s.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                wasted += s.st_size
        results.append((la, wasted))
        for p, ends in mine.items():
            above[p] = above.get(p, False) or ends
        if len(above) > WASTED_PATHS_MAX:
            return
    for la, wasted in results:
        la.wasted = wasted
