"""Find every container on the host: a /proc scan joined with each runtime's on-disk state.

1. /proc scan: each process's cgroup path names its container (proc/cgroup.py); processes whose
   cgroup says nothing but whose mount namespace has a root other than the host's are grouped by
   mount namespace (a runtime-less ``unshare`` + ``pivot_root`` container, or an unknown runtime).
2. Runtime records (runtimes/) give names, images, pods and layer dirs; they are matched to the
   process groups by ID, or by the main PID they record.
No daemon is called, so this works while dockerd is stopped or hung.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

from ctrfs.container import LAZY, Container, RootFS
from ctrfs.errors import AccessDenied
from ctrfs.proc.cgroup import (
    ContainerRef,
    cgroup_path,
    container_ref,
    container_ref_fast,
    parse_cgroup,
)
from ctrfs.proc.mountinfo import (
    Mount,
    ParseError,
    find_root_mount,
    overlay_dirs,
    parse_mountinfo_line,
    unescape,
)
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
        g.pids.sort()
    return groups


def _load_stats(g: _Group, proc: str, pids: list[int]) -> None:
    for pid in pids:
        if pid in g.stats:
            continue
        data = _read(f"{proc}/{pid}/stat")
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


@functools.lru_cache(maxsize=4)
def _mount_index(data: bytes) -> dict[tuple[bytes, bytes], bytes]:
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
_parse_host_line = functools.lru_cache(maxsize=1024)(parse_mountinfo_line)


class _HostMounts:
    """The host's mount table, read once: where an overlay is mounted on the host, and the
    overlay mount itself (its options name the layers) for a device number."""

    def __init__(self, roots: Roots) -> None:
        self._roots = roots
        self.links: dict[str, str] = {}  # short link → layer dir; image layers are shared
        self._index: dict[tuple[bytes, bytes], bytes] | None = None

    def line(self, major: int, minor: int, root: str = "/") -> bytes | None:
        """The raw mountinfo line of the first host mount of device major:minor at ``root``."""
        if self._index is None:
            data = _read(f"{self._roots.proc}/{host_pid(self._roots)}/mountinfo") or b""
            self._index = _mount_index(data)
        return self._index.get((b"%d:%d" % (major, minor), os.fsencode(root)))

    def find(self, major: int, minor: int, root: str) -> str | None:
        """Where the host sees directory ``root`` of device major:minor: the mount point of a host
        mount of exactly that root, else below the host mount whose root holds it (a runtime
        that bind-mounts a plain rootfs directory, such as runc from an OCI bundle)."""
        line = self.line(major, minor, root)
        if line is not None:
            return os.fsdecode(unescape(line.split(b" ", 5)[4]))
        from ctrfs.mounts import rel_under

        dev = b"%d:%d" % (major, minor)
        best: tuple[str, str, bytes] | None = None
        for (d, host_root), hline in (self._index or {}).items():
            if d != dev:
                continue
            hroot = os.fsdecode(host_root)
            rel = rel_under(root, hroot)
            if rel is not None and (best is None or len(hroot) > len(best[0])):
                best = (hroot, rel, hline)
        if best is None:
            return None
        mount_point = os.fsdecode(unescape(best[2].split(b" ", 5)[4]))
        return os.path.join(mount_point, best[1]) if best[1] else mount_point


def _overlay_from_host(pid: int, roots: Roots, hm: _HostMounts) -> Mount | None:
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
    try:
        return _parse_host_line(line)
    except ParseError:
        return None


def rootfs_of(pid: int, roots: Roots, host_mounts: _HostMounts | None = None) -> RootFS | None:
    hm = host_mounts or _HostMounts(roots)
    m = _overlay_from_host(pid, roots, hm)
    merged = m.mount_point if m is not None else None
    if m is None:
        data = _read(f"{roots.proc}/{pid}/mountinfo")
        if data is None:
            return None
        try:
            m = find_root_mount(data)
        except ParseError:
            return None
        if m is None:
            return None
        merged = hm.find(m.major, m.minor, m.root)
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


def rootfs_for(c: Container) -> RootFS | None:
    """The root filesystem of a container: its live root mount, else what its runtime records."""
    fs = None
    if c.pid is not None:
        hm = c._host_mounts if isinstance(c._host_mounts, _HostMounts) else None
        fs = rootfs_of(c.pid, c.roots, hm)
    return fs or _rootfs_from_record(c.record)


def _rootfs_from_record(rec: ContainerRecord) -> RootFS | None:
    if rec.upperdir is None and rec.lowerdirs is None:
        return None
    return RootFS(fstype="overlay", source="overlay", lowerdirs=list(rec.lowerdirs or []),
                  upperdir=rec.upperdir, workdir=rec.workdir)


def namespaces_for(c: Container) -> dict[str, int]:
    return namespaces_of(c.pid, c.roots) if c.pid is not None else {}


def namespaces_of(pid: int, roots: Roots) -> dict[str, int]:
    out = {}
    for kind in NS_TYPES:
        ino = _ns_inode(roots.proc, pid, kind)
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
        c = _build(rec, g, roots, host_mounts, details)
        if c is not None:
            out.append(c)

    for g in groups.values():
        if g.key in used:
            continue
        ref = g.ref
        runtime = (ref.runtime if ref else None) or ("unknown" if ref else "none")
        rec = ContainerRecord(id=ref.id if ref else g.key, runtime=runtime, state="running",
                              sources=["/proc"])
        c = _build(rec, g, roots, host_mounts, details)
        if c is not None:
            out.append(c)
    out.sort(key=lambda c: (c.runtime, c.name or "", c.id))
    return out


def _build(rec: ContainerRecord, g: _Group, roots: Roots, host_mounts: _HostMounts,
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
        from ctrfs.runtimes.base import Pod

        pod = Pod(namespace=None, name=None, uid=g.ref.pod_uid, container=None)
    return Container(
        id=rec.id, runtime=rec.runtime, name=rec.name, image=rec.image, state=state,
        pid=main, start_time=st.start_time if st else None, pids=list(g.pids),
        namespaces=namespaces_of(main, roots) if details else LAZY,
        cgroup=g.cgroup, pod=pod, rootfs=LAZY, record=rec, roots=roots,
        _host_mounts=host_mounts,
    )
