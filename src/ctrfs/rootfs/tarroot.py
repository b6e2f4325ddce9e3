"""TarLayersRoot: an image's root filesystem from its layer tarballs, with nothing extracted.

An OCI layout keeps each layer as a (usually gzip-compressed) tar blob. The layers are read
once, bottom first, as streams, into an in-memory tree of metadata (names, modes, owners, sizes,
link targets, where each file's data starts in its layer's decompressed stream); file content
is read later by streaming that layer again up to the file (image-spec layer.md "Applying
Changesets"): a ``.wh.NAME`` entry deletes NAME from the layers below, ``.wh..wh..opq`` makes
its directory opaque (nothing of it below shows), both only for lower layers. Hard links refer to
a path already in the tree.

Read-only and offline, the same :class:`~ctrfs.rootfs.base.Root` contract as a container's root:
paths resolve inside the image (absolute symlinks restart at its root, ``..`` stops there); only
regular files are read. Content is handed out as a temporary file (in memory up to a few MiB),
never as a path on the host.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import io
import itertools
import lzma
import os
import stat as stat_mod
import tarfile
import tempfile
from collections.abc import Iterator, Sequence

from ctrfs._record import dataclass, field
from ctrfs.errors import CtrfsError, NotFound, Unsupported
from ctrfs.rootfs.base import (
    Entry,
    NotRegularFile,
    PathArg,
    Root,
    WalkWarning,
    WarnFn,
    file_kind,
    join,
    norm_path,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

_SYMLINK_BUDGET = 40
_SPOOL = 8 << 20  # content up to this size stays in memory
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_TYPES = {
    tarfile.REGTYPE: stat_mod.S_IFREG, tarfile.AREGTYPE: stat_mod.S_IFREG,
    tarfile.CONTTYPE: stat_mod.S_IFREG, tarfile.DIRTYPE: stat_mod.S_IFDIR,
    tarfile.SYMTYPE: stat_mod.S_IFLNK, tarfile.CHRTYPE: stat_mod.S_IFCHR,
    tarfile.BLKTYPE: stat_mod.S_IFBLK, tarfile.FIFOTYPE: stat_mod.S_IFIFO,
}


def open_layer(path: str) -> io.BufferedIOBase:
    """A layer blob as a decompressed stream, the compression told by its magic bytes."""
    f = open(path, "rb")  # noqa: SIM115 — returned to the caller
    try:
        magic = f.read(6)
        f.seek(0)
        if magic.startswith(b"\x1f\x8b"):
            return gzip.GzipFile(fileobj=f, mode="rb")
        if magic.startswith(b"\xfd7zXZ\x00"):
            return lzma.LZMAFile(f)
        if magic.startswith(b"BZh"):
            return bz2.BZ2File(f)
        if magic.startswith(b"\x28\xb5\x2f\xfd"):
            raise Unsupported("zstd-compressed layers are not supported (Python's standard "
                              "library has no zstd); recompress with skopeo copy "
                              "--dest-compress-format gzip", path=path)
    except BaseException:
        f.close()
        raise
    return f


@dataclass
class _Node:
    stat: os.stat_result
    layer: int = -1
    offset: int = 0  # start of the data in the layer's decompressed stream
    link: str = ""  # symlink target
    xattrs: dict[str, bytes] = field(default_factory=dict)
    children: dict[str, _Node] | None = None  # directories only

    @property
    def is_dir(self) -> bool:
        return self.children is not None


_ino = itertools.count(2)


def _stat(mode: int, uid: int = 0, gid: int = 0, size: int = 0, mtime: int = 0, rdev: int = 0,
          nlink: int = 1, ino: int | None = None) -> os.stat_result:
    return os.stat_result(
        (mode, ino if ino is not None else next(_ino), 0, nlink, uid, gid, size, mtime, mtime, mtime),
        {"st_mtime": float(mtime), "st_atime": float(mtime), "st_ctime": float(mtime),
         "st_mtime_ns": mtime * 1_000_000_000, "st_atime_ns": mtime * 1_000_000_000,
         "st_ctime_ns": mtime * 1_000_000_000, "st_rdev": rdev, "st_blocks": (size + 511) // 512,
         "st_blksize": 4096})


def _parts(name: str) -> list[str] | None:
    """A member name's components; None for names that climb (``..``)."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return None if ".." in parts else parts


