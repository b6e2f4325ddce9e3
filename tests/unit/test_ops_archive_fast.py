"""The tar writer's fast paths (sendfile from the entry's fd, writer thread, sparse files) and
cp's kernel copies, on a DirRoot: output written to real files and pipes (where sendfile and
the writer thread run) and read back with tarfile and GNU tar."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from ctrfs.ops import archive
from ctrfs.ops.copy import copy_out
from ctrfs.rootfs.base import WalkWarning
from ctrfs.rootfs.fd import DirRoot

BIG = 3 * archive.SMALL_FILE + 123  # goes by sendfile in the writer thread


@pytest.fixture
def files(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "big").write_bytes(os.urandom(BIG))
    (src / "d" / "small").write_bytes(b"small\n")
    (src / "d" / "empty").write_bytes(b"")
    os.link(src / "d" / "big", src / "d" / "big-link")
    # 64 MiB + 3 bytes, data at 1 MiB and at the end: a hole at the start, between and none
    # at the end; "tail-hole" ends in a hole
    with open(src / "d" / "sparse", "wb") as f:
        f.truncate(64 << 20)
        f.seek(1 << 20)
        f.write(b"middle")
        f.seek(64 << 20)
        f.write(b"end")
    with open(src / "d" / "tail-hole", "wb") as f:
        f.write(b"head")
        f.truncate(32 << 20)
    return src


def _tar_to_file(root: DirRoot, out: Path, path: str = "/") -> list[WalkWarning]:
    warnings: list[WalkWarning] = []
    with open(out, "wb") as f:
        archive.write_tar(root, f, path, on_warning=warnings.append)
    return warnings


def test_file_output_reads_back_with_tarfile_and_gnu_tar(files: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.tar"
    with DirRoot(files) as r:
        assert _tar_to_file(r, out) == []
    # sparse files are stored as their data, not their size
    assert out.stat().st_size < (1 << 20) + 2 * BIG
    assert out.stat().st_size % archive.RECORD == 0
    with tarfile.open(out) as t:
        got = {m.name: m for m in t.getmembers()}
        # whichever name the walk met first holds the data, the other is a link to it
        data, link = ("d/big", "d/big-link") if got["d/big"].isreg() else ("d/big-link", "d/big")
        assert got[data].size == BIG
        assert t.extractfile(data).read() == (files / "d/big").read_bytes()  # type: ignore[union-attr]
        assert got[link].islnk() and got[link].linkname == data
        assert got["d/sparse"].size == (64 << 20) + 3 and got["d/sparse"].sparse
        sparse = t.extractfile("d/sparse").read()  # type: ignore[union-attr]
        assert sparse == (files / "d/sparse").read_bytes()
        assert t.extractfile("d/tail-hole").read() == (files / "d/tail-hole").read_bytes()  # type: ignore[union-attr]
    dest = tmp_path / "x"
    dest.mkdir()
    subprocess.run(["tar", "-C", str(dest), "-xf", str(out)], check=True)
    for name in ("big", "small", "empty", "sparse", "tail-hole"):
        assert (dest / "d" / name).read_bytes() == (files / "d" / name).read_bytes(), name
    # GNU tar recreated the holes
    assert (dest / "d" / "sparse").stat().st_blocks * 512 < 1 << 20
    assert (dest / "d" / "tail-hole").stat().st_size == 32 << 20


def test_pipe_and_bytesio_outputs_are_identical(files: Path) -> None:
    with DirRoot(files) as r:
        buf = io.BytesIO()
        archive.write_tar(r, buf, "/d")
        rfd, wfd = os.pipe()
        chunks: list[bytes] = []

        def drain() -> None:
            while data := os.read(rfd, 1 << 16):
                chunks.append(data)

        t = threading.Thread(target=drain)
        t.start()
        with open(wfd, "wb") as w:
            archive.write_tar(r, w, "/d")
        t.join()
        os.close(rfd)
    assert b"".join(chunks) == buf.getvalue()


@pytest.mark.parametrize("change", ["shrink", "grow"])
def test_big_file_changing_while_sent(files: Path, tmp_path: Path, change: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # case 12 through the writer thread: exact header size, zero padding, a warning
    big = files / "d" / "big"
    real = archive.TarWriter.add

    def add(self, entry, arcname):  # type: ignore[no-untyped-def]
        if entry.name == "big":
            with open(big, "r+b") as f:
                if change == "shrink":
                    f.truncate(1000)
                else:
                    f.seek(0, 2)
                    f.write(b"y" * 5000)
        return real(self, entry, arcname)

    monkeypatch.setattr(archive.TarWriter, "add", add)
    before = big.read_bytes()
    out = tmp_path / "t.tar"
    with DirRoot(files) as r:
        warnings = _tar_to_file(r, out, "/d/big")
    with tarfile.open(out) as t:
        data = t.extractfile("big").read()  # type: ignore[union-attr]
    assert len(data) == BIG
    if change == "shrink":
        assert data == before[:1000] + bytes(BIG - 1000)
        assert "shrank" in warnings[0].message
    else:
        assert data == before
        assert "grew" in warnings[0].message
    assert [w.path for w in warnings] == ["/d/big"]


def test_writer_error_reaches_the_caller(files: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        rfd, wfd = os.pipe()
        os.close(rfd)  # nobody reads: EPIPE in the writer thread
        with DirRoot(files) as r, open(wfd, "wb") as w, pytest.raises(BrokenPipeError):
            archive.write_tar(r, w, "/d")
    # every file handed to the writer thread was closed once, none leaked
    assert len(os.listdir("/proc/self/fd")) == before


def test_copy_out_big_sparse_and_hardlinked(files: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    with DirRoot(files) as r:
        res = copy_out(r, "/d", str(dest))
    assert res.warnings == 0
    for name in ("big", "small", "empty", "sparse", "tail-hole"):
        assert (dest / name).read_bytes() == (files / "d" / name).read_bytes(), name
    assert (dest / "sparse").stat().st_blocks * 512 < 1 << 20  # holes stayed holes
    assert (dest / "tail-hole").stat().st_size == 32 << 20
    assert os.path.samefile(dest / "big", dest / "big-link")
