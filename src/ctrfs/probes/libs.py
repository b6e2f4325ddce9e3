"""The ELF objects a container's processes really map, and a host path that is the very same file.

Sources, per process of the container: ``/proc/<pid>/maps`` (what is mapped, with device and
inode), ``/proc/<pid>/map_files/<start>-<end>`` (a magic link to the mapped file itself: works
after the file was deleted or replaced, needs CAP_SYS_ADMIN; proc(5)), ``/proc/<pid>/root``
(the container's root as seen from the host), and the overlay layers of ``Container.rootfs``.

Identity of a mapped file, and the overlayfs quirk (checked on this project's 6.18 kernel and
in upstream history):

- Since Linux 6.8 (commit "fs/proc: show correct device and inode numbers in /proc/pid/maps",
  A. Vagin, Dec 2023) maps shows the *overlay* file's device and inode, the same numbers
  ``stat()`` gives for the path inside the container: here ``00:32 1482971`` for an overlay
  mounted as ``0:50``, and stat of ``/proc/<pid>/root/...`` says st_dev 50, st_ino 1482971.
- From 4.19 to 6.7 overlayfs mmap()s the *underlying* layer file, and maps showed that backing
  inode: the layer filesystem's device (e.g. ``fe:00``) and the layer file's inode, while the
  path is still the container's (the commit message above describes exactly this). stat of the
  same path returns the overlay's st_dev, so a naive (dev, ino) comparison fails on those
  kernels; the layer file's own stat matches instead. (Before 4.19 even the path was the layer
  file's host path; /proc/<pid>/root/<that> then does not exist and map_files is used.)
- With all layers on one filesystem overlayfs reports the real inode number as st_ino
  (Documentation/filesystems/overlayfs.rst "samefs"), so the inode numbers agree either way.

So a host path is accepted as "the same file" when its stat equals the stat of the process's
map_files entry (the strongest check: both name the mapped file's user-visible inode); without
map_files, when it equals maps' (dev, ino), or maps' (dev, ino) is the layer file's and the
inode numbers agree. Anything else is reported as a mismatch, never silently accepted.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import stat
from collections.abc import Iterable

from ctrfs._record import dataclass, field
from ctrfs.errors import CtrfsError, ProcessGone, Unsupported, from_oserror
from ctrfs.probes.elf import ElfError, ElfFacts, is_elf, read_facts
from ctrfs.proc.maps import Mapping, iter_file_mappings
from ctrfs.rootfs.resolve import resolve

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ctrfs.model import Container
    from ctrfs.runtimes.base import Roots

VERIFIED = "verified"
MISMATCH = "mismatch"
UNVERIFIED = "unverified"

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


@dataclass(frozen=True)
class Layer:
    kind: str  # "upper" or "lower"
    index: int  # 0 for the upperdir; lowerdirs count from 0 at the top
    dir: str  # host path of the layer directory
    verified: bool  # the layer file's inode is the one the process maps (not just the same name)
    st: os.stat_result | None = field(default=None, compare=False, repr=False)
    local_dir: str = ""  # the same directory as this process opens it (below --host-root)

    def file(self, path: str) -> str:
        """The layer's file at ``path``, as this process opens it."""
        return os.path.join(self.local_dir or self.dir, path.lstrip("/"))


