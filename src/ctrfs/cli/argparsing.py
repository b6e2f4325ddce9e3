"""The argparse side of the command framework: the parser classes ``main.build_parser`` uses.

Kept apart from :mod:`ctrfs.cli.app` so that a hot command's simple command line, which
``app.quick_parse`` reads from the same declarations, starts without argparse (and the gettext
and locale it loads: ~8 ms of CPU with building the parser, README "Development").
"""

from __future__ import annotations

import argparse
import os
import re
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn


def _terminal_width() -> int:
    """What ``shutil.get_terminal_size`` answers ($COLUMNS, else stdout's terminal, else 80),
    without importing shutil and the compression modules it pulls in."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 80
    return columns


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples shown as written. argparse builds a formatter for every ``add_argument`` (to check
    the metavar), and its default one imports shutil for the width: ~3 ms of every start."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         _terminal_width() - 2 if width is None else width)


class Parser(argparse.ArgumentParser):
    """argparse with examples shown as written, no abbreviated options (``--rec`` is not
    ``--recursive``: a later option must not change what an old script means), and a usage
    error as one line on stderr with exit status 2."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(**kwargs)
        self.commands: dict[str, Parser] = {}  # the subcommand parsers built (top level only)
        # A word starting with '-' and a digit is a value, not an option: `find --size -10M`,
        # `--mmin -5` (argparse alone takes only plain negative numbers so, and refuses "-10M").
        # No ctrfs option looks like "-<digit>", so nothing is lost.
        self._negative_number_matcher = re.compile(r"-\d")

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")
