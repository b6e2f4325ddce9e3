"""TARGET strings (docs/design.md, "Targets") → exactly one Container, or a clear error. Never guess."""

from __future__ import annotations

import os
from collections.abc import Callable

from ctrfs._record import dataclass
from ctrfs.discovery import discover, namespaces_of, rootfs_of
from ctrfs.errors import Ambiguous, TargetNotFound, UsageError
from ctrfs.model import Container, RootFS
from ctrfs.proc.stat import parse_stat
from ctrfs.runtimes.base import ContainerRecord, Roots

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ctrfs.runtimes.images import ImageRecord

SCHEMES = ("docker", "podman", "containerd", "cri-o", "crio", "runc", "k8s", "pid", "lxc", "nspawn",
           "image")


@dataclass(frozen=True)
class Target:
    scheme: str | None  # None: any runtime
    ref: str
    text: str


def parse_target(text: str) -> Target:
    """Split ``scheme://ref``; validate the scheme and the shape of its reference."""
    if not text or any(c in text for c in "\0\n"):
        raise UsageError(f"invalid target {text!r}")
    if text.startswith("oci:") and "://" not in text:
        if len(text) == 4:
            raise UsageError(f"oci: needs a directory, got {text!r}; expected oci:DIR[:TAG]")
        return Target("oci", text[4:], text)
    if "://" not in text:
        return Target(None, text, text)
    scheme, _, ref = text.partition("://")
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise UsageError(f"unknown target scheme {scheme!r} in {text!r}; use one of: "
                         + ", ".join(s for s in SCHEMES if s != "crio"))
    if scheme == "crio":
        scheme = "cri-o"
    if not ref:
        raise UsageError(f"empty reference in target {text!r}")
    if scheme == "pid" and not (ref.isdigit() and int(ref) > 0):
        raise UsageError(f"pid:// needs a positive process ID, got {ref!r}")
    if scheme == "k8s" and not 2 <= len(ref.split("/")) <= 3 or scheme == "k8s" and "" in ref.split("/"):
        raise UsageError(f"k8s:// needs NAMESPACE/POD[/CONTAINER], got {ref!r}")
    return Target(scheme, ref, text)


def _runtime_filter(t: Target) -> Callable[[Container], bool]:
    s = t.scheme
    if s in ("docker", "podman", "cri-o", "lxc", "nspawn"):
        return lambda c: c.runtime == s
    if s == "containerd":
        return lambda c: c.record.namespace is not None or c.runtime == "containerd"
    if s == "runc":
        return lambda c: c.runtime in ("runc", "crun") or any(
            src.endswith(("/state.json", "/status")) for src in c.record.sources)
    return lambda c: True


def _match_ref(ref: str, pool: list[Container]) -> list[Container]:
    exact = [c for c in pool if c.id == ref]
    if exact:
        return exact
    named = [c for c in pool if c.name is not None and c.name == ref.lstrip("/")]
    if named:
        return named
    return [c for c in pool if c.id.startswith(ref)] if ref else []


def _labels(cs: list[Container]) -> list[str]:
    out = []
    for c in cs:
        what = f"{c.runtime}://{c.name or c.short_id}"
        if c.pod and c.pod.name:
            what = f"k8s://{c.pod.namespace}/{c.pod.name}/{c.pod.container}"
        out.append(f"{what} ({c.short_id}, {c.state})")
    return out


def _close(word: str, names: list[str], cutoff: float) -> list[str]:
    """Up to 3 of ``names`` like ``word``: the suggestions of a target that is not found."""
    import difflib  # start-up: only a target that is not found needs it

    return difflib.get_close_matches(word, names, n=3, cutoff=cutoff)


def _nearest(ref: str, pool: list[Container]) -> list[str]:
    names = {c.name for c in pool if c.name} | {c.short_id for c in pool}
    return _close(ref, sorted(names), 0.5)


