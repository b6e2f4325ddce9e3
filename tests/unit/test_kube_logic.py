"""kubectl-ctrfs's pure parts: kubectl's error lines, pod objects, selectors, merging answers, and its
table of ctrfs's arguments (which must stay the CLI's)."""

from __future__ import annotations

import importlib
import io
import json

import pytest

from ctrfs.errors import Ambiguous
from ctrfs.kube import fanout
from ctrfs.kube import main as plugin
from ctrfs.kube.kubectl import Forbidden, KubectlFailed, error_from
from ctrfs.kube.pods import Pod, container_target, selector_string


def test_argument_table_matches_the_cli() -> None:
    cli_main = importlib.import_module("ctrfs.cli.main")
    from ctrfs.cli import app

    for module in set(cli_main.COMMANDS.values()):
        importlib.import_module(module)
    flags_only = {"store_true", "store_false", "count", "help", "version", "store_const", "append_const"}
    for name in cli_main.COMMANDS:
        if name in plugin.LOCAL_ONLY:  # exec, shell: refused by the plugin, not run on a node
            assert name not in plugin.TARGET_AT, name
            continue
        if name.startswith("_"):  # hidden: the completion scripts' helper
            continue
        cmd = app.REGISTRY[name]
        args = [m for a in cmd.args for m in (a.args if isinstance(a, app.Group) else (a,))]
        values = {f for a in args if a.flags[0].startswith("-")
                  and a.kwargs.get("action") not in flags_only for f in a.flags}
        assert values == plugin.VALUE_OPTIONS.get(name, frozenset()), name
        positional = [a.kwargs.get("metavar", "") for a in args if not a.flags[0].startswith("-")]
        targets = [i for i, m in enumerate(positional) if "TARGET" in m]
        at = plugin.TARGET_AT[name]
        if at is None:
            assert targets == [], name
        elif at == plugin.ALL:
            assert targets == [0] and len(positional) == 1, name
        else:
            assert targets == [at], name


def test_forbidden_rbac() -> None:
    e = error_from('Error from server (Forbidden): pods "web-1" is forbidden: User "system:serviceaccount:ci:'
                   'deployer" cannot create resource "pods/exec" in API group "" in the namespace "prod"\n',
                   doing="running ctrfs")
    assert isinstance(e, Forbidden) and e.exit_code == 4
    assert (e.verb, e.resource) == ("create", "pods/exec")
    assert str(e) == ('running ctrfs: forbidden: you may not create pods/exec in namespace "prod" '
                      "(ask for RBAC verb 'create' on 'pods/exec')")
    e = error_from('Error from server (Forbidden): daemonsets.apps is forbidden: User "alice" cannot list '
                   'resource "daemonsets" in API group "apps" at the cluster scope', doing="x")
    assert str(e) == ("x: forbidden: you may not list apps/daemonsets at the cluster scope "
                      "(ask for RBAC verb 'list' on 'apps/daemonsets')")


def test_forbidden_by_pod_security() -> None:
    e = error_from('Error from server (Forbidden): error when creating "STDIN": pods "ctrfs-node-1" is '
                   'forbidden: violates PodSecurity "baseline:latest": host namespaces (hostPID=true), '
                   'hostPath volumes (volume "host")', doing="creating node pod")
    assert isinstance(e, Forbidden) and e.exit_code == 4
    assert str(e).startswith('creating node pod: refused by Pod Security admission (baseline:latest: host '
                             'namespaces (hostPID=true), hostPath volumes (volume "host"))')
    assert "pod-security.kubernetes.io/enforce=privileged" in str(e)


def test_other_kubectl_failures() -> None:
    e = error_from("E1201 10:00:00.1 memcache.go:265] couldn't get current server API group list\n"
                   "error: You must be logged in to the server (Unauthorized)\n", doing="reading pod web")
    assert isinstance(e, KubectlFailed) and e.exit_code == 1
    assert str(e) == "reading pod web: kubectl failed: You must be logged in to the server (Unauthorized)"
    e = error_from('Error from server (NotFound): deployments.apps "web" not found',
                   doing="reading deployment web")
    assert e.exit_code == 3 and str(e) == 'reading deployment web: deployments.apps "web" not found'


