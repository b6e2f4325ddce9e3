"""/proc/<pid>/maps parser: kernel output shapes, odd names, and a live mapping of this process."""

from __future__ import annotations

import mmap
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctrfs.proc.maps import ParseError, parse_line, parse_maps

REAL = b"""\
55c104856000-55c104892000 r--p 00000000 00:32 1482967                    /usr/bin/openssl
55c104944000-55c104946000 rw-p 00000000 00:00 0\x20
55c122219000-55c1222bc000 rw-p 00000000 00:00 0                          [heap]
7f4b72b4a000-7f4b72ba7000 r-xp 0001f000 00:32 1482971                    /lib/x86_64-linux-gnu/libssl.so.3
7f4b72bdc000-7f4b72bde000 r-xp 00000000 00:00 0                          [vdso]
7f0000000000-7f0000001000 rw-s 00000000 00:01 2049                       /memfd:jit (deleted)
7f0000002000-7f0000003000 rw-p 00000000 00:00 0                          [anon:glibc malloc]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
"""


def test_real_lines() -> None:
    maps = parse_maps(REAL)
    assert len(maps) == 8
    exe, anon, heap, ssl, vdso, memfd, named, vsys = maps
    assert (exe.start, exe.end, exe.perms, exe.offset) == (0x55C104856000, 0x55C104892000, "r--p", 0)
    # maps prints major:minor in hex: 00:32 is the overlay mountinfo calls 0:50
    assert (exe.major, exe.minor, exe.dev) == (0, 50, os.makedev(0, 50))
    assert exe.inode == 1482967 and exe.path == "/usr/bin/openssl" and exe.is_file and not exe.deleted
    assert anon.path is None and not anon.is_file
    assert heap.path == "[heap]" and not heap.is_file
    assert ssl.offset == 0x1F000 and ssl.executable and ssl.range_name == "7f4b72b4a000-7f4b72ba7000"
    assert vdso.path == "[vdso]"
    assert memfd.path == "/memfd:jit" and memfd.deleted and memfd.is_file and memfd.perms == "rw-s"
    assert named.path == "[anon:glibc malloc]" and not named.is_file
    assert vsys.start == 0xFFFFFFFFFF600000


@pytest.mark.parametrize(("tail", "path", "deleted"), [
    (b"/opt/my app/lib x.so", "/opt/my app/lib x.so", False),
    (b"/opt/lib.so (deleted)", "/opt/lib.so", True),
    (b"/opt/with space  (deleted)", "/opt/with space ", True),
    (b"/trailing  ", "/trailing  ", False),
    (b"/new\\012line.so", "/new\nline.so", False),
    (b"/back\\slash.so", "/back\\slash.so", False),  # only newline is escaped in maps
    (b"/x\xffy.so", os.fsdecode(b"/x\xffy.so"), False),
    (b"[stack]", "[stack]", False),
])
def test_paths(tail: bytes, path: str, deleted: bool) -> None:
    m = parse_line(b"7f00-7f01 r--p 00000000 fd:01 42     " + tail)
    assert (m.path, m.deleted, m.major, m.minor) == (path, deleted, 0xFD, 1)


def test_large_device_numbers_are_hex() -> None:
    m = parse_line(b"1000-2000 r--p 00001000 103:1f 9 /lib/a.so")
    assert (m.major, m.minor, m.offset) == (0x103, 0x1F, 0x1000)


@pytest.mark.parametrize("bad", [b"1000-2000 r--p 0 00:00", b"10002000 r--p 0 00:00 0",
                                 b"1000-2000 r--p 0 0000 0", b"1000-zz r--p 0 00:00 0 /a",
                                 b"1000-2000 r-p 0 00:00 0 /a", b"1000-2000 r--p 0 00:00 x /a"])
def test_malformed_lines(bad: bytes) -> None:
    with pytest.raises(ParseError):
        parse_line(bad)


names = st.binary(min_size=1, max_size=30).filter(lambda b: b"\x00" not in b).map(
    lambda b: b"/" + b.replace(b"\n", b"\\012"))


@given(start=st.integers(0, 2**47), size=st.integers(1, 2**20), off=st.integers(0, 2**40),
       major=st.integers(0, 4095), minor=st.integers(0, 2**20 - 1), ino=st.integers(1, 2**63),
       name=names, deleted=st.booleans(), pad=st.integers(1, 40))
def test_round_trip_kernel_format(start: int, size: int, off: int, major: int, minor: int, ino: int,
                                  name: bytes, deleted: bool, pad: int) -> None:
    # show_map_vma: "%08lx-%08lx %c%c%c%c %08llx %02x:%02x %lu " then padding, then the path
    line = (f"{start:08x}-{start + size:08x} r-xp {off:08x} {major:02x}:{minor:02x} {ino}".encode()
            + b" " * pad + name + (b" (deleted)" if deleted else b""))
    m = parse_line(line)
    assert (m.start, m.end, m.offset) == (start, start + size, off)
    assert (m.major, m.minor, m.inode) == (major, minor, ino)
    expected = name.replace(b"\\012", b"\n")
    if not deleted and name.endswith(b" (deleted)"):
        # indistinguishable by name from a deleted file; callers confirm with the inode
        assert m.deleted
        expected = expected[: -len(b" (deleted)")]
    else:
        assert m.deleted == deleted
    assert os.fsencode(m.path or "") == expected


@pytest.mark.root  # /proc/<pid>/map_files needs CAP_SYS_ADMIN
def test_live_mapping_with_space_then_deleted(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "lib with space.so")
    with open(path, "wb") as f:
        f.write(b"\x7fELF" + b"\0" * 8188)
    st_ = os.stat(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mm:
        assert mm[:4] == b"\x7fELF"

        def mine() -> list:
            with open("/proc/self/maps", "rb") as mf:
                return [m for m in parse_maps(mf.read()) if m.inode == st_.st_ino and m.dev == st_.st_dev]

        (m,) = mine()
        assert m.path == path and not m.deleted and m.is_file
        assert os.path.samestat(os.stat(f"/proc/self/map_files/{m.range_name}"), st_)
        os.unlink(path)
        (m,) = mine()
        assert m.path == path and m.deleted
