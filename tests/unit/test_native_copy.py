"""The C core of ``ctrfs cp`` (src/ctrfs/_native.c, copy_tree) against the pure-Python reference.

Both copy a tree of a direct-open FdRoot (how ctrfs walks its private nodev clone of a container's
root mount) into a fresh directory, as ``ctrfs cp`` does; the two copies must be the same entry by
entry (type, mode, owner, times, link counts, content, link targets) with the same warnings and
counts, for any tree: names of any bytes, every file type, hard links, sparse and big files,
setuid bits, extended attributes (dropped), trees deeper than the levels the core keeps open.
`make venv` builds the core; a run where it is missing fails here.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from ctrfs.ops import copy
from ctrfs.rootfs.base import WalkWarning
from ctrfs.rootfs.fd import FdRoot
from trees import build, snapshot, specs

pytestmark = pytest.mark.root  # device nodes, owners, trusted.* xattrs


@pytest.fixture(autouse=True)
def _core_built() -> None:
    if copy._native is None:
        pytest.fail("ctrfs._native is not built (make venv builds it; needs gcc and python3-dev)")


def cp(tree: Path, dest: Path, path: str = "/", *, native: bool, monkeypatch: pytest.MonkeyPatch,
       preserve_all: bool = False) -> tuple[list[str], copy.CopyResult]:
    """``path`` of ``tree`` copied to ``dest``; the warnings and the result."""
    monkeypatch.setenv("CTRFS_NATIVE", "1" if native else "0")
    root = FdRoot(os.open(tree, os.O_PATH | os.O_DIRECTORY), direct_open=True)
    warnings: list[WalkWarning] = []
    try:
        result = copy.copy_out(root, path, str(dest), preserve_all=preserve_all,
                               on_warning=warnings.append)
    finally:
        root.close()
    return [str(w) for w in warnings], result


def both(tree: Path, monkeypatch: pytest.MonkeyPatch, path: str = "/",
         preserve_all: bool = False) -> dict[bytes, tuple[object, ...]]:
    out = Path(tempfile.mkdtemp(dir=tree.parent))
    py_warn, py = cp(tree, out / "py", path, native=False, monkeypatch=monkeypatch,
                     preserve_all=preserve_all)
    c_warn, c = cp(tree, out / "c", path, native=True, monkeypatch=monkeypatch,
                   preserve_all=preserve_all)
    assert py.core == "python"
    assert c.core == ("python" if preserve_all else "c")
    py_tree, c_tree = snapshot(out / "py"), snapshot(out / "c")
    assert c_tree == py_tree
    assert c_warn == py_warn
    assert (c.entries, c.bytes, c.warnings) == (py.entries, py.bytes, py.warnings)
    return c_tree


def test_hostile_tree_same_copy(hostile: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    os.chmod(hostile / "a" / "f", 0o6755)
    copied = both(hostile, monkeypatch)
    assert stat.S_IMODE(copied[b"a/f"][0]) == 0o755  # setuid and setgid dropped
    assert copied[b"a/f"][5] == 2 and copied[b"a/hard"][5] == 2  # still one file, two names
    assert copied[b"a/f"][7] == [] and copied[b"big"][7] == []  # xattrs dropped
    assert stat.S_ISFIFO(copied[b"a/fifo"][0])
    assert b"a/null" not in copied and b"sock" not in copied  # devices and sockets: warned
    assert copied[b"owner"][1] == 123456789 and copied[b"a/b"][1:3] == (4242, 4243)
    assert copied[b"a/b"][4] == -1_500_000_000  # a directory's times set after its entries
    assert copied[b"a/longlink"][-1] == b"x" * 150
    assert any(k.endswith(b"/44/file") for k in copied)


def test_preserve_all_is_the_reference_alone(hostile: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copied = both(hostile, monkeypatch, preserve_all=True)
    assert copied[b"a/f"][7] == ["user.k"]


@pytest.mark.parametrize("path", ["/a", "/d/0/1", "/a/", "/" + "n" * 99])
def test_subtrees_same_copy(hostile: Path, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    both(hostile, monkeypatch, path)


def test_deep_levels_copied_by_python(hostile: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With two levels open, nearly every directory goes through the Python walk from its path."""
    monkeypatch.setattr(copy._CopyHooks, "LEVELS", 2)
    both(hostile, monkeypatch)


def test_directory_replaced_before_deep_walk(hostile: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory swapped between the core's listing and the Python walk below it: skipped,
    with a warning, never followed into what replaced it."""
    monkeypatch.setattr(copy._CopyHooks, "LEVELS", 1)
    real = copy._CopyHooks.deep

    def swap(self: copy._CopyHooks, rel: bytes, dev: int, ino: int, depth: int,
             dstdirfd: int) -> None:
        if rel == b"a":
            os.rename(hostile / "a", hostile / "a.old")
            (hostile / "a").mkdir()
            (hostile / "a" / "intruder").write_bytes(b"x")
        real(self, rel, dev, ino, depth, dstdirfd)

    monkeypatch.setattr(copy._CopyHooks, "deep", swap)
    warnings, result = cp(hostile, tmp_path / "out", native=True, monkeypatch=monkeypatch)
    assert result.core == "c"
    assert "/a: replaced during the walk; skipped" in warnings
    assert not (tmp_path / "out" / "a").exists()


def test_failed_copy_leaves_nothing(hostile: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """An error inside the core (here: the destination refuses a name) fails the whole copy
    and removes what was copied, as the reference does."""
    (tmp_path / "out").mkdir()

    def refuse(*args: object) -> None:
        raise OSError(28, "No space left on device", "x")

    monkeypatch.setattr(copy._CopyHooks, "member", refuse)
    with pytest.raises(OSError):
        cp(hostile, tmp_path / "out" / "t", native=True, monkeypatch=monkeypatch)
    assert os.listdir(tmp_path / "out") == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(spec=specs)
def test_random_trees_same_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                spec: list[tuple[list[bytes], str, int]]) -> None:
    top = Path(tempfile.mkdtemp(dir=tmp_path)) / "t"  # one per example (hypothesis replays some)
    top.mkdir()
    build(top, spec)
    both(top, monkeypatch)
