"""File commands on real containers, checked against what the container itself (busybox via
docker exec) or Docker (docker cp, docker export) says. Asserts what a user sees: stdout,
stderr, exit codes."""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import stat
import struct
import subprocess
import sys
import tarfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import harness
from harness import RunningContainer


def ctrfs(*argv: str, **kw: Any) -> subprocess.CompletedProcess[bytes]:
    return harness.ctrfs(*argv, text=False, **kw)


def sh(c: RunningContainer, script: str) -> str:
    return harness.docker_exec(c, "sh", "-c", script).stdout.decode("utf-8", "surrogateescape")


SEED = r"""
set -e
cd {d}
mkdir -p tree/sub/deeper tree/empty
printf 'hello\n' > tree/hello.txt
printf 'ERROR one\nok\nerror two\nERROR three\n' > tree/sub/app.log
printf 'bin\000ary ERROR\n' > tree/sub/blob.bin
head -c 5000 /bin/busybox > tree/sub/deeper/5k.bin
printf 'x' > tree/sub/deeper/one
ln tree/hello.txt tree/hard1
ln tree/hello.txt tree/sub/hard2
ln -s hello.txt tree/rel-link
ln -s /etc/passwd tree/abs-link
ln -s /nowhere tree/dangling
mkfifo tree/fifo
mknod tree/null c 1 3
printf 'suid\n' > tree/suid && chmod 4755 tree/suid
printf 'sgid\n' > tree/sgid && chmod 2750 tree/sgid
printf 'owned\n' > tree/owned && chown 65534:65534 tree/owned
printf 'nl\n' > "$(printf 'tree/new\nline')"
printf 'bad\n' > "$(printf 'tree/bad\377name')"
printf 'esc\n' > "$(printf 'tree/\033[31mred')"
touch -d '2020-01-02 03:04:05' tree/sub/deeper/one
"""


# struct vfs_cap_data, revision 2, effective, permitted = CAP_NET_BIND_SERVICE (bit 10)
CAP_NET_BIND_SERVICE = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)


@pytest.fixture(scope="module")
def seeded(docker_busybox: RunningContainer) -> tuple[RunningContainer, str]:
    d = f"/seed-{secrets.token_hex(4)}"
    harness.docker_exec(docker_busybox, "mkdir", "-p", d)
    sh(docker_busybox, SEED.format(d=d))
    # extended attributes (busybox has no setfattr/setcap): set from the host, through the
    # container's root, on a file the container created
    suid = f"/proc/{docker_busybox.pid}/root{d}/tree/suid"
    os.setxattr(suid, "user.ctrfs", b"note")
    os.setxattr(suid, "security.capability", CAP_NET_BIND_SERVICE)
    return docker_busybox, d


@pytest.fixture(scope="module")
def own_busybox() -> RunningContainer:
    """A busybox container of this module alone: tests here stop, restart and edit it."""
    with harness.run_docker(harness.busybox_image(), f"ctrfs-r-{harness.SESSION}-") as c:
        yield c


# -- ls ---------------------------------------------------------------------------------------

def test_ls_shellless_root(docker_shellless: RunningContainer) -> None:
    res = ctrfs("ls", f"{docker_shellless.target}:/")
    names = res.stdout.decode().split("\n")
    for n in ("app", "etc", "var", "proc", "dev"):
        assert n in names
    assert ".dockerenv" not in names  # hidden without -a
    assert ".dockerenv" in ctrfs("ls", "-a", f"{docker_shellless.target}:/").stdout.decode().split()


def test_ls_long_owners_from_container_passwd(own_busybox: RunningContainer) -> None:
    # uid 4242 exists only in the container's /etc/passwd: the name must come from there
    sh(own_busybox, "echo 'ctrfsuser:x:4242:4243::/:/bin/false' >> /etc/passwd && "
                    "echo 'ctrfsgrp:x:4243:' >> /etc/group && "
                    "mkdir -p /o && echo x > /o/f && chown 4242:4243 /o/f && chmod 640 /o/f")
    out = ctrfs("ls", "-l", f"{own_busybox.target}:/o").stdout.decode().strip()
    fields = out.split()
    assert fields[0] == "-rw-r-----" and fields[2] == "ctrfsuser" and fields[3] == "ctrfsgrp"
    assert fields[-1] == "f"


