"""The command framework: one definition of each command, parsed by the standard library.

A command module declares each command once::

    @command("cat", "Print files inside a container.", EXAMPLES,
             arg("specs", nargs="+", metavar="TARGET:PATH"),
             JSON)
    def cat_cmd(args: Namespace, state: State) -> int | None: ...

``main`` imports only the module of the command being run and builds only that command's parser,
so ``ctrfs cat`` pays for neither the other commands nor a CLI library: argparse and this module
are the whole framework (`make bench BENCH_ARGS=startup` measures what a start costs).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from ctrfs.runtimes.base import Roots

Handler = Callable[[argparse.Namespace, "State"], "int | None"]


class State:
    """Options given before the command (``--host-root``, ``--debug``, …)."""

    __slots__ = ("_roots", "debug", "host_root", "overrides")

    def __init__(self, host_root: str | None, overrides: dict[str, str], debug: bool) -> None:
        self.host_root = host_root
        self.overrides = overrides
        self.debug = debug
        self._roots: Roots | None = None

    @property
    def roots(self) -> Roots:
        """Where ctrfs looks; built on first use so that ``--version`` imports nothing."""
        if self._roots is None:
            from ctrfs._record import replace
            from ctrfs.runtimes.base import Roots

            base = Roots.under(self.host_root) if self.host_root else Roots()
            overrides: dict[str, Any] = self.overrides  # only str fields are overridden
            self._roots = replace(base, **overrides) if overrides else base
        return self._roots


class Arg:
    """One ``add_argument`` call, kept until the command's parser is built."""

    __slots__ = ("flags", "kwargs")

    def __init__(self, flags: tuple[str, ...], kwargs: dict[str, Any]) -> None:
        self.flags = flags
        self.kwargs = kwargs


def arg(*flags: str, **kwargs: Any) -> Arg:
    """The arguments of ``ArgumentParser.add_argument``."""
    return Arg(flags, kwargs)


class Group:
    """Arguments of which at most one may be given (``add_mutually_exclusive_group``)."""

    __slots__ = ("args",)

    def __init__(self, *args: Arg) -> None:
        self.args = args


JSON = arg("--json", dest="as_json", action="store_true", help="machine-readable JSON output")


def natural(text: str) -> int:
    """An ``int`` ≥ 0 (``tail -n``, ``find --maxdepth``)."""
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return n


class Command:
    __slots__ = ("add_help", "args", "epilog", "func", "help", "name")

    def __init__(self, name: str, help: str, epilog: str, args: tuple[Arg | Group, ...],  # noqa: A002
                 func: Handler, add_help: bool = True) -> None:
        self.name = name
        self.help = help
        self.epilog = epilog
        self.args = args
        self.func = func
        self.add_help = add_help

    @property
    def summary(self) -> str:
        """The first paragraph of the help: the line in ``ctrfs --help``'s command list."""
        return " ".join(self.help.split("\n\n", 1)[0].split())

    def build(self, parser: argparse.ArgumentParser) -> None:
        if not self.add_help:  # the command uses -h itself (du -h): --help alone shows help
            parser.add_argument("--help", action="help", help="show this help message and exit")
        for a in self.args:
            if isinstance(a, Group):
                g = parser.add_mutually_exclusive_group()
                for member in a.args:
                    g.add_argument(*member.flags, **member.kwargs)
            else:
                parser.add_argument(*a.flags, **a.kwargs)
        parser.set_defaults(_handler=self.func)


REGISTRY: dict[str, Command] = {}


def command(name: str, help: str, epilog: str, *args: Arg | Group,  # noqa: A002
            add_help: bool = True) -> Callable[[Handler], Handler]:
    """Register a command: its help (first paragraph: the one-line summary), its examples (shown
    verbatim) and its arguments. ``add_help=False`` leaves ``-h`` to the command (``du -h``)."""

    def register(func: Handler) -> Handler:
        REGISTRY[name] = Command(name, help.strip("\n"), epilog.strip("\n"), args, func, add_help)
        return func

    return register


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
