"""What a session takes from the container's main process, read on the host before anything is joined.

Parsers here are pure (bytes in, values out) so tests feed them directly; :func:`read_target`
does the reading, with the container's process pinned by (pid, start time).
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass, field

from ctrfs.errors import ProcessGone, Unsupported, translate_oserror
from ctrfs.proc.cgroup import parse_cgroup
from ctrfs.proc.mountinfo import Mount, parse_mountinfo
from ctrfs.proc.stat import parse_stat, parse_status
from ctrfs.rootfs import _sys

# The order a session joins the container's namespaces in (runc's nsexec does the same): the user
# namespace first, so that the rest are joined with the capabilities it grants over them; the mount
# namespace next (the private view is built there); the PID namespace last, since setns(2) on it
# moves only children, and the helper forks into it. The cgroup namespace is joined by the session
# process itself, after it has (with --cgroup) moved into the container's cgroup.
JOIN_ORDER = ("user", "mnt", "uts", "ipc", "net", "pid")
NS_FLAGS = {
    "user": _sys.CLONE_NEWUSER, "mnt": _sys.CLONE_NEWNS, "uts": _sys.CLONE_NEWUTS,
    "ipc": _sys.CLONE_NEWIPC, "net": _sys.CLONE_NEWNET, "pid": _sys.CLONE_NEWPID,
    "cgroup": _sys.CLONE_NEWCGROUP,
}
DEFAULT_PATH = b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# environ(7) of a process is bounded by ARG_MAX-like limits; more than this is not an environment.
_MAX_ENVIRON = 4 << 20
# The resource limits the session takes over from the container's main process, as runc sets
# the OCI process.rlimits of a container on every process it starts in it.
RLIMITS = tuple(getattr(resource, n) for n in dir(resource) if n.startswith("RLIMIT_"))


@dataclass(frozen=True)
class Target:
    """The container's main process as a session needs it."""

    pid: int
    start_time: int
    name: str
    proc: str  # the procfs the pid is read from
    env: tuple[bytes, ...]  # K=V entries, in order
    uid: int
    gid: int
    groups: tuple[int, ...]
    cap_bnd: int
    no_new_privs: bool
    cap_last: int
    rlimits: dict[int, tuple[int, int]] = field(default_factory=dict)
    cgroup_procs: tuple[str, ...] = ()  # host paths of the container's cgroup.procs files


def parse_environ(data: bytes) -> tuple[bytes, ...]:
    """``/proc/<pid>/environ``: NUL-separated ``K=V`` entries; entries without ``=`` are dropped."""
    return tuple(e for e in data.split(b"\0") if b"=" in e[1:])


def parse_caps(status: dict[str, str]) -> tuple[int, bool]:
    """(CapBnd as a bit mask, NoNewPrivs) from a parsed ``/proc/<pid>/status``."""
    return int(status.get("CapBnd", "0"), 16), status.get("NoNewPrivs", "0").strip() == "1"


def parse_ids(status: dict[str, str]) -> tuple[int, int, tuple[int, ...]]:
    """(effective uid, effective gid, supplementary groups) from a parsed status."""
    uid = int(status["Uid"].split()[1])
    gid = int(status["Gid"].split()[1])
    groups = tuple(int(g) for g in status.get("Groups", "").split())
    return uid, gid, groups


def session_env(container_env: tuple[bytes, ...], extra: dict[bytes, bytes], toolbox_path: bytes
                ) -> dict[bytes, bytes]:
    """The session's environment: the container's, then ``extra``; PATH ends with the toolbox."""
    env: dict[bytes, bytes] = {}
    for entry in container_env:
        k, _, v = entry.partition(b"=")
        env[k] = v
    env.update(extra)
    path = env.get(b"PATH") or DEFAULT_PATH
    if toolbox_path not in path.split(b":"):
        path = path + b":" + toolbox_path
    env[b"PATH"] = path
    return env


def parse_id_map(data: bytes) -> list[tuple[int, int, int]]:
    """``/proc/<pid>/uid_map`` (user_namespaces(7)): (inside, outside, count) per line; read from
    the host, ``outside`` is a host ID."""
    out = []
    for line in data.split(b"\n"):
        fields = line.split()
        if len(fields) == 3:
            out.append((int(fields[0]), int(fields[1]), int(fields[2])))
    return out


