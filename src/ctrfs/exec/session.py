"""The helper and the session process: the two forks between ctrfs and the user's command.

ctrfs (host, privileged) forks the *helper*, which

- makes itself non-dumpable first (prctl PR_SET_DUMPABLE 0), so that no process of the container
  can ptrace it or open its ``/proc/<pid>/mem`` while it holds host privilege and host fds
  (CVE-2016-9962, where runc's init could be ptraced by the container it had joined);
- opens the container's namespaces, re-checks the main process's identity, builds the toolbox
  from host files, then joins the user, mount (:mod:`ctrfs.exec.view`), UTS, IPC and network
  namespaces, and the PID namespace last: setns(2) on a PID namespace moves only children;
- forks the *session process* into that PID namespace and waits for it. The helper itself stays
  outside the container's PID namespace, so no process of the container can even name it.

The session process (still non-dumpable, as non-dumpability survives fork) moves into the
container's cgroup only with ``--cgroup``, joins its cgroup namespace, takes its stdio (pipes
made by ctrfs, or a pty the helper made in the session's devpts and whose master it sent to
ctrfs), closes every other descriptor (CVE-2024-21626: a leaked host fd reached
through ``/proc/self/fd`` led out of the container), takes the container's capability bounding
set, resource limits, no_new_privs and user, changes to its working directory inside the
container root and executes the command. Failures before exec come back as one line on the
status pipe; the helper reports the session's pid and wait status there.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource
import signal
import socket
import stat
import struct
import sys
import termios
from collections.abc import Iterator
from dataclasses import dataclass, field

from ctrfs.errors import CtrfsError, from_oserror
from ctrfs.exec import facts, toolbox, view
from ctrfs.exec.facts import NS_FLAGS, Target
from ctrfs.proc.stat import parse_stat
from ctrfs.rootfs import _sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

_MAX_LINE = 4096


@dataclass(frozen=True)
class Spec:
    """What to run, and how (``ctrfs exec`` options)."""

    argv: tuple[str, ...]
    env: dict[bytes, bytes] = field(default_factory=dict)  # added to the container's
    user: str | None = None  # UID[:GID] or NAME[:GROUP]; None: the main process's
    cwd: str = "/"
    rw: bool = False
    cgroup: bool = False
    privileged: bool = False
    shell: bool = False  # argv is ignored: the container's shell, else the toolbox's


@dataclass(frozen=True)
class ChildIO:
    """The session's end of its stdio: three pipe ends; or a socket to send ctrfs the master of
    a pty the helper makes (``winsize`` its first size), with the slave once it is made."""

    pty_sock: int | None = None
    winsize: bytes | None = None
    pty_slave: int | None = None
    stdin: int | None = None
    stdout: int | None = None
    stderr: int | None = None

    def fds(self) -> tuple[int, ...]:
        return tuple(fd for fd in (self.pty_sock, self.pty_slave, self.stdin, self.stdout, self.stderr)
                     if fd is not None)


SHELLS = (b"/bin/bash", b"/bin/sh", b"/usr/bin/bash", b"/usr/bin/sh")


def helper_main(target: Target, spec: Spec, tb: toolbox.Toolbox, io: ChildIO, status_w: int,
                ack_r: int, parent_fds: tuple[int, ...]) -> NoReturn:
    """The helper process (never returns). ``parent_fds``: ctrfs's ends of the pipes, closed here."""
    code = 1
    try:
        _sys.prctl(_sys.PR_SET_DUMPABLE, 0)
        # No PR_SET_PDEATHSIG: if ctrfs dies, the helper still reaps the session (which gets EOF,
        # SIGPIPE or SIGHUP on its stdio). Killed first, it would leave the session to the
        # container's init, which a shell-less image's init may never reap.
        for fd in parent_fds:
            os.close(fd)
        # ctrfs's own stdio stays with ctrfs: a pipe reader of ctrfs sees EOF when ctrfs ends.
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        for std in (0, 1, 2):
            os.dup2(devnull, std, inheritable=False)
        os.close(devnull)
        for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGHUP, signal.SIGTTOU,
                    signal.SIGTTIN):
            signal.signal(sig, signal.SIG_IGN)
        with _doing("opening the container's namespaces", proc_scope=True):
            ns = _open_namespaces(target)
            _check_identity(target)
        with _doing("opening the container's cgroup.procs"):
            cgroup_fds = [os.open(p, os.O_WRONLY | os.O_CLOEXEC) for p in target.cgroup_procs] \
                if spec.cgroup else []
        with _doing("building the toolbox"):
            tb_fd = toolbox.build(tb)
        if "user" in ns:
            with _doing("joining the container's user namespace"):
                _sys.setns(ns["user"], _sys.CLONE_NEWUSER)
                # Become its root (as nsenter does): host root is not mapped in it, and files
                # made by an unmapped user fail with EOVERFLOW.
                with contextlib.suppress(PermissionError):  # /proc/<pid>/setgroups is "deny"
                    os.setgroups([])
                os.setresgid(0, 0, 0)
                os.setresuid(0, 0, 0)
        with _doing("building the private view of the container's root"):
            view.enter(ns.get("mnt"), tb_fd, rw=spec.rw, pts=io.pty_sock is not None)
        os.close(tb_fd)
        if io.pty_sock is not None:
            with _doing("making the session's pty"):
                io = _make_pty(io)
        for kind in ("uts", "ipc", "net", "pid"):
            if kind in ns:
                with _doing(f"joining the container's {kind} namespace"):
                    _sys.setns(ns[kind], NS_FLAGS[kind])
        pid = os.fork()
        if pid == 0:
            session_main(target, spec, io, status_w, ns.get("cgroup"), cgroup_fds)
        for fd in (*io.fds(), *cgroup_fds, *ns.values()):
            os.close(fd)
        _send(status_w, b"p %d" % pid)
        try:
            os.read(ack_r, 1)  # ctrfs holds a pidfd of the session before it can be reaped
        except OSError:
            pass
        _, status = os.waitpid(pid, 0)
        _send(status_w, b"s %d" % status)
        code = 0
    except BaseException as err:  # noqa: BLE001 — the helper must end in os._exit, whatever happens
        _send_error(status_w, err)
    finally:
        os._exit(code)


