"""The Root interface: a container's root filesystem, every path resolved inside it.

Everything in :mod:`ctrfs.ops` is written only against :class:`Root` and :class:`Entry`, so a
running container (:class:`~ctrfs.rootfs.proc.ProcRoot`, through ``/proc/<pid>/root``), a plain
directory (:class:`~ctrfs.rootfs.fd.DirRoot`, tests) and a stopped container's layers (an
offline overlay Root) are interchangeable.

Contract for implementations:

* Paths are ``str`` or ``bytes``, absolute or relative, always taken relative to the container
  root: ``..`` never climbs above it and absolute symlinks restart at it. Names handed back are
  ``str`` (undecodable bytes as surrogate escapes, ``os.fsencode`` gives the raw bytes back).
* Errors are :class:`~ctrfs.errors.CtrfsError` subclasses, never a bare ``OSError``:
  ``NotFound`` (missing, dangling link), ``AccessDenied``, ``UnsafePath`` (magic link such as
  ``/proc/self/root`` inside the container), ``ProcessGone`` (the container went away),
  :class:`NotRegularFile` (content asked of a directory, FIFO, socket or device),
  ``CtrfsError`` with the kernel's words otherwise ("not a directory", "too many levels of
  symbolic links").
* Only regular files are ever opened for reading.
* Walks are iterative, bounded in depth and in open fds, and stream (no full listing in memory).
"""

from __future__ import annotations

import os
import posixpath
import stat as stat_mod
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType

from ctrfs._record import dataclass, field
from ctrfs.errors import CtrfsError, NotFound, Unsupported, from_oserror
from ctrfs.proc.userns import IdMap

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

PathArg = str | bytes


# File type → (the word in JSON fields and layer reports, the words stat(1) and messages use).
_KINDS = {
    stat_mod.S_IFREG: ("file", "regular file"),
    stat_mod.S_IFDIR: ("dir", "directory"),
    stat_mod.S_IFLNK: ("symlink", "symbolic link"),
    stat_mod.S_IFIFO: ("fifo", "fifo"),
    stat_mod.S_IFSOCK: ("socket", "socket"),
    stat_mod.S_IFCHR: ("char-device", "character device"),
    stat_mod.S_IFBLK: ("block-device", "block device"),
}


def file_kind(mode: int) -> str:
    """A file type as stat(1) and messages name it ("regular file", "symbolic link")."""
    return _KINDS.get(stat_mod.S_IFMT(mode), ("unknown", "unknown file type"))[1]


def file_type(mode: int) -> str:
    """A file type as one word for JSON fields ("file", "dir", "symlink", "char-device")."""
    return _KINDS.get(stat_mod.S_IFMT(mode), ("unknown", "unknown file type"))[0]


# statfs f_type of kernel interfaces rather than data (include/uapi/linux/magic.h): file sizes
# are fictions (/proc/kcore claims 128 TiB), reads can block (/proc/kmsg) or have effects.
# Copies, exports and recursive greps do not read below them.
PSEUDO_FS_MAGICS = frozenset({
    0x9FA0,  # proc
    0x62656572,  # sysfs
    0x27E0EB,  # cgroup
    0x63677270,  # cgroup2
    0x64626720,  # debugfs
    0x74726163,  # tracefs
    0x73636673,  # securityfs
    0xCAFE4A11,  # bpf
    0x62656570,  # configfs
    0x6165676C,  # pstore
    0xF97CFF8C,  # selinuxfs
    0xDE5E81E4,  # efivarfs
    0x42494E4D,  # binfmt_misc
    0x65735543,  # fusectl
})


class NotRegularFile(Unsupported):
    """Content was asked of something that is not a regular file; it was not opened."""

    def __init__(self, kind: str, *, target: str | None = None, path: str | None = None) -> None:
        super().__init__(f"is a {kind}, not a regular file; not opened", target=target, path=path)
        self.kind = kind


