"""A second, standalone containerd with a Kubernetes distribution's layout (k3s by default).

k3s runs its own containerd with ``--root /var/lib/rancher/k3s/agent/containerd --state
/run/k3s/containerd`` and its socket in the state dir (k3s pkg/agent/config). This starts the host's
containerd binary with those dirs and the CRI plugin off (no CNI here), so ctrfs meets the files a
k3s node has. The shims keep their
sockets and runc its state under /run/containerd whatever the state dir (verified on this machine).

The dirs must not exist beforehand, unless a marker left by a test process that is gone says they
are ours: this never touches a real k3s install. Everything created is removed afterwards, also on
failure: containerd is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import harness

MARKER = ".ctrfs-test-owner"


@dataclass(frozen=True)
class Layout:
    name: str
    root: str
    state: str

    @property
    def address(self) -> str:
        return f"{self.state}/containerd.sock"


# Paths as runtimes/base.py's KUBE_CONTAINERDS cites them from each project's source. Only k3s
# puts its socket in the state dir; here every layout does (ctrfs never uses the socket).
K3S = Layout("k3s", "/var/lib/rancher/k3s/agent/containerd", "/run/k3s/containerd")
RKE2 = Layout("rke2", "/var/lib/rancher/rke2/agent/containerd", "/run/k3s/containerd")
MICROK8S = Layout("microk8s", "/var/snap/microk8s/common/var/lib/containerd",
                  "/var/snap/microk8s/common/run/containerd")
K0S = Layout("k0s", "/var/lib/k0s/containerd", "/run/k0s/containerd")
LAYOUTS = (K3S, RKE2, MICROK8S, K0S)

_CONFIG = """version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{address}"
[ttrpc]
  address = "{address}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"
"""


def _top_new(path: str) -> Path:
    """The top-most directory of ``path`` that does not exist yet (what creating it adds)."""
    p = Path(path)
    while not p.parent.exists():
        p = p.parent
    return p


def _mine(d: Path) -> bool:
    try:
        owner = (d / MARKER).read_text().strip()
    except OSError:
        return False
    return owner.isdigit() and (int(owner) == os.getpid() or not harness.pid_alive(int(owner)))


def _unmount_below(dirs: list[Path]) -> None:
    """Lazily unmount whatever is still mounted below ``dirs`` (a snapshot a killed shim left)."""
    with open("/proc/self/mountinfo", "rb") as f:
        points = [line.split()[4].decode() for line in f]
    for mp in sorted(points, key=len, reverse=True):
        if any(mp == str(d) or mp.startswith(f"{d}/") for d in dirs):
            subprocess.run(["umount", "-l", mp], capture_output=True, check=False)


@contextlib.contextmanager
def standalone_containerd(layout: Layout = K3S) -> Iterator[Layout]:
    created: list[Path] = []
    for d in (layout.root, layout.state):
        top = _top_new(d)
        if Path(d).exists():
            if not _mine(Path(d)):
                raise RuntimeError(f"{d} exists and is not a test's: a real {layout.name} install? "
                                   "not touching it")
            created.append(Path(d))
        else:
            created.append(top)
        Path(d).mkdir(parents=True, exist_ok=True)
        (Path(d) / MARKER).write_text(str(os.getpid()))
    proc: subprocess.Popen[bytes] | None = None

    def stop() -> None:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        _unmount_below(created)
        for d in created:
            shutil.rmtree(d, ignore_errors=True)

    with harness._cleanup(f"{layout.name} containerd", stop):
        config = Path(layout.state) / "config.toml"
        config.write_text(_CONFIG.format(root=layout.root, state=layout.state, address=layout.address))
        log = open(Path(layout.state) / "containerd.log", "wb")  # closed in finally
        try:
            proc = subprocess.Popen(["containerd", "--config", str(config)], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=log, preexec_fn=harness._die_with_parent)
            harness.wait_until(lambda: _answers(layout, proc), f"{layout.name} containerd", timeout=30)
            yield layout
        finally:
            log.close()


def _answers(layout: Layout, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        text = (Path(layout.state) / "containerd.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{layout.name} containerd exited {proc.returncode}: {text}")
    return harness.run("ctr", "--address", layout.address, "version", check=False).returncode == 0
