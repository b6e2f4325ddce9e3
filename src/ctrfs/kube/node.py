"""Running one ctrfs command on a node: in an ephemeral node pod or in that node's agent.

``kubectl exec -i`` without ``-t`` keeps stdout and stderr apart and binary-safe (no terminal,
no line discipline), so the bytes ctrfs writes on the node are the bytes the consumer here reads.
kubectl's own line ``command terminated with exit code N`` is dropped from stderr: the exit
status says it.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Callable

from ctrfs.errors import CtrfsError
from ctrfs.kube import boot, manifests
from ctrfs.kube.kubectl import Kubectl, error_from
from ctrfs.kube.pyz import Pyz

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

    Consumer = Callable[[IO[bytes]], object]
    ErrWriter = Callable[[bytes], object]

_TERMINATED = re.compile(rb"^command terminated with exit code \d+\s*$")
# How runtimes say the image has no python3: runc/containerd 'exec: "python3": executable file
# not found in $PATH', crun 'executable file `python3` not found in $PATH'.
_NO_PYTHON = re.compile(r'executable file .{0,12}not found|exec: "python3"|python3.{0,4}: no such file', re.I)
POLL_INTERVAL = 0.5
CHUNK = 1 << 20


class NoPython(CtrfsError):
    """The node pod's image cannot run ctrfs.pyz."""


class NotScheduled(CtrfsError):
    """The node pod did not start in time."""


class ImagePullFailed(CtrfsError):
    pass


def copy_to_fd(fd: int) -> Consumer:
    def consume(stream: IO[bytes]) -> None:
        while chunk := stream.read(CHUNK):
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
    return consume


_live: set[subprocess.Popen[bytes]] = set()
_live_lock = threading.Lock()
_cancelled = threading.Event()


class Interrupted(CtrfsError):
    """Another thread was interrupted (Ctrl-C during a fan-out): this one stops too."""

    exit_code = 130


def stop_all() -> None:
    """End every kubectl exec still running and every wait for a node pod (an interrupted
    fan-out); each worker then deletes its node pod on the way out."""
    _cancelled.set()
    with _live_lock:
        procs = list(_live)
    for p in procs:
        with contextlib.suppress(OSError):
            p.terminate()


def _stop(p: subprocess.Popen[bytes]) -> None:
    # Also after an early stop (a reader closed our stdout, a bad tar member): kubectl ends,
    # the exec stream closes and BOOT stops ctrfs on the node.
    with _live_lock:
        _live.discard(p)
    for f in (p.stdin, p.stdout):
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def exec_ctrfs(kubectl: Kubectl, pod: str, namespace: str | None, container: str, pyz: Pyz,
               args: list[str], consume: Consumer, err: ErrWriter, *, image: str | None = None) -> int:
    """``ctrfs ARGS`` in ``pod``: its stdout to ``consume``, its stderr to ``err``; its exit status."""
    if _cancelled.is_set():
        raise Interrupted("interrupted")
    cmd = ["exec", "-i", pod, "-c", container, "--",
           "python3", "-c", boot.BOOT, pyz.sha256, str(len(pyz.data)), *args]
    p = kubectl.popen(cmd, namespace=namespace)
    with _live_lock:
        _live.add(p)
    assert p.stdin is not None and p.stdout is not None and p.stderr is not None
    started = False
    held: list[bytes] = []  # stderr before ctrfs runs: kubectl's own errors, translated below
    lock = threading.Lock()

    def pump_stderr() -> None:
        assert p.stderr is not None
        for line in iter(os.fdopen(p.stderr.fileno(), "rb", closefd=False).readline, b""):
            if _TERMINATED.match(line):
                continue
            with lock:
                if not started:
                    held.append(line)
                    continue
            err(line)

    t = threading.Thread(target=pump_stderr, name="kubectl-stderr", daemon=True)
    t.start()
    try:
        first = p.stdout.read(1)
        if first == boot.SEND:
            with contextlib.suppress(BrokenPipeError):
                p.stdin.write(pyz.data)
                p.stdin.flush()
            first = p.stdout.read(1)
        if first == boot.OLD_PYTHON:
            version = p.stdout.readline().decode("ascii", "replace").strip()
            p.wait()
            raise NoPython(f"the node pod's Python is {version}; ctrfs needs "
                           f"{boot.MIN_PYTHON[0]}.{boot.MIN_PYTHON[1]} or newer",
                           hint=_image_hint(image))
        if first == boot.RUN:
            with lock:
                started = True
                for line in held:
                    err(line)
                held.clear()
            consume(p.stdout)
            # A consumer may stop at a logical end (tarfile at the end-of-archive blocks, before
            # the record's padding): the rest is read, or ctrfs would be stopped mid-write.
            while p.stdout.read(CHUNK):
                pass
            # ctrfs closed its stdout: it has ended, or is ending. Closing stdin now only tells
            # BOOT that nobody waits any more (it stops ctrfs if it still runs).
            with contextlib.suppress(BrokenPipeError):
                p.stdin.close()
            rc = p.wait()
            t.join(5)
            return 128 - rc if rc < 0 else rc  # kubectl killed by a signal: the shell's convention
        rc = p.wait()
        t.join(5)
        text = b"".join(held).decode("utf-8", "replace")
        if _NO_PYTHON.search(text):
            raise NoPython("the node pod's image has no python3", hint=_image_hint(image))
        raise error_from(text, doing=f"running ctrfs in pod {pod}")
    finally:
        _stop(p)


