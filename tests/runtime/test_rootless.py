"""Rootless podman: a container of a non-root test user, on vfs (a bare install's driver) and on
native overlay (``driver = "overlay"`` in the user's storage.conf), read by ctrfs as root.

Compared with podman itself run as that user: ``podman inspect`` (PID), ``podman exec`` (content,
owners as the container sees them), ``podman export`` (tar owners), ``podman diff``. The user,
its storage and its processes are removed afterwards, also when a test fails.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import harness
from harness import ctrfs

pytestmark = [pytest.mark.root, pytest.mark.podman]

# Made inside the container before the tests look: owners the user namespace maps (0 is the user
# itself, 5 and 1000 are in its /etc/subuid range), a deletion and an opaque directory.
CHANGES = ("mkdir -p /data/sub && echo hello > /data/f && chown 5:7 /data/f && echo x > /data/sub/x"
           " && chown -R 1000:1000 /data/sub && ln -s f /data/link && rm /etc/os-release"
           " && rm -r /var/log && mkdir /var/log && echo l > /var/log/new")


FUSE = "fuse-overlayfs"  # overlay through podman's mount_program instead of the kernel's


@contextlib.contextmanager
def _fuse_for_users() -> Iterator[None]:
    """/dev/fuse usable by the test user while its container starts: Debian's udev rule makes
    it 0666; a VM without udev may leave it 0600. The mode is put back right after."""
    mode = os.stat("/dev/fuse").st_mode & 0o777
    if mode & 0o006 != 0o006:
        os.chmod("/dev/fuse", 0o666)
    try:
        yield
    finally:
        os.chmod("/dev/fuse", mode)


@dataclass(frozen=True)
class Rootless:
    user: str
    uid: int
    driver: str
    name: str  # container name
    id: str
    pid: int

    def podman(self, *argv: str, input: bytes | None = None, check: bool = True  # noqa: A002
               ) -> subprocess.CompletedProcess[bytes]:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": f"/home/{self.user}",
               "XDG_RUNTIME_DIR": f"/run/user/{self.uid}", "USER": self.user}
        proc = subprocess.run(["runuser", "-u", self.user, "--", "podman", *argv], input=input,
                              capture_output=True, env=env, cwd="/", timeout=180,
                              stdin=None if input is not None else subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise RuntimeError(f"podman {' '.join(argv)} as {self.user} exited {proc.returncode}: "
                               f"{proc.stderr.decode(errors='replace')}")
        return proc


def _user_pids(uid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}").st_uid == uid:
                    out.append(int(d))
            except OSError:
                pass
    return out


def _remove_user(user: str, uid: int) -> None:
    """The test user's processes (each by PID: its conmon, pause process, container), its home
    with its storage, its runtime dir, then the user."""
    for _ in range(50):
        pids = _user_pids(uid)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    subprocess.run(["userdel", "-r", "-f", user], capture_output=True, check=False)
    shutil.rmtree(f"/home/{user}", ignore_errors=True)
    shutil.rmtree(f"/run/user/{uid}", ignore_errors=True)


@contextlib.contextmanager
def rootless_container(driver: str, tmp: Path) -> Iterator[Rootless]:
    user = f"ctrfs-rl-{secrets.token_hex(3)}"
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", user], check=True, capture_output=True)
    uid = int(subprocess.run(["id", "-u", user], capture_output=True, check=True, text=True).stdout)
    try:
        run_dir = Path(f"/run/user/{uid}")
        run_dir.mkdir(parents=True, exist_ok=True)
        os.chown(run_dir, uid, uid)
        run_dir.chmod(0o700)
        if driver != "vfs":
            conf = Path(f"/home/{user}/.config/containers")
            conf.mkdir(parents=True)
            text = '[storage]\ndriver = "overlay"\n'
            if driver == FUSE:
                text += '[storage.options.overlay]\nmount_program = "/usr/bin/fuse-overlayfs"\n'
            (conf / "storage.conf").write_text(text)
            for p in (conf.parent, conf, conf / "storage.conf"):
                os.chown(p, uid, uid)
        rootfs = harness.busybox_rootfs(tmp / f"bb-{driver}")
        data = subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
                              capture_output=True, check=True).stdout
        name = f"{user}-c"
        r = Rootless(user, uid, driver, name, "", 0)
        r.podman("import", "-", f"{user}-img:1", input=data)
        with _fuse_for_users() if driver == FUSE else contextlib.nullcontext():
            r.podman("run", "-d", "--name", name, "--network", "none", *harness.PODMAN_RUN_OPTS,
                     f"{user}-img:1", *harness.BUSYBOX_CMD)
        info = json.loads(r.podman("inspect", name).stdout)[0]
        assert info["Driver"] == ("overlay" if driver == FUSE else driver)
        r = Rootless(user, uid, driver, name, info["Id"], int(info["State"]["Pid"]))
        r.podman("exec", name, "sh", "-c", CHANGES)
        yield r
    finally:
        _remove_user(user, uid)


@pytest.fixture(scope="module", params=["vfs", "overlay"])
def rootless(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rootless]:
    with rootless_container(request.param, tmp_path_factory.mktemp("ctrfs-rl")) as r:
        yield r


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def test_ps_shows_the_user_and_the_pid_podman_reports(rootless: Rootless) -> None:
    listed = [c for c in json.loads(ctrfs("ps", "--json").stdout) if c["id"] == rootless.id]
    assert len(listed) == 1
    c = listed[0]
    assert (c["name"], c["runtime"], c["pid"], c["user"], c["uid"]) == \
        (rootless.name, "podman", rootless.pid, rootless.user, rootless.uid)
    row = [ln.split() for ln in _lines(ctrfs("ps").stdout) if ln.startswith(rootless.id[:12])]
    assert len(row) == 1 and rootless.user in row[0] and str(rootless.pid) in row[0]


def test_cat_and_find(rootless: Rootless) -> None:
    assert ctrfs("cat", f"{rootless.name}:/data/f").stdout == \
        rootless.podman("exec", rootless.name, "cat", "/data/f").stdout.decode()
    assert ctrfs("cat", f"{rootless.name}:/data/link").stdout == "hello\n"
    mine = sorted(_lines(ctrfs("find", f"{rootless.name}:/data").stdout))
    peer = sorted(_lines(rootless.podman("exec", rootless.name, "find", "/data").stdout.decode()))
    assert mine == peer
    found = json.loads(ctrfs("find", "--json", f"{rootless.name}:/data", "--type", "f").stdout)
    owners = {e["path"]: (e["uid"], e["gid"]) for e in found}
    assert owners == {"/data/f": (5, 7), "/data/sub/x": (1000, 1000)}


def test_ls_l_shows_owners_as_the_container_sees_them(rootless: Rootless) -> None:
    for d in ("/data", "/data/sub", "/bin", "/var/log"):
        peer = {}
        for ln in _lines(rootless.podman("exec", rootless.name, "ls", "-ln", d).stdout.decode()):
            f = ln.split()
            if len(f) >= 9 and not ln.startswith("total"):
                peer[f[8]] = (int(f[2]), int(f[3]))
        listing = json.loads(ctrfs("ls", "-l", "--json", f"{rootless.name}:{d}").stdout)[0]["entries"]
        mine = {e["name"]: (e["uid"], e["gid"]) for e in listing}
        assert mine == peer, d
        # --json also gives the host's ids: what the kernel shows outside the namespace
        for e in listing:
            st = os.lstat(f"/proc/{rootless.pid}/root{d}/{e['name']}")
            assert (e["host_uid"], e["host_gid"]) == (st.st_uid, st.st_gid), e["path"]
    text = _lines(ctrfs("ls", "-l", f"{rootless.name}:/data").stdout)
    f_line = next(ln for ln in text if ln.endswith(" f"))
    assert f_line.split()[2:4] == ["5", "7"]
    st = json.loads(ctrfs("stat", "--json", f"{rootless.name}:/data/sub/x").stdout)
    assert (st["uid"], st["gid"]) == (1000, 1000)
    host = os.lstat(f"/proc/{rootless.pid}/root/data/sub/x")
    assert st["host_uid"] != 1000 and (st["host_uid"], st["host_gid"]) == (host.st_uid, host.st_gid)


def _owners(data: bytes) -> dict[str, tuple[int, int, bytes]]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf:
            name = m.name[2:] if m.name.startswith("./") else m.name
            out[name.rstrip("/")] = (m.uid, m.gid, m.type)
    return out


def test_export_and_cp_tar_owners_equal_podman_export(rootless: Rootless, tmp_path: Path) -> None:
    # as the user, podman cannot open our pipe as /dev/stdout: it writes a file in its home
    out = f"/home/{rootless.user}/export.tar"
    rootless.podman("export", "-o", out, rootless.name)
    peer = _owners(Path(out).read_bytes())
    mine = _owners(ctrfs("export", rootless.name, text=False).stdout)
    files = {n for n, v in peer.items() if v[2] in (tarfile.REGTYPE, tarfile.SYMTYPE)}
    assert files and files <= set(mine)
    for n in set(peer) & set(mine):
        if n.split("/")[0] in ("dev", "proc", "sys", "run"):
            continue  # mount points: podman exports the storage's dirs, ctrfs the mount points
        assert mine[n] == peer[n], n
    assert mine["data/f"][:2] == (5, 7) and mine["data/sub/x"][:2] == (1000, 1000)
    cp_tar = _owners(ctrfs("cp", f"{rootless.name}:/data", "-", text=False).stdout)
    assert {n: v[:2] for n, v in cp_tar.items()} == {
        "data": peer["data"][:2], "data/f": (5, 7), "data/link": peer["data/link"][:2],
        "data/sub": (1000, 1000), "data/sub/x": (1000, 1000)}
    ctrfs("cp", f"{rootless.name}:/data", str(tmp_path / "out"))
    assert (tmp_path / "out" / "sub" / "x").read_text() == "x\n"


def test_diff_equals_podman_diff(rootless: Rootless) -> None:
    peer = sorted(_lines(rootless.podman("diff", rootless.name).stdout.decode()))
    mine = sorted(_lines(ctrfs("diff", rootless.name).stdout))
    assert mine == peer
    assert "D /etc/os-release" in mine and "A /data/sub/x" in mine


def test_fuse_overlayfs_root_refuses_root_in_one_line(tmp_path: Path) -> None:
    with rootless_container(FUSE, tmp_path) as r:
        listed = [c for c in json.loads(ctrfs("ps", "--json").stdout) if c["id"] == r.id]
        assert len(listed) == 1 and listed[0]["pid"] == r.pid and listed[0]["user"] == r.user
        for argv in (("ls", f"{r.name}:/"), ("cat", f"{r.name}:/data/f"), ("export", r.name)):
            res = ctrfs(*argv, check=False)
            assert res.returncode == 4, argv
            assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
            assert "fuse-overlayfs" in res.stderr and f"sudo -u {r.user}" in res.stderr


def test_stopped_rootless_container_offline(rootless: Rootless) -> None:
    """Last of the module on purpose: it stops the shared container. Offline, the owners come
    from the user's /etc/subuid range (podman's default mapping) instead of /proc."""
    peer_diff = sorted(_lines(rootless.podman("diff", rootless.name).stdout.decode()))
    rootless.podman("stop", "-t", "0", rootless.name)
    listed = [c for c in json.loads(ctrfs("ps", "-a", "--json").stdout) if c["id"] == rootless.id]
    assert len(listed) == 1 and listed[0]["pid"] is None and listed[0]["user"] == rootless.user
    assert ctrfs("cat", f"{rootless.name}:/data/f").stdout == "hello\n"
    listing = json.loads(ctrfs("ls", "-l", "--json", f"{rootless.name}:/data").stdout)[0]["entries"]
    assert {e["name"]: (e["uid"], e["gid"]) for e in listing if e["name"] in ("f", "sub")} == \
        {"f": (5, 7), "sub": (1000, 1000)}
    assert sorted(_lines(ctrfs("diff", rootless.name).stdout)) == peer_diff
