"""The path resolution's system calls from the C core (ctrfs._native) against the ctypes
reference (ctrfs.rootfs._sys): the same file, or the same error (type, errno, message, path),
for any path through a tree of absolute, relative, looping and magic links."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctrfs import _native
from ctrfs.rootfs import _abi, _calls, _sys

RESOLVE = _abi.RESOLVE_IN_ROOT | _abi.RESOLVE_NO_MAGICLINKS


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """What a call gives: ("fd", identity of the file) or ("value", v) or ("error", ...)."""
    try:
        v = call()
    except OSError as err:
        return "error", (type(err), err.errno, err.strerror, err.filename)
    if isinstance(v, int) and call.__name__ == "open":
        try:
            st = os.fstat(v)
            return "fd", (st.st_dev, st.st_ino)
        finally:
            os.close(v)
    return "value", v


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    t = tmp_path_factory.mktemp("calls")
    (t / "a" / "b").mkdir(parents=True)
    (t / "a" / "f").write_text("f\n")
    (t / "etc").mkdir()
    (t / "etc" / "passwd").write_text("inside\n")
    os.symlink("/etc/passwd", t / "abs")  # resolves inside the root
    os.symlink("../../../..", t / "a" / "up")
    os.symlink("a", t / "link")
    os.symlink("loop", t / "loop")
    os.symlink("/proc/self/root", t / "magic")  # no /proc inside: not found
    os.symlink("missing", t / "dangling")
    fd = os.open(t, os.O_PATH | os.O_DIRECTORY)
    yield fd
    os.close(fd)


components = st.sampled_from(["a", "b", "f", "..", ".", "abs", "up", "link", "loop", "magic",
                              "dangling", "missing", "etc", "passwd", ""])
paths = st.lists(components, min_size=1, max_size=6).map(lambda cs: "/".join(cs).encode())
flags = st.sampled_from([os.O_PATH, os.O_RDONLY, os.O_PATH | os.O_NOFOLLOW,
                         os.O_RDONLY | os.O_DIRECTORY, os.O_PATH | os.O_DIRECTORY])


def both(fn: str, *args: Any) -> None:
    def native() -> Any:
        return getattr(_native, fn)(*args)

    def ctypes_() -> Any:
        return getattr(_sys, fn)(*args)

    native.__name__ = ctypes_.__name__ = "open" if fn == "openat2" else fn
    assert outcome(native) == outcome(ctypes_)


@settings(max_examples=400, deadline=None)
@given(path=paths, flag=flags)
def test_openat2_same_file_or_same_error(tree: int, path: bytes, flag: int) -> None:
    both("openat2", tree, path, flag | os.O_CLOEXEC, RESOLVE)


def test_openat2_refuses_magic_links_alike() -> None:
    proc_self = os.open("/proc/self", os.O_PATH | os.O_DIRECTORY)
    try:
        for name in (b"root", b"cwd", b"exe", b"fd/0"):
            both("openat2", proc_self, name, os.O_PATH | os.O_CLOEXEC, RESOLVE)
        with pytest.raises(OSError) as err:
            _native.openat2(proc_self, b"root", os.O_PATH, RESOLVE)
        assert err.value.errno == 40  # ELOOP
    finally:
        os.close(proc_self)


@settings(max_examples=100, deadline=None)
@given(name=components.map(str.encode))
def test_mount_id_same_answer(tree: int, name: bytes) -> None:
    both("mount_id", tree, name)


def test_mount_id_and_fs_type_of_fds_alike(tree: int) -> None:
    for path in ("/", "/proc", "/proc/self", "/sys", "/dev"):
        fd = os.open(path, os.O_PATH)
        try:
            both("mount_id", fd)
            both("mount_id", fd, b"")
            both("fs_type", fd)
        finally:
            os.close(fd)
    assert _native.fs_type(tree) == _sys.fs_type(tree)
    bad = os.open("/", os.O_PATH)
    os.close(bad)
    both("fs_type", bad)
    both("mount_id", bad)
    with pytest.raises(ValueError):
        _native.openat2(tree, b"a\0b", os.O_PATH, RESOLVE)


def test_backend_chosen_by_ctrfs_native() -> None:
    """The C core answers unless CTRFS_NATIVE=0, and then no ctypes is loaded for it."""
    code = ("import sys; from ctrfs.rootfs import _calls; "
            "print(_calls.backend, 'ctypes' in sys.modules)")
    for env, want in (({}, "ctrfs._native False"), ({"CTRFS_NATIVE": "0"}, "ctrfs.rootfs._sys True")):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, **env}, check=True).stdout.strip()
        assert out == want
    assert _calls.backend in ("ctrfs._native", "ctrfs.rootfs._sys")


def test_ctypes_reference_is_the_one_resolving_without_the_core(tmp_path: Path) -> None:
    """A path read with CTRFS_NATIVE=0 resolves through the reference, with the same result."""
    (tmp_path / "x").write_text("x\n")
    code = ("import os, sys; from ctrfs.rootfs import _calls, _abi; "
            f"fd = os.open({str(tmp_path)!r}, os.O_PATH); "
            "f = _calls.openat2(fd, b'x', os.O_RDONLY, _abi.RESOLVE_IN_ROOT); "
            "print(os.read(f, 10).decode().strip(), _calls.backend)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "CTRFS_NATIVE": "0"}, check=True).stdout.split()
    assert out == ["x", "ctrfs.rootfs._sys"]
