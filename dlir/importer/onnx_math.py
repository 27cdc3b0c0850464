"""ONNX's elementwise math and Lp/mean-variance normalisations, written with the ops dlir has.

Hyperbolic functions and their inverses come from ``exp``, ``log`` and ``sqrt`` by their
textbook identities, which keep float32 within ONNX's tolerances on the moderate inputs
models feed them. (``IsNaN`` and ``IsInf`` are dlir ops of their own: dlir.importer.onnx_logic.)
"""

from __future__ import annotations

from typing import Any

from dlir.importer.builder import Builder, Operand, handles
from dlir.importer.onnx_ops import _scalar


def _exp_pair(b: Builder, x: Operand) -> tuple[Any, Any]:
    return b.op("exp", [x]), b.op("exp", [b.op("neg", [x])])


def _half(b: Builder, x: Operand, v: Any) -> Any:
    return b.op("mul", [v, _scalar(b, x, 0.5)])


@handles("Cosh")
def _cosh(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    ep, en = _exp_pair(b, ins[0])
    return _half(b, ins[0], b.op("add", [ep, en]))


@handles("Sinh")
def _sinh(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    ep, en = _exp_pair(b, ins[0])
    return _half(b, ins[0], b.op("sub", [ep, en]))


@handles("Tan")
def _tan(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    return b.op("div", [b.op("sin", [ins[0]]), b.op("cos", [ins[0]])])


@handles("Asinh")
def _asinh(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    # asinh is odd: computing it on |x| and restoring the sign avoids log(x + sqrt(x^2+1))
    # cancelling to log(~0) for large negative x.
    x = ins[0]
    ax = b.op("abs", [x])
    r = b.op("sqrt", [b.op("add", [b.op("mul", [ax, ax]), _scalar(b, x, 1.0)])])
    return b.op("mul", [b.op("sign", [x]), b.op("log", [b.op("add", [ax, r])])])


@handles("Acosh")
def _acosh(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x = ins[0]
    r = b.op("sqrt", [b.op("sub", [b.op("mul", [x, x]), _scalar(b, x, 1.0)])])
    return b.op("log", [b.op("add", [x, r])])


@handles("Atanh")
def _atanh(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x = ins[0]
    one = _scalar(b, x, 1.0)
    ratio = b.op("div", [b.op("add", [one, x]), b.op("sub", [one, x])])
    return _half(b, x, b.op("log", [ratio]))


@handles("Shrink")
def _shrink(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x = ins[0]
    lambd, bias = _scalar(b, x, float(a.get("lambd", 0.5))), _scalar(b, x, float(a.get("bias", 0.0)))
    zero = _scalar(b, x, 0.0)
    low = b.op("where", [b.op("less", [x, b.op("neg", [lambd])]), b.op("add", [x, bias]), zero])
    return b.op("where", [b.op("greater", [x, lambd]), b.op("sub", [x, bias]), low])


def _safe_divide(b: Builder, x: Operand, norm: Any) -> Any:
    """x / norm, 0 where norm is 0 (ONNX's reference), with no 0/0 for a gradient to meet either."""
    zero = b.op("equal", [norm, _scalar(b, x, 0.0)])
    y = b.op("div", [x, b.op("where", [zero, _scalar(b, x, 1.0), norm])])
    return b.op("where", [zero, _scalar(b, x, 0.0), y])


@handles("LpNormalization")
def _lp_normalization(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x, p, axis = ins[0], int(a.get("p", 2)), int(a.get("axis", -1))
    if p == 1:
        norm = b.op("sum", [b.op("abs", [x])], axis=axis, keepdims=True)
    elif p == 2:
        norm = b.op("sqrt", [b.op("sum", [b.op("mul", [x, x])], axis=axis, keepdims=True)])
    else:
        raise b.error(f"LpNormalization with p={p} is not supported", "ONNX defines p = 1 and p = 2")
    return _safe_divide(b, x, norm)


@handles("MeanVarianceNormalization")
def _mvn(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    """(x - mean) / (std + 1e-9) over ``axes`` (default N, H, W), as the spec's function body."""
    x = ins[0]
    axes = [int(v) for v in a.get("axes", [0, 2, 3])]
    d = b.op("sub", [x, b.op("mean", [x], axis=axes, keepdims=True)])
    std = b.op("sqrt", [b.op("mean", [b.op("mul", [d, d])], axis=axes, keepdims=True)])
    return b.op("div", [d, b.op("add", [std, _scalar(b, x, 1e-9)])])
