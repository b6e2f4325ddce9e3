"""``ctrfs exec`` and ``ctrfs shell``: thin wrappers over :mod:`ctrfs.exec`."""

from __future__ import annotations

import os
import sys
from argparse import Namespace

from ctrfs.cli.app import JSON, State, arg, command
from ctrfs.cli.common import emit_json, escape, get_container
from ctrfs.errors import UsageError
from ctrfs.exec import Spec
from ctrfs.exec import run as run_session
from ctrfs.exec.toolbox import prepare as prepare_toolbox

_SESSION_ARGS = (
    arg("-t", "--tty", dest="tty", action="store_const", const=True, default=None,
        help="give the command a pty [default: when stdin and stdout are terminals]"),
    arg("-T", "--no-tty", dest="tty", action="store_const", const=False, help="never a pty"),
    arg("-e", "--env", action="append", default=[], metavar="K=V",
        help="add to the container's environment (K alone: take K from ctrfs's environment)"),
    arg("-u", "--user", metavar="UID[:GID]",
        help="user (a number or a name from the container's /etc/passwd) [default: the main process's]"),
    arg("-w", "--workdir", default="/", metavar="DIR",
        help="working directory inside the container [default: /]"),
    arg("--rw", action="store_true",
        help="WRITES INTO THE CONTAINER: its files are writable in the session (default: read-only)"),
    arg("--cgroup", action="store_true", help="run the command in the container's cgroup (default: ctrfs's)"),
    arg("--privileged", action="store_true",
        help="keep the host's capability bounding set and no no_new_privs (default: the container's)"),
    arg("--toolbox", action="append", default=[], metavar="DIR",
        help="also put the static tools of host directory DIR into /.ctrfs/bin (copied, read-only)"),
)

_HOW = """
The command sees the container's filesystem, its mounts included, as /, and runs in its pid, net,
ipc, uts and cgroup namespaces (and user namespace, where it has one) with the environment, user,
resource limits and capability bounding set of the container's main process, and no_new_privs.
It is looked up in the container's PATH, then in /.ctrfs/bin: a private read-only copy of the
host's static busybox and its applets (and of --toolbox DIR). Nothing is created in the
container's root filesystem or mount namespace; its files are read-only unless --rw. The exit
status is the command's (128+N after signal N); 127: not found. No container daemon is asked.
"""


@command("exec", "Run a command in a running container's namespaces, leaving the container untouched.",
         _HOW + """
Examples:
  ctrfs exec web -- ls -l /                  works on images with no shell or tools at all
  ctrfs exec web -- ps                       the container's processes only
  ctrfs exec web -- netstat -ltn             its sockets, from its network namespace
  ctrfs exec -i web -- sh -c 'wc -c' < big.bin
  ctrfs exec -it web -- vi /etc/app.conf     read-only: add --rw to save into the container
  ctrfs exec -u 1000:1000 -w /app web -- id
  ctrfs exec --toolbox ~/static-tools k8s://prod/api-7d9f/app -- strace -p 1
  ctrfs exec --json web -- cat /etc/hostname   stdout, stderr and status as one JSON object
""",
    arg("-i", "--interactive", action="store_true", help="pass ctrfs's stdin to the command"),
    *_SESSION_ARGS,
    JSON,
    arg("target", metavar="TARGET"),
    arg("cmd", nargs="*", metavar="CMD", help="after --: the command and its arguments"))
def exec_cmd(args: Namespace, state: State) -> int:
    if not args.cmd:
        raise UsageError("missing command; usage: ctrfs exec TARGET -- CMD [ARG...]")
    return _run(args, state, tuple(args.cmd), shell=False, interactive=args.interactive)


@command("shell", "Open a shell in a running container: its own, else the toolbox's busybox sh.",
         _HOW + """
Examples:
  ctrfs shell web                 /bin/bash or /bin/sh of the container, else /.ctrfs/bin/sh
  ctrfs shell -u nobody web
  ctrfs shell --rw web            changes made in the shell are written into the container
  ctrfs shell pid://4242          the container host PID 4242 lives in
""",
    *_SESSION_ARGS,
    JSON,
    arg("target", metavar="TARGET"))
def shell_cmd(args: Namespace, state: State) -> int:
    return _run(args, state, (), shell=True, interactive=True)


def _run(args: Namespace, state: State, argv: tuple[str, ...], *, shell: bool, interactive: bool) -> int:
    env = _env(args.env)
    tty = args.tty
    c = get_container(state, args.target)
    use_pty = tty if tty is not None else (os.isatty(0) and os.isatty(1))
    if use_pty and not args.as_json and b"TERM" not in env:
        env[b"TERM"] = os.environb.get(b"TERM", b"xterm")
    spec = Spec(argv=argv, env=env, user=args.user, cwd=args.workdir, rw=args.rw,
                cgroup=args.cgroup, privileged=args.privileged, shell=shell)
    if args.privileged:
        sys.stderr.write("ctrfs: --privileged: the command keeps the host's capability bounding set, "
                         "without no_new_privs\n")
    if args.rw:
        sys.stderr.write("ctrfs: --rw: the command can write into the container's filesystem\n")
    tools = prepare_toolbox(tuple(args.toolbox))
    for path in tools.dynamic:
        sys.stderr.write(f"ctrfs: --toolbox: {escape(path)} is dynamically linked: inside, it looks for "
                         "its libraries in the container\n")
    result = run_session(c, spec, tty=tty, interactive=interactive, tools=tools, capture=args.as_json)
    if args.as_json:
        emit_json({
            "target": c.display_name, "id": c.id, "argv": list(argv), "exit_code": result.exit_code,
            "signal": result.signal,
            "stdout": (result.stdout or b"").decode("utf-8", "replace"),
            "stderr": (result.stderr or b"").decode("utf-8", "replace"),
        })
    return result.exit_code


def _env(items: list[str]) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f"--env {item!r}: expected K=V")
        if sep:
            out[os.fsencode(key)] = os.fsencode(value)
        elif os.fsencode(key) in os.environb:
            out[os.fsencode(key)] = os.environb[os.fsencode(key)]
    return out
