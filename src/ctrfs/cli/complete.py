"""Shell completion: the scripts ``ctrfs completion SHELL`` prints, and the candidates the
hidden ``ctrfs __complete`` command gives them.

Nothing is listed twice: commands come from ``main.COMMANDS``, a command's options, choices and
positional metavars from its argparse parser (only that command's module is imported),
containers from discovery (no daemon), paths inside a container from its Root (resolved with
the container root as ``/``, as every command does).
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import stat as stat_mod

from ctrfs._record import dataclass
from ctrfs.access import open_root
from ctrfs.cli import app
from ctrfs.cli.main import COMMANDS, GLOBAL_OPTIONS, build_parser
from ctrfs.discovery import discover
from ctrfs.errors import CtrfsError
from ctrfs.model import Container
from ctrfs.runtimes.base import Roots
from ctrfs.targets import resolve

MAX_CANDIDATES = 2000
SCHEMES = ("docker://", "podman://", "containerd://", "cri-o://", "runc://", "k8s://", "pid://")
_VALUE_FLAGS = {flag for flag, *_ in GLOBAL_OPTIONS}
# bash splits words at these characters of COMP_WORDBREAKS (its default set less quotes and
# spaces): the word it replaces starts after the last one.
_BASH_BREAKS = "=:><;|&("
_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/:@%+,=-~^")


@dataclass(frozen=True)
class Candidate:
    text: str
    final: bool = True  # a whole word: the shell adds a space after it (not after "dir/", "web:")


def candidates(words: list[str], roots: Roots) -> list[Candidate]:
    """What may replace the last of ``words`` (the command line, ``ctrfs`` first, the word
    under the cursor last, possibly empty)."""
    cur = words[-1] if len(words) > 1 else ""
    before = words[1:-1]
    i = 0
    while i < len(before):
        w = before[i]
        if w in _VALUE_FLAGS:
            i += 2
        elif w.startswith("-"):
            i += 1
        else:
            break
    if i >= len(before):
        if before and before[-1] in _VALUE_FLAGS:
            return []  # a host directory: the shell's own file completion
        if cur.startswith("-"):
            flags = [f for f, *_ in GLOBAL_OPTIONS] + ["--debug", "--version", "--help"]
            return [Candidate(f) for f in flags if f.startswith(cur)]
        return [Candidate(n) for n in sorted(COMMANDS) if not n.startswith("_")
                and n.startswith(cur)]
    name, rest = before[i], before[i + 1:]
    parser = _command_parser(name)
    if parser is None:
        return []
    options = {s: a for a in parser._actions for s in a.option_strings}
    if rest and rest[-1] in options and options[rest[-1]].nargs != 0:
        choices = options[rest[-1]].choices
        return [Candidate(str(c)) for c in choices or () if str(c).startswith(cur)]
    if cur.startswith("-"):
        return [Candidate(s) for s in sorted(options) if s.startswith(cur)]
    action = _positional(parser, rest, options)
    if action is None:
        return []
    if action.choices:
        return [Candidate(str(c)) for c in action.choices if str(c).startswith(cur)]
    metavar = str(action.metavar or "")
    if "TARGET" not in metavar:
        return []
    return complete_target(cur, roots, with_path=metavar.startswith("TARGET:"))


def _command_parser(name: str) -> argparse.ArgumentParser | None:
    module = COMMANDS.get(name)
    if module is None:
        return None
    try:
        importlib.import_module(module)
    except ImportError:  # a command module that cannot load completes nothing, never a traceback
        return None
    if name not in app.REGISTRY:
        return None
    parser = build_parser([name])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _positional(parser: argparse.ArgumentParser, rest: list[str],
                options: dict[str, argparse.Action]) -> argparse.Action | None:
    """The positional argument the next word fills, counting the words already given."""
    given = 0
    skip = False
    for w in rest:
        if skip:
            skip = False
        elif w in options:
            skip = options[w].nargs != 0
        elif w == "--" or not w.startswith("-"):
            given += 1
    for a in parser._actions:
        if a.option_strings or isinstance(a, argparse._SubParsersAction):
            continue
        if a.nargs in ("+", "*", argparse.REMAINDER):
            return a
        n = 1 if a.nargs in (None, "?") else int(a.nargs)
        if given < n:
            return a
        given -= n
    return None


def complete_target(cur: str, roots: Roots, *, with_path: bool = False) -> list[Candidate]:
    """Container names, ID prefixes, ``k8s://NS/POD`` and, after ``TARGET:``, paths."""
    scheme = ""
    rest = cur
    if "://" in cur:
        scheme, _, rest = cur.partition("://")
        scheme += "://"
    if ":" in rest:
        target, _, path = rest.partition(":")
        return _paths(scheme + target, path, roots)
    try:
        found = discover(roots, include_stopped=True)
    except CtrfsError:
        return []
    tail = "" if not with_path else ":"
    out: list[Candidate] = []
    if scheme == "k8s://":
        return _pods(rest, found)
    if scheme == "pid://":
        return [Candidate(f"pid://{c.pid}", final=not with_path) for c in found
                if c.pid and str(c.pid).startswith(rest)]
    if not scheme:
        out += [Candidate(s, final=False) for s in SCHEMES if s.startswith(cur)]
    runtime = scheme[:-3]
    seen: set[str] = set()
    for c in found:
        if runtime and runtime != "containerd" and c.runtime != runtime:
            continue
        if runtime == "containerd":
            if c.record.namespace is None:
                continue
            words = [f"{c.record.namespace}/{c.id}"]
        else:
            words = [c.name] if c.name else []
            words.append(c.id if len(rest) >= 12 else c.short_id)
        for w in words:
            if w and w.startswith(rest) and w not in seen:
                seen.add(w)
                out.append(Candidate(scheme + w + tail, final=not with_path))
    return out