@dataclass
class MappedObject:
    """One ELF file mapped by one or more processes of a container."""

    path: str  # inside the container, as maps shows it (without " (deleted)")
    dev: int  # as maps shows it (see the module docstring for what that device is)
    inode: int
    deleted: bool
    pids: list[int]
    executable: bool = False  # the main program of at least one of those processes
    # A path that is the mapped file, as the host names it (for a tracer on the host) and as this
    # process opens it (for a tracer beside it: they differ below --host-root).
    host_path: str | None = None
    host_path_via: str | None = None  # "root" (/proc/<pid>/root/<path>) or "map_files"
    map_files_path: str | None = None
    local_path: str | None = None
    local_map_files_path: str | None = None
    identity: str = UNVERIFIED  # verified | mismatch | unverified
    root_path_same: bool | None = None  # /proc/<pid>/root/<path> is this very file
    size: int | None = None
    mtime_ns: int | None = None
    facts: ElfFacts | None = None
    is_elf: bool | None = None  # None: the file could not be read
    version_source: str | None = None  # set when the version comes from another file
    inherited_version: str | None = None
    layer: Layer | None = None
    warnings: list[str] = field(default_factory=list)
    # pid → first mapping of the file in that process (map_files entry name and offset)
    mappings: dict[int, Mapping] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def build_id(self) -> str | None:
        return self.facts.build_id if self.facts else None

    @property
    def soname(self) -> str | None:
        return self.facts.soname if self.facts else None

    @property
    def library(self) -> str | None:
        return self.facts.library if self.facts else None

    @property
    def version(self) -> str | None:
        if self.facts and self.facts.version:
            return self.facts.version
        return self.inherited_version

    def to_dict(self) -> dict[str, Any]:
        f = self.facts
        return {
            "path": self.path,
            "deleted": self.deleted,
            "executable": self.executable,
            "device": f"{os.major(self.dev)}:{os.minor(self.dev)}",
            "inode": self.inode,
            "pids": self.pids,
            "host_path": self.host_path,
            "host_path_via": self.host_path_via,
            "map_files_path": self.map_files_path,
            "local_path": self.local_path,
            "local_map_files_path": self.local_map_files_path,
            "identity": self.identity,
            "root_path_same": self.root_path_same,
            "size": self.size,
            "build_id": self.build_id,
            "soname": self.soname,
            "elf_type": f.elf_type if f else None,
            "library": self.library,
            "version": self.version,
            "version_source": self.version_source,
            "go_version": f.go_version if f else None,
            "stripped": f.stripped if f else None,
            "layer": None if self.layer is None else {
                "kind": self.layer.kind, "index": self.layer.index, "dir": self.layer.dir,
                "local_dir": self.layer.local_dir, "verified": self.layer.verified,
            },
            "warnings": self.warnings,
        }


@dataclass
class ContainerLibs:
    container: Container
    objects: list[MappedObject]
    warnings: list[str] = field(default_factory=list)  # with --all: why a container has no list

    def to_dict(self) -> dict[str, Any]:
        c = self.container
        return {
            "container": {"id": c.id, "name": c.name, "runtime": c.runtime, "pid": c.pid},
            "objects": [o.to_dict() for o in self.objects],
            "warnings": self.warnings,
        }


