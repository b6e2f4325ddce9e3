"""What runs first on the node: ``python3 -c BOOT SHA256 SIZE ARGS...`` through ``kubectl exec -i``.

ctrfs.pyz reaches the node through kubectl's own stream, no image of ours: BOOT keeps one copy
per content hash in the pod's scratch directory (an emptyDir at ``/ctrfs``; the DaemonSet's
agents keep it across commands) and then runs ``python3 -I -S ctrfs.pyz ARGS`` as its child, on
BOOT's own stdout and stderr: the command's output and exit status are ctrfs's own, byte for byte.
BOOT itself only waits, and ends ctrfs when its stdin closes: the plugin holds stdin open while
the command runs, so a Ctrl-C here (kubectl gone, exec stream closed) also stops a ``tail -f``
on the node, which a closed stdout alone would not do until its next write.

The handshake is the first byte(s) BOOT writes on stdout, before anything of ctrfs's:

- ``S``: send the pyz: the plugin writes exactly SIZE bytes on stdin (checked against SHA256);
- ``R``: ctrfs runs now; everything after this byte is ctrfs's stdout;
- ``V`` then ``MAJOR.MINOR\\n``: this Python is older than ctrfs needs; nothing ran.

BOOT must run on any Python 3 an image may have, so it uses nothing newer than 3.0.
"""

from __future__ import annotations

SEND = b"S"
RUN = b"R"
OLD_PYTHON = b"V"
MIN_PYTHON = (3, 11)

BOOT = r"""
import hashlib, os, sys, tempfile
if sys.version_info < (3, 11):
    os.write(1, ("V%d.%d\n" % sys.version_info[:2]).encode())
    sys.exit(1)
sha, size, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def good(p):
    try:
        with open(p, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest() == sha
    except OSError:
        return False
d = os.environ.get("CTRFS_BOOT_DIR") or "/ctrfs"
if not os.access(d, os.W_OK):
    d = tempfile.gettempdir()
path = os.path.join(d, "ctrfs-%s.pyz" % sha)
if not good(path):
    os.write(1, b"S")
    data = bytearray()
    while len(data) < size:
        chunk = os.read(0, min(size - len(data), 1 << 20))
        if not chunk:
            break
        data += chunk
    if hashlib.sha256(data).hexdigest() != sha:
        os.write(2, b"ctrfs: the ctrfs.pyz sent to the node arrived incomplete\n")
        sys.exit(1)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)
os.write(1, b"R")
import signal, threading
pid = os.fork()
if pid == 0:
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.execv(sys.executable, [sys.executable, "-I", "-S", path] + args)
os.close(1)
def watch():
    while os.read(0, 65536):
        pass
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        pass
threading.Thread(target=watch, daemon=True).start()
code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
os._exit(128 - code if code < 0 else code)
"""

# The node pod's main process: it only has to stay alive (and refuse an old Python early, exit
# status 97, so the plugin can say so). PID 1 ignores SIGTERM unless it handles it, which would
# make every pod deletion wait out the grace period.
SLEEPER = (
    "import signal, sys\n"
    "if sys.version_info < (3, 11): sys.exit(97)\n"
    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
    "while True: signal.pause()\n"
)
SLEEPER_OLD_PYTHON = 97
