"""A dlir graph written back as readable ``.dlir`` source: one statement per node.

Params are declared with ``param NAME: TYPE = zeros`` (buffers for integer tensors);
their values travel beside the source as safetensors, loaded with ``--params``.
Every op is written as a call with keyword attributes, so the frontend rebuilds the
same node; attributes the op's defaults give anyway are left out:
``t = conv2d(x, w, b, stride=[2, 2], padding=[1, 1, 1, 1])``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from dlir.errors import DlirError
from dlir.importer.onnx_import import RESERVED
from dlir.ir.graph import Graph, Node, Value
from dlir.ir.names import unique_name
from dlir.ir.types import Dim, DType, TensorType
from dlir.ops.registry import REQUIRED, OpDef, check_attrs, get_op


class _Names:
    """Legal, unique dlir identifiers for graph values."""

    def __init__(self, taken: set[str]) -> None:
        self.used = set(taken) | RESERVED
        self.of: dict[int, str] = {}

    def __call__(self, v: Value) -> str:
        if id(v) not in self.of:
            s = re.sub(r"[^A-Za-z0-9_]", "_", v.name) or "t"
            if not re.match(r"[A-Za-z_]", s):
                s = "v" + s
            self.of[id(v)] = self.fresh(s)
        return self.of[id(v)]

    def fresh(self, base: str) -> str:
        """``base``, or ``base_1``, ``base_2``, … : a name nothing else uses."""
        return unique_name(base, self.used, sep="_")


def fmt_type(t: TensorType) -> str:
    return f"{t.dtype}[{', '.join(fmt_dim(d) for d in t.shape)}]"


def fmt_dim(d: Dim) -> str:
    if d.unknown:
        return "?"
    return str(d.value) if d.is_static else str(d).replace(" ", "")


def fmt_attr(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, DType):
        return str(v)
    if isinstance(v, Dim):
        return fmt_dim(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isinf(v):
            # the language has no infinity literal, but reads a float beyond the range as one (as
            # Python and C's strtod do): the -inf of an attention mask round-trips exactly
            return "1e999" if v > 0 else "-1e999"
        if math.isnan(v):
            raise DlirError(f"cannot write the number {v} in .dlir source")
        r = repr(v)
        return r if any(c in r for c in ".en") else r + ".0"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt_attr(x) for x in v) + "]"
    raise DlirError(f"cannot write the attribute value {v!r} in .dlir source")


def _statements(graph: Graph, names: _Names, lines: list[str], ind: str) -> None:
    """One line per node; a scan node becomes a ``scan ... { ... }`` block."""
    for n in graph.nodes:
        lhs = ", ".join(names(v) for v in n.outputs)
        if n.body is not None:
            _scan_block(n, lhs, names, lines, ind)
            continue
        opdef = get_op(n.op)
        args = [names(v) for v in n.inputs]
        if opdef.variadic and len(opdef.inputs) == 1:
            args = ["[" + ", ".join(args) + "]"]
        args += [f"{k}={fmt_attr(v)}" for k, v in _written_attrs(n).items()]
        lines.append(f"{ind}{lhs} = {n.op}({', '.join(args)})")


def _written_attrs(n: Node) -> dict[str, Any]:
    """The attributes of ``n`` to write: those that differ from the op's defaults.

    An attribute is left out only when the node built without it (defaults, then the
    op's ``canonical`` hook over the input types, as the frontend builds it) has the
    very same attributes: so ``conv2d``'s ``padding=[0, 0, 0, 0]`` and ``layout="NCHW"``
    go, but a pool's ``stride`` stays unless it equals the kernel the hook fills in.
    """
    opdef = get_op(n.op)
    kept = {a.name: n.attrs[a.name] for a in opdef.attrs if n.attrs.get(a.name) is not None}
    for a in opdef.attrs:
        if a.name in kept and a.default is not REQUIRED:
            trial = {k: v for k, v in kept.items() if k != a.name}
            if _rebuilt(opdef, n, trial) == n.attrs:
                kept = trial
    return kept


def _rebuilt(opdef: OpDef, n: Node, attrs: dict[str, Any]) -> dict[str, Any] | None:
    """The attributes a node of ``n``'s op and inputs gets from ``attrs`` (None if they are refused)."""
    try:
        full = check_attrs(opdef, attrs)
        if opdef.canonical is not None:
            full = opdef.canonical([v.type for v in n.inputs], full)
    except DlirError:
        return None
    return full


def _scan_block(n: Any, lhs: str, names: _Names, lines: list[str], ind: str) -> None:
    body = n.body
    assert body is not None
    k = n.attrs["n_carry"]
    x_t, carries = body.inputs[0], body.inputs[1:]
    inits = ", ".join(f"{names(h)} = {names(v)}" for h, v in zip(carries, n.inputs[1:], strict=True))
    rev = "reverse " if n.attrs["reverse"] else ""
    lines.append(
        f"{ind}{lhs} = scan {rev}{names(x_t)} in {names(n.inputs[0])} along {n.attrs['axis']} carry {inits} {{"
    )
    _statements(body, names, lines, ind + "    ")
    outs = [v for _, v in body.outputs]
    # An emit reads a name's value where it stands, so the emits come before the carries
    # are rebound. The rebinding is a parallel assignment: a new carry that is another
    # carry's old value is read into a fresh name first (``h, c = c, h`` would else lose one).
    for e in outs[k:]:
        lines.append(f"{ind}    emit {names(e)}")
    updates = [(h, new) for h, new in zip(carries, outs[:k], strict=True) if new is not h]
    rebound = {id(h) for h, _ in updates}
    saved: dict[int, str] = {}
    for _, new in updates:
        if id(new) in rebound and id(new) not in saved:
            saved[id(new)] = names.fresh(names(new) + "_old")
            lines.append(f"{ind}    {saved[id(new)]} = {names(new)}")
    for h, new in updates:
        lines.append(f"{ind}    {names(h)} = {saved.get(id(new), names(new))}")
    lines.append(f"{ind}}}")


def _names_in(graph: Graph) -> set[str]:
    out: set[str] = set()
    for v in graph.inputs:
        for d in v.type.shape:
            out |= d.symbols
    return out


def graph_source(graph: Graph, header: str = "") -> str:
    """``graph`` as a .dlir model definition that ``dlirc check`` accepts."""
    return source_and_param_names(graph, header)[0]


def source_and_param_names(graph: Graph, header: str = "") -> tuple[str, dict[str, str]]:
    """The source and, for each param, the name it is declared with there (weights are saved by it)."""
    names = _Names(_names_in(graph))
    lines = [f"# {line}".rstrip() for line in header.splitlines()] if header else []
    ins = ", ".join(f"{names(v)}: {fmt_type(v.type)}" for v in graph.inputs)
    outs = ", ".join(f"{re.sub(r'[^A-Za-z0-9_]', '_', n)}: {fmt_type(v.type)}" for n, v in graph.outputs)
    lines.append(f"model {graph.name}({ins}) -> ({outs}) {{")
    for p in graph.params:
        kw = "buffer" if p.kind == "buffer" else "param"
        lines.append(f"    {kw} {names(p)}: {fmt_type(p.type)} = zeros")
    _statements(graph, names, lines, "    ")
    rets = [names(v) for _, v in graph.outputs]
    lines.append(f"    return {rets[0]}" if len(rets) == 1 else f"    return ({', '.join(rets)})")
    lines.append("}")
    return "\n".join(lines) + "\n", {p.name: names(p) for p in graph.params}


def unified_note(unified: dict[str, list[str]]) -> str:
    """A header saying which ONNX input dims the importer made one symbol (they must be equal at run time)."""
    return "\n".join(
        f"{sym} stands for the ONNX input dims {', '.join(dims)} (unified at import: they must be equal)"
        for sym, dims in unified.items()
    )


__all__ = ["graph_source", "source_and_param_names", "fmt_type", "unified_note"]
