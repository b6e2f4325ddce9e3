"""LXC (busybox template, privileged and unprivileged) and systemd-nspawn machines, read by ctrfs.

Compared with the runtimes' own tools: ``lxc-info`` (PID), ``lxc-attach`` (content, owners as
the container sees them); for nspawn the payload's PID as its cgroup lists it and the tree nspawn
was given. Everything made here (containers, /etc/subuid lines, nspawn processes, cgroup
directories) is removed afterwards, also when a test fails.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
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

pytestmark = pytest.mark.root

CHANGES = ("mkdir -p /data/sub && echo hello > /data/f && chown 5:7 /data/f && echo x > /data/sub/x"
           " && ln -s f /data/link")


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


@dataclass(frozen=True)
class Machine:
    runtime: str
    name: str
    pid: int
    rootfs: Path
    unprivileged: bool = False

    @property
    def target(self) -> str:
        return f"{self.runtime}://{self.name}"

    def exec(self, *argv: str) -> str:
        if self.runtime == "lxc":
            return harness.out("lxc-attach", "-n", self.name, "--", *argv)
        # nspawn without a registered machine (no machinectl shell): enter the payload's
        # namespaces; setns(2) into its mount namespace also makes its root ours
        return harness.out("nsenter", "-t", str(self.pid), "-m", "-u", "-i", "-p", *argv)


# -- LXC -------------------------------------------------------------------------------------

def _shift_owners(top: Path, by: int) -> None:
    """chown every entry by +by, as an unprivileged container's rootfs must be owned."""
    entries = [top, *top.rglob("*")]
    for p in entries:
        st = os.lstat(p)
        os.chown(p, st.st_uid + by, st.st_gid + by, follow_symlinks=False)


@contextlib.contextmanager
def _subid_lines(line: str) -> Iterator[None]:
    """``line`` appended to /etc/subuid and /etc/subgid (newuidmap checks root's ranges too)."""
    for f in ("/etc/subuid", "/etc/subgid"):
        with open(f, "a") as fh:
            fh.write(line + "\n")
    try:
        yield
    finally:
        for f in ("/etc/subuid", "/etc/subgid"):
            kept = [ln for ln in Path(f).read_text().splitlines(keepends=True) if ln.strip() != line]
            Path(f).write_text("".join(kept))


def _lxc_cleanup(name: str) -> None:
    harness.run("lxc-stop", "-k", "-n", name, check=False, timeout=60)
    harness.run("lxc-destroy", "-f", "-n", name, check=False, timeout=60)
    for hier in Path("/sys/fs/cgroup").iterdir():
        # lxc.pivot is where LXC parks its monitor while it cleans up; it stays behind, empty
        # (rmdir fails while another container uses it, and then it is not ours to remove)
        for d in (hier / f"lxc.payload.{name}", hier / f"lxc.monitor.{name}", hier / "lxc.pivot"):
            with contextlib.suppress(OSError):
                for sub in sorted(d.rglob("*"), reverse=True):
                    if sub.is_dir():
                        sub.rmdir()
                d.rmdir()


