"""ProcRoot: a running container's root through ``/proc/<pid>/root``, with the process pinned."""

from __future__ import annotations

import os
import select

from ctrfs.errors import ProcessGone, translate_oserror
from ctrfs.rootfs.fd import FdRoot

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ctrfs.container import Container


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
            # A pidfd only means something for PIDs of our own pid namespace, i.e. our /proc
            # (not a host procfs mounted under --host-root).
            if pid is not None and os.path.realpath(container.roots.proc) == "/proc":
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
