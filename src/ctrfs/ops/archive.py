"""Tar streams out of a container (export, ``cp TARGET:PATH -``), written from fds.

Each member's header comes from the entry's fstat-equivalent metadata and its data from the
entry's own fd (:meth:`Entry.open_fd`), never by opening a path again. On a private nodev clone
of the container's root mount (:func:`ctrfs.views.rootfs_view`), the walk and the common members
(small files, directories, symlinks) are done by the C core ``ctrfs._native`` when it is built;
it hands every other member to :meth:`TarWriter.add` (see :class:`_NativeHooks`), so both write
the same archive byte for byte. Headers are pax
(POSIX.1-2001) formatted here rather than by :mod:`tarfile` (whose TarInfo per member cost
more than the rest of an export together); output reads back identically with tarfile and
GNU tar. The tar is streamed, so memory stays flat whatever the size of the tree.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import io
import os
import queue
import select
import stat as stat_mod
import threading
import zlib
from collections.abc import Callable

from ctrfs._record import dataclass
from ctrfs.errors import CtrfsError, NotFound
from ctrfs.ops.names import Names
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
from ctrfs.rootfs.fd import FdEntry, FdRoot

try:
    # The C core of the walk (setup.py builds it where a compiler is found); without it, or with
    # CTRFS_NATIVE=0, every member is written by the Python code below, the reference.
    from ctrfs import _native
except ImportError:
    _native = None  # type: ignore[assignment]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

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
    core: str = "python"  # "c" when the C core walked the tree (see _NativeHooks)


# -- the tar format, written directly ----------------------------------------------------------
# POSIX.1-2001 pax (ustar blocks + 'x' extended headers, IEEE Std 1003.1 "pax Interchange
# Format"), laid out exactly as CPython's tarfile writes PAX_FORMAT, without a TarInfo per member.

BLOCK = 512
RECORD = 20 * BLOCK  # tar pads the archive to whole records (GNU tar's and tarfile's default)
OUT_BUFFER = 1 << 20
SMALL_FILE = 1 << 16  # smaller files are read into the output buffer; bigger ones go by sendfile
SENDFILE_MAX = 0x7FFFF000  # the most sendfile(2) moves in one call
SINK_DEPTH = 4  # buffers or open files queued for the writer thread
MAX_SPARSE_SEGMENTS = 1 << 16  # a sparse map's entries held in memory (~6 MiB at most)
_ZEROS = bytes(OUT_BUFFER)
_ZVIEW = memoryview(_ZEROS)  # slices of it pad members without allocating
_MAX_OCTAL_8 = 8 ** 7
_MAX_OCTAL_12 = 8 ** 11
_Z16 = bytes(16)
_Z167 = bytes(167)
_ASCII_OR_Q = bytes(range(128)) + b"?" * 128
_adler32 = zlib.adler32


def _ustar(name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int, typeflag: bytes,
           linkname: bytes = b"", uname: bytes = b"", gname: bytes = b"", devmajor: int = 0,
           devminor: int = 0) -> bytes:
    """One ustar header block. Numbers must fit their octal fields (callers move bigger ones
    to pax records); names longer than their fields are cut (idem)."""
    dev = b"%07o\0%07o\0" % (devmajor, devminor) if typeflag in (b"3", b"4") else _Z16
    head = b"".join((
        name[:100].ljust(100, b"\0"),
        # mode uid gid size mtime, then the checksum field as 8 spaces while summing
        b"%07o\0%07o\0%07o\0%011o\0%011o\0        " % (mode, uid, gid, size, mtime),
        typeflag, linkname[:100].ljust(100, b"\0"), b"ustar\x0000",
        uname[:32].ljust(32, b"\0"), gname[:32].ljust(32, b"\0"), dev))
    # The checksum is the plain sum of the header's bytes; the rest of the block (prefix,
    # padding) is zeros. Adler-32's low half is 1 + the byte sum mod 65521, exact for 256
    # bytes or fewer (at most 65280): two C calls instead of a Python-level sum.
    m = memoryview(head)
    chk = (_adler32(m[:256]) & 0xFFFF) + (_adler32(m[256:]) & 0xFFFF) - 2
    return b"%s%06o\0 %s%s" % (head[:148], chk, head[156:], _Z167)


def _pax_record(key: bytes, value: bytes) -> bytes:
    # "%d %s=%s\n" where %d counts the whole record, itself included
    n = len(key) + len(value) + 3
    p = 0
    while True:
        total = n + len(str(p))
        if total == p:
            return b"%d %s=%s\n" % (p, key, value)
        p = total


def _pax_header(records: dict[bytes, bytes]) -> bytes:
    """An 'x' extended header (header block + padded records) for the member that follows."""
    binary = False
    for v in records.values():
        try:
            v.decode("utf-8")
        except UnicodeDecodeError:
            binary = True
            break
    # Values are UTF-8 by default; names that are not (raw bytes from the container) need
    # hdrcharset=BINARY first, as tarfile and GNU tar write and read it.
    body = b"".join([b"21 hdrcharset=BINARY\n"] * binary +
                    [_pax_record(k, v) for k, v in records.items()])
    return (_ustar(b"././@PaxHeader", 0, 0, 0, len(body), 0, b"x") + body +
            bytes(-len(body) % BLOCK))


def _ascii_field(value: bytes) -> bytes:
    return value.translate(_ASCII_OR_Q)


def _fd_xattrs(fd: int) -> dict[str, bytes]:
    out = {}
    for name in os.listxattr(fd):
        try:
            out[name] = os.getxattr(fd, name)
        except OSError:
            continue  # removed meanwhile, or not readable: as if absent
    return out


def _xattr_records(attrs: dict[str, bytes], pax: dict[bytes, bytes]) -> None:
    for name, value in attrs.items():
        if name.startswith(SKIP_XATTR_PREFIXES):
            continue
        # SCHILY.xattr.* is the pax record GNU tar, bsdtar and Go's archive/tar use; the value
        # is the attribute's raw bytes.
        pax[b"SCHILY.xattr." + os.fsencode(name)] = value


def data_segments(fd: int, size: int) -> list[tuple[int, int]] | None:
    """(offset, length) of the data in a file of ``size`` bytes, from SEEK_DATA/SEEK_HOLE
    (lseek(2)); None if it has no holes or the filesystem cannot tell. A file ending in a hole
    gets a last (size, 0) entry, as GNU tar writes it. Past MAX_SPARSE_SEGMENTS, the rest of
    the file is one segment (holes in it written as zeros): the map stays bounded in memory."""
    segs: list[tuple[int, int]] = []
    off = 0
    while off < size:
        try:
            data = os.lseek(fd, off, os.SEEK_DATA)
        except OSError as err:
            if err.errno == errno.ENXIO:  # no data after off: the rest is a hole
                break
            if err.errno in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
                return None
            raise
        if data >= size:
            break
        if len(segs) == MAX_SPARSE_SEGMENTS - 1:
            segs.append((data, size - data))
            break
        hole = min(os.lseek(fd, data, os.SEEK_HOLE), size)
        segs.append((data, hole - data))
        off = hole
    if segs == [(0, size)]:
        return None
    if not segs or sum(segs[-1]) < size:
        segs.append((size, 0))
    return segs


class _FdSink:
    """The archive's writer thread: writes buffers and copies big files' data to ``fd`` in
    order, so the kernel's copying (sendfile, page cache to pipe or file) runs while the main
    thread walks, opens and formats the next members. The queue is short: at most
    SINK_DEPTH buffers (1 MiB each) and open files are in flight, whatever the tree."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.sendfile = True
        self.q: queue.Queue[bytearray | tuple[int, list[tuple[int, int]], int, str, int] | None]
        self.q = queue.Queue(maxsize=SINK_DEPTH)
        self.error: BaseException | None = None
        self.warnings: collections.deque[WalkWarning] = collections.deque()
        self.thread = threading.Thread(target=self._run, name="ctrfs-tar-writer", daemon=True)
        self.thread.start()

    def put(self, item: bytearray | tuple[int, list[tuple[int, int]], int, str, int]) -> None:
        """Queue a buffer, or a file (its fd then belongs to the writer thread, which closes
        it). Raises what the writer met before; the fd then stays the caller's."""
        if self.error is not None:
            raise self.error
        self.q.put(item)

    def finish(self) -> None:
        """Wait for everything queued to be written; raise what the writer met."""
        if self.thread.is_alive():
            self.q.put(None)
            self.thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        while True:
            item = self.q.get()
            if item is None:
                return
            if isinstance(item, tuple):
                try:
                    if self.error is None:
                        self._file(*item)
                except BaseException as err:  # noqa: BLE001 - handed to the main thread
                    self.error = err
                finally:
                    os.close(item[0])
            elif self.error is None:
                try:
                    self._write(item)
                except BaseException as err:  # noqa: BLE001 - handed to the main thread
                    self.error = err

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                _wait_writable(self.fd)
                continue
            view = view[n:]

    def _zeros(self, n: int) -> None:
        while n > 0:
            k = min(n, OUT_BUFFER)
            self._write(memoryview(_ZEROS)[:k])
            n -= k

    def _file(self, fd: int, segs: list[tuple[int, int]], size: int, path: str,
              pad: int) -> None:
        short = 0
        for off, count in segs:
            if count:
                got = self._send(fd, off, count)
                if got < count:
                    self._zeros(count - got)
                    short += count - got
        if short:
            self.warnings.append(WalkWarning(path, f"shrank by {short} bytes while read; "
                                                   "zero-padded to the size in its header"))
        elif os.pread(fd, 1, size):
            self.warnings.append(WalkWarning(path, "grew while read; truncated to the size "
                                                   "in its header"))
        if pad:
            self._write(memoryview(_ZEROS)[:pad])

    def _send(self, fd: int, off: int, count: int) -> int:
        got = 0
        while got < count and self.sendfile:
            try:
                n = os.sendfile(self.fd, fd, off + got, min(count - got, SENDFILE_MAX))
            except BlockingIOError:
                _wait_writable(self.fd)
                continue
            except OSError as err:
                # Filesystems without splice_read, outputs sendfile cannot write to:
                # read and write instead, for this and later files.
                if err.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
                self.sendfile = False
                break
            if n == 0:
                return got
            got += n
        while got < count:
            chunk = os.pread(fd, min(count - got, OUT_BUFFER), off + got)
            if not chunk:
                break
            self._write(chunk)
            got += len(chunk)
        return got


