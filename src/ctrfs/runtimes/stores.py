"""Where containers/storage keeps its state: root's store and every user's rootless store.

Root's store is ``/var/lib/containers/storage`` (run root ``/run/containers/storage``). A rootless
podman user's is ``~/.local/share/containers/storage`` with its run root in
``$XDG_RUNTIME_DIR/containers`` (``/run/user/UID/containers``; podman falls back to
``/tmp/podman-run-UID`` without it), unless ``~/.config/containers/storage.conf`` says otherwise
(containers-storage.conf(5): ``[storage]`` ``graphroot``, ``runroot``, ``driver``). One store can
hold several drivers' state side by side (``overlay-containers/``, ``vfs-containers/``...).

A rootless store's files carry the host ids of the user's namespace: container uid 0 is the user,
1..N are the user's ``/etc/subuid`` range (podman's default mapping; subuid(5)).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from ctrfs._record import dataclass, field
from ctrfs.runtimes.base import Roots, listdir

DRIVERS = ("overlay", "vfs")
# containers/storage ids are 64 hex digits; anything else in a user-writable listing is not
# used to build a path.
VALID_ID = re.compile(r"^[0-9a-f]{64}$")
_MAX_CONF = 1 << 20


@dataclass(frozen=True)
class Store:
    graphroot: str  # as this process opens it
    runroot: str
    driver: str
    user: str | None = None
    uid: int | None = None  # None: root's system store
    uid_map: list[tuple[int, int, int]] = field(default_factory=list)
    gid_map: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def rootless(self) -> bool:
        return self.uid not in (None, 0)


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: str


def host_users(roots: Roots) -> list[User]:
    """Users of the host's /etc/passwd (read as text, never NSS) with a home directory."""
    try:
        with open(roots.host_path("/etc/passwd"), "rb") as f:
            data = f.read(_MAX_CONF)
    except OSError:
        return []
    out = []
    for line in data.decode("utf-8", "replace").splitlines():
        parts = line.split(":")
        if len(parts) < 7 or not parts[2].isdigit() or not parts[5].startswith("/"):
            continue
        out.append(User(parts[0], int(parts[2]), int(parts[3]) if parts[3].isdigit() else 0, parts[5]))
    return out


def user_name(roots: Roots, uid: int) -> str | None:
    """The host's name for ``uid`` (host /etc/passwd as text), or None."""
    return next((u.name for u in host_users(roots) if u.uid == uid), None)


def sub_ids(roots: Roots, file: str, user: User) -> list[tuple[int, int]]:
    """(start, count) ranges of /etc/subuid or /etc/subgid for ``user`` (by name or uid)."""
    try:
        with open(roots.host_path(file), "rb") as f:
            data = f.read(_MAX_CONF).decode("utf-8", "replace")
    except OSError:
        return []
    out = []
    for line in data.splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in (user.name, str(user.uid)) \
                and parts[1].isdigit() and parts[2].isdigit():
            out.append((int(parts[1]), int(parts[2])))
    return out


def rootless_map(own: int, ranges: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """podman's default rootless mapping: 0 → the user, then the sub-id ranges from 1 up."""
    out = [(0, own, 1)]
    inside = 1
    for start, count in ranges:
        out.append((inside, start, count))
        inside += count
    return out


def _conf(path: str) -> dict[str, str]:
    try:
        with open(path, "rb") as f:
            text = f.read(_MAX_CONF).decode("utf-8", "replace")
    except OSError:
        return {}
    # Imported here: only users with a storage.conf need a TOML parser (start-up of discovery).
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return {}
    sect = data.get("storage")
    if not isinstance(sect, dict):
        return {}
    return {k: v for k, v in sect.items() if isinstance(v, str)}


def _drivers(graphroot: str) -> list[str]:
    names = set(listdir(graphroot))
    return [d for d in DRIVERS if f"{d}-containers" in names or f"{d}-images" in names]


def storage_stores(roots: Roots) -> Iterator[Store]:
    """Root's store, then each user's (in /etc/passwd order), one Store per driver present."""
    for driver in _drivers(roots.storage):
        yield Store(roots.storage, roots.storage_run, driver, user="root", uid=0)
    for user in host_users(roots):
        if user.uid == 0:
            continue
        home = roots.host_path(user.home)
        conf = _conf(os.path.join(home, ".config", "containers", "storage.conf"))
        graph = conf.get("graphroot") or os.path.join(home, ".local", "share", "containers", "storage")
        if conf.get("graphroot"):
            graph = roots.host_path(graph.replace("$HOME", user.home))
        if not os.path.isdir(graph):
            continue
        drivers = _drivers(graph)
        if not drivers:
            continue
        runroot = conf.get("runroot")
        if runroot:
            candidates = [roots.host_path(runroot)]
        else:
            candidates = [roots.host_path(p) for p in (
                f"/run/user/{user.uid}/containers", f"/tmp/podman-run-{user.uid}/containers",
                f"/tmp/containers-user-{user.uid}/containers")]
        run = next((p for p in candidates if os.path.isdir(p)), candidates[0])
        umap = rootless_map(user.uid, sub_ids(roots, "/etc/subuid", user))
        gmap = rootless_map(user.gid, sub_ids(roots, "/etc/subgid", user))
        for driver in drivers:
            yield Store(graph, run, driver, user=user.name, uid=user.uid, uid_map=umap, gid_map=gmap)
