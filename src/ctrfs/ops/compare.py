"""What tree B changes over tree A, for two Roots of any kind (``diff image://A image://B``).

The rules are moby's ``archive.ChangesDirs(B, A)`` (pkg/archive/changes.go ``addChanges``,
changes_unix.go ``statDifferent``), the naive diff ``docker diff`` also answers with: a path only
in B is ``A`` (and so is everything below an added directory); a path in both is ``C`` when mode,
owner, rdev or, for non-directories, size or mtime differ, or when one is a directory and the
other not; a path only in A is ``D`` (only the top of a deleted tree). Every directory holding a
change is ``C`` (never ``/``). Output is sorted by path, as moby sorts it. Unlike moby, file
capabilities (``security.capability``) are not compared.

Directories are compared one at a time (their listings are held, not the trees), iteratively.
"""

from __future__ import annotations

import os
import stat as st_mod

from ctrfs.overlay.diff import Change, file_type, stat_different
from ctrfs.rootfs.base import Root, WarnFn, join


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
