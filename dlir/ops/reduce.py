"""Reductions (`sum mean max min prod logsumexp var argmax argmin`), softmax and log_softmax."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from dlir.errors import TypeError_
from dlir.ir.types import Dim, DType, TensorType
from dlir.ops.registry import Attr, OpDef, register
from dlir.ops.shape_rules import norm_axes, norm_axis, require_float, require_numeric


def reduced_shape(t: TensorType, axes: list[int], keepdims: bool) -> tuple[Dim, ...]:
    if keepdims:
        return tuple(Dim.of(1) if i in axes else d for i, d in enumerate(t.shape))
    return tuple(d for i, d in enumerate(t.shape) if i not in axes)


def _wide(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64) if x.dtype.kind == "f" or x.dtype.name == "bfloat16" else x


def _logsumexp(x: np.ndarray, axis: tuple[int, ...], keepdims: bool) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def reduction(name: str, fn: Callable[..., np.ndarray], *, doc: str, float_only: bool = False, extra: tuple[Attr, ...] = ()) -> OpDef:
    """A reduction over ``axis`` (None: all, an int, or a list), keeping dims if asked."""

    def infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
        t = ts[0]
        (require_float if float_only else require_numeric)(name, t)
        axes = norm_axes(name, a["axis"], t.rank)
        return [TensorType(t.dtype, reduced_shape(t, axes, a["keepdims"]))]

    def ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
        x = _wide(xs[0])
        axes = tuple(norm_axes(name, a["axis"], x.ndim))
        with np.errstate(all="ignore"):
            return [fn(x, axes, a)]

    attrs = (Attr("axis", "axes?", None), Attr("keepdims", "bool", False)) + extra
    return register(OpDef(name, ("x",), attrs, infer, ref, doc=doc, family="reduce"))


reduction("sum", lambda x, ax, a: np.sum(x, axis=ax, keepdims=a["keepdims"]), doc="sum over axes")
reduction("mean", lambda x, ax, a: np.mean(x, axis=ax, keepdims=a["keepdims"]), doc="mean over axes", float_only=True)
reduction("max", lambda x, ax, a: np.max(x, axis=ax, keepdims=a["keepdims"]), doc="max over axes")
reduction("min", lambda x, ax, a: np.min(x, axis=ax, keepdims=a["keepdims"]), doc="min over axes")
reduction("prod", lambda x, ax, a: np.prod(x, axis=ax, keepdims=a["keepdims"]), doc="product over axes")
reduction("logsumexp", lambda x, ax, a: _logsumexp(x, ax, a["keepdims"]), doc="log(sum(exp(x))), computed stably", float_only=True)
reduction(
    "var",
    lambda x, ax, a: np.var(x, axis=ax, keepdims=a["keepdims"], ddof=a["correction"]),
    doc="variance; correction=0 (population, as numpy and TF) unless given",
    float_only=True,
    extra=(Attr("correction", "int", 0),),
)


def arg_reduction(name: str, fn: Callable[..., np.ndarray], doc: str) -> OpDef:
    """argmax/argmin along one axis; the result is i64 (ties: the first index)."""

    def infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
        t = ts[0]
        require_numeric(name, t)
        ax = norm_axis(name, a["axis"], t.rank)
        return [TensorType(DType.i64, reduced_shape(t, [ax], a["keepdims"]))]

    def ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
        x = xs[0]
        ax = norm_axis(name, a["axis"], x.ndim)
        out = fn(x, axis=ax)
        return [np.expand_dims(out, ax) if a["keepdims"] and x.ndim else out]

    attrs = (Attr("axis", "int", -1), Attr("keepdims", "bool", False))
    return register(OpDef(name, ("x",), attrs, infer, ref, doc=doc, differentiable=False, family="reduce"))


arg_reduction("argmax", np.argmax, "index of the max along axis (default -1)")
arg_reduction("argmin", np.argmin, "index of the min along axis (default -1)")


def _softmax_ref(log: bool) -> Callable[[list[np.ndarray], dict[str, Any]], list[np.ndarray]]:
    def ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
        x = _wide(xs[0])
        ax = norm_axis("softmax", a["axis"], x.ndim)
        lse = _logsumexp(x, (ax,), True)
        return [x - lse if log else np.exp(x - lse)]

    return ref


def _softmax_infer(name: str) -> Callable[[list[TensorType], dict[str, Any]], list[TensorType]]:
    def infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
        require_float(name, ts[0])
        if ts[0].rank == 0:
            raise TypeError_(f"{name} needs a tensor of rank >= 1, got {ts[0]}")
        norm_axis(name, a["axis"], ts[0].rank)
        return [ts[0]]

    return infer


for _name, _log in (("softmax", False), ("log_softmax", True)):
    register(
        OpDef(
            _name,
            ("x",),
            (Attr("axis", "int", -1),),
            _softmax_infer(_name),
            _softmax_ref(_log),
            doc=f"{_name} along one axis (default -1), never flattened",
            family="reduce",
        )
    )
