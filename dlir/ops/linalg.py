"""Linear algebra: `matmul` (NumPy semantics: batched, broadcasting) and `transpose`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from dlir.errors import TypeError_
from dlir.ir.types import TensorType
from dlir.ops.registry import Attr, OpDef, register
from dlir.ops.shape_rules import broadcast_shapes, require_numeric, same_dtype

if TYPE_CHECKING:
    from dlir.autodiff.builder import GradBuilder
    from dlir.ir.graph import Node, Value


def _matmul_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, y = ts
    dt = same_dtype("matmul", ts)
    require_numeric("matmul", x)
    if x.rank == 0 or y.rank == 0:
        raise TypeError_(f"matmul: operands must have rank >= 1, got {x} and {y}", hint="use * for scalars")
    xs = x.shape if x.rank > 1 else (x.shape[0],)
    ys = y.shape if y.rank > 1 else (y.shape[0],)
    k1 = xs[-1]
    k2 = ys[-2] if y.rank > 1 else ys[0]
    if not k1.compatible(k2):
        raise TypeError_(
            f"matmul: inner dims differ ({k1} vs {k2}) for {x} @ {y}",
            hint="x @ w needs x's last dim to equal w's second-to-last dim",
        )
    try:
        batch = broadcast_shapes("matmul", [TensorType(dt, x.shape[:-2]), TensorType(dt, y.shape[:-2])])
    except TypeError_ as e:
        raise TypeError_(f"matmul: batch dims of {x} @ {y} cannot be broadcast", hint=e.hint) from None
    out = list(batch)
    if x.rank > 1:
        out.append(x.shape[-2])
    if y.rank > 1:
        out.append(y.shape[-1])
    return [TensorType(dt, tuple(out))]


def _matmul_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x, y = xs
    if x.dtype.kind == "f" or x.dtype.name == "bfloat16":
        x, y = x.astype(np.float64), y.astype(np.float64)
    return [np.matmul(x, y)]


def _swap_last(b: GradBuilder, v: Value) -> Value:
    r = v.type.rank
    return b.op("transpose", v, perm=list(range(r - 2)) + [r - 1, r - 2])


def _matmul_vjp(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
    """``da = g @ b^T``, ``db = a^T @ g`` on the matrix forms of the operands.

    A 1-D operand is a row (a) or a column (b) matrix, so ``g`` gets its missing axis
    back first. The results keep the broadcast batch axes; the autodiff pass sums
    them down to each operand's shape, and the axis added for a 1-D ``b`` is
    dropped here.
    """
    x, w = node.inputs
    g = cts[0]
    x2 = x if x.type.rank > 1 else b.op("unsqueeze", x, axes=[0])
    w2 = w if w.type.rank > 1 else b.op("unsqueeze", w, axes=[1])
    if x.type.rank == 1:
        g = b.op("unsqueeze", g, axes=[g.type.rank - 1 if w.type.rank > 1 else g.type.rank])
    if w.type.rank == 1:
        g = b.op("unsqueeze", g, axes=[g.type.rank])
    gx = b.op("matmul", g, _swap_last(b, w2))
    gw = b.op("matmul", _swap_last(b, x2), g)
    if w.type.rank == 1:
        gw = b.op("squeeze", gw, axes=[gw.type.rank - 1])
    return [gx, gw]


register(
    OpDef(
        "matmul",
        ("a", "b"),
        (),
        _matmul_infer,
        _matmul_ref,
        doc="a @ b: batched, broadcasting, 1-D operands as in NumPy",
        vjp=_matmul_vjp,
        family="linalg",
    )
)


def _perm(op: str, perm: list[int] | None, rank: int) -> list[int]:
    if perm is None:
        return list(reversed(range(rank)))
    norm = [p % rank if -rank <= p < rank else -1 for p in perm]
    if len(perm) != rank or sorted(norm) != list(range(rank)):
        raise TypeError_(
            f"{op}: perm {perm} is not a permutation of the {rank} axes",
            hint=f"give each axis 0..{rank - 1} exactly once",
        )
    return norm


def _transpose_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    t = ts[0]
    p = _perm("transpose", a["perm"], t.rank)
    return [t.with_shape([t.shape[i] for i in p])]


register(
    OpDef(
        "transpose",
        ("x",),
        (Attr("perm", "axes?", None),),
        _transpose_infer,
        lambda xs, a: [np.transpose(xs[0], _perm("transpose", a["perm"], xs[0].ndim))],
        doc="permute axes (default: reverse them)",
        vjp=lambda b, node, cts: [_transpose_vjp(b, node.inputs[0], node.attrs, cts[0])],
        family="linalg",
    )
)


def _transpose_vjp(b: GradBuilder, x: Value, a: dict[str, Any], g: Value) -> Value:
    perm = _perm("transpose", a["perm"], x.type.rank)
    inverse = [0] * len(perm)
    for i, p in enumerate(perm):
        inverse[p] = i
    return b.op("transpose", g, perm=inverse)
