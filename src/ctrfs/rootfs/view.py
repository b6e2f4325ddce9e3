"""The two views of a running container's files that docker's own commands give.

* **The root filesystem alone** (``docker export``): what the root mount holds, beneath mount
  points included (the runtime's ``/dev`` entries, the empty ``/etc/hosts`` placeholder with
  the root filesystem's mode), nothing of any other mount. :class:`BoundRoot` wraps a Root that
  shows it (a detached clone of the root mount, the overlay's merged directory in the host
  namespace, or the layers merged offline) and keeps asking the live container whether it is
  still there.
* **The container's view for copies** (``docker cp``): the root filesystem, with the content
  of the mounts the container's data lives on (volumes, binds, tmpfs, the runtime's
  ``/etc/hosts``, ``/etc/hostname``, ``/etc/resolv.conf`` binds) in place of what they cover.
  Kernel interfaces are not followed: proc, sysfs, cgroupfs, devpts, mqueue and the other
  pseudo filesystems (:data:`KERNEL_FSTYPES`), the runtime's ``/dev`` (a tmpfs of device
  nodes) and what is mounted below them (``/dev/shm``); beneath those, the root filesystem's
  own entries are shown, as docker cp shows them. :class:`ContainerView` walks that way;
  every other operation is the live Root's (paths resolved as the container resolves them).
"""

from __future__ import annotations

import os
import stat as stat_mod
from collections.abc import Iterable, Iterator

from ctrfs.errors import CtrfsError
from ctrfs.proc.mountinfo import Mount
from ctrfs.rootfs import _calls
from ctrfs.rootfs.base import Entry, PathArg, Root, WarnFn
from ctrfs.rootfs.fd import FdRoot

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

# Filesystems that are kernel interfaces, not data: never followed by a copy (their files
# claim sizes they do not have, reads may block or have effects, device nodes are not data).
KERNEL_FSTYPES = frozenset({
    "proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "devtmpfs", "debugfs", "tracefs",
    "securityfs", "bpf", "configfs", "pstore", "selinuxfs", "efivarfs", "binfmt_misc",
    "fusectl", "nsfs", "autofs", "rpc_pipefs",
})


def _is_runtime_dev(m: Mount) -> bool:
    # runc, crun and every OCI runtime mount a tmpfs of device nodes at /dev (the OCI runtime
    # spec's default /dev): a kernel interface, although tmpfs. What is mounted below it
    # (/dev/shm, /dev/mqueue, /dev/pts) is the runtime's too: docker cp shows none of it.
    return m.mount_point == "/dev" and m.fstype in ("tmpfs", "devtmpfs")


def followed_mounts(mounts: Iterable[Mount], root_mount_id: int) -> dict[int, Mount]:
    """The mounts whose content a copy carries, by mount ID: every mount but the root, kernel
    interfaces, the runtime's /dev, and whatever is mounted below those (the runtime's masks
    of /proc/kcore, /sys/firmware..., /dev/shm)."""
    by_id = {m.mount_id: m for m in mounts}
    out: dict[int, Mount] = {}
    for m in by_id.values():
        if m.mount_id == root_mount_id or m.fstype in KERNEL_FSTYPES or _is_runtime_dev(m):
            continue
        p = by_id.get(m.parent_id)
        seen = {m.mount_id}
        while p is not None and p.mount_id != root_mount_id and p.mount_id not in seen:
            if p.fstype in KERNEL_FSTYPES or _is_runtime_dev(p):
                break
            seen.add(p.mount_id)
            p = by_id.get(p.parent_id)
        else:
            out[m.mount_id] = m
    return out


class BoundRoot(Root):
    """A Root (a view of a container's files) whose liveness is that of another Root (the live
    container it was made from). Everything else is the inner Root's."""

    def __init__(self, inner: Root, live: Root, kind: str) -> None:
        self.inner = inner
        self.live = live
        self.kind = kind  # how the view was made: "clone", "merged", "offline"
        self.target = live.target
        inner.target = live.target
        # Owners as the container sees them (its user namespace): the live root knows the map.
        self.idmap = inner.idmap = live.idmap

    def resolve(self, path: PathArg, *, follow: bool = True) -> int:
        return self.inner.resolve(path, follow=follow)

    def check_alive(self) -> None:
        self.live.check_alive()

    def close(self) -> None:
        self.inner.close()

    def lstat(self, path: PathArg) -> os.stat_result:
        return self.inner.lstat(path)

    def stat(self, path: PathArg) -> os.stat_result:
        return self.inner.stat(path)

    def readlink(self, path: PathArg) -> bytes:
        return self.inner.readlink(path)

    def open_file(self, path: PathArg) -> BinaryIO:
        return self.inner.open_file(path)

    def scandir(self, path: PathArg) -> Iterator[Entry]:
        return self.inner.scandir(path)

    def walk(self, path: PathArg = "/", *, follow: bool = True, max_depth: int | None = None,
             one_filesystem: bool = True, on_warning: WarnFn | None = None) -> Iterator[Entry]:
        seen = 0
        for e in self.inner.walk(path, follow=follow, max_depth=max_depth,
                                 one_filesystem=one_filesystem, on_warning=on_warning):
            seen += 1
            if seen % 2048 == 0:
                self.live.check_alive()
            yield e


