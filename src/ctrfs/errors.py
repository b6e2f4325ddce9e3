"""One exception tree for everything ctrfs reports to a user.

Each error carries structured fields (target, pid, path) and builds its message from them;
``exit_code`` is what the CLI returns for it (docs/design.md: 1 failed, 2 usage, 3 target not
found/ambiguous, 4 permission, 5 target gone).
"""

from __future__ import annotations

import errno as _errno
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager


class CtrfsError(Exception):
    """Root of every error ctrfs raises on purpose."""

    exit_code = 1

    def __init__(
        self,
        message: str = "",
        *,
        target: str | None = None,
        pid: int | None = None,
        path: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.target = target
        self.pid = pid
        self.path = path
        self.hint = hint

    def __str__(self) -> str:
        parts = []
        where = []
        if self.target:
            where.append(self.target)
        if self.path is not None:
            where.append(self.path)
        if where:
            parts.append(":".join(where) + ":")
        if self.pid is not None:
            parts.append(f"(pid {self.pid})")
        parts.append(self.message or self.default_message())
        text = " ".join(p for p in parts if p)
        if self.hint:
            text += f" ({self.hint})"
        return text

    def default_message(self) -> str:
        return "operation failed"


class UsageError(CtrfsError):
    """The command line or an argument is malformed."""

    exit_code = 2


class NotFound(CtrfsError):
    """A path inside a container does not exist."""

    def default_message(self) -> str:
        return "no such file or directory"


class TargetNotFound(NotFound):
    """No container matches a target."""

    exit_code = 3

    def __init__(self, message: str = "", *, candidates: Sequence[str] = (), **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.candidates = list(candidates)

    def default_message(self) -> str:
        text = "no such container"
        if self.candidates:
            text += "; nearest: " + ", ".join(self.candidates)
        return text


class Ambiguous(CtrfsError):
    """A target matches more than one container."""

    exit_code = 3

    def __init__(self, message: str = "", *, candidates: Sequence[str] = (), **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.candidates = list(candidates)

    def default_message(self) -> str:
        return "ambiguous target, candidates: " + ", ".join(self.candidates)


class AccessDenied(CtrfsError):
    """The kernel refused access (EACCES/EPERM): usually ctrfs is not root."""

    exit_code = 4

    def default_message(self) -> str:
        return "permission denied (ctrfs needs root, or CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH)"


class ProcessGone(CtrfsError):
    """The container's process exited (or its PID was reused) while we worked."""

    exit_code = 5

    def default_message(self) -> str:
        return "the container's process is gone (container stopped or restarted)"


class UnsafePath(CtrfsError):
    """A path would leave the container root or cross a magic link; refused."""

    def default_message(self) -> str:
        return "refused: path escapes the container root"


class Unsupported(CtrfsError):
    """The operation does not apply (special file, unsupported rootfs, missing kernel feature)."""

    def default_message(self) -> str:
        return "unsupported"


_GONE = {_errno.ENOENT, _errno.ESRCH}
_DENIED = {_errno.EACCES, _errno.EPERM}


def from_oserror(
    err: OSError, *, target: str | None = None, pid: int | None = None, path: str | None = None,
    proc_scope: bool = False,
) -> CtrfsError:
    """Translate an OSError into the error tree (docs/conventions.md rule 4).

    With ``proc_scope`` the OSError came from ``/proc/<pid>``: ENOENT/ESRCH there means the
    process is gone, not that a file is missing.
    """
    code = err.errno
    msg = os.strerror(code) if code else str(err)
    if proc_scope and code in _GONE:
        return ProcessGone(target=target, pid=pid)
    if code in _DENIED:
        return AccessDenied(target=target, pid=pid, path=path)
    if code == _errno.ENOENT:
        return NotFound(target=target, pid=pid, path=path)
    if code == _errno.EMFILE:
        return CtrfsError("too many open files", target=target, pid=pid, path=path,
                          hint="raise the limit with ulimit -n")
    if code == _errno.ENFILE:
        return CtrfsError("too many open files in the system", target=target, pid=pid,
                          path=path, hint="the host's fs.file-max is reached")
    return CtrfsError(msg.lower() if msg else "operation failed", target=target, pid=pid, path=path)


@contextmanager
def translate_oserror(
    *, target: str | None = None, pid: int | None = None, path: str | None = None,
    proc_scope: bool = False,
) -> Iterator[None]:
    """Context manager form of :func:`from_oserror`: the one place OSError becomes CtrfsError."""
    try:
        yield
    except CtrfsError:
        raise
    except OSError as err:
        raise from_oserror(err, target=target, pid=pid, path=path, proc_scope=proc_scope) from err


def run_program(prog: str, program: Callable[[], int], *, debug: bool,
                shown: Callable[[str], str] = str) -> int:
    """Run a command-line program and turn how it ended into its exit status: the one table from
    exception to exit code (docs/design.md) for ``ctrfs`` and ``kubectl-ctrfs``. A signal that
    unwinds as KeyboardInterrupt with a ``signum`` gives 128+N (Ctrl-C: 130); errors are one line
    on stderr (``shown`` makes the message safe for a terminal), tracebacks only with ``debug``."""
    import sys

    try:
        return program()
    except SystemExit as e:  # argparse: --help (0) and usage errors (2)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except KeyboardInterrupt as e:
        return 128 + int(getattr(e, "signum", 2))
    except BrokenPipeError:
        # After EPIPE, point stdout at /dev/null so the interpreter's final flush stays silent.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except OSError:
            pass
        return 0
    except CtrfsError as e:
        if debug:
            import traceback

            traceback.print_exc()
        sys.stderr.write(f"{prog}: {shown(str(e))}\n")
        return 2 if isinstance(e, UsageError) else e.exit_code
    except Exception as e:  # noqa: BLE001 — last resort: a message, never a traceback by default
        if debug:
            raise
        sys.stderr.write(f"{prog}: internal error: {type(e).__name__}: {e} (run with --debug)\n")
        return 1
