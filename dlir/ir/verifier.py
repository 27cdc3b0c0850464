"""The IR verifier: every invariant a Graph must keep between passes.

:func:`verify` raises :class:`VerifyError` naming the first broken invariant and
showing the printed IR around it, the faulty line marked ``>>``. It checks:

- SSA: every value is defined once (as an input, a param or one node's result),
  belongs to this graph, and is used only after its definition; value names are
  unique and registered with the graph (so ``Graph.fresh_name`` cannot reuse them);
- every op is registered and is not a frontend-only op (``OpDef.expand``);
- attributes are exactly their normalised form (``check_attrs``), symbols in them
  are bound by the graph's inputs;
- the input count fits the op (variadic ops take any number of their last input);
- result types are what the op's shape rule gives for the input types;
- params and buffers have static shapes and a known init;
- outputs refer to defined values and their names are unique.

A node's body graph (``scan``) is verified the same way; it may use the values
of the graphs around it defined before the node, and its value names are unique
across the nest. An op with a body shape rule (``OpDef.extra["infer_body"]``,
scan's) checks the body's input types against the node's inputs, that carries
keep their type, and derives the result types from the emits.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

from dlir.errors import UNKNOWN_LOC, DlirError, SourceLoc, VerifyError
from dlir.ir.graph import INIT_KINDS, Graph, Node, Value
from dlir.ir.infer import attrs_key, infer_types
from dlir.ir.printer import GraphPrinter
from dlir.ir.types import Dim, TensorType
from dlir.ops.registry import OpDef, check_attrs, get_op

CONTEXT_LINES = 3

# Node signatures (op, its rules, input types, attributes) that passed every check that
# depends on them alone, with their result types. Verification runs after each pass that
# changes a graph, and models repeat the same signatures (1 000 identical layers), so a
# known signature skips the attribute and shape-rule checks; the checks that depend on
# the graph (SSA, names, symbols, result types) still run for every node.
_PASSED: dict[Hashable, tuple[OpDef, tuple[TensorType, ...]]] = {}
MAX_PASSED = 4096


class _Fault(Exception):
    """One broken invariant, at an IR object (a Node, a Value, or a graph's outputs list)."""

    def __init__(self, message: str, at: object, loc: SourceLoc = UNKNOWN_LOC, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.at, self.loc, self.hint = message, at, loc, hint


def verify(graph: Graph) -> None:
    """Raise VerifyError if ``graph`` breaks an IR invariant; return None if it holds them all."""
    try:
        _Checker(graph).run()
    except _Fault as f:
        excerpt = ir_excerpt(graph, f.at)
        raise VerifyError(
            f"invalid IR in graph {graph.name}: {f.message}\n{excerpt}", f.loc if f.loc != UNKNOWN_LOC else None, f.hint
        ) from None


def ir_excerpt(graph: Graph, at: object, context: int = CONTEXT_LINES) -> str:
    """A few printed lines of ``graph`` around the line of ``at``, that line marked ``>>``."""
    pr = GraphPrinter()
    pr.graph(graph)
    idx = pr.line_of.get(id(at), 0)
    lo, hi = max(0, idx - context), min(len(pr.lines), idx + context + 1)
    width = len(str(hi))
    out = []
    for i in range(lo, hi):
        mark = ">>" if i == idx else "  "
        out.append(f"  {mark} {i + 1:>{width}} | {pr.lines[i]}")
    return "\n".join(out)


class _Checker:
    def __init__(self, graph: Graph, outer: _Checker | None = None) -> None:
        self.g = graph
        self.outer = outer
        self.defined: set[Value] = set()  # values defined so far in this graph
        self.names: dict[str, Value] = {}
        self.later: set[Value] = {v for v in graph.all_values() if isinstance(v, Value)}  # hashed by identity
        self.symbols: set[str] = set(graph.symbol_sources()) | (outer.symbols if outer else set())

    # -- scope -----------------------------------------------------------------------
    def visible(self, v: Value) -> bool:
        return v in self.defined or (self.outer is not None and self.outer.visible(v))

    def defined_later(self, v: Value) -> bool:
        return v in self.later or (self.outer is not None and self.outer.defined_later(v))

    def name_taken(self, name: str) -> bool:
        return name in self.names or (self.outer is not None and self.outer.name_taken(name))

    def define(self, v: Value, at: object, kind: tuple[str, ...], producer: Node | None) -> None:
        if not isinstance(v, Value):
            raise _Fault(f"{v!r} is not a Value", at)
        if v in self.defined:
            raise _Fault(f"%{v.name} is defined twice", at, v.loc, "each value has exactly one definition (SSA)")
        if self.name_taken(v.name):
            raise _Fault(f"the name %{v.name} is used by two values", at, v.loc, "value names are unique in a graph")
        if v.kind not in kind:
            raise _Fault(f"%{v.name} has kind '{v.kind}' where {' or '.join(kind)} is expected", at, v.loc)
        if v.producer is not producer:
            what = "no producer" if v.producer is None else f"producer {v.producer.op}"
            raise _Fault(f"%{v.name} has {what}, but is defined here", at, v.loc)
        if v.name not in self.g._used:
            raise _Fault(
                f"the name %{v.name} is not registered with the graph",
                at,
                v.loc,
                "create values with Graph.add_*/fresh_name or register them with claim_name",
            )
        self.defined.add(v)
        self.names[v.name] = v

    def use(self, v: Value, at: object, what: str, loc: SourceLoc) -> None:
        if not isinstance(v, Value):
            raise _Fault(f"{what} is {v!r}, not a Value", at, loc)
        if self.visible(v):
            return
        if self.defined_later(v):
            hint = "nodes are kept in topological order; a body reads only values defined before its node"
            raise _Fault(f"{what} %{v.name} is used before its definition", at, loc, hint)
        hint = "it may belong to another graph or to a removed node"
        raise _Fault(f"{what} %{v.name} is not defined in this graph", at, loc, hint)

    # -- checks ----------------------------------------------------------------------
    def run(self) -> None:
        for v in self.g.inputs:
            self.define(v, self.g, ("input",), None)
        for p in self.g.params:
            self.define(p, p, ("param", "buffer"), None)
            self.check_param(p)
        for node in self.g.nodes:
            self.check_node(node)
        self.check_outputs()

    def check_param(self, p: Value) -> None:
        if not p.type.is_static:
            hint = "param shapes are known at compile time"
            raise _Fault(f"param %{p.name} has a non-static shape {p.type}", p, p.loc, hint)
        if p.init is None:
            raise _Fault(f"param %{p.name} has no init", p, p.loc)
        if p.init.kind not in INIT_KINDS:
            hint = "known: " + ", ".join(INIT_KINDS)
            raise _Fault(f"param %{p.name} has an unknown init '{p.init.kind}'", p, p.loc, hint)
        for k, _ in p.init.args:
            if k not in INIT_KINDS[p.init.kind]:
                raise _Fault(f"param %{p.name}: init {p.init.kind} has no argument '{k}'", p, p.loc)

    def check_node(self, node: Node) -> None:
        if not isinstance(node, Node):
            raise _Fault(f"{node!r} is not a Node", self.g.outputs)
        for i, v in enumerate(node.inputs):
            if not (isinstance(v, Value) and self.visible(v)):  # only a fault needs the message
                self.use(v, node, f"input {i} of {node.op}", node.loc)
        opdef = self.opdef(node)
        key = _signature(node, opdef)
        known = _PASSED.get(key) if key is not None else None
        if known is not None and known[0] is opdef:  # the same OpDef: a re-registered op is checked afresh
            self.check_symbols(node)
            self.check_results(node, known[1])
        else:
            self.check_attrs(node, opdef)
            if node.body is not None:
                self.check_body(node)
            want = self.check_types(node, opdef)
            if key is not None:
                if len(_PASSED) >= MAX_PASSED:
                    _PASSED.clear()
                _PASSED[key] = (opdef, tuple(want))
        for v in node.outputs:
            self.define(v, node, ("node",), node)

    def check_body(self, node: Node) -> None:
        """The body graph on its own; it sees the values defined before ``node`` (closure)."""
        inner = _Checker(node.body, self)  # type: ignore[arg-type]
        try:
            inner.run()
        except _Fault as f:
            # The excerpt prints the whole graph, body included, so f.at still has a line.
            raise _Fault(f"in the body of {node.op}: {f.message}", f.at, f.loc, f.hint) from None
        # Names stay unique across the nest: a later value may not reuse a body value's name.
        self.names.update(inner.names)

    def opdef(self, node: Node) -> OpDef:
        try:
            opdef = get_op(node.op)
        except DlirError as e:
            raise _Fault(e.message, node, node.loc, e.hint) from None
        if opdef.expand is not None:
            raise _Fault(
                f"'{node.op}' is a frontend-only op; the builder expands it",
                node,
                node.loc,
                "build nodes with dlir.ir.builder.emit",
            )
        return opdef

    def check_attrs(self, node: Node, opdef: OpDef) -> None:
        try:
            full = check_attrs(opdef, node.attrs)
        except DlirError as e:
            raise _Fault(f"bad attributes: {e.message}", node, node.loc, e.hint) from None
        for name, want in full.items():
            if name not in node.attrs or not same_attr(node.attrs[name], want):
                got = node.attrs.get(name, "<missing>")
                msg = f"{node.op}: attribute {name}={got!r} is not in normal form (expected {want!r})"
                raise _Fault(msg, node, node.loc, "pass attributes through check_attrs (builder.emit does)")
        self.check_canonical(node, opdef, full)
        self.check_symbols(node)

    def check_symbols(self, node: Node) -> None:
        unbound = sorted(_attr_symbols(node.attrs.values()) - self.symbols)
        if unbound:
            raise _Fault(
                f"{node.op}: attributes use symbol(s) {', '.join(unbound)} that no graph input binds",
                node,
                node.loc,
                "a symbol is bound by a bare dim of an input type",
            )

    def check_canonical(self, node: Node, opdef: OpDef, full: dict[str, Any]) -> None:
        if opdef.canonical is None:
            return
        try:
            canon = opdef.canonical([v.type for v in node.inputs], full)
        except DlirError as e:
            raise _Fault(f"{node.op} rejects its inputs: {e.message}", node, node.loc, e.hint) from None
        for name, want in canon.items():
            if not same_attr(full.get(name), want):
                got = full.get(name)
                msg = f"{node.op}: attribute {name}={got!r} is not canonical for these inputs (expected {want!r})"
                raise _Fault(msg, node, node.loc, "dlir.ir.builder.emit fixes type-dependent defaults")

    def check_types(self, node: Node, opdef: OpDef) -> list[TensorType]:
        """The op's result types for the node's inputs, checked against the node's results."""
        if not opdef.accepts(len(node.inputs)):
            raise _Fault(f"{opdef.arity_text()}, got {len(node.inputs)}", node, node.loc)
        infer_body = opdef.extra.get("infer_body")
        if infer_body is not None and node.body is None:
            raise _Fault(f"{node.op} has no body graph", node, node.loc, "build it with dlir.ir.scan.emit_scan")
        want: list[TensorType]
        try:
            if infer_body is not None:
                # The types of body inputs, carries and emits decide the results (scan).
                want = infer_body([v.type for v in node.inputs], node.attrs, node.body)
            else:
                want = infer_types(opdef, [v.type for v in node.inputs], node.attrs)
        except DlirError as e:
            raise _Fault(f"{node.op} rejects its inputs: {e.message}", node, node.loc, e.hint) from None
        self.check_results(node, want)
        return want

    def check_results(self, node: Node, want: Sequence[TensorType]) -> None:
        if len(want) != len(node.outputs):
            raise _Fault(f"{node.op} gives {len(want)} result(s), but the node has {len(node.outputs)}", node, node.loc)
        for v, t in zip(node.outputs, want, strict=True):
            if v.type != t:
                raise _Fault(
                    f"%{v.name} has type {v.type}, but {node.op} gives {t} for its inputs",
                    node,
                    node.loc,
                    "a pass changed a node without re-inferring its result type",
                )

    def check_outputs(self) -> None:
        at = self.g.outputs
        seen: set[str] = set()
        for name, v in self.g.outputs:
            if not isinstance(name, str) or not name:
                raise _Fault(f"output name {name!r} is not a non-empty string", at)
            if name in seen:
                raise _Fault(f"two outputs are named '{name}'", at, hint="output names are unique")
            seen.add(name)
            self.use(v, at, f"output '{name}'", UNKNOWN_LOC)


def _signature(node: Node, opdef: OpDef) -> Hashable | None:
    """The key of ``node`` in _PASSED; None for a node with a body or an unhashable part."""
    if node.body is not None:
        return None
    akey = attrs_key(node.attrs)
    if akey is None:
        return None
    types = tuple(v.type for v in node.inputs)
    if not all(type(t) is TensorType and type(t.shape) is tuple for t in types):
        return None  # a malformed type; the full checks report it
    return (node.op, opdef.infer, opdef.canonical, types, akey)


def same_attr(a: Any, b: Any) -> bool:
    """Equality that also tells int from float from bool and treats nan as equal to nan."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_attr(x, y) for x, y in zip(a, b, strict=True))
    try:
        return bool(a == b)
    except ValueError:  # numpy arrays compare elementwise
        return False


def _attr_symbols(values: Iterable[Any]) -> set[str]:
    out: set[str] = set()
    for v in values:
        if isinstance(v, Dim):
            out |= v.symbols
        elif isinstance(v, (list, tuple)):
            out |= _attr_symbols(v)
    return out


__all__ = ["verify", "ir_excerpt", "same_attr"]
