"""The ctrfs.pyz kubectl-ctrfs sends to the node when none is named: built from the installed ctrfs,
runnable with no site-packages, cached until the installed files change."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ctrfs.kube import pyz


def test_built_pyz_runs_without_site_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("KUBECTL_CTRFS_PYZ", raising=False)
    first = pyz.load()
    assert first.origin == "built from the installed ctrfs"
    f = tmp_path / "ctrfs.pyz"
    f.write_bytes(first.data)
    p = subprocess.run([sys.executable, "-I", "-S", str(f), "ps", "--help"], capture_output=True, text=True,
                       check=False)
    assert p.returncode == 0, p.stderr
    assert "Examples:" in p.stdout
    # Second time: the cached copy, the same bytes (so an agent's cached copy, by hash, is reused).
    (cached,) = (tmp_path / "cache" / "ctrfs").glob("kubectl-ctrfs-*.pyz")
    second = pyz.load()
    assert second.origin == str(cached)
    assert second.data == first.data and second.sha256 == first.sha256
    assert pyz.build() == first.data  # reproducible: fixed dates, sorted walk
    # A named file wins.
    assert pyz.load(str(f)).origin == str(f)
    monkeypatch.setenv("KUBECTL_CTRFS_PYZ", str(f))
    assert pyz.load().origin == str(f)


def test_a_plugin_run_from_a_zipapp_sends_that_zipapp(tmp_path: Path) -> None:
    f = tmp_path / "kubectl-ctrfs.pyz"
    f.write_bytes(pyz.build())
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from ctrfs.kube import pyz; p = pyz.load(); "
            "print(p.origin, p.sha256)")
    p = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(f)], capture_output=True, text=True,
                       check=False, env={"HOME": str(tmp_path)})
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [str(f), pyz.Pyz(f.read_bytes(), "").sha256]
