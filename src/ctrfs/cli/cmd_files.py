"""File commands: ls, cat, stat, find, grep, tail, du, cp, export. Thin: parse, call
:mod:`ctrfs.ops`, render. Names are printed through ``escape`` (terminal-safe)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterable, Iterator

from ctrfs.access import open_root
from ctrfs.cli.app import JSON, State, arg, command, natural
from ctrfs.cli.common import (
    emit_json,
    escape,
    get_container,
    split_target_path,
    stderr_is_tty,
    write_lines,
)
from ctrfs.errors import CtrfsError, ProcessGone, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from argparse import Namespace
    from typing import Any

    from ctrfs.ops.listing import FileInfo
    from ctrfs.rootfs.base import Root, WalkWarning


# -- helpers ---------------------------------------------------------------------------------
def _open(state: State, target: str, *, running: bool = False) -> Root:
    c = get_container(state, target)
    if running and not c.running:
        raise ProcessGone(target=c.display_name)
    root = open_root(c)
    root.target = c.display_name
    return root


def _open_view(state: State, target: str) -> Root:
    """The container's Root as walks of export, cp, du, find and grep see it (ctrfs.views)."""
    # Imported here: the views bring the mount clone (socket) and the offline overlay merge,
    # which cat, ls, stat and tail never use and must not pay for at start-up.
    from ctrfs.views import container_view

    return container_view(_open(state, target))


def _target_path(spec: str, *, default: str | None = None) -> tuple[str, str]:
    target, path = split_target_path(spec, require_path=default is None)
    return target, path if path is not None else (default or "/")


def _warn(w: WalkWarning) -> None:
    sys.stderr.write(f"ctrfs: warning: {escape(w.path)}: {escape(w.message)}\n")


def _error(err: CtrfsError) -> None:
    sys.stderr.write(f"ctrfs: {escape(str(err))}\n")


def _out() -> Any:
    return sys.stdout.buffer


def _json_stream(items: Iterable[Any]) -> None:
    """A JSON array written item by item (a find over a big tree never sits in memory).

    The opening ``[`` waits for the first item: a command that fails before producing anything
    (missing start path, target gone) leaves stdout empty rather than an unclosed array."""
    def rows() -> Iterator[str]:
        first = True
        for it in items:
            yield ("[\n  " if first else ",\n  ") + json.dumps(it.to_dict(), ensure_ascii=False)
            first = False
        yield "[]\n" if first else "\n]\n"

    write_lines(rows())


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
@command("ls", "List a directory inside a container (default: its root).", """
Examples:
  ctrfs ls web:/etc                 names in /etc of container 'web'
  ctrfs ls -la web:/var/log         long listing; owners from the container's /etc/passwd
  ctrfs ls -R web:/app --json       every directory below /app, as JSON
""",
    arg("-l", dest="long", action="store_true",
        help="long listing: mode, links, owner, group, size, mtime"),
    arg("-a", "--all", dest="show_all", action="store_true", help="include names starting with '.'"),
    arg("-R", "--recursive", action="store_true", help="list subdirectories too (same mount only)"),
    JSON,
    arg("spec", metavar="TARGET[:PATH]"))
def ls_cmd(args: Namespace, state: State) -> None:
    from ctrfs.ops.listing import ls

    long, show_all, recursive, as_json = args.long, args.show_all, args.recursive, args.as_json
    target, path = _target_path(args.spec, default="/")
    with _open(state, target) as root:
        # like GNU ls: -l shows a symlink given as PATH itself, unless PATH ends with '/'
        follow = not long or path.endswith("/")
        listings = ls(root, path, all=show_all, recursive=recursive, follow=follow,
                      on_warning=_warn)
        if as_json:
            _json_stream(listings)
            root.check_alive()
            return
        w = sys.stdout.write
        first = True
        for lst in listings:
            if recursive:
                if not first:
                    w("\n")
                w(escape(lst.path) + ":\n")
            first = False
            if long:
                lines = _long_lines(lst.entries, full_path=not lst.is_dir)
            else:
                lines = [escape(i.path if not lst.is_dir else i.name) for i in lst.entries]
            if lines:
                w("\n".join(lines) + "\n")
        root.check_alive()


