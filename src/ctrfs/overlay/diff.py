"""``docker diff`` / ``podman diff`` computed from a container's upper directory, no daemon.

Three rule sets, each reproducing what a runtime's code does (all verified against the runtimes on
a test host, see tests/runtime/test_diff_*.py):

``docker`` — moby's *naive* diff, ``archive.ChangesDirs(container view, parent view)``
(pkg/archive/changes.go ``addChanges`` + changes_unix.go ``statDifferent``), where the parent is
the image plus Docker's ``-init`` layer. dockerd 20.10 answers ``docker diff`` with it even while
``docker info`` says "Native Overlay Diff: true" (observed: a copy-up with no change, e.g.
``chown`` to the same owner, is not reported; a directory deleted and recreated is ``C`` only if
its mode/owner changed). Computed here from the upper dir, since only paths present there can
differ: an entry is ``A`` when the lower view lacks it, ``C`` when mode, uid, gid, rdev,
``security.capability`` or (non-directories) size or mtime differ — mtimes compare equal when
the seconds match and either side has no nanoseconds (tar rounding) — and ``D`` for a lower
entry hidden by a whiteout or by an opaque directory (only the top of a deleted tree is listed).
Every directory holding a change gets ``C`` (not ``/``).

``moby-native`` — moby ``archive.OverlayChanges`` (changes.go ``changes()`` +
changes_linux.go ``overlayDeletedFile``), used by Docker versions that take the native path:
walk the upper dir; a whiteout is ``D``; an opaque directory (``trusted.overlay.opaque`` = ``y``)
is ``D`` and its content is walked as usual; anything else is ``A`` unless the path exists in a
lower layer dir (``os.Stat``, raw layer dirs), then ``C``; a directory equal below in size, mode
and mtime is skipped (its content still walked); an ``A``/``D`` whose parent was not reported
gets ``C parent``.

``podman`` — containers/storage's fork of the same native code (v1.43, podman 4.3 reports
"Native Overlay Diff: true" and uses it): as ``moby-native``, but a lower layer that whites the
path (or a parent) out ends the search with ``A``; an opaque directory is ``D`` only when some
lower layer really holds it; every unreported ancestor gets ``C``, up to ``/`` (past
ancestors already reported, pkg/archive/changes.go ``changes()``); then libpod ``GetDiff`` drops
the mount points podman itself creates (``initInodes``).

Mounts: Docker's ``/etc/hosts``, ``/etc/hostname``, ``/etc/resolv.conf`` and ``/dev/*`` mount
points live in the ``-init`` layer (a lower layer), and writes to them go to the bind-mounted
host file, so they never show; a volume or bind mount point that did not exist in the image is a
directory the daemon creates in the upper dir, and shows as ``A`` (as ``docker diff`` shows it);
what is written inside a mount never reaches the upper dir. ``Change.mount`` names the container
mount covering a path, so such entries can be told apart.

Lower-layer lookups never follow a symlink on the host. moby's native ``os.Stat`` does (an
absolute link resolves against the host root): here links are resolved inside their layer, and
a link whose target is missing there still counts as present (e.g. init's
``/etc/mtab -> /proc/mounts``).
"""

from __future__ import annotations

import errno
import itertools
import os
import stat as st_mod
from collections.abc import Generator, Iterator

from ctrfs._record import dataclass
from ctrfs.errors import CtrfsError, Unsupported, UsageError, translate_oserror
from ctrfs.overlay import _fs
from ctrfs.overlay.layers import LayerStack, layer_stack
from ctrfs.rootfs.base import file_type

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ctrfs.model import Container

# libpod/diff.go initInodes (podman 3.x–5.x): mount points podman itself creates in the upper
# dir; ``podman diff`` hides exactly these paths (not what is below them).
PODMAN_HIDDEN = frozenset({
    "/dev", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/proc", "/run", "/run/notify",
    "/run/.containerenv", "/run/secrets", "/run/podman-init", "/sys", "/etc/mtab",
})

DOCKER = "docker"
MOBY_NATIVE = "moby-native"
PODMAN = "podman"
SEMANTICS = (DOCKER, MOBY_NATIVE, PODMAN)


