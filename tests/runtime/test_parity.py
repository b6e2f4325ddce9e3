"""ctrfs cp / export / diff against docker's and podman's own answers, entry by entry.

``cp`` copies the container's view (volumes, binds, tmpfs and the runtime's /etc/hosts binds with
their content; kernel interfaces as the root filesystem holds them), ``export`` the root
filesystem alone (beneath mount points included), ``diff`` each runtime's rule. Each comparison
runs with the mount API (a clone of the root mount) and without it (CTRFS_MOUNT_API=0: the
overlay's merged dir in the host namespace), and names every intended difference with its reason.
"""

from __future__ import annotations

import hashlib
import io
import json
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import harness
from harness import RunningContainer
from trees import snapshot

pytestmark = pytest.mark.root

MODES = {"clone": {}, "fallback": {"CTRFS_MOUNT_API": "0"}}
# Exports and copies on the clone are done by the C core (ctrfs._native) unless CTRFS_NATIVE=0:
# the pure-Python reference is compared with docker too.
EXPORT_MODES = {**MODES, "clone-python": {"CTRFS_NATIVE": "0"}}

# What the Debian containers change, deep in lower directories: nested copy-ups (/usr/share/zz),
# deletions below copied-up directories (/usr/share/doc/tar, /usr/lib/os-release), mode-only
# changes (a setuid binary, a directory's mode), files removed and renamed in /etc, a user added.
DEBIAN_CHANGES = (
    "useradd -m ctrfsuser && rm -rf /usr/share/doc/tar && chmod u+s /usr/bin/tac"
    " && rm /etc/issue.net && mv /etc/issue /etc/issue.old && mkdir -p /usr/share/zz/deep"
    " && echo x > /usr/share/zz/deep/f && rm -f /usr/lib/os-release && chmod 0700 /usr/local/share"
)

Member = tuple[bytes, int, int, int, int, str, str | None]


def members(data: bytes) -> dict[str, Member]:
    """path → (type, mode, uid, gid, size, link target, sha256 of content). Names lose a leading
    "/" or "./" and a trailing "/" (docker writes "/etc/x", ctrfs "etc/x"); a hardlink member
    counts as the file it links to (which of the names is stored first depends on walk order)."""
    out: dict[str, Member] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        for m in t:
            name = _norm(m.name)
            if m.islnk():
                out[name] = out[_norm(m.linkname)]
                continue
            digest = None
            if m.isfile():
                f = t.extractfile(m)
                assert f is not None
                digest = hashlib.sha256(f.read()).hexdigest()
            out[name] = (m.type, m.mode & 0o7777, m.uid, m.gid, m.size if m.isfile() else 0,
                         m.linkname if m.issym() else "", digest)
    return out


def _norm(name: str) -> str:
    name = name.lstrip("/")
    if name.startswith("./"):
        name = name[2:]
    return name.rstrip("/") or "."


def assert_same(peer: dict[str, Member], ours: dict[str, Member],
                intended: dict[str, str] | None = None, *, volatile: tuple[str, ...] = (),
                owners: str | None = None) -> None:
    """Every entry equal, except the paths (and what is below them) named in ``intended``
    (path → reason), which must really differ, and ``volatile`` paths the container itself is
    writing meanwhile. ``owners`` (a reason) compares without uid/gid, after checking the
    peer wrote every entry as owned by root."""
    intended = intended or {}
    if owners is not None:
        assert {(m[2], m[3]) for m in peer.values()} == {(0, 0)}, owners
        assert any((m[2], m[3]) != (0, 0) for m in ours.values()), owners
        peer = {p: (m[0], m[1], 0, 0, *m[4:]) for p, m in peer.items()}
        ours = {p: (m[0], m[1], 0, 0, *m[4:]) for p, m in ours.items()}

    def excused(p: str) -> str | None:
        for q in intended:
            if p == q or p.startswith(q + "/"):
                return q
        return None

    diffs = [p for p in sorted(set(peer) | set(ours))
             if peer.get(p) != ours.get(p) and p not in volatile]
    unexcused = [(p, peer.get(p), ours.get(p)) for p in diffs if excused(p) is None]
    assert not unexcused, f"{len(unexcused)} entries differ, first: {unexcused[:5]}"
    for q, reason in intended.items():
        assert any(excused(p) == q for p in diffs), f"no longer differs at {q} ({reason})"
    assert len(ours) >= 5


