"""A pod-shaped container, as a node agent of ``kubectl ctrfs`` runs: the host's PID namespace,
the host's ``/`` read-only at ``/host``, a Python image, only the capabilities in
``deploy/CAPABILITIES``, and ``dist/ctrfs.pyz`` run with ``--host-root /host``.

The Python image is Debian 12 with python3, made offline by ``mmdebstrap`` and ``docker import``ed
under a tag named by its recipe, so one machine builds it once (about 40 s) and every later session
reuses it. It is a cache: the sessions leave it in place.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness

REPO = Path(__file__).resolve().parent.parent
CAPABILITIES_FILE = REPO / "deploy" / "CAPABILITIES"
MMDEBSTRAP = ("mmdebstrap", "--variant=apt", "--include=python3", "bookworm")
POD_IMAGE_REPO = "ctrfs-node-python"
HOST_ROOT = "/host"
PYZ_DIR = "/ctrfs"  # where the pod sees dist/ (a read-only bind of the build directory)


def capabilities() -> list[str]:
    """deploy/CAPABILITIES: one capability a line, then its reason; '#' starts a comment."""
    caps = []
    for line in CAPABILITIES_FILE.read_text().splitlines():
        word = line.split("#", 1)[0].split()
        if word:
            caps.append(word[0])
    return caps


def pod_image() -> str:
    """The Python image, built at most once per machine (a lock keeps parallel sessions to one build)."""
    tag = f"{POD_IMAGE_REPO}:{hashlib.sha256(' '.join(MMDEBSTRAP).encode()).hexdigest()[:12]}"
    lock_path = Path(tempfile.gettempdir()) / f"{POD_IMAGE_REPO}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if harness.run("docker", "image", "inspect", tag, check=False).returncode == 0:
            return tag
        with tempfile.TemporaryDirectory(prefix=f"{harness.TMP_PREFIX}mmdebstrap-") as tmp:
            tar = os.path.join(tmp, "rootfs.tar")
            harness.run(*MMDEBSTRAP, tar, timeout=900)
            harness.run("docker", "import", "--change", 'CMD ["/bin/sleep", "infinity"]', tar, tag,
                        timeout=300)
    return tag


def build_pyz(dest_dir: Path) -> Path:
    """``scripts/build_pyz.py`` into ``dest_dir``, with the Python running the tests."""
    out = dest_dir / "ctrfs.pyz"
    harness.run(sys.executable, str(REPO / "scripts" / "build_pyz.py"), "-o", str(out), timeout=600)
    return out


@dataclass(frozen=True)
class Pod:
    name: str
    id: str
    pid: int
    caps: tuple[str, ...]

    def exec(self, *argv: str, check: bool = False,
             timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        return harness.run("docker", "exec", self.name, *argv, check=check, timeout=timeout)

    def ctrfs(self, *argv: str, check: bool = True,
              timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        """``python3 -I /ctrfs/ctrfs.pyz --host-root /host ARGV`` in the pod; bytes out."""
        res = self.exec("python3", "-I", f"{PYZ_DIR}/ctrfs.pyz", "--host-root", HOST_ROOT, *argv,
                        timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"in-pod ctrfs {' '.join(argv)} -> {res.returncode}\n"
                                 f"{res.stderr.decode(errors='replace')}")
        return res


@contextlib.contextmanager
def node_pod(pyz: Path, caps: list[str] | None = None, *extra: str, host_pid: bool = True) -> Iterator[Pod]:
    """The pod-shaped container with ``caps`` (default: deploy/CAPABILITIES) and nothing else:
    ``--cap-drop ALL``, read-only root filesystem, no network, host PID namespace (unless not
    ``host_pid``)."""
    caps = capabilities() if caps is None else caps
    cap_args: list[str] = ["--cap-drop", "ALL"]
    for cap in caps:
        cap_args += ["--cap-add", cap]
    args: list[Any] = [*(["--pid=host"] if host_pid else []), "-v", f"/:{HOST_ROOT}:ro",
                       "-v", f"{pyz.parent}:{PYZ_DIR}:ro", "--read-only", *cap_args, *extra]
    with harness.run_docker(pod_image(), f"{harness.NAME_PREFIX}pod-", *args,
                            cmd=("/bin/sleep", "infinity")) as c:
        yield Pod(name=c.name, id=c.id, pid=c.pid, caps=tuple(caps))


def have_mmdebstrap() -> bool:
    return shutil.which("mmdebstrap") is not None
