"""Facts about one ELF file: build-id, SONAME, well-known library and version, symbols → file offsets.

Everything here works on an already opened binary file object (the caller decides which file is
trustworthy); pyelftools is imported lazily. Nothing is executed or dlopen'ed: versions come
from strings the file itself carries.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from typing import IO, TYPE_CHECKING, Any, Literal, TypeVar

from ctrfs._record import dataclass, field

if TYPE_CHECKING:
    from elftools.elf.elffile import ELFFile

ELF_MAGIC = b"\x7fELF"
T = TypeVar("T")

# Version strings as the libraries embed them (read-only data, not code):
#  OpenSSL: OPENSSL_VERSION_TEXT "OpenSSL 3.0.13 30 Jan 2024" (in libcrypto; libssl has none);
#  BoringSSL keeps "OpenSSL 1.1.1 (compatible; BoringSSL)" and has no release numbers;
#  GnuTLS: the log line "Enabled GnuTLS 3.7.9 logging...";
#  glibc: banner "GNU C Library (Debian GLIBC 2.36-9) stable release version 2.36.";
#  libpython: PY_VERSION "3.11.2" as its own NUL-terminated string.
_OPENSSL = re.compile(rb"OpenSSL (\d+\.\d+\.\d+[a-z]?)(?: |\x00)")
_BORINGSSL = re.compile(rb"BoringSSL")
_GNUTLS = re.compile(rb"GnuTLS (\d+\.\d+\.\d+)")
_GLIBC = re.compile(rb"GNU C Library [^\x00\n]*?version (\d+\.\d+(?:\.\d+)?)")
_MUSL = re.compile(rb"musl libc")
_MUSL_VERSION = re.compile(rb"\x00(1\.\d+\.\d+)\x00")
_PY_SONAME = re.compile(r"libpython(\d+\.\d+)")

_GO_MAGIC = b"\xff Go buildinf:"


@dataclass(frozen=True)
class Symbol:
    name: str
    address: int  # st_value: virtual address in the file's own address space
    offset: int  # file offset a uprobe needs
    size: int
    type: str  # STT_FUNC, STT_GNU_IFUNC, ...
    bind: str
    table: str  # ".dynsym" or ".symtab"


@dataclass(frozen=True)
class ElfFacts:
    elf_type: str  # ET_DYN, ET_EXEC
    machine: str
    build_id: str | None
    soname: str | None
    library: str | None  # openssl, boringssl, gnutls, glibc, musl, libpython, go
    version: str | None
    go_version: str | None
    has_dynsym: bool
    has_symtab: bool
    loads: tuple[tuple[int, int, int, int], ...] = field(default=())  # (p_vaddr, p_offset, p_filesz, p_memsz)

    @property
    def stripped(self) -> bool:
        return not self.has_symtab


class ElfError(ValueError):
    """The file is not an ELF object pyelftools can read."""


def is_elf(f: IO[bytes]) -> bool:
    f.seek(0)
    return f.read(4) == ELF_MAGIC


def _open(f: IO[bytes]) -> ELFFile:
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    f.seek(0)
    try:
        return ELFFile(f)
    except ELFError as err:
        raise ElfError(str(err)) from err


def _loads(elf: ELFFile) -> tuple[tuple[int, int, int, int], ...]:
    out = []
    for seg in elf.iter_segments():
        if seg["p_type"] == "PT_LOAD":
            out.append((seg["p_vaddr"], seg["p_offset"], seg["p_filesz"], seg["p_memsz"]))
    return tuple(out)


def vaddr_to_offset(loads: Iterable[tuple[int, int, int, int]], vaddr: int) -> int | None:
    """File offset of a virtual address: ``vaddr - p_vaddr + p_offset`` of the PT_LOAD holding it.

    Only the file-backed part of a segment (``p_filesz``) has an offset; .bss has none.
    """
    for p_vaddr, p_offset, p_filesz, _memsz in loads:
        if p_vaddr <= vaddr < p_vaddr + p_filesz:
            return vaddr - p_vaddr + p_offset
    return None


def _build_id(elf: ELFFile) -> str | None:
    sec = elf.get_section_by_name(".note.gnu.build-id")
    candidates: Iterable[Any]
    if sec is not None:
        candidates = [sec]
    else:
        candidates = [s for s in elf.iter_sections() if s["sh_type"] == "SHT_NOTE"]
        if not candidates:
            candidates = [s for s in elf.iter_segments() if s["p_type"] == "PT_NOTE"]
    for c in candidates:
        for note in c.iter_notes():
            if note["n_type"] == "NT_GNU_BUILD_ID":
                desc = note["n_desc"]
                return desc if isinstance(desc, str) else bytes(desc).hex()
    return None


def _soname(elf: ELFFile) -> str | None:
    from elftools.elf.dynamic import DynamicSection, DynamicSegment

    dyn: Any = elf.get_section_by_name(".dynamic")
    if not isinstance(dyn, DynamicSection):
        dyn = next((s for s in elf.iter_segments() if isinstance(s, DynamicSegment)), None)
    if dyn is None:
        return None
    for tag in dyn.iter_tags("DT_SONAME"):
        return str(tag.soname)
    return None


_MAX_SCAN = 64 << 20  # version strings sit in .rodata; a section larger than this is not read


def _rodata(elf: ELFFile) -> bytes:
    sec = elf.get_section_by_name(".rodata")
    if sec is not None:
        return bytes(sec.data()) if sec["sh_size"] <= _MAX_SCAN else b""
    # No section headers (sstrip'ed): scan the read-only PT_LOAD segments.
    return b"".join(bytes(s.data()) for s in elf.iter_segments()
                    if s["p_type"] == "PT_LOAD" and not s["p_flags"] & 0x2 and s["p_filesz"] <= _MAX_SCAN)


def _uvarint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data):
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
    raise ElfError("truncated varint in .go.buildinfo")


def _read_at(f: IO[bytes], loads: tuple[tuple[int, int, int, int], ...], vaddr: int, n: int) -> bytes:
    off = vaddr_to_offset(loads, vaddr)
    if off is None or n > 1 << 20:
        raise ElfError("address outside the file")
    f.seek(off)
    return f.read(n)


def go_version(elf: ELFFile, f: IO[bytes], loads: tuple[tuple[int, int, int, int], ...]) -> str | None:
    """The Go toolchain version in ``.go.buildinfo`` (layout: Go's src/debug/buildinfo/buildinfo.go).

    A 32-byte header: magic ``\\xff Go buildinf:``, pointer size, flags. With flag 0x2 (Go 1.18+)
    the version follows as a uvarint-length-prefixed string; before that the header holds a
    pointer to a Go string header {data pointer, length} elsewhere in the file.
    """
    sec = elf.get_section_by_name(".go.buildinfo")
    if sec is None:
        return None
    data = bytes(sec.data())
    if len(data) < 32 or not data.startswith(_GO_MAGIC):
        return None
    ptr_size, flags = data[14], data[15]
    if flags & 0x2:
        n, pos = _uvarint(data, 32)
        return data[pos:pos + n].decode("utf-8", "replace")
    if ptr_size not in (4, 8):
        return None
    order: Literal["big", "little"] = "big" if flags & 0x1 else "little"
    str_hdr_addr = int.from_bytes(data[16:16 + ptr_size], order)
    hdr = _read_at(f, loads, str_hdr_addr, 2 * ptr_size)
    ptr = int.from_bytes(hdr[:ptr_size], order)
    length = int.from_bytes(hdr[ptr_size:], order)
    return _read_at(f, loads, ptr, length).decode("utf-8", "replace")


def _identify(name: str, soname: str | None, elf: ELFFile) -> tuple[str | None, str | None]:
    base = soname or name
    if base.startswith(("libssl.so", "libcrypto.so", "libssl3.so")):
        data = _rodata(elf)
        m = _OPENSSL.search(data)
        if _BORINGSSL.search(data):
            return "boringssl", None
        return "openssl", m.group(1).decode() if m else None
    if base.startswith("libgnutls.so"):
        m = _GNUTLS.search(_rodata(elf))
        return "gnutls", m.group(1).decode() if m else None
    if base.startswith("libc.so.6"):
        m = _GLIBC.search(_rodata(elf))
        return "glibc", m.group(1).decode() if m else None
    if base.startswith(("libc.musl-", "ld-musl-")) or (base == "libc.so" and _MUSL.search(_rodata(elf))):
        m = _MUSL_VERSION.search(_rodata(elf))
        return "musl", m.group(1).decode() if m else None
    pm = _PY_SONAME.match(base)
    if pm:
        mm = re.escape(pm.group(1).encode())
        m = re.search(rb"\x00(" + mm + rb"\.\d+(?:(?:a|b|rc)\d+)?\+?)\x00", _rodata(elf))
        return "libpython", m.group(1).decode() if m else pm.group(1)
    return None, None


def _guarded(fn: Callable[..., T]) -> Callable[..., T]:
    """The files come from containers, i.e. from whoever controls them: a malformed ELF may make
    pyelftools raise anything (construct errors, IndexError, UnicodeDecodeError...). Every such
    failure is one ElfError for the caller."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except (ElfError, OSError):
            raise
        except Exception as err:  # noqa: BLE001 - see the docstring: hostile input, third-party parser
            raise ElfError(f"malformed ELF ({type(err).__name__}: {err})") from err

    return wrapper


@_guarded
def read_facts(f: IO[bytes], name: str) -> ElfFacts:
    """Facts about the ELF file open as ``f``; ``name`` (its basename) helps recognise libraries."""
    elf = _open(f)
    loads = _loads(elf)
    soname = _soname(elf)
    library, version = _identify(name, soname, elf)
    gov = go_version(elf, f, loads)
    if gov is not None and library is None:
        library, version = "go", gov
    return ElfFacts(
        elf_type=str(elf["e_type"]),
        machine=str(elf["e_machine"]),
        build_id=_build_id(elf),
        soname=soname,
        library=library,
        version=version,
        go_version=gov,
        has_dynsym=elf.get_section_by_name(".dynsym") is not None,
        has_symtab=elf.get_section_by_name(".symtab") is not None,
        loads=loads,
    )


_CODE_TYPES = ("STT_FUNC", "STT_GNU_IFUNC")


def _candidates(elf: ELFFile, table: str, sec: Any, name: str) -> list[Any]:
    if table == ".dynsym":
        # .gnu.hash/.hash answer one name without pyelftools indexing every symbol (containerd's
        # .dynsym takes seconds to index).
        from elftools.elf.hash import ELFHashSection, GNUHashSection

        for hname in (".gnu.hash", ".hash"):
            h = elf.get_section_by_name(hname)
            if isinstance(h, (GNUHashSection, ELFHashSection)):
                sym = h.get_symbol(name)
                return [sym] if sym is not None else []
    return list(sec.get_symbol_by_name(name) or ())


@_guarded
def find_symbols(f: IO[bytes], names: Iterable[str]) -> dict[str, Symbol]:
    """Defined function symbols among ``names``, from .dynsym first, then .symtab."""
    from elftools.elf.sections import SymbolTableSection

    elf = _open(f)
    loads = _loads(elf)
    wanted = list(dict.fromkeys(names))
    found: dict[str, Symbol] = {}
    for table in (".dynsym", ".symtab"):
        sec = elf.get_section_by_name(table)
        if not isinstance(sec, SymbolTableSection):
            continue
        for name in wanted:
            if name in found:
                continue
            best: Symbol | None = None
            for sym in _candidates(elf, table, sec, name):
                info = sym["st_info"]
                if sym["st_shndx"] == "SHN_UNDEF" or not sym["st_value"] or info["type"] not in _CODE_TYPES:
                    continue
                offset = vaddr_to_offset(loads, sym["st_value"])
                if offset is None:
                    continue
                cand = Symbol(name=name, address=sym["st_value"], offset=offset, size=sym["st_size"],
                              type=str(info["type"]), bind=str(info["bind"]), table=table)
                if best is None or (best.bind == "STB_LOCAL" and cand.bind != "STB_LOCAL"):
                    best = cand
            if best is not None:
                found[name] = best
    return found
