"""Emitters for elementwise ops, reductions, softmax and the losses.

Each follows its op's numpy reference in dlir/ops (the spec), not the nearest
ONNX op's habits: integer `div` truncates (ONNX Div does), `clip` bounds on
integers behave as numpy's float comparison followed by truncation, softmax is
single-axis (opset >= 13), argmax ties take the first index.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from onnx import numpy_helper

from dlir.ir.graph import Node
from dlir.ir.types import Dim, DType
from dlir.ops.shape_rules import norm_axes, norm_axis

from .builder import ONNX_DTYPES, Builder
from .erf64 import erf_f64
from .table import emitter

# -- elementwise ------------------------------------------------------------------

_UNARY = {
    "neg": "Neg",
    "abs": "Abs",
    "exp": "Exp",
    "log": "Log",
    "sqrt": "Sqrt",
    "sin": "Sin",
    "cos": "Cos",
    "tanh": "Tanh",
    "sigmoid": "Sigmoid",
    "relu": "Relu",
    "floor": "Floor",
    "ceil": "Ceil",
    "sign": "Sign",
    "softplus": "Softplus",  # ONNX Runtime computes it stably for large |x|
}


def _unary(b: Builder, node: Node, xs: list[str]) -> str:
    return b.op(_UNARY[node.op], xs)


for _name in _UNARY:
    emitter(_name)(_unary)


def erf(b: Builder, x: str) -> str:
    # ONNX Runtime has no double Erf kernel; f64 gets a full-precision expansion.
    return erf_f64(b, x) if b.dt is DType.f64 else b.op("Erf", [x])


@emitter("erf")
def _erf(b: Builder, node: Node, xs: list[str]) -> str:
    return erf(b, xs[0])


@emitter("rsqrt")
def _rsqrt(b: Builder, node: Node, xs: list[str]) -> str:
    return b.op("Reciprocal", [b.op("Sqrt", xs)])


@emitter("gelu")
def _gelu(b: Builder, node: Node, xs: list[str]) -> str:
    # Written out: the Gelu op exists only from opset 20.
    x = xs[0]
    if node.attrs["approximate"] == "tanh":
        cube = b.op("Mul", [x, b.op("Mul", [x, x])])
        inner = b.op("Add", [x, b.op("Mul", [cube, b.scalar(0.044715)])])
        t = b.op("Tanh", [b.op("Mul", [inner, b.scalar(math.sqrt(2.0 / math.pi))])])
    else:
        t = erf(b, b.op("Div", [x, b.scalar(math.sqrt(2.0))]))
    half_x = b.op("Mul", [x, b.scalar(0.5)])
    return b.op("Mul", [half_x, b.op("Add", [t, b.scalar(1.0)])])


@emitter("silu")
def _silu(b: Builder, node: Node, xs: list[str]) -> str:
    return b.op("Mul", [xs[0], b.op("Sigmoid", xs)])


def _alpha_fits(b: Builder, alpha: float) -> bool:
    # ONNX float attributes are float32: exact enough unless the data is f64.
    return b.dt is not DType.f64 or float(np.float32(alpha)) == alpha


@emitter("leaky_relu")
def _leaky_relu(b: Builder, node: Node, xs: list[str]) -> str:
    alpha = node.attrs["alpha"]
    if _alpha_fits(b, alpha):
        return b.op("LeakyRelu", xs, alpha=alpha)
    x = xs[0]
    keep = b.op("GreaterOrEqual", [x, b.scalar(0)])
    return b.op("Where", [keep, x, b.op("Mul", [x, b.scalar(alpha)])])


@emitter("elu")
def _elu(b: Builder, node: Node, xs: list[str]) -> str:
    alpha = node.attrs["alpha"]
    if _alpha_fits(b, alpha):
        return b.op("Elu", xs, alpha=alpha)
    x = xs[0]
    neg = b.op("Mul", [b.op("Sub", [b.op("Exp", [x]), b.scalar(1)]), b.scalar(alpha)])
    return b.op("Where", [b.op("Greater", [x, b.scalar(0)]), x, neg])


@emitter("clip")
def _clip(b: Builder, node: Node, xs: list[str]) -> str:
    lo, hi = node.attrs["min"], node.attrs["max"]
    if lo is None and hi is None:
        return xs[0]
    bounds = [_clip_bound(b, v) if v is not None else "" for v in (lo, hi)]
    while bounds and bounds[-1] == "":
        bounds.pop()
    return b.op("Clip", [xs[0], *bounds])


def _clip_bound(b: Builder, v: float) -> str:
    if not b.dt.is_int:
        return b.scalar(v)
    # numpy compares the integers with the float bound, then the result is
    # truncated back to the integer dtype: that is clipping to trunc(bound).
    info = np.iinfo(b.dt.numpy)
    t = math.trunc(v) if math.isfinite(v) else (info.max if v > 0 else info.min)
    return b.scalar(min(max(t, int(info.min)), int(info.max)))


_BINARY = {
    "add": "Add",
    "sub": "Sub",
    "mul": "Mul",
    "div": "Div",  # integer Div truncates toward zero, as dlir's `div`
    "pow": "Pow",
    "maximum": "Max",
    "minimum": "Min",
    "equal": "Equal",
    "less": "Less",
    "less_equal": "LessOrEqual",
    "greater": "Greater",
    "greater_equal": "GreaterOrEqual",
}


def _binary(b: Builder, node: Node, xs: list[str]) -> str:
    return b.op(_BINARY[node.op], xs)


for _name in _BINARY:
    emitter(_name)(_binary)


@emitter("not_equal")
def _not_equal(b: Builder, node: Node, xs: list[str]) -> str:
    return b.op("Not", [b.op("Equal", xs)])


@emitter("where", moves=True, bf16_native=False)
def _where(b: Builder, node: Node, xs: list[str]) -> str:
    c, x, y = xs
    if node.outputs[0].type.dtype is not DType.bool:
        return b.op("Where", xs)
    # ONNX Runtime has no bool Where kernel: (c and x) or (not c and y).
    return b.op("Or", [b.op("And", [c, x]), b.op("And", [b.op("Not", [c]), y])])


@emitter("cast", moves=True)
def _cast(b: Builder, node: Node, xs: list[str]) -> str:
    # Cast truncates float -> int toward zero, as numpy's astype.
    if node.inputs[0].type.dtype is node.attrs["dtype"]:
        return xs[0]
    return b.op("Cast", xs, to=ONNX_DTYPES[node.attrs["dtype"]])


@emitter("constant", moves=True)
def _constant(b: Builder, node: Node, xs: list[str]) -> str:
    dt: DType = node.attrs["dtype"]
    arr = np.asarray(node.attrs["value"]).astype(dt.numpy)
    return b.op("Constant", [], value=numpy_helper.from_array(arr))


# -- reductions -------------------------------------------------------------------

_REDUCE = {
    "sum": "ReduceSum",
    "mean": "ReduceMean",
    "max": "ReduceMax",
    "min": "ReduceMin",
    "prod": "ReduceProd",
    "logsumexp": "ReduceLogSumExp",  # ONNX Runtime subtracts the max first
}


def reduce(b: Builder, op_type: str, x: str, axes: Sequence[int], keepdims: bool) -> str:
    """``op_type`` over ``axes``; no axes is the identity (as numpy's ``axis=()``)."""
    if not axes:
        return x
    return b.op(op_type, [x, b.ints(axes)], keepdims=int(keepdims))


def _reduce(b: Builder, node: Node, xs: list[str]) -> str:
    axes = norm_axes(node.op, node.attrs["axis"], node.inputs[0].type.rank)
    return reduce(b, _REDUCE[node.op], xs[0], axes, node.attrs["keepdims"])


for _name in _REDUCE:
    emitter(_name)(_reduce)


@emitter("var")
def _var(b: Builder, node: Node, xs: list[str]) -> str:
    # Two passes (mean, then squared deviations) as numpy; divide by n - correction.
    x, t = xs[0], node.inputs[0].type
    axes = norm_axes("var", node.attrs["axis"], t.rank)
    keep = node.attrs["keepdims"]
    dev = b.op("Sub", [x, reduce(b, "ReduceMean", x, axes, True)])
    ss = reduce(b, "ReduceSum", b.op("Mul", [dev, dev]), axes, keep)
    return b.op("Div", [ss, _dof(b, x, t.shape, axes, node.attrs["correction"])])


def _dof(b: Builder, x: str, shape: Sequence[Dim], axes: Sequence[int], correction: int) -> str:
    """max(n - correction, 0) for the n elements reduced, as a scalar of the compute dtype."""
    dims = [shape[a] for a in axes]
    if all(d.is_static for d in dims):
        return b.scalar(max(math.prod(d.value for d in dims) - correction, 0))
    n = b.op("ReduceProd", [b.op("Gather", [b.op("Shape", [x]), b.ints(axes)]), b.ints([0])], keepdims=0)
    n = b.op("Max", [b.op("Sub", [n, b.const(correction, np.int64)]), b.const(0, np.int64)])
    return b.cast(n, b.dt)


def _arg(b: Builder, node: Node, xs: list[str]) -> str:
    rank = node.inputs[0].type.rank
    if rank == 0:  # ONNX ArgMax needs an axis; a scalar's index is 0
        return b.const(np.zeros(node.outputs[0].type.static_shape()), np.int64, "zero")
    ax = norm_axis(node.op, node.attrs["axis"], rank)
    op_type = "ArgMax" if node.op == "argmax" else "ArgMin"
    # select_last_index=0: ties give the first index, as numpy.
    return b.op(op_type, xs, axis=ax, keepdims=int(node.attrs["keepdims"]), select_last_index=0)


emitter("argmax")(_arg)
emitter("argmin")(_arg)


@emitter("softmax", "log_softmax")
def _softmax(b: Builder, node: Node, xs: list[str]) -> str:
    ax = norm_axis(node.op, node.attrs["axis"], node.inputs[0].type.rank)
    # From opset 13 Softmax/LogSoftmax normalise along one axis (no 2-D flattening).
    return b.op("Softmax" if node.op == "softmax" else "LogSoftmax", xs, axis=ax)


# -- losses -----------------------------------------------------------------------


def mean_all(b: Builder, x: str, rank: int) -> str:
    """The mean of every element, as a scalar."""
    return reduce(b, "ReduceMean", x, list(range(rank)), False)


def _broadcast_rank(node: Node) -> int:
    return max(v.type.rank for v in node.inputs)


@emitter("cross_entropy")
def _cross_entropy(b: Builder, node: Node, xs: list[str]) -> str:
    # Labels may be i32 or i64: SoftmaxCrossEntropyLoss takes both.
    return b.op("SoftmaxCrossEntropyLoss", xs, reduction="mean")


@emitter("mse")
def _mse(b: Builder, node: Node, xs: list[str]) -> str:
    d = b.op("Sub", xs)
    return mean_all(b, b.op("Mul", [d, d]), _broadcast_rank(node))


@emitter("bce_with_logits")
def _bce_with_logits(b: Builder, node: Node, xs: list[str]) -> str:
    # max(x, 0) - x*t + log(1 + exp(-|x|)): never exponentiates a large number.
    x, t = xs
    soft = b.op("Softplus", [b.op("Neg", [b.op("Abs", [x])])])
    loss = b.op("Add", [b.op("Sub", [b.op("Relu", [x]), b.op("Mul", [x, t])]), soft])
    return mean_all(b, loss, _broadcast_rank(node))
