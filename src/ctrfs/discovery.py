"""Find every container on the host: a /proc scan joined with each runtime's on-disk state.

1. /proc scan: each process's cgroup path names its container (proc/cgroup.py); processes whose
   cgroup says nothing but whose mount namespace has a root other than the host's are grouped by
   mount namespace (a runtime-less ``unshare`` + ``pivot_root`` container, or an unknown runtime).
2. Runtime records (runtimes/) give names, images, pods and layer dirs; they are matched to the
   process groups by ID, or by the main PID they record.
No daemon is called, so this works while dockerd is stopped or hung.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ctrfs.container import Container, RootFS
from ctrfs.errors import AccessDenied
from ctrfs.proc.cgroup import ContainerRef, cgroup_path, container_ref, parse_cgroup
from ctrfs.proc.mountinfo import ParseError, find_root_mount, overlay_dirs, parse_mountinfo
from ctrfs.proc.stat import ProcStat, parse_stat, parse_status
from ctrfs.runtimes import REGISTRY
from ctrfs.runtimes.base import ContainerRecord, Roots
from ctrfs.runtimes.overlaydirs import resolve_short_link

NS_TYPES = ("cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "time", "user", "uts")


@dataclass
class _Group:
    key: str
    ref: ContainerRef | None
    mnt_ns: int | None
    cgroup: str | None
    pids: list[int] = field(default_factory=list)
    stats: dict[int, ProcStat] = field(default_factory=dict)


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _ns_inode(proc: str, pid: int | str, kind: str = "mnt") -> int | None:
    try:
        link = os.readlink(f"{proc}/{pid}/ns/{kind}")
    except OSError:
        return None
    # "mnt:[4026531840]"
    start = link.find("[")
    try:
        return int(link[start + 1:-1]) if start >= 0 else None
    except ValueError:
        return None


def _root_id(proc: str, pid: int | str) -> tuple[int, int] | None:
    try:
        st = os.stat(f"{proc}/{pid}/root")
    except OSError:
        return None
    return st.st_dev, st.st_ino


def host_pid(roots: Roots) -> int:
    """A process in the host's initial namespaces: init, or kthreadd when init is not readable
    (some VM inits hide their /proc entries; kernel threads always live in the initial ones)."""
    return 1 if _ns_inode(roots.proc, 1) is not None else 2


def scan_proc(roots: Roots) -> dict[str, _Group]:
    """Group the host's processes by container. Keys: container ID, or ``mnt:<inode>``."""
    proc = roots.proc
    try:
        entries = os.listdir(proc)
    except PermissionError as err:
        raise AccessDenied(path=proc) from err
    hp = host_pid(roots)
    host_mnt = _ns_inode(proc, hp)
    host_root = _root_id(proc, hp)
    groups: dict[str, _Group] = {}
    other_roots: dict[int, bool] = {}  # mnt ns inode → is a separate root fs
    # Processes of one container (and most host processes) have byte-identical cgroup files:
    # parse each distinct content once.
    parsed: dict[bytes, tuple[ContainerRef | None, str | None]] = {}
    for name in entries:
        if not name.isdigit():
            continue
        data = _read(f"{proc}/{name}/cgroup")
        if data is None:
            continue
        known = parsed.get(data)
        if known is None:
            try:
                lines = parse_cgroup(data)
            except ParseError:
                continue
            known = parsed[data] = (container_ref(lines), cgroup_path(lines))
        ref, cg_path = known
        pid = int(name)
        if ref is not None:
            key = ref.id
            mnt = None
        else:
            mnt = _ns_inode(proc, name)
            if mnt is None or mnt == host_mnt:
                continue
            separate = other_roots.get(mnt)
            if separate is None:
                # A service with its own mount namespace (systemd PrivateTmp=) keeps the host's
                # root; a container has a root of its own.
                separate = other_roots[mnt] = _root_id(proc, name) not in (None, host_root)
            if not separate:
                continue
            st_data = _read(f"{proc}/{name}/stat")
            try:
                if st_data is None or parse_stat(st_data).is_kernel_thread:
                    continue  # kdevtmpfs has a mount namespace of its own
            except ParseError:
                continue
            key = f"mnt:{mnt}"
        g = groups.get(key)
        if g is None:
            g = groups[key] = _Group(key, ref, mnt, cg_path)
        g.pids.append(pid)
    for g in groups.values():
        for pid in g.pids:
            data = _read(f"{proc}/{pid}/stat")
            if data:
                try:
                    g.stats[pid] = parse_stat(data)
                except ParseError:
                    pass
        g.pids = sorted(p for p in g.pids if p in g.stats)
    return {k: g for k, g in groups.items() if g.pids}


def _main_pid(g: _Group, proc: str, hint: int | None) -> int:
    if hint is not None and hint in g.stats:
        return hint
    members = set(g.pids)
    tops = [p for p in g.pids if g.stats[p].ppid not in members]
    if len(tops) > 1:
        # PID 1 of the container's PID namespace is its init (an `unshare --fork` parent sits
        # above it in the same mount namespace but outside the new PID namespace).
        for p in tops + [p for p in g.pids if p not in tops]:
            status = _read(f"{proc}/{p}/status")
            if status:
                nspid = parse_status(status).get("NSpid", "").split()
                if len(nspid) > 1 and nspid[-1] == "1":
                    return p
    candidates = tops or g.pids
    return min(candidates, key=lambda p: (g.stats[p].start_time, p))