@contextlib.contextmanager
def lxc_container(unprivileged: bool) -> Iterator[Machine]:
    name = f"{harness.NAME_PREFIX}lxc-{secrets.token_hex(3)}"
    base = 1_000_000 + secrets.randbelow(1000) * 65536
    with contextlib.ExitStack() as stack:
        stack.callback(_lxc_cleanup, name)
        harness.run("lxc-create", "-n", name, "-t", "busybox", timeout=120)
        conf = Path("/var/lib/lxc", name, "config")
        lines = [ln for ln in conf.read_text().splitlines()
                 if not ln.startswith(("lxc.net.0", "lxc.apparmor"))]
        # no bridge here: an empty network namespace; no AppArmor on this host
        lines += ["lxc.net.0.type = empty", "lxc.apparmor.profile = unconfined"]
        rootfs = Path("/var/lib/lxc", name, "rootfs")
        if unprivileged:
            lines += [f"lxc.idmap = u 0 {base} 65536", f"lxc.idmap = g 0 {base} 65536"]
            stack.enter_context(_subid_lines(f"root:{base}:65536"))
            _shift_owners(rootfs, base)
            rootfs.parent.chmod(0o755)  # lxc-create makes it 0770: the mapped root must pass
        conf.write_text("\n".join(lines) + "\n")
        harness.run("lxc-start", "-n", name, "-d", timeout=60)
        pid = int(harness.wait_until(
            lambda: harness.out("lxc-info", "-n", name, "-p", "-H", check=False), "lxc pid"))
        m = Machine("lxc", name, pid, rootfs, unprivileged)
        m.exec("sh", "-c", CHANGES)
        yield m


# -- systemd-nspawn ----------------------------------------------------------------------------

def _cgroup_dirs(name: str) -> list[Path]:
    """Where nspawn's own cgroup goes: the named systemd hierarchy on a hybrid host (nspawn
    uses it there), the unified one always."""
    out = [Path("/sys/fs/cgroup/unified", name)] if Path("/sys/fs/cgroup/unified").is_dir() \
        else [Path("/sys/fs/cgroup", name)]
    if Path("/sys/fs/cgroup/systemd/cgroup.procs").exists():
        out.append(Path("/sys/fs/cgroup/systemd", name))
    return out


def _rm_cgroups(dirs: list[Path]) -> None:
    for d in dirs:
        for _ in range(50):
            with contextlib.suppress(OSError):
                for sub in sorted((p for p in d.rglob("*") if p.is_dir()), reverse=True):
                    sub.rmdir()
                d.rmdir()
            if not d.exists():
                break
            time.sleep(0.1)


