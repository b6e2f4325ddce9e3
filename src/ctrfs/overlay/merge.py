"""overlayfs lookup done in userland over the layer directories: no mount is made.

Rules (Documentation/filesystems/overlayfs.rst, fs/overlayfs/namei.c ``ovl_lookup``): a name is
looked up in the layers that form its parent directory, top first. The first hit wins; a
whiteout (char device 0/0) there means "deleted". When the hit is a directory, same-named
directories in the following layers merge into it, until a layer holds a non-directory or a
whiteout under that name, or a merged directory is opaque (xattr ``overlay.opaque`` = ``y``).
A layer that lacks the name is skipped, not a stop.
"""

from __future__ import annotations

import os
import stat as st_mod
from collections.abc import Iterator
from contextlib import contextmanager

from ctrfs._record import dataclass, field
from ctrfs.errors import CtrfsError, NotFound, translate_oserror
from ctrfs.overlay import _fs
from ctrfs.overlay.layers import LayerStack

_SYMLINK_BUDGET = 40


@dataclass
class Node:
    """A name resolved in the merged view."""

    path: bytes  # canonical (symlink-free) path inside the container, b"" for "/"
    stat: os.stat_result  # of the visible entry
    layer: int  # index of the layer that provides it
    parent_fd: int | None  # fd of the directory in ``layer`` holding it (None for "/")
    name: bytes
    parts: list[tuple[int, int]] = field(default_factory=list)  # (layer, dir fd) if a directory

    @property
    def is_dir(self) -> bool:
        return st_mod.S_ISDIR(self.stat.st_mode)


