"""Benchmark runner: ``python bench/run.py [NAME...]`` (``make bench``).

A benchmark is a module ``bench/<name>.py`` with ``def run(r: Runner) -> None``. It sets up what
it needs (and removes it, however it ends), times commands or calls with :meth:`Runner.time`, and
states each claim with :meth:`Runner.compare`: ctrfs against a peer measured in the same run, on the
same machine, so the ratios mean something on a busy host where absolute times do not. The runner
prints one table and writes everything, raw samples included, to ``bench/results/<name>-<UTC>.json``.

Exit status: 2 on a benchmark error; with ``--strict``, 1 when a goal is missed (a shared, busy
machine makes single runs noisy, so a missed goal alone is not an error by default).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_BENCHMARKS = ("startup", "discovery", "libs", "diff", "files", "exec", "browse")


@dataclass
class Timing:
    label: str
    samples: list[float]  # seconds, one per repetition (warm-up excluded)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


@dataclass
class Comparison:
    subject: str
    peer: str
    speedup: float  # peer median / subject median: >1 means the subject is faster
    goal: float  # the speedup the claim needs (0.2 = "within 5x of the peer")
    claim: str

    @property
    def met(self) -> bool:
        return self.speedup >= self.goal


@dataclass
class Limit:
    """A measured quantity that must stay below a bound (peak memory, output size)."""

    label: str
    value: float
    limit: float
    unit: str
    claim: str

    @property
    def met(self) -> bool:
        return self.value < self.limit


@dataclass
class Runner:
    benchmark: str
    repeat: int = 7
    warmup: int = 1
    timings: dict[str, Timing] = field(default_factory=dict)
    comparisons: list[Comparison] = field(default_factory=list)
    limits: list[Limit] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)

    def time(self, label: str, fn: Callable[[], object], repeat: int | None = None,
             setup: Callable[[], object] | None = None) -> Timing:
        """Median-of-``repeat`` wall time of ``fn()`` after ``warmup`` untimed calls;
        ``setup()`` runs untimed before every call (e.g. to remove a previous copy)."""
        for _ in range(self.warmup):
            if setup is not None:
                setup()
            fn()
        samples = []
        for _ in range(repeat or self.repeat):
            if setup is not None:
                setup()
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
        self.timings[label] = timing = Timing(label, samples)
        print(f"  {label:<44} median {_ms(timing.median)}", file=sys.stderr, flush=True)
        return timing

    def time_command(self, label: str, argv: Sequence[str] | Callable[[], Sequence[str]],
                     repeat: int | None = None,
                     setup: Callable[[], object] | None = None) -> Timing:
        """Whole-process time of a command (its output discarded); it must succeed."""
        def once() -> None:
            cmd = list(argv() if callable(argv) else argv)
            res = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if res.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} exited {res.returncode}: "
                                   f"{res.stderr.decode(errors='replace').strip()[-2000:]}")
        return self.time(label, once, repeat, setup)

    def compare(self, subject: str, peer: str, goal: float, claim: str) -> Comparison:
        c = Comparison(subject, peer, self.timings[peer].median / self.timings[subject].median, goal, claim)
        self.comparisons.append(c)
        return c


    def limit(self, label: str, value: float, limit: float, unit: str, claim: str) -> Limit:
        lim = Limit(label, value, limit, unit, claim)
        self.limits.append(lim)
        print(f"  {label:<44} {value:9.1f} {unit}", file=sys.stderr, flush=True)
        return lim


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:9.1f} ms"


def _host() -> dict[str, object]:
    def cmd(*argv: str) -> str | None:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip() or None
        except OSError:
            return None

    return {
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "docker": cmd("docker", "version", "--format", "{{.Server.Version}}"),
    }


def print_table(runners: Sequence[Runner]) -> None:
    rows = [("benchmark", "ctrfs", "median", "peer", "median", "speedup", "goal", "", "claim")]
    for r in runners:
        for c in r.comparisons:
            rows.append((r.benchmark, c.subject, _ms(r.timings[c.subject].median).strip(), c.peer,
                         _ms(r.timings[c.peer].median).strip(), f"{c.speedup:.2f}x", f">={c.goal:g}x",
                         "ok" if c.met else "MISSED", c.claim))
        for lim in r.limits:
            rows.append((r.benchmark, lim.label, f"{lim.value:.1f} {lim.unit}", "", "", "",
                         f"<{lim.limit:g} {lim.unit}", "ok" if lim.met else "MISSED", lim.claim))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", default=list(DEFAULT_BENCHMARKS), help="benchmark modules in bench/")
    ap.add_argument("-n", "--repeat", type=int, default=7, help="timed repetitions per measurement")
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results/*.json")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(BENCH_DIR))
    runners, failed = [], False
    for name in args.names:
        print(f"== {name}", file=sys.stderr, flush=True)
        runner = Runner(name, repeat=args.repeat)
        try:
            importlib.import_module(name).run(runner)
        except Exception:  # noqa: BLE001 - report, go on with the next benchmark, exit 2
            traceback.print_exc()
            failed = True
            continue
        runners.append(runner)
        if not args.no_save:
            RESULTS_DIR.mkdir(exist_ok=True)
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            out = RESULTS_DIR / f"{name}-{stamp}.json"
            payload = {"benchmark": name, "utc": stamp, "host": _host(), "facts": runner.facts,
                       "timings": {k: {"median": t.median, "samples": t.samples}
                                   for k, t in runner.timings.items()},
                       "comparisons": [{**asdict(c), "met": c.met} for c in runner.comparisons],
                       "limits": [{**asdict(lim), "met": lim.met} for lim in runner.limits]}
            tmp = out.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(payload, indent=2) + "\n")
            tmp.rename(out)
            print(f"   wrote {out.relative_to(BENCH_DIR.parent)}", file=sys.stderr)
    print_table(runners)
    if failed:
        return 2
    missed = any(not c.met for r in runners for c in [*r.comparisons, *r.limits])
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
