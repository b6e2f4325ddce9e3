"""docs/security.md cases 1-11, 16 and 17 against real containers, on both resolvers.

Every case runs twice: with openat2 (the kernel resolves in the container root) and with the
user-space walker forced (CTRFS_FORCE_FALLBACK=1), which is what kernels without openat2 get.
The container's content is built with busybox inside it (docker exec), as an attacker would.
The host side carries canaries: files that must never appear in any output.
"""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

import pytest

import harness
from harness import RunningContainer

HOST_CANARY = f"HOST-CANARY-{secrets.token_hex(8)}"


@pytest.fixture(params=["openat2", "fallback"])
def resolver(request: pytest.FixtureRequest) -> dict[str, str]:
    return {"CTRFS_FORCE_FALLBACK": "1" if request.param == "fallback" else "0"}


def ctrfs(env: dict[str, str], *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "ctrfs", *argv], capture_output=True,
                          timeout=timeout, env={**os.environ, **env})


def sh(c: RunningContainer, script: str) -> str:
    return harness.docker_exec(c, "sh", "-c", script).stdout.decode("utf-8", "surrogateescape")


def own_container(*args: str):  # type: ignore[no-untyped-def]
    return harness.run_docker(harness.busybox_image(), f"ctrfs-r-{harness.SESSION}-", *args)