@pytest.fixture(scope="module")
def mounted() -> Iterator[RunningContainer]:
    """busybox with a bind mount (/data), a named volume (/vol), a tmpfs (/mnt) and docker's own
    /etc/hosts, /etc/hostname, /etc/resolv.conf binds; what the root filesystem holds beneath
    /data differs from what is mounted there."""
    harness.sweep_stale()
    bind = harness._tempdir("bind")
    (bind / "v.txt").write_text("bind file v\n")
    (bind / "sub").mkdir()
    (bind / "sub" / "y").write_text("y\n")
    vol = harness.unique_name()
    harness.run("docker", "volume", "create", "--label", harness._owner_label(), vol)
    try:
        with harness.run_docker(harness.busybox_image(), harness.NAME_PREFIX,
                                "-v", f"{bind}:/data", "-v", f"{vol}:/vol",
                                "--tmpfs", "/mnt:size=1m", cmd=harness.BUSYBOX_CMD) as c:
            harness.docker_exec(c, "sh", "-c", "echo volfile > /vol/f.txt; mkdir /vol/d;"
                                "echo tmp > /mnt/t.txt; mkdir -p /etc/x; echo hi > /etc/x/h")
            yield c
    finally:
        harness.run("docker", "volume", "rm", "-f", vol, check=False)
        harness.run("rm", "-rf", str(bind), check=False)


def _debian(cli: str) -> Iterator[RunningContainer]:
    harness.sweep_stale()
    image = harness.debian_image(cli)
    with harness.run_docker(image, harness.NAME_PREFIX, cli=cli, cmd=harness.DEBIAN_CMD) as c:
        harness.docker_exec(c, "sh", "-c", DEBIAN_CHANGES)
        yield c


@pytest.fixture(scope="module")
def debian_docker() -> Iterator[RunningContainer]:
    yield from _debian("docker")


@pytest.fixture(scope="module")
def debian_podman() -> Iterator[RunningContainer]:
    yield from _debian("podman")


def _ours(env: dict[str, str], *argv: str) -> dict[str, Member]:
    return members(harness.ctrfs(*argv, text=False, env=env).stdout)


def _peer(cli: str, *argv: str) -> dict[str, Member]:
    return members(harness.run(cli, *argv, timeout=300).stdout)


# docker cp reads the container's files from the daemon's own mount of the root filesystem plus
# the volumes and binds it mounts there (daemon/archive.go, mountVolumes); a --tmpfs mount exists
# only in the container's mount namespace, so docker cp copies the empty mount point
# (moby/moby#22020). ctrfs copies what the container sees there.
TMPFS_REASON = "docker cp does not see --tmpfs mounts (moby/moby#22020); ctrfs copies them"


@pytest.mark.parametrize("mode", MODES)
def test_cp_root_equals_docker_cp(mounted: RunningContainer, mode: str) -> None:
    ours = _ours(MODES[mode], "cp", f"{mounted.name}:/", "-")
    peer = _peer("docker", "cp", f"{mounted.name}:/", "-")
    assert ours["data/v.txt"][4] == len("bind file v\n")
    assert ours["etc/hosts"][4] > 0 and ours["vol/f.txt"][4] == len("volfile\n")
    assert "data/hidden" not in ours
    assert_same(peer, ours, {
        ".": "docker cp writes the root itself as a '/' member; ctrfs writes no member for the "
             "root of a copy (as docker export does not)",
        "mnt": TMPFS_REASON,
    })


@pytest.mark.parametrize("mode", MODES)
def test_cp_etc_equals_docker_cp(mounted: RunningContainer, mode: str) -> None:
    ours = _ours(MODES[mode], "cp", f"{mounted.name}:/etc", "-")
    assert_same(_peer("docker", "cp", f"{mounted.name}:/etc", "-"), ours)
    assert ours["etc/hostname"][4] > 0 and ours["etc/resolv.conf"][4] > 0


