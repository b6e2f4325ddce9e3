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

import os
import shlex
import signal
import subprocess
import sys
import tempfile
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
        step([CTRFS, "diff", name])
        step([CTRFS, "layers", name])
        step([CTRFS, "which", f"{name}:/etc/os-release"])
        step([CTRFS, "mounts", name])
        step([CTRFS, "find", f"{name}:/", "--xdev", "--type", "f", "--name", "*.log"])
        step([CTRFS, "grep", "-n", "ID=", f"{name}:/etc/os-release"])
        with tempfile.TemporaryDirectory(prefix="ctrfs-demo-") as tmp:
            out = os.path.join(tmp, "rootfs.tar")
            step([CTRFS, "export", name, "-o", out])
            shell(f"tar -tf {shlex.quote(out)} | head -n 8")
        step([CTRFS, "libs", name])
        step([CTRFS, "probe", name, "--exe", "--symbol", "main"])
        print("\nNo shell in the image, yet a toolbox (the host's static busybox, copied into a private")
        print("read-only mount at /.ctrfs/bin) runs in the container's namespaces, target untouched:")
        step([CTRFS, "exec", name, "--", "ls", "-l", "/"])
        step([CTRFS, "exec", name, "--", "ps"])
        step(["docker", "diff", name])
        browse_screenshot(name)
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


def shell(cmd: str) -> None:
    print(f"\n$ {cmd.replace(tempfile.gettempdir() + '/', '')}", flush=True)
    subprocess.run(cmd, shell=True, check=True)


def browse_screenshot(name: str) -> None:
    """`ctrfs browse` in a detached tmux: open /etc, select os-release, print the screen."""
    print(f"\n$ ctrfs browse {name}      (in tmux; /etc opened, os-release selected)", flush=True)
    sock = f"ctrfs-demo-{os.getpid()}"
    tmux = ["tmux", "-L", sock, "-f", "/dev/null"]

    def screen() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True,
                              text=True).stdout

    def keys(*k: str) -> None:
        subprocess.run([*tmux, "send-keys", *k], check=True)

    subprocess.run([*tmux, "new-session", "-d", "-x", "130", "-y", "34", CTRFS, "browse", name],
                   check=True)
    try:
        harness.wait_until(lambda: " etc " in screen() and "wasted space" in screen(),
                           "the browse screen", timeout=30)
        keys("Down", "Down", "Enter")  # / → dev → etc, expanded
        harness.wait_until(lambda: "os-release" in screen(), "/etc listed")
        for _ in range(12):
            keys("Down")
            time.sleep(0.5)  # the info pane follows the cursor
            if "/etc/os-release" in screen():
                break
        try:
            harness.wait_until(lambda: "PRETTY_NAME" in screen(), "the preview", timeout=10)
        except TimeoutError:
            pass  # print what there is
        print(screen().rstrip("\n"))
        keys("q")
    finally:
        subprocess.run([*tmux, "kill-server"], check=False, stderr=subprocess.DEVNULL)
        harness.remove_tmux_socket(sock)


if __name__ == "__main__":
    main()
