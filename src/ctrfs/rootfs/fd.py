"""Root implementations over a directory fd: the common machinery of ProcRoot and DirRoot.

Everything is fd-relative (docs/conventions.md rule 7, after CPython's ``shutil._rmtree_safe_fd``): a path
is resolved once to an ``O_PATH`` fd, metadata comes from ``fstat`` on it, content from a
re-open of that very fd through ``/proc/self/fd/N`` after checking it is a regular file, and
walks descend with ``openat(dirfd, name, O_NOFOLLOW|O_DIRECTORY)`` checked against the
``(st_dev, st_ino)`` the listing gave.
"""

from __future__ import annotations

import errno
import os
import resource
import stat as stat_mod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

from ctrfs._record import dataclass, field
from ctrfs.errors import CtrfsError, UnsafePath, from_oserror
from ctrfs.rootfs import _calls
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
from ctrfs.rootfs.resolve import MagicLinkError, resolve

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

_O_PATH = os.O_PATH | os.O_CLOEXEC
_O_READ = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC

# A walk keeps one streaming directory fd (plus the one os.scandir(fd) dups) per level down to
# this depth, or fewer when RLIMIT_NOFILE is low (see stream_levels); deeper levels are listed
# into memory one directory at a time and share a single fd that moves down by openat(name) and
# back up by openat("..") checked against the recorded (dev, ino). Bounds fds at
# ~2*STREAM_LEVELS however deep the tree (docs/security.md case 15).
STREAM_LEVELS = 48
# fds left to the walk's consumer (files it opens, output, tar) and transient lookups.
FD_RESERVE = 16
# How often (in entries) a walk asks the Root whether its container is still there.
ALIVE_EVERY = 2048


def _ident(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def reopen_regular_fd(opath_fd: int, st: os.stat_result | None = None) -> int:
    """Open the regular file an O_PATH fd refers to for reading, or raise NotRegularFile;
    a raw fd the caller closes.

    The re-open goes through ``/proc/self/fd/N`` (our own procfs, our own fd), so nothing is
    looked up by name again; ``O_NONBLOCK|O_NOCTTY`` would keep even a FIFO or tty from blocking
    or becoming our terminal, but the fstat check means only regular files get here. O_NONBLOCK
    stays set: it "has no effect for regular files" (open(2)).
    """
    if st is None:
        st = os.fstat(opath_fd)
    if not stat_mod.S_ISREG(st.st_mode):
        raise NotRegularFile(file_kind(st.st_mode))
    fd = os.open(f"/proc/self/fd/{opath_fd}", _O_READ)
    try:
        st2 = os.fstat(fd)
        if st2.st_ino != st.st_ino or st2.st_dev != st.st_dev or not stat_mod.S_ISREG(st2.st_mode):
            raise CtrfsError("file changed while being opened; try again")
    except BaseException:
        os.close(fd)
        raise
    return fd


def reopen_regular(opath_fd: int, st: os.stat_result | None = None) -> BinaryIO:
    """:func:`reopen_regular_fd` as a buffered binary file object."""
    fd = reopen_regular_fd(opath_fd, st)
    try:
        os.set_blocking(fd, True)
        return open(fd, "rb", buffering=65536)  # noqa: SIM115 — the caller owns it
    except BaseException:
        os.close(fd)
        raise


def read_xattrs(fd: int, *, is_link: bool = False) -> dict[str, bytes]:
    """Extended attributes of what an fd (O_PATH or not) refers to."""
    # flistxattr/fgetxattr refuse O_PATH fds (EBADF); the /proc/self/fd/N path reaches the same
    # inode (following the magic link lands on the object itself, even a symlink).
    target: int | str = f"/proc/self/fd/{fd}"
    out: dict[str, bytes] = {}
    try:
        names = os.listxattr(target)
        for name in names:
            try:
                out[name] = os.getxattr(target, name)
            except OSError as err:
                if err.errno not in (errno.ENODATA, errno.EOPNOTSUPP, errno.EPERM, errno.EACCES):
                    raise
    except OSError as err:
        if err.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.EACCES):
            raise
    return out


