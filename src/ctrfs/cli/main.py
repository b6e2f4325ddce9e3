"""Entry point: the command table, the global options and the one table from exception to exit code.

``main`` is the error handling; ``program`` is the main program without it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ctrfs._version import version_line
from ctrfs.errors import UsageError, run_program

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ctrfs.cli.argparsing import Parser

# name → module that defines it (with ctrfs.cli.app.command). A command's module is imported only
# when it runs, so `ctrfs cat` pays for neither rich nor pyelftools. Sorted; one line per command.
COMMANDS: dict[str, str] = {
    "__complete": "ctrfs.cli.cmd_complete",
    "browse": "ctrfs.cli.cmd_browse",
    "cat": "ctrfs.cli.cmd_files",
    "completion": "ctrfs.cli.cmd_complete",
    "cp": "ctrfs.cli.cmd_files",
    "diff": "ctrfs.cli.cmd_layers",
    "du": "ctrfs.cli.cmd_files",
    "exec": "ctrfs.cli.cmd_exec",
    "export": "ctrfs.cli.cmd_files",
    "find": "ctrfs.cli.cmd_files",
    "grep": "ctrfs.cli.cmd_files",
    "images": "ctrfs.cli.cmd_discover",
    "inspect": "ctrfs.cli.cmd_discover",
    "layers": "ctrfs.cli.cmd_layers",
    "libs": "ctrfs.cli.cmd_probes",
    "ls": "ctrfs.cli.cmd_files",
    "mounts": "ctrfs.cli.cmd_layers",
    "probe": "ctrfs.cli.cmd_probes",
    "ps": "ctrfs.cli.cmd_discover",
    "shell": "ctrfs.cli.cmd_exec",
    "stat": "ctrfs.cli.cmd_files",
    "tail": "ctrfs.cli.cmd_files",
    "which": "ctrfs.cli.cmd_layers",
}

DESCRIPTION = """\
Inspect any container's filesystem from the host: no shell, agent or daemon needed.

