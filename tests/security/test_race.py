"""docs/security.md case 18: the CVE-2018-15664 race, against the content commands (cat, tail,
grep -r, cp, export), the metadata commands (ls -l, stat, find, du, which) and libs.

Inside a real container, ``swapper`` exchanges ``/race/d`` (a real directory holding
``<canary>/secret`` = "legit") with ``/race/a`` (a symlink to ``/``) in a tight
renameat2(RENAME_EXCHANGE) loop. On the host, and only there, ``/<canary>/secret`` holds a
random secret, and has a size, a mode and an mtime that nothing in the container has (its
directory a mode of its own too): a command that only reports metadata leaks through those.
Whoever resolves ``/race/d/<canary>/secret`` through ``/proc/<pid>/root`` by path string lands,
whenever the symlink is in place, on the *host's* file: the control below proves the attack is
live, and each operation over a naive resolver is shown to leak. ctrfs must only ever give the
legitimate file, "not found", or an error, through both resolvers (openat2 and the user-space
fallback walker).

Operation count: CTRFS_RACE_OPS per resolver (default 10,000; ``make stress`` runs 100,000).
"""

from __future__ import annotations

import io
import os
import re
import secrets
import shutil
import stat
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from _hostile import background, env_int, hostile_container, sh

import ctrfs
import harness
from ctrfs.errors import CtrfsError, NotFound
from ctrfs.ops.archive import write_tar
from ctrfs.ops.content import GrepMatch, cat, grep
from ctrfs.ops.copy import copy_out
from ctrfs.ops.du import du
from ctrfs.ops.find import find
from ctrfs.ops.follow import TailData, tail
from ctrfs.ops.listing import FileInfo, ls, stat_path
from ctrfs.overlay.layers import LayerStack, layer_stack
from ctrfs.overlay.which import which
from ctrfs.probes import libs as probes_libs
from ctrfs.rootfs.proc import ProcRoot

pytestmark = [pytest.mark.root, pytest.mark.docker]

LEGIT = b"legit\n"
OPS = env_int("CTRFS_RACE_OPS", 10_000)


# The host canary's metadata, which nothing in the container has: "legit\n" is 6 bytes, 0644,
# written now; the container's directories are 0755. Every line of the file is the secret.
CANARY_LINES = 18_089
CANARY_MODE = 0o611
CANARY_DIR_MODE = 0o715
CANARY_MTIME = 981_173_106 + secrets.randbelow(1_000_000)  # some second in 2001


@pytest.fixture(scope="module")
def host_canary() -> tuple[str, bytes]:
    """A directory name that exists only on the host, with a random secret file in it."""
    name = f"ctrfs-canary-{secrets.token_hex(6)}"
    secret = f"HOST-ONLY-{secrets.token_hex(16)}".encode()
    d = Path("/") / name
    d.mkdir(mode=0o700)
    try:
        f = d / "secret"
        f.write_bytes((secret + b"\n") * CANARY_LINES)
        f.chmod(CANARY_MODE)
        os.utime(f, (CANARY_MTIME, CANARY_MTIME))
        d.chmod(CANARY_DIR_MODE)
        yield name, secret
    finally:
        shutil.rmtree(d)


def canary_size(secret: bytes) -> int:
    return (len(secret) + 1) * CANARY_LINES


def _shared_object(marker: str, dest: Path) -> str:
    """A tiny ELF shared object with its own build-id; returns the build-id (hex)."""
    src = dest.with_suffix(".c")
    src.write_text(f'const char *ctrfs_marker(void) {{ return "{marker}"; }}\n')
    harness.run("gcc", "-shared", "-fPIC", "-nostdlib", "-Wl,--build-id=sha1", "-o", str(dest),
                str(src))
    out = harness.out("readelf", "-n", str(dest))
    return out.split("Build ID:")[1].split()[0]


