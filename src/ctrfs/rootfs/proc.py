"""ProcRoot: a running container's root through ``/proc/<pid>/root``, with the process pinned."""

from __future__ import annotations

import os
import select

from ctrfs.errors import ProcessGone, translate_oserror
from ctrfs.proc.stat import parse_status
from ctrfs.proc.userns import read_id_map
from ctrfs.rootfs.fd import FdRoot

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ctrfs.model import Container


class ProcRoot(FdRoot):
    """The root filesystem of a running container's main process.

    Opening pins the process (docs/security.md, "Pinning"): a pidfd is taken first, then
    ``/proc/<pid>/root`` is opened ``O_PATH|O_DIRECTORY``, then (pid, start time) is checked
    again, so the fd cannot belong to a process that reused the PID. The fd keeps the root
    reachable after the process exits, hence :meth:`check_alive` for long operations.
    """

    def __init__(self, container: Container, *, fallback: bool | None = None) -> None:
        self.container = container
        self._pidfd = -1
        pid = container.pid
        name = container.display_name
        with translate_oserror(target=name, pid=pid, proc_scope=True):
            # A pidfd only means something for PIDs of our own pid namespace: our /proc, or a
            # host procfs under --host-root when we share the host's (a hostPID node pod).
            if pid is not None and own_pid_namespace(container.roots.proc):
                self._pidfd = os.pidfd_open(pid)
            try:
                container.check_alive()
                fd = os.open(container.proc_path("root"),
                             os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            except BaseException:
                self._close_pidfd()
                raise
        super().__init__(fd, target=name, fallback=fallback)
        try:
            if pid is not None:
                self.idmap = read_id_map(container.roots.proc, pid)
            self.check_alive()
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int | None:
        return self.container.pid

    def check_alive(self) -> None:
        if self._pidfd >= 0:
            # pidfd_open(2): the fd becomes readable when the process exits.
            p = select.poll()
            p.register(self._pidfd, select.POLLIN)
            if p.poll(0):
                raise ProcessGone(target=self.target, pid=self.pid)
        self.container.check_alive()

    def _close_pidfd(self) -> None:
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1

    def close(self) -> None:
        super().close()
        self._close_pidfd()


def own_pid_namespace(proc: str) -> bool:
    """Whether the procfs at ``proc`` numbers PIDs as this process does (it is of our own PID
    namespace), so that pidfd_open(2) of one of its PIDs names that very process.

    ``<proc>/self/status`` lists in ``NSpid`` our PID in every namespace from that procfs's one
    down to our own (proc(5)): a single entry, our getpid(), when they are the same namespace.
    """
    if os.path.realpath(proc) == "/proc":
        return True
    try:
        with open(os.path.join(proc, "self", "status"), "rb") as f:
            nspid = parse_status(f.read()).get("NSpid", "").split()
    except OSError:
        return False
    return nspid == [str(os.getpid())]