def to_inside(host_id: int, id_map: list[tuple[int, int, int]]) -> int:
    """A host ID as the container's user namespace names it (65534, the overflow ID, if unmapped)."""
    for inside, outside, count in id_map:
        if outside <= host_id < outside + count:
            return inside + host_id - outside
    return 65534


def cgroup_procs_paths(cgroup_data: bytes, host_mountinfo: bytes) -> tuple[str, ...]:
    """Host paths of ``cgroup.procs`` of every hierarchy a process is in (v1 and v2, hybrid too).

    ``cgroup_data`` is the process's ``/proc/<pid>/cgroup`` as read from the host's cgroup
    namespace; ``host_mountinfo`` is the host's mount table, which says where each hierarchy is.
    """
    mounts = [m for m in parse_mountinfo(host_mountinfo) if m.fstype in ("cgroup", "cgroup2")]
    out: list[str] = []
    for line in parse_cgroup(cgroup_data):
        m = _hierarchy_mount(mounts, line.hierarchy, line.controllers)
        if m is None:
            continue
        rel = line.path
        if m.root != "/":
            if rel != m.root and not rel.startswith(m.root.rstrip("/") + "/"):
                continue  # this mount shows another part of the hierarchy
            rel = rel[len(m.root.rstrip("/")):]
        path = os.path.join(m.mount_point, rel.lstrip("/"), "cgroup.procs")
        if path not in out:
            out.append(path)
    return tuple(out)


def _hierarchy_mount(mounts: list[Mount], hierarchy: int, controllers: tuple[str, ...]) -> Mount | None:
    for m in mounts:
        if hierarchy == 0 and m.fstype == "cgroup2":
            return m
        if hierarchy != 0 and m.fstype == "cgroup" and controllers \
                and all(c in m.super_options for c in controllers):
            return m
    return None


def read_target(pid: int | None, start_time: int | None, name: str, proc: str = "/proc", *,
                want_cgroup: bool = False) -> Target:
    """Read what a session needs from the container's main process ``pid`` under ``proc``."""
    if pid is None:
        raise Unsupported("the container is not running; exec needs a running container", target=name)
    base = os.path.join(proc, str(pid))
    with translate_oserror(target=name, pid=pid, proc_scope=True):
        with open(os.path.join(base, "status"), "rb") as f:
            status = parse_status(f.read())
        with open(os.path.join(base, "environ"), "rb") as f:
            env = parse_environ(f.read(_MAX_ENVIRON))
        with open(os.path.join(proc, "sys/kernel/cap_last_cap"), "rb") as f:
            cap_last = int(f.read().strip() or b"40")
        rlimits = {}
        for r in RLIMITS:
            try:
                rlimits[r] = resource.prlimit(pid, r)
            except (OSError, ValueError):
                pass  # a limit this kernel does not know
        cgroups: tuple[str, ...] = ()
        if want_cgroup:
            with open(os.path.join(base, "cgroup"), "rb") as f:
                cg = f.read()
            with open(os.path.join(proc, "self/mountinfo"), "rb") as f:
                cgroups = cgroup_procs_paths(cg, f.read())
        with open(os.path.join(base, "stat"), "rb") as f:
            st = parse_stat(f.read())
    if start_time is not None and st.start_time != start_time:
        raise ProcessGone(target=name, pid=pid, message="the container's process is gone (PID reused)")
    uid, gid, groups = parse_ids(status)
    # /proc/<pid>/status shows IDs as the reader's user namespace names them; the session sets
    # them from inside the container's, where it has one of its own.
    with translate_oserror(target=name, pid=pid, proc_scope=True):
        with open(os.path.join(base, "uid_map"), "rb") as f:
            uid_map = parse_id_map(f.read())
        with open(os.path.join(base, "gid_map"), "rb") as f:
            gid_map = parse_id_map(f.read())
    uid = to_inside(uid, uid_map)
    gid = to_inside(gid, gid_map)
    groups = tuple(to_inside(g, gid_map) for g in groups)
    cap_bnd, nnp = parse_caps(status)
    return Target(pid=pid, start_time=st.start_time, name=name, proc=proc, env=env, uid=uid, gid=gid,
                  groups=groups, cap_bnd=cap_bnd, no_new_privs=nnp, cap_last=cap_last,
                  rlimits=rlimits, cgroup_procs=cgroups)
