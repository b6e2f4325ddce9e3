"""What ``ctrfs browse`` shows, as data: directory rows, marks, layers, previews.

Every file of the container is reached through its :class:`~ctrfs.rootfs.base.Root` (the live
root of a running container, the userland overlay merge of a stopped one), never by a host
path. Layer attribution (which layer a row's visible version comes from) reads the overlay
layer directories through :class:`~ctrfs.overlay.merge.MergedView`, as ``ctrfs which`` does;
it reads names and metadata there, never content.

A Session is used from several threads (the UI's workers): a live Root is an fd and safe to
share; anything else (an offline overlay Root, the merged view) is used under ``_lock``.
"""

from __future__ import annotations

import fnmatch
import functools
import operator
import os
import posixpath
import stat as stat_mod
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ctrfs.access import open_root
from ctrfs.errors import CtrfsError, NotFound, ProcessGone, Unsupported, from_oserror
from ctrfs.model import Container
from ctrfs.ops.content import GrepFile, GrepMatch, compile_pattern, grep
from ctrfs.ops.copy import CopyResult, copy_out
from ctrfs.ops.du import human as du_human
from ctrfs.ops.follow import TailEvent, tail
from ctrfs.ops.listing import text, type_letter
from ctrfs.ops.names import Names
from ctrfs.overlay.diff import Change, container_changes
from ctrfs.overlay.layerfiles import LayerFile, LayerSummary, layer_files
from ctrfs.overlay.layers import Layer, LayerStack, count_layer, count_wasted, layer_stack
from ctrfs.overlay.merge import MergedView
from ctrfs.overlay.which import WhichResult, which
from ctrfs.rootfs.base import Root, file_kind
from ctrfs.rootfs.fd import FdRoot

PREVIEW_BYTES = 64 << 10  # the preview shows the first 64 KiB of a file
MAX_ROWS = 50_000  # a directory shows at most this many entries (and says how many more)
MAX_GREP = 1000


@dataclass(slots=True)
class Row:
    """One entry of a directory, as the tree shows it."""

    path: str
    name: str
    type: str  # f d l p s c b ("-" for a deleted entry)
    mode: str  # "drwxr-xr-x"
    user: str
    group: str
    size: int
    mark: str = ""  # A, C or D (docker diff's letters) when the container changed it
    layer: int | None = None  # index of the layer its visible version comes from
    link: str | None = None
    mount_point: bool = False  # another mount (volume, /proc...): not from the layers

    @property
    def is_dir(self) -> bool:
        return self.type == "d"

    def to_dict(self, session: Session | None = None) -> dict[str, Any]:
        return {"path": text(self.path), "name": text(self.name), "type": self.type,
                "mode": self.mode, "user": self.user, "group": self.group, "size": self.size,
                "mark": self.mark or None, "layer": self.layer,
                "layer_label": session.layer_label(self.layer) if session else None,
                "link_target": text(self.link) if self.link is not None else None,
                "mount_point": self.mount_point}

    @property
    def deleted(self) -> bool:
        return self.mark == "D" and self.type == "-"


@dataclass
class Listing:
    path: str
    rows: list[Row]
    more: int = 0  # entries not shown past MAX_ROWS


@dataclass
class Preview:
    path: str
    kind: str  # "text", "binary", "refused", "dir", "error"
    data: bytes = b""
    size: int = 0
    truncated: bool = False
    message: str = ""


@dataclass
class LayerRow:
    layer: Layer
    summary: LayerSummary | None = None

    def to_dict(self) -> dict[str, Any]:
        out = self.layer.to_dict()
        if self.summary is not None:
            out.update(added=self.summary.added, changed=self.summary.changed,
                       deleted=self.summary.deleted)
        return out


