"""SECURITY.md cases across mounts: cp, export and grep -r follow volumes and binds (the
container's view), and the rules hold there as on the root filesystem. With the mount API (a
clone of the root mount) and without it (CTRFS_MOUNT_API=0)."""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import harness
from harness import RunningContainer

pytestmark = [pytest.mark.root, pytest.mark.docker]

SECRET = f"HOST-ONLY-{secrets.token_hex(16)}"
RELEASED = f"fifo-read-{secrets.token_hex(8)}"  # what the host writer writes into the FIFO
MODES = {"clone": {}, "fallback": {"CTRFS_MOUNT_API": "0"}}
TIMEOUT = 60  # a FIFO opened for reading would hang until its writer writes: this ends it


@pytest.fixture(scope="module")
def trap() -> Iterator[tuple[RunningContainer, Path, subprocess.Popen[bytes]]]:
    """A container with a volume holding symlinks to / and to a host-only file, and a bind mount
    of a host FIFO that a host writer is blocked on (it would be released if anyone opened the
    FIFO for reading)."""
    harness.sweep_stale()
    canary = Path("/") / f"ctrfs-canary-{secrets.token_hex(6)}"
    canary.mkdir(mode=0o700)
    (canary / "secret").write_text(SECRET + "\n")
    d = harness._tempdir("mounts")
    vol = d / "vol"
    vol.mkdir()
    (vol / "rootlink").symlink_to("/")
    (vol / "canary").symlink_to(f"{canary}/secret")
    (vol / "up").symlink_to("../../../../..")
    (vol / "file").write_text("in the volume\n")
    fifo = d / "fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"echo {RELEASED} > {fifo}"])
    try:
        with harness.run_docker(harness.busybox_image(), harness.NAME_PREFIX,
                                "-v", f"{vol}:/vol", "-v", f"{fifo}:/fifo",
                                cmd=harness.BUSYBOX_CMD) as c:
            yield c, canary, writer
    finally:
        writer.kill()
        writer.wait()
        shutil.rmtree(canary, ignore_errors=True)
        shutil.rmtree(d, ignore_errors=True)


