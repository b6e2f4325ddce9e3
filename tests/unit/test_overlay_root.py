"""OverlayRoot (offline merged view) against docs/security.md's path cases and the Root contract."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ctrfs.errors import CtrfsError, NotFound
from ctrfs.overlay.layers import Layer, LayerStack
from ctrfs.overlay.root import OverlayRoot
from ctrfs.rootfs.base import NotRegularFile

pytestmark = pytest.mark.root


def whiteout(p: Path) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(p, 0o600 | 0o020000, os.makedev(0, 0))


def write(p: Path, data: bytes = b"x\n") -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


@pytest.fixture
def layers(tmp_path: Path) -> tuple[Path, Path, Path]:
    up, l1, l2 = tmp_path / "up", tmp_path / "l1", tmp_path / "l2"
    for d in (up, l1, l2):
        d.mkdir()
    return up, l1, l2


def root_of(up: Path, *lowers: Path) -> OverlayRoot:
    ls = [Layer(index=0, role="upper", path=str(up))]
    ls += [Layer(index=i + 1, role="image", path=str(p)) for i, p in enumerate(lowers)]
    return OverlayRoot(LayerStack(target="stopped", fstype="overlay", source="overlay", layers=ls))


def test_security_path_cases(layers: tuple[Path, Path, Path]) -> None:
    up, l1, l2 = layers
    write(l2 / "shadow", b"the container's /shadow\n")
    (l2 / "etc").mkdir()
    (l1 / "etc2").symlink_to("/")                                # case 1: /etc2 -> /
    (l1 / "a").symlink_to("../../../../..")                      # case 2
    (l1 / "self").symlink_to("self")                             # case 4
    (l1 / "dangling").symlink_to("/nowhere")                     # case 5
    write(l1 / "file")
    os.mkfifo(l1 / "fifo")                                       # case 10
    (l1 / "passwd").symlink_to("/dev/zero")                      # case 11
    with root_of(up, l1, l2) as r:
        assert r.open_file("/etc2/shadow").read() == b"the container's /shadow\n"
        with pytest.raises(NotFound):
            r.open_file("/etc2/etc/shadow")  # never the host's
        assert r.open_file("a/shadow").read() == b"the container's /shadow\n"
        assert r.open_file("../../../shadow").read() == b"the container's /shadow\n"  # case 3
        with pytest.raises(CtrfsError, match="symbolic links"):
            r.stat("/self")
        with pytest.raises(NotFound):
            r.stat("/dangling")
        assert r.readlink("/dangling") == b"/nowhere"
        for bad in ("/file/", "/file/.", "/file/.."):               # case 6
            with pytest.raises(CtrfsError):
                r.stat(bad)
        with pytest.raises(NotRegularFile):
            r.open_file("/fifo")
        with pytest.raises(NotFound):
            r.open_file("/passwd")  # /dev/zero is not in the layers: nothing is opened
        assert not list(up.iterdir())  # read-only: nothing created anywhere


def test_merged_view_and_walk(layers: tuple[Path, Path, Path]) -> None:
    up, l1, l2 = layers
    write(l2 / "d/old", b"old\n")
    write(l2 / "d/keep", b"keep\n")
    write(l1 / "d/old", b"newer\n")
    whiteout(up / "d/keep")
    write(up / "d/top")
    write(l2 / "o/hidden")
    write(up / "o/vis")
    os.setxattr(up / "o", "trusted.overlay.opaque", b"y")
    with root_of(up, l1, l2) as r:
        assert r.open_file("/d/old").read() == b"newer\n"
        assert sorted(e.name for e in r.scandir("/d")) == ["old", "top"]
        walked = [(e.path, e.depth) for e in r.walk("/")]
        assert walked[0] == ("/", 0)
        assert sorted(p for p, _ in walked[1:]) == ["/d", "/d/old", "/d/top", "/o", "/o/vis"]
        for e in r.walk("/d"):  # an entry is usable while its walk stands there
            if e.name == "old":
                assert e.open().read() == b"newer\n"
        assert "trusted.overlay.opaque" not in next(
            e for e in r.scandir("/") if e.name == "o").xattrs()
        assert [e.path for e in r.walk("/", max_depth=1)] == ["/", "/d", "/o"]


def test_deep_tree_and_fds(layers: tuple[Path, Path, Path]) -> None:
    up, l1, l2 = layers
    d = up
    for _ in range(200):
        d = d / "n"
    d.mkdir(parents=True)
    write(d / "leaf", b"deep\n")
    write(l2 / "x")
    before = set(os.listdir("/proc/self/fd"))
    with root_of(up, l1, l2) as r:
        assert sum(1 for _ in r.walk("/")) == 1 + 200 + 1 + 1
        for _ in range(50):
            r.stat("/" + "n/" * 200 + "leaf")
            r.open_file("/x").close()
            list(r.scandir("/"))
    assert set(os.listdir("/proc/self/fd")) == before


def test_check_alive_notices_removed_layers(layers: tuple[Path, Path, Path]) -> None:
    import shutil

    from ctrfs.errors import ProcessGone

    up, l1, l2 = layers
    write(up / "f")
    with root_of(up, l1, l2) as r:
        r.check_alive()
        shutil.rmtree(up)  # what `docker rm` does to the container's layer
        with pytest.raises(ProcessGone, match="removed"):
            r.check_alive()
