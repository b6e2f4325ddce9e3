"""``ctrfs layers``, ``ctrfs which``, ``ctrfs diff`` and ``ctrfs mounts``."""

from __future__ import annotations

import sys

import click

from ctrfs.cli.common import (
    emit_json,
    escape,
    get_container,
    json_option,
    split_target_path,
    stdout_is_tty,
    table,
)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


@click.command("layers", epilog="""\b
Examples:
  ctrfs layers web                 upper dir first, then each image layer (short links resolved)
  ctrfs layers web --json          with diff-ids / chain-ids / layer ids, file counts and sizes
  ctrfs layers --no-count web      skip walking the layers (fast)
""")
@click.argument("target")
@click.option("--no-count", is_flag=True, help="Do not walk the layers to count files and bytes.")
@json_option
@click.pass_context
def layers_cmd(ctx: click.Context, target: str, no_count: bool, as_json: bool) -> None:
    """Show the layers of a container's root filesystem, in overlay order (top first)."""
    from ctrfs.overlay.layers import layer_stack

    c = get_container(ctx, target)
    stack = layer_stack(c, counts=not no_count)
    if as_json:
        emit_json(stack.to_dict())
        return
    if not stack.is_overlay:
        click.echo(f"root filesystem: {escape(stack.fstype or '?')} ({escape(stack.source or '?')}), "
                   "not overlay: no layers")
        if stack.merged:
            click.echo(f"visible on the host at: {escape(stack.merged)}")
        return
    rows = []
    for la in stack.layers:
        ident = la.diff_id or (la.id if la.id else "")
        rows.append([str(la.index), la.role, escape(la.label), escape(ident),
                     "-" if la.files is None else str(la.files), _size(la.size),
                     escape(la.path) + ("" if la.exists else "  (missing)")])
    table(["#", "ROLE", "LAYER", "ID", "FILES", "SIZE", "DIRECTORY"], rows)
    click.echo(f"workdir: {escape(stack.workdir or '-')}")
    click.echo(f"merged:  {escape(stack.merged or '- (not mounted in the host namespace)')}")
    if stack.origin != "mountinfo":
        click.echo("(container not running: layers from the runtime's on-disk state)")


@click.command("which", epilog="""\b
Examples:
  ctrfs which web:/etc/os-release      the layer that provides the file, and lower versions
  ctrfs which web:/var/cache/apt --json
""")
@click.argument("spec", metavar="TARGET:PATH")
@json_option
@click.pass_context
def which_cmd(ctx: click.Context, spec: str, as_json: bool) -> None:
    """Tell which layer provides the visible version of PATH, and which versions it shadows."""
    from ctrfs.overlay.layers import layer_stack
    from ctrfs.overlay.which import which

    target, path = split_target_path(spec, require_path=True)
    assert path is not None
    c = get_container(ctx, target)
    res = which(layer_stack(c), path)
    if c.pid is not None:
        from ctrfs.mounts import container_mounts

        covering = [m for m in container_mounts(c) if m.mount_point != "/" and (
            res.resolved == m.mount_point or res.resolved.startswith(m.mount_point.rstrip("/") + "/"))]
        if covering:
            top = max(covering, key=lambda m: len(m.mount_point))
            res.mount = {"mount_point": top.mount_point, "kind": top.kind,
                         "host_path": top.host_path}
    if as_json:
        emit_json(res.to_dict())
        return
    shown = escape(res.resolved)
    if res.visible is None:
        deleted = next((h for h in res.hits if h.state == "deleted"), None)
        if deleted is not None:
            click.echo(f"{shown}: deleted by a whiteout in layer {deleted.layer.index} "
                       f"({escape(deleted.layer.label)})")
        else:
            from ctrfs.errors import NotFound

            raise NotFound("not present in any layer", target=target, path=path)
    else:
        v = res.visible
        click.echo(f"{shown}: {v.type} from layer {v.layer.index} ({escape(v.layer.label)}) "
                   f"{escape(v.layer.path)}")
    if res.mount:
        mnt = res.mount
        click.echo(f"note: the container sees the {mnt['kind']} mounted at "
                   f"{escape(mnt['mount_point'])} here ({escape(mnt['host_path'] or mnt['kind'])}),"
                   " not these layers")
    for h in res.hits:
        if h is res.visible:
            continue
        click.echo(f"  layer {h.layer.index} ({escape(h.layer.label)}): {h.type}, {h.state}"
                   + (f": {escape(h.reason)}" if h.reason else ""))


@click.command("diff", epilog="""\b
Examples:
  ctrfs diff web                 A (added), C (changed), D (deleted) lines, as docker diff prints
  ctrfs diff web --json          with type and size of each entry, and the mount covering it
  ctrfs diff --semantics podman web
""")
@click.argument("target")
@click.option("--semantics", type=click.Choice(["auto", "docker", "moby-native", "podman"]),
              default="auto", show_default=True,
              help="Whose rules to reproduce; auto picks the container's runtime.")
@json_option
@click.pass_context
def diff_cmd(ctx: click.Context, target: str, semantics: str, as_json: bool) -> None:
    """List files added, changed or deleted in a container, from its overlay upper dir."""
    from ctrfs.overlay.diff import changes, default_semantics
    from ctrfs.overlay.layers import layer_stack

    c = get_container(ctx, target)
    stack = layer_stack(c)
    mount_points: list[str] = []
    if c.pid is not None:
        mount_points = [m.mount_point for m in c.mounts()]
    sem = default_semantics(c.runtime) if semantics == "auto" else semantics
    stream = changes(stack, semantics=sem, mount_points=mount_points)
    if as_json:
        emit_json([ch.to_dict() for ch in stream])
        return
    tty = stdout_is_tty()
    out = sys.stdout
    for ch in stream:
        line = f"{ch.kind} {escape(ch.path)}"
        if tty and ch.mount:
            line += f"    (under mount {escape(ch.mount)}: hidden by it in the container)" \
                if ch.path != ch.mount else "    (mount point)"
        out.write(line + "\n")


@click.command("mounts", epilog="""\b
Examples:
  ctrfs mounts web               mount points, types, and the host directory behind binds/volumes
  ctrfs mounts web --json
""")
@click.argument("target")
@click.option("-a", "--all", "show_all", is_flag=True,
              help="Include /proc, /sys, /dev and cgroup mounts.")
@json_option
@click.pass_context
def mounts_cmd(ctx: click.Context, target: str, show_all: bool, as_json: bool) -> None:
    """Show a container's mounts, with the host source of volumes and bind mounts."""
    from ctrfs.mounts import container_mounts

    c = get_container(ctx, target)
    ms = container_mounts(c)
    if as_json:
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
        click.echo("(container not running: mounts as its runtime recorded them)")
