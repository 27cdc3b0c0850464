"""The op registry: every op is one :class:`OpDef`, registered once.

An OpDef carries the op's signature (tensor inputs, typed attributes), its
shape/dtype rule, its numpy reference and its flags. The VJP rule slot is where
the autodiff pass finds an op's gradient (filled in with the autodiff issue).
Backends are tables from op name to emitter; a test checks every registered op
has an entry in each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlir.errors import TypeError_, did_you_mean
from dlir.ir.graph import Value
from dlir.ir.types import Dim, DType, TensorType

REQUIRED = object()

# The words a "padding" attribute accepts besides ints (resolved to 4 ints by the op's `canonical`).
PADDING_WORDS = ("same", "valid")

# Attribute kinds understood by :func:`check_attrs`.
ATTR_KINDS = {
    "int",  # a Python int
    "float",  # a number, stored as float
    "float?",  # a number or None
    "bool",
    "str",
    "dtype",  # a DType
    "ints",  # a list of ints (an int is accepted as a one-element list)
    "pair",  # two ints [h, w] (an int n is accepted as [n, n])
    "pair?",  # None, or a pair as above
    "padding",  # spatial padding: an int, [ph, pw], [top, left, bottom, right], "same" or "valid"
    "axes?",  # None, an int, or a list of ints
    "dims",  # a list of dims: ints or symbolic Dims
    "scalar",  # a number or nested list of numbers/bools (constants)
}


@dataclass(frozen=True)
class Attr:
    """A named, typed attribute of an op with an optional default and allowed values."""

    name: str
    kind: str
    default: Any = REQUIRED
    choices: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        assert self.kind in ATTR_KINDS, self.kind


InferRule = Callable[[list[TensorType], dict[str, Any]], list[TensorType]]
RefRule = Callable[[list[np.ndarray], dict[str, Any]], list[np.ndarray]]
# A VJP rule gets a graph builder, the node and the output cotangents and
# returns one cotangent Value (or None) per input. Filled in by the autodiff issue.
VjpRule = Callable[..., list[Any]]
# The dim pairs an op on these input types needs equal (a superset of what its shape
# rule checks); the ONNX importer merges two input symbols that such a pair sets equal.
EqualDimsRule = Callable[[list[TensorType], dict[str, Any]], list[tuple[Dim, Dim]]]


@dataclass
class OpDef:
    """One op: signature, shape rule, numpy reference, flags (and later its VJP)."""

    name: str
    inputs: tuple[str, ...]  # a name ending in "*" takes a list of tensors; "?" marks a trailing optional one
    attrs: tuple[Attr, ...]
    infer: InferRule
    ref: RefRule
    doc: str = ""
    elementwise: bool = False
    differentiable: bool = True
    commutative: bool = False
    vjp: VjpRule | None = None
    # A frontend-only op is rewritten into other ops when it is built (e.g.
    # `activation(x, "relu")` becomes `relu(x)`); it never appears in the IR.
    expand: Callable[..., Any] | None = None
    # Fills attributes whose default depends on the input types, when the node is built.
    canonical: Callable[[list[TensorType], dict[str, Any]], dict[str, Any]] | None = None
    # The op written with other ops, ``decompose(b, node) -> results`` (a GradBuilder ``b``):
    # how a target without a kernel of its own lowers it (``DECOMPOSE`` in its table) and
    # what its VJP differentiates (dlir.ops.backward).
    decompose: Callable[..., list[Any]] | None = None
    # Beside the shape rule: which input dims it needs equal (None: no such pairs), read by
    # the ONNX importer to unify an exporter's unrelated symbols (dlir.importer.dim_unify).
    equal_dims: EqualDimsRule | None = None
    family: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def variadic(self) -> bool:
        return bool(self.inputs) and self.inputs[-1].endswith("*")

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(n.rstrip("*?") for n in self.inputs)

    def accepts(self, n: int) -> bool:
        """Whether a node of this op may have ``n`` inputs."""
        required = sum(1 for i in self.inputs if not i.endswith(("?", "*")))
        return n >= required if self.variadic else required <= n <= len(self.inputs)

    def arity_text(self) -> str:
        names = ", ".join(self.inputs)
        required = sum(1 for i in self.inputs if not i.endswith(("?", "*")))
        if self.variadic:
            return f"{self.name} takes at least {required} input(s) ({names})"
        if required == len(self.inputs):
            return f"{self.name} takes {required} input(s) ({names})"
        return f"{self.name} takes {required} to {len(self.inputs)} inputs ({names})"

    def attr(self, name: str) -> Attr | None:
        for a in self.attrs:
            if a.name == name:
                return a
        return None


REGISTRY: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    assert op.name not in REGISTRY, f"op {op.name} registered twice"
    REGISTRY[op.name] = op
    return op


def get_op(name: str) -> OpDef:
    """The OpDef named ``name``; a DlirError with a did-you-mean if there is none."""
    _load_families()
    try:
        return REGISTRY[name]
    except KeyError:
        raise TypeError_(f"unknown op '{name}'", hint=did_you_mean(name, REGISTRY) or "see `dlirc ops`") from None


def all_ops() -> dict[str, OpDef]:
    _load_families()
    return dict(sorted(REGISTRY.items()))


def lowered_ops() -> dict[str, OpDef]:
    """Ops that can appear in IR (frontend-only expansions excluded): what backends must lower."""
    return {n: o for n, o in all_ops().items() if o.expand is None}


_families_loaded = False


def _load_families() -> None:
    # Called on every op lookup; an `import` statement costs a few microseconds even when done.
    global _families_loaded
    if not _families_loaded:
        import dlir.ops  # noqa: F401  (registers every family)

        _families_loaded = True


# -- attribute checking --------------------------------------------------------


def check_attrs(op: OpDef, given: dict[str, Any]) -> dict[str, Any]:
    """Validate and normalise ``given`` against ``op``'s attributes, filling defaults."""
    out: dict[str, Any] = {}
    for name in given:
        if op.attr(name) is None:
            known = [a.name for a in op.attrs]
            hint = did_you_mean(name, known) or (f"{op.name} takes " + (", ".join(known) if known else "no attributes"))
            raise TypeError_(f"{op.name} has no attribute '{name}'", hint=hint)
    for a in op.attrs:
        if a.name in given:
            v = _coerce(op, a, given[a.name])
        elif a.default is REQUIRED:
            raise TypeError_(f"{op.name} needs the attribute '{a.name}' ({_KIND_TEXT[a.kind]})")
        else:
            v = a.default
        if a.choices is not None and v not in a.choices:
            raise TypeError_(
                f"{op.name}: {a.name}={v!r} is not one of " + ", ".join(repr(c) for c in a.choices),
                hint=did_you_mean(str(v), [str(c) for c in a.choices]),
            )
        out[a.name] = v
    return out


