"""ctrfs mounts: the host directory behind bind mounts and volumes, checked against docker."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

import harness
from harness import RunningContainer, ctrfs

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def with_mounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningContainer, str, str]]:
    hostdir = str(tmp_path_factory.mktemp("ctrfs-o-bind"))
    vol = harness.unique_name()
    harness.run("docker", "volume", "create", vol)
    try:
        with harness.run_docker(harness.busybox_image(), harness.NAME_PREFIX,
                                "-v", f"{hostdir}:/data", "-v", f"{vol}:/named:ro",
                                "-v", f"{hostdir}:/sub/dir/deep", "--tmpfs", "/scratch") as c:
            yield c, hostdir, vol
    finally:
        harness.run("docker", "volume", "rm", "-f", vol, check=False)


def by_point(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["mount_point"]: r for r in rows}


@pytest.mark.docker
def test_mounts_show_host_sources(with_mounts: tuple[RunningContainer, str, str]) -> None:
    c, hostdir, vol = with_mounts
    listed = json.loads(ctrfs("mounts", "--json", c.target).stdout)
    rows = by_point(listed)
    docker_mounts = {m["Destination"]: m for m in json.loads(
        harness.out("docker", "inspect", "-f", "{{json .Mounts}}", c.id))}

    assert rows["/data"]["kind"] == "bind" and rows["/data"]["host_path"] == hostdir
    assert rows["/data"]["host_path"] == docker_mounts["/data"]["Source"]
    assert rows["/data"]["read_only"] is False

    named = rows["/named"]
    assert named["kind"] == "volume" and named["volume"] == vol and named["read_only"] is True
    assert named["host_path"] == docker_mounts["/named"]["Source"]

    assert rows["/scratch"]["kind"] == "tmpfs" and rows["/scratch"]["host_path"] is None
    gd = json.loads(harness.out("docker", "inspect", "-f", "{{json .GraphDriver.Data}}", c.id))
    assert rows["/"]["kind"] == "root" and rows["/"]["host_path"] == gd["MergedDir"]
    # Docker's per-container files are bind mounts of files under its containers dir.
    hosts = rows["/etc/hosts"]
    assert hosts["host_path"] == harness.out("docker", "inspect", "-f", "{{.HostsPath}}", c.id)
    for key, point in (("HostnamePath", "/etc/hostname"), ("ResolvConfPath", "/etc/resolv.conf")):
        assert rows[point]["host_path"] == harness.out("docker", "inspect", "-f", f"{{{{.{key}}}}}", c.id)
        assert rows[point]["kind"] == "bind"
    # Every mount docker made, with what docker says of it (its Propagation "rprivate" is the
    # requested mode; the row's is the kernel's shared/slave/private, checked against mountinfo
    # below).
    for dest, m in docker_mounts.items():
        row = rows[dest]
        assert (row["kind"], row["host_path"], row["read_only"], row["volume"]) == \
            (m["Type"], m["Source"], not m["RW"], m.get("Name")), dest
    # ... and every mount the kernel lists for the container, nothing more: id, point, type,
    # source, per-mount options and propagation as /proc/PID/mountinfo has them.
    kernel = {}
    for line in open(f"/proc/{c.pid}/mountinfo").read().splitlines():
        f = line.split()
        sep = f.index("-")
        optional = dict(o.split(":", 1) if ":" in o else (o, "") for o in f[6:sep])
        prop = "shared" if "shared" in optional else "slave" if "master" in optional else "private"
        kernel[int(f[0])] = (f[4].encode().decode("unicode_escape"), f[sep + 1], f[sep + 2],
                             f[5].split(","), prop)
    assert {r["mount_id"]: (r["mount_point"], r["fstype"], r["source"], r["options"], r["propagation"])
            for r in listed} == kernel and len(listed) == len(kernel)


@pytest.mark.docker
def test_mounts_host_path_is_the_same_directory(with_mounts: tuple[RunningContainer, str, str]) -> None:
    c, hostdir, _ = with_mounts
    harness.docker_exec(c, "sh", "-c", "echo marker > /data/m")
    rows = by_point(json.loads(ctrfs("mounts", "--json", c.target).stdout))
    with open(os.path.join(rows["/data"]["host_path"], "m"), "rb") as f:
        assert f.read() == b"marker\n"
    with open(os.path.join(rows["/named"]["host_path"], "from-host"), "wb") as f:
        f.write(b"host\n")
    assert harness.docker_exec(c, "cat", "/named/from-host").stdout == b"host\n"
    assert rows["/sub/dir/deep"]["host_path"] == hostdir


@pytest.mark.docker
def test_mounts_text(with_mounts: tuple[RunningContainer, str, str]) -> None:
    c, hostdir, vol = with_mounts
    text = ctrfs("mounts", c.target).stdout
    line = next(ln for ln in text.splitlines() if ln.startswith("/data "))
    assert hostdir in line and "bind" in line
    assert f"volume {vol}" in text
    assert "/proc " not in text and "/proc " in ctrfs("mounts", "-a", c.target).stdout


@pytest.mark.docker
def test_mounts_of_stopped_container(tmp_path: Any) -> None:
    with harness.run_docker(harness.busybox_image(), harness.NAME_PREFIX,
                            "-v", f"{tmp_path}:/data:ro") as c:
        harness.run("docker", "stop", "-t", "0", c.id)
        rows = by_point(json.loads(ctrfs("mounts", "--json", c.target).stdout))
        assert rows["/data"]["host_path"] == str(tmp_path) and rows["/data"]["read_only"] is True
        assert rows["/data"]["recorded"] is True
        assert "not running" in ctrfs("mounts", c.target).stdout