class ElfCache:
    """Per-file ELF facts keyed by (st_dev, st_ino, size, mtime_ns) of the file read.

    The key is the layer file's when the layer lookup proved it is the mapped inode: every
    container started from one image maps the same layer file (each through its own overlay
    device), so a library shared by a hundred containers is parsed once.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self._facts: dict[tuple[int, int, int, int], ElfFacts | None] = {}
        self.max_entries = max_entries

    def get(self, key: tuple[int, int, int, int]) -> tuple[bool, ElfFacts | None]:
        if key in self._facts:
            return True, self._facts[key]
        return False, None

    def put(self, key: tuple[int, int, int, int], facts: ElfFacts | None) -> None:
        if len(self._facts) >= self.max_entries:
            del self._facts[next(iter(self._facts))]  # oldest first: updated files leave stale keys
        self._facts[key] = facts

    def __len__(self) -> int:
        return len(self._facts)


_shared_cache: ElfCache | None = None


def shared_cache() -> ElfCache:
    """The process-wide cache used when the caller passes none."""
    global _shared_cache
    if _shared_cache is None:
        _shared_cache = ElfCache()
    return _shared_cache


def _key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _exe_path(proc: str, pid: int) -> str | None:
    try:
        target = os.readlink(os.path.join(proc, str(pid), "exe"))
    except OSError:
        return None
    return target.removesuffix(" (deleted)")


# --- overlay layer lookup -------------------------------------------------------------------

_OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")


class _Layers:
    """Open layer directories of one container (upperdir first), for name lookups by dir fd."""

    def __init__(self, container: Container,
                 shared: dict[tuple[str, str], tuple[str, os.stat_result | None]] | None = None) -> None:
        # Lower layers are image layers shared by every container of an image: within one pass
        # over many containers, a (layer dir, path) lookup is done once.
        self.shared = shared if shared is not None else {}
        self.roots = container.roots
        self.dirs: list[tuple[str, int, str]] = []  # (kind, index, host dir as mountinfo names it)
        self.fds: list[int | None] = []
        self._subdirs: dict[tuple[int, tuple[str, ...]], int | str] = {}
        self._opaque: dict[tuple[int, tuple[str, ...]], bool] = {}
        self.overlay_dev: int | None = None
        rootfs = container.rootfs
        if rootfs is None or not rootfs.is_overlay:
            return
        if rootfs.mount is not None:
            self.overlay_dev = rootfs.mount.dev
        elif container.pid is not None:
            try:
                self.overlay_dev = os.stat(container.proc_path("root")).st_dev
            except OSError:
                pass
        if rootfs.upperdir:
            self.dirs.append(("upper", 0, rootfs.upperdir))
        for i, d in enumerate(rootfs.lowerdirs):
            self.dirs.append(("lower", i, d))
        self.fds = [None] * len(self.dirs)

    def _fd(self, i: int) -> int | None:
        fd = self.fds[i]
        if fd is None:
            try:
                fd = os.open(self.roots.host_path(self.dirs[i][2]), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                return None
            self.fds[i] = fd
        return fd

    def close(self) -> None:
        for fd in self.fds:
            if fd is not None:
                os.close(fd)
        self.fds = [None] * len(self.dirs)
        for got in self._subdirs.values():
            if isinstance(got, int):
                os.close(got)
        self._subdirs.clear()
        self._opaque.clear()

    @staticmethod
    def _is_opaque(fd: int) -> bool:
        for name in _OPAQUE_XATTRS:
            try:
                if os.getxattr(f"/proc/self/fd/{fd}", name) == b"y":
                    return True
            except OSError:
                continue
        return False

    def _dir(self, i: int, parts: tuple[str, ...]) -> int | str:
        """An O_PATH fd on directory ``parts`` of layer ``i`` (never through a symlink), else
        "hidden" (this layer hides the path from lower layers: a non-directory where a directory
        is needed, or a missing entry below an opaque directory) or "absent" (lower layers
        decide). Remembered for this scan: a container's libraries share their directories."""
        if not parts:
            fd = self._fd(i)
            return "absent" if fd is None else fd
        got = self._subdirs.get((i, parts))
        if got is None:
            parent = self._dir(i, parts[:-1])
            if isinstance(parent, str):
                return parent
            try:
                # O_NOFOLLOW|O_DIRECTORY: a symlink in a layer is never walked through (it could
                # point anywhere on the host; overlayfs would not follow it either).
                got = os.open(parts[-1], os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC,
                              dir_fd=parent)
            except OSError as err:
                if err.errno in (errno.ENOTDIR, errno.ELOOP):
                    got = "hidden"
                else:
                    got = "hidden" if self._opaque_on_the_way(i, parts[:-1]) else "absent"
            self._subdirs[(i, parts)] = got
        return got

    def _opaque_on_the_way(self, i: int, parts: tuple[str, ...]) -> bool:
        """Whether a directory of ``parts`` (all opened by _dir; the layer root excluded) is opaque."""
        for k in range(1, len(parts) + 1):
            key = (i, parts[:k])
            opaque = self._opaque.get(key)
            if opaque is None:
                fd = self._subdirs[key]
                opaque = self._opaque[key] = isinstance(fd, int) and self._is_opaque(fd)
            if opaque:
                return True
        return False

    def _lookup_one(self, i: int, parts: tuple[str, ...]) -> tuple[str, os.stat_result | None]:
        """Look ``parts`` up in layer ``i`` without following any symlink.

        Returns ("file", st) for a regular file; ("hidden", None) when this layer hides the path
        from lower layers (a whiteout, a non-directory where a directory is needed, an opaque
        directory on the way); ("absent", None) when lower layers decide.
        """
        parent = self._dir(i, parts[:-1])
        if isinstance(parent, str):
            return parent, None
        try:
            st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except OSError:
            return ("hidden" if self._opaque_on_the_way(i, parts[:-1]) else "absent"), None
        if stat.S_ISREG(st.st_mode):
            return "file", st
        return "hidden", None  # whiteout (0:0 char device), directory or symlink

    def find(self, path: str, maps_dev: int, maps_ino: int, deleted: bool) -> Layer | None:
        parts = tuple(p for p in path.split("/") if p and p != ".")
        if not parts or ".." in parts or not self.dirs:
            return None
        for i, (kind, index, d) in enumerate(self.dirs):
            cached = self.shared.get((d, path)) if kind == "lower" else None
            if cached is not None:
                state, st = cached
            else:
                state, st = self._lookup_one(i, parts)
                if kind == "lower":
                    self.shared[(d, path)] = (state, st)
            if state == "file" and st is not None:
                same_backing = (st.st_dev, st.st_ino) == (maps_dev, maps_ino)  # kernels < 6.8
                same_overlay = maps_dev == self.overlay_dev and st.st_ino == maps_ino  # >= 6.8, samefs
                verified = same_backing or same_overlay
                if verified or not deleted:
                    return Layer(kind, index, d, verified, st, self.roots.host_path(d))
            elif state == "hidden" and not deleted:
                # A deleted mapping's inode may live on below a whiteout: keep looking, but only
                # an inode-verified match is accepted then.
                return None
        return None


