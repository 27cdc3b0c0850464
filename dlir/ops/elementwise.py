"""Elementwise ops: unary math, binary arithmetic, comparisons, where, cast, constant.

References compute in float64 where the input is floating point and round to the
result dtype at the end (the interpreter does the rounding), so the oracle is at
least as exact as any target.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from dlir.errors import TypeError_
from dlir.ir.types import DType, TensorType
from dlir.ops.registry import Attr, OpDef, register
from dlir.ops.shape_rules import broadcast_shapes, require_float, require_numeric, same_dtype

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _wide(x: np.ndarray) -> np.ndarray:
    """Float inputs computed in float64; others unchanged."""
    return x.astype(np.float64) if x.dtype.kind == "f" or x.dtype.name == "bfloat16" else x


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _gelu(x: np.ndarray, a: dict[str, Any]) -> np.ndarray:
    if a["approximate"] == "tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _clip(x: np.ndarray, a: dict[str, Any]) -> np.ndarray:
    lo, hi = a["min"], a["max"]
    if lo is not None:
        x = np.maximum(x, lo)
    if hi is not None:
        x = np.minimum(x, hi)
    return x


def unary(
    name: str,
    fn: Callable[..., np.ndarray],
    *,
    doc: str,
    float_only: bool = True,
    attrs: tuple[Attr, ...] = (),
    differentiable: bool = True,
) -> OpDef:
    """An elementwise op of one tensor; the result has the input's type."""

    def infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
        (require_float if float_only else require_numeric)(name, ts[0])
        return [ts[0]]

    def ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
        x = _wide(xs[0])
        with np.errstate(all="ignore"):
            return [fn(x, a) if attrs else fn(x)]

    return register(
        OpDef(name, ("x",), attrs, infer, ref, doc=doc, elementwise=True, differentiable=differentiable, family="elementwise")
    )


unary("neg", np.negative, doc="-x", float_only=False)
unary("abs", np.abs, doc="|x|", float_only=False)
unary("exp", np.exp, doc="e**x")
unary("log", np.log, doc="natural logarithm")
unary("sqrt", np.sqrt, doc="square root")
unary("rsqrt", lambda x: 1.0 / np.sqrt(x), doc="1 / sqrt(x)")
unary("sin", np.sin, doc="sine")
unary("cos", np.cos, doc="cosine")
unary("tanh", np.tanh, doc="hyperbolic tangent")
unary("sigmoid", _sigmoid, doc="1 / (1 + e**-x)")
unary("relu", lambda x: np.maximum(x, 0).astype(x.dtype), doc="max(x, 0)", float_only=False)
unary(
    "gelu",
    _gelu,
    doc='exact erf GELU; approximate="tanh" for the tanh form',
    attrs=(Attr("approximate", "str", "none", ("none", "tanh")),),
)
unary("silu", lambda x: x * _sigmoid(x), doc="x * sigmoid(x)")
unary("softplus", lambda x: np.logaddexp(0.0, x), doc="log(1 + e**x)")
unary("erf", _erf, doc="the error function")
unary("floor", np.floor, doc="round down", differentiable=False)
unary("ceil", np.ceil, doc="round up", differentiable=False)
unary("sign", np.sign, doc="-1, 0 or 1", float_only=False, differentiable=False)
unary(
    "leaky_relu",
    lambda x, a: np.where(x >= 0, x, a["alpha"] * x),
    doc="x if x >= 0 else alpha * x",
    attrs=(Attr("alpha", "float", 0.01),),
)
unary(
    "elu",
    lambda x, a: np.where(x > 0, x, a["alpha"] * np.expm1(x)),
    doc="x if x > 0 else alpha * (e**x - 1)",
    attrs=(Attr("alpha", "float", 1.0),),
)
unary(
    "clip",
    _clip,
    doc="min(max(x, min), max); either bound may be omitted",
    float_only=False,
    attrs=(Attr("min", "float?", None), Attr("max", "float?", None)),
)


