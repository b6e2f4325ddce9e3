"""ctrfs diff against the runtimes' own ``docker diff`` / ``podman diff`` on real containers."""

from __future__ import annotations

import json
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
    native = lines(ctrfs("diff", "--semantics", "moby-native", changed_docker.target).stdout)
    # moby's native overlay walk reports the no-op copy-up and the recreated dir as deleted.
    assert "C /bin/busybox" in native and "D /root" in native


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
