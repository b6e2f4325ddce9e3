"""One command on many nodes (``--all-nodes``) or many pods (``diff deploy/web``), merged.

Each node gets one worker (bounded: at most ``MAX_WORKERS`` nodes at once); a node's jobs run one
after the other in its session. Every row is tagged: ``--json`` output becomes one array whose
items carry ``node`` (and ``pod``) first; text lines get the tag as their first column.
"""

from __future__ import annotations

import io
import json
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ctrfs.errors import CtrfsError
from ctrfs.kube.kubectl import Kubectl
from ctrfs.kube.node import Session, stop_all
from ctrfs.kube.pyz import Pyz

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

MAX_WORKERS = 8
# Commands whose text output starts with a header row (printed once, with the tag's column).
HEADER_COMMANDS = frozenset({"ps", "images"})


@dataclass
class Job:
    tags: dict[str, str]  # {"node": N} or {"pod": P, "node": N}; the first value labels text rows
    args: list[str]
    rc: int = 0
    out: bytes = b""
    err: bytes = b""
    error: CtrfsError | None = None

    @property
    def label(self) -> str:
        return next(iter(self.tags.values()))


@dataclass
class NodeJobs:
    session: Session
    jobs: list[Job] = field(default_factory=list)


def _into(buf: io.BytesIO) -> Callable[[IO[bytes]], object]:
    return lambda stream: buf.write(stream.read())


def run(kubectl: Kubectl, pyz: Pyz, groups: list[NodeJobs]) -> None:
    """Run every group's jobs (each group on its node), concurrently across nodes."""
    cancelled = threading.Event()

    def work(g: NodeJobs) -> None:
        try:
            with g.session as s:
                for job in g.jobs:
                    if cancelled.is_set():
                        return
                    out, err = io.BytesIO(), io.BytesIO()
                    try:
                        job.rc = s.run(kubectl, pyz, job.args, _into(out), err.write)
                    except CtrfsError as e:
                        job.error, job.rc = e, e.exit_code
                    job.out, job.err = out.getvalue(), err.getvalue()
        except CtrfsError as e:  # the session itself (an ephemeral pod) failed
            for job in g.jobs:
                job.error, job.rc = e, e.exit_code

    pool = ThreadPoolExecutor(max_workers=max(1, min(MAX_WORKERS, len(groups))),
                              thread_name_prefix="ctrfs-node")
    futures = [pool.submit(work, g) for g in groups]
    try:
        for f in futures:
            f.result()
    except BaseException:
        cancelled.set()
        stop_all()  # the running kubectl execs end; each worker then deletes its node pod
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def merge(jobs: list[Job], command: str, *, as_json: bool, tag_name: str,
          out: IO[str] = sys.stdout, err: Callable[[str], object] = sys.stderr.write,
          tolerate_not_found: bool = False) -> int:
    """Print the jobs' answers as one; the exit status: 0, or the first failure's.

    With ``tolerate_not_found`` (``--all-nodes`` with a target), a node that does not have the
    container (exit 3) is left out as long as some node answered."""
    ok = [j for j in jobs if j.rc == 0]
    failed = [j for j in jobs if j.rc != 0 and not (tolerate_not_found and ok and j.rc == 3)]
    for j in jobs:
        text = j.err.decode("utf-8", "replace")
        if j in failed or j.rc == 0:
            for line in text.splitlines():
                err(f"{j.label}: {line}\n")
        if j.error is not None and j in failed:
            err(f"kubectl-ctrfs: {j.label}: {j.error}\n")
    if as_json:
        merged: list[Any] = []
        for j in ok:
            try:
                data = json.loads(j.out or b"null")
            except ValueError:
                err(f"kubectl-ctrfs: {j.label}: the node printed no JSON\n")
                failed.append(j)
                continue
            for item in data if isinstance(data, list) else ([] if data is None else [data]):
                merged.append({**j.tags, **item} if isinstance(item, dict) else {**j.tags, "value": item})
        out.write(json.dumps(merged, indent=2, ensure_ascii=False) + "\n")
    else:
        rows: list[tuple[str, str]] = []
        header: str | None = None
        for j in ok:
            lines = j.out.decode("utf-8", "replace").splitlines()
            if command in HEADER_COMMANDS and lines:
                header, lines = lines[0], lines[1:]
            rows += [(j.label, ln) for ln in lines]
        width = max([len(tag_name)] + [len(t) for t, _ in rows])
        if header is not None:
            out.write(f"{tag_name.upper():<{width}}  {header}\n")
        for tag, line in rows:
            out.write(f"{tag:<{width}}  {line}\n")
    out.flush()
    return failed[0].rc if failed else 0