def _int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # Integer division truncates toward zero (as C, ONNX `Div`, torch
    # rounding_mode="trunc" and tf.truncatediv); Python's // floors instead.
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (b < 0), -q, q)


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "iu":
        return _int_div(a, b)
    return a / b


def binary(name: str, fn: Callable[[np.ndarray, np.ndarray], np.ndarray], *, doc: str, commutative: bool = False, compare: bool = False, differentiable: bool = True) -> OpDef:
    """An elementwise op of two tensors with NumPy broadcasting."""

    def infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
        dt = same_dtype(name, ts)
        if not compare or name not in ("equal", "not_equal"):
            for t in ts:
                require_numeric(name, t)
        return [TensorType(DType.bool if compare else dt, broadcast_shapes(name, ts))]

    def ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
        with np.errstate(all="ignore"):
            return [fn(_wide(xs[0]), _wide(xs[1]))]

    return register(
        OpDef(
            name,
            ("a", "b"),
            (),
            infer,
            ref,
            doc=doc,
            elementwise=True,
            commutative=commutative,
            differentiable=differentiable and not compare,
            family="elementwise",
        )
    )


binary("add", np.add, doc="a + b", commutative=True)
binary("sub", np.subtract, doc="a - b")
binary("mul", np.multiply, doc="a * b", commutative=True)
binary("div", _div, doc="a / b (integers truncate toward zero)")
binary("pow", np.power, doc="a ** b")
binary("maximum", np.maximum, doc="elementwise max", commutative=True)
binary("minimum", np.minimum, doc="elementwise min", commutative=True)
binary("equal", np.equal, doc="a == b", commutative=True, compare=True)
binary("not_equal", np.not_equal, doc="a != b", commutative=True, compare=True)
binary("less", np.less, doc="a < b", compare=True)
binary("less_equal", np.less_equal, doc="a <= b", compare=True)
binary("greater", np.greater, doc="a > b", compare=True)
binary("greater_equal", np.greater_equal, doc="a >= b", compare=True)


def _where_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    c, x, y = ts
    if c.dtype is not DType.bool:
        raise TypeError_(f"where: the condition must be bool, got {c}", hint="compare first, e.g. where(x > 0, x, y)")
    dt = same_dtype("where", [x, y])
    return [TensorType(dt, broadcast_shapes("where", ts))]


register(
    OpDef(
        "where",
        ("cond", "a", "b"),
        (),
        _where_infer,
        lambda xs, a: [np.where(xs[0], xs[1], xs[2])],
        doc="a where cond else b",
        elementwise=True,
        family="elementwise",
    )
)


def _cast_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x, dt = xs[0], a["dtype"].numpy
    # Float -> int casts truncate toward zero on every target (numpy does too);
    # NaN/inf -> int is undefined everywhere and not relied on.
    return [x.astype(dt)]


register(
    OpDef(
        "cast",
        ("x",),
        (Attr("dtype", "dtype"),),
        lambda ts, a: [ts[0].with_dtype(a["dtype"])],
        _cast_ref,
        doc="convert to dtype; float -> int truncates toward zero",
        elementwise=True,
        family="elementwise",
    )
)


def _constant_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    arr = np.asarray(a["value"])
    dt: DType = a["dtype"]
    if arr.dtype == np.bool_ and dt is not DType.bool:
        raise TypeError_(f"constant: a bool literal cannot be {dt}")
    if arr.dtype.kind == "f" and not dt.is_float:
        if not np.all(np.asarray(a["value"], dtype=np.float64) == np.trunc(np.asarray(a["value"], dtype=np.float64))):
            raise TypeError_(f"constant: {a['value']} is not a whole number, so it cannot be {dt}")
    return [TensorType.make(dt, arr.shape)]


register(
    OpDef(
        "constant",
        (),
        (Attr("value", "scalar"), Attr("dtype", "dtype")),
        _constant_infer,
        lambda xs, a: [np.asarray(a["value"]).astype(a["dtype"].numpy)],
        doc="a literal tensor (numbers in the source become these)",
        differentiable=False,
        family="elementwise",
    )
)
