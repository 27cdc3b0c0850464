"""The IR text form: a stable, readable printing of graphs that the IR-text parser reads back.

One model prints as::

    model MLP(%x: f32[B, 784]) -> (out: f32[B, 10]) loc("samples/mlp.dlir":3:7) {
      input %x                                                  loc("samples/mlp.dlir":3:11)
      param %fc1.w: f32[784, 256] = glorot_uniform()            loc("samples/mlp.dlir":5:5)
      buffer %bn.mean: f32[10] = constant(value=0.5)
      %t: f32[B, 256] = matmul(%x, %fc1.w)                      loc("samples/mlp.dlir":12:9)
      %a: f32[B, 2], %b: f32[B, 3] = split(%t) {sizes=[2, 3], axis=1}
      return out=%t
    }

Rules that keep ``print -> parse -> print`` byte-identical:

- every value is printed with its type (``TensorType.__str__``); values are
  ``%name`` (a name that is not ``[A-Za-z0-9_][A-Za-z0-9_.]*`` is quoted: ``%"a b"``);
- attributes are printed in the op's declared order, every one of them
  (defaults included); ints as ints, floats always with a ``.``/``e`` or as
  ``inf``/``-inf``/``nan``, strings JSON-escaped, bools ``true``/``false``,
  None as ``none``, dtypes by name, symbolic dims as ``B*T + 2``;
- locations are ``loc("FILE":LINE:COL)`` with the file JSON-escaped, omitted when unknown;
  a graph's follows its header, an input's is on an ``input %x loc(...)`` line;
- a node that owns a body graph (``scan``) is followed by ``body NAME(...) -> (...) { ... }``.

The printer never fails: a value it cannot spell (a bug elsewhere) prints as
``<repr>``, which the parser rejects, so the verifier can still show broken IR.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from dlir.errors import UNKNOWN_LOC, DlirError, SourceLoc
from dlir.ir.graph import Graph, Init, Node, Value
from dlir.ir.types import Dim, DType
from dlir.ops.registry import get_op

INDENT = "  "
# Locations start at this column when the statement is shorter, so they line up.
LOC_COLUMN = 60

VALUE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.]*\Z")
BARE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")


# -- atoms ---------------------------------------------------------------------------


def fmt_str(s: str) -> str:
    """A JSON string literal (deterministic escaping; non-ASCII kept readable)."""
    return json.dumps(s, ensure_ascii=False)


def fmt_name(name: str) -> str:
    """A model, output or init-argument name: bare when it is an identifier, else quoted."""
    return name if isinstance(name, str) and BARE_NAME.match(name) else fmt_str(str(name))


def fmt_value(v: Value) -> str:
    """``%name`` of a value (quoted when the name has odd characters)."""
    name = v.name
    return "%" + (name if isinstance(name, str) and VALUE_NAME.match(name) else fmt_str(str(name)))


def fmt_float(x: float) -> str:
    """Round-trip repr of a float that never reads as an int."""
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    r = repr(x)
    return r if ("." in r or "e" in r) else r + ".0"


def fmt_loc(loc: SourceLoc) -> str:
    return f"loc({fmt_str(loc.file)}:{loc.line}:{loc.col})"


def fmt_attr_value(v: Any) -> str:
    """An attribute value of any kind the registry knows (see ``ATTR_KINDS``)."""
    if v is None:
        return "none"
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return fmt_float(float(v))
    if isinstance(v, str):
        return fmt_str(v)
    if isinstance(v, DType):
        return v.value
    if isinstance(v, Dim):
        return str(v)
    if isinstance(v, np.ndarray):
        return fmt_attr_value(v.tolist())
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt_attr_value(x) for x in v) + "]"
    return f"<{v!r}>"


def fmt_init(init: Init) -> str:
    args = ", ".join(f"{fmt_name(k)}={fmt_attr_value(v)}" for k, v in init.args)
    return f"{fmt_name(init.kind)}({args})"


def ordered_attrs(op: str, attrs: dict[str, Any]) -> list[tuple[str, Any]]:
    """Attributes in the op's declared order, then any others (only in broken IR) as given."""
    try:
        declared = [a.name for a in get_op(op).attrs]
    except DlirError:
        declared = []
    first = [(k, attrs[k]) for k in declared if k in attrs]
    rest = [(k, v) for k, v in attrs.items() if k not in declared]
    return first + rest


