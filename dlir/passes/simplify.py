"""Algebraic simplification: identities that remove nodes without changing any type."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dlir.ir.graph import Graph, Node, Value, body_reads
from dlir.passes.gelu_match import GeluMatcher
from dlir.passes.manager import Pass, register_pass
from dlir.passes.rewrite import Replacer, constant_value, fills_type, has_unknown, retype

# A rule looks at one node: it returns the value that replaces the node's result,
# True when it rewrote the node in place, or None when it does not apply.
Rule = Callable[[Node], "Value | bool | None"]
RULES: dict[str, Rule] = {}


def rule(*ops: str) -> Callable[[Rule], Rule]:
    def deco(fn: Rule) -> Rule:
        for op in ops:
            RULES[op] = fn
        return fn

    return deco


@register_pass
@dataclass
class AlgebraicSimplification(Pass):
    """Rewrite algebraic identities: ``x+0``, ``0+x``, ``x-0``, ``x*1``, ``1*x``, ``x/1``, ``x**1``,
    ``neg(neg(x))``, ``where`` of a constant condition, transpose of a transpose (perms composed;
    an identity perm goes away), reshape of a reshape or flatten, reshape/flatten/broadcast_to to
    the same type, casts to the same dtype, and squeeze of an unsqueeze (or back) on the same axes. GELU written out
    (``0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x**3)))`` and its usual variants, or
    ``0.5 * x * (1 + erf(x / sqrt(2)))``) becomes one ``gelu`` op (see ``gelu_match``).

    A rule applies only when the result type is exactly the kept value's type (a
    constant that would broadcast ``x`` to a bigger shape keeps the ``add``). The
    node whose result is replaced goes; nodes it bypassed are left for ``dce``.
    Results can differ from the original only in the sign of a zero (``-0.0 + 0``), and for
    a recognised GELU by f32 rounding (its constants must match GELU's to f32 precision).
    """

    name = "simplify"

    def run(self, graph: Graph) -> bool:
        rep = Replacer()
        kept: list[Node] = []
        changed = False
        uses = _count_uses(graph)
        gelu = GeluMatcher(uses)
        for node in graph.nodes:
            self.at = node
            rep.fix_node(node)
            before = list(node.inputs)
            fn = RULES.get(node.op) if node.body is None and len(node.outputs) == 1 else None
            result = fn(node) if fn is not None else None
            if isinstance(result, Value) and result is not node.outputs[0] and result.type == node.outputs[0].type:
                # The node goes: its readers read `result` instead, and it no longer reads its inputs.
                uses[result] = uses.get(result, 0) + uses.pop(node.outputs[0], 0)
                for v in before:
                    uses[v] -= 1
                rep.replace(node.outputs[0], result)
                changed = True
                continue
            if result is None and node.op in ("mul", "div") and len(node.outputs) == 1:
                result = gelu.match(node) or None
            if result is True:  # rewritten in place: it may read other values now
                _move_uses(uses, before, node.inputs)
                changed = True
            kept.append(node)
        self.at = None
        if changed:
            graph.nodes = kept
            rep.fix_outputs(graph)
        return changed


def _count_uses(graph: Graph) -> dict[Value, int]:
    """How many times each value is read: by node inputs, bodies (closures) and graph outputs."""
    uses: dict[Value, int] = {}
    for node in graph.nodes:
        for v in node.inputs:
            uses[v] = uses.get(v, 0) + 1
        if node.body is not None:
            for v in body_reads(node.body):
                uses[v] = uses.get(v, 0) + 1
    for _, v in graph.outputs:
        uses[v] = uses.get(v, 0) + 1
    return uses


def _move_uses(uses: dict[Value, int], before: list[Value], after: list[Value]) -> None:
    for v in before:
        uses[v] -= 1
    for v in after:
        uses[v] = uses.get(v, 0) + 1


# -- arithmetic identities ----------------------------------------------------------------


def _is(v: Value, number: int, keep: Value) -> bool:
    """Whether ``v`` is a constant equal to ``number`` everywhere that broadcasts into ``keep``'s shape."""
    c = constant_value(v)
    return c is not None and c.size > 0 and fills_type(c, keep.type) and bool(np.all(c == number))


@rule("add")
def _add(node: Node) -> Value | None:
    a, b = node.inputs
    if _is(b, 0, a):
        return a
    if _is(a, 0, b):
        return b
    return None


@rule("sub")
def _sub(node: Node) -> Value | None:
    a, b = node.inputs
    return a if _is(b, 0, a) else None


@rule("mul")
def _mul(node: Node) -> Value | None:
    a, b = node.inputs
    if _is(b, 1, a):
        return a
    if _is(a, 1, b):
        return b
    return None


@rule("div", "pow")
def _by_one(node: Node) -> Value | None:
    a, b = node.inputs
    return a if _is(b, 1, a) else None


@rule("neg")
def _neg(node: Node) -> Value | None:
    inner = node.inputs[0].producer
    return inner.inputs[0] if inner is not None and inner.op == "neg" else None


@rule("where")
def _where(node: Node) -> Value | None:
    """A selection by a constant condition: the side it always picks (the driver keeps the node
    where that side would not already have the result's type)."""
    cond, a, b = node.inputs
    c = constant_value(cond)
    if c is None or c.size == 0:
        return None
    if bool(np.all(c)):
        return a
    return b if not bool(np.any(c)) else None


# -- shapes ----------------------------------------------------------------------------------


def _perm(node: Node) -> list[int]:
    rank = node.inputs[0].type.rank
    p = node.attrs.get("perm")
    return list(reversed(range(rank))) if p is None else [i % rank for i in p]


@rule("transpose")
def _transpose(node: Node) -> Value | bool | None:
    rewrote = False
    inner = node.inputs[0].producer
    if inner is not None and inner.op == "transpose" and len(inner.outputs) == 1:
        outer_p, inner_p = _perm(node), _perm(inner)
        # out[i] = mid[outer[i]] = x[inner[outer[i]]]
        rewrote = retype(node, [inner.inputs[0]], {"perm": [inner_p[i] for i in outer_p]})
    if _perm(node) == list(range(node.inputs[0].type.rank)):
        return node.inputs[0]
    return rewrote or None


@rule("reshape", "flatten", "broadcast_to")
def _reshape(node: Node) -> Value | bool | None:
    rewrote = False
    inner = node.inputs[0].producer
    if node.op == "reshape" and inner is not None and inner.op in ("reshape", "flatten"):
        rewrote = retype(node, [inner.inputs[0]], node.attrs)
    x, out = node.inputs[0], node.outputs[0]
    # An unknown dim could hide a different run-time shape behind an equal type.
    if x.type == out.type and not has_unknown(out.type):
        return x
    return rewrote or None


@rule("cast")
def _cast(node: Node) -> Value | None:
    x = node.inputs[0]
    return x if x.type.dtype is node.attrs["dtype"] else None


def _axes(axes: list[int] | None, rank: int) -> set[int] | None:
    if axes is None:
        return None
    return {a % rank for a in axes} if all(-rank <= a < rank for a in axes) else None


def _same_axes(a: Node, b: Node, rank: int) -> bool:
    axes = _axes(a.attrs["axes"], rank)
    return axes is not None and axes == _axes(b.attrs["axes"], rank)


@rule("squeeze")
def _squeeze(node: Node) -> Value | None:
    inner = node.inputs[0].producer
    if inner is None or inner.op != "unsqueeze":
        return None
    rank = node.inputs[0].type.rank  # the unsqueezed rank: both lists count in it
    return inner.inputs[0] if _same_axes(node, inner, rank) else None


@rule("unsqueeze")
def _unsqueeze(node: Node) -> Value | None:
    inner = node.inputs[0].producer
    if inner is None or inner.op != "squeeze":
        return None
    rank = node.outputs[0].type.rank  # the rank before squeezing: both lists count in it
    return inner.inputs[0] if _same_axes(node, inner, rank) else None
