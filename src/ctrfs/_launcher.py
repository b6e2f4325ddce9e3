"""The one-file ctrfs's entry: ``ctrfs`` or ``kubectl-ctrfs``, chosen by the name it runs under.

``dist/ctrfs.pyz`` is both programs. kubectl runs a plugin by its file name, so a link named
``kubectl-ctrfs`` to the pyz (or ``python3 ctrfs.pyz kubectl-ctrfs ARGS``) runs the plugin; any
other name (``ctrfs.pyz``, ``ctrfs``), or ``python3 ctrfs.pyz ctrfs ARGS``, runs ctrfs.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence

CTRFS = "ctrfs.cli.main"
KUBECTL_CTRFS = "ctrfs.kube.main"  # the plugin's entry point, by convention: ctrfs.kube.main:main
PLUGIN_NAME = "kubectl-ctrfs"


def choose(argv0: str, args: Sequence[str]) -> tuple[str, list[str]]:
    """(module whose ``main`` runs, the arguments it gets) for ``argv0 args...``."""
    name = os.path.basename(argv0)
    if name.startswith(PLUGIN_NAME):  # kubectl-ctrfs, kubectl-ctrfs.pyz
        return KUBECTL_CTRFS, list(args)
    if args and args[0] == PLUGIN_NAME:
        return KUBECTL_CTRFS, list(args[1:])
    if args and args[0] == "ctrfs":
        return CTRFS, list(args[1:])
    return CTRFS, list(args)


def main() -> int:
    module, args = choose(sys.argv[0], sys.argv[1:])
    # Imported by name: only the program being run is loaded, and the plugin's package may be
    # absent from a build (then this says so instead of a traceback).
    try:
        entry: Callable[[list[str]], int] = importlib.import_module(module).main
    except ImportError as err:
        if module != KUBECTL_CTRFS:
            raise
        sys.stderr.write(f"{PLUGIN_NAME}: this ctrfs build has no kubectl plugin "
                         f"({module} cannot be imported: {err})\n")
        return 1
    return entry(args)


if __name__ == "__main__":
    sys.exit(main())