@dataclass
class Change:
    kind: str  # "A", "C", "D"
    path: str  # inside the container (surrogate-escaped str)
    type: str | None = None  # file, dir, symlink, … of the new entry (of the removed one for D)
    size: int | None = None  # bytes, regular files only
    mount: str | None = None  # the container mount point covering this path, if any
    opaque: bool = False  # a D for a directory deleted and recreated (opaque)

    def __str__(self) -> str:
        return f"{self.kind} {self.path}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "type": self.type, "size": self.size,
                "mount": self.mount, "opaque": self.opaque}


def _same_time(a: os.stat_result, b: os.stat_result) -> bool:
    # moby sameFsTime: equal, or same second with either side lacking nanoseconds (tar rounding).
    if a.st_mtime_ns == b.st_mtime_ns:
        return True
    sa, na = divmod(a.st_mtime_ns, 1_000_000_000)
    sb, nb = divmod(b.st_mtime_ns, 1_000_000_000)
    return sa == sb and (na == 0 or nb == 0)


def _same_time_storage(a: os.stat_result, b: os.stat_result) -> bool:
    # containers/storage sameFSTimePair: also tolerates one side rounded up to the next second.
    if a.st_mtime_ns == b.st_mtime_ns:
        return True
    sa, na = divmod(a.st_mtime_ns, 1_000_000_000)
    sb, nb = divmod(b.st_mtime_ns, 1_000_000_000)
    if na != 0 and nb != 0:
        return False
    return sa == sb or (nb == 0 and sa == sb - 1) or (na == 0 and sa - 1 == sb)


def default_semantics(runtime: str) -> str:
    return PODMAN if runtime in ("podman", "cri-o", "storage") else DOCKER


class _Lower:
    """Per-directory view of one lower layer during the walk."""

    __slots__ = ("fd", "whited")

    def __init__(self, fd: int | None, whited: bool) -> None:
        self.fd = fd  # O_PATH fd of the same directory in this layer, symlinks followed in-layer
        self.whited = whited  # this directory or an ancestor is a whiteout in this layer


def changes(stack: LayerStack, *, semantics: str = DOCKER,
            mount_points: list[str] | None = None) -> Iterator[Change]:
    """Stream the changes of ``stack``'s upper dir against its lower layers."""
    if not stack.is_overlay:
        raise Unsupported(f"root filesystem is {stack.fstype or 'unknown'}, not overlay: "
                          "there is no upper layer to diff", target=stack.target)
    upper = stack.upper
    if upper is None:
        raise Unsupported("overlay root without an upper dir (read-only): nothing can have "
                          "changed", target=stack.target)
    if semantics not in SEMANTICS:
        raise UsageError(f"unknown diff semantics {semantics!r}; one of: {', '.join(SEMANTICS)}")
    podman = semantics == PODMAN
    mounts = sorted((m for m in (mount_points or []) if m != "/"), key=len, reverse=True)
    with translate_oserror(target=stack.target, path=upper.path):
        up_root = os.open(stack.host_path(upper.path), _fs.O_DIR_READ)
    lower_roots: list[_Lower] = []
    try:
        flags = _fs.O_DIR_READ if semantics == DOCKER else _fs.O_DIR_PATH
        for la in stack.lowers:
            try:
                fd = os.open(stack.host_path(la.path), flags)
            except FileNotFoundError:
                fd = None
            except OSError as err:
                raise CtrfsError(f"cannot open lower layer: {err.strerror}", target=stack.target,
                                 path=la.path) from err
            lower_roots.append(_Lower(fd, False))
        budget = _fs.walk_budget(held=1 + len(lower_roots))
        try:
            if semantics == DOCKER:
                parts = [lo.fd for lo in lower_roots if lo.fd is not None]
                yield from _NaiveWalker(stack.target, mounts, budget).run(up_root, parts)
            else:
                yield from _Walker(stack.target, podman, mounts, budget).run(up_root, lower_roots)
        except OSError as err:
            if err.errno in (errno.EMFILE, errno.ENFILE):
                raise _fs.emfile(err, stack.target, upper.path) from err
            raise
    finally:
        os.close(up_root)
        for lo in lower_roots:
            if lo.fd is not None:
                os.close(lo.fd)


class _Mark:
    """Per-directory flags of a diff walk (kept on the walk's frame, not in a set of paths)."""

    __slots__ = ("reported", "opaque")

    def __init__(self, reported: bool, opaque: bool = False) -> None:
        self.reported = reported  # has a line (or, for the native rules, counts as changed)
        self.opaque = opaque


