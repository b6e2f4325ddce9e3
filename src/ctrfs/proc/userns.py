"""User namespaces: ``/proc/<pid>/uid_map``/``gid_map`` and the namespace's owner.

user_namespaces(7): each map line is ``ID-inside-ns ID-outside-ns length``; the initial namespace
shows ``0 0 4294967295``. A host id outside every range has no name inside: the kernel shows it as
the overflow id (``/proc/sys/kernel/overflowuid``, 65534).
"""

from __future__ import annotations

import os
import sys

from ctrfs._record import dataclass

OVERFLOW_ID = 65534
# ioctl_ns(2): NS_GET_OWNER_UID = _IO(0xb7, 0x4); the uid (in the caller's namespace) of whoever
# created the user namespace.
_NS_GET_OWNER_UID = 0xB704

MapLines = tuple[tuple[int, int, int], ...]  # (inside, outside, count)


def parse_id_map(data: bytes) -> MapLines:
    out = []
    for line in data.split(b"\n"):
        f = line.split()
        if len(f) == 3 and all(x.isdigit() for x in f):
            out.append((int(f[0]), int(f[1]), int(f[2])))
    return tuple(out)


def is_identity(lines: MapLines) -> bool:
    return lines == ((0, 0, 4294967295),)


@dataclass(frozen=True)
class IdMap:
    """Host ids → the ids a user namespace sees (how the container itself shows ownership)."""

    uids: MapLines
    gids: MapLines

    @staticmethod
    def _inside(lines: MapLines, host: int) -> int:
        for inside, outside, count in lines:
            if outside <= host < outside + count:
                return inside + host - outside
        return OVERFLOW_ID

    def uid(self, host: int) -> int:
        return self._inside(self.uids, host)

    def gid(self, host: int) -> int:
        return self._inside(self.gids, host)

    def to_dict(self) -> dict[str, list[list[int]]]:
        return {"uid_map": [list(x) for x in self.uids], "gid_map": [list(x) for x in self.gids]}


def read_id_map(proc: str, pid: int) -> IdMap | None:
    """The id map of process ``pid``'s user namespace; None in the initial namespace."""
    try:
        with open(os.path.join(proc, str(pid), "uid_map"), "rb") as f:
            uids = parse_id_map(f.read())
        with open(os.path.join(proc, str(pid), "gid_map"), "rb") as f:
            gids = parse_id_map(f.read())
    except OSError:
        return None
    if is_identity(uids) and is_identity(gids):
        return None
    return IdMap(uids, gids)


def userns_owner(proc: str, pid: int) -> int | None:
    """The host uid owning ``pid``'s user namespace (0 for the initial one), or None."""
    # Imported here: only `ps`/`inspect` ask for owners; file commands start without it.
    import fcntl

    try:
        fd = os.open(os.path.join(proc, str(pid), "ns", "user"), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        raw = fcntl.ioctl(fd, _NS_GET_OWNER_UID, b"\0" * 4)
    except OSError:
        # The initial namespace has no owner (EPERM): it is root's.
        try:
            same = os.fstat(fd).st_ino == os.stat("/proc/self/ns/user").st_ino
        except OSError:
            same = False
        return 0 if same else None
    finally:
        os.close(fd)
    return int.from_bytes(raw, sys.byteorder)  # a uid_t
