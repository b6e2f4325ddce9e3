"""Fixtures of the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from trees import hostile_tree


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    """See :func:`trees.hostile_tree`."""
    return hostile_tree(tmp_path / "t")