def fmt_node(node: Node) -> str:
    """One node without indentation or location: ``%a: T = op(%x) {k=v}``."""
    outs = ", ".join(f"{fmt_value(v)}: {v.type}" for v in node.outputs)
    ins = ", ".join(fmt_value(v) for v in node.inputs)
    text = f"{outs} = {node.op}({ins})" if node.outputs else f"{node.op}({ins})"
    attrs = ordered_attrs(node.op, node.attrs)
    if attrs:
        text += " {" + ", ".join(f"{fmt_name(k)}={fmt_attr_value(v)}" for k, v in attrs) + "}"
    return text


def with_loc(text: str, loc: SourceLoc) -> str:
    if loc is None or loc == UNKNOWN_LOC:
        return text
    pad = max(LOC_COLUMN - len(text), 2)
    return text + " " * pad + fmt_loc(loc)


# -- graphs --------------------------------------------------------------------------


class GraphPrinter:
    """Prints graphs to lines and remembers the line of every node and value (for the verifier)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        # id(Graph: its header, Node, param Value, or graph.outputs: its return) -> index into ``lines``
        self.line_of: dict[int, int] = {}

    def graph(self, g: Graph, keyword: str = "model", depth: int = 0) -> None:
        pad = INDENT * depth
        ins = ", ".join(f"{fmt_value(v)}: {v.type}" for v in g.inputs)
        outs = ", ".join(f"{fmt_name(n)}: {v.type}" for n, v in g.outputs)
        header = f"{keyword} {fmt_name(g.name)}({ins}) -> ({outs})"
        if g.loc != UNKNOWN_LOC:
            header += " " + fmt_loc(g.loc)
        self.line_of[id(g)] = len(self.lines)
        self.lines.append(pad + header + " {")
        inner = pad + INDENT
        # Input locations get a line each, so the header stays short and locs line up.
        for v in g.inputs:
            if v.loc != UNKNOWN_LOC:
                self.lines.append(with_loc(f"{inner}input {fmt_value(v)}", v.loc))
        for p in g.params:
            self.line_of[id(p)] = len(self.lines)
            self.lines.append(with_loc(inner + _fmt_param(p), p.loc))
        for node in g.nodes:
            self.line_of[id(node)] = len(self.lines)
            self.lines.append(with_loc(inner + fmt_node(node), node.loc))
            if node.body is not None:
                self.graph(node.body, "body", depth + 1)
        self.line_of[id(g.outputs)] = len(self.lines)
        rets = ", ".join(f"{fmt_name(n)}={fmt_value(v)}" for n, v in g.outputs)
        self.lines.append(inner + ("return " + rets if rets else "return"))
        self.lines.append(pad + "}")


def _fmt_param(p: Value) -> str:
    kind = "buffer" if p.kind == "buffer" else "param"
    text = f"{kind} {fmt_value(p)}: {p.type}"
    if p.init is not None:
        text += " = " + fmt_init(p.init)
    return text


def print_graph(graph: Graph) -> str:
    """The text form of one graph (ends with a newline)."""
    pr = GraphPrinter()
    pr.graph(graph)
    return "\n".join(pr.lines) + "\n"


def print_program(graphs: Sequence[Graph]) -> str:
    """Several graphs, separated by one blank line."""
    return "\n".join(print_graph(g) for g in graphs)


__all__ = ["print_graph", "print_program", "GraphPrinter", "fmt_attr_value", "fmt_node", "fmt_float"]
