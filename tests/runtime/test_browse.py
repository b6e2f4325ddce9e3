"""ctrfs browse on real containers, driven by Textual's headless Pilot (and once in real tmux).

The container runs the multi-layer busybox image (tests/harness.py MULTILAYER_LAYERS) with a
script that makes a FIFO, writes a file, fills a directory to copy out and appends a numbered
line to a log every 0.2 s. What the UI shows is compared with docker (exec cat, diff, cp).
"""

from __future__ import annotations

import asyncio
import filecmp
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import harness
from harness import RunningContainer

pytestmark = [pytest.mark.docker, pytest.mark.root]

SCRIPT = (
    "mkfifo /tmp/fifo && printf 'written by the container\\n' > /written.txt"
    " && mkdir -p /srv/copyme/sub && printf 'a\\n' > /srv/copyme/a && ln -s a /srv/copyme/link"
    " && printf 'b\\n' > /srv/copyme/sub/b && chmod 640 /srv/copyme/sub/b"
    " && printf 'needle in a haystack\\n' > /srv/copyme/sub/hay"
    " && i=0; while :; do i=$((i+1)); echo \"line $i\" >> /var/log/app.log; sleep 0.2; done"
)
SIZE = (170, 50)


@pytest.fixture(scope="module")
def browsed() -> Iterator[RunningContainer]:
    harness.sweep_stale()
    with harness.run_docker(harness.multilayer_image(), cmd=["sh", "-c", SCRIPT]) as c:
        harness.wait_for_log(c.pid)
        yield c


def _session(c: RunningContainer) -> Any:
    from ctrfs.browse.model import Session
    from ctrfs.targets import resolve

    return Session.open(resolve(c.name))


def _drive(c: RunningContainer, body: Callable[[Any, Any], Any]) -> None:
    """Run ``body(app, pilot)`` (a coroutine function) against a fresh app on ``c``."""
    from ctrfs.browse.app import BrowseApp

    session = _session(c)

    async def main() -> None:
        app = BrowseApp(session)
        async with app.run_test(size=SIZE) as pilot:
            await body(app, pilot)
            await pilot.press("q")
        assert app.return_value == 0

    try:
        asyncio.run(main())
    finally:
        session.close()


