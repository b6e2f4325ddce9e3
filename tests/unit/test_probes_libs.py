"""container_libs on this very test process (it maps a copy of libssl), and the layer lookup rules
(whiteouts, opaque directories, symlinks in layers) on fake overlay trees under tmp_path."""

from __future__ import annotations

import mmap
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctrfs.model import Container, RootFS
from ctrfs.probes import container_libs, uprobe_targets
from ctrfs.probes.libs import _Layers
from ctrfs.proc.stat import parse_stat
from ctrfs.runtimes.base import ContainerRecord

LIBSSL = "/lib/x86_64-linux-gnu/libssl.so.3"
root_only = pytest.mark.root  # map_files, mknod, trusted xattrs; skipped when not root (conftest)


def _self_container(rootfs: RootFS | None) -> Container:
    with open(f"/proc/{os.getpid()}/stat", "rb") as f:
        start = parse_stat(f.read()).start_time
    return Container(id="self", runtime="test", name="self", image=None, state="running",
                     pid=os.getpid(), start_time=start, pids=[os.getpid()], namespaces={}, cgroup=None,
                     pod=None, rootfs=rootfs, record=ContainerRecord(id="self", runtime="test"))


def _layers(tmp: Path, *names: str) -> list[Path]:
    out = []
    for n in names:
        (tmp / n).mkdir()
        out.append(tmp / n)
    return out