class _WalkPath:
    """Where a walk stands: ``cur`` is the path of its deepest open directory, without the
    trailing "/" ("" for the root); ``base`` is the start's, spelt that way."""

    __slots__ = ("base", "cur")

    def __init__(self, base: str) -> None:
        self.base = base
        self.cur = base


class _Dir:
    """A directory a walk entered: its name and parent only, so that a consumer keeping one
    Entry per level (cp keeps the directories it has to finish) holds O(depth) small objects,
    not O(depth^2) bytes of paths, in a 10,000-deep tree. While the walk is inside it, its
    path is a prefix of the walk's current path (``plen`` long); afterwards it is rebuilt from
    the names up to the nearest directory still open."""

    __slots__ = ("is_open", "name", "parent", "plen", "wp")

    def __init__(self, name: str, parent: _Dir | None, plen: int, wp: _WalkPath) -> None:
        self.name = name
        self.parent = parent
        self.plen = plen
        self.wp = wp
        self.is_open = True

    def base(self) -> str:
        """The directory's path without its trailing "/" ("" for the root)."""
        names: list[str] = []
        d = self
        while d.parent is not None and not d.is_open:
            names.append(d.name)
            d = d.parent
        b = d.wp.cur[:d.plen] if d.parent is not None else d.wp.base
        if not names:
            return b
        names.append(b)
        names.reverse()
        return "/".join(names)


@dataclass
class FdEntry(Entry):
    """An Entry that knows its parent directory fd (valid while the walk stands there).

    Entries from a walk are made with ``path=""`` and build their path from their parent
    directory on each access (it is not kept: see _Dir)."""

    _root: FdRoot | None = field(default=None, repr=False)
    _dirfd: int = field(default=-1, repr=False)
    _fd: int = field(default=-1, repr=False)  # the entry's own O_PATH fd (walk start only)
    _parent: _Dir | None = field(default=None, repr=False, compare=False)

    @property  # type: ignore[misc]
    def path(self) -> str:
        p: str | None = self.__dict__.get("_path")
        if p is None:
            assert self._parent is not None
            return self._parent.base() + "/" + self.name
        return p

    @path.setter
    def path(self, value: str) -> None:
        self.__dict__["_path"] = value or None

    def _opath(self) -> int:
        if self._fd >= 0:
            return os.dup(self._fd)
        fd = os.open(self.name, _O_PATH | os.O_NOFOLLOW, dir_fd=self._dirfd)
        st = os.fstat(fd)
        if _ident(st) != _ident(self.stat):
            os.close(fd)
            raise OSError(errno.ENOENT, "replaced since it was listed", self.path)
        return fd

    def _errors(self) -> AbstractContextManager[None]:
        assert self._root is not None
        return self._root._errors(self.path)

    def open(self) -> BinaryIO:
        with self._errors():
            if not stat_mod.S_ISREG(self.stat.st_mode):
                raise NotRegularFile(self.kind, path=self.path, target=self._root_target())
            fd = self._opath()
            try:
                return reopen_regular(fd)
            finally:
                os.close(fd)

    def open_fd(self) -> int:
        # The errors context manager only on failure: this runs once per file of an export.
        try:
            if not stat_mod.S_ISREG(self.stat.st_mode):
                raise NotRegularFile(self.kind, path=self.path, target=self._root_target())
            if self._fd < 0 and self._root is not None and self._root.direct_open:
                return self._open_direct()
            if self._fd >= 0:
                fd = os.dup(self._fd)
            else:
                fd = os.open(self.name, _O_PATH | os.O_NOFOLLOW, dir_fd=self._dirfd)
            try:
                st = os.fstat(fd)
                if st.st_ino != self.stat.st_ino or st.st_dev != self.stat.st_dev:
                    raise OSError(errno.ENOENT, "replaced since it was listed", self.path)
                return reopen_regular_fd(fd, st)
            finally:
                os.close(fd)
        except (OSError, CtrfsError):
            with self._errors():
                raise

    def _open_direct(self) -> int:
        """One openat for reading, on a Root whose mount cannot open devices (see FdRoot)."""
        fd = os.open(self.name, _O_READ | os.O_NOFOLLOW, dir_fd=self._dirfd)
        try:
            st = os.fstat(fd)
            if not stat_mod.S_ISREG(st.st_mode):
                raise NotRegularFile(file_kind(st.st_mode), path=self.path,
                                     target=self._root_target())
            if st.st_ino != self.stat.st_ino or st.st_dev != self.stat.st_dev:
                raise OSError(errno.ENOENT, "replaced since it was listed", self.path)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def readlink(self) -> bytes:
        with self._errors():
            if self._fd >= 0:
                return os.readlink(b"", dir_fd=self._fd)
            return os.readlink(os.fsencode(self.name), dir_fd=self._dirfd)

    def xattrs(self) -> dict[str, bytes]:
        if self._fd < 0:
            # Most entries have none: one llistxattr through our own directory fd says so
            # (the name is one component from the listing, its final symlink not followed);
            # only a non-empty answer takes the identity-checked path below.
            try:
                if not os.listxattr(f"/proc/self/fd/{self._dirfd}/{self.name}",
                                    follow_symlinks=False):
                    return {}
            except OSError:
                pass  # the careful path reports what is wrong
        with self._errors():
            fd = self._opath()
            try:
                return read_xattrs(fd, is_link=self.is_symlink())
            finally:
                os.close(fd)

    def _root_target(self) -> str | None:
        return self._root.target if self._root is not None else None


