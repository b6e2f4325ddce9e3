"""``ctrfs exec`` and ``ctrfs shell``: a command in a running container's namespaces, from the host.

::

    from ctrfs.exec import Spec, run
    result = run(container, Spec(argv=("ls", "-l", "/")))
    result.exit_code

The command sees the container's filesystem (its mounts included) as ``/``, read-only unless
``rw``, with a toolbox of static host tools at ``/.ctrfs/bin`` at the end of PATH; it runs in the
container's pid, net, ipc, uts and cgroup namespaces (and user namespace, where it has one),
with the environment, user, resource limits and capability bounding set of the container's main
process, and no_new_privs. Nothing is created in the container's root filesystem or mount
namespace, and no process joins its cgroup unless ``cgroup``. See :mod:`ctrfs.exec.session` for
the order of the steps and the attacks each one answers.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
from dataclasses import dataclass

from ctrfs.errors import AccessDenied, CtrfsError, ProcessGone
from ctrfs.exec import relay, toolbox
from ctrfs.exec.facts import read_target
from ctrfs.exec.session import ChildIO, Spec, helper_main

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ctrfs.model import Container

__all__ = ["CommandNotRun", "Result", "Spec", "run"]


class CommandNotRun(CtrfsError):
    """The session was set up but its command could not be executed (127 not found, 126 denied)."""

    def __init__(self, message: str, exit_code: int, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.exit_code = exit_code


@dataclass(frozen=True)
class Result:
    exit_code: int  # the command's, or 128+N after signal N
    signal: int | None
    pid: int | None  # host PID the session process had
    stdout: bytes | None = None  # with capture
    stderr: bytes | None = None


def run(container: Container, spec: Spec, *, tty: bool | None = None, interactive: bool = False,
        tools: toolbox.Toolbox | None = None, capture: bool = False,
        stdin: int = 0, stdout: int = 1, stderr: int = 2) -> Result:
    """Run ``spec`` in ``container``; stdio relayed from/to the given fds (or captured).

    ``tty``: a pty for the session (None: one when ``stdin`` and ``stdout`` are terminals).
    ``interactive``: ctrfs's stdin is passed on (else the session's stdin is at end of file).
    ``tools``: what goes into /.ctrfs/bin (:func:`ctrfs.exec.toolbox.prepare`; default: busybox).
    """
    if os.geteuid() != 0:
        raise AccessDenied("exec needs root (it joins the container's namespaces)",
                           target=container.display_name)
    target = read_target(container.pid, container.start_time, container.display_name,
                         container.roots.proc, want_cgroup=spec.cgroup)
    tb = tools if tools is not None else toolbox.prepare()
    use_pty = (os.isatty(stdin) and os.isatty(stdout)) if tty is None else tty
    if capture:
        use_pty = False
    pipes: list[int] = []
    status_r, status_w = os.pipe()
    ack_r, ack_w = os.pipe()
    pipes += [status_r, status_w, ack_r, ack_w]
    try:
        master: int | None = None
        if use_pty:
            # The pty is made by the helper in a devpts of the session's own (/.ctrfs/pts), so
            # the command's tty has a name it can find; its master comes back over a socket.
            psock, csock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            pipes += [psock.detach(), csock.detach()]
            psock_fd, csock_fd = pipes[-2:]
            winsize = relay.get_winsize(stdin) if os.isatty(stdin) else relay.pack_winsize(24, 80)
            child = ChildIO(pty_sock=csock_fd, winsize=winsize)
            ours: tuple[int, ...] = (psock_fd,)
        else:
            in_r, in_w = os.pipe()
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            pipes += [in_r, in_w, out_r, out_w, err_r, err_w]
            child = ChildIO(stdin=in_r, stdout=out_w, stderr=err_w)
            ours = (in_w, out_r, err_r)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            helper_main(target, spec, tb, child, status_w, ack_r, parent_fds=(status_r, ack_w, *ours))
        for fd in (status_w, ack_r, *child.fds()):
            os.close(fd)
            pipes.remove(fd)
        if use_pty:
            master = _receive_master(psock_fd)  # None: the helper failed; its status says why
            os.close(psock_fd)
            pipes.remove(psock_fd)
            if master is not None:
                pipes.append(master)
            to_child: int | None = master
            from_child: tuple[int, ...] = () if master is None else (master,)
        else:
            to_child, from_child = in_w, (out_r, err_r)
        rl = relay.Relay(status_r=status_r, ack_w=ack_w, stdin=stdin if interactive else None,
                         stdout=stdout, stderr=stderr, pty_master=master, to_child=to_child,
                         from_child=from_child, capture=capture)
        try:
            outcome = _relay(rl, stdin, master)
        finally:
            # Our ends closed before the helper is waited for: a session still writing (ctrfs's
            # reader went away, say `| head -1`) then gets SIGPIPE instead of blocking forever.
            for fd in pipes:
                if fd not in rl.closed:
                    os.close(fd)
            pipes = []
            os.waitpid(pid, 0)
    finally:
        for fd in pipes:
            os.close(fd)
    return _result(outcome, container.display_name, stdout, stderr)


def _receive_master(sock_fd: int) -> int | None:
    sock = socket.socket(fileno=os.dup(sock_fd))
    try:
        _msg, fds, _flags, _addr = socket.recv_fds(sock, 16, 1)
    except OSError:
        return None
    finally:
        sock.close()
    return fds[0] if fds else None


def _relay(rl: relay.Relay, stdin: int, master: int | None) -> relay.Outcome:
    forwarded = list(relay.FORWARDED)
    if master is None:
        forwarded += [signal.SIGTSTP, signal.SIGCONT]
    saved = {}

    def forward(signum: int, frame: object) -> None:
        if signum == signal.SIGTSTP:
            # The session leads a session of its own, an orphaned process group, where the
            # kernel drops SIGTSTP (setpgid(2)): SIGSTOP it, then stop ctrfs as a job is stopped.
            rl.send_signal(signal.SIGSTOP)
            os.kill(os.getpid(), signal.SIGSTOP)
            return
        rl.send_signal(signum)

    for s in forwarded:
        saved[s] = signal.signal(s, forward)
    if master is not None:
        saved[signal.SIGWINCH] = signal.signal(signal.SIGWINCH,
                                               lambda signum, frame: relay.copy_winsize(stdin, master))
    try:
        with relay.RawTerminal(stdin) if master is not None else _Nothing():
            return rl.run()
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _result(o: relay.Outcome, name: str, stdout: int, stderr: int) -> Result:
    if o.error is not None:
        code, msg = o.error
        cls = {4: AccessDenied, 5: ProcessGone}.get(code, CtrfsError)
        raise cls(msg, target=name)
    if o.exec_error is not None:
        err, cmd = o.exec_error
        if err == errno.ENOENT:
            where = toolbox.MOUNT_POINT.decode()
            raise CommandNotRun(f"{cmd}: command not found in the container's PATH or {where}", 127,
                                target=name)
        # as a shell reports a command found but not runnable (EACCES, ENOEXEC, ...)
        raise CommandNotRun(f"{cmd}: {os.strerror(err).lower()}", 126, target=name)
    if o.status is None:
        raise CtrfsError("the session's helper ended without reporting a status", target=name)
    code = os.waitstatus_to_exitcode(o.status)
    sig = -code if code < 0 else None
    out = o.captured
    return Result(exit_code=128 + sig if sig else code, signal=sig, pid=o.pid,
                  stdout=bytes(out.get(stdout, b"")), stderr=bytes(out.get(stderr, b"")))
