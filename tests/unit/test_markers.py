"""The runtime marks (tests/conftest.py) reach every test that uses a container, also those that
get it through ``request.getfixturevalue(name)``: ``-m 'not podman'`` must leave podman alone, and
``-m 'not root'`` must select nothing that needs a container."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent.parent
BY_NAME = ["runtime/test_files_runtimes.py", "runtime/test_probes_runtimes.py"]


def _collected(marks: str) -> tuple[int, list[str]]:
    r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                        "-m", marks, *(str(TESTS / f) for f in BY_NAME)],
                       capture_output=True, text=True, timeout=120, cwd=TESTS.parent)
    ids = [ln for ln in r.stdout.splitlines() if "::" in ln]
    return r.returncode, ids


@pytest.mark.root  # the selection below holds root-only tests, which conftest refuses otherwise
def test_marks_follow_fixtures_named_by_parameter() -> None:
    rc, ids = _collected("podman")
    assert rc == 0 and ids, ids
    assert all("[podman_shellless]" in i for i in ids), ids
    # every test of both modules, once each
    assert len(ids) == 8, ids
    rc, ids = _collected("not podman")
    assert ids and not any("podman" in i for i in ids), ids
    for mark, fixture in (("containerd", "containerd_cri"), ("runc", "runc_container"),
                          ("bare", "bare_container"), ("docker", "docker_shellless")):
        rc, ids = _collected(mark)
        assert ids and all(f"[{fixture}]" in i for i in ids), (mark, ids)


def test_not_root_selects_no_container_test() -> None:
    rc, ids = _collected("not root")
    assert rc == 5 and ids == [], ids  # pytest: no tests collected
