"""docs/security.md case 19 (and the runc CVE-2024-21626 lesson): no fd leaks, every fd close-on-exec.

Each library operation runs twice in this process against a real container; the set of open
fds (``/proc/self/fd``) must be the same before the first run and after the second. While an
operation runs, every fd it holds is checked in ``/proc/self/fdinfo/N``: an fd without
O_CLOEXEC would be inherited by anything the host process starts.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

import ctrfs
from ctrfs.ops.archive import write_tar
from ctrfs.ops.content import cat, compile_pattern, grep
from ctrfs.ops.copy import copy_out
from ctrfs.ops.du import du
from ctrfs.ops.find import find
from ctrfs.ops.follow import tail
from ctrfs.ops.listing import ls, stat_path
from ctrfs.rootfs.base import Root

O_CLOEXEC = 0o2000000  # fdinfo "flags:" is octal (proc(5))
_FLAGS = re.compile(rb"^flags:\s*([0-7]+)$", re.M)


def _fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


def _describe(fd: int) -> str:
    try:
        return f"fd {fd} -> {os.readlink(f'/proc/self/fd/{fd}')}"
    except OSError:
        return f"fd {fd}"


# ctrfs's own source files (by the installed package's directory: a substring test such as
# "/tests/" not in the path also skips ctrfs itself when the checkout lives under such a name)
_PACKAGE = os.path.join(os.path.dirname(os.path.abspath(ctrfs.__file__)), "")


class CloexecWatch:
    """Checks the fds opened since ``baseline`` each time a ctrfs function returns or yields
    (sys.setprofile), i.e. while walks and reads are in progress."""

    def __init__(self, baseline: set[int]) -> None:
        self.baseline = baseline
        self.violations: dict[int, str] = {}
        self.checks = 0
        self.peak = 0

    def _check(self) -> None:
        self.checks += 1
        fds = _fds() - self.baseline
        self.peak = max(self.peak, len(fds))
        for fd in fds:
            try:
                with open(f"/proc/self/fdinfo/{fd}", "rb") as f:
                    m = _FLAGS.search(f.read())
            except FileNotFoundError:
                continue  # closed meanwhile, or the listing's own fd
            if m and not int(m.group(1), 8) & O_CLOEXEC:
                self.violations.setdefault(fd, _describe(fd))

    def profile(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "return" and frame.f_code.co_filename.startswith(_PACKAGE):
            self._check()


def _consume(it: Any) -> None:
    for _ in it:
        pass


@pytest.fixture(scope="module")
def target(docker_busybox) -> str:  # type: ignore[no-untyped-def]
    import harness

    harness.docker_exec(docker_busybox, "sh", "-c",
                        "mkdir -p /fdh/sub && echo 'hello root' > /fdh/a.txt"
                        " && ln -s a.txt /fdh/link && ln /fdh/a.txt /fdh/sub/hard"
                        " && mkfifo /fdh/fifo && echo first > /fdh/log")
    return docker_busybox.target


def _op_resolve(root: Root, tmp: str) -> None:
    os.close(root.resolve("/fdh/link"))


def _op_open(root: Root, tmp: str) -> None:
    with root.open_file("/fdh/link") as f:
        assert f.read() == b"hello root\n"


def _op_walk(root: Root, tmp: str) -> None:
    _consume(root.walk("/"))


def _op_cat(root: Root, tmp: str) -> None:
    assert b"".join(cat(root, "/fdh/a.txt")) == b"hello root\n"


def _op_ls(root: Root, tmp: str) -> None:
    _consume(ls(root, "/fdh"))
    _consume(ls(root, "/", recursive=True))
    stat_path(root, "/fdh/link")


def _op_find(root: Root, tmp: str) -> None:
    _consume(find(root, "/", one_filesystem=True))
    _consume(find(root, "/dev"))  # enters /dev/pts, /dev/shm, /dev/mqueue


def _op_grep(root: Root, tmp: str) -> None:
    _consume(grep(root, compile_pattern("root"), "/", recursive=True))


def _op_du(root: Root, tmp: str) -> None:
    _consume(du(root, "/"))


def _op_tail(root: Root, tmp: str) -> None:
    _consume(tail(root, "/fdh/a.txt", lines=1))


def _op_tail_follow(root: Root, tmp: str) -> None:
    import threading

    log = f"/proc/{root.pid}/root/fdh/log"  # type: ignore[attr-defined]
    for mode in ("descriptor", "name"):
        gen = tail(root, "/fdh/log", lines=1, follow=mode, interval=0.05)
        next(gen)  # the last line

        def append() -> None:
            with open(log, "a") as f:  # the test writes as the container would
                f.write("more\n")

        t = threading.Timer(0.3, append)
        t.start()
        try:
            next(gen)  # blocks in the follower (inotify fd + the open file) until "more"
        finally:
            t.join()
            gen.close()


def _op_cp(root: Root, tmp: str) -> None:
    dest = os.path.join(tmp, "cp")
    copy_out(root, "/fdh", dest)
    shutil.rmtree(dest)
    copy_out(root, "/fdh/a.txt", dest)
    os.unlink(dest)


def _op_export(root: Root, tmp: str) -> None:
    write_tar(root, io.BytesIO(), "/")


def _op_diff(root: Root, tmp: str) -> None:
    from ctrfs.overlay.diff import changes
    from ctrfs.overlay.layers import layer_stack

    assert any(ch.path == "/fdh/a.txt" for ch in changes(layer_stack(root.container)))  # type: ignore[attr-defined]


def _op_which(root: Root, tmp: str) -> None:
    from ctrfs.overlay.layers import layer_stack
    from ctrfs.overlay.which import which

    assert which(layer_stack(root.container), "/fdh/link").visible is not None  # type: ignore[attr-defined]


def _op_layers(root: Root, tmp: str) -> None:
    from ctrfs.overlay.layers import layer_stack

    layer_stack(root.container, counts=True)  # type: ignore[attr-defined]


def _op_mounts(root: Root, tmp: str) -> None:
    from ctrfs.mounts import container_mounts

    assert container_mounts(root.container)  # type: ignore[attr-defined]


def _op_libs(root: Root, tmp: str) -> None:
    from ctrfs.probes.libs import ElfCache, container_libs

    result = container_libs(root.container, cache=ElfCache())  # type: ignore[attr-defined]
    assert any(o.executable for o in result.objects)


OPERATIONS: dict[str, Callable[[Root, str], None]] = {
    name[4:]: fn for name, fn in sorted(globals().items()) if name.startswith("_op_")
}


@pytest.mark.parametrize("op", sorted(OPERATIONS))
def test_no_fd_leak_and_all_cloexec(target: str, op: str) -> None:
    tmp = tempfile.mkdtemp(prefix="ctrfs-s-fd-")
    before = _fds()
    watch = CloexecWatch(before)
    try:
        for _ in range(2):
            sys.setprofile(watch.profile)
            try:
                # Opening and closing the root is part of every operation.
                with ctrfs.open_root(ctrfs.container(target)) as root:
                    OPERATIONS[op](root, tmp)
            finally:
                sys.setprofile(None)
            after = _fds()
            leaked = sorted(after - before)
            assert not leaked, f"{op} leaked: {[_describe(fd) for fd in leaked]}"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert watch.checks > 0 and watch.peak > 0, "the operation was never observed holding an fd"
    assert not watch.violations, f"{op}: fds without O_CLOEXEC: {list(watch.violations.values())}"
