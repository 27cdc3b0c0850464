"""dlir -> ONNX -> dlir at every -O level (0..3), for the samples with recurrent layers.

From -O2 on, dlir's ONNX export writes ``LSTM``/``GRU`` nodes (the ``rnn`` pass fuses the
stdlib's cells); importing them back must give the original model's numbers on every
target, and exporting the import again at -O2 must find the same fused kernels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dlir
from dlir.compare import random_inputs
from dlir.importer import from_onnx

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ["numpy", "torch", "tensorflow", "onnx"]
TOL = {"rtol": 1e-5, "atol": 1e-5}
RECURRENT = [("lstm.dlir", "LSTMClassifier", "LSTM"), ("gru.dlir", "BiGRUTagger", "GRU")]


def _tuple(x: Any) -> tuple[np.ndarray, ...]:
    return x if isinstance(x, tuple) else (x,)


def _onnx_at(graph: Any, params: dict[str, np.ndarray], level: int) -> Any:
    from dlir.backends.onnx.export import to_model
    from dlir.passes import optimize

    return to_model(optimize(graph, level, target="onnx"), params)


def _ort(model: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


@pytest.mark.parametrize("level", [0, 1, 2, 3])
@pytest.mark.parametrize("sample, model_name, kernel", RECURRENT, ids=[r[1] for r in RECURRENT])
def test_recurrent_sample_round_trips(sample: str, model_name: str, kernel: str, level: int) -> None:
    prog = dlir.load(ROOT / "samples" / sample)
    graph = prog.graph(model_name)
    ref = dlir.compile(prog, "numpy", model=model_name)
    feeds = random_inputs(graph, seed=3, size=3)
    want = _tuple(ref(**feeds))
    proto = _onnx_at(graph, ref.params, level)
    ops = [n.op_type for n in proto.graph.node]
    assert (kernel in ops) == (level >= 2), ops  # -O2 fuses the cells; below it they are Scans
    m = from_onnx(proto)
    ins = {m.input_names[k]: v for k, v in feeds.items() if k in m.input_names}
    for w, o in zip(want, _ort(proto, feeds), strict=True):
        np.testing.assert_allclose(o, w, **TOL)  # the file is the model
    for t in TARGETS:
        got = _tuple(m.compile(t)(**ins))
        assert len(got) == len(want), t
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape, t
            np.testing.assert_allclose(g, w, **TOL, err_msg=t)
    if level >= 2:  # the imported scans are the stdlib's cells again: fused once more
        again = _onnx_at(m.graph, m.params, 2)
        assert [n.op_type for n in again.graph.node].count(kernel) == ops.count(kernel)
        for g, w in zip(_ort(again, ins), want, strict=True):
            np.testing.assert_allclose(g, w, **TOL)
