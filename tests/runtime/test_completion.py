"""Shell completion in real shells: bash runs the completion function, zsh and fish load the
scripts (fish also completes through them)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

import harness
from harness import RunningContainer

pytestmark = [pytest.mark.docker, pytest.mark.root]

BIN = os.path.dirname(sys.executable)  # the venv's bin: where `ctrfs` is installed
ENV = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}


@pytest.fixture(scope="module")
def completed() -> Iterator[RunningContainer]:
    harness.sweep_stale()
    with harness.run_docker(harness.busybox_image(), cmd=[
            "sh", "-c", "mkdir -p '/srv/with space' /srv/web && touch /srv/web/index.html"
            " && exec sleep 100000"]) as c:
        harness.wait_until(lambda: os.path.exists(f"/proc/{c.pid}/root/srv/web/index.html"),
                           "the container's files")
        yield c


def _bash(line: str) -> list[str]:
    """COMPREPLY after bash's completion function ran for ``line`` (cursor at its end)."""
    script = ('source <(ctrfs completion bash)\n'
              'COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}\n'
              'read -ra COMP_WORDS <<< "$COMP_LINE"; COMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n'
              '_ctrfs_complete\n'
              'printf "%s\\n" "${COMPREPLY[@]}"\n'
              'complete -p ctrfs >&2\n')
    res = subprocess.run(["bash", "--norc", "--noprofile", "-c", script, "bash", line],
                         capture_output=True, text=True, env=ENV, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "-F _ctrfs_complete ctrfs" in res.stderr
    return [x for x in res.stdout.split("\n") if x]


def test_bash_completes_a_container_name_from_a_prefix(completed: RunningContainer) -> None:
    prefix = completed.name[:-3]
    assert _bash(f"ctrfs ls {prefix}") == [f"{completed.name} "]
    # an ID prefix completes to the short ID
    assert _bash(f"ctrfs inspect {completed.id[:6]}") == [f"{completed.id[:12]} "]


def test_bash_completes_paths_inside_the_container(completed: RunningContainer) -> None:
    # bash splits "NAME:/srv/w" at ":" (COMP_WORDBREAKS): the replies replace what follows it
    got = _bash(f"ctrfs cat {completed.name}:/srv/w")
    assert got == ["/srv/web/", "/srv/with\\ space/"]
    assert _bash(f"ctrfs cat {completed.name}:/srv/web/i") == ["/srv/web/index.html "]
    # the host's /srv is not what is listed
    assert not os.path.exists("/srv/web/index.html")


def test_bash_completes_commands_and_options() -> None:
    assert _bash("ctrfs bro") == ["browse "]
    assert "--json " in _bash("ctrfs layers --")
    assert _bash("ctrfs completion z") == ["zsh "]


def test_zsh_script_loads_and_registers() -> None:
    script = ('autoload -Uz compinit && compinit -u -D\n'
              'eval "$(ctrfs completion zsh)"\n'
              'print -r -- ${_comps[ctrfs]}\n')
    res = subprocess.run(["zsh", "-f", "-c", script], capture_output=True, text=True, env=ENV,
                         timeout=60)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert res.stdout.strip() == "_ctrfs"


def test_fish_script_loads_and_completes(completed: RunningContainer) -> None:
    script = (f'ctrfs completion fish | source; and complete -C"ctrfs ls {completed.name[:-2]}";'
              f' and complete -C"ctrfs ls {completed.name}:/srv/we"')
    res = subprocess.run(["fish", "--no-config", "-c", script], capture_output=True, text=True,
                         env=ENV, timeout=60)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert res.stdout.split("\n")[:2] == [completed.name, f"{completed.name}:/srv/web/"]
