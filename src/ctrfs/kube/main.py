"""``kubectl ctrfs``: the plugin's command line (the ``kubectl-ctrfs`` console script).

``main`` is the error handling (one line per error, DESIGN's exit codes); ``program`` is the
plugin without it: split the plugin's options from the ctrfs command, find the pod's node and
container, run ctrfs there, and bring its answer back.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

import ctrfs
from ctrfs._version import __version__
from ctrfs.errors import Ambiguous, CtrfsError, UsageError, run_program
from ctrfs.kube import fanout, manifests
from ctrfs.kube import pyz as pyz_mod
from ctrfs.kube.kubectl import Kubectl, find_kubectl
from ctrfs.kube.node import (
    AgentSession,
    EphemeralSession,
    Session,
    copy_to_fd,
    err_to,
    find_agents,
)
from ctrfs.kube.pods import Pod, get_pod, split_workload, workload_pods
from ctrfs.kube.unpack import Unpacker

PROG = "kubectl ctrfs"

DESCRIPTION = f"""\
Run a ctrfs command on a pod's container, on the node the pod runs on.

POD[:PATH] names a pod (in -n NAMESPACE, else kubectl's default namespace) and a path inside its
container; KIND/NAME (deploy/web, sts/db, ds/x, rs/x, job/x) runs the command on each of the
workload's pods, each answer labelled with its pod. The cluster is reached only through your own
kubectl: its kubeconfig, context and credentials apply.

On the node, ctrfs runs in a short-lived pod (hostPID, the node's / read-only at /host, the
capabilities {", ".join(manifests.CAPABILITIES)}), deleted when the command ends; or, once
'kubectl ctrfs deploy' installed them, in the node agents of the ctrfs DaemonSet."""

EPILOG = """\
commands: ps inspect ls cat stat find grep tail du cp export diff layers which mounts libs probe
          (as ctrfs has them: 'ctrfs COMMAND --help'), deploy [--print] [--image IMAGE], undeploy

Examples:
  kubectl ctrfs ls -l web-7d9f:/etc                 a directory of pod web-7d9f's container
  kubectl ctrfs -n prod -c app cat web-7d9f:/etc/os-release
  kubectl ctrfs tail -F web-7d9f:/var/log/app.log   follow a log across rotations
  kubectl ctrfs cp web-7d9f:/etc/nginx ./nginx      copy a tree to this machine
  kubectl ctrfs cp web-7d9f:/app - | tar -tvf -     the same as a tar stream
  kubectl ctrfs diff deploy/web                     changed files of every pod of a deployment
  kubectl ctrfs --node node-1 ps                    containers on one node
  kubectl ctrfs --node node-1 ls pid://4242:/       ctrfs's own targets on that node
  kubectl ctrfs deploy --print | less               the agent DaemonSet, RBAC and namespace
  kubectl ctrfs deploy && kubectl ctrfs --all-nodes libs --all --match libssl
  kubectl ctrfs undeploy                            remove the agents and everything of theirs"""

# ctrfs commands the plugin runs on a node: where their targets are among the positional
# arguments ("all", an index, or None: no target), and which of their options take a value
# (so that a value is not taken for a positional argument).
ALL = -1
TARGET_AT: dict[str, int | None] = {
    "ps": None, "images": None, "libs": 0, "cat": ALL, "grep": 1,
    "inspect": 0, "ls": 0, "stat": 0, "find": 0, "tail": 0, "du": 0, "cp": 0, "export": 0,
    "diff": 0, "layers": 0, "which": 0, "mounts": 0, "probe": 0,
}
VALUE_OPTIONS: dict[str, frozenset[str]] = {
    "find": frozenset({"--name", "--type", "--size", "--newer", "--mmin", "--maxdepth"}),
    "tail": frozenset({"-n", "--lines"}),
    "export": frozenset({"-o", "--output"}),
    "diff": frozenset({"--semantics"}),
    "libs": frozenset({"--match"}),
    "probe": frozenset({"--lib", "--symbol", "--format"}),
}
# What --all-nodes fans out: the cluster-wide questions.
FAN_OUT = frozenset({"ps", "libs", "find", "grep", "diff", "images"})
# Answers that are one byte stream: one pod only.
SINGLE = frozenset({"cat", "cp", "export", "tail"})
LOCAL_ONLY = frozenset({"exec", "shell", "browse", "completion"})

# (flags, argparse keyword arguments) of the plugin's own options, given before COMMAND.
OPTIONS: tuple[tuple[tuple[str, ...], dict[str, object]], ...] = (
    (("-n", "--namespace"), {"metavar": "NS", "help": "the pod's namespace [default: kubectl's]"}),
    (("-c", "--container"), {"metavar": "NAME", "help": "the container in the pod "
                             "[default: the pod's default container, or its only one]"}),
    (("--context",), {"metavar": "NAME", "help": "kubeconfig context to use"}),
    (("--kubeconfig",), {"metavar": "FILE", "help": "kubeconfig file to use"}),
    (("--node",), {"metavar": "NODE", "help": "run on this node, with ctrfs's own TARGETs "
                   "(ps, libs --all, pid://PID...) instead of pods"}),
    (("--all-nodes",), {"action": "store_true",
                        "help": "run on every node's agent and merge (ps, libs, find, grep, diff)"}),
    (("--ephemeral",), {"action": "store_true", "help": "use a node pod even where an agent runs"}),
    (("--image",), {"metavar": "IMAGE", "default": manifests.DEFAULT_IMAGE,
                    "help": "image of the node pod, with Python >= 3.11 [default: %(default)s]"}),
    (("--privileged",), {"action": "store_true", "help": "a privileged node pod (instead of "
                         "the capabilities " + ", ".join(manifests.CAPABILITIES) + ")"}),
    (("--node-namespace",), {"metavar": "NS", "help": "namespace of the node pod "
                             "[default: the pod's]; Pod Security must allow 'privileged' there"}),
    (("--timeout",), {"metavar": "SECONDS", "type": float, "default": 60.0,
                      "help": "how long the node pod may take to start [default: %(default)g]"}),
    (("--deadline",), {"metavar": "SECONDS", "type": int, "default": manifests.DEFAULT_DEADLINE,
                       "help": "the node pod's activeDeadlineSeconds [default: %(default)s]"}),
    (("--pyz",), {"metavar": "FILE", "help": "the ctrfs.pyz to run on the node "
                  "[default: $KUBECTL_CTRFS_PYZ, this zipapp, or one built from the installed ctrfs]"}),
    (("--debug",), {"action": "store_true", "help": "show tracebacks"}),
)
_VALUE_FLAGS = frozenset(f for flags, kw in OPTIONS if "action" not in kw for f in flags)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C, so every node pod is deleted on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args[: _split(args)]
    for s in (signal.SIGTERM, getattr(signal, "SIGHUP", signal.SIGTERM)):
        signal.signal(s, _on_signal)
    return run_program("kubectl-ctrfs", lambda: program(args), debug=debug)


def _split(args: Sequence[str]) -> int:
    """Index of COMMAND: the first word that is not a plugin option or an option's value."""
    skip = False
    for i, a in enumerate(args):
        if skip:
            skip = False
        elif a in _VALUE_FLAGS:
            skip = True
        elif not a.startswith("-") or a == "-":
            return i
    return len(args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG,
                                usage=f"{PROG} [OPTIONS] COMMAND POD[:PATH] [ARGS...]",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    for flags, kw in OPTIONS:
        p.add_argument(*flags, **kw)  # type: ignore[arg-type]
    p.add_argument("--version", action="version", version=f"kubectl-ctrfs, version {__version__}")
    return p


def program(argv: list[str]) -> int:
    i = _split(argv)
    opts = parser().parse_args(argv[:i])
    rest = argv[i:]
    if not rest:
        parser().print_help(sys.stderr)
        return 2
    command, args = rest[0], rest[1:]
    kubectl = Kubectl(find_kubectl(), context=opts.context, kubeconfig=opts.kubeconfig)
    if command == "deploy":
        return deploy(kubectl, args, opts)
    if command == "undeploy":
        return undeploy(kubectl, args)
    if command in LOCAL_ONLY:
        raise UsageError(f"'{command}' is interactive and not available through kubectl ctrfs")
    if command not in TARGET_AT:
        raise UsageError(f"unknown command {command!r}; see '{PROG} --help'")
    if "-h" in args or "--help" in args:
        return command_help(command)
    pyz = pyz_mod.load(opts.pyz)
    warn = lambda m: sys.stderr.write(f"kubectl-ctrfs: warning: {m}\n")  # noqa: E731

    if opts.all_nodes:
        return all_nodes(kubectl, pyz, command, args, opts, warn)
    if opts.node is not None:
        # One node named: the arguments are ctrfs's own (TARGET, not POD), passed as they are.
        session = _session(kubectl, opts.node, opts.namespace, opts, warn, agents=None)
        return _single(kubectl, pyz, session, command, args, opts)
    positions = _positionals(command, args)
    at = TARGET_AT[command]
    if at is None or (command == "libs" and not positions):
        raise UsageError(f"'{command}' looks at a whole node: name it with --node NODE, "
                         "or use --all-nodes")
    if at == ALL:
        idx = positions
    elif at < len(positions):
        idx = [positions[at]]
    else:
        raise UsageError(f"'{command}' needs POD[:PATH]; see '{PROG} --help'")
    return run_on_pods(kubectl, pyz, command, args, idx, opts, warn)


def command_help(command: str) -> int:
    """ctrfs's own help for COMMAND (the same ctrfs as the node runs: this package, or this zipapp),
    after a line on what the plugin changes."""
    # In a subprocess: the plugin does not import ctrfs's CLI (they are separate programs). The
    # directory (or zipapp) this ctrfs is imported from goes first on its path.
    where = str(Path(ctrfs.__file__).parent.parent)
    code = ("import sys; sys.path[:0] = sys.argv[1:2]; from ctrfs.cli.main import main; "
            "sys.exit(main(sys.argv[2:]))")
    argv = [sys.executable, "-c", code, where, command, "--help"]
    sys.stdout.write(f"{PROG} [OPTIONS] {command} takes the arguments of 'ctrfs {command}' below, with "
                     "POD[:PATH] for TARGET[:PATH] (see 'kubectl ctrfs --help' for OPTIONS).\n\n")
    sys.stdout.flush()
    return subprocess.run(argv, check=False).returncode


def _positionals(command: str, args: list[str]) -> list[int]:
    values = VALUE_OPTIONS.get(command, frozenset())
    out, skip, only_pos = [], False, False
    for i, a in enumerate(args):
        if skip:
            skip = False
        elif only_pos or not a.startswith("-") or a == "-":
            out.append(i)
        elif a == "--":
            only_pos = True
        elif a in values:
            skip = True
    return out


def _split_ref(text: str) -> tuple[str, str | None]:
    name, sep, path = text.partition(":")
    if not name:
        raise UsageError(f"missing pod in {text!r}; expected POD[:PATH]")
    return name, (path or "/") if sep else None


def run_on_pods(kubectl: Kubectl, pyz: pyz_mod.Pyz, command: str, args: list[str], idx: list[int],
                opts: argparse.Namespace, warn: Callable[[str], object]) -> int:
    # Every POD argument resolved; a workload stands for each of its pods.
    refs = [_split_ref(args[i]) for i in idx]
    pod_lists: list[list[Pod]] = []
    for name, _path in refs:
        w = split_workload(name)
        if w is None:
            pod_lists.append([get_pod(kubectl, name, opts.namespace)])
        else:
            pod_lists.append(workload_pods(kubectl, w[0], w[1], opts.namespace))
    if len(pod_lists) > 1 and any(len(p) > 1 for p in pod_lists):
        raise UsageError("a workload (KIND/NAME) can only be the one POD argument")
    agents = None if opts.ephemeral else find_agents(kubectl)
    if len(pod_lists) == 1 and len(pod_lists[0]) > 1:
        pods = pod_lists[0]
        if command in SINGLE:
            raise Ambiguous(f"'{command}' reads one pod; {refs[0][0]} has {len(pods)}: "
                            + ", ".join(p.name for p in pods))
        return _workload(kubectl, pyz, command, args, idx[0], refs[0][1], pods, opts, warn, agents)
    # One pod per argument (cat may name several, all on one node).
    pods = [p[0] for p in pod_lists]
    new = list(args)
    for i, (_name, path), pod in zip(idx, refs, pods, strict=True):
        new[i] = _target(pod, opts.container, path)
    nodes = {p.node for p in pods}
    if len(nodes) > 1:
        raise UsageError("the pods named live on different nodes: " + ", ".join(sorted(map(str, nodes))))
    node = pods[0].node
    assert node is not None
    ns = opts.node_namespace or pods[0].namespace
    return _single(kubectl, pyz, _session(kubectl, node, ns, opts, warn, agents), command, new, opts)


def _target(pod: Pod, container: str | None, path: str | None) -> str:
    t = pod.target(pod.container(container))
    return t if path is None else f"{t}:{path}"


def _workload(kubectl: Kubectl, pyz: pyz_mod.Pyz, command: str, args: list[str], at: int,
              path: str | None, pods: list[Pod], opts: argparse.Namespace,
              warn: Callable[[str], object], agents: dict[str, str] | None) -> int:
    groups: dict[str, fanout.NodeJobs] = {}
    jobs: list[fanout.Job] = []
    for pod in pods:
        new = list(args)
        try:
            new[at] = _target(pod, opts.container, path)
        except CtrfsError as e:
            jobs.append(fanout.Job({"pod": pod.name, "node": pod.node or ""}, [], rc=e.exit_code, error=e))
            continue
        assert pod.node is not None
        g = groups.get(pod.node)
        if g is None:
            ns = opts.node_namespace or pod.namespace
            g = groups[pod.node] = fanout.NodeJobs(_session(kubectl, pod.node, ns, opts, warn, agents))
        job = fanout.Job({"pod": pod.name, "node": pod.node}, [command, *new])
        g.jobs.append(job)
        jobs.append(job)
    fanout.run(kubectl, pyz, list(groups.values()))
    return fanout.merge(jobs, command, as_json="--json" in args, tag_name="pod")


def all_nodes(kubectl: Kubectl, pyz: pyz_mod.Pyz, command: str, args: list[str],
              opts: argparse.Namespace, warn: Callable[[str], object]) -> int:
    if command not in FAN_OUT:
        raise UsageError(f"--all-nodes runs {', '.join(sorted(FAN_OUT))}; not {command!r}")
    agents = find_agents(kubectl)
    if not agents:
        raise CtrfsError("--all-nodes needs the node agents, and none is running",
                         hint="install them with 'kubectl ctrfs deploy'")
    groups = []
    jobs = []
    for node in sorted(agents):
        job = fanout.Job({"node": node}, [command, *args])
        groups.append(fanout.NodeJobs(AgentSession(node, agents[node]), [job]))
        jobs.append(job)
    fanout.run(kubectl, pyz, groups)
    return fanout.merge(jobs, command, as_json="--json" in args, tag_name="node",
                        tolerate_not_found=TARGET_AT[command] is not None)


def _session(kubectl: Kubectl, node: str, namespace: str | None, opts: argparse.Namespace,
             warn: Callable[[str], object], agents: dict[str, str] | None) -> Session:
    if agents is None and not opts.ephemeral:
        agents = find_agents(kubectl)
    if agents and node in agents:
        return AgentSession(node, agents[node])
    return EphemeralSession(kubectl, node, namespace=opts.node_namespace or namespace,
                            image=opts.image, privileged=opts.privileged, deadline=opts.deadline,
                            timeout=opts.timeout, warn=warn)


def _single(kubectl: Kubectl, pyz: pyz_mod.Pyz, session: Session, command: str, args: list[str],
            opts: argparse.Namespace) -> int:
    """One command on one node, its streams passed through as they come."""
    err = err_to(sys.stderr.buffer)
    if command == "cp":
        return _cp(kubectl, pyz, session, args, err)
    if command == "export":
        return _export(kubectl, pyz, session, args, err)
    sys.stdout.flush()
    with session as s:
        return s.run(kubectl, pyz, [command, *args], copy_to_fd(sys.stdout.fileno()), err)


def _cp(kubectl: Kubectl, pyz: pyz_mod.Pyz, session: Session, args: list[str],
        err: Callable[[bytes], object]) -> int:
    pos = _positionals("cp", args)
    if len(pos) != 2:
        raise UsageError("cp needs POD:PATH DEST")
    src_i, dest_i = pos
    dest = args[dest_i]
    flags = [a for i, a in enumerate(args) if i not in pos]
    preserve = "--preserve-all" in flags
    as_json = "--json" in flags
    node_args = ["cp", *[f for f in flags if f not in ("--preserve-all", "--json")], args[src_i], "-"]
    if dest == "-":
        _refuse_tty("a tar stream")
        with session as s:
            return s.run(kubectl, pyz, node_args, copy_to_fd(sys.stdout.fileno()), err)
    src = args[src_i].rpartition(":")[2] if "://" not in args[src_i] else \
        args[src_i].partition("://")[2].partition(":")[2]
    warn = lambda m: err(f"kubectl-ctrfs: warning: {m}\n".encode())  # noqa: E731
    with Unpacker(src or "/", dest, preserve_all=preserve, warn=warn) as u, session as s:
        rc = s.run(kubectl, pyz, node_args, u.consume, err)
        if rc != 0:
            return rc
        result = u.commit()
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict()) + "\n")
    return 0


