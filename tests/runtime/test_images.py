"""Images as targets: image:// (Docker's store, containers/storage), oci:DIR[:TAG], ctrfs images.

Each is compared with the real peer: a container started from the image (docker exec), docker
export of a fresh container, docker diff / podman diff of the container whose commit made the
derived image, docker image inspect.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import harness
from harness import RunningContainer, ctrfs

pytestmark = [pytest.mark.root, pytest.mark.docker]

# What the test changes in a container before committing it as the derived image.
CHANGE_SCRIPT = ("echo v3 > /data/a.txt && rm /olddir/new && mkdir -p /new/sub && echo n > /new/sub/f"
                 " && ln -s ../data/a.txt /new/link && rm -r /data/dir && chmod 700 /root")


def lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def _commit(cli: str, image: str, tag: str) -> tuple[str, list[str]]:
    """Run CHANGE_SCRIPT in a container of ``image``, record ``CLI diff`` of it, commit it as
    ``tag``; the container is removed, the image at session end."""
    name = harness.unique_name()
    extra = list(harness.PODMAN_RUN_OPTS) if cli == "podman" else []
    try:
        harness.run(cli, "run", "--name", name, "--network", "none", *extra, image, "sh", "-c",
                    CHANGE_SCRIPT)
        peer_diff = lines(harness.out(cli, "diff", name))
        harness.run(cli, "commit", name, tag)
    finally:
        harness.run(cli, "rm", "-f", name, check=False)
    harness._register(f"{cli} image {tag}", functools.partial(harness._rmi, cli, tag))
    return tag, peer_diff


Derived = tuple[str, str, list[str]]  # (base image, derived image, the peer's diff of the commit)


@pytest.fixture(scope="module")
def docker_derived() -> tuple[str, str, list[str]]:
    base = harness.multilayer_image()
    tag, peer = _commit("docker", base, f"{harness.NAME_PREFIX}derived:1")
    return base, tag, peer


@pytest.fixture(scope="module")
def podman_images(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, list[str]]:
    root = harness.busybox_rootfs(Path(tmp_path_factory.mktemp("ctrfs-img-pbb")))
    for d, files in (("data", {"a.txt": "v1\n"}), ("data/dir", {"x": "x\n"}), ("olddir", {"new": "n\n"})):
        (root / d).mkdir(parents=True, exist_ok=True)
        for n, content in files.items():
            (root / d / n).write_text(content)
    base = harness.build_image_from_dir(root, f"{harness.NAME_PREFIX}pimg:base", cli="podman",
                                        changes=('CMD ["/bin/sleep", "100000"]',))
    tag, peer = _commit("podman", base, f"{harness.NAME_PREFIX}pimg:derived")
    return base, tag, peer


def _tar_members(data: bytes, *, content: bool = True) -> dict[str, tuple[Any, ...]]:
    """name → (type, mode, uid, gid, size, mtime, linkname, sha256 of content)."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf:
            digest = None
            if content and m.isfile():
                f = tf.extractfile(m)
                assert f is not None
                digest = hashlib.sha256(f.read()).hexdigest()
            name = m.name[2:] if m.name.startswith("./") else m.name
            out[name.rstrip("/") or "."] = (
                m.type, m.mode & 0o7777, m.uid, m.gid, m.size, int(m.mtime), m.linkname, digest)
    return out


# -- image:// on Docker's store ------------------------------------------------------------------

def test_ls_cat_which_agree_with_a_container_of_the_image(docker_multilayer: RunningContainer) -> None:
    image = f"image://{docker_multilayer.image}"
    for d in ("/", "/data", "/olddir", "/bin", "/etc"):
        peer = sorted(harness.out("docker", "exec", docker_multilayer.id, "ls", "-a", d).split())
        mine = sorted(ctrfs("ls", "-a", f"{image}:{d}").stdout.split())
        if d == "/":  # the container's own /.dockerenv, not in the image
            peer.remove(".dockerenv")
        if d == "/etc":  # mount points and the link docker's init layer adds
            peer = [n for n in peer if n not in ("hostname", "hosts", "resolv.conf", "mtab")]
        assert mine == sorted(set(peer) - {".", ".."}) or mine == peer, d
    for path in ("/data/a.txt", "/olddir/new", "/etc/os-release"):
        assert ctrfs("cat", f"{image}:{path}").stdout == \
            harness.out("docker", "exec", docker_multilayer.id, "cat", path) + "\n", path
    # which: the layer giving /data/a.txt is the same image layer (by diff-id) in both
    in_image = json.loads(ctrfs("which", "--json", f"{image}:/data/a.txt").stdout)
    in_ctr = json.loads(ctrfs("which", "--json", f"{docker_multilayer.target}:/data/a.txt").stdout)
    layers_image = {la["index"]: la for la in json.loads(ctrfs("layers", "--json", image).stdout)["layers"]}
    layers_ctr = {la["index"]: la for la in
                  json.loads(ctrfs("layers", "--json", docker_multilayer.target).stdout)["layers"]}
    assert layers_image[in_image["visible"]["layer"]]["diff_id"] == \
        layers_ctr[in_ctr["visible"]["layer"]]["diff_id"]
    shadowed = [h for h in in_image["layers"] if h["state"] != "visible"]
    assert len(shadowed) == 1  # v1 of layer2 under v2 of layer3


