"""ctrfs diff against the runtimes' own ``docker diff`` / ``podman diff`` on real containers."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

import harness
from harness import RunningContainer, ctrfs

pytestmark = [pytest.mark.root]


def lines(text: str) -> set[str]:
    return {ln for ln in text.splitlines() if ln.strip()}


# Every kind of change docker diff distinguishes, on the multi-layer image (see
# harness.MULTILAYER_LAYERS: /data/a.txt in two layers, /data/dir/x, /olddir opaque in layer 3).
CHANGES = " && ".join([
    "mkdir -p /new/sub && echo n > /new/sub/f",           # new file in a new dir
    "echo e > /etc/added",                                # new file in an existing dir
    "echo deep >> /etc/passwd",                           # change a file of the bottom layer
    "echo v3 >> /data/dir/x",                             # copied up, then deleted below
    "rm /olddir/new",                                     # delete a file of a lower layer
    "rm -r /data/dir",                                    # delete a directory of a lower layer
    "mv /data/a.txt /data/renamed.txt",                   # rename (shadowing two versions)
    "chmod 600 /etc/os-release",                          # change only the mode
    "rm -r /root && mkdir /root && echo r > /root/again",  # delete and recreate a directory
    "chown 0:0 /bin/busybox",                             # a copy-up that changes nothing
    "ln -s /etc/added /linkadded && mkfifo /fifo",        # other file types
    "echo inside > /vol/inside && echo inside > /named/inside",  # writes into mounts
])


@pytest.fixture(scope="module")
def changed_docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningContainer]:
    hostdir = tmp_path_factory.mktemp("ctrfs-o-vol")
    vol = harness.unique_name()
    harness.run("docker", "volume", "create", vol)
    try:
        with harness.run_docker(harness.multilayer_image(), harness.NAME_PREFIX,
                                "-v", f"{hostdir}:/vol", "-v", f"{vol}:/named") as c:
            harness.docker_exec(c, "sh", "-c", CHANGES)
            yield c
    finally:
        harness.run("docker", "volume", "rm", "-f", vol, check=False)


@pytest.mark.docker
def test_diff_equals_docker_diff(changed_docker: RunningContainer) -> None:
    theirs = lines(harness.out("docker", "diff", changed_docker.id))
    ours = lines(ctrfs("diff", changed_docker.target).stdout)
    assert ours == theirs
    # The fixture really exercised every kind of change.
    assert {"A /new/sub/f", "A /etc/added", "D /data/dir", "D /olddir/new",
            "A /data/renamed.txt", "D /data/a.txt", "C /etc/os-release", "A /root/again",
            "A /linkadded", "A /fifo", "C /etc/passwd"} <= ours
    assert not any("/inside" in ln for ln in ours)  # files in volumes are not the root fs


@pytest.mark.docker
def test_diff_json_describes_entries(changed_docker: RunningContainer) -> None:
    rows = json.loads(ctrfs("diff", "--json", changed_docker.target).stdout)
    by_path = {r["path"]: r for r in rows}
    assert by_path["/etc/added"] == {"kind": "A", "path": "/etc/added", "type": "file", "size": 2,
                                     "mount": None, "opaque": False}
    assert by_path["/linkadded"]["type"] == "symlink"
    assert by_path["/fifo"]["type"] == "fifo"
    assert by_path["/data/dir"]["kind"] == "D" and by_path["/data/dir"]["type"] == "dir"
    # The mount point of a volume is a real directory Docker created in the upper dir, and is
    # marked as the mount it is.
    assert by_path["/vol"]["kind"] == "A" and by_path["/vol"]["mount"] == "/vol"
    assert by_path["/named"]["mount"] == "/named"
    assert [f"{r['kind']} {r['path']}" for r in rows].count("C /etc") == 1


@pytest.mark.docker
def test_diff_semantics_flag_changes_rules(changed_docker: RunningContainer) -> None:
    # moby-native has no peer on this host: dockerd 20.10 answers docker diff with the naive
    # rules (src/ctrfs/overlay/diff.py), and a dockerd that takes the native path cannot run
    # next to it. What can be checked is that the flag switches the rules: moby's native walk
    # reports the no-op copy-up and the recreated dir as deleted, which docker diff does not.
    native = lines(ctrfs("diff", "--semantics", "moby-native", changed_docker.target).stdout)
    theirs = lines(harness.out("docker", "diff", changed_docker.id))
    assert "C /bin/busybox" in native and "D /root" in native
    assert "C /bin/busybox" not in theirs and "D /root" not in theirs


# The edge cases of tests/unit/test_overlay.py's per-runtime diff rules, made by a real
# container on the multi-layer image (harness.MULTILAYER_LAYERS: /gone.txt whited out and
# /olddir opaque in layer 3) and replayed against docker diff and podman diff themselves.
EDGES = [
    "echo changed > /etc/passwd",                          # copy-up with new content
    "rm /etc/group",                                       # whiteout of a bottom-layer file
    "rm -r /olddir && mkdir /olddir && echo g > /olddir/g",  # opaque dir over lower content
    "mkdir -p /new && echo f > /new/file",                 # new dir, new file
    "mkdir /gone.txt && echo h > /gone.txt/h",             # recreated over a lower whiteout
    "touch -d @1000000000 /etc/os-release",                # only the mtime changes
    "chown 1:1 /bin/busybox",                              # only the owner changes
    "chmod 600 /etc/passwd",                               # content and mode change
    "chown -h 0:0 /bin/cat",                               # a copy-up that changes nothing
    "rm /data/a.txt && mkdir /data/a.txt && echo i > /data/a.txt/inside",  # file -> dir
    "rmdir /root && echo now-a-file > /root",              # dir -> file
    "touch -d @1000000000 /var/log",                       # a directory's mtime alone
]
# podman 4.3's own diff fails on a file replaced by a directory ("Error: stat
# .../diff/data/a.txt/inside: not a directory": containers/storage looks the new child up below
# the lower layer's file), so there is nothing to compare that edge with.
PODMAN_FAILS = {"rm /data/a.txt && mkdir /data/a.txt && echo i > /data/a.txt/inside"}
# Each edge's path: where the runtime's diff must mention it (any letter), or not at all.
EDGE_PATHS = ["/etc/passwd", "/etc/group", "/olddir", "/olddir/g", "/new", "/new/file",
              "/gone.txt", "/gone.txt/h", "/etc/os-release", "/bin/busybox", "/data/dir/x",
              "/data/a.txt", "/data/a.txt/inside", "/root"]
CAP = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)  # vfs_cap_data: CAP_NET_BIND_SERVICE


def _make_edges(c: RunningContainer, skip: set[str] = set()) -> None:  # noqa: B006
    harness.docker_exec(c, "sh", "-c", " && ".join(e for e in EDGES if e not in skip))
    # busybox has no setcap: only a file capability, set from the host (a copy-up whose one
    # change is the security.capability xattr)
    os.setxattr(f"/proc/{c.pid}/root/data/dir/x", "security.capability", CAP)


@pytest.fixture(scope="module")
def podman_multilayer() -> Iterator[str]:
    """harness.multilayer_image() in podman's store, layer for layer (docker save | podman load)."""
    image = harness.multilayer_image()
    archive = harness.run("docker", "save", image).stdout
    out = harness.out("podman", "load", input=archive)
    ref = next(w for w in out.split() if "multilayer" in w)  # "Loaded image: localhost/...:l3"
    harness._register(f"podman image {ref}", lambda: harness.run("podman", "rmi", "-f", ref, check=False))
    return ref


