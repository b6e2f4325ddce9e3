"""A tar stream from the node (``ctrfs cp SRC -``) unpacked into DEST on this machine.

The guarantees of ``ctrfs cp`` (ctrfs.ops.copy), for a stream whose content the container's owner
controls (the kubectl cp CVEs: ``../`` names, absolute names, a symlink then a file through it):

- DEST is chosen by docker cp's rule (:func:`ctrfs.ops.copy.plan_dest`) and the tree is built
  in a fresh private directory next to it, renamed to DEST only when complete, removed otherwise;
- every member name must lie under the stream's top name (the base name of SRC); ``..``
  components and absolute names stop the copy;
- every parent directory is opened component by component with ``O_NOFOLLOW`` from a directory
  fd this copy created, and every entry is created with ``*at()`` calls relative to it: a symlink
  in the stream is created as a symlink and never followed;
- a hardlink may only point at a regular file this copy already wrote;
- setuid/setgid bits are dropped unless ``preserve_all``; device nodes, sockets and extended
  attributes are not restored; ownership only as root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat as stat_mod
import tarfile
import tempfile
from collections.abc import Callable, Iterator

from ctrfs.errors import CtrfsError, UnsafePath, UsageError
from ctrfs.ops.copy import CopyResult, plan_dest
from ctrfs.rootfs.base import base_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_TOP = "data"
CHUNK = 1 << 20


class BadStream(UnsafePath):
    def default_message(self) -> str:
        return "refused: the node's tar stream names a path outside the copy"


def _parts(name: str, prefix: str) -> list[str]:
    """Member name → components under the top directory; refuses anything that could leave it."""
    if name.startswith("/") or "\0" in name:
        raise BadStream(path=name)
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BadStream(path=name)
    if prefix:
        if not parts or parts[0] != prefix:
            raise BadStream(path=name)
        parts = parts[1:]
    return [_TOP, *parts]


class _Tree:
    def __init__(self, tmpfd: int, *, preserve_all: bool, warn: Callable[[str], object]) -> None:
        self.tmpfd = tmpfd
        self.preserve_all = preserve_all
        self.warn = warn
        self.root = os.geteuid() == 0
        self.written: set[tuple[int, int]] = set()
        self.dirs: list[tuple[list[str], tarfile.TarInfo]] = []

    @contextlib.contextmanager
    def parent(self, parts: list[str]) -> Iterator[int]:
        fd = os.dup(self.tmpfd)
        try:
            for comp in parts[:-1]:
                nxt = os.open(comp, _O_DIR, dir_fd=fd)  # ELOOP/ENOTDIR on a symlink: refused
                os.close(fd)
                fd = nxt
            yield fd
        finally:
            os.close(fd)

    def _clear(self, name: str, pfd: int) -> None:
        # A later member of the same name replaces an earlier one (as tar does); a directory
        # stays a directory.
        with contextlib.suppress(FileNotFoundError):
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            if stat_mod.S_ISDIR(st.st_mode):
                raise CtrfsError("a directory and a file of the same name in the stream", path=name)
            os.unlink(name, dir_fd=pfd)

    def mode(self, m: int) -> int:
        m &= 0o7777
        return m if self.preserve_all else m & ~(stat_mod.S_ISUID | stat_mod.S_ISGID)

    def add(self, ti: tarfile.TarInfo, parts: list[str], data: IO[bytes] | None,
            result: CopyResult) -> None:
        name = parts[-1]
        with self.parent(parts) as pfd:
            if ti.isdir():
                try:
                    os.mkdir(name, 0o700, dir_fd=pfd)
                except FileExistsError:
                    if not stat_mod.S_ISDIR(os.stat(name, dir_fd=pfd, follow_symlinks=False).st_mode):
                        raise CtrfsError("a file and a directory of the same name in the stream",
                                         path=ti.name) from None
                self.dirs.append((parts, ti))
            elif ti.isreg():
                self._clear(name, pfd)
                fd = os.open(name, _O_NEW, 0o600, dir_fd=pfd)
                try:
                    assert data is not None
                    while chunk := data.read(CHUNK):
                        view = memoryview(chunk)
                        while view:
                            view = view[os.write(fd, view):]
                        result.bytes += len(chunk)
                    self._own(fd, ti)
                    os.fchmod(fd, self.mode(ti.mode))
                    os.utime(fd, (ti.mtime, ti.mtime))
                    st = os.fstat(fd)
                    self.written.add((st.st_dev, st.st_ino))
                finally:
                    os.close(fd)
            elif ti.issym():
                self._clear(name, pfd)
                os.symlink(ti.linkname, name, dir_fd=pfd)
                if self.root:
                    os.chown(name, ti.uid, ti.gid, dir_fd=pfd, follow_symlinks=False)
                with contextlib.suppress(NotImplementedError, OSError):
                    os.utime(name, (ti.mtime, ti.mtime), dir_fd=pfd, follow_symlinks=False)
            elif ti.islnk():
                raise AssertionError("hardlinks go through link()")
            elif ti.isfifo():
                self._clear(name, pfd)
                os.mkfifo(name, self.mode(ti.mode), dir_fd=pfd)
            else:
                self.warn(f"{ti.name}: device node or socket not copied")
                return
        result.entries += 1

    def link(self, ti: tarfile.TarInfo, parts: list[str], target: list[str], result: CopyResult) -> None:
        with self.parent(target) as sfd, self.parent(parts) as dfd:
            st = os.stat(target[-1], dir_fd=sfd, follow_symlinks=False)
            if not stat_mod.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) not in self.written:
                raise BadStream(f"refused: hardlink to {ti.linkname!r}, not a file of this copy",
                                path=ti.name)
            self._clear(parts[-1], dfd)
            os.link(target[-1], parts[-1], src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)
        result.entries += 1

    def _own(self, fd: int, ti: tarfile.TarInfo) -> None:
        if self.root:
            os.fchown(fd, ti.uid, ti.gid)

    def finish(self) -> None:
        # Directory modes and times last, deepest first: a read-only directory would have
        # refused its own children, and adding them would have changed its mtime.
        for parts, ti in reversed(self.dirs):
            with self.parent(parts) as pfd:
                fd = os.open(parts[-1], _O_DIR, dir_fd=pfd)
                try:
                    self._own(fd, ti)
                    os.fchmod(fd, self.mode(ti.mode))
                    os.utime(fd, (ti.mtime, ti.mtime))
                finally:
                    os.close(fd)


class Unpacker:
    """``cp SRC DEST`` from a tar stream: :meth:`consume` builds the tree under a temporary name,
    :meth:`commit` renames it to DEST once the node said the stream is complete (a truncated
    stream can end exactly on a member boundary and look whole), :meth:`close` removes what is
    left."""

    def __init__(self, src: str, dest: str, *, preserve_all: bool = False,
                 warn: Callable[[str], object] = lambda m: None) -> None:
        self.final = plan_dest(src, dest)
        self.src = src
        self.prefix = base_name(src)
        self.result = CopyResult(src, self.final)
        if not self.prefix and os.path.lexists(self.final):
            raise UsageError(f"{self.final!r} already exists; remove it or choose another destination")
        parent = os.path.dirname(os.path.abspath(self.final))
        self.tmp = tempfile.mkdtemp(prefix=".ctrfs-cp-", dir=parent)
        self.tmpfd = os.open(self.tmp, _O_DIR)
        self.tree = _Tree(self.tmpfd, preserve_all=preserve_all, warn=warn)
        self.done = False

    def consume(self, stream: IO[bytes]) -> None:
        prefix, tree = self.prefix, self.tree
        try:
            if not prefix:  # the container's root: members are "bin", "etc/passwd"...
                os.mkdir(_TOP, 0o755, dir_fd=self.tmpfd)
            first = True
            with tarfile.open(fileobj=stream, mode="r|", errorlevel=2) as tf:
                for ti in tf:
                    parts = _parts(ti.name, prefix)
                    if first and len(parts) == 1 and ti.isdir() and os.path.lexists(self.final):
                        raise UsageError(f"{self.final!r} already exists; remove it or choose "
                                         "another destination")
                    first = False
                    if ti.islnk():
                        tree.link(ti, parts, _parts(ti.linkname, prefix), self.result)
                    else:
                        tree.add(ti, parts, tf.extractfile(ti) if ti.isreg() else None, self.result)
            tree.finish()
        except tarfile.TarError as err:
            raise CtrfsError(f"the node's tar stream is not valid: {err}", path=self.src) from err
        except OSError as err:
            raise CtrfsError(f"cannot write the copy: {err.strerror or err}",
                             path=err.filename or self.final) from err

    def commit(self) -> CopyResult:
        try:
            os.stat(_TOP, dir_fd=self.tmpfd, follow_symlinks=False)
        except FileNotFoundError:
            raise CtrfsError("nothing was copied", path=self.src) from None
        os.rename(os.path.join(self.tmp, _TOP), self.final)
        self.done = True
        return self.result

    def close(self) -> None:
        if self.tmpfd >= 0:
            os.close(self.tmpfd)
            self.tmpfd = -1
            shutil.rmtree(self.tmp, ignore_errors=not self.done)

    def __enter__(self) -> Unpacker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