def session_main(target: Target, spec: Spec, io: ChildIO, status_w: int, cgroup_ns: int | None,
                 cgroup_fds: list[int]) -> NoReturn:
    """The session process: the user's command, once it has execve'd (never returns)."""
    try:
        for sig in signal.valid_signals():
            if sig not in (signal.SIGKILL, signal.SIGSTOP):
                try:
                    signal.signal(sig, signal.SIG_DFL)
                except (OSError, ValueError):
                    pass
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        for fd in cgroup_fds:
            os.write(fd, b"0")  # "0": the writing process (cgroups(7), cgroup.procs)
            os.close(fd)
        if cgroup_ns is not None:
            _sys.setns(cgroup_ns, _sys.CLONE_NEWCGROUP)
        _take_stdio(io)
        os.closerange(3, status_w)
        os.closerange(status_w + 1, 0x7FFFFFFF)  # close_range(2): cheap whatever the limit
        for r, (soft, hard) in target.rlimits.items():
            try:
                resource.setrlimit(r, (soft, hard))
            except (OSError, ValueError):
                pass
        uid, gid, groups, home = _resolve_user(spec.user, target)
        if not spec.privileged:
            for cap in range(target.cap_last + 1):
                if not target.cap_bnd >> cap & 1:
                    _sys.prctl(_sys.PR_CAPBSET_DROP, cap)
            _sys.prctl(_sys.PR_CAP_AMBIENT, _sys.PR_CAP_AMBIENT_CLEAR_ALL)
            _sys.prctl(_sys.PR_SET_NO_NEW_PRIVS, 1)
        os.setgroups(list(groups))
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        if not spec.privileged and uid == 0:
            # Root keeps its capabilities across setresuid(0); cut them to the bounding set now
            # (execve would do the same) and empty the inheritable set.
            keep = target.cap_bnd & _sys.capget()[1]
            _sys.capset(keep, keep, 0)
        with _doing("changing to the working directory"):
            os.chdir(spec.cwd)
        extra = dict(spec.env)
        if home is not None and b"HOME" not in extra:
            extra[b"HOME"] = home  # -u NAME: that user's home, as docker exec -u sets it
        env = facts.session_env(target.env, extra, toolbox.MOUNT_POINT)
        argv = list(spec.argv)
        if spec.shell:
            shell = next((s for s in SHELLS if os.access(s, os.X_OK)), toolbox.MOUNT_POINT + b"/sh")
            argv = [os.fsdecode(shell)]
        try:
            os.execvpe(argv[0], argv, env)
        except OSError as err:
            _send(status_w, b"x %d %s" % (err.errno or 0, os.fsencode(argv[0])[:512]))
            os._exit(126 if err.errno == 13 else 127)
    except BaseException as err:  # noqa: BLE001 — before exec, every failure ends in os._exit
        _send_error(status_w, err)
    os._exit(1)


# ioctl numbers of include/uapi/asm-generic/ioctls.h (x86, arm64, riscv, s390: the generic ones)
_TIOCSPTLCK = 0x40045431
_TIOCGPTPEER = 0x5441


