"""Output files written under a temporary name and renamed when complete.

A reader of the requested name sees either nothing or the whole file, never a partial one
(a failed export, a container gone midway: the temporary file is removed).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO


@contextlib.contextmanager
def replace_when_done(path: str, *, prefix: str = ".ctrfs-", suffix: str = "",
                      mode: int = 0o644) -> Iterator[BinaryIO]:
    """A binary file created next to ``path`` under a temporary name; when the block ends
    without error it is flushed, fsynced, given ``mode`` less the umask and renamed to
    ``path``; otherwise it is removed."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=d)
    try:
        with open(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode & ~_umask())
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
