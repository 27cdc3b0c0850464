"""Analyses of scans in a training step that more than one code generator reads.

The scan VJP (dlir.autodiff.scan) reads the forward scan's saved values one step at a time:
a gather of width 1 along the scan axis at a step counter the backward scan carries. A code
generator may write those reads in a cheaper form:

- ``loop_counters``: the carries that count steps (torch writes them as Python ints);
- ``stepped_only``: the saved values that only such reads read (torch keeps them as the list of
  steps the forward loop collected; TensorFlow keeps them with the steps first);
- ``squeezed_reads``: the step reads that only a squeeze of the step axis reads.

All read the IR, and change nothing in it.
"""

from __future__ import annotations

import numpy as np

from dlir.ir.graph import Graph, Node, Value
from dlir.ir.types import DType
from dlir.ops.shape_rules import norm_axes


def loop_counters(node: Node) -> dict[int, int]:
    """Carries of ``node`` (a scan) that count steps: i64[1] from a constant, plus a number each
    step, read only by gathers along the scan axis. Their index -> start value.

    The scan VJP makes one to read the forward scan's saved values at their step; as a Python
    int it turns each read into a view (``narrow``) instead of an indexing copy.
    """
    body = node.body
    assert body is not None
    k, axis = node.attrs["n_carry"], node.attrs["axis"]
    out: dict[int, int] = {}
    for j in range(k):
        init, h, (_, new) = node.inputs[1 + j], body.inputs[1 + j], body.outputs[j]
        start = init.producer
        if start is None or start.op != "constant" or init.type.dtype is not DType.i64 or init.type.rank != 1:
            continue
        value = np.asarray(start.attrs["value"]).reshape(-1)
        step = new.producer
        if value.size != 1 or step is None or step.op != "add" or step.inputs[0] is not h:
            continue
        inc = step.inputs[1].producer
        if inc is None or inc.op != "constant" or np.asarray(inc.attrs["value"]).size != 1:
            continue
        readers = [n for n in body.nodes if h in n.inputs and n is not step]
        if any(
            n.op != "gather"
            or n.inputs[1] is not h
            or n.attrs["axis"] % n.inputs[0].type.rank != axis
            or h is n.inputs[0]
            for n in readers
        ):
            continue
        if any(new in n.inputs for n in body.nodes) or [v for _, v in body.outputs].count(new) != 1:
            continue
        out[j] = int(value[0])
    return out


def stepped_only(graph: Graph) -> set[Value]:
    """Emitted outputs of ``graph``'s scans that only later scans read, one step at a time.

    Each use is a gather inside another scan's body, along the emitting scan's axis,
    at that body's step counter (:func:`loop_counters`): the backward scan reading
    what its forward scan saved. The code generator then keeps the list of steps it
    collected and indexes it, instead of stacking the steps into one tensor (a copy of
    every saved value: ~20% of an LSTM's training step) and narrowing it again.
    """
    outputs = {v for _, v in graph.outputs}
    emitted: dict[Value, int] = {}
    for node in graph.nodes:
        if node.op == "scan" and node.body is not None:
            n_emit = len(node.body.outputs) - node.attrs["n_carry"]
            emitted.update((y, node.attrs["axis"]) for y in node.outputs[:n_emit] if y not in outputs)
    readers: dict[Value, bool] = dict.fromkeys(emitted, True)
    for node in graph.nodes:
        for v in node.inputs:
            if v in readers:
                readers[v] = False  # read whole by an outer node
        if node.op != "scan" or node.body is None:
            continue
        body = node.body
        counters = {body.inputs[1 + j] for j in loop_counters(node)}
        for inner in body.nodes:
            for i, v in enumerate(inner.inputs):
                if v not in readers:
                    continue
                by_step = (
                    inner.op == "gather"
                    and i == 0
                    and inner.inputs[1] in counters
                    and inner.attrs["axis"] % v.type.rank == emitted[v]
                )
                readers[v] = readers[v] and by_step
    return {v for v, only in readers.items() if only}


def squeezed_reads(graph: Graph) -> dict[Node, list[Node]]:
    """Gathers of one step (``[B, 1, ...]``) that only squeeze nodes read, squeezing that axis away.

    The scan VJP reads a saved step as a gather of width 1 and squeezes it; from the list
    of steps (:func:`stepped_only`) torch can hand the step over as it is, instead of an
    ``unsqueeze`` and a ``squeeze`` (two dispatches a saved value a step: ~10% of an LSTM's
    backward loop). Gather -> the squeezes that become names for its step.
    """
    readers: dict[Value, list[Node]] = {}
    for node in graph.nodes:
        for v in node.inputs:
            readers.setdefault(v, []).append(node)
    outputs = {v for _, v in graph.outputs}
    out: dict[Node, list[Node]] = {}
    for node in graph.nodes:
        if node.op != "gather" or node.outputs[0] in outputs or node.outputs[0].type.rank == 0:
            continue
        axis = node.attrs["axis"] % node.outputs[0].type.rank
        users = readers.get(node.outputs[0], [])
        if users and all(u.op == "squeeze" and _squeezed_axes(u) == [axis] for u in users):
            out[node] = users
    return out


def _squeezed_axes(node: Node) -> list[int] | None:
    axes = node.attrs.get("axes")
    if axes is None:
        return None  # (drops every static 1: not necessarily the step axis alone)
    return norm_axes("squeeze", [axes] if isinstance(axes, int) else axes, node.inputs[0].type.rank)
