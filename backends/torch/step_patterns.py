"""Patterns of training-step graphs the torch code generator writes in a cheaper form.

All are read off the IR, with nothing changed in it: a forward max pool whose
backward reads the same windows keeps its indices (``pools_with_grads``), a
backward scan's step counter becomes a Python int (``loop_counters``), and a
forward scan's saved steps that only such a counter reads stay a Python list
(``stepped_only``).
"""

from __future__ import annotations

import numpy as np
from dlir.backends.torch.lowering import Site
from dlir.backends.torch.lowering_grad import shared_pool_geometry

from dlir.ir.graph import Graph, Node, Value
from dlir.ir.types import DType


def pools_with_grads(graph: Graph) -> dict[Node, Node]:
    """Forward max_pool2d nodes -> the max_pool2d_grad of the same image and windows.

    The forward pool then keeps its indices (``return_indices=True``) and the backward
    scatters through them, as autograd does; otherwise it pools again. (torch's NCHW max
    pool costs ~7 ms at [64, 16, 28, 28] on one core: once is enough.)
    """
    keys = ("kernel", "stride", "padding", "ceil_mode")
    out: dict[Node, Node] = {}
    for grad in graph.nodes:
        if grad.op != "max_pool2d_grad":
            continue
        for pool in graph.nodes:
            same = all(pool.attrs.get(k) == grad.attrs[k] for k in keys)
            if pool.op == "max_pool2d" and pool.inputs[0] is grad.inputs[0] and same and pool not in out:
                if shared_pool_geometry(Site(pool, ["x"], str, None)) is not None:
                    out[pool] = grad
                break
    return out


# A normalisation's forward op -> its backward op and the attributes the two must share.
_NORM_PAIRS = {
    "batch_norm_train": ("batch_norm_train_grad", ("channel", "eps")),
    "layer_norm": ("layer_norm_grad", ("axis", "eps")),
}


def norms_with_grads(graph: Graph) -> dict[Node, Node]:
    """Forward batch_norm_train / layer_norm nodes -> the backward op of the same x and scale.

    The forward then keeps the batch's (or row's) mean and 1/sigma that ``native_batch_norm``
    / ``native_layer_norm`` return, and the backward kernel reads them, as autograd does;
    otherwise the backward normalises x again only to get them (one more pass over the
    activations, and the normalised result thrown away).
    """
    out: dict[Node, Node] = {}
    for grad in graph.nodes:
        for fwd_op, (grad_op, keys) in _NORM_PAIRS.items():
            if grad.op != grad_op:
                continue
            for fwd in graph.nodes:
                same = fwd.op == fwd_op and fwd.inputs[:2] == grad.inputs[:2] and fwd not in out
                if same and all(fwd.attrs.get(k) == grad.attrs[k] for k in keys):
                    if fwd.op != "batch_norm_train" or fwd.attrs["channel"] % fwd.inputs[0].type.rank == 1:
                        out[fwd] = grad  # (a batch norm over another channel axis moves it: not kept)
                    break
    return out


def batch_statistics(graph: Graph) -> dict[Node, tuple[Node, Node]]:
    """batch_norm_train nodes (channel axis 1) -> the later ``mean`` and unbiased ``var`` of the
    same x over the same axes: train mode's running-statistics update (dlir.train.modes).

    ``native_batch_norm`` computes both in the pass it normalises with, when given running
    buffers: fresh zeros and momentum 1 leave exactly the batch's mean and unbiased variance
    there, as ``nn.BatchNorm2d`` updates its own. (``torch.var`` over the batch and spatial
    axes of NCHW costs ~3 ms at [64, 16, 28, 28] on one core, more than the batch norm.)
    """
    out: dict[Node, tuple[Node, Node]] = {}
    for i, bn in enumerate(graph.nodes):
        if bn.op != "batch_norm_train" or bn.attrs["channel"] % bn.inputs[0].type.rank != 1:
            continue
        x = bn.inputs[0]
        axes = [0, *range(2, x.type.rank)]
        later = [n for n in graph.nodes[i + 1 :] if n.inputs[:1] == [x] and not n.attrs.get("keepdims", False)]
        mean = next((n for n in later if n.op == "mean" and _axes(n) == axes), None)
        var = next((n for n in later if n.op == "var" and _axes(n) == axes and n.attrs["correction"] == 1), None)
        if mean is not None and var is not None:
            out[bn] = (mean, var)
    return out


def _axes(node: Node) -> list[int]:
    axes, rank = node.attrs.get("axis"), node.inputs[0].type.rank
    return list(range(rank)) if axes is None else sorted(a % rank for a in ([axes] if isinstance(axes, int) else axes))


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
    rank = node.inputs[0].type.rank
    return sorted(a % rank for a in ([axes] if isinstance(axes, int) else axes))
