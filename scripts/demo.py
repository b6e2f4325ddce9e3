"""`make demo`: a container with no shell, looked at from the host with ctrfs.

Starts a throwaway Docker container from the test harness's shell-less image (one static binary
that appends to /var/log/app.log), shows that `docker exec … sh` cannot get in, then runs ctrfs
commands against it, `ctrfs exec` among them. Then the node side of `kubectl ctrfs`:
dist/ctrfs.pyz, run in a pod-shaped container (host PID namespace, the host's / read-only at /host,
deploy/CAPABILITIES only) with `--host-root /host`, looks at the same container. The containers and
the demo image are removed however the demo ends (the Python image of the pod is a per-machine
cache and stays).
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import harness  # noqa: E402
import nodepod  # noqa: E402

CTRFS = str(REPO / ".venv/bin/ctrfs")


def step(argv: list[str], expect_fail: bool = False) -> None:
    shown = ["ctrfs", *argv[1:]] if argv[0] == CTRFS else argv
    print(f"\n$ {shlex.join(shown)}", flush=True)
    rc = subprocess.run(argv, stdin=subprocess.DEVNULL).returncode
    if (rc != 0) != expect_fail:
        raise SystemExit(f"demo: `{shlex.join(shown)}` exited {rc}")


def main() -> None:
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    print("Starting a container whose image holds one static binary: no shell, no coreutils.")
    with harness.run_docker(harness.shellless_image(), "ctrfs-demo-", wait_log=True) as c:
        name = c.name
        step(["docker", "exec", name, "sh", "-c", "tail /var/log/app.log"], expect_fail=True)
        step([CTRFS, "ps"])
        step([CTRFS, "inspect", name])
        step([CTRFS, "ls", "-l", f"{name}:/"])
        step([CTRFS, "cat", f"{name}:/etc/os-release"])
        step([CTRFS, "tail", "-n", "3", f"{name}:/var/log/app.log"])
        print(f"\n$ ctrfs tail -f {name}:/var/log/app.log      (3 s, then Ctrl-C)", flush=True)
        follow = subprocess.Popen([CTRFS, "tail", "-n", "0", "-f", f"{name}:/var/log/app.log"])
        time.sleep(3.5)
        follow.send_signal(signal.SIGINT)
        if follow.wait(10) != 130:
            raise SystemExit("demo: ctrfs tail -f did not stop cleanly on Ctrl-C")
        step([CTRFS, "libs", name])
        print("\nNo shell in the image, yet a toolbox (the host's static busybox, copied into a private")
        print("read-only mount at /.ctrfs/bin) runs in the container's namespaces, target untouched:")
        step([CTRFS, "exec", name, "--", "ls", "-l", "/"])
        step([CTRFS, "exec", name, "--", "ps"])
        step(["docker", "diff", name])
        pod_view(name)
    print("\nDemo containers removed.")


def pod_view(name: str) -> None:
    """The same container from a pod-shaped container, as a Kubernetes node agent sees it."""
    print("\nThe node side of `kubectl ctrfs`: dist/ctrfs.pyz in a pod-shaped container (building it,"
          " and the first time a Debian python3 image with mmdebstrap, takes a minute).", flush=True)
    pyz = nodepod.build_pyz(REPO / "dist")
    caps = nodepod.capabilities()
    with nodepod.node_pod(pyz) as pod:
        flags = " ".join(f"--cap-add {c}" for c in caps)
        print(f"\n$ docker run --pid=host -v /:/host:ro --read-only --network none --cap-drop ALL {flags} "
              f"{nodepod.pod_image()} …", flush=True)
        for argv in (["ps"], ["cat", f"{name}:/etc/os-release"], ["layers", name], ["libs", name]):
            shown = ["python3", "ctrfs.pyz", "--host-root", nodepod.HOST_ROOT, *argv]
            print(f"\n(in the pod) $ {shlex.join(shown)}", flush=True)
            res = pod.ctrfs(*argv, check=False)
            sys.stdout.write(res.stdout.decode(errors="replace"))
            sys.stdout.flush()
            if res.returncode != 0:
                raise SystemExit(f"demo: in-pod `{shlex.join(shown)}` exited {res.returncode}: "
                                 f"{res.stderr.decode(errors='replace').strip()}")


if __name__ == "__main__":
    main()