def test_ls_matches_busybox(seeded) -> None:
    c, d = seeded
    listing = json.loads(ctrfs("ls", "--json", "-a", f"{c.target}:{d}/tree").stdout)
    assert len(listing) == 1
    by = {e["name"]: e for e in listing[0]["entries"]}
    # busybox's view, keyed by inode (names with newlines would break a line-based format)
    theirs = {}
    for line in sh(c, f"cd {d}/tree && stat -c '%i|%a|%u|%g|%h|%s|%F' *").splitlines():
        ino, mode, uid, gid, nlink, size, kind = line.split("|")
        theirs[int(ino)] = (int(mode, 8), int(uid), int(gid), int(nlink), int(size), kind)
    assert {e["inode"] for e in by.values()} == set(theirs)
    for name, e in by.items():
        mode, uid, gid, nlink, size, kind = theirs[e["inode"]]
        assert (int(e["mode"], 8), e["uid"], e["gid"], e["nlink"]) == (mode, uid, gid, nlink), name
        if e["type"] in ("f", "l"):
            assert e["size"] == size, name
    assert by["rel-link"]["link_target"] == "hello.txt"
    assert by["null"]["type"] == "c" and by["null"]["rdev"] == [1, 3]
    assert by["fifo"]["type"] == "p" and by["sub"]["type"] == "d"
    assert by["owned"]["user"] == "nobody" and by["hello.txt"]["user"] == "root"
    assert "new\nline" in by and "bad\\xffname" in by


def test_ls_escapes_names_on_output(seeded) -> None:
    c, d = seeded
    out = ctrfs("ls", f"{c.target}:{d}/tree").stdout
    lines = out.decode().split("\n")
    assert "new\\nline" in lines
    assert "bad\\xffname" in lines
    assert "\\x1b[31mred" in lines
    assert b"\x1b" not in out and b"\xff" not in out


def test_ls_recursive_and_file(seeded) -> None:
    c, d = seeded
    out = ctrfs("ls", "-R", f"{c.target}:{d}/tree/sub").stdout.decode()
    assert out.startswith(f"{d}/tree/sub:\n")
    assert f"\n{d}/tree/sub/deeper:\n" in out and "5k.bin" in out
    one = ctrfs("ls", "-l", f"{c.target}:{d}/tree/hello.txt").stdout.decode()
    assert one.split()[0] == "-rw-r--r--" and one.strip().endswith(f"{d}/tree/hello.txt")


# -- cat --------------------------------------------------------------------------------------

def docker_cp_file(c: RunningContainer, path: str) -> bytes:
    tar = harness.run("docker", "cp", f"{c.id}:{path}", "-").stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        m = t.next()
        assert m is not None
        f = t.extractfile(m)
        assert f is not None
        return f.read()


def test_cat_shellless_matches_docker_cp(docker_shellless: RunningContainer) -> None:
    c = docker_shellless
    for path in ("/etc/os-release", "/etc/passwd", "/app"):
        assert ctrfs("cat", f"{c.target}:{path}").stdout == docker_cp_file(c, path)


def test_cat_many_and_symlinks(seeded) -> None:
    c, d = seeded
    res = ctrfs("cat", f"{c.target}:{d}/tree/rel-link", f"{c.target}:{d}/tree/abs-link")
    assert res.stdout == b"hello\n" + sh(c, "cat /etc/passwd").encode()


@pytest.mark.parametrize("name,message", [
    ("missing", "no such file or directory"),
    ("dangling", "no such file or directory"),
    ("sub", "is a directory, not a regular file"),
    ("fifo", "is a fifo, not a regular file"),
    ("null", "is a character device, not a regular file"),
    ("hello.txt/", "not a directory"),
])
def test_cat_errors(seeded, name: str, message: str) -> None:
    c, d = seeded
    res = ctrfs("cat", f"{c.target}:{d}/tree/{name}", check=False)
    err = res.stderr.decode()
    assert res.returncode == 1
    assert res.stdout == b""
    assert err.count("\n") == 1 and err.startswith("ctrfs: ") and message in err
    assert "Traceback" not in err


def test_cat_continues_after_error_and_fails(seeded) -> None:
    c, d = seeded
    res = ctrfs("cat", f"{c.target}:{d}/tree/missing", f"{c.target}:{d}/tree/hello.txt", check=False)
    assert res.returncode == 1 and res.stdout == b"hello\n"


def test_cat_unknown_target_and_usage(seeded) -> None:
    res = ctrfs("cat", "ctrfs-r-no-such-container:/etc/passwd", check=False)
    assert res.returncode == 3
    res = ctrfs("cat", seeded[0].target, check=False)  # no :PATH
    assert res.returncode == 2 and "missing path" in res.stderr.decode()


# -- stat -------------------------------------------------------------------------------------

def test_stat_matches_busybox(seeded) -> None:
    c, d = seeded
    for name in ("hello.txt", "abs-link", "sub", "null", "suid", "owned"):
        info = json.loads(ctrfs("stat", "--json", f"{c.target}:{d}/tree/{name}").stdout)
        theirs = sh(c, f"stat -c '%a %u %g %h %s %i %Y' {d}/tree/{name}").split()
        mode, uid, gid, nlink, size, ino, mtime = (int(theirs[0], 8), *map(int, theirs[1:]))
        assert int(info["mode"], 8) == mode
        assert int(datetime.fromisoformat(info["mtime"]).timestamp()) == mtime
        assert (info["uid"], info["gid"], info["nlink"], info["inode"]) == (uid, gid, nlink, ino)
        if name != "sub":
            assert info["size"] == size
    owned = json.loads(ctrfs("stat", "--json", f"{c.target}:{d}/tree/owned").stdout)
    assert (owned["user"], owned["group"]) == ("nobody", "nogroup")
    link = json.loads(ctrfs("stat", "--json", f"{c.target}:{d}/tree/abs-link").stdout)
    assert link["type"] == "l" and link["link_target"] == "/etc/passwd"
    deref = json.loads(ctrfs("stat", "-L", "--json", f"{c.target}:{d}/tree/abs-link").stdout)
    assert deref["type"] == "f" and deref["size"] == len(sh(c, "cat /etc/passwd").encode())


