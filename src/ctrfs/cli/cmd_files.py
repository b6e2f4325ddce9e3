"""File commands: ls, cat, stat, find, grep, tail, du, cp, export. Thin: parse, call
:mod:`ctrfs.ops`, render. Names are printed through ``escape`` (terminal-safe)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import click

from ctrfs.cli.common import escape, get_container, json_option, split_target_path, stderr_is_tty
from ctrfs.errors import CtrfsError, ProcessGone, UsageError

if TYPE_CHECKING:
    from ctrfs.ops.listing import FileInfo
    from ctrfs.rootfs.base import Root, WalkWarning


# -- helpers ---------------------------------------------------------------------------------
def _open(ctx: click.Context, target: str, *, running: bool = False) -> Root:
    c = get_container(ctx, target)
    if running and not c.running:
        raise ProcessGone(target=c.display_name)
    root = c.open_root()
    root.target = c.display_name
    return root


def _open_view(ctx: click.Context, target: str) -> Root:
    """The container's Root as walks of export, cp, du, find and grep see it (ctrfs.views)."""
    from ctrfs.views import container_view

    return container_view(_open(ctx, target))


def _target_path(spec: str, *, default: str | None = None) -> tuple[str, str]:
    target, path = split_target_path(spec, require_path=default is None)
    return target, path if path is not None else (default or "/")


def _warn(w: WalkWarning) -> None:
    click.echo(f"ctrfs: warning: {escape(w.path)}: {escape(w.message)}", err=True)


def _error(err: CtrfsError) -> None:
    click.echo(f"ctrfs: {escape(str(err))}", err=True)


def _out() -> Any:
    return sys.stdout.buffer


def _json_stream(items: Iterable[Any]) -> None:
    """A JSON array written item by item (a find over a big tree never sits in memory).

    The opening ``[`` waits for the first item: a command that fails before producing anything
    (missing start path, target gone) leaves stdout empty rather than an unclosed array."""
    w = sys.stdout.write
    first = True
    for it in items:
        row = json.dumps(it.to_dict(), ensure_ascii=False)
        w("[\n  " if first else ",\n  ")
        w(row)
        first = False
    w("[]\n" if first else "\n]\n")


