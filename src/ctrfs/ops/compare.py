"""What tree B changes over tree A, for two Roots of any kind (``diff image://A image://B``).

The rules are moby's ``archive.ChangesDirs(B, A)`` (pkg/archive/changes.go ``addChanges``,
changes_unix.go ``statDifferent``), the naive diff ``docker diff`` also answers with: a path only
in B is ``A`` (and so is everything below an added directory); a path in both is ``C`` when mode,
owner, rdev or, for non-directories, size or mtime differ, or when one is a directory and the
other not; a path only in A is ``D`` (only the top of a deleted tree). Every directory holding a
change is ``C`` (never ``/``). Output is sorted by path, as moby sorts it. Unlike moby, file
capabilities (``security.capability``) are not compared.

Directories are compared one at a time (their listings are held, not the trees), iteratively.

:func:`diff_targets` picks the rules: podman's own ``podman diff IMAGE`` is its native layer diff
(the image's top layer against its parent, overlay/diff.py ``podman``), so when B is A plus one
layer and podman's rules apply, that layer is diffed as an upper dir over A's layers.
"""

from __future__ import annotations

import os
import stat as st_mod
from collections.abc import Iterable

from ctrfs.access import open_root
from ctrfs.errors import NotFound, Unsupported
from ctrfs.model import Container
from ctrfs.overlay.diff import (
    DOCKER,
    PODMAN_HIDDEN,
    Change,
    changes,
    container_changes,
    default_semantics,
    file_type,
    stat_different,
)
from ctrfs.overlay.layers import Layer, LayerStack, layer_stack
from ctrfs.rootfs.base import Root, WarnFn, join
from ctrfs.rootfs.fd import DirRoot


def _listing(root: Root, path: str) -> dict[str, os.stat_result]:
    return {e.name: e.stat for e in root.scandir(path)}


def compare_roots(old: Root, new: Root, *, on_warning: WarnFn | None = None) -> list[Change]:
    """The changes that turn ``old`` into ``new``, sorted by path."""
    found: dict[str, Change] = {}

    def emit(kind: str, path: str, mode: int, size: int | None) -> None:
        found[path] = Change(kind, path, file_type(mode),
                             size if st_mod.S_ISREG(mode) else None)
        parent = path.rsplit("/", 1)[0] or "/"
        while parent != "/" and parent not in found:
            found[parent] = Change("C", parent, "dir")
            parent = parent.rsplit("/", 1)[0] or "/"

    todo = ["/"]
    while todo:
        d = todo.pop()
        a, b = _listing(old, d), _listing(new, d)
        for name, nst in b.items():
            path = join(d, name)
            ost = a.get(name)
            if ost is None:
                emit("A", path, nst.st_mode, nst.st_size)
                if st_mod.S_ISDIR(nst.st_mode):
                    for e in new.walk(path, follow=False, on_warning=on_warning):
                        if e.depth:
                            emit("A", e.path, e.stat.st_mode, e.stat.st_size)
                continue
            ndir, odir = st_mod.S_ISDIR(nst.st_mode), st_mod.S_ISDIR(ost.st_mode)
            if ndir != odir or stat_different(ost, nst):
                emit("C", path, nst.st_mode, nst.st_size)
            if ndir and odir:
                todo.append(path)
            elif ndir:
                for e in new.walk(path, follow=False, on_warning=on_warning):
                    if e.depth:
                        emit("A", e.path, e.stat.st_mode, e.stat.st_size)
        for name, ost in a.items():
            if name not in b:
                emit("D", join(d, name), ost.st_mode, None)
    old.check_alive()
    new.check_alive()
    return sorted(found.values(), key=lambda c: c.path)


def changes_of(c: Container, other: Container | None = None, *, semantics: str = "auto"
               ) -> Iterable[Change]:
    """``ctrfs diff``: what ``other`` changes over ``c`` when given; else what ``c`` changed
    (its overlay upper dir, or a vfs layer against its parent)."""
    if other is not None:
        return diff_targets(c, other, semantics=semantics)
    if c.record.extra.get("driver") == "vfs":
        found = vfs_changes(c)
        if found is None:
            raise Unsupported("vfs container whose parent layer is not recorded: nothing to "
                              "compare its layer with", target=c.display_name)
        return found
    return container_changes(c, semantics=semantics)


def diff_targets(old: Container, new: Container, *, semantics: str = "auto") -> list[Change]:
    """What ``new`` changes over ``old`` (two images, an image and a container...)."""
    sem = default_semantics(new.runtime) if semantics == "auto" else semantics
    if sem != DOCKER:
        stack = _one_layer_over(old, new)
        if stack is not None:
            return list(changes(stack, semantics=sem))
    with open_root(old) as a, open_root(new) as b:
        a.target, b.target = old.display_name, new.display_name
        return compare_roots(a, b)


def _one_layer_over(old: Container, new: Container) -> LayerStack | None:
    """``new``'s top layer as an upper dir over ``old``'s layers, when that is what ``new`` is."""
    if old.pid is not None or new.pid is not None:
        return None
    try:
        a, b = layer_stack(old), layer_stack(new)
    except NotFound:
        return None
    if not (a.is_overlay and b.is_overlay) or a.upper or b.upper or len(b.layers) != len(a.layers) + 1:
        return None
    if [la.path for la in b.layers[1:]] != [la.path for la in a.layers]:
        return None
    layers = [Layer(index=0, role="upper", path=b.layers[0].path)]
    layers += [Layer(index=i + 1, role="image", path=la.path) for i, la in enumerate(a.layers)]
    return LayerStack(target=new.display_name, fstype="overlay", source="image", layers=layers,
                      origin="runtime-state", roots=new.roots)


def vfs_changes(c: Container) -> list[Change] | None:
    """``podman diff`` of a container on the vfs driver: its layer directory (a full copy)
    against its parent's, naive rules, podman's own mount points left out (libpod initInodes).
    None when the container is not a vfs one."""
    mine, parent = c.record.rootfs, c.record.extra.get("vfs_parent")
    if c.record.extra.get("driver") != "vfs" or not mine or not isinstance(parent, str):
        return None
    with DirRoot(c.roots.host_path(parent), target=c.display_name) as a, \
            DirRoot(c.roots.host_path(mine), target=c.display_name) as b:
        return [ch for ch in compare_roots(a, b) if ch.path not in PODMAN_HIDDEN]
