"""Every file command on the shell-less container of each runtime (Docker, podman, containerd
as CRI shapes it, runc alone on a plain-directory root, and a bare unshare+overlay container):
the same image content, so the same answers, checked against the image's source tree built by
the harness."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

import harness
from harness import RunningContainer

RUNTIMES = ["docker_shellless", "podman_shellless", "containerd_cri", "runc_container", "bare_container"]


@pytest.fixture(params=RUNTIMES)
def ctr(request: pytest.FixtureRequest) -> RunningContainer:
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shell-less image's files as the harness builds them."""
    return harness.shellless_rootfs(tmp_path_factory.mktemp("ref") / "rootfs")


def ctrfs(*argv: str, **kw: Any) -> subprocess.CompletedProcess[bytes]:
    return harness.ctrfs(*argv, text=False, **kw)


def test_ls(ctr: RunningContainer) -> None:
    names = ctrfs("ls", f"{ctr.target}:/").stdout.decode().split("\n")
    assert {"app", "etc", "var", "proc", "dev", "tmp"} <= set(names)
    long = ctrfs("ls", "-l", f"{ctr.target}:/etc").stdout.decode().splitlines()
    row = next(x.split() for x in long if x.endswith(" os-release"))
    assert row[0] == "-rw-r--r--" and row[2:4] == ["root", "root"]


def test_cat_and_stat(ctr: RunningContainer, reference: Path) -> None:
    for p in ("/etc/os-release", "/etc/passwd", "/etc/group"):
        assert ctrfs("cat", f"{ctr.target}:{p}").stdout == (reference / p.lstrip("/")).read_bytes()
    info = json.loads(ctrfs("stat", "--json", f"{ctr.target}:/app").stdout)
    assert info["size"] == (reference / "app").stat().st_size
    assert info["mode"] == "0755" and info["type"] == "f" and info["user"] == "root"


def test_find_and_grep(ctr: RunningContainer) -> None:
    assert ctrfs("find", f"{ctr.target}:/", "--name", "os-release", "--xdev").stdout \
        == b"/etc/os-release\n"
    files = set(ctrfs("find", ctr.target, "--type", "f", "--xdev").stdout.decode().splitlines())
    assert {"/app", "/etc/passwd", "/etc/os-release", "/var/log/app.log"} <= files
    ticks = ctrfs("grep", "-n", "^tick [0-9]*$", f"{ctr.target}:/var/log/app.log").stdout
    lines = ticks.decode().splitlines()
    assert lines and all(x.split(":", 1)[1].startswith("tick ") for x in lines)
    assert ctrfs("grep", "-rl", "ID=ctrfs-shellless", f"{ctr.target}:/etc").stdout \
        == b"/etc/os-release\n"


def test_tail_and_follow(ctr: RunningContainer) -> None:
    harness.wait_until(lambda: ctrfs("cat", f"{ctr.target}:/var/log/app.log").stdout.count(b"\n") >= 2,
                       "2 log lines", timeout=30, step=0.3)
    last = ctrfs("tail", "-n", "2", f"{ctr.target}:/var/log/app.log").stdout.decode().splitlines()
    a, b = (int(x.split()[1]) for x in last)
    assert b == a + 1
    p = subprocess.Popen([sys.executable, "-m", "ctrfs", "tail", "-n", "0", "-f",
                          f"{ctr.target}:/var/log/app.log"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    time.sleep(3.2)
    p.send_signal(2)
    out, err = p.communicate(timeout=20)
    nums = [int(x.split()[1]) for x in out.decode().splitlines()]
    assert len(nums) >= 2 and nums == list(range(nums[0], nums[0] + len(nums))), err
    assert nums[0] > b


def test_du(ctr: RunningContainer, reference: Path) -> None:
    total = json.loads(ctrfs("du", "-s", "--apparent-size", "--json", ctr.target).stdout)
    assert total[0]["path"] == "/" and total[0]["bytes"] > (reference / "app").stat().st_size


def test_cp(ctr: RunningContainer, reference: Path, tmp_path: Path) -> None:
    ctrfs("cp", f"{ctr.target}:/etc", str(tmp_path / "etc"))
    for n in ("passwd", "group", "os-release"):
        assert (tmp_path / "etc" / n).read_bytes() == (reference / "etc" / n).read_bytes()
    tar = ctrfs("cp", f"{ctr.target}:/app", "-").stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        m = t.getmember("app")
        assert t.extractfile(m).read() == (reference / "app").read_bytes()  # type: ignore[union-attr]


def test_export(ctr: RunningContainer, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.tar"
    ctrfs("export", ctr.target, "-o", str(out))
    with tarfile.open(out) as t:
        members = {m.name: m for m in t.getmembers()}
        assert t.extractfile(members["etc/os-release"]).read() == \
            (reference / "etc" / "os-release").read_bytes()  # type: ignore[union-attr]
    assert {"app", "etc/passwd", "var/log/app.log", "proc", "tmp"} <= set(members)
    assert members["proc"].isdir() and not [n for n in members if n.startswith("proc/")]
    assert os.listdir(tmp_path) == ["x.tar"]
