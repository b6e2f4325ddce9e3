"""cp TARGET:PATH DEST: copy a file or a tree out of a container onto the host.

Every name is created with ``*at()`` calls relative to a directory fd this copy created itself,
inside a fresh private temporary directory next to DEST; names come from directory listings
(single components, never ``/``, ``.`` or ``..``), so nothing can be written outside DEST
(the kubectl cp / podman cp CVEs of docs/security.md). The result is renamed to DEST only when
complete; on any failure (including the container going away) the temporary tree is removed.
Setuid/setgid bits and extended attributes (file capabilities) are dropped unless
``preserve_all``; device nodes and sockets are skipped then too.

The per-entry work of a tree on the private nodev clone of the container's root (directories,
symlinks and regular files of one link) is done by the C core ``ctrfs._native.copy_tree`` when it
is built, as for export; everything else (hard links, sparse files, FIFOs, devices, the mounts the
container's view follows, any error) comes back to :meth:`_Copier.add`, the reference, which
copies every entry itself under ``CTRFS_NATIVE=0``, with ``preserve_all`` and on every other Root.
"""

from __future__ import annotations

import errno
import itertools
import os
import shutil
import stat as stat_mod
import tempfile

from ctrfs._record import dataclass
from ctrfs.errors import CtrfsError, NotFound, UsageError
from ctrfs.ops.archive import (
    SENDFILE_MAX,
    SKIP_XATTR_PREFIXES,
    SMALL_FILE,
    CoreHooks,
    ProgressFn,
    data_segments,
    native_enabled,
    open_start,
)
from ctrfs.ops.listing import text
from ctrfs.rootfs.base import (
    Entry,
    NotRegularFile,
    PathArg,
    PseudoFilter,
    Root,
    WalkWarning,
    WarnFn,
    base_name,
    norm_path,
)
from ctrfs.rootfs.fd import FdEntry, FdRoot, stream_levels
from ctrfs.rootfs.resolve import resolve as resolve_in
from ctrfs.rootfs.view import ContainerView

try:
    from ctrfs import _native  # the C core (see the module docstring); None where not built
except ImportError:
    _native = None  # type: ignore[assignment]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
COPY_CHUNK = 1 << 20
_NO_KERNEL_COPY = frozenset({errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP,
                             errno.EBADF})


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data):]


@dataclass
class CopyResult:
    source: str
    dest: str
    entries: int = 0
    bytes: int = 0
    warnings: int = 0
    core: str = "python"  # "c" when the C core copied the tree (see _CopyHooks)

    def to_dict(self) -> dict[str, Any]:
        return {"source": text(self.source), "dest": text(self.dest), "entries": self.entries,
                "bytes": self.bytes, "warnings": self.warnings, "core": self.core}


def plan_dest(src: str, dest: str) -> str:
    """docker cp's rule: an existing directory DEST receives SRC under its base name;
    otherwise DEST is the new name (its parent must exist)."""
    base = base_name(src)
    if os.path.isdir(dest) and base:
        return os.path.join(dest, base)
    parent = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(parent):
        raise UsageError(f"destination directory {parent!r} does not exist")
    return dest