@pytest.fixture(scope="module")
def canary_host(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Host files an escape would reach: /tmp/…/etc/shadow and the like, all holding the canary."""
    d = tmp_path_factory.mktemp("ctrfs-r-canary")
    (d / "etc").mkdir()
    (d / "etc" / "shadow").write_text(HOST_CANARY + "\n")
    (d / "etc" / "passwd").write_text(HOST_CANARY + "\n")
    (d / "secret").write_text(HOST_CANARY + "\n")
    return d


@pytest.fixture(scope="module")
def victim(docker_busybox: RunningContainer, canary_host: Path) -> tuple[RunningContainer, str]:
    """A directory of attacks inside the shared busybox container."""
    c = docker_busybox
    d = f"/attack-{secrets.token_hex(4)}"
    sh(c, f"""set -e
mkdir -p {d}/dir {d}/names
cd {d}
echo container-file > dir/file
ln -s ../../../../../../.. up
ln -s {canary_host}/secret to-host-path
ln -s self self
ln -s {d}/aself aself
ln -s c2 c1 && ln -s c1 c2
i=0; while [ $i -le 45 ]; do ln -s chain$((i+1)) chain$i; i=$((i+1)); done
ln -s dir/file chain46
ln -s /nowhere/at/all dangling
ln -s missing dangling2
ln -s /proc/self/root procself
ln -s /proc/1/root/etc/passwd proc1
ln -s /proc/1/fd/0 procfd
ln -s /proc/1/cwd proccwd
ln -s ../../proc/1/root procrel
mkfifo fifo
mknod chr c 1 5
mknod blk b 7 0
cd names
echo star > '*'
echo file1 > file1
echo filestar > 'file*'
echo dash > -rf
printf 'nl\\n' > "$(printf 'new\\nline')"
printf 'bad\\n' > "$(printf 'bad\\377name')"
printf 'esc\\n' > "$(printf '\\033]0;pwned\\007title')"
""")
    return c, d


def assert_no_canary(res: subprocess.CompletedProcess[bytes]) -> None:
    assert HOST_CANARY.encode() not in res.stdout + res.stderr


def one_line_error(res: subprocess.CompletedProcess[bytes], code: int, text: str) -> None:
    err = res.stderr.decode()
    assert res.returncode == code, err
    assert err.count("\n") == 1 and err.startswith("ctrfs: ") and text in err, err
    assert "Traceback" not in err
    assert_no_canary(res)


# -- 1 ----------------------------------------------------------------------------------------

def test_case1_etc_is_a_link_to_root(resolver) -> None:
    # runc bind-mounts /etc/hosts, /etc/hostname and /etc/resolv.conf (and docker's init layer
    # makes /etc a real directory), so the attacker needs to unmount them first: CAP_SYS_ADMIN.
    with own_container("--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined",
                       "--security-opt", "apparmor=unconfined") as c:
        sh(c, "umount /etc/hosts /etc/hostname /etc/resolv.conf && "
              "echo container-top-shadow > /shadow && mv /etc /etc.real && ln -s / /etc")
        res = ctrfs(resolver, "cat", f"{c.target}:/etc/shadow")
        assert res.returncode == 0 and res.stdout == b"container-top-shadow\n"
        sh(c, "rm /shadow")
        res = ctrfs(resolver, "cat", f"{c.target}:/etc/shadow")
        one_line_error(res, 1, "no such file or directory")
        assert res.stdout == b""


# -- 2, 3 -------------------------------------------------------------------------------------

def test_case2_relative_link_climbing_out(victim, resolver) -> None:
    c, d = victim
    res = ctrfs(resolver, "cat", f"{c.target}:{d}/up/etc/passwd")
    assert res.returncode == 0 and res.stdout == sh(c, "cat /etc/passwd").encode()
    res = ctrfs(resolver, "ls", f"{c.target}:{d}/up/")
    assert d.lstrip("/") in res.stdout.decode().split()  # the container's root, listed


def test_case2_link_to_host_path_is_not_the_host(victim, resolver, canary_host) -> None:
    c, d = victim
    one_line_error(ctrfs(resolver, "cat", f"{c.target}:{d}/to-host-path"), 1, "no such file")
    one_line_error(ctrfs(resolver, "cat", f"{c.target}:{canary_host}/secret"), 1, "no such file")


@pytest.mark.parametrize("path", ["../../../etc/passwd", "/../../../../etc/passwd",
                                  "/etc/../../../../etc/./passwd"])
def test_case3_dotdot_clamped(victim, resolver, path) -> None:
    c, _ = victim
    res = ctrfs(resolver, "cat", f"{c.target}:{path}")
    assert res.returncode == 0 and res.stdout == sh(c, "cat /etc/passwd").encode()


# -- 4, 5, 6 ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["self", "aself", "c1", "chain0"])
def test_case4_loops_and_long_chains(victim, resolver, name) -> None:
    c, d = victim
    t0 = time.monotonic()
    res = ctrfs(resolver, "cat", f"{c.target}:{d}/{name}")
    one_line_error(res, 1, "too many levels of symbolic links")
    assert time.monotonic() - t0 < 20
    # within the budget (40 links, the kernel's) the chain resolves
    ok = ctrfs(resolver, "cat", f"{c.target}:{d}/chain7")
    assert ok.returncode == 0 and ok.stdout == b"container-file\n"


def test_case5_dangling_links_create_nothing(victim, resolver) -> None:
    c, d = victim
    before = sh(c, f"ls -la {d}; ls / ")
    for name in ("dangling", "dangling2", "dangling/x"):
        one_line_error(ctrfs(resolver, "cat", f"{c.target}:{d}/{name}"), 1, "no such file")
        one_line_error(ctrfs(resolver, "stat", "-L", f"{c.target}:{d}/{name}"), 1, "no such file")
    assert sh(c, f"ls -la {d}; ls / ") == before
    assert not os.path.exists("/nowhere")
    link = ctrfs(resolver, "stat", f"{c.target}:{d}/dangling")
    assert link.returncode == 0 and b"-> /nowhere/at/all" in link.stdout


@pytest.mark.parametrize("suffix", ["/", "/.", "/..", "/x"])
def test_case6_path_continues_after_a_file(victim, resolver, suffix) -> None:
    c, d = victim
    one_line_error(ctrfs(resolver, "cat", f"{c.target}:{d}/dir/file{suffix}"), 1, "not a directory")
    one_line_error(ctrfs(resolver, "ls", f"{c.target}:{d}/dir/file{suffix}"), 1, "not a directory")


# -- 7 ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["proc1", "procfd", "proccwd", "procrel/etc/passwd"])
def test_case7_magic_links_refused(victim, resolver, path) -> None:
    c, d = victim
    one_line_error(ctrfs(resolver, "cat", f"{c.target}:{d}/{path}"), 1, "magic link")


@pytest.mark.parametrize("path", ["/proc/1/root/etc/passwd", "/proc/1/cwd", "/proc/1/exe",
                                  "/proc/1/fd/1", "/proc/1/task/1/root/etc/passwd",
                                  "/proc/1/ns/mnt"])
def test_case7_proc_paths_refused(victim, resolver, path) -> None:
    c, _ = victim
    one_line_error(ctrfs(resolver, "cat", f"{c.target}:{path}"), 1, "magic link")


@pytest.mark.parametrize("path", ["procself/etc/passwd", "/proc/self/root/etc/passwd",
                                  "/proc/self/fd/0"])
def test_case7_proc_self_is_not_ctrfs(victim, resolver, path) -> None:
    # /proc/self in the container's procfs names the reader in the container's PID namespace:
    # ctrfs is not in it, so there is nothing there (and never ctrfs's own, host, root).
    c, d = victim
    full = path if path.startswith("/") else f"{d}/{path}"
    one_line_error(ctrfs(resolver, "cat", f"{c.target}:{full}"), 1, "no such file")


def test_case7_ordinary_proc_files_still_readable(victim, resolver) -> None:
    c, _ = victim
    res = ctrfs(resolver, "cat", f"{c.target}:/proc/1/cmdline")
    assert res.returncode == 0 and res.stdout.split(b"\0")[0] == b"/bin/sleep"


# -- 8 ----------------------------------------------------------------------------------------

def test_case8_volume_links_follow_the_container_view(resolver, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "in-volume").write_text("volume-content\n")
    (tmp_path / "beside").write_text(HOST_CANARY + "\n")
    with own_container("-v", f"{vol}:/data") as c:
        sh(c, f"ln -s /data/in-volume /l1 && ln -s {vol}/in-volume /l2 && "
              f"ln -s /data/../../../beside /l3 && ln -s {tmp_path}/beside /l4")
        res = ctrfs(resolver, "cat", f"{c.target}:/l1")
        assert res.returncode == 0 and res.stdout == b"volume-content\n"
        for link in ("/l2", "/l3", "/l4"):
            one_line_error(ctrfs(resolver, "cat", f"{c.target}:{link}"), 1, "no such file")
        ls = ctrfs(resolver, "ls", f"{c.target}:/data")
        assert ls.stdout == b"in-volume\n"


# -- 9 ----------------------------------------------------------------------------------------

def test_case9_odd_names_are_names(victim, resolver) -> None:
    c, d = victim
    n = f"{c.target}:{d}/names"
    assert ctrfs(resolver, "cat", f"{n}/file*").stdout == b"filestar\n"  # not a glob
    assert ctrfs(resolver, "cat", f"{n}/*").stdout == b"star\n"
    assert ctrfs(resolver, "cat", f"{n}/-rf").stdout == b"dash\n"  # not an option
    out = ctrfs(resolver, "ls", n).stdout
    assert b"\x1b" not in out and b"\x07" not in out and b"\xff" not in out
    lines = out.decode().splitlines()
    assert {"*", "file*", "-rf", "new\\nline", "bad\\xffname", "\\x1b]0;pwned\\x07title"} <= set(lines)
    found = ctrfs(resolver, "find", n, "--name", "bad*").stdout.decode()
    assert found == f"{d}/names/bad\\xffname\n"
    raw = os.fsdecode(d.encode() + b"/names/bad\xffname")
    assert ctrfs(resolver, "cat", f"{c.target}:{raw}").stdout == b"bad\n"


# -- 10, 11 -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name,kind", [("fifo", "fifo"), ("chr", "character device"),
                                       ("blk", "block device")])
def test_case10_special_files_reported_never_opened(victim, resolver, name, kind) -> None:
    c, d = victim
    for cmd in (["cat"], ["tail"], ["grep", "x"]):
        res = ctrfs(resolver, *cmd, f"{c.target}:{d}/{name}", timeout=20)
        one_line_error(res, 1, f"is a {kind}, not a regular file; not opened")
    st = ctrfs(resolver, "stat", f"{c.target}:{d}/{name}")
    assert st.returncode == 0 and kind.encode() in st.stdout


def test_case10_tree_commands_skip_special_files(victim, resolver) -> None:
    c, d = victim
    # a FIFO with no writer blocks whoever opens it: these would hang if they did
    g = ctrfs(resolver, "grep", "-r", "container-file", f"{c.target}:{d}", timeout=30)
    assert g.returncode == 0 and g.stdout.decode() == f"{d}/dir/file:container-file\n"
    tar = ctrfs(resolver, "cp", f"{c.target}:{d}", "-", timeout=30)
    assert tar.returncode == 0
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as t:
        kinds = {m.name.split("/", 1)[1]: m for m in t.getmembers() if "/" in m.name}
    assert kinds["fifo"].isfifo() and kinds["chr"].ischr() and kinds["blk"].isblk()
    assert kinds["chr"].size == 0


def test_case11_passwd_to_dev_zero_is_not_read(resolver) -> None:
    with own_container() as c:
        sh(c, "mkdir /o && echo x > /o/f && chown 4242 /o/f && "
              "rm /etc/passwd && ln -s /dev/zero /etc/passwd")
        t0 = time.monotonic()
        res = ctrfs(resolver, "ls", "-l", f"{c.target}:/o", timeout=30)
        assert res.returncode == 0 and res.stdout.split()[2] == b"4242"  # numeric, nothing read
        assert time.monotonic() - t0 < 20
        one_line_error(ctrfs(resolver, "cat", f"{c.target}:/etc/passwd"), 1, "character device")
        exp = ctrfs(resolver, "export", c.target, timeout=60)
        assert exp.returncode == 0
        with tarfile.open(fileobj=io.BytesIO(exp.stdout)) as t:
            m = t.getmember("etc/passwd")
            assert m.issym() and m.linkname == "/dev/zero"


# -- 16 ---------------------------------------------------------------------------------------

@pytest.mark.tar_cores
@pytest.mark.parametrize("command", ["export", "cp"])
def test_case16_container_stops_mid_operation(resolver, tmp_path: Path, command: str) -> None:
    with own_container() as c:
        sh(c, "mkdir -p /big && cd /big && for i in $(seq 1 3000); do echo $i > f$i; done")
        dest = tmp_path / "out"
        argv = ["export", c.target, "-o", str(dest)] if command == "export" else \
            ["cp", f"{c.target}:/big", str(dest)]
        p = subprocess.Popen([sys.executable, "-m", "ctrfs", *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env={**os.environ, **resolver})
        # Freeze ctrfs once it writes (its temp name exists), stop the container, let ctrfs go
        # on: it must say "gone" (exit 5) and leave nothing under the requested name.
        harness.wait_until(lambda: [n for n in os.listdir(tmp_path) if n.startswith(".ctrfs-")],
                           "ctrfs temp output", timeout=30, step=0.005)
        p.send_signal(19)  # SIGSTOP
        harness.run("docker", "kill", c.id)
        harness.wait_until(lambda: not harness.pid_alive(c.pid), "container exit")
        p.send_signal(18)  # SIGCONT
        out, err = p.communicate(timeout=60)
    assert p.returncode == 5, err
    assert "gone" in err.decode() and err.decode().count("\n") == 1
    assert os.listdir(tmp_path) == []


def test_case16_pid_reused(resolver) -> None:
    from ctrfs.errors import ProcessGone
    from ctrfs.model import Container
    from ctrfs.rootfs.proc import ProcRoot
    from ctrfs.runtimes.base import ContainerRecord

    with own_container() as c:
        with open(f"/proc/{c.pid}/stat", "rb") as f:
            start = int(f.read().rsplit(b")", 1)[1].split()[19])
        fake = Container(id=c.id, runtime="docker", name=c.name, image=None, state="running",
                         pid=c.pid, start_time=start + 1, pids=[c.pid], namespaces={},
                         cgroup=None, pod=None, rootfs=None,
                         record=ContainerRecord(id=c.id, runtime="docker"))
        with pytest.raises(ProcessGone, match="PID reused"):
            ProcRoot(fake, fallback=resolver["CTRFS_FORCE_FALLBACK"] == "1")


# -- 17 ---------------------------------------------------------------------------------------

def test_case17_copies_stay_under_the_destination(victim, resolver, tmp_path: Path,
                                                  canary_host: Path) -> None:
    c, d = victim
    target_dir = tmp_path / "host-target"
    target_dir.mkdir()
    src = f"{d}/cp17-{secrets.token_hex(3)}"
    sh(c, f"mkdir -p {src}/sub && cd {src} && ln -s {target_dir} esc && "
          f"ln -s ../../../../../../{target_dir} esc2 && echo data > sub/file && "
          f"ln sub/file hard")
    dest = tmp_path / "dest"
    dest.mkdir()
    res = ctrfs(resolver, "cp", f"{c.target}:{src}", str(dest))
    assert res.returncode == 0, res.stderr
    assert os.listdir(target_dir) == []  # nothing written through the copied symlinks
    got = dest / os.path.basename(src)
    assert os.readlink(got / "esc") == str(target_dir)
    assert (got / "sub" / "file").read_bytes() == b"data\n"
    assert os.path.samestat(os.stat(got / "hard"), os.stat(got / "sub" / "file"))
    for dirpath, dirnames, filenames in os.walk(dest):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            assert os.path.commonpath([str(p), str(dest)]) == str(dest)
    # a file copied onto an existing host symlink replaces the link, not what it points to
    victim_file = canary_host / "etc" / "passwd"
    (tmp_path / "dst-link").symlink_to(victim_file)
    res = ctrfs(resolver, "cp", f"{c.target}:{d}/dir/file", str(tmp_path / "dst-link"))
    assert res.returncode == 0
    assert victim_file.read_text() == HOST_CANARY + "\n"
    assert not (tmp_path / "dst-link").is_symlink()
    assert (tmp_path / "dst-link").read_bytes() == b"container-file\n"


@pytest.mark.tar_cores
@pytest.mark.parametrize("suffix,top", [("", None), ("/dir/..", None), ("/.", None),
                                        ("/dir/file/", "file")])
def test_case17_tar_stream_names_are_relative(victim, resolver, suffix, top) -> None:
    c, d = victim
    res = ctrfs(resolver, "cp", f"{c.target}:{d}{suffix}", "-")
    if top == "file":  # "file/" is not a directory: refused, nothing written
        one_line_error(res, 1, "not a directory")
        assert res.stdout == b""
        return
    assert res.returncode == 0
    with tarfile.open(fileobj=io.BytesIO(res.stdout)) as t:
        members = t.getmembers()
    names = {m.name for m in members}
    top = os.path.basename(d)
    for m in members:
        assert not m.name.startswith("/") and ".." not in m.name.split("/")
        assert m.name == top or m.name.startswith(top + "/")
        if m.islnk():
            assert m.linkname in names  # hardlinks only to members already in the archive


# -- 18 (beyond the brief's list, cheap with the harness's swapper) ----------------------------

@pytest.fixture(scope="module")
def swapper_binary(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    exe = tmp_path_factory.mktemp("swapper") / "swapper"
    harness.run("gcc", "-static", "-O2", "-o", str(exe), str(harness.FIXTURES / "swapper.c"))
    return exe.read_bytes()


def test_case18_rename_exchange_race(resolver, swapper_binary: bytes) -> None:
    """/race/dir (real, holding etc/passwd = "legit") and /race/link (-> /) swapped in a tight
    loop: every read gives the legitimate file, the container's own /etc/passwd, or an error;
    never the host's /etc/passwd. In-process through the library, to make many attempts."""
    from ctrfs import container
    from ctrfs.errors import CtrfsError
    from ctrfs.rootfs.proc import ProcRoot

    host_passwd = Path("/etc/passwd").read_bytes()
    with own_container() as c:
        harness.docker_exec(c, "sh", "-c", "cat > /swapper && chmod 755 /swapper",
                            input=swapper_binary)
        sh(c, "mkdir -p /race/dir/etc && echo legit > /race/dir/etc/passwd && ln -s / /race/link")
        container_passwd = sh(c, "cat /etc/passwd").encode()
        harness.run("docker", "exec", "-d", c.id, "/swapper", "/race/dir", "/race/link", "60")
        seen: dict[str, int] = {}
        with ProcRoot(container(c.name), fallback=resolver["CTRFS_FORCE_FALLBACK"] == "1") as r:
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                try:
                    with r.open_file("/race/dir/etc/passwd") as f:
                        data = f.read()
                except CtrfsError as err:
                    seen[type(err).__name__] = seen.get(type(err).__name__, 0) + 1
                    continue
                assert data != host_passwd
                assert data in (b"legit\n", container_passwd)
                key = "legit" if data == b"legit\n" else "container"
                seen[key] = seen.get(key, 0) + 1
            # walks race too: whatever they yield stays inside the container. An entry can be
            # swapped away between the walk listing it and its open; count those, and require
            # most opens to succeed and each walk to read the legitimate file some time.
            opened, refused = 0, Counter[str]()
            for _ in range(50):
                for e in r.walk("/race", one_filesystem=True):
                    if e.is_file():
                        try:
                            with e.open() as f:
                                data = f.read()
                        except CtrfsError as err:
                            refused[type(err).__name__] += 1
                            continue
                        assert data != host_passwd
                        assert data in (b"legit\n", container_passwd)
                        opened += 1
            print(f"\nrace walk: {opened} files read, refused: {dict(refused)}")
            assert opened >= 5 and sum(refused.values()) <= opened, (opened, refused)
        # both outcomes seen: the swapper really raced the reads (tens of thousands each here)
        assert seen.get("legit", 0) > 0 and seen.get("container", 0) > 0, seen