def test_gone_file_and_opaque_dir_of_the_image() -> None:
    image = f"image://{harness.multilayer_image()}"
    r = ctrfs("cat", f"{image}:/gone.txt", check=False)
    assert r.returncode == 1 and "no such file" in r.stderr
    assert lines(ctrfs("ls", f"{image}:/olddir").stdout) == ["new"]


def test_export_equals_docker_export_of_a_fresh_container() -> None:
    image = harness.multilayer_image()
    name = harness.unique_name()
    try:
        harness.run("docker", "create", "--name", name, "--network", "none", image)
        peer = _tar_members(harness.run("docker", "export", name).stdout)
        init = json.loads(ctrfs("layers", "--json", name).stdout)["layers"][1]
        assert init["role"] == "init"
        init_dir = Path(init["path"])
        init_paths = {str(p.relative_to(init_dir)) for p in init_dir.rglob("*")}
    finally:
        harness.run("docker", "rm", "-f", name, check=False)
    mine = _tar_members(ctrfs("export", f"image://{image}", text=False).stdout)
    # What only the container has: the entries of its -init layer (/.dockerenv, /etc/hosts,
    # /etc/hostname, /etc/resolv.conf, /etc/mtab, /dev/console, /dev/pts, /dev/shm). Directories
    # the image has too (/dev, /etc) then carry the init layer's metadata in docker export.
    only_init = {p for p in init_paths if p not in mine}
    assert {".dockerenv", "etc/hosts", "etc/hostname", "etc/resolv.conf"} <= only_init
    assert set(peer) - only_init == set(mine)
    for name_ in mine:
        if name_ in init_paths:
            continue
        assert mine[name_] == peer[name_], name_


def test_diff_of_two_docker_images_is_what_the_commit_changed(docker_derived: Derived) -> None:
    base, derived, peer_diff = docker_derived
    out = lines(ctrfs("diff", f"image://{base}", f"image://{derived}").stdout)
    assert sorted(out) == sorted(peer_diff)
    assert "A /new/sub/f" in out and "D /data/dir" in out and "C /root" in out
    rev = lines(ctrfs("diff", f"image://{derived}", f"image://{base}").stdout)
    assert "D /new" in rev and "A /data/dir" in rev and "A /data/dir/x" in rev


def test_images_lists_docker_images_as_docker_inspect_does(docker_derived: Derived) -> None:
    _, derived, _ = docker_derived
    inspect = json.loads(harness.out("docker", "image", "inspect", derived))[0]
    listed = [i for i in json.loads(ctrfs("images", "--json").stdout) if derived in i["names"]]
    assert len(listed) == 1
    img = listed[0]
    assert img["id"] == inspect["Id"]
    assert img["layer_count"] == len(inspect["RootFS"]["Layers"])
    assert [la["diff_id"] for la in reversed(img["layers"])] == inspect["RootFS"]["Layers"]
    assert img["size"] == inspect["Size"]
    assert img["runtime"] == "docker"
    repo, _, tag = derived.rpartition(":")
    row = [ln.split() for ln in lines(ctrfs("images").stdout) if ln.startswith(repo + " ")]
    assert [r[:3] for r in row] == [[repo, tag, inspect["Id"].split(":")[1][:12]]]


