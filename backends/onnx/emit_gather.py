"""Emitters for gather_elements, scatter_elements, scatter_nd, cumsum and topk: each its ONNX op.

ONNX's reductions are named as dlir's but for "none"; TopK puts the lower index first
among equal values, as dlir's topk (sorted=1).
"""

from __future__ import annotations

from dlir.ir.graph import Node
from dlir.ir.types import DType

from .builder import Builder
from .table import emitter


@emitter("gather_elements", moves=True)
def _gather_elements(b: Builder, node: Node, xs: list[str]) -> str:
    return b.op("GatherElements", xs, axis=node.attrs["axis"])


@emitter("scatter_elements", moves=True, bf16_native=False)
def _scatter_elements(b: Builder, node: Node, xs: list[str]) -> str:
    return b.op("ScatterElements", xs, axis=node.attrs["axis"], reduction=node.attrs["reduction"])


@emitter("scatter_nd", moves=True, bf16_native=False)
def _scatter_nd(b: Builder, node: Node, xs: list[str]) -> str:
    idx = xs[1] if node.inputs[1].type.dtype is DType.i64 else b.cast(xs[1], DType.i64)  # ScatterND: int64 only
    return b.op("ScatterND", [xs[0], idx, xs[2]], reduction=node.attrs["reduction"])


@emitter("cumsum")
def _cumsum(b: Builder, node: Node, xs: list[str]) -> str:
    a = node.attrs
    axis = b.const(a["axis"], DType.i64, "axis")  # a scalar, as CumSum wants
    return b.op("CumSum", [xs[0], axis], exclusive=int(a["exclusive"]), reverse=int(a["reverse"]))


@emitter("topk")
def _topk(b: Builder, node: Node, xs: list[str]) -> list[str]:
    a = node.attrs
    return b.op_n("TopK", [xs[0], b.ints([a["k"]])], 2, axis=a["axis"], largest=int(a["largest"]), sorted=1)
