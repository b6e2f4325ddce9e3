"""Pure parts of ctrfs.exec: what a session takes from the container's /proc entries."""

from __future__ import annotations

import shutil

from ctrfs.exec.facts import (
    DEFAULT_PATH,
    cgroup_procs_paths,
    parse_caps,
    parse_environ,
    parse_ids,
    session_env,
)
from ctrfs.exec.toolbox import is_static_elf
from ctrfs.proc.stat import parse_status

STATUS = (b"Name:\tapp\nUid:\t0\t1000\t1000\t1000\nGid:\t5\t6\t6\t6\nGroups:\t10 20 \n"
          b"NoNewPrivs:\t1\nCapBnd:\t00000000a80425fb\n")

# cgroup v1 hierarchies beside v2 ("hybrid"), as Debian 12 without systemd mounts them
MOUNTINFO = b"""\
30 1 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
35 30 0:31 /sub /mnt/pids rw - cgroup cgroup rw,pids
"""
CGROUP = b"""\
5:pids:/elsewhere/x
4:name=systemd:/docker/abc
3:memory:/docker/abc
2:cpu,cpuacct:/docker/abc
0::/docker/abc
"""


def test_environ_keeps_order_and_drops_garbage() -> None:
    assert parse_environ(b"PATH=/bin\0HOME=/root\0junk\0=x\0A=\0") == (b"PATH=/bin", b"HOME=/root", b"A=")


def test_status_caps_and_ids() -> None:
    st = parse_status(STATUS)
    assert parse_caps(st) == (0xA80425FB, True)
    assert parse_ids(st) == (1000, 6, (10, 20))


def test_session_env_appends_the_toolbox_to_path() -> None:
    env = session_env((b"PATH=/usr/bin:/bin", b"A=1"), {b"A": b"2", b"B": b"3"}, b"/.ctrfs/bin")
    assert env == {b"PATH": b"/usr/bin:/bin:/.ctrfs/bin", b"A": b"2", b"B": b"3"}
    # no PATH in the container: the usual default, then the toolbox
    assert session_env((), {}, b"/.ctrfs/bin")[b"PATH"] == DEFAULT_PATH + b":/.ctrfs/bin"
    # already there: not twice
    assert session_env((b"PATH=/.ctrfs/bin:/bin",), {}, b"/.ctrfs/bin")[b"PATH"] == b"/.ctrfs/bin:/bin"


def test_cgroup_procs_of_every_hierarchy() -> None:
    assert cgroup_procs_paths(CGROUP, MOUNTINFO) == (
        "/sys/fs/cgroup/systemd/docker/abc/cgroup.procs",
        "/sys/fs/cgroup/memory/docker/abc/cgroup.procs",
        "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cgroup.procs",
        "/sys/fs/cgroup/unified/docker/abc/cgroup.procs",
    )  # pids: its only mount shows /sub, not /elsewhere


def test_static_elf_detection() -> None:
    with open("/bin/busybox", "rb") as f:  # Debian's busybox-static
        assert is_static_elf(f.read(65536))
    with open(shutil.which("ls") or "/bin/ls", "rb") as f:
        assert not is_static_elf(f.read(65536))
    assert not is_static_elf(b"#!/bin/sh\n")
