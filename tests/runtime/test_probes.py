"""ctrfs libs / ctrfs probe against a real TLS container, with real uprobes attached by bpftrace.

The image holds only the host's openssl binary and the libraries ldd lists (no shell). The
container runs ``openssl s_server`` on a unix socket (no network needed: --network none); a
``docker exec -i ... s_client`` fed by a host-side pipe calls SSL_write for every line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

import harness
from harness import ctrfs

pytestmark = [pytest.mark.docker, pytest.mark.root]


def need(tool: str, package: str) -> str:
    # Like the harness: a missing tool is a broken set-up (make test installs it), not a skip.
    path = shutil.which(tool)
    assert path, f"{tool} not installed (Debian package {package}; make test installs it)"
    return path


LIBSSL = "/lib/x86_64-linux-gnu/libssl.so.3"
PREFIX = "ctrfs-p-"
SOCK = "/tmp/tls.sock"


def _openssl_tree(root: str) -> None:
    """openssl + its ldd libraries + a self-signed key pair; nothing else (no shell)."""
    openssl = shutil.which("openssl")
    assert openssl is not None
    ldd = subprocess.run(["ldd", openssl], check=True, capture_output=True, text=True).stdout
    files = [openssl] + re.findall(r"(/\S+) \(0x", ldd)
    for f in files:
        dest = os.path.join(root, f.lstrip("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy2(os.path.realpath(f), dest)
    os.makedirs(os.path.join(root, "etc/tls"))
    os.makedirs(os.path.join(root, "tmp"))
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=ctrfs", "-keyout", os.path.join(root, "etc/tls/key.pem"),
                    "-out", os.path.join(root, "etc/tls/cert.pem")], check=True, capture_output=True)
    for n in ("key.pem", "cert.pem"):
        os.chmod(os.path.join(root, "etc/tls", n), 0o644)


def _build_image(root: str) -> str:
    return harness.build_image_from_dir(root, f"{PREFIX}openssl-{uuid.uuid4().hex[:8]}:latest")


@pytest.fixture(scope="module")
def openssl_tree(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("openssl-rootfs"))
    _openssl_tree(root)
    return root


@pytest.fixture(scope="module")
def openssl_image(openssl_tree: str) -> str:
    return _build_image(openssl_tree)  # removed by the harness at session end


def _pidns_members(pid: int) -> set[int]:
    ns = os.readlink(f"/proc/{pid}/ns/pid")
    out = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.readlink(f"/proc/{d}/ns/pid") == ns:
                    out.add(int(d))
            except OSError:
                pass
    return out


@dataclass
class TLSContainer:
    name: str
    server_pid: int
    client_pid: int
    client: subprocess.Popen[bytes]
    stop: threading.Event
    stack: contextlib.ExitStack = field(repr=False)

    def pids(self) -> set[int]:
        return _pidns_members(self.server_pid)


def _start(image: str) -> TLSContainer:
    stack = contextlib.ExitStack()
    try:
        # -i keeps s_server's stdin open: at EOF on stdin it drops the client connection
        rc = stack.enter_context(harness.run_docker(
            image, f"{PREFIX}tls-", "-i", cmd=("/usr/bin/openssl", "s_server", "-unix", SOCK,
                                              "-cert", "/etc/tls/cert.pem", "-key", "/etc/tls/key.pem",
                                              "-quiet")))
        pid = rc.pid
        harness.wait_until(lambda: os.path.exists(f"/proc/{pid}/root{SOCK}"), "s_server socket")
        client = subprocess.Popen(["docker", "exec", "-i", rc.name, "/usr/bin/openssl", "s_client", "-unix",
                                   SOCK, "-quiet"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        stack.callback(client.wait)
        stack.callback(client.kill)
        stop = threading.Event()
        stack.callback(stop.set)

        def feed() -> None:
            n = 0
            while not stop.is_set() and client.poll() is None:
                try:
                    assert client.stdin is not None
                    client.stdin.write(f"ping {n}\n".encode())
                    client.stdin.flush()
                except (BrokenPipeError, OSError):
                    return
                n += 1
                time.sleep(0.1)

        threading.Thread(target=feed, daemon=True).start()

        def client_pid() -> int | None:
            for p in _pidns_members(pid) - {pid}:
                try:
                    with open(f"/proc/{p}/cmdline", "rb") as f:
                        if b"s_client" in f.read():
                            with open(f"/proc/{p}/maps", "rb") as m:
                                if b"libssl" in m.read():
                                    return p
                except OSError:
                    pass
            return None

        cpid = harness.wait_until(client_pid, "s_client in the container")
        return TLSContainer(rc.name, pid, cpid, client, stop, stack)
    except BaseException:
        stack.close()
        raise


def _stop(c: TLSContainer) -> None:
    c.stack.close()


@pytest.fixture(scope="module")
def tls(openssl_image: str) -> Iterator[TLSContainer]:
    c = _start(openssl_image)
    yield c
    _stop(c)


@pytest.fixture(scope="module")
def tracing() -> None:
    need("bpftrace", "bpftrace")
    if not os.path.exists("/sys/kernel/tracing/uprobe_events"):
        # bpftrace attaches uprobes through tracefs; a minimal VM may not have it mounted
        subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], check=True)


def bpftrace_pids(probe: str, seconds: float = 15, want: int = 3) -> list[int]:
    """Run ``probe { printf pid }`` until it fired ``want`` times; the pids it printed. bpftrace
    prints "Attaching 1 probe..." before it attaches (a symbol it cannot resolve fails after
    that line), so success is its own exit status: 0 once exit() ran, while ``timeout``'s SIGINT
    after ``seconds`` means the probe fired fewer than ``want`` times."""
    prog = probe + ' { printf("%d\\n", pid); @n = @n + 1; if (@n >= ' + str(want) + ") { exit(); } }"
    r = subprocess.run(["timeout", "-s", "INT", str(seconds), "bpftrace", "-e", prog],
                       capture_output=True, text=True)
    pids = [int(ln) for ln in r.stdout.splitlines() if ln.strip().isdigit()]
    assert r.returncode == 0 and "Attaching 1 probe" in r.stdout, \
        f"bpftrace {probe} exited {r.returncode} after {len(pids)} of {want} hits: {r.stderr}"
    assert len(pids) >= want, pids
    return pids


def _libssl(doc: dict) -> dict:  # type: ignore[type-arg]
    (o,) = [o for o in doc["objects"] if o["path"].endswith("/libssl.so.3")]
    return o


def test_libs_reports_the_containers_libssl(tls: TLSContainer) -> None:
    doc = json.loads(ctrfs("libs", tls.name, "--match", "libssl", "--json").stdout)
    o = _libssl(doc)
    assert o["path"] == LIBSSL and not o["deleted"] and o["identity"] == "verified"
    assert o["host_path"] == f"/proc/{o['pids'][0]}/root{LIBSSL}" and o["host_path_via"] == "root"
    assert {tls.server_pid, tls.client_pid} <= set(o["pids"]) <= tls.pids()
    # the very same file the processes map
    with open(f"/proc/{tls.client_pid}/maps", "rb") as f:
        rng = next(ln.split()[0].decode() for ln in f if ln.rstrip().endswith(b"libssl.so.3"))
    mapped = os.stat(f"/proc/{tls.client_pid}/map_files/{rng}")
    assert os.path.samestat(os.stat(o["host_path"]), mapped)
    # a copy in an image layer: same bytes as the host's libssl, but not the host's inode
    host = os.stat(LIBSSL)
    assert not os.path.samestat(os.stat(o["host_path"]), host)
    assert o["layer"]["kind"] == "lower" and o["layer"]["verified"]
    layer_file = os.stat(os.path.join(o["layer"]["dir"], LIBSSL.lstrip("/")))
    assert not os.path.samestat(layer_file, host) and layer_file.st_size == host.st_size == o["size"]
    readelf = subprocess.run(["readelf", "-n", "-d", "-W", LIBSSL], capture_output=True, text=True).stdout
    assert o["build_id"] == re.search(r"Build ID: ([0-9a-f]+)", readelf).group(1)  # type: ignore[union-attr]
    assert o["soname"] == "libssl.so.3" and o["library"] == "openssl"
    dpkg = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libssl3"], capture_output=True,
                          text=True).stdout
    upstream = re.match(r"(?:\d+:)?([0-9.]+[a-z]?)", dpkg).group(1)  # type: ignore[union-attr]
    assert o["version"] == upstream and "libcrypto" in o["version_source"]
    text = ctrfs("libs", tls.name).stdout
    assert "/usr/bin/openssl [exe]" in text and "glibc" in text and o["host_path"] in text


def test_libs_all_groups_by_container(tls: TLSContainer) -> None:
    doc = json.loads(ctrfs("libs", "--all", "--match", r"libssl\.so", "--json").stdout)
    mine = [g for g in doc if g["container"]["name"] == tls.name]
    assert len(mine) == 1
    assert {tls.server_pid, tls.client_pid} <= set(_libssl(mine[0])["pids"]) <= tls.pids()
    checked = 0
    for g in doc:  # every group only lists objects of its own container's processes
        if not harness.pid_alive(g["container"]["pid"]):
            continue  # another session's container, gone since (the host is shared)
        own = _pidns_members(g["container"]["pid"])
        checked += 1
        for o in g["objects"]:
            assert re.search(r"libssl\.so", o["path"])
            alive = {p for p in o["pids"] if harness.pid_alive(p)}  # (processes end meanwhile)
            assert o["pids"] and alive <= own, (g["container"], o["path"], o["pids"], own)
    assert checked >= 1
    text = ctrfs("libs", "--all", "--match", r"libssl\.so").stdout
    assert tls.name in text and f"/proc/{_libssl(mine[0])['pids'][0]}/root{LIBSSL}" in text


def test_probe_attaches_and_fires_in_the_container(tls: TLSContainer, tracing: None) -> None:
    out = ctrfs("probe", tls.name, "--lib", "libssl", "--symbol", "SSL_write", "--format", "bpftrace").stdout
    (line,) = out.split()
    m = re.fullmatch(r"uprobe:/proc/(\d+)/root(/\S+):SSL_write", line)
    assert m and m.group(2) == LIBSSL and int(m.group(1)) in tls.pids()
    fired = bpftrace_pids(line)
    assert fired, "SSL_write probe never fired"
    assert set(fired) <= tls.pids()
    assert tls.client_pid in fired

    pinned = ctrfs("probe", tls.name, "--lib", "libssl", "--symbol", "SSL_write", "--pin").stdout.strip()
    m = re.fullmatch(r"uprobe:(/proc/\d+/map_files/[0-9a-f]+-[0-9a-f]+):SSL_write", pinned)
    assert m and os.path.samestat(os.stat(m.group(1)), os.stat(f"/proc/{tls.client_pid}/root{LIBSSL}"))
    fired = bpftrace_pids(pinned)
    assert set(fired) <= tls.pids() and tls.client_pid in fired, (fired, tls.pids())


def test_probe_offsets_agree_with_readelf(tls: TLSContainer) -> None:
    syms = {"malloc": "libc.so.6", "getpid": "libc.so.6", "SSL_write": "libssl.so.3",
            "SSL_read": "libssl.so.3", "EVP_EncryptInit_ex": "libcrypto.so.3", "RAND_bytes": "libcrypto.so.3"}
    args = [a for s in syms for a in ("--symbol", s)]
    doc = json.loads(ctrfs("probe", tls.name, "--lib", r"/lib(c|ssl|crypto)\.so", *args,
                           "--format", "json").stdout)
    got = {(p["symbol"], os.path.basename(p["path"])): p for p in doc["probes"]}
    assert set(got) == {(s, lib) for s, lib in syms.items()}
    for (sym, _lib), p in got.items():
        elf = p["host_path"]
        vaddr = _readelf_address(elf, sym)
        loads = [(int(f[2], 16), int(f[1], 16), int(f[4], 16)) for f in (
            ln.split() for ln in subprocess.run(["readelf", "-l", "-W", elf], check=True, capture_output=True,
                                                text=True).stdout.splitlines()) if f and f[0] == "LOAD"]
        (v, o) = next((v, o) for v, o, fs in loads if v <= vaddr < v + fs)
        assert p["address"] == vaddr and p["offset"] == vaddr - v + o
        assert p["identity"] == "verified" and p["build_id"]


def _readelf_address(elf: str, sym: str) -> int:
    """``sym``'s address by readelf: its default version (``sym@@V``) if it has versions, else its
    unversioned definitions (.dynsym and .symtab), which must agree on one address."""
    symtab = subprocess.run(["readelf", "-s", "-W", "--dyn-syms", elf], check=True, capture_output=True,
                            text=True).stdout
    found = [(int(f[1], 16), f[7].partition("@")[2]) for f in (ln.split() for ln in symtab.splitlines())
             if len(f) >= 8 and f[0].endswith(":") and f[7].partition("@")[0] == sym and f[6] != "UND"]
    chosen = {a for a, v in found if v.startswith("@")} or {a for a, v in found if not v}
    assert len(chosen) == 1, f"{elf}: {sym} defined at {found}"
    return chosen.pop()


def test_probe_missing_symbol_names_what_was_searched(tls: TLSContainer) -> None:
    r = ctrfs("probe", tls.name, "--lib", "libssl", "--symbol", "SSL_no_such_fn", check=False)
    assert r.returncode == 1 and r.stdout == ""
    assert "SSL_no_such_fn" in r.stderr and LIBSSL in r.stderr and "stripped" in r.stderr
    assert "Traceback" not in r.stderr
    r = ctrfs("probe", tls.name, "--lib", "libnope", "--symbol", "x", check=False)
    assert r.returncode == 1 and "libnope" in r.stderr and "libssl.so.3" in r.stderr
    r = ctrfs("probe", tls.name, "--symbol", "x", check=False)
    assert r.returncode == 2


def test_probe_on_a_shared_layer_fires_in_every_container_of_that_layer(
        tls: TLSContainer, openssl_image: str, tracing: None) -> None:
    """The documented caveat, observed: same image layer, same inode, one probe for both."""
    other = _start(openssl_image)
    try:
        a = _libssl(json.loads(ctrfs("libs", tls.name, "--match", "libssl", "--json").stdout))
        b = _libssl(json.loads(ctrfs("libs", other.name, "--match", "libssl", "--json").stdout))
        assert a["layer"]["dir"] == b["layer"]["dir"]
        line = ctrfs("probe", tls.name, "--lib", "libssl", "--symbol", "SSL_write").stdout.strip()
        fired = set(bpftrace_pids(line, want=20))
        assert fired <= tls.pids() | other.pids()
        assert fired & other.pids(), "probe attached via one container did not fire in the other"
    finally:
        _stop(other)


@pytest.fixture
def deleted_tls(openssl_tree: str) -> Iterator[TLSContainer]:
    # Its own image layer: a uprobe sits on the layer file, which every container whose image
    # has that layer shares (docker import of identical content yields the very same layer).
    marker = os.path.join(openssl_tree, "etc", "instance")
    with open(marker, "w") as f:
        f.write(uuid.uuid4().hex)
    try:
        image = _build_image(openssl_tree)
    finally:
        os.unlink(marker)
    c = _start(image)
    try:
        # the test's own setup: delete the mapped library from the container's filesystem
        os.unlink(f"/proc/{c.server_pid}/root{LIBSSL}")
        yield c
    finally:
        _stop(c)


def test_deleted_library_attaches_through_map_files(deleted_tls: TLSContainer, tracing: None) -> None:
    c = deleted_tls
    r = ctrfs("libs", c.name, "--match", "libssl", "--json")
    o = _libssl(json.loads(r.stdout))
    assert o["deleted"] and o["identity"] == "verified" and o["host_path_via"] == "map_files"
    assert re.fullmatch(r"/proc/\d+/map_files/[0-9a-f]+-[0-9a-f]+", o["host_path"])
    assert o["warnings"] and o["build_id"] and o["root_path_same"] is None
    assert "deleted" in ctrfs("libs", c.name, "--match", "libssl").stderr

    line = ctrfs("probe", c.name, "--lib", "libssl", "--symbol", "SSL_write").stdout.strip()
    assert re.fullmatch(r"uprobe:/proc/\d+/map_files/[0-9a-f]+-[0-9a-f]+:SSL_write", line)
    fired = bpftrace_pids(line)
    assert fired and set(fired) <= c.pids()


def test_replaced_library_is_a_reported_mismatch_without_map_files(deleted_tls: TLSContainer) -> None:
    c = deleted_tls
    # another file now sits at the mapped path
    shutil.copy("/lib/x86_64-linux-gnu/libc.so.6", f"/proc/{c.server_pid}/root{LIBSSL}")
    o = _libssl(json.loads(ctrfs("libs", c.name, "--match", "libssl", "--json").stdout))
    assert o["root_path_same"] is False and o["host_path_via"] == "map_files"

    # without CAP_SYS_ADMIN/CAP_CHECKPOINT_RESTORE map_files is closed: the path cannot be vouched for
    drop = ["setpriv", "--bounding-set", "-sys_admin,-checkpoint_restore",
            "--inh-caps", "-sys_admin,-checkpoint_restore"]
    need("setpriv", "util-linux")
    o = _libssl(json.loads(ctrfs("libs", c.name, "--match", "libssl", "--json", prefix=drop).stdout))
    assert o["identity"] == "mismatch" and o["host_path"] is None and o["map_files_path"] is None
    assert any("not the mapped inode" in w for w in o["warnings"])
    r = ctrfs("probe", c.name, "--lib", "libssl", "--symbol", "SSL_write", prefix=drop, check=False)
    assert r.returncode == 1 and "mismatch" in r.stderr and r.stdout == ""


TICK_C = r"""
#include <stdio.h>
#include <unistd.h>
__attribute__((noinline)) int tick(int n) { return printf("tick %d\n", n) + fflush(stdout); }
int main(void) { for (int n = 0;; n++) { tick(n); usleep(100000); } }
"""


@pytest.fixture(scope="module")
def ticker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A non-PIE executable with a symbol only in .symtab: its file offset differs from its address."""
    need("gcc", "gcc")
    root = tmp_path_factory.mktemp("ticker-rootfs")
    src = root.parent / "tick.c"
    src.write_text(TICK_C)
    subprocess.run(["gcc", "-O1", "-no-pie", "-o", str(root / "app"), str(src)], check=True)
    ldd = subprocess.run(["ldd", str(root / "app")], check=True, capture_output=True, text=True).stdout
    for f in re.findall(r"(/\S+) \(0x", ldd):
        dest = root / f.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(f), dest)
    with harness.run_docker(_build_image(str(root)), f"{PREFIX}tick-", cmd=("/app",)) as rc:
        yield rc.name, rc.pid


