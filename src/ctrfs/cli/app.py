"""The command framework: one definition of each command, parsed by the standard library.

A command module declares each command once::

    @command("cat", "Print files inside a container.", EXAMPLES,
             arg("specs", nargs="+", metavar="TARGET:PATH"),
             JSON)
    def cat_cmd(args: Namespace, state: State) -> int | None: ...

``main`` imports only the module of the command being run and builds only that command's parser,
so ``ctrfs cat`` pays for neither the other commands nor a CLI library: argparse
(:mod:`ctrfs.cli.argparsing`) and this module are the whole framework (`make bench
BENCH_ARGS=startup` measures what a start costs).

:func:`quick_parse` reads the simplest command lines of a few hot commands from the same
declarations without argparse, and declines everything else (argparse then parses, reports the
error or prints the help): one definition of each command's options, two readers of it.
tests/unit/test_quick_parse.py checks that it gives argparse's answer or none.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from ctrfs.runtimes.base import Roots

Handler = Callable[["argparse.Namespace", "State"], "int | None"]


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
        import argparse  # only for the error: argparse is then parsing (quick_parse declines)

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


# What quick_parse reads: the declarations of these commands' options are plain enough (flags,
# options with one value, positionals), and they are the ones whose start-up is budgeted.
QUICK_COMMANDS = frozenset({"cat", "diff", "inspect", "ls", "ps", "stat", "tail"})
_FLAG_KEYS = frozenset({"action", "dest", "help"})
_OPTION_KEYS = frozenset({"dest", "help", "metavar", "default", "type", "choices"})
_POSITIONAL_KEYS = frozenset({"nargs", "metavar", "help"})


def _option_dest(flags: tuple[str, ...], kwargs: dict[str, Any]) -> str:
    """argparse's dest: given, else the first long flag (else the first), dashes to '_'."""
    if "dest" in kwargs:
        return str(kwargs["dest"])
    longs = [f for f in flags if f.startswith("--")]
    return (longs or list(flags))[0].lstrip("-").replace("-", "_")


def quick_parse(cmd: Command, argv: list[str]) -> SimpleNamespace | None:
    """The command's own attributes argparse would give for ``argv`` (the words after the command's
    name, nothing before it), or None at any doubt, argparse's to parse then.

    Read: flags (``store_true``), options taking the next word as their value (``type`` and
    ``choices`` applied), positionals (one word, ``?`` or ``+`` last), positional words in one
    run. Declined: any other kind of declaration, a word starting with ``-`` that is not a flag
    or option named exactly (``-h``, ``--``, ``-la``, ``--lines=5``, ``-1``), an option value
    starting with ``-``, positionals split by an option, a word count the positionals do not
    take, a value its type or choices refuse."""
    if cmd.name not in QUICK_COMMANDS or not cmd.add_help:
        return None
    values: dict[str, Any] = {"_handler": cmd.func}
    named: dict[str, tuple[str, Arg | None]] = {}  # flag → (dest, Arg taking a value, else None)
    positionals: list[Arg] = []
    for a in cmd.args:
        if isinstance(a, Group):
            return None
        kw = a.kwargs
        if not a.flags[0].startswith("-"):
            if set(kw) - _POSITIONAL_KEYS or kw.get("nargs") not in (None, "?", "+"):
                return None
            positionals.append(a)
            continue
        dest = _option_dest(a.flags, kw)
        if kw.get("action") == "store_true" and not set(kw) - _FLAG_KEYS:
            values[dest] = False
            named.update((f, (dest, None)) for f in a.flags)
        elif "action" not in kw and not set(kw) - _OPTION_KEYS and not (
                "type" in kw and isinstance(kw.get("default"), str)):  # argparse converts those
            values[dest] = kw.get("default")
            named.update((f, (dest, a)) for f in a.flags)
        else:
            return None
    if any(p.kwargs.get("nargs") is not None for p in positionals[:-1]):
        return None
    words: list[str] = []
    after_words = False  # an option came after positional words: argparse splits them
    i = 0
    while i < len(argv):
        w = argv[i]
        i += 1
        if not w.startswith("-"):
            if after_words:
                return None
            words.append(w)
            continue
        if w not in named:
            return None
        after_words = bool(words)
        dest, takes = named[w]
        if takes is None:
            values[dest] = True
            continue
        if i >= len(argv) or argv[i].startswith("-"):
            return None
        raw = argv[i]
        i += 1
        convert = takes.kwargs.get("type")
        try:
            value = convert(raw) if convert is not None else raw
        except Exception:  # noqa: BLE001 - any refusal is argparse's to report
            return None
        if "choices" in takes.kwargs and value not in takes.kwargs["choices"]:
            return None
        values[dest] = value
    last = positionals[-1].kwargs.get("nargs") if positionals else None
    fixed = len(positionals) - (last is not None)
    most = {None: fixed, "?": fixed + 1, "+": len(words)}[last]
    least = fixed + (last == "+")
    if not least <= len(words) <= most:
        return None
    for p, w in zip(positionals[:fixed], words, strict=False):
        values[p.flags[0]] = w
    if last == "+":
        values[positionals[-1].flags[0]] = words[fixed:]
    elif last == "?":
        values[positionals[-1].flags[0]] = words[fixed] if len(words) > fixed else None
    return SimpleNamespace(**values)