# --- the scan -------------------------------------------------------------------------------


def _pids(container: Container) -> list[int]:
    pids = list(container.pids) if container.pids else []
    if container.pid is not None and container.pid not in pids:
        pids.insert(0, container.pid)
    return pids


_LIBCRYPTO = re.compile(r"/libcrypto[^/]*$")


@functools.lru_cache(maxsize=512)
def _wanted_mappings(data: bytes, match: re.Pattern[str] | None) -> tuple[Mapping, ...]:
    """The file mappings of one maps file that ``match`` selects (libcrypto riding along).

    Cached on the raw bytes read: processes that did not map or unmap anything since the last
    call (the usual case) give byte-identical maps and skip the regex pass; any change in the
    content is a different key. Only small files are passed here (see _collect), which bounds
    the cache's memory.
    """
    want = None
    if match is not None:
        # libcrypto rides along: it holds the OpenSSL version libssl lacks
        want = lambda p: bool(match.search(p) or _LIBCRYPTO.search(p))  # noqa: E731
    return tuple(iter_file_mappings(data, want))


_CACHED_MAPS_MAX = 64 << 10  # bytes; ~500 mappings. Bigger maps files are parsed every time.


@functools.lru_cache(maxsize=64)
def _needles(match: re.Pattern[str]) -> tuple[bytes, ...]:
    """For a plain word such as "libssl": bytes a maps file must contain (it, or libcrypto) to be
    worth parsing. Empty when the pattern is a real regex."""
    if match.pattern and not match.flags & re.IGNORECASE and re.escape(match.pattern) == match.pattern \
            and "\n" not in match.pattern:
        return (os.fsencode(match.pattern), b"/libcrypto")
    return ()


def _collect(container: Container, match: re.Pattern[str] | None) -> list[MappedObject]:
    proc = container.roots.proc
    objects: dict[tuple[int, int], MappedObject] = {}
    needles = _needles(match) if match is not None else ()
    for pid in _pids(container):
        try:
            with open(f"{proc}/{pid}/maps", "rb") as f:
                data = f.read()
        except OSError as err:
            if err.errno in (errno.ENOENT, errno.ESRCH):
                if pid == container.pid:
                    raise ProcessGone(target=container.display_name, pid=pid) from err
                continue  # a short-lived process of the container exited meanwhile
            raise from_oserror(err, target=container.display_name, pid=pid) from err
        if needles and not any(n in data for n in needles):
            continue
        if len(data) <= _CACHED_MAPS_MAX:
            mappings: Iterable[Mapping] = _wanted_mappings(data, match)
        else:
            mappings = _wanted_mappings.__wrapped__(data, match)
        exe = None
        for m in mappings:
            assert m.path is not None
            key = (m.dev, m.inode)
            obj = objects.get(key)
            if obj is None:
                obj = objects[key] = MappedObject(path=m.path, dev=m.dev, inode=m.inode,
                                                  deleted=m.deleted, pids=[])
            if pid not in obj.mappings:
                obj.pids.append(pid)
                obj.mappings[pid] = m
                if exe is None:
                    exe = _exe_path(proc, pid) or ""
                if exe == m.path:
                    obj.executable = True
    return list(objects.values())


def mapped_paths(container: Container) -> list[str]:
    """Paths of every file the container's processes map; cheap (maps only, no file opened)."""
    return sorted({o.path for o in _collect(container, None)})


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _stat_in_container(proc_root: str, path: str) -> os.stat_result | None:
    """stat of ``path`` resolved inside the process's root ``/proc/<pid>/root`` (rootfs's safe
    resolver)."""
    try:
        rootfd = os.open(proc_root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fd = resolve(rootfd, os.fsencode(path))
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)
    except OSError:
        return None
    finally:
        os.close(rootfd)


def _resolve(obj: MappedObject, roots: Roots, layers: _Layers | None) -> os.stat_result | None:
    """Pick and verify the host path; return the stat of the mapped file (map_files) if known."""
    mst = _pick(obj, roots.proc, layers)
    obj.host_path = None if obj.local_path is None else roots.on_host(obj.local_path)
    if obj.local_map_files_path is not None:
        obj.map_files_path = roots.on_host(obj.local_map_files_path)
    return mst


