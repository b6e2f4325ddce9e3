"""``ctrfs exec`` and ``ctrfs shell`` on real containers of every runtime.

What a user sees (listings, file contents, exit statuses, bytes through pipes, namespaces, the
process list), compared with the container as the host and Docker see it; and the container's
mount table, ``docker diff``, upper directory and ``cgroup.procs`` compared exactly before, during
and after a session.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest

import harness
from harness import RunningContainer

RUNTIMES = ["docker_shellless", "podman_shellless", "containerd_cri", "runc_container", "bare_container"]
NS_KINDS = ("net", "pid", "uts", "ipc", "cgroup")


@pytest.fixture(params=RUNTIMES)
def ctr(request: pytest.FixtureRequest) -> RunningContainer:
    return request.getfixturevalue(request.param)


def target_of(c: RunningContainer) -> str:
    # the containerd container as Kubernetes names it (k8s://NS/POD/CONTAINER)
    return c.info.get("k8s_target", c.target)


def cx(c: RunningContainer, *cmd: str, opts: tuple[str, ...] = (), input: bytes | None = None,  # noqa: A002
       check: bool = True, env: dict[str, str] | None = None, prefix: list[str] | None = None,
       timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """``ctrfs exec [opts] TARGET -- CMD...`` as a new process, bytes in and out."""
    argv = [*(prefix or []), sys.executable, "-m", "ctrfs", "exec", *opts, target_of(c), "--", *cmd]
    res = subprocess.run(argv, input=input, capture_output=True, timeout=timeout,
                         stdin=None if input is not None else subprocess.DEVNULL,
                         env={**os.environ, **env} if env else None)
    if check and res.returncode != 0:
        raise AssertionError(f"{argv} -> {res.returncode}\n{res.stderr.decode(errors='replace')}")
    return res


def ns_pids(pid: int) -> dict[int, int]:
    """host PID → PID inside, of every process in the PID namespace of host PID ``pid``."""
    want = os.stat(f"/proc/{pid}/ns/pid").st_ino
    out = {}
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            if os.stat(f"/proc/{e}/ns/pid").st_ino != want:
                continue
            status = Path(f"/proc/{e}/status").read_text()
        except OSError:
            continue
        nspid = next(line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:"))
        out[int(e)] = int(nspid[-1])
    return out


def cgroup_procs_files(pid: int) -> list[Path]:
    """The cgroup.procs file of every hierarchy host PID ``pid`` is in (this host: cgroup v1
    hierarchies under /sys/fs/cgroup/<controllers>, v2 at /sys/fs/cgroup/unified)."""
    out = []
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        hier, ctrls, path = line.split(":", 2)
        if hier == "0":
            base = Path("/sys/fs/cgroup/unified")
        else:
            names = {c.removeprefix("name=") for c in ctrls.split(",")}
            base = next(d for d in Path("/sys/fs/cgroup").iterdir()
                        if set(d.name.split(",")) == names and not d.is_symlink())
        f = base / path.lstrip("/") / "cgroup.procs"
        if f.exists():
            out.append(f)
    assert out, f"no cgroup.procs found for pid {pid}"
    return out


def upper_listing(upper: str) -> list[tuple[str, int, int]]:
    """(path, mode, rdev) of everything in an overlay upper directory, sorted (sizes and times
    left out: the logger keeps appending to its log)."""
    out = []
    for top, dirs, files in os.walk(upper):
        for n in sorted(dirs + files):
            p = os.path.join(top, n)
            st = os.lstat(p)
            out.append((os.path.relpath(p, upper), st.st_mode, st.st_rdev))
    return sorted(out)


def upperdir_of(c: RunningContainer) -> str | None:
    if c.runtime == "bare":
        return c.info["upperdir"]
    if c.runtime in ("docker", "podman"):
        return harness.out(c.runtime, "inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", c.id)
    info = json.loads(harness.ctrfs("inspect", "--json", c.target).stdout)
    return (info.get("rootfs") or {}).get("upperdir")


def snapshot(c: RunningContainer) -> dict[str, Any]:
    snap: dict[str, Any] = {
        "mountinfo": Path(f"/proc/{c.pid}/mountinfo").read_bytes(),
        "/.ctrfs": os.path.lexists(f"/proc/{c.pid}/root/.ctrfs"),
    }
    # The bare container has no cgroup of its own: it shares the test's (and so ctrfs's).
    if Path(f"/proc/{c.pid}/cgroup").read_bytes() != Path("/proc/self/cgroup").read_bytes():
        snap["cgroup.procs"] = {str(f): f.read_text() for f in cgroup_procs_files(c.pid)}
    else:
        assert c.runtime == "bare"
    upper = upperdir_of(c)
    if upper:
        snap["upper"] = upper_listing(upper)
    else:  # runc: a plain directory
        snap["root"] = sorted(os.listdir(c.info["rootfs"]))
    if c.runtime in ("docker", "podman"):
        snap["diff"] = harness.out(c.runtime, "diff", c.id)
    return snap


@contextlib.contextmanager
def background_session(c: RunningContainer, *cmd: str, opts: tuple[str, ...] = ()
                       ) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A ``ctrfs exec`` kept open; yields it and the host PID of its command once that runs."""
    before = set(ns_pids(c.pid))
    sleeper: int | None = None
    proc = subprocess.Popen([sys.executable, "-m", "ctrfs", "exec", *opts, target_of(c), "--", *cmd],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def started() -> int | None:
            for p in set(ns_pids(c.pid)) - before:
                with contextlib.suppress(OSError):
                    if Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[:len(cmd)] \
                            == [x.encode() for x in cmd]:
                        return p
            assert proc.poll() is None, proc.communicate()
            return None

        sleeper = harness.wait_until(started, f"the session's {cmd} in {c.name}")
        yield proc, sleeper
    finally:
        if proc.poll() is None:
            proc.terminate()  # passed on to the command
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if sleeper is not None and harness.pid_alive(sleeper):
            os.kill(sleeper, signal.SIGKILL)
        proc.communicate(timeout=30)


# ---------------------------------------------------------------------------------------------------
# Docker, shell-less


def test_ls_lists_the_containers_root(docker_shellless: RunningContainer) -> None:
    c = docker_shellless
    listed = cx(c, "ls", "-1a", "/").stdout.decode().split()
    on_host = os.listdir(f"/proc/{c.pid}/root")
    # /.ctrfs is the session's own (the toolbox); everything else is the container's root
    assert sorted(set(listed) - {".", ".."}) == sorted({*on_host, ".ctrfs"})
    assert not os.path.lexists(f"/proc/{c.pid}/root/.ctrfs")


def test_cat_equals_ctrfs_cat(docker_shellless: RunningContainer) -> None:
    c = docker_shellless
    inside = cx(c, "cat", "/etc/os-release").stdout
    assert inside == harness.ctrfs("cat", f"{c.target}:/etc/os-release", text=False).stdout
    assert b"ctrfs-shellless" in inside


def test_exit_status_is_the_commands(docker_shellless: RunningContainer) -> None:
    assert cx(docker_shellless, "sh", "-c", "exit 42", check=False).returncode == 42
    assert cx(docker_shellless, "true").returncode == 0
    # killed by signal N: 128+N, as docker exec reports it
    assert cx(docker_shellless, "sh", "-c", "kill -TERM $$", check=False).returncode == 128 + 15
    missing = cx(docker_shellless, "no-such-tool", check=False)
    assert missing.returncode == 127
    assert missing.stderr.decode().count("\n") == 1 and b"no-such-tool: command not found" in missing.stderr
    not_runnable = cx(docker_shellless, "/etc/os-release", check=False)  # found, not executable
    assert not_runnable.returncode == 126 and b"/etc/os-release: permission denied" in not_runnable.stderr


def test_ten_mib_through_a_pipe_come_back_identical(docker_shellless: RunningContainer) -> None:
    data = os.urandom(10 << 20)
    res = cx(docker_shellless, "cat", opts=("-i",), input=data, timeout=120)
    assert res.stdout == data
    # and stderr is kept apart, byte for byte
    res = cx(docker_shellless, "sh", "-c", "cat >&2", opts=("-i",), input=data[:1 << 20])
    assert res.stderr == data[:1 << 20] and res.stdout == b""


def test_a_reader_closing_early_ends_the_session(docker_shellless: RunningContainer) -> None:
    # `ctrfs exec C -- yes | head -1`: yes gets SIGPIPE, ctrfs ends with 0 (as for every command)
    pipeline = f"{sys.executable} -m ctrfs exec {docker_shellless.target} -- yes | head -1; " \
               "echo \"status ${PIPESTATUS[0]}\""
    res = subprocess.run(["bash", "-c", pipeline], capture_output=True, timeout=60)
    assert res.stdout.decode().split("\n")[:2] == ["y", "status 0"], res.stderr
    assert not [p for p in ns_pids(docker_shellless.pid) if _comm(p) == "yes"]  # nothing left running


def _comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def test_without_i_stdin_is_at_end_of_file(docker_shellless: RunningContainer) -> None:
    res = cx(docker_shellless, "wc", "-c", input=b"not passed on")
    assert res.stdout.split() == [b"0"]


@pytest.mark.parametrize("c", ["docker_shellless"])
def test_namespaces_are_the_containers(c: str, request: pytest.FixtureRequest) -> None:
    check_namespaces(request.getfixturevalue(c))


def check_namespaces(c: RunningContainer) -> None:
    script = "; ".join(f"readlink /proc/self/ns/{k}" for k in NS_KINDS)
    inside = cx(c, "sh", "-c", script).stdout.decode().split()
    assert inside == [os.readlink(f"/proc/{c.pid}/ns/{k}") for k in NS_KINDS]
    # the mount namespace is a private copy: never the container's own, never the host's
    mnt = cx(c, "readlink", "/proc/self/ns/mnt").stdout.decode().strip()
    assert mnt not in (os.readlink(f"/proc/{c.pid}/ns/mnt"), os.readlink("/proc/self/ns/mnt"))


def check_ps(c: RunningContainer) -> None:
    rows = [line.split(None, 1) for line in cx(c, "ps", "-o", "pid,args").stdout.decode().splitlines()[1:]]
    inside = {int(pid): args.strip() for pid, args in rows}
    expected = {nspid for nspid in ns_pids(c.pid).values()}
    ps_pid = next(pid for pid, args in inside.items() if args.startswith("ps"))
    # only the container's processes (its PID namespace), plus ps itself
    assert set(inside) - {ps_pid} <= expected and 1 in inside
    assert inside[1] == "/app"
    assert set(inside) - {ps_pid} == {pid for pid in expected if pid in inside}


def check_read_only(c: RunningContainer) -> None:
    for path in ("/new", "/etc/new", "/tmp/new"):
        res = cx(c, "touch", path, check=False)
        assert res.returncode != 0 and b"Read-only file system" in res.stderr, res.stderr
        assert not os.path.lexists(f"/proc/{c.pid}/root{path}")


def test_ps_lists_only_the_containers_processes(docker_shellless: RunningContainer) -> None:
    check_ps(docker_shellless)


def test_files_are_read_only(docker_shellless: RunningContainer) -> None:
    check_read_only(docker_shellless)


def test_environment_user_and_workdir(docker_shellless: RunningContainer) -> None:
    c = docker_shellless
    environ = dict(e.split(b"=", 1) for e in Path(f"/proc/{c.pid}/environ").read_bytes().split(b"\0") if e)
    out = cx(c, "sh", "-c", 'echo "$HOSTNAME"; echo "$PATH"; echo "$FOO"; id -u; id -g; pwd',
             opts=("-e", "FOO=bar baz", "-u", "65534:65534", "-w", "/etc")).stdout.decode().splitlines()
    assert out[0] == environ[b"HOSTNAME"].decode()
    assert out[1] == environ[b"PATH"].decode() + ":/.ctrfs/bin"
    assert out[2:] == ["bar baz", "65534", "65534", "/etc"]
    # a name from the container's /etc/passwd
    assert cx(c, "id", "-u", opts=("-u", "nobody")).stdout.strip() == b"65534"
    bad = cx(c, "true", opts=("-u", "no-such-user"), check=False)
    assert bad.returncode == 1 and b"no user 'no-such-user'" in bad.stderr
    bad = cx(c, "true", opts=("-w", "/no-such-dir"), check=False)
    assert bad.returncode == 1 and bad.stderr.count(b"\n") == 1
    assert b"working directory: /no-such-dir: no such file or directory" in bad.stderr


def test_json_has_status_and_output(docker_shellless: RunningContainer) -> None:
    res = cx(docker_shellless, "sh", "-c", "echo out; echo err >&2; exit 5", opts=("--json",), check=False)
    assert res.returncode == 5
    doc = json.loads(res.stdout)
    assert (doc["exit_code"], doc["stdout"], doc["stderr"]) == (5, "out\n", "err\n")


@pytest.mark.docker
@pytest.mark.root
def test_absolute_symlink_resolves_inside_the_container(tmp_path: Path) -> None:
    # /hostonly -> <a path that exists on the host only>; in the session it must not lead there
    host_file = tmp_path / "secret"
    host_file.write_text("host secret\n")
    root = harness.shellless_rootfs(tmp_path / "rootfs")
    (root / "hostonly").symlink_to(host_file)
    (root / "tmp" / "inside").write_text("the container's own\n")
    (root / "etc" / "inside-link").symlink_to("/tmp/inside")
    image = harness.build_image_from_dir(root, harness.unique_name() + ":latest", changes=('CMD ["/app"]',))
    with harness.run_docker(image, wait_log=True) as c:
        res = cx(c, "cat", "/hostonly", check=False)
        assert res.returncode == 1 and b"host secret" not in res.stdout
        assert b"No such file or directory" in res.stderr
        assert cx(c, "cat", "/etc/inside-link").stdout == b"the container's own\n"
        # --rw writes into the container, where Docker sees it; "/" itself stays read-only
        rw = cx(c, "sh", "-c", "echo written > /tmp/rw.txt", opts=("--rw",))
        assert b"--rw" in rw.stderr
        assert harness.ctrfs("cat", f"{c.target}:/tmp/rw.txt").stdout == "written\n"
        assert "A /tmp/rw.txt" in harness.out("docker", "diff", c.id).splitlines()
        assert cx(c, "touch", "/new", opts=("--rw",), check=False).returncode != 0


@pytest.mark.docker
@pytest.mark.root
def test_stopped_container_is_a_one_line_error() -> None:
    name = harness.unique_name()
    harness.run("docker", "create", "--name", name, "--network", "none", "--label",
                f"{harness.OWNER_LABEL}={os.getpid()}", harness.shellless_image())
    try:
        res = harness.ctrfs("exec", name, "--", "ls", check=False)
        assert res.returncode == 1
        assert res.stderr.count("\n") == 1 and "running" in res.stderr and "Traceback" not in res.stderr
    finally:
        harness.run("docker", "rm", "-f", name, check=False)


def test_unknown_target_and_usage_errors(docker_shellless: RunningContainer) -> None:
    assert harness.ctrfs("exec", "ctrfs-no-such-container", "--", "ls", check=False).returncode == 3
    usage = harness.ctrfs("exec", docker_shellless.target, check=False)
    assert usage.returncode == 2 and "missing command" in usage.stderr


# ---------------------------------------------------------------------------------------------------
# the target is left as it was


def test_container_unchanged_before_during_after(ctr: RunningContainer) -> None:
    before = snapshot(ctr)
    with background_session(ctr, "sleep", "1000") as (proc, sleeper):
        during = snapshot(ctr)
        session_mnt = os.stat(f"/proc/{sleeper}/ns/mnt").st_ino
        helper = int(Path(f"/proc/{sleeper}/status").read_text().split("PPid:")[1].split()[0])
        proc.send_signal(signal.SIGTERM)  # forwarded to the command: 128+SIGTERM
        assert proc.wait(30) == 128 + signal.SIGTERM
    # The private mount namespace went with the session's last process: the helper is gone and no
    # process of the container is in it. (Host-wide the inode number may already name a new
    # namespace: the kernel hands a freed one to the next namespace made, by anyone.)
    assert not harness.pid_alive(helper)
    holders = [p for p in ns_pids(ctr.pid) if _ns_ino(str(p)) == session_mnt]
    assert holders == []
    after = snapshot(ctr)
    assert during == before
    assert after == before
    assert before["/.ctrfs"] is False
    if "cgroup.procs" in during:  # the session's process is in ctrfs's cgroup, not the container's
        assert all(str(sleeper) not in text.split() for text in during["cgroup.procs"].values())


def _ns_ino(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/mnt").st_ino
    except OSError:
        return None


def test_cgroup_option_joins_the_containers_cgroup(docker_shellless: RunningContainer) -> None:
    c = docker_shellless
    with background_session(c, "sleep", "1000", opts=("--cgroup",)) as (proc, sleeper):
        for f in cgroup_procs_files(c.pid):
            assert str(sleeper) in f.read_text().split(), f
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    for f in cgroup_procs_files(c.pid):
        assert str(sleeper) not in f.read_text().split()


# ---------------------------------------------------------------------------------------------------
# every runtime: the core checks


def test_core_checks_on_every_runtime(ctr: RunningContainer) -> None:
    names = cx(ctr, "ls", "/").stdout.decode().split()
    assert {"app", "etc", "proc", "tmp"} <= set(names)
    assert cx(ctr, "cat", "/etc/os-release").stdout \
        == harness.ctrfs("cat", f"{ctr.target}:/etc/os-release", text=False).stdout
    assert cx(ctr, "sh", "-c", "exit 42", check=False).returncode == 42
    data = os.urandom(1 << 20)
    assert cx(ctr, "cat", opts=("-i",), input=data).stdout == data
    check_namespaces(ctr)
    check_ps(ctr)
    check_read_only(ctr)


def test_daemons_unreachable(docker_shellless: RunningContainer, runc_container: RunningContainer) -> None:
    """No daemon is asked: ctrfs runs in a mount namespace where the Docker, containerd and podman
    sockets are /dev/null and DOCKER_HOST points at nothing (the shared dockerd is left running)."""
    socks = [s for s in ("/run/docker.sock", "/run/containerd/containerd.sock", "/run/podman/podman.sock")
             if os.path.exists(s)]
    assert "/run/docker.sock" in socks
    mounts = " && ".join(f"mount --bind /dev/null {s}" for s in socks)
    prefix = ["unshare", "-m", "sh", "-c", f'{mounts} && exec "$@"', "sh"]
    env = {"DOCKER_HOST": "unix:///nonexistent/docker.sock", "CONTAINERD_ADDRESS": "/nonexistent"}
    for c in (docker_shellless, runc_container):
        run = functools.partial(cx, c, prefix=prefix, env=env)
        assert {"app", "etc", "proc"} <= set(run("ls", "/").stdout.decode().split())
        assert b"ctrfs-shellless" in run("cat", "/etc/os-release").stdout
        assert run("sh", "-c", "exit 7", check=False).returncode == 7
        assert run("readlink", "/proc/self/ns/net").stdout.decode().strip() \
            == os.readlink(f"/proc/{c.pid}/ns/net")
        assert b"/app" in run("ps").stdout
        assert b"Read-only file system" in run("touch", "/etc/x", check=False).stderr


# ---------------------------------------------------------------------------------------------------
# a real terminal


def test_shell_on_a_real_pty(docker_shellless: RunningContainer) -> None:
    pts = f"/proc/{docker_shellless.pid}/root/dev/pts"
    pts_before = sorted(os.listdir(pts))
    child = pexpect.spawn(sys.executable, ["-m", "ctrfs", "shell", docker_shellless.target],
                          dimensions=(24, 80), timeout=20, encoding="utf-8")
    try:
        prompt = r"[#$] "
        child.expect(prompt)
        child.sendline("echo hello-$((6*7))")
        child.expect("hello-42")
        child.expect(prompt)
        child.sendline("stty size")
        child.expect("24 80")
        child.expect(prompt)
        child.setwinsize(41, 123)
        child.sendline("stty size")
        child.expect("41 123")
        child.expect(prompt)
        child.sendline("sleep 1000")
        time.sleep(0.5)
        child.sendintr()  # Ctrl-C: ends the sleep (status 130), not the shell
        child.expect(prompt)
        child.sendline("echo status-$?")
        child.expect("status-130")
        child.expect(prompt)
        child.sendline("sleep 1001")
        time.sleep(0.5)
        child.sendcontrol("z")  # Ctrl-Z: the shell's job control stops it
        child.expect(r"Stopped\s+sleep 1001")
        child.expect(prompt)
        child.sendline("kill -9 %1; wait; echo killed")
        child.expect("killed")
        child.expect(prompt)
        child.sendline("[ -t 0 ] && [ -t 1 ] && echo is-a-terminal; tty")
        child.expect("is-a-terminal")
        # the session's own devpts: the pty has a name in the session, the container's is untouched
        child.expect("/.ctrfs/pts/0")
        assert sorted(os.listdir(pts)) == pts_before
        child.sendline("exit 3")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 3


def test_shell_prefers_the_containers_own(docker_busybox: RunningContainer) -> None:
    child = pexpect.spawn(sys.executable, ["-m", "ctrfs", "shell", docker_busybox.target],
                          timeout=20, encoding="utf-8")
    try:
        child.expect(r"[#$] ")
        child.sendline("readlink /proc/$$/exe")
        child.expect("/bin/busybox")
        child.sendline("exit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_help_ends_with_examples() -> None:
    for cmd in ("exec", "shell"):
        text = harness.ctrfs(cmd, "--help").stdout
        tail = text.rstrip().split("\n\n")[-1]
        assert tail.startswith("Examples:") and f"ctrfs {cmd} " in tail


def test_toolbox_dir_adds_the_users_tools(docker_shellless: RunningContainer, tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    shutil.copy2(harness.logger_binary(), tools / "my-logger")
    res = cx(docker_shellless, "sh", "-c", "command -v my-logger; ls -l /.ctrfs/bin/my-logger",
             opts=("--toolbox", str(tools)))
    out = res.stdout.decode().splitlines()
    assert out[0] == "/.ctrfs/bin/my-logger"
    assert out[1].startswith("-rwx")
    assert b"dynamically linked" not in res.stderr
    # a dynamic executable is copied too, with a warning: the host's libraries are not there
    shutil.copy2(shutil.which("true") or "/bin/true", tools / "dyn-true")
    res = cx(docker_shellless, "ls", "/.ctrfs/bin/dyn-true", opts=("--toolbox", str(tools)))
    assert res.stdout == b"/.ctrfs/bin/dyn-true\n"
    assert f"--toolbox: {tools / 'dyn-true'} is dynamically linked".encode() in res.stderr


@pytest.mark.podman
@pytest.mark.root
def test_user_namespace_container() -> None:
    """A podman container with its own user namespace (container root = host UID 300000): the
    session joins it, so IDs, capabilities and file ownership are as the container sees them."""
    with harness.run_docker(harness.shellless_image("podman"), harness.NAME_PREFIX,
                            "--uidmap", "0:300000:65536", "--gidmap", "0:300000:65536",
                            cli="podman", wait_log=True) as c:
        assert os.readlink(f"/proc/{c.pid}/ns/user") != os.readlink("/proc/self/ns/user")
        out = cx(c, "sh", "-c", "id -u; id -g; cat /proc/self/uid_map; readlink /proc/self/ns/user; "
                 "stat -c %u /etc/os-release").stdout.decode().split()
        assert out[:2] == ["0", "0"]
        assert out[2:5] == ["0", "300000", "65536"]
        assert out[5] == os.readlink(f"/proc/{c.pid}/ns/user")
        assert out[6] == "0"
        check_namespaces(c)
        check_ps(c)
        check_read_only(c)
        assert cx(c, "id", "-u", opts=("-u", "65534")).stdout.strip() == b"65534"


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_signals_reach_the_command_without_a_pty(docker_shellless: RunningContainer) -> None:
    c = docker_shellless
    with background_session(c, "sleep", "1000") as (proc, sleeper):
        proc.send_signal(signal.SIGTSTP)  # Ctrl-Z at ctrfs's terminal: the command stops, ctrfs too
        harness.wait_until(lambda: _state(sleeper) == "T" and _state(proc.pid) == "T", "both stopped")
        proc.send_signal(signal.SIGCONT)  # fg
        harness.wait_until(lambda: _state(sleeper) == "S" and _state(proc.pid) in "SR", "both running")
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(30) == 128 + signal.SIGINT
    assert not harness.pid_alive(sleeper)


def test_pty_only_when_both_ends_are_terminals(docker_shellless: RunningContainer) -> None:
    target = docker_shellless.target
    probe = "[ -t 0 ] && echo in-tty || echo in-notty; [ -t 1 ] && echo out-tty || echo out-notty"

    def on_a_terminal(*opts: str) -> str:
        child = pexpect.spawn(sys.executable, ["-m", "ctrfs", "exec", *opts, target, "--", "sh", "-c", probe],
                              timeout=20, encoding="utf-8")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
        return " ".join(child.before.split())

    assert on_a_terminal() == "in-tty out-tty"
    assert on_a_terminal("-T") == "in-notty out-notty"
    # not a terminal: pipes, unless -t
    assert cx(docker_shellless, "sh", "-c", probe).stdout.split() == [b"in-notty", b"out-notty"]
    assert cx(docker_shellless, "sh", "-c", probe, opts=("-t",)).stdout.split() == [b"in-tty", b"out-tty"]


def test_without_root_a_one_line_permission_error(docker_shellless: RunningContainer) -> None:
    res = cx(docker_shellless, "true", check=False,
             prefix=["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"])
    assert res.returncode == 4 and res.stderr.count(b"\n") == 1 and b"Traceback" not in res.stderr


@pytest.mark.docker
@pytest.mark.root
def test_a_background_child_holding_stdout_does_not_hold_ctrfs() -> None:
    # like docker exec: ctrfs returns when the command exits, after what it wrote is read. (Its
    # own container: the orphaned sleep is left to an init that never reaps.)
    with harness.run_docker(harness.busybox_image(), cmd=harness.BUSYBOX_CMD) as c:
        start = time.monotonic()
        res = cx(c, "sh", "-c", "/.ctrfs/bin/sleep 30 & echo started; exit 4", check=False)
        assert res.returncode == 4 and res.stdout == b"started\n"
        assert time.monotonic() - start < 20
