"""tail [-n N] [-f | -F]: the end of a file, then what is appended to it.

Following waits on inotify (inotify(7)) for the opened file itself, watched through
``/proc/self/fd/N`` so the watch is on the inode we read, not on a name the container
controls. ``poll`` wakes on events, or once a second to check that the container is still
there and (with ``-F``) whether the name now leads to another file.

``-F`` (follow the name) survives log rotation (the old file is read to its end, then the new
one from its start), truncation (reading restarts at 0), and a restart of the container: when
its process is gone, ``reopen`` (which re-resolves the TARGET) is retried until the container
is back, and the file is followed in the new instance (from where we were if it is the same,
not shorter, file).
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable, Generator, Iterator

from ctrfs._record import dataclass
from ctrfs.errors import CtrfsError, NotFound, ProcessGone
from ctrfs.rootfs import _sys
from ctrfs.rootfs.base import PathArg, Root, norm_path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

READ_CHUNK = 1 << 16
TAIL_WINDOW_MAX = 64 << 20  # never hold more than this while looking for the last N lines
_FILE_EVENTS = (_sys.IN_MODIFY | _sys.IN_ATTRIB | _sys.IN_CLOSE_WRITE | _sys.IN_MOVE_SELF
                | _sys.IN_DELETE_SELF)
_DIR_EVENTS = _sys.IN_CREATE | _sys.IN_MOVED_TO


@dataclass
class TailData:
    data: bytes


@dataclass
class TailNotice:
    """Something the user should know (on stderr): truncation, rotation, restart."""

    message: str


TailEvent = TailData | TailNotice


def last_lines(f: BinaryIO, n: int) -> tuple[bytes, int]:
    """The last ``n`` lines of ``f`` and the offset just after them (the end when read)."""
    end = f.seek(0, os.SEEK_END)
    if n <= 0:
        return b"", end
    pos = end
    data = b""
    while pos > 0 and data.count(b"\n") <= n:
        step = min(READ_CHUNK, pos)
        pos -= step
        f.seek(pos)
        data = f.read(step) + data
        if len(data) > TAIL_WINDOW_MAX:
            data = data[-TAIL_WINDOW_MAX:]
            break
    body = data[:-1] if data.endswith(b"\n") else data
    cut = -1
    for _ in range(n):
        cut = body.rfind(b"\n", 0, cut if cut >= 0 else None)
        if cut < 0:
            break
    out = data if cut < 0 else data[cut + 1:]
    f.seek(end)
    return out, end


class _Follower:
    def __init__(self, root: Root, path: PathArg) -> None:
        self.root = root
        self.path = path
        self.shown = norm_path(path)
        self.f: BinaryIO | None = None
        self.pos = 0
        self.ino = _sys.inotify_init(_sys.IN_CLOEXEC | _sys.IN_NONBLOCK)
        self.wd = -1
        self.dir_wd = -1
        self.missing_reported = False

    def open(self, f: BinaryIO, pos: int) -> None:
        if self.f is not None:
            self.f.close()
        self.f = f
        self.pos = pos
        f.seek(pos)
        if self.wd >= 0:
            _sys.inotify_rm_watch(self.ino, self.wd)
        self.wd = _sys.inotify_add_watch(self.ino, f"/proc/self/fd/{f.fileno()}".encode(),
                                         _FILE_EVENTS)

    def watch_parent(self) -> None:
        """Also wake when a file appears in the directory (rotation), if the Root gives fds."""
        if self.dir_wd >= 0:
            _sys.inotify_rm_watch(self.ino, self.dir_wd)
            self.dir_wd = -1
        parent = os.path.dirname(self.shown.rstrip("/")) or "/"
        try:
            fd = self.root.resolve(parent)
        except (CtrfsError, NotImplementedError):
            return
        try:
            self.dir_wd = _sys.inotify_add_watch(self.ino, f"/proc/self/fd/{fd}".encode(),
                                                 _DIR_EVENTS)
        except OSError:
            self.dir_wd = -1
        finally:
            os.close(fd)

    def drain(self) -> Iterator[TailEvent]:
        f = self.f
        assert f is not None
        size = os.fstat(f.fileno()).st_size
        if size < self.pos:
            yield TailNotice(f"{self.shown}: file truncated")
            self.pos = 0
            f.seek(0)
        while True:
            chunk = f.read(READ_CHUNK)
            if not chunk:
                break
            self.pos += len(chunk)
            yield TailData(chunk)

    def wait(self, timeout: float) -> None:
        p = select.poll()
        p.register(self.ino, select.POLLIN)
        if p.poll(int(timeout * 1000)):
            try:
                while os.read(self.ino, 65536):
                    pass
            except BlockingIOError:
                pass

    def renamed(self) -> BinaryIO | None:
        """With -F: the new file if the name now leads elsewhere (rotation), else None."""
        assert self.f is not None
        try:
            st = self.root.stat(self.path)
        except NotFound:
            return None
        mine = os.fstat(self.f.fileno())
        if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
            return None
        try:
            return self.root.open_file(self.path)
        except NotFound:
            return None

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None
        os.close(self.ino)


def tail(root: Root, path: PathArg, *, lines: int = 10, follow: str | None = None,
         reopen: Callable[[], Root] | None = None,
         interval: float = 1.0,
         stop: Callable[[], bool] | None = None) -> Generator[TailEvent, None, None]:
    """The last ``lines`` lines of ``path``; then, with ``follow`` "descriptor" (-f) or
    "name" (-F), appended data forever (stop by closing the iterator or Ctrl-C).

    ``reopen`` gives a fresh Root of the same target after a restart (used with "name");
    the Root passed in is closed when replaced. ``stop`` is asked after every wait: when it
    says True the generator ends (a UI following from a thread, which cannot close the
    generator while it waits).
    """
    try:
        f = root.open_file(path)
    except NotFound:
        if follow != "name":
            raise
        # tail -F on a file that does not exist yet waits for it, then shows it from its start
        yield TailNotice(f"{norm_path(path)}: no such file yet; waiting for it to appear")
        waited = _await_file(root, path, interval, stop)
        if waited is None:
            return
        f = waited
        yield TailNotice(f"{norm_path(path)} has appeared; following it")
        lines = -1
    try:
        if lines < 0:
            head, end = f.read(), f.tell()
        else:
            head, end = last_lines(f, lines)
    except BaseException:
        f.close()
        raise
    if head:
        yield TailData(head)
    if follow is None:
        f.close()
        root.check_alive()
        return
    fw = _Follower(root, path)
    try:
        fw.open(f, end)
        if follow == "name":
            fw.watch_parent()
        while True:
            yield from fw.drain()
            fw.wait(interval)
            if stop is not None and stop():
                return
            yield from fw.drain()
            try:
                fw.root.check_alive()
                new = fw.renamed() if follow == "name" else None
            except ProcessGone:
                if follow != "name" or reopen is None:
                    raise
                yield TailNotice(f"{fw.shown}: the container stopped; waiting for it to return")
                yield from _await_restart(fw, reopen, interval)
                continue
            if follow == "name":
                if new is not None:
                    yield from fw.drain()  # what was written to the old file before rotation
                    yield TailNotice(f"{fw.shown} has been replaced; following new file")
                    fw.open(new, 0)
                    fw.watch_parent()
    finally:
        fw.close()
        if fw.root is not root:
            fw.root.close()  # a Root opened after a restart; the caller owns the first one


def _await_file(root: Root, path: PathArg, interval: float,
                stop: Callable[[], bool] | None) -> BinaryIO | None:
    while True:
        time.sleep(interval)
        if stop is not None and stop():
            return None
        root.check_alive()
        try:
            return root.open_file(path)
        except NotFound:
            continue


def _await_restart(fw: _Follower, reopen: Callable[[], Root], interval: float) -> Iterator[TailEvent]:
    old_ino = os.fstat(fw.f.fileno()).st_ino if fw.f is not None else None
    while True:
        time.sleep(interval)  # nothing to wait on: the container does not exist right now
        try:
            new_root = reopen()
        except CtrfsError:
            continue
        try:
            f = new_root.open_file(fw.path)
        except CtrfsError:
            new_root.close()
            continue
        break
    st = os.fstat(f.fileno())
    fw.root.close()
    fw.root = new_root
    same = old_ino is not None and st.st_ino == old_ino and st.st_size >= fw.pos
    yield TailNotice(f"{fw.shown}: the container is back; following "
                     + ("from where it was" if same else "the file from its start"))
    fw.open(f, fw.pos if same else 0)
    fw.watch_parent()
