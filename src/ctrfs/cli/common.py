"""Shared pieces of the commands: target arguments, JSON output, safe printing."""

from __future__ import annotations

import json
import os
import re
import sys

from ctrfs.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from ctrfs.cli.app import State
    from ctrfs.model import Container


def split_target_path(spec: str, *, require_path: bool = False) -> tuple[str, str | None]:
    """``TARGET:PATH`` → (TARGET, PATH). ``RUNTIME://REF:PATH`` keeps the scheme's colon.

    Image references hold colons of their own (``image://repo:tag``, ``host:5000/repo``), and an
    OCI layout names a directory and a tag (``oci:DIR[:TAG]``): there the path is what follows
    the first ``:/`` (images) or the part after DIR[:TAG] (a tag never starts with ``/``)."""
    if spec.startswith("image://"):
        ref, sep, path = spec[len("image://"):].partition(":/")
        ref = "image://" + ref
        if len(ref) == len("image://"):
            raise UsageError(f"missing image in {spec!r}; expected image://REF[:PATH]")
        if require_path and not sep:
            raise UsageError(f"missing path in {spec!r}; expected image://REF:/PATH")
        return ref, ("/" + path if sep else None)
    if spec.startswith("oci:") and "://" not in spec:
        layout, sep, rest = spec[4:].partition(":")
        tag = ""
        if sep and not rest.startswith("/"):
            tag, sep, rest = rest.partition(":")
        target = "oci:" + layout + (":" + tag if tag else "")
        if not layout:
            raise UsageError(f"missing directory in {spec!r}; expected oci:DIR[:TAG][:PATH]")
        if require_path and not sep:
            raise UsageError(f"missing path in {spec!r}; expected oci:DIR[:TAG]:/PATH")
        return target, ((rest or "/") if sep else None)
    head = ""
    rest = spec
    if "://" in spec:
        scheme, _, rest = spec.partition("://")
        head = scheme + "://"
    target, sep, path = rest.partition(":")
    target = head + target
    if not target or target.endswith("://"):
        raise UsageError(f"missing container in {spec!r}; expected TARGET[:PATH]")
    if sep and not path:
        path = "/"
    if require_path and not sep:
        raise UsageError(f"missing path in {spec!r}; expected TARGET:PATH (e.g. web:/etc/hosts)")
    return target, (path if sep else None)


def get_container(state: State, target: str) -> Container:
    from ctrfs.targets import resolve

    return resolve(target, state.roots)


def write_lines(lines: Iterable[str]) -> None:
    """Write lines to stdout: to a terminal as they come, elsewhere in batches, one write(2)
    per batch even when the interpreter runs unbuffered (PYTHONUNBUFFERED=1, python -u)."""
    out = sys.stdout
    if out.isatty():
        for line in lines:
            out.write(line)
        return
    batch: list[str] = []
    try:
        for line in lines:
            batch.append(line)
            if len(batch) >= 512:
                out.write("".join(batch))
                batch.clear()
    finally:  # what was found before an error is still printed, as it was line by line
        out.write("".join(batch))


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=_json_default, ensure_ascii=False) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return os.fsdecode(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    from ctrfs._record import asdict, is_dataclass

    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    return str(obj)


# Exactly the characters escape() rewrites: control characters (C0, DEL, C1), backslash, and
# undecodable bytes (surrogateescape's U+DC80..U+DCFF).
_NEEDS_ESCAPE = re.compile(r"[\x00-\x1f\x7f-\x9f\\\udc80-\udcff]")


def escape(name: str | bytes) -> str:
    """A name safe to print on a terminal: control characters, backslashes and undecodable bytes
    become escapes (``\\n``, ``\\x1b``), as in GNU ls's ``--quoting-style=escape``."""
    if isinstance(name, str):
        if name.isascii() and name.isprintable() and "\\" not in name:
            return name  # printable ASCII (no C0, DEL or C1, no surrogates): nothing to escape
        raw = os.fsencode(name)
    else:
        raw = name
    text = raw.decode("utf-8", "surrogateescape")
    if _NEEDS_ESCAPE.search(text) is None:
        return text  # the common case, without a Python loop over 10,000-level paths
    out = []
    for ch in text:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:  # undecodable byte
            out.append(f"\\x{o - 0xDC00:02x}")
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif o < 0x20 or o == 0x7F or 0x80 <= o < 0xA0:
            out.append(f"\\x{o:02x}")
        else:
            out.append(ch)
    return "".join(out)


def json_name(name: str | bytes) -> str:
    """A name for JSON: valid UTF-8 stays as is, undecodable bytes become ``\\xNN`` escapes."""
    raw = os.fsencode(name) if isinstance(name, str) else name
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace")


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def table(columns: list[str], rows: list[list[str]]) -> None:
    """A table on stdout: rich on a terminal, plain aligned columns otherwise (fast, greppable)."""
    if stdout_is_tty():
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        t = Table(box=None, pad_edge=False, header_style="bold")
        for c in columns:
            t.add_column(c, overflow="fold")
        for r in rows:
            t.add_row(*(Text(c) for c in r))  # Text: names are never rich markup
        Console(highlight=False).print(t)
        return
    widths = [len(c) for c in columns]
    for r in rows:
        for i, cell in enumerate(r):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(columns)).rstrip()]
    for r in rows:
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip())
    sys.stdout.write("\n".join(lines) + "\n")
