"""An LSTM in a training step as oneDNN's training kernels: what ``nn.LSTM`` + autograd run on the CPU.

autodiff turns an LSTM ``scan`` into a forward scan that also emits what its
backward reads (``saved.*``: the carries and gate activations) and a reverse
scan ``d.<body>`` over the same xs (:mod:`dlir.autodiff.scan`). As Python loops
that is ~30 small ops a step. On the CPU, ``torch.ops.aten.mkldnn_rnn_layer``
(``train=True``) runs the whole forward and returns a workspace, and
``mkldnn_rnn_layer_backward`` runs the whole backward from it: the pair
``nn.LSTM``'s forward and its autograd node call, bit for bit.

The backward kernel returns the gradients of x, w_ih, w_hh, the biases, h0 and
c0, not the gates' cotangents that dlir's backward scan emits (``d.x_t``). So
the pair is used only where every reader of those cotangents is one of the
four products the kernel computes itself, each then read off its result:

- ``sum(G, axis=[0, 1])``: the bias gradient;
- ``reshape(x)^T @ reshape(G)``: w_ih's (``rows_product``, linear's VJP);
- ``reshape(saved h)^T @ reshape(G)``: w_hh's (the scan VJP's closure product);
- ``G @ transpose(w_ih)``: x's.

Whatever else a step reads of the two scans (the saved stacks, the projection
``xw``) makes :func:`trained_lstms` leave them as loops. The kernels are
oneDNN's and take float32, so the code generator writes them only for f32 and
for a module that runs on the CPU (``render(..., cpu_kernels=True)``: a
``TorchRunner`` on the CPU, the Trainer's or ``dlir.compile``'s); the file
``dlirc compile`` writes runs anywhere and keeps the loops.
PyTorch has no such kernel for the GRU (``mkldnn_rnn_layer`` is LSTM only).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dlir.backends.codegen import loc_comment

from dlir.ir.graph import Graph, Node, Value, body_reads, use_counts
from dlir.ir.rnn_cell import RnnCell, match_cell, with_projection
from dlir.ir.types import DType

if TYPE_CHECKING:
    from dlir.backends.torch.codegen import Scope

_LSTM_MODE = 2  # ideep's rnn_kind: RNN_RELU, RNN_TANH, LSTM, GRU


@dataclass
class TrainedLstm:
    """A forward LSTM scan and its backward scan, written as the two oneDNN calls."""

    forward: Node
    backward: Node
    cell: RnnCell  # with its projection (x, w_ih, b_ih)
    g_hs: Value | None  # the cotangent of the emitted hidden states the backward reads, if any
    results: dict[Value, str]  # a value the backward kernel gives -> which: d_x, d_w_ih, d_w_hh, d_b, d_b_hh
    skipped: set[Node]  # nodes nothing reads any more: the projection, the products, their operands
    names: dict[str, str] = field(default_factory=dict)  # the forward call's operands, for the backward's


def trained_lstms(graph: Graph) -> dict[Node, TrainedLstm]:
    """Forward and backward scan nodes of ``graph`` -> the pair they belong to (both keys)."""
    out: dict[Node, TrainedLstm] = {}
    for node in graph.nodes:
        pair = _pair(node, graph)
        if pair is not None and pair.backward not in out:
            out[pair.forward] = out[pair.backward] = pair
    return out


def _pair(fwd: Node, graph: Graph) -> TrainedLstm | None:
    body = fwd.body
    if fwd.op != "scan" or body is None or fwd.inputs[0].type.dtype != DType.f32:
        return None
    cell = _training_cell(fwd)
    if cell is None or cell.kind != "lstm":
        return None
    xs = fwd.inputs[0]
    bwds = [n for n in graph.nodes if n is not fwd and n.op == "scan" and n.inputs[0] is xs]
    if len(bwds) != 1 or not _is_backward(fwd, bwds[0], cell):
        return None
    bwd = bwds[0]
    cell = with_projection(cell, fwd, graph, readers=2)
    if cell is None or cell.projection is None:
        return None
    g_hs = _emits_cotangent(fwd, bwd)
    if isinstance(g_hs, bool):
        return None
    results = _kernel_products(fwd, bwd, cell, graph)
    if results is None:
        return None
    read = [cell.x, cell.w_ih, cell.b_ih, cell.w_hh, cell.b_hh, *fwd.inputs[1:], *bwd.inputs[2:4], g_hs]
    gone = {cell.projection, bwd, *(v.producer for v in results if v.producer)}
    skipped = _unread_after(graph, gone, fwd, {id(v) for v in read if v is not None})
    pair = TrainedLstm(fwd, bwd, cell, g_hs, results, skipped)
    return pair if _nothing_else_reads(graph, pair) else None


def _training_cell(fwd: Node) -> RnnCell | None:
    """The LSTM cell of a forward scan whose body also emits saved values for its backward."""
    body = fwd.body
    assert body is not None
    view = copy.copy(body)
    view.outputs = [(n, v) for n, v in body.outputs if not n.startswith("saved.")]
    node = copy.copy(fwd)
    node.body = view
    return match_cell(node)


def _is_backward(fwd: Node, bwd: Node, cell: RnnCell) -> bool:
    """``bwd`` is the scan autodiff made of ``fwd``: a reverse walk of the same xs, named for it,
    carrying a step counter and the two carries' cotangents, summing only the cell's weights."""
    fb, bb = fwd.body, bwd.body
    assert fb is not None
    if bb is None or bb.name != f"d.{fb.name}" or bwd.attrs["axis"] != fwd.attrs["axis"]:
        return False
    if bwd.attrs["reverse"] == fwd.attrs["reverse"]:
        return False
    k = bwd.attrs["n_carry"]
    names = [n for n, _ in bb.outputs]
    head = ["step", f"d.{fb.inputs[1].name}", f"d.{fb.inputs[2].name}"]
    sums = {f"d.{v.name}" for v in (cell.w_hh, cell.b_hh) if v is not None}
    if k < 3 or names[:3] != head or not set(names[3:k]) <= sums:
        return False
    emits = bb.outputs[k:]
    d_x = [v for n, v in emits if n == "d.x_t"]
    return len(d_x) == 1 and all(v is d_x[0] for _, v in emits)  # every emit is the gates' cotangent


def _emits_cotangent(fwd: Node, bwd: Node) -> Value | None | bool:
    """The stack of the hidden states' cotangents the backward body reads step by step, None when
    it reads none (only the last h is used), False when it reads a stack it should not."""
    bb = bwd.body
    assert bb is not None
    own = {id(v) for v in bb.inputs} | {id(o) for n in bb.nodes for o in n.outputs}
    stacks = {
        id(n.inputs[0]): n.inputs[0]
        for n in bb.nodes
        if n.op == "gather" and id(n.inputs[0]) not in own and n.inputs[0].producer is not fwd
    }
    if not stacks:
        return None
    k = fwd.attrs["n_carry"]
    has_emit = any(not n.startswith("saved.") for n, _ in fwd.body.outputs[k:]) if fwd.body else False
    return next(iter(stacks.values())) if len(stacks) == 1 and has_emit else False


def _kernel_products(fwd: Node, bwd: Node, cell: RnnCell, graph: Graph) -> dict[Value, str] | None:
    """Every read of the backward's gates' cotangents G as the kernel result it is, else None."""
    k = bwd.attrs["n_carry"]
    n_emit = len(bwd.outputs) - k
    gates = bwd.outputs[:n_emit]
    saved_h = _saved_carry(fwd, 1)
    readers = _readers(graph)
    results: dict[Value, str] = {}
    for g in gates:
        for n in readers.get(id(g), []):
            if n.op == "sum" and _axes(n) == [0, 1] and not n.attrs.get("keepdims"):
                results[n.outputs[0]] = "d_b"
            elif n.op == "matmul" and n.inputs[0] is g and _transposed(n.inputs[1]) is cell.w_ih:
                results[n.outputs[0]] = "d_x"
            elif n.op == "reshape" and n.outputs[0].type.rank == 2:
                for mm in readers.get(id(n.outputs[0]), []):
                    rows = _transposed(mm.inputs[0]) if mm.op == "matmul" and mm.inputs[1] is n.outputs[0] else None
                    flat = rows.producer if rows is not None else None
                    if flat is None or flat.op != "reshape" or flat.outputs[0].type.rank != 2:
                        return None
                    if flat.inputs[0] is cell.x:
                        results[mm.outputs[0]] = "d_w_ih"
                    elif saved_h is not None and flat.inputs[0] is saved_h:
                        results[mm.outputs[0]] = "d_w_hh"
                    else:
                        return None
            else:
                return None
    return results


def _saved_carry(fwd: Node, index: int) -> Value | None:
    """The forward scan's stacked carry ``index`` as it enters each step (``saved.<h>``)."""
    body = fwd.body
    assert body is not None
    k = fwd.attrs["n_carry"]
    for j, (name, v) in enumerate(body.outputs[k:]):
        if name.startswith("saved.") and v is body.inputs[index]:
            return fwd.outputs[j]
    return None