class TarWriter:
    """Adds Root entries to a streamed pax tar written to ``out``.

    Headers are formatted here. Small files are read (pread on the entry's own fd) into a
    1 MiB output buffer; bigger ones are copied by sendfile(2) from their fd to ``out``'s fd in
    a writer thread (:class:`_FdSink`) while this one goes on. Where ``out`` has no fd
    (BytesIO), everything goes through the buffer. Memory stays flat: a few buffers, one
    sparse map at most."""

    def __init__(self, root: Root, out: BinaryIO, *, on_warning: WarnFn | None = None,
                 progress: ProgressFn | None = None, xattrs: bool = True,
                 include_mounts: bool = False) -> None:
        self.root = root
        self.names = Names(root)
        self.idmap = root.idmap
        self.warn = on_warning or (lambda w: None)
        self.progress = progress
        self.xattrs = xattrs
        self.include_mounts = include_mounts
        self.stats = ArchiveStats()
        # (dev, ino) → [first member name, links still expected]; dropped when all were seen,
        # so memory follows the number of partly-seen multi-link inodes, not the tree size.
        self.links: dict[tuple[int, int], list[Any]] = {}
        self._done = False
        self.out = out
        self.out_fd = -1
        try:
            out.flush()
            self.out_fd = out.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
            self.out_fd = -1
        self.sink: _FdSink | None = None
        if self.out_fd >= 0:
            _grow_pipe(self.out_fd)
            self.sink = _FdSink(self.out_fd)
        self.buf = bytearray()
        self.written = 0  # bytes handed to ``out`` so far (the archive's offset)
        self._owners: dict[tuple[int, int], tuple[bytes, bytes, bool]] = {}

    def _warn(self, path: str, message: str) -> None:
        self.warn(WalkWarning(path, message))

    # -- output ------------------------------------------------------------------------------
    def _flush(self) -> None:
        if not self.buf:
            return
        self.written += len(self.buf)
        if self.sink is not None:
            self.sink.put(self.buf)
        else:
            self.out.write(self.buf)
        self.buf = bytearray()

    def _zeros(self, n: int) -> None:
        while n > 0:
            k = min(n, OUT_BUFFER)
            self.buf += _ZEROS[:k] if k < OUT_BUFFER else _ZEROS
            n -= k
            if len(self.buf) >= OUT_BUFFER:
                self._flush()

    def _copy(self, fd: int, off: int, count: int) -> int:
        """Copy ``count`` bytes at ``off`` of ``fd`` through the buffer; bytes missing (the
        file shrank) are zeros. Returns how many came from the file."""
        got = 0
        while got < count:
            chunk = os.pread(fd, min(count - got, OUT_BUFFER), off + got)
            if not chunk:
                break
            self.buf += chunk
            got += len(chunk)
            if len(self.buf) >= OUT_BUFFER:
                self._flush()
        if got < count:
            self._zeros(count - got)
        return got

    # -- members -----------------------------------------------------------------------------
    def _owner(self, uid: int, gid: int) -> tuple[bytes, bytes, bool]:
        """(uname, gname, whether uid, gid and both names fit their ustar fields)."""
        key = (uid, gid)
        o = self._owners.get(key)
        if o is None:
            uname = os.fsencode(self.names.user(uid) or "")
            gname = os.fsencode(self.names.group(gid) or "")
            fits = (len(uname) <= 32 and uname.isascii() and len(gname) <= 32
                    and gname.isascii() and 0 <= uid < _MAX_OCTAL_8 and 0 <= gid < _MAX_OCTAL_8)
            o = self._owners[key] = (uname, gname, fits)
        return o

    def _header(self, name: bytes, st: os.stat_result, typeflag: bytes, size: int,
                linkname: bytes, pax: dict[bytes, bytes], dev: tuple[int, int] = (0, 0)) -> None:
        uid, gid, mtime = st.st_uid, st.st_gid, int(st.st_mtime)
        if self.idmap is not None:  # owners as the container sees them (its user namespace)
            uid, gid = self.idmap.uid(uid), self.idmap.gid(gid)
        uname, gname, fits = self._owner(uid, gid)
        if (fits and not pax and len(name) <= 100 and name.isascii() and len(linkname) <= 100
                and linkname.isascii() and size < _MAX_OCTAL_12 and 0 <= mtime < _MAX_OCTAL_12):
            self.buf += _ustar(name, st.st_mode & 0o7777, uid, gid, size, mtime, typeflag,
                               linkname, uname, gname, *dev)
            return
        # What does not fit a ustar field goes to a pax record, as tarfile's PAX_FORMAT does.
        if b"GNU.sparse.name" not in pax and (len(name) > 100 or not name.isascii()):
            pax[b"path"] = name
            name = _ascii_field(name)
        if len(linkname) > 100 or not linkname.isascii():
            pax[b"linkpath"] = linkname
            linkname = _ascii_field(linkname)
        if len(uname) > 32 or not uname.isascii():
            pax[b"uname"] = uname
            uname = _ascii_field(uname)
        if len(gname) > 32 or not gname.isascii():
            pax[b"gname"] = gname
            gname = _ascii_field(gname)
        if not 0 <= uid < _MAX_OCTAL_8:
            pax[b"uid"] = b"%d" % uid
            uid = 0
        if not 0 <= gid < _MAX_OCTAL_8:
            pax[b"gid"] = b"%d" % gid
            gid = 0
        if not 0 <= size < _MAX_OCTAL_12:
            pax[b"size"] = b"%d" % size
            size = 0
        if not 0 <= mtime < _MAX_OCTAL_12:
            pax[b"mtime"] = b"%d" % mtime
            mtime = 0
        if pax:
            self.buf += _pax_header(pax)
        self.buf += _ustar(name, st.st_mode & 0o7777, uid, gid, size, mtime, typeflag,
                           linkname, uname, gname, *dev)

    def add(self, entry: Entry, arcname: str) -> None:
        st = entry.stat
        mode = st.st_mode
        fmt = stat_mod.S_IFMT(mode)
        name = os.fsencode(arcname)
        linkname = b""
        size = 0
        dev = (0, 0)
        pax: dict[bytes, bytes] = {}
        fd = -1
        if fmt == stat_mod.S_IFSOCK:
            self._warn(entry.path, "socket; tar cannot hold it, skipped")
            return
        hidden = entry.mount_point and not self.include_mounts
        if hidden and fmt != stat_mod.S_IFDIR:
            # A file bind-mounted over the root fs (/etc/hosts, /etc/resolv.conf...): the file
            # beneath it is hidden from /proc/<pid>/root. Keep the name, as an empty file,
            # like docker export's view of the runtime's placeholder.
            typeflag = b"0"
        elif fmt == stat_mod.S_IFDIR:
            typeflag = b"5"
            if not name.endswith(b"/"):
                name += b"/"
        elif fmt == stat_mod.S_IFLNK:
            typeflag = b"2"
            try:
                linkname = entry.readlink()
            except NotFound:
                self._warn(entry.path, "vanished during the export; skipped")
                return
        elif st.st_nlink > 1 and (st.st_dev, st.st_ino) in self.links:
            first = self.links[(st.st_dev, st.st_ino)]
            typeflag = b"1"
            linkname = first[0]
            first[1] -= 1
            if first[1] <= 0:
                del self.links[(st.st_dev, st.st_ino)]
        elif fmt == stat_mod.S_IFREG:
            typeflag = b"0"
            size = st.st_size
            try:
                fd = entry.open_fd()
            except (NotFound, NotRegularFile):
                self._warn(entry.path, "vanished or replaced during the export; skipped")
                return
            if st.st_nlink > 1:
                self.links[(st.st_dev, st.st_ino)] = [name, st.st_nlink - 1]
        elif fmt == stat_mod.S_IFCHR or fmt == stat_mod.S_IFBLK:
            typeflag = b"3" if fmt == stat_mod.S_IFCHR else b"4"
            dev = (os.major(st.st_rdev), os.minor(st.st_rdev))
        elif fmt == stat_mod.S_IFIFO:
            typeflag = b"6"
        else:
            self._warn(entry.path, "unknown file type; skipped")
            return
        try:
            if self.xattrs and not hidden:
                try:
                    attrs = _fd_xattrs(fd) if fd >= 0 else entry.xattrs()
                except (CtrfsError, OSError):
                    attrs = {}
                if attrs:
                    _xattr_records(attrs, pax)
            if fd >= 0:
                if self._file(entry, fd, name, size, pax):
                    fd = -1  # the writer thread closes it
            else:
                self._header(name, st, typeflag, 0, linkname, pax, dev)
        finally:
            if fd >= 0:
                os.close(fd)
        if len(self.buf) >= OUT_BUFFER:
            self._flush()
        if self.sink is not None and self.sink.warnings:
            self._sink_warnings()
        self.stats.entries += 1
        self.stats.bytes += size
        if self.progress is not None:
            self.progress(self.stats.entries, self.stats.bytes)
        if self.stats.entries % CHECK_EVERY == 0:
            self.root.check_alive()

    def _file(self, entry: Entry, fd: int, name: bytes, size: int,
              pax: dict[bytes, bytes]) -> bool:
        """The member of an open regular file. True if ``fd`` was handed to the writer
        thread (which closes it)."""
        st = entry.stat
        # Fewer blocks allocated than the size needs: maybe holes (or compression, inline
        # data: data_segments tells).
        segs = data_segments(fd, size) if size and st.st_blocks * 512 < size else None
        if segs is not None:
            # GNU sparse format 1.0 (GNU tar manual, "Storing Sparse Files"): the real name and
            # size in pax records, then in the member's data a map ("count\n" then
            # "offset\nlength\n" per segment, padded to a block), then the segments' data.
            smap = b"%d\n" % len(segs) + b"".join(b"%d\n%d\n" % s for s in segs)
            smap += bytes(-len(smap) % BLOCK)
            pax[b"GNU.sparse.major"] = b"1"
            pax[b"GNU.sparse.minor"] = b"0"
            pax[b"GNU.sparse.name"] = name
            pax[b"GNU.sparse.realsize"] = b"%d" % size
            head, _, base = name.rpartition(b"/")
            stored = len(smap) + sum(n for _, n in segs)
            self._header((head + b"/" if head else b"") + b"GNUSparseFile.0/" + base, st,
                         b"0", stored, b"", pax)
            self.buf += smap
        elif size <= SMALL_FILE:
            self._header(name, st, b"0", size, b"", pax)
            self._small(entry, fd, size)
            return False
        else:
            self._header(name, st, b"0", size, b"", pax)
            stored = size
            segs = [(0, size)]
        pad = -stored % BLOCK
        if self.sink is not None:
            self._flush()  # the header (and a sparse map) go first
            self.written += sum(n for _, n in segs) + pad
            self.sink.put((fd, segs, size, entry.path, pad))
            return True
        short = 0
        for off, n in segs:
            if n:
                short += n - self._copy(fd, off, n)
        if short:
            self._warn(entry.path, f"shrank by {short} bytes while read; "
                                   "zero-padded to the size in its header")
        elif os.pread(fd, 1, size):
            self._warn(entry.path, "grew while read; truncated to the size in its header")
        self.buf += _ZVIEW[:pad]
        return False

    def _small(self, entry: Entry, fd: int, size: int) -> None:
        # One pread for content and growth: asking one byte more than the size listed
        # tells whether the file grew (a regular file reads short only at its end).
        data = os.pread(fd, size + 1, 0) if size else b""
        got = len(data)
        while got < size:
            more = os.pread(fd, size + 1 - got, got)
            if not more:
                break
            data += more
            got += len(more)
        if got > size:
            self.buf += memoryview(data)[:size]
            self._warn(entry.path, "grew while read; truncated to the size in its header")
        else:
            self.buf += data
            if got < size:
                self._zeros(size - got)
                self._warn(entry.path, f"shrank by {size - got} bytes while read; "
                                       "zero-padded to the size in its header")
        self.buf += _ZVIEW[:-size % BLOCK]

    def _sink_warnings(self) -> None:
        if self.sink is not None:
            while self.sink.warnings:
                self.warn(self.sink.warnings.popleft())

    def close(self) -> None:
        """End the archive: two zero blocks, padded to a whole record."""
        if not self._done:
            self._done = True
            self.buf += bytes(2 * BLOCK)
            self.buf += bytes(-(self.written + len(self.buf)) % RECORD)
            self._flush()
            if self.sink is not None:
                self.sink.finish()
                self._sink_warnings()

    def abort(self) -> None:
        """Flush what was written but no end-of-archive blocks: a reader sees the stream
        truncated rather than a complete-looking archive."""
        if not self._done:
            self._done = True
            with contextlib.suppress(Exception):
                self._flush()
            if self.sink is not None:
                with contextlib.suppress(Exception):
                    self.sink.finish()
                self._sink_warnings()


