"""Discovery with 100 running containers: `ctrfs ps` against the Docker CLI, and the library
call against the floor of any /proc scan (reading every /proc/<pid>/cgroup once).

Goals: `ctrfs ps --json` faster than `docker ps`; at least 3x faster than `docker inspect` of every
container (what a script needs for PIDs and layer dirs); `ctrfs.containers()` within 5x of the raw
cgroup read.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from run import Runner

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import harness  # noqa: E402

CONTAINERS = int(os.environ.get("CTRFS_BENCH_CONTAINERS", "100"))
CTRFS = str(REPO / ".venv/bin/ctrfs")


def read_all_cgroups() -> int:
    n = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cgroup", "rb") as f:
                    f.read()
                n += 1
            except OSError:
                pass
    return n


def docker_ids() -> list[str]:
    return subprocess.run(["docker", "ps", "-q"], capture_output=True, text=True, check=True).stdout.split()


def run(r: Runner) -> None:
    import ctrfs

    image = harness.shellless_image()
    with contextlib.ExitStack() as stack:
        print(f"  starting {CONTAINERS} containers", file=sys.stderr, flush=True)
        started = harness.run_many(stack, image, CONTAINERS, f"{harness.PREFIX}bench-")

        found = ctrfs.containers()
        ours = {c.id for c in started}
        missing = ours - {c.id for c in found}
        if missing:
            raise RuntimeError(f"ctrfs.containers() missed {len(missing)} of the benchmark's containers")
        r.facts.update(containers_started=len(started), containers_found=len(found),
                       docker_ps_rows=len(docker_ids()), proc_entries=read_all_cgroups())

        r.time_command("ctrfs ps --json", [CTRFS, "ps", "--json"])
        r.time_command("docker ps", ["docker", "ps"])

        def inspect_all() -> None:
            subprocess.run(["docker", "inspect", *docker_ids()], stdout=subprocess.DEVNULL, check=True)

        r.time("docker inspect $(docker ps -q)", inspect_all)
        r.time("ctrfs.containers()", ctrfs.containers)
        r.time("read every /proc/*/cgroup", read_all_cgroups)

    r.compare("ctrfs ps --json", "docker ps", 1, "faster than docker ps")
    r.compare("ctrfs ps --json", "docker inspect $(docker ps -q)", 3, ">=3x faster than inspect of all")
    r.compare("ctrfs.containers()", "read every /proc/*/cgroup", 0.2, "library within 5x of the raw read")
