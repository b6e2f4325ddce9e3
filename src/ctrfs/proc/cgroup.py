"""``/proc/<pid>/cgroup`` (cgroups(7)) and the container IDs runtimes encode in cgroup paths.

Read from the host's cgroup namespace the paths are absolute. Shapes recognised (cgroupfs and
systemd drivers, cgroup v1 and v2):

- Docker: ``/docker/<id>``, ``/system.slice/docker-<id>.scope``
- podman/libpod: ``/machine.slice/libpod-<id>.scope[/container]``, ``/libpod_parent/libpod-<id>``
- containerd CRI: ``/kubepods/<qos>/pod<uid>/<id>``, ``…-pod<uid>.slice/cri-containerd-<id>.scope``
- CRI-O: ``…/crio-<id>.scope``, ``/kubepods/…/pod<uid>/crio-<id>``
- LXC: ``/lxc.payload.<name>`` (LXC 4+), ``/lxc/<name>`` (older); the ID is the container name
- systemd-nspawn: ``…/systemd-nspawn@<name>.service/payload`` (the unit name escapes ``-``)

Pod UIDs in systemd slice names have ``-`` replaced by ``_`` (kubelet's escaping); we undo it.
"""

from __future__ import annotations

import os
import re

from ctrfs._record import dataclass
from ctrfs.proc.mountinfo import ParseError


@dataclass(frozen=True)
class CgroupLine:
    hierarchy: int
    controllers: tuple[str, ...]
    path: str


@dataclass(frozen=True)
class ContainerRef:
    """What a cgroup path says about the container a process belongs to."""

    id: str
    runtime: str | None  # docker, podman, containerd, cri-o, or None when only the shape is known
    pod_uid: str | None = None


def parse_cgroup(data: bytes) -> list[CgroupLine]:
    """Parse ``hierarchy-ID:controller-list:cgroup-path`` lines. Raises only ParseError."""
    out = []
    for line in data.split(b"\n"):
        if not line:
            continue
        hier, sep1, rest = line.partition(b":")
        ctrls, sep2, path = rest.partition(b":")
        if not (sep1 and sep2):
            raise ParseError(f"cgroup line without two colons: {line[:200]!r}")
        try:
            hierarchy = int(hier)
        except ValueError as err:
            raise ParseError(f"cgroup line with bad hierarchy: {line[:200]!r}") from err
        controllers = tuple(c.decode("ascii", "replace") for c in ctrls.split(b",") if c)
        out.append(CgroupLine(hierarchy, controllers, os.fsdecode(path)))
    return out


_HEX64 = r"[0-9a-f]{64}"
# Tried in order, the first that matches wins; each with a literal the pattern needs, checked
# first. Sources, not compiled patterns: re compiles one when a path first has its literal (and
# caches it), so a host of Docker containers compiles one or two, not all of them (~3 ms of every
# cat and ps otherwise: re's compiler is pure Python).
_PATTERNS: tuple[tuple[str, str, str | None], ...] = (
    ("docker-", rf"(?:^|/)docker-({_HEX64})\.scope(?:/|$)", "docker"),
    ("docker/", rf"(?:^|/)docker/({_HEX64})(?:/|$)", "docker"),
    ("libpod-", rf"(?:^|/)libpod-({_HEX64})\.scope(?:/|$)", "podman"),
    ("libpod-", rf"(?:^|/)libpod-({_HEX64})(?:/|$)", "podman"),
    ("cri-containerd-", rf"(?:^|/)cri-containerd-({_HEX64})\.scope(?:/|$)", "containerd"),
    ("crio-", rf"(?:^|/)crio-({_HEX64})(?:\.scope)?(?:/|$)", "cri-o"),
    ("pod", rf"(?:^|/)pod[0-9a-f_-]{{36}}(?:\.slice)?/({_HEX64})(?:/|$)", None),
    (".scope", rf"(?:^|/)(?:[a-z0-9-]+-)?({_HEX64})\.scope(?:/|$)", None),
    ("/lxc.payload", r"^/lxc\.payload[./]([A-Za-z0-9_.-]+)(?:/|$)", "lxc"),
    ("/lxc/", r"^/lxc/([A-Za-z0-9_.-]+)(?:/|$)", "lxc"),
    ("systemd-nspawn@", r"(?:^|/)systemd-nspawn@([^/]+)\.service/payload(?:/|$)", "nspawn"),
)
_POD = r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"


def container_ref_from_path(path: str) -> ContainerRef | None:
    for needle, pattern, runtime in _PATTERNS:
        m = re.search(pattern, path) if needle in path else None
        if m:
            pod = re.search(_POD, path) if "pod" in path else None
            pod_uid = pod.group(1).replace("_", "-") if pod else None
            ident = m.group(1)
            if runtime == "nspawn":  # systemd unit escaping (systemd.unit(5)): \x2d is "-"
                ident = re.sub(r"\\x([0-9a-f]{2})", lambda e: chr(int(e.group(1), 16)), ident)
            return ContainerRef(ident, runtime, pod_uid)
    return None


_ANY_ID = re.compile(rb"[0-9a-f]{64}")


def container_ref_fast(data: bytes) -> tuple[ContainerRef | None, str | None] | None:
    """(ref, path) straight from a cgroup file's bytes, or None when a full parse is needed.

    Nearly every host process has no 64-hex ID in its cgroup file, and a container's processes
    show the same path on every line: checking one line avoids parsing all of them.
    """
    m = _ANY_ID.search(data)
    if m is None:
        return None
    start = data.rfind(b"\n", 0, m.start()) + 1
    end = data.find(b"\n", m.end())
    line = data[start:end if end >= 0 else len(data)]
    parts = line.split(b":", 2)
    if len(parts) != 3:
        return None
    path = os.fsdecode(parts[2])
    ref = container_ref_from_path(path)
    return (ref, path) if ref is not None else None


def container_ref(lines: list[CgroupLine]) -> ContainerRef | None:
    """The container a process's cgroup lines point at, if any shape matches."""
    # The unified (v2) line comes last and is "/" on a v1 host: try the named hierarchies too.
    for line in sorted(lines, key=lambda cl: cl.path == "/"):
        ref = container_ref_from_path(line.path)
        if ref:
            return ref
    return None


def cgroup_path(lines: list[CgroupLine]) -> str | None:
    """One representative cgroup path: the v2 one when set, else pids/memory/first v1 one."""
    by_ctrl = {c: cl.path for cl in lines for c in cl.controllers}
    for cl in lines:
        if cl.hierarchy == 0 and cl.path != "/":
            return cl.path
    for name in ("pids", "memory", "cpu", "devices"):
        if name in by_ctrl:
            return by_ctrl[name]
    return lines[0].path if lines else None
