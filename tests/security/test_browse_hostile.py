"""SECURITY.md cases 1-11 through what ctrfs browse and the shell completion read: the preview,
the directory listing and the inner-path completion, on the catalogue's hostile container.

The host canary never shows, FIFOs and devices are refused without being opened (a FIFO
opened for reading would hang the preview), and nothing is read from outside the container.
"""

from __future__ import annotations

import os
import posixpath
from typing import Any

import pytest
import test_catalogue_all_commands as catalogue
from test_catalogue_all_commands import host_side, world  # noqa: F401 - the fixtures

from ctrfs.browse.model import Session
from ctrfs.cli.complete import complete_target
from ctrfs.errors import CtrfsError, NotFound
from ctrfs.runtimes.base import Roots
from ctrfs.targets import resolve

pytestmark = [pytest.mark.root, pytest.mark.docker]


@pytest.fixture(scope="module")
def session(world: Any) -> Any:  # noqa: F811
    s = Session.open(resolve(world.name))
    try:
        yield s
    finally:
        s.close()


@pytest.mark.parametrize("case", catalogue.CASES, ids=lambda c: c.id)
def test_preview_and_listing_stay_inside(session: Any, case: Any) -> None:
    p = session.preview(case.path)
    # (an error message repeats the path asked, which names the canary in the host-only cases)
    assert catalogue.SECRET not in p.data
    assert catalogue.CANARY not in p.message.replace(case.path, "PATH")
    if "host-only" in case.id:
        assert p.kind == "error" and "no such file" in p.message
    if case.id.startswith("10-") or case.id.startswith("11-"):
        assert p.kind == "refused" and "not opened" in p.message
    if case.same_as is not None:
        same = session.preview(case.same_as)
        assert (p.kind, p.data) == (same.kind, same.data)
    parent = posixpath.dirname(case.path.rstrip("/")) or "/"
    try:
        listing = session.list_dir(parent)
    except CtrfsError as err:  # a clean error (the parent is missing, a loop...) is fine
        assert catalogue.CANARY not in str(err).replace(parent, "PATH")
        assert "host-only" not in case.id or isinstance(err, NotFound)
        return
    names = {r.name for r in listing.rows} | {r.link or "" for r in listing.rows}
    assert not any(catalogue.CANARY in n and "nonexistent" not in n for n in names)


@pytest.mark.parametrize("case", catalogue.CASES, ids=lambda c: c.id)
def test_path_completion_stays_inside(world: Any, case: Any) -> None:  # noqa: F811
    got = complete_target(f"{world.name}:{case.path}", Roots())
    if "host-only" in case.id:
        assert got == []  # nothing is listed in the host's canary directory
    got = complete_target(f"{world.name}:{posixpath.dirname(case.path)}/", Roots())
    assert not any(catalogue.CANARY in c.text and "nonexistent" not in c.text for c in got)
    # the host's canary directory, next to the host's /etc, is never offered at the root
    top = {c.text for c in complete_target(f"{world.name}:/ctrfs-canary", Roots())}
    assert top == set() and os.path.isdir("/" + catalogue.CANARY)
