"""dist/ctrfs.pyz: one file that runs with nothing installed and lists what the installed ctrfs lists.

The archive is built by scripts/build_pyz.py (what `make pyz` runs) and run by the base
interpreter (not this venv's) with ``-I -S``: no site-packages, no environment, no current
directory on sys.path, so every module ctrfs needs beyond the standard library comes from the zip.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import harness
import nodepod

RUNTIMES = ["docker_shellless", "podman_shellless", "containerd_cri", "runc_container", "bare_container"]
# The interpreter this venv was made from: it has no ctrfs, and with -S none of its packages.
PYTHON = getattr(sys, "_base_executable", sys.executable)


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return nodepod.build_pyz(tmp_path_factory.mktemp("pyz"))


def run_pyz(pyz: Path, *argv: str, cwd: Path | None = None, argv0: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([PYTHON, "-I", "-S", str(argv0 or pyz), *argv], capture_output=True, timeout=120,
                          cwd=cwd, env=env)


def test_archive_holds_ctrfs_and_its_dependencies_only(pyz: Path) -> None:
    names = zipfile.ZipFile(pyz).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert {"__main__.py", "ctrfs", "rich", "elftools"} <= tops
    src = Path(__file__).resolve().parents[2] / "src"
    for py in (src / "ctrfs").rglob("*.py"):
        assert str(py.relative_to(src)) in names
    assert not [n for n in names if "__pycache__" in n or n.endswith((".so", ".pyd"))
                or n.split("/", 1)[0] in ("tests", "test", "bin")]
    # byte code only for the interpreter that built it (zipimport's layout: x.pyc beside x.py)
    for n in names:
        if n.endswith(".pyc"):
            assert n[:-1] in names
    pyc = zipfile.ZipFile(pyz).read("ctrfs/__init__.pyc")
    assert pyc[:4] == importlib.util.MAGIC_NUMBER


def test_nothing_from_outside_the_zip() -> None:
    # the interpreter really has nothing to offer under -I -S
    for mod in ("ctrfs", "rich", "elftools"):
        r = subprocess.run([PYTHON, "-I", "-S", "-c", f"import {mod}"], capture_output=True, timeout=60)
        assert r.returncode != 0, f"{PYTHON} -I -S can import {mod} without the pyz"


def test_rich_and_pyelftools_load_from_the_zip(pyz: Path) -> None:
    code = ("import sys; sys.path.insert(0, sys.argv[1]);"
            "import rich.console, rich.table, elftools.elf.elffile;"
            "c = rich.console.Console(force_terminal=True, width=40); t = rich.table.Table('A');"
            "t.add_row('x'); c.print(t); print(rich.__file__, elftools.__file__)")
    r = subprocess.run([PYTHON, "-I", "-S", "-c", code, str(pyz)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    files = r.stdout.split()[-2:]
    assert all(f.startswith(f"{pyz}/") for f in files), files


@pytest.mark.parametrize("fixture", RUNTIMES)
def test_ps_json_equals_installed_ctrfs(fixture: str, pyz: Path, tmp_path: Path,
                                        request: pytest.FixtureRequest) -> None:
    c: harness.RunningContainer = request.getfixturevalue(fixture)
    empty = tmp_path / "cwd"
    empty.mkdir()
    env = {"HOME": str(empty), "TMPDIR": str(empty), "PATH": os.environ.get("PATH", "")}
    r = run_pyz(pyz, "ps", "--json", cwd=empty, env=env)
    assert r.returncode == 0, r.stderr.decode()
    got = {row["id"]: row for row in json.loads(r.stdout)}
    want = {row["id"]: row for row in json.loads(harness.ctrfs("ps", "--json").stdout)}
    (cid,) = [i for i, row in want.items() if row["pid"] == c.pid]  # a bare container's id is ctrfs's
    assert got[cid] == want[cid]
    # the same containers overall (those of other sessions may start or stop in between)
    assert len(set(got) ^ set(want)) <= 2
    assert list(empty.iterdir()) == []  # nothing written to start: no unpacking, no cache


@pytest.mark.parametrize("fixture", ["docker_shellless", "containerd_cri"])
def test_libs_and_layers_from_the_zip(fixture: str, pyz: Path, request: pytest.FixtureRequest) -> None:
    c: harness.RunningContainer = request.getfixturevalue(fixture)  # pyelftools reads the build-id
    # layers --no-count: the logger's upper layer grows between two runs, its size with it
    for argv in (("libs", "--json", c.target), ("layers", "--no-count", c.target),
                 ("cat", f"{c.target}:/etc/os-release")):
        r = run_pyz(pyz, *argv)
        assert r.returncode == 0, r.stderr.decode()
        assert r.stdout == harness.ctrfs(*argv, text=False).stdout


def test_errors_and_help(pyz: Path) -> None:
    r = run_pyz(pyz, "cat", "no-such-container-ctrfs:/etc/passwd")
    assert r.returncode == 3 and r.stderr.decode().startswith("ctrfs: ") and b"Traceback" not in r.stderr
    r = run_pyz(pyz, "--help")
    assert r.returncode == 0 and b"Examples:" in r.stdout
    assert run_pyz(pyz, "ctrfs", "--version").stdout == run_pyz(pyz, "--version").stdout != b""


def test_kubectl_ctrfs_by_name(pyz: Path, tmp_path: Path) -> None:
    link = tmp_path / "kubectl-ctrfs"
    link.symlink_to(pyz)
    has_plugin = "ctrfs/kube/main.py" in zipfile.ZipFile(pyz).namelist()
    for r in (run_pyz(pyz, argv0=link), run_pyz(pyz, "kubectl-ctrfs")):
        assert b"Traceback" not in r.stderr
        if has_plugin:
            assert r.stdout or r.stderr
        else:
            assert r.returncode == 1
            assert r.stderr.decode().startswith("kubectl-ctrfs: this ctrfs build has no kubectl plugin")
    # run directly through its shebang too, as kubectl runs a plugin it finds on PATH
    os.chmod(pyz, 0o755)
    r = subprocess.run([str(link), "--version"] if has_plugin else [str(link)], capture_output=True,
                       timeout=60, env={"PATH": f"{Path(PYTHON).parent}:/usr/bin:/bin"})
    assert b"Traceback" not in r.stderr and (has_plugin or r.returncode == 1)


def _interpreters() -> list[str]:
    """The base interpreter, and any other CPython >= 3.11 on PATH that runs (a pyenv shim of a
    version not selected does not)."""
    found = {os.path.realpath(PYTHON): PYTHON}
    for minor in range(11, 20):
        path = shutil.which(f"python3.{minor}")
        if path and os.path.realpath(path) not in found and subprocess.run(
                [path, "-I", "-c", "pass"], capture_output=True, timeout=30).returncode == 0:
            found[os.path.realpath(path)] = path
    return list(found.values())


@pytest.mark.parametrize("python", _interpreters())
def test_other_python_versions(python: str, pyz: Path, docker_shellless: harness.RunningContainer) -> None:
    # byte code of the building version is skipped by its magic number elsewhere: sources compile
    r = subprocess.run([python, "-I", "-S", str(pyz), "ps", "--json"], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    got = {row["id"]: row for row in json.loads(r.stdout)}
    want = {row["id"]: row for row in json.loads(harness.ctrfs("ps", "--json").stdout)}
    assert got[docker_shellless.id] == want[docker_shellless.id]
