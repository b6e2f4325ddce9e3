"""A read-only reader for bbolt files, enough to walk nested buckets (containerd's metadata).

bbolt (go.etcd.io/bbolt) stores a B+tree in fixed-size pages. Layout, from its page.go / db.go:

* every page starts with ``id u64, flags u16, count u16, overflow u32``;
* pages 0 and 1 are meta pages (flags 0x04): ``magic u32 (0xED0CDAED), version u32, page_size
  u32, flags u32, root bucket {root pgid u64, sequence u64}, freelist u64, pgid u64, txid u64,
  checksum u64``; the valid one with the higher txid is current;
* branch pages (0x01) hold ``count`` elements ``pos u32, ksize u32, pgid u64``; leaf pages
  (0x02) hold ``flags u32, pos u32, ksize u32, vsize u32``; ``pos`` counts from the element;
* a leaf element with flag 0x01 is a sub-bucket whose value is ``root pgid u64, sequence u64``;
  root 0 means an inline bucket whose leaf page follows that header inside the value.

The file is read whole (containerd's metadata files are small) and never written or locked.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

_MAGIC = 0xED0CDAED
_BRANCH, _LEAF, _META = 0x01, 0x02, 0x04
_BUCKET_LEAF = 0x01
_HDR = struct.Struct("<QHHI")
_META_S = struct.Struct("<IIII QQ QQQQ")
_BRANCH_EL = struct.Struct("<IIQ")
_LEAF_EL = struct.Struct("<IIII")
_BUCKET = struct.Struct("<QQ")
_MAX_DEPTH = 64


class BoltError(ValueError):
    """Not a bbolt file, or a corrupt one."""


class Bolt:
    def __init__(self, data: bytes) -> None:
        self.data = data
        best = None
        for off in (0, 4096):
            if len(data) < off + _HDR.size + _META_S.size:
                continue
            _, flags, _, _ = _HDR.unpack_from(data, off)
            if not flags & _META:
                continue
            magic, _, psize, _, root, _, _, _, txid, _ = _META_S.unpack_from(data, off + _HDR.size)
            if magic != _MAGIC:
                continue
            if best is None or txid > best[2]:
                best = (psize, root, txid)
        if best is None:
            raise BoltError("not a bbolt file")
        self.page_size, self.root, _ = best

    @classmethod
    def open(cls, path: str) -> Bolt:
        with open(path, "rb") as f:
            return cls(f.read())

    def _page(self, pgid: int) -> tuple[bytes, int]:
        off = pgid * self.page_size
        if off + _HDR.size > len(self.data):
            raise BoltError(f"page {pgid} beyond the end of the file")
        return self.data, off

    def _items(self, buf: bytes, off: int, depth: int = 0) -> Iterator[tuple[bytes, bytes, int]]:
        """(key, value, flags) of every leaf element below the page at ``off`` of ``buf``."""
        if depth > _MAX_DEPTH:
            raise BoltError("tree too deep (a loop?)")
        _, flags, count, _ = _HDR.unpack_from(buf, off)
        base = off + _HDR.size
        if flags & _LEAF:
            for i in range(count):
                el = base + i * _LEAF_EL.size
                eflags, pos, ksize, vsize = _LEAF_EL.unpack_from(buf, el)
                k0 = el + pos
                yield buf[k0:k0 + ksize], buf[k0 + ksize:k0 + ksize + vsize], eflags
        elif flags & _BRANCH:
            for i in range(count):
                el = base + i * _BRANCH_EL.size
                _, _, pgid = _BRANCH_EL.unpack_from(buf, el)
                pbuf, poff = self._page(pgid)
                yield from self._items(pbuf, poff, depth + 1)
        else:
            raise BoltError(f"unexpected page flags {flags:#x}")

    def _bucket_items(self, value: bytes | None) -> Iterator[tuple[bytes, bytes, int]]:
        if value is None:  # the root bucket
            buf, off = self._page(self.root)
            yield from self._items(buf, off)
            return
        root, _ = _BUCKET.unpack_from(value, 0)
        if root == 0:  # inline bucket: its leaf page follows the header
            yield from self._items(value, _BUCKET.size)
        else:
            buf, off = self._page(root)
            yield from self._items(buf, off)

    def bucket(self, *path: bytes) -> Bucket | None:
        value: bytes | None = None
        for name in path:
            for k, v, flags in self._bucket_items(value):
                if k == name and flags & _BUCKET_LEAF:
                    value = v
                    break
            else:
                return None
        return Bucket(self, value)


class Bucket:
    def __init__(self, db: Bolt, value: bytes | None) -> None:
        self._db = db
        self._value = value

    def items(self) -> Iterator[tuple[bytes, bytes | Bucket]]:
        """(key, value) pairs; a sub-bucket's value is a :class:`Bucket`."""
        for k, v, flags in self._db._bucket_items(self._value):
            yield k, (Bucket(self._db, v) if flags & _BUCKET_LEAF else v)

    def get(self, key: bytes) -> bytes | Bucket | None:
        for k, v in self.items():
            if k == key:
                return v
        return None


def uvarint(data: bytes) -> int:
    """Go's encoding/binary Uvarint."""
    out = shift = 0
    for b in data[:10]:
        out |= (b & 0x7F) << shift
        if b < 0x80:
            return out
        shift += 7
    raise BoltError("bad uvarint")