def _image_hint(image: str | None) -> str:
    if image:
        return f"image {image}; choose one with Python >= 3.11 with --image"
    return "the agents' image needs Python >= 3.11: kubectl ctrfs deploy --image IMAGE"


class Session:
    """Where ctrfs runs for one node: enter to make it ready, leave to clean up."""

    node: str
    namespace: str | None
    pod: str
    container: str
    image: str | None = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def run(self, kubectl: Kubectl, pyz: Pyz, args: list[str], consume: Consumer,
            err: ErrWriter) -> int:
        return exec_ctrfs(kubectl, self.pod, self.namespace, self.container, pyz,
                          ["--host-root", manifests.HOST_ROOT, *args], consume, err, image=self.image)


class AgentSession(Session):
    def __init__(self, node: str, pod: str) -> None:
        self.node = node
        self.pod = pod
        self.namespace = manifests.AGENT_NAMESPACE
        self.container = manifests.AGENT_CONTAINER


class EphemeralSession(Session):
    """A node pod created on enter and deleted on exit, whatever ends the command."""

    def __init__(self, kubectl: Kubectl, node: str, *, namespace: str | None, image: str,
                 privileged: bool, deadline: int, timeout: float, warn: Callable[[str], object]) -> None:
        self.kubectl = kubectl
        self.node = node
        self.namespace = namespace
        self.image = image
        self.container = manifests.NODE_CONTAINER
        self.pod = "ctrfs-node-" + secrets.token_hex(4)
        self.spec = manifests.node_pod(self.pod, node, image, privileged=privileged,
                                       deadline=deadline, namespace=namespace)
        self.timeout = timeout
        self.warn = warn
        self._created = False

    def __enter__(self) -> EphemeralSession:
        import json

        try:
            self._created = True  # from here on, a Ctrl-C still deletes it
            self.kubectl.run(["create", "-f", "-"], namespace=self.namespace,
                             doing=f"creating node pod {self.pod} on node {self.node}",
                             stdin=json.dumps(self.spec).encode())
            self._wait()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._created:
            return
        self._created = False
        problem = self.kubectl.cleanup(
            ["delete", "pod", self.pod, "--ignore-not-found", "--wait=false"], namespace=self.namespace)
        if problem:
            where = f" -n {self.namespace}" if self.namespace else ""
            self.warn(f"could not delete node pod {self.pod} ({problem}); "
                      f"delete it with: kubectl delete pod{where} {self.pod}")

    def _wait(self) -> None:
        deadline = time.monotonic() + self.timeout
        last = "Pending"
        while True:
            if _cancelled.is_set():
                raise Interrupted("interrupted")
            obj = self.kubectl.get_json(["pod", self.pod], namespace=self.namespace,
                                        doing=f"reading node pod {self.pod}")
            state = _pod_state(obj)
            if state is None:
                return
            self._fail_fast(obj)
            last = state
            if time.monotonic() >= deadline:
                raise NotScheduled(
                    f"node pod {self.pod} did not start on node {self.node} within "
                    f"{self.timeout:g}s ({last})",
                    hint="is the node Ready and able to pull the image? wait longer with --timeout")
            time.sleep(POLL_INTERVAL)

    def _fail_fast(self, obj: dict[str, Any]) -> None:
        status = obj.get("status") or {}
        for cs in status.get("containerStatuses") or ():
            state = cs.get("state") or {}
            waiting = state.get("waiting") or {}
            term = state.get("terminated") or {}
            reason = waiting.get("reason") or term.get("reason") or ""
            msg = waiting.get("message") or term.get("message") or ""
            if reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"):
                raise ImagePullFailed(f"node {self.node} cannot pull image {self.image}: {reason}"
                                      + (f": {msg}" if msg else ""), hint="choose another with --image")
            if _NO_PYTHON.search(msg):
                raise NoPython(f"image {self.image} has no python3", hint=_image_hint(self.image))
            if term.get("exitCode") == boot.SLEEPER_OLD_PYTHON:
                raise NoPython(f"image {self.image} has a Python older than 3.11",
                               hint=_image_hint(self.image))
            if term or reason in ("CreateContainerError", "RunContainerError", "StartError"):
                raise CtrfsError(f"node pod {self.pod} failed to start: {reason or 'terminated'}"
                                 + (f": {msg}" if msg else ""))
        if status.get("phase") in ("Failed", "Succeeded"):
            why = status.get("reason") or status.get("message") or status.get("phase")
            raise CtrfsError(f"node pod {self.pod} ended before it ran anything: {why}")


