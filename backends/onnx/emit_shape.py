"""Emitters for shape and indexing ops (pad, gather, one_hot), linear algebra, layer_norm and dropout.

Shape attributes may hold symbolic dims (``reshape(x, [B, -1])``): the builder
computes them at run time from the inputs that bind each symbol, so one model
serves every batch size.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlir.ir.graph import Node
from dlir.ir.types import Dim, DType
from dlir.ops.shape_rules import norm_axes, norm_axis

from .builder import Builder
from .emit_math import reduce
from .table import emitter


@emitter("matmul")
def _matmul(b: Builder, node: Node, xs: list[str]) -> str:
    # ONNX MatMul follows numpy.matmul, 1-D operands and batch broadcasting included.
    return b.op("MatMul", xs)


@emitter("linear")
def _linear(b: Builder, node: Node, xs: list[str]) -> str:
    # Rank 2: one Gemm (ONNX Runtime's fused GEMM + bias); otherwise MatMul then Add.
    if node.inputs[0].type.rank == 2:
        z = b.op("Gemm", xs)
    else:
        z = b.op("MatMul", xs[:2])
        if len(xs) == 3:
            z = b.op("Add", [z, xs[2]])
    return fused_act(b, node.attrs["act"], z)


def fused_act(b: Builder, act: str, z: str) -> str:
    """Apply a fused activation (``linear``'s ``act``) to tensor ``z`` with the unfused op's emitter."""
    from dlir.ops.linalg import FUSED_ACTS

    from .table import EMITTERS

    spec = FUSED_ACTS[act]
    if spec is None:
        return z
    op, attrs = spec
    got = EMITTERS[op](b, Node(op, [], dict(attrs), []), [z])
    assert isinstance(got, str)
    return got


@emitter("transpose", moves=True)
def _transpose(b: Builder, node: Node, xs: list[str]) -> str:
    rank = node.inputs[0].type.rank
    perm = node.attrs["perm"]
    perm = list(reversed(range(rank))) if perm is None else [p % rank for p in perm]
    return b.op("Transpose", xs, perm=perm)


@emitter("reshape", moves=True)
def _reshape(b: Builder, node: Node, xs: list[str]) -> str:
    # allowzero=1: a symbol that is 0 at run time means 0, not "copy the input dim".
    return b.op("Reshape", [xs[0], b.shape_tensor(node.attrs["shape"])], allowzero=1)


@emitter("flatten", moves=True)
def _flatten(b: Builder, node: Node, xs: list[str]) -> str:
    t, out = node.inputs[0].type, node.outputs[0].type
    if out.is_static or t.rank == 0:
        return b.op("Reshape", [xs[0], b.ints(out.static_shape())])
    s = norm_axis("flatten", node.attrs["start"], t.rank)
    e = norm_axis("flatten", node.attrs["end"], t.rank)
    # The kept dims come from the input's run-time shape (they may be unknown statically).
    parts = [b.ints([-1])]
    if s > 0:
        parts.insert(0, b.op("Shape", [xs[0]], start=0, end=s))
    if e + 1 < t.rank:
        parts.append(b.op("Shape", [xs[0]], start=e + 1))
    return b.op("Reshape", [xs[0], b.op("Concat", parts, axis=0)])


@emitter("concat", moves=True)
def _concat(b: Builder, node: Node, xs: list[str]) -> str:
    ax = norm_axis("concat", node.attrs["axis"], node.outputs[0].type.rank)
    return b.op("Concat", xs, axis=ax)


@emitter("stack", moves=True)
def _stack(b: Builder, node: Node, xs: list[str]) -> str:
    ax = norm_axis("stack", node.attrs["axis"], node.outputs[0].type.rank)
    axes = b.ints([ax])
    return b.op("Concat", [b.op("Unsqueeze", [x, axes]) for x in xs], axis=ax)


@emitter("split", moves=True)
def _split(b: Builder, node: Node, xs: list[str]) -> list[str]:
    ax = norm_axis("split", node.attrs["axis"], node.inputs[0].type.rank)
    sizes = node.attrs["sizes"]
    return b.op_n("Split", [xs[0], b.ints(sizes)], len(sizes), axis=ax)


@emitter("slice", moves=True)
def _slice(b: Builder, node: Node, xs: list[str]) -> str:
    a = node.attrs
    rank = node.inputs[0].type.rank
    # ONNX Slice clamps out-of-range bounds like Python; END (2**63-1) is its "to the end".
    axes = [ax % rank for ax in a["axes"]]
    ins = [xs[0], b.ints(a["starts"]), b.ints(a["ends"]), b.ints(axes), b.ints(a["steps"])]
    return b.op("Slice", ins)


@emitter("squeeze", moves=True)
def _squeeze(b: Builder, node: Node, xs: list[str]) -> str:
    t = node.inputs[0].type
    if node.attrs["axes"] is None:
        # The type rule drops the dims known to be 1; the output type says which.
        axes = [i for i, d in enumerate(t.shape) if d == Dim.of(1)]
    else:
        axes = norm_axes("squeeze", node.attrs["axes"], t.rank)
    if not axes:  # an empty axes input would make ONNX squeeze every 1
        return xs[0]
    return b.op("Squeeze", [xs[0], b.ints(axes)])


@emitter("unsqueeze", moves=True)
def _unsqueeze(b: Builder, node: Node, xs: list[str]) -> str:
    axes = norm_axes("unsqueeze", node.attrs["axes"], node.outputs[0].type.rank)
    return b.op("Unsqueeze", [xs[0], b.ints(axes)])


@emitter("broadcast_to", moves=True, bf16_native=False)
def _broadcast_to(b: Builder, node: Node, xs: list[str]) -> str:
    return b.op("Expand", [xs[0], b.shape_tensor(node.attrs["shape"])])


@emitter("dropout", moves=True)
def _dropout(b: Builder, node: Node, xs: list[str]) -> str:
    return xs[0]  # compiled models run in inference mode


@emitter("layer_norm")
def _layer_norm(b: Builder, node: Node, xs: list[str]) -> str:
    a: dict[str, Any] = node.attrs
    rank = node.inputs[0].type.rank
    ax = norm_axis("layer_norm", a["axis"], rank)
    if b.dt is not DType.f64:
        return b.op("LayerNormalization", xs, axis=ax, epsilon=a["eps"])
    # f64: LayerNormalization's epsilon attribute is float32 and would shift results
    # by ~1e-8; written out, it matches the reference (two-pass, biased variance).
    x, gamma, beta = xs
    axes = list(range(ax, rank))
    dev = b.op("Sub", [x, reduce(b, "ReduceMean", x, axes, True)])
    var = reduce(b, "ReduceMean", b.op("Mul", [dev, dev]), axes, True)
    norm = b.op("Div", [dev, b.op("Sqrt", [b.op("Add", [var, b.scalar(a["eps"])])])])
    return b.op("Add", [b.op("Mul", [norm, gamma]), beta])


@emitter("pad", moves=True, bf16_native=False)
def _pad(b: Builder, node: Node, xs: list[str]) -> str:
    pads = list(node.attrs["pads"])
    if not any(pads):
        return xs[0]
    # numpy pairs [before0, after0, before1, after1, ...] -> ONNX [before..., after...].
    onnx_pads = pads[0::2] + pads[1::2]
    # The value in x's dtype (b.scalar casts as numpy does: 1.7 -> 1 for integers).
    return b.op("Pad", [xs[0], b.ints(onnx_pads), b.scalar(node.attrs["value"])], mode="constant")


@emitter("gather", moves=True)
def _gather(b: Builder, node: Node, xs: list[str]) -> str:
    # ONNX Gather takes i32/i64 indices, negative ones counting from the end (as numpy.take).
    ax = norm_axis("gather", node.attrs["axis"], node.inputs[0].type.rank)
    return b.op("Gather", xs, axis=ax)


@emitter("one_hot")
def _one_hot(b: Builder, node: Node, xs: list[str]) -> str:
    # Equal against 0..n-1, not OneHot: OneHot wraps negative indices, the spec gives a zero row.
    idx_dt = node.inputs[0].type.dtype
    classes = b.const(np.arange(node.attrs["n"]), idx_dt, "classes")
    hit = b.op("Equal", [b.op("Unsqueeze", [xs[0], b.ints([-1])]), classes])
    out_dt = node.outputs[0].type.dtype
    return b.cast(hit, DType.f32 if out_dt in (DType.f16, DType.bf16) else out_dt)
