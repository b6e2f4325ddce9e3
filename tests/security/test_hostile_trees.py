"""docs/security.md cases 12-15: trees built to exhaust a naive tool, inside a real container.

Each command runs as its own process, as a user runs it, with RLIMIT_NOFILE=64 (fd exhaustion
would fail it) and its peak RSS taken from wait4 (memory must stay bounded however big the
tree). Sizes: CTRFS_HOSTILE_ENTRIES files in one directory (default 100,000; ``make stress``
1,000,000), 10,000-deep nesting, and as many hard links to one inode as the filesystem allows
(ext4, under Docker's overlay2 here, stops at 65,000: EMLINK).
"""

from __future__ import annotations

import os
import subprocess
import tarfile
import time
from collections import Counter
from pathlib import Path

import pytest
from _hostile import Measured, background, ctrfs_argv, env_int, hostile_container, run_ctrfs, sh

pytestmark = [pytest.mark.root, pytest.mark.docker]

DEEP = 10_000
MANY = env_int("CTRFS_HOSTILE_ENTRIES", 100_000)
LINKS = 100_000
MAX_RSS_MIB = 64
NOFILE = 64


def _ok(m: Measured, what: str) -> None:
    assert "Traceback" not in m.stderr and "RecursionError" not in m.stderr, m.stderr[-3000:]
    assert m.rc == 0, f"{what} exited {m.rc}: {m.stderr[-2000:]}"
    assert m.maxrss_kib < MAX_RSS_MIB * 1024, \
        f"{what} peak RSS {m.maxrss_kib / 1024:.1f} MiB >= {MAX_RSS_MIB} MiB"
    print(f"\n{what}: {m.seconds:.1f}s, peak RSS {m.maxrss_kib / 1024:.1f} MiB")


TREES = ("deep", "many", "links")


@pytest.fixture(scope="module")
def big():  # type: ignore[no-untyped-def]
    """/h/deep (10,000 levels, /h/deep/d/.../d/bottom), /h/many (MANY files), /h/links.
    Yields the container, the number of links made, and busybox find's entry count per tree."""
    with hostile_container() as c:
        t0 = time.monotonic()
        sh(c, f"mkdir /h && treegen deep /h/deep {DEEP} && treegen many /h/many {MANY}")
        links = int(sh(c, f"treegen links /h/links {LINKS}").strip())
        print(f"\nhostile tree built in {time.monotonic() - t0:.1f}s ({links} links to one inode)")
        # Ground truth from the container's own busybox find, except for the deep tree, which
        # busybox find gives up on at PATH_MAX (2,048 levels): the dir, DEEP d's and "bottom".
        counts = {t: int(sh(c, f"cd /h/{t} && find . | wc -l").strip()) for t in ("many", "links")}
        counts["deep"] = DEEP + 2
        counts["all"] = 1 + sum(counts.values())
        yield c, links, counts


def _check_tree_paths(lines: list[bytes], top: bytes, tree: str, links: int) -> None:
    if tree == "deep":
        assert max(lines, key=len) == top + b"/d" * DEEP + b"/bottom"
    elif tree == "many":
        assert sum(1 for ln in lines if ln.startswith(top + b"/f")) == MANY
    else:
        assert sum(1 for ln in lines if ln.startswith(top + b"/")) == links


@pytest.mark.parametrize("tree", TREES)
def test_find(big, tree: str) -> None:  # type: ignore[no-untyped-def]
    c, links, counts = big
    m = run_ctrfs("find", f"{c.target}:/h/{tree}", nofile=NOFILE)
    _ok(m, f"find {tree}")
    lines = m.stdout.split(b"\n")[:-1]
    assert len(lines) == counts[tree]
    _check_tree_paths(lines, f"/h/{tree}".encode(), tree, links)


def test_du_counts_links_once(big) -> None:  # type: ignore[no-untyped-def]
    c, links, _ = big
    m = run_ctrfs("du", "-s", "--apparent-size", "--json", f"{c.target}:/h/links", nofile=NOFILE)
    _ok(m, "du")
    import json

    doc = json.loads(m.stdout)
    rows = doc if isinstance(doc, list) else [doc]
    # The directory itself plus one 7-byte file with 65,000 names: an inode is counted once.
    dir_size = int(sh(c, "stat -c %s /h/links").strip())
    assert [r["bytes"] for r in rows] == [dir_size + 7], rows


