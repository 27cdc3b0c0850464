"""Deep copies of graphs, so a pipeline can rewrite one without touching the original.

:func:`clone_graph` copies every value, node, attribute list and body graph;
a body's reads of the enclosing graph (``scan`` closures) are redirected to the
copies, and a body that shares its outer graph's name set keeps sharing it.
Types, inits and locations are immutable and shared.
"""

from __future__ import annotations

import copy
from typing import Any, TypeVar

import numpy as np

from dlir.ir.graph import Graph, Node, Value


def clone_graph(graph: Graph) -> Graph:
    """A copy of ``graph`` that shares no mutable object with it (printing both gives the same text)."""
    return _Cloner().graph(graph)


class _Cloner:
    def __init__(self) -> None:
        self.map: dict[Value, Value] = {}
        # A body usually shares its outer graph's name set (dlir.ir.scan.scan_body); the copies share too.
        self.name_sets: dict[int, set[str]] = {}
        self.name_hints: dict[int, dict[str, int]] = {}  # Graph._next, copied as its name set is

    def graph(self, g: Graph) -> Graph:
        new = copy.copy(g)  # keeps any field this module does not know about
        new.inputs = [self.value(v) for v in g.inputs]
        new.params = [self.value(v) for v in g.params]
        new.nodes = [self.node(n) for n in g.nodes]
        new.outputs = [(name, self.use(v)) for name, v in g.outputs]
        if id(g._used) not in self.name_sets:
            self.name_sets[id(g._used)] = set(g._used)
            self.name_hints[id(g._used)] = dict(g._next)
        new._used = self.name_sets[id(g._used)]
        new._next = self.name_hints[id(g._used)]
        return new

    def value(self, v: Value) -> Value:
        new = _shallow_copy(v)
        new.producer = None
        self.map[v] = new
        return new

    def use(self, v: Value) -> Value:
        # A value from outside the cloned graph (broken IR) stays as it is; the verifier reports it.
        return self.map.get(v, v)

    def node(self, n: Node) -> Node:
        new = _shallow_copy(n)
        new.inputs = [self.use(v) for v in n.inputs]
        new.attrs = {k: clone_attr(a) for k, a in n.attrs.items()}
        # The body reads values of this graph defined before the node, already mapped.
        new.body = self.graph(n.body) if n.body is not None else None
        new.outputs = [self.value(v) for v in n.outputs]
        for v in new.outputs:
            v.producer = new
        return new


_T = TypeVar("_T")


def _shallow_copy(obj: _T) -> _T:
    """``copy.copy`` for our plain dataclasses (every field, known or not), without its
    generic ``__reduce_ex__`` protocol, which cost more than the rest of a clone."""
    new = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__)
    return new


def clone_attr(a: Any) -> Any:
    """Attribute values are immutable except lists (and arrays); those are copied."""
    if isinstance(a, list):
        return [clone_attr(x) for x in a]
    if isinstance(a, np.ndarray):
        return a.copy()
    return a


__all__ = ["clone_graph", "clone_attr"]