_Listing = list[bytes] | Iterator[tuple[bytes, os.stat_result]]


def _listing(dfd: int) -> _Listing:
    """A directory's entries for the walk. Up to _fs.SORT_UP_TO of them: their names only (no
    stat kept), popped from the end, so in ascending bytes order. A bigger directory streams in
    readdir order, each entry looked up as it comes: its lines are then not sorted, but memory
    stays bounded whatever its size (a million names would cost some 60 MiB)."""
    it = os.scandir(dfd)
    names: list[bytes] = []
    try:
        for e in it:
            names.append(os.fsencode(e.name))
            if len(names) > _fs.SORT_UP_TO:
                return _stream(dfd, names, it)
    except BaseException:
        it.close()
        raise
    it.close()
    names.sort(reverse=True)
    return names


def _stream(dfd: int, first: list[bytes], it: Iterator[os.DirEntry[str]]
            ) -> Iterator[tuple[bytes, os.stat_result]]:
    try:
        for name in itertools.chain(first, (os.fsencode(e.name) for e in it)):
            st = _fs.lstat_at(dfd, name)
            if st is not None:  # vanished meanwhile
                yield name, st
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


_Upper = tuple[int, list[_Lower]]


class _NativeOps:
    """:class:`_fs.WalkOps` for the native rules: an upper dir fd and its lower views."""

    def __init__(self, walker: _Walker) -> None:
        self.walker = walker

    def open_child(self, parent: _Upper, name: bytes) -> _Upper | None:
        fd = _fs.open_dir_at(parent[0], name, _fs.O_DIR_READ)
        if fd is None:
            return None
        return fd, self.walker._descend(parent[1], name)

    def key(self, state: _Upper) -> tuple[int, int]:
        s = os.fstat(state[0])
        return s.st_dev, s.st_ino

    def fds(self, state: _Upper) -> int:
        return 1 + sum(1 for lo in state[1] if lo.fd is not None)

    def close(self, state: _Upper) -> None:
        os.close(state[0])
        for lo in state[1]:
            if lo.fd is not None:
                os.close(lo.fd)

    def listing(self, state: _Upper) -> _Listing:
        return _listing(state[0])

    def lookup(self, state: _Upper, name: bytes) -> os.stat_result | None:
        return _fs.lstat_at(state[0], name)


class _MountPoints:
    """The container's mount points, to tell which one a changed path lies under: the first of
    ``mounts`` (in their order) that is the path or one of its ancestors. A change is looked up
    among the mounts that share its first component only: thousands of changes against the
    dozens of mounts a container has (/proc/..., /sys/..., /dev/...) stay cheap."""

    def __init__(self, mounts: list[str]) -> None:
        self.by_top: dict[str, list[tuple[str, str]]] = {}
        for m in mounts:
            self.by_top.setdefault(m[1:].partition("/")[0], []).append((m, m + "/"))

    def of(self, path: str) -> str | None:
        for m, below in self.by_top.get(path[1:].partition("/")[0], ()):
            if path == m or path.startswith(below):
                return m
        return None


