"""Dead-code elimination."""

from __future__ import annotations

from dataclasses import dataclass

from dlir.ir.graph import Graph, Node, Value
from dlir.passes.manager import Pass, register_pass
from dlir.passes.rewrite import body_reads, removable


@register_pass
@dataclass
class DeadCodeElimination(Pass):
    """Remove nodes whose results nothing uses.

    A result is used by a graph output, a later node, or a body graph that reads
    it (a ``scan`` closure). Inputs and params always stay: they are the model's
    interface and its weights. Nodes with an unknown op, no results or a
    ``side_effects`` flag always stay too.

    A ``scan`` whose stacked emit ``ys_j`` nobody reads stops emitting it (the
    emit leaves the body's outputs, ``ys_j`` the node's), and dead nodes inside
    bodies go too: their outputs (new carries, emits) are what is live there.
    Carries stay: each step needs the last one, even when the final value is unused.
    """

    name = "dce"

    def run(self, graph: Graph) -> bool:
        return self._sweep(graph)

    def _sweep(self, graph: Graph) -> bool:
        live: set[Value] = {v for _, v in graph.outputs}
        kept: list[Node] = []
        changed = False
        for node in reversed(graph.nodes):
            self.at = node
            if not any(v in live for v in node.outputs) and removable(node):
                continue
            kept.append(node)
            if node.body is not None:
                if node.op == "scan":
                    changed = _drop_dead_emits(graph, node, live) or changed
                changed = self._sweep(node.body) or changed
                self.at = node
                live.update(body_reads(node.body))
            live.update(node.inputs)
        self.at = None
        if len(kept) == len(graph.nodes):
            return changed
        graph.nodes = kept[::-1]
        return True


def _drop_dead_emits(graph: Graph, node: Node, live: set[Value]) -> bool:
    """Remove the stacked emits of ``node`` (a scan) that are not in ``live``, with their body outputs.

    Node outputs are ``[ys_1..ys_m, last_1..last_k]``, body outputs ``[h_1'..h_k', e_1..e_m]``.
    """
    body = node.body
    assert body is not None
    k = node.attrs["n_carry"]
    m = len(node.outputs) - k
    if m != len(body.outputs) - k:
        return False  # malformed: the verifier reports it, dce keeps its hands off
    keep = [j for j in range(m) if node.outputs[j] in live]
    if len(keep) == m:
        return False
    for j in range(m):
        if j not in keep:
            graph.release_name(node.outputs[j].name)
    node.outputs = [node.outputs[j] for j in keep] + node.outputs[m:]
    body.outputs = body.outputs[:k] + [body.outputs[k + j] for j in keep]
    return True
