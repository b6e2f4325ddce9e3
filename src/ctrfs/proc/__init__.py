"""Pure parsers and small readers for /proc.

Parsers take ``bytes`` and return dataclasses; readers take the procfs root as a parameter so a
host mounted at ``/host`` (``/host/proc``) works. Nothing here prints or caches.
"""

from ctrfs.proc.cgroup import CgroupLine, ContainerRef, container_ref, parse_cgroup
from ctrfs.proc.mountinfo import Mount, ParseError, parse_mountinfo, unescape
from ctrfs.proc.stat import ProcStat, parse_stat, parse_status

__all__ = [
    "CgroupLine",
    "ContainerRef",
    "Mount",
    "ParseError",
    "ProcStat",
    "container_ref",
    "parse_cgroup",
    "parse_mountinfo",
    "parse_stat",
    "parse_status",
    "unescape",
]
