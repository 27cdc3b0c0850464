"""ONNX ``ConvTranspose`` and the normalizations (Group, Instance, Layer) imported, checked against
ONNX Runtime on the same file (the ONNX reference evaluator where ORT has no kernel: float64
ConvTranspose) on every target, and torch's exports against torch itself."""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlir.errors import DlirError
from dlir.importer import from_onnx

TARGETS = ["numpy", "torch", "tensorflow", "onnx"]
TOL = {"rtol": 1e-5, "atol": 1e-5}
ONNX_TYPE = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE}


def _ort(model: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def _model(nodes: list[Any], x_shape: list[Any], outputs: list[str], inits: list[Any], dtype: Any, opset: int) -> Any:
    t = ONNX_TYPE[dtype]
    x = helper.make_tensor_value_info("x", t, x_shape)
    g = helper.make_graph(nodes, "g", [x], [helper.make_tensor_value_info(o, t, None) for o in outputs], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _check(model: Any, x: np.ndarray, want: list[np.ndarray], targets: list[str] = TARGETS) -> Any:  # noqa: B006
    m = from_onnx(model)
    for t in targets:
        got = m.compile(t)(x=x)
        got = got if isinstance(got, tuple) else (got,)
        assert len(got) == len(want), t
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape and g.dtype == w.dtype, (t, g.shape, w.shape)
            np.testing.assert_allclose(g, w, **TOL, err_msg=t)
    return m


# -- ConvTranspose ------------------------------------------------------------------------------

CONV_T = {
    "plain": {},
    "stride-pads-output_padding": {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]},
    "asymmetric-groups": {"strides": [2, 3], "pads": [0, 1, 2, 0], "output_padding": [1, 0], "group": 2},
    "dilated-groups": {"strides": [2, 2], "pads": [1, 0, 1, 0], "dilations": [2, 1], "group": 2},
    "same_upper": {"strides": [2, 2], "auto_pad": "SAME_UPPER"},
    "same_lower": {"strides": [2, 2], "auto_pad": "SAME_LOWER"},
    "output_shape-odd": {"strides": [3, 2], "output_shape": [11, 9]},
}


def _conv_transpose(attrs: dict[str, Any], dtype: Any, seed: int = 0) -> tuple[Any, np.ndarray]:
    rng = np.random.default_rng(seed)
    c, m = 4, 6
    w = numpy_helper.from_array(rng.standard_normal((c, m // attrs.get("group", 1), 3, 2)).astype(dtype), "w")
    b = numpy_helper.from_array(rng.standard_normal(m).astype(dtype), "b")
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], **attrs)
    return _model([node], ["N", c, 4, 5], ["y"], [w, b], dtype, 17), rng.standard_normal((2, c, 4, 5)).astype(dtype)


@pytest.mark.parametrize("name", list(CONV_T))
def test_conv_transpose_agrees_with_onnxruntime(name: str) -> None:
    model, x = _conv_transpose(CONV_T[name], np.float32)
    _check(model, x, _ort(model, {"x": x}))


@pytest.mark.parametrize(
    "name", ["stride-pads-output_padding", "asymmetric-groups", "dilated-groups", "output_shape-odd"]
)
def test_conv_transpose_float64_agrees(name: str) -> None:
    """ORT has no double ConvTranspose: dlir decomposes it, checked against ORT on the float32 twin
    (the same numbers, rounded to float32) and, where it can run it, ONNX's own reference evaluator."""
    from onnx.reference import ReferenceEvaluator

    model, x = _conv_transpose(CONV_T[name], np.float64)
    twin, x32 = _conv_transpose(CONV_T[name], np.float32)
    want = _ort(twin, {"x": x32})[0].astype(np.float64)
    m = _check(model, x, [want], ["numpy", "torch", "tensorflow"])
    assert not any(n.op == "conv2d_input_grad" for n in m.graph.nodes)
    if "group" not in CONV_T[name] and "output_shape" not in CONV_T[name]:  # what the evaluator implements
        np.testing.assert_allclose(ReferenceEvaluator(model).run(None, {"x": x})[0], want, **TOL)


def test_conv_transpose_1d_agrees() -> None:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3)).astype(np.float32), "w")
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2], pads=[1, 0], output_padding=[1])
    model = _model([node], ["N", 4, 7], ["y"], [w], np.float32, 17)
    x = rng.standard_normal((2, 4, 7)).astype(np.float32)
    _check(model, x, _ort(model, {"x": x}))


