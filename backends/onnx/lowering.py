"""Lowering one dlir node to ONNX nodes: the op table plus the dtype policy around it.

``EMITTERS`` holds one entry per op in :func:`dlir.ops.lowered_ops` (a test
checks). :func:`lower_node` widens f16/bf16 operands of compute ops to f32
(ONNX Runtime's CPU kernels cover few ops in those types, and the numpy
reference computes wide and rounds once), runs the emitter, and writes each
result under its dlir name.
"""

from __future__ import annotations

from collections.abc import Sequence

from dlir.backends.decompose import DECOMPOSE, decomposed

from dlir.errors import LoweringError
from dlir.ir.graph import Node
from dlir.ir.types import DType

from . import emit_gather, emit_grad, emit_logic, emit_math, emit_nn, emit_scan, emit_shape  # noqa: F401  (fill the table)  # noqa: F401  (import issue 15's ops)
from .builder import Builder
from .table import EMITTERS, Emitter

_NARROW = (DType.f16, DType.bf16)


def _widen(spec: Emitter, node: Node) -> bool:
    """Whether ``node`` runs in f32 instead of its own narrow float dtype."""
    dts = {v.type.dtype for v in (*node.inputs, *node.outputs)}
    if spec.moves:
        return DType.bf16 in dts and not spec.bf16_native
    return any(d in _NARROW for d in dts)


def _compute_dtype(node: Node) -> DType:
    for v in (*node.inputs, *node.outputs):
        if v.type.dtype.is_float:
            return v.type.dtype
    vals = node.inputs or node.outputs
    return vals[0].type.dtype


def lower_node(b: Builder, node: Node) -> None:
    """Add the ONNX nodes computing ``node``; its results get the names in ``b.names``."""
    spec = EMITTERS.get(node.op)
    if spec is None:
        raise LoweringError(f"the onnx target cannot lower the op '{node.op}' yet", node.loc)
    if spec.fn is DECOMPOSE:
        # no ONNX op for it: its decomposition's nodes, its results theirs
        nodes, results = decomposed(node)
        for n in nodes:
            for v in n.outputs:
                b.names[v] = b.fresh(v.name)
            lower_node(b, n)
        b.node = node
        start = len(b.nodes)
        _bind_results(b, start, [b.names[r] for r in results], [b.names[v] for v in node.outputs])
        b.node = None
        return
    b.node = node
    start = len(b.nodes)
    xs = [b.names[v] for v in node.inputs]
    wide = _widen(spec, node)
    if wide:
        xs = [b.cast(x, DType.f32) if v.type.dtype in _NARROW else x for x, v in zip(xs, node.inputs, strict=True)]
        b.dt = DType.f32
    else:
        b.dt = _compute_dtype(node)
    got = spec(b, node, xs)
    outs = [got] if isinstance(got, str) else list(got)
    assert len(outs) == len(node.outputs), f"onnx emitter for {node.op} returned {len(outs)} results"
    if wide:
        outs = [
            b.cast(o, v.type.dtype) if v.type.dtype in _NARROW else o for o, v in zip(outs, node.outputs, strict=True)
        ]
    _bind_results(b, start, outs, [b.names[v] for v in node.outputs])
    b.node = None


def _bind_results(b: Builder, start: int, outs: Sequence[str], targets: Sequence[str]) -> None:
    """Make each result available under its target name.

    A result made by this node's last ONNX nodes is renamed in place; one that is
    an earlier tensor (an input, a shared constant, an operand passed through, or
    the same tensor twice) gets an Identity.
    """
    new = b.nodes[start:]
    made = {name: (n, i) for n in new for i, name in enumerate(n.output)}
    consumed = {name for n in new for name in n.input}
    keep = b.pinned()
    done: set[str] = set()
    for r, t in zip(outs, targets, strict=True):
        if r in made and r not in consumed and r not in keep and r not in done:
            n, i = made[r]
            n.output[i] = t
        else:
            b.op_n("Identity", [r], 1, outputs=[t])
        done.add(r)


__all__ = ["EMITTERS", "Emitter", "lower_node"]
