"""The TensorFlow emitters of the shape and indexing ops (the rest of the table is :mod:`.lowering`).

reshape, broadcast_to, flatten, concat/stack, split, slice, squeeze, unsqueeze, pad,
gather and one_hot: each one TensorFlow call, with dims read at run time where they
are symbolic, and the places where TensorFlow's function differs from the op's numpy
reference said where they are handled.
"""

from __future__ import annotations

from typing import Any

from dlir.backends.codegen import py_num
from dlir.backends.tensorflow.lowering import TF_DTYPES, Ctx, Nhwc, _axes_list, _reg, _xt

from dlir.ir.graph import Node
from dlir.ir.types import Dim, DType
from dlir.ops.shape import END

# Slice bounds are int32 in TensorFlow; anything beyond that is "past the end".
_I32_MAX = 2**31 - 1


# -- shape -----------------------------------------------------------------------------------


def _dims(ctx: Ctx, node: Node, dims: list[Any]) -> str:
    return "[" + ", ".join(ctx.dim(d, node) for d in dims) + "]"


@_reg("reshape")
def _reshape(ctx: Ctx, node: Node) -> str:
    return f"tf.reshape({ctx.arg(node.inputs[0])}, {_dims(ctx, node, node.attrs['shape'])})"


@_reg("broadcast_to")
def _broadcast_to(ctx: Ctx, node: Node) -> str:
    return f"tf.broadcast_to({ctx.arg(node.inputs[0])}, {_dims(ctx, node, node.attrs['shape'])})"


@_reg("flatten")
def _flatten(ctx: Ctx, node: Node) -> str:
    x, t = ctx.arg(node.inputs[0]), _xt(node)
    if t.rank == 0:
        return f"tf.reshape({x}, [1])"
    s, e = node.attrs["start"] % t.rank, node.attrs["end"] % t.rank
    # Kept axes keep their size (read at run time when not static); the merged one is -1.
    parts = [str(d.value) if d.is_static else f"tf.shape({x})[{i}]" for i, d in enumerate(t.shape)]
    merged = node.outputs[0].type.shape[s]
    target = parts[:s] + [str(merged.value) if merged.is_static else "-1"] + parts[e + 1 :]
    return f"tf.reshape({x}, [{', '.join(target)}])"


@_reg("concat", "stack")
def _concat(ctx: Ctx, node: Node) -> str:
    xs = ", ".join(ctx.arg(v) for v in node.inputs)
    return f"tf.{node.op}([{xs}], axis={node.attrs['axis']})"


@_reg("split")
def _split(ctx: Ctx, node: Node) -> str:
    return f"tf.split({ctx.arg(node.inputs[0])}, {_axes_list(node.attrs['sizes'])}, axis={node.attrs['axis']})"


def _bound(v: int) -> str:
    return str(max(-_I32_MAX, min(_I32_MAX, v)))


@_reg("slice")
def _slice(ctx: Ctx, node: Node) -> str:
    x, r = ctx.arg(node.inputs[0]), _xt(node).rank
    a = node.attrs
    idx = [":"] * r
    for ax, s, e, st in zip(a["axes"], a["starts"], a["ends"], a["steps"], strict=True):
        # Python slicing on a tensor is strided_slice with Python's clamping rules.
        text = (_bound(s) if s != 0 else "") + ":" + ("" if e == END else _bound(e))
        idx[ax % r] = text + (f":{st}" if st != 1 else "")
    while idx and idx[-1] == ":":
        idx.pop()
    return f"{x}[{', '.join(idx)}]" if idx else f"tf.identity({x})"


@_reg("squeeze")
def _squeeze(ctx: Ctx, node: Node) -> str:
    x, t = ctx.arg(node.inputs[0]), _xt(node)
    axes = node.attrs["axes"]
    if axes is None:  # the size-1 axes the type knows of, as the type rule
        axes = [i for i, d in enumerate(t.shape) if d == Dim.of(1)]
    axes = sorted(a % t.rank for a in axes) if t.rank else []
    # tf.squeeze(x, axis=[]) would drop every size-1 axis: no axes means no change.
    return f"tf.squeeze({x}, axis={_axes_list(axes)})" if axes else f"tf.identity({x})"


@_reg("unsqueeze")
def _unsqueeze(ctx: Ctx, node: Node) -> str:
    out_rank = node.outputs[0].type.rank
    expr = ctx.arg(node.inputs[0])
    # Output positions in increasing order: each insert leaves the earlier ones in place.
    for ax in sorted(a % out_rank for a in node.attrs["axes"]):
        expr = f"tf.expand_dims({expr}, {ax})"
    return expr


# -- indexing ------------------------------------------------------------------------------


@_reg("pad")
def _pad(ctx: Ctx, node: Node) -> str:
    x, p = node.inputs[0], node.attrs["pads"]
    dt = x.type.dtype
    v = node.attrs["value"]
    value = py_num(bool(v) if dt is DType.bool else int(v) if dt.is_int else float(v))
    pairs = [[p[2 * i], p[2 * i + 1]] for i in range(x.type.rank)]
    if x.type.rank == 4 and ctx.prefer_nhwc(node, [x]):
        n, c, h, w = pairs
        return Nhwc(f"tf.pad({ctx.nhwc(x)}, {[n, h, w, c]}, constant_values={value})")
    return f"tf.pad({ctx.arg(x)}, {pairs}, constant_values={value})"


@_reg("gather")
def _gather(ctx: Ctx, node: Node) -> str:
    x, i = ctx.arg(node.inputs[0]), ctx.arg(node.inputs[1])
    ax = node.attrs["axis"] % _xt(node).rank
    d = _xt(node).shape[ax]
    # a symbolic size as the function's own symbol (B, T): the same expression for every gather
    # along that dim, so grappler computes the normalised index once (a backward scan reads
    # several saved stacks at its step)
    size = str(d.value) if d.is_static else f"tf.cast({ctx.dim(d, node)}, {TF_DTYPES[_xt(node, 1).dtype]})"
    # numpy's take counts negative indices from the end; tf.gather rejects them.
    at = f"tf.where({i} < 0, {i} + {size}, {i})"
    if ax and ctx.steps_first(node.inputs[0]):
        # a step of a saved stack kept steps first (at: one step counter): its slice, the axis put back
        return f"tf.expand_dims(tf.gather({x}, {at}[0], axis=0), axis={ax})"
    return f"tf.gather({x}, {at}, axis={ax})"


@_reg("one_hot")
def _one_hot(ctx: Ctx, node: Node) -> str:
    dt: DType = node.attrs["dtype"]
    # tf.one_hot gives an all-zero row for any index outside [0, n), negatives included.
    on_off = ", on_value=True, off_value=False" if dt is DType.bool else ""
    return f"tf.one_hot({ctx.arg(node.inputs[0])}, {node.attrs['n']}, dtype={TF_DTYPES[dt]}{on_off})"
