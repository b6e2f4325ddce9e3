"""Property test of the tar writer behind ``ctrfs export`` and ``ctrfs cp PATH -``: whatever
bytes a container uses for names (non-UTF-8, newlines, control characters, 255-byte
components, paths far longer than PATH_MAX and than any ustar field), the names read back by
Python's tarfile and by GNU tar are exactly the names on disk.

Trees are built under a tmp dir with ``*at()`` calls (paths beyond PATH_MAX cannot be made by
name) and exported through a DirRoot, the same Root machinery a container's ProcRoot uses.
Components are at most 255 bytes: NAME_MAX, the kernel refuses longer ones (ENAMETOOLONG), so a
"300-byte component" cannot exist on disk; long *paths* (up to ~5,600 bytes) are covered.
"""

from __future__ import annotations

import codecs
import io
import os
import shutil
import subprocess
import tarfile
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctrfs.ops.archive import write_tar
from ctrfs.rootfs.fd import DirRoot

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW


def _valid(name: bytes) -> bool:
    return b"/" not in name and b"\0" not in name and name not in (b".", b"..")


components = st.one_of(
    st.binary(min_size=1, max_size=40),
    st.text(min_size=1, max_size=30).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"new\nline", b"\x1b[31mred", b"-rf", b"*", b"\xff\xfe", b"tab\t", b" ",
                     b"\\", b"././x", b"PaxHeader", b"././@LongLink", "é".encode()]),
    st.integers(min_value=200, max_value=255).flatmap(
        lambda n: st.binary(min_size=n, max_size=n)),
).filter(_valid)

trees = st.lists(st.lists(components, min_size=1, max_size=22), min_size=1, max_size=6)


def _build(top: int, paths: list[list[bytes]]) -> set[bytes]:
    """Create each path (directories, then a file holding its own path); what was made."""
    made: set[bytes] = set()
    for comps in paths:
        fd = os.dup(top)
        try:
            for i, c in enumerate(comps):
                rel = b"/".join(comps[: i + 1])
                if i == len(comps) - 1:
                    try:
                        f = os.open(c, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644,
                                    dir_fd=fd)
                    except (FileExistsError, NotADirectoryError):
                        break
                    os.write(f, rel[-64:])
                    os.close(f)
                    made.add(rel)
                    break
                try:
                    os.mkdir(c, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                try:
                    nfd = os.open(c, _O_DIR, dir_fd=fd)
                except (NotADirectoryError, OSError):
                    break  # a file of that name already: this path is shadowed
                made.add(rel)
                os.close(fd)
                fd = nfd
        finally:
            os.close(fd)
    return made


def _gnu_tar_names(data: bytes) -> set[bytes]:
    """GNU tar's listing, C-escaped (so newlines in names do not split lines), decoded back.
    (Extracting instead would hit GNU tar's own PATH_MAX limit on the longest paths.)"""
    res = subprocess.run(["tar", "-t", "-f", "-", "--quoting-style=escape"], input=data,
                         capture_output=True)
    assert res.returncode == 0, res.stderr
    return {codecs.escape_decode(line)[0].rstrip(b"/") for line in res.stdout.split(b"\n") if line}


@pytest.mark.tar_cores
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(paths=trees)
def test_tar_names_round_trip(paths: list[list[bytes]], tar_core: str | None) -> None:
    tmp = tempfile.mkdtemp(prefix="ctrfs-s-fuzz-")
    top = os.open(tmp, _O_DIR)
    try:
        made = _build(top, paths)
        buf = io.BytesIO()
        with DirRoot(tmp) as root:
            # Opened as on the private nodev clone: the C core writes the archive (the tree is
            # the test's own, directories and files alone).
            root.direct_open = True
            stats = write_tar(root, buf, "/")
        if tar_core is not None:
            assert stats.core == ("c" if tar_core == "c-core" else "python")
        data = buf.getvalue()
        with tarfile.open(fileobj=io.BytesIO(data), encoding="utf-8",
                          errors="surrogateescape") as tf:
            members = tf.getmembers()
            names = [os.fsencode(m.name) for m in members]
            for m in members:
                if m.isfile():
                    body = tf.extractfile(m).read()  # type: ignore[union-attr]
                    assert body == os.fsencode(m.name)[-64:]
        assert sorted(names) == sorted(made)  # every name once, byte for byte
        assert _gnu_tar_names(data) == made
    finally:
        os.close(top)
        # rm -rf handles paths beyond PATH_MAX (shutil.rmtree does too, fd-based)
        shutil.rmtree(tmp)


def test_longest_paths_round_trip() -> None:
    """The fixed worst case: 22 components of 255 bytes (5,631 bytes), non-UTF-8 and
    newline-laden, through tarfile and GNU tar."""
    comps = [bytes([0xFF, 0x0A]) + bytes([65 + i % 26]) * 253 for i in range(22)]
    test_tar_names_round_trip.hypothesis.inner_test([comps], None)  # type: ignore[attr-defined]
