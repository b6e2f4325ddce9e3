"""ELF facts and symbol offsets, checked against binutils and the package manager on the host's own files."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctrfs.probes.elf import ElfError, find_symbols, read_facts, vaddr_to_offset

LIBDIR = "/lib/x86_64-linux-gnu"
LIBS = {
    "libc.so.6": ["malloc", "getpid", "write", "open"],
    "libssl.so.3": ["SSL_write", "SSL_read", "SSL_do_handshake"],
    "libcrypto.so.3": ["EVP_EncryptInit_ex", "OPENSSL_init_crypto", "RAND_bytes"],
}

# readelf (binutils), containerd, musl, libgnutls30 and libpython3.11 are installed by
# scripts/services.sh for `make test`: a missing one fails here rather than skipping.


def _readelf_loads(path: str) -> list[tuple[int, int, int]]:
    out = subprocess.run(["readelf", "-l", "-W", path], check=True, capture_output=True, text=True).stdout
    loads = []
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "LOAD":
            loads.append((int(f[2], 16), int(f[1], 16), int(f[4], 16)))  # vaddr, offset, filesz
    return loads


def _readelf_symbols(path: str) -> dict[str, int]:
    """Each defined function's address, by readelf. A name defined more than once (.dynsym and
    .symtab, or several symbol versions) resolves to its default version (``name@@V``), else its
    unversioned definitions; those must agree on one address, or the name is left out."""
    out = subprocess.run(["readelf", "-s", "-W", "--dyn-syms", path], check=True, capture_output=True,
                         text=True).stdout
    defs: dict[str, list[tuple[int, str]]] = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 8 and f[0].endswith(":") and f[3] in ("FUNC", "IFUNC") and f[6] != "UND":
            name, _, version = f[7].partition("@")
            defs.setdefault(name, []).append((int(f[1], 16), version))
    syms: dict[str, int] = {}
    for name, found in defs.items():
        chosen = [a for a, v in found if v.startswith("@")] or [a for a, v in found if not v]
        if len(set(chosen)) == 1:
            syms[name] = chosen[0]
    return syms


@pytest.mark.parametrize("lib", sorted(LIBS))
def test_offsets_agree_with_readelf(lib: str) -> None:
    path = os.path.join(LIBDIR, lib)
    with open(path, "rb") as f:
        found = find_symbols(f, LIBS[lib])
    ref = _readelf_symbols(path)
    loads = _readelf_loads(path)
    assert set(found) == set(LIBS[lib]) <= set(ref)
    for name, sym in found.items():
        vaddr = ref[name]
        seg = [(v, o) for v, o, fs in loads if v <= vaddr < v + fs]
        assert len(seg) == 1
        assert sym.address == vaddr
        assert sym.offset == vaddr - seg[0][0] + seg[0][1]


def test_offset_differs_from_address_in_non_pie_executable() -> None:
    # containerd (Go, ET_EXEC at 0x400000): file offset != virtual address
    path = os.path.realpath(shutil.which("containerd") or "/usr/bin/containerd")
    with open(path, "rb") as f:
        facts = read_facts(f, os.path.basename(path))
        found = find_symbols(f, ["runtime.main"])
    assert facts.elf_type == "ET_EXEC"
    sym = found["runtime.main"]
    loads = _readelf_loads(path)
    (v, o) = next((v, o) for v, o, fs in loads if v <= sym.address < v + fs)
    assert sym.offset == sym.address - v + o != sym.address
    assert vaddr_to_offset(facts.loads, sym.address) == sym.offset


def _dpkg_version(pkg: str) -> str:
    return subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], check=True, capture_output=True,
                          text=True).stdout


@pytest.mark.parametrize(("lib", "pkg", "name"), [
    ("libcrypto.so.3", "libssl3", "openssl"),
    ("libc.so.6", "libc6", "glibc"),
    ("libgnutls.so.30", "libgnutls30", "gnutls"),
    ("libpython3.11.so.1.0", "libpython3.11", "libpython"),
])
def test_library_versions_match_the_package(lib: str, pkg: str, name: str) -> None:
    path = os.path.join(LIBDIR, lib)
    with open(path, "rb") as f:
        facts = read_facts(f, lib)
    upstream = re.match(r"(?:\d+:)?([0-9.]+[a-z]?)", _dpkg_version(pkg)).group(1)  # type: ignore[union-attr]
    assert (facts.library, facts.version) == (name, upstream)


def test_build_id_and_soname_match_readelf() -> None:
    path = os.path.join(LIBDIR, "libssl.so.3")
    notes = subprocess.run(["readelf", "-n", "-d", "-W", path], check=True, capture_output=True,
                           text=True).stdout
    build_id = re.search(r"Build ID: ([0-9a-f]+)", notes).group(1)  # type: ignore[union-attr]
    soname = re.search(r"Library soname: \[([^\]]+)\]", notes).group(1)  # type: ignore[union-attr]
    with open(path, "rb") as f:
        facts = read_facts(f, "libssl.so.3")
    assert (facts.build_id, facts.soname, facts.library) == (build_id, soname, "openssl")
    assert facts.has_dynsym and facts.stripped


def test_go_buildinfo_version_matches_the_toolchain_report() -> None:
    docker = shutil.which("docker")
    assert docker is not None, "the docker client is installed by make test"
    reported = subprocess.run([docker, "version", "--format", "{{.Client.GoVersion}}"], capture_output=True,
                              text=True).stdout.strip()
    with open(os.path.realpath(docker), "rb") as f:
        facts = read_facts(f, "docker")
    assert reported.startswith("go") and facts.go_version == reported
    assert facts.library == "go" and facts.version == reported


@pytest.fixture(scope="module")
def small_elf() -> bytes:
    with open(os.path.realpath(shutil.which("true") or "/bin/true"), "rb") as f:
        return f.read()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupt_elf_is_elf_error_or_facts(small_elf: bytes, data: st.DataObject) -> None:
    """Container files are hostile input: a damaged ELF is 'unreadable', never a crash."""
    blob = bytearray(small_elf)
    for _ in range(data.draw(st.integers(1, 12))):
        # headers, program/section header tables and the string tables sit in the first and last KiBs
        pos = data.draw(st.one_of(st.integers(4, 4096), st.integers(len(blob) - 4096, len(blob) - 1)))
        blob[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.one_of(st.just(len(blob)), st.integers(64, len(blob))))
    f = io.BytesIO(bytes(blob[:cut]))
    try:
        facts = read_facts(f, "true")
        find_symbols(f, ["main", "exit"])
    except ElfError:
        return
    assert facts.elf_type


def test_not_elf_is_elf_error() -> None:
    with pytest.raises(ElfError):
        read_facts(io.BytesIO(b"#!/bin/sh\necho hi\n" * 10), "script")


def test_musl_is_recognised_with_its_version() -> None:
    path = "/lib/x86_64-linux-musl/libc.so"  # Debian's musl package; /lib/ld-musl-x86_64.so.1 links here
    with open(path, "rb") as f:
        facts = read_facts(f, "libc.so")
    upstream = _dpkg_version("musl").split("-")[0]
    assert (facts.library, facts.version, facts.soname) == ("musl", upstream, None)


@pytest.mark.parametrize(("text", "library", "version"), [
    ("OpenSSL 1.1.1 (compatible; BoringSSL)", "boringssl", None),
    ("OpenSSL 1.1.1w  11 Sep 2023", "openssl", "1.1.1w"),
])
def test_openssl_flavours_from_the_embedded_version_text(tmp_path: os.PathLike[str], text: str,
                                                         library: str, version: str | None) -> None:
    # A shared object built here that embeds the version text as each flavour does (OPENSSL_VERSION_TEXT)
    gcc = shutil.which("gcc")
    assert gcc, "gcc not installed (make test installs it)"
    src = os.path.join(tmp_path, "v.c")
    lib = os.path.join(tmp_path, "libcrypto.so.1.1")
    with open(src, "w") as f:
        f.write(f'const char *OpenSSL_version_text(void) {{ return "{text}"; }}\n')
    subprocess.run([gcc, "-shared", "-fPIC", "-Wl,-soname,libcrypto.so.1.1", "-o", lib, src], check=True)
    with open(lib, "rb") as f:
        facts = read_facts(f, "libcrypto.so.1.1")
    assert (facts.soname, facts.library, facts.version) == ("libcrypto.so.1.1", library, version)


GO116_BUILDINFO = r"""
/* .go.buildinfo as Go < 1.18 wrote it: flags 0, then pointers to Go string headers {data, len}. */
struct gostr { const char *p; long n; };
static const char ver[] = "go1.16.15";
const struct gostr vstr = { ver, sizeof ver - 1 };
struct hdr { char magic[14]; unsigned char ptrsize, flags; const void *vers, *mod; };
__attribute__((section(".go.buildinfo"), used))
const struct hdr buildinfo = { "\xff Go buildinf:", 8, 0, &vstr, &vstr };
int main(void) { return 0; }
"""


def test_go_buildinfo_pointer_layout_of_old_toolchains(tmp_path: os.PathLike[str]) -> None:
    gcc = shutil.which("gcc")
    assert gcc, "gcc not installed (make test installs it)"
    src, exe = os.path.join(tmp_path, "go116.c"), os.path.join(tmp_path, "go116")
    with open(src, "w") as f:
        f.write(GO116_BUILDINFO)
    # -no-pie: the pointers are link-time constants in the file, as in Go's own executables
    subprocess.run([gcc, "-no-pie", "-o", exe, src], check=True)
    with open(exe, "rb") as f:
        facts = read_facts(f, "go116")
    assert (facts.go_version, facts.library, facts.version) == ("go1.16.15", "go", "go1.16.15")