class _Walker:
    def __init__(self, target: str, podman: bool, mounts: list[str], budget: int) -> None:
        self.target = target
        self.podman = podman
        self.mounts = _MountPoints(mounts)
        self.budget = budget

    def _emit(self, kind: str, path: bytes, typ: str | None, size: int | None,
              opaque: bool = False) -> Change | None:
        p = os.fsdecode(path)
        if self.podman and p in PODMAN_HIDDEN:
            return None
        return Change(kind, p, typ, size, self.mounts.of(p), opaque)

    def run(self, up_root: int, lower_roots: list[_Lower]) -> Iterator[Change]:
        # The root state is owned by changes(): TreeWalk never closes its root.
        walk = _fs.TreeWalk(_NativeOps(self), (up_root, lower_roots), budget=self.budget,
                            target=self.target, root_data=_Mark(True))
        try:
            while (item := walk.next()) is not None:
                fr, name, s = item
                assert fr.state is not None
                dfd, lowers = fr.state
                is_dir = st_mod.S_ISDIR(s.st_mode)
                child_fd = None
                if is_dir:
                    child_fd = _fs.open_dir_at(dfd, name, _fs.O_DIR_READ)
                    if child_fd is None:  # replaced by a non-directory since listed
                        is_dir = False
                        s2 = _fs.lstat_at(dfd, name)
                        if s2 is None:
                            continue
                        s = s2
                try:
                    marked = yield from self._classify(fr, name, s, is_dir, child_fd, lowers)
                except BaseException:
                    if child_fd is not None:
                        os.close(child_fd)
                    raise
                if child_fd is not None:
                    try:
                        sub = self._descend(lowers, name)
                    except BaseException:
                        os.close(child_fd)
                        raise
                    walk.enter(name, state=(child_fd, sub), data=_Mark(bool(marked)))
        finally:
            walk.close()

    def _descend(self, lowers: list[_Lower], name: bytes) -> list[_Lower]:
        sub = []
        for lo in lowers:
            if lo.fd is None:
                sub.append(_Lower(None, lo.whited))
                continue
            s = _fs.lstat_at(lo.fd, name)
            if s is None:
                sub.append(_Lower(None, lo.whited))
            elif st_mod.S_ISDIR(s.st_mode):
                sub.append(_Lower(_fs.open_dir_at(lo.fd, name), lo.whited))
            elif st_mod.S_ISLNK(s.st_mode):
                _, fd = _fs.resolve_in_layer(lo.fd, [name], want_dir=True)
                sub.append(_Lower(fd, lo.whited))
            else:
                sub.append(_Lower(None, lo.whited or _fs.is_whiteout(s)))
        return sub

    def _lookup(self, lo: _Lower, name: bytes) -> os.stat_result | None:
        """``os.Stat(<layer>/<dir>/<name>)``, symlinks followed inside the layer."""
        if lo.fd is None:
            return None
        s = _fs.lstat_at(lo.fd, name)
        if s is not None and st_mod.S_ISLNK(s.st_mode):
            t, _ = _fs.resolve_in_layer(lo.fd, [name])
            return t if t is not None else s
        return s

    def _classify(self, fr: _fs.Frame[_Upper], name: bytes, s: os.stat_result, is_dir: bool,
                  dir_fd: int | None, lowers: list[_Lower]) -> Generator[Change, None, bool]:
        """The change lines of one upper entry; True when it is a directory that counts as
        changed (its children's A/D lines then need no C line for it)."""
        kind = None
        opaque = False
        dtype: str | None = None
        if _fs.is_whiteout(s):
            kind = "D"
            for lo in lowers:
                t = self._lookup(lo, name)
                if t is not None and not _fs.is_whiteout(t):
                    dtype = file_type(t.st_mode)
                    break
        elif is_dir and dir_fd is not None and _fs.is_opaque(
                dir_fd, names=_fs.OPAQUE_XATTRS):
            if not self.podman or self._storage_opaque_deleted(name, lowers):
                kind, opaque, dtype = "D", True, "dir"
        if kind is None:
            kind = "A"
            same_time = _same_time_storage if self.podman else _same_time
            for lo in lowers:
                if self.podman and lo.whited:
                    break
                t = self._lookup(lo, name)
                if t is None:
                    continue
                if self.podman and _fs.is_whiteout(t):
                    break
                if (is_dir and st_mod.S_ISDIR(t.st_mode) and t.st_size == s.st_size
                        and t.st_mode == s.st_mode and same_time(s, t)):
                    return False  # the same directory: not a change (content still walked)
                kind = "C"
                break
        out: list[Change] = []
        if kind in ("A", "D"):
            # moby: the parent gets C unless reported. containers/storage goes on up to "/":
            # every ancestor not reported yet gets C, also above one that was (a directory
            # whose own mtime changed is C, and so are its unchanged parents: podman lists
            # C /usr and C /usr/share for a deletion in /usr/share/doc).
            missing: list[_fs.Frame[_Upper]] = []
            f: _fs.Frame[_Upper] | None = fr
            while f is not None and f.parent is not None:
                if not f.data.reported:
                    missing.append(f)
                    f.data.reported = True
                if not self.podman:
                    break
                f = f.parent
            for g in reversed(missing):
                c = self._emit("C", g.path(), "dir", None)
                if c is not None:
                    out.append(c)
        path = fr.path() + b"/" + name
        if kind == "D":
            c = self._emit("D", path, dtype, None, opaque)
        else:
            c = self._emit(kind, path, file_type(s.st_mode),
                           s.st_size if st_mod.S_ISREG(s.st_mode) else None)
        if c is not None:
            out.append(c)
        yield from out
        return is_dir

    def _storage_opaque_deleted(self, name: bytes, lowers: list[_Lower]) -> bool:
        for lo in lowers:
            if lo.whited:
                return False
            t = self._lookup(lo, name)
            if t is not None:
                return not _fs.is_whiteout(t)
        return False


