"""ls and stat: metadata of paths inside a container, as data."""

from __future__ import annotations

import os
import stat as stat_mod
from collections.abc import Iterator

from ctrfs._record import dataclass
from ctrfs.errors import CtrfsError, NotFound
from ctrfs.ops.names import Names
from ctrfs.rootfs.base import Entry, PathArg, Root, WalkWarning, WarnFn, file_kind, join, norm_path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

TYPE_LETTERS = {
    stat_mod.S_IFREG: "f", stat_mod.S_IFDIR: "d", stat_mod.S_IFLNK: "l", stat_mod.S_IFIFO: "p",
    stat_mod.S_IFSOCK: "s", stat_mod.S_IFCHR: "c", stat_mod.S_IFBLK: "b",
}


def type_letter(mode: int) -> str:
    return TYPE_LETTERS.get(stat_mod.S_IFMT(mode), "?")


def text(name: str | bytes) -> str:
    """A name for JSON: UTF-8 as is, undecodable bytes as ``\\xNN``."""
    raw = os.fsencode(name) if isinstance(name, str) else name
    return raw.decode("utf-8", "backslashreplace")


def iso(ts: float) -> str:
    from datetime import UTC, datetime  # start-up: cat and ls (but -l) have no dates to show

    return datetime.fromtimestamp(ts, UTC).isoformat()


@dataclass
class FileInfo:
    """What ``ls -l`` and ``stat`` show about one file (never followed unless asked)."""

    path: str
    name: str
    type: str  # f d l p s c b
    mode: int  # permission bits incl. setuid/setgid/sticky
    nlink: int
    uid: int
    gid: int
    user: str | None
    group: str | None
    size: int
    blocks: int
    mtime: float
    atime: float
    ctime: float
    inode: int
    device: int
    rdev: tuple[int, int] | None = None  # (major, minor) of a device node
    link_target: bytes | None = None
    mount_point: bool = False
    # The owner as the host sees it, when the container has a user namespace (uid/gid are then
    # the container's own view, mapped through its uid_map/gid_map); None otherwise.
    host_uid: int | None = None
    host_gid: int | None = None

    @property
    def kind(self) -> str:
        return file_kind(stat_mod.S_IFMT(self.full_mode))

    @property
    def full_mode(self) -> int:
        inv = {v: k for k, v in TYPE_LETTERS.items()}
        return inv.get(self.type, 0) | self.mode

    @property
    def mode_string(self) -> str:
        return stat_mod.filemode(self.full_mode)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": text(self.path),
            "name": text(self.name),
            "type": self.type,
            "kind": self.kind,
            "mode": f"{self.mode:04o}",
            "mode_string": self.mode_string,
            "nlink": self.nlink,
            "uid": self.uid,
            "gid": self.gid,
            "host_uid": self.host_uid if self.host_uid is not None else self.uid,
            "host_gid": self.host_gid if self.host_gid is not None else self.gid,
            "user": self.user,
            "group": self.group,
            "size": self.size,
            "blocks": self.blocks,
            "mtime": iso(self.mtime),
            "atime": iso(self.atime),
            "ctime": iso(self.ctime),
            "inode": self.inode,
            "device": self.device,
            "rdev": list(self.rdev) if self.rdev else None,
            "link_target": text(self.link_target) if self.link_target is not None else None,
            "mount_point": self.mount_point,
        }


def make_info(path: str, name: str, st: os.stat_result, names: Names | None,
              link_target: bytes | None = None, mount_point: bool = False) -> FileInfo:
    rdev = None
    if stat_mod.S_ISCHR(st.st_mode) or stat_mod.S_ISBLK(st.st_mode):
        rdev = (os.major(st.st_rdev), os.minor(st.st_rdev))
    idmap = names.root.idmap if names else None
    uid, gid = (idmap.uid(st.st_uid), idmap.gid(st.st_gid)) if idmap else (st.st_uid, st.st_gid)
    return FileInfo(
        path=path, name=name, type=type_letter(st.st_mode), mode=stat_mod.S_IMODE(st.st_mode),
        nlink=st.st_nlink, uid=uid, gid=gid,
        host_uid=st.st_uid if idmap else None, host_gid=st.st_gid if idmap else None,
        user=names.user(uid) if names else None,
        group=names.group(gid) if names else None,
        size=st.st_size, blocks=st.st_blocks, mtime=st.st_mtime, atime=st.st_atime,
        ctime=st.st_ctime, inode=st.st_ino, device=st.st_dev, rdev=rdev,
        link_target=link_target, mount_point=mount_point,
    )


def entry_info(entry: Entry, names: Names | None) -> FileInfo:
    target = None
    if entry.is_symlink():
        try:
            target = entry.readlink()
        except CtrfsError:
            target = None
    return make_info(entry.path, entry.name, entry.stat, names, target, entry.mount_point)


def stat_path(root: Root, path: PathArg, *, follow: bool = False,
              names: Names | None = None) -> FileInfo:
    """``stat PATH`` (``follow`` as ``stat -L``). Symlinks report their target text."""
    shown = norm_path(path)
    st = root.stat(path) if follow else root.lstat(path)
    target = root.readlink(path) if stat_mod.S_ISLNK(st.st_mode) else None
    name = os.path.basename(shown.rstrip("/")) or "/"
    return make_info(shown, name, st, names if names is not None else Names(root), target)


@dataclass
class Listing:
    """One directory's entries (sorted by name bytes, like ``LC_ALL=C ls``), or one file."""

    path: str
    entries: list[FileInfo]
    is_dir: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"path": text(self.path), "is_dir": self.is_dir,
                "entries": [e.to_dict() for e in self.entries]}


def _sorted(infos: list[FileInfo]) -> list[FileInfo]:
    return sorted(infos, key=lambda i: os.fsencode(i.name))


def ls(root: Root, path: PathArg = "/", *, all: bool = False, recursive: bool = False,  # noqa: A002
       follow: bool = True, on_warning: WarnFn | None = None) -> Iterator[Listing]:
    """``ls [-a] [-R] PATH``: a directory's listing (then its subdirectories' with
    ``recursive``), or the file itself. A symlink to a directory is listed as the directory
    unless ``follow`` is false (``ls -l`` shows the link itself, as GNU ls does for a
    command-line argument); ``all`` adds names starting with '.'."""
    names = Names(root)
    shown = norm_path(path)
    try:
        st = root.stat(path) if follow else root.lstat(path)
    except NotFound:
        st = root.lstat(path)  # a dangling symlink is listed as itself, as ls does
    if not stat_mod.S_ISDIR(st.st_mode):
        yield Listing(shown, [stat_path(root, path, names=names)], is_dir=False)
        return
    if not recursive:
        infos = [entry_info(e, names) for e in root.scandir(path)
                 if all or not e.name.startswith(".")]
        yield Listing(shown, _sorted(infos))
        return
    # -R: one listing per directory in name order; the pending stack holds paths only.
    pending = [shown]
    while pending:
        d = pending.pop()
        try:
            infos = [entry_info(e, names) for e in root.scandir(d)
                     if all or not e.name.startswith(".")]
        except CtrfsError as err:
            if d == shown:
                raise
            if on_warning is not None:
                on_warning(WalkWarning(d, str(err.message or err.default_message())))
            continue
        infos = _sorted(infos)
        yield Listing(d, infos)
        subdirs = [join(d, i.name) for i in infos if i.type == "d" and not i.mount_point]
        pending.extend(reversed(subdirs))