class _Copier:
    def __init__(self, root: Root, tmpfd: int, *, preserve_all: bool, warn: WarnFn,
                 progress: ProgressFn | None, result: CopyResult) -> None:
        self.root = root
        self.tmpfd = tmpfd
        self.preserve_all = preserve_all
        self.warn_fn = warn
        self.progress = progress
        self.result = result
        self.as_root = os.geteuid() == 0
        # (dev, ino) → [path of the first copy relative to tmpfd, links still expected]
        self.links: dict[tuple[int, int], list[Any]] = {}
        self.cur = os.dup(tmpfd)
        # directories entered (name, lstat, entry for its xattrs), for "cd .."
        self.stack: list[tuple[str, os.stat_result, Entry]] = []
        self.names: list[str] = []  # path of self.cur below tmpfd
        self.kernel_copy: str | None = "copy_file_range"  # then "sendfile", then None

    def warn(self, path: str, message: str) -> None:
        self.warn_fn(WalkWarning(path, message))  # counted by copy_out's warn

    def up(self) -> None:
        _name, st, entry = self.stack.pop()
        self._meta(self.cur, st, entry=entry)  # every entry is in it now: its times last
        parent = os.open("..", _O_DIR & ~os.O_NOFOLLOW, dir_fd=self.cur)
        os.close(self.cur)
        self.cur = parent
        self.names.pop()

    def _meta(self, name: str | int, st: os.stat_result, *, is_link: bool = False,
              entry: Entry | None = None) -> None:
        """Owner, mode, xattrs and times of the copy ``name`` (in the current directory), or of
        the open file ``name`` is (an fd: no lookup by name, three fewer per file)."""
        # Order matters: chown clears setuid/setgid and security.capability (chown(2),
        # capabilities(7)), so mode and xattrs come after it, and mtime last.
        if self.as_root:
            if isinstance(name, int):
                os.fchown(name, st.st_uid, st.st_gid)
            else:
                os.chown(name, st.st_uid, st.st_gid, dir_fd=self.cur, follow_symlinks=False)
        if not is_link:  # Linux has no lchmod; a symlink's own mode is always 0777
            mode = stat_mod.S_IMODE(st.st_mode)
            if not self.preserve_all:
                mode &= ~(stat_mod.S_ISUID | stat_mod.S_ISGID)
            if isinstance(name, int):
                os.fchmod(name, mode)
            else:
                os.chmod(name, mode, dir_fd=self.cur)
        if entry is not None:
            self._xattrs(entry, name)
        if isinstance(name, int):
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns))
        else:
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=self.cur,
                     follow_symlinks=False)

    def _xattrs(self, entry: Entry, name: str | int) -> None:
        if not self.preserve_all:
            return
        try:
            attrs = entry.xattrs()
        except CtrfsError:
            return
        path = name if isinstance(name, int) else f"/proc/self/fd/{self.cur}/{name}"
        for k, v in attrs.items():
            if k.startswith(SKIP_XATTR_PREFIXES):
                continue
            try:
                os.setxattr(path, k, v, follow_symlinks=isinstance(name, int))
            except OSError as err:
                self.warn(entry.path, f"extended attribute {k} not restored: {err.strerror}")

    def add(self, e: Entry, name: str) -> None:
        while len(self.stack) > e.depth:
            self.up()
        st = e.stat
        mode = st.st_mode
        cur = self.cur
        if stat_mod.S_ISDIR(mode):
            os.mkdir(name, 0o700, dir_fd=cur)
            self.cur = os.open(name, _O_DIR, dir_fd=cur)
            os.close(cur)
            self.stack.append((name, st, e))
            self.names.append(name)
        elif stat_mod.S_ISLNK(mode):
            try:
                target = e.readlink()
            except NotFound:
                self.warn(e.path, "vanished during the copy; skipped")
                return
            os.symlink(target, name, dir_fd=cur)
            self._meta(name, st, is_link=True)
        elif stat_mod.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.links and self._link(key, name):
                return
            self._file(e, name)
            if st.st_nlink > 1:
                self.links[key] = ["/".join([*self.names, name]), st.st_nlink - 1]
        elif stat_mod.S_ISFIFO(mode):
            os.mkfifo(name, 0o600, dir_fd=cur)
            self._meta(name, st)
        elif (stat_mod.S_ISCHR(mode) or stat_mod.S_ISBLK(mode)) and self.preserve_all:
            os.mknod(name, stat_mod.S_IFMT(mode) | 0o600, st.st_rdev, dir_fd=cur)
            self._meta(name, st)
        else:
            self.warn(e.path, f"{e.kind} not copied" + (
                "" if stat_mod.S_ISSOCK(mode) else " (use --preserve-all to create device nodes)"))
            return
        self.result.entries += 1
        if self.progress is not None:
            self.progress(self.result.entries, self.result.bytes)

    def _link(self, key: tuple[int, int], name: str) -> bool:
        first = self.links[key]
        parent, _, fname = first[0].rpartition("/")
        # The first copy's directory, resolved inside our own temp tree (no symlink can lead
        # elsewhere: resolution is confined to tmpfd).
        pfd = resolve_in(self.tmpfd, os.fsencode(parent or "."), follow=False)
        try:
            os.link(fname, name, src_dir_fd=pfd, dst_dir_fd=self.cur, follow_symlinks=False)
        except OSError as err:
            if err.errno in (errno.EMLINK, errno.EXDEV):
                return False
            raise
        finally:
            os.close(pfd)
        first[1] -= 1
        if first[1] <= 0:
            del self.links[key]
        self.result.entries += 1
        return True

    def _file(self, e: Entry, name: str) -> None:
        try:
            src = e.open_fd()
        except (NotFound, NotRegularFile):
            self.warn(e.path, "vanished or replaced during the copy; skipped")
            return
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=self.cur)
            try:
                self._data(e, src, fd)
                self._meta(fd, e.stat, entry=e)
            finally:
                os.close(fd)
        finally:
            os.close(src)

    def _data(self, e: Entry, src: int, dst: int) -> None:
        """``e``'s listed size of data from ``src`` to ``dst``: holes kept as holes, a file
        that shrank meanwhile zero-filled, one that grew cut at the listed size."""
        size = e.stat.st_size
        if size <= SMALL_FILE:
            # One pread for the data and the growth check (a byte more than listed).
            data = os.pread(src, size + 1, 0) if size else b""
            while len(data) < size:
                more = os.pread(src, size + 1 - len(data), len(data))
                if not more:
                    break
                data += more
            grew = len(data) > size
            expected = size
            got = min(len(data), size)
            _write_all(dst, memoryview(data)[:got])
        else:
            segs = data_segments(src, size) if e.stat.st_blocks * 512 < size else None
            if segs is None:
                segs = [(0, size)]
            expected = sum(n for _, n in segs)
            got = 0
            for off, n in segs:
                if n:
                    k = self._range(src, dst, off, n)
                    got += k
                    if k < n:
                        break  # end of file: it shrank
            grew = bool(os.pread(src, 1, size))
        if got < size:
            os.ftruncate(dst, size)  # holes, and zeros where the file shrank
        self.result.bytes += got
        if self.progress is not None:
            self.progress(self.result.entries, self.result.bytes)
        if got < expected:
            self.warn(e.path, f"shrank by {expected - got} bytes while read; zero-padded")
        elif grew:
            self.warn(e.path, "grew while read; copied the size it had when listed")

    def _range(self, src: int, dst: int, off: int, count: int) -> int:
        """Copy ``count`` bytes at ``off`` from ``src`` to the same offset of ``dst``, in the
        kernel where it can; fewer if ``src`` ends first. Returns the bytes copied."""
        got = 0
        while got < count:
            pos = off + got
            try:
                if self.kernel_copy == "copy_file_range":
                    k = os.copy_file_range(src, dst, count - got, pos, pos)
                elif self.kernel_copy == "sendfile":
                    os.lseek(dst, pos, os.SEEK_SET)
                    k = os.sendfile(dst, src, pos, min(count - got, SENDFILE_MAX))
                else:
                    chunk = os.pread(src, min(count - got, COPY_CHUNK), pos)
                    k = len(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.pwrite(dst, view, pos + k - len(view)):]
            except OSError as err:
                # copy_file_range(2) refuses to cross filesystems (EXDEV: a container's overlay
                # to the host's disk) on most kernels; sendfile(2) copies file to file in the
                # kernel anyway. Whatever neither can do, reads and writes do.
                if self.kernel_copy is None or err.errno not in _NO_KERNEL_COPY:
                    raise
                self.kernel_copy = "sendfile" if self.kernel_copy == "copy_file_range" else None
                continue
            if k == 0:
                break
            got += k
        return got

    def finish(self) -> None:
        while self.stack:
            self.up()
        os.close(self.cur)
        self.cur = -1

    def sub(self, dstfd: int, names: list[str], entries: Iterable[Entry]) -> None:
        """Copy ``entries`` (a walk's, depths from 0) into the directory ``dstfd`` (the copy
        at ``names`` below the temporary directory), as :meth:`add` does: the C core hands
        over what it leaves to the reference this way. The copier's own place is kept."""
        saved = self.cur, self.stack, self.names
        self.cur, self.stack, self.names = os.dup(dstfd), [], list(names)
        try:
            for e in entries:
                self.add(e, e.name)
            while self.stack:
                self.up()
        finally:
            os.close(self.cur)
            self.cur, self.stack, self.names = saved


