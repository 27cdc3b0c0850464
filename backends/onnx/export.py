"""dlir Graph -> ONNX ModelProto.

Inputs, outputs and initializers carry the dlir names (``x``, ``logits``,
``fc1.w``); params and buffers are initializers holding dlir's seeded init; a
symbol dim is a ``dim_param`` (``B``), a product of symbols a ``dim_param``
string too (``B*T``), ``?`` an unnamed dim. The model declares its IR version
and opset explicitly, to what ONNX Runtime 1.18+ loads.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from dlir import __version__
from dlir.errors import LoweringError
from dlir.ir.gc_pause import gc_paused
from dlir.ir.graph import Graph, Value
from dlir.ir.rnn_cell import absorbed_projections, skipped_nodes
from dlir.runtime.init import init_param

from .builder import Builder, loc_text, unique_name, value_info
from .emit_rnn import DTYPES
from .lowering import lower_node

OPSET = 18  # LayerNormalization (17), Split/Reduce* with tensor inputs (18)
IR_VERSION = 8  # the IR version of opset 18 (onnx 1.13); onnx 1.23 would write 14
PRODUCER = "dlir"


def _assign_names(graph: Graph) -> tuple[dict[Value, str], set[str]]:
    """ONNX names for every dlir value, and the names no helper tensor may take.

    Inputs, params and outputs keep their dlir names exactly; a node result that
    is an output is computed straight into the output's name.
    """
    fixed = {v.name for v in (*graph.inputs, *graph.params)}
    out_names = graph.output_names()
    if len(set(out_names)) != len(out_names):
        raise LoweringError(f"onnx: model {graph.name} names two outputs alike: {out_names}", graph.loc)
    names: dict[Value, str] = {v: v.name for v in (*graph.inputs, *graph.params)}
    for out, v in graph.outputs:
        if out in fixed and names.get(v) != out:
            raise LoweringError(
                f"onnx: output '{out}' of model {graph.name} has the name of an input or param",
                graph.loc,
                hint="ONNX names every tensor once; rename the output",
            )
        if v.kind == "node" and v not in names:
            names[v] = out
    taken = fixed | set(out_names)
    _name_nodes(graph, names, taken)
    return names, taken


def _name_nodes(graph: Graph, names: dict[Value, str], taken: set[str]) -> None:
    """Names for node results, and for the inputs and results of scan bodies (one namespace)."""
    for n in graph.nodes:
        for v in n.outputs:
            if v not in names:
                names[v] = unique_name(v.name, taken)
            taken.add(names[v])
        if n.body is not None:
            for v in n.body.inputs:
                names[v] = unique_name(v.name, taken)
            _name_nodes(n.body, names, taken)


def _add_initializers(out: onnx.GraphProto, graph: Graph, params: Mapping[str, np.ndarray] | None, seed: int) -> None:
    """Each param and buffer as an initializer of ``out``: the given value, else dlir's seeded init."""
    given = dict(params or {})
    unknown = sorted(set(given) - {p.name for p in graph.params})
    if unknown:
        raise LoweringError(f"onnx: model {graph.name} has no param named {', '.join(unknown)}", graph.loc)
    for p in graph.params:
        arr = np.asarray(given[p.name]) if p.name in given else init_param(p, seed)
        if arr.shape != p.type.static_shape() or arr.dtype != p.type.dtype.numpy:
            raise LoweringError(f"onnx: param '{p.name}' is declared {p.type}, got {arr.dtype}{list(arr.shape)}", p.loc)
        tensor_into(out.initializer.add(), arr, p.name)


def tensor_into(t: onnx.TensorProto, arr: np.ndarray, name: str) -> None:
    """``numpy_helper.from_array(arr, name)``, written into ``t``: a message added to the
    model in place, where appending a finished one would copy every weight once more.
    dlir's dtypes (numbers and bool) are all stored as little-endian ``raw_data``."""
    t.dims.extend(arr.shape)
    t.name = name
    t.data_type = helper.np_dtype_to_tensor_dtype(arr.dtype)
    t.raw_data = numpy_helper.tobytes_little_endian(arr)


def _bind_outputs(b: Builder, graph: Graph) -> None:
    """Outputs that are not computed straight into their name get an Identity."""
    for out, v in graph.outputs:
        if b.names[v] != out:
            b.op_n("Identity", [b.names[v]], 1, outputs=[out])


def to_model(graph: Graph, params: Mapping[str, np.ndarray] | None = None, seed: int = 0) -> onnx.ModelProto:
    """The ONNX model of ``graph``; initializers from ``params`` or the seeded init."""
    with gc_paused():  # see dlir.ir.gc_pause
        return _to_model(graph, params, seed)


def _to_model(graph: Graph, params: Mapping[str, np.ndarray] | None, seed: int) -> onnx.ModelProto:
    names, taken = _assign_names(graph)
    b = Builder(graph, taken)
    b.names.update(names)
    b.fused_cells = absorbed_projections(graph, DTYPES)  # LSTM/GRU scans the rnn pass marked: one node each
    skipped = skipped_nodes(b.fused_cells)  # the projections those nodes compute themselves
    for node in graph.nodes:
        if node not in skipped:
            lower_node(b, node)
    _bind_outputs(b, graph)
    g = helper.make_graph(
        [],
        graph.name,
        [value_info(v.name, v.type) for v in graph.inputs],
        [value_info(out, v.type) for out, v in graph.outputs],
        doc_string=f"dlir model {graph.name}" + (f" at {loc_text(graph.loc)}" if loc_text(graph.loc) else ""),
    )
    model = helper.make_model(
        g,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name=PRODUCER,
        producer_version=__version__,
    )
    # Nodes and weights go straight into the model's graph: make_model copies the graph it
    # is given, and copying every weight twice was a large part of exporting a big model.
    model.graph.node.extend(b.nodes)
    _add_initializers(model.graph, graph, params, seed)
    model.graph.initializer.extend(b.initializers)
    return model


def generate(graph: Graph, seed: int = 0, params: Mapping[str, np.ndarray] | None = None) -> bytes:
    """The bytes of the ``.onnx`` file ``dlirc compile --target onnx`` writes (weights: ``params``, the
    rest seeded by ``seed``)."""
    return to_model(graph, params, seed=seed).SerializeToString()
