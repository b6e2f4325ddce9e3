"""The C core of ``ctrfs export`` (src/ctrfs/_native.c) against the pure-Python reference.

Both write the archive of a direct-open FdRoot (how ctrfs walks its private nodev clone of a
container's root mount), to a pipe as the CLI does; they must give the same bytes and the same
warnings for any tree: names of any bytes and length, every file type, hard links, sparse and big
files, extended attributes, owners beyond the ustar fields, times before 1970 and after 2242,
trees deeper than the levels the core keeps open. `make venv` builds the core; a run where it is
missing fails here rather than passing on the reference alone.
"""

from __future__ import annotations

import hashlib
import os
import socket
import tarfile
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctrfs.ops import archive
from ctrfs.rootfs.base import WalkWarning
from ctrfs.rootfs.fd import FdRoot

pytestmark = pytest.mark.root  # device nodes, owners, trusted.* xattrs


@pytest.fixture(autouse=True)
def _core_built() -> None:
    if archive._native is None:
        pytest.fail("ctrfs._native is not built (make venv builds it; needs gcc and python3-dev)")


def export(tree: Path, path: str = "/", *, native: bool,
           monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, list[str], archive.ArchiveStats]:
    """The archive of ``path`` in ``tree`` through a pipe, the warnings, the stats."""
    monkeypatch.setenv("CTRFS_NATIVE", "1" if native else "0")
    calls = []
    real = archive._native.tar_tree  # type: ignore[union-attr]

    def counted(*args: object) -> None:
        calls.append(args)
        real(*args)

    monkeypatch.setattr(archive._native, "tar_tree", counted)
    root = FdRoot(os.open(tree, os.O_PATH | os.O_DIRECTORY), direct_open=True)
    r, w = os.pipe()
    chunks: list[bytes] = []

    def drain() -> None:
        while data := os.read(r, 1 << 20):
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    warnings: list[WalkWarning] = []
    try:
        with os.fdopen(w, "wb") as out:
            stats = archive.write_tar(root, out, path, on_warning=warnings.append)
    finally:
        reader.join()
        os.close(r)
        root.close()
    assert bool(calls) == native, "the C core was used" if not native else "the C core was not used"
    return b"".join(chunks), [str(x) for x in warnings], stats


def both(tree: Path, monkeypatch: pytest.MonkeyPatch, path: str = "/") -> bytes:
    py, py_warn, py_stats = export(tree, path, native=False, monkeypatch=monkeypatch)
    c, c_warn, c_stats = export(tree, path, native=True, monkeypatch=monkeypatch)
    assert hashlib.sha256(c).hexdigest() == hashlib.sha256(py).hexdigest()
    assert c_warn == py_warn
    assert (c_stats.entries, c_stats.bytes, c_stats.warnings) == (
        py_stats.entries, py_stats.bytes, py_stats.warnings)
    return c


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    t = tmp_path / "t"
    (t / "a" / "b").mkdir(parents=True)
    (t / "a" / "f").write_bytes(b"hi\n")
    os.link(t / "a" / "f", t / "a" / "hard")
    os.mkfifo(t / "a" / "fifo")
    os.mknod(t / "a" / "null", 0o666 | 0o020000, os.makedev(1, 3))
    os.symlink("/etc/passwd", t / "a" / "abs")
    os.symlink("x" * 150, t / "a" / "longlink")
    os.symlink("é", t / "a" / "utf8link")
    (t / ("n" * 99)).mkdir()  # "n...n/" is 100 bytes: the longest plain ustar name
    (t / ("o" * 100)).mkdir()  # 101 with its slash: a pax path record
    (t / ("p" * 100)).write_bytes(b"")
    (t / ("q" * 101)).write_bytes(b"q")
    (t / "é-ü").write_bytes(b"utf-8")
    (t / os.fsdecode(b"\xff\xfe")).write_bytes(b"not utf-8")
    (t / "exact").write_bytes(b"e" * archive.SMALL_FILE)  # the biggest file the core writes
    (t / "over").write_bytes(b"o" * (archive.SMALL_FILE + 1))
    (t / "blocks").write_bytes(b"b" * 1024)
    (t / "big").write_bytes(os.urandom(3 << 20))
    with open(t / "sparse", "wb") as f:
        f.truncate(8 << 20)
        f.write(b"x")
    os.setxattr(t / "a" / "f", "user.k", b"v")
    os.setxattr(t / "a" / "b", "user.d", b"1")
    os.setxattr(t / "big", "user.x", b"y")
    os.symlink("t", t / "xlink")
    os.setxattr(t / "xlink", "trusted.x", b"1", follow_symlinks=False)
    (t / "a" / "b" / "zero").write_bytes(b"")
    os.utime(t / "a" / "b" / "zero", (0, 0))
    os.utime(t / "a" / "b", ns=(0, -1_500_000_000))  # before 1970: a pax mtime
    (t / "future").write_bytes(b"")
    os.utime(t / "future", (10_600_000_000, 10_600_000_000))  # past 8**11 s
    (t / "nsec").write_bytes(b"")
    os.utime(t / "nsec", ns=(0, 1_700_000_000_999_999_999))  # rounds up as a float
    (t / "owner").write_bytes(b"")
    os.chown(t / "owner", 123456789, 5)  # beyond 8**7: pax uid
    os.chown(t / "a" / "b", 4242, 4243)
    deep = t / "d"
    for i in range(45):  # deeper than the levels the core keeps open
        deep = deep / f"{i}"
    deep.mkdir(parents=True)
    (deep / "file").write_bytes(b"deep\n")
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(t / "sock"))
    finally:
        s.close()
    return t