_CAP = "security.capability"
_S_IFDIR = 0o040000


def _stat_different(old: os.stat_result, new: os.stat_result) -> bool:
    # moby changes_unix.go statDifferent. The directory test is ``mode & S_IFDIR == S_IFDIR``,
    # which sockets and block devices also pass: their size and mtime are not compared either.
    if (old.st_mode != new.st_mode or old.st_uid != new.st_uid or old.st_gid != new.st_gid
            or old.st_rdev != new.st_rdev):
        return True
    if old.st_mode & _S_IFDIR != _S_IFDIR:
        return not _same_time(old, new) or old.st_size != new.st_size
    return False


stat_different = _stat_different  # the same rule for two whole trees (ops/compare.py)


def _capability(dir_fd: int, name: bytes) -> bytes | None:
    # lgetxattr through our own directory fd's /proc/self/fd link: only ``name`` is looked up
    # and it is not followed.
    try:
        return os.getxattr(b"/proc/self/fd/%d/%s" % (dir_fd, name), _CAP, follow_symlinks=False)
    except OSError:
        return None


_Naive = tuple[int, list[int]]


class _NaiveOps:
    """:class:`_fs.WalkOps` for the naive rules: an upper dir fd and the lower dirs forming the
    same directory in the image view, top first."""

    def __init__(self, walker: _NaiveWalker) -> None:
        self.walker = walker

    def open_child(self, parent: _Naive, name: bytes) -> _Naive | None:
        fd = _fs.open_dir_at(parent[0], name, _fs.O_DIR_READ)
        if fd is None:
            return None
        try:
            parts = self.walker._lookup(parent[1], name)[2] if parent[1] else []
        except BaseException:
            os.close(fd)
            raise
        return fd, parts

    def key(self, state: _Naive) -> tuple[int, int]:
        s = os.fstat(state[0])
        return s.st_dev, s.st_ino

    def fds(self, state: _Naive) -> int:
        return 1 + len(state[1])

    def close(self, state: _Naive) -> None:
        os.close(state[0])
        for fd in state[1]:
            os.close(fd)

    def listing(self, state: _Naive) -> _Listing:
        return _listing(state[0])

    def lookup(self, state: _Naive, name: bytes) -> os.stat_result | None:
        return _fs.lstat_at(state[0], name)


