"""docs/security.md cases 1-11 for every command that opens or walks files, as a user runs them.

tests/security's per-case files check each case on the file layer; this module runs the same
hostile paths through every command (the CLI, a separate process each time) so that no command
has its own weaker path handling. A hostile path H either must fail cleanly (exit 1, one-line
error, no traceback), or must give exactly what the command gives for the safe path S it
stands for inside the container (outputs compared after removing the path itself).
Everywhere: the host-only canary never appears in any output, and nothing hangs (a FIFO opened
for reading would).

Adding a command (diff, which, libs once they land) is one entry in COMMANDS.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _hostile import ctrfs_argv, hostile_container, sh

import harness

pytestmark = [pytest.mark.root, pytest.mark.docker]

CANARY = f"ctrfs-canary-{secrets.token_hex(6)}"
SECRET = f"HOST-ONLY-{secrets.token_hex(16)}".encode()
TIMEOUT = 30  # a FIFO opened for reading, or /dev/zero read to the end, would hit this


@dataclass
class Result:
    rc: int
    stdout: bytes
    stderr: str
    value: Any  # what the command shows, made independent of the path it was given


# The resolver every command uses: openat2, or the user-space walker forced through
# CTRFS_FORCE_FALLBACK (ctrfs.rootfs.resolve) as on kernels without openat2.
_ENV: dict[str, str] = {}


def _run(*args: str | bytes) -> subprocess.CompletedProcess[bytes]:
    argv = [os.fsencode(a) for a in ctrfs_argv(*args)]  # type: ignore[arg-type]
    return subprocess.run(argv, capture_output=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
                          env={**os.environ, **_ENV})


@pytest.fixture(params=["openat2", "fallback", "stopped"])
def mode(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """How the container's files are reached: a running container through openat2 or through
    the user-space walker, or a stopped container through its overlay layers on the host
    (ctrfs.overlay.root.OverlayRoot), where the traps are real host files in the upper dir."""
    _ENV["CTRFS_FORCE_FALLBACK"] = "1" if request.param == "fallback" else "0"
    try:
        yield request.param
    finally:
        _ENV.clear()


def _strip_paths(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> list[tuple[Any, ...]]:
    return sorted(tuple(r.get(k) for k in keys) for r in rows)


def _json(out: bytes) -> Any:
    """The JSON a command printed; None when it printed none or an unfinished array (an
    error after a streamed '[': test_no_output_on_failure's business)."""
    try:
        return json.loads(out) if out.strip() else None
    except ValueError:
        return None


def _listing_value(doc: Any, start: str) -> Any:
    """find/ls/du JSON rows, with the starting path cut off each row's path."""
    rows = doc if isinstance(doc, list) else [doc] if doc else []
    flat: list[dict[str, Any]] = []
    for r in rows:
        flat.extend(r["entries"] if isinstance(r, dict) and "entries" in r else [r])
    out = []
    start = "/" + start.lstrip("/") if not start.startswith("/") else start
    for r in flat:
        r = dict(r)
        p = r.pop("path", "")
        if p.startswith(start.rstrip("/")):
            p = p[len(start.rstrip("/")):]
        r["rel"] = p
        for k in ("atime",):  # reading a file is allowed to change its atime
            r.pop(k, None)
        out.append(json.dumps(r, sort_keys=True))
    return sorted(out)


def _tree_value(root: Path) -> Any:
    if not os.path.lexists(root):
        return None
    if root.is_symlink():
        return ("symlink", os.readlink(root))
    if root.is_file():
        return ("file", root.read_bytes())
    if not root.is_dir():
        return ("special", oct(root.lstat().st_mode))
    items = []
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = Path(dirpath) / n
            rel = str(p.relative_to(root))
            if p.is_symlink():
                items.append((rel, "l", os.readlink(os.fsencode(p))))
            elif p.is_file():
                items.append((rel, "f", p.read_bytes()))
            else:
                items.append((rel, "d" if p.is_dir() else oct(p.lstat().st_mode), b""))
    return sorted(items)


def _tar_value(data: bytes) -> Any:
    if not data:
        return None
    out = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf:
            rel = m.name.partition("/")[2]
            body = tf.extractfile(m).read() if m.isfile() else b""  # type: ignore[union-attr]
            out.append((rel, m.type, m.linkname, m.size, body))
    return sorted(out)


def cmd_cat(t: str, p: str, tmp: Path) -> Result:
    r = _run("cat", f"{t}:{p}")
    return Result(r.returncode, r.stdout, r.stderr.decode(errors="replace"), r.stdout)


def cmd_tail(t: str, p: str, tmp: Path) -> Result:
    r = _run("tail", "-n", "3", f"{t}:{p}")
    return Result(r.returncode, r.stdout, r.stderr.decode(errors="replace"), r.stdout)


def cmd_grep(t: str, p: str, tmp: Path) -> Result:
    r = _run("grep", "-r", "--json", ".", f"{t}:{p}")
    doc = _json(r.stdout) if r.returncode in (0, 1) else None
    return Result(r.returncode, r.stdout, r.stderr.decode(errors="replace"),
                  _strip_paths(doc or [], ("line_number", "line", "binary")))


def cmd_stat(t: str, p: str, tmp: Path) -> Result:
    r = _run("stat", "--json", f"{t}:{p}")
    doc = _json(r.stdout) if r.returncode == 0 else None
    return Result(r.returncode, r.stdout, r.stderr.decode(errors="replace"),
                  _listing_value(doc, p) if doc else None)


def cmd_ls(t: str, p: str, tmp: Path) -> Result:
    r = _run("ls", "-a", "--json", f"{t}:{p}")
    doc = _json(r.stdout) if r.returncode == 0 else None
    return Result(r.returncode, r.stdout, r.stderr.decode(errors="replace"),
                  _listing_value(doc, p) if doc else None)


def cmd_find(t: str, p: str, tmp: Path) -> Result:
    r = _run("find", "--json", f"{t}:{p}")
    doc = _json(r.stdout) if r.returncode == 0 else None
    return Result(r.returncode, r.stdout, r.stderr.decode(errors="replace"),
                  _listing_value(doc, p) if doc else None)


def cmd_du(t: str, p: str, tmp: Path) -> Result:
    r = _run("du", "--apparent-size", "--json", f"{t}:{p}")
    doc = _json(r.stdout) if r.returncode == 0 else None
    return Result(r.returncode, r.stdout, r.stderr.decode(errors="replace"),
                  _listing_value(doc, p) if doc else None)


def cmd_cp(t: str, p: str, tmp: Path) -> Result:
    dest = tmp / f"cp-{secrets.token_hex(4)}"
    r = _run("cp", f"{t}:{p}", str(dest))
    value = _tree_value(dest)
    copied = b"".join(x[2] if isinstance(x, tuple) and len(x) == 3 else b"" for x in value or []) \
        if isinstance(value, list) else repr(value).encode()
    return Result(r.returncode, r.stdout + copied, r.stderr.decode(errors="replace"), value)


def cmd_cp_tar(t: str, p: str, tmp: Path) -> Result:
    r = _run("cp", f"{t}:{p}", "-")
    value = _tar_value(r.stdout) if r.returncode == 0 else None
    return Result(r.returncode, r.stdout, r.stderr.decode(errors="replace"), value)


def cmd_which(t: str, p: str, tmp: Path) -> Result:
    # which looks PATH up in the layer directories on the host, by its own resolver
    r = _run("which", "--json", f"{t}:{p}")
    doc = _json(r.stdout) if r.returncode == 0 else None
    if doc is not None:
        doc.pop("path", None)  # the path as asked
    return Result(r.returncode, r.stdout, r.stderr.decode(errors="replace"), doc)


COMMANDS: dict[str, Callable[[str, str, Path], Result]] = {
    "cat": cmd_cat, "tail": cmd_tail, "grep": cmd_grep, "stat": cmd_stat, "ls": cmd_ls,
    "find": cmd_find, "du": cmd_du, "cp": cmd_cp, "cp-": cmd_cp_tar, "which": cmd_which,
}
ALL = frozenset(COMMANDS)
CONTENT = frozenset({"cat", "tail", "grep"})  # commands that read file content
# Commands that look at a final symlink itself rather than following it (stat, cp: lstat;
# which reports the layer holding the link).
NOFOLLOW = frozenset({"stat", "cp", "cp-", "which"})


@dataclass(frozen=True)
class Case:
    id: str
    path: str
    same_as: str | None = None  # succeeds and equals this container path's result ...
    fails: frozenset[str] = ALL  # ... or fails for these commands (ignored with same_as)
    message: str | None = None  # the one-line error must say this
    stopped_fails: frozenset[str] = frozenset()  # also fail on a stopped container


CHAIN = 50  # symlinks in a chain: more than the kernel's 40 (path_resolution(7))
SHORT_CHAIN = 30

CASES = [
    # 1. /etc -> / inside the container
    Case("1-container-file", "/c1/etc/cshadow", same_as="/cshadow"),
    Case("1-host-only", f"/c1/etc/{CANARY}/secret"),
    # 2. a -> ../../../../..
    Case("2-container-file", "/c2/a/etc/passwd", same_as="/etc/passwd"),
    Case("2-dir", "/c2/a/etc", same_as="/etc"),
    Case("2-host-only", f"/c2/a/{CANARY}/secret"),
    # 3. ../ in the requested path
    Case("3-relative", "../../../etc/passwd", same_as="/etc/passwd"),
    Case("3-dir", "/../../../etc", same_as="/etc"),
    Case("3-host-only", f"/../../../{CANARY}/secret"),
    # 4. loops and chains
    Case("4-self", "/c4/self/x", message="symbolic links"),
    Case("4-abs-self", "/c4/abs/x", message="symbolic links"),
    Case("4-cycle", "/c4/x/f", message="symbolic links"),
    Case("4-long-chain", "/c4/chain0/passwd", message="symbolic links"),
    Case("4-short-chain-ok", "/c4/short0/passwd", same_as="/etc/passwd"),
    # 5. dangling links
    Case("5-dangling-inner", "/c5/dang/x"),
    # (ls lists a dangling link given as PATH, as GNU ls does)
    Case("5-dangling-final", "/c5/dang", fails=ALL - NOFOLLOW - {"ls"}),
    # 6. trailing /, /., /.. after a file
    Case("6-slash", "/etc/passwd/", message="not a directory"),
    Case("6-dot", "/etc/passwd/.", message="not a directory"),
    Case("6-dotdot", "/etc/passwd/..", message="not a directory"),
    # 7. magic links inside the container's /proc
    Case("7-proc-self-root", "/proc/self/root/etc/passwd"),
    Case("7-link-to-self-root", "/c7/pself/etc/passwd"),
    Case("7-proc-1-root", "/c7/p1/etc/passwd"),
    Case("7-proc-self-cwd", "/c7/cwd/etc/passwd"),
    Case("7-proc-self-fd", "/c7/fd0", fails=ALL - NOFOLLOW - {"ls"}),
    # 8. volumes: the container's view, never the host path behind it
    Case("8-through-volume", "/c8/v/vfile", same_as="/vol/vfile"),
    Case("8-host-source-path", "/c8/hostpath/vfile"),
    # 10. FIFO, socket, devices: reported, never opened
    Case("10-fifo", "/c10/fifo", fails=CONTENT),
    # cp without --preserve-all skips sockets and devices: alone, "nothing was copied"
    Case("10-socket", "/c10/sock", fails=CONTENT | {"cp"}),
    Case("10-chardev", "/c10/null", fails=CONTENT | {"cp"}),
    Case("10-blockdev", "/c10/loop", fails=CONTENT | {"cp"}),
    # 11. /etc/passwd -> /dev/zero
    # (a stopped container has no /dev/zero: its /dev was a tmpfs; following the link fails)
    Case("11-link-to-dev-zero", "/c11/passwd", fails=CONTENT,
         stopped_fails=frozenset({"find", "du"})),
]


def _setup_traps(c, vol: Path) -> None:  # type: ignore[no-untyped-def]
    chain = " && ".join(f"ln -s chain{i + 1} /c4/chain{i}" for i in range(CHAIN))
    short = " && ".join(f"ln -s short{i + 1} /c4/short{i}" for i in range(SHORT_CHAIN))
    sh(c, " && ".join([
        "printf 'container-shadow\\n' > /cshadow",
        "mkdir -p /c1 /c2 /c4 /c5 /c7 /c8 /c10 /c11",
        "ln -s / /c1/etc",
        "ln -s ../../../../.. /c2/a",
        "ln -s self /c4/self", "ln -s /c4/abs /c4/abs", "ln -s y /c4/x", "ln -s x /c4/y",
        f"{chain} && ln -s /etc /c4/chain{CHAIN}",
        f"{short} && ln -s /etc /c4/short{SHORT_CHAIN}",
        f"ln -s /nonexistent-{CANARY} /c5/dang",
        "ln -s /proc/self/root /c7/pself", "ln -s /proc/1/root /c7/p1",
        "ln -s /proc/self/cwd /c7/cwd", "ln -s /proc/self/fd/0 /c7/fd0",
        "ln -s /vol /c8/v", f"ln -s {vol} /c8/hostpath",
        "mkfifo /c10/fifo", "mknod /c10/null c 1 3", "mknod /c10/loop b 7 0",
        "treegen sock /c10/sock 0",
        "ln -s /dev/zero /c11/passwd",
    ]))
    for path in ("/cshadow", "/etc/passwd", "/vol/vfile"):
        EXPECTED[path] = harness.docker_exec(c, "cat", path).stdout


@pytest.fixture(scope="module")
def host_side(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The host canary and a volume source dir on the host."""
    host_canary = Path("/") / CANARY
    host_canary.mkdir(mode=0o700)
    (host_canary / "secret").write_bytes(SECRET + b"\n")
    vol = tmp_path_factory.mktemp("ctrfs-s-vol")
    (vol / "vfile").write_bytes(b"volume-content\n")
    try:
        yield vol
    finally:
        shutil.rmtree(host_canary)


@pytest.fixture(scope="module")
def world(host_side: Path):  # type: ignore[no-untyped-def]
    """A running container full of traps."""
    with hostile_container("-v", f"{host_side}:/vol") as c:
        _setup_traps(c, host_side)
        yield c


@pytest.fixture(scope="module")
def stopped_world(host_side: Path):  # type: ignore[no-untyped-def]
    """The same traps in a container that was then stopped: read from its layers on the host."""
    with hostile_container("-v", f"{host_side}:/vol") as c:
        _setup_traps(c, host_side)
        harness.run("docker", "kill", c.id)
        harness.wait_until(lambda: not harness.pid_alive(c.pid), "the container to stop")
        yield c


def _assert_clean(res: Result, what: str) -> None:
    assert SECRET not in res.stdout and SECRET.decode() not in res.stderr, \
        f"HOST CANARY LEAKED through {what}"
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, \
        f"{what}: {res.stderr[-2000:]}"
    assert res.rc not in (2,), f"{what}: usage error: {res.stderr}"


# What the container holds at each same_as path, read by the container itself (docker exec) when
# the traps are set; a directory maps to the file inside it that every command must show.
EXPECTED: dict[str, bytes] = {}
REF_DIR_FILE = {"/etc": "passwd"}


def _check_reference(command: str, path: str, want: Result, c, mode: str) -> None:  # type: ignore[no-untyped-def]
    """The safe path's own run must show what the container holds there: a reference that failed
    (or printed nothing) would make the hostile run's comparison one failure against another."""
    what = f"reference ctrfs {command} {path!r} ({mode})"
    if command == "which" and path.startswith("/vol/"):
        # which looks in the layers alone, where a volume's files are not; it names the mount the
        # running container sees there (a stopped one has none).
        assert want.rc == 0 and not want.value["exists"], f"{what}: {want.rc} {want.stderr}"
        mount = want.value["mount"]
        if mode == "stopped":
            assert mount is None, f"{what}: {mount}"
        else:
            assert (mount["mount_point"], mount["kind"]) == ("/vol", "bind"), f"{what}: {mount}"
            with open(os.path.join(mount["host_path"], path.split("/", 2)[2]), "rb") as f:
                assert f.read() == EXPECTED[path], f"{what}: {mount}"
        return
    if mode == "stopped" and path.startswith("/vol/"):
        # a stopped container's volumes are not mounted anywhere ctrfs reads them from
        assert want.rc == 1 and "no such file" in want.stderr, f"{what}: {want.rc} {want.stderr}"
        return
    is_dir = path in REF_DIR_FILE
    inner = REF_DIR_FILE.get(path)
    content = EXPECTED[f"{path}/{inner}" if inner else path]
    if command in ("cat", "tail") and is_dir:
        assert want.rc == 1 and "is a directory" in want.stderr, f"{what}: {want.rc} {want.stderr}"
        return
    assert want.rc == 0, f"{what} failed: {want.stderr}"
    lines = content.decode().splitlines()
    if command in ("cat", "tail"):
        assert want.value == content, f"{what}: {want.value!r}"  # (tail -n 3: every file has fewer)
    elif command == "grep":
        got = [row[1] for row in want.value]
        assert set(lines) <= set(got) and (is_dir or sorted(got) == sorted(lines)), f"{what}: {got}"
    elif command in ("stat", "ls", "find", "du"):
        rows = [json.loads(r) for r in want.value]
        if command == "du" and is_dir:  # du lists directories only: the total holds the file
            (top,) = [r for r in rows if r["rel"] == ""]
            assert top["is_dir"] and top["bytes"] >= len(content), f"{what}: {rows}"
            return
        if command == "stat" and is_dir:
            (top,) = rows
            assert top["rel"] == "" and top["type"] == "d", f"{what}: {rows}"
            return
        rel = f"/{inner}" if inner and command != "ls" else inner or ""
        if command == "ls" and inner:
            mine = [r for r in rows if r.get("name") == inner]
        else:
            mine = [r for r in rows if r["rel"] == rel]
        assert len(mine) == 1, f"{what}: no row for {rel!r} in {rows}"
        size = mine[0].get("size", mine[0].get("bytes"))
        assert size == len(content), f"{what}: {mine[0]}"
        if command == "stat":
            assert mine[0]["type"] == "f", f"{what}: {mine[0]}"
    elif command == "cp":
        if is_dir:
            assert (inner, "f", content) in want.value, f"{what}: {want.value!r}"
        else:
            assert want.value == ("file", content), f"{what}: {want.value!r}"
    elif command == "cp-":
        rel = inner or ""
        assert [m for m in want.value if m[0] == rel and m[4] == content], f"{what}: {want.value!r}"
    elif command == "which":
        vis = want.value["visible"]
        assert want.value["exists"] and vis["type"] == ("dir" if is_dir else "file"), f"{what}: {vis}"
        if not is_dir:
            # the layer it names really holds the file
            with open(os.path.join(vis["layer_path"], path.lstrip("/")), "rb") as f:
                assert f.read() == content, f"{what}: {vis}"
    else:
        raise AssertionError(f"no reference check for {command}")


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case_for_every_command(request, mode: str, case: Case, command: str,  # type: ignore[no-untyped-def]
                                tmp_path: Path) -> None:
    c = request.getfixturevalue("stopped_world" if mode == "stopped" else "world")
    run = COMMANDS[command]
    res = run(c.target, case.path, tmp_path)
    what = f"ctrfs {command} {case.path!r} (case {case.id})"
    _assert_clean(res, what)
    if case.same_as is not None:
        want = run(c.target, case.same_as, tmp_path)
        _assert_clean(want, f"ctrfs {command} {case.same_as!r}")
        _check_reference(command, case.same_as, want, c, mode)
        assert (res.rc, res.value) == (want.rc, want.value), \
            f"{what} differs from {case.same_as!r}: {res.stderr}"
    elif command in case.fails or mode == "stopped" and command in case.stopped_fails:
        assert res.rc == 1, f"{what} should fail cleanly, exited {res.rc}: {res.stderr}"
        lines = [ln for ln in res.stderr.splitlines()
                 if ln.strip() and not ln.startswith("ctrfs: warning: ")]
        assert len(lines) == 1 and lines[0].startswith("ctrfs: "), f"{what}: {res.stderr!r}"
        if case.message:
            assert case.message in lines[0], f"{what}: {lines[0]}"
        if command == "cp":
            assert res.value is None, f"{what} failed but left {res.value!r}"
        # (what a failing command prints on stdout is test_no_output_on_failure's business)
    else:
        assert res.rc == 0, f"{what} should succeed: {res.stderr}"
        if command == "cp" and isinstance(res.value, tuple):
            # a FIFO/device copied as a regular file would mean it was opened and read
            assert res.value[0] != "file" or res.value[1] == b"", f"{what} copied data: {res.value}"


@pytest.mark.parametrize("argv", [("find", "--json"), ("ls", "--json"), ("du", "--json"),
                                  ("grep", "-r", "--json", "x"), ("stat", "--json"), ("cp",)],
                         ids=["find", "ls", "du", "grep", "stat", "cp-"])
def test_no_output_on_failure(world, argv: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    """A command that fails before producing anything prints nothing on stdout: no dangling
    '[' of a JSON array nobody closes, no empty tar archive for ``cp PATH -`` (a pipeline into
    ``jq`` or ``tar x`` would otherwise see a parse error or an empty success)."""
    tail = ("-",) if argv == ("cp",) else ()
    r = _run(*argv, f"{world.target}:/does/not/exist", *tail)
    assert r.returncode == 1, r.stderr
    assert r.stdout == b"", f"ctrfs {' '.join(argv)} on a missing path printed {r.stdout[:60]!r}"


def test_nothing_created_by_dangling_links(world) -> None:  # type: ignore[no-untyped-def]
    """Case 5: after every command above went through /c5/dang, its target exists nowhere."""
    assert not os.path.lexists(f"/nonexistent-{CANARY}")
    assert sh(world, f"ls -d /nonexistent-{CANARY} 2>/dev/null || echo absent").strip() == "absent"


@pytest.mark.tar_cores
@pytest.mark.parametrize("state", ["running", "stopped"])
def test_export_of_the_trap_container(request, state: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """export walks every trap at once: no canary, specials as entries without data, no hang."""
    out = tmp_path / "export.tar"
    world = request.getfixturevalue("world" if state == "running" else "stopped_world")
    r = subprocess.run(ctrfs_argv("export", world.target, "-o", str(out)), capture_output=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    assert SECRET not in data, "HOST CANARY LEAKED through export"
    with tarfile.open(out) as tf:
        members = {m.name: m for m in tf}
    assert members["c10/fifo"].isfifo() and members["c10/fifo"].size == 0
    assert members["c10/null"].ischr() and members["c10/loop"].isblk()
    assert "c10/sock" not in members  # tar cannot hold a socket; skipped with a warning
    assert members["c11/passwd"].issym() and members["c11/passwd"].linkname == "/dev/zero"
    assert members["c1/etc"].issym() and not any(n.startswith(f"{CANARY}") for n in members)
    assert all(not n.startswith(("/", "../")) and "/../" not in n for n in members)
    vol = [n for n in members if n.startswith("vol/")]
    assert vol == [], f"the volume was exported although mounts are excluded by default: {vol}"


@pytest.mark.parametrize("state", ["running", "stopped"])
def test_diff_and_layers_of_the_trap_container(request, state: str) -> None:  # type: ignore[no-untyped-def]
    """diff and layers walk the container's upper dir on the host, where every trap is a real
    entry (symlinks to / and to host paths, FIFOs, devices, sockets): they list them, follow
    none, open none, and never show the host canary."""
    world = request.getfixturevalue("world" if state == "running" else "stopped_world")
    r = _run("diff", "--json", world.target)
    assert r.returncode == 0 and "Traceback" not in r.stderr.decode(), r.stderr
    assert SECRET not in r.stdout and CANARY.encode() not in r.stdout.replace(
        f"/nonexistent-{CANARY}".encode(), b"")
    rows = {row["path"]: row for row in json.loads(r.stdout)}
    assert rows["/c1/etc"]["type"] == "symlink" and rows["/c10/fifo"]["kind"] == "A"
    assert not any(p.startswith(("/c1/etc/", "/c2/a/", "/c8/hostpath/")) for p in rows), \
        "diff followed a symlink out of the upper dir"
    r = _run("layers", world.target)
    assert r.returncode == 0 and SECRET not in r.stdout, r.stderr


def test_names_are_bytes_and_printed_escaped(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Case 9 across the listing commands: hostile names come out escaped, one per line, and
    copies keep the exact bytes."""
    names = [b"*", b"file*", b"-rf", b"new\nline", b"\xff\xfe-latin", b"\x1b[31mred", b"tab\there"]
    script = "mkdir -p /c9 && cd /c9 && " + " && ".join(
        "printf 'n\\n' > \"$(printf '" + "".join(f"\\{b:03o}" for b in n) + "')\"" for n in names)
    sh(world, script)
    t = world.target
    for argv in (("ls", f"{t}:/c9"), ("ls", "-l", f"{t}:/c9"), ("find", f"{t}:/c9"),
                 ("du", f"{t}:/c9"),
                 ("grep", "-r", "n", f"{t}:/c9")):
        r = _run(*argv)
        assert r.returncode == 0, (argv, r.stderr)
        assert b"\x1b" not in r.stdout and b"\xff" not in r.stdout, (argv, r.stdout)
        if argv[0] in ("ls", "find", "grep"):
            rows = [ln for ln in r.stdout.split(b"\n") if ln and not ln.startswith(b"total")]
            expected = len(names) + (1 if argv[0] == "find" else 0)
            assert len(rows) == expected, (argv, r.stdout)
    # the star is a name, not a glob
    r = _run("cat", f"{t}:/c9/*")
    assert (r.returncode, r.stdout) == (0, b"n\n")
    r = _run("cat", f"{t}:/c9/-rf")
    assert (r.returncode, r.stdout) == (0, b"n\n")
    dest = tmp_path / "c9"
    r = _run("cp", f"{t}:/c9", str(dest))
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(os.fsencode(dest))) == sorted(names)
    r = _run("cp", f"{t}:/c9", "-")
    with tarfile.open(fileobj=io.BytesIO(r.stdout), encoding="utf-8", errors="surrogateescape") as tf:
        got = sorted(os.fsencode(m.name.partition("/")[2]) for m in tf if m.name != "c9")
    assert got == sorted(names)


# -- case 16 for every walking command: the container stops mid-operation ----------------------

GONE_FILES = 100_000


def _gone_cases(tmp: Path) -> dict[str, tuple[list[str], str | None]]:
    """command → (argv after the target spec is filled in, output file or None for stdout)."""
    return {
        "find": (["find", "{t}:/g"], None),
        "ls -R": (["ls", "-R", "{t}:/g"], None),
        "grep -r": (["grep", "-r", "x", "{t}:/g"], None),
        "cp -": (["cp", "{t}:/g", "-"], None),
        "cp DIR": (["cp", "{t}:/g", str(tmp / "copy")], str(tmp / "copy")),
        "export -o": (["export", "{t}", "-o", str(tmp / "out.tar")], str(tmp / "out.tar")),
        "export": (["export", "{t}"], None),
    }


@pytest.mark.parametrize("command", sorted(_gone_cases(Path("/"))))
def test_container_gone_mid_operation(command: str, tmp_path: Path) -> None:
    """The container is killed while the command is in the middle of a 100,000-file tree:
    exit 5 with a "gone" message, and no output file under the requested name. Commands
    writing to stdout are held mid-walk by a full pipe (nobody reads it until the container
    is dead), so the kill lands mid-operation without relying on timing."""
    import time

    import harness

    argv, out_file = _gone_cases(tmp_path)[command]
    with hostile_container() as c:
        sh(c, f"treegen many /g {GONE_FILES} >/dev/null && for i in $(seq 10000); do echo x > /g/x$i; done")
        args = [a.format(t=c.target) for a in argv]
        proc = subprocess.Popen(ctrfs_argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
        try:
            if out_file is None:
                # wait until ctrfs is blocked writing into the full pipe
                harness.wait_until(lambda: _blocked_on_pipe(proc.pid), "ctrfs to fill its stdout")
            else:
                time.sleep(0.5)
            assert proc.poll() is None, f"ctrfs {command} finished before the container was killed"
            harness.run("docker", "kill", c.id)
            harness.wait_until(lambda: not harness.pid_alive(c.pid), "the container to die")
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stderr = err.decode(errors="replace")
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    assert proc.returncode == 5, f"ctrfs {command} exited {proc.returncode}: {stderr}"
    assert "gone" in stderr.splitlines()[-1], stderr
    if out_file is not None:
        assert not os.path.lexists(out_file), f"partial output left at {out_file}"
        assert os.listdir(tmp_path) == [], f"temporary files left: {os.listdir(tmp_path)}"


def _blocked_on_pipe(pid: int) -> bool:
    # Any thread of ctrfs: tar streams are written by a writer thread of their own.
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/wchan") as f:
                wchan = f.read()
        except OSError:
            continue
        if "pipe" in wchan:  # pipe_write, anon_pipe_write (6.x), pipe_wait_writable
            return True
    return False
