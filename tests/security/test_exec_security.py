"""``ctrfs exec`` against the container it runs in, with runc's exec CVEs as the anchor.

- CVE-2016-9962: a container process ptraced runc's init after it joined the container → the
  helper is non-dumpable and never enters the container's PID namespace.
- CVE-2019-5736: a container process overwrote the host's runc through ``/proc/<pid>/exe`` → the
  toolbox runs from a private read-only copy; the host's busybox keeps its hash.
- CVE-2024-21626: a leaked host fd or cwd led to the host filesystem → the session holds only
  its stdio (pipes or a pty made by ctrfs) and its cwd is inside the container root.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from _hostile import hostile_container, sh

import harness
from harness import RunningContainer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "runtime"))
from test_exec import background_session, cx  # noqa: E402

BUSYBOX = Path("/bin/busybox")


def status_of(text: str) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def caps_of(pid: int | str) -> dict[str, str]:
    return status_of(Path(f"/proc/{pid}/status").read_text())


def test_capabilities_and_no_new_privs_are_the_containers(docker_shellless: RunningContainer) -> None:
    c = docker_shellless
    theirs = caps_of(c.pid)
    ours = status_of(cx(c, "cat", "/proc/self/status").stdout.decode())
    assert ours["CapBnd"] == theirs["CapBnd"]
    assert ours["CapBnd"] != caps_of("self")["CapBnd"]  # Docker's default set is not the host's
    # root in the container: effective = permitted = the container's (as docker exec gives them)
    assert ours["CapEff"] == ours["CapPrm"] == theirs["CapEff"]
    assert ours["CapInh"] == ours["CapAmb"] == "0000000000000000"
    assert ours["NoNewPrivs"] == "1"
    # a non-root user gets no capabilities at all
    nobody = status_of(cx(c, "cat", "/proc/self/status", opts=("-u", "65534")).stdout.decode())
    assert nobody["CapEff"] == nobody["CapPrm"] == "0000000000000000"
    assert nobody["CapBnd"] == theirs["CapBnd"]


@pytest.mark.docker
@pytest.mark.root
def test_capabilities_of_a_locked_down_container() -> None:
    with harness.run_docker(harness.shellless_image(), harness.NAME_PREFIX, "--cap-drop", "ALL",
                            "--cap-add", "NET_BIND_SERVICE", "--security-opt", "no-new-privileges",
                            wait_log=True) as c:
        theirs = caps_of(c.pid)
        ours = status_of(cx(c, "cat", "/proc/self/status").stdout.decode())
        assert theirs["CapBnd"] == "0000000000000400"  # CAP_NET_BIND_SERVICE alone
        for key in ("CapBnd", "CapEff", "NoNewPrivs"):
            assert ours[key] == theirs[key], key


def test_privileged_keeps_the_hosts_and_says_so(docker_shellless: RunningContainer) -> None:
    res = cx(docker_shellless, "cat", "/proc/self/status", opts=("--privileged",))
    ours = status_of(res.stdout.decode())
    assert ours["CapBnd"] == caps_of("self")["CapBnd"]
    assert ours["NoNewPrivs"] == "0"
    assert b"--privileged" in res.stderr and b"host's capability bounding set" in res.stderr


def _fd_listing(out: bytes) -> dict[str, str]:
    """fd → link target from busybox ``ls -l /proc/self/fd``."""
    fds = {}
    for line in out.decode().splitlines():
        parts = line.split()
        if "->" in parts:
            i = parts.index("->")
            fds[parts[i - 1]] = " ".join(parts[i + 1:])
    return fds


def test_only_stdio_is_open_in_the_session(docker_shellless: RunningContainer) -> None:
    c = docker_shellless
    # ctrfs itself holding host fds (a directory, a file): none of them reaches the session
    host_dir = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    host_file = os.open("/etc/hostname", os.O_RDONLY)
    try:
        argv = [sys.executable, "-m", "ctrfs", "exec", "-i", c.target, "--", "sh", "-c", "ls -l /proc/$$/fd"]
        proc = subprocess.run(argv, pass_fds=(host_dir, host_file), capture_output=True, timeout=60,
                              stdin=host_file)  # even a host file as stdin: the session gets a pipe
    finally:
        os.close(host_dir)
        os.close(host_file)
    assert proc.returncode == 0, proc.stderr
    fds = _fd_listing(proc.stdout)  # the shell's fds, listed by another process
    assert set(fds) == {"0", "1", "2"}, fds
    assert all(fds[n].startswith("pipe:[") for n in ("0", "1", "2")), fds
    # with a pty: the pty on 0, 1 and 2, nothing else
    fds = _fd_listing(cx(c, "sh", "-c", "ls -l /proc/$$/fd", opts=("-t",)).stdout)
    assert set(fds) == {"0", "1", "2"} and fds["0"] == fds["1"] == fds["2"] == "/.ctrfs/pts/0", fds
    # cwd and root are the container's (no /proc/self/cwd back to the host)
    out = cx(c, "sh", "-c", "readlink /proc/self/cwd; readlink /proc/self/root; ls /proc/self/cwd/",
             opts=("-w", "/etc")).stdout.decode().split()
    assert out[:2] == ["/etc", "/"] and "os-release" in out


@contextlib.contextmanager
def dumpable_probe_target(bounding: str) -> Iterator[int]:
    """A plain root process with the same capabilities as the prober: what the probe can reach
    when dumpability does not stop it."""
    proc = subprocess.Popen(["setpriv", "--bounding-set", bounding, "--inh-caps", "-all", "sleep", "1000"])
    try:
        harness.wait_until(lambda: Path(f"/proc/{proc.pid}/comm").read_text().strip() == "sleep", "sleep")
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


PROBE = textwrap.dedent("""
    import ctypes, errno, os, sys
    pid = int(sys.argv[1])
    try:
        os.close(os.open(f"/proc/{pid}/mem", os.O_RDONLY))
        mem = "ok"
    except OSError as e:
        mem = errno.errorcode[e.errno]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    if libc.ptrace(16, pid, None, None) == 0:  # PTRACE_ATTACH
        os.waitpid(pid, 0x40000000)  # __WALL
        libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
        att = "ok"
    else:
        att = errno.errorcode[ctypes.get_errno()]
    print(mem, att)
