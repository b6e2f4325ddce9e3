"""cat and grep: content of regular files only, streamed."""

from __future__ import annotations

import re
import stat as stat_mod
from collections.abc import Iterator

from ctrfs._record import dataclass
from ctrfs.errors import CtrfsError, ProcessGone, UsageError
from ctrfs.ops.listing import text
from ctrfs.rootfs.base import (
    NotRegularFile,
    PathArg,
    PseudoFilter,
    Root,
    WalkWarning,
    WarnFn,
    norm_path,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CHUNK = 1 << 16
# GNU grep's heuristic (grep.c buf_has_nulls): a NUL byte in the first buffer → binary file.
BINARY_PROBE = 32 << 10
# Lines longer than this are cut into pieces (a multi-GB file without newlines must not be
# held in memory); a match spanning a cut is missed.
MAX_LINE = 1 << 20


def cat(root: Root, path: PathArg, *, check_every: int = 256) -> Iterator[bytes]:
    """The bytes of the regular file at ``path``, in chunks. The container is checked for
    liveness at the end (and every ``check_every`` chunks), so a vanished target raises
    ProcessGone rather than passing off a stale file as its content."""
    with root.open_file(path) as f:
        n = 0
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            yield chunk
            n += 1
            if n % check_every == 0:
                root.check_alive()
    root.check_alive()


def bre_to_python(pattern: str) -> str:
    """POSIX basic regex → Python ``re`` syntax: in a BRE, ``\\( \\) \\{ \\} \\| \\+ \\?`` are
    operators (the last three as GNU extensions) and the bare characters are literals."""
    out = []
    i = 0
    in_bracket = False
    while i < len(pattern):
        c = pattern[i]
        if in_bracket:
            out.append(c)
            if c == "]" and out[-2] not in ("[", "^"):
                in_bracket = False
            i += 1
            continue
        if c == "[":
            in_bracket = True
            out.append(c)
        elif c == "\\" and i + 1 < len(pattern):
            n = pattern[i + 1]
            out.append(n if n in "(){}|+?" else "\\" + n)
            i += 1
        elif c in "(){}|+?":
            out.append("\\" + c)
        elif c == "*" and (not out or out[-1] in ("(", "|", "^")):
            out.append("\\*")  # a leading '*' is literal in a BRE
        else:
            out.append(c)
        i += 1
    return "".join(out)


def compile_pattern(pattern: str, *, ignore_case: bool = False, extended: bool = False) -> re.Pattern[bytes]:
    src = pattern if extended else bre_to_python(pattern)
    try:
        return re.compile(src.encode("utf-8", "surrogateescape"), re.IGNORECASE if ignore_case else 0)
    except re.error as err:
        raise UsageError(f"invalid regular expression {pattern!r}: {err}") from err


@dataclass
class GrepMatch:
    path: str
    line_number: int
    line: bytes  # without the newline

    def to_dict(self) -> dict[str, Any]:
        return {"path": text(self.path), "line_number": self.line_number,
                "line": self.line.decode("utf-8", "backslashreplace")}


@dataclass
class GrepFile:
    """A file with matches: with ``files_only`` (``-l``), or a binary file (lines not shown)."""

    path: str
    binary: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"path": text(self.path), "binary": self.binary}


def _lines(f: Any) -> Iterator[bytes]:
    rest = b""
    while True:
        chunk = f.read(CHUNK)
        if not chunk:
            break
        rest += chunk
        start = 0
        while True:
            nl = rest.find(b"\n", start)
            if nl < 0:
                break
            yield rest[start:nl]
            start = nl + 1
        rest = rest[start:]
        while len(rest) > MAX_LINE:
            yield rest[:MAX_LINE]
            rest = rest[MAX_LINE:]
    if rest:
        yield rest


def _grep_file(root: Root, f: Any, path: str, rx: re.Pattern[bytes],
               files_only: bool) -> Iterator[GrepMatch | GrepFile]:
    head = f.read(BINARY_PROBE)
    binary = b"\0" in head

    class _Rewound:
        def __init__(self) -> None:
            self.first: bytes | None = head

        def read(self, n: int) -> bytes:
            if self.first is not None:
                data, self.first = self.first, None
                return data
            return f.read(n)

    for i, line in enumerate(_lines(_Rewound()), 1):
        if rx.search(line):
            if binary or files_only:
                yield GrepFile(path, binary=binary)
                return
            yield GrepMatch(path, i, line)


def grep(root: Root, pattern: re.Pattern[bytes], path: PathArg, *, recursive: bool = False,
         files_only: bool = False, on_warning: WarnFn | None = None) -> Iterator[GrepMatch | GrepFile]:
    """Lines matching ``pattern`` in the file at ``path``, or in every regular file below it
    with ``recursive`` (symlinks inside the tree are not followed; FIFOs, sockets and devices
    are never opened). Binary files (NUL in the first 32 KiB) yield one GrepFile(binary=True)."""
    warn = on_warning or (lambda w: None)
    shown = norm_path(path)
    st = root.stat(path)
    if stat_mod.S_ISDIR(st.st_mode):
        if not recursive:
            raise CtrfsError("is a directory (use -r to search below it)", path=shown,
                             target=root.target)
        pseudo = PseudoFilter(warn)
        seen = 0
        for e in root.walk(path, one_filesystem=False, on_warning=warn):
            if pseudo.skip(e) or not e.is_file():
                continue
            try:
                with e.open() as f:
                    yield from _grep_file(root, f, e.path, pattern, files_only)
            except NotRegularFile:
                continue
            except ProcessGone:
                raise
            except CtrfsError as err:
                warn(WalkWarning(e.path, err.message or err.default_message()))
            seen += 1
            if seen % 256 == 0:
                root.check_alive()
    else:
        with root.open_file(path) as f:
            yield from _grep_file(root, f, shown, pattern, files_only)
    root.check_alive()