def _transposed(v: Value) -> Value | None:
    """``w`` when ``v`` is ``transpose(w, perm=[1, 0])``."""
    t = v.producer
    if t is None or t.op != "transpose" or list(t.attrs["perm"]) != [1, 0]:
        return None
    return t.inputs[0]


def _axes(node: Node) -> list[int]:
    axes = node.attrs.get("axis")
    if axes is None:
        return []
    rank = node.inputs[0].type.rank
    return sorted(a % rank for a in ([axes] if isinstance(axes, int) else axes))


def _readers(graph: Graph) -> dict[int, list[Node]]:
    """value id -> the top-level nodes reading it (directly, or in their bodies)."""
    out: dict[int, list[Node]] = {}
    for n in graph.nodes:
        reads = list(n.inputs) + (list(body_reads(n.body)) if n.body is not None else [])
        for v in dict.fromkeys(id(r) for r in reads):
            out.setdefault(v, []).append(n)
    return out


def _unread_after(graph: Graph, gone: set[Node], fwd: Node, needed: set[int]) -> set[Node]:
    """``gone`` and every node whose results only ``gone`` nodes read, except the forward scan and
    the makers of ``needed`` (the values the two calls read)."""
    gone = set(gone)
    outputs = {id(v) for _, v in graph.outputs} | needed
    readers = _readers(graph)
    for n in reversed(graph.nodes):
        if n in gone or n is fwd:
            continue
        if all(id(o) not in outputs and all(r in gone for r in readers.get(id(o), [])) for o in n.outputs):
            gone.add(n)
    return gone


