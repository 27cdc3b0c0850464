"""The ``scan`` emitter: one ONNX ``Scan`` node whose body is the lowered body graph.

dlir's scan takes ``(xs, init_1..init_k)`` and gives ``(ys_1..ys_m, last_1..last_k)``;
its body maps ``(x_t, h_1..h_k)`` to ``(h_1'..h_k', e_1..e_m)``. ONNX's Scan
(opset 16+) orders states first everywhere: inputs ``(init..., xs)``, body inputs
``(h..., x_t)``, body outputs ``(h'..., e...)`` as dlir, results ``(last..., ys...)``.
Scanning along ``axis`` and walking backwards are attributes
(``scan_input_axes``, ``scan_*_directions`` = 1: the stacked emits stay aligned
with the inputs), and the sequence length is read at run time, so one model
serves every T.

Body nodes read enclosing values (params, inputs, earlier results) by their
ONNX names: ONNX subgraphs see the outer scope. Constants the body needs are
initializers of the main graph, read the same way. Shape pieces the body
computes stay inside the body.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import onnx
from onnx import helper

from dlir.ir.graph import Graph, Node

from .builder import Builder, loc_text, value_info
from .emit_rnn import fused_scan
from .table import emitter


@emitter("scan", moves=True)
def _scan(b: Builder, node: Node, xs: list[str]) -> list[str]:
    assert node.body is not None, "a scan node owns a body graph"
    cell = b.fused_cells.get(node)  # an LSTM/GRU the rnn pass marked: one ONNX LSTM/GRU node
    if cell is not None:
        return fused_scan(b, node, cell)
    k = node.attrs["n_carry"]
    m = len(node.outputs) - k
    axis, direction = node.attrs["axis"], int(node.attrs["reverse"])
    attrs: dict[str, Any] = {
        "body": lower_body(b, node, node.body, k),
        "num_scan_inputs": 1,
        "scan_input_axes": [axis],
        "scan_input_directions": [direction],
    }
    if m:  # an empty list attribute has no type: leave the defaults (none to give)
        attrs["scan_output_axes"] = [axis] * m
        attrs["scan_output_directions"] = [direction] * m
    outs = b.op_n("Scan", [*xs[1:], xs[0]], k + m, **attrs)
    return outs[k:] + outs[:k]  # ONNX: final states, then the stacked emits


def lower_body(b: Builder, node: Node, body: Graph, k: int) -> onnx.GraphProto:
    """The body graph as an ONNX GraphProto (inputs: the carries, then x_t)."""
    from .lowering import lower_node  # lowering imports this module to fill the table

    saved = (b.nodes, b._dims, b._symbols, b.dt)
    b.nodes = []
    b._dims = dict(b._dims)  # shape pieces made in the body are not visible outside it
    b._symbols = {**body.symbol_sources(), **b._symbols}  # outer inputs first
    try:
        for n in body.nodes:
            lower_node(b, n)
        b.node = node
        outputs = _bind_body_outputs(b, body)
        nodes = b.nodes
    finally:
        b.nodes, b._dims, b._symbols, b.dt = saved
        b.node = node
    carries, x_t = body.inputs[1:], body.inputs[0]
    where = loc_text(node.loc)
    return helper.make_graph(
        nodes,
        b.fresh(f"{b.names[node.outputs[0]]}.body"),
        [value_info(b.names[v], v.type) for v in (*carries, x_t)],
        [value_info(name, v.type) for name, (_, v) in zip(outputs, body.outputs, strict=True)],
        doc_string="body of dlir scan" + (f" at {where}" if where else ""),
    )


def _bind_body_outputs(b: Builder, body: Graph) -> Sequence[str]:
    """A tensor name per body output, made inside the body and used once.

    A result the body passes through (a carry left unchanged, x_t, an outer value)
    or returns twice gets an Identity: a graph output must be its own tensor.
    """
    made = {o for n in b.nodes for o in n.output}
    out: list[str] = []
    for _label, v in body.outputs:
        name = b.names[v]
        if name not in made or name in out:
            name = b.op_n("Identity", [name], 1, outputs=[b.fresh(f"{name}.out")])[0]
        out.append(name)
    return out
