"""app.quick_parse: for every command line of a hot command it gives exactly argparse's Namespace,
or declines (then argparse parses). Checked on generated command lines, against the very parser
``ctrfs`` builds from the same declarations."""

from __future__ import annotations

import contextlib
import importlib
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctrfs.cli import app
from ctrfs.cli.main import COMMANDS, build_parser, quick_namespace

HOT = sorted(app.QUICK_COMMANDS)
for _name in HOT:
    importlib.import_module(COMMANDS[_name])


def _words(name: str) -> list[str]:
    """Every flag the command declares, the words argparse treats specially, and values."""
    flags = [f for a in app.REGISTRY[name].args if isinstance(a, app.Arg) for f in a.flags
             if f.startswith("-")]
    special = ["-h", "--help", "--", "-", "-x", "--bogus", "--json=1", "-la", "-lR", "--debug",
               "--host-root", "--lines=3", "-n5", "-1", "-10M"]
    values = ["web", "web:/etc", "a b", "", "0", "3", "10", "auto", "docker", "moby-native", "git",
              "pid://1:/etc/passwd", "image://busybox:/bin", "ls", "cat"]
    return flags + special + values


def _argparse(argv: list[str]) -> dict[str, object] | None:
    """argparse's Namespace as a dict, or None where it would fail or print help."""
    parser = build_parser([argv[0]])
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            ns, extra = parser.parse_known_args(argv)
        except SystemExit:
            return None
    return None if extra else vars(ns)


@pytest.mark.parametrize("name", HOT)
@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_quick_parse_is_argparse_or_declines(name: str, data: st.DataObject) -> None:
    rest = data.draw(st.lists(st.sampled_from(_words(name)), max_size=6))
    argv = [name, *rest]
    quick = quick_namespace(argv)
    if quick is None:
        return
    assert vars(quick) == _argparse(argv), argv


@pytest.mark.parametrize("argv", [
    ["cat", "web:/etc/os-release"],
    ["cat", "a:/x", "b:/y", "c:/z"],
    ["ls", "-l", "-a", "web:/etc"],
    ["ls", "web:/etc", "-R", "--json"],
    ["stat", "-L", "web:/etc/passwd"],
    ["tail", "-n", "5", "-F", "web:/var/log/x"],
    ["ps"],
    ["ps", "-a", "--json"],
    ["inspect", "web", "--json"],
    ["diff", "web", "--semantics", "docker"],
    ["diff", "web", "other"],
])
def test_quick_parse_reads_the_usual_command_lines(argv: list[str]) -> None:
    quick = quick_namespace(argv)
    assert quick is not None and vars(quick) == _argparse(argv)


@pytest.mark.parametrize("argv", [
    ["cat"], ["ls", "-la", "web:/"], ["ls", "--help"], ["tail", "-n", "-1", "web:/x"],
    ["tail", "--lines=5", "web:/x"], ["diff", "--semantics", "git", "web"], ["cat", "a", "--json", "b"],
    ["stat", "web:/a", "web:/b"], ["ps", "--host-root", "/host"], ["--debug", "ps"], ["cp", "web:/a", "b"],
])
def test_quick_parse_leaves_the_rest_to_argparse(argv: list[str]) -> None:
    assert quick_namespace(argv) is None
