"""Real containers for ctrfs's tests, on every runtime ctrfs knows, made without any registry.

Images are built from host files: a static C program (``tests/fixtures/logger.c``) for the shell-less
image, the host's static busybox for the busybox image, successive ``docker commit``s for the
multi-layer image. Containers get ``--network none``.

Everything created is named ``ctrfs-h-<session>-…`` (``<session>`` is random per test process) and
carries the creating PID (label ``ctrfs.test.owner-pid``; temp dirs ``/tmp/ctrfs-h-o<PID>-…``). It is
removed when its context manager exits, even on failure; an ``atexit`` hook removes whatever is still
registered; bare containers die with the test process (PR_SET_PDEATHSIG). :func:`sweep_stale` removes
what test processes killed by SIGKILL left behind, never anything of a live process: other sessions
share the daemons.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import itertools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SESSION = secrets.token_hex(3)
PREFIX = "ctrfs-h-"
NAME_PREFIX = f"{PREFIX}{SESSION}-"
OWNER_LABEL = "ctrfs.test.owner-pid"
IMAGE_ID_LABEL = "ctrfs.test.image-id"  # on containerd images: the CRI plugin's second reference
POD_CGROUP_LABEL = "ctrfs.test.pod-cgroup"  # on containerd containers: the cgroup dir to remove
TMP_PREFIX = f"{PREFIX}o{os.getpid()}-"
CONTAINERD_SOCK = "/run/containerd/containerd.sock"
CONTAINERD_TASKS = "/run/containerd/io.containerd.runtime.v2.task"
K8S_NS = "k8s.io"
# runc explicitly: podman prefers crun when it is installed, and crun 1.8 refuses a host with
# cgroup v1 and v2 mixed ("cgroups in hybrid mode not supported"), as this machine has.
PODMAN_RUN_OPTS = ("--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
BUSYBOX_CMD = ("/bin/sleep", "100000")


@dataclass(frozen=True)
class RunningContainer:
    runtime: str  # "docker" | "podman" | "containerd" | "runc" | "bare"
    id: str
    name: str
    pid: int  # main process, host PID namespace
    image: str | None
    target: str  # a TARGET ctrfs accepts
    info: dict[str, Any] = field(default_factory=dict)  # runtime-specific extras, see each fixture


# ---------------------------------------------------------------------------------------------------
# cleanup registry

_cleanups: dict[int, tuple[str, Callable[[], object]]] = {}
_cleanup_lock = threading.Lock()
_cleanup_seq = itertools.count(1)


def _register(what: str, fn: Callable[[], object]) -> int:
    with _cleanup_lock:
        key = next(_cleanup_seq)
        _cleanups[key] = (what, fn)
    return key


def _run_cleanup(key: int) -> None:
    with _cleanup_lock:
        entry = _cleanups.pop(key, None)
    if entry is None:
        return
    what, fn = entry
    try:
        fn()
    except Exception as err:  # noqa: BLE001 - cleanup must go on with the next item
        print(f"harness: cleanup of {what} failed: {err}", file=sys.stderr)


@contextlib.contextmanager
def _cleanup(what: str, fn: Callable[[], object]) -> Iterator[None]:
    key = _register(what, fn)
    try:
        yield
    finally:
        _run_cleanup(key)


@atexit.register
def _cleanup_all() -> None:
    for key in sorted(_cleanups, reverse=True):
        _run_cleanup(key)


def unique_name(prefix: str = NAME_PREFIX) -> str:
    return f"{prefix}{secrets.token_hex(4)}"


def _owner_label() -> str:
    return f"{OWNER_LABEL}={os.getpid()}"


def _tempdir(kind: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{kind}-"))


# ---------------------------------------------------------------------------------------------------
# processes


def run(*argv: str, input: bytes | None = None, check: bool = True, timeout: float = 120,  # noqa: A002
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run a host command, capturing output; a failure raises with the command's stderr."""
    proc = subprocess.run(argv, input=input, capture_output=True, timeout=timeout, env=env,
                          stdin=None if input is not None else subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: "
                           f"{proc.stderr.decode(errors='replace').strip()}")
    return proc


