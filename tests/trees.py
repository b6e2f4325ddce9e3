"""Trees for the tests of the C cores (export's and cp's) against the pure-Python reference."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

from hypothesis import strategies as st

from ctrfs.ops import archive


def hostile_tree(t: Path) -> Path:
    """Every kind of entry the C cores hand back to the reference, and those they write
    themselves at the edges of what they write (names, sizes, times, owners), at ``t``."""
    (t / "a" / "b").mkdir(parents=True)
    (t / "a" / "f").write_bytes(b"hi\n")
    os.link(t / "a" / "f", t / "a" / "hard")
    os.mkfifo(t / "a" / "fifo")
    os.mknod(t / "a" / "null", 0o666 | 0o020000, os.makedev(1, 3))
    os.symlink("/etc/passwd", t / "a" / "abs")
    os.symlink("x" * 150, t / "a" / "longlink")
    os.symlink("é", t / "a" / "utf8link")
    (t / ("n" * 99)).mkdir()  # "n...n/" is 100 bytes: the longest plain ustar name
    (t / ("o" * 100)).mkdir()  # 101 with its slash: a pax path record
    (t / ("p" * 100)).write_bytes(b"")
    (t / ("q" * 101)).write_bytes(b"q")
    (t / "é-ü").write_bytes(b"utf-8")
    (t / os.fsdecode(b"\xff\xfe")).write_bytes(b"not utf-8")
    (t / "exact").write_bytes(b"e" * archive.SMALL_FILE)  # the biggest file the core writes
    (t / "over").write_bytes(b"o" * (archive.SMALL_FILE + 1))
    (t / "blocks").write_bytes(b"b" * 1024)
    (t / "big").write_bytes(os.urandom(3 << 20))
    with open(t / "sparse", "wb") as f:
        f.truncate(8 << 20)
        f.write(b"x")
    os.setxattr(t / "a" / "f", "user.k", b"v")
    os.setxattr(t / "a" / "b", "user.d", b"1")
    os.setxattr(t / "big", "user.x", b"y")
    os.symlink("t", t / "xlink")
    os.setxattr(t / "xlink", "trusted.x", b"1", follow_symlinks=False)
    (t / "a" / "b" / "zero").write_bytes(b"")
    os.utime(t / "a" / "b" / "zero", (0, 0))
    os.utime(t / "a" / "b", ns=(0, -1_500_000_000))  # before 1970: a pax mtime
    (t / "future").write_bytes(b"")
    os.utime(t / "future", (10_600_000_000, 10_600_000_000))  # past 8**11 s
    (t / "nsec").write_bytes(b"")
    os.utime(t / "nsec", ns=(0, 1_700_000_000_999_999_999))  # rounds up as a float
    (t / "owner").write_bytes(b"")
    os.chown(t / "owner", 123456789, 5)  # beyond 8**7: pax uid
    os.chown(t / "a" / "b", 4242, 4243)
    deep = t / "d"
    for i in range(45):  # deeper than the levels the core keeps open
        deep = deep / f"{i}"
    deep.mkdir(parents=True)
    (deep / "file").write_bytes(b"deep\n")
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(t / "sock"))
    finally:
        s.close()
    return t


names = st.binary(min_size=1, max_size=120).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b".."))
kinds = st.sampled_from(["file", "dir", "link", "fifo", "hard", "empty"])
specs = st.lists(st.tuples(st.lists(names, min_size=1, max_size=4), kinds,
                           st.integers(0, archive.SMALL_FILE + 5)), min_size=1, max_size=25)


def build(top: Path, spec: list[tuple[list[bytes], str, int]]) -> None:
    """The tree a ``specs`` example describes, below ``top``: what cannot be made is left out."""
    made: list[bytes] = []
    for comps, kind, size in spec:
        parent = os.fsencode(top)
        for c in comps[:-1]:
            parent = parent + b"/" + c
            try:
                os.mkdir(parent)
            except FileExistsError:
                pass
            except (NotADirectoryError, OSError):
                break
        else:
            p = parent + b"/" + comps[-1]
            try:
                if kind == "file":
                    with open(p, "xb") as f:
                        f.write(os.urandom(size))
                elif kind == "empty":
                    open(p, "xb").close()
                elif kind == "dir":
                    os.mkdir(p)
                elif kind == "link":
                    os.symlink(comps[0] * (size % 3 + 1), p)
                elif kind == "fifo":
                    os.mkfifo(p)
                elif kind == "hard" and made:
                    os.link(made[size % len(made)], p)
                if kind in ("file", "empty"):
                    made.append(p)
            except OSError:
                pass


def snapshot(top: Path) -> dict[bytes, tuple[object, ...]]:
    """What a copy of a tree is, entry by entry: type and mode, owner, size, mtime, link
    count (hard links kept), xattrs, and the content or the link's target."""
    out: dict[bytes, tuple[object, ...]] = {}
    base = os.fsencode(top)
    for dirpath, dirnames, filenames in os.walk(base):
        for n in [b"", *dirnames, *filenames]:
            p = os.path.join(dirpath, n) if n else dirpath
            rel = os.path.relpath(p, base)
            s = os.lstat(p)
            rec: tuple[object, ...] = (s.st_mode, s.st_uid, s.st_gid, s.st_size, s.st_mtime_ns,
                                       s.st_nlink, s.st_rdev,
                                       sorted(os.listxattr(p, follow_symlinks=False)))
            if os.path.islink(p):
                rec += (os.readlink(p),)
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    rec += (hashlib.sha256(f.read()).hexdigest(),)
            out[rel] = rec
    return out