def test_stat_text(seeded) -> None:
    c, d = seeded
    out = ctrfs("stat", f"{c.target}:{d}/tree/suid").stdout.decode()
    assert f"File: {d}/tree/suid" in out and "(4755/-rwsr-xr-x)" in out and "Uid: (0/root)" in out


# -- find -------------------------------------------------------------------------------------

def _lines(b: bytes | str) -> set[str]:
    s = b.decode() if isinstance(b, bytes) else b
    return {x for x in s.split("\n") if x}


@pytest.mark.parametrize("ours,theirs", [
    ([], []),
    (["--name", "*.log"], ["-name", "*.log"]),
    (["--type", "f"], ["-type", "f"]),
    (["--type", "l"], ["-type", "l"]),
    (["--type", "d", "--maxdepth", "1"], ["-maxdepth", "1", "-type", "d"]),
    (["--size", "+100"], ["-size", "+100c"]),
    (["--size", "-2"], ["-size", "-2c"]),
    (["--mmin", "+60"], ["-mmin", "+60"]),
    (["--mmin", "-60", "--type", "p"], ["-mmin", "-60", "-type", "p"]),
])
def test_find_matches_busybox_find(seeded, ours: list[str], theirs: list[str]) -> None:
    c, d = seeded
    mine = ctrfs("find", f"{c.target}:{d}/tree", *ours).stdout
    # busybox prints names raw (the newline-named file would be two lines): take them
    # NUL-separated and escape them as ctrfs prints names
    ref = harness.docker_exec(c, "find", f"{d}/tree", *theirs, "-print0").stdout
    ref_lines = [_escaped(x) for x in ref.split(b"\0") if x]
    mine_lines = mine.decode().splitlines()
    assert sorted(mine_lines) == sorted(ref_lines)
    if not ours:  # the hostile names are among those compared
        assert {f"{d}/tree/new\\nline", f"{d}/tree/bad\\xffname", f"{d}/tree/\\x1b[31mred"} <= set(mine_lines)


def _escaped(name: bytes) -> str:
    """GNU ls's --quoting-style=escape, which ctrfs prints names in: backslash, newline and tab as
    \\\\, \\n, \\t; other control characters and bytes that are not UTF-8 as \\xNN."""
    out = []
    for ch in name.decode("utf-8", "surrogateescape"):
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:
            out.append(f"\\x{o - 0xDC00:02x}")
        elif ch in "\\\n\t":
            out.append({"\\": "\\\\", "\n": "\\n", "\t": "\\t"}[ch])
        elif o < 0x20 or 0x7F <= o < 0xA0:
            out.append(f"\\x{o:02x}")
        else:
            out.append(ch)
    return "".join(out)


def test_find_newer_json_and_usage(seeded) -> None:
    c, d = seeded
    out = json.loads(ctrfs("find", f"{c.target}:{d}/tree", "--newer", f"{d}/tree/sub/deeper/one",
                           "--name", "5k.bin", "--json").stdout)
    assert [e["path"] for e in out] == [f"{d}/tree/sub/deeper/5k.bin"]
    assert out[0]["size"] == 5000
    bad = ctrfs("find", f"{c.target}:{d}", "--size", "lots", check=False)
    assert bad.returncode == 2 and "invalid size" in bad.stderr.decode()
    assert ctrfs("find", f"{c.target}:{d}/tree", "--size", "+4k", "--type", "f").stdout.decode() \
        == f"{d}/tree/sub/deeper/5k.bin\n"


# -- grep -------------------------------------------------------------------------------------

def test_grep_file_and_flags(seeded) -> None:
    c, d = seeded
    p = f"{c.target}:{d}/tree/sub/app.log"
    assert ctrfs("grep", "ERROR", p).stdout == b"ERROR one\nERROR three\n"
    assert ctrfs("grep", "-in", "error", p).stdout == b"1:ERROR one\n3:error two\n4:ERROR three\n"
    assert ctrfs("grep", "-E", "one|two", p).stdout == b"ERROR one\nerror two\n"
    assert ctrfs("grep", "one\\|two", p).stdout == b"ERROR one\nerror two\n"  # BRE alternation
    js = json.loads(ctrfs("grep", "--json", "-i", "error", p).stdout)
    assert [(x["kind"], x["line_number"], x["line"]) for x in js] == [
        ("line", 1, "ERROR one"), ("line", 3, "error two"), ("line", 4, "ERROR three")]
    none = ctrfs("grep", "nothing-here", p, check=False)
    assert none.returncode == 1 and none.stdout == b""


