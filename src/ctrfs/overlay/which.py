"""Which layer provides a path, and what it shadows."""

from __future__ import annotations

import os
import stat as st_mod

from ctrfs._record import dataclass, field
from ctrfs.errors import CtrfsError, NotFound, Unsupported
from ctrfs.hostmounts import rel_under
from ctrfs.mounts import container_mounts
from ctrfs.overlay import _fs
from ctrfs.overlay.layers import Layer, LayerStack, layer_stack
from ctrfs.overlay.merge import MergedView
from ctrfs.rootfs.base import file_type

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ctrfs.model import Container


@dataclass
class LayerHit:
    layer: Layer
    type: str  # file, dir, symlink, whiteout, …
    state: str  # visible, merged (a directory whose content shows through), deleted (the
    # whiteout that removes it), shadowed (a lower version hidden by the visible one), hidden
    reason: str = ""
    opaque: bool = False
    size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer.index, "label": self.layer.label, "role": self.layer.role,
                "layer_path": self.layer.path, "type": self.type, "state": self.state,
                "reason": self.reason, "opaque": self.opaque, "size": self.size}


@dataclass
class WhichResult:
    path: str  # as asked
    resolved: str  # after following symlinks in the parent directories
    visible: LayerHit | None
    hits: list[LayerHit] = field(default_factory=list)
    # The container mount covering the path (not the root): what the container really sees
    # there is that mount, not the layers (container_which sets it).
    mount: dict[str, Any] | None = None

    @property
    def deleted(self) -> bool:
        return self.visible is None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "resolved": self.resolved, "exists": self.visible is not None,
                "visible": self.visible.to_dict() if self.visible else None,
                "layers": [h.to_dict() for h in self.hits], "mount": self.mount}


def _raw(layer_fd: int, parts: list[bytes]) -> tuple[os.stat_result | None, bool, str]:
    """The entry at ``parts`` in one layer, no symlink followed: (lstat, opaque, blocker) where
    blocker names an ancestor that is not a directory in this layer (whiteout, file, link)."""
    fd = os.dup(layer_fd)
    try:
        for i, name in enumerate(parts):
            s = _fs.lstat_at(fd, name)
            if s is None:
                return None, False, ""
            if i == len(parts) - 1:
                opaque = False
                if st_mod.S_ISDIR(s.st_mode):
                    sub = _fs.open_dir_at(fd, name, _fs.O_DIR_READ)
                    if sub is not None:
                        opaque = _fs.is_opaque(sub)
                        os.close(sub)
                return s, opaque, ""
            if not st_mod.S_ISDIR(s.st_mode):
                what = "whiteout" if _fs.is_whiteout(s) else file_type(s.st_mode)
                return None, False, f"{what} at /{os.fsdecode(b'/'.join(parts[: i + 1]))}"
            sub = _fs.open_dir_at(fd, name, _fs.O_DIR_READ)
            if sub is None:
                return None, False, ""
            os.close(fd)
            fd = sub
        return os.fstat(fd), False, ""
    finally:
        os.close(fd)


