"""ONNX ``Resize`` / ``Upsample`` imported as gathers, checked against ONNX Runtime on the same file.

Hand-built nodes cover the modes, coordinate transformations and nearest roundings; torch's
own ``F.interpolate`` exports cover what users bring (and are also checked against torch).
"""

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
F = TensorProto.FLOAT
X_SHAPE = (2, 3, 5, 7)


def _ort(model: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def _agrees(model: Any, x: np.ndarray, targets: list[str]) -> Any:
    want = _ort(model, {"x": x})[0]
    m = from_onnx(model)
    for t in targets:
        got = m.compile(t)(x=x)
        assert got.shape == want.shape, (t, got.shape, want.shape)
        np.testing.assert_allclose(got, want, **TOL, err_msg=t)
    return m


def _resize(
    attrs: dict[str, Any],
    scales: list[float] | None = None,
    sizes: list[int] | None = None,
    opset: int = 19,
    op: str = "Resize",
    batch: Any = "N",
) -> Any:
    inits = []
    if opset <= 10:
        ins = ["x", "scales"]
    else:
        ins = ["x", "", "scales" if scales is not None else "", "sizes" if sizes is not None else ""]
    if scales is not None:
        inits.append(numpy_helper.from_array(np.array(scales, np.float32), "scales"))
    if sizes is not None:
        inits.append(numpy_helper.from_array(np.array(sizes, np.int64), "sizes"))
    node = helper.make_node(op, ins, ["y"], **attrs)
    x = helper.make_tensor_value_info("x", F, [batch, *X_SHAPE[1:]])
    g = helper.make_graph([node], "g", [x], [helper.make_tensor_value_info("y", F, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _x(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(X_SHAPE).astype(np.float32)


TRANSFORMS = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric"]
# Enlarging and shrinking by scales (non-integer ones included), and by sizes (scale = out/in).
GEOMETRIES = [([1, 1, 2, 2], None), ([1, 1, 0.5, 3], None), ([1, 1, 1.5, 0.6], None), (None, [2, 3, 8, 3])]
CASES = [
    (mode, transform, nearest, geo)
    for mode in ("nearest", "linear", "cubic")
    for transform in TRANSFORMS
    for nearest in (("round_prefer_floor", "round_prefer_ceil", "floor", "ceil") if mode == "nearest" else ("",))
    for geo in range(len(GEOMETRIES))
    # Here output 0 reads source coordinate 0.5 exactly in real arithmetic (offset 1/6 + 5/6 - 1/2): a
    # tie that float rounding decides, differently in ORT's compiled code and numpy's float32.
    if (transform, nearest, geo) != ("half_pixel_symmetric", "round_prefer_floor", 2)
]


def _case_id(c: tuple[str, str, str, int]) -> str:
    return "-".join(p for p in (c[0], c[1], c[2], f"g{c[3]}") if p)


@pytest.mark.parametrize("mode, transform, nearest, geo", CASES, ids=[_case_id(c) for c in CASES])
def test_resize_agrees_with_onnxruntime(mode: str, transform: str, nearest: str, geo: int) -> None:
    attrs: dict[str, Any] = {"mode": mode, "coordinate_transformation_mode": transform}
    if nearest:
        attrs["nearest_mode"] = nearest
    scales, sizes = GEOMETRIES[geo]
    _agrees(_resize(attrs, scales, sizes, batch=2), _x(), ["numpy"])


@pytest.mark.parametrize(
    "attrs",
    [
        {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
        {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
        {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
        {"mode": "cubic", "coordinate_transformation_mode": "half_pixel", "exclude_outside": 1, "cubic_coeff_a": -0.5},
    ],
    ids=["nearest", "linear", "linear-align_corners", "cubic-exclude_outside"],
)
def test_resize_runs_on_every_target(attrs: dict[str, Any]) -> None:
    _agrees(_resize(attrs, [1, 1, 2, 1.5]), _x(), TARGETS)


def test_cubic_exclude_outside_matters() -> None:
    """The exclude_outside case above is not vacuous: it changes the border values."""
    base = {"mode": "cubic", "coordinate_transformation_mode": "half_pixel", "cubic_coeff_a": -0.5}
    a = _ort(_resize(base, [1, 1, 2, 1.5]), {"x": _x()})[0]
    b = _ort(_resize({**base, "exclude_outside": 1}, [1, 1, 2, 1.5]), {"x": _x()})[0]
    assert np.abs(a - b).max() > 1e-3


def test_axes_attribute_resizes_only_those_axes() -> None:
    attrs = {"mode": "linear", "axes": [3]}
    _agrees(_resize(attrs, [2.0]), _x(), ["numpy", "onnx"])


@pytest.mark.parametrize("op, opset", [("Resize", 10), ("Upsample", 9)])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_legacy_resize_and_upsample(op: str, opset: int, mode: str) -> None:
    """Opsets before 11: asymmetric coordinates, nearest rounding down when enlarging."""
    _agrees(_resize({"mode": mode}, [1, 1, 1.5, 2.5], opset=opset, op=op), _x(), ["numpy", "torch"])


def test_downsampling_resize_10_rounds_up() -> None:
    _agrees(_resize({"mode": "nearest"}, [1, 1, 0.6, 0.5], opset=10), _x(), ["numpy"])


# -- torch's F.interpolate ----------------------------------------------------------------------


def _torch_model(kind: str) -> Any:
    import torch
    import torch.nn.functional as fn

    class Up(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if kind == "nearest":
                return fn.interpolate(x, scale_factor=2, mode="nearest")
            if kind == "bilinear":
                return fn.interpolate(x, scale_factor=(2, 3), mode="bilinear", align_corners=False)
            if kind == "bilinear-align_corners":
                return fn.interpolate(x, size=(9, 11), mode="bilinear", align_corners=True)
            if kind == "bicubic":
                return fn.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
            return fn.interpolate(x, size=(3, 4), mode="bilinear", align_corners=False)  # shrinking

    return Up()


@pytest.mark.parametrize("kind", ["nearest", "bilinear", "bilinear-align_corners", "bicubic", "bilinear-down"])
def test_torch_interpolate_exports_agree(kind: str) -> None:
    import torch

    module = _torch_model(kind)
    x = _x(1)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.from_numpy(x),),
            buf,
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            dynamic_axes={"x": {0: "B"}},
        )
    model = onnx.load_from_string(buf.getvalue())
    assert any(n.op_type == "Resize" for n in model.graph.node)
    with torch.no_grad():
        np.testing.assert_allclose(_ort(model, {"x": x})[0], module(torch.from_numpy(x)).numpy(), **TOL)
    _agrees(model, x, TARGETS)


# -- refusals -----------------------------------------------------------------------------------


def _refused(model: Any, *fragments: str) -> None:
    with pytest.raises(DlirError) as e:
        from_onnx(model)
    text = str(e.value) + (e.value.hint or "")
    for f in fragments:
        assert f in text, text


def test_unsupported_resize_options_are_refused() -> None:
    _refused(
        _resize({"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"}, [1, 1, 2, 2]),
        "tf_crop_and_resize",
        "half_pixel",
    )
    _refused(_resize({"mode": "linear", "antialias": 1}, [1, 1, 0.5, 0.5]), "antialias")
    _refused(
        _resize({"mode": "linear", "keep_aspect_ratio_policy": "not_larger"}, sizes=[2, 3, 8, 8], batch=2),
        "keep_aspect_ratio_policy",
    )


def test_resizing_a_symbolic_axis_is_refused() -> None:
    model = _resize({"mode": "nearest"}, [2, 1, 1, 1])  # the batch axis is symbolic
    _refused(model, "symbolic size", "Resize")
