"""Stopped containers: layers, diff and the offline OverlayRoot (ls/cat/export) from on-disk state."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import harness
from harness import RunningContainer, ctrfs

pytestmark = pytest.mark.root


def lines(text: str) -> set[str]:
    return {ln for ln in text.splitlines() if ln.strip()}


@pytest.fixture(scope="module")
def stopped_docker() -> Iterator[RunningContainer]:
    with harness.run_docker(harness.multilayer_image()) as c:
        harness.docker_exec(c, "sh", "-c", " && ".join([
            "mkdir -p /new/sub && echo n > /new/sub/f", "echo more >> /data/a.txt",
            "rm /olddir/new", "ln -s ../etc/os-release /new/link", "chmod 600 /etc/os-release",
            "rm -r /data/dir", "mknod /new/null c 1 3", "mknod /new/loop b 7 0",
            "chown 65534:65534 /new/sub/f",
        ]))
        # extended attributes, set from the host on a file the container made (busybox has no
        # setfattr): docker export carries security.capability
        f = f"/proc/{c.pid}/root/new/sub/f"
        os.setxattr(f, "security.capability", struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0))
        harness.run("docker", "stop", "-t", "0", c.id)
        yield c


@pytest.fixture(scope="module")
def stopped_podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningContainer]:
    root = harness.busybox_rootfs(Path(tmp_path_factory.mktemp("ctrfs-o-spbb")))
    image = harness.build_image_from_dir(root, f"{harness.NAME_PREFIX}spbusybox:latest",
                                         changes=('CMD ["/bin/sleep", "100000"]',), cli="podman")
    with harness.run_docker(image, harness.NAME_PREFIX, cli="podman") as c:
        harness.docker_exec(c, "sh", "-c", "echo p > /etc/podman-added && rm /bin/ls")
        harness.run("podman", "stop", "-t", "0", c.id)
        yield c


def _entries(path: Path) -> dict[str, tuple[Any, ...]]:
    out = {}
    with tarfile.open(path) as t:
        for m in t:
            name = m.name[2:] if m.name.startswith("./") else m.name
            name = name.rstrip("/")
            digest = None
            if m.isreg():
                f = t.extractfile(m)
                assert f is not None
                digest = hashlib.sha256(f.read()).hexdigest()
            # Go's archive/tar writes the file type bits into the mode field too.
            xattrs = {k: v for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")}
            out[name] = (m.type, m.mode & 0o7777, m.uid, m.gid, m.size if m.isreg() else 0,
                         m.linkname, digest, int(m.mtime), m.uname, m.gname,
                         (m.devmajor, m.devminor) if m.ischr() or m.isblk() else None, xattrs)
    return out


@pytest.mark.docker
def test_stopped_docker_layers_and_diff(stopped_docker: RunningContainer) -> None:
    assert harness.out("docker", "inspect", "-f", "{{.State.Running}}", stopped_docker.id) == "false"
    data = json.loads(ctrfs("layers", "--json", stopped_docker.target).stdout)
    gd = json.loads(harness.out("docker", "inspect", "-f", "{{json .GraphDriver.Data}}",
                                stopped_docker.id))
    assert data["origin"] == "runtime-state" and data["merged"] is None
    assert data["upperdir"] == gd["UpperDir"]
    assert [la["path"] for la in data["layers"][1:]] == gd["LowerDir"].split(":")
    assert lines(ctrfs("diff", stopped_docker.target).stdout) == lines(
        harness.out("docker", "diff", stopped_docker.id))


@pytest.mark.docker
def test_stopped_docker_files_offline(stopped_docker: RunningContainer) -> None:
    assert ctrfs("cat", f"{stopped_docker.target}:/data/a.txt").stdout == "v2\nmore\n"
    listing = ctrfs("ls", f"{stopped_docker.target}:/olddir").stdout.split()
    assert listing == []  # /olddir/new deleted; f1/f2 stay hidden under the opaque dir
    assert "sub" in ctrfs("ls", f"{stopped_docker.target}:/new").stdout
    gone = ctrfs("cat", f"{stopped_docker.target}:/gone.txt", check=False)
    assert gone.returncode == 1 and "no such file" in gone.stderr


@pytest.mark.docker
def test_stopped_docker_export_equals_docker_export(stopped_docker: RunningContainer,
                                                    tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours.tar", tmp_path / "theirs.tar"
    ctrfs("export", stopped_docker.target, "-o", str(ours))
    harness.run("docker", "export", "-o", str(theirs), stopped_docker.id)
    a, b = _entries(ours), _entries(theirs)
    assert a.keys() == b.keys()
    assert {k: v for k, v in a.items() if v != b[k]} == {}
    # the fixture's devices, owner and capability are among what was compared
    assert a["new/null"][10] == (1, 3) and a["new/loop"][10] == (7, 0)
    assert a["new/sub/f"][2:4] == (65534, 65534)
    assert "SCHILY.xattr.security.capability" in a["new/sub/f"][11]


@pytest.mark.podman
def test_stopped_podman_diff_and_cat(stopped_podman: RunningContainer) -> None:
    assert lines(ctrfs("diff", stopped_podman.target).stdout) == lines(
        harness.out("podman", "diff", stopped_podman.id))
    assert ctrfs("cat", f"{stopped_podman.target}:/etc/podman-added").stdout == "p\n"
    assert ctrfs("cat", f"{stopped_podman.target}:/bin/ls", check=False).returncode == 1