def _choose(t: Target, found: list[Container], pool: list[Container]) -> Container:
    if not found:
        raise TargetNotFound(target=t.text, candidates=_nearest(t.ref.split("/")[-1], pool))
    if len(found) > 1:
        running = [c for c in found if c.running]
        # A name reused by a stopped container of another runtime is still ambiguous: only an
        # exact single match is taken.
        raise Ambiguous(target=t.text, candidates=_labels(running or found))
    return found[0]


def resolve(target: str, roots: Roots | None = None) -> Container:
    roots = roots or Roots()
    t = parse_target(target)
    if t.scheme == "pid":
        return _resolve_pid(int(t.ref), roots)
    if t.scheme == "image":
        return image_container(resolve_image(t.ref, roots), roots, shown=t.text)
    if t.scheme == "oci":
        return oci_container(t, roots)
    pool = [c for c in discover(roots, include_stopped=True) if _runtime_filter(t)(c)]
    if t.scheme == "k8s":
        c = _resolve_k8s(t, pool)
    elif t.scheme == "containerd" and "/" in t.ref:
        ns, _, ref = t.ref.partition("/")
        c = _choose(t, _match_ref(ref, [c for c in pool if c.record.namespace == ns]), pool)
    else:
        c = _choose(t, _match_ref(t.ref, pool), pool)
    if c.pid is not None:
        c.namespaces = namespaces_of(c.pid, roots) or c.namespaces
    return c


def _resolve_k8s(t: Target, pool: list[Container]) -> Container:
    parts = t.ref.split("/")
    ns, pod = parts[0], parts[1]
    want = parts[2] if len(parts) == 3 else None
    in_pod = [c for c in pool if c.pod and c.pod.namespace == ns and c.pod.name == pod
              and not c.pod.is_sandbox]
    if want is not None:
        in_pod = [c for c in in_pod if c.pod and c.pod.container == want]
    running = [c for c in in_pod if c.running]
    if len(running) == 1:
        return running[0]
    if not in_pod:
        pods = sorted({f"{c.pod.namespace}/{c.pod.name}" for c in pool if c.pod and c.pod.name})
        raise TargetNotFound(target=t.text, candidates=_close(f"{ns}/{pod}", pods, 0.4))
    return _choose(t, running or in_pod, pool)


def _resolve_pid(pid: int, roots: Roots) -> Container:
    for c in discover(roots, include_stopped=False):
        if pid in c.pids:
            c.namespaces = namespaces_of(c.pid or pid, roots) or c.namespaces
            return c
    try:
        with open(os.path.join(roots.proc, str(pid), "stat"), "rb") as f:
            st = parse_stat(f.read())
    except OSError as err:
        raise TargetNotFound(f"no process with PID {pid}", target=f"pid://{pid}") from err
    # Not in any container: the host itself, seen through this process.
    rec = ContainerRecord(id="host", runtime="host", name="host", state="running", sources=["/proc"])
    return Container(
        id="host", runtime="host", name="host", image=None, state="running", pid=pid,
        start_time=st.start_time, pids=[pid], namespaces=namespaces_of(pid, roots), cgroup=None,
        pod=None, rootfs=rootfs_of(pid, roots), record=rec, roots=roots,
    )


# -- images ----------------------------------------------------------------------------------

_DEFAULT_PREFIXES = ("docker.io/library/", "docker.io/", "localhost/")


def _norm_ref(ref: str) -> str:
    """An image name as users abbreviate it: ``docker.io/library/x:latest`` and ``localhost/x``
    both become ``x:latest``."""
    for p in _DEFAULT_PREFIXES:
        if ref.startswith(p):
            ref = ref[len(p):]
            break
    if "@" not in ref and ":" not in ref.rsplit("/", 1)[-1]:
        ref += ":latest"
    return ref