def _tracefs_write(path: str, text: str) -> None:
    # not open(path, "a"): Python's append mode seeks to the end, which tracefs files refuse (EINVAL)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def test_exe_symbol_offset_is_what_the_kernel_uprobe_needs(ticker: tuple[str, int], tracing: None) -> None:
    """Attach a raw tracefs uprobe at ctrfs's file offset (no bpftrace symbol lookup in between)."""
    name, pid = ticker
    doc = json.loads(ctrfs("probe", name, "--exe", "--symbol", "tick", "--format", "json").stdout)
    (p,) = doc["probes"]
    assert p["path"] == "/app" and p["symbol_table"] == ".symtab" and p["offset"] != p["address"]
    tr = "/sys/kernel/tracing"
    tag = uuid.uuid4().hex[:8]
    event, inst = f"ctrfs_p/tick_{tag}", f"{tr}/instances/ctrfs_p_{tag}"
    _tracefs_write(f"{tr}/uprobe_events", f"p:{event} {p['host_path']}:{p['offset']:#x}\n")
    try:
        os.mkdir(inst)  # a private trace buffer: other users of tracefs are not disturbed
        try:
            _tracefs_write(f"{inst}/events/{event}/enable", "1")
            def trace_hits() -> list[str]:
                with open(f"{inst}/trace") as f:
                    return re.findall(rf"-(\d+)\s.*tick_{tag}:", f.read())

            hits = harness.wait_until(trace_hits, "a hit of the raw uprobe", timeout=10)
            _tracefs_write(f"{inst}/events/{event}/enable", "0")
        finally:
            os.rmdir(inst)
    finally:
        _tracefs_write(f"{tr}/uprobe_events", f"-:{event}\n")
    assert {int(h) for h in hits} == {pid}

    line = ctrfs("probe", name, "--exe", "--symbol", "tick").stdout.strip()
    assert line == f"uprobe:/proc/{pid}/root/app:tick"
    assert set(bpftrace_pids(line)) == {pid}