def _grow_pipe(fd: int) -> None:
    # A pipe holds 64 KiB by default: the reader wakes for every 64 KiB moved. 1 MiB
    # (/proc/sys/fs/pipe-max-size's default, allowed to anyone) moves bulk data in fewer
    # rounds (fcntl(2) F_SETPIPE_SZ). Anything else, or a refusal, is left as it is.
    try:
        if stat_mod.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, OUT_BUFFER)
    except OSError:
        pass


def _wait_writable(fd: int) -> None:
    # An output left O_NONBLOCK by whoever opened it (a shell's pipe shared with a
    # non-blocking reader): wait instead of failing with EAGAIN.
    p = select.poll()
    p.register(fd, select.POLLOUT)
    p.poll()


def _arcname(entry_path: str, top: str, prefix: str) -> str:
    rel = entry_path[len(top):].lstrip("/") if top != "/" else entry_path.lstrip("/")
    if prefix:
        return prefix + ("/" + rel if rel else "")
    return rel


def open_start(fast: FdRoot, first: FdEntry) -> int:
    """A readable fd of the directory a C core walks from (the walk's ``first`` entry, whose
    own fd is O_PATH), checked to be the directory listed."""
    st = first.stat
    with fast._errors(first.path):
        dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=first._fd)
    cst = os.fstat(dfd)
    if (cst.st_dev, cst.st_ino) != (st.st_dev, st.st_ino):
        os.close(dfd)
        raise CtrfsError("replaced while opened; try again", target=fast.target, path=first.path)
    return dfd


