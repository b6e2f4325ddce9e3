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

from ctrfs._record import dataclass, field
from ctrfs.errors import AccessDenied, UsageError
from ctrfs.hostmounts import HostMounts, host_pid, ns_inode, read_bytes
from ctrfs.model import LAZY, Container, RootFS
from ctrfs.proc.cgroup import (
    ContainerRef,
    cgroup_path,
    container_ref,
    container_ref_fast,
    parse_cgroup,
)
from ctrfs.proc.mountinfo import Mount, ParseError, find_root_mount, overlay_dirs
from ctrfs.proc.stat import ProcStat, parse_stat, parse_status
from ctrfs.runtimes import REGISTRY, nspawn
from ctrfs.runtimes.base import ContainerRecord, Pod, Roots
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


_UNREADABLE_ROOT = (-1, -1)


def _root_id(proc: str, pid: int | str) -> tuple[int, int] | None:
    try:
        st = os.stat(f"{proc}/{pid}/root")
    except PermissionError:
        # A root that refuses even us is not the host's: a rootless fuse-overlayfs mount lets
        # no one outside its user namespace in (fs/fuse fuse_allow_current_process).
        return _UNREADABLE_ROOT
    except OSError:
        return None
    return st.st_dev, st.st_ino


def scan_proc(roots: Roots) -> dict[str, _Group]:
    """Group the host's processes by container. Keys: container ID, or ``mnt:<inode>``."""
    proc = roots.proc
    try:
        entries = os.listdir(proc)
    except PermissionError as err:
        raise AccessDenied(path=proc) from err
    except OSError as err:  # a --host-root or --proc that names no procfs
        raise UsageError(f"no procfs at {proc} (check --host-root / --proc)") from err
    hp = host_pid(roots)
    host_mnt = ns_inode(proc, hp)
    host_root = _root_id(proc, hp)
    groups: dict[str, _Group] = {}
    other_roots: dict[int, bool] = {}  # mnt ns inode → is a separate root fs
    # Processes of one container (and most host processes) have byte-identical cgroup files:
    # parse each distinct content once.
    parsed: dict[bytes, tuple[ContainerRef | None, str | None]] = {}
    for name in entries:
        if not name.isdigit():
            continue
        data = read_bytes(f"{proc}/{name}/cgroup")
        if data is None:
            continue
        known = parsed.get(data)
        if known is None:
            known = container_ref_fast(data)
            if known is None:
                try:
                    lines = parse_cgroup(data)
                except ParseError:
                    continue
                known = (container_ref(lines), cgroup_path(lines))
            parsed[data] = known
        ref, cg_path = known
        pid = int(name)
        if ref is not None:
            key = ref.id
            mnt = None
        else:
            mnt = ns_inode(proc, name)
            if mnt is None or mnt == host_mnt:
                continue
            separate = other_roots.get(mnt)
            if separate is None:
                # A service with its own mount namespace (systemd PrivateTmp=) keeps the host's
                # root; a container has a root of its own.
                separate = other_roots[mnt] = _root_id(proc, name) not in (None, host_root)
            if not separate:
                continue
            st_data = read_bytes(f"{proc}/{name}/stat")
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
        g.pids.sort()
    return groups


def _load_stats(g: _Group, proc: str, pids: list[int]) -> None:
    for pid in pids:
        if pid in g.stats:
            continue
        data = read_bytes(f"{proc}/{pid}/stat")
        if data:
            try:
                g.stats[pid] = parse_stat(data)
            except ParseError:
                pass


def _main_pid(g: _Group, proc: str, hint: int | None) -> int | None:
    """The container's main process; only its stat is read when the runtime names it (its start
    time pins the identity, so it is read now, not when first used)."""
    if hint is not None and hint in g.pids:
        _load_stats(g, proc, [hint])
        if hint in g.stats:
            return hint
    _load_stats(g, proc, g.pids)
    g.pids = [p for p in g.pids if p in g.stats]
    if not g.pids:
        return None
    members = set(g.pids)
    tops = [p for p in g.pids if g.stats[p].ppid not in members]
    if g.ref is None:
        # No runtime names the main process: take PID 1 of the container's own PID namespace.
        # (`unshare --pid --fork` leaves its parent in the new mount namespace, above that init.)
        for p in g.pids[:256]:
            status = read_bytes(f"{proc}/{p}/status")
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


def _overlay_from_host(pid: int, roots: Roots, hm: HostMounts) -> Mount | None:
    """The container's root overlay as the host's mount table shows it, or None.

    Every overlay mount is a superblock of its own (an anonymous device), so the device of
    /proc/<pid>/root names it. Docker and podman mount it in the host namespace too; this costs
    one stat instead of reading the container's mountinfo, which the kernel formats mount by
    mount (about 100 us each on a small VM, more than the whole cgroup scan per process).
    """
    try:
        dev = os.stat(f"{roots.proc}/{pid}/root").st_dev
    except OSError:
        return None
    line = hm.line(os.major(dev), os.minor(dev))
    if line is None or b" - overlay " not in line:
        return None
    return hm.mount(os.major(dev), os.minor(dev))