@pytest.fixture(scope="module")
def musl_ticker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """The same ticker built against musl, laid out as Alpine does (/lib/ld-musl-x86_64.so.1)."""
    need("musl-gcc", "musl-tools")
    root = tmp_path_factory.mktemp("musl-rootfs")
    src = root.parent / "tick-musl.c"
    src.write_text(TICK_C)
    subprocess.run(["musl-gcc", "-O1", "-o", str(root / "app"), str(src)], check=True)
    (root / "lib").mkdir()
    shutil.copy2(os.path.realpath("/lib/ld-musl-x86_64.so.1"), root / "lib" / "ld-musl-x86_64.so.1")
    os.symlink("ld-musl-x86_64.so.1", root / "lib" / "libc.musl-x86_64.so.1")
    with harness.run_docker(_build_image(str(root)), f"{PREFIX}musl-", cmd=("/app",)) as rc:
        yield rc.name, rc.pid


def test_musl_container(musl_ticker: tuple[str, int], tracing: None) -> None:
    name, pid = musl_ticker
    doc = json.loads(ctrfs("libs", name, "--json").stdout)
    by_path = {o["path"]: o for o in doc["objects"]}
    assert set(by_path) == {"/app", "/lib/ld-musl-x86_64.so.1"}
    musl = by_path["/lib/ld-musl-x86_64.so.1"]
    upstream = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "musl"], capture_output=True,
                              text=True).stdout.split("-")[0]
    assert (musl["library"], musl["version"], musl["identity"]) == ("musl", upstream, "verified")
    assert by_path["/app"]["executable"] and by_path["/app"]["pids"] == [pid]
    line = ctrfs("probe", name, "--exe", "--symbol", "tick").stdout.strip()
    assert set(bpftrace_pids(line)) == {pid}