@dataclass
class _Frame:
    dir: _Dir
    depth: int
    ident: tuple[int, int]
    fd: int  # O_RDONLY directory fd; -1 while a deeper buffered level holds the moving fd
    it: Iterator[os.DirEntry[str] | tuple[str, os.stat_result]]
    buffered: bool
    mnt: int | None = None  # mount ID of this directory (None: kernel cannot tell)


class FdRoot(Root):
    """A Root over an open directory fd. ``fallback`` forces the user-space resolver.

    ``direct_open`` says the fd is on a mount made ``nodev`` (a private clone, see
    ctrfs.rootfs.clone): a walk then opens a listed regular file with one
    ``openat(O_RDONLY|O_NOFOLLOW|O_NONBLOCK|O_NOCTTY)`` and checks it with fstat, instead of
    an ``O_PATH`` open and a re-open through ``/proc/self/fd``. The kernel refuses device
    nodes on such a mount (EACCES), sockets cannot be opened (ENXIO), a symlink is refused
    (ELOOP); only a FIFO swapped in since the listing could be opened, without blocking, and
    is closed at once. Such a clone is made without its submounts: no walk entry on it is a
    mount point, so walks skip the per-entry statx(STATX_MNT_ID) there."""

    def __init__(self, rootfd: int, *, target: str | None = None,
                 fallback: bool | None = None, direct_open: bool = False) -> None:
        self._rootfd = rootfd
        self.target = target
        self.fallback = fallback
        self.direct_open = direct_open

    def _translate(self, err: OSError, shown: str | None) -> CtrfsError:
        # A container that went away makes every lookup fail; say so rather than
        # "no such file".
        self.check_alive()
        if isinstance(err, MagicLinkError):
            return UnsafePath("refused: the path goes through a /proc magic link "
                              "(such as /proc/self/root or /proc/PID/fd/N)",
                              target=self.target, path=shown)
        if err.errno == errno.EXDEV:
            return UnsafePath(target=self.target, path=shown)
        if err.errno == errno.ELOOP:
            return CtrfsError("too many levels of symbolic links (a symlink loop?)",
                              target=self.target, path=shown)
        return super()._translate(err, shown)

    # -- primitives -------------------------------------------------------------------------
    @property
    def fd(self) -> int:
        if self._rootfd < 0:
            raise CtrfsError("root is closed", target=self.target)
        return self._rootfd

    def _resolve(self, path: PathArg, follow: bool) -> int:
        return resolve(self.fd, os.fsencode(path), follow=follow, fallback=self.fallback)

    def resolve(self, path: PathArg, *, follow: bool = True) -> int:
        with self._errors(path):
            return self._resolve(path, follow)

    def check_alive(self) -> None:
        return None

    def close(self) -> None:
        if self._rootfd >= 0:
            os.close(self._rootfd)
            self._rootfd = -1

    # -- metadata ---------------------------------------------------------------------------
    def lstat(self, path: PathArg) -> os.stat_result:
        with self._errors(path):
            fd = self._resolve(path, False)
            try:
                return os.fstat(fd)
            finally:
                os.close(fd)

    def stat(self, path: PathArg) -> os.stat_result:
        with self._errors(path):
            fd = self._resolve(path, True)
            try:
                return os.fstat(fd)
            finally:
                os.close(fd)

    def readlink(self, path: PathArg) -> bytes:
        with self._errors(path):
            fd = self._resolve(path, False)
            try:
                if not stat_mod.S_ISLNK(os.fstat(fd).st_mode):
                    raise CtrfsError("not a symbolic link")
                return os.readlink(b"", dir_fd=fd)
            finally:
                os.close(fd)

    def mount_id(self, path: PathArg, *, follow: bool = True) -> int | None:
        """The mount ID (as in the container's mountinfo) ``path`` lives on."""
        with self._errors(path):
            fd = self._resolve(path, follow)
            try:
                return _calls.mount_id(fd)
            finally:
                os.close(fd)

    # -- content ----------------------------------------------------------------------------
    def open_file(self, path: PathArg) -> BinaryIO:
        with self._errors(path):
            fd = self._resolve(path, True)
            try:
                return reopen_regular(fd)
            finally:
                os.close(fd)

    def _open_dir(self, path: PathArg, follow: bool = True) -> tuple[int, os.stat_result]:
        fd = self._resolve(path, follow)
        try:
            st = os.fstat(fd)
            if not stat_mod.S_ISDIR(st.st_mode):
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
            # Opening "." under an O_PATH fd turns it into a readable directory fd without
            # another lookup by name.
            return os.open(".", _O_DIR, dir_fd=fd), st
        finally:
            os.close(fd)

    def scandir(self, path: PathArg) -> Iterator[Entry]:
        with self._errors(path):
            dfd, _ = self._open_dir(path)
        top = norm_path(path)
        try:
            mnt_here = _calls.mount_id(dfd)
            with os.scandir(dfd) as it:
                for de in it:
                    try:
                        st = de.stat(follow_symlinks=False)
                        mnt = _calls.mount_id(dfd, os.fsencode(de.name))
                    except FileNotFoundError:
                        continue  # removed since the listing was read
                    yield FdEntry(path=join(top, de.name), name=de.name, stat=st, depth=1,
                                  mount_point=mnt is not None and mnt != mnt_here,
                                  _root=self, _dirfd=dfd)
        finally:
            os.close(dfd)

    def walk(self, path: PathArg = "/", *, follow: bool = True, max_depth: int | None = None,
             one_filesystem: bool = True, on_warning: WarnFn | None = None) -> Iterator[Entry]:
        warn: WarnFn = on_warning or (lambda w: None)
        top = norm_path(path)
        with self._errors(path):
            topfd = self._resolve(path, follow)
        frames: list[_Frame] = []
        try:
            with self._errors(path):
                st = os.fstat(topfd)
                top_mnt = _calls.mount_id(topfd)
            name = os.path.basename(top.rstrip("/")) or "/"
            first = FdEntry(path=top, name=name, stat=st, depth=0, _root=self, _fd=topfd)
            first.extra["fs_type"] = _calls.fs_type(topfd)
            yield first
            if not stat_mod.S_ISDIR(st.st_mode) or max_depth == 0:
                return
            with self._errors(path):
                dfd = os.open(".", _O_DIR, dir_fd=topfd)
                try:
                    it = os.scandir(dfd)
                except BaseException:
                    os.close(dfd)
                    raise
            wp = _WalkPath(top.rstrip("/"))
            frames.append(_Frame(_Dir(name, None, len(wp.base), wp), 0, _ident(st), dfd, it,
                                 False, top_mnt))
            try:
                yield from self._walk_frames(top, wp, frames, max_depth, one_filesystem, warn)
            except OSError as err:
                # What the walk does not turn into a warning (EMFILE...) is still an error of
                # this Root, not an internal one.
                raise self._translate(err, top) from err
        finally:
            for fr in frames:
                _close_frame(fr)
            os.close(topfd)

    def _walk_frames(self, top: str, wp: _WalkPath, frames: list[_Frame], max_depth: int | None,
                     one_filesystem: bool, warn: WarnFn) -> Iterator[Entry]:
        ancestors = {fr.ident for fr in frames}
        streamed = stream_levels()
        one_mount = self.direct_open

        def shown(fr: _Frame) -> str:
            return top if fr.depth == 0 else fr.dir.base()

        seen = 0
        while frames:
            fr = frames[-1]
            try:
                item: os.DirEntry[str] | tuple[str, os.stat_result] | None = next(fr.it, None)
            except OSError as err:
                if err.errno in (errno.EMFILE, errno.ENFILE):
                    raise
                # getdents refused midway (procfs hides some directories of other processes)
                warn(WalkWarning(shown(fr), f"cannot be read ({err.strerror}); rest skipped"))
                item = None
            if item is None:
                self._leave(frames, ancestors, warn, shown)
                wp.cur = wp.cur[:frames[-1].dir.plen] if frames else wp.base
                continue
            seen += 1
            if seen % ALIVE_EVERY == 0:
                self.check_alive()
            dirfd = fr.fd
            if isinstance(item, tuple):
                name, st = item
            else:
                name = item.name
                try:
                    st = item.stat(follow_symlinks=False)
                except FileNotFoundError:
                    warn(WalkWarning(wp.cur + "/" + name, "vanished during the walk; skipped"))
                    continue
            is_dir = stat_mod.S_ISDIR(st.st_mode)
            bname = os.fsencode(name)
            if one_mount:
                mnt = fr.mnt  # a tree of one mount (see direct_open): no statx per entry
            else:
                try:
                    mnt = _calls.mount_id(dirfd, bname)
                except FileNotFoundError:
                    warn(WalkWarning(wp.cur + "/" + name, "vanished during the walk; skipped"))
                    continue
            # A mount point: on another mount than the directory holding it.
            if one_mount:
                mount_point = False
            elif fr.mnt is not None and mnt is not None:
                mount_point = mnt != fr.mnt
            else:
                # No STATX_MNT_ID (Linux < 5.8): a directory on another device is another
                # mount. Only directories: overlayfs may report the lower layer's st_dev for
                # files (Documentation/filesystems/overlayfs.rst, "Inode properties").
                mount_point = is_dir and st.st_dev != fr.ident[0]
            depth = fr.depth + 1
            entry = FdEntry(path="", name=name, stat=st, depth=depth, mount_point=mount_point,
                            _root=self, _dirfd=dirfd, _parent=fr.dir)
            if mount_point and is_dir:
                entry.extra["fs_type"] = _fs_type_at(dirfd, bname)
            yield entry
            if not is_dir:
                continue
            path = wp.cur + "/" + name
            if max_depth is not None and depth >= max_depth:
                continue
            if mount_point and (one_filesystem or entry.pseudo_fs):
                continue
            if _ident(st) in ancestors:
                warn(WalkWarning(path, "directory loop (a bind mount of an ancestor); not entered"))
                continue
            try:
                cfd = os.open(bname, _O_DIR | os.O_NOFOLLOW, dir_fd=dirfd)
            except OSError as err:
                if err.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    warn(WalkWarning(path, "vanished or replaced during the walk; skipped"))
                    continue
                if err.errno in (errno.EACCES, errno.EPERM):
                    warn(WalkWarning(path, "permission denied; not entered"))
                    continue
                raise
            cst = os.fstat(cfd)
            if _ident(cst) != _ident(st):
                os.close(cfd)
                warn(WalkWarning(path, "replaced during the walk; skipped"))
                continue
            if len(frames) < streamed:
                try:
                    it_new = os.scandir(cfd)
                except BaseException:
                    os.close(cfd)
                    raise
                frames.append(_Frame(_Dir(name, fr.dir, len(path), wp), depth, _ident(st), cfd,
                                     it_new, False, mnt))
            else:
                items: list[tuple[str, os.stat_result]] = []
                try:
                    with os.scandir(cfd) as it:
                        for de in it:
                            try:
                                items.append((de.name, de.stat(follow_symlinks=False)))
                            except FileNotFoundError:
                                continue
                except OSError as err:
                    if err.errno in (errno.EMFILE, errno.ENFILE):
                        os.close(cfd)
                        raise
                    warn(WalkWarning(path, f"cannot be read ({err.strerror}); rest skipped"))
                if fr.buffered:
                    os.close(fr.fd)  # the moving fd goes down with us; ".." brings it back
                    fr.fd = -1
                frames.append(_Frame(_Dir(name, fr.dir, len(path), wp), depth, _ident(st), cfd,
                                     iter(items), True, mnt))
            ancestors.add(_ident(st))
            wp.cur = path

    def _leave(self, frames: list[_Frame], ancestors: set[tuple[int, int]], warn: WarnFn,
               shown: Callable[[_Frame], str]) -> None:
        fr = frames.pop()
        ancestors.discard(fr.ident)
        parent = frames[-1] if frames else None
        if fr.buffered and parent is not None and parent.buffered:
            # Climb back with ".." from the fd we hold and check it is the directory we came
            # from: if it was moved meanwhile, ".." leads elsewhere (maybe out of the root).
            try:
                pfd = os.open("..", _O_DIR, dir_fd=fr.fd)
            except OSError:
                pfd = -1
            if pfd >= 0 and _ident(os.fstat(pfd)) == parent.ident:
                parent.fd = pfd
            else:
                if pfd >= 0:
                    os.close(pfd)
                warn(WalkWarning(shown(parent), "directory moved during the walk; rest skipped"))
                while frames and frames[-1].buffered:
                    gone = frames.pop()
                    ancestors.discard(gone.ident)
                    _close_frame(gone)
        _close_frame(fr)