def _export(kubectl: Kubectl, pyz: pyz_mod.Pyz, session: Session, args: list[str],
            err: Callable[[bytes], object]) -> int:
    # -o FILE is a file on this machine: the node writes the tar to stdout, this side writes
    # FILE through a temporary name and renames it when the node said the stream is complete.
    output, node_args, skip = None, ["export"], False
    for i, a in enumerate(args):
        if skip:
            skip = False
        elif a in ("-o", "--output"):
            if i + 1 >= len(args):
                raise UsageError(f"{a} needs FILE")
            output, skip = args[i + 1], True
        elif a.startswith("--output="):
            output = a.partition("=")[2]
        else:
            node_args.append(a)
    if output is None:
        _refuse_tty("a tar archive")
        with session as s:
            return s.run(kubectl, pyz, node_args, copy_to_fd(sys.stdout.fileno()), err)
    directory = os.path.dirname(os.path.abspath(output))
    fd, tmp = tempfile.mkstemp(prefix=".ctrfs-export-", dir=directory)
    try:
        with session as s:
            rc = s.run(kubectl, pyz, node_args, copy_to_fd(fd), err)
        if rc == 0:
            os.fsync(fd)
            os.chmod(tmp, 0o644 & ~_umask())  # as ctrfs export -o leaves it
            os.rename(tmp, output)
        return rc
    finally:
        os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _refuse_tty(what: str) -> None:
    if sys.stdout.isatty():
        raise UsageError(f"refusing to write {what} to a terminal; redirect stdout")