TARGET names a container: a name, an ID or ID prefix, RUNTIME://REF (docker, podman,
containerd://NS/ID, cri-o, runc, lxc, nspawn), k8s://NAMESPACE/POD[/CONTAINER] or pid://PID;
or an image, read-only: image://REF or oci:DIR[:TAG].
TARGET:PATH names a path inside it (image://REF:/PATH, oci:DIR[:TAG]:/PATH)."""

EPILOG = """\
Examples:
  ctrfs ps                       containers of every runtime, no daemon needed
  ctrfs inspect web --json       identity, pids, namespaces, overlay layers
  ctrfs ls -l web:/etc           list a directory inside container 'web'
  ctrfs cat pid://4242:/etc/os-release
  ctrfs --host-root /host ps     a host filesystem mounted under /host
  ctrfs COMMAND --help           a command's options and examples"""

# (flag, Roots field it overrides or None, metavar, help). Options taking a value are what the
# command-name scan below must step over.
GLOBAL_OPTIONS: tuple[tuple[str, str | None, str, str], ...] = (
    ("--host-root", None, "DIR", "host filesystem mounted at DIR (all roots below it)"),
    ("--proc", "proc", "DIR", "procfs to read [default: /proc]"),
    ("--docker-root", "docker", "DIR", "Docker data root [default: /var/lib/docker]"),
    ("--storage-root", "storage", "DIR",
     "containers/storage root (podman, CRI-O) [default: /var/lib/containers/storage]"),
    ("--containerd-state", "containerd_run", "DIR", "containerd state dir [default: /run/containerd]"),
)
_VALUE_FLAGS = frozenset(flag for flag, *_ in GLOBAL_OPTIONS)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:  # answered before anything is imported
        sys.stdout.write(version_line())
        return 0
    return run_program("ctrfs", lambda: program(args), debug="--debug" in args, shown=_sanitize)


def program(args: list[str]) -> int:
    """Parse ``args`` and run the command they name."""
    import importlib

    from ctrfs.cli import app

    name = command_name(args)
    if name is not None and not {"-h", "--help"}.isdisjoint(args[:args.index(name)]):
        name = None  # `ctrfs --help ls` is the top-level help: it lists every command
    if name is not None and name not in COMMANDS:
        raise UsageError(unknown_command(name))
    names = [name] if name is not None else sorted(COMMANDS)
    for n in names:
        importlib.import_module(COMMANDS[n])
    ns = quick_namespace(args)
    if ns is None:
        parser = build_parser(names)
        ns, extra = parser.parse_known_args(args)
        if extra:  # reported by the command's parser (it names the command) unless given before it
            before = set(args[:args.index(name)]) if name is not None else set(args)
            sub = parser if before.intersection(extra) else parser.commands.get(name or "", parser)
            sub.error(f"unrecognized arguments: {' '.join(extra)}")
        if getattr(ns, "_handler", None) is None:
            parser.print_help(sys.stderr)
            return 2
    handler = ns._handler
    overrides = {field: getattr(ns, "g_" + field) for _flag, field, *_ in GLOBAL_OPTIONS
                 if field is not None and getattr(ns, "g_" + field) is not None}
    state = app.State(ns.g_host_root, overrides, ns.g_debug)
    rv = handler(ns, state)
    return rv if isinstance(rv, int) else 0


def quick_namespace(args: list[str]) -> Any:
    """What ``build_parser(...).parse_known_args(args)`` gives, without argparse, for the plain
    command line of a hot command with no global option (see ``app.quick_parse``); else None.
    The command's module is imported."""
    from ctrfs.cli import app

    cmd = app.REGISTRY.get(args[0]) if args else None
    ns = app.quick_parse(cmd, args[1:]) if cmd is not None else None
    if ns is not None:
        for _flag, field, *_ in GLOBAL_OPTIONS:
            setattr(ns, "g_" + (field or "host_root"), None)
        ns.g_debug = False
    return ns


def build_parser(names: Sequence[str]) -> Parser:
    """The top-level parser with the subcommands ``names`` (each one's module imported)."""
    from ctrfs.cli import app
    from ctrfs.cli.argparsing import Parser

    parser = Parser(prog="ctrfs", description=DESCRIPTION, epilog=EPILOG)
    for flag, field, metavar, help_ in GLOBAL_OPTIONS:
        parser.add_argument(flag, dest="g_" + (field or "host_root"), metavar=metavar, help=help_)
    parser.add_argument("--debug", dest="g_debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action="version", version=version_line().rstrip("\n"))
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for n in names:
        cmd = app.REGISTRY[n]
        kwargs: dict[str, Any] = {"description": cmd.help, "epilog": cmd.epilog,
                                  "formatter_class": parser.formatter_class,
                                  "add_help": cmd.add_help}
        if not n.startswith("_"):  # "_name" (the completion scripts' helper): hidden from --help
            kwargs["help"] = cmd.summary
        p = sub.add_parser(n, **kwargs)
        cmd.build(p)
        parser.commands[n] = p
    return parser


def unknown_command(name: str) -> str:
    import difflib

    shown = sorted(n for n in COMMANDS if not n.startswith("_"))  # "_name": hidden
    close = difflib.get_close_matches(name, shown, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f"; commands: {', '.join(shown)}"
    return f"unknown command {name!r}{hint} (see 'ctrfs --help')"


def command_name(args: Sequence[str]) -> str | None:
    """The first word of ``args`` that is not a global option or its value."""
    skip = False
    for a in args:
        if skip:
            skip = False
        elif a in _VALUE_FLAGS:
            skip = True
        elif not a.startswith("-"):
            return a
        elif a == "--":
            return None
    return None


def _sanitize(text: str) -> str:
    from ctrfs.cli.common import escape

    return escape(text)