def test_grep_recursive_matches_busybox(seeded) -> None:
    c, d = seeded
    res = ctrfs("grep", "-rn", "ERROR", f"{c.target}:{d}/tree")
    # (busybox grep -r would open the FIFO and hang: give it the regular files only)
    ref = sh(c, f"find {d}/tree -type f -exec grep -Hn ERROR {{}} +")
    # busybox grep prints lines of binary files; GNU grep (and ctrfs) report the file instead
    ref_lines = {x for x in _lines(ref) if "\0" not in x}
    assert _lines(res.stdout) == ref_lines
    # the binary file is reported on stderr like GNU grep, the FIFO/device never opened
    assert f"{d}/tree/sub/blob.bin: binary file matches" in res.stderr.decode()
    files = ctrfs("grep", "-rl", "ERROR", f"{c.target}:{d}/tree").stdout
    assert _lines(files) == {f"{d}/tree/sub/app.log", f"{d}/tree/sub/blob.bin"}


def test_grep_directory_without_r(seeded) -> None:
    c, d = seeded
    res = ctrfs("grep", "x", f"{c.target}:{d}/tree", check=False)
    assert res.returncode == 1 and "is a directory" in res.stderr.decode()


# -- tail -------------------------------------------------------------------------------------

def wait_ticks(c: RunningContainer, n: int) -> None:
    """Until the logger wrote at least n lines (a fresh container has fewer)."""
    harness.wait_until(lambda: ctrfs("cat", f"{c.target}:/var/log/app.log").stdout.count(b"\n") >= n,
                       f"{n} log lines", timeout=30, step=0.3)


def test_tail_lines_shellless(docker_shellless: RunningContainer) -> None:
    c = docker_shellless
    wait_ticks(c, 3)
    lines = ctrfs("tail", "-n", "3", f"{c.target}:/var/log/app.log").stdout.decode().splitlines()
    assert len(lines) == 3 and all(x.startswith("tick ") for x in lines)
    nums = [int(x.split()[1]) for x in lines]
    assert nums == list(range(nums[0], nums[0] + 3))
    whole = ctrfs("cat", f"{c.target}:/var/log/app.log").stdout.decode().splitlines()
    assert lines[-1] in whole