def rootfs_of(pid: int, roots: Roots, host_mounts: HostMounts | None = None) -> RootFS | None:
    hm = host_mounts or HostMounts(roots)
    m = _overlay_from_host(pid, roots, hm)
    merged = m.mount_point if m is not None else None
    if m is None:
        data = read_bytes(f"{roots.proc}/{pid}/mountinfo")
        if data is None:
            return None
        try:
            m = find_root_mount(data)
        except ParseError:
            return None
        if m is None:
            return None
        merged = hm.find_mount(m)[0]
    fs = RootFS(fstype=m.fstype, source=m.source, options=m.super_options, mount=m)
    if m.fstype == "overlay":
        lowers, upper, work = overlay_dirs(m)
        fs.lowerdirs_raw = lowers
        links = hm.links
        for p in lowers:
            if p not in links:
                links[p] = resolve_short_link(p, roots)
        fs.lowerdirs = [links[p] for p in lowers]
        fs.upperdir, fs.workdir = upper, work
    if merged is not None and merged != "/":
        fs.merged = merged
    return fs


class _Loader:
    """Loads the facts a Container defers (its root mount, its namespaces) when first asked.
    Discovery lists many containers; reading every one's mountinfo and namespaces costs more than
    the whole /proc scan, so it waits. One loader serves one discovery: the host mount table is
    read once for all of its containers."""

    def __init__(self, host_mounts: HostMounts) -> None:
        self.host_mounts = host_mounts

    def rootfs(self, c: Container) -> RootFS | None:
        """The root filesystem of a container: its live root mount, else what its runtime records."""
        fs = rootfs_of(c.pid, c.roots, self.host_mounts) if c.pid is not None else None
        return fs or _rootfs_from_record(c.record)

    def namespaces(self, c: Container) -> dict[str, int]:
        return namespaces_of(c.pid, c.roots) if c.pid is not None else {}


def _rootfs_from_record(rec: ContainerRecord) -> RootFS | None:
    if rec.upperdir is None and rec.lowerdirs is None:
        return None
    return RootFS(fstype="overlay", source="overlay", lowerdirs=list(rec.lowerdirs or []),
                  upperdir=rec.upperdir, workdir=rec.workdir)


def namespaces_of(pid: int, roots: Roots) -> dict[str, int]:
    out = {}
    for kind in NS_TYPES:
        ino = ns_inode(roots.proc, pid, kind)
        if ino is not None:
            out[kind] = ino
    return out


# capabilities(7) bit numbers
_NEEDED_CAPS = {"CAP_DAC_READ_SEARCH": 2, "CAP_SYS_PTRACE": 19}


def check_privileges() -> None:
    """Raise AccessDenied naming what is missing: other users' /proc/<pid>/root and runtime
    state need CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (root has both)."""
    try:
        with open("/proc/self/status", "rb") as f:
            cap_eff = int(parse_status(f.read()).get("CapEff", "0"), 16)
    except (OSError, ValueError):
        return
    missing = [name for name, bit in _NEEDED_CAPS.items() if not cap_eff >> bit & 1]
    if missing:
        raise AccessDenied(
            "permission denied: needs root (or " + " and ".join(missing) + "); run it with sudo")


def discover(roots: Roots | None = None, *, include_stopped: bool = False,
             details: bool = False) -> list[Container]:
    """Every container on the host. ``details`` also reads all namespace inodes."""
    roots = roots or Roots()
    check_privileges()
    groups = scan_proc(roots)
    records = collect_records(roots)
    loader = _Loader(HostMounts(roots))
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
        c = _build(rec, g, roots, loader, details)
        if c is not None:
            out.append(c)

    for g in groups.values():
        if g.key in used:
            continue
        ref = g.ref
        machine: ContainerRecord | None = None
        if ref is None or ref.runtime == "nspawn":
            # No runtime state names it: an nspawn payload says so in its environment.
            main = _main_pid(g, roots.proc, None)
            machine = nspawn.machine_of(roots, main) if main is not None else None
        if machine is None:
            runtime = (ref.runtime if ref else None) or ("unknown" if ref else "none")
            named = ref is not None and ref.runtime in ("lxc", "nspawn")  # their IDs are names
            machine = ContainerRecord(id=ref.id if ref else g.key, runtime=runtime, state="running",
                                      name=ref.id if named and ref else None, sources=["/proc"])
        c = _build(machine, g, roots, loader, details)
        if c is not None:
            out.append(c)
    out.sort(key=lambda c: (c.runtime, c.name or "", c.id))
    return out


def _build(rec: ContainerRecord, g: _Group, roots: Roots, loader: _Loader,
           details: bool) -> Container | None:
    main = _main_pid(g, roots.proc, rec.pid)
    if main is None:
        return None
    state = rec.state if rec.state in ("running", "paused", "restarting") else "running"
    st = g.stats.get(main)
    if st is not None and st.state == "T" and state == "running":
        state = "paused"
    pod = rec.pod
    if pod is None and g.ref and g.ref.pod_uid:
        pod = Pod(namespace=None, name=None, uid=g.ref.pod_uid, container=None)
    return Container(
        id=rec.id, runtime=rec.runtime, name=rec.name, image=rec.image, state=state,
        pid=main, start_time=st.start_time if st else None, pids=list(g.pids),
        namespaces=namespaces_of(main, roots) if details else LAZY,
        cgroup=g.cgroup, pod=pod, rootfs=LAZY, record=rec, roots=roots, loader=loader,
    )
