"""The one boundary to the cluster: the user's ``kubectl``, run as a subprocess.

Everything the plugin knows about the cluster comes through here, so the user's kubeconfig,
context, exec/auth plugins and default namespace apply exactly as they do to ``kubectl`` itself.
kubectl's own failures (``Error from server (Forbidden): ...``) become one-line ctrfs errors
with DESIGN's exit codes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from ctrfs.errors import AccessDenied, CtrfsError, TargetNotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# How long one API read or write may take before kubectl gives up (its --request-timeout).
REQUEST_TIMEOUT = "30s"


class KubectlMissing(CtrfsError):
    """No kubectl to talk to the cluster with."""

    def default_message(self) -> str:
        return "kubectl not found on PATH (install kubectl, or name it with KUBECTL=/path/to/kubectl)"


class Forbidden(AccessDenied):
    """The API server refused a request (RBAC or an admission policy)."""

    def __init__(self, message: str, *, verb: str | None = None, resource: str | None = None,
                 **kw: Any) -> None:
        super().__init__(message, **kw)
        self.verb = verb
        self.resource = resource


class KubectlFailed(CtrfsError):
    """kubectl failed for a reason of its own (connection, kubeconfig, bad request)."""


# The API server's RBAC refusal, as kubectl prints it (k8s.io/apiserver authorization
# filters: 'User "U" cannot VERB resource "RES" in API group "G" in the namespace "NS"', or
# '... at the cluster scope').
_FORBIDDEN = re.compile(
    r'cannot (?P<verb>[\w-]+) resource "(?P<resource>[^"]+)"'
    r'(?: in API group "(?P<group>[^"]*)")?'
    r'(?: in the namespace "(?P<ns>[^"]+)"| at the cluster scope)?')
# Pod Security admission: 'pods "x" is forbidden: violates PodSecurity "baseline:latest": ...'
_PSA = re.compile(r'violates PodSecurity "(?P<level>[^"]+)": (?P<why>.*)')
_NOT_FOUND = re.compile(r'Error from server \(NotFound\): (?P<what>.+?) not found')
_SERVER_ERROR = re.compile(r"^(?:Error from server(?: \(\w+\))?: |error: )", re.M)


def error_from(stderr: str, *, doing: str) -> CtrfsError:
    """The ctrfs error for kubectl's ``stderr`` after it failed while ``doing`` something."""
    text = " ".join(stderr.split())
    m = _PSA.search(text)
    if m:
        return Forbidden(
            f"{doing}: refused by Pod Security admission ({m['level']}: {m['why'].rstrip('.')})",
            hint="run it in a namespace labelled pod-security.kubernetes.io/enforce=privileged "
                 "(--node-namespace), or deploy the agents")
    m = _FORBIDDEN.search(text)
    if m:
        group = f"{m['group']}/" if m["group"] else ""
        where = f' in namespace "{m["ns"]}"' if m["ns"] else " at the cluster scope"
        return Forbidden(f"{doing}: forbidden: you may not {m['verb']} {group}{m['resource']}{where}",
                         verb=m["verb"], resource=m["resource"],
                         hint=f"ask for RBAC verb '{m['verb']}' on '{group}{m['resource']}'")
    if "forbidden" in text.lower():
        return Forbidden(f"{doing}: forbidden: {_last_error(stderr)}")
    m = _NOT_FOUND.search(text)
    if m:
        return TargetNotFound(f"{doing}: {m['what']} not found")
    return KubectlFailed(f"{doing}: kubectl failed: {_last_error(stderr) or 'no message'}")


def _last_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errs = [ln for ln in lines if _SERVER_ERROR.match(ln)]
    line = (errs or lines or [""])[-1]
    return _SERVER_ERROR.sub("", line, count=1)


def find_kubectl() -> str:
    """The kubectl to run: ``$KUBECTL``, else the first on PATH."""
    named = os.environ.get("KUBECTL")
    exe = shutil.which(named) if named else shutil.which("kubectl")
    if exe is None:
        raise KubectlMissing(hint=f"KUBECTL={named!r} is not an executable" if named else None)
    return exe


@dataclass(frozen=True)
class Kubectl:
    """kubectl with the user's global options (context, kubeconfig) applied to every call."""

    exe: str
    context: str | None = None
    kubeconfig: str | None = None

    def argv(self, args: Sequence[str], namespace: str | None = None) -> list[str]:
        out = [self.exe]
        if self.kubeconfig:
            out += ["--kubeconfig", self.kubeconfig]
        if self.context:
            out += ["--context", self.context]
        if namespace:
            out += ["--namespace", namespace]
        return out + list(args)

    def run(self, args: Sequence[str], *, namespace: str | None = None, doing: str,
            stdin: bytes | None = None) -> bytes:
        """Run kubectl to completion; its stdout, or the translated error."""
        try:
            p = subprocess.run(self.argv(args, namespace), input=stdin, capture_output=True,
                               check=False)
        except FileNotFoundError as err:
            raise KubectlMissing() from err
        if p.returncode != 0:
            raise error_from(p.stderr.decode("utf-8", "replace"), doing=doing)
        return p.stdout

    def get_json(self, args: Sequence[str], *, namespace: str | None = None, doing: str) -> Any:
        out = self.run(["get", *args, "-o", "json", f"--request-timeout={REQUEST_TIMEOUT}"],
                       namespace=namespace, doing=doing)
        try:
            return json.loads(out)
        except ValueError as err:
            raise KubectlFailed(f"{doing}: kubectl printed no JSON") from err

    def popen(self, args: Sequence[str], *, namespace: str | None = None) -> subprocess.Popen[bytes]:
        """kubectl with all three streams as pipes (unbuffered), for exec."""
        try:
            return subprocess.Popen(self.argv(args, namespace), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        except FileNotFoundError as err:
            raise KubectlMissing() from err

    def cleanup(self, args: Sequence[str], *, namespace: str | None = None,
                timeout: float = 30.0) -> str | None:
        """Run a clean-up call (a delete) that an impatient Ctrl-C must not cut short: in its own
        session (a terminal's SIGINT does not reach it) with SIGINT/SIGTERM ignored here meanwhile.
        Returns kubectl's error text, or None when it succeeded."""
        main = threading.current_thread() is threading.main_thread()  # signal.signal's rule
        old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
        try:
            p = subprocess.run(self.argv(args, namespace), capture_output=True, timeout=timeout,
                               start_new_session=True, check=False)
            return None if p.returncode == 0 else p.stderr.decode("utf-8", "replace").strip()
        except (OSError, subprocess.TimeoutExpired) as err:
            return str(err)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