class ContainerView(Root):
    """The container's view for copies (see the module docstring): walks the root filesystem
    ``base`` and, at each mount point of a followed mount, the ``live`` Root below it. Owns
    both Roots: closing it closes them.

    ``mounts`` is the container's mount table (its mountinfo). Every path is resolved inside
    the container's root by the Root that reads it, on every mount alike."""

    def __init__(self, live: FdRoot, base: Root, mounts: list[Mount]) -> None:
        self.live = live
        self.base = base
        self.target = live.target
        self.idmap = base.idmap = live.idmap  # as in BoundRoot
        self.root_mount = _calls.mount_id(live.fd)
        self.followed = followed_mounts(mounts, self.root_mount or -1)
        self.by_id = {m.mount_id: m for m in mounts}
        # Where a walk of the root filesystem meets a followed mount: by base name first (cheap,
        # per entry), then by the identity of the root filesystem's inode the mount covers (a
        # walk may spell its paths through symlinks: /a/etc for /etc when a -> /).
        points = {m.mount_point for m in self.followed.values()}
        self.names = {p.rpartition("/")[2] for p in points}
        self.covered: set[tuple[int, int]] = set()
        for p in points:
            try:
                st = base.lstat(p)
            except CtrfsError:
                continue  # not on the root filesystem (below another mount)
            self.covered.add((st.st_dev, st.st_ino))

    # Everything but walk is the container's own view.
    def resolve(self, path: PathArg, *, follow: bool = True) -> int:
        return self.live.resolve(path, follow=follow)

    def check_alive(self) -> None:
        self.live.check_alive()

    def close(self) -> None:
        """Closes both views (the live Root is this one's from now on)."""
        self.base.close()
        self.live.close()

    def lstat(self, path: PathArg) -> os.stat_result:
        return self.live.lstat(path)

    def stat(self, path: PathArg) -> os.stat_result:
        return self.live.stat(path)

    def readlink(self, path: PathArg) -> bytes:
        return self.live.readlink(path)

    def open_file(self, path: PathArg) -> BinaryIO:
        return self.live.open_file(path)

    def scandir(self, path: PathArg) -> Iterator[Entry]:
        return self.live.scandir(path)

    def mount_id(self, path: PathArg, *, follow: bool = True) -> int | None:
        return self.live.mount_id(path, follow=follow)

    def walk(self, path: PathArg = "/", *, follow: bool = True, max_depth: int | None = None,
             one_filesystem: bool = True, on_warning: WarnFn | None = None) -> Iterator[Entry]:
        """``one_filesystem`` keeps to the start's filesystem: from a start on the root mount,
        the root filesystem alone, beneath mount points included (``docker export``, ``du``,
        ``find --xdev``); from a start on another mount, that mount's part of the live view.
        Without it, the copy view described in the module docstring (``docker cp``)."""
        if not one_filesystem:
            yield from self._walk(path, follow, max_depth, on_warning)
        elif self._start_on_base(path, follow, root_only=True):
            yield from self.base.walk(path, follow=follow, max_depth=max_depth,
                                      one_filesystem=True, on_warning=on_warning)
        else:
            yield from self.live.walk(path, follow=follow, max_depth=max_depth,
                                      one_filesystem=True, on_warning=on_warning)

    def _start_on_base(self, path: PathArg, follow: bool, *, root_only: bool = False) -> bool:
        """Whether the walk from ``path`` starts on the root filesystem: the start is on the
        root mount (and is the same inode there), or is the mount point of a kernel interface
        (``/dev``, ``/proc``), beneath which the root filesystem's entries are shown."""
        mid = self.live.mount_id(path, follow=follow)
        if mid is None or mid in self.followed:
            return False
        if mid == self.root_mount:
            try:
                a = self.live.stat(path) if follow else self.live.lstat(path)
                b = self.base.stat(path) if follow else self.base.lstat(path)
            except CtrfsError:
                return False
            return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
        m = self.by_id.get(mid)
        if root_only or m is None or m.parent_id != self.root_mount:
            return False
        # The mount point itself of a kernel interface on the root filesystem (/dev, /proc),
        # not a path inside one (/proc/1/...: the live walk leaves its content out).
        try:
            a = self.live.stat(path) if follow else self.live.lstat(path)
            b = self.live.lstat(m.mount_point)
            return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) and stat_mod.S_ISDIR(
                (self.base.stat(path) if follow else self.base.lstat(path)).st_mode)
        except CtrfsError:
            return False

    def _walk(self, path: PathArg, follow: bool, max_depth: int | None,
              on_warning: WarnFn | None) -> Iterator[Entry]:
        if not self._start_on_base(path, follow):
            yield from self.live.walk(path, follow=follow, max_depth=max_depth,
                                      one_filesystem=False, on_warning=on_warning)
            return
        names = self.names
        skip_below: int | None = None  # depth of a mount point whose subtree came from live
        for e in self.base.walk(path, follow=follow, max_depth=max_depth, one_filesystem=True,
                                on_warning=on_warning):
            if skip_below is not None:
                if e.depth > skip_below:
                    continue  # beneath a followed mount: hidden from the container
                skip_below = None
            if e.depth == 0 or e.name not in names:
                yield e
                continue
            st = e.stat
            if (st.st_dev, st.st_ino) not in self.covered:
                yield e
                continue
            p = e.path
            if not self._followed_at(p):
                yield e
                continue
            depth = e.depth
            if e.is_dir():
                skip_below = depth
            sub_max = None if max_depth is None else max_depth - depth
            for s in self.live.walk(p, follow=False, max_depth=sub_max, one_filesystem=False,
                                    on_warning=on_warning):
                s.depth += depth
                yield s

    def _followed_at(self, path: str) -> bool:
        """The mount the container sees at ``path`` (the topmost) is a followed one."""
        try:
            return self.live.mount_id(path, follow=False) in self.followed
        except CtrfsError:
            return False
