"""Building ``scan`` nodes: a body graph and the node that owns it.

The node's contract (see ``dlir/ops/control.py``)::

    Node(op="scan", inputs=[xs, init_1..init_k], attrs={"axis", "reverse", "n_carry": k},
         outputs=[ys_1..ys_m, last_1..last_k], body=Graph)

with body inputs ``[x_t, h_1..h_k]`` and body outputs ``[h_1'..h_k', e_1..e_m]``.
Body nodes may read values of the enclosing graphs directly (closure). Value
names are unique across a graph and all its bodies: a body made by
:func:`scan_body` shares its outer graph's name set, and :func:`emit_scan`
adopts a body built separately, so generated code may put body and outer values
in one namespace.

Example, ``ys, h_last = scan x_t in xs along 1 carry h = h0 { h = tanh(x_t + h); emit h }``::

    body = scan_body(g, step_type(xs.type, 1), [h0.type], ["x_t", "h"])
    x_t, h = body.inputs
    h2 = emit1(body, "tanh", [emit1(body, "add", [x_t, h])])
    body.outputs = [("h", h2), ("ys", h2)]
    ys, h_last = emit_scan(g, xs, [h0], body, axis=1)
"""

from __future__ import annotations

from collections.abc import Sequence

from dlir.errors import UNKNOWN_LOC, DlirError, SourceLoc, TypeError_
from dlir.ir.graph import Graph, Value
from dlir.ir.types import TensorType
from dlir.ops.control import scan_types, stacked_type, step_type
from dlir.ops.registry import check_attrs, get_op

__all__ = ["scan_body", "emit_scan", "step_type", "stacked_type", "normalize_axis"]


def scan_body(
    outer: Graph,
    x_type: TensorType,
    carry_types: Sequence[TensorType],
    names: Sequence[str] = (),
    name: str = "step",
    locs: Sequence[SourceLoc] = (),
    loc: SourceLoc = UNKNOWN_LOC,
) -> Graph:
    """An empty body graph with inputs ``x_t, h_1..h_k``, sharing ``outer``'s value names.

    ``names`` (default ``x_t, h1, h2...``) are the bases of the input names;
    ``locs`` their source locations. Fill in nodes with ``builder.emit`` and set
    ``body.outputs`` to the new carries, then the emits.
    """
    body = Graph(name, loc=loc, _used=outer._used, _next=outer._next)
    bases = list(names) or ["x_t"] + [f"h{i + 1}" for i in range(len(carry_types))]
    assert len(bases) == 1 + len(carry_types), "one name for x_t and one per carry"
    for i, (base, t) in enumerate(zip(bases, [x_type, *carry_types], strict=True)):
        v = Value(outer.fresh_name(base), t, "input", loc=locs[i] if i < len(locs) else UNKNOWN_LOC)
        body.inputs.append(v)
    return body


def normalize_axis(axis: int, rank: int) -> int | None:
    """``axis`` in ``0..rank-1`` (negative counts from the end), or None if xs has no such axis."""
    if isinstance(axis, bool) or not isinstance(axis, int) or not -rank <= axis < rank:
        return None
    return axis % rank


def emit_scan(
    graph: Graph,
    xs: Value,
    inits: Sequence[Value],
    body: Graph,
    axis: int,
    reverse: bool = False,
    loc: SourceLoc = UNKNOWN_LOC,
    names: Sequence[str] | None = None,
) -> list[Value]:
    """Add ``scan(xs, *inits)`` owning ``body`` to ``graph``; returns ``[ys_1..ys_m, last_1..last_k]``.

    ``axis`` may be negative (it is stored normalised). A body that does not fit
    (input types, a carry changing type, an emit that cannot be stacked) is a
    DlirError located at ``loc``.
    """
    try:
        ax = normalize_axis(axis, xs.type.rank)
        if ax is None:
            rank = xs.type.rank
            hint = f"xs has axes 0..{rank - 1}" if rank else "xs is a scalar: there is nothing to iterate over"
            raise TypeError_(f"scan along axis {axis}, but xs: {xs.type} has no axis {axis}", hint=hint)
        opdef = get_op("scan")
        attrs = check_attrs(opdef, {"axis": ax, "reverse": reverse, "n_carry": len(inits)})
        out_types = scan_types([xs.type] + [v.type for v in inits], attrs, body)
        _adopt(graph, body)
    except DlirError as e:
        raise e.with_loc(loc) from None
    if names is not None and len(names) != len(out_types):
        names = None
    node = graph.add_node("scan", [xs, *inits], attrs, out_types, loc, list(names) if names else None)
    node.body = body
    return node.outputs


def _adopt(graph: Graph, body: Graph) -> None:
    """Make ``body`` (and its nested bodies) share ``graph``'s name set; names must not clash."""
    if body._used is graph._used:
        return
    clash = sorted(body._used & graph._used)
    if clash:
        names = ", ".join("%" + n for n in clash[:5])
        raise TypeError_(
            f"scan: body value name(s) {names} are also used in the outer graph",
            hint="build the body with dlir.ir.scan.scan_body(outer, ...), which shares the outer names",
        )
    graph._used |= body._used
    _share(body, graph._used, graph._next)


def _share(g: Graph, used: set[str], hints: dict[str, int]) -> None:
    g._used = used
    g._next = hints
    for n in g.nodes:
        if n.body is not None:
            _share(n.body, used, hints)