async def _until(pilot: Any, pred: Callable[[], Any], what: str, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


def _nodes(app: Any) -> Iterator[Any]:
    tree = app.query_one("#tree")
    stack = [tree.root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.children)


def _node(app: Any, path: str) -> Any:
    return next((n for n in _nodes(app) if n.data is not None and n.data.path == path), None)


async def _goto(app: Any, pilot: Any, path: str) -> Any:
    """Move the tree cursor to ``path`` (its parents expanded with Enter, as a user would)."""
    tree = app.query_one("#tree")
    tree.focus()
    parts = [p for p in path.split("/") if p]
    for i in range(1, len(parts) + 1):
        sub = "/" + "/".join(parts[:i])
        node = await _until(pilot, lambda s=sub: _node(app, s), f"{sub} in the tree")
        # a node's line is known once the tree has rebuilt its lines (on idle)
        await _until(pilot, lambda n=node: tree.move_cursor(n) or tree.cursor_node is n,
                     f"the cursor on {sub}")
        await pilot.pause()
        if i < len(parts) and not node.is_expanded:
            await pilot.press("enter")
    await _until(pilot, lambda: app.selected is not None and app.selected.path == path,
                 f"{path} selected")
    return _node(app, path)


def _label(app: Any, node: Any) -> str:
    """The tree line of ``node`` as drawn (the expand icon aside)."""
    return app.query_one("#tree").label_of(node).plain


def _lowers(c: RunningContainer) -> int:
    return len(harness.out("docker", "inspect", "-f", "{{.GraphDriver.Data.LowerDir}}",
                           c.id).split(":"))


def test_etc_os_release_layer_mark_preview(browsed: RunningContainer) -> None:
    expected = harness.out("docker", "exec", browsed.id, "cat", "/etc/os-release") + "\n"
    # os-release comes from the base (busybox) image layer: the lowest lower dir. Index 0 is the
    # upper dir, so the base layer's index is the number of lower dirs.
    base = f"L{_lowers(browsed)}"

    async def body(app: Any, pilot: Any) -> None:
        node = await _goto(app, pilot, "/etc/os-release")
        label = _label(app, node)
        assert re.match(rf"^  os-release\s+{base}\s+-rw-r--r-- root:root\s+\d+$", label), label
        await _until(pilot, lambda: app.preview_text == expected, "the preview of os-release")
        assert f"from layer {base}" in app.info_text

    _drive(browsed, body)


def test_marks_match_docker_diff(browsed: RunningContainer) -> None:
    diff = dict(line.split(" ", 1)[::-1] for line in
                harness.out("docker", "diff", browsed.id).splitlines())
    assert diff["/written.txt"] == "A"

    async def body(app: Any, pilot: Any) -> None:
        node = await _until(pilot, lambda: _node(app, "/written.txt"), "/written.txt")
        await _until(pilot, lambda: re.match(r"A written\.txt\s+upper ", _label(app, node)),
                     "the A mark on /written.txt")
        for path in ("/tmp", "/var"):
            row = _node(app, path).data
            assert row.mark == diff[path] == "C"
        # nothing the container did not change carries a mark
        for n in _nodes(app):
            if n.data is not None and n.data.path not in diff and n.data.path != "/":
                assert _label(app, n)[0] == " ", _label(app, n)

    _drive(browsed, body)


def test_layer_panel_lists_only_that_layers_files(browsed: RunningContainer) -> None:
    top_image = harness.MULTILAYER_LAYERS[-1]  # the image's top layer: index 2 (upper, init)
    want = set(top_image["files"]) | set(top_image["whiteouts"]) | set(top_image["opaque"])

    async def body(app: Any, pilot: Any) -> None:
        table = app.query_one("#layers")
        await _until(pilot, lambda: table.row_count > 2, "the layers panel")
        table.focus()
        index = next(i for i in range(table.row_count)
                     if str(table.get_row_at(i)[0]) == "2")
        table.move_cursor(row=index)
        await pilot.press("enter")
        lst = app.query_one("#list")
        await _until(pilot, lambda: lst.display and lst.row_count > 0, "the layer's file list")
        rows = [lst.get_row_at(i) for i in range(lst.row_count)]
        shown = {(str(r[0]), str(r[1])) for r in rows}
        assert {p for _, p in shown} == want
        assert ("C", "/data/a.txt") in shown and ("D", "/gone.txt") in shown
        assert ("D", "/olddir") in shown and ("A", "/olddir/new") in shown
        assert not app.query_one("#tree").display
        await pilot.press("escape")
        assert app.query_one("#tree").display

    _drive(browsed, body)


def test_fifo_refused_in_preview(browsed: RunningContainer) -> None:
    async def body(app: Any, pilot: Any) -> None:
        await _goto(app, pilot, "/tmp/fifo")
        await _until(pilot, lambda: "fifo: not opened" in app.preview_text, "the refusal")

    _drive(browsed, body)
    # The FIFO was never opened: a writer would now find no reader and fail at once.
    res = harness.run("docker", "exec", browsed.id, "sh", "-c",
                      "exec 3<>/tmp/fifo; echo ok", check=False)
    assert res.returncode == 0


def test_follow_shows_a_new_line(browsed: RunningContainer) -> None:
    async def body(app: Any, pilot: Any) -> None:
        await _goto(app, pilot, "/var/log/app.log")
        await pilot.press("f")
        last = int(harness.out("docker", "exec", browsed.id, "tail", "-n", "1",
                               "/var/log/app.log").split()[1])
        await _until(pilot, lambda: f"line {last + 1}\n" in app.preview_text,
                     f"line {last + 1} in the follow pane")
        assert app.query_one("#follow").display
        await pilot.press("f")
        assert app.following is None

    _drive(browsed, body)


def test_copy_out_equals_ctrfs_cp_and_docker_cp(browsed: RunningContainer, tmp_path: Path) -> None:
    dest = tmp_path / "copied"
    peer = tmp_path / "peer"
    by_cli = tmp_path / "ctrfs-cp"
    harness.run("docker", "cp", f"{browsed.id}:/srv/copyme", str(peer))
    harness.ctrfs("cp", f"{browsed.name}:/srv/copyme", str(by_cli))

    async def body(app: Any, pilot: Any) -> None:
        await _goto(app, pilot, "/srv/copyme")
        await pilot.press("c")
        prompt = app.query_one("#prompt")
        assert prompt.display and prompt.value.endswith("/copyme")
        prompt.value = ""
        await pilot.press(*str(dest))
        await pilot.press("enter")
        await _until(pilot, lambda: dest.exists(), "the copy")

    _drive(browsed, body)
    _same_tree(dest, by_cli)
    _same_tree(dest, peer)


def _same_tree(a: Path, b: Path) -> None:
    names_a = sorted(str(p.relative_to(a)) for p in a.rglob("*"))
    names_b = sorted(str(p.relative_to(b)) for p in b.rglob("*"))
    assert names_a == names_b
    for rel in names_a:
        pa, pb = a / rel, b / rel
        sa, sb = pa.lstat(), pb.lstat()
        assert (sa.st_mode, sa.st_uid, sa.st_gid) == (sb.st_mode, sb.st_uid, sb.st_gid), rel
        if pa.is_symlink():
            assert os.readlink(pa) == os.readlink(pb)
        elif pa.is_file():
            assert filecmp.cmp(pa, pb, shallow=False), rel


def test_grep_below_directory(browsed: RunningContainer) -> None:
    async def body(app: Any, pilot: Any) -> None:
        await _goto(app, pilot, "/srv/copyme")
        await pilot.press("g")
        await pilot.press(*"needle")
        await pilot.press("enter")
        lst = app.query_one("#list")
        await _until(pilot, lambda: app.list_mode == "grep" and lst.row_count > 0, "grep hits")
        assert [(str(r[0]), str(r[1])) for r in (lst.get_row_at(i) for i in range(lst.row_count))] \
            == [("/srv/copyme/sub/hay", "1: needle in a haystack")]

    _drive(browsed, body)


def test_stopped_while_browsing_keeps_the_tree() -> None:
    harness.sweep_stale()
    with harness.run_docker(harness.busybox_image()) as c:
        async def body(app: Any, pilot: Any) -> None:
            await _goto(app, pilot, "/etc/passwd")
            before = sum(1 for _ in _nodes(app))
            harness.run("docker", "kill", c.id)
            banner = app.query_one("#banner")
            await _until(pilot, lambda: banner.display, "the 'container stopped' banner")
            assert "stopped" in str(banner.render()).lower()
            assert "STOPPED" in app.sub_title
            assert sum(1 for _ in _nodes(app)) == before

        _drive(c, body)


def test_stopped_container_offline(tmp_path: Path) -> None:
    harness.sweep_stale()
    name = harness.unique_name("ctrfs-browse-")
    try:
        harness.run("docker", "run", "--name", name, "--network", "none", "--label",
                    harness._owner_label(), harness.multilayer_image(), "sh", "-c",
                    "printf 'gone soon\\n' > /offline.txt")
        stopped = RunningContainer(runtime="docker", id=name, name=name, pid=0,
                                   image="", target=name)

        async def body(app: Any, pilot: Any) -> None:
            assert "stopped" in app.sub_title
            node = await _goto(app, pilot, "/offline.txt")
            assert re.match(r"A offline\.txt\s+upper ", _label(app, node)), _label(app, node)
            await _until(pilot, lambda: app.preview_text == "gone soon\n", "offline preview")

        _drive(stopped, body)
    finally:
        harness.run("docker", "rm", "-f", name, check=False)


def test_browse_in_tmux(browsed: RunningContainer) -> None:
    sock = f"ctrfs-browse-{os.getpid()}"
    ctrfs = shutil.which("ctrfs", path=os.path.dirname(sys.executable))
    assert ctrfs is not None
    shell = (f"{ctrfs} browse {browsed.name}; echo EXIT=$?; stty -a | tr ' ;' '\\n\\n' "
             "| grep -x -e icanon -e echo -e -icanon -e -echo; sleep 120")
    tmux = ["tmux", "-L", sock, "-f", "/dev/null"]
    # tmux's default window, 80x24: the names must show on a small terminal too
    harness.run(*tmux, "new-session", "-d", "sh", "-c", shell)
    try:
        def screen() -> str:
            return harness.out(*tmux, "capture-pane", "-p")

        try:
            harness.wait_until(lambda: " bin " in screen() and "wasted space" in screen(),
                               "the first screen with the layers panel", timeout=20)
        except TimeoutError as err:
            raise AssertionError(f"{err}; the screen:\n{screen()}") from err
        assert f"ctrfs browse — {browsed.name}" in screen()
        harness.run(*tmux, "send-keys", "?")
        harness.wait_until(lambda: "Keys" in screen() and "copy the selection out" in screen(),
                           "the help screen")
        harness.run(*tmux, "send-keys", "Escape")
        harness.wait_until(lambda: "Keys" not in screen(), "help closed")
        harness.run(*tmux, "send-keys", "q")
        after = harness.wait_until(lambda: "EXIT=" in screen() and screen(), "exit", timeout=20)
        lines = after.split()
        assert "EXIT=0" in lines
        # the terminal is back in cooked mode with echo, and the UI is gone from the screen
        assert "icanon" in lines and "echo" in lines
        assert "-icanon" not in lines and "-echo" not in lines
        assert "ctrfs browse —" not in after
    finally:
        subprocess.run([*tmux, "kill-server"], check=False)
        harness.remove_tmux_socket(sock)


def test_mouse_expands_and_picks_a_layer(browsed: RunningContainer) -> None:
    async def body(app: Any, pilot: Any) -> None:
        tree = app.query_one("#tree")
        etc = await _until(pilot, lambda: _node(app, "/etc"), "/etc")
        await _until(pilot, lambda: etc.line >= 0 and tree._tree_lines, "the tree's lines")
        # a click on a directory's expand icon opens it
        await pilot.click("#tree", offset=(4 + 1, etc.line - int(tree.scroll_y)))
        await _until(pilot, lambda: _node(app, "/etc/os-release"), "/etc listed after a click")
        table = app.query_one("#layers")
        await _until(pilot, lambda: table.row_count > 2, "the layers panel")
        # rows start under the header line; row 3 is layer 2 ("*" first)
        await pilot.click("#layers", offset=(2, 1 + 3))
        await pilot.click("#layers", offset=(2, 1 + 3))
        lst = app.query_one("#list")
        await _until(pilot, lambda: app.list_mode == "layer" and lst.row_count > 0,
                     "the layer's files after a click")

    _drive(browsed, body)


def test_filter_by_name(browsed: RunningContainer) -> None:
    async def body(app: Any, pilot: Any) -> None:
        await _goto(app, pilot, "/etc/os-release")
        await pilot.press("slash")
        await pilot.press(*"pass")
        await pilot.press("enter")

        def etc_names() -> list[str] | None:
            etc = _node(app, "/etc")
            if etc is None or not etc.children:
                return None
            return sorted(c.data.name for c in etc.children if c.data is not None)

        await _until(pilot, lambda: etc_names() == ["passwd"], "only passwd under /etc")
        root_dirs = {c.data.name for c in app.query_one("#tree").root.children}
        assert {"etc", "bin", "var"} <= root_dirs and "written.txt" not in root_dirs
        await pilot.press("slash")
        app.query_one("#prompt").value = ""
        await pilot.press("enter")
        await _until(pilot, lambda: (etc_names() or []).count("os-release") == 1, "all again")

    _drive(browsed, body)


def test_json_and_no_terminal(browsed: RunningContainer) -> None:
    import json

    doc = json.loads(harness.ctrfs("browse", "--json", browsed.name).stdout)
    rows = {e["path"]: e for e in doc["entries"]}
    assert rows["/written.txt"]["mark"] == "A" and rows["/written.txt"]["layer_label"] == "upper"
    assert rows["/etc"]["type"] == "d" and rows["/proc"]["mount_point"] is True
    assert doc["wasted"] == sum(la["wasted"] for la in doc["layers"]) > 0
    etc = json.loads(harness.ctrfs("browse", "--json", f"{browsed.name}:/etc").stdout)
    assert {e["name"] for e in etc["entries"]} >= {"os-release", "passwd", "group"}
    # without a terminal and without --json: a one-line usage error, exit 2
    res = harness.ctrfs("browse", browsed.name, check=False)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "needs a terminal" in res.stderr
    res = harness.ctrfs("browse", f"{browsed.name}:/etc/passwd", "--json", check=False)
    assert res.returncode == 1 and "not a directory" in res.stderr