_KIND_TEXT = {
    "int": "an int",
    "float": "a number",
    "float?": "a number",
    "bool": "true or false",
    "str": "a string",
    "dtype": "a dtype such as f32",
    "ints": "a list of ints",
    "pair": "an int or a pair of ints",
    "pair?": "an int, a pair of ints or none",
    "padding": 'an int, a pair [ph, pw], four ints [top, left, bottom, right], "same" or "valid"',
    "axes?": "an axis or a list of axes",
    "dims": "a list of dims",
    "scalar": "a number or list of numbers",
}


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_num(v: Any) -> bool:
    return _is_int(v) or (isinstance(v, (float, np.floating)))


def _coerce(op: OpDef, a: Attr, v: Any) -> Any:
    def bad() -> TypeError_:
        return TypeError_(f"{op.name}: attribute '{a.name}' must be {_KIND_TEXT[a.kind]}, got {describe_value(v)}")

    if isinstance(v, Dim) and v.is_static:
        v = v.value
    k = a.kind
    if k == "int":
        if not _is_int(v):
            raise bad()
        return int(v)
    if k in ("float", "float?"):
        if v is None and k == "float?":
            return None
        if not _is_num(v):
            raise bad()
        return float(v)
    if k == "bool":
        if not isinstance(v, bool):
            raise bad()
        return v
    if k == "str":
        if not isinstance(v, str):
            raise bad()
        return v
    if k == "dtype":
        if not isinstance(v, DType):
            raise bad()
        return v
    if k in ("ints", "axes?"):
        if v is None and k == "axes?":
            return None
        items = _int_list(v)
        if items is None:
            raise bad()
        return items
    if k in ("pair", "pair?"):
        if v is None and k == "pair?":
            return None
        items = _int_list(v)
        if items is None or len(items) not in (1, 2):
            raise bad()
        return items * 2 if len(items) == 1 else items
    if k == "padding":
        if isinstance(v, str):
            if v not in PADDING_WORDS:
                raise TypeError_(
                    f"{op.name}: {a.name}={v!r} is not one of " + ", ".join(repr(w) for w in PADDING_WORDS),
                    hint=did_you_mean(v, PADDING_WORDS) or "or give ints: p, [ph, pw] or [top, left, bottom, right]",
                )
            return v
        items = _int_list(v)
        if items is None or len(items) not in (1, 2, 4):
            raise bad()
        if any(p < 0 for p in items):
            raise TypeError_(f"{op.name}: {a.name}={items} has a negative entry", hint="padding counts cells, >= 0")
        return items
    if k == "dims":
        if isinstance(v, (list, tuple)):
            out: list[int | Dim] = []
            for x in v:
                if _is_int(x):
                    out.append(int(x))
                elif isinstance(x, Dim) and not x.unknown:
                    out.append(x.value if x.is_static else x)
                else:
                    raise bad()
            return out
        raise bad()
    if k == "scalar":
        try:
            arr = np.asarray(v)
        except (ValueError, TypeError):
            raise bad() from None
        if arr.dtype.kind not in "biuf":
            raise bad()
        return v
    raise AssertionError(k)


def _int_list(v: Any) -> list[int] | None:
    """An int or a list of (static) ints as a list; None for anything else."""
    if _is_int(v):
        return [int(v)]
    if isinstance(v, (list, tuple)):
        items = [x.value if isinstance(x, Dim) and x.is_static else x for x in v]
        if all(_is_int(x) for x in items):
            return [int(x) for x in items]
    return None


def describe_value(v: Any) -> str:
    """A value as an error message names it: ``a tensor f32[B, 4]``, ``the string 'relux'``, ``true``.

    The frontend's ``describe`` adds the values only it has (layer instances, definitions, ops).
    """
    if isinstance(v, Value):
        return f"a tensor {v.type}"
    if isinstance(v, TensorType):
        return f"a tensor {v}"
    if isinstance(v, np.ndarray):
        return f"a {v.dtype} array of shape {tuple(v.shape)}"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f"the string {v!r}"
    if isinstance(v, list):
        return f"the list {v}"
    if isinstance(v, Dim):
        return f"the dim {v}"
    if isinstance(v, DType):
        return f"the dtype {v}"
    if isinstance(v, tuple):
        return f"{len(v)} values"
    return repr(v)


def type_list(types: Sequence[TensorType]) -> str:
    return " and ".join(str(t) for t in types)
