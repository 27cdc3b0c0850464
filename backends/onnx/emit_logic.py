"""Emitters for boolean logic, mod and the bitwise ops (dlir.ops.logic).

ONNX's Mod takes ``fmod=1`` for floats only; dlir's divisor-signed float ``mod``
is ``fmod`` moved by one divisor where the signs differ, as numpy computes it.
A shift by the width or more gives 0, as the reference: ONNX leaves it to C.
"""

from __future__ import annotations

from dlir.ir.graph import Node
from dlir.ir.types import DType

from .builder import Builder
from .table import emitter

_SAME_NAME = {
    "logical_and": "And",
    "logical_or": "Or",
    "logical_xor": "Xor",
    "logical_not": "Not",
    "bitwise_and": "BitwiseAnd",
    "bitwise_or": "BitwiseOr",
    "bitwise_xor": "BitwiseXor",
    "bitwise_not": "BitwiseNot",
}


def _same_name(b: Builder, node: Node, xs: list[str]) -> str:
    return b.op(_SAME_NAME[node.op], xs)


for _name in _SAME_NAME:
    emitter(_name)(_same_name)


@emitter("isnan")
def _isnan(b: Builder, node: Node, xs: list[str]) -> str:
    return b.op("IsNaN", xs)


@emitter("isinf")
def _isinf(b: Builder, node: Node, xs: list[str]) -> str:
    return b.op("IsInf", xs, detect_positive=int(node.attrs["positive"]), detect_negative=int(node.attrs["negative"]))


@emitter("mod")
def _mod(b: Builder, node: Node, xs: list[str]) -> str:
    if not node.inputs[0].type.dtype.is_float:
        return b.op("Mod", xs, fmod=int(node.attrs["fmod"]))
    r = b.op("Mod", xs, fmod=1)
    if node.attrs["fmod"]:
        return r
    zero = b.scalar(0)
    signs_differ = b.op("Xor", [b.op("Less", [r, zero]), b.op("Less", [xs[1], zero])])
    moved = b.op("And", [b.op("Not", [b.op("Equal", [r, zero])]), signs_differ])
    return b.op("Where", [moved, b.op("Add", [r, xs[1]]), r])


@emitter("bit_shift")
def _bit_shift(b: Builder, node: Node, xs: list[str]) -> str:
    direction = "LEFT" if node.attrs["direction"] == "left" else "RIGHT"
    shifted = b.op("BitShift", xs, direction=direction)
    bits = node.inputs[0].type.dtype.numpy.itemsize * 8
    # compared in i32: ONNX Runtime has no uint8 Less
    too_far = b.op("Not", [b.op("Less", [b.cast(xs[1], DType.i32), b.const(bits, DType.i32)])])
    return b.op("Where", [too_far, b.scalar(0), shifted])
