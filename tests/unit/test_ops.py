"""ops on a directory tree used as a root (DirRoot): parsing helpers, tar and copy edge cases
that are hard to stage in a container (files changing while read, deep trees, many links)."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import threading
from pathlib import Path

import pytest

from ctrfs.errors import NotFound, UsageError
from ctrfs.ops import archive
from ctrfs.ops.content import bre_to_python, cat, compile_pattern, grep
from ctrfs.ops.copy import copy_out
from ctrfs.ops.du import du, human
from ctrfs.ops.find import FindQuery, find, parse_mmin, parse_size
from ctrfs.ops.follow import TailData, TailNotice, last_lines, tail
from ctrfs.ops.listing import ls, stat_path
from ctrfs.ops.names import Names, parse_db
from ctrfs.rootfs import WalkWarning
from ctrfs.rootfs.fd import DirRoot


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("root:x:0:0::/:/bin/sh\n# c\nweb:x:33:33::/:/bin/false\n"
                                      "dup:x:33:33::/:/bin/false\nbad\n")
    (r / "etc" / "group").write_text("root:x:0:\nwww:x:33:\n")
    (r / "d" / "e").mkdir(parents=True)
    (r / "d" / "a.log").write_bytes(b"one\nERROR two\nthree\n")
    (r / "d" / "e" / "b.log").write_bytes(b"error four\n")
    (r / "d" / "bin").write_bytes(b"\0ERROR\n")
    (r / "d" / ".hidden").write_text("h")
    os.link(r / "d" / "a.log", r / "d" / "e" / "a-again")
    os.symlink("/etc/passwd", r / "d" / "pw")
    os.mkfifo(r / "d" / "fifo")
    return r


def test_parse_db_first_name_wins() -> None:
    assert parse_db(b"root:x:0:0\nweb:x:33:33\ndup:x:33:1\n+nis\nbad\nno:x:zz:1\n") == {
        0: "root", 33: "web"}


def test_names_from_container_files_only(tree: Path) -> None:
    with DirRoot(tree) as r:
        n = Names(r)
        assert (n.user(33), n.group(33), n.user(4242)) == ("web", "www", None)
    (tree / "etc" / "passwd").unlink()
    os.symlink("/etc/missing", tree / "etc" / "passwd")
    with DirRoot(tree) as r:
        assert Names(r).user(0) is None  # never the host's root entry


@pytest.mark.parametrize("bre,py", [
    ("a\\|b", "a|b"), ("(x)", "\\(x\\)"), ("\\(x\\)\\{2\\}", "(x){2}"), ("a+b?", "a\\+b\\?"),
    ("*star", "\\*star"), ("[(|)]", "[(|)]"), ("x.*y$", "x.*y$"),
])
def test_bre_translation(bre: str, py: str) -> None:
    assert bre_to_python(bre) == py


def test_bad_regex_is_usage_error() -> None:
    with pytest.raises(UsageError):
        compile_pattern("a(", extended=True)


def test_grep_binary_special_and_recursive(tree: Path) -> None:
    rx = compile_pattern("error", ignore_case=True)
    warnings: list[WalkWarning] = []
    with DirRoot(tree) as r:
        res = list(grep(r, rx, "/d", recursive=True, on_warning=warnings.append))
    lines = {(m.path, getattr(m, "line_number", None), getattr(m, "binary", None)) for m in res}
    assert lines == {("/d/a.log", 2, None), ("/d/e/a-again", 2, None), ("/d/e/b.log", 1, None),
                     ("/d/bin", None, True)}
    assert warnings == []


def test_cat_streams_and_checks(tree: Path) -> None:
    with DirRoot(tree) as r:
        assert b"".join(cat(r, "/d/pw")).startswith(b"root:x:0:0")


@pytest.mark.root  # the tree has files chowned to other users: root only
def test_ls_sorted_hidden_and_file(tree: Path) -> None:
    with DirRoot(tree) as r:
        [lst] = list(ls(r, "/d"))
        assert [i.name for i in lst.entries] == ["a.log", "bin", "e", "fifo", "pw"]
        [lst] = list(ls(r, "/d", all=True))
        assert lst.entries[0].name == ".hidden"
        [one] = list(ls(r, "/d/a.log"))
        assert not one.is_dir and one.entries[0].nlink == 2
        rec = [x.path for x in ls(r, "/", recursive=True)]
        assert rec == ["/", "/d", "/d/e", "/etc"]
        info = stat_path(r, "/d/pw")
        assert info.type == "l" and info.link_target == b"/etc/passwd" and info.user == "root"


def test_find_queries(tree: Path) -> None:
    with DirRoot(tree) as r:
        q = FindQuery(name="*.log", types=frozenset("f"))
        assert sorted(i.path for i in find(r, "/", q)) == ["/d/a.log", "/d/e/b.log"]
        assert [i.path for i in find(r, "/d", FindQuery(types=frozenset("p")))] == ["/d/fifo"]
        assert {i.path for i in find(r, "/d", FindQuery(max_depth=0))} == {"/d"}
        big = FindQuery(size=parse_size("+10"), types=frozenset("f"))
        assert sorted(i.path for i in find(r, "/d", big)) == ["/d/a.log", "/d/e/a-again",
                                                              "/d/e/b.log"]
        fresh = FindQuery(mmin=parse_mmin("-5"), name="b.log")
        assert [i.path for i in find(r, "/", fresh)] == ["/d/e/b.log"]


def test_find_size_rounds_up_like_find() -> None:
    assert parse_size("-1M")(0) and not parse_size("-1M")(1)  # find(1)'s well-known quirk
    assert parse_size("+1k")(1025) and not parse_size("+1k")(1024)
    assert parse_size("2k")(1500)
    with pytest.raises(UsageError):
        parse_size("1X")


def test_du_counts_hardlinks_once(tree: Path) -> None:
    with DirRoot(tree) as r:
        rows = list(du(r, "/d", apparent=True))
        total = rows[-1]
        assert total.path == "/d"
        expect = sum(os.lstat(p).st_size for p in
                     [tree / "d", tree / "d" / "e", tree / "d" / "a.log", tree / "d" / "e" / "b.log",
                      tree / "d" / "bin", tree / "d" / ".hidden", tree / "d" / "pw",
                      tree / "d" / "fifo"])
        assert total.bytes == expect
        assert [u.path for u in rows] == ["/d/e", "/d"]
        assert [u.path for u in du(r, "/d", summarize=True)] == ["/d"]


def test_human_sizes() -> None:
    assert [human(n) for n in (0, 1023, 1024, 1536, 10 * 1024, 5 * 1024**3)] == [
        "0", "1023", "1.0K", "1.5K", "10K", "5.0G"]


# -- tar ----------------------------------------------------------------------------------------

def _tar(root: DirRoot, path: str = "/", **kw) -> tuple[dict[str, tarfile.TarInfo], dict, list]:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    warnings: list[WalkWarning] = []
    archive.write_tar(root, buf, path, on_warning=warnings.append, **kw)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as t:
        members = {m.name: m for m in t.getmembers()}
        data = {m.name: t.extractfile(m).read() for m in members.values() if m.isreg()}  # type: ignore[union-attr]
    return members, data, warnings


@pytest.mark.root  # the tree has files chowned to other users: root only
def test_tar_members(tree: Path) -> None:
    os.setxattr(tree / "d" / "a.log", "user.note", b"hi\xff")
    os.setxattr(tree / "d" / "bin", "trusted.overlay.opaque", b"y")
    with DirRoot(tree) as r:
        m, data, warnings = _tar(r)
    assert "" not in m and "d" in m and m["d"].isdir()
    assert m["d/pw"].issym() and m["d/pw"].linkname == "/etc/passwd"
    assert m["d/fifo"].isfifo()
    links = [n for n in ("d/a.log", "d/e/a-again") if m[n].islnk()]
    assert len(links) == 1 and m[links[0]].linkname in ("d/a.log", "d/e/a-again")
    data_member = "d/e/a-again" if links == ["d/a.log"] else "d/a.log"
    note = m[data_member].pax_headers["SCHILY.xattr.user.note"]
    assert note.encode("utf-8", "surrogateescape") == b"hi\xff"  # raw bytes kept
    assert not any(k.startswith("SCHILY.xattr.trusted.overlay") for k in m["d/bin"].pax_headers)
    assert data["d/bin"] == b"\0ERROR\n"
    assert m["d/a.log"].uname == "root" and warnings == []


def test_tar_of_subdir_uses_basename(tree: Path) -> None:
    with DirRoot(tree) as r:
        m, _, _ = _tar(r, "/d/e")
    assert set(m) == {"e", "e/b.log", "e/a-again"}


@pytest.mark.parametrize("change", ["shrink", "grow"])
def test_tar_file_changing_while_read(tree: Path, change: str, monkeypatch) -> None:
    # case 12: the header has the size seen when listed; the data must match it exactly
    big = tree / "d" / "big"
    big.write_bytes(b"x" * 100_000)
    real_open = archive.TarWriter.add

    def add(self, entry, arcname):  # type: ignore[no-untyped-def]
        if entry.name == "big":  # after the walk's lstat, before the data is read
            with open(big, "r+b") as f:
                if change == "shrink":
                    f.truncate(10)
                else:
                    f.seek(0, 2)
                    f.write(b"y" * 5000)
        return real_open(self, entry, arcname)

    monkeypatch.setattr(archive.TarWriter, "add", add)
    with DirRoot(tree) as r:
        m, data, warnings = _tar(r, "/d")
    assert m["d/big"].size == 100_000 and len(data["d/big"]) == 100_000
    if change == "shrink":
        assert data["d/big"] == b"x" * 10 + b"\0" * 99_990
        assert [w.path for w in warnings] == ["/d/big"] and "zero-padded" in warnings[0].message
    else:
        assert data["d/big"] == b"x" * 100_000
        assert "truncated" in warnings[0].message


def test_tar_vanished_entry_skipped(tree: Path) -> None:
    with DirRoot(tree) as r:
        buf = io.BytesIO()
        w = archive.TarWriter(r, buf)
        warnings: list[WalkWarning] = []
        w.warn = warnings.append
        for e in r.walk("/d"):
            if e.name == "a.log":
                os.unlink(tree / "d" / "a.log")
            w.add(e, e.path.lstrip("/"))
        w.close()
    assert [x.path for x in warnings] == ["/d/a.log"]


def test_tar_many_hardlinks_bounded(tmp_path: Path) -> None:
    # case 14: 2000 names of one inode → one data member, 1999 links, and the link table
    # forgets the inode once every name was seen
    r = tmp_path / "r"
    r.mkdir()
    (r / "f0").write_bytes(b"data")
    for i in range(1, 2000):
        os.link(r / "f0", r / f"f{i}")
    with DirRoot(r) as root:
        buf = io.BytesIO()
        w = archive.TarWriter(root, buf)
        for e in root.walk("/"):
            if e.depth:
                w.add(e, e.name)
        assert w.links == {}
        w.close()
    buf.seek(0)
    with tarfile.open(fileobj=buf) as t:
        ms = t.getmembers()
    assert sum(m.isreg() for m in ms) == 1 and sum(m.islnk() for m in ms) == 1999


def test_deep_tree_tar_and_du(tmp_path: Path) -> None:
    # case 15 (depth): 10,000 nested directories, built fd-relative (the path is far beyond
    # PATH_MAX); walked with bounded fds, no recursion.
    r = tmp_path / "deep"
    r.mkdir()
    fd = os.open(r, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(10_000):
        os.mkdir("d", dir_fd=fd)
        nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    with open(os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as f:
        f.write(b"bottom")
    os.close(fd)
    before = len(os.listdir("/proc/self/fd"))
    with DirRoot(r) as root:
        n = 0
        peak = 0
        for _ in root.walk("/"):
            n += 1
            if n % 500 == 0:
                peak = max(peak, len(os.listdir("/proc/self/fd")))
        assert n == 10_002
        assert peak < before + 120
        rows = list(du(root, "/", summarize=True, apparent=True))
        assert len(rows) == 1
    # clean up without recursion either (rm -rf copes with the depth)
    import subprocess

    subprocess.run(["rm", "-rf", str(r)], check=True)


# -- copy ---------------------------------------------------------------------------------------

def test_copy_out_tree(tree: Path, tmp_path: Path) -> None:
    os.chmod(tree / "d" / "bin", 0o4755)
    dest = tmp_path / "out"
    dest.mkdir()
    warnings: list[WalkWarning] = []
    with DirRoot(tree) as r:
        res = copy_out(r, "/d", str(dest), on_warning=warnings.append)
    got = dest / "d"
    assert res.dest == str(got)
    assert (got / "a.log").read_bytes() == b"one\nERROR two\nthree\n"
    assert os.path.samestat(os.stat(got / "a.log"), os.stat(got / "e" / "a-again"))
    assert os.readlink(got / "pw") == "/etc/passwd"
    assert stat.S_ISFIFO(os.lstat(got / "fifo").st_mode)
    assert stat.S_IMODE(os.stat(got / "bin").st_mode) == 0o755  # setuid dropped
    assert os.stat(got / "a.log").st_mtime == os.stat(tree / "d" / "a.log").st_mtime
    assert sorted(os.listdir(dest)) == ["d"]
    assert warnings == []


def test_copy_out_failure_leaves_nothing(tree: Path, tmp_path: Path, monkeypatch) -> None:
    import ctrfs.ops.copy as copymod

    def boom(self, e, name):  # type: ignore[no-untyped-def]
        if e.name == "b.log":
            raise RuntimeError("disk on fire")
        return real(self, e, name)

    real = copymod._Copier.add
    monkeypatch.setattr(copymod._Copier, "add", boom)
    before = len(os.listdir("/proc/self/fd"))
    with DirRoot(tree) as r, pytest.raises(RuntimeError):
        copy_out(r, "/d", str(tmp_path / "new"))
    assert os.listdir(tmp_path) == ["root"]
    assert len(os.listdir("/proc/self/fd")) == before


# -- tail ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("content,n,expect", [
    (b"a\nb\nc\n", 2, b"b\nc\n"), (b"a\nb\nc", 2, b"b\nc"), (b"a\nb\n", 5, b"a\nb\n"),
    (b"", 3, b""), (b"x\n" * 50_000, 1, b"x\n"), (b"a\nb\n", 0, b""),
])
def test_last_lines(content: bytes, n: int, expect: bytes) -> None:
    f = io.BytesIO(content)
    out, end = last_lines(f, n)  # type: ignore[arg-type]
    assert out == expect and end == len(content)


def test_tail_F_on_dirroot_rotation_and_truncation(tree: Path) -> None:
    log = tree / "d" / "app.log"
    log.write_bytes(b"old1\nold2\n")
    got: list[object] = []
    with DirRoot(tree) as r:
        it = tail(r, "/d/app.log", lines=1, follow="name", interval=0.2)

        def consume() -> None:
            for ev in it:
                got.append(ev)
                if isinstance(ev, TailData) and ev.data.endswith(b"end\n"):
                    return

        t = threading.Thread(target=consume)
        t.start()
        import time

        time.sleep(0.5)
        with open(log, "ab") as f:
            f.write(b"new1\n")
        time.sleep(0.5)
        os.rename(log, tree / "d" / "app.log.1")
        log.write_bytes(b"rot1\n")
        time.sleep(0.8)
        with open(log, "r+b") as f:
            f.truncate(0)
        time.sleep(0.5)
        with open(log, "ab") as f:
            f.write(b"end\n")
        t.join(10)
        assert not t.is_alive()
        it.close()
    data = b"".join(e.data for e in got if isinstance(e, TailData))
    notes = [e.message for e in got if isinstance(e, TailNotice)]
    assert data == b"old2\nnew1\nrot1\nend\n"
    assert any("replaced" in n for n in notes) and any("truncated" in n for n in notes)


def test_ls_links_given_as_path(tree: Path) -> None:
    os.symlink("d", tree / "ld")
    os.symlink("/nowhere", tree / "dangling")
    with DirRoot(tree) as r:
        [lst] = list(ls(r, "/ld"))
        assert lst.is_dir and "a.log" in [i.name for i in lst.entries]
        [lst] = list(ls(r, "/ld", follow=False))
        assert not lst.is_dir and lst.entries[0].link_target == b"d"
        [lst] = list(ls(r, "/dangling"))
        assert lst.entries[0].type == "l"


@pytest.mark.root
def test_tar_mounts_kept_as_mount_points_or_included(tree: Path, tmp_path: Path) -> None:
    import subprocess

    (tmp_path / "hosts").write_text("127.0.0.1 bound\n")
    (tree / "d" / "hosts").write_text("")
    (tree / "vol").mkdir()
    (tree / "pr").mkdir()
    mounts = [["mount", "--bind", str(tmp_path / "hosts"), str(tree / "d" / "hosts")],
              ["mount", "-t", "tmpfs", "tmpfs", str(tree / "vol")],
              ["mount", "-t", "proc", "proc", str(tree / "pr")]]
    for m in mounts:
        subprocess.run(m, check=True)
    try:
        (tree / "vol" / "sub").mkdir()
        (tree / "vol" / "sub" / "x").write_text("in volume")
        with DirRoot(tree) as r:
            m, data, warnings = _tar(r)
            assert m["d/hosts"].isreg() and m["d/hosts"].size == 0  # the mount point only
            assert m["vol"].isdir() and "vol/sub" not in m
            assert m["pr"].isdir() and not [n for n in m if n.startswith("pr/")]
            assert warnings == []
            m, data, warnings = _tar(r, include_mounts=True)
            assert data["d/hosts"] == b"127.0.0.1 bound\n"
            assert data["vol/sub/x"] == b"in volume"
            assert not [n for n in m if n.startswith("pr/")]  # /proc is never entered
            assert warnings == []
    finally:
        for m in reversed(mounts):
            subprocess.run(["umount", "-l", m[-1]], check=True)


def test_tail_F_waits_for_a_missing_file(tree: Path) -> None:
    got: list[object] = []
    with DirRoot(tree) as r:
        it = tail(r, "/d/later.log", lines=5, follow="name", interval=0.1)
        got.append(next(it))  # the "waiting" notice comes at once
        import time

        def create() -> None:
            time.sleep(0.3)
            (tree / "d" / "later.log").write_bytes(b"first\nsecond\n")

        t = threading.Thread(target=create)
        t.start()
        for ev in it:
            got.append(ev)
            if isinstance(ev, TailData):
                break
        t.join()
        it.close()
    assert isinstance(got[0], TailNotice) and "waiting" in got[0].message
    assert isinstance(got[-1], TailData) and got[-1].data == b"first\nsecond\n"
    with DirRoot(tree) as r, pytest.raises(NotFound):
        next(tail(r, "/d/later-never.log", follow="descriptor"))


@pytest.mark.parametrize("path,top", [("/d/e/..", "d"), ("/d/.", "d"), ("/d/e/../..", None),
                                      ("/d/e/", "e")])
def test_tar_names_never_climb(tree: Path, path: str, top: str | None) -> None:
    with DirRoot(tree) as r:
        m, _, _ = _tar(r, path)
    for name in m:
        assert ".." not in name.split("/") and not name.startswith("/") and name not in ("", ".")
    if top is None:  # the root: members like export's
        assert "etc/passwd" in m
    else:
        assert top in m and all(n == top or n.startswith(top + "/") for n in m)


def test_copy_dest_name_never_climbs(tree: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    with DirRoot(tree) as r:
        copy_out(r, "/d/e/..", str(dest))
        assert (dest / "d" / "a.log").exists()
        with pytest.raises(UsageError, match="already exists"):
            copy_out(r, "/d/..", str(dest))  # the root has no name: DEST itself, which exists
    assert sorted(os.listdir(tmp_path)) == ["dest", "root"]


def test_tar_failure_writes_nothing_or_a_truncated_stream(tree: Path, monkeypatch) -> None:
    from ctrfs.errors import ProcessGone

    with DirRoot(tree) as r:
        buf = io.BytesIO()
        with pytest.raises(NotFound):
            archive.write_tar(r, buf, "/nope")
        assert buf.getvalue() == b""  # a bad PATH: not even an empty archive

        def gone() -> None:
            raise ProcessGone(target="t")

        monkeypatch.setattr(r, "check_alive", gone)
        with pytest.raises(ProcessGone):
            archive.write_tar(r, buf, "/d")
    data = buf.getvalue()
    # what was written is there, but no end-of-archive marker (two zero blocks) claims the
    # archive complete
    assert data and len(data) % 512 == 0 and not data.endswith(b"\0" * 1024)