def _make_pty(io: ChildIO) -> ChildIO:
    """A pty in the session's devpts; its master goes to ctrfs, its slave stays for the session."""
    assert io.pty_sock is not None
    master = os.open(view.PTMX, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))  # unlockpt(3)
        # TIOCGPTPEER opens the slave from the master (Linux 4.13), with no path to look up
        slave = fcntl.ioctl(master, _TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        if io.winsize is not None:
            fcntl.ioctl(master, termios.TIOCSWINSZ, io.winsize)
        sock = socket.socket(fileno=io.pty_sock)
        try:
            socket.send_fds(sock, [b"m"], [master])
        finally:
            sock.close()
    finally:
        os.close(master)
    return ChildIO(pty_slave=slave)


def _take_stdio(io: ChildIO) -> None:
    if io.pty_slave is not None:
        os.login_tty(io.pty_slave)  # setsid, TIOCSCTTY, slave on 0/1/2
        return
    os.setsid()  # keyboard signals at ctrfs's terminal reach ctrfs, which forwards them
    for fd, target in ((io.stdin, 0), (io.stdout, 1), (io.stderr, 2)):
        assert fd is not None
        os.dup2(fd, target, inheritable=True)
    for fd in (io.stdin, io.stdout, io.stderr):
        assert fd is not None
        if fd > 2:
            os.close(fd)


def _open_namespaces(t: Target) -> dict[str, int]:
    """fds of the container's namespaces that differ from ctrfs's own (setns to one's own user
    namespace fails with EINVAL, and joining an identical namespace changes nothing)."""
    out: dict[str, int] = {}
    for kind in (*facts.JOIN_ORDER, "cgroup"):
        path = os.path.join(t.proc, str(t.pid), "ns", kind)
        try:
            theirs = os.stat(path).st_ino
        except FileNotFoundError:
            continue  # kernel without that namespace type
        if theirs == os.stat(f"/proc/self/ns/{kind}").st_ino and kind != "mnt":
            continue
        out[kind] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    return out


def _check_identity(t: Target) -> None:
    with open(os.path.join(t.proc, str(t.pid), "stat"), "rb") as f:
        if parse_stat(f.read()).start_time != t.start_time:
            raise CtrfsError("the container's process is gone (PID reused)", target=t.name, pid=t.pid)


def _resolve_user(user: str | None, t: Target) -> tuple[int, int, tuple[int, ...], bytes | None]:
    """(uid, gid, groups, home) for ``-u``: numeric, or a name from the container's /etc/passwd."""
    if user is None:
        return t.uid, t.gid, t.groups, None
    name, _, group = user.partition(":")
    passwd = _read_small(b"/etc/passwd")
    uid = gid = None
    home = None
    key = 2 if name.isdigit() else 0
    for fields in passwd:
        if len(fields) > 5 and fields[key] == name.encode() and fields[2].isdigit() and fields[3].isdigit():
            uid, gid, home = int(fields[2]), int(fields[3]), fields[5]
            break
    if name.isdigit():
        uid = int(name)
    elif uid is None:
        raise CtrfsError(f"no user {name!r} in the container's /etc/passwd")
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            match = [f for f in _read_small(b"/etc/group") if len(f) > 2 and f[0] == group.encode()]
            if not match or not match[0][2].isdigit():
                raise CtrfsError(f"no group {group!r} in the container's /etc/group")
            gid = int(match[0][2])
    gid = 0 if gid is None else gid
    groups = [gid]
    if not name.isdigit():
        for f in _read_small(b"/etc/group"):
            if len(f) > 3 and f[2].isdigit() and name.encode() in f[3].split(b","):
                groups.append(int(f[2]))
    return uid, gid, tuple(dict.fromkeys(groups)), home


def _read_small(path: bytes) -> list[list[bytes]]:
    """Lines of a colon-separated file of the container (the root is the container's by now);
    only a regular file is read, never more than 1 MiB; missing → no lines."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return []
        data = os.read(fd, 1 << 20)
    finally:
        os.close(fd)
    return [line.split(b":") for line in data.split(b"\n") if line and not line.startswith(b"#")]


class _StepFailed(CtrfsError):
    pass


@contextlib.contextmanager
def _doing(what: str, *, proc_scope: bool = False) -> Iterator[None]:
    """An OSError in the block becomes one line naming the step, with the exit code of its kind
    (4 permission, 5 the container's process gone, else 1)."""
    try:
        yield
    except OSError as err:
        e = from_oserror(err, proc_scope=proc_scope)
        where = f"{os.fsdecode(err.filename)}: " if err.filename else ""
        out = _StepFailed(f"{what}: {where}{os.strerror(err.errno).lower() if err.errno else err}")
        out.exit_code = e.exit_code if e.exit_code in (4, 5) else 1
        raise out from err


def _send(fd: int, msg: bytes) -> None:
    try:
        os.write(fd, msg[:_MAX_LINE - 1].replace(b"\n", b" ") + b"\n")
    except OSError:
        pass


def _send_error(fd: int, err: BaseException) -> None:
    if isinstance(err, OSError):
        e: BaseException = from_oserror(err, path=err.filename if isinstance(err.filename, str) else None)
    else:
        e = err
    code = e.exit_code if isinstance(e, CtrfsError) else 1
    text = str(e) if isinstance(e, CtrfsError) else f"internal error: {type(e).__name__}: {e}"
    _send(fd, b"e %d %s" % (code, text.encode("utf-8", "replace")))
    sys.stderr.flush()
