"""Overlay layer directories as graph drivers lay them out (Docker overlay2, containers/storage).

Both keep, per layer directory ``<root>/<id>/``: ``diff`` (the layer), ``work``, ``merged`` and a
``lower`` file listing the layers below as short links ``l/<26 chars>`` joined by ``:``. The short
links exist because mount(2) data is limited to one page (moby daemon/graphdriver/overlay2).
"""

from __future__ import annotations

import os

from ctrfs.runtimes.base import Roots, read_text


def resolve_short_link(path: str, roots: Roots) -> str:
    """``…/overlay2/l/ABC`` → ``…/overlay2/<id>/diff`` (host path); other paths unchanged."""
    if os.path.basename(os.path.dirname(path)) != "l":
        return path
    try:
        target = os.readlink(roots.host_path(path))
    except OSError:
        return path
    if os.path.isabs(target):
        return os.path.normpath(target)
    return os.path.normpath(os.path.join(os.path.dirname(path), target))


def layer_dirs(driver_root: str, layer_id: str, roots: Roots) -> tuple[str, str, list[str], str]:
    """(upperdir, workdir, lowerdirs top-first, mergeddir) for a layer dir; host paths.

    ``driver_root`` is a host path as the runtime names it (e.g. /var/lib/docker/overlay2).
    """
    base = os.path.join(driver_root, layer_id)
    lower = read_text(os.path.join(roots.host_path(base), "lower")) or ""
    lowers = []
    for item in lower.split(":"):
        if item:
            full = item if os.path.isabs(item) else os.path.join(driver_root, item)
            lowers.append(resolve_short_link(full, roots))
    return os.path.join(base, "diff"), os.path.join(base, "work"), lowers, os.path.join(base, "merged")
