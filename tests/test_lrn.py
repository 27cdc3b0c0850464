"""lrn, dlir's op for ONNX's LRN: what the registry-driven cases cannot pin down.

``tests/test_ops.py`` and ``tests/test_autodiff.py`` run the ``lrn`` rows of
``dlir.ops.cases`` on every target and check the VJP by finite differences. Here:

- the numpy reference against ONNX's own formula (the node-test generator's loop)
  and against torch's ``F.local_response_norm``, which agrees for odd sizes and
  mirrors the window for even ones (the trap the torch lowering works around);
- TensorFlow's channels-last path after a conv: ``tf.nn.local_response_normalization``
  for odd sizes, the helper for even ones, both equal to numpy;
- the gradient against ``torch.autograd``;
- the ONNX importer maps LRN onto the one op, and ``to_source`` prints a call.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import TensorProto, helper

from dlir.importer import from_onnx
from dlir.importer.to_source import source_and_param_names
from dlir.ir.builder import emit1
from dlir.ir.graph import Graph, Init
from dlir.ir.types import TensorType
from dlir.ops import get_op
from dlir.runtime.runner import NumpyRunner
from dlir.targets import runner_class

ATTRS = {"alpha": 0.6, "beta": 0.75, "bias": 1.5}


def _onnx_formula(x: np.ndarray, size: int, alpha: float, beta: float, bias: float) -> np.ndarray:
    """The ONNX operator spec's square_sum, written as its node-test generator writes it."""
    c = x.shape[1]
    square_sum = np.zeros_like(x)
    for ch in range(c):
        lo = max(0, ch - math.floor((size - 1) / 2))
        hi = min(c, ch + math.ceil((size - 1) / 2) + 1)
        square_sum[:, ch] = (x[:, lo:hi] ** 2).sum(axis=1)
    return x / (bias + alpha / size * square_sum) ** beta


def _ref(x: np.ndarray, size: int) -> np.ndarray:
    return get_op("lrn").ref([x], {"size": size, **ATTRS})[0]


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8])
def test_reference_is_onnx_lrn(size: int) -> None:
    x = np.random.default_rng(size).standard_normal((2, 6, 3, 2))
    np.testing.assert_allclose(_ref(x, size), _onnx_formula(x, size, **ATTRS), rtol=1e-13)


@pytest.mark.parametrize("size", [2, 3, 4, 5])
def test_torch_window_is_onnx_for_odd_sizes_and_mirrored_for_even(size: int) -> None:
    import torch
    import torch.nn.functional as F

    x = np.random.default_rng(10 + size).standard_normal((2, 6, 3, 4))
    t = torch.from_numpy(x)
    args = dict(alpha=ATTRS["alpha"], beta=ATTRS["beta"], k=ATTRS["bias"])
    plain = F.local_response_norm(t, size, **args).numpy()
    mirrored = F.local_response_norm(t.flip(1), size, **args).flip(1).numpy()
    want = _ref(x, size)
    np.testing.assert_allclose(mirrored, want, rtol=1e-12)
    if size % 2:
        np.testing.assert_allclose(plain, want, rtol=1e-12)
    else:
        assert np.abs(plain - want).max() > 1e-3  # torch's even window reaches one channel further down


def _conv_lrn_pool(size: int) -> Graph:
    """conv -> lrn -> max_pool, as in AlexNet: the tensorflow target keeps the lrn channels-last."""
    g = Graph("ConvLrn")
    x = g.add_input("x", TensorType.make("f32", ["B", 3, 8, 8]))
    w = g.add_param("w", TensorType.make("f32", [6, 3, 3, 3]), Init("he_normal"))
    y = emit1(g, "lrn", [emit1(g, "conv2d", [x, w], {"padding": 1})], {"size": size, **ATTRS})
    g.outputs.append(("out", emit1(g, "max_pool2d", [y], {"kernel": 2})))
    return g


