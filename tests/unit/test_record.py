"""ctrfs._record against the standard library's dataclasses, for the subset ctrfs uses: the same
constructors, defaults, factories, repr, equality, hashing and frozenness; __init__ made on first
use (a record class that is never instantiated costs no compile at start-up)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from ctrfs import _record


def _pair(frozen: bool = False):  # type: ignore[no-untyped-def]
    made = []
    for mod in (_record, dataclasses):
        @mod.dataclass(frozen=frozen)  # type: ignore[misc]
        class Base:
            a: int
            b: str = "x"
            c: list = mod.field(default_factory=list)  # type: ignore[type-arg]
            d: int = mod.field(default=3, repr=False, compare=False)

        @mod.dataclass(frozen=frozen)  # type: ignore[misc]
        class Child(Base):
            e: int = 9

        made.append((Base, Child))
    return made


@pytest.mark.parametrize("frozen", [False, True])
def test_same_behaviour_as_dataclasses(frozen: bool) -> None:
    (rb, rc), (db, dc) = _pair(frozen)
    for ours, theirs in ((rb, db), (rc, dc)):
        x, y = ours(1), theirs(1)
        assert repr(x).split("(", 1)[1] == repr(y).split("(", 1)[1]
        assert ours(1, "y", [1]) == ours(1, "y", [1], d=4)  # d is not compared
        assert ours(1) != ours(2)
        assert ours(1).c is not ours(1).c  # a fresh list each time
        assert ours(a=5).a == 5
        with pytest.raises(TypeError):
            ours()  # a is required
        assert _record.asdict(ours(1)) == dataclasses.asdict(theirs(1))
        assert _record.replace(ours(1), b="z").b == "z"
    assert rc(1, e=2).e == 2
    if frozen:
        assert hash(rb(1, "y", (1,))) == hash(rb(1, "y", (1,)))  # type: ignore[arg-type]
        with pytest.raises(AttributeError):
            rb(1).a = 2  # type: ignore[misc]
    else:
        assert rb.__hash__ is None
        r = rb(1)
        r.a = 2
        assert r.a == 2


def test_init_is_made_on_first_use() -> None:
    (rb, rc), _ = _pair()
    placeholder = rb.__dict__["__init__"]
    rb(1)
    assert rb.__dict__["__init__"] is not placeholder  # generated once, then the class's
    assert rc(1, e=3).e == 3


def test_plain_subclass_of_a_record() -> None:
    (rb, _), _ = _pair()

    class Plain(rb):  # type: ignore[misc, valid-type]
        pass

    assert Plain(7).a == 7 and Plain(8, "q").b == "q"


def test_no_dataclasses_import() -> None:
    code = "import ctrfs.cli.main, ctrfs.model, ctrfs.rootfs.fd, sys; print('dataclasses' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
