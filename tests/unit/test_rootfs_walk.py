"""Walks by fd: complete, streaming, bounded in fds and depth, staying inside the root."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

import ctrfs.rootfs.fd as fdmod
from ctrfs.errors import NotFound
from ctrfs.rootfs import NotRegularFile, WalkWarning
from ctrfs.rootfs.fd import DirRoot


@pytest.fixture(params=["openat2", "fallback"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


def mkroot(path, mode: str) -> DirRoot:
    return DirRoot(path, target="t", fallback=(mode == "fallback"))


def host_walk(top: str) -> set[str]:
    """Every path below ``top`` as the container would name it, via os.walk (no following)."""
    out = {"/"}
    for dirpath, dirnames, filenames in os.walk(top):
        rel = os.path.relpath(dirpath, top)
        base = "/" if rel == "." else "/" + rel
        for n in dirnames + filenames:
            out.add(base.rstrip("/") + "/" + n)
    return out


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "a" / "f1").write_text("one")
    (root / "a" / "b" / "f2").write_text("two")
    (root / "a" / "b" / "c" / "f3").write_text("three")
    os.symlink("/", root / "a" / "toroot")  # never followed by a walk
    os.symlink("../..", root / "a" / "b" / "up")
    os.link(root / "a" / "f1", root / "hard")
    (root / "empty").mkdir()
    return root


def test_walk_matches_os_walk(tree, mode):
    with mkroot(tree, mode) as r:
        entries = list(r.walk("/"))
    assert {e.path for e in entries} == host_walk(str(tree))
    top = entries[0]
    assert top.path == "/" and top.depth == 0 and top.is_dir()
    by = {e.path: e for e in entries}
    assert by["/a/b/c/f3"].depth == 4
    assert by["/a/toroot"].is_symlink()
    # pre-order: a directory comes before what it holds
    order = [e.path for e in entries]
    assert order.index("/a") < order.index("/a/b") < order.index("/a/b/c/f3")


def test_walk_entries_open_and_readlink(tree, mode):
    with mkroot(tree, mode) as r:
        seen = {}
        for e in r.walk("/a"):
            if e.is_file():
                with e.open() as f:
                    seen[e.path] = f.read()
            elif e.is_symlink():
                seen[e.path] = e.readlink()
            elif e.is_dir() and e.depth > 0:
                with pytest.raises(NotRegularFile):
                    e.open()
    assert seen == {"/a/f1": b"one", "/a/b/f2": b"two", "/a/b/c/f3": b"three",
                    "/a/toroot": b"/", "/a/b/up": b"../.."}


def test_walk_max_depth_and_start(tree, mode):
    with mkroot(tree, mode) as r:
        assert {e.path for e in r.walk("/a", max_depth=1)} == {
            "/a", "/a/b", "/a/f1", "/a/toroot"}
        assert [e.path for e in r.walk("/a/f1")] == ["/a/f1"]
        assert [e.path for e in r.walk("/a", max_depth=0)] == ["/a"]
        # a symlink as start: followed by default (inside the root), kept with follow=False
        names = {e.path for e in r.walk("/a/b/up", max_depth=1)}
        assert "/a/b/up/a" in names and "/a/b/up/hard" in names
        assert [e.path for e in r.walk("/a/b/up", follow=False)] == ["/a/b/up"]
        with pytest.raises(NotFound):
            list(r.walk("/nope"))


def test_deep_tree_bounded_fds(tmp_path, mode, monkeypatch):
    # Deeper than the streaming levels: the walk switches to one moving fd and climbs back
    # with checked "..". 300 levels, streaming cut at 5 to exercise it cheaply.
    monkeypatch.setattr(fdmod, "STREAM_LEVELS", 5)
    root = tmp_path / "deep"
    p = root
    for i in range(300):
        p = p / f"d{i}"
    os.makedirs(p)
    (p / "leaf").write_text("x")
    (root / "d0" / "side").write_text("y")
    max_fds = 0
    with mkroot(root, mode) as r:
        paths = []
        for e in r.walk("/"):
            paths.append(e.path)
            max_fds = max(max_fds, len(os.listdir("/proc/self/fd")))
    assert set(paths) == host_walk(str(root))
    assert len(paths) == 303
    base = len(os.listdir("/proc/self/fd"))
    assert max_fds <= base + 2 * 5 + 6


def test_directory_moved_out_mid_walk_stays_inside(tmp_path, mode, monkeypatch):
    # docs/security.md 13: a directory moved out of the root while the walk stands in it must not
    # lead the walk (via "..") into what lies outside.
    monkeypatch.setattr(fdmod, "STREAM_LEVELS", 2)
    outside = tmp_path / "outside"
    (outside / "SECRET_DIR").mkdir(parents=True)
    (outside / "SECRET").write_text("host")
    root = tmp_path / "root"
    deep = root / "a" / "b" / "c" / "d"
    deep.mkdir(parents=True)
    (deep / "x").write_text("x")
    (root / "a" / "b" / "c" / "later").write_text("l")
    warnings: list[WalkWarning] = []
    seen = []
    with mkroot(root, mode) as r:
        for e in r.walk("/", on_warning=warnings.append):
            seen.append(e.name)
            if e.path == "/a/b/c/d/x":
                os.rename(root / "a" / "b" / "c" / "d", outside / "d")
    assert "SECRET" not in seen and "SECRET_DIR" not in seen
    assert any("moved" in w.message for w in warnings), warnings


def test_entry_replaced_after_listing_is_not_opened(tree, mode):
    with mkroot(tree, mode) as r:
        for e in r.walk("/a", max_depth=1):
            if e.name == "f1":
                os.unlink(tree / "a" / "f1")
                os.symlink("/etc/shadow", tree / "a" / "f1")
                with pytest.raises(NotFound):
                    e.open()


def test_vanished_entries_warn(tree, mode):
    warnings: list[WalkWarning] = []
    with mkroot(tree, mode) as r:
        out = []
        for e in r.walk("/", on_warning=warnings.append):
            out.append(e.path)
            if e.path == "/a/b":  # listed, then removed before the walk enters it
                subprocess.run(["rm", "-rf", str(tree / "a" / "b")], check=True)
    assert "/a/b" in out and "/a/b/c" not in out
    assert [w.path for w in warnings] == ["/a/b"]
    assert "vanished" in warnings[0].message


@pytest.mark.root
def test_mount_points_yielded_not_entered(tree, mode):
    mnt = tree / "a" / "vol"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mnt)], check=True)
    try:
        (mnt / "inside").write_text("v")
        with mkroot(tree, mode) as r:
            by = {e.path: e for e in r.walk("/")}
            assert by["/a/vol"].mount_point and by["/a/vol"].is_dir()
            assert "/a/vol/inside" not in by
            assert not by["/a/f1"].mount_point
            by2 = {e.path: e for e in r.walk("/", one_filesystem=False)}
            assert "/a/vol/inside" in by2
            assert {e.name: e.mount_point for e in r.scandir("/a")}["vol"] is True
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_scandir_stat_is_lstat(tree, mode):
    with mkroot(tree, mode) as r:
        ents = {e.name: e for e in r.scandir("/a")}
    assert set(ents) == {"b", "f1", "toroot"}
    assert stat.S_ISLNK(ents["toroot"].stat.st_mode)
    assert ents["f1"].stat.st_nlink == 2


@pytest.mark.root
def test_mount_points_without_statx_mnt_id(tree, mode, monkeypatch):
    # kernels before 5.8 have no STATX_MNT_ID: directories on another st_dev are mounts
    monkeypatch.setattr(fdmod._calls, "mount_id", lambda fd, name=b"": None)
    mnt = tree / "a" / "vol"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mnt)], check=True)
    try:
        (mnt / "inside").write_text("v")
        with mkroot(tree, mode) as r:
            by = {e.path: e for e in r.walk("/")}
        assert by["/a/vol"].mount_point and "/a/vol/inside" not in by
        assert not by["/a/f1"].mount_point
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


@pytest.mark.root
def test_mount_point_is_the_mount_root_only(tree, mode):
    mnt = tree / "a" / "vol"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mnt)], check=True)
    try:
        (mnt / "sub").mkdir()
        (mnt / "sub" / "f").write_text("v")
        with mkroot(tree, mode) as r:
            by = {e.path: e for e in r.walk("/", one_filesystem=False)}
        assert by["/a/vol"].mount_point
        assert not by["/a/vol/sub"].mount_point and not by["/a/vol/sub/f"].mount_point
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)