def _pods(rest: str, found: list[Container]) -> list[Candidate]:
    parts = rest.split("/")
    out: set[tuple[str, bool]] = set()
    for c in found:
        p = c.pod
        if p is None or not p.name or p.is_sandbox:
            continue
        if len(parts) == 1:
            out.add((f"k8s://{p.namespace}/", False))
        elif len(parts) == 2 and p.namespace == parts[0]:
            out.add((f"k8s://{p.namespace}/{p.name}", True))
            out.add((f"k8s://{p.namespace}/{p.name}/", False))
        elif len(parts) == 3 and (p.namespace, p.name) == (parts[0], parts[1]) and p.container:
            out.add((f"k8s://{p.namespace}/{p.name}/{p.container}", True))
    return [Candidate(t, f) for t, f in sorted(out) if t.startswith("k8s://" + rest)]


def _paths(target: str, path: str, roots: Roots) -> list[Candidate]:
    if not path:
        path = "/"
    directory, _, prefix = path.rpartition("/")
    directory = directory or "/"
    try:
        container = resolve(target, roots)
        with open_root(container) as root:
            out = []
            for e in root.scandir(directory):
                if not e.name.startswith(prefix) or (e.name.startswith(".") and not prefix):
                    continue
                is_dir = e.is_dir()
                if e.is_symlink():
                    try:
                        is_dir = stat_mod.S_ISDIR(root.stat(e.path).st_mode)
                    except CtrfsError:
                        is_dir = False
                head = directory.rstrip("/") + "/"
                out.append(Candidate(f"{target}:{head}{e.name}" + ("/" if is_dir else ""),
                                     final=not is_dir))
                if len(out) >= MAX_CANDIDATES:
                    break
    except CtrfsError:
        return []
    return sorted(out, key=lambda c: c.text)


# -- shells -------------------------------------------------------------------------------

def bash_escape(word: str) -> str:
    return "".join(ch if ch in _SAFE else "\\" + ch for ch in word)


def words_of_line(line: str) -> list[str]:
    """The words of a partial command line as the shell will pass them (an open quote is
    closed; a trailing space starts an empty word)."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=False)
    lex.whitespace_split = True
    lex.commenters = ""
    words: list[str] = []
    try:
        for w in lex:
            words.append(w)
    except ValueError:  # no closing quotation: the rest of the line is the current word
        words.append(lex.token)
        return words
    if not line or line[-1].isspace():
        words.append("")
    return words


def render(shell: str, cands: list[Candidate], cur: str) -> str:
    """One candidate per line, in the form the shell's function expects."""
    if not cands:
        return ""
    lines = []
    if shell == "bash":
        cut = max((cur.rfind(b) for b in _BASH_BREAKS), default=-1) + 1
        strip = len(bash_escape(cur[:cut]))
        for c in cands:
            if any(ord(ch) < 0x20 for ch in c.text):
                continue  # a name with a newline or an escape cannot be typed back
            lines.append(bash_escape(c.text)[strip:] + (" " if c.final else ""))
    else:
        for c in cands:
            if any(ord(ch) < 0x20 for ch in c.text):
                continue
            lines.append(c.text + ("" if c.final else "\t-"))  # zsh/fish: "\t-" = no space
    return "".join(line + "\n" for line in lines)


BASH = r"""# ctrfs completion for bash: eval "$(ctrfs completion bash)" (e.g. in ~/.bashrc)
_ctrfs_complete() {
    local IFS=$'\n'
    COMPREPLY=($(command ctrfs __complete --shell bash --line "${COMP_LINE:0:$COMP_POINT}" \
                 2>/dev/null))
}
complete -o nospace -o default -F _ctrfs_complete ctrfs
"""

ZSH = r"""#compdef ctrfs
# ctrfs completion for zsh: eval "$(ctrfs completion zsh)" (after compinit, e.g. in ~/.zshrc)
_ctrfs() {
    local -a out
    local line
    out=("${(@f)$(command ctrfs __complete --shell zsh -- "${words[@]:0:$CURRENT}" 2>/dev/null)}")
    for line in "${out[@]}"; do
        [[ -z $line ]] && continue
        if [[ $line == *$'\t-' ]]; then
            compadd -S '' -- "${line%$'\t-'}"
        else
            compadd -- "$line"
        fi
    done
}
if (( $+functions[compdef] )); then
    compdef _ctrfs ctrfs
fi
"""

FISH = r"""# ctrfs completion for fish: ctrfs completion fish | source
#   (or: ctrfs completion fish > ~/.config/fish/completions/ctrfs.fish)
function __ctrfs_complete
    set -l words (commandline -opc) (commandline -ct)
    for line in (command ctrfs __complete --shell fish -- $words 2>/dev/null)
        echo (string replace -r '\t-$' '' -- $line)
    end
end
complete -c ctrfs -f -a '(__ctrfs_complete)'
"""

SCRIPTS = {"bash": BASH, "zsh": ZSH, "fish": FISH}


def cursor_word(words: list[str]) -> str:
    return words[-1] if words else ""


def complete_line(shell: str, line: str | None, words: list[str], roots: Roots) -> str:
    if line is not None:
        words = words_of_line(line)
    if not words:
        words = ["ctrfs", ""]
    words = [os.path.basename(words[0]) or "ctrfs", *words[1:]]
    if len(words) == 1:
        words.append("")
    return render(shell, candidates(words, roots)[:MAX_CANDIDATES], cursor_word(words))
