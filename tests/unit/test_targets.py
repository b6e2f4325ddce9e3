"""Target strings and TARGET:PATH splitting (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctrfs.cli.common import escape, split_target_path
from ctrfs.errors import CtrfsError, UsageError
from ctrfs.targets import parse_target


@pytest.mark.parametrize(("text", "scheme", "ref"), [
    ("web", None, "web"), ("docker://web", "docker", "web"), ("CRIO://abc", "cri-o", "abc"),
    ("k8s://default/nginx", "k8s", "default/nginx"), ("k8s://ns/pod/app", "k8s", "ns/pod/app"),
    ("pid://4242", "pid", "4242"), ("containerd://k8s.io/abc", "containerd", "k8s.io/abc"),
])
def test_parse_target(text: str, scheme: str | None, ref: str) -> None:
    t = parse_target(text)
    assert (t.scheme, t.ref) == (scheme, ref)


@pytest.mark.parametrize("bad", ["", "ftp://x", "pid://abc", "pid://0", "k8s://ns", "k8s://a/b/c/d",
                                 "k8s://a//c", "docker://", "a\nb"])
def test_bad_targets_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_target(bad)
    assert e.value.exit_code == 2


@pytest.mark.parametrize(("spec", "target", "path"), [
    ("web:/etc/hosts", "web", "/etc/hosts"), ("web", "web", None), ("web:", "web", "/"),
    ("docker://web:/a:b", "docker://web", "/a:b"), ("k8s://ns/pod/c:/x", "k8s://ns/pod/c", "/x"),
    ("pid://12:/proc", "pid://12", "/proc"),
])
def test_split_target_path(spec: str, target: str, path: str | None) -> None:
    assert split_target_path(spec) == (target, path)


def test_split_requires_path() -> None:
    with pytest.raises(UsageError):
        split_target_path("web", require_path=True)


@given(st.text(max_size=40))
def test_target_parsing_never_raises_anything_else(text: str) -> None:
    try:
        parse_target(text)
        split_target_path(text)
    except CtrfsError:
        pass


@pytest.mark.parametrize(("name", "shown"), [
    ("plain", "plain"), ("a\nb", "a\\nb"), ("\x1b[31mred", "\\x1b[31mred"), (b"x\xff", "x\\xff"),
    ("back\\slash", "back\\\\slash"), ("tab\t", "tab\\t"),
])
def test_escape_for_terminal(name: str | bytes, shown: str) -> None:
    assert escape(name) == shown


@given(st.text(max_size=30) | st.text(st.characters(max_codepoint=0x7F), max_size=30))
def test_escape_of_a_str_is_the_escape_of_its_bytes(name: str) -> None:
    """The shortcut for printable ASCII gives what the full escape of the name's bytes gives."""
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return  # not a name the filesystem could have given
    assert escape(name) == escape(raw)


def test_public_container_function_survives_the_submodule_import() -> None:
    """ctrfs.container(TARGET) is the public API (README, the package docstring), and the package
    loads its names on first use: importing the model and the modules above it (which bind
    submodules on the package) must leave the function reachable, before and after a call.
    In a fresh interpreter, so that the import order is the user's. (The model module was once
    called ``container`` and replaced the function on the package.)"""
    import subprocess
    import sys

    probe = ("import ctrfs, ctrfs.model, ctrfs.overlay.layers\n"
             "from ctrfs.model import Container\n"
             "assert callable(ctrfs.container) and not isinstance(ctrfs.container, type(ctrfs)), "
             "ctrfs.container\n"
             "assert Container is sys.modules['ctrfs.model'].Container\n"
             "try:\n    ctrfs.container('pid://999999999')\nexcept ctrfs.CtrfsError:\n    pass\n"
             "print('ok')\n")
    res = subprocess.run([sys.executable, "-c", "import sys\n" + probe], capture_output=True,
                         text=True, timeout=60)
    assert res.stdout == "ok\n", res.stderr


def test_image_refs_prefer_exact_names_and_one_id_is_one_image() -> None:
    """An exact stored name beats an abbreviation; the same image id in two stores is one image;
    two different images under one abbreviation stay ambiguous."""
    from ctrfs.runtimes.images import ImageRecord
    from ctrfs.targets import match_images

    def img(iid: str, runtime: str, *names: str) -> ImageRecord:
        return ImageRecord(id="sha256:" + iid * 64, runtime=runtime, names=list(names), layers=[],
                           store="/s/" + runtime, driver="overlay")

    docker_app = img("a", "docker", "app:1")
    podman_app = img("a", "podman", "localhost/app:1")
    other = img("b", "podman", "localhost/app:1")
    assert match_images("app:1", [docker_app, podman_app]) == [docker_app]
    assert match_images("localhost/app:1", [docker_app, podman_app]) == [podman_app]
    assert len(match_images("aaaa", [docker_app, podman_app])) == 2  # same id: resolve takes the first
    assert len({i.id for i in match_images("app:1", [img("c", "podman", "localhost/app:1"), other])}) == 2