def _paths(diff: set[str]) -> set[str]:
    return {ln.split(" ", 1)[1] for ln in diff}


@pytest.mark.docker
def test_diff_edge_cases_equal_docker_diff() -> None:
    with harness.run_docker(harness.multilayer_image()) as c:
        _make_edges(c)
        theirs = lines(harness.out("docker", "diff", c.id))
        assert lines(ctrfs("diff", c.target).stdout) == theirs
        assert set(EDGE_PATHS) <= _paths(theirs), set(EDGE_PATHS) - _paths(theirs)
        assert "/var/log" not in _paths(theirs)  # a directory's mtime is not a change


@pytest.mark.podman
def test_diff_edge_cases_equal_podman_diff(podman_multilayer: str) -> None:
    with harness.run_docker(podman_multilayer, harness.NAME_PREFIX, cli="podman",
                            cmd=harness.BUSYBOX_CMD) as c:
        _make_edges(c, skip=PODMAN_FAILS)
        theirs = lines(harness.out("podman", "diff", c.id))
        assert lines(ctrfs("diff", c.target).stdout) == theirs
        want = set(EDGE_PATHS) - {"/data/a.txt", "/data/a.txt/inside"}
        assert want <= _paths(theirs), want - _paths(theirs)


@pytest.mark.docker
def test_diff_of_unchanged_container_is_empty(docker_shellless: RunningContainer) -> None:
    assert lines(ctrfs("diff", docker_shellless.target).stdout) == lines(
        harness.out("docker", "diff", docker_shellless.id))


