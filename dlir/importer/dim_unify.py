"""Unknown input dims that must be equal are made one symbol instead of refusing the graph.

tf2onnx (like other exporters) gives every unknown dim of every graph input its own
symbol (``unk__81``, ``unk__83``), so the batch dim of ``x`` and the batch dim of
``mask`` are unrelated names, although the graph is only valid when they are equal.
dlir's shape rules are static and refuse ``f32[unk__83, 10] * f32[unk__81, 10]``.

When a shape rule refuses an op, :func:`required_equal` lists the dim pairs that op
needs equal; pairs that are two different input symbols (or ``c*s1`` vs ``c*s2``) are
recorded in a :class:`DimUnion`, and ``from_onnx`` imports the model again with those
symbols merged. Each retry merges at least two classes, so there are fewer retries
than input symbols.

The rule: every unknown input dim, named by a human or anonymous, may be unified with
another one. The merged symbol is named after a human's ``dim_param`` when the class has
one (``batch`` over ``unk__81``), else after its first appearance, and the imported
model requires those dims equal at run time: feeding different sizes is a
RuntimeMismatch. For a broadcast this gives up one reading ONNX allows, a symbolic dim
that is 1 at run time and broadcasts against the other; onnxruntime's symbolic shape
inference (``auto_merge``) makes the same merge with the same caveat. A symbol that
must equal a static size is not fixed to it (the error's hint names the size: the input
signature would silently lose its dynamic dim), and two different static sizes stay an
error.
"""

from __future__ import annotations

import re
from typing import Any

from dlir.ir.types import Dim, TensorType
from dlir.ops.registry import get_op

# An ONNX dim's identity: ("param", dim_param) or ("anon", input name, axis) for a dim
# with neither dim_value nor dim_param.
DimKey = tuple[Any, ...]
_EXPORTER_NAME = re.compile(r"unk__\d+$")  # tf2onnx's names for unknown dims


class MergeDims(Exception):
    """Raised inside the builder: these input dims must be equal; import again with them merged.

    Not a DlirError: the node handlers' error wrapping must let it through to ``from_onnx``.
    """

    def __init__(self, pairs: list[tuple[DimKey, DimKey]]) -> None:
        super().__init__(f"merge dims {pairs}")
        self.pairs = pairs


class DimUnion:
    """Union-find over ONNX dim keys; each class's representative is the name it is imported under."""

    def __init__(self) -> None:
        self.parent: dict[DimKey, DimKey] = {}
        self.order: dict[DimKey, int] = {}  # first appearance, so names stay stable across retries

    def see(self, key: DimKey) -> None:
        self.order.setdefault(key, len(self.order))

    def find(self, key: DimKey) -> DimKey:
        root = key
        while root in self.parent:
            root = self.parent[root]
        while key != root:  # path compression
            up = self.parent[key]
            self.parent[key] = root
            key = up
        return root

    def union(self, a: DimKey, b: DimKey) -> bool:
        """Merge the classes of ``a`` and ``b``; False when they already were one."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        keep, drop = sorted((ra, rb), key=self._preference)
        self.parent[drop] = keep
        return True

    def _preference(self, key: DimKey) -> tuple[int, int]:
        """A human's dim_param first, then an exporter's ``unk__N``, then anonymous dims; then the first seen."""
        kind = 2 if key[0] == "anon" else 1 if _EXPORTER_NAME.match(key[1]) else 0
        return kind, self.order.get(key, len(self.order))

    def classes(self) -> dict[DimKey, list[DimKey]]:
        """Each merged class (two or more keys) by its representative."""
        out: dict[DimKey, list[DimKey]] = {}
        for k in sorted(self.order, key=self.order.__getitem__):
            out.setdefault(self.find(k), []).append(k)
        return {r: ks for r, ks in out.items() if len(ks) > 1}

    def describe(self) -> str:
        """The merged classes, e.g. ``batch = unk__7, N = M``."""
        return ", ".join(" = ".join(key_label(k) for k in ks) for ks in self.classes().values())


def key_label(key: DimKey) -> str:
    """How a dim key reads in messages: the dim_param, or ``input[axis]`` for an anonymous dim."""
    return key[1] if key[0] == "param" else f"{key[1]}[{key[2]}]"


# -- which dims an op needs equal ------------------------------------------------------


def required_equal(op: str, types: list[TensorType], attrs: dict[str, Any]) -> list[tuple[Dim, Dim]]:
    """The dim pairs that ``op`` on ``types`` needs equal: its OpDef's ``equal_dims`` hook, beside its shape rule."""
    rule = get_op(op).equal_dims
    return rule(types, attrs) if rule is not None else []


def symbol_pair(a: Dim, b: Dim) -> tuple[str, str] | None:
    """The two symbols whose equality makes ``a == b``: ``B1`` vs ``B2``, or ``16*B1`` vs ``16*B2``."""
    if a.unknown or b.unknown or len(a.terms) != 1 or len(b.terms) != 1:
        return None
    (ma, ca), (mb, cb) = a.terms[0], b.terms[0]
    if ca != cb:
        return None
    rest_a, rest_b = list(ma), list(mb)
    for s in ma:
        if s in rest_b:
            rest_a.remove(s)
            rest_b.remove(s)
    if len(rest_a) == 1 and len(rest_b) == 1:
        return rest_a[0], rest_b[0]
    return None


def pinned_symbol(need: list[tuple[Dim, Dim]], symbols: set[str]) -> tuple[str, int] | None:
    """The first of ``symbols`` that ``need`` sets equal to a static size, with that size."""
    for a, b in need:
        for sym, size in ((a, b), (b, a)):
            if sym.is_symbol() and size.is_static and str(sym) in symbols:
                return str(sym), size.value
    return None


__all__ = ["DimUnion", "MergeDims", "required_equal", "symbol_pair", "pinned_symbol", "key_label"]
