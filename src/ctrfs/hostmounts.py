"""The host's mount table: read once, indexed by (device, root), and the one longest-root match.

A directory of a filesystem shows in a mountinfo line as (device, root): the device of the
filesystem and the directory of it that is mounted (proc(5), "mountinfo"). Where the host sees a
container's directory is the mount point of the host mount of the same device whose root is the
longest prefix of it, plus the rest of the path (the technique of ``findmnt``). Discovery uses it for
the root filesystem's merged dir, ``mounts`` for the host source of binds and volumes.
"""

from __future__ import annotations

import functools
import os

from ctrfs.proc.mountinfo import Mount, ParseError, parse_mountinfo, parse_mountinfo_line, unescape
from ctrfs.runtimes.base import Roots, read_all


def read_bytes(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return read_all(fd)
    except OSError:
        return None
    finally:
        os.close(fd)


def ns_inode(proc: str, pid: int | str, kind: str = "mnt") -> int | None:
    """The inode of ``/proc/<pid>/ns/<kind>`` (``mnt:[4026531840]``), or None."""
    try:
        link = os.readlink(f"{proc}/{pid}/ns/{kind}")
    except OSError:
        return None
    start = link.find("[")
    try:
        return int(link[start + 1:-1]) if start >= 0 else None
    except ValueError:
        return None


def host_pid(roots: Roots) -> int:
    """A process in the host's initial namespaces: init, or kthreadd when init is not readable
    (some VM inits hide their /proc entries; kernel threads always live in the initial ones)."""
    return 1 if ns_inode(roots.proc, 1) is not None else 2


def rel_under(path: str, root: str) -> str | None:
    """``path`` relative to ``root`` when it is ``root`` or below it (component-wise)."""
    if root == "/":
        return path.lstrip("/")
    if path == root:
        return ""
    if path.startswith(root.rstrip("/") + "/"):
        return path[len(root.rstrip("/")) + 1:]
    return None


@functools.lru_cache(maxsize=4)
def _index(data: bytes) -> dict[tuple[bytes, bytes], bytes]:
    """(device, root) → first raw line of a mount table. Indexed on raw fields: a host with many
    containers has a long table, and only the lines actually asked for are parsed. Cached on the
    table's bytes, which stay the same until a mount comes or goes; callers must not mutate it."""
    index: dict[tuple[bytes, bytes], bytes] = {}
    for line in data.split(b"\n"):
        f = line.split(b" ", 5)
        if len(f) > 5:
            index.setdefault((f[2], unescape(f[3])), line)
    return index


# A host mount line parsed once per process: every discovery asks again for the same overlays.
# The line's bytes are the key, so a remount (new options, new layers) is a new entry; Mount is frozen.
parse_line = functools.lru_cache(maxsize=1024)(parse_mountinfo_line)


class HostMounts:
    """The host's mount table, read on first use and then kept for the life of this object."""

    def __init__(self, roots: Roots) -> None:
        self.roots = roots
        self.links: dict[str, str] = {}  # overlay short link → layer dir; image layers are shared
        self._index: dict[tuple[bytes, bytes], bytes] | None = None

    @property
    def path(self) -> str:
        return f"{self.roots.proc}/{host_pid(self.roots)}/mountinfo"

    def index(self) -> dict[tuple[bytes, bytes], bytes]:
        if self._index is None:
            self._index = _index(read_bytes(self.path) or b"")
        return self._index

    def line(self, major: int, minor: int, root: str = "/") -> bytes | None:
        """The raw mountinfo line of the first host mount of device major:minor at ``root``."""
        return self.index().get((b"%d:%d" % (major, minor), os.fsencode(root)))

    def mount(self, major: int, minor: int, root: str = "/") -> Mount | None:
        line = self.line(major, minor, root)
        if line is None:
            return None
        try:
            return parse_line(line)
        except ParseError:
            return None

    def find(self, major: int, minor: int, root: str) -> tuple[str, str] | None:
        """(host path, host mount point) of directory ``root`` of device major:minor: below the
        host mount of that device whose root is the longest prefix of ``root``; among equals the
        first (the original, not a later bind) wins. None when the host does not mount it."""
        exact = self.line(major, minor, root)
        if exact is not None:
            point = os.fsdecode(unescape(exact.split(b" ", 5)[4]))
            return point, point
        dev = b"%d:%d" % (major, minor)
        best: tuple[int, str, bytes] | None = None
        for (d, host_root), hline in self.index().items():
            if d != dev:
                continue
            rel = rel_under(root, os.fsdecode(host_root))
            if rel is not None and (best is None or len(host_root) > best[0]):
                best = (len(host_root), rel, hline)
        if best is None:
            return None
        point = os.fsdecode(unescape(best[2].split(b" ", 5)[4]))
        return (os.path.join(point, best[1]) if best[1] else point), point

    def find_mount(self, m: Mount) -> tuple[str | None, str | None]:
        """(host path, host mount point) of a container mount, or (None, None) when the host
        does not mount its filesystem (tmpfs, proc, a private overlay…)."""
        return self.find(m.major, m.minor, m.root) or (None, None)

    def mounts(self) -> list[Mount]:
        """Every host mount, parsed (for callers that list them all)."""
        try:
            return parse_mountinfo(read_bytes(self.path) or b"")
        except ParseError:
            return []
