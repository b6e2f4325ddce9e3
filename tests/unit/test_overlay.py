"""Overlay engine on layer directories built under tmp_path: merge rules, diff rules, safety.

The runtime tests compare against the real docker/podman; these pin the edge cases a real
container rarely produces (lower-layer whiteouts under opaque dirs, hostile symlinks in layers,
deep nesting) and check the userland merge against the kernel's own overlay mount.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctrfs.errors import CtrfsError, NotFound
from ctrfs.overlay.diff import DOCKER, MOBY_NATIVE, PODMAN, _MountPoints, changes
from ctrfs.overlay.layers import Layer, LayerStack
from ctrfs.overlay.merge import MergedView
from ctrfs.overlay.which import which

# Whiteouts are character devices 0/0 (mknod needs CAP_MKNOD) and opaque dirs carry a
# trusted.* xattr (CAP_SYS_ADMIN): layer directories can only be faked as root.
pytestmark = pytest.mark.root


def whiteout(p: Path) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(p, 0o600 | 0o020000, os.makedev(0, 0))


def opaque(p: Path) -> None:
    os.setxattr(p, "trusted.overlay.opaque", b"y")


def write(p: Path, data: bytes = b"x\n") -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def make_stack(tmp: Path, n_lower: int) -> tuple[LayerStack, Path, list[Path]]:
    upper = tmp / "upper"
    upper.mkdir()
    lowers = []
    for i in range(n_lower):
        d = tmp / f"l{i}"
        d.mkdir()
        lowers.append(d)
    layers = [Layer(index=0, role="upper", path=str(upper))]
    layers += [Layer(index=i + 1, role="image", path=str(d)) for i, d in enumerate(lowers)]
    return LayerStack(target="t", fstype="overlay", source="overlay", layers=layers), upper, lowers


def same_times(dst: Path, src: Path) -> None:
    st = src.stat()
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


def diff_set(stack: LayerStack, semantics: str) -> set[str]:
    return {str(c) for c in changes(stack, semantics=semantics)}


def test_merge_rules(tmp_path: Path) -> None:
    stack, up, (l1, l2) = make_stack(tmp_path, 2)
    write(l2 / "d/only-bottom")
    write(l2 / "d/shadowed", b"bottom\n")
    write(l1 / "d/shadowed", b"middle\n")
    write(l2 / "gone")
    whiteout(l1 / "gone")
    write(l2 / "op/old")
    write(l1 / "op/new")
    opaque(l1 / "op")
    write(up / "d/top")
    view = MergedView(stack)
    try:
        names = [n for n, _ in view.entries(view.lookup("/d"))]
        assert names == [b"only-bottom", b"shadowed", b"top"]
        node = view.lookup("/d/shadowed")
        assert node.layer == 1
        with pytest.raises(NotFound):
            view.lookup("/gone")
        assert [n for n, _ in view.entries(view.lookup("/op"))] == [b"new"]
        with pytest.raises(NotFound):
            view.lookup("/op/old")
        with pytest.raises(CtrfsError, match="not a directory"):
            view.lookup("/d/top/")
    finally:
        view.close()


def test_merge_symlinks_stay_inside(tmp_path: Path) -> None:
    stack, up, (l1,) = make_stack(tmp_path, 1)
    (l1 / "etc").mkdir()
    write(l1 / "shadow", b"container's own\n")
    (l1 / "etc/link").symlink_to("/")                # absolute: the container root
    (l1 / "up").symlink_to("../../../../../../..")    # climbs: clamped at the root
    (l1 / "loop").symlink_to("loop")
    view = MergedView(stack)
    try:
        node = view.lookup("/etc/link/shadow")
        assert node.layer == 1 and node.stat.st_size == len(b"container's own\n")
        assert view.lookup("/up/shadow").layer == 1
        with pytest.raises(NotFound):
            view.lookup("/up/etc/passwd")  # never the host's /etc/passwd
        with pytest.raises(CtrfsError, match="symbolic links"):
            view.lookup("/loop/x")
    finally:
        view.close()


def test_merge_matches_kernel_overlay(tmp_path: Path) -> None:
    """The userland merge lists what a real overlay mount of the same layers lists."""
    stack, up, (l1, l2) = make_stack(tmp_path, 2)
    write(l2 / "a/b/c")
    write(l2 / "a/keep")
    write(l1 / "a/b/d")
    whiteout(l1 / "a/keep")
    write(l2 / "o/x")
    write(l1 / "o/y")
    opaque(l1 / "o")
    write(up / "a/new")
    whiteout(up / "a/b/c")
    work, merged = tmp_path / "work", tmp_path / "merged"
    work.mkdir()
    merged.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={l1}:{l2},upperdir={up},workdir={work}", str(merged)], check=True)
    try:
        kernel = sorted(str(p.relative_to(merged)) for p in merged.rglob("*"))
    finally:
        subprocess.run(["umount", str(merged)], check=True)
    view = MergedView(stack)
    ours = []
    try:
        todo = [view.lookup("/")]
        while todo:
            node = todo.pop()
            for _, child in view.entries(node):
                ours.append(os.fsdecode(child.path).lstrip("/"))
                if child.is_dir:
                    todo.append(view.lookup(child.path))
    finally:
        view.close()
    assert sorted(ours) == kernel


def test_diff_rules_per_runtime(tmp_path: Path) -> None:
    # The rules on hand-made layers; the same edge cases made by real containers are compared
    # with docker diff and podman diff in tests/runtime/test_diff.py (test_diff_edge_cases_*).
    stack, up, (l1, l2) = make_stack(tmp_path, 2)
    write(l2 / "etc/passwd")
    write(l2 / "etc/group")
    write(l2 / "dir/f")
    write(l2 / "wiped/f")
    whiteout(l1 / "wiped")
    write(up / "etc/passwd", b"changed\n")
    whiteout(up / "etc/group")
    same_times(up / "etc", l2 / "etc")  # a copied-up directory keeps its metadata
    write(up / "dir/g")
    opaque(up / "dir")
    write(up / "new/file")
    write(up / "wiped/h")  # recreated over a lower layer's whiteout
    both = {"C /etc", "C /etc/passwd", "D /etc/group", "A /dir/g", "A /new", "A /new/file",
            "A /wiped/h"}
    # naive (docker 20.10): the opaque dir hides f -> D /dir/f, /dir itself only C.
    assert diff_set(stack, DOCKER) == both | {"C /dir", "D /dir/f", "A /wiped"}
    # moby native: the opaque dir is D; l1's whiteout char device "exists" -> C /wiped.
    assert diff_set(stack, MOBY_NATIVE) == both | {"D /dir", "C /wiped"}
    # containers/storage: the lower whiteout ends the search -> A /wiped.
    assert diff_set(stack, PODMAN) == both | {"D /dir", "A /wiped"}


def test_diff_podman_hides_its_mount_points(tmp_path: Path) -> None:
    stack, up, (l1,) = make_stack(tmp_path, 1)
    (l1 / "etc").mkdir()
    write(up / "etc/hosts")
    write(up / "run/.containerenv")
    write(up / "run/other")
    assert diff_set(stack, PODMAN) == {"C /etc", "A /run/other"}


def test_diff_never_follows_lower_symlinks_to_the_host(tmp_path: Path) -> None:
    """A lower layer's absolute symlink is resolved inside that layer, not on the host."""
    stack, up, (l1,) = make_stack(tmp_path, 1)
    (l1 / "etc").symlink_to("/etc")  # on the host, /etc/passwd exists
    (up / "etc").mkdir()
    write(up / "etc/passwd")
    got = diff_set(stack, MOBY_NATIVE)
    assert "A /etc/passwd" in got  # not in the layer: added (moby would stat the host's)


