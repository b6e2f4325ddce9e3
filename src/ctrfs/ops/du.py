"""du: disk usage of a tree inside a container, hardlinked files counted once."""

from __future__ import annotations

import math
import stat as stat_mod
from collections.abc import Iterator

from ctrfs._record import dataclass
from ctrfs.ops.listing import text
from ctrfs.rootfs.base import PathArg, Root, WarnFn

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


@dataclass
class Usage:
    path: str
    bytes: int  # st_blocks * 512, or the sum of st_size with apparent sizes
    is_dir: bool

    def to_dict(self) -> dict[str, Any]:
        return {"path": text(self.path), "bytes": self.bytes, "is_dir": self.is_dir}


def human(n: int) -> str:
    """du -h: powers of 1024, one decimal below 10, rounded up as GNU du does."""
    units = "KMGTPE"
    if n < 1024:
        return str(n)
    value = float(n)
    for u in units:
        value /= 1024
        if value < 1024 or u == units[-1]:
            if value < 10:
                return f"{math.ceil(value * 10) / 10:.1f}{u}"
            return f"{math.ceil(value)}{u}"
    return str(n)


def du(root: Root, path: PathArg = "/", *, summarize: bool = False, apparent: bool = False,
       all_mounts: bool = False, on_warning: WarnFn | None = None) -> Iterator[Usage]:
    """Totals per directory, deepest first (du's order), then ``path`` itself last; with
    ``summarize`` only the latter. Each inode is counted once (hardlinks, like du). The walk
    stays on ``path``'s mount unless ``all_mounts`` (mount points themselves count)."""
    seen: set[tuple[int, int]] = set()
    # Open directories on the current branch: [path, depth, total]. Below the start, "path" is
    # the length of the directory's path within ``cur``, the path of the last directory
    # entered, of which every open directory's is a prefix: a 10,000-deep tree would otherwise
    # hold O(depth^2) bytes of paths.
    stack: list[list[Any]] = []
    cur = ""

    def name(d: list[Any]) -> str:
        return d[0] if isinstance(d[0], str) else cur[:d[0]]

    for e in root.walk(path, one_filesystem=not all_mounts, on_warning=on_warning):
        while stack and stack[-1][1] >= e.depth:
            done = stack.pop()
            if stack:
                stack[-1][2] += done[2]
            if not summarize or not stack:
                yield Usage(name(done), done[2], True)
        st = e.stat
        size = 0
        key = (st.st_dev, st.st_ino)
        if st.st_nlink <= 1 or stat_mod.S_ISDIR(st.st_mode) or key not in seen:
            if st.st_nlink > 1 and not stat_mod.S_ISDIR(st.st_mode):
                seen.add(key)
            size = st.st_size if apparent else st.st_blocks * 512
        if e.is_dir():
            cur = e.path
            stack.append([cur if e.depth == 0 else len(cur), e.depth, size])
        elif stack:
            stack[-1][2] += size
        else:
            yield Usage(e.path, size, False)  # du of a single file
    while stack:
        done = stack.pop()
        if stack:
            stack[-1][2] += done[2]
        if not summarize or not stack:
            yield Usage(name(done), done[2], True)
    root.check_alive()
