"""Patterns of training-step graphs the torch code generator writes in a cheaper form.

All are read off the IR, with nothing changed in it: a forward max pool whose
backward reads the same windows keeps its indices (``pools_with_grads``), a forward
norm keeps the statistics its backward reads (``norms_with_grads``), and a train-mode
batch norm's kernel gives the running statistics (``batch_statistics``). The scan
reads (step counters, saved steps) are in :mod:`dlir.backends.step_reads`.
"""

from __future__ import annotations

from dlir.backends.torch.lowering import Site
from dlir.backends.torch.lowering_grad import shared_pool_geometry

from dlir.ir.graph import Graph, Node
from dlir.ops.shape_rules import norm_axes


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
    axes = node.attrs.get("axis")
    return norm_axes(node.op, [axes] if isinstance(axes, int) else axes, node.inputs[0].type.rank)
