"""Element-wise indexing ops, as ONNX defines them: gather_elements, scatter_elements,
scatter_nd, cumsum, topk.

Indices may be negative (counting from the end of their axis) wherever ONNX allows it;
every target normalises them. Where a scatter writes one cell twice, ``reduction``
says how the writes combine ("add", "mul", "max", "min", with the cell's old value);
with "none" a repeated cell is undefined (ONNX says so) and the cases never repeat one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import numpy as np

from dlir.errors import TypeError_
from dlir.ir.types import Dim, DType, TensorType
from dlir.ops.registry import Attr, OpDef, register
from dlir.ops.shape_rules import norm_axis

if TYPE_CHECKING:
    from dlir.autodiff.builder import GradBuilder
    from dlir.ir.graph import Node, Value

REDUCTIONS = ("none", "add", "mul", "max", "min")
_UFUNCS = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _index_type(op: str, t: TensorType) -> None:
    if t.dtype not in (DType.i32, DType.i64):
        raise TypeError_(f"{op}: indices must be i32 or i64, got {t}", hint="convert them with cast(idx, i64)")


def _axis(ts: list[TensorType], a: dict[str, Any], op: str) -> dict[str, Any]:
    return {**a, "axis": norm_axis(op, a["axis"], max(ts[0].rank, 1))}


def _same_rank(op: str, x: TensorType, idx: TensorType) -> None:
    if x.rank != idx.rank or x.rank == 0:
        raise TypeError_(
            f"{op}: x: {x} and indices: {idx} must have the same rank (at least 1)",
            hint="indices name one entry of x along axis for each of their positions",
        )


def _full_index(idx: np.ndarray, axis: int, n: int) -> tuple[np.ndarray, ...]:
    """The numpy index of every position of ``idx``, with ``idx`` (negatives wrapped) on ``axis``."""
    grid: list[np.ndarray] = list(np.indices(idx.shape, sparse=True))
    grid[axis] = np.where(idx < 0, idx + n, idx)
    return tuple(np.broadcast_arrays(*grid))


# -- gather_elements ---------------------------------------------------------------------------


def _gather_elements_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, idx = ts
    _index_type("gather_elements", idx)
    _same_rank("gather_elements", x, idx)
    return [x.with_shape(idx.shape)]


def _gather_elements_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x, idx = xs
    return [x[_full_index(idx, a["axis"], x.shape[a["axis"]])]]


def _gather_elements_vjp(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
    x, idx = node.inputs
    dx = b.op("scatter_elements", b.zeros_like(x), idx, cts[0], axis=node.attrs["axis"], reduction="add")
    return [dx, None]


register(
    OpDef(
        "gather_elements",
        ("x", "idx"),
        (Attr("axis", "int", 0),),
        _gather_elements_infer,
        _gather_elements_ref,
        doc="ONNX GatherElements / torch.gather: out[i][j][k] = x[i][idx[i][j][k]][k] for axis=1",
        canonical=lambda ts, a: _axis(ts, a, "gather_elements"),
        vjp=_gather_elements_vjp,
        family="gather_scatter",
    )
)

# -- scatter_elements --------------------------------------------------------------------------


def _scatter_infer(op: str, ts: list[TensorType], a: dict[str, Any]) -> None:
    x, idx, upd = ts
    _index_type(op, idx)
    if upd.dtype is not x.dtype:
        raise TypeError_(f"{op}: updates: {upd} must have x's dtype ({x})", hint=f"cast(updates, {x.dtype})")
    if a["reduction"] in ("add", "mul") and x.dtype is DType.bool:
        raise TypeError_(f"{op}: reduction={a['reduction']!r} needs numbers, got {x}")


def _scatter_elements_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, idx, upd = ts
    _scatter_infer("scatter_elements", ts, a)
    _same_rank("scatter_elements", x, idx)
    if tuple(idx.shape) != tuple(upd.shape) and all(d.is_static for d in (*idx.shape, *upd.shape)):
        raise TypeError_(f"scatter_elements: indices: {idx} and updates: {upd} must have the same shape")
    return [x]


def _scatter_elements_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x, idx, upd = xs
    out = x.copy()
    where = _full_index(idx, a["axis"], x.shape[a["axis"]])
    if a["reduction"] == "none":
        out[where] = upd
    else:
        _UFUNCS[a["reduction"]].at(out, where, upd)
    return [out]


def _scatter_vjp(op: str, gather: str) -> Any:
    """x's cotangent: g where nothing was written ("none") or g itself ("add"); updates': g at the written cells."""

    def vjp(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
        x, idx, upd = node.inputs
        g = cts[0]
        red = node.attrs["reduction"]
        if red not in ("none", "add"):
            raise b.error(f"{op} with reduction={red!r} is not differentiable in dlir", "use 'none' or 'add'")
        attrs = {k: v for k, v in node.attrs.items() if k != "reduction"}
        dx = g if red == "add" else b.op(op, g, idx, b.zeros_like(upd), reduction="none", **attrs)
        return [dx, None, b.op(gather, g, idx, **attrs)]

    return vjp


register(
    OpDef(
        "scatter_elements",
        ("x", "idx", "updates"),
        (Attr("axis", "int", 0), Attr("reduction", "str", "none", REDUCTIONS)),
        _scatter_elements_infer,
        _scatter_elements_ref,
        doc="ONNX ScatterElements / torch.scatter(_reduce): x with x[i][idx[i][j]] = updates[i][j] (axis=1), "
        "repeated cells combined by reduction",
        canonical=lambda ts, a: _axis(ts, a, "scatter_elements"),
        vjp=_scatter_vjp("scatter_elements", "gather_elements"),
        family="gather_scatter",
    )
)

# -- scatter_nd ----------------------------------------------------------------------------------


def _scatter_nd_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, idx, upd = ts
    _scatter_infer("scatter_nd", ts, a)
    k = idx.shape[-1] if idx.rank else None
    if k is None or not k.is_static or k.value > x.rank:
        raise TypeError_(
            f"scatter_nd: indices: {idx} must end in a static dim of at most x's rank ({x})",
            hint="indices[..., :] is one position of x's leading axes",
        )
    want = idx.shape[:-1] + x.shape[k.value :]
    if len(want) != upd.rank or any(not w.compatible(u) for w, u in zip(want, upd.shape, strict=True)):
        raise TypeError_(
            f"scatter_nd: updates: {upd} must have the shape indices.shape[:-1] + x.shape[k:] = "
            f"[{', '.join(str(d) for d in want)}] for x: {x} and indices: {idx}"
        )
    return [x]


def _scatter_nd_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x, idx, upd = xs
    out = x.copy()
    k = idx.shape[-1]
    where = tuple(np.where(idx[..., i] < 0, idx[..., i] + x.shape[i], idx[..., i]) for i in range(k))
    if a["reduction"] == "none":
        out[where] = upd
    else:
        _UFUNCS[a["reduction"]].at(out, where, upd)
    return [out]


register(
    OpDef(
        "scatter_nd",
        ("x", "idx", "updates"),
        (Attr("reduction", "str", "none", ("none", "add")),),
        _scatter_nd_infer,
        _scatter_nd_ref,
        doc="ONNX ScatterND: x with x[idx[j]] = updates[j] (idx[j] a position of x's first k axes), "
        "repeated cells added when reduction='add'",
        # no VJP yet: the updates' cotangent needs a gather_nd, which dlir does not have
        differentiable=False,
        family="gather_scatter",
    )
)

# -- cumsum --------------------------------------------------------------------------------------


def _cumsum_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    if ts[0].dtype is DType.bool or ts[0].rank == 0:
        raise TypeError_(f"cumsum expects a numeric tensor of rank >= 1, got {ts[0]}")
    return [ts[0]]


def _cumsum_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x, ax = xs[0], a["axis"]
    w = x.astype(np.float64) if x.dtype.kind == "f" else x
    if a["reverse"]:
        w = np.flip(w, ax)
    s = np.cumsum(w, axis=ax, dtype=w.dtype)
    if a["exclusive"]:  # the running sum before each element: shifted by one, 0 first
        s = np.concatenate([np.zeros_like(np.take(s, [0], axis=ax)), np.take(s, range(s.shape[ax] - 1), axis=ax)], ax)
    if a["reverse"]:
        s = np.flip(s, ax)
    return [cast(np.ndarray, s)]


register(
    OpDef(
        "cumsum",
        ("x",),
        (Attr("axis", "int", 0), Attr("exclusive", "bool", False), Attr("reverse", "bool", False)),
        _cumsum_infer,
        _cumsum_ref,
        doc="running sums along axis (ONNX CumSum): exclusive leaves each element out, reverse sums from the end",
        canonical=lambda ts, a: _axis(ts, a, "cumsum"),
        # the cotangent of a running sum is the running sum of the cotangent the other way round
        vjp=lambda b, node, cts: [b.op("cumsum", cts[0], **{**node.attrs, "reverse": not node.attrs["reverse"]})],
        family="gather_scatter",
    )
)

# -- topk ----------------------------------------------------------------------------------------


def _topk_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x = ts[0]
    if x.rank == 0 or x.dtype is DType.bool:
        raise TypeError_(f"topk expects a numeric tensor of rank >= 1, got {x}")
    ax, k = a["axis"], a["k"]
    n = x.shape[ax]
    if k < 1 or (n.is_static and k > n.value):
        raise TypeError_(f"topk: k={k} must be in 1..{n} for axis {ax} of {x}")
    shape = list(x.shape)
    shape[ax] = Dim.of(k)
    out = x.with_shape(shape)
    return [out, out.with_dtype(DType.i64)]


def _topk_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x, ax, k = xs[0], a["axis"], a["k"]
    # Ties: the lower index first (ONNX), for the largest and the smallest alike: a stable sort
    # of the values, descending for the largest (a stable sort of the negated values).
    key = x.astype(np.float64) if x.dtype.kind in "fiu" else x
    order = np.argsort(-key if a["largest"] else key, axis=ax, kind="stable")
    idx = np.take(order, range(k), axis=ax)
    return [np.take_along_axis(x, idx, axis=ax), idx.astype(np.int64)]


def _topk_vjp(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
    x = node.inputs[0]
    g = cts[0] if cts[0] is not None else b.zeros_like(node.outputs[0])
    return [b.op("scatter_elements", b.zeros_like(x), node.outputs[1], g, axis=node.attrs["axis"], reduction="add")]


register(
    OpDef(
        "topk",
        ("x",),
        (Attr("k", "int"), Attr("axis", "int", -1), Attr("largest", "bool", True)),
        _topk_infer,
        _topk_ref,
        doc="the k largest (or smallest) entries along axis, sorted, and their i64 indices; "
        "equal values: the lower index first (ONNX TopK)",
        canonical=lambda ts, a: _axis(ts, a, "topk"),
        vjp=_topk_vjp,
        family="gather_scatter",
    )
)
