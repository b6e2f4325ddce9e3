"""Parsers for the runtimes of issue 11: LXC configs, nspawn command lines, cgroup shapes, id maps,
image reference splitting, and the layer-tarball root's whiteout rules (tars built here)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from ctrfs.cli.common import split_target_path
from ctrfs.errors import NotFound, UsageError
from ctrfs.proc.cgroup import container_ref_from_path
from ctrfs.proc.userns import OVERFLOW_ID, IdMap, is_identity, parse_id_map
from ctrfs.rootfs.tarroot import TarLayersRoot
from ctrfs.runtimes.images import split_name
from ctrfs.runtimes.lxc import id_maps, parse_config, rootfs_dir
from ctrfs.runtimes.nspawn import parse_cmdline
from ctrfs.runtimes.stores import rootless_map


@pytest.mark.parametrize(("path", "want"), [
    ("/lxc.payload.web-1", ("web-1", "lxc")),
    ("/lxc.payload.web-1/init.scope", ("web-1", "lxc")),
    ("/lxc/old.name", ("old.name", "lxc")),
    ("/machine.slice/systemd-nspawn@my\\x2dbox.service/payload", ("my-box", "nspawn")),
    ("/lxc.monitor.web-1", None),
    ("/ctrfs-ns/payload", None),  # --keep-unit: found from the payload's environment instead
])
def test_cgroup_shapes(path: str, want: tuple[str, str] | None) -> None:
    ref = container_ref_from_path(path)
    assert (None if ref is None else (ref.id, ref.runtime)) == want


def test_docker_inside_lxc_is_docker() -> None:
    ref = container_ref_from_path("/lxc.payload.host/docker/" + "a" * 64)
    assert ref is not None and ref.runtime == "docker"


@pytest.mark.parametrize(("argv", "want"), [
    (["systemd-nspawn", "-D", "/srv/m1", "/bin/sh"], ("m1", "/srv/m1")),
    (["systemd-nspawn", "--register=no", "-M", "box", "-D", "/srv/m1"], ("box", "/srv/m1")),
    (["systemd-nspawn", "--machine=box", "--directory=/x/y/", "sleep", "-M", "no"], ("box", "/x/y/")),
    (["systemd-nspawn", "-Dsrv", "-Mabc"], ("abc", "srv")),
    (["systemd-nspawn", "/bin/true"], (None, None)),
])
def test_nspawn_cmdline(argv: list[str], want: tuple[str | None, str | None]) -> None:
    assert parse_cmdline(argv) == want


def test_lxc_config() -> None:
    pairs = parse_config("# c\nlxc.rootfs.path = dir:/var/lib/lxc/a/rootfs\n\nlxc.idmap = u 0 100000 65536\n"
                         "lxc.idmap = g 0 100000 65536\nlxc.idmap = b 70000 70000 1\nbogus\n")
    assert dict(pairs)["lxc.rootfs.path"] == "dir:/var/lib/lxc/a/rootfs"
    uids, gids = id_maps(pairs)
    assert uids == [(0, 100000, 65536), (70000, 70000, 1)]
    assert gids == [(0, 100000, 65536), (70000, 70000, 1)]
    assert rootfs_dir("dir:/r") == "/r" and rootfs_dir("/r") == "/r"
    assert rootfs_dir("overlay:/a:/b") is None and rootfs_dir("/dev/sdb1:x") is None


def test_id_maps() -> None:
    lines = parse_id_map(b"         0       1001          1\n         1     100000      65536\n")
    assert lines == ((0, 1001, 1), (1, 100000, 65536))
    assert is_identity(parse_id_map(b"0 0 4294967295\n"))
    m = IdMap(lines, lines)
    got = (m.uid(1001), m.uid(100000), m.uid(100004), m.uid(0), m.gid(165535))
    assert got == (0, 1, 5, OVERFLOW_ID, 65536)
    assert rootless_map(1001, [(100000, 65536)]) == [(0, 1001, 1), (1, 100000, 65536)]


def test_image_names_and_target_paths() -> None:
    assert split_name("localhost:5000/app:1.2") == ("localhost:5000/app", "1.2")
    assert split_name("localhost:5000/app") == ("localhost:5000/app", "<none>")
    assert split_target_path("image://localhost:5000/app:1.2:/etc/os-release") == \
        ("image://localhost:5000/app:1.2", "/etc/os-release")
    assert split_target_path("image://busybox") == ("image://busybox", None)
    assert split_target_path("oci:/srv/lay:v1:/etc") == ("oci:/srv/lay:v1", "/etc")
    assert split_target_path("oci:/srv/lay:/etc") == ("oci:/srv/lay", "/etc")
    assert split_target_path("oci:/srv/lay:v1") == ("oci:/srv/lay:v1", None)
    with pytest.raises(UsageError):
        split_target_path("image://busybox", require_path=True)


def _tar(members: list[tuple[str, str, bytes | str]]) -> bytes:
    """(name, kind, data): kind f (file, data), d (dir), l (symlink, target), h (hardlink, target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, kind, data in members:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_700_000_000
            if kind == "f":
                assert isinstance(data, bytes)
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
                continue
            ti.type = {"d": tarfile.DIRTYPE, "l": tarfile.SYMTYPE, "h": tarfile.LNKTYPE}[kind]
            if kind == "d":
                ti.mode = 0o755
            else:
                assert isinstance(data, str)
                ti.linkname = data
            tf.addfile(ti)
    return buf.getvalue()


def test_layer_tarballs_whiteouts_opaque_and_links(tmp_path: Path) -> None:
    low = _tar([("./", "d", ""), ("etc", "d", ""), ("etc/a", "f", b"a1"), ("etc/b", "f", b"b1"),
                ("old", "d", ""), ("old/x", "f", b"x"), ("old/deep", "d", ""), ("old/deep/y", "f", b"y"),
                ("gone", "f", b"g"), ("link", "l", "/etc/a")])
    up = _tar([("etc/a", "f", b"a2"), ("etc/.wh.b", "f", b""), ("old/.wh..wh..opq", "f", b""),
               ("old/deep", "d", ""), ("old/deep/z", "f", b"z"), (".wh.gone", "f", b""),
               ("etc/hard", "h", "etc/a"), ("../escape", "f", b"no")])
    (tmp_path / "l1").write_bytes(low)
    (tmp_path / "l2").write_bytes(up)
    with TarLayersRoot([str(tmp_path / "l1"), str(tmp_path / "l2")], target="t") as root:
        names = lambda p: sorted(e.name for e in root.scandir(p))  # noqa: E731
        assert names("/") == ["etc", "link", "old"]
        assert names("/etc") == ["a", "hard"]
        assert names("/old") == ["deep"] and names("/old/deep") == ["z"]  # opaque at any depth
        with root.open_file("/link") as f:  # absolute symlink resolved inside the image
            assert f.read() == b"a2"
        with root.open_file("/etc/hard") as f:
            assert f.read() == b"a2"
        assert root.lstat("/etc/hard").st_nlink == 2
        with pytest.raises(NotFound):
            root.lstat("/gone")
        with root.open_file("/etc/../../../etc/a") as f:  # .. stops at the image root
            assert f.read() == b"a2"
        assert [e.path for e in root.walk("/")] == \
            ["/", "/etc", "/etc/a", "/etc/hard", "/old", "/old/deep", "/old/deep/z", "/link"]
