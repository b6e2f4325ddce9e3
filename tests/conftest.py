"""Session-wide real containers (see tests/harness.py). Each fixture yields a harness.RunningContainer.

A test that uses one of them gets the matching marker (docker, podman, containerd, runc, bare, root)
automatically, so ``pytest -m 'not podman'`` works without decorating tests by hand.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from harness import RunningContainer  # noqa: E402

_FIXTURE_MARKERS = {
    "docker_shellless": "docker",
    "docker_busybox": "docker",
    "docker_multilayer": "docker",
    "podman_shellless": "podman",
    "containerd_cri": "containerd",
    "runc_container": "runc",
    "bare_container": "bare",
}


def pytest_configure(config: pytest.Config) -> None:
    # CI runners stop a job with SIGTERM, whose default action skips every finalizer; as
    # KeyboardInterrupt it makes pytest tear the session fixtures (and their containers) down.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # @pytest.mark.tar_cores: the test runs once with the C cores of export and cp
    # (ctrfs._native) and once with the pure-Python code, the reference (CTRFS_NATIVE=0), in
    # this process and in every ctrfs it starts.
    if metafunc.definition.get_closest_marker("tar_cores") is not None:
        metafunc.parametrize("tar_core", ["c-core", "python-core"], indirect=True)


@pytest.fixture(autouse=True)
def tar_core(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    core = getattr(request, "param", None)
    if core is not None:
        monkeypatch.setenv("CTRFS_NATIVE", "1" if core == "c-core" else "0")
    return core


def _container_fixtures(item: pytest.Item) -> set[str]:
    """The container fixtures a test uses: by argument name, and by the fixture names it is
    parametrized with when it gets its containers through ``request.getfixturevalue(name)``
    (tests/runtime/test_files_runtimes.py's ``ctr``, test_probes_runtimes.py's ``fixture``)."""
    names = set(getattr(item, "fixturenames", ()))
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        names.update(v for v in callspec.params.values() if isinstance(v, str))
    return names & set(_FIXTURE_MARKERS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        marks = {_FIXTURE_MARKERS[f] for f in _container_fixtures(item)}
        for mark in sorted(marks):
            item.add_marker(getattr(pytest.mark, mark))
        if marks:
            item.add_marker(pytest.mark.root)


def pytest_collection_finish(session: pytest.Session) -> None:
    items = session.items  # what -m/-k left selected (they see the marks added above)
    # Containers, overlay mounts, whiteouts and other users' /proc/<pid>/root all need root. Every
    # test that does is marked `root` (by its fixtures or by hand). Nothing is skipped: without
    # root such a selection stops here with the way out, and a missing daemon or tool fails loudly.
    needs_root = [item for item in items if item.get_closest_marker("root") is not None]
    if needs_root and os.geteuid() != 0:
        raise pytest.UsageError(
            f"{len(needs_root)} of the selected tests need root (containers, overlay mounts): run "
            "them as root (`make test` does), or select the others with -m 'not root'")


def _need_root() -> None:
    # Tests using these fixtures are marked `root` and skipped up front when not root (above).
    harness.sweep_stale()


@pytest.fixture(scope="session")
def docker_shellless() -> Iterator[RunningContainer]:
    _need_root()
    with harness.run_docker(harness.shellless_image(), wait_log=True) as c:
        yield c


@pytest.fixture(scope="session")
def docker_busybox() -> Iterator[RunningContainer]:
    _need_root()
    with harness.run_docker(harness.busybox_image()) as c:
        yield c


@pytest.fixture(scope="session")
def docker_multilayer() -> Iterator[RunningContainer]:
    """info["layers"] is harness.MULTILAYER_LAYERS: what each image layer holds, bottom first."""
    _need_root()
    with harness.run_docker(harness.multilayer_image()) as c:
        yield dataclasses.replace(c, info={"layers": harness.MULTILAYER_LAYERS})


@pytest.fixture(scope="session")
def podman_shellless() -> Iterator[RunningContainer]:
    _need_root()
    with harness.podman_shellless() as c:
        yield c


@pytest.fixture(scope="session")
def containerd_cri() -> Iterator[RunningContainer]:
    _need_root()
    with harness.containerd_cri() as c:
        yield c


@pytest.fixture(scope="session")
def runc_container() -> Iterator[RunningContainer]:
    _need_root()
    with harness.runc_container() as c:
        yield c


@pytest.fixture(scope="session")
def bare_container() -> Iterator[RunningContainer]:
    _need_root()
    with harness.bare_container() as c:
        yield c
