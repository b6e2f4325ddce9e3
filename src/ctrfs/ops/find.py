"""find: walk a tree inside a container and keep entries that pass every test."""

from __future__ import annotations

import fnmatch
import math
import re
import time
from collections.abc import Iterator

from ctrfs._record import dataclass
from ctrfs.errors import UsageError
from ctrfs.ops.listing import FileInfo, entry_info, type_letter
from ctrfs.ops.names import Names
from ctrfs.rootfs.base import Entry, PathArg, Root, WarnFn

_UNITS = {"": 1, "c": 1, "k": 1024, "M": 1024**2, "G": 1024**3}
_SIZE_RE = re.compile(r"^([+-]?)(\d+)([ckMG]?)$")
_MMIN_RE = re.compile(r"^([+-]?)(\d+)$")


@dataclass(frozen=True)
class Compare:
    """GNU find's numeric test: ``+N`` more than N, ``-N`` less than N, ``N`` exactly N, where
    the value is first rounded up to the unit (so ``--size -1M`` matches only empty files,
    as in find(1))."""

    sign: str
    n: int
    unit: int = 1

    def __call__(self, value: float) -> bool:
        v = math.ceil(value / self.unit)
        if self.sign == "+":
            return v > self.n
        if self.sign == "-":
            return v < self.n
        return v == self.n


def parse_size(spec: str) -> Compare:
    """``[+-]N[ckMG]``; no suffix means bytes (unlike find(1)'s 512-byte blocks)."""
    m = _SIZE_RE.match(spec)
    if not m:
        raise UsageError(f"invalid size {spec!r}; expected [+-]N[kMG], e.g. +10M")
    return Compare(m.group(1), int(m.group(2)), _UNITS[m.group(3)])


def parse_mmin(spec: str) -> Compare:
    m = _MMIN_RE.match(spec)
    if not m:
        raise UsageError(f"invalid minutes {spec!r}; expected [+-]N, e.g. -5")
    return Compare(m.group(1), int(m.group(2)), 60)


@dataclass
class FindQuery:
    name: str | None = None  # shell glob on the base name
    types: frozenset[str] = frozenset()  # f d l p s c b
    size: Compare | None = None
    newer_than: float | None = None  # mtime of a reference file
    mmin: Compare | None = None
    max_depth: int | None = None

    def matches(self, e: Entry, now: float) -> bool:
        if self.name is not None and not fnmatch.fnmatchcase(e.name, self.name):
            return False
        if self.types and type_letter(e.stat.st_mode) not in self.types:
            return False
        if self.size is not None and not self.size(e.stat.st_size):
            return False
        if self.newer_than is not None and not e.stat.st_mtime > self.newer_than:
            return False
        if self.mmin is not None and not self.mmin(now - e.stat.st_mtime):
            return False
        return True


def find(root: Root, path: PathArg = "/", query: FindQuery | None = None, *,
         one_filesystem: bool = False, on_warning: WarnFn | None = None) -> Iterator[FileInfo]:
    """Entries below (and including) ``path`` that match ``query``, in walk order. Symlinks are
    not followed (find -P), except a symlink given as the start. Other mounts are entered
    unless ``one_filesystem`` (find -xdev)."""
    q = query or FindQuery()
    names = Names(root)
    now = time.time()
    for e in root.walk(path, max_depth=q.max_depth, one_filesystem=one_filesystem,
                       on_warning=on_warning):
        if q.matches(e, now):
            yield entry_info(e, names)
    root.check_alive()
