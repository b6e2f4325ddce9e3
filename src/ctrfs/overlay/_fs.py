"""fd-relative reading of overlay layer directories on the host.

Layer directories are host directories whose content the container (upper) or the image
(lowers) controls. Nothing here follows a symlink with the kernel: names are looked up one at a
time with ``*at()`` calls and ``O_NOFOLLOW``; where a runtime's semantics need a symlink followed,
:func:`resolve_in_layer` does it by hand with the layer directory as ``/``.
"""

from __future__ import annotations

import errno
import os
import resource
import stat as st_mod
from collections import deque
from collections.abc import Iterable, Iterator

from ctrfs.errors import CtrfsError

# typing is the type checker's only: importing it costs ~6 ms of every start, and a hot command
# (cat, ls, stat) imports this module. Run time needs no type parameters (annotations are never
# evaluated here), so Frame and TreeWalk subclass a stand-in for Generic that ignores them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Generic, Protocol, TypeVar

    K = TypeVar("K")
    S = TypeVar("S")
else:
    class Generic:
        __slots__ = ()

        def __class_getitem__(cls, _params):
            return cls

    S = None

# O_PATH fds are enough for fstatat/openat/readlinkat relative to a directory; reading entries
# (fdopendir) and fgetxattr need a real O_RDONLY fd.
O_DIR_PATH = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
O_DIR_READ = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK

# overlayfs marks an opaque directory with this xattr = "y"; with the ``userxattr`` mount option
# (rootless) the ``user.`` namespace is used instead (Documentation/filesystems/overlayfs.rst,
# "whiteouts and opaque directories"). Kernel >= 6.7 also writes "x" on directories that merely
# *contain* xwhiteouts: that value does not make a directory opaque.
OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")

_SYMLINK_BUDGET = 40  # Linux's MAXSYMLINKS


def is_whiteout(st: os.stat_result) -> bool:
    """An overlayfs whiteout: a character device with device number 0/0."""
    return st_mod.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(dir_fd: int, *, names: tuple[str, ...] = OPAQUE_XATTRS) -> bool:
    for name in names:
        try:
            if os.getxattr(dir_fd, name) == b"y":
                return True
        except OSError as err:
            if err.errno in (errno.ENODATA, errno.ENOTSUP, errno.EPERM, errno.EACCES):
                continue
            raise
    return False


def lstat_at(dir_fd: int, name: bytes) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None


def open_dir_at(dir_fd: int, name: bytes, flags: int = O_DIR_PATH) -> int | None:
    """Open sub-directory ``name`` (never through a symlink); None when it is not a directory."""
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        if err.errno == errno.ELOOP:  # a symlink (O_NOFOLLOW)
            return None
        raise


def lookup_in_layers(layers: Iterable[tuple[K, int]], name: bytes, *, open_dirs: bool = True
                     ) -> tuple[os.stat_result | None, K | None, list[tuple[K, int]]]:
    """``name`` in a directory made of layer dirs (top first, each ``(key, fd)``), by overlayfs's
    lookup rules: a whiteout ends the search; a directory merges with same-named directories
    below until an opaque one or a non-directory. Returns (lstat of the visible entry, key of the
    layer holding it, the ``(key, fd)`` of the directories forming it; the caller owns those fds).
    ``open_dirs`` False stops at the visible entry without opening anything."""
    found: os.stat_result | None = None
    holder: K | None = None
    parts: list[tuple[K, int]] = []
    for key, fd in layers:
        s = lstat_at(fd, name)
        if s is None:
            continue
        if is_whiteout(s):
            break
        if found is None:
            found, holder = s, key
            if not st_mod.S_ISDIR(s.st_mode) or not open_dirs:
                break
        elif not st_mod.S_ISDIR(s.st_mode):
            break
        sub = open_dir_at(fd, name, O_DIR_READ)
        if sub is None:
            break
        parts.append((key, sub))
        if is_opaque(sub):
            break
    return found, holder, parts


def split(path: bytes) -> list[bytes]:
    return [p for p in path.split(b"/") if p and p != b"."]


