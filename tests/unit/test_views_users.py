"""The modules that use ctrfs.views (where CTRFS_MOUNT_API=0 changes what a walk sees): the
Makefile's second security pass leaves out the tests of everything else (NO_VIEW_TESTS)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "ctrfs"


def _imports_views(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "ctrfs.views":
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "ctrfs" and any(
                a.name == "views" for a in node.names):
            return True
        if isinstance(node, ast.Import) and any(a.name == "ctrfs.views" for a in node.names):
            return True
    return False


def test_only_the_file_commands_use_the_views() -> None:
    users = {str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if _imports_views(p)}
    assert users == {"cli/cmd_files.py"}, (
        "a new user of ctrfs.views: check the Makefile's NO_VIEW_TESTS still never reach it")
