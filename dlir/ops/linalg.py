"""Linear algebra: `matmul` (NumPy semantics: batched, broadcasting) and `transpose`."""

from __future__ import annotations

from typing import Any

import numpy as np

from dlir.errors import TypeError_
from dlir.ir.types import TensorType
from dlir.ops.registry import Attr, OpDef, register
from dlir.ops.shape_rules import broadcast_shapes, require_numeric, same_dtype


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


register(
    OpDef(
        "matmul",
        ("a", "b"),
        (),
        _matmul_infer,
        _matmul_ref,
        doc="a @ b: batched, broadcasting, 1-D operands as in NumPy",
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
        family="linalg",
    )
)