def _ctrfs(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[bytes]:
    return harness.ctrfs(*argv, check=False, text=False, env=env, timeout=TIMEOUT)


def _tar(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return {m.name.rstrip("/"): m for m in t}


def _assert_fifo_not_opened(writer: subprocess.Popen[bytes]) -> None:
    time.sleep(0.2)
    assert writer.poll() is None, "the host FIFO was opened for reading"


@pytest.mark.parametrize("mode", MODES)
def test_cp_root_across_mounts(trap: tuple[RunningContainer, Path, subprocess.Popen[bytes]],
                               mode: str) -> None:
    c, canary, writer = trap
    res = _ctrfs(MODES[mode], "cp", f"{c.name}:/", "-")
    assert res.returncode == 0, res.stderr
    assert SECRET.encode() not in res.stdout
    m = _tar(res.stdout)
    assert m["vol/rootlink"].issym() and m["vol/rootlink"].linkname == "/"
    assert m["vol/canary"].issym() and m["vol/canary"].linkname == f"{canary}/secret"
    assert m["vol/file"].isfile() and m["vol/file"].size == len("in the volume\n")
    assert m["fifo"].isfifo()
    _assert_fifo_not_opened(writer)


@pytest.mark.tar_cores
@pytest.mark.parametrize("mode", MODES)
def test_cp_root_into_directory_across_mounts(
        trap: tuple[RunningContainer, Path, subprocess.Popen[bytes]], mode: str, tar_core: str,
        tmp_path: Path) -> None:
    """Into a directory, the root with the volume and the FIFO bind: the links are copied as
    links (never followed to the host), the FIFO made, never opened. On the clone, the C core
    copies the root filesystem and hands the followed mounts to the reference."""
    c, canary, writer = trap
    out = tmp_path / "out"
    res = _ctrfs(MODES[mode], "cp", "--json", f"{c.name}:/", str(out))
    assert res.returncode == 0, res.stderr
    # (the second pass of make test runs this file with CTRFS_MOUNT_API=0 for every mode)
    clone = mode == "clone" and os.environ.get("CTRFS_MOUNT_API", "1") != "0"
    core = "c" if clone and tar_core == "c-core" else "python"
    assert json.loads(res.stdout)["core"] == core
    assert os.readlink(out / "vol" / "rootlink") == "/"
    assert os.readlink(out / "vol" / "canary") == f"{canary}/secret"
    assert os.readlink(out / "vol" / "up") == "../../../../.."
    assert (out / "vol" / "file").read_text() == "in the volume\n"
    assert (out / "fifo").is_fifo()
    found = subprocess.run(["grep", "-rl", "--devices=skip", SECRET, str(out)],
                           capture_output=True)
    assert found.returncode == 1, found.stdout  # nothing holds the host-only secret
    _assert_fifo_not_opened(writer)


@pytest.mark.parametrize("mode", MODES)
def test_cp_follow_links_in_a_volume_stays_inside(
        trap: tuple[RunningContainer, Path, subprocess.Popen[bytes]], mode: str,
        tmp_path: Path) -> None:
    c, _, writer = trap
    env = MODES[mode]
    # an absolute link in a volume resolves against the container's root: no such file there
    res = _ctrfs(env, "cp", "-L", f"{c.name}:/vol/canary", str(tmp_path / "canary"))
    assert res.returncode == 1 and not (tmp_path / "canary").exists(), res.stderr
    # "/" and "../../../../.." from the volume are the container's root
    for link in ("rootlink", "up"):
        res = _ctrfs(env, "cp", "-L", f"{c.name}:/vol/{link}/etc/passwd", str(tmp_path / link))
        assert res.returncode == 0, res.stderr
        assert (tmp_path / link).read_bytes() == harness.docker_exec(c, "cat", "/etc/passwd").stdout
    res = _ctrfs(env, "cp", "-L", f"{c.name}:/vol/rootlink", "-")
    assert res.returncode == 0, res.stderr
    assert SECRET.encode() not in res.stdout
    assert "rootlink/vol/file" in _tar(res.stdout)
    _assert_fifo_not_opened(writer)


@pytest.mark.parametrize("mode", MODES)
def test_fifo_bind_never_opened(trap: tuple[RunningContainer, Path, subprocess.Popen[bytes]],
                                mode: str, tmp_path: Path) -> None:
    c, _, writer = trap
    env = MODES[mode]
    res = _ctrfs(env, "cp", f"{c.name}:/fifo", str(tmp_path / "f"))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "f").is_fifo()
    res = _ctrfs(env, "export", "--include-mounts", c.name)
    assert res.returncode == 0 and _tar(res.stdout)["fifo"].isfifo(), res.stderr
    res = _ctrfs(env, "grep", "-r", RELEASED, f"{c.name}:/")
    assert res.returncode == 1, res.stderr  # nothing matched: the FIFO was not read
    res = _ctrfs(env, "cat", f"{c.name}:/fifo")
    assert res.returncode == 1 and b"fifo" in res.stderr
    _assert_fifo_not_opened(writer)


def test_clone_is_private_read_only_nodev_and_close_on_exec(
        trap: tuple[RunningContainer, Path, subprocess.Popen[bytes]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The root filesystem view: one mount (no volume, no /proc below it), read-only and nodev
    whatever the container's own flags, its fd close-on-exec, and released on close."""
    import fcntl

    monkeypatch.setenv("CTRFS_MOUNT_API", "1")  # the clone itself, also in the fallback run

    from ctrfs.access import open_root
    from ctrfs.rootfs.view import BoundRoot
    from ctrfs.targets import resolve
    from ctrfs.views import rootfs_view

    c, _, _ = trap
    before = set(os.listdir("/proc/self/fd"))
    live = open_root(resolve(c.name))
    view = rootfs_view(live)
    try:
        assert isinstance(view, BoundRoot) and view.kind == "clone"
        fd = view.inner.fd  # type: ignore[attr-defined]
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        assert os.listdir(f"/proc/self/fd/{fd}/vol") == []  # the mount point, not the volume
        assert os.listdir(f"/proc/self/fd/{fd}/proc") == []
        with pytest.raises(OSError) as err:
            os.open(f"/proc/self/fd/{fd}/ctrfs-written", os.O_WRONLY | os.O_CREAT, 0o600)
        assert err.value.errno == 30  # EROFS
        assert not os.path.exists(f"/proc/{c.pid}/root/ctrfs-written")
        # a device node the container made on its root filesystem cannot be opened here
        harness.docker_exec(c, "mknod", "/null2", "c", "1", "3")
        with pytest.raises(PermissionError):
            os.open(f"/proc/self/fd/{fd}/null2", os.O_RDONLY)
    finally:
        view.close()
        live.close()
    assert set(os.listdir("/proc/self/fd")) == before
