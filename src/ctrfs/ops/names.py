"""User and group names from the container's own /etc/passwd and /etc/group.

Parsed as text read through the Root: never NSS (``pwd``/``grp`` would consult the host's
databases and, through nsswitch.conf, load ``libnss_*`` modules; CVE-2019-14271 is docker cp
loading them from the container). A missing, unreadable, non-regular or huge file just means
numeric IDs.
"""

from __future__ import annotations

from ctrfs._record import dataclass, field
from ctrfs.errors import CtrfsError
from ctrfs.rootfs.base import Root

MAX_DB_BYTES = 4 << 20  # a bigger /etc/passwd is not a real one; don't read it


def parse_db(data: bytes) -> dict[int, str]:
    """``name:x:ID:...`` lines → {ID: name}; the first name for an ID wins, as getpwuid does."""
    out: dict[int, str] = {}
    for line in data.split(b"\n"):
        if not line or line.startswith((b"#", b"+", b"-")):
            continue
        fields = line.split(b":")
        if len(fields) < 3:
            continue
        try:
            num = int(fields[2])
        except ValueError:
            continue
        out.setdefault(num, fields[0].decode("utf-8", "surrogateescape"))
    return out


def _read_db(root: Root, path: str) -> dict[int, str]:
    try:
        with root.open_file(path) as f:
            data = f.read(MAX_DB_BYTES + 1)
    except CtrfsError:
        return {}
    if len(data) > MAX_DB_BYTES:
        return {}
    return parse_db(data)


@dataclass
class Names:
    """uid/gid → name lookups for one container, loaded on first use."""

    root: Root
    _users: dict[int, str] | None = field(default=None, repr=False)
    _groups: dict[int, str] | None = field(default=None, repr=False)

    def user(self, uid: int) -> str | None:
        if self._users is None:
            self._users = _read_db(self.root, "/etc/passwd")
        return self._users.get(uid)

    def group(self, gid: int) -> str | None:
        if self._groups is None:
            self._groups = _read_db(self.root, "/etc/group")
        return self._groups.get(gid)