# -- cat -------------------------------------------------------------------------------------
@command("cat", "Print regular files from inside containers (FIFOs, devices, sockets are refused).", """
Examples:
  ctrfs cat web:/etc/os-release
  ctrfs cat web:/etc/passwd web:/etc/group
  ctrfs cat pid://4242:/proc/self/status      (the container's procfs, not the host's)
""",
    arg("specs", nargs="+", metavar="TARGET:PATH"))
def cat_cmd(args: Namespace, state: State) -> int:
    from ctrfs.ops.content import cat

    parsed = [_target_path(s) for s in args.specs]
    status = 0
    roots: dict[str, Root] = {}
    try:
        out = _out()
        for target, path in parsed:
            try:
                if target not in roots:
                    roots[target] = _open(state, target)
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
    return status


# -- stat ------------------------------------------------------------------------------------
@command("stat", "Show a file's metadata inside a container.", """
Examples:
  ctrfs stat web:/etc/passwd
  ctrfs stat -L web:/etc/localtime      the file the symlink leads to (inside the container)
  ctrfs stat --json web:/app/server
""",
    arg("-L", "--dereference", action="store_true",
        help="follow a final symlink (inside the container)"),
    JSON,
    arg("spec", metavar="TARGET:PATH"))
def stat_cmd(args: Namespace, state: State) -> None:
    from ctrfs.ops.listing import iso, stat_path

    target, path = _target_path(args.spec)
    with _open(state, target) as root:
        info = stat_path(root, path, follow=args.dereference)
        root.check_alive()
    if args.as_json:
        emit_json(info.to_dict())
        return
    name = escape(info.path)
    if info.link_target is not None:
        name += " -> " + escape(info.link_target)
    dev = f"  Device type: {info.rdev[0]},{info.rdev[1]}" if info.rdev else ""
    sys.stdout.write(f"  File: {name}\n"
                     f"  Size: {info.size:<10}  Blocks: {info.blocks:<8}  {info.kind}{dev}\n"
                     f"Device: {os.major(info.device)},{os.minor(info.device)}  Inode: {info.inode}"
                     f"  Links: {info.nlink}{'  (mount point)' if info.mount_point else ''}\n"
                     f"Access: ({info.mode:04o}/{info.mode_string})  Uid: ({info.uid}/"
                     f"{escape(info.user or '?')})  Gid: ({info.gid}/{escape(info.group or '?')})\n"
                     f"Access: {iso(info.atime)}\nModify: {iso(info.mtime)}\nChange: {iso(info.ctime)}\n")


# -- find ------------------------------------------------------------------------------------
@command("find", """
Search for files inside a container (symlinks are not followed).

Walks the container's view as cp copies it: volumes, binds and tmpfs mounts included,
kernel interfaces (/proc, /sys, the runtime's /dev) as the root filesystem holds them.
""", """
Examples:
  ctrfs find web:/etc --name '*.conf'
  ctrfs find web --type f --size +10M          files over 10 MiB anywhere in the container
  ctrfs find web:/var/log --mmin -5 --json     modified in the last 5 minutes
  ctrfs find web:/app --newer /app/VERSION --maxdepth 2
""",
    arg("--name", dest="glob", metavar="GLOB", help="base name matches this shell pattern"),
    arg("--type", dest="types", metavar="f|d|l|p|s|c|b",
        help="file type(s), comma-separated: f file, d dir, l symlink, p fifo, s socket, c/b device"),
    arg("--size", metavar="[+-]N[kMG]", help="size more (+), less (-) than or exactly N "
        "(rounded up to the unit, as in find(1)); no unit means bytes"),
    arg("--newer", metavar="PATH", help="modified more recently than PATH (inside the container)"),
    arg("--mmin", metavar="[+-]N", help="modified more (+), less (-) than or exactly N minutes ago"),
    arg("--maxdepth", metavar="N", type=natural, help="descend at most N levels"),
    arg("--xdev", action="store_true", help="stay on the starting mount (like find -xdev); from "
        "the root mount, the root filesystem alone, beneath mount points included"),
    JSON,
    arg("spec", metavar="TARGET[:PATH]"))
