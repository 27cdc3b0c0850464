"""Reverse-mode autodiff as a graph transformation.

:func:`autodiff` takes a graph whose chosen output is a float scalar (a loss)
and returns a copy that also outputs ``grad.<name>``, the gradient of that
scalar with respect to each param (or each chosen param/input). The gradient is
built from the ops' VJP rules (``OpDef.vjp``) walking the node list backwards:
it is ordinary IR, so it verifies, prints, lowers on every target and can be
differentiated again (its outputs are then named ``grad2.<name>``).

Only values that depend on a differentiated variable carry cotangents, and
only float values; ops flagged ``differentiable=False`` (comparisons, argmax,
floor, ...) stop the gradient. Nodes the VJP rules emitted but no gradient
needs are removed at the end.

``where`` and the NaN trap. ``where(x > 0, log(x), 0)`` has a finite gradient
everywhere, yet frameworks give NaN at ``x = 0``: the untaken branch gets a zero
cotangent, and log's rule multiplies it by ``1/x = inf`` (``0 * inf = NaN``,
jax-ml/jax#1052). dlir's ``where`` rule selects the cotangents with ``where``
(a select, not a multiplication by a 0/1 mask, so a NaN or inf cotangent in the
untaken positions is dropped too), and this pass carries that selection back
through the elementwise ops that compute the branch: each of their input
cotangents is selected again with the same condition, so the inf or NaN local
derivatives of the untaken positions never reach the gradient. Once the
cotangent leaves the elementwise chain (a reduction, a matmul, a broadcast
input) the positions mix and the selection stops.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dlir.autodiff.builder import GradBuilder
from dlir.errors import PassError, did_you_mean
from dlir.ir.clone import clone_graph
from dlir.ir.graph import Graph, Node, Value, body_reads
from dlir.ops.registry import get_op


def autodiff(graph: Graph, output: str | None = None, wrt: Sequence[str] | None = None) -> Graph:
    """A copy of ``graph`` that also outputs the gradient of its scalar ``output``.

    Args:
        graph: the model; it is not changed.
        output: the name of the output to differentiate (default: the only one).
        wrt: names of params, buffers or inputs (default: every trainable param).

    Returns:
        A new graph with the original outputs followed by ``grad.<name>`` for each
        variable (``grad2.<name>`` when ``grad.<name>`` is taken, and so on).
    """
    new = clone_graph(graph)
    add_gradients(new, output, wrt)
    return new


def add_gradients(graph: Graph, output: str | None = None, wrt: Sequence[str] | None = None) -> list[tuple[str, Value]]:
    """:func:`autodiff` in place; returns the ``(name, value)`` gradient outputs it added."""
    y = _chosen_output(graph, output)
    variables = _variables(graph, wrt)
    first_new = len(graph.nodes)
    grads = Reverse(graph, variables).run({y: GradBuilder(graph, y.loc).const(1.0, y)})
    prefix = _free_prefix(graph, [v.name for v in variables])
    added = []
    for v in variables:
        g = grads.get(v)
        if g is None:  # the loss does not depend on v
            g = GradBuilder(graph, v.loc).zeros_like(v)
        name = prefix + v.name
        if g.producer is not None and g.producer in graph.nodes[first_new:] and not g.name.startswith("grad"):
            graph.rename(g, name)
        added.append((name, g))
    graph.outputs.extend(added)
    prune(graph, first_new)
    return added


# -- choosing what to differentiate ------------------------------------------------------


def _chosen_output(graph: Graph, output: str | None) -> Value:
    names = graph.output_names()
    if output is None:
        if len(names) != 1:
            raise PassError(
                f"model {graph.name} has {len(names)} outputs ({', '.join(names)}); autodiff needs one scalar loss",
                graph.loc,
                hint="choose the output to differentiate, or write a loss model that returns one scalar",
            )
        output = names[0]
    if output not in names:
        raise PassError(
            f"model {graph.name} has no output '{output}'",
            graph.loc,
            hint=did_you_mean(output, names) or f"its outputs: {', '.join(names)}",
        )
    y = dict(graph.outputs)[output]
    if y.type.rank != 0 or not y.type.dtype.is_float:
        raise PassError(
            f"autodiff needs a float scalar output, but output '{output}' of {graph.name} is {y.type}",
            y.loc if y.loc.line else graph.loc,
            hint="differentiate a loss: a model that returns one scalar, "
            "e.g. mean(...) or cross_entropy(logits, labels)",
        )
    return y


def _variables(graph: Graph, wrt: Sequence[str] | None) -> list[Value]:
    if wrt is None:
        return list(graph.trainable)
    known = {v.name: v for v in [*graph.inputs, *graph.params]}
    out = []
    for name in wrt:
        if name not in known:
            raise PassError(
                f"cannot differentiate with respect to '{name}': {graph.name} has no such param or input",
                graph.loc,
                hint=did_you_mean(name, known) or "name a param (fc1.w) or an input",
            )
        v = known[name]
        if not v.type.dtype.is_float:
            raise PassError(f"cannot differentiate with respect to '{name}': it is {v.type}, not a float tensor", v.loc)
        if v not in out:
            out.append(v)
    return out


def _free_prefix(graph: Graph, names: list[str]) -> str:
    taken = set(graph.output_names())
    k = 1
    while True:
        prefix = "grad." if k == 1 else f"grad{k}."
        if not any(prefix + n in taken for n in names):
            return prefix
        k += 1


# -- the reverse sweep ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Mask:
    """Where a cotangent is known to be zero: at ``cond`` (``zero_when=True``) or at ``not cond``."""

    cond: Value
    zero_when: bool


class Reverse:
    """One reverse sweep over ``nodes`` (default: the graph's), emitting into ``graph``.

    ``run(seeds)`` starts from cotangents of some values and returns the cotangent
    of every value it reached. The scan VJP runs one on a step of the loop body.
    """

    def __init__(self, graph: Graph, variables: Sequence[Value], nodes: Sequence[Node] | None = None) -> None:
        self.g = graph
        self.nodes = list(graph.nodes if nodes is None else nodes)
        self.active = _active_values(self.nodes, variables)
        self.ct: dict[Value, Value] = {}
        self.mask: dict[Value, tuple[_Mask, ...]] = {}

    def run(self, seeds: dict[Value, Value]) -> dict[Value, Value]:
        b = GradBuilder(self.g)
        for v, c in seeds.items():
            if v in self.active:
                self.accumulate(b, v, c, ())
        for node in reversed(self.nodes):
            if any(o in self.ct for o in node.outputs):
                self.visit(node)
        return self.ct

    def visit(self, node: Node) -> None:
        opdef = get_op(node.op)
        wants = [v in self.active for v in node.inputs]
        closure = node.body is not None and any(v in self.active for v in body_reads(node.body))
        if not any(wants) and not closure:
            return
        if opdef.vjp is None:
            raise PassError(
                f"autodiff: op '{node.op}' has no gradient rule yet",
                node.loc,
                hint="its result depends on a differentiated variable; the rule belongs in the op's OpDef (vjp=...)",
            )
        name = "d." + node.outputs[0].name if node.outputs else "d"
        b = GradBuilder(self.g, node.loc, name, wants, self.active.__contains__)
        cts = [self.ct[o] if o in self.ct else b.zeros_like(o) for o in node.outputs]
        got = opdef.vjp(b, node, cts)
        assert len(got) == len(node.inputs), f"the VJP of {node.op}: {len(got)} cotangents, {len(node.inputs)} inputs"
        out_masks = self.mask.get(node.outputs[0], ()) if opdef.elementwise and len(node.outputs) == 1 else ()
        for i, (x, c) in enumerate(zip(node.inputs, got, strict=True)):
            if c is None or not wants[i]:
                continue
            if out_masks and c is not cts[0] and not _finite_derivative(node, i):
                c = _select(b, out_masks, c)  # re-select: this op's local derivative may be inf or NaN there
            masks = out_masks
            if node.op == "where" and i > 0:
                masks = out_masks + (_Mask(node.inputs[0], zero_when=(i == 2)),)
            self.accumulate(b, x, c, masks, node)
        for v, c in b.closure_cts:  # values a body reads from outside (scan)
            self.accumulate(b, v, c, (), node)

    def accumulate(
        self, b: GradBuilder, x: Value, c: Value, masks: tuple[_Mask, ...], node: Node | None = None
    ) -> None:
        if c.type.dtype is not x.type.dtype:
            where = f"the VJP of {node.op}" if node is not None else "a seed"
            raise PassError(f"autodiff: {where} gave a {c.type} cotangent for {x.type}", b.loc)
        if c.type.shape != x.type.shape:
            c, masks = b.sum_to(c, x.type), ()
        if x not in self.ct:
            self.ct[x], self.mask[x] = c, masks
            return
        self.ct[x] = b.add(self.ct[x], c)
        # A sum is known to be zero only where every term is.
        self.mask[x] = tuple(m for m in self.mask[x] if m in masks)


# Elementwise ops whose local derivative is finite wherever their operands are: a zero
# cotangent stays zero through them, so the re-selection (a `where` per op, slow on
# torch's CPU) is not needed. (sigmoid and tanh's derivatives read the bounded result.)
_FINITE_DERIVATIVE = frozenset(
    {"add", "sub", "neg", "sigmoid", "tanh", "relu_grad", "tanh_grad", "sigmoid_grad", "gelu_grad"}
)


def _finite_derivative(node: Node, i: int) -> bool:
    if node.op in _FINITE_DERIVATIVE:
        return True
    if node.op == "mul":  # by a constant: its derivative is that constant, finite when the constant is
        other = node.inputs[1 - i].producer
        if other is not None and other.op == "constant":
            return bool(np.isfinite(np.asarray(other.attrs["value"], dtype=np.float64)).all())
    return False


def _select(b: GradBuilder, masks: tuple[_Mask, ...], c: Value) -> Value:
    for m in masks:
        c = b.zero_where(m.cond, c) if m.zero_when else b.keep_where(m.cond, c)
    return c


def _active_values(nodes: list[Node], variables: Sequence[Value]) -> set[Value]:
    """Float values that depend on a variable through differentiable ops (a body's reads count)."""
    active = set(variables)
    for node in nodes:
        if not get_op(node.op).differentiable:
            continue
        reads = node.inputs if node.body is None else [*node.inputs, *body_reads(node.body)]
        if any(v in active for v in reads):
            active.update(o for o in node.outputs if o.type.dtype.is_float)
    return active


# -- graph utilities -------------------------------------------------------------------------


def prune(graph: Graph, first: int = 0) -> None:
    """Drop the nodes from index ``first`` on that no output (or later node, or body) needs."""
    live: set[Value] = {v for _, v in graph.outputs}
    keep: list[Node] = []
    for node in reversed(graph.nodes[first:]):
        if any(o in live for o in node.outputs):
            keep.append(node)
            live.update(node.inputs)
            if node.body is not None:
                live.update(body_reads(node.body))
        else:
            for o in node.outputs:
                graph.release_name(o.name)
    graph.nodes[first:] = reversed(keep)


__all__ = ["add_gradients", "autodiff"]
