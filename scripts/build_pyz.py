"""`make pyz`: dist/ctrfs.pyz, ctrfs and its runtime dependencies in one zip application.

    python3 scripts/build_pyz.py [-o dist/ctrfs.pyz] [--python python3]

The standard library builds and runs it: ``pip install --target`` fetches the dependencies named
in pyproject.toml as pure-Python wheels only (``--platform any --abi none``: a dependency that
needs a compiled extension fails the build here, since zipimport cannot load one), ctrfs's own
modules are copied from src/, every module is byte-compiled for the building interpreter next to
its source (the layout zipimport reads; another Python version ignores those .pyc by their magic
number and compiles the source in memory), and ``zipapp`` writes the archive. Nothing is unpacked
when it runs. The archive is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import argparse
import os
import py_compile
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipapp
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# zipapp's own generated __main__ drops main()'s return value: this one makes it the exit status.
MAIN = "import sys\n\nfrom ctrfs._launcher import main\n\nsys.exit(main())\n"
INTERPRETER = "/usr/bin/env python3"
# The oldest Python ctrfs supports: dependency markers (python_version < "3.11") are resolved for it.
PYTHON_VERSION = "3.11"
# Never in the archive: caches, tests, console scripts and pip's own bookkeeping of the staging dir.
SKIP_DIRS = frozenset({"__pycache__", "tests", "test", "bin"})
SKIP_SUFFIXES = (".pyc", ".pyo", ".so", ".pyd", ".exe")


def dependencies() -> list[str]:
    with open(REPO / "pyproject.toml", "rb") as f:
        return list(tomllib.load(f)["project"]["dependencies"])


def stage_dependencies(stage: Path, python: str) -> None:
    """The dependencies, at the versions installed for ``python`` where it has them (the ones the
    tests ran with), as a constraints file: transitive dependencies are pinned too."""
    deps = dependencies()
    if not deps:
        return
    freeze = subprocess.run(
        [python, "-m", "pip", "freeze", "--exclude-editable", "--disable-pip-version-check"],
        check=True, capture_output=True, text=True).stdout
    constraints = stage.parent / "constraints.txt"
    constraints.write_text("".join(line + "\n" for line in freeze.splitlines() if "==" in line))
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
         "--target", str(stage), "--only-binary", ":all:", "--implementation", "py", "--abi", "none",
         "--platform", "any", "--python-version", PYTHON_VERSION, "--constraint", str(constraints), *deps],
        check=True)


def stage_ctrfs(stage: Path) -> None:
    src = REPO / "src" / "ctrfs"
    # Not the C core (_native*.so, built in place by an editable install): zipimport cannot load
    # it, and without it ctrfs runs its pure-Python code (ctrfs.ops.archive falls back).
    shutil.copytree(src, stage / "ctrfs", ignore=shutil.ignore_patterns(
        "__pycache__", "*.pyc", "_native*.so", "*.c"))


def prune(stage: Path) -> None:
    """Drop what the archive must not carry; fail on anything zipimport cannot load."""
    for path in sorted(stage.rglob("*"), reverse=True):
        rel = path.relative_to(stage)
        if any(part in SKIP_DIRS for part in rel.parts[:-1] + ((rel.name,) if path.is_dir() else ())):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            continue
        if path.is_file() and path.name.endswith(SKIP_SUFFIXES):
            if path.name.endswith((".so", ".pyd")):
                raise SystemExit(f"build_pyz: {rel} is a compiled extension; zipimport cannot load it")
            path.unlink()


def compile_all(stage: Path) -> None:
    """``x.pyc`` beside each ``x.py``: zipimport's layout. UNCHECKED_HASH: the source beside it
    is the very file compiled, so nothing needs checking when it is imported."""
    for py in stage.rglob("*.py"):
        py_compile.compile(str(py), cfile=str(py.with_suffix(".pyc")), dfile=str(py.relative_to(stage)),
                           doraise=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)


def build(out: Path, python: str) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ctrfs-pyz-") as tmp:
        stage = Path(tmp) / "stage"
        stage.mkdir()
        stage_dependencies(stage, python)
        stage_ctrfs(stage)
        prune(stage)
        (stage / "__main__.py").write_text(MAIN)
        compile_all(stage)
        partial = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        try:
            zipapp.create_archive(stage, partial, interpreter=INTERPRETER, compressed=True)
            os.replace(partial, out)
        finally:
            partial.unlink(missing_ok=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", type=Path, default=REPO / "dist" / "ctrfs.pyz")
    p.add_argument("--python", default=sys.executable, help="the interpreter whose pip fetches dependencies")
    args = p.parse_args()
    out = build(args.output, args.python)
    print(f"{out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
