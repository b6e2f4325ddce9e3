"""``ctrfs diff`` against ``docker diff`` on a container with ~2,000 changes over a large image.

dockerd 20.10 computes ``docker diff`` by comparing the whole container view with the whole image
view (moby's naive ChangesDirs), so its cost grows with the image; ctrfs reads only the upper dir
and looks each entry up in the lower layers, so its cost grows with the changes. The image holds
CTRFS_BENCH_DIFF_FILES small files (default 200,000). Both outputs are checked equal first.

Goal (issue 4): ``ctrfs diff`` at least 100x faster than ``docker diff``, same output.
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

FILES = int(os.environ.get("CTRFS_BENCH_DIFF_FILES", "200000"))
PER_DIR = 500
CTRFS = str(REPO / ".venv/bin/ctrfs")

# 700 files added in 10 new dirs, 700 lower files changed and 600 deleted in 10 image dirs:
# with the dirs themselves, about 2,000 lines of docker diff.
CHANGES = (
    "for d in $(seq 0 9); do mkdir -p /new/n$d; for f in $(seq 1 70); do echo a > /new/n$d/g$f;"
    " done; done;"
    " for d in $(seq 100 109); do for f in $(seq 100 169); do echo m >> /data/d$d/f$f; done;"
    " for f in $(seq 200 259); do rm /data/d$d/f$f; done; done"
)


def _image(tmp: Path) -> str:
    root = harness.busybox_rootfs(tmp / "root")
    payload = b"x" * 64
    for d in range(max(FILES // PER_DIR, 110)):
        dd = root / "data" / f"d{d:03}"
        dd.mkdir(parents=True)
        for f in range(PER_DIR):
            (dd / f"f{f:03}").write_bytes(payload)
    return harness.build_image_from_dir(root, f"{harness.PREFIX}bench-diff:latest",
                                        changes=('CMD ["/bin/sleep", "100000"]',))


def _lines(argv: list[str]) -> set[str]:
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return {ln for ln in out.splitlines() if ln}


def run(r: Runner) -> None:
    import ctrfs
    from ctrfs.overlay.diff import changes
    from ctrfs.overlay.layers import layer_stack

    with tempfile.TemporaryDirectory(prefix=f"{harness.PREFIX}bench-diff-") as tmp:
        print(f"  building an image of {FILES} files", file=sys.stderr, flush=True)
        image = _image(Path(tmp))
    with harness.run_docker(image, f"{harness.PREFIX}bench-") as c:
        harness.docker_exec(c, "sh", "-c", CHANGES)
        theirs = _lines(["docker", "diff", c.id])
        ours = _lines([CTRFS, "diff", c.name])
        if ours != theirs:
            raise RuntimeError(f"outputs differ: {len(ours ^ theirs)} lines, e.g. "
                               f"{sorted(ours ^ theirs)[:5]}")
        r.facts.update(image_files=FILES, changes=len(theirs))

        container = ctrfs.container(c.name)
        stack = layer_stack(container)

        r.time_command("ctrfs diff", [CTRFS, "diff", c.name])
        r.time_command("docker diff", ["docker", "diff", c.id])
        r.time("changes() (library, target resolved)", lambda: list(changes(stack)))

    r.compare("ctrfs diff", "docker diff", 100, ">=100x faster than docker diff, same output")
    r.compare("changes() (library, target resolved)", "docker diff", 100,
              "the diff walk alone, without process start and target resolution")
