"""Resolve a path inside a root directory fd, never leaving it.

Two implementations with one behaviour:

* :func:`resolve_openat2`: the kernel does it, ``openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS)``
  (Linux >= 5.6). Absolute symlinks and ``..`` are clamped to the root fd, magic links
  (``/proc/<pid>/root``, ``/proc/<pid>/fd/N``) fail with ELOOP.
* :func:`resolve_walk`: the same in user space for kernels without openat2 (used only on
  ENOSYS, or when forced for tests): one component at a time with ``openat(O_PATH|O_NOFOLLOW)``,
  symlink text read with ``readlinkat`` on the link's own fd and expanded in place, absolute
  targets restarting at the root fd, ``..`` taken from the fd we stand on and checked to be the
  directory we came through (a rename cannot lead it out of the root), and the kernel's
  symlink budget. The same tests run on both (tests/unit/test_rootfs_resolve.py).

Both raise OSError; :class:`MagicLinkError` (an ELOOP) marks a refused magic link.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod

from ctrfs.rootfs import _calls

# path_resolution(7): "Linux imposes a limit of 40 (MAXSYMLINKS) symlinks per pathname lookup";
# openat2 enforces the same, so the walker uses it too and both paths agree on what is a loop.
SYMLINK_BUDGET = 40

_O_PATH = os.O_PATH | os.O_CLOEXEC
# procfs' root directory inode (PROC_ROOT_INO in fs/proc/root.c): symlinks directly in /proc
# (self, thread-self, mounts, net) are ordinary; every symlink deeper in procfs (pid/root,
# pid/cwd, pid/exe, pid/fd/N, pid/map_files/*, pid/ns/*) is a "magic link" (proc(5)).
_PROC_ROOT_INO = 1


class MagicLinkError(OSError):
    """A procfs magic link on the path; refused (RESOLVE_NO_MAGICLINKS semantics)."""


_force_walk_env = "CTRFS_FORCE_FALLBACK"
_openat2_missing = False


def fallback_forced() -> bool:
    return os.environ.get(_force_walk_env, "") not in ("", "0")


def resolve(rootfd: int, path: bytes, *, follow: bool = True, fallback: bool | None = None) -> int:
    """An ``O_PATH|O_CLOEXEC`` fd for ``path`` inside ``rootfd``; OSError otherwise.

    ``fallback`` None: openat2, and the walker only if the kernel says ENOSYS (remembered).
    """
    global _openat2_missing
    use_walk = fallback if fallback is not None else (fallback_forced() or _openat2_missing)
    if not use_walk:
        try:
            return resolve_openat2(rootfd, path, follow=follow)
        except OSError as err:
            if err.errno != errno.ENOSYS:
                raise
            _openat2_missing = True
    return resolve_walk(rootfd, path, follow=follow)


def resolve_openat2(rootfd: int, path: bytes, *, follow: bool = True) -> int:
    flags = _O_PATH | (0 if follow else os.O_NOFOLLOW)
    try:
        return _calls.openat2(rootfd, path, flags, _calls.RESOLVE_IN_ROOT | _calls.RESOLVE_NO_MAGICLINKS)
    except OSError as err:
        if err.errno == errno.ELOOP:
            # ELOOP means either a loop / too many links, or a refused magic link. The walker
            # tells which (it fails the same way, or succeeds if the tree changed meanwhile).
            try:
                fd = resolve_walk(rootfd, path, follow=follow)
            except MagicLinkError as magic:
                raise magic from err
            except OSError:
                raise err from None
            os.close(fd)
        raise err


def _components(path: bytes) -> list[bytes]:
    """Components in reverse order (a stack). A trailing '/' becomes a final '.' so that the
    last real component must be a directory and is followed, as POSIX path resolution says."""
    parts = path.split(b"/")
    if path.endswith(b"/") and len(path) > 1:
        parts[-1] = b"."
    parts.reverse()
    return parts


def resolve_walk(rootfd: int, path: bytes, *, follow: bool = True) -> int:
    if not path:
        raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), "")
    display = os.fsdecode(path)
    todo = _components(path)
    cur = os.open(".", _O_PATH | os.O_DIRECTORY, dir_fd=rootfd)
    root_st = os.fstat(cur)
    # (dev, ino) of each directory from the root to where we stand: ".." must land on chain[-2].
    chain = [(root_st.st_dev, root_st.st_ino)]
    links = 0
    try:
        while todo:
            comp = todo.pop()
            if comp in (b"", b"."):
                continue  # cur is always a directory here
            if comp == b"..":
                if len(chain) == 1:
                    continue  # ".." at the root stays at the root, as in chroot
                parent = os.open("..", _O_PATH | os.O_DIRECTORY, dir_fd=cur)
                pst = os.fstat(parent)
                if (pst.st_dev, pst.st_ino) != chain[-2]:
                    os.close(parent)
                    # The directory was moved while we stood in it: its ".." is no longer the
                    # way we came. openat2 reports such races as EAGAIN too.
                    raise OSError(errno.EAGAIN, "directory moved during path resolution", display)
                os.close(cur)
                cur = parent
                chain.pop()
                continue
            last = not todo
            nxt = os.open(comp, _O_PATH | os.O_NOFOLLOW, dir_fd=cur)
            try:
                st = os.fstat(nxt)
                if stat_mod.S_ISLNK(st.st_mode) and (follow or not last):
                    if _calls.fs_type(nxt) == _calls.PROC_SUPER_MAGIC:
                        if os.fstat(cur).st_ino != _PROC_ROOT_INO:
                            raise MagicLinkError(errno.ELOOP, "refused to follow a magic link",
                                                 display)
                    links += 1
                    if links > SYMLINK_BUDGET:
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), display)
                    target = os.readlink(b"", dir_fd=nxt)
                    if not target:
                        raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), display)
                    todo.extend(_components(target))
                    if target.startswith(b"/"):
                        os.close(cur)
                        cur = os.open(".", _O_PATH | os.O_DIRECTORY, dir_fd=rootfd)
                        del chain[1:]
                    continue
                if stat_mod.S_ISDIR(st.st_mode):
                    os.close(cur)
                    cur, nxt = nxt, -1
                    chain.append((st.st_dev, st.st_ino))
                    continue
                if not last:
                    raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), display)
                result, nxt = nxt, -1
                return result
            finally:
                if nxt >= 0:
                    os.close(nxt)
        result, cur = cur, -1
        return result
    finally:
        if cur >= 0:
            os.close(cur)
