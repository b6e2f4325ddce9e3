"""The completion protocol without containers: words, shell quoting, commands and options."""

from __future__ import annotations

from ctrfs.cli.complete import Candidate, candidates, render, words_of_line
from ctrfs.cli.main import COMMANDS
from ctrfs.runtimes.base import Roots


def test_words_of_a_partial_line() -> None:
    assert words_of_line("ctrfs ls ") == ["ctrfs", "ls", ""]
    assert words_of_line("ctrfs ls web:/e") == ["ctrfs", "ls", "web:/e"]
    assert words_of_line("ctrfs cat 'web:/my fi") == ["ctrfs", "cat", "web:/my fi"]  # open quote
    assert words_of_line("ctrfs cat web:/my\\ fi") == ["ctrfs", "cat", "web:/my fi"]


def test_bash_replies_replace_the_text_after_the_last_colon_and_are_escaped() -> None:
    cands = [Candidate("web:/srv/with space/", final=False), Candidate("web:/srv/a&b")]
    assert render("bash", cands, "web:/srv/w") == "/srv/with\\ space/\n/srv/a\\&b \n"
    # a name that cannot be typed back (newline, escape) is not offered
    assert render("bash", [Candidate("web:/x\ny")], "web:/") == ""
    assert render("zsh", cands, "web:/srv/w") == "web:/srv/with space/\t-\nweb:/srv/a&b\n"


def test_commands_and_options_come_from_the_parsers() -> None:
    got = [c.text for c in candidates(["ctrfs", ""], Roots())]
    assert got == sorted(n for n in COMMANDS if not n.startswith("_"))
    assert [c.text for c in candidates(["ctrfs", "la"], Roots())] == ["layers"]
    opts = {c.text for c in candidates(["ctrfs", "layers", "--"], Roots())}
    assert {"--json", "--no-count", "--help"} <= opts
    assert [c.text for c in candidates(["ctrfs", "diff", "--semantics", "p"], Roots())] == ["podman"]
    assert [c.text for c in candidates(["ctrfs", "completion", ""], Roots())] == ["bash", "zsh", "fish"]
    # a global option's value is a host directory: left to the shell
    assert candidates(["ctrfs", "--proc", ""], Roots()) == []
    assert {c.text for c in candidates(["ctrfs", "--pr"], Roots())} == {"--proc"}
