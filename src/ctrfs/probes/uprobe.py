"""Uprobe targets: a symbol in a file a container maps, as the host's tracing tools need it.

A uprobe is placed on an *inode* at a *file offset* (Documentation/trace/uprobetracer.rst:
``p[:[GRP/]EVENT] PATH:OFFSET``). The kernel resolves PATH once, at attach time, through
overlayfs to the real layer file (``d_real_inode``), so the probe fires in every process that
maps that file: in this container, and in any other container started from the same image
layer. Filter on pid or cgroup in the probe program when that matters.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from ctrfs._record import dataclass
from ctrfs.errors import CtrfsError, UsageError
from ctrfs.probes.elf import ElfError, Symbol, find_symbols
from ctrfs.probes.libs import (
    VERIFIED,
    ElfCache,
    MappedObject,
    container_libs,
    mapped_paths,
    open_mapped_file,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ctrfs.model import Container

# bpftrace's attach-point lexer splits on ':' and stops at whitespace; quote anything unusual
# (Go symbols such as "net/http.(*conn).serve" need it too).
_PLAIN_PATH = re.compile(r"^[A-Za-z0-9/._+\-]+$")
_PLAIN_SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def _quote(text: str, plain: re.Pattern[str]) -> str:
    if plain.match(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class UprobeTarget:
    obj: MappedObject
    symbol: Symbol

    @property
    def host_path(self) -> str:
        assert self.obj.host_path is not None
        return self.obj.host_path

    def bpftrace(self, pin: bool = False) -> str:
        """``uprobe:PATH:SYMBOL``. ``pin`` uses the map_files entry, which names the mapped file
        itself: a tracer re-resolves ``/proc/<pid>/root/<path>`` when it attaches, and a container
        that swaps a path component for an absolute symlink in between would send that lookup to
        a host file (symlinks under /proc/<pid>/root resolve against the tracer's root)."""
        path = self.obj.map_files_path if pin and self.obj.map_files_path else self.host_path
        return f"uprobe:{_quote(path, _PLAIN_PATH)}:{_quote(self.symbol.name, _PLAIN_SYMBOL)}"

    def to_dict(self) -> dict[str, Any]:
        o = self.obj
        return {
            "symbol": self.symbol.name,
            "host_path": o.host_path,
            "host_path_via": o.host_path_via,
            "map_files_path": o.map_files_path,
            # the same files as this process opens them (they differ below --host-root): what a
            # tracer running beside ctrfs, in the same pod, attaches to
            "local_path": o.local_path,
            "local_map_files_path": o.local_map_files_path,
            "path": o.path,
            "offset": self.symbol.offset,
            "address": self.symbol.address,
            "size": self.symbol.size,
            "type": self.symbol.type,
            "symbol_table": self.symbol.table,
            "build_id": o.build_id,
            "device": f"{os.major(o.dev)}:{os.minor(o.dev)}",
            "inode": o.inode,
            "pids": o.pids,
            "library": o.library,
            "version": o.version,
            "identity": o.identity,
            "warnings": o.warnings + ([
                "GNU indirect function: the probe is on the resolver, not the implementation"
            ] if self.symbol.type == "STT_GNU_IFUNC" else []),
        }


def _tables(obj: MappedObject) -> str:
    f = obj.facts
    if f is None:
        return "not readable"
    if f.has_symtab and f.has_dynsym:
        return ".dynsym, .symtab"
    if f.has_dynsym:
        return ".dynsym (stripped: no .symtab)"
    if f.has_symtab:
        return ".symtab"
    return "no symbol table (stripped)"


def uprobe_targets(container: Container, symbols: Sequence[str], lib: str | None = None, *,
                   exe: bool = False, cache: ElfCache | None = None) -> list[UprobeTarget]:
    """Resolve ``symbols`` in the objects the container maps whose path matches ``lib``
    (and in its processes' executables with ``exe``), once per (device, inode).

    Raises CtrfsError (exit 1) naming what was searched when no object matches, when a
    symbol is in none of them, or when a match is not the verified mapped file.
    """
    if not symbols:
        raise UsageError("no --symbol given")
    if lib is None and not exe:
        raise UsageError("give --lib REGEX, --exe, or both")
    pattern = re.compile(lib) if lib is not None else None
    libs = container_libs(container, None if exe else pattern, cache=cache)
    candidates = [o for o in libs.objects
                  if (pattern is not None and pattern.search(o.path)) or (exe and o.executable)]
    what = " and ".join(x for x in (f"--lib {lib!r}" if lib else "", "--exe" if exe else "") if x)
    if not candidates:
        names = ", ".join(sorted({os.path.basename(p) for p in mapped_paths(container)})) or "none"
        raise CtrfsError(f"no mapped ELF object matches {what}; mapped: {names}",
                         target=container.display_name)

    out: list[UprobeTarget] = []
    missing = {s: [] for s in symbols}  # type: dict[str, list[str]]
    for obj in candidates:
        if obj.identity != VERIFIED or obj.host_path is None:
            for s in symbols:
                missing[s].append(f"{obj.path} (skipped: {obj.identity} identity)")
            continue
        opened = open_mapped_file(obj, None)
        if opened is None:
            for s in symbols:
                missing[s].append(f"{obj.path} (not readable)")
            continue
        fd, _st = opened
        with os.fdopen(fd, "rb") as f:
            try:
                found = find_symbols(f, symbols)
            except (ElfError, ValueError) as err:
                found = {}
                obj.warnings.append(f"unreadable ELF: {err}")
        for s in symbols:
            if s in found:
                out.append(UprobeTarget(obj, found[s]))
            else:
                missing[s].append(f"{obj.path} [{_tables(obj)}]")
    absent = [s for s in symbols if not any(t.symbol.name == s for t in out)]
    if absent:
        searched = "; ".join(missing[absent[0]])
        raise CtrfsError(f"symbol {', '.join(absent)} not found in {searched}",
                         target=container.display_name)
    return out