def _nothing_else_reads(graph: Graph, pair: TrainedLstm) -> bool:
    """No node left, and no graph output, reads a value the two calls do not give."""
    fwd, bwd = pair.forward, pair.backward
    k = bwd.attrs["n_carry"]
    given = set(map(id, pair.results)) | {id(v) for v in bwd.outputs[len(bwd.outputs) - k + 1 :]}
    lost = {id(o) for n in pair.skipped for o in n.outputs if id(o) not in given}
    lost |= {id(v) for v in fwd.outputs if _is_saved(fwd, v)}
    lost |= {id(v) for v in bwd.outputs if id(v) not in given}
    live = [n for n in graph.nodes if n not in pair.skipped and n is not fwd]  # (its xs is the kernel's x)
    return not any(id(v) in lost for v in use_counts(graph, live))


def _is_saved(fwd: Node, v: Value) -> bool:
    body = fwd.body
    assert body is not None
    k = fwd.attrs["n_carry"]
    n_emit = len(fwd.outputs) - k
    j = fwd.outputs.index(v)
    return j < n_emit and body.outputs[k + j][0].startswith("saved.")


# -- code -----------------------------------------------------------------------------------


def forward_lines(pair: TrainedLstm, scope: Scope) -> list[str]:
    """The forward scan as ``mkldnn_rnn_layer(train=True)``: hidden states, last h and c, workspace."""
    node, cell = pair.forward, pair.cell
    assert cell.x is not None and cell.w_ih is not None
    ns, names = scope.ns, scope.names
    axis, reverse, k = node.attrs["axis"], node.attrs["reverse"], node.attrs["n_carry"]
    x, h0, c0 = names[cell.x], names[node.inputs[1]], names[node.inputs[2]]
    keys = ("x_seq", "w_ih_t", "w_hh_t", "b_ih", "b_hh", "h0", "c0", "hs", "h_n", "c_n", "workspace")
    n = {key: ns.name(f"{_instance(cell)}_{key}") for key in keys}
    pair.names = n
    gates = cell.gates * cell.hidden
    seq = f"{x}.transpose(0, 1).contiguous()" if axis == 1 else f"{x}.contiguous()"
    where = loc_comment(node.loc).replace("  # ", "", 1) or "its source"
    lines = [
        f"# the scan at {where} and its backward: oneDNN's LSTM training kernels, as nn.LSTM",
        "# and its autograd run them on the CPU (time-major and contiguous, as they take them)",
        f"{n['x_seq']} = {seq}",
        f"{n['w_ih_t']}, {n['w_hh_t']} = {names[cell.w_ih]}.t().contiguous(), {names[cell.w_hh]}.t().contiguous()",
        f"{n['b_ih']} = {_bias(cell.b_ih, names, x, gates)}",
        f"{n['b_hh']} = {_bias(cell.b_hh, names, x, gates)}",
        f"{n['h0']}, {n['c0']} = {h0}.contiguous(), {c0}.contiguous()",
        "with torch.enable_grad():  # the kernel keeps its workspace only in grad mode (nothing here needs grad)",
        f"    {n['hs']}, {n['h_n']}, {n['c_n']}, {n['workspace']} = torch.ops.aten.mkldnn_rnn_layer("
        f"{n['x_seq']}, {n['w_ih_t']}, {n['w_hh_t']}, {n['b_ih']}, {n['b_hh']}, {n['h0']}, {n['c0']}, "
        f"reverse={reverse}, batch_sizes=[], mode={_LSTM_MODE}, hidden_size={cell.hidden}, num_layers=1, "
        f"has_biases=True, bidirectional=False, batch_first=False, train=True){loc_comment(node.loc)}",
    ]
    body = node.body
    assert body is not None
    n_emit = len(node.outputs) - k
    for v, (name, _) in zip(node.outputs[:n_emit], body.outputs[k:], strict=True):
        if not name.startswith("saved."):  # the one other emit is h'
            hs = f"{n['hs']}.transpose(0, 1)" if axis == 1 else n["hs"]
            names[v] = ns.name(v.name, v)
            lines.append(f"{names[v]} = {hs}")
    h_last, c_last = node.outputs[n_emit:]
    names[h_last], names[c_last] = n["h_n"], n["c_n"]
    return lines