def test_conv_transpose_uses_the_transposed_kernel_of_every_target() -> None:
    """One group and no dilation: dlir's conv2d_input_grad (conv_transpose2d, Conv2DBackpropInput, ConvTranspose)."""
    model, _ = _conv_transpose(CONV_T["stride-pads-output_padding"], np.float32)
    assert [n.op for n in from_onnx(model).graph.nodes].count("conv2d_input_grad") == 1


def test_torch_conv_transpose_exports_agree() -> None:
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
        torch.nn.ReLU(),
        torch.nn.ConvTranspose2d(6, 3, (2, 3), stride=(1, 2), dilation=2),
    ).eval()
    x = np.random.default_rng(1).standard_normal((2, 4, 5, 6)).astype(np.float32)
    model = _torch_export(net, x)
    want = _ort(model, {"x": x})
    with torch.no_grad():
        np.testing.assert_allclose(want[0], net(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-5)
    _check(model, x, want)


def test_conv_transpose_with_symbolic_image_is_refused() -> None:
    model, _ = _conv_transpose({}, np.float32)
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    with pytest.raises(DlirError) as e:
        from_onnx(model)
    assert "static image size" in str(e.value)


# -- normalizations -----------------------------------------------------------------------------


@pytest.mark.parametrize("opset", [18, 21])
def test_group_normalization_per_group_then_per_channel(opset: int) -> None:
    """Opset 18 scales per group, 21 per channel (the model's opset decides)."""
    rng = np.random.default_rng(0)
    groups, c = 2, 6
    k = groups if opset < 21 else c
    inits = [numpy_helper.from_array(rng.standard_normal(k).astype(np.float32), n) for n in ("s", "b")]
    node = helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=groups, epsilon=1e-3)
    model = _model([node], ["N", c, 3, 4], ["y"], inits, np.float32, opset)
    x = (rng.standard_normal((2, c, 3, 4)) * 3 + 1).astype(np.float32)
    _check(model, x, _ort(model, {"x": x}))


def test_instance_normalization_agrees() -> None:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), n) for n in ("s", "b")]
    node = helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=1e-4)
    model = _model([node], ["N", 3, 4, 5], ["y"], inits, np.float32, 17)
    x = (rng.standard_normal((2, 3, 4, 5)) * 2).astype(np.float32)
    _check(model, x, _ort(model, {"x": x}))


@pytest.mark.parametrize("axis, stash", [(-1, False), (1, False), (2, True)], ids=["last", "axis1", "axis2-stash"])
def test_layer_normalization_opset_17(axis: int, stash: bool) -> None:
    """Normalised over axis..end; with the Mean and InvStdDev outputs when the model asks for them."""
    rng = np.random.default_rng(0)
    shape = [2, 3, 4, 5]
    norm = shape[axis % 4 :]
    inits = [numpy_helper.from_array(rng.standard_normal(norm).astype(np.float32), n) for n in ("s", "b")]
    outs = ["y", "mean", "inv"] if stash else ["y"]
    # An epsilon that matters next to the variance, and is not the 1e-3 of TF's oneDNN fusion (PITFALLS.md)
    node = helper.make_node("LayerNormalization", ["x", "s", "b"], outs, axis=axis, epsilon=2e-2)
    model = _model([node], ["N", *shape[1:]], outs, inits, np.float32, 17)
    x = (rng.standard_normal(shape) * 0.3 + 0.5).astype(np.float32)
    _check(model, x, _ort(model, {"x": x}))


def _torch_export(net: Any, x: np.ndarray, opset: int = 17) -> Any:
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.from_numpy(x),),
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=["x"],
            dynamic_axes={"x": {0: "B"}},
        )
    return onnx.load_from_string(buf.getvalue())


@pytest.mark.parametrize("opset", [17, 18])
def test_torch_norm_layers_export_agree(opset: int) -> None:
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1),
        torch.nn.GroupNorm(3, 6),
        torch.nn.InstanceNorm2d(6, affine=True),
        torch.nn.LayerNorm([6, 5, 5]),
    ).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.3)  # affine params away from their 1/0 init
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 5)).astype(np.float32)
    model = _torch_export(net, x, opset)
    want = _ort(model, {"x": x})
    with torch.no_grad():
        np.testing.assert_allclose(want[0], net(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)
    _check(model, x, want)