def test_hostile_tree_same_archive(hostile: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = both(hostile, monkeypatch)
    import io

    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        names = tf.getnames()
        assert "a/b/zero" in names and "a/null" in names
        assert tf.getmember("nsec").mtime == 1_700_000_001  # as the reference rounds it
        assert tf.getmember("owner").uid == 123456789
        assert tf.getmember("a/f").pax_headers["SCHILY.xattr.user.k"] == "v"
        assert any(n.endswith("/44/file") for n in names)
    assert "sock" not in names


@pytest.mark.parametrize("path", ["/a", "/d/0/1", "/a/", "/" + "n" * 99])
def test_subtrees_same_archive(hostile: Path, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    both(hostile, monkeypatch, path)


def test_deep_levels_walked_by_python(hostile: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With two levels open, nearly every directory goes through the Python walk from its path."""
    monkeypatch.setattr(archive._NativeHooks, "LEVELS", 2)
    both(hostile, monkeypatch)


def test_directory_replaced_before_deep_walk(hostile: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory swapped between the core's listing and the Python walk below it: skipped,
    with a warning, never followed into what replaced it."""
    monkeypatch.setattr(archive._NativeHooks, "LEVELS", 1)
    real = archive._NativeHooks.deep

    def swap(self: archive._NativeHooks, rel: bytes, dev: int, ino: int, depth: int) -> None:
        if rel == b"a":
            os.rename(hostile / "a", hostile / "a.old")
            (hostile / "a").mkdir()
            (hostile / "a" / "intruder").write_bytes(b"x")
        real(self, rel, dev, ino, depth)

    monkeypatch.setattr(archive._NativeHooks, "deep", swap)
    _, warnings, _ = export(hostile, native=True, monkeypatch=monkeypatch)
    assert "/a: replaced during the walk; skipped" in warnings


names = st.binary(min_size=1, max_size=120).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b".."))
kinds = st.sampled_from(["file", "dir", "link", "fifo", "hard", "empty"])
specs = st.lists(st.tuples(st.lists(names, min_size=1, max_size=4), kinds,
                           st.integers(0, archive.SMALL_FILE + 5)), min_size=1, max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(spec=specs)
def test_random_trees_same_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   spec: list[tuple[list[bytes], str, int]]) -> None:
    top = Path(tempfile.mkdtemp(dir=tmp_path))  # one per example (hypothesis replays some)
    made: list[bytes] = []
    for comps, kind, size in spec:
        parent = os.fsencode(top)
        for c in comps[:-1]:
            parent = parent + b"/" + c
            try:
                os.mkdir(parent)
            except FileExistsError:
                pass
            except (NotADirectoryError, OSError):
                break
        else:
            p = parent + b"/" + comps[-1]
            try:
                if kind == "file":
                    with open(p, "xb") as f:
                        f.write(os.urandom(size))
                elif kind == "empty":
                    open(p, "xb").close()
                elif kind == "dir":
                    os.mkdir(p)
                elif kind == "link":
                    os.symlink(comps[0] * (size % 3 + 1), p)
                elif kind == "fifo":
                    os.mkfifo(p)
                elif kind == "hard" and made:
                    os.link(made[size % len(made)], p)
                if kind in ("file", "empty"):
                    made.append(p)
            except OSError:
                pass
    both(top, monkeypatch)