def test_diff_deep_nesting_streams(tmp_path: Path) -> None:
    stack, up, (l1,) = make_stack(tmp_path, 1)
    depth = 300
    d = up
    for _ in range(depth):
        d = d / "d"
    d.mkdir(parents=True)
    out = list(changes(stack, semantics=DOCKER))
    assert len(out) == depth and out[-1].path == "/d" * depth


def test_diff_rejects_non_overlay(tmp_path: Path) -> None:
    stack = LayerStack(target="t", fstype="ext4", source="/dev/sda1", layers=[])
    with pytest.raises(CtrfsError, match="not overlay"):
        list(changes(stack))


def test_which_explains_hiding(tmp_path: Path) -> None:
    stack, up, (l1, l2) = make_stack(tmp_path, 2)
    write(l2 / "op/f")
    write(l2 / "file", b"old\n")
    write(l1 / "file", b"newer\n")
    (l1 / "op").mkdir()
    opaque(l1 / "op")
    whiteout(up / "file")
    res = which(stack, "/file")
    assert res.visible is None
    assert [(h.layer.index, h.type, h.state) for h in res.hits] == [
        (0, "whiteout", "deleted"), (1, "file", "hidden"), (2, "file", "hidden")]
    res = which(stack, "/op/f")
    assert res.visible is None
    assert [(h.layer.index, h.state) for h in res.hits] == [(2, "hidden")]
    assert "opaque" in res.hits[0].reason