DEPLOY_EXAMPLES = """\
Examples:
  kubectl ctrfs deploy
  kubectl ctrfs deploy --print > ctrfs-agent.yaml
  kubectl ctrfs deploy --image registry.example/python:3.12-slim"""


def deploy(kubectl: Kubectl, args: list[str], opts: argparse.Namespace) -> int:
    p = argparse.ArgumentParser(prog=f"{PROG} deploy", description="Install the ctrfs node agents: "
                                "a DaemonSet in namespace ctrfs, its ServiceAccount (no API access) "
                                "and the Role 'ctrfs-user' that users of the agents need.",
                                epilog=DEPLOY_EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--print", dest="print_only", action="store_true", help="print the manifests only")
    p.add_argument("--json", dest="as_json", action="store_true",
                   help="the manifests (--print) or what kubectl applied, as JSON")
    p.add_argument("--image", default=opts.image, help="the agents' image, with Python >= 3.11")
    p.add_argument("--privileged", action="store_true", default=opts.privileged,
                   help="privileged agents instead of the listed capabilities")
    a = p.parse_args(args)
    text = manifests.agent_yaml(a.image, privileged=a.privileged)
    if a.print_only:
        if a.as_json:
            items = manifests.agent_objects(a.image, privileged=a.privileged)
            listing = {"apiVersion": "v1", "kind": "List", "items": items}
            sys.stdout.write(json.dumps(listing, indent=2) + "\n")
        else:
            sys.stdout.write(text)
        return 0
    out = kubectl.run(["apply", "-f", "-", *(["-o", "json"] if a.as_json else [])],
                      doing="deploying the ctrfs agents", stdin=text.encode())
    sys.stdout.write(out.decode("utf-8", "replace"))
    return 0


def undeploy(kubectl: Kubectl, args: list[str]) -> int:
    p = argparse.ArgumentParser(prog=f"{PROG} undeploy",
                                description="Remove the ctrfs node agents and everything deploy made.",
                                epilog="Examples:\n  kubectl ctrfs undeploy",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", dest="as_json", action="store_true", help="what was removed, as a JSON array")
    a = p.parse_args(args)
    out = kubectl.run(["delete", "-f", "-", "--ignore-not-found", "--wait=false",
                       *(["-o", "name"] if a.as_json else [])],
                      doing="removing the ctrfs agents", stdin=manifests.agent_yaml().encode())
    text = out.decode("utf-8", "replace")
    sys.stdout.write(json.dumps(text.split()) + "\n" if a.as_json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