def native_enabled() -> bool:
    """Whether exports use the C core (built, and not turned off by ``CTRFS_NATIVE=0``)."""
    return _native is not None and os.environ.get("CTRFS_NATIVE", "1") != "0"


def _native_root(first: Entry, one_filesystem: bool) -> FdRoot | None:
    """The Root the C core may walk from ``first``: the direct-open FdRoot (a private nodev
    clone without submounts, see FdRoot) whose walk yielded it, when the walk keeps to that
    Root (one filesystem: a BoundRoot or a ContainerView then hands the whole walk to it)."""
    if not native_enabled() or not one_filesystem or not isinstance(first, FdEntry):
        return None
    fast = first._root
    if fast is not None and fast.direct_open and first._fd >= 0 and first.is_dir():
        return fast
    return None


class CoreHooks:
    """What both C cores (src/ctrfs/_native.c) call back alike: warnings, by path relative to
    the start, and every TICK entries the counts, progress and the liveness check. ``counts``
    is the caller's result (entries, bytes), ``progress`` its callback."""

    def __init__(self, fast: FdRoot, root: Root, first: Entry, warn: WarnFn, counts: Any,
                 progress: ProgressFn | None) -> None:
        self.fast = fast
        self.root = root
        self.first = first
        self.base = first.path.rstrip("/")  # container path of the start, "" for the root
        self.warn_fn = warn
        self.counts = counts
        self.progress = progress

    def _path(self, rel: bytes) -> str:
        return self.base + "/" + os.fsdecode(rel)

    def warn(self, rel: bytes, message: str) -> None:
        self.warn_fn(WalkWarning(self._path(rel) if rel else self.first.path, message))

    def tick(self, entries: int, nbytes: int) -> None:
        counts = self.counts
        counts.entries += entries
        counts.bytes += nbytes
        if self.progress is not None:
            self.progress(counts.entries, counts.bytes)
        self.root.check_alive()