class _NaiveWalker:
    """moby ChangesDirs(container, image+init) from the upper dir (see module docstring)."""

    def __init__(self, target: str, mounts: list[str], budget: int) -> None:
        self.target = target
        self.mounts = _MountPoints(mounts)
        self.budget = budget

    def _change(self, fr: _fs.Frame[_Naive], kind: str, path: bytes,
                s: os.stat_result | None, opaque: bool = False) -> Iterator[Change]:
        # A change inside a directory that has no line yet gives it (and its unreported
        # ancestors) a C line first, as addChanges inserts it before its children's changes.
        # A reported directory's ancestors are all reported: stop at the first one.
        missing: list[_fs.Frame[_Naive]] = []
        f: _fs.Frame[_Naive] | None = fr
        while f is not None and f.parent is not None and not f.data.reported:
            f.data.reported = True
            missing.append(f)
            f = f.parent
        if missing:
            base = f.path() if f is not None else b""
            for g in reversed(missing):
                base = base + b"/" + g.name
                yield self._mk("C", base, "dir", None)
        size = s.st_size if s is not None and st_mod.S_ISREG(s.st_mode) else None
        yield self._mk(kind, path, file_type(s.st_mode) if s is not None else None, size, opaque)

    def _mk(self, kind: str, path: bytes, typ: str | None, size: int | None,
            opaque: bool = False) -> Change:
        p = os.fsdecode(path)
        return Change(kind, p, typ, size, self.mounts.of(p), opaque)

    def _lookup(self, old: list[int], name: bytes) -> tuple[os.stat_result | None, int | None,
                                                            list[int]]:
        """``name`` in the image view of a directory: (lstat, fd of the layer dir holding it,
        the lower dirs that form it when it is a directory), see :func:`_fs.lookup_in_layers`."""
        found, holder, parts = _fs.lookup_in_layers(((fd, fd) for fd in old), name)
        return found, holder, [fd for _, fd in parts]

    def _old_names(self, old: list[int]) -> Iterator[tuple[bytes, os.stat_result]]:
        """Entries of a directory's image view (whiteouts applied), in no particular order."""
        seen: set[bytes] = set()
        for fd in old:
            with os.scandir(fd) as it:
                for e in it:
                    name = os.fsencode(e.name)
                    if name in seen:
                        continue
                    seen.add(name)
                    try:
                        s = e.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if not _fs.is_whiteout(s):
                        yield name, s

    @staticmethod
    def _close(fds: list[int]) -> None:
        for fd in fds:
            os.close(fd)

    def run(self, up_root: int, lower_roots: list[int]) -> Iterator[Change]:
        # The root state is owned by changes(): TreeWalk never closes its root.
        walk = _fs.TreeWalk(_NaiveOps(self), (up_root, lower_roots), budget=self.budget,
                            target=self.target, root_data=_Mark(True))
        try:
            while (item := walk.next()) is not None:
                fr, name, s = item
                assert fr.state is not None
                dfd, old = fr.state
                if fr.data.opaque and _fs.is_whiteout(s):
                    continue  # whiteouts inside an opaque dir hide nothing below it
                path = fr.path() + b"/" + name
                if _fs.is_whiteout(s):
                    if old:
                        old_s, _, parts = self._lookup(old, name)
                        self._close(parts)
                        if old_s is not None:
                            yield from self._change(fr, "D", path, old_s)
                    continue
                old_s, holder, parts = self._lookup(old, name) if old else (None, None, [])
                is_dir = st_mod.S_ISDIR(s.st_mode)
                reported = False
                try:
                    if old_s is None:
                        yield from self._change(fr, "A", path, s)
                        reported = True
                    elif _stat_different(old_s, s) or (
                            holder is not None
                            and _capability(holder, name) != _capability(dfd, name)):
                        yield from self._change(fr, "C", path, s)
                        reported = True
                    child = _fs.open_dir_at(dfd, name, _fs.O_DIR_READ) if is_dir else None
                except BaseException:
                    self._close(parts)
                    raise
                if child is None:  # not a directory, or replaced since listed
                    self._close(parts)
                    continue
                # An old non-directory has no children: everything below is added.
                sub = walk.enter(name, state=(child, parts), data=_Mark(reported))
                assert sub is not None
                yield from self._enter(sub)
        finally:
            walk.close()

    def _enter(self, fr: _fs.Frame[_Naive]) -> Iterator[Change]:
        """On entering an opaque upper directory, D lines for the image entries it hides (they
        are absent from the container view); its whiteouts are then skipped."""
        assert fr.state is not None
        up, old = fr.state
        if not old or not _fs.is_opaque(up):
            return
        fr.data.opaque = True
        path = fr.path()
        hidden = []
        for n, s in self._old_names(old):
            us = _fs.lstat_at(up, n)
            if us is None or _fs.is_whiteout(us):
                hidden.append((n, s))
        hidden.sort()
        for n, s in hidden:
            yield from self._change(fr, "D", path + b"/" + n, s)


def container_changes(container: Container, *, semantics: str | None = None) -> Iterator[Change]:
    """Every change of a container, streamed in its runtime's walk order (see :func:`changes`):
    its layer stack, with the mount points it has while it runs. ``semantics`` None or "auto"
    picks the container's runtime's rules."""
    stack = layer_stack(container)
    mount_points: list[str] = []
    if container.pid is not None:
        try:
            mount_points = [m.mount_point for m in container.mounts()]
        except CtrfsError:  # gone since it was found: its upper dir still says what changed
            mount_points = []
    sem = default_semantics(container.runtime) if semantics in (None, "auto") else semantics
    return changes(stack, semantics=sem, mount_points=mount_points)