def collect_records(roots: Roots) -> list[ContainerRecord]:
    by_id: dict[str, ContainerRecord] = {}
    for _name, discover in REGISTRY:
        # Later (lower-level) runtimes skip parsing state of IDs already described.
        for rec in discover(roots, by_id.keys()):
            have = by_id.get(rec.id)
            if have is None:
                by_id[rec.id] = rec
            else:
                have.merge(rec)
    return list(by_id.values())


class _HostMounts:
    """The host's mount table, read once, for finding where an overlay is mounted on the host."""

    def __init__(self, roots: Roots) -> None:
        self._roots = roots
        self.links: dict[str, str] = {}  # short link → layer dir; image layers are shared
        self._index: dict[tuple[int, int, str], str] | None = None

    def find(self, major: int, minor: int, root: str) -> str | None:
        if self._index is None:
            data = _read(f"{self._roots.proc}/{host_pid(self._roots)}/mountinfo") or b""
            try:
                mounts = parse_mountinfo(data)
            except ParseError:
                mounts = []
            self._index = {}
            for m in mounts:
                self._index.setdefault((m.major, m.minor, m.root), m.mount_point)
        return self._index.get((major, minor, root))


def rootfs_of(pid: int, roots: Roots, host_mounts: _HostMounts | None = None) -> RootFS | None:
    data = _read(f"{roots.proc}/{pid}/mountinfo")
    if data is None:
        return None
    try:
        m = find_root_mount(data)
    except ParseError:
        return None
    if m is None:
        return None
    fs = RootFS(fstype=m.fstype, source=m.source, options=m.super_options, mount=m)
    hm = host_mounts or _HostMounts(roots)
    if m.fstype == "overlay":
        lowers, upper, work = overlay_dirs(m)
        fs.lowerdirs_raw = lowers
        links = hm.links
        for p in lowers:
            if p not in links:
                links[p] = resolve_short_link(p, roots)
        fs.lowerdirs = [links[p] for p in lowers]
        fs.upperdir, fs.workdir = upper, work
    merged = hm.find(m.major, m.minor, m.root)
    if merged is not None and merged != "/":
        fs.merged = merged
    return fs


def _rootfs_from_record(rec: ContainerRecord) -> RootFS | None:
    if rec.upperdir is None and rec.lowerdirs is None:
        return None
    return RootFS(fstype="overlay", source="overlay", lowerdirs=list(rec.lowerdirs or []),
                  upperdir=rec.upperdir, workdir=rec.workdir)


def namespaces_of(pid: int, roots: Roots) -> dict[str, int]:
    out = {}
    for kind in NS_TYPES:
        ino = _ns_inode(roots.proc, pid, kind)
        if ino is not None:
            out[kind] = ino
    return out


def discover(roots: Roots | None = None, *, include_stopped: bool = False,
             details: bool = False) -> list[Container]:
    """Every container on the host. ``details`` also reads all namespace inodes."""
    roots = roots or Roots()
    groups = scan_proc(roots)
    records = collect_records(roots)
    host_mounts = _HostMounts(roots)
    pid_to_group = {pid: g for g in groups.values() for pid in g.pids}
    used: set[str] = set()
    out: list[Container] = []

    for rec in records:
        g = groups.get(rec.id)
        if g is None and rec.pid is not None:
            g = pid_to_group.get(rec.pid)
        if g is not None and g.key in used:
            g = None
        if g is None:
            if rec.runtime in ("runc", "crun") or rec.runtime == "containerd" and rec.pid is None:
                continue  # a low-level runtime's leftover state without a live process
            if not include_stopped:
                continue
            state = rec.state if rec.state not in ("running", "paused", "unknown") else "exited"
            out.append(Container(
                id=rec.id, runtime=rec.runtime, name=rec.name, image=rec.image, state=state,
                pid=None, start_time=None, pids=[], namespaces={}, cgroup=None, pod=rec.pod,
                rootfs=_rootfs_from_record(rec), record=rec, roots=roots,
            ))
            continue
        used.add(g.key)
        out.append(_build(rec, g, roots, host_mounts, details))

    for g in groups.values():
        if g.key in used:
            continue
        ref = g.ref
        runtime = (ref.runtime if ref else None) or ("unknown" if ref else "none")
        rec = ContainerRecord(id=ref.id if ref else g.key, runtime=runtime, state="running",
                              sources=["/proc"])
        out.append(_build(rec, g, roots, host_mounts, details))
    out.sort(key=lambda c: (c.runtime, c.name or "", c.id))
    return out


def _build(rec: ContainerRecord, g: _Group, roots: Roots, host_mounts: _HostMounts,
           details: bool) -> Container:
    main = _main_pid(g, roots.proc, rec.pid)
    state = rec.state if rec.state in ("running", "paused", "restarting") else "running"
    if g.stats[main].state == "T" and state == "running":
        state = "paused"
    rootfs = rootfs_of(main, roots, host_mounts) or _rootfs_from_record(rec)
    nss = namespaces_of(main, roots) if details else {}
    if not nss:
        mnt = g.mnt_ns if g.mnt_ns is not None else _ns_inode(roots.proc, main)
        if mnt is not None:
            nss = {"mnt": mnt}
    pod = rec.pod
    if pod is None and g.ref and g.ref.pod_uid:
        from ctrfs.runtimes.base import Pod

        pod = Pod(namespace=None, name=None, uid=g.ref.pod_uid, container=None)
    return Container(
        id=rec.id, runtime=rec.runtime, name=rec.name, image=rec.image, state=state,
        pid=main, start_time=g.stats[main].start_time, pids=list(g.pids), namespaces=nss,
        cgroup=g.cgroup, pod=pod, rootfs=rootfs, record=rec, roots=roots,
    )