class _CopyHooks(CoreHooks):
    """What the C core of cp calls back (src/ctrfs/_native.c, copy_tree): the entries it does
    not copy itself go to :meth:`member`, i.e. to :meth:`_Copier.add`; the mounts the
    container's view follows (whose mount points' inodes the core is given) and directories
    deeper than LEVELS are copied by the Python walk from their path."""

    # Directory levels the core keeps open, two fds each (the source and its copy), at most;
    # fewer under a low RLIMIT_NOFILE, so that the Python walk below them has its share.
    LEVELS = 32

    def __init__(self, c: _Copier, root: Root, fast: FdRoot, first: FdEntry,
                 one_filesystem: bool) -> None:
        super().__init__(fast, root, first, c.warn_fn, c.result, c.progress)
        self.first: FdEntry = first
        self.c = c
        self.one_filesystem = one_filesystem
        self.names = list(c.names)  # where the start's copy is below the temporary directory

    def run(self) -> None:
        assert _native is not None
        dfd = open_start(self.fast, self.first)
        try:
            covered: list[tuple[int, int]] = []
            if isinstance(self.root, ContainerView) and not self.one_filesystem:
                covered = sorted(self.root.covered)
            try:
                levels = max(1, min(self.LEVELS, stream_levels() // 2))
                _native.copy_tree(dfd, self.c.cur, self, levels, self.c.as_root, covered)
            except OSError as err:
                if err.filename is not None:
                    raise  # the copy's side (the host's disk), as the reference raises it
                raise self.fast._translate(err, self.first.path) from err
        finally:
            os.close(dfd)

    def _names(self, rel: bytes) -> list[str]:
        return [*self.names, *os.fsdecode(rel).split("/")[:-1]]

    def member(self, srcdirfd: int, dstdirfd: int, name: bytes, st: tuple[Any, ...], depth: int,
               rel: bytes, covered: bool) -> None:
        if covered:
            self._tree(dstdirfd, rel, None)
            return
        e = FdEntry(path=self._path(rel), name=os.fsdecode(name), stat=os.stat_result(st),
                    depth=0, _root=self.fast, _dirfd=srcdirfd)
        self.c.sub(dstdirfd, self._names(rel), [e])

    def deep(self, rel: bytes, dev: int, ino: int, depth: int, dstdirfd: int) -> None:
        self._tree(dstdirfd, rel, (dev, ino))

    def _tree(self, dstdirfd: int, rel: bytes, ident: tuple[int, int] | None) -> None:
        """What the container's view shows at ``rel`` and below (a followed mount: its own
        content), or the directory the core listed as ``ident`` if it still is that one."""
        path = self._path(rel)
        warn = self.c.warn_fn
        walk = self.root.walk(path, follow=False, one_filesystem=self.one_filesystem,
                              on_warning=warn)
        try:
            try:
                top = next(walk)
            except NotFound:
                warn(WalkWarning(path, "vanished during the walk; skipped"))
                return
            if ident is not None and (top.stat.st_dev, top.stat.st_ino) != ident:
                warn(WalkWarning(path, "replaced during the walk; skipped"))
                return
            pseudo = PseudoFilter(warn)
            self.c.sub(dstdirfd, self._names(rel),
                       (e for e in itertools.chain((top,), walk) if not pseudo.skip(e)))
        finally:
            walk.close()  # type: ignore[attr-defined]


def _native_start(e: Entry, preserve_all: bool) -> FdRoot | None:
    """The Root the C core may copy from ``e`` (the start of the walk): the direct-open FdRoot
    (the private nodev clone, no submounts) that yielded it, a directory. Not with
    ``preserve_all``: extended attributes and device nodes are the reference's alone."""
    if preserve_all or not native_enabled() or not isinstance(e, FdEntry) or not e.is_dir():
        return None
    fast = e._root
    if fast is not None and fast.direct_open and e._fd >= 0:
        return fast
    return None


def copy_out(root: Root, src: PathArg, dest: str, *, follow: bool = False,
             preserve_all: bool = False, one_filesystem: bool = False,
             on_warning: WarnFn | None = None, progress: ProgressFn | None = None) -> CopyResult:
    """Copy ``src`` (a file, symlink or tree; ``follow`` dereferences a symlink given as
    ``src``, like docker cp -L) to the host path ``dest``. Returns what was copied.
    ``one_filesystem`` keeps to ``src``'s own mount (see :meth:`Root.walk`)."""
    shown = norm_path(src)
    final = plan_dest(shown, dest)
    result = CopyResult(shown, final)

    def warn(w: WalkWarning) -> None:  # every warning counts, the walk's as the copy's
        result.warnings += 1
        if on_warning is not None:
            on_warning(w)
    st = root.stat(src) if follow else root.lstat(src)
    if stat_mod.S_ISDIR(st.st_mode) and os.path.lexists(final):
        raise UsageError(f"{final!r} already exists; remove it or choose another destination")
    parent = os.path.dirname(os.path.abspath(final))
    tmp = tempfile.mkdtemp(prefix=".ctrfs-cp-", dir=parent)
    tmpfd = os.open(tmp, _O_DIR)
    done = False
    c: _Copier | None = None
    try:
        c = _Copier(root, tmpfd, preserve_all=preserve_all, warn=warn, progress=progress,
                    result=result)
        pseudo = PseudoFilter(c.warn_fn)
        walk = root.walk(src, follow=follow, one_filesystem=one_filesystem, on_warning=c.warn_fn)
        try:
            for e in walk:
                if pseudo.skip(e):
                    continue
                c.add(e, "data" if e.depth == 0 else e.name)
                fast = _native_start(e, preserve_all) if e.depth == 0 else None
                if fast is not None and pseudo.prefix is None:
                    result.core = "c"
                    assert isinstance(e, FdEntry)
                    _CopyHooks(c, root, fast, e, one_filesystem).run()
                    break
        finally:
            walk.close()  # type: ignore[attr-defined]
        c.finish()
        root.check_alive()
        if not os.path.lexists(os.path.join(tmp, "data")):
            raise CtrfsError("nothing was copied", target=root.target, path=shown)
        os.rename(os.path.join(tmp, "data"), final)
        done = True
    finally:
        if c is not None and c.cur >= 0:
            os.close(c.cur)
        os.close(tmpfd)
        shutil.rmtree(tmp, ignore_errors=not done)
    return result
