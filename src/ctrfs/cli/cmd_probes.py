"""``ctrfs libs`` and ``ctrfs probe``: the ELF objects containers map, and uprobe specs for them."""

from __future__ import annotations

import re
import sys

import click

from ctrfs.cli.common import emit_json, escape, get_container, json_option, roots, table
from ctrfs.errors import CtrfsError, UsageError

LIBS_EPILOG = """\b
Examples:
  ctrfs libs web                        every ELF object web's processes map
  ctrfs libs web --match libssl --json  its libssl: host path, build-id, version, layer
  ctrfs libs --all --match 'libssl|libgnutls'   TLS libraries of every container
"""

PROBE_EPILOG = """\b
Examples:
  ctrfs probe web --lib libssl --symbol SSL_write --symbol SSL_read
  bpftrace -e "$(ctrfs probe web --lib libssl --symbol SSL_write) { printf(\\"%d\\n\\", pid); }"
  ctrfs probe web --exe --symbol main --format json     offsets for perf/libbpf
  ctrfs probe web --lib libssl --symbol SSL_read --pin  pinned to the mapped inode
\b
A uprobe sits on the file, not the container: every process mapping the same layer file
(other containers of the same image too) triggers it. Filter on pid or cgroup in the program.
"""


def _regex(value: str | None) -> re.Pattern[str] | None:
    if value is None:
        return None
    try:
        return re.compile(value)
    except re.error as err:
        raise UsageError(f"bad regular expression {value!r}: {err}") from err


def _warn(prefix: str, messages: list[str]) -> None:
    for m in messages:
        click.echo(f"ctrfs: warning: {escape(prefix)}{escape(m)}", err=True)


def _pids(pids: list[int], shown: int = 4) -> str:
    text = ",".join(str(p) for p in pids[:shown])
    return text + (f",+{len(pids) - shown}" if len(pids) > shown else "")


def _layer(o: object) -> str:
    layer = getattr(o, "layer", None)
    if layer is None:
        return "-"
    return layer.kind if layer.kind == "upper" else f"lower{layer.index}"


@click.command("libs", epilog=LIBS_EPILOG)
@click.argument("target", required=False)
@click.option("--all", "all_", is_flag=True, help="Every running container, grouped by container.")
@click.option("--match", metavar="REGEX", help="Only objects whose path in the container matches.")
@json_option
@click.pass_context
def libs_cmd(ctx: click.Context, target: str | None, all_: bool, match: str | None, as_json: bool) -> None:
    """Shared objects and executables a container's processes map.

    One line per file (deduplicated by device and inode): its path in the container, a host
    path that is verified to be the very same file (/proc/PID/root/PATH, or
    /proc/PID/map_files/RANGE once deleted or replaced), build-id, SONAME, the well-known
    library and version it is, and the overlay layer that provides it.
    """
    from ctrfs.probes import all_container_libs, container_libs

    if all_ == (target is not None):
        raise UsageError("give either TARGET or --all")
    pattern = _regex(match)
    if all_:
        import ctrfs

        results = all_container_libs(ctrfs.containers(roots=roots(ctx)), pattern)
    else:
        assert target is not None
        results = [container_libs(get_container(ctx, target), pattern)]

    if as_json:
        emit_json([r.to_dict() for r in results] if all_ else results[0].to_dict())
        return
    first = True
    for r in results:
        c = r.container
        if all_ and pattern is not None and not r.objects and not r.warnings:
            continue
        if all_:
            if not first:
                sys.stdout.write("\n")
            sys.stdout.write(f"{escape(c.display_name)} ({c.runtime} {c.short_id})\n")
            first = False
        rows = []
        for o in r.objects:
            lib = escape(" ".join(x for x in (o.library, o.version) if x) or "-")  # Go's comes from the file
            path = o.path + (" (deleted)" if o.deleted else "") + (" [exe]" if o.executable else "")
            rows.append([
                _pids(o.pids), escape(path), lib, o.build_id or "-", _layer(o),
                escape(o.host_path) if o.host_path else f"- ({o.identity})",
            ])
        if rows:
            table(["PIDS", "PATH", "LIBRARY", "BUILD-ID", "LAYER", "HOST PATH"], rows)
        _warn(f"{c.display_name}: ", r.warnings)
        for o in r.objects:
            _warn(f"{c.display_name}:{o.path}: ", o.warnings)


@click.command("probe", epilog=PROBE_EPILOG)
@click.argument("target")
@click.option("--lib", metavar="REGEX", help="Objects whose path in the container matches REGEX.")
@click.option("--symbol", "symbols", metavar="NAME", multiple=True, required=True,
              help="Function symbol to probe (repeatable).")
@click.option("--exe", is_flag=True, help="Also search the processes' executables.")
@click.option("--pin", is_flag=True,
              help="Print /proc/PID/map_files/RANGE paths: the mapped file itself, immune to the container "
                   "swapping files before the tracer attaches (valid while that process lives).")
@click.option("--format", "fmt", type=click.Choice(["bpftrace", "json"]), default="bpftrace",
              show_default=True, help="bpftrace attach points, or JSON with file offsets.")
@json_option
@click.pass_context
def probe_cmd(ctx: click.Context, target: str, lib: str | None, symbols: tuple[str, ...], exe: bool,
              pin: bool, fmt: str, as_json: bool) -> None:
    """Uprobe targets for SYMBOLs in the files a container maps, for use from the host.

    Each symbol is resolved (.dynsym, then .symtab) to the file offset a uprobe needs, once per
    file; the host path is verified to be the inode the processes map.
    """
    from ctrfs.probes import uprobe_targets

    if lib is None and not exe:
        raise UsageError("give --lib REGEX, --exe, or both")
    _regex(lib)
    c = get_container(ctx, target)
    targets = uprobe_targets(c, list(symbols), lib, exe=exe)
    if as_json or fmt == "json":
        emit_json({"container": {"id": c.id, "name": c.name, "runtime": c.runtime},
                   "probes": [t.to_dict() for t in targets]})
        return
    # Comma-separated so that "$(ctrfs probe ...) { ... }" is one valid bpftrace probe list.
    if pin and any(t.obj.map_files_path is None for t in targets):
        raise CtrfsError("--pin needs /proc/PID/map_files, which is not readable "
                         "(needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE)", target=c.display_name)
    sys.stdout.write(",\n".join(t.bpftrace(pin) for t in targets) + "\n")
    seen: set[tuple[int, int]] = set()
    for t in targets:
        if (t.obj.dev, t.obj.inode) not in seen:
            seen.add((t.obj.dev, t.obj.inode))
            _warn(f"{c.display_name}:{t.obj.path}: ", t.obj.warnings)
