"""The numpy reference interpreter: the oracle every target is checked against."""

from __future__ import annotations

from collections import ChainMap
from collections.abc import MutableMapping
from typing import Any

import numpy as np

from dlir.errors import RuntimeMismatch
from dlir.ir.graph import Graph, Node, Value
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
    that compare targets node by node); the nodes inside a scan body are not observed.
    """
    env = bind_symbols(graph, feeds)
    vals: dict[Value, np.ndarray] = {}
    for v in graph.inputs:
        vals[v] = np.asarray(feeds[v.name])
    for p in graph.params:
        vals[p] = np.asarray(params[p.name])
    run_nodes(graph.nodes, vals, env, observe)
    return [vals[v] for _, v in graph.outputs]


def run_nodes(
    nodes: list[Node], vals: MutableMapping[Value, np.ndarray], env: dict[str, int], observe: Any = None
) -> None:
    """Evaluate ``nodes`` in order, reading and writing ``vals``."""
    for node in nodes:
        if node.op == "scan":
            outs = run_scan(node, vals, env)
        else:
            outs = get_op(node.op).ref([vals[v] for v in node.inputs], resolve_attrs(node.attrs, env))
        for v, arr in zip(node.outputs, outs, strict=True):
            vals[v] = np.asarray(arr).astype(v.type.dtype.numpy, copy=False)
        if observe is not None:
            observe(node, [vals[v] for v in node.outputs])


def run_scan(node: Node, vals: MutableMapping[Value, np.ndarray], env: dict[str, int]) -> list[np.ndarray]:
    """One scan node: the body once per slice of xs, in order (or reversed), threading the carries.

    The body reads the enclosing values (closure) through ``vals``; its own values
    live in a per-step layer on top. ``ys[t]`` is always the emit computed from
    ``x_t``, also when the walk is reversed.
    """
    body = node.body
    assert body is not None, "a scan node owns a body graph"
    axis, k = node.attrs["axis"], node.attrs["n_carry"]
    xs = vals[node.inputs[0]]
    carries = [vals[v] for v in node.inputs[1:]]
    n = xs.shape[axis]
    steps = range(n - 1, -1, -1) if node.attrs["reverse"] else range(n)
    emits: list[list[np.ndarray]] = [[] for _ in node.outputs[k:]]
    for t in steps:
        step: dict[Value, np.ndarray] = {body.inputs[0]: np.take(xs, t, axis=axis)}
        step.update(zip(body.inputs[1:], carries, strict=True))
        scope = ChainMap(step, vals)  # writes go to the step's layer
        if t == steps[0]:
            env = _body_env(body, step, env)
        run_nodes(body.nodes, scope, env)
        outs = [scope[v] for _, v in body.outputs]
        carries = [
            np.asarray(c).astype(h.type.dtype.numpy, copy=False) for c, h in zip(outs[:k], body.inputs[1:], strict=True)
        ]
        for acc, e in zip(emits, outs[k:], strict=True):
            acc.append(e)
    ys = []
    for acc, v in zip(emits, node.outputs[: len(emits)], strict=True):
        if node.attrs["reverse"]:
            acc.reverse()
        ys.append(np.stack(acc, axis=axis) if acc else np.zeros(_empty_shape(v, env), v.type.dtype.numpy))
    return ys + carries


def _body_env(body: Graph, step: dict[Value, np.ndarray], env: dict[str, int]) -> dict[str, int]:
    """The outer symbols, plus any bound only by a body input (hand-written IR)."""
    extra = {s: int(np.shape(step[v])[ax]) for s, (v, ax) in body.symbol_sources().items() if s not in env}
    return {**env, **extra} if extra else env


def _empty_shape(v: Value, env: dict[str, int]) -> tuple[int, ...]:
    if any(d.unknown or not d.symbols <= set(env) for d in v.type.shape):
        raise RuntimeMismatch(f"a scan over an empty sequence cannot size its output %{v.name}: {v.type}", v.loc)
    return tuple(d.evaluate(env) for d in v.type.shape)