class _Tree:
    def __init__(self) -> None:
        self.root = _Node(_stat(stat_mod.S_IFDIR | 0o755, nlink=2), children={})

    def dir_at(self, parts: Sequence[str], *, create: bool) -> _Node | None:
        node = self.root
        for p in parts:
            assert node.children is not None
            child = node.children.get(p)
            if child is None or not child.is_dir:
                if not create:
                    return None
                child = node.children[p] = _Node(_stat(stat_mod.S_IFDIR | 0o755, nlink=2), children={})
            node = child
        return node

    def lookup(self, parts: Sequence[str]) -> _Node | None:
        parent = self.dir_at(parts[:-1], create=False)
        if parent is None or parent.children is None:
            return None
        return parent.children.get(parts[-1]) if parts else self.root


def _apply_layer(tree: _Tree, index: int, stream: io.BufferedIOBase, warn: WarnFn | None) -> None:
    mine: set[tuple[str, ...]] = set()  # paths this layer gave (its whiteouts leave them)
    opaque: list[tuple[str, ...]] = []
    with tarfile.open(fileobj=stream, mode="r|") as tf:
        for ti in tf:
            parts = _parts(ti.name)
            if parts is None:
                if warn is not None:
                    warn(WalkWarning("/" + ti.name, "member name climbs out of the image; skipped"))
                continue
            if not parts:
                if ti.isdir():  # "./": the root's own metadata
                    tree.root.stat = _stat(stat_mod.S_IFDIR | (ti.mode & 0o7777), ti.uid, ti.gid,
                                           mtime=int(ti.mtime), nlink=2, ino=tree.root.stat.st_ino)
                continue
            base = parts[-1]
            if base == _OPAQUE:
                opaque.append(tuple(parts[:-1]))
                continue
            if base.startswith(_WHITEOUT):
                gone = parts[:-1] + [base[len(_WHITEOUT):]]
                if tuple(gone) in mine:
                    continue
                parent = tree.dir_at(gone[:-1], create=False)
                if parent is not None and parent.children is not None:
                    parent.children.pop(gone[-1], None)
                continue
            parent = tree.dir_at(parts[:-1], create=True)
            assert parent is not None and parent.children is not None
            mine.add(tuple(parts))
            node = _node_for(tree, ti, index, parent.children.get(base))
            if node is not None:
                parent.children[base] = node
    for d in opaque:
        node = tree.dir_at(list(d), create=True)
        assert node is not None
        _prune(node, d, mine)


def _prune(top: _Node, path: tuple[str, ...], mine: set[tuple[str, ...]]) -> None:
    """Below an opaque directory keep only what this layer gave (at any depth)."""
    todo = [(top, path)]
    while todo:
        node, p = todo.pop()
        assert node.children is not None
        for name, child in list(node.children.items()):
            if (*p, name) not in mine:
                del node.children[name]
            elif child.children is not None:
                todo.append((child, (*p, name)))


