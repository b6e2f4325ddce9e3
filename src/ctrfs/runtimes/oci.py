"""OCI image layouts (``oci:DIR[:TAG]``): what ``skopeo copy … oci:DIR`` and ``umoci`` write.

image-spec image-layout.md: ``DIR/oci-layout`` marks the layout, ``DIR/index.json`` lists
manifests (the tag is the annotation ``org.opencontainers.image.ref.name``), every blob is
``DIR/blobs/<alg>/<hex>``. A manifest's ``layers`` are bottom first; each is a tar, often gzip-
or zstd-compressed (media type ``…layer.v1.tar+gzip``). An index may point at another index
(multi-platform images): the manifest for this machine's architecture is taken.
"""

from __future__ import annotations

import os
import platform
import re

from ctrfs._record import dataclass, field
from ctrfs.errors import Ambiguous, NotFound, TargetNotFound, Unsupported
from ctrfs.runtimes.base import read_json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

REF_NAME = "org.opencontainers.image.ref.name"
_DIGEST = re.compile(r"^(sha256|sha512):([0-9a-f]{64}|[0-9a-f]{128})$")
_INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json")
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
         "s390x": "s390x", "riscv64": "riscv64"}


@dataclass
class OciLayer:
    path: str  # the blob file
    digest: str
    media_type: str
    size: int | None = None


@dataclass
class OciImage:
    layout: str
    tag: str | None
    manifest_digest: str
    config_digest: str | None
    layers: list[OciLayer]  # bottom first, as the manifest lists them
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.config_digest or self.manifest_digest


def blob_path(layout: str, digest: str) -> str:
    m = _DIGEST.match(digest or "")
    if m is None:
        raise Unsupported(f"invalid blob digest {digest!r} in the layout", target=f"oci:{layout}")
    return os.path.join(layout, "blobs", m.group(1), m.group(2))


def _pick_platform(layout: str, index: dict[str, Any]) -> dict[str, Any] | None:
    arch = _ARCH.get(platform.machine(), platform.machine())
    manifests = [m for m in index.get("manifests") or [] if isinstance(m, dict)]
    for m in manifests:
        p = m.get("platform") or {}
        if p.get("os", "linux") == "linux" and p.get("architecture", arch) == arch:
            return m
    return manifests[0] if len(manifests) == 1 else None


def read_layout(layout: str, tag: str | None) -> OciImage:
    """The image ``tag`` of the layout at ``layout`` (the only one when no tag is given)."""
    shown = f"oci:{layout}" + (f":{tag}" if tag else "")
    index = read_json(os.path.join(layout, "index.json"))
    if not os.path.exists(os.path.join(layout, "oci-layout")) or not isinstance(index, dict):
        raise TargetNotFound(f"{layout}: not an OCI image layout (no oci-layout and index.json)",
                             target=shown)
    entries = [m for m in index.get("manifests") or [] if isinstance(m, dict)]
    tags = [str((m.get("annotations") or {}).get(REF_NAME)) for m in entries
            if (m.get("annotations") or {}).get(REF_NAME)]
    if tag is not None:
        entries = [m for m in entries if (m.get("annotations") or {}).get(REF_NAME) == tag]
        if not entries:
            raise TargetNotFound(f"no tag {tag!r} in the layout; tags: {', '.join(tags) or 'none'}",
                                 target=shown, candidates=tags)
    if len(entries) != 1:
        if not entries:
            raise NotFound("the layout's index.json lists no image", target=shown)
        raise Ambiguous("the layout holds several images; name one as oci:DIR:TAG (tags: "
                        + ", ".join(tags) + ")", target=shown, candidates=tags)
    desc = entries[0]
    for _ in range(4):  # index → index → manifest at most a few levels deep
        if desc.get("mediaType") not in _INDEX_TYPES:
            break
        sub = read_json(blob_path(layout, str(desc.get("digest"))))
        picked = _pick_platform(layout, sub) if isinstance(sub, dict) else None
        if picked is None:
            raise NotFound("no manifest for this machine's platform in the image index", target=shown)
        desc = picked
    digest = str(desc.get("digest"))
    manifest = read_json(blob_path(layout, digest))
    if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), list):
        raise NotFound(f"manifest {digest} is missing or unreadable", target=shown)
    layers = []
    for la in manifest["layers"]:
        if not isinstance(la, dict):
            continue
        d = str(la.get("digest"))
        layers.append(OciLayer(blob_path(layout, d), d, str(la.get("mediaType") or ""),
                               la.get("size") if isinstance(la.get("size"), int) else None))
    cfg_digest = (manifest.get("config") or {}).get("digest")
    config = read_json(blob_path(layout, cfg_digest)) if cfg_digest else None
    return OciImage(layout=layout, tag=tag, manifest_digest=digest, config_digest=cfg_digest,
                    layers=layers, config=config if isinstance(config, dict) else {})
