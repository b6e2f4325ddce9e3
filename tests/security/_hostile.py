"""Shared pieces of the adversarial tests: an image with the attacker's tools, and a way to run
the ctrfs CLI as a separate process with a low fd limit while measuring its peak memory.

The image is the harness's static busybox plus two static C helpers: ``swapper``
(tests/fixtures/swapper.c, the CVE-2018-15664 renameat2 loop) and ``treegen``
(tests/security/treegen.c, builds huge trees and churning files in one process).
Everything created here is named ``ctrfs-s-…`` and removed by the harness's cleanup.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import harness
from harness import RunningContainer

HERE = Path(__file__).resolve().parent
PREFIX = "ctrfs-s-"
NAME_PREFIX = f"{PREFIX}{harness.SESSION}-"
SLEEP = ("/bin/sleep", "100000")


@functools.cache
def _build_dir() -> Path:
    # The harness's owner-PID naming lets sweep_stale() remove it if this process is SIGKILLed.
    d = Path(tempfile.mkdtemp(prefix=f"{harness.TMP_PREFIX}sec-"))
    harness._register(f"build dir {d}", lambda: shutil.rmtree(d, ignore_errors=True))
    return d


def _static(name: str, source: Path) -> Path:
    exe = _build_dir() / name
    harness.run("gcc", "-static", "-O2", "-Wall", "-o", str(exe), str(source))
    return exe


@functools.cache
def swapper_binary() -> Path:
    return _static("swapper", harness.FIXTURES / "swapper.c")


@functools.cache
def treegen_binary() -> Path:
    return _static("treegen", HERE / "treegen.c")


@functools.cache
def hostile_image() -> str:
    """busybox + /usr/local/bin/{swapper,treegen}."""
    root = harness.busybox_rootfs(_build_dir() / "rootfs")
    bindir = root / "usr" / "local" / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    for exe in (swapper_binary(), treegen_binary()):
        shutil.copy2(exe, bindir / exe.name)
    cmd = json.dumps(list(SLEEP))
    return harness.build_image_from_dir(root, f"{NAME_PREFIX}hostile:latest",
                                        changes=(f"CMD {cmd}",))


@contextlib.contextmanager
def hostile_container(*run_args: str) -> Iterator[RunningContainer]:
    with harness.run_docker(hostile_image(), NAME_PREFIX, *run_args, cmd=SLEEP) as c:
        yield c


def sh(c: RunningContainer, script: str, *, timeout: float = 600) -> str:
    """Run a shell script in the container; its stdout."""
    res = harness.run("docker", "exec", c.id, "sh", "-c", script, timeout=timeout)
    return res.stdout.decode()


@contextlib.contextmanager
def background(c: RunningContainer, script: str, pidfile: str) -> Iterator[None]:
    """Run ``script`` in the background inside ``c`` and stop it (by its PID) afterwards."""
    sh(c, f"({script}) >/dev/null 2>&1 & echo $! > {pidfile}")
    harness.wait_until(lambda: sh(c, f"cat {pidfile} 2>/dev/null").strip(), f"{pidfile}")
    try:
        yield
    finally:
        sh(c, f"kill $(cat {pidfile}) 2>/dev/null; rm -f {pidfile}; true")


@dataclass
class Measured:
    rc: int
    stdout: bytes
    stderr: str
    maxrss_kib: int
    seconds: float


def ctrfs_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "ctrfs", *args]


# Peak RSS of the ctrfs process alone. ru_maxrss survives execve (exec_mmap() folds the old mm's
# high-water mark into signal->maxrss), so a child forked straight from this big pytest process
# would report pytest's own RSS. A small wrapper interpreter forks ctrfs and reports its wait4.
_WRAPPER = """
import os, subprocess, sys
p = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(p.pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status) & 0xFF)
"""


def run_ctrfs(*args: str, nofile: int | None = 64, stdout_path: str | None = None,
              timeout: float = 900, env: dict[str, str] | None = None) -> Measured:
    """The ctrfs CLI in a child process with RLIMIT_NOFILE ``nofile`` (the limit is set in the
    wrapper, before ctrfs starts); its own peak RSS in KiB."""
    import time

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    out = open(stdout_path, "wb") if stdout_path else tempfile.TemporaryFile()  # noqa: SIM115
    err = tempfile.TemporaryFile()
    with tempfile.NamedTemporaryFile("r", prefix="ctrfs-s-rss-") as rss, out, err:
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-c", _WRAPPER, rss.name, *ctrfs_argv(*args)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                preexec_fn=limit, env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout)
        except BaseException:
            os.killpg(proc.pid, 9)
            proc.wait()
            raise
        seconds = time.monotonic() - t0
        maxrss = int(rss.read() or 0)
        out.seek(0)
        data = b"" if stdout_path else out.read()
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    return Measured(rc, data, stderr, maxrss, seconds)


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, "") or default)
