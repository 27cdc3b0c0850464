"""Building nodes through the op registry: attribute checks, expansion, type inference."""

from __future__ import annotations

from typing import Any

from dlir.errors import UNKNOWN_LOC, DlirError, SourceLoc, TypeError_
from dlir.ir.graph import Graph, Value
from dlir.ir.infer import infer_types
from dlir.ops.registry import check_attrs, get_op


def emit(
    graph: Graph,
    op: str,
    inputs: list[Value],
    attrs: dict[str, Any] | None = None,
    loc: SourceLoc = UNKNOWN_LOC,
    names: list[str] | None = None,
) -> list[Value]:
    """Add ``op(inputs) {attrs}`` to ``graph`` and return its results.

    Every user-facing problem (unknown op or attribute, bad types) is raised as a
    DlirError located at ``loc``.
    """
    try:
        opdef = get_op(op)
        full = check_attrs(opdef, attrs or {})
        if opdef.expand is not None:
            rewrite = opdef.expand(full)
            if rewrite is None:
                return list(inputs)
            return emit(graph, rewrite[0], inputs, rewrite[1], loc, names)
        if not opdef.accepts(len(inputs)):
            raise TypeError_(f"{opdef.arity_text()}, got {len(inputs)}")
        if opdef.canonical is not None:
            full = opdef.canonical([v.type for v in inputs], full)
        out_types = infer_types(opdef, [v.type for v in inputs], full)
    except DlirError as e:
        raise e.with_loc(loc) from None
    if names is not None and len(names) != len(out_types):
        names = None
    node = graph.add_node(op, inputs, full, out_types, loc, names)
    return node.outputs


def emit1(
    graph: Graph,
    op: str,
    inputs: list[Value],
    attrs: dict[str, Any] | None = None,
    loc: SourceLoc = UNKNOWN_LOC,
    name: str | None = None,
) -> Value:
    """:func:`emit` for single-result ops."""
    outs = emit(graph, op, inputs, attrs, loc, [name] if name else None)
    assert len(outs) == 1, op
    return outs[0]


# scan owns a body graph, so it has its own builder; importable from here too.
from dlir.ir.scan import emit_scan, scan_body  # noqa: E402

__all__ = ["emit", "emit1", "emit_scan", "scan_body"]