def _pick(obj: MappedObject, proc: str, layers: _Layers | None) -> os.stat_result | None:
    """_resolve with paths as this process opens them (``local_path``, ``local_map_files_path``)."""
    pid = obj.pids[0]
    m = obj.mappings[pid]
    base = os.path.join(proc, str(pid))
    mf = f"{base}/map_files/{m.range_name}"
    mst = _stat(mf)
    if mst is not None:
        obj.local_map_files_path = mf
    root_path = f"{base}/root{obj.path}"
    # The container's view of the path, resolved with its root as "/" (never the host's), and
    # what the host reaches through /proc/<pid>/root/<path>: an absolute symlink on the way
    # resolves against the host root there. The host path is offered only when both agree.
    rst = _stat_in_container(f"{base}/root", obj.path)
    hst = _stat(root_path)
    host_agrees = rst is not None and hst is not None and (hst.st_dev, hst.st_ino) == (rst.st_dev, rst.st_ino)

    if layers is not None:
        obj.layer = layers.find(obj.path, obj.dev, obj.inode, obj.deleted)
    layer_backing = obj.layer is not None and obj.layer.verified

    if rst is not None:
        rid = (rst.st_dev, rst.st_ino)
        if mst is not None:
            obj.root_path_same = rid == (mst.st_dev, mst.st_ino)
        else:
            obj.root_path_same = rid == (obj.dev, obj.inode) or (
                layer_backing and rst.st_ino == obj.inode)
        obj.root_path_same = obj.root_path_same and host_agrees
    elif hst is not None:
        obj.root_path_same = False  # the host reaches a file there that the container does not see
    if mst is not None and (mst.st_dev, mst.st_ino) != (obj.dev, obj.inode) and not layer_backing \
            and mst.st_ino != obj.inode:
        obj.warnings.append(
            f"map_files entry {m.range_name} has inode {mst.st_ino}, maps says {obj.inode}")

    if obj.root_path_same:
        obj.local_path, obj.host_path_via, obj.identity = root_path, "root", VERIFIED
    elif mst is not None:
        obj.local_path, obj.host_path_via, obj.identity = mf, "map_files", VERIFIED
        if obj.deleted:
            obj.warnings.append("deleted after it was mapped; host path is the process's map_files entry")
        elif rst is None:
            obj.warnings.append(f"{obj.path} no longer exists in the container; using map_files")
        else:
            obj.warnings.append(f"{obj.path} in the container is now a different file "
                                f"(inode {rst.st_ino}); using map_files")
    elif obj.root_path_same is False:
        obj.identity = MISMATCH
        what = (f"{obj.path} in the container is inode {rst.st_ino}" if rst is not None and host_agrees
                else f"{root_path} does not lead to the container's {obj.path}")
        obj.warnings.append(f"{what}, not the mapped inode {obj.inode}; map_files is not readable "
                            "(needs CAP_SYS_ADMIN), no host path reported")
    else:
        obj.identity = UNVERIFIED
        obj.warnings.append("cannot reach the mapped file (map_files not readable, path gone)")
    return mst


def open_mapped_file(obj: MappedObject, expect: os.stat_result | None) -> tuple[int, os.stat_result] | None:
    """Open the mapped file itself, regular files only: its map_files entry, else the verified
    host path, else the layer file proven (by inode) to be the one mapped.

    ``expect`` is the map_files entry's stat when the caller already has it.
    """
    candidates: list[tuple[str | None, os.stat_result | None, int]] = [
        (obj.local_map_files_path, expect, 0),
        (obj.local_path if obj.identity == VERIFIED else None, None, 0),
    ]
    if obj.layer is not None and obj.layer.verified and obj.layer.st is not None:
        candidates.append((obj.layer.file(obj.path), obj.layer.st, os.O_NOFOLLOW))
    for path, st, extra in candidates:
        if path is None:
            continue
        if st is None:
            st = _stat(path)
        if st is None or not stat.S_ISREG(st.st_mode):
            continue
        try:
            fd = os.open(path, _OPEN_FLAGS | extra)
        except OSError:
            continue
        fst = os.fstat(fd)
        if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(fst.st_mode):
            os.close(fd)  # replaced (or redirected by a symlink) between stat and open
            continue
        return fd, fst
    return None


