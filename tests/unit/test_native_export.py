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
import tarfile
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from ctrfs.ops import archive
from ctrfs.rootfs.base import WalkWarning
from ctrfs.rootfs.fd import FdRoot
from trees import build, specs

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


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(spec=specs)
def test_random_trees_same_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   spec: list[tuple[list[bytes], str, int]]) -> None:
    top = Path(tempfile.mkdtemp(dir=tmp_path))  # one per example (hypothesis replays some)
    build(top, spec)
    both(top, monkeypatch)