def test_image_ref_forms_and_unknown_image() -> None:
    image = harness.multilayer_image()
    iid = harness.out("docker", "image", "inspect", "--format", "{{.Id}}", image)
    a = ctrfs("cat", f"image://{image}:/data/a.txt").stdout
    assert ctrfs("cat", f"image://{iid}:/data/a.txt").stdout == a
    assert ctrfs("cat", f"image://{iid.split(':')[1][:12]}:/data/a.txt").stdout == a
    r = ctrfs("ls", f"image://{harness.NAME_PREFIX}no-such-image:/", check=False)
    assert r.returncode == 3 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_du_find_grep_cp_on_an_image(tmp_path: Path) -> None:
    image = f"image://{harness.multilayer_image()}"
    assert set(lines(ctrfs("find", f"{image}:/data", "--type", "f").stdout)) == {"/data/a.txt", "/data/dir/x"}
    assert lines(ctrfs("grep", "-rl", "v2", f"{image}:/data").stdout) == ["/data/a.txt"]
    assert lines(ctrfs("du", "-s", f"{image}:/data").stdout)[-1].split()[1] == "/data"
    dest = tmp_path / "out"
    ctrfs("cp", f"{image}:/olddir", str(dest))
    assert sorted(p.name for p in dest.iterdir()) == ["new"]


# -- containers/storage (podman) images ------------------------------------------------------------

@pytest.mark.podman
def test_podman_image_diff_equals_podman_diff(podman_images: tuple[str, str, list[str]]) -> None:
    base, derived, peer_diff = podman_images
    out = lines(ctrfs("diff", f"image://{base}", f"image://{derived}").stdout)
    assert sorted(out) == sorted(peer_diff)
    assert sorted(out) == sorted(lines(harness.out("podman", "diff", derived)))


@pytest.mark.podman
def test_podman_image_ls_cat_export(podman_images: tuple[str, str, list[str]]) -> None:
    _, derived, _ = podman_images
    img = f"image://{derived}"
    assert ctrfs("cat", f"{img}:/data/a.txt").stdout == "v3\n"
    assert "dir" not in ctrfs("ls", f"{img}:/data").stdout.split()
    name = harness.unique_name()
    try:
        harness.run("podman", "create", "--name", name, "--network", "none", *harness.PODMAN_RUN_OPTS,
                    derived)
        peer = _tar_members(harness.run("podman", "export", name).stdout)
    finally:
        harness.run("podman", "rm", "-f", name, check=False)
    mine = _tar_members(ctrfs("export", img, text=False).stdout)
    assert set(mine) == set(peer)
    for n in mine:
        if mine[n][0] != tarfile.DIRTYPE:  # directory mtimes: podman create touches some
            assert mine[n] == peer[n], n
    listed = [i for i in json.loads(ctrfs("images", "--json").stdout)
              if f"localhost/{derived}" in i["names"]]
    assert len(listed) == 1 and listed[0]["runtime"] == "podman" and listed[0]["layer_count"] == 2


# -- OCI layouts -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def oci_layout(tmp_path_factory: pytest.TempPathFactory,
               docker_derived: Derived) -> Iterator[tuple[str, str]]:
    _, derived, _ = docker_derived
    d = tmp_path_factory.mktemp("ctrfs-oci") / "layout"
    harness.run("skopeo", "copy", f"docker-daemon:{derived}", f"oci:{d}:v1")
    yield str(d), derived


def test_oci_layout_reads_the_same_as_the_image(oci_layout: tuple[str, str]) -> None:
    layout, derived = oci_layout
    index = json.loads(Path(layout, "index.json").read_text())
    manifest = json.loads(Path(layout, "blobs", "sha256",
                               index["manifests"][0]["digest"].split(":")[1]).read_text())
    assert all(la["mediaType"].endswith("+gzip") for la in manifest["layers"])  # read as streams
    oci, img = f"oci:{layout}:v1", f"image://{derived}"
    for path in ("/", "/data", "/new/sub", "/olddir"):
        assert ctrfs("ls", "-a", f"{oci}:{path}").stdout == ctrfs("ls", "-a", f"{img}:{path}").stdout
    assert ctrfs("cat", f"{oci}:/data/a.txt").stdout == "v3\n"
    assert ctrfs("cat", f"oci:{layout}:/new/link").stdout == "v3\n"  # the only tag: no TAG needed
    st_oci = json.loads(ctrfs("stat", "--json", f"{oci}:/bin/busybox").stdout)
    st_img = json.loads(ctrfs("stat", "--json", f"{img}:/bin/busybox").stdout)
    for k in ("mode", "uid", "gid", "size", "mtime", "type"):
        assert st_oci[k] == st_img[k], k
    assert lines(ctrfs("diff", img, oci).stdout) == []
    a = _tar_members(ctrfs("export", oci, text=False).stdout)
    b = _tar_members(ctrfs("export", img, text=False).stdout)
    assert a == b
    r = ctrfs("ls", f"{oci[:-3]}:nosuchtag:/", check=False)
    assert r.returncode == 3 and "v1" in r.stderr
