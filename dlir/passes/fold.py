"""Constant folding with the ops' numpy references."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from dlir.errors import DlirError
from dlir.ir.graph import Graph, Node, Value
from dlir.ops.registry import check_attrs, get_op
from dlir.passes.manager import Pass, register_pass
from dlir.passes.rewrite import constant_value, is_pure, opdef_or_none, static_attrs


@register_pass
@dataclass
class ConstantFolding(Pass):
    """Replace a node whose inputs are all constants by ``constant`` nodes holding its results.

    Results are computed with the op's numpy reference and rounded to the result
    dtype exactly as the reference interpreter does, so the folded graph gives the
    same numbers on the numpy target. Params and buffers stay params (their values
    can be loaded later) unless ``fold_params`` is set; then their seeded initial
    values (``seed``) are folded in. Results with more than ``max_elements``
    elements are not folded (they would bloat the generated code), nor are nodes
    with symbolic attributes, bodies, or no inputs at all.
    """

    name = "fold"
    fold_params: bool = False
    seed: int = 0
    max_elements: int = 1_000_000

    def run(self, graph: Graph) -> bool:
        self._params: dict[Value, np.ndarray] = {}  # seeded initial values, with fold_params
        nodes: list[Node] = []
        changed = False
        for node in graph.nodes:
            self.at = node
            folded = self.fold(node)
            nodes.extend(folded or [node])
            changed = changed or folded is not None
        self.at = None
        if changed:
            graph.nodes = nodes
        return changed

    def fold(self, node: Node) -> list[Node] | None:
        """The constant nodes that replace ``node``, or None to keep it."""
        if not node.inputs or not all(self.foldable(v) for v in node.inputs):
            return None
        if node.op == "constant" or not is_pure(node) or not static_attrs(node.attrs):
            return None
        opdef = opdef_or_none(node)
        if opdef is None or opdef.extra.get("no_fold", False):
            return None
        if not all(v.type.is_static and math.prod(v.type.static_shape()) <= self.max_elements for v in node.outputs):
            return None
        args = [self.value_of(v) for v in node.inputs]
        if any(a is None for a in args):
            return None
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                results = opdef.ref(cast("list[np.ndarray]", args), node.attrs)  # no None: checked above
        except Exception:  # noqa: BLE001 - left for run time, where the failure is reported
            return None
        if len(results) != len(node.outputs):
            return None
        out = []
        for v, r in zip(node.outputs, results, strict=True):
            const = _constant_node(v, np.asarray(r).astype(v.type.dtype.numpy, copy=False), node)
            if const is None:
                return None
            out.append(const)
        for const in out:
            const.outputs[0].producer = const
        return out

    def foldable(self, v: Value) -> bool:
        """A cheap first look: the input is a constant's result (or a param, with fold_params)."""
        if v.kind in ("param", "buffer"):
            return self.fold_params
        return v.producer is not None and v.producer.op == "constant"

    def value_of(self, v: Value) -> np.ndarray | None:
        if v.kind in ("param", "buffer"):
            if not self.fold_params:
                return None
            if v not in self._params:
                from dlir.runtime.init import init_param

                self._params[v] = init_param(v, self.seed)
            return self._params[v]
        arr = constant_value(v)
        return None if arr is None else arr.astype(v.type.dtype.numpy, copy=False)


def literal(arr: np.ndarray) -> Any:
    """A constant's ``value`` attribute: nested lists of Python numbers that give ``arr`` back exactly."""
    if arr.dtype.kind == "f" or arr.dtype.name == "bfloat16":
        return arr.astype(np.float64).tolist()
    return arr.tolist()


def _constant_node(v: Value, arr: np.ndarray, at: Node) -> Node | None:
    """A ``constant`` node producing ``v`` (same name, type and location) with value ``arr``."""
    if arr.shape != v.type.static_shape():
        return None
    opdef = get_op("constant")
    try:
        attrs = check_attrs(opdef, {"value": literal(arr), "dtype": v.type.dtype})
        if opdef.infer([], attrs) != [v.type]:
            return None
    except DlirError:
        return None
    return Node("constant", [], attrs, [v], at.loc)