@dataclass
class WalkWarning:
    """Something a walk skipped (vanished entry, directory moved, loop); the walk went on."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


WarnFn = Callable[[WalkWarning], None]


@dataclass
class Entry(ABC):
    """One directory entry met by :meth:`Root.scandir` / :meth:`Root.walk`.

    ``stat`` is the entry's own (lstat) metadata. The methods are valid only until the iterator
    that yielded the entry is advanced (implementations may hold the parent directory's fd).
    """

    path: str  # absolute path inside the container, "/"-joined
    name: str
    stat: os.stat_result
    depth: int = 0
    # True when the entry is a mount point: on another mount than the directory holding it (a
    # volume, a bind-mounted file, /proc, /dev...). Walks with one_filesystem=True yield it but
    # do not descend into it.
    mount_point: bool = False
    # Root-specific facts; "fs_type" (statfs f_type) is set on the walk's start and on
    # mount-point directories where the Root knows it.
    extra: dict[str, object] = field(default_factory=dict, repr=False)

    @property
    def pseudo_fs(self) -> bool:
        """The entry is (the root of) a kernel pseudo filesystem: /proc, /sys, cgroupfs..."""
        return self.extra.get("fs_type") in PSEUDO_FS_MAGICS

    @property
    def kind(self) -> str:
        return file_kind(self.stat.st_mode)

    def is_dir(self) -> bool:
        return stat_mod.S_ISDIR(self.stat.st_mode)

    def is_file(self) -> bool:
        return stat_mod.S_ISREG(self.stat.st_mode)

    def is_symlink(self) -> bool:
        return stat_mod.S_ISLNK(self.stat.st_mode)

    @abstractmethod
    def open(self) -> BinaryIO:
        """The entry's content, read-only. Raises NotRegularFile unless a regular file, and an
        error if the name now refers to another inode than ``stat`` describes."""

    def open_fd(self) -> int:
        """:meth:`open` as a raw fd (``O_RDONLY``, may carry ``O_NONBLOCK``, which regular
        files ignore); the caller closes it. Bulk copies use it with sendfile(2)."""
        with self.open() as f:
            return os.dup(f.fileno())

    @abstractmethod
    def readlink(self) -> bytes:
        """A symlink's target, as raw bytes (never followed)."""

    @abstractmethod
    def xattrs(self) -> dict[str, bytes]:
        """Extended attributes of the entry itself (empty where unsupported)."""


class Root(ABC):
    """A container's root filesystem. Use as a context manager or call :meth:`close`."""

    #: what error messages call the container (its name), set by whoever opens the Root
    target: str | None = None
    #: host ids → the container's own, when it runs in a user namespace (rootless podman,
    #: unprivileged LXC): ls/stat/find/export show ownership as the container sees it
    idmap: IdMap | None = None

    # -- errors: the one place OSError becomes CtrfsError for everything a Root does ------
    @contextmanager
    def _errors(self, path: PathArg | None) -> Iterator[None]:
        shown = norm_path(path) if path is not None else None
        try:
            yield
        except CtrfsError as err:
            if err.path is None and shown is not None:
                err.path = shown
            if err.target is None:
                err.target = self.target
            raise
        except OSError as err:
            raise self._translate(err, shown) from err

    def _translate(self, err: OSError, shown: str | None) -> CtrfsError:
        """The CtrfsError for an OSError met at ``shown``; subclasses add their own cases."""
        return from_oserror(err, target=self.target, path=shown)

    # -- primitives ------------------------------------------------------------------------
    @abstractmethod
    def resolve(self, path: PathArg, *, follow: bool = True) -> int:
        """An ``O_PATH`` fd for ``path`` resolved inside the root; the caller closes it.
        ``follow=False`` leaves a final symlink unfollowed (for lstat/readlink)."""

    @abstractmethod
    def check_alive(self) -> None:
        """Raise ProcessGone if the container this Root looks into is gone. Long operations
        call it periodically and once at the end, before reporting success."""

    @abstractmethod
    def close(self) -> None:
        """Release the root's fds. Idempotent."""

    # -- metadata --------------------------------------------------------------------------
    @abstractmethod
    def lstat(self, path: PathArg) -> os.stat_result:
        """Metadata of ``path`` itself (a final symlink is not followed)."""

    @abstractmethod
    def stat(self, path: PathArg) -> os.stat_result:
        """Metadata of what ``path`` leads to (symlinks followed inside the root)."""

    @abstractmethod
    def readlink(self, path: PathArg) -> bytes:
        """The target of the symlink at ``path`` (raw bytes)."""

    # -- content ---------------------------------------------------------------------------
    @abstractmethod
    def open_file(self, path: PathArg) -> BinaryIO:
        """A read-only binary file object for the regular file at ``path`` (symlinks followed
        inside the root). Anything else raises NotRegularFile without being opened."""

    @abstractmethod
    def scandir(self, path: PathArg) -> Iterator[Entry]:
        """The entries of directory ``path`` (no ``.``/``..``), streamed, unsorted."""

    @abstractmethod
    def walk(self, path: PathArg = "/", *, follow: bool = True, max_depth: int | None = None,
             one_filesystem: bool = True, on_warning: WarnFn | None = None) -> Iterator[Entry]:
        """Pre-order walk from ``path``: the start itself (depth 0), then everything below.

        ``follow`` follows a symlink given as the start. ``max_depth`` bounds the depth of
        yielded entries. ``one_filesystem`` keeps the walk on the start's mount (mount points
        are yielded, not entered); without it, other mounts are entered except kernel pseudo
        filesystems (/proc, /sys, cgroupfs...: see PSEUDO_FS_MAGICS), which are entered only
        when the walk starts inside one. Skipped entries are reported to ``on_warning``.
        """

    def exists(self, path: PathArg) -> bool:
        try:
            self.lstat(path)
        except NotFound:
            return False
        return True

    def __enter__(self) -> Root:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class PseudoFilter:
    """Leaves out what lies below a walk that starts inside a kernel pseudo filesystem
    (``cp TARGET:/proc/1 …``, ``grep -r x TARGET:/sys``): the start is kept, nothing below it
    is read. Walks never enter such filesystems below their start by themselves."""

    def __init__(self, warn: WarnFn) -> None:
        self.prefix: str | None = None
        self.warn = warn

    def skip(self, e: Entry) -> bool:
        if self.prefix is not None:
            return e.path.startswith(self.prefix)
        if e.depth == 0 and e.is_dir() and e.pseudo_fs:
            self.prefix = e.path.rstrip("/") + "/"
            self.warn(WalkWarning(e.path, "kernel pseudo filesystem: its content is left out"))
        return False


def norm_path(path: PathArg) -> str:
    """A display path inside the container: absolute, '/'-joined, as given (no resolution)."""
    p = os.fsdecode(path)
    if not p.startswith("/"):
        p = "/" + p
    return p


def base_name(path: PathArg) -> str:
    """The name a copy of ``path`` gets (``/etc/nginx/`` → ``nginx``); "" for the root, also
    when spelt ``/.``, ``/etc/..`` (lexically: only used to name output, never to resolve)."""
    name = posixpath.basename(posixpath.normpath(norm_path(path)))
    return "" if name in ("", ".", "..") else name


def join(parent: str, name: str) -> str:
    return parent.rstrip("/") + "/" + name if parent != "/" else "/" + name


__all__ = ["PSEUDO_FS_MAGICS", "CtrfsError", "Entry", "NotRegularFile", "PathArg", "PseudoFilter", "Root",
           "WalkWarning", "WarnFn", "base_name", "file_kind", "file_type", "join", "norm_path"]