def find_cmd(args: Namespace, state: State) -> None:
    from ctrfs.ops.find import FindQuery, find, parse_mmin, parse_size

    types, size, newer, mmin = args.types, args.size, args.newer, args.mmin
    target, path = _target_path(args.spec, default="/")
    letters = frozenset(t.strip() for t in types.split(",")) if types else frozenset()
    if letters - set("fdlpscb"):
        raise UsageError(f"invalid --type {types!r}; use f, d, l, p, s, c or b")
    if newer and mmin:
        raise UsageError("use either --newer or --mmin")
    q = FindQuery(name=args.glob, types=letters, size=parse_size(size) if size else None,
                  mmin=parse_mmin(mmin) if mmin else None, max_depth=args.maxdepth)
    with _open_view(state, target) as root:
        if newer:
            q.newer_than = root.stat(newer).st_mtime
        results = find(root, path, q, one_filesystem=args.xdev, on_warning=_warn)
        if args.as_json:
            _json_stream(results)
            return
        write_lines(escape(info.path) + "\n" for info in results)


# -- grep ------------------------------------------------------------------------------------
@command("grep", """
Print lines matching PATTERN in files inside a container. Exit 1 if nothing matched.

Binary files (a NUL byte in the first 32 KiB, as GNU grep decides) are reported, not
printed; FIFOs, sockets and devices are never read. -r walks the container's view as cp
copies it: volumes, binds and tmpfs mounts included, kernel interfaces left out.
""", """
Examples:
  ctrfs grep -n ERROR web:/var/log/app.log
  ctrfs grep -ril 'password' web:/etc          files under /etc that mention it
  ctrfs grep -E 'tick (1|2)[0-9]$' web:/var/log/app.log --json
""",
    arg("-i", "--ignore-case", action="store_true", help="case-insensitive match"),
    arg("-l", "--files-with-matches", dest="files_only", action="store_true",
        help="print only file names"),
    arg("-n", "--line-number", action="store_true", help="prefix lines with their number"),
    arg("-r", "--recursive", action="store_true", help="search every regular file below a directory"),
    arg("-E", "--extended-regexp", dest="extended", action="store_true",
        help="PATTERN is an extended regex"),
    JSON,
    arg("pattern", metavar="PATTERN"),
    arg("spec", metavar="TARGET[:PATH]"))
def grep_cmd(args: Namespace, state: State) -> int:
    from ctrfs.ops.content import GrepFile, compile_pattern, grep

    recursive, files_only, line_number = args.recursive, args.files_only, args.line_number
    target, path = _target_path(args.spec, default="/" if recursive else None)
    rx = compile_pattern(args.pattern, ignore_case=args.ignore_case, extended=args.extended)
    matched = False
    with _open_view(state, target) as root:
        prefix = recursive
        results = grep(root, rx, path, recursive=recursive, files_only=files_only,
                       on_warning=_warn)
        if args.as_json:
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
                        sys.stderr.write(f"ctrfs: {escape(r.path)}: binary file matches\n")
                    else:
                        out.write(escape(r.path).encode() + b"\n")
                    continue
                head = (escape(r.path).encode() + b":") if prefix else b""
                if line_number:
                    head += str(r.line_number).encode() + b":"
                out.write(head + r.line + b"\n")
            out.flush()
    return 0 if matched else 1


