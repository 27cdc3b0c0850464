"""Elementwise ops: unary math, binary arithmetic, comparisons, where, cast, constant.

References compute in float64 where the input is floating point and round to the
result dtype at the end (the interpreter does the rounding), so the oracle is at
least as exact as any target.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from dlir.errors import TypeError_
from dlir.ir.types import DType, TensorType
from dlir.ops.registry import Attr, OpDef, register
from dlir.ops.shape_rules import broadcast_equal, broadcast_shapes, require_float, require_numeric, same_dtype

if TYPE_CHECKING:
    from dlir.autodiff.builder import GradBuilder
    from dlir.ir.graph import Node, Value

# The derivative part of a unary op's VJP: (builder, x, y, cotangent, attrs) -> x's cotangent.
UnaryVjp = Callable[["GradBuilder", "Value", "Value", "Value", dict[str, Any]], "Value"]

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _wide(x: np.ndarray) -> np.ndarray:
    """Float inputs computed in float64; others unchanged."""
    return x.astype(np.float64) if x.dtype.kind == "f" or x.dtype.name == "bfloat16" else x


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(x))
        return cast(np.ndarray, np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)))


def _gelu(x: np.ndarray, a: dict[str, Any]) -> np.ndarray:
    if a["approximate"] == "tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    return cast(np.ndarray, 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))))


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
    vjp: UnaryVjp | None = None,
) -> OpDef:
    """An elementwise op of one tensor; the result has the input's type.

    ``vjp(b, x, y, g, attrs)`` gives x's cotangent from the result's cotangent ``g``.
    """

    def infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
        (require_float if float_only else require_numeric)(name, ts[0])
        return [ts[0]]

    def ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
        x = _wide(xs[0])
        with np.errstate(all="ignore"):
            return [fn(x, a) if attrs else fn(x)]

    def rule(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
        assert vjp is not None
        return [vjp(b, node.inputs[0], node.outputs[0], cts[0], node.attrs)]

    return register(
        OpDef(
            name,
            ("x",),
            attrs,
            infer,
            ref,
            doc=doc,
            elementwise=True,
            differentiable=differentiable,
            vjp=rule if vjp is not None else None,
            equal_dims=broadcast_equal,
            family="elementwise",
        )
    )


# -- derivatives of the unary ops (x: input, y: result, g: y's cotangent) ------------------


def _gelu_vjp(b: GradBuilder, x: Value, y: Value, g: Value, a: dict[str, Any]) -> Value:
    # the backward op torch has a kernel for (dlir.ops.backward), decomposed elsewhere
    return b.op("gelu_grad", x, g, approximate=a["approximate"])


def _silu_vjp(b: GradBuilder, x: Value, y: Value, g: Value, a: dict[str, Any]) -> Value:
    s = b.op("sigmoid", x)
    return b.mul(g, b.mul(s, b.add(b.const(1.0, x), b.mul(x, b.sub(b.const(1.0, x), s)))))


def _elu_vjp(b: GradBuilder, x: Value, y: Value, g: Value, a: dict[str, Any]) -> Value:
    # exp of min(x, 0): the untaken x > 0 side must not overflow to inf (its 0 * inf would be NaN
    # in the second derivative).
    e = b.op("exp", b.op("minimum", x, b.const(0.0, x)))
    neg_side = b.mul(g, b.scale(e, a["alpha"]))
    return b.where(b.op("greater", x, b.const(0.0, x)), g, neg_side)


def _clip_vjp(b: GradBuilder, x: Value, y: Value, g: Value, a: dict[str, Any]) -> Value:
    # The gradient passes where min <= x <= max, bounds included (torch.clamp, tf.clip_by_value).
    if a["min"] is not None:
        g = b.zero_where(b.op("less", x, b.const(a["min"], x)), g)
    if a["max"] is not None:
        g = b.zero_where(b.op("greater", x, b.const(a["max"], x)), g)
    return g


unary("neg", np.negative, doc="-x", float_only=False, vjp=lambda b, x, y, g, a: b.neg(g))
unary("abs", np.abs, doc="|x|", float_only=False, vjp=lambda b, x, y, g, a: b.mul(g, b.op("sign", x)))
unary("exp", np.exp, doc="e**x", vjp=lambda b, x, y, g, a: b.mul(g, y))
unary("log", np.log, doc="natural logarithm", vjp=lambda b, x, y, g, a: b.div(g, x))
unary("sqrt", np.sqrt, doc="square root", vjp=lambda b, x, y, g, a: b.div(g, b.scale(y, 2.0)))
unary(
    "rsqrt",
    lambda x: 1.0 / np.sqrt(x),
    doc="1 / sqrt(x)",
    vjp=lambda b, x, y, g, a: b.mul(g, b.div(b.scale(y, -0.5), x)),
)
unary("sin", np.sin, doc="sine", vjp=lambda b, x, y, g, a: b.mul(g, b.op("cos", x)))
unary("cos", np.cos, doc="cosine", vjp=lambda b, x, y, g, a: b.neg(b.mul(g, b.op("sin", x))))
# Their VJPs read the result, through the backward ops every framework has a kernel for.
unary("tanh", np.tanh, doc="hyperbolic tangent", vjp=lambda b, x, y, g, a: b.op("tanh_grad", y, g))
unary("sigmoid", _sigmoid, doc="1 / (1 + e**-x)", vjp=lambda b, x, y, g, a: b.op("sigmoid_grad", y, g))
# relu'(0) = 0 and leaky_relu'(0) = alpha, as in torch and TensorFlow.
unary(
    "relu",
    lambda x: np.maximum(x, 0).astype(x.dtype),
    doc="max(x, 0)",
    float_only=False,
    # relu_grad reads the result, so a fused conv2d/linear need not recompute its pre-activation.
    vjp=lambda b, x, y, g, a: b.op("relu_grad", y, g),
)
unary(
    "gelu",
    _gelu,
    doc='exact erf GELU; approximate="tanh" for the tanh form',
    attrs=(Attr("approximate", "str", "none", ("none", "tanh")),),
    vjp=_gelu_vjp,
)
unary("silu", lambda x: x * _sigmoid(x), doc="x * sigmoid(x)", vjp=_silu_vjp)
unary(
    "softplus",
    lambda x: np.logaddexp(0.0, x),
    doc="log(1 + e**x)",
    vjp=lambda b, x, y, g, a: b.mul(g, b.op("sigmoid", x)),
)
unary(
    "erf",
    _erf,
    doc="the error function",
    vjp=lambda b, x, y, g, a: b.mul(g, b.scale(b.op("exp", b.neg(b.mul(x, x))), 2.0 / math.sqrt(math.pi))),
)
unary("floor", np.floor, doc="round down", differentiable=False)
unary("ceil", np.ceil, doc="round up", differentiable=False)
unary("sign", np.sign, doc="-1, 0 or 1", float_only=False, differentiable=False)
unary(
    "leaky_relu",
    lambda x, a: np.where(x >= 0, x, a["alpha"] * x),
    doc="x if x >= 0 else alpha * x",
    attrs=(Attr("alpha", "float", 0.01),),
    vjp=lambda b, x, y, g, a: b.where(b.op("greater", x, b.const(0.0, x)), g, b.scale(g, a["alpha"])),
)
unary(
    "elu",
    lambda x, a: np.where(x > 0, x, a["alpha"] * np.expm1(x)),
    doc="x if x > 0 else alpha * (e**x - 1)",
    attrs=(Attr("alpha", "float", 1.0),),
    vjp=_elu_vjp,
)
unary(
    "clip",
    _clip,
    doc="min(max(x, min), max); either bound may be omitted",
    float_only=False,
    attrs=(Attr("min", "float?", None), Attr("max", "float?", None)),
    vjp=_clip_vjp,
)


def _int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # Integer division truncates toward zero (as C, ONNX `Div`, torch
    # rounding_mode="trunc" and tf.truncatediv); Python's // floors instead.
    q = np.abs(a) // np.abs(b)
    return cast(np.ndarray, np.where((a < 0) != (b < 0), -q, q))


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "iu":
        return _int_div(a, b)
    return cast(np.ndarray, a / b)


# The VJP of a binary op: (builder, a, b, y, cotangent) -> the cotangents of a and b, of y's
# (broadcast) shape; the autodiff pass sums each down to its input's shape.
BinaryVjp = Callable[["GradBuilder", "Value", "Value", "Value", "Value"], "tuple[Value, Value]"]


def binary(
    name: str,
    fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
    *,
    doc: str,
    commutative: bool = False,
    compare: bool = False,
    differentiable: bool = True,
    vjp: BinaryVjp | None = None,
) -> OpDef:
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
            vjp=_binary_rule(vjp) if vjp is not None else None,
            equal_dims=broadcast_equal,
            family="elementwise",
        )
    )


def _binary_rule(vjp: BinaryVjp) -> Any:
    def rule(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
        return list(vjp(b, node.inputs[0], node.inputs[1], node.outputs[0], cts[0]))

    return rule


def _div_vjp(b: GradBuilder, x: Value, z: Value, y: Value, g: Value) -> tuple[Value, Value]:
    gx = b.div(g, z)
    return gx, b.neg(b.mul(gx, y))  # d(x/z)/dz = -x/z^2 = -(1/z) y


def _pow_vjp(b: GradBuilder, x: Value, p: Value, y: Value, g: Value) -> tuple[Value, Value]:
    # As torch: x ** 0 has derivative 0 in x (not 0 * x**-1, NaN at x = 0), and the derivative
    # in p is taken as 0 where x = 0. Both are selected with where, log reads a safe 1 at x = 0.
    zero = b.const(0.0, x)
    dx = b.where(b.op("equal", p, zero), zero, b.mul(p, b.op("pow", x, b.sub(p, b.const(1.0, p)))))
    x_is_0 = b.op("equal", x, zero)
    dp = b.zero_where(x_is_0, b.mul(y, b.op("log", b.where(x_is_0, b.const(1.0, x), x))))
    return b.mul(g, dx), b.mul(g, dp)


def _extremum_vjp(pick: str) -> BinaryVjp:
    """maximum/minimum: the winner gets the cotangent; a tie splits it in half (as torch)."""

    def vjp(b: GradBuilder, x: Value, z: Value, y: Value, g: Value) -> tuple[Value, Value]:
        half = b.keep_where(b.op("equal", x, z), b.scale(g, 0.5))
        return b.where(b.op(pick, x, z), g, half), b.where(b.op(pick, z, x), g, half)

    return vjp


binary("add", np.add, doc="a + b", commutative=True, vjp=lambda b, x, z, y, g: (g, g))
binary("sub", np.subtract, doc="a - b", vjp=lambda b, x, z, y, g: (g, b.neg(g)))
binary("mul", np.multiply, doc="a * b", commutative=True, vjp=lambda b, x, z, y, g: (b.mul(g, z), b.mul(g, x)))
binary("div", _div, doc="a / b (integers truncate toward zero)", vjp=_div_vjp)
binary("pow", np.power, doc="a ** b", vjp=_pow_vjp)
binary("maximum", np.maximum, doc="elementwise max", commutative=True, vjp=_extremum_vjp("greater"))
binary("minimum", np.minimum, doc="elementwise min", commutative=True, vjp=_extremum_vjp("less"))
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
        vjp=lambda b, node, cts: _where_vjp(b, node.inputs[0], cts[0]),
        equal_dims=broadcast_equal,
        family="elementwise",
    )
)


def _where_vjp(b: GradBuilder, cond: Value, g: Value) -> list[Value | None]:
    """The cotangent goes to the taken branch; the other gets an exact 0.

    Selected with ``where``, never ``g * cast(cond)``: ``0 * inf = NaN``, so a mask
    product would turn an infinite or NaN cotangent in the untaken positions into NaN
    (PITFALLS, jax-ml/jax#1052). The autodiff pass also re-selects with ``cond`` along
    the elementwise ops that compute each branch, so their inf/NaN local derivatives
    in the untaken positions stay out of the gradient (see dlir.autodiff.transform).
    """
    return [None, b.keep_where(cond, g), b.zero_where(cond, g)]


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
        # Only float -> float casts carry a gradient (the pass never sends one into an int or bool).
        vjp=lambda b, node, cts: [
            b.cast(cts[0], node.inputs[0].type.dtype) if node.inputs[0].type.dtype.is_float else None
        ],
        equal_dims=broadcast_equal,
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
        equal_dims=broadcast_equal,
        family="elementwise",
    )
)