class MergedView:
    """The merged tree of an overlay stack. Owns the fds it opens; call :meth:`close`."""

    def __init__(self, stack: LayerStack) -> None:
        self.stack = stack
        self.target = stack.target
        self._fds: set[int] = set()
        self._scopes: list[set[int]] = []
        self.roots: list[tuple[int, int]] = []
        for la in stack.layers:
            try:
                fd = os.open(stack.host_path(la.path), _fs.O_DIR_READ)
            except FileNotFoundError:
                continue
            except OSError as err:
                self.close()
                with translate_oserror(target=self.target, path=la.path):
                    raise err
            self._fds.add(fd)
            self.roots.append((la.index, fd))
            if _fs.is_opaque(fd):
                break

    def close(self) -> None:
        fds, self._fds = self._fds, set()
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def _keep(self, fd: int) -> int:
        self._fds.add(fd)
        if self._scopes:
            self._scopes[-1].add(fd)
        return fd

    @contextmanager
    def scoped(self) -> Iterator[None]:
        """Close every directory fd that lookups opened inside the block when it ends (nodes
        looked up inside must not be used after it)."""
        scope: set[int] = set()
        self._scopes.append(scope)
        try:
            yield
        finally:
            self._scopes.remove(scope)
            for fd in scope:
                if fd in self._fds:
                    self._fds.discard(fd)
                    os.close(fd)

    def root_node(self) -> Node:
        if not self.roots:
            raise NotFound("no layer directory of this container exists", target=self.target)
        idx, fd = self.roots[0]
        return Node(b"", os.fstat(fd), idx, None, b"", list(self.roots))

    def child(self, parent: Node, name: bytes, *, open_dirs: bool = True) -> Node | None:
        """``name`` in directory ``parent`` (not followed), or None if absent/deleted.

        With ``open_dirs`` False a directory's layer fds are not opened (listing only): call
        :meth:`child` again with it True before looking inside."""
        st, holder, parts = _fs.lookup_in_layers(
            (((idx, dfd), dfd) for idx, dfd in parent.parts), name, open_dirs=open_dirs)
        if st is None or holder is None:
            for _, sub in parts:
                os.close(sub)
            return None
        idx, dfd = holder
        found = Node(parent.path + b"/" + name, st, idx, dfd, name)
        found.parts.extend((key[0], self._keep(sub)) for key, sub in parts)
        return found

    def lookup(self, path: bytes | str, *, follow: bool = True) -> Node:
        """Resolve ``path`` with the container root as ``/``; symlinks are followed inside the
        merged view (the final one only with ``follow``); ``..`` stops at the root."""
        raw = os.fsencode(path)
        # "." is kept: "file/." must fail with "not a directory", as the kernel does.
        todo = [p for p in reversed(raw.split(b"/")) if p]
        trailing_slash = raw.endswith(b"/") and bool(todo)
        stack = [self.root_node()]
        budget = _SYMLINK_BUDGET
        shown = os.fsdecode(raw) or "/"
        while todo:
            name = todo.pop()
            last = not todo
            if name in (b".", b".."):
                if not stack[-1].is_dir:
                    raise CtrfsError("not a directory", target=self.target, path=shown)
                if name == b".." and len(stack) > 1:
                    stack.pop()
                continue
            cur = stack[-1]
            if not cur.is_dir:
                raise CtrfsError("not a directory", target=self.target, path=shown)
            node = self.child(cur, name)
            if node is None:
                raise NotFound(target=self.target, path=shown)
            if st_mod.S_ISLNK(node.stat.st_mode) and (not last or follow or trailing_slash):
                budget -= 1
                if budget < 0:
                    raise CtrfsError("too many levels of symbolic links", target=self.target,
                                     path=shown)
                assert node.parent_fd is not None
                try:
                    target = os.readlink(node.name, dir_fd=node.parent_fd)
                except FileNotFoundError as err:
                    raise NotFound(target=self.target, path=shown) from err
                except OSError as err:
                    # EINVAL: no longer a symlink. The container renamed or replaced the entry
                    # after it was listed (a live container writes its upper dir meanwhile).
                    raise CtrfsError("changed while being resolved (the container replaced a "
                                     "component); try again", target=self.target,
                                     path=shown) from err
                if target.startswith(b"/"):
                    del stack[1:]
                todo.extend(p for p in reversed(target.split(b"/")) if p)
                continue
            stack.append(node)
        if trailing_slash and not stack[-1].is_dir:
            raise CtrfsError("not a directory", target=self.target, path=shown)
        return stack[-1]

    def entries(self, node: Node) -> list[tuple[bytes, Node]]:
        """The merged entries of a directory (whiteouts applied), sorted by name."""
        return sorted(self.iter_entries(node), key=lambda t: t[0])

    def iter_entries(self, node: Node, *, sort_up_to: int = 0) -> Iterator[tuple[bytes, Node]]:
        """The merged entries of a directory (whiteouts applied), streamed in no order; a
        directory of at most ``sort_up_to`` entries comes sorted by name.

        Nothing is kept per entry: the top layer's entries are looked up as they come; an entry
        of a lower layer is skipped when a layer above (among those forming this directory)
        holds the name at all (then it was given there, or that layer deletes it)."""
        if not node.is_dir:
            raise CtrfsError("not a directory", target=self.target,
                             path=os.fsdecode(node.path) or "/")
        it = self._iter_entries(node, list(node.parts))
        return self._sorted_if_small(it, sort_up_to) if sort_up_to else it

    @staticmethod
    def _sorted_if_small(it: Iterator[tuple[bytes, Node]], limit: int
                         ) -> Iterator[tuple[bytes, Node]]:
        buf: list[tuple[bytes, Node]] = []
        try:
            for item in it:
                buf.append(item)
                if len(buf) > limit:
                    yield from buf
                    buf = []
                    yield from it
                    return
            buf.sort(key=lambda t: t[0])
            yield from buf
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def _iter_entries(self, node: Node, parts: list[tuple[int, int]]
                      ) -> Iterator[tuple[bytes, Node]]:
        for i, (_, dfd) in enumerate(parts):
            above = [fd for _, fd in parts[:i]]
            with os.scandir(dfd) as it:
                for e in it:
                    name = os.fsencode(e.name)
                    if above and any(_fs.lstat_at(fd, name) is not None for fd in above):
                        continue
                    child = self.child(node, name, open_dirs=False)
                    if child is not None:
                        yield name, child

    def release(self, node: Node) -> None:
        """Close the directory fds a node holds (after its subtree is done)."""
        for _, fd in node.parts:
            if fd in self._fds and node.path != b"":
                self._fds.discard(fd)
                for scope in self._scopes:
                    scope.discard(fd)
                os.close(fd)
        node.parts = []
