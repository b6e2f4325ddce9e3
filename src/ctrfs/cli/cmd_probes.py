"""``ctrfs libs`` and ``ctrfs probe``: the ELF objects containers map, and uprobe specs for them."""

from __future__ import annotations

import re
import sys
from argparse import Namespace

from ctrfs.cli.app import JSON, State, arg, command
from ctrfs.cli.common import emit_json, escape, get_container, table
from ctrfs.errors import CtrfsError, UsageError

LIBS_EPILOG = """
Examples:
  ctrfs libs web                        every ELF object web's processes map
  ctrfs libs web --match libssl --json  its libssl: host path, build-id, version, layer
  ctrfs libs --all --match 'libssl|libgnutls'   TLS libraries of every container
"""

PROBE_EPILOG = """
Examples:
  ctrfs probe web --lib libssl --symbol SSL_write --symbol SSL_read
  bpftrace -e "$(ctrfs probe web --lib libssl --symbol SSL_write) { printf(\\"%d\\n\\", pid); }"
  ctrfs probe web --exe --symbol main --format json     offsets for perf/libbpf
  ctrfs probe web --lib libssl --symbol SSL_read --pin  pinned to the mapped inode

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
        sys.stderr.write(f"ctrfs: warning: {escape(prefix)}{escape(m)}\n")


def _pids(pids: list[int], shown: int = 4) -> str:
    text = ",".join(str(p) for p in pids[:shown])
    return text + (f",+{len(pids) - shown}" if len(pids) > shown else "")


def _layer(o: object) -> str:
    layer = getattr(o, "layer", None)
    if layer is None:
        return "-"
    return layer.kind if layer.kind == "upper" else f"lower{layer.index}"


@command("libs", """
Shared objects and executables a container's processes map.

One line per file (deduplicated by device and inode): its path in the container, a host
path that is verified to be the very same file (/proc/PID/root/PATH, or
/proc/PID/map_files/RANGE once deleted or replaced), build-id, SONAME, the well-known
library and version it is, and the overlay layer that provides it.
""", LIBS_EPILOG,
    arg("target", metavar="TARGET", nargs="?"),
    arg("--all", dest="all_", action="store_true", help="every running container, grouped by container"),
    arg("--match", metavar="REGEX", help="only objects whose path in the container matches"),
    JSON)
def libs_cmd(args: Namespace, state: State) -> None:
    from ctrfs.probes import all_container_libs, container_libs

    target, all_, as_json = args.target, args.all_, args.as_json

    if all_ == (target is not None):
        raise UsageError("give either TARGET or --all")
    pattern = _regex(args.match)
    if all_:
        import ctrfs

        results = all_container_libs(ctrfs.containers(roots=state.roots), pattern)
    else:
        assert target is not None
        results = [container_libs(get_container(state, target), pattern)]

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


@command("probe", """
Uprobe targets for SYMBOLs in the files a container maps, for use from the host.

Each symbol is resolved (.dynsym, then .symtab) to the file offset a uprobe needs, once per
file; the host path is verified to be the inode the processes map.
""", PROBE_EPILOG,
    arg("target", metavar="TARGET"),
    arg("--lib", metavar="REGEX", help="objects whose path in the container matches REGEX"),
    arg("--symbol", dest="symbols", metavar="NAME", action="append", required=True,
        help="function symbol to probe (repeatable)"),
    arg("--exe", action="store_true", help="also search the processes' executables"),
    arg("--pin", action="store_true",
        help="print /proc/PID/map_files/RANGE paths: the mapped file itself, immune to the container "
             "swapping files before the tracer attaches (valid while that process lives)"),
    arg("--format", dest="fmt", choices=["bpftrace", "json"], default="bpftrace",
        help="bpftrace attach points, or JSON with file offsets [default: bpftrace]"),
    JSON)
def probe_cmd(args: Namespace, state: State) -> None:
    from ctrfs.probes import uprobe_targets

    lib, exe, pin = args.lib, args.exe, args.pin
    if lib is None and not exe:
        raise UsageError("give --lib REGEX, --exe, or both")
    _regex(lib)
    c = get_container(state, args.target)
    targets = uprobe_targets(c, list(args.symbols), lib, exe=exe)
    if args.as_json or args.fmt == "json":
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
