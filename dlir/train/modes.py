"""Train mode: a graph's ``batch_norm`` and ``dropout`` as their training-time computations.

Every graph is built in eval mode (what ``dlir.compile`` and every export give).
:func:`train_mode` rewrites a copy for training, as torch's ``train()`` and
flax's ``use_running_average=False`` do, with ordinary IR ops so that every
target computes it from the same definition:

- ``batch_norm`` normalises with the batch statistics (biased variance) and
  returns the new running statistics as extra outputs ``new.<buffer>``, by
  torch's rule: ``(1 - momentum) * running + momentum * batch``, with the
  unbiased batch variance for the running one. No target's in-place update.
- ``dropout(x, p)`` multiplies by a mask that is a new graph input
  (``dropout.<k>``, the k-th dropout site in graph order): 0 or ``1 / (1 - p)``,
  made on the host by :func:`dlir.train.threefry.dropout_mask`, so no target's
  own random generator is involved and every target sees the same mask.

Nodes inside ``scan`` bodies are left in eval form (there is no per-step mask
input); :func:`train_mode` says so with an error when it meets one.
"""

from __future__ import annotations

from dataclasses import dataclass

from dlir.autodiff.builder import GradBuilder
from dlir.errors import UsageError
from dlir.ir.clone import clone_graph
from dlir.ir.graph import Graph, Node, Value
from dlir.ir.types import TensorType
from dlir.ops.conv import has_running_stats
from dlir.ops.nn import differs_in_training
from dlir.passes.rewrite import Replacer
from dlir.train.optim import NEW  # a buffer's new value is named as the optimizer's new state

MASK = "dropout."  # the prefix of a dropout site's mask input


@dataclass(frozen=True)
class DropoutSite:
    """One dropout in a train-mode graph: the mask input that replaces its randomness."""

    input: str  # the graph input's name, ``dropout.<k>``
    site: int  # k, the key of its random stream
    p: float
    type: TensorType  # the mask's type: the dropped value's


@dataclass
class TrainGraph:
    """A train-mode graph: the model's outputs, then ``new.<buffer>`` for each updated buffer."""

    graph: Graph
    buffers: list[str]  # the updated buffers, in the order of their new.<buffer> outputs
    dropouts: list[DropoutSite]


def train_mode(graph: Graph) -> TrainGraph:
    """A train-mode copy of ``graph`` (the argument is not changed)."""
    g = clone_graph(graph)
    _refuse_in_bodies(g)
    old_nodes, g.nodes = g.nodes, []
    replacer = Replacer()
    updates: list[tuple[str, Value]] = []
    dropouts: list[DropoutSite] = []
    for node in old_nodes:
        replacer.fix_node(node)
        if has_running_stats(node):
            y, new_mean, new_var = _batch_norm_train(g, node)
            replacer.replace(node.outputs[0], y)
            updates += [(node.inputs[3].name, new_mean), (node.inputs[4].name, new_var)]
        elif differs_in_training(node):  # (a dropout that drops: batch norm was the branch above)
            x = node.inputs[0]
            site = DropoutSite(f"{MASK}{len(dropouts)}", len(dropouts), float(node.attrs["p"]), x.type)
            mask = g.add_input(site.input, x.type)
            b = GradBuilder(g, node.loc, node.outputs[0].name)
            replacer.replace(node.outputs[0], b.mul(x, mask))
            dropouts.append(site)
        else:
            g.nodes.append(node)
    replacer.fix_outputs(g)
    g.outputs += [(NEW + name, v) for name, v in updates]
    return TrainGraph(g, [name for name, _ in updates], dropouts)


def _batch_norm_train(g: Graph, node: Node) -> tuple[Value, Value, Value]:
    """Batch statistics for y, torch's momentum rule for the running ones."""
    x, scale, bias, mean, var = node.inputs
    b = GradBuilder(g, node.loc, node.outputs[0].name)
    rank = x.type.rank
    channel = rank - 1 if node.attrs.get("layout") == "NHWC" else 1
    axes = [a for a in range(rank) if a != channel]
    # y by the backward-op pair batch_norm_train / _grad (torch's fused kernels); the statistics
    # again for the running update, which nothing differentiates: two reductions (a variance op
    # rather than its four-pass decomposition over the activations)
    y = b.op("batch_norm_train", x, scale, bias, channel=channel, eps=node.attrs["eps"])
    mu = b.op("mean", x, axis=axes)
    unbiased = b.op("var", x, axis=axes, correction=1)
    m = float(node.attrs["momentum"])
    new_mean = b.add(b.scale(mean, 1.0 - m), b.scale(mu, m))
    new_var = b.add(b.scale(var, 1.0 - m), b.scale(unbiased, m))
    return y, new_mean, new_var


def _refuse_in_bodies(g: Graph) -> None:
    for node in g.nodes:
        if node.body is None:
            continue
        for inner in node.body.nodes:
            if differs_in_training(inner):
                raise UsageError(
                    f"{inner.op} inside a scan body has no train-mode form yet",
                    inner.loc,
                    hint="apply it to the scan's stacked outputs instead",
                )
        _refuse_in_bodies(node.body)


__all__ = ["DropoutSite", "TrainGraph", "train_mode", "NEW", "MASK"]
