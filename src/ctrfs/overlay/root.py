"""OverlayRoot: a stopped container's root filesystem, merged from its layer dirs in userland.

No mount is made and nothing is written: every lookup is :class:`~ctrfs.overlay.merge.MergedView`
over fds of the layer directories (whiteouts and opaque directories honoured, symlinks resolved
with the container root as ``/``). The same :class:`~ctrfs.rootfs.base.Root` interface as a
running container's, so ``ls``, ``cat``, ``find``, ``cp`` and ``export`` work offline.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
from collections.abc import Iterator

from ctrfs._record import dataclass, field
from ctrfs.errors import CtrfsError, ProcessGone
from ctrfs.overlay import _fs
from ctrfs.overlay.layers import LayerStack
from ctrfs.overlay.merge import MergedView, Node
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
from ctrfs.rootfs.fd import read_xattrs, reopen_regular

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

_O_PATH = os.O_PATH | os.O_CLOEXEC | os.O_NOFOLLOW
SORT_UP_TO = _fs.SORT_UP_TO  # bigger directories stream in the layers' order
# xattrs overlayfs keeps for itself in the layer dirs; a mounted overlay never shows them.
_PRIVATE_XATTRS = ("trusted.overlay.", "user.overlay.")


def _open_node(node: Node, root_fd: int) -> int:
    """An O_PATH fd of the layer entry a node stands for, checked to be the inode looked up."""
    if node.parent_fd is None:
        return os.dup(root_fd)
    fd = os.open(node.name, _O_PATH, dir_fd=node.parent_fd)
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (node.stat.st_dev, node.stat.st_ino):
        os.close(fd)
        raise OSError(errno.ENOENT, "replaced since it was looked up")
    return fd


def _public_xattrs(fd: int, is_link: bool) -> dict[str, bytes]:
    return {k: v for k, v in read_xattrs(fd, is_link=is_link).items()
            if not k.startswith(_PRIVATE_XATTRS)}


@dataclass
class OverlayEntry(Entry):
    _root: OverlayRoot | None = field(default=None, repr=False)
    _node: Node | None = field(default=None, repr=False)

    def _fd(self) -> int:
        assert self._root is not None and self._node is not None
        return _open_node(self._node, self._root._top_fd())

    def open(self) -> BinaryIO:
        assert self._root is not None
        with self._root._errors(self.path):
            if not stat_mod.S_ISREG(self.stat.st_mode):
                raise NotRegularFile(self.kind)
            fd = self._fd()
            try:
                return reopen_regular(fd)
            finally:
                os.close(fd)

    def readlink(self) -> bytes:
        assert self._root is not None and self._node is not None
        with self._root._errors(self.path):
            node = self._node
            if node.parent_fd is None or not stat_mod.S_ISLNK(node.stat.st_mode):
                raise CtrfsError("not a symbolic link")
            return os.readlink(node.name, dir_fd=node.parent_fd)

    def xattrs(self) -> dict[str, bytes]:
        assert self._root is not None
        with self._root._errors(self.path):
            fd = self._fd()
            try:
                return _public_xattrs(fd, self.is_symlink())
            finally:
                os.close(fd)


class OverlayRoot(Root):
    """The merged view of ``stack`` (upper dir first, then the lowers), read-only, offline."""

    def __init__(self, stack: LayerStack, *, target: str | None = None) -> None:
        self.stack = stack
        self.target = target or stack.target
        _fs.raise_fd_limit()
        self._view: MergedView | None = MergedView(stack)

    @property
    def view(self) -> MergedView:
        if self._view is None:
            raise CtrfsError("root is closed", target=self.target)
        return self._view

    def _top_fd(self) -> int:
        return self.view.roots[0][1]

    def _lookup(self, path: PathArg, follow: bool) -> Node:
        return self.view.lookup(os.fsencode(path), follow=follow)

    # -- primitives -------------------------------------------------------------------------
    def resolve(self, path: PathArg, *, follow: bool = True) -> int:
        with self._errors(path), self.view.scoped():
            return _open_node(self._lookup(path, follow), self._top_fd())

    def check_alive(self) -> None:
        # Nothing runs; the container is "gone" when its runtime removed its layer dirs
        # (``docker rm`` deletes the upper dir: our fd then sees st_nlink 0).
        for _, fd in self.view.roots[:1]:
            if os.fstat(fd).st_nlink == 0:
                raise ProcessGone(target=self.target,
                                  message="the container was removed (its layers are gone)")

    def close(self) -> None:
        if self._view is not None:
            self._view.close()
            self._view = None

    # -- metadata ---------------------------------------------------------------------------
    def lstat(self, path: PathArg) -> os.stat_result:
        with self._errors(path), self.view.scoped():
            return self._lookup(path, False).stat

    def stat(self, path: PathArg) -> os.stat_result:
        with self._errors(path), self.view.scoped():
            return self._lookup(path, True).stat

    def readlink(self, path: PathArg) -> bytes:
        with self._errors(path), self.view.scoped():
            node = self._lookup(path, False)
            if node.parent_fd is None or not stat_mod.S_ISLNK(node.stat.st_mode):
                raise CtrfsError("not a symbolic link")
            return os.readlink(node.name, dir_fd=node.parent_fd)

    # -- content ----------------------------------------------------------------------------
    def open_file(self, path: PathArg) -> BinaryIO:
        with self._errors(path), self.view.scoped():
            node = self._lookup(path, True)
            if not stat_mod.S_ISREG(node.stat.st_mode):
                raise NotRegularFile(file_kind(node.stat.st_mode))
            fd = _open_node(node, self._top_fd())
            try:
                return reopen_regular(fd, node.stat)
            finally:
                os.close(fd)

    def scandir(self, path: PathArg) -> Iterator[Entry]:
        top = norm_path(path)
        with self.view.scoped():
            with self._errors(path):
                node = self._lookup(path, True)
                children = self.view.iter_entries(node, sort_up_to=SORT_UP_TO)
            while True:
                with self._errors(path):
                    item = next(children, None)
                if item is None:
                    break
                name, child = item
                sname = os.fsdecode(name)
                yield OverlayEntry(path=join(top, sname), name=sname, stat=child.stat, depth=1,
                                   _root=self, _node=child)

    def walk(self, path: PathArg = "/", *, follow: bool = True, max_depth: int | None = None,
             one_filesystem: bool = True, on_warning: WarnFn | None = None) -> Iterator[Entry]:
        with self.view.scoped():
            yield from self._walk(path, follow, max_depth, on_warning)

    def _walk(self, path: PathArg, follow: bool, max_depth: int | None,
              on_warning: WarnFn | None) -> Iterator[Entry]:
        warn: WarnFn = on_warning or (lambda w: None)
        top = norm_path(path)
        with self._errors(path):
            start = self._lookup(path, follow)
        name = os.path.basename(top.rstrip("/")) or "/"
        yield OverlayEntry(path=top, name=name, stat=start.stat, depth=0, _root=self, _node=start)
        if not start.is_dir or max_depth == 0:
            return
        view = self.view
        prefix = top.rstrip("/")
        # Only a window of the deepest directories keeps its layer fds (see _fs.TreeWalk); the
        # start's fds belong to the scope.
        walk = _fs.TreeWalk(_MergedOps(view), start, target=self.target,
                            budget=_fs.walk_budget(held=len(view.roots)))
        shown = top
        try:
            while True:
                try:
                    item = walk.next()
                except _fs.Moved as err:
                    where = prefix + err.path if err.path and err.path != "/" else top
                    warn(WalkWarning(where, "moved or replaced during the walk; skipped"))
                    walk.skip()
                    continue
                if item is None:
                    break
                fr, cname, child = item
                sname = os.fsdecode(cname)
                shown = prefix + os.fsdecode(fr.path()) + "/" + sname
                yield OverlayEntry(path=shown, name=sname, stat=child.stat,
                                   depth=fr.depth + 1, _root=self, _node=child)
                if not child.is_dir or (max_depth is not None and fr.depth + 1 >= max_depth):
                    continue
                if walk.enter(cname) is None:
                    warn(WalkWarning(shown, "vanished or replaced during the walk; skipped"))
        except OSError as err:
            # A directory that cannot be entered is an error, not a silently shorter listing.
            if err.errno in (errno.EMFILE, errno.ENFILE):
                raise _fs.emfile(err, self.target, shown) from err
            raise self._translate(err, shown) from err
        finally:
            walk.close()


class _MergedOps:
    """:class:`_fs.WalkOps` over merged directories: the state is a directory :class:`Node`
    holding an fd per layer forming it."""

    def __init__(self, view: MergedView) -> None:
        self.view = view

    def open_child(self, parent: Node, name: bytes) -> Node | None:
        node = self.view.child(parent, name)
        if node is None:
            return None
        if not node.is_dir:
            self.view.release(node)
            return None
        return node

    def key(self, state: Node) -> tuple[int, int]:
        return state.stat.st_dev, state.stat.st_ino

    def fds(self, state: Node) -> int:
        return len(state.parts)

    def close(self, state: Node) -> None:
        self.view.release(state)

    def listing(self, state: Node) -> Iterator[tuple[bytes, Node]]:
        return self.view.iter_entries(state, sort_up_to=SORT_UP_TO)

    def lookup(self, state: Node, name: bytes) -> Node | None:
        return self.view.child(state, name, open_dirs=False)