def stream_levels() -> int:
    """How many levels a walk may stream (2 fds each) within RLIMIT_NOFILE, keeping
    FD_RESERVE fds for its consumer; at least the start directory streams."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return STREAM_LEVELS
    try:
        used = len(os.listdir("/proc/self/fd"))
    except OSError:
        used = FD_RESERVE
    return max(1, min(STREAM_LEVELS, (soft - used - FD_RESERVE) // 2))


def _fs_type_at(dirfd: int, name: bytes) -> int | None:
    try:
        fd = os.open(name, _O_PATH | os.O_NOFOLLOW, dir_fd=dirfd)
    except OSError:
        return None
    try:
        return _calls.fs_type(fd)
    finally:
        os.close(fd)


def _close_frame(fr: _Frame) -> None:
    fr.dir.is_open = False
    close = getattr(fr.it, "close", None)
    if close is not None:
        close()
    if fr.fd >= 0:
        os.close(fr.fd)
        fr.fd = -1


class DirRoot(FdRoot):
    """A Root over a host directory, e.g. a tree under ``tmp_path`` in tests, or an unpacked
    image. The directory is opened once; later renames of it do not matter."""

    def __init__(self, path: str | os.PathLike[str], *, target: str | None = None,
                 fallback: bool | None = None) -> None:
        try:
            fd = os.open(path, _O_PATH | os.O_DIRECTORY)
        except OSError as err:
            raise from_oserror(err, target=target, path=os.fspath(path)) from err
        super().__init__(fd, target=target, fallback=fallback)