class _NativeHooks(CoreHooks):
    """What the C core of export calls back (src/ctrfs/_native.c says when): it appends
    members to ``buf`` (the TarWriter's output buffer, the same bytearray), and hands every
    member it does not write itself to :meth:`member`, i.e. to :meth:`TarWriter.add`."""

    # Directory levels the C core keeps open (one fd each); deeper ones go to deep(), the
    # Python walk, with its own fd bound.
    LEVELS = 32

    def __init__(self, w: TarWriter, fast: FdRoot, root: Root, first: Entry, prefix: str,
                 warn: WarnFn) -> None:
        super().__init__(fast, root, first, warn, w.stats, w.progress)
        self.w = w
        self.buf = w.buf
        self.arcpre = prefix + "/" if prefix else ""

    def run(self) -> None:
        assert isinstance(self.first, FdEntry) and _native is not None
        dfd = open_start(self.fast, self.first)
        try:
            try:
                _native.tar_tree(dfd, self, os.fsencode(self.arcpre), self.LEVELS)
            except OSError as err:
                raise self.fast._translate(err, self.first.path) from err
        finally:
            os.close(dfd)
            self.w.buf = self.buf  # what the core appended is the writer's

    def flush(self) -> None:
        self.w._flush()
        self.buf = self.w.buf
        if self.w.sink is not None and self.w.sink.warnings:
            self.w._sink_warnings()

    def member(self, dirfd: int, name: bytes, st: tuple[Any, ...], depth: int,
               rel: bytes) -> None:
        e = FdEntry(path=self._path(rel), name=os.fsdecode(name), stat=os.stat_result(st),
                    depth=depth, _root=self.fast, _dirfd=dirfd)
        self.w.add(e, self.arcpre + os.fsdecode(rel))
        self.buf = self.w.buf

    def owner(self, uid: int, gid: int) -> tuple[int, int, bytes, bytes, bool]:
        idmap = self.w.idmap
        if idmap is not None:  # owners as the container sees them (its user namespace)
            uid, gid = idmap.uid(uid), idmap.gid(gid)
        uname, gname, fits = self.w._owner(uid, gid)
        return uid, gid, uname, gname, fits

    def deep(self, rel: bytes, dev: int, ino: int, depth: int) -> None:
        """The tree below a directory the core does not enter (deeper than LEVELS): walked
        by the Python walk from its path, if it is still the directory listed."""
        path = self._path(rel)
        arc = self.arcpre + os.fsdecode(rel)
        walk = self.fast.walk(path, follow=False, one_filesystem=True, on_warning=self.warn_fn)
        try:
            try:
                top = next(walk)
            except NotFound:
                self.warn_fn(WalkWarning(path, "vanished during the walk; skipped"))
                return
            if (top.stat.st_dev, top.stat.st_ino) != (dev, ino):
                self.warn_fn(WalkWarning(path, "replaced during the walk; skipped"))
                return
            for e in walk:
                e.depth += depth
                self.w.add(e, arc + e.path[len(path):])
        finally:
            walk.close()  # type: ignore[attr-defined]
            self.buf = self.w.buf


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
        pseudo.skip(first)  # the start itself is kept; below a kernel interface, nothing
        if not is_root:  # docker export has no "./" member
            first.mount_point = False
            w.add(first, _arcname(first.path, top, prefix))
        fast = _native_root(first, not include_mounts) if pseudo.prefix is None else None
        if fast is not None:
            stats.core = "c"
            _NativeHooks(w, fast, root, first, prefix, warn).run()
        else:
            for e in entries:
                if not pseudo.skip(e):
                    w.add(e, _arcname(e.path, top, prefix))
        root.check_alive()
        # The end-of-archive blocks only after success: a failed stream stays visibly truncated.
        w.close()
    finally:
        if w is not None:
            w.abort()
        entries.close()  # type: ignore[attr-defined]
    return stats
