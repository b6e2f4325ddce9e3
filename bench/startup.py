"""Start-up of the hot commands: the installed `ctrfs` as a user runs it, whole process included.

Each command is timed (median of N runs, one warm-up) against two anchors measured in the same run:
- `python3 -I -c pass`, the interpreter doing nothing (what no Python CLI can beat); the goal for
  `ctrfs --version` is within 2x of it;
- its Docker peer, on the same busybox container: `docker ps`, `docker exec C cat|ls|stat`,
  `docker diff`; the goal is to be faster (the peer goes through the daemon, and exec starts a
  process in the container).

Then `python -X importtime` of each command (median of 5): the modules that cost the most (self time) and
the top-level imports by cumulative time, so a slow start can be traced to its import.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

from run import Runner

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import harness  # noqa: E402

PREFIX = "ctrfs-st-"
CTRFS = str(REPO / ".venv/bin/ctrfs")
PYTHON = str(REPO / ".venv/bin/python")  # the interpreter the installed ctrfs script runs on
TOP = 8


def _hot(name: str) -> list[tuple[str, list[str], list[str] | None, float]]:
    """(label, ctrfs argv, docker peer argv or None, goal against the peer)."""
    return [
        ("--version", ["--version"], None, 0.0),
        ("ps --json", ["ps", "--json"], ["docker", "ps", "--no-trunc"], 1.0),
        ("cat", ["cat", f"{name}:/etc/os-release"], ["docker", "exec", name, "cat", "/etc/os-release"], 1.0),
        ("ls", ["ls", f"{name}:/etc"], ["docker", "exec", name, "ls", "/etc"], 1.0),
        ("stat", ["stat", f"{name}:/etc/passwd"], ["docker", "exec", name, "stat", "/etc/passwd"], 1.0),
        ("diff", ["diff", name], ["docker", "diff", name], 1.0),
    ]


def import_profile(argv: list[str], runs: int = 5
                   ) -> tuple[int, list[tuple[int, str]], list[tuple[int, str]]]:
    """Median over ``runs`` of -X importtime: (all imports, top modules by self time, top-level
    imports by cumulative time), microseconds. One run alone is noise on a busy machine."""
    own: dict[str, list[int]] = {}
    top: dict[str, list[int]] = {}
    totals = []
    for _ in range(runs):
        res = subprocess.run([PYTHON, "-X", "importtime", CTRFS, *argv], capture_output=True,
                             text=True, check=True)
        total = 0
        for line in res.stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            self_us, cumulative, name = line.removeprefix("import time:").split("|")
            own.setdefault(name.strip(), []).append(int(self_us))
            if not name.startswith("  "):  # depth 0: imported by the script or ctrfs at run time
                top.setdefault(name.strip(), []).append(int(cumulative))
                total += int(cumulative)
        totals.append(total)

    def ranked(d: dict[str, list[int]]) -> list[tuple[int, str]]:
        return sorted(((int(statistics.median(v)), k) for k, v in d.items()), reverse=True)[:TOP]

    return int(statistics.median(totals)), ranked(own), ranked(top)


def run(r: Runner) -> None:
    # A pip-installed ctrfs has its bytecode; with PYTHONDONTWRITEBYTECODE (as on this machine)
    # the editable tree would otherwise be recompiled at every start.
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(REPO / "src")], check=True)
    with harness.run_docker(harness.busybox_image(), PREFIX) as c:
        harness.docker_exec(c, "sh", "-c", "echo changed > /tmp/new && rm /etc/group")
        _measure(r, c.name)


def _measure(r: Runner, name: str) -> None:
    r.facts.update(loadavg_start=os.getloadavg(), python=PYTHON)
    base = r.time_command("python3 -I -c pass", [PYTHON, "-I", "-c", "pass"])
    for label, argv, peer, goal in _hot(name):
        subject = f"ctrfs {label}"
        t = r.time_command(subject, [CTRFS, *argv])
        r.facts[f"{subject} / interpreter"] = round(t.median / base.median, 2)
        if peer is None:
            r.compare(subject, "python3 -I -c pass", 0.5, "ctrfs --version within 2x of python3 -I -c pass")
        else:
            peer_label = " ".join(a if a != name else "C" for a in peer)
            r.time_command(peer_label, peer)
            r.compare(subject, peer_label, goal, f"ctrfs {label} faster than {peer_label}")
            r.compare(subject, "python3 -I -c pass", 0,
                      "reference: the bare interpreter's start (no goal)")
    for label, argv, _peer, _goal in _hot(name):
        total, own, top = import_profile(argv)
        r.facts[f"importtime ctrfs {label}"] = {"total_us": total, "self_us": own,
                                                 "top_level_cumulative_us": top}
        print(f"  importtime ctrfs {label}: {total / 1000:.1f} ms in all; self " +
              ", ".join(f"{m} {us / 1000:.1f}" for us, m in own[:5]) + " ms", file=sys.stderr)
        print("    top-level cumulative: " + ", ".join(f"{m} {us / 1000:.1f}" for us, m in top[:5]) + " ms",
              file=sys.stderr)
    r.facts["loadavg_end"] = os.getloadavg()