def _pod_state(obj: dict[str, Any]) -> str | None:
    """None when the node pod runs; else what it is waiting for, for a timeout's message."""
    status = obj.get("status") or {}
    phase = status.get("phase") or "Pending"
    for cs in status.get("containerStatuses") or ():
        state = cs.get("state") or {}
        if phase == "Running" and "running" in state:
            return None
        reason = (state.get("waiting") or {}).get("reason")
        if reason:
            return f"{phase}, {reason}"
    for cond in status.get("conditions") or ():
        if cond.get("status") == "False" and cond.get("reason"):
            return f"{phase}, {cond.get('type')}: {cond['reason']}"
    return phase


def find_agents(kubectl: Kubectl) -> dict[str, str]:
    """node → the running agent pod on it (empty when none are deployed or they cannot be seen)."""
    try:
        listing = kubectl.get_json(
            ["pods", "-l", ",".join(f"{k}={v}" for k, v in manifests.AGENT_LABEL.items())],
            namespace=manifests.AGENT_NAMESPACE, doing="looking for ctrfs agents")
    except CtrfsError:
        return {}  # no permission to list them: ephemeral mode still works
    agents: dict[str, str] = {}
    for item in listing.get("items") or ():
        spec, status = item.get("spec") or {}, item.get("status") or {}
        node = spec.get("nodeName")
        running = any("running" in (cs.get("state") or {}) for cs in status.get("containerStatuses") or ())
        if node and status.get("phase") == "Running" and running \
                and not (item.get("metadata") or {}).get("deletionTimestamp"):
            agents.setdefault(node, item["metadata"]["name"])
    return agents


def err_to(stream: IO[bytes]) -> ErrWriter:
    lock = threading.Lock()

    def write(data: bytes) -> None:
        with lock:
            stream.write(data)
            stream.flush()
    return write
