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


def check_inputs(graph: Graph, given: Mapping[str, Any], partial: bool = False) -> dict[str, np.ndarray]:
    """Check names, dtypes and shapes (symbols bound consistently) of run-time inputs.

    ``partial``: inputs not given are not missing (the runner keeps them, see :meth:`Runner.keep`).
    """
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
        if v.name not in given and partial:
            continue
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

    # -- inputs kept on the target between calls -----------------------------------
    # The trainer's params, buffers and optimizer state stay where the model runs
    # (torch tensors, TensorFlow tensors, ONNX Runtime OrtValues, on the GPU where
    # one is used): each step replaces them with the step's outputs there, and only
    # the other outputs (the loss) come back to the host.
    def keep(self, values: Mapping[str, np.ndarray], carry: Mapping[str, str]) -> None:
        """Hold the inputs ``values`` on the target; after each :meth:`step`, output ``o``
        becomes input ``carry[o]``."""
        check_inputs(self.graph, values, partial=True)
        outputs = self.graph.output_names()
        self._carry = [(outputs.index(o), name) for o, name in carry.items()]
        carried = {i for i, _ in self._carry}
        self._free = [i for i in range(len(outputs)) if i not in carried]
        self._kept_names = set(values)
        self._start_keeping({k: np.asarray(v) for k, v in values.items()})

    def step(self, /, **inputs: Any) -> list[np.ndarray]:
        """Run with the kept inputs and ``inputs``; returns the outputs that are not carried."""
        feeds = check_inputs(self.graph, inputs, partial=True)
        for v in self.graph.inputs:
            if v.name not in feeds and v.name not in self._kept_names:
                raise RuntimeMismatch(f"missing input '{v.name}' ({v.type})", hint="pass every input that is not kept")
        return self._step_kept(feeds)

    def kept(self, name: str) -> np.ndarray:
        """A kept input's current value, copied to the host."""
        return self._read_kept(name)

    def replace_kept(self, values: Mapping[str, np.ndarray]) -> None:
        """New values for kept inputs (same dtypes and shapes)."""
        unknown = set(values) - self._kept_names
        assert not unknown, f"not kept: {sorted(unknown)}"
        check_inputs(self.graph, values, partial=True)
        self._write_kept({k: np.asarray(v) for k, v in values.items()})

    # The default keeping: a dict of target tensors made by _put, passed to _run_kept every step.
    def _start_keeping(self, values: dict[str, np.ndarray]) -> None:
        self._kept = {k: self._put(v) for k, v in values.items()}

    def _step_kept(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        handles = {**{k: self._put(v) for k, v in feeds.items()}, **self._kept}
        outs = self._run_kept([handles[v.name] for v in self.graph.inputs])
        for i, name in self._carry:
            self._kept[name] = outs[i]
        return [self._get(outs[i]) for i in self._free]

    def _read_kept(self, name: str) -> np.ndarray:
        return self._get(self._kept[name])

    def _write_kept(self, values: dict[str, np.ndarray]) -> None:
        self._kept.update({k: self._put(v) for k, v in values.items()})

    # -- for backends -----------------------------------------------------------
    def _execute(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def _put(self, a: np.ndarray) -> Any:
        """A host array as the target's own tensor (default: numpy itself)."""
        return a

    def _get(self, handle: Any) -> np.ndarray:
        """The target's tensor as a host array that shares no memory with it."""
        return np.array(handle, copy=True)

    def _run_kept(self, args: list[Any]) -> list[Any]:
        """Run on target tensors (one per graph input, in order); returns target tensors."""
        return self._execute({v.name: a for v, a in zip(self.graph.inputs, args, strict=True)})

    def _params_changed(self) -> None:
        """Called after params change; backends that hold their own copy refresh it."""


class NumpyRunner(Runner):
    """The reference interpreter as a target."""

    target = "numpy"

    def _execute(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        from dlir.runtime.interpreter import run_graph

        return run_graph(self.graph, feeds, self._params)
