"""Pure /proc parsers: real-world lines, kernel escapes, and property tests on arbitrary input."""

from __future__ import annotations

import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctrfs.proc.cgroup import container_ref, container_ref_from_path, parse_cgroup
from ctrfs.proc.mountinfo import (
    ParseError,
    overlay_dirs,
    parse_mountinfo,
    root_mount,
    unescape,
)
from ctrfs.proc.stat import parse_stat, parse_status

DOCKER_ROOT = (
    b"72 48 0:39 / / rw,relatime master:2 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/"
    b"EX3ELZ3UBRG5R5VNGDTWBGKPG2:/var/lib/docker/overlay2/l/KGAT3FICZBRYOIW5EK6ZBZXAWC,upperdir=/var/lib/"
    b"docker/overlay2/3810/diff,workdir=/var/lib/docker/overlay2/3810/work\n"
    b"73 72 0:42 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n"
)


def test_docker_root_overlay() -> None:
    mounts = parse_mountinfo(DOCKER_ROOT)
    m = root_mount(mounts)
    assert m is not None and m.fstype == "overlay" and (m.major, m.minor) == (0, 39)
    assert m.propagation == "slave" and not m.read_only
    lowers, upper, work = overlay_dirs(m)
    assert lowers == ["/var/lib/docker/overlay2/l/EX3ELZ3UBRG5R5VNGDTWBGKPG2",
                      "/var/lib/docker/overlay2/l/KGAT3FICZBRYOIW5EK6ZBZXAWC"]
    assert upper == "/var/lib/docker/overlay2/3810/diff"
    assert work == "/var/lib/docker/overlay2/3810/work"


def test_no_optional_fields_and_ro() -> None:
    (m,) = parse_mountinfo(b"36 35 98:0 /mnt1 /mnt2 ro,noatime - ext3 /dev/root rw,errors=continue\n")
    assert m.optional == () and m.read_only and m.root == "/mnt1" and m.mount_point == "/mnt2"
    assert m.super_option("errors") == "continue" and m.propagation == "private"


@pytest.mark.parametrize(("raw", "text"), [
    (rb"/a\040b", "/a b"), (rb"/tab\011x", "/tab\tx"), (rb"/nl\012", "/nl\n"), (rb"/bs\134", "/bs\\"),
])
def test_escaped_mount_points(raw: bytes, text: str) -> None:
    line = b"1 0 0:1 / " + raw + b" rw shared:1 - tmpfs tmpfs rw\n"
    (m,) = parse_mountinfo(line)
    assert m.mount_point == text


def test_non_utf8_name_round_trips() -> None:
    (m,) = parse_mountinfo(b"1 0 0:1 / /x\xff\\040y rw - tmpfs tmpfs rw\n")
    assert os.fsencode(m.mount_point) == b"/x\xff y"


def test_overlay_lowerdir_with_escaped_colon_and_comma() -> None:
    line = (b"1 0 0:50 / / rw - overlay overlay rw,lowerdir=/l/a\\:b:/l/c\\054d,"
            b"upperdir=/u,workdir=/w\n")
    lowers, upper, _ = overlay_dirs(parse_mountinfo(line)[0])
    assert lowers == ["/l/a:b", "/l/c,d"] and upper == "/u"


def test_overlay_lowerdir_plus_options() -> None:
    line = b"1 0 0:50 / / rw - overlay overlay rw,lowerdir+=/l1,lowerdir+=/l2,upperdir=/u,workdir=/w\n"
    assert overlay_dirs(parse_mountinfo(line)[0])[0] == ["/l1", "/l2"]


@pytest.mark.parametrize("bad", [b"1 0 0:1 / /\n", b"x 0 0:1 / / rw - a b c\n", b"1 0 0-1 / / rw - a b c\n",
                                 b"1 0 0:1 / / rw - tmpfs\n"])
def test_malformed_mountinfo_raises_parse_error(bad: bytes) -> None:
    with pytest.raises(ParseError):
        parse_mountinfo(bad)


octal_safe = st.binary(min_size=1, max_size=40).filter(lambda b: b" " not in b and b"\n" not in b)


def _escape(raw: bytes) -> bytes:
    out = bytearray()
    for b in raw:
        if b in b" \t\n\\":
            out += b"\\%03o" % b
        else:
            out.append(b)
    return bytes(out)


