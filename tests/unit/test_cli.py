"""The command line itself: help, usage errors, --version, global options (ctrfs run as a process)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from ctrfs._version import __version__
from ctrfs.cli.main import COMMANDS
from harness import ctrfs


def _one_line_usage_error(res: subprocess.CompletedProcess[str], command: str) -> str:
    """A usage error as DESIGN wants it: exit 2, nothing on stdout, one line on stderr naming the
    command, no traceback."""
    assert res.returncode == 2, res
    assert res.stdout == ""
    assert res.stderr.count("\n") == 1 and res.stderr.endswith("\n"), res.stderr
    assert res.stderr.startswith(f"ctrfs {command}: " if command else "ctrfs: "), res.stderr
    assert "Traceback" not in res.stderr
    return res.stderr


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help_ending_with_its_examples(name: str) -> None:
    res = ctrfs(name, "--help")
    assert res.returncode == 0 and res.stderr == ""
    out = res.stdout
    assert out.startswith(f"usage: ctrfs {name} ")
    head, sep, examples = out.partition("\nExamples:\n")
    assert sep, out
    # the examples come last (nothing of the options list after them) and show this command
    assert "--help" in head and "--help" not in examples and "options:" not in examples
    assert examples.splitlines()[0].startswith(f"  ctrfs {name}")
    assert examples.count(f"ctrfs {name}") >= 2


def test_top_level_help_lists_every_command() -> None:
    out = ctrfs("--help").stdout
    listed = {line.split()[0] for line in out.split("\ncommands:\n")[1].split("\nExamples:")[0]
              .splitlines()[1:] if line.startswith("    ") and not line.startswith("     ")}
    assert listed == {n for n in COMMANDS if not n.startswith("_")}  # "_name": hidden
    assert out.rstrip("\n").endswith("ctrfs COMMAND --help           a command's options and examples")
    assert ctrfs("--help", "ls").stdout == out == ctrfs("-h").stdout  # help first: the top level's


def test_no_command_shows_help_and_is_a_usage_error() -> None:
    res = ctrfs(check=False)
    assert res.returncode == 2 and res.stdout == "" and "COMMAND" in res.stderr


def test_unknown_command_is_a_usage_error_with_the_closest_name() -> None:
    err = _one_line_usage_error(ctrfs("lss", "web:/", check=False), "")
    assert "unknown command 'lss'" in err and "did you mean 'ls'?" in err
    err = _one_line_usage_error(ctrfs("--host-root", "/h", "zzz", check=False), "")
    assert "unknown command 'zzz'" in err and "browse, cat, completion, cp, diff" in err


@pytest.mark.parametrize(("argv", "says"), [
    (["tail", "-n", "-1", "web:/var/log/app.log"], "argument -n/--lines: expected an integer >= 0, got '-1'"),
    (["tail", "-n", "ten", "web:/var/log/app.log"], "expected an integer >= 0, got 'ten'"),
    (["find", "--maxdepth", "-2", "web"], "argument --maxdepth: expected an integer >= 0"),
    (["diff", "--semantics", "git", "web"], "argument --semantics: invalid choice: 'git'"),
    (["probe", "web", "--lib", "libssl", "--format", "yaml", "--symbol", "x"], "invalid choice: 'yaml'"),
    (["probe", "web", "--lib", "libssl"], "the following arguments are required: --symbol"),
    (["cat"], "the following arguments are required: TARGET:PATH"),
    (["cp", "web:/etc"], "the following arguments are required: DEST"),
    (["ls", "--recursiv", "web"], "unrecognized arguments: --recursiv"),  # no abbreviations
    (["stat", "web:/a", "web:/b"], "unrecognized arguments: web:/b"),
    (["ps", "--host-root", "/host"], "unrecognized arguments: --host-root /host"),  # global: before
])
def test_bad_arguments_are_one_line_usage_errors(argv: list[str], says: str) -> None:
    err = _one_line_usage_error(ctrfs(*argv, check=False), argv[0])
    assert says in err and f"(see 'ctrfs {argv[0]} --help')" in err


def test_unknown_global_option_is_reported_by_the_top_level() -> None:
    err = _one_line_usage_error(ctrfs("--bogus", "ps", check=False), "")
    assert "unrecognized arguments: --bogus" in err and "(see 'ctrfs --help')" in err


def test_version_matches_the_installed_package() -> None:
    res = ctrfs("--version")
    assert res.stdout == f"ctrfs, version {__version__}\n" and res.stderr == ""
    assert version("ctrfs") == __version__


def test_version_and_help_import_nothing_they_do_not_need() -> None:
    """--version answers before argparse or any command is imported; a command's --help imports
    that command's module only, click nowhere, and not shutil (argparse's default help formatter
    imports it, with bz2 and lzma, for every command at every start)."""
    probe = ("import json, sys; from ctrfs.cli.main import main; rc = main(sys.argv[1:]); "
             "sys.stderr.write(json.dumps(sorted(sys.modules)))")

    def loaded(*argv: str) -> set[str]:
        res = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True,
                             timeout=60, check=True)
        return set(json.loads(res.stderr))

    mods = loaded("--version")
    assert not mods & {"argparse", "ctrfs.cli.app", "click"}
    assert not any(m.startswith("ctrfs.cli.cmd_") for m in mods)
    mods = loaded("cat", "--help")
    assert {"argparse", "ctrfs.cli.cmd_files"} <= mods
    assert not any(m.startswith(("click", "rich", "elftools", "shutil", "ctrfs.cli.cmd_layers",
                                 "ctrfs.cli.cmd_probes", "ctrfs.cli.cmd_discover")) for m in mods)


SRC = Path(__file__).resolve().parents[2] / "src" / "ctrfs"
# Modules that only a heavy optional dependency's work imports (pyelftools, textual): those
# libraries import typing themselves, so these may too.
TYPING_ALLOWED = ("probes/elf.py", "browse/")
# What no hot command (cat, ls, stat, ps) may pay for at start-up: typing and dataclasses are for
# the type checker only (docs/conventions.md), the rest serve the rare paths that import them.
HOT_FORBIDDEN = frozenset({"typing", "dataclasses", "click", "rich", "elftools", "shutil", "socket",
                           "difflib", "glob", "ctrfs.views", "ctrfs.overlay.root",
                           "argparse", "gettext", "locale"})  # app.quick_parse reads these lines


def _modules_after(*argv: str) -> set[str]:
    """The modules loaded by ``ctrfs ARGV`` run in one process, less those a bare interpreter
    loads (its site module's own imports are not ctrfs's)."""
    probe = ("import sys; from ctrfs.cli.main import main; rc = main(sys.argv[1:]); "
             "sys.stderr.write('\\n' + '\\n'.join(sorted(sys.modules)))")
    bare = subprocess.run([sys.executable, "-c", "import sys; print('\\n'.join(sys.modules))"],
                          capture_output=True, text=True, timeout=60, check=True).stdout.split()
    res = subprocess.run([sys.executable, "-c", probe, *argv], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    return set(res.stderr.split()) - set(bare)


def _typing_at_run_time(tree: ast.Module) -> list[int]:
    """Lines importing typing anywhere but under ``if TYPE_CHECKING:``."""
    found = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "typing" for a in node.names):
            found.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "typing" and node.level == 0:
            found.append(node.lineno)
        todo.extend(ast.iter_child_nodes(node))
    return sorted(found)


def test_typing_is_imported_for_the_type_checker_only() -> None:
    """``import typing`` costs ~6 ms of a start; ctrfs names its types under ``if TYPE_CHECKING:``
    (annotations are strings: ``from __future__ import annotations``)."""
    offenders = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith(TYPING_ALLOWED):
            continue
        lines = _typing_at_run_time(ast.parse(path.read_text(), str(path)))
        if lines:
            offenders[rel] = lines
    assert offenders == {}


@pytest.mark.parametrize("argv", [
    ["cat", "{pid}:/etc/os-release"],
    ["ls", "{pid}:/etc"],
    ["stat", "{pid}:/etc/passwd"],
    ["ps", "--json"],
    ["ps", "-a"],
])
def test_hot_commands_import_nothing_they_do_not_need(argv: list[str]) -> None:
    """A real run of each hot command (this test's own process as the target: pid://PID outside
    any container is the host, and reaches the same modules a container does)."""
    args = [a.format(pid=f"pid://{os.getpid()}") for a in argv]
    mods = _modules_after(*args)
    assert "ctrfs.cli.app" in mods  # the probe ran the command
    assert sorted(mods & HOT_FORBIDDEN) == []
    if argv[0] != "stat":  # stat shows ISO dates; the others none (ls: only with -l)
        assert "datetime" not in mods


def _imported(*argv: str) -> set[str]:
    res = subprocess.run([sys.executable, "-X", "importtime", *argv], capture_output=True, text=True,
                         timeout=60, check=True)
    return {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines()
            if line.startswith("import time:")}


def test_installed_commands_import_only_the_program() -> None:
    """The installed ``ctrfs`` and ``kubectl-ctrfs`` are bin/'s script files (pyproject.toml's
    script-files), put next to this interpreter by ``pip install`` and ``pip install -e``: pip's
    wrapper for an entry point would import re (~12 ms) before ctrfs runs."""
    bindir = Path(sys.executable).parent
    for name, main in (("ctrfs", "ctrfs.cli.main"), ("kubectl-ctrfs", "ctrfs.kube.main")):
        script = (bindir / name).read_text()
        assert script.startswith("#!/"), name  # pip rewrote the #!python line to its interpreter
        assert f"from {main} import main" in script and "import re" not in script, name
    # --version is answered by the script itself, from ctrfs._version alone
    loaded = _imported(str(bindir / "ctrfs"), "--version") - _imported("-c", "pass")
    assert loaded <= {"__future__", "ctrfs", "ctrfs._version"}, loaded
    res = subprocess.run([str(bindir / "ctrfs"), "--version"], capture_output=True, text=True,
                         check=True)
    assert res.stdout == f"ctrfs, version {__version__}\n"


def test_du_h_is_human_readable_like_gnu_du(tmp_path: Path) -> None:
    """-h belongs to du (--human-readable), not to help; sizes as GNU du prints them. The target
    is this test's own process: pid://PID outside any container is the host."""
    d = tmp_path / "tree"
    d.mkdir()
    (d / "f").write_bytes(os.urandom(3_500_000))
    (d / "g").write_bytes(os.urandom(70_000))
    target = f"pid://{os.getpid()}:{d}"
    for flags in (["-sh"], ["-h", "-s"], ["-s", "--human-readable"]):
        ours = ctrfs("du", *flags, target).stdout
        gnu = subprocess.run(["du", "-sh", str(d)], capture_output=True, text=True, check=True).stdout
        assert ours == gnu and ours.split("\t")[0].endswith("M"), (flags, ours, gnu)
    plain = ctrfs("du", "-s", target).stdout
    assert plain == subprocess.run(["du", "-s", str(d)], capture_output=True, text=True,
                                   check=True).stdout
    assert ctrfs("du", "--help").stdout.startswith("usage: ctrfs du [--help] ")


