"""Entry point, lazy command registry and the one table from exception to exit code."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import click

from ctrfs.errors import CtrfsError, UsageError

# name → "module:attribute". Commands are imported only when run, so `ctrfs cat` does not pay
# for rich or pyelftools. Keep this list sorted; one line per command.
COMMANDS: dict[str, str] = {
    "cat": "ctrfs.cli.cmd_files:cat_cmd",
    "cp": "ctrfs.cli.cmd_files:cp_cmd",
    "diff": "ctrfs.cli.cmd_layers:diff_cmd",
    "du": "ctrfs.cli.cmd_files:du_cmd",
    "export": "ctrfs.cli.cmd_files:export_cmd",
    "find": "ctrfs.cli.cmd_files:find_cmd",
    "grep": "ctrfs.cli.cmd_files:grep_cmd",
    "inspect": "ctrfs.cli.cmd_discover:inspect_cmd",
    "layers": "ctrfs.cli.cmd_layers:layers_cmd",
    "libs": "ctrfs.cli.cmd_probes:libs_cmd",
    "ls": "ctrfs.cli.cmd_files:ls_cmd",
    "mounts": "ctrfs.cli.cmd_layers:mounts_cmd",
    "probe": "ctrfs.cli.cmd_probes:probe_cmd",
    "ps": "ctrfs.cli.cmd_discover:ps_cmd",
    "stat": "ctrfs.cli.cmd_files:stat_cmd",
    "tail": "ctrfs.cli.cmd_files:tail_cmd",
    "which": "ctrfs.cli.cmd_layers:which_cmd",
}

EPILOG = """\b
Examples:
  ctrfs ps                       containers of every runtime, no daemon needed
  ctrfs inspect web --json       identity, pids, namespaces, overlay layers
  ctrfs ls -l web:/etc           list a directory inside container 'web'
  ctrfs cat pid://4242:/etc/os-release
  ctrfs --host-root /host ps     a host filesystem mounted under /host
"""


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = COMMANDS.get(cmd_name)
        if spec is None:
            return None
        module, _, attr = spec.partition(":")
        cmd = getattr(importlib.import_module(module), attr)
        assert isinstance(cmd, click.Command)
        return cmd


class State:
    """Options of the top-level group, passed to every command as ``ctx.obj``."""

    def __init__(self, roots: Any, debug: bool) -> None:
        self.roots = roots
        self.debug = debug


@click.group(cls=LazyGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host-root", metavar="DIR", help="Host filesystem mounted at DIR (all roots below it).")
@click.option("--proc", "proc_root", metavar="DIR", help="procfs to read [default: /proc].")
@click.option("--docker-root", metavar="DIR", help="Docker data root [default: /var/lib/docker].")
@click.option("--storage-root", metavar="DIR",
              help="containers/storage root (podman, CRI-O) [default: /var/lib/containers/storage].")
@click.option("--containerd-state", metavar="DIR", help="containerd state dir [default: /run/containerd].")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="ctrfs")
@click.pass_context
def cli(ctx: click.Context, host_root: str | None, proc_root: str | None, docker_root: str | None,
        storage_root: str | None, containerd_state: str | None, debug: bool) -> None:
    """Inspect any container's filesystem from the host: no shell, agent or daemon needed.

    TARGET names a container: a name, an ID or ID prefix, RUNTIME://REF (docker, podman,
    containerd://NS/ID, cri-o, runc), k8s://NAMESPACE/POD[/CONTAINER] or pid://PID.
    TARGET:PATH names a path inside it.
    """
    from ctrfs._record import replace
    from ctrfs.runtimes.base import Roots

    roots = Roots.under(host_root) if host_root else Roots()
    changes: dict[str, Any] = {k: v for k, v in (("proc", proc_root), ("docker", docker_root),
                                 ("storage", storage_root), ("containerd_run", containerd_state)) if v}
    ctx.obj = State(replace(roots, **changes), debug)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        # make_context + invoke rather than cli.main(): click's main turns EPIPE into exit(1)
        # before we could see it, and `ctrfs cp c:/dir - | head` would then report a failure.
        with cli.make_context("ctrfs", args) as ctx:
            rv = cli.invoke(ctx)
        if isinstance(rv, int) and rv:
            return rv
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.ClickException as e:
        e.show()
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except CtrfsError as e:
        if debug:
            import traceback

            traceback.print_exc()
        click.echo(f"ctrfs: {_sanitize(str(e))}", err=True)
        return e.exit_code if not isinstance(e, UsageError) else 2
    except Exception as e:  # noqa: BLE001 — last resort: a message, never a traceback by default
        if debug:
            raise
        click.echo(f"ctrfs: internal error: {type(e).__name__}: {e} (run with --debug)", err=True)
        return 1
    return 0


def _sanitize(text: str) -> str:
    from ctrfs.cli.common import escape

    return escape(text)


def _quiet_stdout() -> None:
    # After EPIPE, point stdout at /dev/null so the interpreter's final flush stays silent.
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except OSError:
        pass