@pytest.fixture(scope="module")
def changed_podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningContainer]:
    root = harness.busybox_rootfs(Path(tmp_path_factory.mktemp("ctrfs-o-pbb")))
    image = harness.build_image_from_dir(root, f"{harness.NAME_PREFIX}pbusybox:latest",
                                         changes=('CMD ["/bin/sleep", "100000"]',), cli="podman")
    with harness.run_docker(image, harness.NAME_PREFIX, cli="podman") as c:
        harness.docker_exec(c, "sh", "-c", " && ".join([
            "mkdir -p /new/sub && echo n > /new/sub/f", "echo e > /etc/added",
            "rm /bin/ls", "chmod 600 /etc/os-release", "chown 0:0 /bin/busybox",
            "rm -r /root && mkdir /root && echo r > /root/again", "mv /bin/cat /bin/cat2",
        ]))
        yield c


@pytest.mark.podman
def test_diff_equals_podman_diff(changed_podman: RunningContainer) -> None:
    theirs = lines(harness.out("podman", "diff", changed_podman.id))
    ours = lines(ctrfs("diff", changed_podman.target).stdout)
    assert ours == theirs
    assert {"A /etc/added", "D /bin/ls", "C /etc/os-release", "D /root"} <= ours


@pytest.mark.docker
def test_diff_hostile_names_are_escaped() -> None:
    with harness.run_docker(harness.busybox_image()) as c:
        harness.docker_exec(c, "sh", "-c",
                            "touch \"$(printf '/tmp/a\\nb')\" \"$(printf '/tmp/\\033[31mred')\""
                            " && ln -s / /tmp/root && mkfifo /tmp/fifo")
        out = ctrfs("diff", c.target).stdout
        assert "A /tmp/a\\nb" in out.splitlines() and "A /tmp/\\x1b[31mred" in out.splitlines()
        assert "\x1b" not in out
        rows = json.loads(ctrfs("diff", "--json", c.target).stdout)
        paths = {r["path"]: r["type"] for r in rows}
        assert paths["/tmp/a\nb"] == "file" and paths["/tmp/root"] == "symlink"
        assert paths["/tmp/fifo"] == "fifo"
        # Same entries as docker's own diff, which prints names raw (a newline splits a line):
        # compare the raw texts split the same way.
        theirs = harness.out("docker", "diff", c.id).split("\n")
        ours_raw = "\n".join(f"{r['kind']} {r['path']}" for r in rows).split("\n")
        assert sorted(ours_raw) == sorted(theirs)
