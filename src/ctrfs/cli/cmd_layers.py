"""``ctrfs layers``, ``ctrfs which``, ``ctrfs diff`` and ``ctrfs mounts``."""

from __future__ import annotations

import sys

from ctrfs.cli.app import JSON, State, arg, command
from ctrfs.cli.common import (
    emit_json,
    escape,
    get_container,
    split_target_path,
    stdout_is_tty,
    table,
    write_lines,
)
from ctrfs.errors import NotFound
from ctrfs.mounts import container_mounts
from ctrfs.ops.compare import changes_of
from ctrfs.ops.du import human
from ctrfs.overlay.diff import SEMANTICS
from ctrfs.overlay.layers import layer_stack
from ctrfs.overlay.which import container_which
from ctrfs.proc.stat import CAP_SYS_ADMIN, effective_capabilities

TYPE_CHECKING = False
if TYPE_CHECKING:
    from argparse import Namespace
    from collections.abc import Iterator

    from ctrfs.model import Container


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")


def _warn_opaque_marks_hidden(c: Container) -> None:
    """Without CAP_SYS_ADMIN the kernel hides trusted.* xattrs (xattr(7)), so overlayfs's
    trusted.overlay.opaque mark of a directory the container replaced reads as absent, silently.
    Say so (a node pod without SYS_ADMIN, an unprivileged user with DAC_READ_SEARCH)."""
    caps = effective_capabilities()
    if caps is None or caps >> CAP_SYS_ADMIN & 1 or c.rootfs is None or not c.rootfs.is_overlay:
        return
    sys.stderr.write("ctrfs: warning: without CAP_SYS_ADMIN overlayfs's opaque-directory marks "
                     "(trusted.overlay.opaque) cannot be read: a directory the container replaced "
                     "looks merely changed, and what it hid below is not reported\n")


@command("layers", "Show the layers of a container's root filesystem, in overlay order (top first).", """
Examples:
  ctrfs layers web                 upper dir first, then each image layer (short links resolved)
  ctrfs layers web --json          with diff-ids / chain-ids / layer ids, file counts and sizes
  ctrfs layers --no-count web      skip walking the layers (fast)
""",
    arg("target", metavar="TARGET"),
    arg("--no-count", action="store_true", help="do not walk the layers to count files and bytes"),
    JSON)
def layers_cmd(args: Namespace, state: State) -> None:
    c = get_container(state, args.target)
    _warn_opaque_marks_hidden(c)
    stack = layer_stack(c, counts=not args.no_count)
    if args.as_json:
        emit_json(stack.to_dict())
        return
    if not stack.is_overlay:
        _say(f"root filesystem: {escape(stack.fstype or '?')} ({escape(stack.source or '?')}), "
                   "not overlay: no layers")
        if stack.merged:
            _say(f"visible on the host at: {escape(stack.merged)}")
        return
    rows = []
    for la in stack.layers:
        ident = la.diff_id or (la.id if la.id else "")
        rows.append([str(la.index), la.role, escape(la.label), escape(ident),
                     "-" if la.files is None else str(la.files), "-" if la.size is None else human(la.size),
                     escape(la.path) + ("" if la.exists else "  (missing)")])
    table(["#", "ROLE", "LAYER", "ID", "FILES", "SIZE", "DIRECTORY"], rows)
    if c.state == "image":
        _say("(an image: layers from its store, merged offline; no upper dir)")
        return
    _say(f"workdir: {escape(stack.workdir or '-')}")
    _say(f"merged:  {escape(stack.merged or '- (not mounted in the host namespace)')}")
    if stack.origin != "mountinfo":
        _say("(container not running: layers from the runtime's on-disk state)")


@command("which", "Tell which layer provides the visible version of PATH, and which versions it shadows.",
         """
Examples:
  ctrfs which web:/etc/os-release      the layer that provides the file, and lower versions
  ctrfs which web:/var/cache/apt --json
""",
    arg("spec", metavar="TARGET:PATH"),
    JSON)
