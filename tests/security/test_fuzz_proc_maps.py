"""Fuzzing /proc/<pid>/maps parsing (the rest of the /proc parsers are fuzzed in
tests/unit/test_proc_parsers.py, the kernel-format round trip in tests/unit/test_maps.py).

A container's process controls the names of the files it maps (and, with PR_SET_VMA_ANON_NAME,
of anonymous mappings), so the maps text a host tool reads is partly attacker-written: any
bytes must give a parse or a ParseError, never another exception, and the fast scanner used
for many processes must agree with the full parse.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ctrfs.proc.maps import iter_file_mappings, parse_maps
from ctrfs.proc.mountinfo import ParseError


@settings(max_examples=500)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_only_parse_error(data: bytes) -> None:
    try:
        parse_maps(data)
    except ParseError:
        pass
    list(iter_file_mappings(data))  # the scanner skips what it does not recognise


# What a process can put in a mapped file's name: anything but NUL and '/' per component.
names = st.lists(st.binary(min_size=1, max_size=20).filter(lambda b: b"\0" not in b and b"/" not in b),
                 min_size=1, max_size=4).map(lambda parts: b"/" + b"/".join(parts))


def _kernel_line(start: int, size: int, perms: bytes, off: int, dev: tuple[int, int], ino: int,
                 path: bytes) -> bytes:
    # show_map_vma: "%08lx-%08lx %c%c%c%c %08llx %02x:%02x %lu " padded to a column, then the
    # path through seq_file_path(..., "\n"): only a newline is escaped.
    head = f"{start:08x}-{start + size:08x} ".encode() + perms + \
        f" {off:08x} {dev[0]:02x}:{dev[1]:02x} {ino} ".encode()
    return head + b" " * max(1, 73 - len(head)) + path.replace(b"\n", b"\\012")


mappings = st.tuples(
    st.integers(0, 2**46), st.integers(1, 2**20), st.sampled_from([b"r--p", b"r-xp", b"rw-p", b"rw-s"]),
    st.integers(0, 2**32), st.tuples(st.integers(0, 255), st.integers(0, 255)), st.integers(1, 2**40),
    st.one_of(names, st.sampled_from([b"[heap]", b"[stack]", b"[vdso]", b"[anon:evil\n/etc/passwd]"])),
)


@settings(max_examples=300)
@given(st.lists(mappings, min_size=1, max_size=12))
def test_fast_scanner_agrees_with_full_parse(rows: list[tuple]) -> None:  # type: ignore[type-arg]
    data = b"\n".join(_kernel_line(*r) for r in rows) + b"\n"
    full = [m for m in parse_maps(data) if m.is_file]
    fast = list(iter_file_mappings(data))
    # The scanner reports one mapping per run of consecutive lines of the same file.
    runs = []
    for m in full:
        key = (m.major, m.minor, m.inode, m.path, m.deleted)
        if not runs or runs[-1][0] != key:
            runs.append((key, m))
    assert [(f.major, f.minor, f.inode, f.path, f.deleted, f.start) for f in fast] == \
        [(*k, m.start) for k, m in runs]
