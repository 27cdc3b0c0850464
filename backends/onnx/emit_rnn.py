"""A marked LSTM/GRU ``scan`` as one ONNX ``LSTM`` / ``GRU`` node (see :mod:`dlir.passes.rnn`).

ONNX's kernels take the sequence ``x`` and compute the input projection
themselves, so the fused scan reads ``x, w_ih, b_ih`` of the projection the
exporter then skips. dlir keeps weights as ``[in, gates * hidden]`` with gates
in PyTorch's order; ONNX wants ``[1, gates * hidden, in]`` in its own order
(LSTM i, o, f, c from i, f, g, o; GRU z, r, h from r, z, n). The weights stay
the model's initializers under their dlir names (weights load and export as
before), and the graph transposes and reorders them with Transpose/Gather:
on initializers ONNX Runtime folds those once, when it loads the model. Layout 0 (``[T, B, in]``; ONNX Runtime has
no batch-first RNN kernels): a batch-first scan transposes around the node.
"""

from __future__ import annotations

import numpy as np

from dlir.ir.graph import Node, Value
from dlir.ir.rnn_cell import RnnCell
from dlir.ir.types import DType
from dlir.ops.registry import get_op

from .builder import Builder

# The dtypes ONNX Runtime's CPU LSTM/GRU kernels take ("LSTM operator does not support double yet").
DTYPES = (DType.f32,)

# Which of dlir's (PyTorch's) gate blocks goes at each position of ONNX's packing.
_ONNX_ORDER = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2)}


def fused_scan(b: Builder, node: Node, cell: RnnCell) -> list[str]:
    """The results of ``node`` (stacked h if emitted, then the last carries) from one LSTM/GRU node."""
    assert cell.x is not None and cell.w_ih is not None, "fused only with its input projection"
    axis, k = node.attrs["axis"], node.attrs["n_carry"]
    n_emit = len(node.outputs) - k
    size = cell.gates * cell.hidden
    order = b.ints(np.concatenate([np.arange(g * cell.hidden, (g + 1) * cell.hidden) for g in _ONNX_ORDER[cell.kind]]))
    zero = b.ints([0])

    def packed(w: Value) -> str:  # [K, G*H] -> [1, G*H, K], ONNX gate order
        rows = b.op("Gather", [b.op("Transpose", [b.names[w]], perm=[1, 0]), order], axis=0)
        return b.op("Unsqueeze", [rows, zero])

    def bias(v: Value | None) -> str:
        return b.op("Gather", [b.names[v], order], axis=0) if v is not None else b.const(np.zeros(size), b.dt, "zeros")

    x = b.names[cell.x]
    if axis == 1:
        x = b.op("Transpose", [x], perm=[1, 0, 2])
    ins = [x, packed(cell.w_ih), packed(cell.w_hh)]
    if cell.b_ih is not None or cell.b_hh is not None:
        ins.append(b.op("Unsqueeze", [b.op("Concat", [bias(cell.b_ih), bias(cell.b_hh)], axis=0), zero]))
    else:
        ins.append("")
    ins.append("")  # sequence_lens: every sequence is full length
    # ONNX's initial states default to zeros: a zero init (the stdlib's default) is left out
    ins += ["" if _zeros(v) else b.op("Unsqueeze", [b.names[v], zero]) for v in node.inputs[1:]]
    direction = "reverse" if node.attrs["reverse"] else "forward"
    attrs: dict[str, object] = {"hidden_size": cell.hidden, "direction": direction}
    if cell.kind == "gru":
        attrs["linear_before_reset"] = 1  # dlir's GRU applies the reset gate after the hidden matmul
    base = b.names[node.outputs[0]]
    # Without an emit, Y's name is empty: an omitted optional output, which the kernel does not write
    outs = [b.fresh(f"{base}.y") if n_emit else "", *(b.fresh(f"{base}.y_{i}") for i in range(k))]
    y, *lasts = b.op_n(cell.kind.upper(), ins, 1 + k, outputs=outs, **attrs)
    out: list[str] = []
    if n_emit:  # Y: [T, 1, B, H]; a reverse direction keeps it aligned with the input steps
        ys = b.op("Squeeze", [y, b.ints([1])])
        out.append(b.op("Transpose", [ys], perm=[1, 0, 2]) if axis == 1 else ys)
    return out + [b.op("Squeeze", [last, zero]) for last in lasts]


def _zeros(v: Value) -> bool:
    """Whether ``v`` is a constant zero, possibly broadcast (``broadcast_to(0.0, [B, H])``)."""
    if v.producer is not None and v.producer.op == "broadcast_to":
        v = v.producer.inputs[0]
    node = v.producer
    if node is None or node.op != "constant":
        return False
    const = np.asarray(get_op("constant").ref([], node.attrs)[0])
    return const.size > 0 and not np.any(const)