def _node_for(tree: _Tree, ti: tarfile.TarInfo, index: int, old: _Node | None) -> _Node | None:
    perm = ti.mode & 0o7777
    xattrs = {k[len("SCHILY.xattr."):]: v.encode("utf-8", "surrogateescape")
              for k, v in ti.pax_headers.items() if k.startswith("SCHILY.xattr.")}
    if ti.islnk():
        parts = _parts(ti.linkname)
        target = tree.lookup(parts) if parts else None
        if target is None or target.is_dir:
            return None
        s = target.stat
        target.stat = _stat(s.st_mode, s.st_uid, s.st_gid, s.st_size, int(s.st_mtime), s.st_rdev,
                            s.st_nlink + 1, s.st_ino)
        return target  # the same node: one inode under two names
    kind = _TYPES.get(ti.type)
    if kind is None:
        return None  # GNU sparse / long-name records tarfile already folded; anything else
    rdev = os.makedev(ti.devmajor, ti.devminor) if kind in (stat_mod.S_IFCHR, stat_mod.S_IFBLK) else 0
    if kind == stat_mod.S_IFDIR:
        keep = old.children if old is not None and old.children is not None else {}
        return _Node(_stat(kind | perm, ti.uid, ti.gid, mtime=int(ti.mtime), nlink=2), index,
                     xattrs=xattrs, children=keep)
    size = ti.size if kind == stat_mod.S_IFREG else len(os.fsencode(ti.linkname)) \
        if kind == stat_mod.S_IFLNK else 0
    return _Node(_stat(kind | perm, ti.uid, ti.gid, size, int(ti.mtime), rdev), index,
                 ti.offset_data, ti.linkname if kind == stat_mod.S_IFLNK else "", xattrs)


@dataclass
class TarEntry(Entry):
    _root: TarLayersRoot | None = field(default=None, repr=False)
    _node: _Node | None = field(default=None, repr=False)

    def open(self) -> BinaryIO:
        assert self._root is not None and self._node is not None
        with self._root._errors(self.path):
            return self._root._content(self._node)

    def readlink(self) -> bytes:
        assert self._node is not None
        if not stat_mod.S_ISLNK(self._node.stat.st_mode):
            raise CtrfsError("not a symbolic link", path=self.path)
        return os.fsencode(self._node.link)

    def xattrs(self) -> dict[str, bytes]:
        assert self._node is not None
        return dict(self._node.xattrs)