# -- tail ------------------------------------------------------------------------------------
@command("tail", "Print the end of a file inside a container, and optionally follow it.", """
Examples:
  ctrfs tail web:/var/log/app.log
  ctrfs tail -n 100 -f web:/var/log/app.log     follow what is appended (inotify, no polling)
  ctrfs tail -F web:/var/log/app.log            keep following across log rotation and
                                                'docker restart web'
""",
    arg("-n", "--lines", metavar="N", default=10, type=natural,
        help="print the last N lines [default: 10]"),
    arg("-f", dest="follow_fd", action="store_true", help="follow the opened file as it grows"),
    arg("-F", dest="follow_name", action="store_true",
        help="follow the name: survive rotation, truncation and container restarts"),
    arg("spec", metavar="TARGET:PATH"))
def tail_cmd(args: Namespace, state: State) -> int:
    from ctrfs.ops.follow import TailData, tail

    target, path = _target_path(args.spec)
    follow = "name" if args.follow_name else "descriptor" if args.follow_fd else None
    if follow and target.startswith(("image://", "oci:")):
        from ctrfs.errors import Unsupported

        raise Unsupported("an image never changes: there is nothing to follow (drop -f/-F)",
                          target=target, path=path)
    root = _open(state, target)

    def reopen() -> Root:
        # Only a running container counts as back: a stopped one would open its layers offline.
        return _open(state, target, running=True)

    events = tail(root, path, lines=args.lines, follow=follow, reopen=reopen)
    out = _out()
    try:
        for ev in events:
            if isinstance(ev, TailData):
                out.write(ev.data)
                out.flush()
            else:
                sys.stderr.write(f"ctrfs: {escape(ev.message)}\n")
    except KeyboardInterrupt:
        events.close()
        return 130
    finally:
        events.close()
        # tail() swaps in a new Root after a restart and closes the old one; close whatever
        # is current (closing twice is harmless).
        root.close()
    return 0


# -- du --------------------------------------------------------------------------------------
@command("du", """
Disk usage inside a container; hardlinked files count once.

From the root mount, counts the root filesystem alone (what docker export would hold,
beneath mount points included) unless --all-mounts.
""", """
Examples:
  ctrfs du -sh web                 total size of the container's root filesystem
  ctrfs du -h web:/var/lib         per directory, like du
  ctrfs du --apparent-size --json web:/app
""",
    arg("-s", "--summarize", action="store_true", help="only the total"),
    arg("-h", "--human-readable", dest="human_readable", action="store_true",
        help="sizes like 1.5K 234M 2G"),
    arg("--apparent-size", action="store_true", help="sum file sizes, not disk blocks"),
    arg("--all-mounts", action="store_true", help="count the container's view as cp copies it: "
        "volumes, binds and tmpfs mounts too (kernel interfaces never)"),
    JSON,
    arg("spec", metavar="TARGET[:PATH]"),
    add_help=False)
def du_cmd(args: Namespace, state: State) -> None:
    from ctrfs.ops.du import du, human

    human_readable = args.human_readable
    target, path = _target_path(args.spec, default="/")
    with _open_view(state, target) as root:
        usages = du(root, path, summarize=args.summarize, apparent=args.apparent_size,
                    all_mounts=args.all_mounts, on_warning=_warn)
        if args.as_json:
            _json_stream(usages)
            return
        write_lines(f"{human(u.bytes) if human_readable else -(-u.bytes // 1024)}\t{escape(u.path)}\n"
               for u in usages)