@pytest.fixture
def mapped_copy(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A copy of libssl mmap'ed by this process, and a lower layer holding a hardlink to it."""
    lib = tmp_path / "real" / "libfake ssl.so.3"  # a space in the name, as maps shows it raw
    lib.parent.mkdir()
    shutil.copy(LIBSSL, lib)
    lower = tmp_path / "lower"
    in_layer = lower / str(lib).lstrip("/")
    in_layer.parent.mkdir(parents=True)
    os.link(lib, in_layer)  # the layer file IS the mapped inode (as on kernels < 6.8 with overlayfs)
    with open(lib, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ):
        yield lib, lower


@root_only
def test_self_process_libssl_copy(mapped_copy: tuple[Path, Path], tmp_path: Path) -> None:
    lib, lower = mapped_copy
    upper = tmp_path / "upper"
    upper.mkdir()
    c = _self_container(RootFS(fstype="overlay", source="overlay", lowerdirs=[str(lower)],
                               upperdir=str(upper)))
    res = container_libs(c, r"libfake ssl")
    (o,) = res.objects
    st = os.stat(lib)
    assert (o.path, o.deleted, o.pids) == (str(lib), False, [os.getpid()])
    assert (o.dev, o.inode) == (st.st_dev, st.st_ino)
    assert o.host_path == f"/proc/{os.getpid()}/root{lib}" and o.identity == "verified" and o.root_path_same
    assert o.soname == "libssl.so.3" and o.library == "openssl" and o.build_id and o.size == st.st_size
    assert o.layer is not None and (o.layer.kind, o.layer.index, o.layer.verified) == ("lower", 0, True)
    assert o.warnings == []

    (t,) = uprobe_targets(c, ["SSL_write"], lib="libfake")
    assert t.bpftrace() == f'uprobe:"{o.host_path}":SSL_write'  # a space: bpftrace needs quotes
    assert t.symbol.offset > 0 and t.to_dict()["inode"] == st.st_ino

    # deleted after mapping: map_files is the way in, still verified, the layer still proven by inode
    os.unlink(lib)
    (o,) = container_libs(c, r"libfake ssl").objects
    assert o.deleted and o.host_path_via == "map_files" and o.identity == "verified"
    assert o.host_path == o.map_files_path and os.path.samestat(os.stat(o.host_path), st)
    assert o.layer is not None and o.layer.verified and o.build_id
    (t,) = uprobe_targets(c, ["SSL_write"], lib="libfake")
    assert t.bpftrace().startswith(f"uprobe:/proc/{os.getpid()}/map_files/")

    # the same name now holds another file: the path is not the mapped inode any more
    shutil.copy("/bin/true", lib)
    (o,) = container_libs(c, r"libfake ssl").objects
    assert o.root_path_same is False and o.host_path_via == "map_files"


def test_non_elf_mappings_are_left_out(tmp_path: Path) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(b"not an ELF file" * 500)
    with open(data, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ):
        c = _self_container(None)
        assert container_libs(c, r"data\.bin").objects == []
        (o,) = container_libs(c, r"data\.bin", include_non_elf=True).objects
        assert o.is_elf is False and o.facts is None


def test_stopped_container_is_unsupported() -> None:
    from ctrfs.errors import Unsupported

    c = _self_container(None)
    c.pid = None
    with pytest.raises(Unsupported):
        container_libs(c)


def _find(tmp: Path, lowers: list[Path], upper: Path | None, path: str, target: Path,
          deleted: bool = False) -> tuple[str, int] | None:
    c = _self_container(RootFS(fstype="overlay", source="overlay", lowerdirs=[str(p) for p in lowers],
                               upperdir=str(upper) if upper else None))
    st = os.stat(target)
    layers = _Layers(c)
    try:
        layer = layers.find(path, st.st_dev, st.st_ino, deleted)
    finally:
        layers.close()
    return None if layer is None else (layer.kind, layer.index)


def _put(layer: Path, rel: str, content: bytes = b"\x7fELF") -> Path:
    p = layer / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(content)
    return p


def test_layer_order_upper_first(tmp_path: Path) -> None:
    up, l0, l1 = _layers(tmp_path, "up", "l0", "l1")
    f1 = _put(l1, "usr/lib/a.so")
    assert _find(tmp_path, [l0, l1], up, "/usr/lib/a.so", f1) == ("lower", 1)
    f0 = _put(l0, "usr/lib/a.so")
    assert _find(tmp_path, [l0, l1], up, "/usr/lib/a.so", f0) == ("lower", 0)
    fu = _put(up, "usr/lib/a.so")
    assert _find(tmp_path, [l0, l1], up, "/usr/lib/a.so", fu) == ("upper", 0)
    assert _find(tmp_path, [l0, l1], up, "/usr/lib/missing.so", fu) is None


@root_only
def test_whiteout_hides_lower_unless_the_mapping_is_deleted(tmp_path: Path) -> None:
    up, l0 = _layers(tmp_path, "up", "l0")
    f0 = _put(l0, "lib/a.so")
    (up / "lib").mkdir()
    os.mknod(up / "lib" / "a.so", stat.S_IFCHR | 0o000, os.makedev(0, 0))  # overlayfs whiteout
    assert _find(tmp_path, [l0], up, "/lib/a.so", f0) is None
    # a process that mapped it before deletion still maps the lower inode: found, proven by inode
    assert _find(tmp_path, [l0], up, "/lib/a.so", f0, deleted=True) == ("lower", 0)


@root_only
def test_opaque_directory_hides_lower(tmp_path: Path) -> None:
    up, l0, l1 = _layers(tmp_path, "up", "l0", "l1")
    f1 = _put(l1, "opt/app/lib.so")
    (l0 / "opt" / "app").mkdir(parents=True)
    assert _find(tmp_path, [l0, l1], up, "/opt/app/lib.so", f1) == ("lower", 1)
    os.setxattr(l0 / "opt" / "app", "trusted.overlay.opaque", b"y")
    assert _find(tmp_path, [l0, l1], up, "/opt/app/lib.so", f1) is None


def test_symlinks_inside_a_layer_are_never_followed(tmp_path: Path) -> None:
    up, l0 = _layers(tmp_path, "up", "l0")
    host = tmp_path / "host" / "secret"
    hf = _put(host, "a.so")
    os.symlink(str(host), up / "lib")  # absolute symlink in the upper layer towards a host directory
    assert _find(tmp_path, [l0], up, "/lib/a.so", hf) is None
    os.symlink(str(hf), l0 / "b.so")  # and a symlink as the file itself
    assert _find(tmp_path, [l0], None, "/b.so", hf) is None


def test_not_overlay_has_no_layers(tmp_path: Path) -> None:
    c = _self_container(RootFS(fstype="ext4", source="/dev/vda"))
    layers = _Layers(c)
    assert layers.find("/lib/a.so", 1, 2, False) is None


@pytest.mark.parametrize(("host_path", "symbol", "line"), [
    ("/proc/7/root/usr/lib/libssl.so.3", "SSL_write", "uprobe:/proc/7/root/usr/lib/libssl.so.3:SSL_write"),
    ("/proc/7/root/app", "net/http.(*conn).serve", 'uprobe:/proc/7/root/app:"net/http.(*conn).serve"'),
    ("/proc/7/root/my lib.so", "f", 'uprobe:"/proc/7/root/my lib.so":f'),
    ('/proc/7/root/a"b:c', "f", 'uprobe:"/proc/7/root/a\\"b:c":f'),
])
def test_bpftrace_attach_point_quoting(host_path: str, symbol: str, line: str) -> None:
    from ctrfs.probes.elf import Symbol
    from ctrfs.probes.libs import MappedObject
    from ctrfs.probes.uprobe import UprobeTarget

    obj = MappedObject(path="/x", dev=1, inode=2, deleted=False, pids=[7], host_path=host_path)
    sym = Symbol(name=symbol, address=0x1000, offset=0x1000, size=8, type="STT_FUNC", bind="STB_GLOBAL",
                 table=".dynsym")
    assert UprobeTarget(obj, sym).bpftrace() == line