@dataclass
class Session:
    container: Container
    root: Root
    stack: LayerStack | None = None  # the overlay layers (None when the root is not overlay)
    marks: dict[str, str] = field(default_factory=dict)  # path → A/C/D
    deleted: dict[str, list[Change]] = field(default_factory=dict)  # dir → its D changes
    gone: str = ""  # why the container can no longer be read ("" while it can)
    _names: Names | None = None
    _view: MergedView | None = None
    _mounts: frozenset[str] | None = None
    _labels: dict[int, str] | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock)

    @classmethod
    def open(cls, container: Container) -> Session:
        root = open_root(container)
        try:
            stack: LayerStack | None = layer_stack(container)
        except CtrfsError:
            stack = None
        if stack is not None and not (stack.is_overlay and stack.layers):
            stack = None
        return cls(container, root, stack)

    def close(self) -> None:
        with self._lock:
            if self._view is not None:
                self._view.close()
                self._view = None
            self.root.close()

    # -- helpers ------------------------------------------------------------------------
    @property
    def title(self) -> str:
        c = self.container
        return f"{c.display_name} ({c.runtime}, {'running' if c.running else 'stopped'})"

    @contextmanager
    def _access(self) -> Iterator[Root]:
        """The Root, locked unless it is a plain fd root (safe to share between threads)."""
        if isinstance(self.root, FdRoot):
            yield self.root
        else:
            with self._lock:
                yield self.root

    @property
    def names(self) -> Names:
        if self._names is None:
            with self._access() as root:
                names = Names(root)
                names.user(0)
                names.group(0)
            self._names = names
        return self._names

    def layer_label(self, index: int | None) -> str:
        """"upper", "init" or "L<index>" (0 is the top)."""
        if index is None or self.stack is None:
            return ""
        if self._labels is None:
            self._labels = {la.index: la.role if la.role in ("upper", "init") else f"L{la.index}"
                            for la in self.stack.layers}
        return self._labels.get(index, f"L{index}")

    def check_alive(self) -> bool:
        """False (and ``gone`` set) once the container is gone; what was read stays shown."""
        if self.gone or not self.container.running:
            return not self.gone
        try:
            self.root.check_alive()
        except ProcessGone as err:
            self.gone = str(err)
            return False
        return True

    # -- marks (ctrfs diff) -------------------------------------------------------------
    def load_marks(self) -> int:
        """Run the container's diff (docker/podman semantics); returns the number of changes."""
        if self.stack is None or self.stack.upper is None:
            return 0
        try:
            changes = list(container_changes(self.container))
        except (Unsupported, NotFound):
            return 0
        marks: dict[str, str] = {}
        deleted: dict[str, list[Change]] = {}
        for ch in changes:
            marks[ch.path] = ch.kind
            if ch.kind == "D":
                deleted.setdefault(posixpath.dirname(ch.path) or "/", []).append(ch)
        self.marks, self.deleted = marks, deleted
        return len(changes)

    # -- listing --------------------------------------------------------------------------
    def _layers_of(self, path: str) -> dict[str, int]:
        """name → index of the layer that provides it, for the entries of directory ``path``."""
        if self.stack is None:
            return {}
        with self._lock:
            if self._view is None:
                self._view = MergedView(self.stack)
            view = self._view
            out: dict[str, int] = {}
            with view.scoped():
                try:
                    node = view.lookup(path)
                except CtrfsError:
                    return {}
                if not node.is_dir:
                    return {}
                for idx, fd in node.parts:
                    for name in os.listdir(fd):
                        out.setdefault(name, idx)
            return out

    def list_dir(self, path: str, *, in_layers: bool = True) -> Listing:
        """The entries of directory ``path``, directories first, then by name; entries the
        container deleted (``D``) included. ``in_layers`` False: the directory is on another
        mount (its entries come from no layer)."""
        names = self.names
        rows: list[Row] = []
        more = 0
        layers = self._layers_of(path) if in_layers else {}
        marks = self.marks
        users: dict[int, str] = {}
        groups: dict[int, str] = {}
        with self._access() as root:
            for name, st, mount_point, readlink in self._entries(root, path):
                mode = st.st_mode
                if len(rows) >= MAX_ROWS:
                    more += 1
                    continue
                link = None
                if stat_mod.S_ISLNK(mode):
                    try:
                        link = os.fsdecode(readlink())
                    except (CtrfsError, OSError):
                        link = "?"
                uid, gid = st.st_uid, st.st_gid
                user = users.get(uid)
                if user is None:
                    user = users[uid] = names.user(uid) or str(uid)
                group = groups.get(gid)
                if group is None:
                    group = groups[gid] = names.group(gid) or str(gid)
                p = path + name if path.endswith("/") else path + "/" + name
                rows.append(Row(path=p, name=name, type=type_letter(mode),
                                mode=stat_mod.filemode(mode), user=user, group=group,
                                size=st.st_size, mark=marks.get(p, ""),
                                layer=None if mount_point else layers.get(name),
                                link=link, mount_point=mount_point))
        for ch in self.deleted.get(path, []):
            rows.append(deleted_row(ch))
        rows.sort(key=_by_name)
        dirs = [r for r in rows if r.type == "d"]
        if dirs:
            rows = dirs + [r for r in rows if r.type != "d"]
        return Listing(path, rows, more)

    def _entries(self, root: Root, path: str
                 ) -> Iterator[tuple[str, os.stat_result, bool, Callable[[], bytes]]]:
        """(name, lstat, is a mount point, readlink) of the entries of directory ``path``.

        A live root: the directory is resolved by the Root (inside the container) and listed
        by fd, mount points taken from the container's mount table: ``Root.scandir`` asks
        statx for every entry's mount ID, a quarter of a second for 10,000 entries. Any
        other Root (an offline overlay merge): ``Root.scandir``."""
        if not isinstance(root, FdRoot):
            for e in root.scandir(path):
                yield e.name, e.stat, e.mount_point, e.readlink
            return
        fd = root.resolve(path)
        try:
            try:
                dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            except OSError as err:
                raise from_oserror(err, target=root.target, path=path) from err
        finally:
            os.close(fd)
        mounts = self.mount_points
        base = path if path.endswith("/") else path + "/"
        try:
            with os.scandir(dfd) as it:
                for de in it:
                    try:
                        st = de.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # removed since the listing was read
                    name = de.name
                    yield name, st, base + name in mounts, functools.partial(
                        _readlink_at, os.fsencode(name), dfd)
        except OSError as err:
            raise from_oserror(err, target=root.target, path=path) from err
        finally:
            os.close(dfd)

    @property
    def mount_points(self) -> frozenset[str]:
        """The container's mount points other than / (none for a stopped container)."""
        if self._mounts is None:
            found: frozenset[str] = frozenset()
            if self.container.running:
                try:
                    found = frozenset(m.mount_point for m in self.container.mounts()
                                      if m.mount_point != "/")
                except CtrfsError:
                    pass
            self._mounts = found
        return self._mounts

    def row(self, path: str) -> Row:
        """The Row of one path (the tree's top)."""
        with self._access() as root:
            st = root.lstat(path)
        names = self.names
        return Row(path=path, name=path, type=type_letter(st.st_mode),
                   mode=stat_mod.filemode(st.st_mode),
                   user=names.user(st.st_uid) or str(st.st_uid),
                   group=names.group(st.st_gid) or str(st.st_gid), size=st.st_size,
                   mark=self.marks.get(path, ""))

    def dir_size(self, path: str, cancelled: Callable[[], bool]) -> int | None:
        """Bytes of the regular files below ``path`` (each inode once, this mount only), or
        None when ``cancelled()`` said so (asked every 64 entries)."""
        seen: set[tuple[int, int]] = set()
        total = 0
        with self._access() as root:
            for n, e in enumerate(root.walk(path, follow=False), 1):
                if n % 64 == 0 and cancelled():
                    return None
                st = e.stat
                if not stat_mod.S_ISREG(st.st_mode):
                    continue
                if st.st_nlink > 1:
                    key = (st.st_dev, st.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                total += st.st_size
        return total

    # -- preview --------------------------------------------------------------------------
    def preview(self, path: str, limit: int = PREVIEW_BYTES) -> Preview:
        """The start of the file at ``path`` (a symlink is followed inside the container).
        FIFOs, sockets and devices are refused without being opened."""
        with self._access() as root:
            try:
                st = root.stat(path)
            except CtrfsError as err:
                return Preview(path, "error", message=str(err))
            if stat_mod.S_ISDIR(st.st_mode):
                return Preview(path, "dir", message="directory")
            if not stat_mod.S_ISREG(st.st_mode):
                return Preview(path, "refused", message=f"{file_kind(st.st_mode)}: not opened "
                               "(only regular files are read)")
            try:
                with root.open_file(path) as f:
                    data = f.read(limit + 1)
                    size = os.fstat(f.fileno()).st_size
            except CtrfsError as err:
                return Preview(path, "error", message=str(err))
        truncated = len(data) > limit
        data = data[:limit]
        kind = "binary" if _is_binary(data) else "text"
        return Preview(path, kind, data, size, truncated)

    # -- layers ---------------------------------------------------------------------------
    def layer_rows(self, cancelled: Callable[[], bool] | None = None) -> list[LayerRow]:
        """The layers, top first, with file counts, sizes, wasted bytes and A/C/D counts."""
        if self.stack is None:
            return []
        stack = self.stack
        for la in stack.layers:
            if la.files is None and la.exists:
                count_layer(stack, la)
        count_wasted(stack)
        rows = []
        for la in stack.layers:
            summary = LayerSummary(la.index)
            if la.exists:
                for f in layer_files(stack, la.index, cancelled=cancelled):
                    summary.add(f)
            rows.append(LayerRow(la, summary))
        return rows

    def layer_files(self, index: int) -> list[LayerFile]:
        if self.stack is None:
            return []
        return sorted(layer_files(self.stack, index), key=lambda f: f.path)

    def which(self, path: str) -> WhichResult:
        if self.stack is None:
            raise Unsupported("root filesystem is not overlay: it has no layers",
                              target=self.container.display_name, path=path)
        return which(self.stack, path)

    # -- operations -----------------------------------------------------------------------
    def copy(self, path: str, dest: str) -> CopyResult:
        with self._access() as root:
            return copy_out(root, path, dest)

    def grep(self, pattern: str, path: str, cancelled: Callable[[], bool]
             ) -> Iterator[GrepMatch | GrepFile]:
        rx = compile_pattern(pattern)
        with self._access() as root:
            for n, hit in enumerate(grep(root, rx, path, recursive=True), 1):
                if n > MAX_GREP or cancelled():
                    return
                yield hit

    def follow(self, path: str, stop: Callable[[], bool], lines: int = 20) -> Iterator[TailEvent]:
        """tail -F of ``path`` until ``stop()``; on a live root only (a stopped container's
        files do not grow)."""
        yield from tail(self.root, path, lines=lines, follow="name", interval=0.2, stop=stop)


_by_name = operator.attrgetter("name")


def _readlink_at(name: bytes, dir_fd: int) -> bytes:
    return os.readlink(name, dir_fd=dir_fd)


def deleted_row(ch: Change) -> Row:
    """The row of an entry the container deleted (``D`` in its diff)."""
    return Row(path=ch.path, name=posixpath.basename(ch.path), type="-", mode="-" * 10,
               user="", group="", size=ch.size or 0, mark="D")


def name_matcher(pattern: str) -> Callable[[str], bool] | None:
    """A name filter: a glob when ``pattern`` has ``*?[``, else a case-insensitive substring;
    None for an empty pattern."""
    if not pattern:
        return None
    if any(c in pattern for c in "*?["):
        return lambda name: fnmatch.fnmatchcase(name, pattern)
    low = pattern.lower()
    return lambda name: low in name.lower()


def _is_binary(data: bytes) -> bool:
    if b"\0" in data:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        return err.start < len(data) - 4  # a multibyte character cut at the limit is text
    return False


def hexdump(data: bytes, width: int = 16) -> str:
    """``hexdump -C`` style lines."""
    out = []
    for off in range(0, len(data), width):
        chunk = data[off:off + width]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        out.append(f"{off:08x}  {hexes:<{width * 3 - 1}}  |{text}|")
    return "\n".join(out)


def human(n: int | None) -> str:
    """A size as ``du -h`` writes it (ctrfs's one size formatter); "…" while not known."""
    return "…" if n is None else du_human(n)