@pytest.mark.parametrize("size", [3, 4])
def test_tensorflow_lrn_runs_channels_last_after_a_conv(size: int) -> None:
    g = _conv_lrn_pool(size)
    tf_run = runner_class("tensorflow")(g)
    ref = NumpyRunner(g)
    ref.load_params(tf_run.params)
    native = "tf.nn.local_response_normalization(" in tf_run.source
    assert native == (size % 2 == 1), tf_run.source
    if not native:
        assert "axis=3)" in tf_run.source  # the helper, over the channels-last axis
    # into NHWC once at the input, back once at the output: none around the lrn
    assert tf_run.source.count("perm=[0, 2, 3, 1]") == tf_run.source.count("perm=[0, 3, 1, 2]") == 1, tf_run.source
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 8, 8)).astype(np.float32)
        np.testing.assert_allclose(tf_run(x=x), ref(x=x), rtol=1e-5, atol=1e-5)



def test_torch_lrn_of_a_transposed_rank5_view() -> None:
    """torch views a rank-5 x as [N, 1, C, D1, -1]; a transpose gives a non-contiguous x."""
    g = Graph("TLrn")
    x = g.add_input("x", TensorType.make("f32", ["B", 2, 4, 3, 2]))
    xt = emit1(g, "transpose", [x], {"perm": [0, 2, 1, 4, 3]})
    g.outputs.append(("out", emit1(g, "lrn", [xt], {"size": 3, **ATTRS})))
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 2, 4, 3, 2)).astype(np.float32)}
    got = runner_class("torch")(g)(**feeds)
    np.testing.assert_allclose(got, NumpyRunner(g)(**feeds), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", [3, 4])
def test_gradient_matches_torch_autograd(size: int) -> None:
    import torch
    import torch.nn.functional as F

    import dlir

    src = f"""
model M(x: f64[B, 5, 3, 2]) -> f64[] {{
    return sum(lrn(x, size={size}, alpha=0.6, beta=0.75, bias=1.5) * x)
}}
"""
    x = np.random.default_rng(size).standard_normal((2, 5, 3, 2))
    _, grads = dlir.compile(dlir.loads(src), "numpy", grad=["x"])(x=x)
    t = torch.from_numpy(x).requires_grad_(True)
    # torch's window is ONNX's for odd sizes and the mirror image for even ones
    tin = t if size % 2 else t.flip(1)
    y = F.local_response_norm(tin, size, alpha=0.6, beta=0.75, k=1.5)
    y = y if size % 2 else y.flip(1)
    (y * t).sum().backward()
    assert t.grad is not None
    np.testing.assert_allclose(grads["x"], t.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_onnx_lrn_imports_as_one_op() -> None:
    node = helper.make_node("LRN", ["x"], ["y"], size=4, alpha=0.3, beta=0.6, bias=2.0)
    shape: list[object] = ["N", 6, 3, 3]
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    m = from_onnx(model)
    ops = [n.op for n in m.graph.nodes]
    assert ops == ["lrn"], ops
    want_attrs = {"size": 4, "alpha": pytest.approx(0.3), "beta": pytest.approx(0.6), "bias": 2.0, "layout": "NCHW"}
    assert m.graph.nodes[0].attrs == want_attrs
    src, _ = source_and_param_names(m.graph)
    assert "lrn(x, size=4" in src, src
    x = np.random.default_rng(0).standard_normal((2, 6, 3, 3)).astype(np.float32)
    want = _onnx_formula(x.astype(np.float64), 4, 0.3, 0.6, 2.0)
    for target in ("numpy", "torch", "tensorflow", "onnx"):
        np.testing.assert_allclose(m.compile(target)(x=x), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype, rtol", [("f16", 2e-3), ("bf16", 1.6e-2)])
def test_half_precision_is_computed_wide_on_every_target(dtype: str, rtol: float) -> None:
    """torch's CPU LRN has no half kernels and TF's computes in half: both widen, as the reference does."""
    g = Graph("HalfLrn")
    x = g.add_input("x", TensorType.make(dtype, ["B", 5, 3, 3]))
    g.outputs.append(("out", emit1(g, "lrn", [x], {"size": 4, **ATTRS})))
    xv = np.random.default_rng(1).standard_normal((2, 5, 3, 3)).astype(x.type.dtype.numpy)
    want = np.asarray(NumpyRunner(g)(x=xv))
    for target in ("torch", "tensorflow", "onnx"):
        got = np.asarray(runner_class(target)(g)(x=xv))
        assert got.dtype == want.dtype, target
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=rtol,
                                   err_msg=target)
