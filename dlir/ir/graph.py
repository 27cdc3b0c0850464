"""Graph, Node and Value: the SSA computation graph every part of dlir shares.

A :class:`Graph` is one model after the frontend has inlined its layers: typed
inputs, params (and buffers) with their init, nodes in topological order, and
named outputs. Values are identified by object; their names are for printing and
for the generated code, and are unique within a graph.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dlir.errors import UNKNOWN_LOC, SourceLoc
from dlir.ir.types import Dim, DType, TensorType

AttrValue = Any  # int | float | str | bool | DType | Dim | list[...] of those


@dataclass(frozen=True)
class Init:
    """How a param or buffer is initialised: ``glorot_uniform``, ``normal(std=0.02)``..."""

    kind: str
    args: tuple[tuple[str, float], ...] = ()

    def arg(self, name: str, default: float) -> float:
        return dict(self.args).get(name, default)

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={_fmt_number(v)}" for k, v in self.args)
        return f"{self.kind}({inner})"


# The init kinds a param or buffer may have, with the arguments each takes.
INIT_KINDS = {
    "zeros": (),
    "ones": (),
    "constant": ("value",),
    "normal": ("std", "mean"),
    "uniform": ("lo", "hi"),
    "glorot_uniform": (),
    "glorot_normal": (),
    "he_uniform": (),
    "he_normal": (),
}


@dataclass(eq=False)
class Value:
    """An SSA value: a graph input, a param/buffer, or a node result."""

    name: str
    type: TensorType
    kind: str = "node"  # "input" | "param" | "buffer" | "node"
    producer: Node | None = None
    init: Init | None = None  # params and buffers only
    loc: SourceLoc = UNKNOWN_LOC

    def __repr__(self) -> str:
        return f"%{self.name}: {self.type}"


@dataclass(eq=False)
class Node:
    """One op application: ``outputs = op(inputs) {attrs}``."""

    op: str
    inputs: list[Value]
    attrs: dict[str, AttrValue]
    outputs: list[Value]
    loc: SourceLoc = UNKNOWN_LOC
    body: Graph | None = None  # reserved for `scan`

    def __repr__(self) -> str:
        outs = ", ".join(f"%{v.name}" for v in self.outputs)
        ins = ", ".join(f"%{v.name}" for v in self.inputs)
        return f"{outs} = {self.op}({ins}) {self.attrs}"


_NAME_OK = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*$")


@dataclass(eq=False)
class Graph:
    """A model: inputs, params, nodes in topological order, named outputs."""

    name: str
    inputs: list[Value] = field(default_factory=list)
    params: list[Value] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    outputs: list[tuple[str, Value]] = field(default_factory=list)
    loc: SourceLoc = UNKNOWN_LOC
    _used: set[str] = field(default_factory=set, repr=False)
    # Where fresh_name's search for "base.N" starts next (only a hint: _used decides).
    _next: dict[str, int] = field(default_factory=dict, repr=False)

    # -- naming ---------------------------------------------------------------
    def fresh_name(self, base: str) -> str:
        """A name not used yet in this graph, derived from ``base``."""
        base = base if base and _NAME_OK.match(base) else "t"
        if base not in self._used:
            self._used.add(base)
            return base
        i = self._next.get(base, 1)  # without it, n values named "t" cost n**2 probes
        while f"{base}.{i}" in self._used:
            i += 1
        self._next[base] = i + 1
        name = f"{base}.{i}"
        self._used.add(name)
        return name

    def rename(self, value: Value, base: str) -> None:
        """Give a node result a new unique name derived from ``base``."""
        self.release_name(value.name)
        value.name = self.fresh_name(base)

    def release_name(self, name: str) -> None:
        """Free ``name`` for reuse by :meth:`fresh_name`."""
        self._used.discard(name)
        stem, _, n = name.rpartition(".")
        if stem and n.isdigit() and int(n) < self._next.get(stem, 1):
            self._next[stem] = int(n)

    def claim_name(self, name: str) -> None:
        """Reserve an exact name (inputs, params); the caller checks for clashes."""
        assert name not in self._used, f"name {name} used twice"
        self._used.add(name)

    # -- building -------------------------------------------------------------
    def add_input(self, name: str, type_: TensorType, loc: SourceLoc = UNKNOWN_LOC) -> Value:
        self.claim_name(name)
        v = Value(name, type_, "input", loc=loc)
        self.inputs.append(v)
        return v

    def add_param(
        self, name: str, type_: TensorType, init: Init, buffer: bool = False, loc: SourceLoc = UNKNOWN_LOC
    ) -> Value:
        self.claim_name(name)
        v = Value(name, type_, "buffer" if buffer else "param", init=init, loc=loc)
        self.params.append(v)
        return v

    def add_node(
        self,
        op: str,
        inputs: list[Value],
        attrs: dict[str, AttrValue],
        out_types: list[TensorType],
        loc: SourceLoc = UNKNOWN_LOC,
        names: list[str] | None = None,
    ) -> Node:
        names = names or ["t"] * len(out_types)
        outs = [Value(self.fresh_name(n), t, "node", loc=loc) for n, t in zip(names, out_types, strict=True)]
        node = Node(op, list(inputs), dict(attrs), outs, loc)
        for v in outs:
            v.producer = node
        self.nodes.append(node)
        return node

    # -- queries --------------------------------------------------------------
    def param(self, name: str) -> Value:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def trainable(self) -> list[Value]:
        return [p for p in self.params if p.kind == "param"]

    def all_values(self) -> Iterator[Value]:
        yield from self.inputs
        yield from self.params
        for n in self.nodes:
            yield from n.outputs

    def symbol_sources(self) -> dict[str, tuple[Value, int]]:
        """For each symbol that is bare in an input's type, the first (input, axis) binding it."""
        out: dict[str, tuple[Value, int]] = {}
        for v in self.inputs:
            for axis, d in enumerate(v.type.shape):
                if d.is_symbol():
                    out.setdefault(next(iter(d.symbols)), (v, axis))
        return out

    def output_names(self) -> list[str]:
        return [n for n, _ in self.outputs]


def body_reads(body: Graph) -> Iterator[Value]:
    """Every value a body graph (and the bodies inside it) reads: its own and the enclosing graphs'."""
    for n in body.nodes:
        yield from n.inputs
        if n.body is not None:
            yield from body_reads(n.body)
    for _, v in body.outputs:
        yield v


def use_counts(graph: Graph, nodes: Iterable[Node] | None = None) -> Counter[Value]:
    """How often each value is read by ``nodes`` (default: the graph's), their bodies (closures)
    and the graph's outputs."""
    uses: Counter[Value] = Counter()
    for n in graph.nodes if nodes is None else nodes:
        uses.update(n.inputs)
        if n.body is not None:
            uses.update(body_reads(n.body))
    uses.update(v for _, v in graph.outputs)
    return uses


def dim_attr(d: Dim | int) -> int | Dim:
    """Attributes keep static dims as plain ints and symbolic ones as Dim."""
    d = Dim.of(d)
    return d.value if d.is_static else d


def _fmt_number(v: float) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    r = repr(float(v))
    return r if any(c in r for c in ".en") else r + ".0"


__all__ = ["Graph", "Node", "Value", "Init", "dim_attr", "DType", "Dim", "TensorType"]
