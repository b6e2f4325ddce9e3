"""systemd-nspawn machines, found from their payload processes.

nspawn (systemd-nspawn(1)) runs the payload in cgroup ``<unit>/payload`` beside its own
``<unit>/supervisor``: on a systemd host the unit is ``machine.slice/systemd-nspawn@NAME.service``
(proc/cgroup.py recognises it), but with ``--keep-unit`` it is whatever cgroup nspawn was started
in. The payload's environment says ``container=systemd-nspawn``; the supervisor is its parent
process, whose command line names the machine (``-M``/``--machine``, else the basename of
``-D``/``--directory``, as nspawn itself derives it). Nothing is read from the container but that
one environment variable, and the parent is checked to be the host's ``systemd-nspawn``.
"""

from __future__ import annotations

import os

from ctrfs.runtimes.base import ContainerRecord, Roots

MACHINES = "/var/lib/machines"  # machinectl's default image directory
_ENV = b"container=systemd-nspawn"


def _read(path: str, limit: int = 1 << 16) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError:
        return None


def parse_cmdline(argv: list[str]) -> tuple[str | None, str | None]:
    """(machine name, directory) from an nspawn command line (options before the payload)."""
    name = directory = None
    i = 1
    while i < len(argv):
        a = argv[i]
        if not a.startswith("-") or a == "--":
            break  # the payload's own arguments start here
        for short, long_, slot in (("-M", "--machine", "name"), ("-D", "--directory", "dir")):
            value = None
            if a in (short, long_) and i + 1 < len(argv):
                value = argv[i + 1]
                i += 1
            elif a.startswith(long_ + "="):
                value = a.split("=", 1)[1]
            elif a.startswith(short) and len(a) > 2 and a[:2] == short:
                value = a[2:]
            if value is not None:
                if slot == "name":
                    name = value
                else:
                    directory = value
        i += 1
    if name is None and directory:
        name = os.path.basename(directory.rstrip("/")) or None
    return name, directory


def machine_of(roots: Roots, pid: int) -> ContainerRecord | None:
    """The nspawn machine whose payload process ``pid`` is (its init), or None."""
    env = _read(os.path.join(roots.proc, str(pid), "environ"))
    if env is None or _ENV not in env.split(b"\0"):
        return None
    stat = _read(os.path.join(roots.proc, str(pid), "stat"))
    if stat is None or b")" not in stat:
        return None
    fields = stat.rsplit(b")", 1)[1].split()
    ppid = fields[1].decode() if len(fields) > 1 else ""
    comm = (_read(os.path.join(roots.proc, ppid, "comm")) or b"").strip()
    if comm != b"systemd-nspawn":
        return None
    raw = _read(os.path.join(roots.proc, ppid, "cmdline")) or b""
    argv = [a.decode("utf-8", "surrogateescape") for a in raw.split(b"\0") if a]
    name, directory = parse_cmdline(argv)
    if name is None:
        return None
    rec = ContainerRecord(id=name, runtime="nspawn", name=name, state="running", pid=pid,
                          sources=[os.path.join(roots.proc, ppid, "cmdline")])
    rec.extra["supervisor_pid"] = int(ppid)
    rec.rootfs = directory or os.path.join(MACHINES, name)
    return rec
