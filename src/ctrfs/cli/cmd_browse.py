"""``ctrfs browse``: the terminal UI (Textual, imported only when this command runs)."""

from __future__ import annotations

import stat as stat_mod
import sys
from argparse import Namespace

from ctrfs.browse.model import Session
from ctrfs.cli.app import JSON, State, arg, command
from ctrfs.cli.common import emit_json, get_container, split_target_path
from ctrfs.errors import CtrfsError, UsageError
from ctrfs.rootfs.base import norm_path


@command("browse", "Explore a container's files and layers in a terminal UI (read-only).", """
Keys: arrows/enter move and expand, f follow a file, / filter by name, g grep below a
directory, c copy out (as ctrfs cp), w which layer, ? help, q quit; the mouse works too.
A/C/D marks are what the container changed (as docker diff); the layer column says where
the visible version of each file comes from; the layers panel lists one layer's changes and
the space lower layers waste on files that upper layers overwrite or delete.

Examples:
  ctrfs browse web                   a running container
  ctrfs browse web:/var/log          the tree starts at /var/log
  ctrfs browse docker://3f2a9c       a stopped one: its layers, merged offline
  ctrfs browse k8s://prod/api-7d9f/app
  ctrfs browse --json web:/etc       no UI: the first screen's facts (rows, marks, layers)
""",
    arg("target", metavar="TARGET[:PATH]"),
    JSON)
def browse_cmd(args: Namespace, state: State) -> int:
    if not args.as_json and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("browse needs a terminal (stdin and stdout); for scripts: browse "
                         "--json, ls, diff, layers --json")
    target, path = split_target_path(args.target)
    container = get_container(state, target)

    session = Session.open(container)
    try:
        start = norm_path(path or "/")
        if not stat_mod.S_ISDIR(session.root.stat(start).st_mode):
            raise CtrfsError("not a directory: browse starts at a directory",
                             target=target, path=start)
        if args.as_json:
            session.load_marks()
            listing = session.list_dir(start)
            emit_json({"target": container.display_name, "path": start,
                       "entries": [r.to_dict(session) for r in listing.rows],
                       "more": listing.more,
                       "layers": [lr.to_dict() for lr in session.layer_rows()],
                       "wasted": session.stack.wasted if session.stack else None})
            return 0
        from ctrfs.browse import app as ui  # Textual (heavy): only for the UI itself

        return ui.run(session, start)
    finally:
        session.close()
