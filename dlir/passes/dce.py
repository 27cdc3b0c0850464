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
    """

    name = "dce"

    def run(self, graph: Graph) -> bool:
        live: set[Value] = {v for _, v in graph.outputs}
        kept: list[Node] = []
        for node in reversed(graph.nodes):
            self.at = node
            if not any(v in live for v in node.outputs) and removable(node):
                continue
            kept.append(node)
            live.update(node.inputs)
            if node.body is not None:
                live.update(body_reads(node.body))
        self.at = None
        if len(kept) == len(graph.nodes):
            return False
        graph.nodes = kept[::-1]
        return True
