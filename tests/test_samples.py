"""Every sample on every target, and the round trips across frameworks.

- every target agrees with the numpy reference (float32, rtol/atol 1e-5);
- the torch module exported with ``torch.onnx.export`` and run in ONNX Runtime
  agrees with dlir's own ONNX;
- the tensorflow module converted with tf2onnx agrees likewise;
- the tensorflow module survives ``tf.saved_model.save`` / ``load``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dlir
from dlir.compare import random_inputs

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "samples").glob("*.dlir"))
TOL = {"rtol": 1e-5, "atol": 1e-5}


def _models() -> list[tuple[Path, str]]:
    return [(p, m) for p in SAMPLES for m in dlir.load(p).models]


MODELS = _models()
IDS = [f"{p.stem}:{m}" for p, m in MODELS]


def _tuple(x: Any) -> tuple[np.ndarray, ...]:
    return x if isinstance(x, tuple) else (x,)


def serving_function(module: Any) -> Any:
    """The inference tf.function of a generated tf module: ``__call__``, or ``call`` where the
    model also has a training path (``__call__(x, training=False)`` then picks one of two)."""
    return module.call if hasattr(module, "call_train") else module.__call__


@pytest.fixture(scope="module")
def onnxrt() -> Any:
    import onnxruntime as ort

    return ort


def _ort_run(ort: Any, model_bytes: bytes, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return sess.run(None, {n: feeds[n] for n in names})


@pytest.mark.parametrize("path, model", MODELS, ids=IDS)
@pytest.mark.parametrize("target", ["torch", "tensorflow", "onnx"])
def test_sample_agrees_with_numpy(path: Path, model: str, target: str) -> None:
    prog = dlir.load(path)
    graph = prog.graph(model)
    ref_run = dlir.compile(prog, "numpy", model=model)
    run = dlir.compile(prog, target, model=model)
    for size in (2, 5):  # one compiled artifact, two bindings of the symbols
        feeds = random_inputs(graph, seed=size, size=size)
        for r, g in zip(_tuple(ref_run(**feeds)), _tuple(run(**feeds))):
            assert g.dtype == r.dtype and g.shape == r.shape
            np.testing.assert_allclose(g, r, **TOL)


@pytest.mark.parametrize("path, model", MODELS, ids=IDS)
def test_torch_onnx_export_agrees_with_dlir_onnx(path: Path, model: str, onnxrt: Any, tmp_path: Path) -> None:
    import torch

    prog = dlir.load(path)
    graph = prog.graph(model)
    feeds = random_inputs(graph, seed=1, size=3)
    mod = dlir.compile(prog, "torch", model=model).module.eval()
    args = tuple(torch.from_numpy(feeds[v.name]) for v in graph.inputs)
    out = tmp_path / "exported.onnx"
    torch.onnx.export(mod, args, str(out), dynamo=False, input_names=[v.name for v in graph.inputs])
    exported = _ort_run(onnxrt, out.read_bytes(), feeds)
    ours = _tuple(dlir.compile(prog, "onnx", model=model)(**feeds))
    for a, b in zip(exported, ours):
        np.testing.assert_allclose(a, b, **TOL)


@pytest.mark.parametrize("path, model", MODELS, ids=IDS)
def test_tf2onnx_conversion_agrees_with_dlir_onnx(path: Path, model: str, onnxrt: Any) -> None:
    import tf2onnx

    prog = dlir.load(path)
    graph = prog.graph(model)
    feeds = random_inputs(graph, seed=2, size=3)
    mod = dlir.compile(prog, "tensorflow", model=model).module
    fn = serving_function(mod)
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=17)
    converted = _ort_run(onnxrt, proto.SerializeToString(), {k: v for k, v in _tf_feed_names(proto, graph, feeds).items()})
    ours = _tuple(dlir.compile(prog, "onnx", model=model)(**feeds))
    for a, b in zip(converted, ours):
        np.testing.assert_allclose(a, b, **TOL)


def _tf_feed_names(proto: Any, graph: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    # tf2onnx names inputs after the TensorSpec names, possibly with a ":0" suffix.
    names = [i.name for i in proto.graph.input]
    by_base = {n.split(":")[0]: n for n in names}
    return {by_base.get(v.name, names[i]): feeds[v.name] for i, v in enumerate(graph.inputs)}


@pytest.mark.parametrize("path, model", MODELS, ids=IDS)
def test_tf_saved_model_round_trip(path: Path, model: str, tmp_path: Path) -> None:
    import tensorflow as tf

    prog = dlir.load(path)
    graph = prog.graph(model)
    feeds = random_inputs(graph, seed=3, size=4)
    mod = dlir.compile(prog, "tensorflow", model=model).module
    tf.saved_model.save(mod, str(tmp_path / "sm"), signatures=serving_function(mod))
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    args = [tf.constant(feeds[v.name]) for v in graph.inputs]
    before = _tuple(mod(*args))
    after = _tuple(serving_function(loaded)(*args))
    for a, b in zip(before, after):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