def resolve_in_layer(root_fd: int, parts: list[bytes], *, follow_final: bool = True,
                     want_dir: bool = False) -> tuple[os.stat_result | None, int | None]:
    """Look ``parts`` up inside one layer directory, following symlinks with the layer as ``/``.

    Returns (stat of what was found or None, an O_PATH fd of it when ``want_dir`` and it is a
    directory, else None). ``..`` never climbs above the layer. Errors other than "missing"
    propagate.
    """
    stack = [os.dup(root_fd)]  # fds of the directories from the layer root down
    todo = list(reversed(parts))
    budget = _SYMLINK_BUDGET
    try:
        while todo:
            name = todo.pop()
            last = not todo
            if name == b"..":
                if len(stack) > 1:
                    os.close(stack.pop())
                if last:
                    return os.fstat(stack[-1]), (os.dup(stack[-1]) if want_dir else None)
                continue
            cur = stack[-1]
            s = lstat_at(cur, name)
            if s is None:
                return None, None
            if st_mod.S_ISLNK(s.st_mode) and (not last or follow_final):
                budget -= 1
                if budget < 0:
                    return None, None
                target = os.readlink(name, dir_fd=cur)
                if target.startswith(b"/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                todo.extend(reversed(split(target)))
                if not todo:  # link to "/" or "."
                    return os.fstat(stack[-1]), (os.dup(stack[-1]) if want_dir else None)
                continue
            if last:
                if want_dir and st_mod.S_ISDIR(s.st_mode):
                    fd = open_dir_at(cur, name)
                    return s, fd
                return s, None
            if not st_mod.S_ISDIR(s.st_mode):
                return None, None
            fd = open_dir_at(cur, name)
            if fd is None:
                return None, None
            stack.append(fd)
        return os.fstat(stack[-1]), (os.dup(stack[-1]) if want_dir else None)
    finally:
        for fd in stack:
            os.close(fd)


def raise_fd_limit() -> None:
    """Deep trees hold one fd per level (plus one per lower layer): use the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def fd_budget() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return int(soft)


# -- bounded walks --------------------------------------------------------------------------------
#
# A tree 10,000 directories deep must be walkable with RLIMIT_NOFILE 64 and memory linear in the
# depth. Only the deepest directories of the walk (a window sized by the fd budget) keep their
# fds and directory iterators; a directory pushed out of the window has the rest of its listing
# kept as names and its fds closed. When the walk comes back to it with names left, it is
# re-opened one component at a time (O_NOFOLLOW|O_DIRECTORY) from the nearest ancestor still
# open, and each re-opened directory must be the inode first met there (dev, ino), so a
# directory moved or replaced meanwhile is detected instead of walked. Paths are not stored per
# level: each frame holds its name and its parent.

# Directories up to this many entries are walked in name order (stable output); bigger ones
# stream in the order the filesystem gives, so memory stays bounded whatever their size.
SORT_UP_TO = 4096

if TYPE_CHECKING:  # a Protocol: what TreeWalk needs of its ops, for the type checker
    class WalkOps(Protocol[S]):
        """How one kind of walk opens, lists and closes its directories (``S``: a directory's open
        state, e.g. an fd, or fds in several layers)."""

        def open_child(self, parent: S, name: bytes) -> S | None: ...  # None: no longer a dir
        def key(self, state: S) -> tuple[int, int]: ...  # (st_dev, st_ino) of the directory
        def fds(self, state: S) -> int: ...  # fds ``state`` holds
        def close(self, state: S) -> None: ...
        # Entries as (name, item) where item is what lookup() gives (a stat, a merged node...).
        def listing(self, state: S) -> Iterator[tuple[bytes, Any]] | list[bytes]: ...
        def lookup(self, state: S, name: bytes) -> Any | None: ...  # None: vanished


class Moved(CtrfsError):
    """A directory the walk left and came back to is no longer the same inode at that name."""


class Frame(Generic[S]):
    __slots__ = ("parent", "name", "key", "state", "it", "pending", "depth", "cost", "data",
                 "names", "cpath")

    def __init__(self, parent: Frame[S] | None, name: bytes, key: tuple[int, int],
                 state: S | None, depth: int, data: Any = None,
                 names: list[bytes] | None = None) -> None:
        self.parent = parent
        self.name = name
        self.key = key
        self.state = state
        self.it: Iterator[tuple[bytes, Any]] | None = None
        self.pending: list[bytes] | None = None  # names left, popped from the end
        self.depth = depth
        self.cost = 0
        self.data = data
        self.names = names  # the walk's names of the frames on its stack (b"" first)
        # The path, kept only while the frame holds fds (a window of the deepest levels), so
        # memory does not grow with depth squared.
        self.cpath: bytes | None = b"" if parent is None else None

    def path(self) -> bytes:
        """``/a/b/c`` relative to the walk's start (b"" for the start)."""
        if self.cpath is not None:
            return self.cpath
        if self.names is not None and len(self.names) > self.depth:
            return b"/".join(self.names[:self.depth + 1])
        names: list[bytes] = []
        f: Frame[S] | None = self
        while f is not None and f.parent is not None:
            names.append(f.name)
            f = f.parent
        names.append(b"")
        return b"/".join(reversed(names))


class TreeWalk(Generic[S]):
    """Pre-order walk driven by the caller: :meth:`next` gives (directory frame, name, item) with
    the frame's state open; :meth:`enter` descends into the last name given."""

    def __init__(self, ops: WalkOps[S], root: S, *, budget: int, target: str | None = None,
                 root_data: Any = None) -> None:
        self.ops = ops
        self.budget = max(budget, 8)
        self.target = target
        self.names: list[bytes] = [b""]
        self.root = Frame(None, b"", ops.key(root), root, 0, root_data, self.names)
        self.frames: list[Frame[S]] = [self.root]
        self.open: deque[Frame[S]] = deque()  # frames below the root holding fds, by depth
        self.anchors: list[Frame[S]] = []  # frames left open out of the window (see _evict)
        self.anchor_used = 0
        self.used = 0

    @property
    def top(self) -> Frame[S]:
        return self.frames[-1]

    def _start(self, fr: Frame[S]) -> None:
        assert fr.state is not None
        lst = self.ops.listing(fr.state)
        if isinstance(lst, list):
            fr.pending = lst
        else:
            fr.it = lst
            if fr is not self.root:
                fr.cost += 1  # the iterator's own duplicate of the directory fd
                self.used += 1

    def _evict(self, keep: Frame[S] | None, need: int) -> None:
        while self.used + need > self.budget and self.open and self.open[0] is not keep:
            fr = self.open.popleft()
            if fr.it is not None:
                names = [n for n, _ in fr.it]
                names.reverse()
                close = getattr(fr.it, "close", None)
                if close is not None:
                    close()
                fr.it = None
                fr.pending = names
                fr.cost -= 1
                self.used -= 1
            # Frames leaving the window stay open as anchors, thinned to a bounded number
            # spread over the depth (the one closest to its neighbours goes first), so
            # re-opening a directory walks down from a near anchor, not from the start. Anchors
            # are all shallower than the window: appending keeps them ordered by depth.
            self.anchors.append(fr)
            self.anchor_used += fr.cost
            while self.anchor_used > self.budget // 3 and self.anchors:
                self._thin()

    def _thin(self) -> None:
        a = self.anchors
        below = self.open[0].depth if self.open else a[-1].depth + 1
        best, best_gap = 0, None
        for i in range(len(a)):
            lo = a[i - 1].depth if i else 0
            hi = a[i + 1].depth if i + 1 < len(a) else below
            if best_gap is None or hi - lo < best_gap:
                best, best_gap = i, hi - lo
        fr = a.pop(best)
        self.anchor_used -= fr.cost
        self._close_frame(fr)

    def _close_frame(self, fr: Frame[S]) -> None:
        assert fr.state is not None
        self.ops.close(fr.state)
        fr.state = None
        fr.cpath = None
        self.used -= fr.cost
        fr.cost = 0

    def _opened(self, fr: Frame[S]) -> None:
        assert fr.state is not None
        fr.cost = self.ops.fds(fr.state)
        self.used += fr.cost
        self.open.append(fr)

    def _reopen(self, fr: Frame[S]) -> None:
        chain = []
        f: Frame[S] | None = fr
        while f is not None and f.state is None:
            chain.append(f)
            f = f.parent
        assert f is not None and f.state is not None
        for c in reversed(chain):
            assert c.parent is not None and c.parent.state is not None
            self._evict(c.parent, self.ops.fds(c.parent.state) + 1)
            state = self.ops.open_child(c.parent.state, c.name)
            if state is not None and self.ops.key(state) != c.key:
                self.ops.close(state)
                state = None
            if state is None:
                raise Moved("directory moved or replaced during the walk", target=self.target,
                            path=os.fsdecode(c.path()) or "/")
            c.state = state
            if c.parent.cpath is not None:
                c.cpath = c.parent.cpath + b"/" + c.name
            self._opened(c)

    def next(self) -> tuple[Frame[S], bytes, Any] | None:
        """The next entry, or None at the end. Raises :class:`Moved` for a directory that moved
        while out of the window; :meth:`skip` it and call again to go on."""
        while self.frames:
            fr = self.frames[-1]
            if fr.it is None and fr.pending is None:
                self._start(fr)
            if fr.it is not None:
                item = next(fr.it, None)
                if item is not None:
                    return fr, item[0], item[1]
                close = getattr(fr.it, "close", None)
                if close is not None:
                    close()
                fr.it = None
                fr.pending = []
                continue
            assert fr.pending is not None
            if fr.pending:
                if fr.state is None:
                    self._reopen(fr)
                assert fr.state is not None
                name = fr.pending.pop()
                item = self.ops.lookup(fr.state, name)
                if item is None:
                    continue
                return fr, name, item
            self._pop()
        return None

    def skip(self) -> None:
        """Abandon the current directory (the rest of its entries)."""
        self._pop()

    def enter(self, name: bytes, state: S | None = None, data: Any = None) -> Frame[S] | None:
        """Descend into ``name`` of the current directory (or adopt ``state``, already opened
        there by the caller); None when it is no longer a directory."""
        parent = self.frames[-1]
        assert parent.state is not None
        if state is None:
            self._evict(parent, self.ops.fds(parent.state) + 1)
            state = self.ops.open_child(parent.state, name)
            if state is None:
                return None
        fr = Frame(parent, name, self.ops.key(state), state, parent.depth + 1, data, self.names)
        if parent.cpath is not None:
            fr.cpath = parent.cpath + b"/" + name
        self.frames.append(fr)
        self.names.append(name)
        self._opened(fr)
        self._evict(fr, 1)
        return fr

    def _pop(self) -> None:
        fr = self.frames.pop()
        if len(self.names) > 1:
            self.names.pop()
        if fr.it is not None:
            close = getattr(fr.it, "close", None)
            if close is not None:
                close()
            fr.it = None
        fr.pending = []
        if fr is self.root:
            return
        if fr.state is not None:
            if self.open and self.open[-1] is fr:
                self.open.pop()
            elif fr in self.anchors:
                self.anchors.remove(fr)
                self.anchor_used -= fr.cost
            else:
                self.open.remove(fr)
            self._close_frame(fr)

    def close(self) -> None:
        while self.frames:
            self._pop()


def walk_budget(held: int = 0) -> int:
    """fds a bounded walk may use: the limit less what the process already needs around it."""
    raise_fd_limit()
    return fd_budget() - 24 - held


def emfile(err: OSError, target: str | None, path: str | None) -> CtrfsError:
    return CtrfsError(f"out of file descriptors ({os.strerror(err.errno or 0)}); raise "
                      "`ulimit -n`", target=target, path=path)


class FdOps:
    """:class:`WalkOps` of one plain directory tree (a layer dir): the state is an O_RDONLY fd."""

    def open_child(self, parent: int, name: bytes) -> int | None:
        return open_dir_at(parent, name, O_DIR_READ)

    def key(self, state: int) -> tuple[int, int]:
        s = os.fstat(state)
        return s.st_dev, s.st_ino

    def fds(self, state: int) -> int:
        return 1

    def close(self, state: int) -> None:
        os.close(state)

    def listing(self, state: int) -> Iterator[tuple[bytes, Any]]:
        with os.scandir(state) as it:
            for e in it:
                try:
                    s = e.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                yield os.fsencode(e.name), s

    def lookup(self, state: int, name: bytes) -> os.stat_result | None:
        return lstat_at(state, name)