def test_global_options_come_before_the_command(tmp_path: Path) -> None:
    """--host-root DIR re-roots every runtime's state: a stopped Docker container recorded only
    under DIR is listed, and not without the option. DIR is named like a command ('ls') so the
    command is found after the option's value, not at it."""
    host = tmp_path / "ls"
    cdir = host / "var/lib/docker/containers/c0ffee"
    cdir.mkdir(parents=True)
    (host / "proc").mkdir()
    (cdir / "config.v2.json").write_text(json.dumps({
        "ID": "c0ffee" + "0" * 58, "Name": "/ctrfs-clitest-fake", "Config": {"Image": "img:1"},
        "State": {"StartedAt": "2024-01-01T00:00:00Z", "FinishedAt": "2024-01-01T00:00:01Z"}}))
    listed = json.loads(ctrfs("--host-root", str(host), "ps", "-a", "--json").stdout)
    assert [(c["name"], c["runtime"], c["state"], c["image"]) for c in listed] == [
        ("ctrfs-clitest-fake", "docker", "exited", "img:1")]
    table = ctrfs(f"--host-root={host}", "ps", "-a").stdout.splitlines()
    assert table[0].split()[:3] == ["CONTAINER", "ID", "NAME"]
    assert [line.split()[:3] for line in table[1:]] == [["c0ffee000000", "ctrfs-clitest-fake", "docker"]]
    # --docker-root alone moves only Docker's state
    mine = json.loads(ctrfs("--proc", str(host / "proc"), "--docker-root", str(host / "var/lib/docker"),
                            "ps", "-a", "--json").stdout)
    assert "ctrfs-clitest-fake" in [c["name"] for c in mine]
    assert "ctrfs-clitest-fake" not in [c["name"] for c in json.loads(ctrfs("ps", "-a", "--json").stdout)]


