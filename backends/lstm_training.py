"""An LSTM's forward and backward scans in a training step, found so that a backend can run each as
one fused kernel: oneDNN's on torch (:mod:`dlir.backends.torch.fused_rnn_training`, what ``nn.LSTM`` +
autograd run on the CPU), ``BlockLSTMV2`` and its gradient on TensorFlow
(:mod:`dlir.backends.tensorflow.lstm_training`).

autodiff turns an LSTM ``scan`` into a forward scan that also emits what its
backward reads (``saved.*``: the carries and gate activations) and a reverse
scan ``d.<body>`` over the same xs (:mod:`dlir.autodiff.scan`). As Python loops
that is ~30 small ops a step. The fused kernels run the whole sequence:
the forward keeps what its backward reads (a workspace, or the gates), and the
backward kernel returns the gradients of x, w_ih, w_hh, the biases, h0 and
c0, not the gates' cotangents that dlir's backward scan emits (``d.x_t``). So
the pair is used only where every reader of those cotangents is one of the
four products the kernel computes itself, each then read off its result:

- ``sum(G, axis=[0, 1])``: the bias gradient;
- ``reshape(x)^T @ reshape(G)``: w_ih's (``rows_product``, linear's VJP);
- ``reshape(saved h)^T @ reshape(G)``: w_hh's (the scan VJP's closure product);
- ``G @ transpose(w_ih)``: x's.

Whatever else a step reads of the two scans (the saved stacks, the projection
``xw``) makes :func:`trained_lstms` leave them as loops. Both frameworks'
kernels take float32 only; neither has one for the GRU's training (torch's
``mkldnn_rnn_layer`` is LSTM only, TensorFlow's ``GRUBlockCell`` one step).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from dlir.backends.step_reads import stepped_only

from dlir.ir.graph import Graph, Node, Value, body_reads, use_counts
from dlir.ir.rnn_cell import RnnCell, match_cell, with_projection
from dlir.ir.types import DType
from dlir.ops.shape_rules import norm_axes


@dataclass
class TrainedLstm:
    """A forward LSTM scan and its backward scan, to be written as the two fused kernel calls."""

    forward: Node
    backward: Node
    cell: RnnCell  # with its projection (x, w_ih, b_ih)
    g_hs: Value | None  # the cotangent of the emitted hidden states the backward reads, if any
    results: dict[Value, str]  # a value the backward kernel gives -> which: d_x, d_w_ih, d_w_hh, d_b
    skipped: set[Node]  # nodes nothing reads any more: the projection, the products, their operands
    names: dict[str, str] = field(default_factory=dict)  # a code generator's: the forward call's operands


def trained_lstms(graph: Graph) -> dict[Node, TrainedLstm]:
    """Forward and backward scan nodes of ``graph`` -> the pair they belong to (both keys)."""
    out: dict[Node, TrainedLstm] = {}
    for node in graph.nodes:
        pair = _pair(node, graph)
        if pair is not None and pair.backward not in out:
            out[pair.forward] = out[pair.backward] = pair
    return out


def skipped_nodes(pairs: dict[Node, TrainedLstm]) -> set[Node]:
    """The nodes a code generator does not write: the two calls compute what they did. (The
    backward scan is where the backward call is written.)"""
    return {n for pair in pairs.values() for n in pair.skipped if n is not pair.backward}


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
    # A value the code generators keep as its steps (a list on torch, steps first on tensorflow)
    # because later scans read it one step at a time is not the whole tensor the kernels read
    # or write: the cotangent of hs that another scan's backward emits, or hs read by a scan.
    stepped = stepped_only(graph)
    if g_hs in stepped or any(v in stepped for v, saved in saved_is_emit(fwd) if not saved):
        return None
    readers = _readers(graph)
    results = _kernel_products(fwd, bwd, cell, readers)
    if results is None:
        return None
    read = [cell.x, cell.w_ih, cell.b_ih, cell.w_hh, cell.b_hh, *fwd.inputs[1:], *bwd.inputs[2:4], g_hs]
    gone = {cell.projection, bwd, *(v.producer for v in results if v.producer)}
    skipped = _unread_after(graph, readers, gone, fwd, {id(v) for v in read if v is not None})
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
    has_emit = any(not saved for _, saved in saved_is_emit(fwd))
    return next(iter(stacks.values())) if len(stacks) == 1 and has_emit else False


def _kernel_products(fwd: Node, bwd: Node, cell: RnnCell, readers: dict[int, list[Node]]) -> dict[Value, str] | None:
    """Every read of the backward's gates' cotangents G as the kernel result it is, else None."""
    k = bwd.attrs["n_carry"]
    n_emit = len(bwd.outputs) - k
    gates = bwd.outputs[:n_emit]
    saved_h = _saved_carry(fwd, 1)
    results: dict[Value, str] = {}
    for g in gates:
        for n in readers.get(id(g), []):
            axes = n.attrs.get("axis")
            axes = norm_axes(n.op, [axes] if isinstance(axes, int) else axes, n.inputs[0].type.rank)
            if n.op == "sum" and axes == [0, 1] and not n.attrs.get("keepdims"):
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


def _readers(graph: Graph) -> dict[int, list[Node]]:
    """value id -> the top-level nodes reading it (directly, or in their bodies)."""
    out: dict[int, list[Node]] = {}
    for n in graph.nodes:
        reads = list(n.inputs) + (list(body_reads(n.body)) if n.body is not None else [])
        for v in dict.fromkeys(id(r) for r in reads):
            out.setdefault(v, []).append(n)
    return out


def _unread_after(
    graph: Graph, readers: dict[int, list[Node]], gone: set[Node], fwd: Node, needed: set[int]
) -> set[Node]:
    """``gone`` and every node whose results only ``gone`` nodes read, except the forward scan and
    the makers of ``needed`` (the values the two calls read)."""
    gone = set(gone)
    outputs = {id(v) for _, v in graph.outputs} | needed
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
    lost |= {id(v) for v, saved in saved_is_emit(fwd) if saved}
    lost |= {id(v) for v in bwd.outputs if id(v) not in given}
    live = [n for n in graph.nodes if n not in pair.skipped and n is not fwd]  # (its xs is the kernel's x)
    return not any(id(v) in lost for v in use_counts(graph, live))


def instance_name(cell: RnnCell) -> str:
    """The LSTM's dotted instance name (``net.lstm`` for ``net.lstm.w_hh``), for the kernels' operands."""
    name = cell.w_hh.name
    return name.rsplit(".", 1)[0] if "." in name else "lstm"


def last_carries(pair: TrainedLstm) -> list[tuple[Value, str]]:
    """The backward scan's results after its step counter, each as the kernel result it is:
    ``d_h0``, ``d_c0``, then ``d_w_hh`` / ``d_b_hh`` for a weight it summed (the order
    :func:`_is_backward` checked)."""
    node, body, cell = pair.backward, pair.backward.body, pair.cell
    assert body is not None
    k = node.attrs["n_carry"]
    lasts = node.outputs[len(node.outputs) - k :]
    out = [(lasts[1], "d_h0"), (lasts[2], "d_c0")]
    for v, (name, _) in zip(lasts[3:], body.outputs[3:k], strict=True):
        out.append((v, "d_w_hh" if name == f"d.{cell.w_hh.name}" else "d_b_hh"))
    return out


def saved_is_emit(fwd: Node) -> list[tuple[Value, bool]]:
    """The forward scan's stacked outputs, each with whether it is a ``saved.*`` value (else h')."""
    body = fwd.body
    assert body is not None
    k = fwd.attrs["n_carry"]
    n_emit = len(fwd.outputs) - k
    return [(v, name.startswith("saved.")) for v, (name, _) in zip(fwd.outputs[:n_emit], body.outputs[k:], strict=True)]
