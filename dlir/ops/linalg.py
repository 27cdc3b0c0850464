"""Linear algebra: `matmul` (NumPy semantics: batched, broadcasting) and `transpose`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import numpy as np

from dlir.errors import TypeError_
from dlir.ir.types import Dim, TensorType
from dlir.ops.registry import Attr, OpDef, get_op, register, type_list
from dlir.ops.shape_rules import broadcast_pairs, broadcast_shapes, require_numeric, same_dtype

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
    return [matmul_2d_rhs(x, y)]


def matmul_2d_rhs(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``np.matmul``; a batched x against a matrix y goes through one 2-D GEMM (numpy's
    broadcasting matmul loop is far slower than BLAS there)."""
    if x.ndim > 2 and y.ndim == 2 and x.size and y.size:
        return cast(np.ndarray, np.matmul(x.reshape(-1, x.shape[-1]), y).reshape(*x.shape[:-1], y.shape[-1]))
    return cast(np.ndarray, np.matmul(x, y))


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
    # dw of a batched x and a 2-D w: one matrix product over all rows
    gw = b.rows_product(x, g) if w.type.rank == 2 and x.type.rank > 2 else b.op("matmul", _swap_last(b, x2), g)
    if w.type.rank == 1:
        gw = b.op("squeeze", gw, axes=[gw.type.rank - 1])
    return [gx, gw]


def _matmul_equal(ts: list[TensorType], a: dict[str, Any]) -> list[tuple[Dim, Dim]]:
    """The inner dims, and the batch dims as broadcasting pairs them (1-D operands: none)."""
    if not all(t.rank >= 2 for t in ts):
        return []
    x, y = ts
    return [(x.shape[-1], y.shape[-2]), *broadcast_pairs([x.shape[:-2], y.shape[:-2]])]


register(
    OpDef(
        "matmul",
        ("a", "b"),
        (),
        _matmul_infer,
        _matmul_ref,
        doc="a @ b: batched, broadcasting, 1-D operands as in NumPy",
        vjp=_matmul_vjp,
        equal_dims=_matmul_equal,
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


# -- linear: the fused dense layer ---------------------------------------------------------

# The activations `linear` fuses, as (op, attributes) of the unfused op.
FUSED_ACTS: dict[str, tuple[str, dict[str, Any]] | None] = {
    "none": None,
    "relu": ("relu", {}),
    "tanh": ("tanh", {}),
    "sigmoid": ("sigmoid", {}),
    "gelu": ("gelu", {"approximate": "none"}),
    "gelu_tanh": ("gelu", {"approximate": "tanh"}),
    "silu": ("silu", {}),
}


def fused_act_name(op: str, attrs: dict[str, Any]) -> str | None:
    """The ``act`` name of the unfused activation node ``op {attrs}``, or None if none fits."""
    for name, spec in FUSED_ACTS.items():
        if spec is not None and spec[0] == op and all(attrs.get(k) == v for k, v in spec[1].items()):
            return name
    return None


def apply_act_ref(act: str, z: np.ndarray) -> np.ndarray:
    """The numpy reference of activation ``act`` applied to ``z``."""
    spec = FUSED_ACTS[act]
    if spec is None:
        return z
    return get_op(spec[0]).ref([z], dict(spec[1]))[0]


def act_vjp(b: GradBuilder, act: str, z: Value, y: Value, g: Value) -> Value:
    """The cotangent of ``z`` where ``y = act(z)`` (the unfused op's own VJP rule)."""
    from dlir.ir.graph import Node

    spec = FUSED_ACTS[act]
    if spec is None:
        return g
    op, attrs = spec
    view = Node(op, [z], dict(attrs), [y])  # not in any graph: the rule reads inputs and outputs only
    rule = get_op(op).vjp
    assert rule is not None
    got = rule(b, view, [g])[0]
    assert got is not None
    return cast("Value", got)


def _linear_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, w = ts[0], ts[1]
    dt = same_dtype("linear", ts)
    if not dt.is_float:
        raise TypeError_(f"linear: operands must be floats, got {type_list(ts)}")
    if x.rank < 1 or w.rank != 2:
        raise TypeError_(f"linear: expects x: [..., K] and w: [K, N], got {x} and {w}")
    if not x.shape[-1].compatible(w.shape[0]):
        raise TypeError_(f"linear: inner dims differ ({x.shape[-1]} vs {w.shape[0]}) for {x} and {w}")
    if len(ts) == 3 and (ts[2].rank != 1 or not ts[2].shape[0].compatible(w.shape[1])):
        raise TypeError_(f"linear: b: {ts[2]} must be [N] = [{w.shape[1]}] for w: {w}")
    return [x.with_shape([*x.shape[:-1], w.shape[1]])]


def _linear_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    z = matmul_2d_rhs(xs[0].astype(np.float64), xs[1].astype(np.float64))
    if len(xs) == 3:
        z = z + xs[2].astype(np.float64)
    return [apply_act_ref(a["act"], z)]


def _linear_vjp(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
    """Through the decomposition ``act(x @ w + b)``: the activation's rule, then matmul's."""
    x, w = node.inputs[0], node.inputs[1]
    y = node.outputs[0]
    g = cts[0]
    if node.attrs["act"] != "none":
        z = b.op("matmul", x, w)
        if len(node.inputs) == 3:
            z = b.op("add", z, node.inputs[2])
        g = act_vjp(b, node.attrs["act"], z, y, g)
    gx = b.op("matmul", g, _swap_last(b, w)) if b.needs(0) else None
    gw = None
    if b.needs(1):
        if x.type.rank > 2:
            gw = b.rows_product(x, g)  # one matrix product over all rows
        else:
            x2 = x if x.type.rank > 1 else b.op("unsqueeze", x, axes=[0])
            g2 = g if x.type.rank > 1 else b.op("unsqueeze", g, axes=[0])
            gw = b.op("matmul", _swap_last(b, x2), g2)
    out: list[Value | None] = [gx, gw]
    if len(node.inputs) == 3:
        out.append(g)  # summed down to [N] by the driver
    return out


register(
    OpDef(
        "linear",
        ("x", "w", "b?"),
        (Attr("act", "str", "none", tuple(FUSED_ACTS)),),
        _linear_infer,
        _linear_ref,
        doc="act(x @ w + b) with w: [K, N], b: [N] (made by the fuse pass)",
        vjp=_linear_vjp,
        family="linalg",
    )
)