def test_diff_does_not_enter_upper_symlinks(tmp_path: Path) -> None:
    """The upper dir is written by the container: a symlink there is an entry, never a path."""
    stack, up, (l1,) = make_stack(tmp_path, 1)
    (up / "hostetc").symlink_to("/etc")
    (up / "up").symlink_to("../../../../../../../..")
    for sem in (DOCKER, MOBY_NATIVE, PODMAN):
        rows = {c.path: c.type for c in changes(stack, semantics=sem)}
        assert rows == {"/hostetc": "symlink", "/up": "symlink"}


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_no_fd_leaks(tmp_path: Path) -> None:
    stack, up, (l1, l2) = make_stack(tmp_path, 2)
    write(l2 / "a/b/c")
    write(l1 / "a/b/d")
    opaque(l1 / "a")
    write(up / "a/b/e")
    whiteout(up / "a/b/d")
    for _ in range(2):  # the first round may open lazily-created module state
        before = _fds()
        for sem in (DOCKER, MOBY_NATIVE, PODMAN):
            list(changes(stack, semantics=sem))
        which(stack, "/a/b/d")
        which(stack, "/a/b/c")
        # a generator abandoned half-way closes what it opened
        it = changes(stack, semantics=DOCKER)
        next(it)
        it.close()
    assert _fds() == before


def test_docker_naive_compares_metadata(tmp_path: Path) -> None:
    """moby statDifferent: mode/uid/gid/rdev always, size and mtime only for non-directories,
    and security.capability; a type change is C with everything below it A. (Replayed against
    the real docker diff in tests/runtime/test_diff.py, test_diff_edge_cases_equal_docker_diff.)"""
    stack, up, (l1,) = make_stack(tmp_path, 1)
    for name in ("same", "touched", "owned", "capped", "was-file"):
        write(l1 / name, b"x\n")
    (l1 / "dir").mkdir()
    write(l1 / "was-dir/child")
    for name in ("same", "touched", "owned", "capped"):  # copy-ups
        write(up / name, b"x\n")
        same_times(up / name, l1 / name)
    os.utime(up / "touched", ns=(0, (l1 / "touched").stat().st_mtime_ns + 1_000_000_000))
    os.chown(up / "owned", 1, 1)
    os.setxattr(up / "capped", "security.capability",
                bytes.fromhex("0100000200100000000000000000000000000000"))
    (up / "dir").mkdir()
    os.utime(up / "dir", ns=(0, 0))  # only the mtime of a directory differs: not a change
    write(up / "was-file/inside")
    write(up / "was-dir", b"now a file\n")
    assert diff_set(stack, DOCKER) == {"C /touched", "C /owned", "C /capped", "C /was-file",
                                       "A /was-file/inside", "C /was-dir"}


@pytest.mark.parametrize("gone", [False, True])
def test_which_of_a_symlink_replaced_mid_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                gone: bool) -> None:
    """A live container renames its files while which looks: a component that was a symlink
    when listed and is a directory (or nothing) by the time it is read is a clear error, never
    an OSError escaping as a traceback (found by tests/security/test_race.py's which race)."""
    import errno

    import ctrfs.overlay.merge as merge

    stack, up, (l1,) = make_stack(tmp_path, 1)
    (up / "race").mkdir()
    (up / "race" / "d").symlink_to("/")

    def swapped(*args: object, **kw: object) -> bytes:
        code = errno.ENOENT if gone else errno.EINVAL
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(merge.os, "readlink", swapped)
    with pytest.raises(NotFound if gone else CtrfsError, match="no such file" if gone else "changed"):
        which(stack, "/race/d/etc/passwd")


mount_paths = st.lists(st.lists(st.sampled_from(["a", "b", "ab", "proc", "x.y"]), min_size=0,
                                max_size=3).map(lambda cs: "/" + "/".join(cs)), max_size=8)


@settings(max_examples=300, deadline=None)
@given(mounts=mount_paths, path=mount_paths.map(lambda ps: ps[0] if ps else "/a"))
def test_mount_of_a_change_is_the_first_covering_mount(mounts: list[str], path: str) -> None:
    """The indexed lookup names the mount a plain scan of the list names (the first, in the
    list's order, that is the path or an ancestor of it), or none."""
    want = next((m for m in mounts if path == m or path.startswith(m + "/")), None)
    assert _MountPoints(mounts).of(path) == want