def _tree(top: Path) -> dict[bytes, tuple[object, ...]]:
    """A copied tree entry by entry, as a tar member can carry it (mtimes in whole seconds),
    directories' own sizes left out (the filesystem's, not the container's)."""
    return {p: (*m[:3], 0 if stat.S_ISDIR(m[0]) else m[3], m[4] // 10**9, *m[5:])
            for p, m in snapshot(top).items()}


@pytest.mark.parametrize("mode", EXPORT_MODES)
def test_cp_into_directory_equals_docker_cp(mounted: RunningContainer, mode: str,
                                            tmp_path: Path) -> None:
    """cp of the root into a directory (the C core's work on the clone, and the reference's)
    gives what `docker cp -a` gives, across the bind, the volume and docker's /etc binds."""
    res = harness.ctrfs("cp", "--json", f"{mounted.name}:/", str(tmp_path / "ours"),
                        env=EXPORT_MODES[mode])
    assert json.loads(res.stdout)["core"] == ("c" if mode == "clone" else "python")
    harness.run("docker", "cp", "-a", f"{mounted.name}:/", str(tmp_path / "peer"))
    ours, peer = _tree(tmp_path / "ours"), _tree(tmp_path / "peer")
    assert ours[b"vol/f.txt"][-1] == peer[b"vol/f.txt"][-1]
    diffs = {p for p in set(ours) | set(peer) if ours.get(p) != peer.get(p)}
    assert diffs == {b"mnt", b"mnt/t.txt"}, TMPFS_REASON


@pytest.mark.parametrize("mode", EXPORT_MODES)
def test_cp_into_directory_follows_mounts(mounted: RunningContainer, mode: str,
                                          tmp_path: Path) -> None:
    harness.ctrfs("cp", f"{mounted.name}:/", str(tmp_path / "out"), env=EXPORT_MODES[mode])
    out = tmp_path / "out"
    assert (out / "data" / "sub" / "y").read_text() == "y\n"
    assert (out / "vol" / "f.txt").read_text() == "volfile\n"
    assert (out / "mnt" / "t.txt").read_text() == "tmp\n"
    assert (out / "etc" / "hosts").stat().st_size > 0
    assert sorted(p.name for p in (out / "dev").iterdir()) == ["console", "pts", "shm"]
    assert not any((out / "proc").iterdir())
    harness.ctrfs("cp", "-x", f"{mounted.name}:/", str(tmp_path / "x"), env=EXPORT_MODES[mode])
    assert not (tmp_path / "x" / "data" / "v.txt").exists()
    assert (tmp_path / "x" / "etc" / "hosts").stat().st_size == 0  # the root fs's placeholder


@pytest.mark.parametrize("mode", EXPORT_MODES)
def test_export_equals_docker_export_with_mounts(mounted: RunningContainer, mode: str) -> None:
    ours = _ours(EXPORT_MODES[mode], "export", mounted.name)
    assert_same(_peer("docker", "export", mounted.name), ours)
    assert ours["etc/hosts"][1] == 0o755 and ours["etc/hosts"][4] == 0  # init layer placeholder
    assert "dev/console" in ours and "data/v.txt" not in ours


@pytest.mark.parametrize("mode", EXPORT_MODES)
def test_export_equals_docker_export_debian(debian_docker: RunningContainer, mode: str) -> None:
    ours = _ours(EXPORT_MODES[mode], "export", debian_docker.name)
    assert_same(_peer("docker", "export", debian_docker.name), ours)
    assert "dev/fd" in ours or "dev/null" in ours or "dev/console" in ours


def test_export_c_core_writes_the_reference_bytes(debian_docker: RunningContainer) -> None:
    """The C core and the pure-Python writer give the same archive, byte for byte, of a real
    container (thousands of files of every kind in overlay layers); --json says which ran."""
    runs = {}
    for mode, env in EXPORT_MODES.items():
        res = harness.ctrfs("export", "--json", debian_docker.name, text=False, env=env)
        runs[mode] = (hashlib.sha256(res.stdout).hexdigest(), json.loads(res.stderr)["core"])
    assert runs["clone"][1] == "c"
    assert runs["clone-python"][1] == "python" and runs["fallback"][1] == "python"
    assert runs["clone"][0] == runs["clone-python"][0]


@pytest.mark.parametrize("mode", EXPORT_MODES)
def test_export_equals_podman_export_debian(debian_podman: RunningContainer, mode: str) -> None:
    ours = _ours(EXPORT_MODES[mode], "export", debian_podman.name)
    assert_same(_peer("podman", "export", debian_podman.name), ours)


# podman cp (libpod/container_copy_linux.go, copier with its default excludes) leaves the
# kernel interfaces' mount points out entirely; ctrfs keeps them as the root filesystem's
# directories, as docker cp does.
PODMAN_CP_EXCLUDES = {p: "podman cp leaves /dev, /proc and /sys out; ctrfs (as docker cp) "
                         "copies the root filesystem's directories there"
                      for p in ("dev", "proc", "sys")}
# podman cp's tar stream gives every entry the invoking user's owner (root here: the copier's
# chown to the caller); ctrfs keeps the container's owners, as docker cp does.
PODMAN_CP_OWNERS = "podman cp writes every entry as root:root; ctrfs keeps the owners"


@pytest.mark.parametrize("mode", MODES)
def test_cp_equals_podman_cp_debian(debian_podman: RunningContainer, mode: str) -> None:
    ours = _ours(MODES[mode], "cp", f"{debian_podman.name}:/", "-")
    assert_same(_peer("podman", "cp", f"{debian_podman.name}:/", "-"), ours, PODMAN_CP_EXCLUDES,
                owners=PODMAN_CP_OWNERS)
    ours = _ours(MODES[mode], "cp", f"{debian_podman.name}:/etc", "-")
    assert_same(_peer("podman", "cp", f"{debian_podman.name}:/etc", "-"), ours,
                owners=PODMAN_CP_OWNERS)
    assert ours["etc/hosts"][4] > 0


def test_cp_and_export_equal_podman_with_mounts(tmp_path: Path) -> None:
    harness.sweep_stale()
    bind = tmp_path / "bind"
    bind.mkdir()
    (bind / "v.txt").write_text("v\n")
    vol = harness.unique_name()
    harness.run("podman", "volume", "create", "--label", harness._owner_label(), vol)
    try:
        with harness.run_docker(harness.shellless_image("podman"), harness.NAME_PREFIX,
                                "-v", f"{bind}:/data", "-v", f"{vol}:/vol", "--tmpfs", "/mnt",
                                cli="podman", wait_log=True) as c:
            for mode, env in MODES.items():
                ours = _ours(env, "cp", f"{c.name}:/", "-")
                assert ours["data/v.txt"][4] == 2, mode
                # the shell-less image's logger appends to its log meanwhile
                log = ("var/log/app.log",)
                assert_same(_peer("podman", "cp", f"{c.name}:/", "-"), ours, PODMAN_CP_EXCLUDES,
                            volatile=log)
                assert_same(_peer("podman", "export", c.name), _ours(env, "export", c.name),
                            volatile=log)
    finally:
        harness.run("podman", "volume", "rm", "-f", vol, check=False)


def test_stopped_export_equals_docker_export(tmp_path: Path) -> None:
    """A stopped container's export is the offline merge of its layers (no process to clone)."""
    harness.sweep_stale()
    image = harness.debian_image("docker")
    with harness.run_docker(image, harness.NAME_PREFIX, "-v", f"{tmp_path}:/data",
                            cmd=harness.DEBIAN_CMD) as c:
        harness.docker_exec(c, "sh", "-c", DEBIAN_CHANGES)
        harness.run("docker", "stop", "-t", "1", c.name)
        ours = _ours({}, "export", c.name)
        assert_same(_peer("docker", "export", c.name), ours)
        assert "usr/share/zz/deep/f" in ours and "etc/issue" not in ours


def _diff_lines(out: str) -> list[str]:
    return sorted(line for line in out.splitlines() if line.strip())


def test_diff_equals_podman_diff(debian_podman: RunningContainer) -> None:
    peer = _diff_lines(harness.out("podman", "diff", debian_podman.name))
    assert "C /usr" in peer and "C /usr/share" in peer  # the rule under test
    assert _diff_lines(harness.ctrfs("diff", debian_podman.name).stdout) == peer
    ours = harness.ctrfs("diff", "--semantics", "podman", debian_podman.name).stdout
    assert _diff_lines(ours) == peer


def test_diff_equals_docker_diff(debian_docker: RunningContainer) -> None:
    peer = _diff_lines(harness.out("docker", "diff", debian_docker.name))
    assert "D /usr/share/doc/tar" in peer
    assert _diff_lines(harness.ctrfs("diff", debian_docker.name).stdout) == peer


@pytest.mark.parametrize("mode", MODES)
def test_du_find_grep_say_which_view(mounted: RunningContainer, mode: str) -> None:
    """du and find --xdev from / walk the root filesystem alone (what lies beneath /data
    included); find, grep -r and du --all-mounts the container's view (volumes, binds, tmpfs)."""
    env = MODES[mode]
    name = mounted.name
    xdev = harness.ctrfs("find", "--xdev", f"{name}:/", "--type", "f", env=env).stdout.split()
    assert "/data/hidden" not in xdev  # nothing by that name in the image
    assert "/etc/hosts" in xdev and "/data/v.txt" not in xdev and "/vol/f.txt" not in xdev
    view = harness.ctrfs("find", f"{name}:/", "--type", "f", env=env).stdout.split()
    assert {"/data/v.txt", "/data/sub/y", "/vol/f.txt", "/mnt/t.txt", "/etc/hosts"} <= set(view)
    assert not [p for p in view if p.startswith(("/proc/", "/sys/"))]
    grep = harness.ctrfs("grep", "-rl", "volfile", f"{name}:/", env=env).stdout.split()
    assert grep == ["/vol/f.txt"]
    # a start on another mount keeps to that mount: its own content
    on_bind = harness.ctrfs("du", "--apparent-size", f"{name}:/data", env=env).stdout
    assert "/data/sub" in on_bind
    total = int(harness.ctrfs("du", "-s", "--apparent-size", "--all-mounts", f"{name}",
                              env=env).stdout.split()[0])
    base = int(harness.ctrfs("du", "-s", "--apparent-size", f"{name}", env=env).stdout.split()[0])
    assert total > base