@pytest.fixture(scope="module")
def elf_pair(host_canary: tuple[str, bytes], tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """(legit .so for the container, its build-id, the host canary .so's build-id). The host
    canary is installed as /<canary>/lib.so, next to the secret."""
    name, _ = host_canary
    d = tmp_path_factory.mktemp("ctrfs-s-elf")
    legit_id = _shared_object("legit", d / "legit.so")
    canary_id = _shared_object(f"host-canary-{secrets.token_hex(8)}", d / "canary.so")
    assert legit_id != canary_id
    shutil.copy(d / "canary.so", Path("/") / name / "lib.so")
    return d / "legit.so", legit_id, canary_id


@pytest.fixture(scope="module")
def racing(host_canary: tuple[str, bytes], elf_pair):  # type: ignore[no-untyped-def]
    name, _ = host_canary
    with hostile_container() as c:
        sh(c, f"mkdir -p /race/d/{name} && printf 'legit\\n' > /race/d/{name}/secret"
              " && ln -s / /race/a")
        harness.run("docker", "cp", str(elf_pair[0]), f"{c.id}:/race/d/{name}/lib.so")
        # A process mapping the legitimate library through the raced directory (for libs).
        with background(c, f"exec treegen map /race/d/{name}/lib.so 1800", "/mapper.pid"), \
                background(c, "exec swapper /race/d /race/a 1800", "/swapper.pid"):
            yield c


def _observed_states(pid: int, seconds: float = 5) -> set[str]:
    seen: set[str] = set()
    end = time.monotonic() + seconds
    while len(seen) < 2 and time.monotonic() < end:
        try:
            mode = os.lstat(f"/proc/{pid}/root/race/d").st_mode
        except FileNotFoundError:
            continue
        seen.add("symlink" if stat.S_ISLNK(mode) else "dir" if stat.S_ISDIR(mode) else "other")
    return seen


def test_attack_is_live(racing, host_canary) -> None:  # type: ignore[no-untyped-def]
    """Control: the swap really happens, and a naive /proc/<pid>/root path open reads the
    host's secret. Without this, "ctrfs never read the canary" would prove nothing."""
    name, secret = host_canary
    assert _observed_states(racing.pid) == {"symlink", "dir"}
    naive = f"/proc/{racing.pid}/root/race/d/{name}/secret"
    leaked = 0
    for _ in range(200_000):
        try:
            with open(naive, "rb") as f:
                if secret in f.read():
                    leaked += 1
                    break
        except FileNotFoundError:
            pass
    assert leaked, "the naive open never reached the host canary: the race is not live"


def _check(data: bytes, secret: bytes, what: str) -> None:
    assert secret not in data, f"HOST CANARY LEAKED through {what}"


def _op_cat(root: ProcRoot, name: str, secret: bytes, scratch: str) -> str:
    data = b"".join(cat(root, f"/race/d/{name}/secret"))
    _check(data, secret, "cat")
    return "legit" if data == LEGIT else "other content"


def _op_cp(root: ProcRoot, name: str, secret: bytes, scratch: str, _n: list[int] = [0]) -> str:  # noqa: B006
    # Alternate between copying the file and copying its directory (a walk from a raced start).
    _n[0] += 1
    src = f"/race/d/{name}" + ("/secret" if _n[0] % 2 else "")
    dest = os.path.join(scratch, f"out{_n[0]}")
    try:
        copy_out(root, src, dest)
        for dirpath, _dirs, fnames in os.walk(dest):
            for fn in fnames:
                with open(os.path.join(dirpath, fn), "rb") as f:
                    _check(f.read(), secret, "cp")
        got = Path(dest if os.path.isfile(dest) else os.path.join(dest, "secret")).read_bytes()
        return "legit" if got == LEGIT else "other content"
    finally:
        if os.path.isdir(dest):
            shutil.rmtree(dest)
        elif os.path.lexists(dest):
            os.unlink(dest)
        leftovers = [n for n in os.listdir(scratch)]
        assert not leftovers, f"cp left {leftovers} behind"


def _op_export(root: ProcRoot, name: str, secret: bytes, scratch: str) -> str:
    buf = io.BytesIO()
    write_tar(root, buf, f"/race/d/{name}")
    raw = buf.getvalue()
    _check(raw, secret, "export")
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        try:
            member = tf.extractfile(f"{name}/secret")
        except KeyError:
            return "tar without the file"
        data = member.read() if member is not None else b""
    return "legit" if data == LEGIT else "other content"


def _check_info(info: FileInfo, secret: bytes, what: str) -> None:
    """An entry shown by a metadata command is none of the host canary's."""
    if info.type == "d":
        assert info.mode != CANARY_DIR_MODE, f"HOST CANARY LEAKED through {what}: {info}"
        return
    assert info.size != canary_size(secret) and info.mode != CANARY_MODE \
        and int(info.mtime) != CANARY_MTIME, f"HOST CANARY LEAKED through {what}: {info}"


def _legit_info(info: FileInfo) -> str:
    return "legit" if (info.type, info.size) == ("f", len(LEGIT)) else "other content"


def _op_ls(root: ProcRoot, name: str, secret: bytes, scratch: str) -> str:
    # ls -l of the raced directory: every entry's metadata
    infos = [i for listing in ls(root, f"/race/d/{name}", all=True) for i in listing.entries]
    for i in infos:
        _check_info(i, secret, "ls -l")
    secret_rows = [i for i in infos if i.name == "secret"]
    return _legit_info(secret_rows[0]) if secret_rows else "listing without the file"


def _op_stat(root: ProcRoot, name: str, secret: bytes, scratch: str, _n: list[int] = [0]) -> str:  # noqa: B006
    # stat and stat -L of the file, stat of its directory
    _n[0] += 1
    if _n[0] % 3 == 0:
        _check_info(stat_path(root, f"/race/d/{name}"), secret, "stat DIR")
        return "legit"
    info = stat_path(root, f"/race/d/{name}/secret", follow=_n[0] % 3 == 1)
    _check_info(info, secret, "stat")
    return _legit_info(info)


def _op_find(root: ProcRoot, name: str, secret: bytes, scratch: str) -> str:
    infos = list(find(root, f"/race/d/{name}"))
    for i in infos:
        _check_info(i, secret, "find")
    secret_rows = [i for i in infos if i.name == "secret"]
    return _legit_info(secret_rows[0]) if secret_rows else "walk without the file"


def _op_du(root: ProcRoot, name: str, secret: bytes, scratch: str, _n: list[int] = [0]) -> str:  # noqa: B006
    # du --apparent-size of the file, or of its directory (the container's holds "legit\n" and
    # a small library; the host's a file bigger than everything else in the container)
    _n[0] += 1
    path = f"/race/d/{name}" + ("/secret" if _n[0] % 2 else "")
    rows = list(du(root, path, summarize=True, apparent=True))
    for r in rows:
        assert r.bytes < canary_size(secret), f"HOST CANARY LEAKED through du: {r}"
    if _n[0] % 2:
        return "legit" if [r.bytes for r in rows] == [len(LEGIT)] else "other content"
    return "legit"


def _op_tail(root: ProcRoot, name: str, secret: bytes, scratch: str) -> str:
    data = b"".join(ev.data for ev in tail(root, f"/race/d/{name}/secret", lines=3)
                    if isinstance(ev, TailData))
    _check(data, secret, "tail")
    return "legit" if data == LEGIT else "other content"


_ANY_LINE = re.compile(b".")


def _op_grep(root: ProcRoot, name: str, secret: bytes, scratch: str) -> str:
    hits = list(grep(root, _ANY_LINE, f"/race/d/{name}", recursive=True))
    lines = [h.line for h in hits if isinstance(h, GrepMatch)]
    _check(b"\n".join(lines), secret, "grep -r")
    return "legit" if lines == [LEGIT.rstrip(b"\n")] else "other content"


_STACKS: dict[int, LayerStack] = {}


def _op_which(root: ProcRoot, name: str, secret: bytes, scratch: str) -> str:
    """which resolves the path in the layer directories on the host, with its own resolver: the
    upper dir holds the swapped entries, and its symlink to / must resolve inside the layers."""
    stack = _STACKS.get(root.container.pid) or _STACKS.setdefault(root.container.pid,
                                                                   layer_stack(root.container))
    res = which(stack, f"/race/d/{name}/secret")
    for h in res.hits:
        assert h.size != canary_size(secret), f"HOST CANARY LEAKED through which: {h}"
    if res.visible is None:
        return "not found"
    return "legit" if (res.visible.type, res.visible.size) == ("file", len(LEGIT)) else "other content"


def _naive_which(root: ProcRoot, name: str, secret: bytes, scratch: str) -> str:
    """What which would be with the layer path joined as a string and followed on the host."""
    stack = _STACKS.get(root.container.pid) or _STACKS.setdefault(root.container.pid,
                                                                   layer_stack(root.container))
    upper = stack.layers[0].path
    try:
        st = os.stat(os.path.join(upper, f"race/d/{name}/secret"))
    except FileNotFoundError:
        return "not found"
    assert st.st_size != canary_size(secret), "HOST CANARY LEAKED through which"
    return "legit"


OPERATIONS: dict[str, Callable[[ProcRoot, str, bytes, str], str]] = {
    "cat": _op_cat, "cp": _op_cp, "export": _op_export, "tail": _op_tail, "grep -r": _op_grep,
    "ls -l": _op_ls, "stat": _op_stat, "find": _op_find, "du": _op_du, "which": _op_which,
}


@pytest.mark.parametrize("resolver", ["openat2", "fallback"])
def test_race_never_reaches_host(racing, host_canary, resolver: str) -> None:  # type: ignore[no-untyped-def]
    name, secret = host_canary
    container = ctrfs.container(racing.target)
    counts: Counter[tuple[str, str]] = Counter()
    scratch = tempfile.mkdtemp(prefix="ctrfs-s-race-")
    t0 = time.monotonic()
    try:
        with ProcRoot(container, fallback=(resolver == "fallback")) as root:
            ops = list(OPERATIONS.items())
            for i in range(OPS):
                op_name, op = ops[i % len(ops)]
                try:
                    outcome = op(root, name, secret, scratch)
                except NotFound:
                    outcome = "not found"
                except CtrfsError as err:
                    outcome = f"error: {type(err).__name__}: {err}"
                counts[(op_name, outcome)] += 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    elapsed = time.monotonic() - t0
    # The lead reports these numbers; pytest -s (or -rA) shows them.
    print(f"\nrace[{resolver}]: {OPS} operations in {elapsed:.1f}s")
    for (op_name, outcome), n in sorted(counts.items()):
        print(f"race[{resolver}]   {op_name:7} {outcome:40.200} {n}")
    assert sum(counts.values()) == OPS
    # Every operation must have met the legitimate file at least once and the attacker's
    # symlink at least once (otherwise the race did not test anything for that operation).
    for op_name in OPERATIONS:
        outcomes = {o for (n, o), k in counts.items() if n == op_name}
        assert "legit" in outcomes, f"{op_name} never read the legitimate file: {outcomes}"
        assert outcomes - {"legit"}, f"{op_name} never met the swapped symlink: {outcomes}"
        assert "other content" not in outcomes, f"{op_name} returned unexpected content"


class _NaiveRoot(ProcRoot):
    """What the CVE got wrong: the path string joined onto /proc/<pid>/root."""

    def _resolve(self, path, follow):  # type: ignore[no-untyped-def]
        flags = os.O_PATH | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
        return os.open(f"/proc/{self.container.pid}/root/" + os.fsdecode(path).lstrip("/"), flags)


@pytest.mark.parametrize("op_name", sorted(OPERATIONS))
def test_race_check_catches_a_naive_resolver(racing, host_canary, op_name: str) -> None:  # type: ignore[no-untyped-def]
    """The same loop over a string-joining resolver does leak the canary: the assertion in
    the real test is able to fail."""
    name, secret = host_canary
    scratch = tempfile.mkdtemp(prefix="ctrfs-s-race-")
    op = _naive_which if op_name == "which" else OPERATIONS[op_name]
    try:
        with _NaiveRoot(ctrfs.container(racing.target)) as root:
            for _ in range(20_000):
                try:
                    op(root, name, secret, scratch)
                except CtrfsError:
                    continue
                except AssertionError as err:
                    assert "HOST CANARY LEAKED" in str(err)
                    return
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    pytest.fail(f"{op_name} over a naive resolver never leaked: the race check is blind")


def test_libs_race_never_reports_host_library(racing, host_canary, elf_pair) -> None:  # type: ignore[no-untyped-def]
    """ctrfs libs under the same race: the mapped library's path in maps names the raced
    directory, and /proc/<pid>/root/<that path> leads, half of the time, to the host's
    /<canary>/lib.so. The host library's build-id must never be reported."""
    from ctrfs.probes.libs import ElfCache, container_libs

    name, _ = host_canary
    _, legit_id, canary_id = elf_pair
    container = ctrfs.container(racing.target)
    n = env_int("CTRFS_RACE_LIBS_OPS", 1000)
    counts: Counter[str] = Counter()
    t0 = time.monotonic()
    for _ in range(n):
        try:
            result = container_libs(container, match=f"{name}/lib.so", cache=ElfCache())
        except CtrfsError as err:
            counts[f"error: {type(err).__name__}"] += 1
            continue
        objs = [o for o in result.objects if o.name == "lib.so"]
        assert len(objs) == 1, [o.path for o in result.objects]
        o = objs[0]
        assert o.build_id != canary_id, f"HOST LIBRARY REPORTED: {o}"
        if o.build_id == legit_id:
            counts[f"legit via {o.host_path_via}"] += 1
        else:
            counts[f"no build-id ({o.identity}, {'; '.join(o.warnings)[:60]})"] += 1
    print(f"\nrace[libs]: {n} scans in {time.monotonic() - t0:.1f}s")
    for outcome, k in sorted(counts.items()):
        print(f"race[libs]   {outcome:60} {k}")
    assert any(k.startswith("legit") for k in counts), counts


def test_libs_race_check_catches_a_naive_resolver(racing, host_canary, elf_pair, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The control of the libs race: the same scans with a libs that trusts
    /proc/<pid>/root/<mapped path> as a path string (no check that it leads to the mapped
    inode, no map_files entry) do report the host's library."""
    from ctrfs.probes.libs import ElfCache, container_libs

    name, _ = host_canary
    _, legit_id, canary_id = elf_pair

    def naive_resolve(obj, roots, layers):  # type: ignore[no-untyped-def]
        # local_path: what libs opens to read the ELF; host_path: what it prints for a tracer
        obj.local_path = obj.host_path = f"{roots.proc}/{obj.pids[0]}/root{obj.path}"
        obj.host_path_via, obj.identity = "root", probes_libs.VERIFIED
        return None

    monkeypatch.setattr(probes_libs, "_resolve", naive_resolve)
    container = ctrfs.container(racing.target)
    seen: Counter[str] = Counter()
    for _ in range(5000):
        try:
            result = container_libs(container, match=f"{name}/lib.so", cache=ElfCache())
        except CtrfsError:
            continue
        for o in result.objects:
            if o.name == "lib.so":
                seen["canary" if o.build_id == canary_id else "legit" if o.build_id == legit_id
                     else "other"] += 1
        if seen["canary"]:
            return
    pytest.fail(f"libs over a naive resolver never reported the host library: {seen}")
