"""Bounded walks of layer directories (overlay._fs.TreeWalk): a tree far deeper than the fd
limit is counted, diffed and walked in full, in a process limited to 64 fds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ctrfs.overlay import _fs

pytestmark = pytest.mark.root

DEPTH = 3000


@pytest.fixture
def work(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A scratch dir removed with rm -rf: pytest's own cleanup recurses once per level."""
    d = tmp_path / "w"
    d.mkdir()
    yield d
    subprocess.run(["rm", "-rf", str(d)], check=True)


def _deep(top: Path, depth: int, every: int) -> None:
    """top/d/d/.../d (``depth`` levels) with a file "f" every ``every`` levels (listed after
    "d", so the walk must come back to those levels) and "bottom" at the end."""
    top.mkdir(parents=True)
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(depth):
            os.mkdir("d", dir_fd=fd)
            if i % every == 0:
                os.close(os.open("f", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
            nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        os.close(os.open("bottom", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
    finally:
        os.close(fd)


_CHILD = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
from ctrfs.overlay.diff import changes
from ctrfs.overlay.layers import Layer, LayerStack, count_layer
from ctrfs.overlay.root import OverlayRoot
up, low = sys.argv[1], sys.argv[2]
stack = LayerStack("t", "overlay", None, [Layer(0, "upper", up), Layer(1, "image", low)])
count_layer(stack, stack.layers[0])
warnings = []
with OverlayRoot(stack) as r:
    walked = [e.path for e in r.walk("/", on_warning=warnings.append)]
diffs = {sem: [str(c) for c in changes(stack, semantics=sem)]
         for sem in ("docker", "podman", "moby-native")}
print(json.dumps({"files": stack.layers[0].files, "dirs": stack.layers[0].dirs,
                  "walked": walked, "diffs": diffs, "warnings": len(warnings)}))
"""


@pytest.mark.parametrize("every", [1, 97])
def test_deep_tree_under_64_fds(work: Path, every: int) -> None:
    up, low = work / "up", work / "low"
    _deep(up, DEPTH, every)
    (low / "etc").mkdir(parents=True)
    (low / "etc" / "os-release").write_text("x\n")
    res = subprocess.run([sys.executable, "-c", _CHILD, str(up), str(low)], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    nfiles = len(range(0, DEPTH, every)) + 1
    assert (out["files"], out["dirs"]) == (nfiles, DEPTH)
    deepest = "/d" * DEPTH + "/bottom"
    walked = out["walked"]
    assert len(walked) == 1 + DEPTH + nfiles + 2  # "/", the d's, the files, /etc, os-release
    assert len(set(walked)) == len(walked)
    assert deepest in walked and "/etc/os-release" in walked
    assert sum(1 for p in walked if p.endswith("/f")) == nfiles - 1
    for sem, lines in out["diffs"].items():
        assert len(lines) == DEPTH + nfiles, sem
        assert "A " + deepest in lines, sem
        assert lines[0] == "A /d", sem
    assert out["warnings"] == 0


class _Counting(_fs.FdOps):
    """Lists names in order ("d" before "f"): every level has an entry left after its subtree."""

    def listing(self, state: int) -> list[bytes]:  # type: ignore[override]
        return sorted((os.fsencode(n) for n in os.listdir(state)), reverse=True)

    def __init__(self) -> None:
        self.opened = 0
        self.peak = 0

    def open_child(self, parent: int, name: bytes) -> int | None:
        fd = super().open_child(parent, name)
        if fd is not None:
            self.opened += 1
            self.peak = max(self.peak, len(os.listdir("/proc/self/fd")))
        return fd


def test_moved_directory_is_detected(work: Path) -> None:
    """A directory that left the window is re-opened by name: if another directory took that
    name meanwhile, the walk reports it instead of walking the impostor."""
    top = work / "t"
    _deep(top, 200, 1)
    root = os.open(top, _fs.O_DIR_READ)
    ops = _Counting()
    walk = _fs.TreeWalk(ops, root, budget=8)
    before = len(os.listdir("/proc/self/fd"))
    moved = None
    swapped = ""
    try:
        while True:
            try:
                item = walk.next()
            except _fs.Moved as err:
                moved = err
                walk.skip()
                continue
            if item is None:
                break
            fr, name, s = item
            if name == b"bottom":
                # swap a directory closed by the walk (out of the window, not an anchor) that
                # still has its "f" to visit for a new, empty one
                gone = next(f for f in walk.frames if f.state is None and f.pending)
                swapped = os.fsdecode(gone.path())
                os.rename(str(top) + swapped, top / "old")
                os.mkdir(str(top) + swapped)
            if name == b"d":
                walk.enter(name)
    finally:
        walk.close()
        os.close(root)
    assert moved is not None and moved.path == swapped
    assert ops.peak - before <= 8 + 2
    assert len(os.listdir("/proc/self/fd")) == before - 1
