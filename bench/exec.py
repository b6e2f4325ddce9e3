"""`ctrfs exec` against `docker exec`, on one busybox container, whole process included.

`docker exec` asks the daemon, which asks containerd and runc to start the process; `ctrfs exec`
finds the container in /proc, copies the toolbox into a tmpfs, builds the private view of the
container's root and forks into its namespaces. The claim: within 4x of `docker exec` for a
trivial command, and the same for 10 MiB through a pipe (`cat`), where the relay's copy counts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from run import Runner

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import harness  # noqa: E402

PREFIX = "ctrfs-bx-"
CTRFS = str(REPO / ".venv/bin/ctrfs")


def run(r: Runner) -> None:
    # as in startup.py: the installed package's bytecode, not a recompile at every start
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "src")], check=True)
    with harness.run_docker(harness.busybox_image(), PREFIX) as c, \
            tempfile.NamedTemporaryFile(prefix=harness.TMP_PREFIX) as blob:
        blob.write(os.urandom(10 << 20))
        blob.flush()
        r.time_command("ctrfs exec C -- true", [CTRFS, "exec", c.name, "--", "true"])
        r.time_command("docker exec C true", ["docker", "exec", c.name, "true"])
        r.compare("ctrfs exec C -- true", "docker exec C true", 0.25, "within 4x of docker exec")

        def piped(argv: list[str]) -> None:
            with open(blob.name, "rb") as f:
                res = subprocess.run(argv, stdin=f, stdout=subprocess.PIPE, check=True)
            assert len(res.stdout) == 10 << 20

        r.time("ctrfs exec -i C -- cat (10 MiB)", lambda: piped([CTRFS, "exec", "-i", c.name, "--", "cat"]))
        r.time("docker exec -i C cat (10 MiB)", lambda: piped(["docker", "exec", "-i", c.name, "cat"]))
        r.compare("ctrfs exec -i C -- cat (10 MiB)", "docker exec -i C cat (10 MiB)", 0.25,
                  "10 MiB through a pipe within 4x of docker exec -i")
