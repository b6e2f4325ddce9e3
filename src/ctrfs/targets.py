"""TARGET strings (docs/design.md, "Targets") → exactly one Container, or a clear error. Never guess."""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable

from ctrfs._record import dataclass
from ctrfs.container import Container
from ctrfs.discovery import discover, namespaces_of, rootfs_of
from ctrfs.errors import Ambiguous, TargetNotFound, UsageError
from ctrfs.proc.stat import parse_stat
from ctrfs.runtimes.base import ContainerRecord, Roots

SCHEMES = ("docker", "podman", "containerd", "cri-o", "crio", "runc", "k8s", "pid")


@dataclass(frozen=True)
class Target:
    scheme: str | None  # None: any runtime
    ref: str
    text: str


def parse_target(text: str) -> Target:
    """Split ``scheme://ref``; validate the scheme and the shape of its reference."""
    if not text or any(c in text for c in "\0\n"):
        raise UsageError(f"invalid target {text!r}")
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
    if s in ("docker", "podman", "cri-o"):
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


def _nearest(ref: str, pool: list[Container]) -> list[str]:
    names = {c.name for c in pool if c.name} | {c.short_id for c in pool}
    return difflib.get_close_matches(ref, sorted(names), n=3, cutoff=0.5)


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
        raise TargetNotFound(target=t.text, candidates=difflib.get_close_matches(
            f"{ns}/{pod}", pods, n=3, cutoff=0.4))
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
