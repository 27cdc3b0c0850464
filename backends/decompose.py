"""Lowering an op by its decomposition: for targets without a kernel of their own for it.

An OpDef with a ``decompose`` (the backward ops of dlir.ops.backward) is written
there with ordinary ops. A backend table says ``DECOMPOSE`` for such an op; its code
generator then lowers :func:`decomposed`'s nodes in place of the node, each by its
own table entry, and takes their results as the node's.
"""

from __future__ import annotations

from dlir.autodiff.builder import GradBuilder
from dlir.ir.graph import Graph, Node, Value
from dlir.ops.registry import get_op


class _Decompose:
    """The table entry of an op lowered by its decomposition."""

    def __repr__(self) -> str:
        return "DECOMPOSE"

    def __call__(self, *args: object) -> str:
        raise AssertionError("an op marked DECOMPOSE is lowered by its decomposition, not called")


DECOMPOSE = _Decompose()


def decomposed(node: Node) -> tuple[list[Node], list[Value]]:
    """The nodes that compute ``node`` with ordinary ops (they read ``node``'s own inputs),
    and the values that are its results, in order."""
    decompose = get_op(node.op).decompose
    assert decompose is not None, f"{node.op} is marked DECOMPOSE but has no decomposition"
    scratch = Graph(f"{node.op}.decomposed", loc=node.loc)
    name = node.outputs[0].name if node.outputs else "d"
    outs = decompose(GradBuilder(scratch, node.loc, name), node)
    assert len(outs) == len(node.outputs), f"{node.op}'s decomposition gives {len(outs)} results"
    return scratch.nodes, outs
