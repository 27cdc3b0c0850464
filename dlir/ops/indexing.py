"""Indexing ops: pad, gather, one_hot."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from dlir.errors import TypeError_
from dlir.ir.types import Dim, DType, TensorType
from dlir.ops.registry import Attr, OpDef, register
from dlir.ops.shape import END
from dlir.ops.shape_rules import norm_axis

if TYPE_CHECKING:
    from dlir.autodiff.builder import GradBuilder
    from dlir.ir.graph import Node, Value

# -- pad ------------------------------------------------------------------------------------


def _pad_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, pads = ts[0], a["pads"]
    if len(pads) != 2 * x.rank:
        raise TypeError_(
            f"pad: pads={pads} has {len(pads)} entries, but x: {x} needs {2 * x.rank}",
            hint="give [before, after] for every axis in order: [before0, after0, before1, after1, ...]",
        )
    if any(p < 0 for p in pads):
        raise TypeError_(f"pad: pads={pads} has a negative entry", hint="to cut a tensor, use slicing x[a:b]")
    if x.dtype.is_int and not float(a["value"]).is_integer():
        raise TypeError_(f"pad: value={a['value']} is not an integer, but x: {x} is", hint="pad with a whole number")
    return [x.with_shape([d + pads[2 * i] + pads[2 * i + 1] for i, d in enumerate(x.shape)])]


def _pad_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    if xs[0].ndim == 0:
        return [xs[0].copy()]  # a scalar has no axes to pad
    p = a["pads"]
    return [np.pad(xs[0], [(p[2 * i], p[2 * i + 1]) for i in range(xs[0].ndim)], constant_values=a["value"])]


register(
    OpDef(
        "pad",
        ("x",),
        (Attr("pads", "ints"), Attr("value", "float", 0.0)),
        _pad_infer,
        _pad_ref,
        doc="constant padding: pads = [before0, after0, before1, after1, ...] (numpy style per axis), value",
        vjp=lambda b, node, cts: _pad_vjp(b, node, cts),  # (defined below)
        family="indexing",
    )
)

# -- gather -----------------------------------------------------------------------------------


def _require_index(op: str, what: str, t: TensorType, other: TensorType | None = None) -> None:
    if not t.dtype.is_int:
        with_other = f" (x: {other})" if other is not None else ""
        raise TypeError_(f"{op}: {what}: {t} must hold integers{with_other}", hint=f"convert it with cast({what}, i64)")


def _gather_canonical(ts: list[TensorType], a: dict[str, Any]) -> dict[str, Any]:
    # A non-negative axis, so every backend sees the same number.
    if ts[0].rank == 0:
        raise TypeError_(f"gather: cannot index a scalar x: {ts[0]}", hint="gather picks entries along an axis of x")
    return {**a, "axis": norm_axis("gather", a["axis"], ts[0].rank)}


def _gather_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, idx = ts
    _require_index("gather", "idx", idx, x)
    ax = _gather_canonical(ts, a)["axis"]
    return [x.with_shape(x.shape[:ax] + idx.shape + x.shape[ax + 1 :])]


register(
    OpDef(
        "gather",
        ("x", "idx"),
        (Attr("axis", "int", 0),),
        _gather_infer,
        lambda xs, a: [np.take(xs[0], xs[1], axis=a["axis"])],
        doc="numpy take: entries of x at idx along axis (negative indices count from the end); "
        "out = x.shape[:axis] + idx.shape + x.shape[axis+1:]",
        canonical=_gather_canonical,
        vjp=lambda b, node, cts: _gather_vjp(b, node, cts),  # x only: idx gets no cotangent
        family="indexing",
    )
)

# -- one_hot ---------------------------------------------------------------------------------


def _one_hot_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    _require_index("one_hot", "i", ts[0])
    if a["n"] < 1:
        raise TypeError_(f"one_hot: n={a['n']} must be positive", hint="n is the number of classes")
    return [TensorType(a["dtype"], ts[0].shape + (Dim.of(a["n"]),))]


def _one_hot_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    # An index outside [0, n) matches no class: an all-zero row.
    return [(xs[0][..., None] == np.arange(a["n"])).astype(a["dtype"].numpy)]


register(
    OpDef(
        "one_hot",
        ("i",),
        (Attr("n", "int"), Attr("dtype", "dtype", DType.f32)),
        _one_hot_infer,
        _one_hot_ref,
        doc="one-hot rows of length n for class ids i (an id outside [0, n) gives a row of zeros)",
        differentiable=False,
        family="indexing",
    )
)


# -- VJPs (the autodiff pass calls these; they emit nothing but dlir ops) -------------------


def _pad_vjp(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
    """The cotangent without the padded cells."""
    p = node.attrs["pads"]
    axes = [i for i in range(len(p) // 2) if p[2 * i] or p[2 * i + 1]]
    if not axes:
        return [cts[0]]
    starts = [p[2 * i] for i in axes]
    ends = [-p[2 * i + 1] if p[2 * i + 1] else END for i in axes]
    return [b.op("slice", cts[0], starts=starts, ends=ends, axes=axes, steps=[1] * len(axes))]


def _gather_vjp(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
    """Scatter-add as a matmul with one-hot rows: dx[.., n, ..] = sum over idx == n of g."""
    x, idx = node.inputs
    g = cts[0]
    ax = node.attrs["axis"]
    n = x.type.shape[ax]
    if not n.is_static:
        raise b.error(f"cannot differentiate gather along axis {ax} of symbolic size in {x.type}")
    size = b.op("constant", value=n.value, dtype=idx.type.dtype)
    wrapped = b.where(b.op("less", idx, b.op("constant", value=0, dtype=idx.type.dtype)), b.add(idx, size), idx)
    onehot = b.op("one_hot", wrapped, n=n.value, dtype=x.type.dtype)
    flat = [_product(x.type.shape[:ax]), _product(idx.type.shape), _product(x.type.shape[ax + 1 :])]
    g3 = b.op("reshape", g, shape=b.dims(g.type.with_shape(flat)))  # [P, K, Q]
    rows = b.op("reshape", onehot, shape=b.dims(onehot.type.with_shape([flat[1], n])))  # [K, N]
    dx = b.op("matmul", b.op("transpose", rows, perm=[1, 0]), g3)  # [N, K] @ [P, K, Q] = [P, N, Q]
    return [b.op("reshape", dx, shape=b.dims(x.type)), None]


def _product(dims: Sequence[Dim]) -> Dim:
    out = Dim.of(1)
    for d in dims:
        out = out * d
    return out