def _facts(obj: MappedObject, mst: os.stat_result | None, cache: ElfCache) -> None:
    lst = obj.layer.st if obj.layer is not None and obj.layer.verified else None
    if lst is not None:
        hit, facts = cache.get(_key(lst))
        if hit:
            obj.facts, obj.is_elf = facts, facts is not None
            obj.size, obj.mtime_ns = lst.st_size, lst.st_mtime_ns
            return
    opened = open_mapped_file(obj, mst)
    if opened is None:
        return
    fd, fst = opened
    obj.size, obj.mtime_ns = fst.st_size, fst.st_mtime_ns
    key = _key(lst) if lst is not None and lst.st_size == fst.st_size else _key(fst)
    hit, facts = cache.get(key)
    if hit:
        os.close(fd)
    else:
        with os.fdopen(fd, "rb") as f:
            facts = None
            if is_elf(f):
                try:
                    facts = read_facts(f, obj.name)
                except (ElfError, ValueError, OSError) as err:
                    obj.warnings.append(f"unreadable ELF: {err}")
        cache.put(key, facts)
    obj.facts, obj.is_elf = facts, facts is not None


def _inherit_versions(objects: list[MappedObject]) -> None:
    """libssl carries no version string; the libcrypto of the same processes does."""
    crypto = [o for o in objects if o.library in ("openssl",) and o.facts and o.facts.version
              and o.name.startswith("libcrypto")]
    for o in objects:
        if o.library == "openssl" and o.version is None:
            for c in crypto:
                if set(c.pids) & set(o.pids):
                    o.inherited_version = c.facts.version if c.facts else None
                    o.version_source = f"{c.path} mapped by the same processes"
                    break


def container_libs(container: Container, match: str | re.Pattern[str] | None = None, *,
                   cache: ElfCache | None = None, include_non_elf: bool = False,
                   _layer_cache: dict[tuple[str, str], tuple[str, os.stat_result | None]] | None = None,
                   ) -> ContainerLibs:
    """The ELF objects ``container``'s processes map, deduplicated by (device, inode).

    ``match`` (a regex searched in the path inside the container) filters early, before any
    file is opened.
    """
    if container.pid is None:
        raise Unsupported("container is not running: no process maps anything",
                          target=container.display_name)
    pattern = re.compile(match) if isinstance(match, str) else match
    cache = cache if cache is not None else shared_cache()
    objects = _collect(container, pattern)
    helpers: list[MappedObject] = []
    if pattern is not None:
        helpers = [o for o in objects if not pattern.search(o.path)]
        objects = [o for o in objects if pattern.search(o.path)]
        if not any(o.name.startswith("libssl") for o in objects):
            helpers = []
    # container.rootfs reads the root mount on first access: only pay for it when needed
    layers = (_Layers(container, _layer_cache) if (objects or helpers) and container.rootfs is not None
              else None)
    roots = container.roots
    try:
        for obj in objects:
            mst = _resolve(obj, roots, layers)
            _facts(obj, mst, cache)
        for obj in helpers:
            # only its version is wanted: a layer file proven by inode and already parsed will do
            if layers is not None:
                obj.layer = layers.find(obj.path, obj.dev, obj.inode, obj.deleted)
                lst = obj.layer.st if obj.layer is not None and obj.layer.verified else None
                hit, facts = cache.get(_key(lst)) if lst is not None else (False, None)
                if hit:
                    obj.facts, obj.is_elf = facts, facts is not None
                    continue
            mst = _resolve(obj, roots, layers)
            _facts(obj, mst, cache)
    finally:
        if layers is not None:
            layers.close()
    _inherit_versions(objects + helpers)
    result = [o for o in objects if include_non_elf or o.is_elf is not False]
    result.sort(key=lambda o: (not o.executable, o.path))
    container.check_alive()
    return ContainerLibs(container, result)


def all_container_libs(containers: Iterable[Container], match: str | re.Pattern[str] | None = None, *,
                       cache: ElfCache | None = None) -> list[ContainerLibs]:
    """:func:`container_libs` for every running container, sharing one ELF cache."""
    pattern = re.compile(match) if isinstance(match, str) else match
    cache = cache if cache is not None else shared_cache()
    out = []
    layer_cache: dict[tuple[str, str], tuple[str, os.stat_result | None]] = {}
    for c in containers:
        if c.pid is None:
            continue
        try:
            out.append(container_libs(c, pattern, cache=cache, _layer_cache=layer_cache))
        except ProcessGone:
            continue  # stopped while we scanned the others
        except CtrfsError as err:
            out.append(ContainerLibs(c, [], [str(err)]))
    return out
