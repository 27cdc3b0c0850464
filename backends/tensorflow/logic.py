"""The TensorFlow emitters of boolean logic, mod and the bitwise ops (dlir.ops.logic).

``tf.math.floormod`` is numpy's ``mod`` (the divisor's sign; for floats fmod moved
by one divisor), ``tf.truncatemod`` C's fmod. A shift by the width or more
gives 0, as the reference.
"""

from __future__ import annotations

from dlir.backends.tensorflow.lowering import Ctx, _reg

from dlir.ir.graph import Node

_CALLS = {
    "logical_and": "tf.math.logical_and",
    "logical_or": "tf.math.logical_or",
    "logical_xor": "tf.math.logical_xor",
    "logical_not": "tf.math.logical_not",
    "bitwise_and": "tf.bitwise.bitwise_and",
    "bitwise_or": "tf.bitwise.bitwise_or",
    "bitwise_xor": "tf.bitwise.bitwise_xor",
    "bitwise_not": "tf.bitwise.invert",
}


@_reg(*_CALLS)
def _call(ctx: Ctx, node: Node) -> str:
    return f"{_CALLS[node.op]}({', '.join(ctx.arg(v) for v in node.inputs)})"


@_reg("isnan")
def _isnan(ctx: Ctx, node: Node) -> str:
    return f"tf.math.is_nan({ctx.arg(node.inputs[0])})"


@_reg("isinf")
def _isinf(ctx: Ctx, node: Node) -> str:
    x = ctx.arg(node.inputs[0])
    pos, neg = node.attrs["positive"], node.attrs["negative"]
    if pos and neg:
        return f"tf.math.is_inf({x})"
    if pos or neg:
        return f"tf.math.equal({x}, float('{'' if pos else '-'}inf'))"
    return f"tf.zeros_like({x}, dtype=tf.bool)"


@_reg("mod")
def _mod(ctx: Ctx, node: Node) -> str:
    fn = "tf.truncatemod" if node.attrs["fmod"] else "tf.math.floormod"
    return f"{fn}({ctx.arg(node.inputs[0])}, {ctx.arg(node.inputs[1])})"


@_reg("bit_shift")
def _bit_shift(ctx: Ctx, node: Node) -> str:
    x, n = ctx.arg(node.inputs[0]), ctx.arg(node.inputs[1])
    fn = "tf.bitwise.left_shift" if node.attrs["direction"] == "left" else "tf.bitwise.right_shift"
    bits = node.inputs[0].type.dtype.numpy.itemsize * 8
    return f"tf.where({n} >= {bits}, tf.zeros_like({x}), {fn}({x}, {n}))"
