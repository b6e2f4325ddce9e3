"""Tar streams out of a container (export, ``cp TARGET:PATH -``), written from fds.

Each member's header comes from the entry's fstat-equivalent metadata and its data from the
entry's own fd (``TarInfo`` + ``addfile(fileobj)``), never by opening a path again. The tar is
streamed (``mode="w|"``) so memory stays flat whatever the size of the tree.
"""

from __future__ import annotations

import io
import itertools
import os
import stat as stat_mod
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from ctrfs.errors import CtrfsError, NotFound
from ctrfs.ops.names import Names
from ctrfs.rootfs.base import Entry, NotRegularFile, PathArg, Root, WalkWarning, WarnFn

# Overlayfs keeps its own bookkeeping in trusted.overlay.* (opaque dirs, redirects, origin):
# meaningless outside this overlay and harmful if restored into another one.
SKIP_XATTR_PREFIXES = ("trusted.overlay.",)
CHECK_EVERY = 512  # entries between liveness checks of the container

ProgressFn = Callable[[int, int], None]  # (entries, bytes) so far


@dataclass
class ArchiveStats:
    entries: int = 0
    bytes: int = 0
    warnings: int = 0


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


class ExactReader:
    """Reads exactly ``size`` bytes from ``f``: zero padding if the file shrank meanwhile,
    truncation if it grew, so the tar member matches the header written before the data."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f = f
        self.left = size
        self.short = 0

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self.left:
            n = self.left
        if n == 0:
            return b""
        data = self.f.read(n)
        if len(data) < n:
            pad = n - len(data)
            self.short += pad
            data += b"\0" * pad
        self.left -= len(data)
        return data

    def grew(self) -> bool:
        return bool(self.f.read(1))


def _fd_xattrs(fd: int) -> dict[str, bytes]:
    out = {}
    for name in os.listxattr(fd):
        try:
            out[name] = os.getxattr(fd, name)
        except OSError:
            continue  # removed meanwhile, or not readable: as if absent
    return out


def _xattr_pax(entry: Entry, fileobj: BinaryIO | None = None) -> dict[str, str]:
    try:
        # An open regular file answers for itself: one syscall, no second lookup.
        attrs = _fd_xattrs(fileobj.fileno()) if fileobj is not None else entry.xattrs()
    except (CtrfsError, OSError, io.UnsupportedOperation):
        return {}
    pax = {}
    for name, value in attrs.items():
        if name.startswith(SKIP_XATTR_PREFIXES):
            continue
        # SCHILY.xattr.* is the PAX record GNU tar, bsdtar and Go's archive/tar use; the value
        # is raw bytes, carried through tarfile's surrogateescape encoding.
        pax["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
    return pax


class TarWriter:
    """Adds Root entries to a streamed PAX tar."""

    def __init__(self, root: Root, out: BinaryIO, *, on_warning: WarnFn | None = None,
                 progress: ProgressFn | None = None, xattrs: bool = True,
                 include_mounts: bool = False) -> None:
        self.root = root
        self.names = Names(root)
        self.warn = on_warning or (lambda w: None)
        self.progress = progress
        self.xattrs = xattrs
        self.include_mounts = include_mounts
        self.stats = ArchiveStats()
        # (dev, ino) → [first member name, links still expected]; dropped when all were seen,
        # so memory follows the number of partly-seen multi-link inodes, not the tree size.
        self.links: dict[tuple[int, int], list[Any]] = {}
        self._done = False
        self.tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT,  # noqa: SIM115
                                encoding="utf-8", errors="surrogateescape")

    def _warn(self, path: str, message: str) -> None:
        self.warn(WalkWarning(path, message))

    def add(self, entry: Entry, arcname: str) -> None:
        st = entry.stat
        mode = st.st_mode
        ti = tarfile.TarInfo(arcname)
        ti.mode = stat_mod.S_IMODE(mode)
        ti.uid, ti.gid = st.st_uid, st.st_gid
        ti.uname = self.names.user(st.st_uid) or ""
        ti.gname = self.names.group(st.st_gid) or ""
        ti.mtime = int(st.st_mtime)
        fileobj: BinaryIO | None = None
        reader: ExactReader | None = None
        if stat_mod.S_ISSOCK(mode):
            self._warn(entry.path, "socket; tar cannot hold it, skipped")
            return
        hidden = entry.mount_point and not self.include_mounts
        if hidden and not stat_mod.S_ISDIR(mode):
            # A file bind-mounted over the root fs (/etc/hosts, /etc/resolv.conf...): the file
            # beneath it is hidden from /proc/<pid>/root. Keep the name, as an empty file,
            # like docker export's view of the runtime's placeholder.
            ti.type = tarfile.REGTYPE
            ti.size = 0
        elif stat_mod.S_ISDIR(mode):
            ti.type = tarfile.DIRTYPE
        elif stat_mod.S_ISLNK(mode):
            ti.type = tarfile.SYMTYPE
            try:
                ti.linkname = os.fsdecode(entry.readlink())
            except NotFound:
                self._warn(entry.path, "vanished during the export; skipped")
                return
        elif st.st_nlink > 1 and (st.st_dev, st.st_ino) in self.links:
            first = self.links[(st.st_dev, st.st_ino)]
            ti.type = tarfile.LNKTYPE
            ti.linkname = first[0]
            first[1] -= 1
            if first[1] <= 0:
                del self.links[(st.st_dev, st.st_ino)]
        elif stat_mod.S_ISREG(mode):
            ti.type = tarfile.REGTYPE
            ti.size = st.st_size
            try:
                fileobj = entry.open()
            except (NotFound, NotRegularFile):
                self._warn(entry.path, "vanished or replaced during the export; skipped")
                return
            reader = ExactReader(fileobj, st.st_size)
            if st.st_nlink > 1:
                self.links[(st.st_dev, st.st_ino)] = [arcname, st.st_nlink - 1]
        elif stat_mod.S_ISCHR(mode) or stat_mod.S_ISBLK(mode):
            ti.type = tarfile.CHRTYPE if stat_mod.S_ISCHR(mode) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat_mod.S_ISFIFO(mode):
            ti.type = tarfile.FIFOTYPE
        else:
            self._warn(entry.path, "unknown file type; skipped")
            return
        if self.xattrs and not hidden:
            pax = _xattr_pax(entry, fileobj)
            if pax:
                ti.pax_headers = {**ti.pax_headers, **pax}
        try:
            self.tar.addfile(ti, reader)
        finally:
            if fileobj is not None:
                if reader is not None and reader.short:
                    self._warn(entry.path, f"shrank by {reader.short} bytes while read; "
                                           "zero-padded to the size in its header")
                elif reader is not None and reader.grew():
                    self._warn(entry.path, "grew while read; truncated to the size in its header")
                fileobj.close()
        self.stats.entries += 1
        self.stats.bytes += ti.size
        if self.progress is not None:
            self.progress(self.stats.entries, self.stats.bytes)
        if self.stats.entries % CHECK_EVERY == 0:
            self.root.check_alive()

    def close(self) -> None:
        if not self._done:
            self._done = True
            self.tar.close()

    def abort(self) -> None:
        """Flush what was written but no end-of-archive blocks: a reader sees the stream
        truncated rather than a complete-looking archive."""
        if not self._done:
            self._done = True
            stream = self.tar.fileobj
            if stream is not None:
                stream.close()  # the stream's buffer only; ``out`` itself stays open


def _arcname(entry_path: str, top: str, prefix: str) -> str:
    rel = entry_path[len(top):].lstrip("/") if top != "/" else entry_path.lstrip("/")
    if prefix:
        return prefix + ("/" + rel if rel else "")
    return rel


def write_tar(root: Root, out: BinaryIO, path: PathArg = "/", *, prefix: str | None = None,
              include_mounts: bool = False, follow: bool = True,
              on_warning: WarnFn | None = None,
              progress: ProgressFn | None = None) -> ArchiveStats:
    """Tar ``path`` (the whole root by default) to ``out``.

    Member names are relative: for the root, ``bin``, ``etc/passwd``... as docker export
    writes them; otherwise under ``prefix`` (default: the base name of ``path``, as docker cp
    writes them). Other mounts (proc, sys, dev, volumes, binds) appear as their empty mount
    point unless ``include_mounts``. Raises ProcessGone if the container went away.
    """
    from ctrfs.rootfs.base import base_name, norm_path

    top = norm_path(path).rstrip("/") or "/"
    is_root = base_name(path) == ""
    if prefix is None:
        prefix = base_name(path)
    stats = ArchiveStats()

    def warn(wr: WalkWarning) -> None:
        stats.warnings += 1
        if on_warning is not None:
            on_warning(wr)

    entries = root.walk(path, follow=follow, one_filesystem=not include_mounts, on_warning=warn)
    w: TarWriter | None = None
    try:
        first = next(entries)  # a bad PATH fails here, before a single byte is written
        w = TarWriter(root, out, on_warning=warn, progress=progress,
                      include_mounts=include_mounts)
        w.stats = stats
        pseudo = PseudoFilter(warn)
        for e in itertools.chain((first,), entries):
            if pseudo.skip(e):
                continue
            if e.depth == 0:
                if is_root:
                    continue  # docker export has no "./" member
                e.mount_point = False
            w.add(e, _arcname(e.path, top, prefix))
        root.check_alive()
        # The end-of-archive blocks only after success: a failed stream stays visibly truncated.
        w.close()
    finally:
        if w is not None:
            w.abort()
        entries.close()  # type: ignore[attr-defined]
    return stats
