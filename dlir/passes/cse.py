"""Common-subexpression elimination."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from dlir.ir.graph import Graph, Node
from dlir.passes.manager import Pass, register_pass
from dlir.passes.rewrite import Replacer, freeze_attr, is_pure, opdef_or_none


@register_pass
@dataclass
class CommonSubexpressionElimination(Pass):
    """Merge nodes that compute the same thing: same op, same inputs, equal attributes.

    The later node goes and its uses (outputs keep their names) read the earlier
    one's results. Inputs of a commutative op (``add``, ``mul``, ...) match in
    either order. Nodes with a body, unknown ops and ops with side effects are
    never merged. Attributes compare by kind and value (``1`` differs from
    ``1.0``, ``0.0`` from ``-0.0``; ``nan`` equals ``nan``).
    """

    name = "cse"

    def run(self, graph: Graph) -> bool:
        rep = Replacer()
        seen: dict[Hashable, Node] = {}
        kept: list[Node] = []
        for node in graph.nodes:
            self.at = node
            rep.fix_node(node)
            key = node_key(node)
            first = seen.get(key) if key is not None else None
            if first is None:
                if key is not None:
                    seen[key] = node
                kept.append(node)
                continue
            for old, new in zip(node.outputs, first.outputs, strict=True):
                rep.replace(old, new)
        self.at = None
        if not rep:
            return False
        graph.nodes = kept
        rep.fix_outputs(graph)
        return True


def node_key(node: Node) -> Hashable | None:
    """What makes two nodes interchangeable, or None if this one must stay unique."""
    if not is_pure(node):
        return None
    opdef = opdef_or_none(node)
    ins: Any = tuple(id(v) for v in node.inputs)  # the values are alive during the pass
    if opdef is not None and opdef.commutative and len(ins) == 2:
        ins = tuple(sorted(ins))
    # The result types follow from op, input types and attributes, so they need no place in the key.
    key = (node.op, ins, freeze_attr(node.attrs) if node.attrs else ())
    try:
        hash(key)
    except TypeError:  # an attribute of a kind this pass does not know
        return None
    return key
