"""The ctrfs.pyz that goes to the node, as bytes.

In order: the file named by ``--pyz`` or ``$KUBECTL_CTRFS_PYZ`` (``make pyz`` builds
``dist/ctrfs.pyz``); the zip application this plugin itself runs from; else one built from the
ctrfs installed here and the pure-Python distributions it depends on, kept in
``~/.cache/ctrfs/`` until those files change. The node runs it as ``python3 -I -S ctrfs.pyz ARGS``:
no site-packages there.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import sys
import zipfile
import zipimport
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ctrfs.errors import CtrfsError

# The fallback's entry: ctrfs's launcher where the package has one (it runs the plugin when the
# file is named kubectl-ctrfs, ctrfs otherwise), else ctrfs's CLI.
_MAIN = """import sys

try:
    from ctrfs._launcher import main
except ImportError:
    from ctrfs.cli.main import main

sys.exit(main())
"""
_SKIP_DIRS = frozenset({"__pycache__", "tests", "test"})


@dataclass(frozen=True)
class Pyz:
    data: bytes
    origin: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def load(path: str | None = None) -> Pyz:
    path = path or os.environ.get("KUBECTL_CTRFS_PYZ") or None
    if path:
        try:
            return Pyz(Path(path).read_bytes(), path)
        except OSError as err:
            raise CtrfsError(f"cannot read the ctrfs.pyz to send: {err.strerror}", path=path) from err
    loader = getattr(sys.modules[__name__], "__loader__", None)
    if isinstance(loader, zipimport.zipimporter) and loader.archive:
        return Pyz(Path(loader.archive).read_bytes(), loader.archive)
    return _built()


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "ctrfs")


def _built() -> Pyz:
    """The pyz of the installed files, kept in the user's cache dir under a key of their names,
    sizes and mtimes: compressing ~10 MB of sources takes about a second, once per install."""
    entries = _entries()
    key = hashlib.sha256(_MAIN.encode())
    for arc, src in entries:
        st = src.stat()
        key.update(f"{arc}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    cached = _cache_dir() / f"kubectl-ctrfs-{key.hexdigest()[:32]}.pyz"
    try:
        return Pyz(cached.read_bytes(), str(cached))
    except OSError:
        pass
    data = build(entries)
    try:  # a cache only: a read-only or missing home is no error
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, cached)
        for old in cached.parent.glob("kubectl-ctrfs-*.pyz"):
            if old != cached:
                old.unlink(missing_ok=True)
    except OSError:
        pass
    return Pyz(data, "built from the installed ctrfs")


def _requirement_names(dist: metadata.Distribution) -> list[str]:
    out = []
    for req in dist.requires or ():
        if "extra ==" in req:
            continue  # optional extras (test tools) stay out
        m = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req)
        if m:
            out.append(m.group(0))
    return out


def _dist_files(dist: metadata.Distribution) -> list[tuple[str, Path]]:
    files = []
    for f in dist.files or ():
        parts = f.parts
        if not parts or parts[0].endswith((".dist-info", ".egg-info", ".data")) or parts[0] == "..":
            continue
        if any(p in _SKIP_DIRS for p in parts) or f.suffix in (".pyc", ".so", ".pyd"):
            continue
        files.append(("/".join(parts), Path(str(f.locate()))))
    return files


def _entries() -> list[tuple[str, Path]]:
    """(name in the archive, installed file) of ctrfs and its runtime dependencies."""
    import ctrfs

    pkg = Path(ctrfs.__file__).resolve().parent
    entries: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(pkg):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for fn in sorted(filenames):
            if fn.endswith(".py"):
                full = Path(dirpath, fn)
                entries.append(("ctrfs/" + full.relative_to(pkg).as_posix(), full))
    seen = {"ctrfs"}
    todo = _requirement_names(metadata.distribution("ctrfs"))
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a dependency for another Python version
        entries += _dist_files(dist)
        todo += _requirement_names(dist)
    return entries


def build(entries: list[tuple[str, Path]] | None = None) -> bytes:
    """A zip application of the installed ctrfs and its runtime dependencies."""
    if entries is None:
        entries = _entries()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for arc, data in [("__main__.py", _MAIN.encode()), *((a, src.read_bytes()) for a, src in entries)]:
            # A fixed date: the same installed files give the same bytes (and the same hash
            # an agent caches them by).
            info = zipfile.ZipInfo(arc, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return buf.getvalue()