def test_option_values_may_start_with_a_dash(tmp_path: Path) -> None:
    """`--size -2M` and `--mmin -60` are values (find(1)'s "less than"), not unknown options;
    what is found is what GNU find finds."""
    (tmp_path / "big").write_bytes(b"x" * 3_000_000)
    (tmp_path / "small").write_bytes(b"x" * 70_000)
    target = f"pid://{os.getpid()}:{tmp_path}"

    def gnu(*expr: str) -> list[str]:
        return sorted(subprocess.run(["find", str(tmp_path), *expr], capture_output=True, text=True,
                                     check=True).stdout.splitlines())

    for ours, theirs in ((["--size", "-2M", "--type", "f"], ["-size", "-2M", "-type", "f"]),
                         (["--size=-2M", "--type=f"], ["-size", "-2M", "-type", "f"]),
                         (["--size", "+2M"], ["-size", "+2M"]),
                         (["--mmin", "-60", "--type", "f"], ["-mmin", "-60", "-type", "f"])):
        found = sorted(ctrfs("find", target, *ours).stdout.splitlines())
        assert found == gnu(*theirs) and found, (ours, found)
    assert [Path(p).name for p in ctrfs("find", target, "--size", "-2M", "--type", "f").stdout.split()] \
        == ["small"]


@pytest.mark.parametrize("option", ["--host-root", "--proc"])
def test_a_root_option_naming_no_procfs_is_a_usage_error(tmp_path: Path, option: str) -> None:
    """Not an internal error with a FileNotFoundError: one line that names the option to check."""
    res = ctrfs(option, str(tmp_path / "missing"), "ps", check=False)
    msg = _one_line_usage_error(res, "")
    assert "no procfs at" in msg and "--host-root" in msg
