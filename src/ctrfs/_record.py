"""Record classes: the part of :mod:`dataclasses` that ctrfs uses, without importing it.

``import dataclasses`` imports :mod:`inspect` and with it ast, dis, tokenize and enum: about 14 ms
of CPU at every start on a 2-core VM, as much as ``docker ps`` takes in all, while a ctrfs command
must answer as fast as its docker peer. Modules write ``from ctrfs._record import dataclass, field``
and get, at run time, this module's decorator; type checkers see the standard library's (so mypy
checks constructors and fields as usual).

Supported, with dataclasses' meaning: ``@dataclass`` and ``@dataclass(frozen=True)`` (``__init__``,
``__repr__``, ``__eq__``; ``__hash__`` for frozen records, none for mutable ones), fields inherited
from record base classes, ``field(default=, default_factory=, repr=, compare=)``, ``asdict``,
``replace`` and ``is_dataclass``. Not supported (and not used): ``order``, ``slots``, ``kw_only``,
``InitVar``, ``__post_init__``.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dataclasses import FrozenInstanceError, asdict, dataclass, field, is_dataclass, replace
else:
    _MISSING = object()
    _FIELDS = "__record_fields__"

    class FrozenInstanceError(AttributeError):
        """Assignment to a field of a frozen record."""

    class Field:
        __slots__ = ("compare", "default", "default_factory", "name", "repr")

        def __init__(self, default, default_factory, repr, compare):  # noqa: A002
            self.name = ""
            self.default = default
            self.default_factory = default_factory
            self.repr = repr
            self.compare = compare

    def field(*, default=_MISSING, default_factory=_MISSING, repr=True, compare=True):  # noqa: A002
        return Field(default, default_factory, repr, compare)

    def dataclass(cls=None, /, *, frozen=False):
        def wrap(c):
            return _process(c, frozen)

        return wrap if cls is None else wrap(cls)

    def _process(cls, frozen):
        fields = {}
        for base in reversed(cls.__mro__[1:]):
            fields.update(base.__dict__.get(_FIELDS, {}))
        for name, annotation in cls.__dict__.get("__annotations__", {}).items():
            if str(annotation).startswith(("ClassVar", "typing.ClassVar")):
                continue
            value = cls.__dict__.get(name, _MISSING)
            f = value if isinstance(value, Field) else Field(value, _MISSING, True, True)
            f.name = name
            fields[name] = f
            if isinstance(value, Field):
                if f.default is _MISSING:
                    delattr(cls, name)
                else:
                    setattr(cls, name, f.default)
        setattr(cls, _FIELDS, fields)
        own = cls.__dict__
        if "__init__" not in own:  # as dataclasses: methods the class defines itself are kept
            # Generated on the first instance: compiling an __init__ costs ~0.2 ms, and a
            # command start defines dozens of records it never makes.
            def __init__(self, *args, **kwargs):
                if cls.__dict__.get("__init__") is __init__:
                    cls.__init__ = _make_init(cls, fields, frozen)
                cls.__init__(self, *args, **kwargs)

            __init__.__qualname__ = f"{cls.__qualname__}.__init__"
            cls.__init__ = __init__
        shown = tuple(n for n, f in fields.items() if f.repr)
        compared = tuple(n for n, f in fields.items() if f.compare)

        def __repr__(self):
            inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in shown)
            return f"{type(self).__qualname__}({inner})"

        def __eq__(self, other):
            if other.__class__ is not self.__class__:
                return NotImplemented
            return all(getattr(self, n) == getattr(other, n) for n in compared)

        if "__repr__" not in own:
            cls.__repr__ = __repr__
        own_eq = "__eq__" in own  # (own is live: read before __eq__ is set below)
        if not own_eq:
            cls.__eq__ = __eq__
        if frozen:
            def __hash__(self):
                return hash(tuple(getattr(self, n) for n in compared))

            def __setattr__(self, name, value):
                raise FrozenInstanceError(f"cannot assign to field {name!r}")

            def __delattr__(self, name):
                raise FrozenInstanceError(f"cannot delete field {name!r}")

            if "__hash__" not in own or own["__hash__"] is None:
                cls.__hash__ = __hash__
            cls.__setattr__ = __setattr__
            cls.__delattr__ = __delattr__
        elif not own_eq:  # as dataclasses: a mutable record with a generated __eq__ is unhashable
            cls.__hash__ = None
        return cls

    def _make_init(cls, fields, frozen):
        ns = {"_MISSING": _MISSING, "_set": object.__setattr__}
        params, body = [], []
        for name, f in fields.items():
            if f.default is not _MISSING:
                ns[f"_d_{name}"] = f.default
                params.append(f"{name}=_d_{name}")
                value = name
            elif f.default_factory is not _MISSING:
                ns[f"_f_{name}"] = f.default_factory
                params.append(f"{name}=_MISSING")
                value = f"_f_{name}() if {name} is _MISSING else {name}"
            else:
                params.append(name)
                value = name
            body.append(f"_set(self, {name!r}, {value})" if frozen else f"self.{name} = {value}")
        src = f"def __init__(self, {', '.join(params)}):\n    " + ("\n    ".join(body) or "pass")
        exec(src, ns)  # noqa: S102 — generated from the class's own field names, as dataclasses does
        init = ns["__init__"]
        init.__qualname__ = f"{cls.__qualname__}.__init__"
        return init

    def is_dataclass(obj):
        return hasattr(obj if isinstance(obj, type) else type(obj), _FIELDS)

    def asdict(obj):
        return _asdict(obj)

    def _asdict(value):
        fields = getattr(type(value), _FIELDS, None)
        if fields is not None:
            return {n: _asdict(getattr(value, n)) for n in fields}
        if isinstance(value, (list, tuple)):
            return type(value)(_asdict(v) for v in value)
        if isinstance(value, dict):
            return {_asdict(k): _asdict(v) for k, v in value.items()}
        return value

    def replace(obj, /, **changes):
        for name in getattr(type(obj), _FIELDS):
            changes.setdefault(name, getattr(obj, name))
        return type(obj)(**changes)

__all__ = ["FrozenInstanceError", "asdict", "dataclass", "field", "is_dataclass", "replace"]