def _emit(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _mtime(ts: float) -> str:
    from datetime import datetime  # lazy: `ctrfs cat` starts without it

    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def _long_lines(infos: list[FileInfo], *, full_path: bool = False) -> list[str]:
    rows = []
    for i in infos:
        size = f"{i.rdev[0]}, {i.rdev[1]}" if i.rdev else str(i.size)
        name = escape(i.path if full_path else i.name)
        if i.link_target is not None:
            name += " -> " + escape(i.link_target)
        rows.append([i.mode_string, str(i.nlink), escape(i.user or str(i.uid)),
                     escape(i.group or str(i.gid)), size, _mtime(i.mtime), name])
    if not rows:
        return []
    widths = [max(len(r[c]) for r in rows) for c in range(6)]
    out = []
    for r in rows:
        out.append(" ".join([r[0], r[1].rjust(widths[1]), r[2].ljust(widths[2]),
                             r[3].ljust(widths[3]), r[4].rjust(widths[4]), r[5], r[6]]))
    return out


@contextlib.contextmanager
def _progress(enabled: bool, what: str) -> Iterator[Any]:
    """A rich progress line on stderr (only on a terminal); yields a (entries, bytes) callback."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        FileSizeColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), FileSizeColumn(),
                  TransferSpeedColumn(), TextColumn("{task.fields[entries]} entries"),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as p:
        task = p.add_task(what, total=None, entries=0)

        def update(entries: int, nbytes: int) -> None:
            p.update(task, completed=nbytes, entries=entries)

        yield update


# -- ls --------------------------------------------------------------------------------------
@click.command("ls", epilog="""\b
Examples:
  ctrfs ls web:/etc                 names in /etc of container 'web'
  ctrfs ls -la web:/var/log         long listing; owners from the container's /etc/passwd
  ctrfs ls -R web:/app --json       every directory below /app, as JSON
""")
@click.option("-l", "long", is_flag=True, help="Long listing: mode, links, owner, group, size, mtime.")
@click.option("-a", "--all", "show_all", is_flag=True, help="Include names starting with '.'.")
@click.option("-R", "--recursive", is_flag=True, help="List subdirectories too (same mount only).")
@json_option
@click.argument("spec", metavar="TARGET[:PATH]")
@click.pass_context
def ls_cmd(ctx: click.Context, long: bool, show_all: bool, recursive: bool, as_json: bool,
           spec: str) -> None:
    """List a directory inside a container (default: its root)."""
    from ctrfs.ops.listing import ls

    target, path = _target_path(spec, default="/")
    with _open(ctx, target) as root:
        # like GNU ls: -l shows a symlink given as PATH itself, unless PATH ends with '/'
        follow = not long or path.endswith("/")
        listings = ls(root, path, all=show_all, recursive=recursive, follow=follow,
                      on_warning=_warn)
        if as_json:
            _json_stream(listings)
            root.check_alive()
            return
        first = True
        for lst in listings:
            if recursive:
                if not first:
                    click.echo("")
                click.echo(escape(lst.path) + ":")
            first = False
            if long:
                lines = _long_lines(lst.entries, full_path=not lst.is_dir)
            else:
                lines = [escape(i.path if not lst.is_dir else i.name) for i in lst.entries]
            if lines:
                click.echo("\n".join(lines))
        root.check_alive()


# -- cat -------------------------------------------------------------------------------------
@click.command("cat", epilog="""\b
Examples:
  ctrfs cat web:/etc/os-release
  ctrfs cat web:/etc/passwd web:/etc/group
  ctrfs cat pid://4242:/proc/self/status      (the container's procfs, not the host's)
""")
@click.argument("specs", nargs=-1, required=True, metavar="TARGET:PATH...")
@click.pass_context
def cat_cmd(ctx: click.Context, specs: tuple[str, ...]) -> None:
    """Print regular files from inside containers (FIFOs, devices, sockets are refused)."""
    from ctrfs.ops.content import cat

    parsed = [_target_path(s) for s in specs]
    status = 0
    roots: dict[str, Root] = {}
    try:
        out = _out()
        for target, path in parsed:
            try:
                if target not in roots:
                    roots[target] = _open(ctx, target)
                for chunk in cat(roots[target], path):
                    out.write(chunk)
                out.flush()
            except ProcessGone:
                raise
            except CtrfsError as err:
                if len(parsed) == 1:
                    raise
                out.flush()
                _error(err)
                status = status or err.exit_code
    finally:
        for r in roots.values():
            r.close()
    if status:
        ctx.exit(status)


# -- stat ------------------------------------------------------------------------------------
@click.command("stat", epilog="""\b
Examples:
  ctrfs stat web:/etc/passwd
  ctrfs stat -L web:/etc/localtime      the file the symlink leads to (inside the container)
  ctrfs stat --json web:/app/server
""")
@click.option("-L", "--dereference", is_flag=True, help="Follow a final symlink (inside the container).")
@json_option
@click.argument("spec", metavar="TARGET:PATH")
@click.pass_context
def stat_cmd(ctx: click.Context, dereference: bool, as_json: bool, spec: str) -> None:
    """Show a file's metadata inside a container."""
    from ctrfs.ops.listing import iso, stat_path

    target, path = _target_path(spec)
    with _open(ctx, target) as root:
        info = stat_path(root, path, follow=dereference)
        root.check_alive()
    if as_json:
        _emit(info.to_dict())
        return
    name = escape(info.path)
    if info.link_target is not None:
        name += " -> " + escape(info.link_target)
    dev = f"  Device type: {info.rdev[0]},{info.rdev[1]}" if info.rdev else ""
    click.echo(f"  File: {name}\n"
               f"  Size: {info.size:<10}  Blocks: {info.blocks:<8}  {info.kind}{dev}\n"
               f"Device: {os.major(info.device)},{os.minor(info.device)}  Inode: {info.inode}"
               f"  Links: {info.nlink}{'  (mount point)' if info.mount_point else ''}\n"
               f"Access: ({info.mode:04o}/{info.mode_string})  Uid: ({info.uid}/"
               f"{escape(info.user or '?')})  Gid: ({info.gid}/{escape(info.group or '?')})\n"
               f"Access: {iso(info.atime)}\nModify: {iso(info.mtime)}\nChange: {iso(info.ctime)}")


# -- find ------------------------------------------------------------------------------------
@click.command("find", epilog="""\b
Examples:
  ctrfs find web:/etc --name '*.conf'
  ctrfs find web --type f --size +10M          files over 10 MiB anywhere in the container
  ctrfs find web:/var/log --mmin -5 --json     modified in the last 5 minutes
  ctrfs find web:/app --newer /app/VERSION --maxdepth 2
""")
@click.option("--name", "glob", metavar="GLOB", help="Base name matches this shell pattern.")
@click.option("--type", "types", metavar="f|d|l|p|s|c|b",
              help="File type(s), comma-separated: f file, d dir, l symlink, p fifo, s socket, "
                   "c/b device.")
@click.option("--size", metavar="[+-]N[kMG]", help="Size more (+), less (-) than or exactly N "
              "(rounded up to the unit, as in find(1)); no unit means bytes.")
@click.option("--newer", metavar="PATH", help="Modified more recently than PATH (inside the container).")
@click.option("--mmin", metavar="[+-]N", help="Modified more (+), less (-) than or exactly N minutes ago.")
@click.option("--maxdepth", type=click.IntRange(min=0), help="Descend at most N levels.")
@click.option("--xdev", is_flag=True, help="Stay on the starting mount (like find -xdev); from "
              "the root mount, the root filesystem alone, beneath mount points included.")
@json_option
@click.argument("spec", metavar="TARGET[:PATH]")
@click.pass_context
def find_cmd(ctx: click.Context, glob: str | None, types: str | None, size: str | None,
             newer: str | None, mmin: str | None, maxdepth: int | None, xdev: bool,
             as_json: bool, spec: str) -> None:
    """Search for files inside a container (symlinks are not followed).

    Walks the container's view as cp copies it: volumes, binds and tmpfs mounts included,
    kernel interfaces (/proc, /sys, the runtime's /dev) as the root filesystem holds them."""
    from ctrfs.ops.find import FindQuery, find, parse_mmin, parse_size

    target, path = _target_path(spec, default="/")
    letters = frozenset(t.strip() for t in types.split(",")) if types else frozenset()
    if letters - set("fdlpscb"):
        raise UsageError(f"invalid --type {types!r}; use f, d, l, p, s, c or b")
    if newer and mmin:
        raise UsageError("use either --newer or --mmin")
    q = FindQuery(name=glob, types=letters, size=parse_size(size) if size else None,
                  mmin=parse_mmin(mmin) if mmin else None, max_depth=maxdepth)
    with _open_view(ctx, target) as root:
        if newer:
            q.newer_than = root.stat(newer).st_mtime
        results = find(root, path, q, one_filesystem=xdev, on_warning=_warn)
        if as_json:
            _json_stream(results)
            return
        for info in results:
            click.echo(escape(info.path))


# -- grep ------------------------------------------------------------------------------------
@click.command("grep", epilog="""\b
Examples:
  ctrfs grep -n ERROR web:/var/log/app.log
  ctrfs grep -ril 'password' web:/etc          files under /etc that mention it
  ctrfs grep -E 'tick (1|2)[0-9]$' web:/var/log/app.log --json
""")
@click.option("-i", "--ignore-case", is_flag=True, help="Case-insensitive match.")
@click.option("-l", "--files-with-matches", "files_only", is_flag=True, help="Print only file names.")
@click.option("-n", "--line-number", is_flag=True, help="Prefix lines with their number.")
@click.option("-r", "--recursive", is_flag=True, help="Search every regular file below a directory.")
@click.option("-E", "--extended-regexp", "extended", is_flag=True, help="PATTERN is an extended regex.")
@json_option
@click.argument("pattern")
@click.argument("spec", metavar="TARGET[:PATH]")
@click.pass_context
def grep_cmd(ctx: click.Context, ignore_case: bool, files_only: bool, line_number: bool,
             recursive: bool, extended: bool, as_json: bool, pattern: str, spec: str) -> None:
    """Print lines matching PATTERN in files inside a container. Exit 1 if nothing matched.

    Binary files (a NUL byte in the first 32 KiB, as GNU grep decides) are reported, not
    printed; FIFOs, sockets and devices are never read. -r walks the container's view as cp
    copies it: volumes, binds and tmpfs mounts included, kernel interfaces left out."""
    from ctrfs.ops.content import GrepFile, compile_pattern, grep

    target, path = _target_path(spec, default="/" if recursive else None)
    rx = compile_pattern(pattern, ignore_case=ignore_case, extended=extended)
    matched = False
    with _open_view(ctx, target) as root:
        prefix = recursive
        results = grep(root, rx, path, recursive=recursive, files_only=files_only,
                       on_warning=_warn)
        if as_json:
            class _Item:
                def __init__(self, r: Any) -> None:
                    self.r = r

                def to_dict(self) -> dict[str, Any]:
                    kind = "file" if isinstance(self.r, GrepFile) else "line"
                    return {"kind": kind, **self.r.to_dict()}

            def items() -> Iterator[_Item]:
                nonlocal matched
                for r in results:
                    matched = True
                    yield _Item(r)

            _json_stream(items())
        else:
            out = _out()
            for r in results:
                matched = True
                if isinstance(r, GrepFile):
                    if r.binary and not files_only:
                        out.flush()
                        click.echo(f"ctrfs: {escape(r.path)}: binary file matches", err=True)
                    else:
                        out.write(escape(r.path).encode() + b"\n")
                    continue
                head = (escape(r.path).encode() + b":") if prefix else b""
                if line_number:
                    head += str(r.line_number).encode() + b":"
                out.write(head + r.line + b"\n")
            out.flush()
    if not matched:
        ctx.exit(1)


# -- tail ------------------------------------------------------------------------------------
@click.command("tail", epilog="""\b
Examples:
  ctrfs tail web:/var/log/app.log
  ctrfs tail -n 100 -f web:/var/log/app.log     follow what is appended (inotify, no polling)
  ctrfs tail -F web:/var/log/app.log            keep following across log rotation and
                                                'docker restart web'
""")
@click.option("-n", "--lines", default=10, show_default=True, type=click.IntRange(min=0),
              help="Print the last N lines.")
@click.option("-f", "follow_fd", is_flag=True, help="Follow the opened file as it grows.")
@click.option("-F", "follow_name", is_flag=True,
              help="Follow the name: survive rotation, truncation and container restarts.")
@click.argument("spec", metavar="TARGET:PATH")
@click.pass_context
def tail_cmd(ctx: click.Context, lines: int, follow_fd: bool, follow_name: bool, spec: str) -> None:
    """Print the end of a file inside a container, and optionally follow it."""
    from ctrfs.ops.follow import TailData, tail

    target, path = _target_path(spec)
    follow = "name" if follow_name else "descriptor" if follow_fd else None
    root = _open(ctx, target)

    def reopen() -> Root:
        # Only a running container counts as back: a stopped one would open its layers offline.
        return _open(ctx, target, running=True)

    events = tail(root, path, lines=lines, follow=follow, reopen=reopen)
    out = _out()
    try:
        for ev in events:
            if isinstance(ev, TailData):
                out.write(ev.data)
                out.flush()
            else:
                click.echo(f"ctrfs: {escape(ev.message)}", err=True)
    except KeyboardInterrupt:
        events.close()
        ctx.exit(130)
    finally:
        events.close()
        # tail() swaps in a new Root after a restart and closes the old one; close whatever
        # is current (closing twice is harmless).
        root.close()


# -- du --------------------------------------------------------------------------------------
@click.command("du", epilog="""\b
Examples:
  ctrfs du -sh web                 total size of the container's root filesystem
  ctrfs du -h web:/var/lib         per directory, like du
  ctrfs du --apparent-size --json web:/app
""")
@click.option("-s", "--summarize", is_flag=True, help="Only the total.")
@click.option("-h", "--human-readable", "human_readable", is_flag=True, help="Sizes like 1.5K 234M 2G.")
@click.option("--apparent-size", is_flag=True, help="Sum file sizes, not disk blocks.")
@click.option("--all-mounts", is_flag=True, help="Count the container's view as cp copies it: "
              "volumes, binds and tmpfs mounts too (kernel interfaces never).")
@json_option
@click.argument("spec", metavar="TARGET[:PATH]")
@click.pass_context
def du_cmd(ctx: click.Context, summarize: bool, human_readable: bool, apparent_size: bool,
           all_mounts: bool, as_json: bool, spec: str) -> None:
    """Disk usage inside a container; hardlinked files count once.

    From the root mount, counts the root filesystem alone (what docker export would hold,
    beneath mount points included) unless --all-mounts."""
    from ctrfs.ops.du import du, human

    target, path = _target_path(spec, default="/")
    with _open_view(ctx, target) as root:
        usages = du(root, path, summarize=summarize, apparent=apparent_size,
                    all_mounts=all_mounts, on_warning=_warn)
        if as_json:
            _json_stream(usages)
            return
        for u in usages:
            size = human(u.bytes) if human_readable else str(-(-u.bytes // 1024))
            click.echo(f"{size}\t{escape(u.path)}")


# -- cp --------------------------------------------------------------------------------------
@click.command("cp", epilog="""\b
Examples:
  ctrfs cp web:/etc/nginx ./nginx-conf       a directory tree to the host
  ctrfs cp web:/var/log/app.log /tmp/        into an existing directory
  ctrfs cp web:/app - | tar -tvf -           a tar stream, like docker cp
  ctrfs cp -x web:/ ./rootfs                 the root filesystem only, no volumes or binds
""")
@click.option("-L", "--follow-link", is_flag=True, help="Copy what a symlink SRC leads to.")
@click.option("-x", "--one-file-system", is_flag=True,
              help="Keep to SRC's own mount: from the root mount, the root filesystem alone "
                   "(what lies beneath mount points included), as export shows it.")
@click.option("--preserve-all", is_flag=True,
              help="Keep setuid/setgid bits, extended attributes (file capabilities) and "
                   "device nodes (dropped by default).")
@json_option
@click.argument("spec", metavar="TARGET:PATH")
@click.argument("dest", metavar="DEST")
@click.pass_context
def cp_cmd(ctx: click.Context, follow_link: bool, one_file_system: bool, preserve_all: bool,
           as_json: bool, spec: str, dest: str) -> None:
    """Copy a file or directory out of a container. DEST '-' writes a tar stream to stdout.

    Modes, mtimes, symlinks, hardlinks and (as root) ownership are kept; the copy is built
    under a temporary name next to DEST and renamed when complete.

    What is below SRC is copied as the container sees it, as docker cp does: files on other
    mounts (volumes, binds, tmpfs, the runtime's /etc/hosts, /etc/hostname, /etc/resolv.conf)
    with their content. Kernel interfaces are not followed: below /proc, /sys,
    cgroupfs, devpts, mqueue and the runtime's /dev, the root filesystem's own entries are
    copied. -x keeps to SRC's own mount."""
    from ctrfs.ops.archive import write_tar
    from ctrfs.ops.copy import copy_out

    target, path = _target_path(spec)
    show = stderr_is_tty() and not as_json
    with _open_view(ctx, target) as root:
        if dest == "-":
            if sys.stdout.isatty():
                raise UsageError("refusing to write a tar stream to a terminal; redirect stdout")
            with _progress(show, "copying") as prog:
                stats = write_tar(root, _out(), path, follow=follow_link, on_warning=_warn,
                                  progress=prog, include_mounts=not one_file_system)
            _out().flush()
            if as_json:
                click.echo(json.dumps({"entries": stats.entries, "bytes": stats.bytes,
                                       "warnings": stats.warnings}), err=True)
            return
        with _progress(show, "copying") as prog:
            result = copy_out(root, path, dest, follow=follow_link, preserve_all=preserve_all,
                              one_filesystem=one_file_system, on_warning=_warn, progress=prog)
    if as_json:
        _emit(result.to_dict())


# -- export ----------------------------------------------------------------------------------
@click.command("export", epilog="""\b
Examples:
  ctrfs export web -o web.tar            like 'docker export web -o web.tar', no daemon
  ctrfs export web | tar -tvf - | less
  ctrfs export web --include-mounts -o full.tar    volumes, binds, /proc... included
""")
@click.option("-o", "--output", metavar="FILE", help="Write to FILE (via a temporary name).")
@click.option("--include-mounts", is_flag=True,
              help="The container's view, as cp copies it: volumes, binds and tmpfs mounts "
                   "with their content (default: the root filesystem alone).")
@json_option
@click.argument("target")
@click.pass_context
def export_cmd(ctx: click.Context, output: str | None, include_mounts: bool, as_json: bool,
               target: str) -> None:
    """Write a container's root filesystem as a tar archive (to stdout or -o FILE).

    As docker export: the root filesystem alone, what it holds beneath mount points included
    (the runtime's /dev entries, the placeholder files under /etc/hosts and the like, with
    the root filesystem's modes), nothing of other mounts unless --include-mounts."""
    from ctrfs.ops.archive import write_tar
    from ctrfs.ops.outfile import replace_when_done

    if output is None and sys.stdout.isatty():
        raise UsageError("refusing to write a tar archive to a terminal; use -o FILE or redirect")
    show = stderr_is_tty() and not as_json
    with _open_view(ctx, target) as root:
        if output is None:
            with _progress(show, "exporting") as prog:
                stats = write_tar(root, _out(), "/", include_mounts=include_mounts,
                                  on_warning=_warn, progress=prog)
            _out().flush()
        else:
            with replace_when_done(output, prefix=".ctrfs-export-", suffix=".tar") as f, \
                    _progress(show, "exporting") as prog:
                stats = write_tar(root, f, "/", include_mounts=include_mounts,
                                  on_warning=_warn, progress=prog)
    if as_json:
        data = {"entries": stats.entries, "bytes": stats.bytes, "warnings": stats.warnings,
                "output": output}
        if output is None:
            click.echo(json.dumps(data), err=True)
        else:
            _emit(data)