# -- cp --------------------------------------------------------------------------------------
@command("cp", """
Copy a file or directory out of a container. DEST '-' writes a tar stream to stdout.

Modes, mtimes, symlinks, hardlinks and (as root) ownership are kept; the copy is built
under a temporary name next to DEST and renamed when complete.

What is below SRC is copied as the container sees it, as docker cp does: files on other
mounts (volumes, binds, tmpfs, the runtime's /etc/hosts, /etc/hostname, /etc/resolv.conf)
with their content. Kernel interfaces are not followed: below /proc, /sys, cgroupfs, devpts,
mqueue and the runtime's /dev, the root filesystem's own entries are copied. -x keeps to
SRC's own mount.
""", """
Examples:
  ctrfs cp web:/etc/nginx ./nginx-conf       a directory tree to the host
  ctrfs cp web:/var/log/app.log /tmp/        into an existing directory
  ctrfs cp web:/app - | tar -tvf -           a tar stream, like docker cp
  ctrfs cp -x web:/ ./rootfs                 the root filesystem only, no volumes or binds
""",
    arg("-L", "--follow-link", action="store_true", help="copy what a symlink SRC leads to"),
    arg("-x", "--one-file-system", action="store_true",
        help="keep to SRC's own mount: from the root mount, the root filesystem alone (what "
             "lies beneath mount points included), as export shows it"),
    arg("--preserve-all", action="store_true",
        help="keep setuid/setgid bits, extended attributes (file capabilities) and "
             "device nodes (dropped by default)"),
    JSON,
    arg("spec", metavar="TARGET:PATH"),
    arg("dest", metavar="DEST"))
def cp_cmd(args: Namespace, state: State) -> None:
    from ctrfs.ops.archive import write_tar
    from ctrfs.ops.copy import copy_out

    dest, follow_link, as_json = args.dest, args.follow_link, args.as_json
    target, path = _target_path(args.spec)
    show = stderr_is_tty() and not as_json
    with _open_view(state, target) as root:
        if dest == "-":
            if sys.stdout.isatty():
                raise UsageError("refusing to write a tar stream to a terminal; redirect stdout")
            with _progress(show, "copying") as prog:
                stats = write_tar(root, _out(), path, follow=follow_link, on_warning=_warn,
                                  progress=prog, include_mounts=not args.one_file_system)
            _out().flush()
            if as_json:
                sys.stderr.write(json.dumps({"entries": stats.entries, "bytes": stats.bytes,
                                             "warnings": stats.warnings}) + "\n")
            return
        with _progress(show, "copying") as prog:
            result = copy_out(root, path, dest, follow=follow_link, preserve_all=args.preserve_all,
                              one_filesystem=args.one_file_system, on_warning=_warn,
                              progress=prog)
    if as_json:
        emit_json(result.to_dict())


# -- export ----------------------------------------------------------------------------------
@command("export", """
Write a container's root filesystem as a tar archive (to stdout or -o FILE).

As docker export: the root filesystem alone, what it holds beneath mount points included
(the runtime's /dev entries, the placeholder files under /etc/hosts and the like, with the
root filesystem's modes), nothing of other mounts unless --include-mounts.
""", """
Examples:
  ctrfs export web -o web.tar            like 'docker export web -o web.tar', no daemon
  ctrfs export web | tar -tvf - | less
  ctrfs export web --include-mounts -o full.tar    volumes, binds, tmpfs included
""",
    arg("-o", "--output", metavar="FILE", help="write to FILE (via a temporary name)"),
    arg("--include-mounts", action="store_true",
        help="the container's view, as cp copies it: volumes, binds and tmpfs mounts with "
             "their content (default: the root filesystem alone)"),
    JSON,
    arg("target", metavar="TARGET"))
def export_cmd(args: Namespace, state: State) -> None:
    from ctrfs.ops.archive import write_tar
    from ctrfs.ops.outfile import replace_when_done

    output, include_mounts, as_json = args.output, args.include_mounts, args.as_json
    if output is None and sys.stdout.isatty():
        raise UsageError("refusing to write a tar archive to a terminal; use -o FILE or redirect")
    show = stderr_is_tty() and not as_json
    with _open_view(state, args.target) as root:
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
                "output": output, "core": stats.core}
        if output is None:
            sys.stderr.write(json.dumps(data) + "\n")
        else:
            emit_json(data)