def which_cmd(args: Namespace, state: State) -> None:
    target, path = split_target_path(args.spec, require_path=True)
    assert path is not None
    c = get_container(state, target)
    _warn_opaque_marks_hidden(c)
    res = container_which(c, path)
    if args.as_json:
        emit_json(res.to_dict())
        return
    shown = escape(res.resolved)
    if res.visible is None:
        deleted = next((h for h in res.hits if h.state == "deleted"), None)
        if deleted is not None:
            _say(f"{shown}: deleted by a whiteout in layer {deleted.layer.index} "
                       f"({escape(deleted.layer.label)})")
        else:
            raise NotFound("not present in any layer", target=target, path=path)
    else:
        v = res.visible
        _say(f"{shown}: {v.type} from layer {v.layer.index} ({escape(v.layer.label)}) "
                   f"{escape(v.layer.path)}")
    if res.mount:
        mnt = res.mount
        _say(f"note: the container sees the {mnt['kind']} mounted at "
                   f"{escape(mnt['mount_point'])} here ({escape(mnt['host_path'] or mnt['kind'])}),"
                   " not these layers")
    for h in res.hits:
        if h is res.visible:
            continue
        _say(f"  layer {h.layer.index} ({escape(h.layer.label)}): {h.type}, {h.state}"
                   + (f": {escape(h.reason)}" if h.reason else ""))


@command("diff", "List files added, changed or deleted in a container, from its overlay upper dir; "
         "or what NEW changes over TARGET (two images, say).", """
Examples:
  ctrfs diff web                 A (added), C (changed), D (deleted) lines, as docker diff prints
  ctrfs diff web --json          with type and size of each entry, and the mount covering it
  ctrfs diff --semantics podman web
  ctrfs diff image://app:1 image://app:2     what the second image changes over the first
""",
    arg("target", metavar="TARGET"),
    # NEW, not TARGET2: kubectl ctrfs maps the pod at TARGET only and passes NEW on as given.
    arg("target2", metavar="NEW", nargs="?",
        help="a second target: list what NEW changes over TARGET instead (two images, say)"),
    arg("--semantics", choices=["auto", *SEMANTICS], default="auto",
        help="whose rules to reproduce; auto picks the container's runtime [default: auto]"),
    JSON)
def diff_cmd(args: Namespace, state: State) -> None:
    c = get_container(state, args.target)
    _warn_opaque_marks_hidden(c)
    other = get_container(state, args.target2) if args.target2 is not None else None
    stream = changes_of(c, other, semantics=args.semantics)
    if args.as_json:
        emit_json([ch.to_dict() for ch in stream])
        return
    tty = stdout_is_tty()

    def lines() -> Iterator[str]:
        for ch in stream:
            line = f"{ch.kind} {escape(ch.path)}"
            if tty and ch.mount:
                line += f"    (under mount {escape(ch.mount)}: hidden by it in the container)" \
                    if ch.path != ch.mount else "    (mount point)"
            yield line + "\n"

    write_lines(lines())  # one write(2) per 512 lines off a terminal, even unbuffered


@command("mounts", "Show a container's mounts, with the host source of volumes and bind mounts.", """
Examples:
  ctrfs mounts web               mount points, types, and the host directory behind binds/volumes
  ctrfs mounts web --json
""",
    arg("target", metavar="TARGET"),
    arg("-a", "--all", dest="show_all", action="store_true",
        help="include /proc, /sys, /dev and cgroup mounts"),
    JSON)
def mounts_cmd(args: Namespace, state: State) -> None:
    show_all = args.show_all
    c = get_container(state, args.target)
    ms = container_mounts(c)
    if args.as_json:
        emit_json([m.to_dict() for m in ms])
        return
    quiet = {"proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2"}
    rows = []
    for m in ms:
        if not show_all and (m.kind in quiet or m.mount_point.startswith(("/proc/", "/sys/"))):
            continue
        host = m.host_path or "-"
        if m.volume:
            host = f"{host} (volume {m.volume})"
        rows.append([escape(m.mount_point), m.kind, m.fstype, "ro" if m.read_only else "rw",
                     m.propagation, escape(host)])
    table(["MOUNT POINT", "KIND", "FSTYPE", "RO", "PROPAGATION", "HOST SOURCE"], rows)
    if c.pid is None:
        _say("(container not running: mounts as its runtime recorded them)")
