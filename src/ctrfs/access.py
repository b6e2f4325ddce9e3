"""open_root(container): the one way from a Container to a Root that ops work on.

A running container's root is its main process's ``/proc/<pid>/root``, pinned
(:class:`~ctrfs.rootfs.proc.ProcRoot`); a stopped one's is its overlay layers merged in user space
(:class:`~ctrfs.overlay.root.OverlayRoot`), as is an image's; an OCI layout's is its layer tarballs
read as streams (:class:`~ctrfs.rootfs.tarroot.TarLayersRoot`). All are
:class:`~ctrfs.rootfs.base.Root`, so every operation works on any of them.
"""

from __future__ import annotations

from ctrfs.errors import AccessDenied, NotFound, Unsupported
from ctrfs.model import Container
from ctrfs.proc.userns import IdMap
from ctrfs.rootfs.base import Root
from ctrfs.rootfs.fd import DirRoot
from ctrfs.rootfs.proc import ProcRoot

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ctrfs.overlay.layers import LayerStack

__all__ = ["open_root"]


def open_root(container: Container) -> Root:
    """A Root for ``container``: its live root while it runs, else its layers merged offline."""
    if container.pid is not None:
        root = ProcRoot(container)
        fs = container.rootfs
        if fs is not None and (fs.fstype or "").startswith("fuse"):
            # A rootless fuse-overlayfs root refuses every caller outside its user namespace,
            # root too (fs/fuse/dir.c fuse_allow_current_process): say so once, here.
            try:
                root.lstat("/")
            except AccessDenied as err:
                root.close()
                user = container.owner or "its owner"
                raise AccessDenied(
                    f"its root is a {fs.fstype} mount, which lets no one outside {user}'s user "
                    f"namespace in, not even root; run ctrfs as that user: sudo -u {user} podman "
                    "unshare ctrfs ... (or read the container once stopped: its layers are on "
                    "disk)", target=container.display_name) from err
        return root
    oci = container.record.extra.get("oci")
    if oci is not None:
        # Imported here: tarfile and the decompressors are for OCI layouts only (start-up).
        from ctrfs.rootfs.tarroot import TarLayersRoot

        return TarLayersRoot([la.path for la in oci.layers], target=container.display_name)
    stack = _stopped_overlay(container)
    if stack is not None:
        # Imported here so that a running container's commands do not pay for the offline merge
        # at start-up (docs/conventions.md rule 11).
        from ctrfs.overlay.root import OverlayRoot

        oroot = OverlayRoot(stack, target=container.display_name)
        oroot.idmap = _idmap(container)  # a rootless store's files carry its user's host ids
        return oroot
    rootfs = container.record.rootfs
    if rootfs and container.record.runtime in ("lxc", "nspawn", "podman"):
        # A stopped container whose root is a plain directory (LXC dir:, nspawn -D, podman on
        # vfs): read it where it is, read-only as every Root.
        droot = DirRoot(container.roots.host_path(rootfs), target=container.display_name)
        droot.idmap = _idmap(container)
        return droot
    raise Unsupported("container is not running and its runtime recorded no overlay layers to "
                      "read offline", target=container.display_name)


def _idmap(container: Container) -> IdMap | None:
    umap, gmap = container.record.extra.get("uid_map"), container.record.extra.get("gid_map")
    if umap and gmap:
        return IdMap(tuple(map(tuple, umap)), tuple(map(tuple, gmap)))
    return None


def _stopped_overlay(container: Container) -> LayerStack | None:
    """The layer stack of a stopped container whose runtime recorded its overlay dirs."""
    from ctrfs.overlay.layers import layer_stack  # start-up: see open_root

    try:
        stack = layer_stack(container)
    except NotFound:
        return None
    return stack if stack.is_overlay and stack.layers else None
