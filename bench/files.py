"""Export, cp and cat on two containers: ctrfs against docker and against plain host tools.

Two fixtures, each an image cached across runs (``CTRFS_BENCH_REBUILD=1`` rebuilds them) with a
static busybox for `sleep` and `cat`:
- ``usr``: the host's /usr (a few GB, >100k files; big vendored trees left out to keep it near
  4 GB), cp of /usr/lib: big files dominate;
- ``share``: the host's /usr/share alone (tens of thousands of mostly small files), cp of
  /usr/share: per-entry cost dominates.
``CTRFS_BENCH_FIXTURES=share`` (comma-separated) measures a subset.

Measured in the same run, warm page cache (one untimed warm-up), median of 3:
- `ctrfs export` vs `docker export` vs `tar -C /proc/PID/root --one-file-system -cf - .`, every
  output piped to `cat >/dev/null` (GNU tar skips reading file data when its output is
  /dev/null itself, so a pipe keeps the three honest);
- `ctrfs cp` of a big directory vs `docker cp` vs `cp -a /proc/PID/root/DIR`, into a tmpfs
  (/dev/shm) by default so the tools' own cost is compared rather than the disk's write speed
  (``CTRFS_BENCH_CP_DEST=/var/tmp`` for a disk; on this VM's disk all three are bound by
  it: ctrfs 23.6 s, cp -a 20.9 s, docker cp 45.4 s for /usr/lib), removed and `sync`ed
  (untimed) before every run;
- `ctrfs cat` of a small file vs `docker exec C /bin/cat` (whole process start included);
- the peak RSS of the `ctrfs export` process.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from run import Runner

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import harness  # noqa: E402

PREFIX = "ctrfs-f-"
CTRFS = str(REPO / ".venv/bin/ctrfs")
CP_DEST = os.environ.get("CTRFS_BENCH_CP_DEST", "/dev/shm")
CAT_FILE = "/etc/os-release"
BIG_REPEAT = 3


class Fixture:
    def __init__(self, name: str, tree: str, exclude: tuple[str, ...], cp_dir: str) -> None:
        self.name = name
        self.image = f"{PREFIX}{name}:bench"
        self.tree = tree  # below the host's /, put into the image as is
        self.exclude = exclude
        self.cp_dir = cp_dir


FIXTURES = {
    # Left out of usr: ~1.8 GB in few files that would only add disk time.
    "usr": Fixture("usr", "usr", ("usr/lib/google-cloud-sdk/bin", "usr/lib/jvm", "usr/local"),
                   os.environ.get("CTRFS_BENCH_CP_DIR", "/usr/lib")),
    "share": Fixture("share", "usr/share", (), "/usr/share"),
}


def _image_exists(image: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", image], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def build_image(fx: Fixture) -> str:
    """The host's tree (less its exclusions) + /bin/busybox with sleep/cat/sh links + /etc files."""
    if _image_exists(fx.image) and os.environ.get("CTRFS_BENCH_REBUILD") != "1":
        return fx.image
    print(f"  building {fx.image} from the host's /{fx.tree} (a few minutes)", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix=f"{PREFIX}bench-") as tmp:
        extra = Path(tmp)
        (extra / "bin").mkdir()
        shutil.copy2("/bin/busybox", extra / "bin" / "busybox")
        for applet in ("sh", "cat", "sleep"):
            (extra / "bin" / applet).symlink_to("busybox")
        (extra / "etc").mkdir()
        (extra / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (extra / "etc" / "group").write_text("root:x:0:\n")
        (extra / "etc" / "os-release").write_text('NAME="ctrfs bench"\nID=ctrfs-bench\n')
        for d in ("proc", "sys", "dev", "tmp"):
            (extra / d).mkdir()
        # The cached image carries no harness owner label: the harness's sweep must not take it.
        tar = subprocess.Popen(["tar", "-c", "--numeric-owner",
                                *[f"--exclude={e}" for e in fx.exclude], "-C", "/", fx.tree,
                                "-C", str(extra), "bin", "etc", "proc", "sys", "dev", "tmp"],
                               stdout=subprocess.PIPE)
        try:
            subprocess.run(["docker", "import", "--change", 'CMD ["/bin/sleep", "1000000"]',
                            "-", fx.image], stdin=tar.stdout, check=True, stdout=subprocess.DEVNULL)
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            tar.wait()
    return fx.image


def _sh(pipeline: str) -> list[str]:
    return ["sh", "-c", f"set -e; {pipeline}"]


def peak_rss_kib(argv: list[str]) -> int:
    """Peak RSS of one command, output piped through cat to /dev/null. Measured by GNU time
    (a small C parent): ru_maxrss survives execve, so a child forked straight from this Python
    process would count the runner's own RSS too."""
    with tempfile.NamedTemporaryFile(prefix=f"{PREFIX}rss-") as f:
        cmd = " ".join(shlex.quote(a) for a in argv)
        subprocess.run(_sh(f"/usr/bin/time -f %M -o {f.name} {cmd} | cat >/dev/null"),
                       check=True)
        return int(Path(f.name).read_text().split()[-1])


def run(r: Runner) -> None:
    wanted = os.environ.get("CTRFS_BENCH_FIXTURES", ",".join(FIXTURES)).split(",")
    for key in wanted:
        fx = FIXTURES[key.strip()]
        image = build_image(fx)
        work = Path(tempfile.mkdtemp(prefix=f"{PREFIX}bench-", dir=CP_DEST))
        try:
            with harness.run_docker(image, f"{PREFIX}bench-") as c:
                _measure(r, c, work, fx)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _measure(r: Runner, c: harness.RunningContainer, work: Path, fx: Fixture) -> None:
    root = f"/proc/{c.pid}/root"
    name = c.name
    tag = f"[{fx.name}] "
    cp_dir = fx.cp_dir
    files = subprocess.run(_sh(f"find {root}/ -xdev | wc -l"), capture_output=True, text=True,
                           check=True).stdout.strip()
    size = subprocess.run(["du", "-sxb", f"{root}/"], capture_output=True, text=True,
                          check=True).stdout.split()[0]
    r.facts[fx.name] = dict(image=fx.image, rootfs_entries=int(files), rootfs_bytes=int(size),
                            cp_dir=cp_dir, cp_dest=CP_DEST, cat_file=CAT_FILE,
                            loadavg_start=os.getloadavg())
    print(f"  {tag}rootfs: {int(files)} entries, {int(size) / 2**30:.2f} GiB", file=sys.stderr)

    # -- export ------------------------------------------------------------------------------
    r.time_command(tag + "ctrfs export | cat", _sh(f"{CTRFS} export {name} | cat >/dev/null"),
                   BIG_REPEAT)
    r.time_command(tag + "docker export | cat", _sh(f"docker export {name} | cat >/dev/null"),
                   BIG_REPEAT)
    r.time_command(tag + "tar /proc/PID/root | cat",
                   _sh(f"tar -C {root} --one-file-system -cf - . | cat >/dev/null"), BIG_REPEAT)
    rss = peak_rss_kib([CTRFS, "export", name])
    r.facts[fx.name]["export_peak_rss_kib"] = rss

    # -- cp ----------------------------------------------------------------------------------
    dest = work / "cp"

    def clean() -> None:
        subprocess.run(["rm", "-rf", str(dest)], check=True)
        subprocess.run(["sync"], check=True)

    r.time_command(tag + "ctrfs cp DIR", [CTRFS, "cp", f"{name}:{cp_dir}", str(dest)], BIG_REPEAT,
                   setup=clean)
    r.time_command(tag + "docker cp DIR", ["docker", "cp", f"{name}:{cp_dir}", str(dest)],
                   BIG_REPEAT, setup=clean)
    r.time_command(tag + "cp -a /proc/PID/root/DIR", ["cp", "-a", f"{root}{cp_dir}", str(dest)],
                   BIG_REPEAT, setup=clean)
    clean()

    # -- cat ---------------------------------------------------------------------------------
    r.time_command(tag + "ctrfs cat FILE", [CTRFS, "cat", f"{name}:{CAT_FILE}"])
    r.time_command(tag + "docker exec C cat FILE", ["docker", "exec", name, "/bin/cat", CAT_FILE])
    r.facts[fx.name]["loadavg_end"] = os.getloadavg()

    r.compare(tag + "ctrfs export | cat", tag + "docker export | cat", 2.5,
              "export >=2.5x faster than docker")
    r.compare(tag + "ctrfs export | cat", tag + "tar /proc/PID/root | cat", 1 / 1.3,
              "export within 1.3x of GNU tar on /proc/PID/root")
    r.compare(tag + "ctrfs cp DIR", tag + "docker cp DIR", 3, "cp >=3x faster than docker cp")
    r.compare(tag + "ctrfs cp DIR", tag + "cp -a /proc/PID/root/DIR", 0,
              "reference only: GNU cp -a straight on /proc/PID/root (no goal)")
    r.compare(tag + "ctrfs cat FILE", tag + "docker exec C cat FILE", 1,
              "cat no slower than docker exec cat")
    r.limit(tag + "ctrfs export peak RSS", rss / 1024, 64, "MiB",
            "export streams in constant memory")