def which(stack: LayerStack, path: str) -> WhichResult:
    if not stack.is_overlay:
        raise Unsupported(f"root filesystem is {stack.fstype or 'unknown'}, not overlay: it has "
                          "no layers", target=stack.target, path=path)
    view = MergedView(stack)
    try:
        raw_path = os.fsencode(path)
        try:
            view.lookup(raw_path, follow=False)  # the kernel's verdict on "file/." and the like
        except NotFound:
            pass  # a deleted path is still explained below
        comps = _fs.split(raw_path)
        if not comps or comps[-1] == b"..":
            parent = view.lookup(raw_path)
            name = b""
        else:
            parent = view.lookup(b"/" + b"/".join(comps[:-1]))
            name = comps[-1]
        if not parent.is_dir:
            raise CtrfsError("not a directory", target=stack.target, path=path)
        if name:
            target_parts = _fs.split(parent.path) + [name]
        else:
            target_parts = _fs.split(parent.path)
        resolved = "/" + os.fsdecode(b"/".join(target_parts))
        in_parent = {idx for idx, _ in parent.parts}
        layers = {la.index: la for la in stack.layers}
        hits: list[LayerHit] = []
        visible: LayerHit | None = None
        stopped = ""  # why layers below no longer contribute, once the merge chain ended
        chain_dir = False
        for idx, root_fd in view.roots:
            la = layers[idx]
            if not target_parts:
                s: os.stat_result | None = os.fstat(root_fd)
                opaque = False
            else:
                s, opaque, _ = _raw(root_fd, target_parts)
            if s is None:
                continue
            kind = "whiteout" if _fs.is_whiteout(s) else file_type(s.st_mode)
            size = s.st_size if st_mod.S_ISREG(s.st_mode) else None
            hit = LayerHit(la, kind, "", opaque=opaque, size=size)
            if target_parts and idx not in in_parent:
                hit.state = "hidden"
                hit.reason = _why_hidden(view, stack, target_parts, idx) or "parent not merged"
            elif stopped:
                hit.state = "shadowed" if visible is not None and not chain_dir else "hidden"
                hit.reason = stopped
            elif kind == "whiteout":
                if visible is None:
                    hit.state = "deleted"
                    hit.reason = f"whiteout in layer {idx} deletes the lower versions"
                    stopped = f"deleted by the whiteout in layer {idx}"
                else:
                    hit.state = "hidden"
                    stopped = hit.reason = f"whiteout in layer {idx} ends the merge"
            elif visible is None:
                hit.state = "visible"
                visible = hit
                chain_dir = kind == "dir"
                if not chain_dir:
                    stopped = f"shadowed by the {kind} in layer {idx}"
                elif opaque:
                    stopped = f"hidden by the opaque directory in layer {idx}"
            elif chain_dir and kind == "dir":
                hit.state = "merged"
                hit.reason = "its entries show through the directory above"
                if opaque:
                    stopped = f"hidden by the opaque directory in layer {idx}"
            else:
                hit.state = "shadowed"
                hit.reason = f"a {kind} below the directory from layer {visible.layer.index}"
                stopped = hit.reason
            hits.append(hit)
        if raw_path.endswith(b"/") and visible is not None and visible.type != "dir" and name:
            raise CtrfsError("not a directory", target=stack.target, path=path)
        return WhichResult(path=path, resolved=resolved, visible=visible, hits=hits)
    finally:
        view.close()


def _why_hidden(view: MergedView, stack: LayerStack, parts: list[bytes], idx: int) -> str:
    """Why layer ``idx``'s copy of a path does not take part: the nearest ancestor that a
    higher layer deletes (whiteout), makes opaque, or replaces with a non-directory."""
    for depth in range(1, len(parts)):
        prefix = parts[:depth]
        for j, root_fd in view.roots:
            if j >= idx:
                break
            s, opaque, _ = _raw(root_fd, prefix)
            if s is None:
                continue
            where = "/" + os.fsdecode(b"/".join(prefix))
            if _fs.is_whiteout(s):
                return f"{where} is deleted (whiteout) in layer {j}"
            if not st_mod.S_ISDIR(s.st_mode):
                return f"{where} is a {file_type(s.st_mode)} in layer {j}"
            if opaque:
                return f"{where} is an opaque directory in layer {j} (deleted and recreated)"
    return ""


def container_which(container: Container, path: str) -> WhichResult:
    """:func:`which` in a container's layer stack, with the container mount that covers ``path``
    (what the container really sees there, while it runs) in ``mount``."""
    res = which(layer_stack(container), path)
    if container.pid is not None:
        covering = [m for m in container_mounts(container) if m.mount_point != "/"
                    and rel_under(res.resolved, m.mount_point) is not None]
        if covering:
            top = max(covering, key=lambda m: len(m.mount_point))
            res.mount = {"mount_point": top.mount_point, "kind": top.kind,
                         "host_path": top.host_path}
    return res