def match_images(ref: str, images: list[ImageRecord]) -> list[ImageRecord]:
    """Images ``ref`` names: its name exactly as a store records it, else a name it abbreviates
    (``x`` for ``docker.io/library/x:latest`` or ``localhost/x:latest``), else an id or unique id
    prefix. An exact name wins: ``app:1`` is Docker's ``app:1``, not podman's ``localhost/app:1``."""
    exact = [i for i in images if ref in i.names]
    if exact:
        return exact
    want = _norm_ref(ref)
    named = [i for i in images if any(_norm_ref(n) == want for n in i.names)]
    if named:
        return named
    hexpart = ref.removeprefix("sha256:")
    if len(hexpart) >= 4 and all(ch in "0123456789abcdef" for ch in hexpart):
        return [i for i in images if i.id.split(":", 1)[-1].startswith(hexpart)]
    return []


def resolve_image(ref: str, roots: Roots) -> ImageRecord:
    # Imported here: image stores are read for image:// targets only (start-up of the rest).
    from ctrfs.runtimes.images import discover_images

    images = list(discover_images(roots))
    found = match_images(ref, images)
    shown = f"image://{ref}"
    if not found:
        names = sorted({n for i in images for n in i.names})
        near = _close(ref, names, 0.4) or _close(_norm_ref(ref), [_norm_ref(n) for n in names], 0.4)
        raise TargetNotFound("no such image in Docker's or containers/storage's stores"
                             + ("; nearest: " + ", ".join(near) if near else "; see ctrfs images"),
                             target=shown, candidates=near)
    # One image id in several stores (docker save | podman load) is one image: its id is the
    # digest of a config that names every layer's content, so each copy reads the same. The first
    # store (Docker's, then root's containers/storage, then users') is read.
    if len({i.id for i in found}) > 1:
        raise Ambiguous(target=shown, candidates=[
            f"{i.runtime} image {i.short_id} ({', '.join(i.names) or 'untagged'}"
            + (f", user {i.user}" if i.user and i.user != "root" else "") + ")" for i in found])
    return found[0]


def image_container(img: ImageRecord, roots: Roots, *, shown: str | None = None) -> Container:
    """An image as a read-only Container with no process: its layers are the lowerdirs that
    :func:`ctrfs.access.open_root` merges offline."""
    lowers = [la.path for la in img.layers]
    rec = ContainerRecord(
        id=img.id, runtime=img.runtime, name=shown or (img.names[0] if img.names else img.short_id),
        image=img.names[0] if img.names else None, image_id=img.id, state="image",
        created=img.created, lowerdirs=lowers, layer_ids=[la.id for la in img.layers if la.id],
        sources=[img.store],
    )
    rec.extra.update(image=img, driver=img.driver, user=img.user, uid=img.uid)
    if img.uid_map:
        rec.extra.update(uid_map=img.uid_map, gid_map=img.gid_map)
    return Container(
        id=img.id, runtime=img.runtime, name=rec.name, image=rec.image, state="image", pid=None,
        start_time=None, pids=[], namespaces={}, cgroup=None, pod=None,
        rootfs=RootFS(fstype="overlay", source="image", lowerdirs=lowers), record=rec, roots=roots,
    )


def oci_container(t: Target, roots: Roots) -> Container:
    """``oci:DIR[:TAG]``: an OCI layout's image as a read-only Container; its layer blobs are read
    as streams by :class:`~ctrfs.rootfs.tarroot.TarLayersRoot` (see :func:`ctrfs.access.open_root`)."""
    from ctrfs.runtimes.oci import read_layout  # start-up: for oci: targets only

    layout, _, tag = t.ref.partition(":")
    img = read_layout(os.path.abspath(layout), tag or None)
    cfg = img.config.get("config") or {}
    rec = ContainerRecord(id=img.id, runtime="oci", name=t.text, image=t.text, image_id=img.id,
                          state="image", created=img.config.get("created"), sources=[img.layout],
                          labels=dict(cfg.get("Labels") or {}) if isinstance(cfg, dict) else {})
    rec.extra.update(oci=img, driver="oci-layout")
    return Container(
        id=img.id, runtime="oci", name=t.text, image=t.text, state="image", pid=None,
        start_time=None, pids=[], namespaces={}, cgroup=None, pod=None,
        rootfs=RootFS(fstype="oci-layout", source=img.layout), record=rec, roots=roots,
    )
