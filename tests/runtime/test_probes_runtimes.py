"""ctrfs libs on the shell-less logger under every runtime: the static /app it runs, its build-id,
and the overlay layer that provides it, with a host path verified to be the mapped inode."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

import harness

RUNTIMES = ["docker_shellless", "podman_shellless", "containerd_cri", "runc_container", "bare_container"]


def _build_id(path: str) -> str:
    notes = subprocess.run(["readelf", "-n", "-W", path], check=True, capture_output=True, text=True).stdout
    m = re.search(r"Build ID: ([0-9a-f]+)", notes)
    assert m, f"{path} has no build-id note"
    return m.group(1)


@pytest.mark.parametrize("fixture", RUNTIMES)
def test_libs_lists_the_static_app(fixture: str, request: pytest.FixtureRequest) -> None:
    c: harness.RunningContainer = request.getfixturevalue(fixture)
    r = subprocess.run([sys.executable, "-m", "ctrfs", "libs", c.target, "--json"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    (app,) = doc["objects"]  # a static binary maps nothing else
    assert app["path"] == "/app" and app["executable"] and c.pid in app["pids"]
    assert app["identity"] == "verified" and app["host_path"] == f"/proc/{app['pids'][0]}/root/app"
    assert os.path.samestat(os.stat(app["host_path"]), os.stat(f"/proc/{c.pid}/exe"))
    assert app["build_id"] == _build_id(str(harness.logger_binary()))
    assert app["elf_type"] in ("ET_EXEC", "ET_DYN") and app["soname"] is None
    layer = app["layer"]
    if fixture == "runc_container":  # a plain directory as root: no layers to attribute
        assert layer is None
        return
    assert layer is not None and layer["kind"] == "lower" and layer["verified"]
    layer_file = os.path.join(layer["dir"], "app")
    assert os.path.isfile(layer_file) and _build_id(layer_file) == app["build_id"]
    if fixture == "bare_container":
        assert layer["dir"] == c.info["lowerdir"]
