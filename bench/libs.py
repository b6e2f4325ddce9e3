"""`ctrfs libs --all --match libssl` with 100 running containers that map libssl, against the
floor of any maps-based tool: reading every /proc/*/maps once.

Each container runs the host's openssl binary (with its ldd libraries, no shell) blocked on
stdin, so every one maps libssl and libcrypto. Goal: the library call behind the command
(discovery included, in one Python process, ELF cache warm after the runner's warm-up call)
within 3x of the raw read. The libs layer alone (on Container objects already discovered, their
root mounts read) is compared too, to tell its cost from discovery's. So is the cold-cache cost
(a fresh ElfCache: pyelftools parses libssl and libcrypto once, the other 99 containers share
the image layer).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from run import Runner

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import harness  # noqa: E402

CONTAINERS = int(os.environ.get("CTRFS_BENCH_CONTAINERS", "100"))
PREFIX = "ctrfs-p-"


def openssl_rootfs(dest: Path) -> Path:
    """The host's openssl binary and the libraries ldd lists; nothing else."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is not installed on the host")
    ldd = subprocess.run(["ldd", openssl], check=True, capture_output=True, text=True).stdout
    for f in [openssl, *re.findall(r"(/\S+) \(0x", ldd)]:
        target = dest / f.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(f), target)
    return dest


def read_all_maps() -> int:
    n = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/maps", "rb") as f:
                    n += len(f.read())
            except OSError:
                pass
    return n


def run(r: Runner) -> None:
    import ctrfs
    from ctrfs.probes import ElfCache, all_container_libs

    with tempfile.TemporaryDirectory(prefix=f"{PREFIX}bench-") as tmp:
        tag = f"{PREFIX}bench-openssl-{harness.SESSION}:latest"
        image = harness.build_image_from_dir(openssl_rootfs(Path(tmp) / "rootfs"), tag)
    with contextlib.ExitStack() as stack:
        print(f"  starting {CONTAINERS} containers", file=sys.stderr, flush=True)
        # -i: `openssl passwd -stdin` then blocks on a stdin that never closes
        started = harness.run_many(stack, image, CONTAINERS, f"{PREFIX}bench-", "-i",
                                   cmd=("/usr/bin/openssl", "passwd", "-stdin"))
        ours = {c.id for c in started}

        def libs_all() -> list:  # type: ignore[type-arg]
            return all_container_libs(ctrfs.containers(), "libssl")

        result = libs_all()
        with_ssl = [g for g in result if g.container.id in ours and g.objects]
        if len(with_ssl) != len(ours):
            raise RuntimeError(f"libssl found in {len(with_ssl)} of the {len(ours)} benchmark containers")
        objs = [o for g in with_ssl for o in g.objects]
        if not all(o.version and o.build_id and o.identity == "verified" for o in objs):
            raise RuntimeError("a benchmark container's libssl lacks version, build-id or verified identity")
        containers = ctrfs.containers()
        r.facts.update(containers_started=len(started), containers_found=len(containers),
                       containers_with_libssl=len([g for g in result if g.objects]),
                       maps_bytes=read_all_maps(), proc_entries=sum(1 for e in os.scandir("/proc")
                                                                    if e.name.isdigit()))

        r.time("read every /proc/*/maps", read_all_maps)
        r.time("libs --all --match libssl (warm cache)", libs_all)
        r.time("libs --all --match libssl (cold cache)",
               lambda: all_container_libs(ctrfs.containers(), "libssl", cache=ElfCache()))
        r.time("libs only, containers known (warm)", lambda: all_container_libs(containers, "libssl"))
        r.time("ctrfs.containers()", ctrfs.containers)

    r.compare("libs --all --match libssl (warm cache)", "read every /proc/*/maps", 1 / 3,
              "library call (discovery included) within 3x of reading every maps once")
    r.compare("libs only, containers known (warm)", "read every /proc/*/maps", 1 / 3,
              "the libs layer alone (Container objects given) within 3x")
    r.compare("libs --all --match libssl (cold cache)", "read every /proc/*/maps", 1 / 10,
              "first call (parses libssl/libcrypto) within 10x")
