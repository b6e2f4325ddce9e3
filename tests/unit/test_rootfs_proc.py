"""ProcRoot on a real chrooted process (no container runtime needed): the root it sees is the
process's root, and a process that exits or whose PID is reused is reported as gone."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from ctrfs.access import open_root
from ctrfs.errors import ProcessGone
from ctrfs.model import Container
from ctrfs.proc.stat import parse_stat
from ctrfs.rootfs.proc import ProcRoot
from ctrfs.runtimes.base import ContainerRecord

pytestmark = pytest.mark.root


def make_container(pid: int, start_time: int | None = None) -> Container:
    if start_time is None:
        with open(f"/proc/{pid}/stat", "rb") as f:
            start_time = parse_stat(f.read()).start_time
    return Container(id="c" * 64, runtime="test", name="chrooted", image=None, state="running",
                     pid=pid, start_time=start_time, pids=[pid], namespaces={}, cgroup=None,
                     pod=None, rootfs=None, record=ContainerRecord(id="c" * 64, runtime="test"))


@pytest.fixture
def chrooted(tmp_path):
    root = tmp_path / "croot"
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    (root / "etc" / "passwd").write_text("app:x:1000:1000::/:/bin/false\n")
    os.symlink("/", root / "etc" / "up")
    proc = subprocess.Popen(["chroot", str(root), "/bin/busybox", "sleep", "60"])
    try:
        for _ in range(100):  # until the chroot has happened (exec of busybox)
            try:
                if os.readlink(f"/proc/{proc.pid}/root") == str(root):
                    break
            except OSError:
                pass
            time.sleep(0.02)
        yield proc, root
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("fallback", [False, True])
def test_procroot_reads_the_process_root(chrooted, fallback):
    proc, root = chrooted
    with ProcRoot(make_container(proc.pid), fallback=fallback) as r:
        with r.open_file("/etc/passwd") as f:
            assert f.read() == b"app:x:1000:1000::/:/bin/false\n"
        with r.open_file("/etc/up/etc/up/etc/passwd") as f:
            assert f.read().startswith(b"app:")
        assert os.path.samestat(r.stat("/"), os.stat(root))
        r.check_alive()


def test_open_root_gives_procroot(chrooted):
    proc, _ = chrooted
    with open_root(make_container(proc.pid)) as r:
        assert isinstance(r, ProcRoot)
        assert {e.name for e in r.scandir("/")} == {"bin", "etc"}


def test_exit_is_reported_as_gone(chrooted):
    proc, _ = chrooted
    r = ProcRoot(make_container(proc.pid))
    try:
        proc.kill()
        proc.wait()
        with pytest.raises(ProcessGone):
            r.check_alive()
        # the O_PATH root fd still reaches the tree; operations that fail must say "gone"
        with pytest.raises(ProcessGone):
            r.stat("/no/such/file")
    finally:
        r.close()


def test_pid_reuse_is_detected(chrooted):
    proc, _ = chrooted
    c = make_container(proc.pid)
    c.start_time = c.start_time - 1  # as if the PID now belonged to another process
    with pytest.raises(ProcessGone, match="PID reused"):
        ProcRoot(c)


def test_gone_before_open(chrooted):
    proc, _ = chrooted
    c = make_container(proc.pid)
    proc.kill()
    proc.wait()
    with pytest.raises(ProcessGone):
        ProcRoot(c)


def test_no_fd_leak_on_open_failure(chrooted):
    proc, _ = chrooted
    before = set(os.listdir("/proc/self/fd"))
    c = make_container(proc.pid)
    c.start_time = 1
    for _ in range(3):
        with pytest.raises(ProcessGone):
            ProcRoot(c)
    assert set(os.listdir("/proc/self/fd")) == before