def out(*argv: str, **kw: Any) -> str:
    return run(*argv, **kw).stdout.decode().strip()


def ctrfs(*argv: str, check: bool = True, text: bool = True, env: dict[str, str] | None = None,
          prefix: list[str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[Any]:
    """Run the ctrfs CLI as a user would (a new process); ``prefix`` wraps it (setpriv, …) and
    ``env`` adds variables. With ``check`` a non-zero exit fails the test with ctrfs's stderr."""
    cmd = [*(prefix or []), sys.executable, "-m", "ctrfs", *argv]
    res = subprocess.run(cmd, capture_output=True, text=text, timeout=timeout,
                         env={**os.environ, **env} if env else None)
    if check and res.returncode != 0:
        err = res.stderr if text else res.stderr.decode(errors="replace")
        raise AssertionError(f"ctrfs {' '.join(argv)} -> {res.returncode}\n{err}")
    return res


def wait_until(pred: Callable[[], Any], what: str, timeout: float = 20, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def remove_tmux_socket(sock: str) -> None:
    """kill-server leaves the socket file (tmux 3.3): remove it, it is ours."""
    path = os.path.join(os.environ.get("TMUX_TMPDIR", "/tmp"), f"tmux-{os.getuid()}", sock)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in (b"Z", b"X")


def wait_for_log(pid: int, path: str = "/var/log/app.log", timeout: float = 20) -> None:
    """Wait until the logger in the container of ``pid`` wrote its first line."""
    wait_until(lambda: _nonempty(f"/proc/{pid}/root{path}"), f"{path} in pid {pid}", timeout)


def _nonempty(path: str) -> bool:
    try:
        return os.stat(path).st_size > 0
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------------
# root filesystems


@functools.cache
def _build_dir() -> Path:
    d = _tempdir("build")
    _register(f"build dir {d}", lambda: shutil.rmtree(d, ignore_errors=True))
    return d


@functools.cache
def logger_binary() -> Path:
    """tests/fixtures/logger.c compiled statically (once per session)."""
    exe = _build_dir() / "logger"
    run("gcc", "-static", "-O2", "-Wall", "-o", str(exe), str(FIXTURES / "logger.c"))
    return exe


def _write_etc(root: Path, os_id: str) -> None:
    etc = root / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/sbin/nologin\n"
                                "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n")
    (etc / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (etc / "os-release").write_text(f'NAME="ctrfs test {os_id}"\nID={os_id}\nVERSION_ID="1"\n'
                                    f'PRETTY_NAME="ctrfs test image ({os_id})"\n')


def shellless_rootfs(dest: Path) -> Path:
    """Fill ``dest`` with the shell-less image: /app, /etc/{passwd,group,os-release}, empty /var/log."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(logger_binary(), dest / "app")
    (dest / "app").chmod(0o755)
    _write_etc(dest, "ctrfs-shellless")
    for d in ("var/log", "proc", "sys", "dev", "tmp"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    (dest / "tmp").chmod(0o1777)
    return dest


def busybox_rootfs(dest: Path) -> Path:
    """Fill ``dest`` with /bin/busybox (the host's static build) and a symlink per applet."""
    host_busybox = Path("/bin/busybox")
    bindir = dest / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(host_busybox, bindir / "busybox")
    applets = out(str(host_busybox), "--list").split()
    for applet in applets:
        if applet != "busybox" and not (bindir / applet).exists():
            (bindir / applet).symlink_to("busybox")
    _write_etc(dest, "ctrfs-busybox")
    for d in ("var/log", "proc", "sys", "dev", "tmp", "root"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    (dest / "tmp").chmod(0o1777)
    return dest


# ---------------------------------------------------------------------------------------------------
# images


def _tar_of(dir_: Path) -> bytes:
    return run("tar", "--numeric-owner", "-C", str(dir_), "-c", ".").stdout


def build_image_from_dir(dir_: str | os.PathLike[str], tag: str, *, changes: tuple[str, ...] = (),
                         cli: str = "docker", cleanup: bool = True) -> str:
    """``tar -C dir -c . | docker import`` (or podman); removed at session end unless ``cleanup=False``."""
    argv = [cli, "import"]
    for change in (*changes, f"LABEL {_owner_label()}"):
        argv += ["--change", change]
    run(*argv, "-", tag, input=_tar_of(Path(dir_)))
    if cleanup:
        _register(f"{cli} image {tag}", lambda: _rmi(cli, tag))
    return tag


def _rmi(cli: str, tag: str) -> None:
    run(cli, "rmi", "-f", tag, check=False)


@functools.cache
def shellless_image(cli: str = "docker") -> str:
    root = shellless_rootfs(_build_dir() / "shellless")
    return build_image_from_dir(root, f"{NAME_PREFIX}shellless:latest", changes=('CMD ["/app"]',), cli=cli)


@functools.cache
def busybox_image() -> str:
    root = busybox_rootfs(_build_dir() / "busybox")
    cmd = json.dumps(list(BUSYBOX_CMD))
    return build_image_from_dir(root, f"{NAME_PREFIX}busybox:latest", changes=(f"CMD {cmd}",))


# A Debian root filesystem (mmdebstrap --variant=minbase, ~170 MB, ~60 s): cached as an image by
# this tag in each store and kept across sessions (no owner label, so sweep_stale leaves it).
DEBIAN_TAG = "ctrfs-cache-debian-minbase:bookworm"
DEBIAN_CMD = ("/bin/sleep", "100000")


@functools.cache
def _debian_tar() -> Path:
    tar = _build_dir() / "debian-minbase.tar"
    run("mmdebstrap", "--variant=minbase", "--quiet", "bookworm", str(tar), timeout=900)
    return tar


@functools.cache
def debian_image(cli: str = "docker") -> str:
    """The cached Debian minbase image in ``cli``'s store, built once per machine."""
    ref = DEBIAN_TAG if cli == "docker" else f"localhost/{DEBIAN_TAG}"
    if run(cli, "image", "inspect", ref, check=False).returncode != 0:
        cmd = json.dumps(list(DEBIAN_CMD))
        run(cli, "import", "--change", f"CMD {cmd}", str(_debian_tar()), ref, timeout=600)
    return ref


# What each layer of multilayer_image() holds, bottom first. "files" maps path → content; "whiteouts"
# are paths deleted in that layer; "opaque" directories were deleted and recreated in that layer, so
# nothing of them below shows through.
MULTILAYER_LAYERS: list[dict[str, Any]] = [
    {"name": "busybox", "files": {"/bin/busybox": None, "/etc/os-release": None},
     "whiteouts": [], "opaque": []},
    {"name": "layer2",
     "files": {"/data/a.txt": b"v1\n", "/data/dir/x": b"x\n", "/gone.txt": b"gone\n",
               "/olddir/f1": b"f1\n", "/olddir/f2": b"f2\n"},
     "whiteouts": [], "opaque": []},
    {"name": "layer3",
     "files": {"/data/a.txt": b"v2\n", "/olddir/new": b"new\n"},
     "whiteouts": ["/gone.txt"], "opaque": ["/olddir"]},
]
_LAYER_SCRIPTS = [
    "mkdir -p /data/dir /olddir && printf 'v1\\n' > /data/a.txt && printf 'x\\n' > /data/dir/x"
    " && printf 'gone\\n' > /gone.txt && printf 'f1\\n' > /olddir/f1 && printf 'f2\\n' > /olddir/f2",
    "printf 'v2\\n' > /data/a.txt && rm /gone.txt && rm -r /olddir && mkdir /olddir"
    " && printf 'new\\n' > /olddir/new",
]


@functools.cache
def multilayer_image() -> str:
    """busybox_image() plus two committed layers, see MULTILAYER_LAYERS."""
    image = busybox_image()
    cmd = json.dumps(list(BUSYBOX_CMD))
    for i, script in enumerate(_LAYER_SCRIPTS, start=2):
        name = unique_name()
        tag = f"{NAME_PREFIX}multilayer:l{i}"
        try:
            run("docker", "run", "--name", name, "--network", "none", "--label", _owner_label(),
                image, "sh", "-c", script)
            run("docker", "commit", "--change", f"CMD {cmd}", "--change", f"LABEL {_owner_label()}",
                name, tag)
        finally:
            run("docker", "rm", "-f", name, check=False)
        _register(f"docker image {tag}", functools.partial(_rmi, "docker", tag))
        image = tag
    return image


# ---------------------------------------------------------------------------------------------------
# docker


def docker_exec(c: RunningContainer, *argv: str, input: bytes | None = None,  # noqa: A002
                check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """``docker exec`` (or ``podman exec`` for a podman container) in ``c``; stdout/stderr as bytes."""
    cli = "podman" if c.runtime == "podman" else "docker"
    flags = ["-i"] if input is not None else []
    return run(cli, "exec", *flags, c.id, *argv, input=input, check=check)


def _inspect_pid_id(cli: str, name: str) -> tuple[int, str]:
    pid, cid = out(cli, "inspect", "-f", "{{.State.Pid}} {{.Id}}", name).split()
    if int(pid) <= 0:
        logs = run(cli, "logs", name, check=False)
        raise RuntimeError(f"{cli} container {name} is not running: {logs.stderr.decode(errors='replace')}")
    return int(pid), cid


def _rm_container(cli: str, name: str) -> None:
    run(cli, "rm", "-f", "-v", name, check=False, timeout=60)


@contextlib.contextmanager
def run_docker(image: str, name_prefix: str = NAME_PREFIX, *args: str, cmd: tuple[str, ...] | list[str] = (),
               cli: str = "docker", wait_log: bool = False) -> Iterator[RunningContainer]:
    """A detached container (``--network none``), removed with its volumes on exit.

    ``args`` go to ``docker run`` before the image, ``cmd`` after it. ``wait_log`` waits for the
    logger's first line (shell-less image).
    """
    name = unique_name(name_prefix)
    extra = list(PODMAN_RUN_OPTS) if cli == "podman" else []
    with _cleanup(f"{cli} container {name}", functools.partial(_rm_container, cli, name)):
        run(cli, "run", "-d", "--name", name, "--network", "none", "--label", _owner_label(),
            *extra, *args, image, *cmd)
        pid, cid = _inspect_pid_id(cli, name)
        if wait_log:
            wait_for_log(pid)
        yield RunningContainer(runtime=cli, id=cid, name=name, pid=pid, image=image, target=name)


def run_many(stack: contextlib.ExitStack, image: str, count: int, name_prefix: str = NAME_PREFIX,
             *args: str, cmd: tuple[str, ...] | list[str] = (), workers: int = 4) -> list[RunningContainer]:
    """``count`` containers of :func:`run_docker`, started a few at a time; ``stack`` removes them."""
    from concurrent.futures import ThreadPoolExecutor

    def start(_: int) -> RunningContainer:
        cm = run_docker(image, name_prefix, *args, cmd=cmd)
        c = cm.__enter__()
        stack.push(cm)
        return c

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(start, range(count)))


def _orphaned(owner: str) -> bool:
    return owner.isdigit() and not pid_alive(int(owner))


@functools.cache
def sweep_stale() -> None:
    """Remove what test processes that died without cleaning up (SIGKILL, OOM) left behind.

    Runs once per process; the fixtures call it before creating anything.
    """
    for cli in ("docker", "podman"):
        if shutil.which(cli):
            _sweep_cli(cli)
    if shutil.which("ctr"):
        _sweep_containerd()
    if shutil.which("runc"):
        _sweep_runc()
    for d in Path(tempfile.gettempdir()).glob(f"{PREFIX}o*-*"):
        if _orphaned(d.name[len(PREFIX) + 1:].split("-", 1)[0]):
            shutil.rmtree(d, ignore_errors=True)


def _sweep_cli(cli: str) -> None:
    label = f"label={OWNER_LABEL}"
    fmt = f'{{{{.ID}}}} {{{{.Label "{OWNER_LABEL}"}}}}'
    for line in out(cli, "ps", "-a", "--filter", label, "--format", fmt, check=False).splitlines():
        cid, _, owner = line.partition(" ")
        if _orphaned(owner):
            _rm_container(cli, cid)
    fmt = f'{{{{index .Config.Labels "{OWNER_LABEL}"}}}}'
    # newest first (the CLI's order), so committed children go before the images they build on
    for image_id in dict.fromkeys(out(cli, "images", "-q", "--filter", label, check=False).split()):
        if _orphaned(out(cli, "image", "inspect", "-f", fmt, image_id, check=False)):
            _rmi(cli, image_id)


def _sweep_containerd() -> None:
    for cid in ctr("containers", "ls", "-q", f'labels."{OWNER_LABEL}"', check=False).stdout.decode().split():
        info = ctr("containers", "info", cid, check=False)
        labels = json.loads(info.stdout).get("Labels", {}) if info.returncode == 0 else {}
        if _orphaned(labels.get(OWNER_LABEL, "")):
            _kill_ctr_task(cid)
            if POD_CGROUP_LABEL in labels:
                _rmdir_cgroups(labels[POD_CGROUP_LABEL])
    # `ctr images ls` ends each row with the image's labels as k=v,k=v (no per-image info command).
    for row in ctr("images", "ls", f'labels."{OWNER_LABEL}"', check=False).stdout.decode().splitlines()[1:]:
        ref, labels = row.split()[0], dict(kv.split("=", 1) for kv in row.split()[-1].split(",") if "=" in kv)
        if _orphaned(labels.get(OWNER_LABEL, "")):
            ctr("images", "rm", ref, labels.get(IMAGE_ID_LABEL, ref), check=False)


# ---------------------------------------------------------------------------------------------------
# podman


@contextlib.contextmanager
def podman_shellless() -> Iterator[RunningContainer]:
    image = shellless_image("podman")
    with run_docker(image, NAME_PREFIX, cli="podman", wait_log=True) as c:
        yield c


# ---------------------------------------------------------------------------------------------------
# containerd, shaped as the CRI plugin shapes a Kubernetes pod

# Annotation keys containerd's CRI plugin puts into every OCI spec (containerd pkg/cri/annotations,
# DefaultCRIAnnotations); labels kubelet puts on every container (k8s.io/kubelet/pkg/types/labels.go).
CRI_CONTAINER_TYPE = "io.kubernetes.cri.container-type"
CRI_CONTAINER_NAME = "io.kubernetes.cri.container-name"
CRI_IMAGE_NAME = "io.kubernetes.cri.image-name"
CRI_SANDBOX_ID = "io.kubernetes.cri.sandbox-id"
CRI_SANDBOX_NAME = "io.kubernetes.cri.sandbox-name"
CRI_SANDBOX_NAMESPACE = "io.kubernetes.cri.sandbox-namespace"
CRI_SANDBOX_UID = "io.kubernetes.cri.sandbox-uid"
CRI_SANDBOX_LOG_DIR = "io.kubernetes.cri.sandbox-log-directory"


def ctr(*argv: str, address: str = CONTAINERD_SOCK, **kw: Any) -> subprocess.CompletedProcess[bytes]:
    return run("ctr", "--address", address, "-n", K8S_NS, *argv, **kw)


@functools.cache
def containerd_image(address: str = CONTAINERD_SOCK) -> str:
    """The shell-less image imported into containerd's k8s.io namespace (from ``docker save``)."""
    tag = shellless_image()
    ctr("images", "import", "--no-unpack", "-", input=run("docker", "save", tag).stdout, address=address)
    image = f"docker.io/library/{tag}"  # how ctr names the RepoTags of a docker-save archive
    # containerd's CRI plugin adds a second reference named by the image ID (config digest).
    image_id = out("docker", "image", "inspect", "-f", "{{.Id}}", tag)
    ctr("images", "label", image, _owner_label(), f"{IMAGE_ID_LABEL}={image_id}", address=address)
    _register(f"containerd image {image}",
              lambda: ctr("images", "rm", image, image_id, check=False, address=address))
    return image


def _kill_ctr_task(cid: str, address: str = CONTAINERD_SOCK) -> None:
    # --force kills a running task with SIGKILL and waits for it before deleting it.
    ctr("task", "rm", "-f", cid, check=False, address=address)
    ctr("containers", "rm", cid, check=False, address=address)  # and its snapshot


def _rmdir_cgroups(rel: str) -> None:
    """Remove the pod-level cgroup directory runc left behind, in every v1 hierarchy (and v2)."""
    base = Path("/sys/fs/cgroup")
    candidates = [base / rel.lstrip("/")] + [p / rel.lstrip("/") for p in base.iterdir() if p.is_dir()]
    for d in candidates:
        with contextlib.suppress(OSError):
            d.rmdir()


@contextlib.contextmanager
def _ctr_task(image: str, cid: str, cgroup: str, annotations: dict[str, str], labels: dict[str, str],
              with_ns: tuple[str, ...] = (), address: str = CONTAINERD_SOCK,
              tasks: str = CONTAINERD_TASKS) -> Iterator[int]:
    argv = ["run", "-d", "--null-io", "--cgroup", cgroup]
    for k, v in annotations.items():
        argv += ["--annotation", f"{k}={v}"]
    pod_cgroup = cgroup.rsplit("/", 1)[0]
    for k, v in {**labels, OWNER_LABEL: str(os.getpid()), POD_CGROUP_LABEL: pod_cgroup}.items():
        argv += ["--label", f"{k}={v}"]
    for ns in with_ns:
        argv += ["--with-ns", ns]
    with _cleanup(f"containerd task {cid}", functools.partial(_kill_ctr_task, cid, address)):
        ctr(*argv, image, cid, address=address)
        pidfile = Path(tasks, K8S_NS, cid, "init.pid")
        pid = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), f"{pidfile}"))
        yield pid


@contextlib.contextmanager
def containerd_cri(pod_namespace: str = "ctrfs-test", container_name: str = "app",
                   address: str = CONTAINERD_SOCK,
                   state: str = "/run/containerd") -> Iterator[RunningContainer]:
    """A pod's sandbox + one app container in containerd's k8s.io namespace, as the CRI plugin makes them.

    Both run the shell-less logger (the sandbox plays the pause container); the app joins the
    sandbox's network, IPC and UTS namespaces; cgroups are ``/kubepods/besteffort/pod<UID>/<ID>``
    (cgroupfs driver). ``info`` has pod_uid, pod_name, pod_namespace, sandbox_id, sandbox_pid,
    container_name, cgroup, bundle and k8s_target. ``address`` and ``state`` name another containerd
    (its socket and state dir), e.g. one with a Kubernetes distribution's layout.
    """
    # cached for the system's containerd only: another one may be a fresh daemon at the same address
    image = containerd_image() if address == CONTAINERD_SOCK else containerd_image.__wrapped__(address)
    tasks = f"{state}/io.containerd.runtime.v2.task"
    pod_uid = str(uuid.uuid4())
    pod_name = unique_name()
    sandbox_id = secrets.token_hex(32)
    cid = secrets.token_hex(32)
    pod_cgroup = f"/kubepods/besteffort/pod{pod_uid}"
    common = {
        CRI_SANDBOX_ID: sandbox_id,
        CRI_SANDBOX_NAME: pod_name,
        CRI_SANDBOX_NAMESPACE: pod_namespace,
        CRI_SANDBOX_UID: pod_uid,
    }
    kube_labels = {
        "io.kubernetes.pod.name": pod_name,
        "io.kubernetes.pod.namespace": pod_namespace,
        "io.kubernetes.pod.uid": pod_uid,
    }
    sandbox_ann = {**common, CRI_CONTAINER_TYPE: "sandbox",
                   CRI_SANDBOX_LOG_DIR: f"/var/log/pods/{pod_namespace}_{pod_name}_{pod_uid}"}
    app_ann = {**common, CRI_CONTAINER_TYPE: "container", CRI_CONTAINER_NAME: container_name,
               CRI_IMAGE_NAME: image}
    with contextlib.ExitStack() as stack:
        stack.callback(_rmdir_cgroups, pod_cgroup)
        sandbox_pid = stack.enter_context(_ctr_task(
            image, sandbox_id, f"{pod_cgroup}/{sandbox_id}", sandbox_ann,
            {**kube_labels, "io.cri-containerd.kind": "sandbox"}, address=address, tasks=tasks))
        app_pid = stack.enter_context(_ctr_task(
            image, cid, f"{pod_cgroup}/{cid}", app_ann,
            {**kube_labels, "io.cri-containerd.kind": "container",
             "io.kubernetes.container.name": container_name},
            with_ns=tuple(f"{kind}:/proc/{sandbox_pid}/ns/{link}"
                          for kind, link in (("network", "net"), ("ipc", "ipc"), ("uts", "uts"))),
            address=address, tasks=tasks))
        wait_for_log(app_pid)
        yield RunningContainer(
            runtime="containerd", id=cid, name=container_name, pid=app_pid, image=image,
            target=f"containerd://{K8S_NS}/{cid}",
            info={"pod_uid": pod_uid, "pod_name": pod_name, "pod_namespace": pod_namespace,
                  "sandbox_id": sandbox_id, "sandbox_pid": sandbox_pid, "container_name": container_name,
                  "cgroup": f"{pod_cgroup}/{cid}", "bundle": f"{tasks}/{K8S_NS}/{cid}",
                  "k8s_target": f"k8s://{pod_namespace}/{pod_name}/{container_name}"})


# ---------------------------------------------------------------------------------------------------
# runc alone: an OCI bundle run by the low-level runtime, no daemon and no image store

RUNC_STATE = "/run/runc"


def _runc_rm(cid: str) -> None:
    run("runc", "kill", cid, "KILL", check=False)
    # delete --force kills what is left and waits for it; it also removes the container's cgroup.
    run("runc", "delete", "--force", cid, check=False)


def _sweep_runc() -> None:
    """runc containers whose bundle is the temp dir of a test process that no longer exists."""
    listing = run("runc", "list", "--format", "json", check=False).stdout.strip()
    for c in json.loads(listing or b"null") or []:
        bundle = Path(c.get("bundle") or "")
        if bundle.parent == Path(tempfile.gettempdir()) and bundle.name.startswith(f"{PREFIX}o") \
                and _orphaned(bundle.name[len(PREFIX) + 1:].split("-", 1)[0]):
            _runc_rm(c["id"])


@contextlib.contextmanager
def runc_container() -> Iterator[RunningContainer]:
    """The shell-less logger run by ``runc run -d`` from an OCI bundle: rootfs a plain directory (no
    overlay, no image), state only in /run/runc/<ID>/state.json. ``info``: bundle, rootfs."""
    bundle = _tempdir("runc")
    rootfs = shellless_rootfs(bundle / "rootfs")
    cid = unique_name()
    run("runc", "spec", "--bundle", str(bundle))
    config = json.loads((bundle / "config.json").read_text())
    config["process"].update(terminal=False, args=["/app"])
    config["root"] = {"path": "rootfs", "readonly": False}  # the logger writes /var/log/app.log
    config["hostname"] = cid[:63]
    config.setdefault("annotations", {})[OWNER_LABEL] = str(os.getpid())
    # runc spec's default namespaces include a new network namespace: loopback only, no traffic out.
    assert {"type": "network"} in config["linux"]["namespaces"]
    (bundle / "config.json").write_text(json.dumps(config))

    def stop() -> None:
        _runc_rm(cid)
        shutil.rmtree(bundle, ignore_errors=True)

    with _cleanup(f"runc container {cid}", stop):
        # --detach: runc returns once the container runs, and the container keeps runc's stdio; a
        # pipe would never see EOF, so its output goes to a file.
        errlog = bundle / "runc.log"
        with errlog.open("wb") as err:
            rc = subprocess.run(["runc", "run", "--detach", "--pid-file", str(bundle / "pid"), "--bundle",
                                 str(bundle), cid], stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                timeout=60).returncode
        if rc != 0:
            raise RuntimeError(f"runc run exited {rc}: {errlog.read_text(errors='replace').strip()}")
        pid = int((bundle / "pid").read_text())
        wait_for_log(pid)
        yield RunningContainer(runtime="runc", id=cid, name=cid, pid=pid, image=None,
                               target=f"runc://{cid}", info={"bundle": str(bundle), "rootfs": str(rootfs)})


# ---------------------------------------------------------------------------------------------------
# bare container: namespaces + overlay + pivot_root, no runtime at all

_BARE_HELPER = FIXTURES / "bare_init.py"


@contextlib.contextmanager
def bare_container() -> Iterator[RunningContainer]:
    """The shell-less logger in new mount/PID/UTS namespaces on an overlay root, with no runtime.

    unshare(1) makes the PID namespace; tests/fixtures/bare_init.py, its PID 1, does the rest.

    ``info``: lowerdir, upperdir, workdir, merged (host paths; the overlay is mounted only inside the
    container's mount namespace), unshare_pid.
    """
    top = _tempdir("bare")
    dirs = {k: top / k for k in ("lower", "upper", "work", "merged")}
    for d in dirs.values():
        d.mkdir()
    shellless_rootfs(dirs["lower"])
    proc: subprocess.Popen[bytes] | None = None

    def stop() -> None:
        if proc is not None and proc.poll() is None:
            # SIGTERM to unshare is not forwarded; the app is PID 1 of its namespace with a handler.
            for pid in _children(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                for pid in _children(proc.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                proc.kill()
                proc.wait(10)
        shutil.rmtree(top, ignore_errors=True)

    with _cleanup(f"bare container {top}", stop):
        proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--kill-child", sys.executable, str(_BARE_HELPER),
             *(str(dirs[k]) for k in ("lower", "upper", "work", "merged")), "/app"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent)
        assert proc.stderr is not None
        try:
            pid = wait_until(lambda: _exec_done(proc), "bare container's /app to start", 20)
        except TimeoutError as err:
            raise RuntimeError(f"bare container did not start: {_drain(proc)}") from err
        wait_for_log(pid)
        name = f"{NAME_PREFIX}bare-{pid}"
        yield RunningContainer(runtime="bare", id=name, name=name, pid=pid, image=None,
                               target=f"pid://{pid}",
                               info={"lowerdir": str(dirs["lower"]), "upperdir": str(dirs["upper"]),
                                     "workdir": str(dirs["work"]), "merged": str(dirs["merged"]),
                                     "unshare_pid": proc.pid})


def _die_with_parent() -> None:
    # If the test process is SIGKILLed, unshare gets SIGKILL too, and --kill-child passes it on to
    # the container's PID 1, which takes the whole PID namespace with it (prctl(2) PR_SET_PDEATHSIG).
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _drain(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None:
        proc.kill()
    _, err = proc.communicate(timeout=10)
    return err.decode(errors="replace").strip() or f"exit status {proc.returncode}"


def _children(ppid: int) -> list[int]:
    try:
        with open(f"/proc/{ppid}/task/{ppid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:  # kernel without CONFIG_PROC_CHILDREN
        pass
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    if int(f.read().rsplit(b")", 1)[1].split()[1]) == ppid:
                        found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return found


def _exec_done(proc: subprocess.Popen[bytes]) -> int | None:
    """The host PID of unshare's child once it has exec'd /app (its comm is then "app")."""
    if proc.poll() is not None:
        raise RuntimeError(f"unshare exited: {_drain(proc)}")
    for pid in _children(proc.pid):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "app":
                    return pid
        except OSError:
            pass
    return None


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)
