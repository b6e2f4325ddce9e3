"""ctrfs's side of a session: stdio relayed through a pty or pipes, signals passed on, exit status.

The session never gets ctrfs's own descriptors: a terminal, file or directory that ctrfs's stdio
happens to be stays on the host, and the session sees only pipes made here, or a pty the helper
made in the session's own devpts (its master is relayed here). With a
pty ctrfs's terminal goes raw, so Ctrl-C, Ctrl-Z and Ctrl-\\ reach the session's foreground
process through its own line discipline; window size changes (SIGWINCH) are copied to the pty.
Signals sent to ctrfs (SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, and without a pty
SIGTSTP/SIGCONT) go to the session process through a pidfd.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import selectors
import signal
import struct
import termios
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_CHUNK = 1 << 16
_IN_BUFFER = 1 << 20  # stop reading ctrfs's stdin while this much is waiting for the session
# After the session process exits, output still held open by a process it left running is read
# until this long passes without data (docker exec returns at the process's exit, too).
_DRAIN_IDLE = 0.3
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


@dataclass
class Outcome:
    """How the session ended, or why it never started."""

    status: int | None = None  # wait status of the session process
    pid: int | None = None  # its host PID
    error: tuple[int, str] | None = None  # (exit code, message) from the helper
    exec_error: tuple[int, str] | None = None  # (errno, command) when execve failed
    captured: dict[int, bytearray] = field(default_factory=dict)


class Relay:
    """Copies bytes between ctrfs's stdio (or capture buffers) and the session's pty or pipes."""

    def __init__(self, *, status_r: int, ack_w: int, stdin: int | None, stdout: int, stderr: int,
                 pty_master: int | None, to_child: int | None, from_child: tuple[int, ...],
                 capture: bool) -> None:
        self.sel = selectors.DefaultSelector()
        self.status_r = status_r
        self.ack_w = ack_w
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.master = pty_master
        self.to_child = to_child  # pipe to the session's stdin, or the pty master
        self.outs = {fd: (stdout if i == 0 else stderr) for i, fd in enumerate(from_child)}
        self.capture = capture
        self.outcome = Outcome()
        self.pidfd: int | None = None
        self.pending: list[int] = []
        self.inbuf = bytearray()
        self.stdin_eof = stdin is None
        self._status_buf = b""
        self.closed: set[int] = set()  # fds of the caller's this relay closed (EOF, end of input)
        for fd in (*from_child, *(() if to_child is None else (to_child,))):
            os.set_blocking(fd, False)
        self.sel.register(status_r, selectors.EVENT_READ, self._on_status)
        for fd in from_child:
            self.sel.register(fd, selectors.EVENT_READ, self._on_output)
        # A regular file (or /dev/null) as stdin is always readable, and epoll refuses it (EPERM).
        self.stdin_file = False
        if stdin is not None:
            try:
                self.sel.register(stdin, selectors.EVENT_READ, self._on_stdin)
            except PermissionError:
                self.stdin_file = True
        elif to_child is not None and pty_master is None:
            self._close(to_child)
            self.to_child = None

    # -- signals -------------------------------------------------------------------------------

    def send_signal(self, signum: int) -> None:
        if self.pidfd is None:
            self.pending.append(signum)
            return
        try:
            signal.pidfd_send_signal(self.pidfd, signum)
        except ProcessLookupError:
            pass

    # -- loop ----------------------------------------------------------------------------------

    def run(self) -> Outcome:
        try:
            self._loop()
        finally:
            self.sel.close()
            if self.pidfd is not None:
                os.close(self.pidfd)
                self.pidfd = None
        return self.outcome

    def _loop(self) -> None:
        status_open = True
        idle_since: float | None = None
        while True:
            ended = self.outcome.status is not None or self.outcome.error is not None
            if ended and not self.outs:
                break
            if ended and not status_open and idle_since is None:
                idle_since = time.monotonic()
            timeout = None
            if idle_since is not None:
                timeout = _DRAIN_IDLE - (time.monotonic() - idle_since)
                if timeout <= 0:
                    break
            if not status_open and not ended:
                break  # the helper died without a word
            file_ready = self.stdin_file and not self.stdin_eof and len(self.inbuf) <= _IN_BUFFER
            if file_ready:
                timeout = 0
            events = self.sel.select(timeout)
            if file_ready:
                assert self.stdin is not None
                self._on_stdin(self.stdin, selectors.EVENT_READ)
            for key, mask in events:
                cb: Callable[[int, int], bool | None] = key.data
                if cb(key.fd, mask) is False and key.fd == self.status_r:
                    status_open = False
                if idle_since is not None and key.fd in self.outs:
                    idle_since = time.monotonic()
            if not status_open and self.status_r in self.sel.get_map():
                self.sel.unregister(self.status_r)

    def _on_status(self, fd: int, mask: int) -> bool:
        data = os.read(fd, 4096)
        if not data:
            return False
        self._status_buf += data
        while b"\n" in self._status_buf:
            line, _, self._status_buf = self._status_buf.partition(b"\n")
            self._message(line)
        return True

    def _message(self, line: bytes) -> None:
        kind, _, rest = line.partition(b" ")
        if kind == b"p":
            pid = int(rest)
            self.outcome.pid = pid
            try:
                self.pidfd = os.pidfd_open(pid)
            except OSError:
                self.pidfd = None
            try:
                os.write(self.ack_w, b"k")
            except OSError:
                pass
            for s in self.pending:
                self.send_signal(s)
            self.pending.clear()
        elif kind == b"s":
            self.outcome.status = int(rest)
        elif kind == b"e":
            code, _, msg = rest.partition(b" ")
            self.outcome.error = (int(code), msg.decode("utf-8", "replace"))
        elif kind == b"x":
            err, _, cmd = rest.partition(b" ")
            self.outcome.exec_error = (int(err), os.fsdecode(cmd))

    def _on_output(self, fd: int, mask: int) -> None:
        try:
            data = os.read(fd, _CHUNK)
        except OSError as e:
            if e.errno == errno.EAGAIN:
                return
            if e.errno != errno.EIO:  # EIO: the pty's last slave is closed
                raise
            data = b""
        if not data:
            self.sel.unregister(fd)
            self.outs.pop(fd)
            if fd != self.master:
                self._close(fd)
            return
        dest = self.outs[fd]
        if self.capture:
            self.outcome.captured.setdefault(dest, bytearray()).extend(data)
        else:
            _write_all(dest, data)

    def _on_stdin(self, fd: int, mask: int) -> None:
        assert self.stdin is not None
        data = os.read(fd, _CHUNK) if mask & selectors.EVENT_READ else b""
        if data:
            self.inbuf.extend(data)
        else:
            self.stdin_eof = True
            if fd in self.sel.get_map():
                self.sel.unregister(fd)
            if self.master is not None:
                self.inbuf.extend(b"\x04")  # end of input on a pty: the terminal's EOF character
        self._flush_in()

    def _on_child_writable(self, fd: int, mask: int) -> None:
        self._flush_in()

    def _flush_in(self) -> None:
        if self.to_child is None:
            self.inbuf.clear()
            return
        while self.inbuf:
            try:
                n = os.write(self.to_child, self.inbuf[:_CHUNK])
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno not in (errno.EPIPE, errno.EIO):
                    raise
                self.inbuf.clear()  # the session closed its stdin
                self._close_to_child()
                return
            del self.inbuf[:n]
        # Watch the pipe for room only while bytes wait; pause ctrfs's stdin while many do.
        wanted = bool(self.inbuf)
        registered = self.to_child in self.sel.get_map() and self.to_child != self.master
        if self.master is None:
            if wanted and not registered:
                self.sel.register(self.to_child, selectors.EVENT_WRITE, self._on_child_writable)
            elif not wanted and registered:
                self.sel.unregister(self.to_child)
        if self.stdin is not None and not self.stdin_eof and not self.stdin_file:
            listening = self.stdin in self.sel.get_map()
            if len(self.inbuf) > _IN_BUFFER and listening:
                self.sel.unregister(self.stdin)
            elif len(self.inbuf) <= _IN_BUFFER and not listening:
                self.sel.register(self.stdin, selectors.EVENT_READ, self._on_stdin)
        if self.stdin_eof and not self.inbuf and self.master is None:
            self._close_to_child()

    def _close_to_child(self) -> None:
        if self.to_child is not None and self.to_child != self.master:
            if self.to_child in self.sel.get_map():
                self.sel.unregister(self.to_child)
            self._close(self.to_child)
            self.to_child = None

    def _close(self, fd: int) -> None:
        os.close(fd)
        self.closed.add(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:  # ctrfs's stdout was left non-blocking by someone else
            select.select([], [fd], [])
            continue
        view = view[n:]


def copy_winsize(src: int, dst: int) -> None:
    """The terminal size of ``src`` onto the pty ``dst`` (the kernel then signals SIGWINCH)."""
    try:
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)
    except OSError:
        pass


def get_winsize(fd: int) -> bytes:
    return fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)


def pack_winsize(rows: int, cols: int) -> bytes:
    return struct.pack("HHHH", rows, cols, 0, 0)


class RawTerminal:
    """ctrfs's terminal in raw mode for the length of a pty session; restored however it ends."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.saved: list[Any] | None = None

    def __enter__(self) -> RawTerminal:
        if os.isatty(self.fd):
            self.saved = termios.tcgetattr(self.fd)
            tty.setraw(self.fd, termios.TCSANOW)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