""")


def probe(pid: int, bounding: str) -> list[str]:
    res = harness.run("setpriv", "--bounding-set", bounding, "--inh-caps", "-all",
                      sys.executable, "-c", PROBE, str(pid))
    return res.stdout.decode().split()


def test_helper_cannot_be_ptraced_or_read(docker_shellless: RunningContainer) -> None:
    c = docker_shellless
    names = harness.out("setpriv", "--list-caps").split()
    bnd = int(caps_of(c.pid)["CapBnd"], 16)
    bounding = "-all," + ",".join(f"+{n}" for i, n in enumerate(names) if bnd >> i & 1)
    assert "+sys_ptrace" not in bounding
    with background_session(c, "sleep", "1000") as (proc, sleeper):
        helper = int(caps_of(sleeper)["PPid"])
        assert Path(f"/proc/{helper}/exe").resolve() == Path(sys.executable).resolve()
        # the helper is outside the container's PID namespace: nothing in it can name it
        assert os.stat(f"/proc/{helper}/ns/pid").st_ino != os.stat(f"/proc/{c.pid}/ns/pid").st_ino
        assert caps_of(helper)["NSpid"].split() == [str(helper)]
        # and with root's credentials as the container has them, neither ptrace nor its memory
        assert probe(helper, bounding) == ["EACCES", "EPERM"]
        with dumpable_probe_target(bounding) as plain:
            assert probe(plain, bounding) == ["ok", "ok"]  # the probe does work where allowed
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_writing_the_session_exe_leaves_the_host_busybox_unchanged(docker_busybox: RunningContainer) -> None:
    c = docker_busybox
    digest = hashlib.sha256(BUSYBOX.read_bytes()).hexdigest()
    with background_session(c, "/.ctrfs/bin/sleep", "1000") as (proc, sleeper):
        exe = f"/proc/{sleeper}/exe"
        assert os.readlink(exe) == "/.ctrfs/bin/busybox"
        st, host = os.stat(exe), BUSYBOX.stat()
        assert (st.st_dev, st.st_ino) != (host.st_dev, host.st_ino)  # a copy, not the host file
        nspid = int(caps_of(sleeper)["NSpid"].split()[-1])
        # root in the container (docker exec, the container's own busybox) tries to overwrite it
        for redirect in (">", ">>", "1<>"):
            res = harness.docker_exec(c, "sh", "-c", f"echo pwned {redirect} /proc/{nspid}/exe", check=False)
            assert res.returncode != 0, redirect
        assert harness.docker_exec(c, "sh", "-c", f"cat /proc/{nspid}/exe | wc -c").stdout.strip() \
            == str(host.st_size).encode()  # it is readable, so the path was the right one
        # not even host root can write through it: a read-only mount of a private tmpfs
        with pytest.raises(OSError) as err:
            os.open(exe, os.O_WRONLY)
        assert err.value.errno in (26, 30)  # ETXTBSY, EROFS
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert hashlib.sha256(BUSYBOX.read_bytes()).hexdigest() == digest


def test_toolbox_is_a_private_read_only_tmpfs(docker_shellless: RunningContainer) -> None:
    c = docker_shellless
    line = next(x for x in cx(c, "cat", "/proc/self/mountinfo").stdout.decode().splitlines()
                if x.split()[4] == "/.ctrfs/bin")
    opts, fstype = line.split()[5].split(","), line.split(" - ")[1].split()[0]
    assert fstype == "tmpfs" and {"ro", "nosuid", "nodev"} <= set(opts)
    for cmd in ("touch /.ctrfs/bin/x", "rm /.ctrfs/bin/ls", "mkdir /.ctrfs/x"):
        assert cx(c, "sh", "-c", cmd, check=False).returncode != 0, cmd
    # the toolbox is nowhere in the container's own mount table
    assert b"/.ctrfs" not in Path(f"/proc/{c.pid}/mountinfo").read_bytes()


@pytest.mark.docker
@pytest.mark.root
def test_no_path_in_the_session_reaches_a_host_file() -> None:
    """docs/security.md cases 1-3 and 7 from inside a session: symlinks to /, long ../ chains,
    absolute links and the container's /proc magic links all stay in the container; a file that
    exists only on the host is never read."""
    canary = f"ctrfs-exec-canary-{os.getpid()}"
    secret = f"HOST-ONLY-{os.urandom(8).hex()}"
    host_dir = Path("/") / canary
    host_dir.mkdir()
    try:
        (host_dir / "secret").write_text(secret + "\n")
        with hostile_container() as c:
            sh(c, f"mkdir -p /c1 /c2 && ln -s / /c1/etc && ln -s ../../../../.. /c2/a"
                  f" && ln -s /{canary}/secret /abs && ln -s /proc/1/root /p1")
            paths = [f"/c1/etc/{canary}/secret", f"/c2/a/{canary}/secret", f"/../../../{canary}/secret",
                     "/abs", f"/proc/self/root/{canary}/secret", f"/proc/1/root/{canary}/secret",
                     f"/p1/{canary}/secret", f"/proc/self/cwd/../../{canary}/secret"]
            script = "; ".join(f"timeout 5 cat {p}" for p in paths) + f"; ls -d /{canary}"
            for opts in ((), ("--rw",), ("-w", "/proc/self/root")):
                res = cx(c, "sh", "-c", script, opts=opts, check=False)
                assert secret.encode() not in res.stdout + res.stderr, f"HOST FILE LEAKED with {opts}"
                assert res.stderr.count(b"No such file or directory") == len(paths) + 1, res.stderr
    finally:
        (host_dir / "secret").unlink()
        host_dir.rmdir()


def test_no_fd_left_open_in_ctrfs(docker_shellless: RunningContainer) -> None:
    """docs/security.md case 19 for the library: two sessions, pty and pipes, leave ctrfs's own
    fd table as it was."""
    script = textwrap.dedent(f"""
        import os
        import ctrfs.targets
        from ctrfs.exec import Spec, run
        c = ctrfs.targets.resolve({docker_shellless.target!r})
        def fds():
            out = []
            for n in os.listdir("/proc/self/fd"):
                try:
                    out.append((n, os.readlink(f"/proc/self/fd/{{n}}")))
                except FileNotFoundError:  # the directory listdir itself had open
                    pass
            return sorted(out)
        null = os.open(os.devnull, os.O_RDWR)
        before = fds()
        for tty in (False, True, False):
            r = run(c, Spec(argv=("sh", "-c", "echo hi; exit 3")), tty=tty, capture=not tty,
                    stdin=null, stdout=null)
            assert r.exit_code == 3, r
        assert fds() == before, (before, fds())
        print("ok")
    """)
    res = harness.run(sys.executable, "-c", script)
    assert res.stdout == b"ok\n"
