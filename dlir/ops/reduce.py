"""Reductions (`sum mean max min prod logsumexp var argmax argmin`), softmax and log_softmax."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from dlir.errors import TypeError_
from dlir.ir.types import Dim, DType, TensorType
from dlir.ops.registry import Attr, OpDef, register
from dlir.ops.shape_rules import norm_axes, norm_axis, require_float, require_numeric

if TYPE_CHECKING:
    from dlir.autodiff.builder import GradBuilder
    from dlir.ir.graph import Node, Value

# The VJP of a reduction: (builder, x, y, cotangent, normalised axes, attrs) -> x's cotangent.
ReduceVjp = Callable[["GradBuilder", "Value", "Value", "Value", list[int], dict[str, Any]], "Value"]


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
    return cast(np.ndarray, out if keepdims else np.squeeze(out, axis=axis))


def reduction(
    name: str,
    fn: Callable[..., np.ndarray],
    *,
    doc: str,
    float_only: bool = False,
    extra: tuple[Attr, ...] = (),
    vjp: ReduceVjp | None = None,
) -> OpDef:
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

    def rule(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
        assert vjp is not None
        x = node.inputs[0]
        axes = norm_axes(name, node.attrs["axis"], x.type.rank)
        return [vjp(b, x, node.outputs[0], cts[0], axes, node.attrs)]

    attrs = (Attr("axis", "axes?", None), Attr("keepdims", "bool", False)) + extra
    return register(
        OpDef(name, ("x",), attrs, infer, ref, doc=doc, vjp=rule if vjp is not None else None, family="reduce")
    )


# -- VJPs: ``b.unreduce`` brings a reduced cotangent back to x's shape -------------------


def _kept(b: GradBuilder, v: Value, axes: list[int], a: dict[str, Any]) -> Value:
    """A reduced value with its reduced axes back as 1s (so it broadcasts against x)."""
    return v if a["keepdims"] or not axes else b.op("unsqueeze", v, axes=axes)


def _mean_vjp(b: GradBuilder, x: Value, y: Value, g: Value, axes: list[int], a: dict[str, Any]) -> Value:
    n = b.count([x.type.shape[i] for i in axes], x.type.dtype)
    return b.unreduce(b.div(g, n), x.type, axes, a["keepdims"])


def _extremum_vjp(b: GradBuilder, x: Value, y: Value, g: Value, axes: list[int], a: dict[str, Any]) -> Value:
    # Ties share the cotangent evenly, as torch.amax and tf.reduce_max do.
    hit = b.op("equal", x, _kept(b, y, axes, a))
    ties = b.reduce("sum", b.cast(hit, x.type.dtype), axes)
    return b.keep_where(hit, b.div(_kept(b, g, axes, a), ties))


def _prod_vjp(b: GradBuilder, x: Value, y: Value, g: Value, axes: list[int], a: dict[str, Any]) -> Value:
    """d prod / d x_i is the product of the others, zeros included (not y / x_i, NaN at a zero).

    With ``rest`` the product of a slice's nonzero entries: without zeros it is
    ``rest / x_i``; with one zero the zero entry gets ``rest`` and the others
    ``rest / x_i * z`` where ``z`` is the zero entry itself (0, but its derivative
    keeps the second derivative right); with two or more zeros all get 0.
    """
    zero, one = b.const(0.0, x), b.const(1.0, x)
    is_zero = b.op("equal", x, zero)
    n_zeros = b.reduce("sum", b.cast(is_zero, x.type.dtype), axes)
    safe = b.where(is_zero, one, x)
    rest = b.reduce("prod", safe, axes)
    single = b.op("equal", n_zeros, one)
    z = b.reduce("sum", b.keep_where(is_zero, x), axes)
    factor = b.where(b.op("equal", n_zeros, zero), one, b.keep_where(single, z))
    others = b.where(is_zero, b.keep_where(single, rest), b.mul(b.div(rest, safe), factor))
    return b.mul(_kept(b, g, axes, a), others)


def _logsumexp_vjp(b: GradBuilder, x: Value, y: Value, g: Value, axes: list[int], a: dict[str, Any]) -> Value:
    return b.mul(_kept(b, g, axes, a), b.op("exp", b.sub(x, _kept(b, y, axes, a))))


def _var_vjp(b: GradBuilder, x: Value, y: Value, g: Value, axes: list[int], a: dict[str, Any]) -> Value:
    n = b.count([x.type.shape[i] for i in axes], x.type.dtype)
    denom = b.sub(n, b.const(a["correction"], x)) if a["correction"] else n
    centred = b.sub(x, b.reduce("mean", x, axes))
    return b.mul(_kept(b, g, axes, a), b.div(b.scale(centred, 2.0), denom))


reduction(
    "sum",
    lambda x, ax, a: np.sum(x, axis=ax, keepdims=a["keepdims"]),
    doc="sum over axes",
    vjp=lambda b, x, y, g, axes, a: b.unreduce(g, x.type, axes, a["keepdims"]),
)
reduction(
    "mean",
    lambda x, ax, a: np.mean(x, axis=ax, keepdims=a["keepdims"]),
    doc="mean over axes",
    float_only=True,
    vjp=_mean_vjp,
)
reduction("max", lambda x, ax, a: np.max(x, axis=ax, keepdims=a["keepdims"]), doc="max over axes", vjp=_extremum_vjp)
reduction("min", lambda x, ax, a: np.min(x, axis=ax, keepdims=a["keepdims"]), doc="min over axes", vjp=_extremum_vjp)
reduction("prod", lambda x, ax, a: np.prod(x, axis=ax, keepdims=a["keepdims"]), doc="product over axes", vjp=_prod_vjp)
reduction(
    "logsumexp",
    lambda x, ax, a: _logsumexp(x, ax, a["keepdims"]),
    doc="log(sum(exp(x))), computed stably",
    float_only=True,
    vjp=_logsumexp_vjp,
)
reduction(
    "var",
    lambda x, ax, a: np.var(x, axis=ax, keepdims=a["keepdims"], ddof=a["correction"]),
    doc="variance; correction=0 (population, as numpy and TF) unless given",
    float_only=True,
    extra=(Attr("correction", "int", 0),),
    vjp=_var_vjp,
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
        # Shift by the max first: x - logsumexp(x) loses everything when |x| is huge (1e31 - (1e31 + 7) == 0).
        z = x - np.max(x, axis=ax, keepdims=True)
        e = np.exp(z)
        s = np.sum(e, axis=ax, keepdims=True)
        return [z - np.log(s) if log else e / s]

    return ref


def _softmax_infer(name: str) -> Callable[[list[TensorType], dict[str, Any]], list[TensorType]]:
    def infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
        require_float(name, ts[0])
        if ts[0].rank == 0:
            raise TypeError_(f"{name} needs a tensor of rank >= 1, got {ts[0]}")
        norm_axis(name, a["axis"], ts[0].rank)
        return [ts[0]]

    return infer


def _softmax_vjp(log: bool) -> Callable[..., list[Any]]:
    # the backward ops softmax_grad / log_softmax_grad (dlir.ops.backward): torch's own kernels
    grad_op = "log_softmax_grad" if log else "softmax_grad"

    def rule(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
        return [b.op(grad_op, node.outputs[0], cts[0], axis=node.attrs["axis"])]

    return rule


for _name, _log in (("softmax", False), ("log_softmax", True)):
    register(
        OpDef(
            _name,
            ("x",),
            (Attr("axis", "int", -1),),
            _softmax_infer(_name),
            _softmax_ref(_log),
            doc=f"{_name} along one axis (default -1), never flattened",
            vjp=_softmax_vjp(_log),
            family="reduce",
        )
    )
