"""``/proc/<pid>/mountinfo`` (proc(5), "mountinfo").

Line shape::

    36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    (1)(2)(3)  (4)   (5)   (6)        (7)      (8)(9)  (10)      (11)

Paths are escaped by the kernel's ``seq_escape`` / ``mangle``: space, tab, newline and backslash
become 3-digit octal (``\\040``, ``\\011``, ``\\012``, ``\\134``). Mount options (11) are
escaped the same way, commas inside an option value included, so options are split on ``,``
first and unescaped after.
"""

from __future__ import annotations

import os
import re

from ctrfs._record import dataclass, field

_OCTAL = re.compile(rb"\\([0-7]{3})")


class ParseError(ValueError):
    """Malformed /proc content. The only exception the parsers raise."""


def unescape(raw: bytes) -> bytes:
    """Decode the kernel's 3-digit octal escapes (``\\040`` → space)."""
    if b"\\" not in raw:
        return raw
    return _OCTAL.sub(lambda m: bytes([int(m.group(1), 8) & 0xFF]), raw)


def _s(raw: bytes) -> str:
    # Names are arbitrary bytes; surrogateescape keeps them round-trippable with os.fsencode.
    return os.fsdecode(unescape(raw))


@dataclass(frozen=True)
class Mount:
    mount_id: int
    parent_id: int
    major: int
    minor: int
    root: str
    mount_point: str
    options: tuple[str, ...]
    optional: tuple[str, ...]
    fstype: str
    source: str
    super_options: tuple[str, ...] = field(default=())

    @property
    def dev(self) -> int:
        return os.makedev(self.major, self.minor)

    @property
    def read_only(self) -> bool:
        return "ro" in self.options

    @property
    def propagation(self) -> str:
        kinds = [o.split(":")[0] for o in self.optional]
        if "shared" in kinds:
            return "shared"
        if "master" in kinds:
            return "slave"
        if "unbindable" in kinds:
            return "unbindable"
        return "private"

    def super_option(self, name: str) -> str | None:
        """The value of ``name=value`` among the super options, or None."""
        prefix = name + "="
        for opt in self.super_options:
            if opt.startswith(prefix):
                return opt[len(prefix):]
        return None


def _split_options(raw: bytes) -> tuple[str, ...]:
    return tuple(_s(o) for o in raw.split(b",") if o)


def parse_mountinfo_line(line: bytes) -> Mount:
    fields = line.split(b" ")
    try:
        sep = fields.index(b"-", 6)
    except ValueError as err:
        raise ParseError(f"mountinfo line without separator: {line[:200]!r}") from err
    if sep < 6 or len(fields) < sep + 3:
        raise ParseError(f"mountinfo line too short: {line[:200]!r}")
    try:
        mount_id = int(fields[0])
        parent_id = int(fields[1])
        major_b, _, minor_b = fields[2].partition(b":")
        major, minor = int(major_b), int(minor_b)
    except ValueError as err:
        raise ParseError(f"mountinfo line with bad numbers: {line[:200]!r}") from err
    return Mount(
        mount_id=mount_id,
        parent_id=parent_id,
        major=major,
        minor=minor,
        root=_s(fields[3]),
        mount_point=_s(fields[4]),
        options=_split_options(fields[5]),
        optional=tuple(_s(f) for f in fields[6:sep] if f),
        fstype=_s(fields[sep + 1]),
        source=_s(fields[sep + 2]),
        super_options=_split_options(b" ".join(fields[sep + 3:])) if len(fields) > sep + 3 else (),
    )


def parse_mountinfo(data: bytes) -> list[Mount]:
    """Parse a whole mountinfo file. Raises only :class:`ParseError`."""
    return [parse_mountinfo_line(line) for line in data.split(b"\n") if line.strip()]


def root_mount(mounts: list[Mount]) -> Mount | None:
    """The mount that is visible at ``/`` (the last one stacked there)."""
    found = None
    for m in mounts:
        if m.mount_point == "/":
            found = m
    return found


def find_root_mount(data: bytes) -> Mount | None:
    """:func:`root_mount` of a whole mountinfo file, parsing only the lines mounted at ``/``."""
    found = None
    for line in data.split(b"\n"):
        parts = line.split(b" ", 5)
        if len(parts) > 5 and parts[4] == b"/":
            found = line
    return parse_mountinfo_line(found) if found is not None else None


def overlay_dirs(m: Mount) -> tuple[list[str], str | None, str | None]:
    """(lowerdirs top-first, upperdir, workdir) of an overlay mount, as the kernel shows them.

    Lower layers are separated by ``:``; a literal colon in a layer path is shown escaped as
    ``\\:`` (overlayfs' own escaping, on top of mountinfo's octal escapes), and newer kernels may
    list layers one by one as repeated ``lowerdir+=`` options (Documentation/filesystems/overlayfs.rst).
    """
    lowers: list[str] = []
    for opt in m.super_options:
        if opt.startswith("lowerdir="):
            lowers.extend(_split_layers(opt[len("lowerdir="):]))
        elif opt.startswith("lowerdir+="):
            lowers.append(opt[len("lowerdir+="):])
    return lowers, m.super_option("upperdir"), m.super_option("workdir")


def _split_layers(value: str) -> list[str]:
    if "\\" not in value:
        return [p for p in value.split(":") if p]
    out, cur, i = [], [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            cur.append(value[i + 1])
            i += 2
            continue
        if ch == ":":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return [p for p in out if p]