def test_cli_errors_and_exit_codes(tls: TLSContainer) -> None:
    assert ctrfs("libs", check=False).returncode == 2
    assert ctrfs("libs", tls.name, "--all", check=False).returncode == 2
    r = ctrfs("libs", "ctrfs-p-no-such-container", check=False)
    assert r.returncode == 3 and "Traceback" not in r.stderr
    r = ctrfs("libs", tls.name, "--match", "([", check=False)
    assert r.returncode == 2 and "regular expression" in r.stderr
    r = ctrfs("probe", tls.name, "--exe", "--symbol", "main", check=False)  # openssl is stripped
    assert r.returncode == 1 and "/usr/bin/openssl" in r.stderr and "stripped" in r.stderr
    for cmd in ("libs", "probe"):
        assert "Examples:" in ctrfs(cmd, "--help").stdout


def test_symlink_to_a_host_file_is_never_reported_as_the_library(deleted_tls: TLSContainer) -> None:
    """The container swaps its deleted libssl for an absolute symlink: /proc/<pid>/root/<path> now
    resolves to the HOST's libssl (absolute links under /proc/<pid>/root resolve against the
    host root). ctrfs must not hand that path out as the container's library."""
    c = deleted_tls
    os.symlink(LIBSSL, f"/proc/{c.server_pid}/root{LIBSSL}")
    assert os.path.samestat(os.stat(f"/proc/{c.server_pid}/root{LIBSSL}"), os.stat(LIBSSL))  # the trap works

    o = _libssl(json.loads(ctrfs("libs", c.name, "--match", "libssl", "--json").stdout))
    assert o["root_path_same"] is False and o["host_path_via"] == "map_files"
    assert not os.path.samestat(os.stat(o["host_path"]), os.stat(LIBSSL))
    line = ctrfs("probe", c.name, "--lib", "libssl", "--symbol", "SSL_write").stdout.strip()
    assert "/map_files/" in line and f"/root{LIBSSL}" not in line

    drop = ["setpriv", "--bounding-set", "-sys_admin,-checkpoint_restore",
            "--inh-caps", "-sys_admin,-checkpoint_restore"]
    o = _libssl(json.loads(ctrfs("libs", c.name, "--match", "libssl", "--json", prefix=drop).stdout))
    assert o["identity"] == "mismatch" and o["host_path"] is None
