"""ONNX ops written with several dlir ops (activations, norms, reductions dlir has no single op for)."""

from __future__ import annotations

from typing import Any

import numpy as np

from dlir.importer.builder import HANDLERS, Builder, Handler, Operand, handles
from dlir.importer.onnx_ops import _scalar
from dlir.importer.onnx_shape_ops import _axes


@handles("CastLike")
def _cast_like(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    return b.op("cast", [ins[0]], dtype=b.type_of(ins[1]).dtype)


@handles("Reciprocal")
def _reciprocal(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    return b.op("div", [_scalar(b, ins[0], 1.0), ins[0]])


@handles("Softsign")
def _softsign(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x = ins[0]
    return b.op("div", [x, b.op("add", [_scalar(b, x, 1.0), b.op("abs", [x])])])


@handles("HardSigmoid")
def _hard_sigmoid(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x = ins[0]
    y = b.op(
        "add", [b.op("mul", [x, _scalar(b, x, float(a.get("alpha", 0.2)))]), _scalar(b, x, float(a.get("beta", 0.5)))]
    )
    return b.op("clip", [y], min=0.0, max=1.0)


@handles("HardSwish")
def _hard_swish(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x = ins[0]
    y = b.op("add", [b.op("mul", [x, _scalar(b, x, 1.0 / 6.0)]), _scalar(b, x, 0.5)])
    return b.op("mul", [x, b.op("clip", [y], min=0.0, max=1.0)])


@handles("Gelu")
def _gelu_op(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    approx = a.get("approximate", b"none")
    approx = approx.decode() if isinstance(approx, bytes) else approx
    return b.op("gelu", [ins[0]], approximate=approx)


@handles("Selu")
def _selu(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x = ins[0]
    alpha, gamma = float(a.get("alpha", 1.67326319217681884765625)), float(a.get("gamma", 1.05070102214813232421875))
    return b.op("mul", [b.op("elu", [x], alpha=alpha), _scalar(b, x, gamma)])


@handles("Celu")
def _celu(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x = ins[0]
    alpha = float(a.get("alpha", 1.0))
    # celu(x) = max(0, x) + min(0, alpha * (exp(x / alpha) - 1)) = alpha * elu(x / alpha)
    return b.op("mul", [b.op("elu", [b.op("div", [x, _scalar(b, x, alpha)])], alpha=1.0), _scalar(b, x, alpha)])


@handles("ThresholdedRelu")
def _thresholded_relu(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x = ins[0]
    keep = b.op("greater", [x, _scalar(b, x, float(a.get("alpha", 1.0)))])
    return b.op("where", [keep, x, _scalar(b, x, 0.0)])


@handles("PRelu")
def _prelu(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x, slope = ins
    neg = b.op("less", [x, _scalar(b, x, 0.0)])
    return b.op("where", [neg, b.op("mul", [x, slope]), x])


@handles("Mish")
def _mish(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x = ins[0]
    return b.op("mul", [x, b.op("tanh", [b.op("softplus", [x])])])


@handles("Swish")
def _swish(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x = ins[0]
    alpha = float(a.get("alpha", 1.0))
    return b.op("mul", [x, b.op("sigmoid", [b.op("mul", [x, _scalar(b, x, alpha)]) if alpha != 1.0 else x])])


@handles("Range")
def _range(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    start, limit, delta = (b.known(x, "Range's start/limit/delta") for x in ins[:3])
    return np.arange(start.item(), limit.item(), delta.item()).astype(start.dtype)


def _reduce_composite(kind: str) -> Handler:
    def h(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
        axes = _axes(b, ins, a, 18, "Reduce")
        keep = bool(a.get("keepdims", 1))
        if axes is not None and len(axes) == 0:
            axes = None
        x = ins[0]
        if axes is None and a.get("noop_with_empty_axes", 0):
            if kind == "l1":
                return b.op("abs", [x])
            if kind in ("l2",):
                return b.op("abs", [x])
            if kind == "sumsquare":
                return b.op("mul", [x, x])
            return b.op("log", [x])
        if kind == "l1":
            return b.op("sum", [b.op("abs", [x])], axis=axes, keepdims=keep)
        if kind == "sumsquare":
            return b.op("sum", [b.op("mul", [x, x])], axis=axes, keepdims=keep)
        if kind == "l2":
            return b.op("sqrt", [b.op("sum", [b.op("mul", [x, x])], axis=axes, keepdims=keep)])
        return b.op("log", [b.op("sum", [x], axis=axes, keepdims=keep)])

    return h


HANDLERS["ReduceL1"] = _reduce_composite("l1")
HANDLERS["ReduceL2"] = _reduce_composite("l2")
HANDLERS["ReduceSumSquare"] = _reduce_composite("sumsquare")
HANDLERS["ReduceLogSum"] = _reduce_composite("logsum")


@handles("RMSNormalization")
def _rms_norm(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x, scale = ins[0], ins[1]
    t = b.type_of(x)
    axis = int(a.get("axis", -1)) % t.rank
    axes = list(range(axis, t.rank))
    ms = b.op("mean", [b.op("mul", [x, x])], axis=axes, keepdims=True)
    den = b.op("sqrt", [b.op("add", [ms, _scalar(b, x, float(a.get("epsilon", 1e-5)))])])
    return b.op("mul", [b.op("div", [x, den]), scale])


@handles("InstanceNormalization")
def _instance_norm(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x, scale, bias = ins
    t = b.type_of(x)
    axes = list(range(2, t.rank))
    mu = b.op("mean", [x], axis=axes, keepdims=True)
    d = b.op("sub", [x, mu])
    var = b.op("mean", [b.op("mul", [d, d])], axis=axes, keepdims=True)
    y = b.op("div", [d, b.op("sqrt", [b.op("add", [var, _scalar(b, x, float(a.get("epsilon", 1e-5)))])])])
    shape = [1, -1] + [1] * (t.rank - 2)
    return b.op("add", [b.op("mul", [y, b.op("reshape", [scale], shape=shape)]), b.op("reshape", [bias], shape=shape)])
