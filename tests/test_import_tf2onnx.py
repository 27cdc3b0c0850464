"""The tf2onnx conversion of each sample's generated tensorflow module imports and agrees on every target.

Two importer features are what make these conversions readable: tf2onnx gives every unknown
dim of every input its own symbol (unk__N), which the importer unifies where the graph needs
them equal (dlir/importer/dim_unify.py: attention, digits, transformer); and tf's while loops
become ONNX ``Loop`` (plus ``ReverseSequence`` for the backward GRU), which the importer turns
into a ``scan`` where the trip count is provable (dlir/importer/onnx_loop.py: lstm, gru).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from test_samples import serving_function

import dlir
from dlir.compare import random_inputs
from dlir.importer import from_onnx

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "samples").glob("*.dlir"))
TARGETS = ["numpy", "torch", "tensorflow", "onnx"]
TOL = {"rtol": 1e-5, "atol": 1e-5}


def _params() -> list[Any]:
    return [pytest.param(p, m, id=f"{p.stem}:{m}") for p in SAMPLES for m in dlir.load(p).models]


def _tuple(x: Any) -> tuple[np.ndarray, ...]:
    return x if isinstance(x, tuple) else (x,)


@pytest.mark.slow
@pytest.mark.parametrize("path, model", _params())
def test_tf2onnx_conversion_imports_and_agrees(path: Path, model: str) -> None:
    import tf2onnx

    prog = dlir.load(path)
    graph = prog.graph(model)
    feeds = random_inputs(graph, seed=2, size=3)
    runner = dlir.compile(prog, "tensorflow", model=model)  # keeps the module's weights alive
    fn = serving_function(runner.module)
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=17)
    m = from_onnx(proto)
    # tf2onnx names inputs after the TensorSpec names, possibly with a ":0" suffix.
    onnx_names = [i.name for i in proto.graph.input]
    by_base = {n.split(":")[0]: n for n in onnx_names}
    given = {by_base.get(v.name, onnx_names[i]): feeds[v.name] for i, v in enumerate(graph.inputs)}
    ins = {m.input_names[k]: v for k, v in given.items() if k in m.input_names}
    want = _tuple(dlir.compile(prog, "numpy", model=model)(**feeds))
    for target in TARGETS:
        got = _tuple(m.compile(target)(**ins))
        assert len(got) == len(want), target
        for g, w in zip(got, want):
            assert g.shape == w.shape and g.dtype == w.dtype, target
            np.testing.assert_allclose(g, w, **TOL, err_msg=target)
