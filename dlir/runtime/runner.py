"""One runner API on every target: numpy in, numpy out.

A backend subclasses :class:`Runner` and implements ``_execute`` (and
``_params_changed`` when it keeps its own copy of the weights). Input checking,
params, safetensors I/O and output packing live here, once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from dlir.errors import RuntimeMismatch, did_you_mean
from dlir.ir.graph import Graph
from dlir.ir.types import Dim
from dlir.ops.registry import describe_value
from dlir.runtime.init import init_params
from dlir.runtime.weights import checked_params, load_safetensors, save_safetensors


def check_inputs(graph: Graph, given: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Check names, dtypes and shapes (symbols bound consistently) of run-time inputs."""
    declared = {v.name: v for v in graph.inputs}
    for name in given:
        if name not in declared:
            raise RuntimeMismatch(
                f"model {graph.name} has no input '{name}'",
                hint=did_you_mean(name, declared) or f"its inputs are: {', '.join(declared) or 'none'}",
            )
    feeds: dict[str, np.ndarray] = {}
    env: dict[str, tuple[int, str]] = {}
    for v in graph.inputs:
        if v.name not in given:
            raise RuntimeMismatch(
                f"missing input '{v.name}' ({v.type})", v.loc, hint="pass every declared input by name"
            )
        a = np.asarray(given[v.name])
        t = v.type
        if a.dtype != t.dtype.numpy:
            raise RuntimeMismatch(
                f"input '{v.name}' is declared {t}, but {describe_value(a)} was given",
                v.loc,
                hint=f"convert it first, e.g. x.astype(np.{t.dtype.numpy})",
            )
        if a.ndim != t.rank:
            raise RuntimeMismatch(
                f"input '{v.name}' is declared {t} (rank {t.rank}), but {describe_value(a)} was given", v.loc
            )
        for axis, (d, n) in enumerate(zip(t.shape, a.shape, strict=True)):
            _check_dim(v.name, t, a, axis, d, int(n), env)
        feeds[v.name] = a
    return feeds


def _check_dim(name: str, t: Any, a: np.ndarray, axis: int, d: Dim, n: int, env: dict[str, tuple[int, str]]) -> None:
    if d.unknown:
        return
    if d.is_static:
        if d.value != n:
            raise RuntimeMismatch(
                f"input '{name}' is declared {t}, but {describe_value(a)} was given (axis {axis} must be {d.value})"
            )
        return
    if d.is_symbol():
        sym = next(iter(d.symbols))
        if sym in env and env[sym][0] != n:
            raise RuntimeMismatch(
                f"input '{name}' is declared {t}, but {describe_value(a)} was given: "
                f"{sym} = {n} here, but {sym} = {env[sym][0]} from {env[sym][1]}",
                hint=f"every input must agree on the size of {sym}",
            )
        env.setdefault(sym, (n, f"input '{name}'"))


class Runner:
    """A compiled model on one target. ``run(x=...)`` returns numpy arrays."""

    target = "?"

    def __init__(self, graph: Graph, seed: int = 0, device: str = "auto") -> None:
        self.graph = graph
        self.device = device
        self._params = init_params(graph, seed)

    # -- the API ----------------------------------------------------------------
    def __call__(self, /, **inputs: Any) -> Any:
        feeds = check_inputs(self.graph, inputs)
        outs = self._execute(feeds)
        outs = [np.asarray(o) for o in outs]
        return outs[0] if len(outs) == 1 else tuple(outs)

    @property
    def params(self) -> dict[str, np.ndarray]:
        """Dotted name -> value (a copy: change weights with :meth:`load_params`)."""
        return {k: v.copy() for k, v in self._params.items()}

    @property
    def output_names(self) -> list[str]:
        return self.graph.output_names()

    def load_params(self, source: Mapping[str, np.ndarray] | str | os.PathLike[str]) -> None:
        """Load weights from a dict or a .safetensors file (unknown names are errors)."""
        given = load_safetensors(source) if isinstance(source, (str, os.PathLike)) else source
        self._params.update(checked_params(self.graph, given))
        self._params_changed()

    def save_params(self, path: str | os.PathLike[str]) -> None:
        save_safetensors(self._params, path)

    # -- for backends -----------------------------------------------------------
    def _execute(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def _params_changed(self) -> None:
        """Called after params change; backends that hold their own copy refresh it."""


class NumpyRunner(Runner):
    """The reference interpreter as a target."""

    target = "numpy"

    def _execute(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        from dlir.runtime.interpreter import run_graph

        return run_graph(self.graph, feeds, self._params)
