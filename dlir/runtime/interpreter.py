"""The numpy reference interpreter: the oracle every target is checked against."""

from __future__ import annotations

from typing import Any

import numpy as np

from dlir.ir.graph import Graph, Value
from dlir.ir.types import Dim
from dlir.ops.registry import get_op


def bind_symbols(graph: Graph, feeds: dict[str, np.ndarray]) -> dict[str, int]:
    """Symbol values read off the inputs' actual shapes."""
    env: dict[str, int] = {}
    for sym, (v, axis) in graph.symbol_sources().items():
        env[sym] = int(np.shape(feeds[v.name])[axis])
    return env


def resolve_attrs(attrs: dict[str, Any], env: dict[str, int]) -> dict[str, Any]:
    """Replace symbolic dims in attributes by their values."""

    def res(v: Any) -> Any:
        if isinstance(v, Dim):
            return v.evaluate(env)
        if isinstance(v, list):
            return [res(x) for x in v]
        return v

    return {k: res(v) for k, v in attrs.items()}


def run_graph(
    graph: Graph,
    feeds: dict[str, np.ndarray],
    params: dict[str, np.ndarray],
    observe: Any = None,
) -> list[np.ndarray]:
    """Evaluate ``graph``; results are rounded to each value's declared dtype.

    ``observe(node, outputs)``, if given, sees every node's results (used by tools
    that compare targets node by node).
    """
    env = bind_symbols(graph, feeds)
    vals: dict[Value, np.ndarray] = {}
    for v in graph.inputs:
        vals[v] = np.asarray(feeds[v.name])
    for p in graph.params:
        vals[p] = np.asarray(params[p.name])
    for node in graph.nodes:
        opdef = get_op(node.op)
        outs = opdef.ref([vals[v] for v in node.inputs], resolve_attrs(node.attrs, env))
        for v, arr in zip(node.outputs, outs):
            vals[v] = np.asarray(arr).astype(v.type.dtype.numpy, copy=False)
        if observe is not None:
            observe(node, [vals[v] for v in node.outputs])
    return [vals[v] for _, v in graph.outputs]
