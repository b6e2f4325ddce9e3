"""``ctrfs completion bash|zsh|fish`` and the hidden ``ctrfs __complete`` its scripts call."""

from __future__ import annotations

import sys
from argparse import SUPPRESS, Namespace

from ctrfs.cli.app import JSON, State, arg, command
from ctrfs.cli.common import emit_json
from ctrfs.cli.complete import SCRIPTS, complete_line


@command("completion", "Print a shell completion script (commands, options, containers, paths).",
         """
The script completes command names and options, container names and ID prefixes of every
runtime, k8s://NAMESPACE/POD, and paths inside a container after TARGET: (listed with the
container root as /). It calls `ctrfs __complete` for the candidates, so it stays current.

Examples:
  ctrfs completion bash > /etc/bash_completion.d/ctrfs   or eval "$(ctrfs completion bash)"
  ctrfs completion zsh > ~/.zfunc/_ctrfs                 or eval it in ~/.zshrc after compinit
  ctrfs completion fish > ~/.config/fish/completions/ctrfs.fish
  ctrfs completion --json bash                          {"shell": "bash", "script": "..."}
""",
    arg("shell", choices=("bash", "zsh", "fish"), help="the shell to complete for"),
    JSON)
def completion_cmd(args: Namespace, state: State) -> None:
    if args.as_json:
        emit_json({"shell": args.shell, "script": SCRIPTS[args.shell]})
        return
    sys.stdout.write(SCRIPTS[args.shell])


@command("__complete", "Candidates for the word under the cursor (used by the completion scripts).",
         """
Examples:
  ctrfs __complete --shell bash --line 'ctrfs ls web:/e'
  ctrfs __complete --shell zsh -- ctrfs ls web:/e
""",
    arg("--shell", choices=("bash", "zsh", "fish"), default="bash", help=SUPPRESS),
    arg("--line", default=None, help=SUPPRESS),
    arg("words", nargs="*", help=SUPPRESS))
def complete_cmd(args: Namespace, state: State) -> None:
    sys.stdout.write(complete_line(args.shell, args.line, list(args.words), state.roots))
