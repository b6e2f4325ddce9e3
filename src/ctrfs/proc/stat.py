"""``/proc/<pid>/stat`` and ``/proc/<pid>/status`` (proc(5))."""

from __future__ import annotations

from ctrfs._record import dataclass
from ctrfs.proc.mountinfo import ParseError


@dataclass(frozen=True)
class ProcStat:
    pid: int
    comm: str
    state: str
    ppid: int
    start_time: int  # clock ticks since boot (field 22): with pid, it pins a process's identity
    flags: int = 0  # field 9, PF_* bits

    @property
    def is_kernel_thread(self) -> bool:
        return bool(self.flags & 0x00200000)  # PF_KTHREAD, include/linux/sched.h


def parse_stat(data: bytes) -> ProcStat:
    """Parse ``/proc/<pid>/stat``. comm may hold spaces and ')' so split at the last ')'."""
    head, sep, tail = data.rpartition(b")")
    if not sep:
        raise ParseError("stat without ')'")
    pid_b, _, comm = head.partition(b" (")
    rest = tail.split()
    # rest[0] is field 3 (state); starttime is field 22 → rest[19].
    if len(rest) < 20:
        raise ParseError("stat too short")
    try:
        return ProcStat(
            pid=int(pid_b),
            comm=comm.decode("utf-8", "replace"),
            state=rest[0].decode("ascii", "replace"),
            ppid=int(rest[1]),
            start_time=int(rest[19]),
            flags=int(rest[6]),
        )
    except ValueError as err:
        raise ParseError("stat with bad numbers") from err


def parse_status(data: bytes) -> dict[str, str]:
    """``Key:\\tvalue`` lines into a dict (values stripped, undecodable bytes replaced)."""
    out: dict[str, str] = {}
    for line in data.split(b"\n"):
        key, sep, value = line.partition(b":")
        if sep:
            out[key.decode("ascii", "replace")] = value.strip().decode("utf-8", "replace")
    return out


CAP_SYS_ADMIN = 21  # capabilities(7) bit number


def effective_capabilities() -> int | None:
    """This process's effective capability set (``CapEff`` of /proc/self/status), or None."""
    try:
        with open("/proc/self/status", "rb") as f:
            return int(parse_status(f.read()).get("CapEff", ""), 16)
    except (OSError, ValueError):
        return None