def test_container_ids() -> None:
    assert container_target("containerd://" + "a" * 64) == "containerd://k8s.io/" + "a" * 64
    assert container_target("cri-o://" + "b" * 64) == "cri-o://" + "b" * 64
    assert container_target("docker://" + "c" * 64) == "docker://" + "c" * 64
    for bad in ("containerd://", "rkt://x", "containerd://a/../b", "abc"):
        with pytest.raises(Exception, match="container"):
            container_target(bad)


def test_selector() -> None:
    assert selector_string({"matchLabels": {"app": "web", "tier": "fe"}, "matchExpressions": [
        {"key": "env", "operator": "In", "values": ["a", "b"]},
        {"key": "canary", "operator": "DoesNotExist"},
        {"key": "zone", "operator": "NotIn", "values": ["x"]},
        {"key": "team", "operator": "Exists"}]}) == \
        "app=web,tier=fe,env in (a,b),!canary,zone notin (x),team"


def _pod(annotations: dict[str, str] | None = None) -> Pod:
    obj = {"metadata": {"name": "web-1", "namespace": "prod", "uid": "u", "annotations": annotations or {}},
           "spec": {"nodeName": "n1", "containers": [{"name": "app"}, {"name": "proxy"}],
                    "initContainers": [{"name": "init"}]},
           "status": {"phase": "Running", "containerStatuses": [
               {"name": "app", "containerID": "containerd://" + "1" * 64, "state": {"running": {}}},
               {"name": "proxy", "containerID": "containerd://" + "2" * 64,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}}],
               "initContainerStatuses": [{"name": "init", "containerID": "containerd://" + "3" * 64,
                                          "state": {"terminated": {"exitCode": 0}}}]}}
    return Pod.from_api(obj)


def test_default_container_and_restarting_ones() -> None:
    with pytest.raises(Ambiguous, match="choose one with -c: app, proxy"):
        _pod().container(None)
    p = _pod({"kubectl.kubernetes.io/default-container": "proxy"})
    c = p.container(None)
    assert c.name == "proxy" and c.state == "waiting"
    # A container waiting to restart keeps its last run's ID: ctrfs reads stopped containers.
    assert p.target(c) == "containerd://k8s.io/" + "2" * 64
    assert p.target(p.container("init")) == "containerd://k8s.io/" + "3" * 64


def _job(node: str, rc: int, out: object, err: bytes = b"") -> fanout.Job:
    return fanout.Job({"node": node}, [], rc=rc, out=json.dumps(out).encode(), err=err)


def test_merge_json_tags_and_tolerates_absent_containers() -> None:
    jobs = [_job("a", 0, [{"path": "/x"}]), _job("b", 3, None, b"ctrfs: no such container\n"),
            _job("c", 0, {"id": "z"})]
    out, err = io.StringIO(), io.StringIO()
    rc = fanout.merge(jobs, "find", as_json=True, tag_name="node", out=out, err=err.write,
                      tolerate_not_found=True)
    assert rc == 0
    assert json.loads(out.getvalue()) == [{"node": "a", "path": "/x"}, {"node": "c", "id": "z"}]
    assert err.getvalue() == ""
    # Without the tolerance (or when no node answered) a failure is the exit status, labelled.
    rc = fanout.merge(jobs, "find", as_json=True, tag_name="node", out=io.StringIO(), err=err.write)
    assert rc == 3
    assert err.getvalue() == "b: ctrfs: no such container\n"


def test_merge_text_header_once() -> None:
    a = fanout.Job({"node": "node-a"}, [], out=b"ID  NAME\n1   x\n")
    b = fanout.Job({"node": "b"}, [], out=b"ID  NAME\n2   y\n3   z\n")
    out = io.StringIO()
    assert fanout.merge([a, b], "ps", as_json=False, tag_name="node", out=out) == 0
    assert out.getvalue() == "NODE    ID  NAME\nnode-a  1   x\nb       2   y\nb       3   z\n"
