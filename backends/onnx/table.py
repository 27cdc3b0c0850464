"""The op table of the ONNX target: dlir op name -> emitter.

An emitter gets the :class:`~backends.onnx.builder.Builder`, the dlir node and the
ONNX names of the node's inputs, adds ONNX nodes, and returns one tensor name
per dlir result. It computes in ``builder.dt``: f16/bf16 nodes of compute ops
reach it already widened to f32 (see :func:`lowering.lower_node`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dlir.ir.graph import Node

from .builder import Builder

EmitFn = Callable[[Builder, Node, list[str]], "str | Sequence[str]"]


@dataclass(frozen=True)
class Emitter:
    """How one dlir op lowers to ONNX.

    ``moves`` marks ops that only move, select or reshape data: exact in any
    dtype, so f16/bf16 stay native, except where ONNX Runtime's CPU kernels lack
    bf16 (``bf16_native=False``). Every other op computes in f32 for f16/bf16
    inputs, as the numpy reference computes wide and rounds once.
    """

    op: str
    fn: EmitFn
    moves: bool = False
    bf16_native: bool = True

    def __call__(self, b: Builder, node: Node, xs: list[str]) -> str | Sequence[str]:
        return self.fn(b, node, xs)


EMITTERS: dict[str, Emitter] = {}


def emitter(*ops: str, moves: bool = False, bf16_native: bool = True) -> Callable[[EmitFn], EmitFn]:
    """Register the decorated function as the emitter of ``ops``."""

    def deco(fn: EmitFn) -> EmitFn:
        for op in ops:
            assert op not in EMITTERS, f"onnx: two emitters for {op}"
            EMITTERS[op] = Emitter(op, fn, moves, bf16_native)
        return fn

    return deco