def _start(*argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "ctrfs", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _stop(p: subprocess.Popen[bytes]) -> tuple[int, bytes, bytes]:
    p.send_signal(2)  # Ctrl-C
    out, err = p.communicate(timeout=20)
    return p.returncode, out, err


def test_tail_f_shellless_follows_without_gaps(docker_shellless: RunningContainer) -> None:
    w = _Watched("tail", "-n", "1", "-f", f"{docker_shellless.target}:/var/log/app.log")
    try:
        harness.wait_until(lambda: len(w.out) >= 4, "4 lines followed", timeout=30)
    finally:
        rc = w.stop()
    nums = [int(x.split()[1]) for x in w.out]
    assert nums == list(range(nums[0], nums[0] + len(nums)))  # every tick once, in order
    assert rc == 130 and "Traceback" not in w.err


class _Watched:
    """A running ``ctrfs tail``: its stdout lines and stderr text, collected as they come, so a
    test waits for what it expects instead of sleeping a guessed time."""

    def __init__(self, *argv: str) -> None:
        self.p = _start(*argv)
        self.out: list[str] = []
        self.err = ""
        self._threads = [threading.Thread(target=self._read_out, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for t in self._threads:
            t.start()

    def _read_out(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.out.append(line.decode().rstrip("\n"))

    def _read_err(self) -> None:
        assert self.p.stderr is not None
        for line in self.p.stderr:
            self.err += line.decode()

    def expect_out(self, line: str, timeout: float = 30) -> None:
        harness.wait_until(lambda: line in self.out, f"{line!r} on stdout (have {self.out})",
                           timeout=timeout)

    def expect_err(self, text: str, timeout: float = 60) -> None:
        harness.wait_until(lambda: text in self.err, f"{text!r} on stderr ({self.err!r})",
                           timeout=timeout)

    def stop(self) -> int:
        if self.p.poll() is None:
            self.p.send_signal(2)  # Ctrl-C
        rc = self.p.wait(20)
        for t in self._threads:
            t.join(10)
        return rc


def test_tail_F_rotation_truncation_and_restart(own_busybox: RunningContainer) -> None:
    c = own_busybox
    sh(c, "mkdir -p /logs && rm -f /logs/* && printf 'a1\\na2\\n' > /logs/app.log")
    w = _Watched("tail", "-n", "1", "-F", f"{c.target}:/logs/app.log")
    try:
        w.expect_out("a2")
        sh(c, "echo a3 >> /logs/app.log")
        w.expect_out("a3")
        sh(c, "mv /logs/app.log /logs/app.log.1 && echo b1 > /logs/app.log")
        w.expect_err("has been replaced; following new file")
        w.expect_out("b1")
        sh(c, "echo b2 >> /logs/app.log")
        w.expect_out("b2")
        sh(c, ": > /logs/app.log")
        w.expect_err("file truncated")
        sh(c, "echo c1 >> /logs/app.log")
        w.expect_out("c1")
        harness.run("docker", "restart", "-t", "1", c.id)
        w.expect_err("the container stopped")
        w.expect_err("the container is back")
        sh(c, "echo d1 >> /logs/app.log")
        w.expect_out("d1")
    finally:
        rc = w.stop()
    assert w.out == ["a2", "a3", "b1", "b2", "c1", "d1"], w.err
    assert rc == 130 and "Traceback" not in w.err


def test_tail_f_without_F_reports_gone(own_busybox: RunningContainer) -> None:
    with harness.run_docker(harness.busybox_image(), f"ctrfs-r-{harness.SESSION}-") as c:
        sh(c, "echo x > /l")
        p = _start("tail", "-f", f"{c.target}:/l")
        time.sleep(1.5)
        harness.run("docker", "kill", c.id)
        out, err = p.communicate(timeout=20)
    assert p.returncode == 5
    assert out == b"x\n" and "gone" in err.decode() and err.decode().count("\n") == 1


# -- du ---------------------------------------------------------------------------------------

def test_du_matches_busybox(seeded) -> None:
    c, d = seeded
    mine = ctrfs("du", f"{c.target}:{d}/tree").stdout.decode()
    ref = sh(c, f"du -k {d}/tree")
    # every line "KIB<TAB>PATH", one per directory, as busybox prints them
    for text in (mine, ref):
        assert all(re.fullmatch(r"\d+\t/\S.*", ln) for ln in text.splitlines()), text
    to_map = lambda s: {ln.split("\t", 1)[1]: int(ln.split("\t", 1)[0])  # noqa: E731
                        for ln in s.splitlines()}
    assert len(mine.splitlines()) == len(to_map(mine)) >= 4  # tree, sub, deeper, empty
    assert to_map(mine) == to_map(ref)
    total = ctrfs("du", "-s", f"{c.target}:{d}/tree").stdout.decode()
    assert total == sh(c, f"du -sk {d}/tree")
    js = json.loads(ctrfs("du", "-s", "--apparent-size", "--json", f"{c.target}:{d}/tree").stdout)
    assert len(js) == 1 and js[0]["path"] == f"{d}/tree"


MOUNTED_KIB = 2048  # what the fixture below writes into each of its two mounts


@pytest.fixture(scope="module")
def mounted_busybox(tmp_path_factory: pytest.TempPathFactory) -> RunningContainer:
    """A busybox container with a bind mount and a tmpfs holding 2 MiB each, and 1 MiB on its
    root filesystem: du with and without --all-mounts must differ by the mounts' data."""
    hostdir = tmp_path_factory.mktemp("ctrfs-r-du")
    with harness.run_docker(harness.busybox_image(), f"ctrfs-r-{harness.SESSION}-", "-v",
                            f"{hostdir}:/data", "--tmpfs", "/scratch") as c:
        sh(c, f"head -c {MOUNTED_KIB * 1024} /dev/urandom > /data/blob"
              f" && head -c {MOUNTED_KIB * 1024} /dev/urandom > /scratch/blob"
              " && mkdir -p /rootdata && head -c 1048576 /dev/urandom > /rootdata/blob")
        yield c


def _mount_points_on_root(pid: int) -> list[str]:
    """The mount points whose parent is the container's root mount (/proc/PID/mountinfo)."""
    rows = [ln.split() for ln in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()]
    root_id = next(r[0] for r in rows if r[4] == "/")
    return [r[4].encode().decode("unicode_escape") for r in rows if r[1] == root_id and r[4] != "/"]


def test_du_root_stays_on_root_mount(mounted_busybox: RunningContainer) -> None:
    c = mounted_busybox
    one = json.loads(ctrfs("du", "-s", "--json", c.target).stdout)[0]["bytes"]
    allm = json.loads(ctrfs("du", "-s", "--all-mounts", "--json", c.target).stdout)[0]["bytes"]
    # busybox's own du -x stays on / and skips the mount points; ctrfs counts the root
    # filesystem alone, as docker export holds it: at each mount point (and beneath it) what the
    # root filesystem has there, seen here through the overlay's merged dir on the host (which
    # has no submounts), not the mounted content.
    points = _mount_points_on_root(c.pid)
    assert {"/data", "/scratch", "/proc", "/etc/hosts"} <= set(points)
    merged = harness.out("docker", "inspect", "-f", "{{.GraphDriver.Data.MergedDir}}", c.id)
    mount_blocks = 0
    for p in points:
        top = merged + p
        mount_blocks += os.lstat(top).st_blocks * 512
        for d, dirs, files in os.walk(top):
            mount_blocks += sum(os.lstat(os.path.join(d, n)).st_blocks * 512 for n in dirs + files)
    assert one == int(sh(c, "du -skx /").split()[0]) * 1024 + mount_blocks
    assert one >= 1024 * 1024  # /rootdata/blob
    # the two mounts' blobs, and nothing of them without --all-mounts
    assert allm - one >= 2 * MOUNTED_KIB * 1024, (one, allm)
    for mnt in ("/data", "/scratch"):
        inner = json.loads(ctrfs("du", "-s", "--json", f"{c.target}:{mnt}").stdout)[0]["bytes"]
        assert inner // 1024 == int(sh(c, f"du -sk {mnt}").split()[0]) >= MOUNTED_KIB
    assert ctrfs("du", "-sh", c.target).stdout.decode().endswith("\t/\n")


# -- cp ---------------------------------------------------------------------------------------

def _tree(root: Path) -> dict[str, tuple]:
    """Every entry below root: type, mode, owner, size, mtime, link target, content digest,
    and which entries share an inode (hardlinks)."""
    out: dict[str, tuple] = {}
    inodes: dict[tuple[int, int], str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            st = p.lstat()
            rel = str(p.relative_to(root))
            link = os.readlink(p) if stat.S_ISLNK(st.st_mode) else None
            data = p.read_bytes() if stat.S_ISREG(st.st_mode) else None
            first = None
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                first = inodes.setdefault((st.st_dev, st.st_ino), rel)
            mtime = int(st.st_mtime) if not stat.S_ISLNK(st.st_mode) else None
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                        mtime, link, data, first, st.st_nlink if first else None)
    return out


def test_cp_dir_matches_docker_cp(seeded, tmp_path: Path) -> None:
    c, d = seeded
    (tmp_path / "ours").mkdir()
    (tmp_path / "docker").mkdir()
    res = ctrfs("cp", f"{c.target}:{d}/tree", str(tmp_path / "ours"))
    harness.run("docker", "cp", f"{c.id}:{d}/tree", str(tmp_path / "docker"))
    ours, theirs = _tree(tmp_path / "ours" / "tree"), _tree(tmp_path / "docker" / "tree")
    # Intended differences, each named:
    # 1. device nodes are not created on the host without --preserve-all (docker cp makes them)
    assert "null" in theirs and "null" not in ours
    assert "tree/null: character device not copied" in res.stderr.decode()
    del theirs["null"]
    # 2. setuid/setgid bits and extended attributes (file capabilities) are dropped without
    #    --preserve-all (docker cp restores the capability)
    assert os.listxattr(tmp_path / "ours" / "tree" / "suid") == []
    for name in ("suid", "sgid"):
        assert theirs[name][1] & 0o6000 and not ours[name][1] & 0o6000
        assert ours[name][1] == theirs[name][1] & ~0o6000
        ours[name] = theirs[name]
    # 3. ownership: ctrfs run as root keeps the container's owners; docker cp gives the
    #    copy to the user running it
    assert ours["owned"][2:4] == (65534, 65534) and theirs["owned"][2:4] == (0, 0)
    ours["owned"] = theirs["owned"]
    # 4. docker cp names the first copy of a hardlinked inode differently (walk order); compare
    #    the link groups, not which member came first
    def groups(t: dict[str, tuple]) -> set[frozenset[str]]:
        g: dict[str, set[str]] = {}
        for k, v in t.items():
            if v[7] is not None:
                g.setdefault(v[7], set()).add(k)
        return {frozenset(s) for s in g.values()}
    assert groups(ours) == groups(theirs) == {frozenset({"hello.txt", "hard1", "sub/hard2"})}
    strip = lambda t: {k: v[:7] for k, v in t.items()}  # noqa: E731
    assert strip(ours) == strip(theirs)
    # 5. mtimes: docker cp's tar carries whole seconds, so they are compared in seconds above;
    #    ctrfs keeps the nanoseconds, compared here with the container's own files.
    src = Path(f"/proc/{c.pid}/root{d}/tree")
    for rel, v in ours.items():
        if v[0] != stat.S_IFLNK:
            mine_ns = os.lstat(tmp_path / "ours" / "tree" / rel).st_mtime_ns
            assert mine_ns == os.lstat(src / rel).st_mtime_ns, rel
    # nothing else is left next to the copy
    assert sorted(os.listdir(tmp_path / "ours")) == ["tree"]


def test_cp_preserve_all_and_file_targets(seeded, tmp_path: Path) -> None:
    c, d = seeded
    ctrfs("cp", "--preserve-all", f"{c.target}:{d}/tree", str(tmp_path / "full"))
    assert stat.S_IMODE(os.lstat(tmp_path / "full" / "suid").st_mode) == 0o4755
    assert os.getxattr(tmp_path / "full" / "suid", "security.capability") == CAP_NET_BIND_SERVICE
    assert os.getxattr(tmp_path / "full" / "suid", "user.ctrfs") == b"note"
    assert stat.S_ISCHR(os.lstat(tmp_path / "full" / "null").st_mode)
    # a file to a new name, into a directory, and over an existing file
    ctrfs("cp", f"{c.target}:{d}/tree/hello.txt", str(tmp_path / "renamed.txt"))
    assert (tmp_path / "renamed.txt").read_bytes() == b"hello\n"
    ctrfs("cp", f"{c.target}:{d}/tree/sub/app.log", str(tmp_path))
    assert (tmp_path / "app.log").read_bytes().startswith(b"ERROR one")
    (tmp_path / "renamed.txt").write_text("old")
    ctrfs("cp", f"{c.target}:{d}/tree/hello.txt", str(tmp_path / "renamed.txt"))
    assert (tmp_path / "renamed.txt").read_bytes() == b"hello\n"
    # a symlink SRC is copied as a link, or followed with -L (inside the container)
    ctrfs("cp", f"{c.target}:{d}/tree/abs-link", str(tmp_path / "l1"))
    assert os.readlink(tmp_path / "l1") == "/etc/passwd"
    ctrfs("cp", "-L", f"{c.target}:{d}/tree/abs-link", str(tmp_path / "l2"))
    assert (tmp_path / "l2").read_bytes() == sh(c, "cat /etc/passwd").encode()
    (tmp_path / "into").mkdir()
    ctrfs("cp", f"{c.target}:{d}/tree/sub", str(tmp_path / "into"))
    assert (tmp_path / "into" / "sub" / "app.log").exists()
    again = ctrfs("cp", f"{c.target}:{d}/tree/sub", str(tmp_path / "into"), check=False)
    assert again.returncode == 2 and "already exists" in again.stderr.decode()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".ctrfs-")]


def _members(tar: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        return {m.name: m for m in t.getmembers()}


def _hardlinks(tar: bytes) -> dict[frozenset[str], tuple[Any, ...]]:
    """A tar's hard-link groups: the names of each group (the regular member holding the data and
    every link member naming it) → that member's mode, owner, mtime and data, read once. A link
    must name a regular member that came before it: a tar reader could not make it otherwise."""
    groups: dict[str, set[str]] = {}
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        regular: dict[str, tarfile.TarInfo] = {}
        for m in tf:
            name = m.name.rstrip("/")
            if m.isreg():
                regular[name] = m
            elif m.islnk():
                target = m.linkname.rstrip("/")
                assert target in regular, f"link {name} -> {target}: not an earlier regular member"
                groups.setdefault(target, {target}).add(name)
        return {frozenset(names): (stat.S_IMODE(regular[t].mode), regular[t].uid, regular[t].gid,
                                   regular[t].mtime, tf.extractfile(regular[t]).read())  # type: ignore[union-attr]
                for t, names in groups.items()}


def test_cp_stdout_tar_matches_docker_cp(seeded) -> None:
    c, d = seeded
    mine_tar = ctrfs("cp", f"{c.target}:{d}/tree", "-").stdout
    theirs_tar = harness.run("docker", "cp", f"{c.id}:{d}/tree", "-").stdout
    mine, theirs = _members(mine_tar), _members(theirs_tar)
    assert set(mine) == set(theirs)
    # Hard links as links: the same groups with the same data; which member of a group carries
    # the data follows walk order, which may differ between the tools.
    links = _hardlinks(mine_tar)
    assert links == _hardlinks(theirs_tar)
    assert set(links) == {frozenset({"tree/hello.txt", "tree/hard1", "tree/sub/hard2"})}
    assert next(iter(links.values()))[4] == b"hello\n"
    for name, m in theirs.items():
        o = mine[name]
        if m.islnk() or o.islnk():
            continue  # compared as a group above
        # Go's archive/tar (docker) also stores the file-type bits in the mode field; tar
        # readers take the type from the type flag, so compare permission bits.
        assert (o.type, o.mode, o.uid, o.gid, o.size, o.linkname, o.mtime) == \
               (m.type, stat.S_IMODE(m.mode), m.uid, m.gid, m.size, m.linkname, m.mtime), name
        if o.ischr():
            assert (o.devmajor, o.devminor) == (m.devmajor, m.devminor)


@pytest.mark.parametrize("argv", [
    ("cp", "{t}:/", "-"), ("export", "{t}"), ("cat", "{t}:/bin/busybox"), ("find", "{t}:/"),
], ids=["cp-stdout", "export", "cat", "find"])
def test_reader_closing_the_pipe_early_is_not_a_failure(seeded, argv: tuple[str, ...]) -> None:
    """`ctrfs cp c:/ - | head -c 1` under `set -o pipefail`: the reader going away is how such a
    pipeline ends, so ctrfs exits 0 and prints nothing on stderr (as GNU tools do, without the
    signal)."""
    c, _ = seeded
    cmd = [sys.executable, "-m", "ctrfs", *(a.format(t=c.target) for a in argv)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    assert p.stdout.read(1)
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(timeout=60) == 0, err
    assert err == b""


# -- export -----------------------------------------------------------------------------------

def _export_contents(tar: bytes) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        for m in t:
            out[m.name.rstrip("/")] = {
                "type": m.type,
                # permission bits only: Go's archive/tar (docker) adds the file-type bits
                "mode": stat.S_IMODE(m.mode), "uid": m.uid, "gid": m.gid, "size": m.size,
                "linkname": m.linkname, "mtime": m.mtime, "uname": m.uname, "gname": m.gname,
                "data": t.extractfile(m).read() if m.isreg() else None,  # type: ignore[union-attr]
                "xattrs": {k: v for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")},
            }
    return out


def test_export_matches_docker_export(seeded, tmp_path: Path) -> None:
    c, d = seeded
    out = tmp_path / "c.tar"
    res = ctrfs("export", c.target, "-o", str(out))
    assert res.stdout == b""
    mine_tar, theirs_tar = out.read_bytes(), harness.run("docker", "export", c.id).stdout
    mine, theirs = _export_contents(mine_tar), _export_contents(theirs_tar)
    # ctrfs export is the root filesystem alone, as docker export: beneath /dev, /proc, /sys the
    # runtime's placeholders, mount points and /etc/hosts with the root filesystem's modes.
    for k in ("dev/console", "dev/pts", "dev/shm", "proc", "sys", "dev", "etc/hosts"):
        assert mine[k] == theirs[k], k
    # Intended differences, each named:
    # 1. Hardlinks: which member of a link group carries the data follows walk order. Compare
    #    the groups, each with its data once, then every member's own header but its type,
    #    link name and size (a link member has none).
    links = _hardlinks(mine_tar)
    assert links == _hardlinks(theirs_tar)
    tree = f"{d}/tree".lstrip("/")
    assert frozenset({f"{tree}/hello.txt", f"{tree}/hard1", f"{tree}/sub/hard2"}) in links
    for k in {n for group in links for n in group}:
        for side in (mine, theirs):
            side[k] = {**side[k], "type": None, "linkname": None, "size": None, "data": None}
    # 2. Extended attributes: docker export carries security.capability only; ctrfs every
    #    attribute but overlayfs' own trusted.overlay.* (here the user.ctrfs the seed set).
    suid = f"{d}/tree/suid".lstrip("/")
    cap = "SCHILY.xattr.security.capability"
    assert theirs[suid]["xattrs"] == {cap: mine[suid]["xattrs"][cap]}  # type: ignore[index]
    assert mine[suid]["xattrs"] == {**theirs[suid]["xattrs"], "SCHILY.xattr.user.ctrfs": "note"}  # type: ignore[dict-item]
    mine[suid]["xattrs"] = theirs[suid]["xattrs"]
    assert set(mine) == set(theirs)
    diffs = {k: (mine[k], theirs[k]) for k in theirs if mine[k] != theirs[k]}
    assert not diffs, list(diffs.items())[:3]


def test_export_stdout_and_terminal_refusal(docker_shellless: RunningContainer) -> None:
    tar = ctrfs("export", docker_shellless.target).stdout
    names = set(_members(tar))
    assert {"app", "etc/passwd", "etc/os-release", "var/log/app.log"} <= names
    assert not any(n.startswith(("/", "../")) or "/../" in n for n in names)
    # stdout a terminal: no tar written to it, a usage error saying what to do (cp - likewise)
    for argv, hint in ((["export", docker_shellless.target], "-o FILE"),
                       (["cp", f"{docker_shellless.target}:/etc", "-"], "redirect stdout")):
        rc, shown, err = _on_a_terminal(*argv)
        assert rc == 2 and hint in err and "terminal" in err and err.count("\n") == 1, (argv, err)
        assert shown == b"", (argv, shown[:80])


def _on_a_terminal(*argv: str) -> tuple[int, bytes, str]:
    """ctrfs with its stdout on a pseudo-terminal: exit status, what reached the terminal, stderr."""
    import pty

    leader, follower = pty.openpty()
    shown = bytearray()

    def read() -> None:  # the terminal is read as it is written, or a tar would fill it
        try:
            while chunk := os.read(leader, 65536):
                shown.extend(chunk)
        except OSError:  # EIO once the follower side is closed
            pass

    reader = threading.Thread(target=read, daemon=True)
    try:
        p = subprocess.Popen([sys.executable, "-m", "ctrfs", *argv], stdout=follower,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        os.close(follower)
        reader.start()
        _, err = p.communicate(timeout=60)
        reader.join(10)
    finally:
        os.close(leader)
    return p.returncode, bytes(shown), err.decode(errors="replace")


# (a target gone mid-operation: tests/security/test_rootfs_attacks.py, case 16)


def test_help_has_examples() -> None:
    for cmd in ("ls", "cat", "stat", "find", "grep", "tail", "du", "cp", "export"):
        out = ctrfs(cmd, "--help").stdout.decode()
        assert "Examples:" in out and f"ctrfs {cmd}" in out.split("Examples:")[1]


def test_not_root_is_permission_denied(seeded) -> None:
    c, d = seeded
    for argv in (["cat", f"pid://{c.pid}:{d}/tree/hello.txt"], ["ls", f"{c.target}:{d}"]):
        res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              sys.executable, "-m", "ctrfs", *argv], capture_output=True, timeout=60)
        err = res.stderr.decode()
        assert res.returncode == 4 and "permission denied" in err and err.count("\n") == 1, err
        assert res.stdout == b""