def backward_lines(pair: TrainedLstm, scope: Scope) -> list[str]:
    """The backward scan and the products of its gates' cotangents as ``mkldnn_rnn_layer_backward``."""
    node, cell, n = pair.backward, pair.cell, pair.names
    ns, names = scope.ns, scope.names
    axis, reverse = node.attrs["axis"], pair.forward.attrs["reverse"]
    g_h, g_c = names[node.inputs[2]], names[node.inputs[3]]
    if pair.g_hs is None:
        g_out = "None"
    else:
        g_out = f"{names[pair.g_hs]}.transpose(0, 1).contiguous()" if axis == 1 else f"{names[pair.g_hs]}.contiguous()"
    keys = ("d_x_seq", "d_w_ih_t", "d_w_hh_t", "d_b_ih", "d_b_hh", "d_h0", "d_c0")
    d = {key: ns.name(f"{_instance(cell)}_{key}") for key in keys}
    call = (
        f"torch.ops.aten.mkldnn_rnn_layer_backward({n['x_seq']}, {n['w_ih_t']}, {n['w_hh_t']}, {n['b_ih']}, "
        f"{n['b_hh']}, {n['h0']}, {n['c0']}, {n['hs']}, {n['h_n']}, {n['c_n']}, {g_out}, {g_h}.contiguous(), "
        f"{g_c}.contiguous(), reverse={reverse}, mode={_LSTM_MODE}, hidden_size={cell.hidden}, num_layers=1, "
        f"has_biases=True, train=True, bidirectional=False, batch_sizes=[], batch_first=False, "
        f"workspace={n['workspace']})"
    )
    lines = [f"{', '.join(d.values())} = {call}{loc_comment(node.loc)}"]
    exprs = {
        "d_x": f"{d['d_x_seq']}.transpose(0, 1)" if axis == 1 else d["d_x_seq"],
        "d_w_ih": f"{d['d_w_ih_t']}.t()",
        "d_w_hh": f"{d['d_w_hh_t']}.t()",
        "d_b": d["d_b_ih"],
        "d_b_hh": d["d_b_hh"],
    }
    for v, which in pair.results.items():
        names[v] = ns.name(v.name, v)
        lines.append(f"{names[v]} = {exprs[which]}")
    k = node.attrs["n_carry"]
    lasts = node.outputs[len(node.outputs) - k :]
    body = node.body
    assert body is not None
    # (the carries' order is the one _is_backward checked: step, d.h, d.c, then the summed weights)
    names[lasts[1]], names[lasts[2]] = d["d_h0"], d["d_c0"]
    for v, (name, _) in zip(lasts[3:], body.outputs[3:k], strict=True):
        names[v] = ns.name(v.name, v)
        lines.append(f"{names[v]} = {exprs['d_w_hh' if name == f'd.{cell.w_hh.name}' else 'd_b_hh']}")
    return lines


def _instance(cell: RnnCell) -> str:
    """The LSTM's dotted instance name (``net.lstm`` for ``net.lstm.w_hh``), for the kernels' operands."""
    name = cell.w_hh.name
    return name.rsplit(".", 1)[0] if "." in name else "lstm"


def _bias(b: Value | None, names: dict[Value, str], x: str, size: int) -> str:
    """A bias the kernel takes: the model's, or zeros where it has none."""
    return names[b] if b is not None else f"{x}.new_zeros({size})"