@contextlib.contextmanager
def nspawn_machine(tmp: Path) -> Iterator[Machine]:
    name = f"{harness.NAME_PREFIX}ns-{secrets.token_hex(3)}"
    rootfs = harness.busybox_rootfs(tmp / name)
    (rootfs / "usr").mkdir(exist_ok=True)  # nspawn refuses a tree without /usr
    dirs = _cgroup_dirs(name)
    for d in dirs:
        d.mkdir()
    join = "; ".join(f"echo $$ > {d}/cgroup.procs" for d in dirs)
    proc = subprocess.Popen(
        ["sh", "-c", f"{join}; exec systemd-nspawn --quiet --register=no --keep-unit -D {rootfs} "
                     f"-M {name} {' '.join(harness.BUSYBOX_CMD)}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True)
    try:
        payload = dirs[0] / "payload" / "cgroup.procs"
        pid = int(harness.wait_until(
            lambda: payload.exists() and payload.read_text().split()[:1] and
            payload.read_text().split()[0], "nspawn payload"))
        # The payload's process joins the cgroup as nspawn's own child, some 60 ms before it
        # sets up the root and execs the command (longer on a cold machine): until then it is
        # no machine yet, for ctrfs as for nsenter. It is one once it carries nspawn's marker.
        harness.wait_until(
            lambda: b"container=systemd-nspawn" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"),
            "nspawn payload exec")
        m = Machine("nspawn", name, pid, rootfs)
        m.exec("sh", "-c", CHANGES)
        yield m
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)
        _rm_cgroups(dirs)


# -- the tests, on each ------------------------------------------------------------------------

@pytest.fixture(scope="module", params=[
    pytest.param("lxc-privileged", marks=pytest.mark.lxc),
    pytest.param("lxc-unprivileged", marks=pytest.mark.lxc),
    pytest.param("nspawn", marks=pytest.mark.nspawn),
])
def machine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    if request.param == "nspawn":
        with nspawn_machine(tmp_path_factory.mktemp("ctrfs-ns")) as m:
            yield m
    else:
        with lxc_container(request.param == "lxc-unprivileged") as m:
            yield m


def test_ps_shows_name_and_pid(machine: Machine) -> None:
    listed = [c for c in json.loads(ctrfs("ps", "--json").stdout)
              if c["runtime"] == machine.runtime and c["name"] == machine.name]
    assert len(listed) == 1 and listed[0]["pid"] == machine.pid
    row = [ln.split() for ln in _lines(ctrfs("ps").stdout) if machine.name in ln.split()]
    assert len(row) == 1 and str(machine.pid) in row[0] and machine.runtime in row[0]


def test_every_file_command(machine: Machine, tmp_path: Path) -> None:
    t = machine.target
    assert ctrfs("cat", f"{t}:/data/f").stdout == machine.exec("cat", "/data/f") + "\n"
    assert ctrfs("cat", f"{t}:/data/link").stdout == "hello\n"
    assert sorted(ctrfs("ls", "-a", f"{t}:/data").stdout.split()) == \
        sorted(set(machine.exec("ls", "-a", "/data").split()) - {".", ".."})
    assert sorted(_lines(ctrfs("find", f"{t}:/data").stdout)) == \
        sorted(_lines(machine.exec("find", "/data")))
    st = json.loads(ctrfs("stat", "--json", f"{t}:/data/f").stdout)
    assert (st["uid"], st["gid"], st["size"]) == (5, 7, 6)
    assert _lines(ctrfs("grep", "-rl", "hello", f"{t}:/data").stdout) == ["/data/f"]
    assert _lines(ctrfs("tail", "-n", "1", f"{t}:/data/sub/x").stdout) == ["x"]
    assert _lines(ctrfs("du", "-s", f"{t}:/data").stdout)[-1].endswith("/data")
    ctrfs("cp", f"{t}:/data", str(tmp_path / "out"))
    assert (tmp_path / "out" / "f").read_text() == "hello\n"
    with tarfile.open(fileobj=io.BytesIO(ctrfs("export", t, text=False).stdout)) as tf:
        members = {m.name.removeprefix("./").rstrip("/"): m for m in tf}
    assert (members["data/f"].uid, members["data/f"].gid) == (5, 7)
    assert members["data/link"].linkname == "f"
    layers = ctrfs("layers", t).stdout
    assert "not overlay" in layers and str(machine.rootfs) in layers  # a plain directory
    assert ctrfs("mounts", t).returncode == 0
    r = ctrfs("diff", t, check=False)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "not overlay" in r.stderr


def test_owners_as_the_container_sees_them(machine: Machine) -> None:
    lxc = machine
    peer = {}
    for ln in _lines(lxc.exec("ls", "-ln", "/data")):
        f = ln.split()
        if len(f) >= 9:
            peer[f[8]] = (int(f[2]), int(f[3]))
    listing = json.loads(ctrfs("ls", "-l", "--json", f"{lxc.target}:/data").stdout)[0]["entries"]
    assert {e["name"]: (e["uid"], e["gid"]) for e in listing} == peer
    host = os.lstat(f"/proc/{lxc.pid}/root/data/f")
    f_entry = next(e for e in listing if e["name"] == "f")
    assert (f_entry["host_uid"], f_entry["host_gid"]) == (host.st_uid, host.st_gid)
    assert (host.st_uid != 5) == lxc.unprivileged


@pytest.mark.lxc
def test_stopped_lxc_container_is_read_from_its_rootfs() -> None:
    with lxc_container(unprivileged=False) as m:
        harness.run("lxc-stop", "-k", "-n", m.name, timeout=60)
        listed = [c for c in json.loads(ctrfs("ps", "-a", "--json").stdout) if c["name"] == m.name]
        assert len(listed) == 1 and listed[0]["pid"] is None and listed[0]["runtime"] == "lxc"
        assert ctrfs("cat", f"lxc://{m.name}:/data/f").stdout == "hello\n"