@settings(max_examples=300)
@given(st.binary(min_size=1, max_size=60))
def test_escape_round_trip(raw: bytes) -> None:
    assert unescape(_escape(raw)) == raw
    line = b"5 1 8:1 / /" + _escape(raw) + b" rw master:3 - ext4 /dev/sda1 rw\n"
    (m,) = parse_mountinfo(line)
    assert os.fsencode(m.mount_point) == b"/" + raw


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_mountinfo_arbitrary_bytes_only_parse_error(data: bytes) -> None:
    try:
        parse_mountinfo(data)
    except ParseError:
        pass


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_cgroup_arbitrary_bytes_only_parse_error(data: bytes) -> None:
    try:
        lines = parse_cgroup(data)
    except ParseError:
        return
    container_ref(lines)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_stat_arbitrary_bytes_only_parse_error(data: bytes) -> None:
    try:
        parse_stat(data)
    except ParseError:
        pass
    parse_status(data)


ID = "b43a28147f4bf24db814f70e02c71718f08b90f93858252f5e5dd83198c03ec1"
UID = "0f9e5a1c-3b2d-4c6e-8f7a-1b2c3d4e5f60"


@pytest.mark.parametrize(("path", "runtime", "pod"), [
    (f"/docker/{ID}", "docker", None),
    (f"/system.slice/docker-{ID}.scope", "docker", None),
    (f"/libpod_parent/libpod-{ID}", "podman", None),
    (f"/machine.slice/libpod-{ID}.scope/container", "podman", None),
    (f"/kubepods/besteffort/pod{UID}/{ID}", None, UID),
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID.replace('-', '_')}.slice/"
     f"cri-containerd-{ID}.scope", "containerd", UID),
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID.replace('-', '_')}.slice/"
     f"crio-{ID}.scope", "cri-o", UID),
])
def test_container_ref_shapes(path: str, runtime: str | None, pod: str | None) -> None:
    ref = container_ref_from_path(path)
    assert ref is not None and ref.id == ID and ref.runtime == runtime and ref.pod_uid == pod


@pytest.mark.parametrize("path", ["/", "/user.slice/user-0.slice/session-1.scope", "/process_api/abc",
                                  f"/docker/{ID[:-1]}", "/system.slice/docker.service"])
def test_non_container_cgroups(path: str) -> None:
    assert container_ref_from_path(path) is None


def test_v1_hybrid_lines_pick_named_hierarchy() -> None:
    data = (f"9:name=systemd:/docker/{ID}\n4:memory:/docker/{ID}\n0::/\n").encode()
    lines = parse_cgroup(data)
    assert [cl.hierarchy for cl in lines] == [9, 4, 0]
    ref = container_ref(lines)
    assert ref is not None and ref.id == ID


def test_stat_with_parenthesis_in_comm() -> None:
    data = (b"4698 (we ird) (x)) S 4674 4698 4698 0 -1 4194560 98 0 0 0 0 0 0 0 20 0 1 0 32027 "
            b"1576960 2 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n")
    st_ = parse_stat(data)
    assert (st_.pid, st_.comm, st_.ppid, st_.start_time, st_.is_kernel_thread) == (
        4698, "we ird) (x)", 4674, 32027, False)


def test_status_nspid() -> None:
    assert parse_status(b"Name:\tapp\nNSpid:\t4698\t1\n")["NSpid"] == "4698\t1"


hex64 = st.text("0123456789abcdef", min_size=64, max_size=64)
cgroup_paths = st.one_of(
    st.builds(lambda h: f"/docker/{h}", hex64),
    st.builds(lambda h: f"/system.slice/docker-{h}.scope", hex64),
    st.builds(lambda u, h: f"/kubepods/besteffort/pod{u}/{h}", st.uuids().map(str), hex64),
    st.text(alphabet=st.characters(blacklist_characters="\n\0", blacklist_categories=("Cs",)),
            max_size=80).map(lambda t: "/" + t),
)


@settings(max_examples=300)
@given(cgroup_paths, st.booleans())
def test_fast_ref_agrees_with_full_parse(path: str, hybrid: bool) -> None:
    from ctrfs.proc.cgroup import container_ref_fast

    text = (f"9:name=systemd:{path}\n4:memory:{path}\n0::/\n" if hybrid else f"0::{path}\n")
    data = text.encode("utf-8", "surrogateescape")
    full = container_ref(parse_cgroup(data))
    fast = container_ref_fast(data)
    if fast is not None:  # when the fast path answers, it answers what the full parse does
        assert fast[0] == full
    # the shapes of the first three strategies (the free-text one can spell "/docker/" alone)
    if re.fullmatch(r"/docker/[0-9a-f]{64}|/system\.slice/docker-[0-9a-f]{64}\.scope"
                    r"|/kubepods/besteffort/pod[0-9a-f-]{36}/[0-9a-f]{64}", path):
        assert fast is not None and fast[0] is not None
