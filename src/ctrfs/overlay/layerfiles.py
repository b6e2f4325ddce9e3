"""What one layer of a stack does to the layers below it: the files it adds, changes, deletes.

As dive shows an image layer: every non-directory entry of the layer directory is ``A`` when
the layers below it (merged) lack the path, ``C`` when they hold it; a whiteout is ``D`` of
the path it names; an opaque directory (deleted and recreated) is ``D`` when the layers below
hold it, and its content is listed as added. A directory is listed only when it is new (``A``)
or opaque: plain parent directories are not changes of their own.
"""

from __future__ import annotations

import os
import stat as st_mod
from collections.abc import Callable, Iterator

from ctrfs._record import dataclass, replace
from ctrfs.errors import CtrfsError, NotFound, translate_oserror
from ctrfs.overlay import _fs
from ctrfs.overlay.layers import LayerStack
from ctrfs.overlay.merge import MergedView
from ctrfs.rootfs.base import file_type

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


@dataclass
class LayerFile:
    kind: str  # "A", "C", "D"
    path: str  # inside the container (surrogate-escaped str)
    type: str  # file, dir, symlink, … (of the entry in this layer; "whiteout" for a D)
    size: int | None = None  # regular files only
    opaque: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "type": self.type, "size": self.size,
                "opaque": self.opaque}


@dataclass
class LayerSummary:
    index: int
    added: int = 0
    changed: int = 0
    deleted: int = 0

    def add(self, f: LayerFile) -> None:
        if f.kind == "A":
            self.added += 1
        elif f.kind == "C":
            self.changed += 1
        else:
            self.deleted += 1


class _Below:
    """The merged view of the layers under one layer: does a path exist there?"""

    def __init__(self, stack: LayerStack, index: int) -> None:
        lower = [la for la in stack.layers if la.index > index and la.exists]
        self.view = MergedView(replace(stack, layers=lower)) if lower else None

    def has(self, path: bytes) -> bool:
        if self.view is None:
            return False
        with self.view.scoped():
            try:
                self.view.lookup(path, follow=False)
            except NotFound:
                return False
            except CtrfsError:  # "not a directory" on the way: the path is not there
                return False
        return True

    def close(self) -> None:
        if self.view is not None:
            self.view.close()


def layer_files(stack: LayerStack, index: int, *,
                cancelled: Callable[[], bool] | None = None) -> Iterator[LayerFile]:
    """The changes layer ``index`` of ``stack`` makes to the layers below it, streamed in the
    layer directory's order. ``cancelled`` is asked every 256 entries; True ends the walk."""
    la = next(la for la in stack.layers if la.index == index)
    below = _Below(stack, index)
    try:
        with translate_oserror(target=stack.target, path=la.path):
            root = os.open(stack.host_path(la.path), _fs.O_DIR_READ)
    except BaseException:
        below.close()
        raise
    walk = _fs.TreeWalk(_fs.FdOps(), root, budget=_fs.walk_budget(held=len(stack.layers)),
                        target=stack.target)
    n = 0
    try:
        while (item := walk.next()) is not None:
            n += 1
            if cancelled is not None and n % 256 == 0 and cancelled():
                return
            fr, name, s = item
            raw = fr.path() + b"/" + name
            path = os.fsdecode(raw)
            fresh = bool(fr.data)  # inside an opaque directory: nothing below shows
            if st_mod.S_ISDIR(s.st_mode):
                sub = walk.enter(name)
                opaque = sub is not None and sub.state is not None and _fs.is_opaque(sub.state)
                if sub is not None:
                    sub.data = fresh or opaque
                exists = not fresh and below.has(raw)
                if opaque and exists:
                    yield LayerFile("D", path, "dir", opaque=True)
                if not exists or opaque:
                    yield LayerFile("A", path, "dir", opaque=opaque)
                continue
            if _fs.is_whiteout(s):
                yield LayerFile("D", path, "whiteout")
                continue
            size = s.st_size if st_mod.S_ISREG(s.st_mode) else None
            changed = not fresh and below.has(raw)
            yield LayerFile("C" if changed else "A", path, file_type(s.st_mode), size)
    finally:
        walk.close()
        os.close(root)
        below.close()
