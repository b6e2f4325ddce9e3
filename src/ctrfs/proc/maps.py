"""``/proc/<pid>/maps`` (proc(5), "maps"; fs/proc/task_mmu.c ``show_map_vma``).

Line shape::

    7f4b72b2b000-7f4b72b4a000 r--p 0001f000 00:32 1482971        /lib/x86_64-linux-gnu/libssl.so.3
    (address range)           perms offset   dev   inode          pathname

- address, offset and the device's major:minor are **hex** (``%02x:%02x``), unlike mountinfo,
  whose major:minor are decimal: ``00:32`` here is the overlay mount mountinfo shows as ``0:50``.
- the pathname is padded to a column with spaces and written by ``seq_file_path(m, file, "\\n")``:
  only a newline is escaped (as ``\\012``); spaces, tabs and backslashes appear raw. A
  backslash followed by ``012`` in a real name is therefore indistinguishable from a newline.
- d_path() appends `` (deleted)`` to a file that was unlinked after it was mapped. A file whose
  real name ends in `` (deleted)`` looks the same; callers confirm with the inode, not the name.
- mappings without a file are either unnamed (no pathname) or pseudo names in brackets:
  ``[heap]``, ``[stack]``, ``[vdso]``, ``[vvar]``, ``[vsyscall]``, ``[anon:NAME]`` (prctl
  PR_SET_VMA_ANON_NAME, 5.17+), ``[anon_shmem:NAME]``. Shared memory and memfds carry a
  file and an inode but no on-disk path: ``/memfd:NAME (deleted)``, ``/SYSV0000002a (deleted)``,
  ``/dev/zero (deleted)``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator

from ctrfs._record import dataclass
from ctrfs.proc.mountinfo import ParseError

_DELETED = b" (deleted)"


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    perms: str  # "r-xp"
    offset: int  # file offset of ``start``
    major: int
    minor: int
    inode: int
    path: str | None  # file path (without " (deleted)") or pseudo name such as "[heap]"; None if unnamed
    deleted: bool = False

    @property
    def dev(self) -> int:
        return os.makedev(self.major, self.minor)

    @property
    def is_file(self) -> bool:
        """Backed by a file that has a path (possibly deleted), not a pseudo/anonymous mapping."""
        return self.inode != 0 and self.path is not None and self.path.startswith("/")

    @property
    def executable(self) -> bool:
        return self.perms[2:3] == "x"

    @property
    def range_name(self) -> str:
        """The entry name of this mapping in ``/proc/<pid>/map_files`` (``%lx-%lx``)."""
        return f"{self.start:x}-{self.end:x}"


def _path(raw: bytes) -> tuple[str | None, bool]:
    if not raw:
        return None, False
    deleted = raw.endswith(_DELETED) and raw.startswith(b"/")
    if deleted:
        raw = raw[: -len(_DELETED)]
    return os.fsdecode(raw.replace(b"\\012", b"\n")), deleted


def parse_line(line: bytes) -> Mapping:
    """One maps line (without its trailing newline)."""
    fields = line.split(None, 5)
    if len(fields) < 5:
        raise ParseError(f"maps line with {len(fields)} fields")
    addr, perms, offset, dev, inode = fields[:5]
    start_b, sep, end_b = addr.partition(b"-")
    major_b, sep2, minor_b = dev.partition(b":")
    if not sep or not sep2 or len(perms) != 4:
        raise ParseError("malformed maps line")
    # Only the trailing padding before the path is separator; a path may end in spaces.
    path, deleted = _path(fields[5] if len(fields) > 5 else b"")
    try:
        return Mapping(
            start=int(start_b, 16),
            end=int(end_b, 16),
            perms=perms.decode("ascii"),
            offset=int(offset, 16),
            major=int(major_b, 16),
            minor=int(minor_b, 16),
            inode=int(inode),
            path=path,
            deleted=deleted,
        )
    except ValueError as err:  # UnicodeDecodeError included
        raise ParseError("maps line with bad numbers") from err


def parse_maps(data: bytes) -> list[Mapping]:
    """Parse the whole of ``/proc/<pid>/maps``."""
    out = []
    for line in data.split(b"\n"):
        if line.strip():
            out.append(parse_line(line))
    return out


# A file-backed line (the path starts with '/'); anything else is skipped without parsing.
_FILE_LINE = re.compile(
    rb"^([0-9a-f]+)-([0-9a-f]+) ([-rwxsp]{4}) ([0-9a-f]+) ([0-9a-f]+):([0-9a-f]+) ([0-9]+) +(/[^\n]*)$",
    re.M)


def iter_file_mappings(data: bytes, want: Callable[[str], bool] | None = None) -> Iterator[Mapping]:
    """The file-backed mappings of a maps file, fast: one per run of consecutive lines of the same
    file (a library's text, data and relro segments sit next to each other), and only those whose
    path ``want`` accepts. Meant for scanning many processes; :func:`parse_maps` gives every line.
    """
    last: tuple[bytes, ...] | None = None
    for m in _FILE_LINE.finditer(data):
        ident = m.group(5, 6, 7, 8)
        if ident == last:
            continue
        last = ident
        major, minor, inode, raw = ident
        if inode == b"0":
            continue
        path, deleted = _path(raw)
        if want is not None and path is not None and not want(path):
            continue
        start, end, perms, offset = m.group(1, 2, 3, 4)
        yield Mapping(
            start=int(start, 16), end=int(end, 16), perms=perms.decode("ascii"), offset=int(offset, 16),
            major=int(major, 16), minor=int(minor, 16), inode=int(inode), path=path, deleted=deleted,
        )
