"""Small tools the passes share: replacing values, reading constants, re-typing a node.

Values are replaced lazily: a pass records ``old -> new`` in a :class:`Replacer`
and fixes each node's inputs as its forward sweep reaches it, then the graph's
outputs at the end, so a whole pass stays linear in the graph's size. A body
graph (``scan``) is opaque to the passes, but its reads of the enclosing graph
(closures) are uses like any other and are redirected too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlir.errors import DlirError
from dlir.ir.graph import Graph, Node, Value, body_reads
from dlir.ir.types import Dim, TensorType
from dlir.ops.registry import REGISTRY, OpDef, check_attrs, get_op


class Replacer:
    """Pending ``old value -> new value`` replacements (types must be identical)."""

    def __init__(self) -> None:
        self.map: dict[Value, Value] = {}

    def __bool__(self) -> bool:
        return bool(self.map)

    def replace(self, old: Value, new: Value) -> None:
        new = self.resolve(new)
        assert old is not new and old.type == new.type, f"replacing %{old.name}: {old.type} by %{new.name}: {new.type}"
        self.map[old] = new

    def resolve(self, v: Value) -> Value:
        while v in self.map:
            v = self.map[v]
        return v

    def fix_node(self, node: Node) -> None:
        """Redirect the node's inputs, and the reads of its body, to the replacements."""
        if not self.map:
            return
        node.inputs = [self.resolve(v) for v in node.inputs]
        if node.body is not None:
            self.fix_graph(node.body)

    def fix_graph(self, graph: Graph) -> None:
        for n in graph.nodes:
            self.fix_node(n)
        self.fix_outputs(graph)

    def fix_outputs(self, graph: Graph) -> None:
        """Outputs keep their names and point at the replacements."""
        if self.map:
            graph.outputs = [(name, self.resolve(v)) for name, v in graph.outputs]


def opdef_or_none(node: Node) -> OpDef | None:
    """The node's OpDef, or None for an op this build does not know (passes leave such nodes alone)."""
    opdef = REGISTRY.get(node.op)  # the fast path once the families are loaded
    if opdef is not None:
        return opdef
    try:
        return get_op(node.op)
    except DlirError:
        return None


def is_pure(node: Node) -> bool:
    """Whether a node may be removed, merged or evaluated at compile time."""
    opdef = opdef_or_none(node)
    return (
        opdef is not None
        and opdef.expand is None
        and node.body is None
        and bool(node.outputs)
        and not opdef.extra.get("side_effects", False)
    )


def removable(node: Node) -> bool:
    """Whether a node whose results are unused may be dropped (a known op without side effects)."""
    opdef = opdef_or_none(node)
    return opdef is not None and bool(node.outputs) and not opdef.extra.get("side_effects", False)


def constant_value(v: Value) -> np.ndarray | None:
    """The array of a ``constant`` node's result, or None when ``v`` is not one."""
    node = v.producer
    if node is None or node.op != "constant" or len(node.outputs) != 1:
        return None
    try:
        return np.asarray(get_op("constant").ref([], node.attrs)[0])
    except Exception:  # noqa: BLE001 - an odd constant is simply not folded
        return None


def fills_type(const: np.ndarray, t: TensorType) -> bool:
    """Whether broadcasting ``const`` with a tensor of type ``t`` always gives that tensor's shape.

    Each of the constant's dims must be 1 or equal a static dim of ``t``; an
    unknown or symbolic dim of ``t`` might be 1 at run time and grow.
    """
    if const.ndim > t.rank:
        return False
    for c, d in zip(reversed(const.shape), reversed(t.shape), strict=False):  # trailing dims: broadcasting
        if c != 1 and not (d.is_static and d.value == c):
            return False
    return True


def has_unknown(t: TensorType) -> bool:
    return any(d.unknown for d in t.shape)


def retype(node: Node, inputs: list[Value], attrs: dict[str, Any]) -> bool:
    """Give ``node`` new inputs and attributes if its result types stay exactly the same."""
    opdef = opdef_or_none(node)
    if opdef is None:
        return False
    types = [v.type for v in inputs]
    try:
        full = check_attrs(opdef, attrs)
        if opdef.canonical is not None:
            full = opdef.canonical(types, full)
        if not opdef.accepts(len(inputs)) or opdef.infer(types, full) != [v.type for v in node.outputs]:
            return False
    except DlirError:
        return False
    node.inputs = list(inputs)
    node.attrs = full
    return True


def static_attrs(attrs: dict[str, Any]) -> bool:
    """Whether no attribute holds a symbolic dim (only those can be evaluated at compile time)."""

    def ok(v: Any) -> bool:
        if isinstance(v, Dim):
            return v.is_static
        if isinstance(v, (list, tuple)):
            return all(ok(x) for x in v)
        return True

    return all(ok(v) for v in attrs.values())


def freeze_attr(a: Any) -> Any:
    """A hashable key for an attribute value that tells 1 from 1.0 from True and -0.0 from 0.0."""
    if isinstance(a, dict):
        return ("dict", tuple((k, freeze_attr(v)) for k, v in sorted(a.items())))
    if isinstance(a, (list, tuple)):
        return ("list", tuple(freeze_attr(x) for x in a))
    if isinstance(a, np.ndarray):
        return ("array", str(a.dtype), a.shape, a.tobytes())
    if isinstance(a, (bool, np.bool_)):
        return ("bool", bool(a))
    if isinstance(a, (int, np.integer)):
        return ("int", int(a))
    if isinstance(a, (float, np.floating)):
        return ("float", float(a).hex())
    return (type(a).__name__, a)


__all__ = [
    "Replacer",
    "body_reads",
    "opdef_or_none",
    "is_pure",
    "removable",
    "constant_value",
    "fills_type",
    "has_unknown",
    "retype",
    "static_attrs",
    "freeze_attr",
]
