"""``ctrfs ps`` and ``ctrfs inspect``."""

from __future__ import annotations

from ctrfs.cli.app import JSON, State, arg, command
from ctrfs.cli.common import emit_json, escape, get_container, table

TYPE_CHECKING = False
if TYPE_CHECKING:
    from argparse import Namespace


def _pod_label(c) -> str:  # type: ignore[no-untyped-def]
    p = c.pod
    if p is None:
        return ""
    if p.name:
        return f"{p.namespace}/{p.name}/{p.container or '-'}"
    return f"uid:{p.uid}" if p.uid else ""


@command("ps", "List containers on this host, of every runtime, without calling any daemon.", """
Examples:
  ctrfs ps                 running containers of Docker, podman, containerd, CRI-O, runc, bare
  ctrfs ps -a              also stopped containers known from runtime state on disk
  ctrfs ps --json | jq '.[] | select(.runtime=="containerd") | .pid'
  (ps --json lists identity and state; `ctrfs inspect --json` adds layers and namespaces)
""",
    arg("-a", "--all", dest="show_all", action="store_true", help="include stopped containers"),
    JSON)
def ps_cmd(args: Namespace, state: State) -> None:
    from ctrfs.discovery import discover

    found = discover(state.roots, include_stopped=args.show_all)
    if args.as_json:
        emit_json([c.summary_dict() for c in found])
        return
    rows = [[
        c.short_id if not c.id.startswith("mnt:") else c.id,
        escape(c.name or ""), c.runtime, escape(c.image or ""), c.state,
        str(c.pid or ""), str(len(c.pids)), escape(c.owner or ""), escape(_pod_label(c)),
        c.rootfs_kind or "",
    ] for c in found]
    table(["CONTAINER ID", "NAME", "RUNTIME", "IMAGE", "STATE", "PID", "PROCS", "USER", "POD", "ROOTFS"],
          rows)


@command("inspect", "Show everything ctrfs knows about one container.", """
Examples:
  ctrfs inspect web                      identity, pids, namespaces, root mount, layers
  ctrfs inspect k8s://default/nginx/app --json
  ctrfs inspect pid://4242               the container PID 4242 lives in
""",
    arg("target", metavar="TARGET"),
    JSON)
def inspect_cmd(args: Namespace, state: State) -> None:
    c = get_container(state, args.target)
    data = c.to_dict()
    if args.as_json:
        emit_json(data)
        return
    out = []
    add = lambda k, v: out.append(f"{k + ':' if k else '':<14}{escape(str(v))}")  # noqa: E731
    add("ID", c.id)
    add("Name", c.name or "")
    add("Runtime", c.runtime + (f" (namespace {c.record.namespace})" if c.record.namespace else ""))
    add("Image", c.image or "")
    add("State", c.state)
    if c.owner is not None:
        add("User", c.owner + (f" (uid {c.owner_uid})" if c.owner_uid is not None else ""))
    if c.pid is not None:
        add("PID", f"{c.pid} (start time {c.start_time} ticks)")
        add("PIDs", " ".join(map(str, c.pids)))
        add("Cgroup", c.cgroup or "")
    if c.pod:
        add("Pod", _pod_label(c) + (f" uid {c.pod.uid}" if c.pod.uid else ""))
    if c.namespaces:
        add("Namespaces", " ".join(f"{k}:{v}" for k, v in sorted(c.namespaces.items())))
    fs = c.rootfs
    if fs:
        add("Rootfs", f"{fs.fstype} ({fs.source})")
        if fs.upperdir:
            add("UpperDir", fs.upperdir)
        for i, d in enumerate(fs.lowerdirs):
            add("LowerDir" if i == 0 else "", d)
        if fs.workdir:
            add("WorkDir", fs.workdir)
        if fs.merged:
            add("MergedDir", fs.merged)
    print("\n".join(out))


@command("images", "List the images of every store (Docker, podman's containers/storage of root and of "
         "each user), read from disk without a daemon.", """
Examples:
  ctrfs images                   repository, tag, id, size, layer count, runtime, owner
  ctrfs images --json | jq '.[] | select(.runtime=="podman") | .names'
  ctrfs ls -l image://busybox:latest:/bin     an image is a read-only TARGET
""",
    JSON)
def images_cmd(args: Namespace, state: State) -> None:
    from ctrfs.ops.du import human
    from ctrfs.runtimes.images import discover_images, split_name

    found = sorted(discover_images(state.roots), key=lambda i: (i.runtime, i.user or "", i.names, i.id))
    if args.as_json:
        emit_json([i.to_dict() for i in found])
        return
    rows = []
    for i in found:
        size = human(i.size) if i.size is not None else "-"
        for repo, tag in [split_name(n) for n in i.names] or [("<none>", "<none>")]:
            rows.append([escape(repo), escape(tag), i.short_id, size, str(len(i.layers)), i.runtime,
                         i.driver, escape(i.user or "")])
    table(["REPOSITORY", "TAG", "IMAGE ID", "SIZE", "LAYERS", "RUNTIME", "DRIVER", "USER"], rows)