@pytest.mark.parametrize("tree", TREES)
def test_du(big, tree: str) -> None:  # type: ignore[no-untyped-def]
    c, _, _ = big
    m = run_ctrfs("du", "--json", f"{c.target}:/h/{tree}", nofile=NOFILE)
    _ok(m, f"du {tree}")
    import json

    rows = json.loads(m.stdout)
    # du lists directories, deepest first, the start last
    assert rows[-1]["path"] == f"/h/{tree}"
    assert len(rows) == (DEEP + 1 if tree == "deep" else 1)


def _check_tar(path: str, tree: str, links: int, total: int | None, top: str) -> None:
    """Read the tar back with GNU tar and Python's tarfile (streaming)."""
    res = subprocess.run(["tar", "-tvf", path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert res.returncode == 0, res.stderr[-2000:]
    kinds: Counter[str] = Counter()
    first: str | None = None
    deepest = ""
    with tarfile.open(path, mode="r|") as tf:
        for m in tf:
            kinds["all"] += 1
            if not m.name.startswith(top):
                continue
            if tree == "links" and m.name != top.rstrip("/"):
                if m.islnk():
                    kinds["hardlink"] += 1
                    assert m.linkname == first, (m.name, m.linkname, first)
                else:
                    assert m.isfile() and first is None, m.name
                    first = m.name
                    kinds["file"] += 1
            elif tree == "many" and m.isfile():
                kinds["file"] += 1
            elif tree == "deep" and len(m.name) > len(deepest):
                deepest = m.name
    if tree == "links":
        assert (kinds["file"], kinds["hardlink"]) == (1, links - 1), kinds
    elif tree == "many":
        assert kinds["file"] == MANY, kinds
    else:
        assert deepest == top + "d/" * DEEP + "bottom", deepest[:100]
    if total is not None:
        assert kinds["all"] == total, kinds


@pytest.mark.tar_cores
def test_export_bounded(big, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    c, links, counts = big
    out = str(tmp_path / "export.tar")
    m = run_ctrfs("export", c.target, "-o", out, nofile=NOFILE)
    _ok(m, "export")
    for tree in TREES:
        _check_tar(out, tree, links, None, f"h/{tree}/")


@pytest.mark.parametrize("tree", TREES)
def test_cp_to_stdout(big, tree: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    c, links, counts = big
    out = str(tmp_path / "cp.tar")
    m = run_ctrfs("cp", f"{c.target}:/h/{tree}", "-", nofile=NOFILE, stdout_path=out)
    _ok(m, f"cp {tree} -")
    _check_tar(out, tree, links, counts[tree], f"{tree}/")


@pytest.mark.tar_cores  # the C core of cp and the reference
@pytest.mark.parametrize("tree", TREES)
def test_cp_to_directory(big, tree: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    c, links, counts = big
    dest = tmp_path / tree
    m = run_ctrfs("cp", f"{c.target}:/h/{tree}", str(dest), nofile=NOFILE)
    try:
        _ok(m, f"cp {tree} DIR")
        # GNU find walks with fts (no PATH_MAX limit); os.walk would recurse 10,000 deep.
        found = subprocess.run(["find", str(dest)], capture_output=True, check=True).stdout
        assert found.count(b"\n") == counts[tree]
        if tree == "links":
            assert os.stat(dest / "orig").st_nlink == links, "hard links were not kept as links"
        if tree == "deep":
            bottom = subprocess.run(["find", str(dest), "-name", "bottom"],
                                    capture_output=True, check=True).stdout.strip()
            # (counting b"/d" in the whole path would also count DEST's own "/deep")
            assert bottom == str(dest).encode() + b"/d" * DEEP + b"/bottom"
    finally:
        subprocess.run(["rm", "-rf", str(dest)], check=True)


def test_diff_huge_trees(big) -> None:  # type: ignore[no-untyped-def]
    """diff walks the same trees in the container's upper dir, on the host."""
    c, links, counts = big
    m = run_ctrfs("diff", c.target, nofile=NOFILE)
    _ok(m, "diff")
    added = [ln for ln in m.stdout.split(b"\n") if ln.startswith(b"A /h")]
    assert len(added) == counts["all"]
    assert max(added, key=len) == b"A /h/deep" + b"/d" * DEEP + b"/bottom"


def test_layers_counts_huge_trees(big) -> None:  # type: ignore[no-untyped-def]
    """layers counts the upper dir, which holds the three trees, by fd with 64 fds: its counts
    equal GNU find's over the same directory on the host."""
    import json

    c, links, counts = big
    m = run_ctrfs("layers", "--json", c.target, nofile=NOFILE)
    _ok(m, "layers")
    (upper,) = [la for la in json.loads(m.stdout)["layers"] if la["role"] == "upper"]
    top = upper["path"]

    def find(*expr: str) -> list[bytes]:
        return subprocess.run(["find", top, "-mindepth", "1", *expr], capture_output=True,
                              check=True).stdout.split(b"\0")[:-1]

    dirs = find("-type", "d", "-printf", "x\\0")
    nondirs = find("!", "-type", "d", "-printf", "x\\0")
    chardevs = find("-type", "c", "-printf", "%p\\0")
    whiteouts = sum(1 for p in chardevs if os.lstat(p).st_rdev == 0)
    sizes = dict(ln.split(b" ") for ln in find("-type", "f", "-printf", "%i %s\\0"))
    assert (upper["dirs"], upper["files"], upper["whiteouts"], upper["size"]) == \
        (len(dirs), len(nondirs) - whiteouts, whiteouts, sum(int(v) for v in sizes.values()))
    # the trees are in what was counted: every directory of /h/deep, every file and link name
    assert upper["dirs"] >= DEEP + 1 and upper["files"] >= MANY + links


@pytest.fixture(scope="module")
def big_stopped(big):  # type: ignore[no-untyped-def]
    """The same trees once the container is stopped: read from its layers on the host
    (OverlayRoot). Tests using this run after every test of the running container above."""
    import harness

    c, links, counts = big
    harness.run("docker", "kill", c.id)
    harness.wait_until(lambda: not harness.pid_alive(c.pid), "the container to stop")
    return c, links, counts


@pytest.mark.parametrize("tree", TREES)
def test_stopped_find(big_stopped, tree: str) -> None:  # type: ignore[no-untyped-def]
    c, links, counts = big_stopped
    m = run_ctrfs("find", f"{c.target}:/h/{tree}", nofile=NOFILE)
    _ok(m, f"find {tree} (stopped)")
    lines = m.stdout.split(b"\n")[:-1]
    assert len(lines) == counts[tree]
    _check_tree_paths(lines, f"/h/{tree}".encode(), tree, links)


def test_stopped_export(big_stopped, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    c, links, counts = big_stopped
    out = str(tmp_path / "export.tar")
    m = run_ctrfs("export", c.target, "-o", out, nofile=NOFILE)
    _ok(m, "export (stopped)")
    for tree in TREES:
        _check_tar(out, tree, links, None, f"h/{tree}/")


# -- case 14/15 limits: the 1 TiB sparse file ---------------------------------------------------

TAR_LIMIT = 256 << 20  # a tar of a 1 TiB sparse file must not need more than this


def _tar_size(argv: list[str], limit: int, timeout: float = 120) -> tuple[int, bool, str]:
    """Bytes a ctrfs tar-writing command produces, stopping it once past ``limit``."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    n = 0
    cut = False
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None and proc.stderr is not None
    try:
        while chunk := proc.stdout.read(1 << 20):
            n += len(chunk)
            if n > limit or time.monotonic() > deadline:
                cut = True
                break
    finally:
        if cut:
            proc.kill()
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace")
        proc.wait()
    return n, cut, err


def test_sparse_terabyte_file_is_not_written_as_data(tmp_path: Path) -> None:
    with hostile_container() as c:
        sh(c, "mkdir /sp && truncate -s 1099511627776 /sp/big && printf 'end' >> /sp/big")
        n, cut, err = _tar_size(ctrfs_argv("cp", f"{c.target}:/sp", "-"), TAR_LIMIT)
        assert not cut, (f"cp - of a 1 TiB sparse file wrote more than {TAR_LIMIT >> 20} MiB "
                         "(stopped): sparse files are written as data")
        assert "Traceback" not in err
        n2, cut2, _ = _tar_size(ctrfs_argv("export", c.target), TAR_LIMIT)
        assert not cut2, "export of a container with a 1 TiB sparse file wrote it as data"


# -- case 12: files growing and shrinking while exported ----------------------------------------

def test_growing_shrinking_file(tmp_path: Path) -> None:
    with hostile_container() as c:
        sh(c, "mkdir /gs && printf 'steady\\n' > /gs/steady")
        with background(c, "exec treegen churn /gs/churn 600", "/gs.pid"):
            harness_wait = time.monotonic() + 10
            # `|| true`: sh() fails on a non-zero exit, and the file may not be written yet.
            while not sh(c, "test -s /gs/churn && echo y || true").strip():
                assert time.monotonic() < harness_wait
            warned = Counter()
            for i in range(30):
                out = str(tmp_path / f"gs{i}.tar")
                m = run_ctrfs("cp", f"{c.target}:/gs", "-", nofile=NOFILE, stdout_path=out)
                assert m.rc == 0 and "Traceback" not in m.stderr, m.stderr
                res = subprocess.run(["tar", "-tvf", out], capture_output=True)
                assert res.returncode == 0, res.stderr
                with tarfile.open(out) as tf:
                    names = tf.getnames()
                    assert sorted(names) == ["gs", "gs/churn", "gs/steady"]
                    for mem in tf.getmembers():
                        if mem.isfile():
                            f = tf.extractfile(mem)
                            assert f is not None
                            data = f.read()
                            assert len(data) == mem.size
                            if mem.name == "gs/churn":
                                # the writer writes 'x'; a shrink is padded with zeros
                                assert set(data) <= {ord("x"), 0}
                    assert tf.extractfile("gs/steady").read() == b"steady\n"  # type: ignore[union-attr]
                for word in ("shrank", "grew"):
                    if word in m.stderr:
                        assert "/gs/churn" in m.stderr
                        warned[word] += 1
                os.unlink(out)
            print(f"\ngrowing/shrinking file: warnings over 30 runs: {dict(warned)}")
            assert warned, "30 copies of a churning file never warned that it changed size"


# -- case 13: entries deleted and directories moved mid-walk ------------------------------------

MOVED_DEPTH = 60  # deeper than the walker's streamed levels (ctrfs.rootfs.fd.STREAM_LEVELS)


def test_deleted_and_moved_mid_walk(tmp_path: Path) -> None:
    """Entries vanish and a deep directory is swapped in and out of the walked tree (from a
    directory outside it): outputs only ever hold names under the walked tree, the walk
    finishes, and skipped entries are reported as warnings."""
    with hostile_container() as c:
        chain = "/".join(["n"] * MOVED_DEPTH)
        sh(c, f"mkdir -p /m/walk/{chain}/sub /m/outside/x/sub && touch /m/outside/OUTSIDE-MARKER"
              f" && for i in $(seq 100); do touch /m/walk/{chain}/sub/f$i /m/walk/{chain}/g$i; done")
        churn = ("while :; do mkdir -p /m/walk/del; for i in $(seq 200); do : > /m/walk/del/f$i; "
                 "done; rm -rf /m/walk/del; done")
        warned: Counter[str] = Counter()
        seen: Counter[str] = Counter()  # runs that got to the moved tree's files
        with background(c, churn, "/del.pid"), \
                background(c, f"exec swapper /m/walk/{chain} /m/outside/x 600", "/mv.pid"):
            for i in range(20):
                # fd limits are case 15's business (above); here only the moves matter.
                find = run_ctrfs("find", f"{c.target}:/m/walk", nofile=None)
                assert "Traceback" not in find.stderr, find.stderr
                assert find.rc == 0, find.stderr
                lines = find.stdout.split(b"\n")[:-1]
                assert lines[:1] == [b"/m/walk"], find.stdout[:200]  # output, not an empty pass
                for line in lines:
                    assert line.startswith(b"/m/walk"), line
                    assert b"OUTSIDE-MARKER" not in line and b"outside" not in line, line
                seen["find: the deep tree"] += any(ln.endswith(b"/sub/f100") for ln in lines)
                out = str(tmp_path / f"m{i}.tar")
                exp = run_ctrfs("cp", f"{c.target}:/m/walk", "-", nofile=None, stdout_path=out)
                assert exp.rc == 0 and "Traceback" not in exp.stderr, exp.stderr
                with tarfile.open(out) as tf:
                    names = tf.getnames()
                    assert names[:1] == ["walk"], names[:3]
                    for name in names:
                        assert name == "walk" or name.startswith("walk/"), name
                        assert "OUTSIDE-MARKER" not in name
                    seen["cp: the deep tree"] += any(n.endswith("/sub/f100") for n in names)
                os.unlink(out)
                for what, m in (("find", find), ("cp", exp)):
                    for line in m.stderr.splitlines():
                        if "warning" in line:
                            warned[f"{what}: {line.rsplit(': ', 1)[-1]}"] += 1
        print(f"\nmid-walk changes: runs with warnings: {dict(warned)}; runs reaching the deep "
              f"tree's files: {dict(seen)}")
        assert seen["find: the deep tree"] and seen["cp: the deep tree"], seen
        assert any("vanished" in k for k in warned), f"no deleted entry was reported: {warned}"
        assert any("moved" in k or "replaced" in k for k in warned), \
            f"no moved directory was reported: {warned}"

