"""Path resolution inside a root: openat2 and the user-space walker must behave the same.

The root is a directory under tmp_path (DirRoot); docs/security.md's cases that do not need a real
container run here on both resolvers. The same cases against real containers are in
tests/security/.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import subprocess

import pytest

from ctrfs.errors import CtrfsError, NotFound, UnsafePath
from ctrfs.rootfs import NotRegularFile
from ctrfs.rootfs.fd import DirRoot
from ctrfs.rootfs.resolve import SYMLINK_BUDGET, resolve_openat2, resolve_walk


@pytest.fixture(params=["openat2", "fallback"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def tree(tmp_path):
    """tmp_path/outside holds 'host' secrets; tmp_path/root is the container root."""
    outside = tmp_path / "outside"
    (outside / "etc").mkdir(parents=True)
    (outside / "etc" / "shadow").write_text("HOST SHADOW\n")
    (outside / "etc" / "passwd").write_text("HOST PASSWD\n")
    (outside / "shadow").write_text("HOST SHADOW TOP\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "shadow").write_text("CONTAINER SHADOW\n")
    (root / "shadow").write_text("CONTAINER TOP SHADOW\n")
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "file").write_bytes(b"hello\n")
    return root


def mkroot(path, mode: str) -> DirRoot:
    return DirRoot(path, target="t", fallback=(mode == "fallback"))


def read(root: DirRoot, path: str) -> bytes:
    with root.open_file(path) as f:
        return f.read()


def test_plain_read_and_stat(tree, mode):
    with mkroot(tree, mode) as r:
        assert read(r, "/dir/file") == b"hello\n"
        assert read(r, "dir/file") == b"hello\n"  # relative = from the root
        assert r.stat("/dir/file").st_size == 6
        assert stat.S_ISDIR(r.stat("/dir").st_mode)
        assert stat.S_ISDIR(r.stat("/").st_mode)
        assert os.path.samestat(r.stat("/"), os.stat(tree))


def test_case1_etc_symlinked_to_root(tree, mode):
    # docs/security.md 1: /etc -> / then /etc/shadow → the container's own /shadow
    (tree / "etc" / "shadow").unlink()
    (tree / "etc" / "passwd").unlink()
    (tree / "etc").rmdir()
    os.symlink("/", tree / "etc")
    with mkroot(tree, mode) as r:
        assert read(r, "/etc/shadow") == b"CONTAINER TOP SHADOW\n"
        (tree / "shadow").unlink()
        with pytest.raises(NotFound):
            read(r, "/etc/shadow")


def test_case2_relative_escape_link(tree, mode):
    os.symlink("../../../../..", tree / "dir" / "a")
    with mkroot(tree, mode) as r:
        assert read(r, "/dir/a/etc/passwd").startswith(b"root:x:0:0")
        assert os.path.samestat(r.stat("/dir/a"), os.stat(tree))


def test_case3_dotdot_clamped(tree, mode):
    with mkroot(tree, mode) as r:
        assert read(r, "../../../etc/shadow") == b"CONTAINER SHADOW\n"
        assert read(r, "/../../../etc/shadow") == b"CONTAINER SHADOW\n"
        assert read(r, "/dir/sub/../../../../etc/shadow") == b"CONTAINER SHADOW\n"


@pytest.mark.parametrize("links", [
    {"self": "self"},
    {"aself": "/aself"},
    {"c1": "c2", "c2": "c1"},
    {"d1": "/dir/../d2/x", "d2": "d1"},
])
def test_case4_loops(tree, mode, links):
    for name, target in links.items():
        os.symlink(target, tree / name)
    with mkroot(tree, mode) as r:
        for name in links:
            with pytest.raises(CtrfsError, match="too many levels of symbolic links"):
                read(r, name)
            # not following the last component is fine: it is a symlink
            assert stat.S_ISLNK(r.lstat(name).st_mode)


def test_case4_chain_budget(tree, mode):
    # A chain just within the kernel's budget resolves; one link more is a clear error.
    n = SYMLINK_BUDGET
    for i in range(n + 1):
        os.symlink(f"l{i + 1}" if i < n else "dir/file", tree / f"l{i}")
    with mkroot(tree, mode) as r:
        assert read(r, "l1") == b"hello\n"  # 40 links
        with pytest.raises(CtrfsError, match="too many levels"):
            read(r, "l0")  # 41 links


def test_case5_dangling_creates_nothing(tree, mode):
    os.symlink("/nowhere/at/all", tree / "dangling")
    os.symlink("missing", tree / "dangling2")
    before = sorted(os.listdir(tree))
    with mkroot(tree, mode) as r:
        for p in ("dangling", "dangling2", "dangling/x", "/no/such"):
            with pytest.raises(NotFound):
                r.stat(p)
            with pytest.raises(NotFound):
                r.open_file(p)
        assert r.readlink("dangling") == b"/nowhere/at/all"
    assert sorted(os.listdir(tree)) == before


@pytest.mark.parametrize("suffix", ["/", "/.", "/..", "/x"])
def test_case6_trailing_after_file(tree, mode, suffix):
    with mkroot(tree, mode) as r:
        with pytest.raises(CtrfsError, match="not a directory") as ei:
            r.stat("/dir/file" + suffix)
        assert not isinstance(ei.value, NotFound)


def test_trailing_slash_follows_link_to_dir(tree, mode):
    os.symlink("dir", tree / "ldir")
    with mkroot(tree, mode) as r:
        assert stat.S_ISLNK(r.lstat("/ldir").st_mode)
        assert stat.S_ISDIR(r.lstat("/ldir/").st_mode)
        assert stat.S_ISDIR(r.lstat("/ldir/.").st_mode)


@pytest.fixture
def procfs_in_tree(tree):
    """A real procfs mounted inside the root: magic links such as proc/self/root exist."""
    (tree / "proc").mkdir()
    subprocess.run(["mount", "-t", "proc", "proc", str(tree / "proc")], check=True)
    try:
        yield tree
    finally:
        subprocess.run(["umount", "-l", str(tree / "proc")], check=True)


@pytest.mark.root
@pytest.mark.parametrize("path", [
    "/proc/self/root/etc/passwd",
    "/proc/{child}/root/etc/passwd",
    "/proc/self/cwd",
    "/proc/self/fd/0",
    "/proc/thread-self/root/etc",
    "/via/etc/passwd",  # via -> /proc/self/root
])
def test_case7_magic_links_refused(procfs_in_tree, mode, path):
    tree = procfs_in_tree
    os.symlink("/proc/self/root", tree / "via")
    child = subprocess.Popen(["sleep", "30"])
    try:
        with mkroot(tree, mode) as r:
            with pytest.raises(UnsafePath, match="magic link"):
                r.stat(path.format(child=child.pid))
    finally:
        child.kill()
        child.wait()
    with mkroot(tree, mode) as r:
        # ordinary procfs symlinks and files still work
        assert stat.S_ISLNK(r.lstat("/proc/self").st_mode)
        assert read(r, "/proc/self/comm")  # /proc/self → our pid, a plain symlink
        assert stat.S_ISLNK(r.lstat("/proc/self/root").st_mode)  # the link itself, not followed


def test_case9_odd_names_are_bytes(tree, mode):
    odd = [b"*", b"file*", b"-rf", b"new\nline", b"bad\xff\xfe", b"\x1b[31mred"]
    for n in odd:
        with open(os.path.join(os.fsencode(tree), b"dir", n), "wb") as f:
            f.write(n)
    with mkroot(tree, mode) as r:
        names = {os.fsencode(e.name) for e in r.scandir("/dir")}
        assert set(odd) <= names
        for n in odd:
            assert read(r, os.fsencode(b"/dir/" + n)) == n  # type: ignore[arg-type]
            assert read(r, "/dir/" + os.fsdecode(n)) == n
        # a glob is a name, not a pattern
        with pytest.raises(NotFound):
            r.stat("/dir/fil*")


@pytest.mark.root
def test_case10_special_files_never_opened(tree, mode):
    os.mkfifo(tree / "fifo")
    os.mknod(tree / "zero", 0o666 | stat.S_IFCHR, os.makedev(1, 5))
    os.mknod(tree / "loop0", 0o660 | stat.S_IFBLK, os.makedev(7, 0))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tree / "sock"))
    try:
        with mkroot(tree, mode) as r:
            for name, kind in (("fifo", "fifo"), ("zero", "character device"),
                               ("loop0", "block device"), ("sock", "socket"), ("dir", "directory")):
                with pytest.raises(NotRegularFile, match=kind) as ei:
                    r.open_file(name)  # a FIFO with no writer would block here if opened
                assert ei.value.kind == kind
                assert ei.value.path == "/" + name
            for e in r.scandir("/"):
                if e.name in ("fifo", "zero", "sock"):
                    with pytest.raises(NotRegularFile):
                        e.open()
    finally:
        sock.close()


@pytest.mark.root
def test_case11_passwd_to_dev_zero(tree, mode):
    (tree / "etc" / "passwd").unlink()
    os.symlink("/dev/zero", tree / "etc" / "passwd")
    with mkroot(tree, mode) as r:
        with pytest.raises(NotFound):  # the container has no /dev/zero: never the host's
            r.open_file("/etc/passwd")
        (tree / "dev").mkdir()
        os.mknod(tree / "dev" / "zero", 0o666 | stat.S_IFCHR, os.makedev(1, 5))
        with pytest.raises(NotRegularFile, match="character device"):
            r.open_file("/etc/passwd")


def test_readlink_and_lstat(tree, mode):
    os.symlink("dir/file", tree / "rel")
    with mkroot(tree, mode) as r:
        assert r.readlink("/rel") == b"dir/file"
        assert stat.S_ISLNK(r.lstat("/rel").st_mode)
        assert stat.S_ISREG(r.stat("/rel").st_mode)
        with pytest.raises(CtrfsError, match="not a symbolic link"):
            r.readlink("/dir/file")


def test_empty_path_is_not_found(tree, mode):
    with mkroot(tree, mode) as r:
        with pytest.raises(NotFound):
            r.stat("")


def test_resolvers_agree_on_fd_target(tree):
    os.symlink("../..//dir/./sub/..", tree / "dir" / "up")
    fd = os.open(tree, os.O_PATH)
    try:
        for path in (b"/dir/up/file", b"dir/up", b"/", b"/dir/sub/"):
            a = resolve_openat2(fd, path)
            b = resolve_walk(fd, path)
            try:
                assert os.path.samestat(os.fstat(a), os.fstat(b))
            finally:
                os.close(a)
                os.close(b)
    finally:
        os.close(fd)


def test_env_forces_fallback(tree, monkeypatch):
    calls = []
    import ctrfs.rootfs.resolve as res

    real = res.resolve_walk
    monkeypatch.setattr(res, "resolve_walk", lambda *a, **k: calls.append(a) or real(*a, **k))
    monkeypatch.setenv("CTRFS_FORCE_FALLBACK", "1")
    with DirRoot(tree) as r:
        assert read(r, "/dir/file") == b"hello\n"
    assert calls


def test_enosys_falls_back_and_other_errors_do_not(tree, monkeypatch):
    import ctrfs.rootfs.resolve as res

    def nosys(*a, **k):
        raise OSError(errno.ENOSYS, "no openat2")

    monkeypatch.setattr(res, "_openat2_missing", False)
    monkeypatch.setattr(res._calls, "openat2", nosys)
    with DirRoot(tree) as r:
        assert read(r, "/dir/file") == b"hello\n"
    assert res._openat2_missing

    def denied(*a, **k):
        raise OSError(errno.EACCES, "denied")

    monkeypatch.setattr(res, "_openat2_missing", False)
    monkeypatch.setattr(res._calls, "openat2", denied)
    from ctrfs.errors import AccessDenied

    with DirRoot(tree) as r, pytest.raises(AccessDenied):
        r.stat("/dir/file")


def test_no_fd_leaks(tree, mode):
    os.symlink("/", tree / "etc" / "loop")
    os.symlink("self", tree / "self")

    def fds() -> set[str]:
        return set(os.listdir("/proc/self/fd"))

    before = fds()
    for _ in range(3):
        with mkroot(tree, mode) as r:
            read(r, "/etc/loop/etc/loop/dir/file")
            r.stat("/dir/")
            for p in ("/self", "/missing", "/dir/file/"):
                with pytest.raises(CtrfsError):
                    r.stat(p)
            list(r.walk("/"))
            list(r.scandir("/dir"))
    assert fds() == before
