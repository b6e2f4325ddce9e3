"""ctrfs layers / which against Docker's and podman's own view of a container's layers."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

import harness
from harness import RunningContainer, ctrfs


def inspect(cli: str, what: str, fmt: str) -> Any:
    return json.loads(harness.out(cli, "inspect", "-f", fmt, what))


def layers_json(target: str) -> dict[str, Any]:
    return json.loads(ctrfs("layers", "--json", target).stdout)


def test_docker_layers_match_graphdriver(docker_multilayer: RunningContainer) -> None:
    gd = inspect("docker", docker_multilayer.id, "{{json .GraphDriver.Data}}")
    image_layers = inspect("docker", docker_multilayer.image or "", "{{json .RootFS.Layers}}")
    data = layers_json(docker_multilayer.target)
    layers = data["layers"]
    assert data["upperdir"] == gd["UpperDir"] and data["workdir"] == gd["WorkDir"]
    assert data["merged"] == gd["MergedDir"]
    assert [la["path"] for la in layers[1:]] == gd["LowerDir"].split(":")
    assert [la["role"] for la in layers] == ["upper", "init"] + ["image"] * len(image_layers)
    # Image layers, top first, carry the diff-ids docker lists bottom first.
    assert [la["diff_id"] for la in layers[2:]] == list(reversed(image_layers))
    assert all(la["chain_id"].startswith("sha256:") for la in layers[2:])
    # Counts come from walking each layer: layer 3 holds /data/a.txt and /olddir/new.
    top_image = layers[2]
    assert top_image["files"] >= 2 and top_image["whiteouts"] == 1 and top_image["opaque_dirs"] == 1
    assert layers[-1]["size"] >= os.stat("/bin/busybox").st_size


def test_layers_text_lists_every_dir(docker_multilayer: RunningContainer) -> None:
    gd = inspect("docker", docker_multilayer.id, "{{json .GraphDriver.Data}}")
    text = ctrfs("layers", "--no-count", docker_multilayer.target).stdout
    for d in [gd["UpperDir"], *gd["LowerDir"].split(":")]:
        assert d in text
    assert "init" in text


def test_podman_layer_ids(podman_shellless: RunningContainer) -> None:
    gd = inspect("podman", podman_shellless.id, "{{json .GraphDriver.Data}}")
    data = layers_json(podman_shellless.target)
    assert data["upperdir"] == gd["UpperDir"]
    assert [la["path"] for la in data["layers"][1:]] == gd["LowerDir"].split(":")
    image_id = harness.out("podman", "inspect", "-f", "{{.Image}}", podman_shellless.id).strip()
    diff_ids = json.loads(harness.out("podman", "image", "inspect", "-f", "{{json .RootFS.Layers}}",
                                      image_id))
    top = data["layers"][1]
    assert top["diff_id"] == diff_ids[-1] and top["runtime"] == "storage"
    # containers/storage names the layer directory after the layer id.
    assert top["path"] == os.path.join("/var/lib/containers/storage/overlay", top["id"], "diff")


def _which(target: str, path: str) -> dict[str, Any]:
    return json.loads(ctrfs("which", "--json", f"{target}:{path}").stdout)


def test_which_names_the_providing_layer(docker_multilayer: RunningContainer) -> None:
    image_layers = inspect("docker", docker_multilayer.image or "", "{{json .RootFS.Layers}}")
    res = _which(docker_multilayer.target, "/data/a.txt")
    visible = res["visible"]
    by_index = {la["index"]: la for la in layers_json(docker_multilayer.target)["layers"]}
    # layer3 (the last commit, image_layers[-1]) wrote v2; layer2 (v1) is shadowed.
    assert by_index[visible["layer"]]["diff_id"] == image_layers[-1]
    assert harness.docker_exec(docker_multilayer, "cat", "/data/a.txt").stdout == b"v2\n"
    shadowed = [h for h in res["layers"] if h["state"] == "shadowed"]
    assert [by_index[h["layer"]]["diff_id"] for h in shadowed] == [image_layers[-2]]


def test_which_reports_whiteout_and_opaque(docker_multilayer: RunningContainer) -> None:
    image_layers = inspect("docker", docker_multilayer.image or "", "{{json .RootFS.Layers}}")
    by_index = {la["index"]: la for la in layers_json(docker_multilayer.target)["layers"]}
    gone = _which(docker_multilayer.target, "/gone.txt")
    assert gone["exists"] is False
    states = {by_index[h["layer"]]["diff_id"]: (h["type"], h["state"]) for h in gone["layers"]}
    assert states == {image_layers[-1]: ("whiteout", "deleted"), image_layers[-2]: ("file", "hidden")}
    text = ctrfs("which", f"{docker_multilayer.target}:/gone.txt").stdout
    assert "deleted by a whiteout" in text

    olddir = _which(docker_multilayer.target, "/olddir")
    assert olddir["visible"]["opaque"] is True and olddir["visible"]["type"] == "dir"
    hidden = [h for h in olddir["layers"] if h["state"] == "hidden"]
    assert [by_index[h["layer"]]["diff_id"] for h in hidden] == [image_layers[-2]]
    assert "opaque" in hidden[0]["reason"]

    f1 = ctrfs("which", f"{docker_multilayer.target}:/olddir/f1", check=False)
    assert f1.returncode == 1 and "not present" in f1.stderr  # only below the opaque dir


@pytest.mark.docker
@pytest.mark.root
def test_which_follows_parent_symlinks() -> None:
    """Symlinks among the parents are followed inside the container (absolute, relative, and
    one to / that would be the host's root if followed on the host); the final one is reported
    as the link it is."""
    with harness.run_docker(harness.busybox_image()) as c:
        harness.docker_exec(c, "sh", "-c", "ln -s /bin /abs && ln -s bin /rel && mkdir -p /x"
                                           " && ln -s ../abs /x/up && ln -s / /x/root")
        busybox = harness.docker_exec(c, "stat", "-c", "%s", "/bin/busybox").stdout.strip()
        for path in ("/abs/busybox", "/rel/busybox", "/x/up/busybox", "/x/root/bin/busybox"):
            res = _which(c.target, path)
            vis = res["visible"]
            assert res["resolved"] == "/bin/busybox" and vis["type"] == "file", (path, res)
            assert vis["role"] == "image" and vis["size"] == int(busybox), (path, vis)
            assert os.path.getsize(os.path.join(vis["layer_path"], "bin/busybox")) == int(busybox)
        # /bin/sh is a symlink to busybox in the image: the final link itself is reported.
        res = _which(c.target, "/abs/sh")
        assert res["resolved"] == "/bin/sh" and res["visible"]["type"] == "symlink", res


@pytest.mark.parametrize("path", ["/etc/hosts", "/.dockerenv"])
def test_which_finds_init_layer_files(docker_busybox: RunningContainer, path: str) -> None:
    res = _which(docker_busybox.target, path)
    assert res["visible"]["role"] == "init"
    if path == "/etc/hosts":  # Docker bind-mounts its own file over the init layer's
        hosts = harness.out("docker", "inspect", "-f", "{{.HostsPath}}", docker_busybox.id)
        assert res["mount"] == {"mount_point": "/etc/hosts", "kind": "bind", "host_path": hosts}
    else:
        assert res["mount"] is None


def test_containerd_layers_are_snapshots(containerd_cri: RunningContainer) -> None:
    data = layers_json(containerd_cri.target)
    snap = "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/"
    assert data["layers"] and all(la["runtime"] == "containerd" for la in data["layers"])
    for la in data["layers"]:
        assert la["path"] == f"{snap}{la['id']}/fs" and la["id"].isdigit()
    # Keys from the snapshotter's bolt database: the container's own snapshot is keyed by the
    # container ID; the image layer by its chain ID (ctr's own view of the same snapshot).
    cid = containerd_cri.target.rsplit("/", 1)[-1]
    assert data["layers"][0]["names"] == [cid]
    chain = data["layers"][1]["chain_id"]
    assert chain and chain.startswith("sha256:")
    snaps = harness.out("ctr", "-n", "k8s.io", "snapshots", "ls")
    assert any(ln.split()[0] == chain and ln.split()[-1] == "Committed"
               for ln in snaps.splitlines()[1:] if ln.strip())
    # The logger's output went to the container's own snapshot: its upper dir.
    diff = ctrfs("diff", containerd_cri.target).stdout.splitlines()
    assert "A /var/log/app.log" in diff


def test_bare_overlay_layers(bare_container: RunningContainer) -> None:
    data = layers_json(bare_container.target)
    assert [la["role"] for la in data["layers"]] == ["upper", "image"]
    assert data["layers"][0]["runtime"] is None and data["layers"][0]["files"] >= 1
    assert "A /var/log/app.log" in ctrfs("diff", bare_container.target).stdout.splitlines()


def test_runc_plain_directory_root(runc_container: RunningContainer) -> None:
    """runc from an OCI bundle: the root is a directory, not an overlay. layers says so and where
    the host sees it; diff and which explain why they cannot answer, with a usage-free exit 1."""
    rootfs = runc_container.info["rootfs"]
    data = layers_json(runc_container.target)
    assert data["layers"] == [] and data["fstype"] != "overlay" and data["merged"] == rootfs
    text = ctrfs("layers", runc_container.target).stdout
    assert "not overlay" in text and f"visible on the host at: {rootfs}" in text
    for argv in (("diff", runc_container.target), ("which", f"{runc_container.target}:/app")):
        r = ctrfs(*argv, check=False)
        assert r.returncode == 1 and "not overlay" in r.stderr and "Traceback" not in r.stderr, argv
        assert r.stderr.count("\n") == 1 and r.stdout == ""