class TarLayersRoot(Root):
    """The merged tree of layer tarballs ``layers`` (paths of blobs, bottom first)."""

    def __init__(self, layers: Sequence[str], *, target: str | None = None,
                 on_warning: WarnFn | None = None) -> None:
        self.target = target
        self.layers = list(layers)
        self._streams: dict[int, io.BufferedIOBase] = {}
        self._tree = _Tree()
        for i, path in enumerate(self.layers):
            with self._errors(None):
                with open_layer(path) as stream:
                    try:
                        _apply_layer(self._tree, i, stream, on_warning)
                    except (tarfile.TarError, EOFError, OSError, lzma.LZMAError) as err:
                        raise CtrfsError(f"layer {i} ({os.path.basename(path)}) is not a valid "
                                         f"tar stream: {err}", target=target) from err

    # -- lookup --------------------------------------------------------------------------------
    def _lookup(self, path: PathArg, follow: bool) -> tuple[str, _Node]:
        raw = os.fsdecode(path)
        todo = [p for p in reversed(raw.split("/")) if p]
        trailing = raw.endswith("/") and bool(todo)
        stack: list[tuple[str, _Node]] = [("", self._tree.root)]
        budget = _SYMLINK_BUDGET
        while todo:
            name = todo.pop()
            last = not todo
            cur_path, cur = stack[-1]
            if not cur.is_dir:
                raise CtrfsError("not a directory")
            if name == ".":
                continue
            if name == "..":
                if len(stack) > 1:
                    stack.pop()
                continue
            assert cur.children is not None
            node = cur.children.get(name)
            if node is None:
                raise NotFound()
            if stat_mod.S_ISLNK(node.stat.st_mode) and (not last or follow or trailing):
                budget -= 1
                if budget < 0:
                    raise CtrfsError("too many levels of symbolic links")
                if node.link.startswith("/"):
                    del stack[1:]
                todo.extend(p for p in reversed(node.link.split("/")) if p)
                continue
            stack.append((cur_path + "/" + name, node))
        if trailing and not stack[-1][1].is_dir:
            raise CtrfsError("not a directory")
        return stack[-1][0] or "/", stack[-1][1]

    def _content(self, node: _Node) -> BinaryIO:
        if not stat_mod.S_ISREG(node.stat.st_mode):
            raise NotRegularFile(file_kind(node.stat.st_mode))
        stream = self._streams.get(node.layer)
        if stream is None or stream.tell() > node.offset:
            if stream is not None:
                stream.close()
            stream = self._streams[node.layer] = open_layer(self.layers[node.layer])
        stream.seek(node.offset)  # forward: decompress and skip (gzip/lzma/bz2 streams do)
        out = tempfile.SpooledTemporaryFile(max_size=_SPOOL)  # noqa: SIM115 — the caller owns it
        left = node.stat.st_size
        while left:
            chunk = stream.read(min(left, 1 << 20))
            if not chunk:
                out.close()
                raise CtrfsError("layer stream ended inside a file")
            out.write(chunk)
            left -= len(chunk)
        out.seek(0)
        return out  # type: ignore[return-value]  # a SpooledTemporaryFile is a binary file

    # -- Root ----------------------------------------------------------------------------------
    def resolve(self, path: PathArg, *, follow: bool = True) -> int:
        raise Unsupported("an image layout has no file descriptors to hand out (nothing is "
                          "extracted); this operation needs a running container", target=self.target,
                          path=norm_path(path))

    def check_alive(self) -> None:
        pass  # nothing runs; the tree is in memory

    def close(self) -> None:
        streams, self._streams = self._streams, {}
        for s in streams.values():
            s.close()

    def lstat(self, path: PathArg) -> os.stat_result:
        with self._errors(path):
            return self._lookup(path, False)[1].stat

    def stat(self, path: PathArg) -> os.stat_result:
        with self._errors(path):
            return self._lookup(path, True)[1].stat

    def readlink(self, path: PathArg) -> bytes:
        with self._errors(path):
            node = self._lookup(path, False)[1]
            if not stat_mod.S_ISLNK(node.stat.st_mode):
                raise CtrfsError("not a symbolic link")
            return os.fsencode(node.link)

    def open_file(self, path: PathArg) -> BinaryIO:
        with self._errors(path):
            return self._content(self._lookup(path, True)[1])

    def scandir(self, path: PathArg) -> Iterator[Entry]:
        top = norm_path(path)
        with self._errors(path):
            node = self._lookup(path, True)[1]
            if node.children is None:
                raise OSError(errno.ENOTDIR, "not a directory")
        for name, child in list(node.children.items()):
            yield TarEntry(path=join(top, name), name=name, stat=child.stat, depth=1,
                           _root=self, _node=child)

    def walk(self, path: PathArg = "/", *, follow: bool = True, max_depth: int | None = None,
             one_filesystem: bool = True, on_warning: WarnFn | None = None) -> Iterator[Entry]:
        top = norm_path(path)
        with self._errors(path):
            start = self._lookup(path, follow)[1]
        name = os.path.basename(top.rstrip("/")) or "/"
        yield TarEntry(path=top, name=name, stat=start.stat, depth=0, _root=self, _node=start)
        if start.children is None or max_depth == 0:
            return
        # Iterative pre-order; the tree is in memory, so a stack of iterators bounds nothing but
        # depth, and nothing here opens an fd.
        stack = [(top, 1, iter(list(start.children.items())))]
        while stack:
            prefix, depth, it = stack[-1]
            item = next(it, None)
            if item is None:
                stack.pop()
                continue
            cname, child = item
            cpath = join(prefix, cname)
            yield TarEntry(path=cpath, name=cname, stat=child.stat, depth=depth, _root=self,
                           _node=child)
            if child.children is not None and (max_depth is None or depth < max_depth):
                stack.append((cpath, depth + 1, iter(list(child.children.items()))))
