"""kubectl ctrfs cp: a hostile tar stream from the node cannot write outside DEST (the kubectl cp
CVEs of SECURITY.md: ``../`` names, absolute names, a symlink then a file through it, hardlinks
out), and DEST appears only complete."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from ctrfs.errors import CtrfsError, UsageError
from ctrfs.kube.unpack import Unpacker


def stream(*members: tuple[str, str, object]) -> io.BytesIO:
    """(name, kind, payload): kind f (bytes), d, l (symlink target), h (hardlink target), c (device)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, payload in members:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_700_000_000
            if kind == "f":
                data = payload if isinstance(payload, bytes) else b""
                ti.size, ti.mode = len(data), 0o644
                tf.addfile(ti, io.BytesIO(data))
                continue
            if kind == "F":  # a setuid file
                ti.size, ti.mode = 1, 0o4755
                tf.addfile(ti, io.BytesIO(b"x"))
                continue
            ti.type = {"d": tarfile.DIRTYPE, "l": tarfile.SYMTYPE, "h": tarfile.LNKTYPE,
                       "c": tarfile.CHRTYPE}[kind]
            ti.mode = 0o755 if kind == "d" else 0o777
            if kind in "lh":
                ti.linkname = str(payload)
            tf.addfile(ti)
    buf.seek(0)
    return buf


def unpack(tmp_path: Path, s: io.BytesIO, src: str = "/etc/app", **kw: object) -> Path:
    dest = tmp_path / "out"
    with Unpacker(src, str(dest), **kw) as u:  # type: ignore[arg-type]
        u.consume(s)
        u.commit()
    return dest


def left(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir())


@pytest.mark.parametrize("evil", [
    [("app", "d", None), ("app/../../escaped", "f", b"x")],
    [("app", "d", None), ("/tmp/escaped", "f", b"x")],
    [("app", "d", None), ("other/escaped", "f", b"x")],
    [("app", "d", None), ("app/link", "l", "../.."), ("app/link/escaped", "f", b"x")],
    [("app", "d", None), ("app/link", "l", str(Path("/tmp"))), ("app/link/escaped", "f", b"x")],
    [("app", "d", None), ("app/h", "h", "app/../../../etc/passwd")],
    [("app", "d", None), ("app/l", "l", "/etc/passwd"), ("app/h", "h", "app/l")],
    [("app", "d", None), ("app/h", "h", "app/missing")],
])
def test_hostile_streams_write_nothing(tmp_path: Path, evil: list[tuple[str, str, object]]) -> None:
    with pytest.raises(CtrfsError):
        unpack(tmp_path, stream(*evil))
    assert left(tmp_path) == []  # no DEST, no temporary tree, nothing beside them
    assert not Path("/tmp/escaped").exists()


def test_tree_modes_links_and_setuid(tmp_path: Path) -> None:
    warnings: list[str] = []
    dest = unpack(tmp_path, stream(
        ("app", "d", None), ("app/conf", "f", b"a=1\n"), ("app/sub", "d", None),
        ("app/sub/f", "f", b"\x00\x01binary"), ("app/link", "l", "/etc/passwd"),
        ("app/hard", "h", "app/conf"), ("app/suid", "F", None), ("app/tty", "c", None)),
        warn=warnings.append)
    assert left(tmp_path) == ["out"]
    assert (dest / "conf").read_bytes() == b"a=1\n"
    assert (dest / "sub" / "f").read_bytes() == b"\x00\x01binary"
    assert os.readlink(dest / "link") == "/etc/passwd"  # kept as a link, never followed
    assert (dest / "hard").stat().st_ino == (dest / "conf").stat().st_ino
    assert stat.S_IMODE((dest / "suid").stat().st_mode) == 0o755  # setuid dropped
    assert not (dest / "tty").exists()
    assert warnings == ["app/tty: device node or socket not copied"]
    assert int((dest / "sub").stat().st_mtime) == 1_700_000_000


def test_preserve_all_keeps_setuid(tmp_path: Path) -> None:
    dest = unpack(tmp_path, stream(("app", "d", None), ("app/suid", "F", None)), preserve_all=True)
    assert stat.S_IMODE((dest / "suid").stat().st_mode) == 0o4755


def test_not_committed_leaves_nothing(tmp_path: Path) -> None:
    # A stream cut exactly at a member boundary looks whole to tarfile; only the node's exit
    # status says it was not: DEST appears on commit alone.
    with Unpacker("/etc/app", str(tmp_path / "out")) as u:
        u.consume(stream(("app", "d", None), ("app/conf", "f", b"a")))
    assert left(tmp_path) == []


def test_existing_directory_receives_the_base_name(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    with Unpacker("/etc/app", str(tmp_path / "out")) as u:
        u.consume(stream(("app", "d", None), ("app/conf", "f", b"a")))
        u.commit()
    assert (tmp_path / "out" / "app" / "conf").read_bytes() == b"a"
    with pytest.raises(UsageError, match="already exists"), Unpacker("/etc/app", str(tmp_path / "out")) as u:
        u.consume(stream(("app", "d", None)))


def test_single_file_and_root(tmp_path: Path) -> None:
    dest = unpack(tmp_path, stream(("passwd", "f", b"root:x:0:0\n")), src="/etc/passwd")
    assert dest.read_bytes() == b"root:x:0:0\n"
    root = tmp_path / "r"
    root.mkdir()
    d = unpack(root, stream(("etc", "d", None), ("etc/passwd", "f", b"r\n")), src="/")
    assert (d / "etc" / "passwd").read_bytes() == b"r\n"
