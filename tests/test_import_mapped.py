"""Import issue 15, part D: ONNX ops the importer writes with existing dlir ops (hyperbolic
functions, Shrink, IsInf/IsNaN, Lp and mean-variance normalisation, Hardmax, OneHot,
Space/DepthToSpace, Tile, EyeLike, Dropout's mask), each checked against ONNX Runtime on the
same file on every target."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_import import _check_against_ort, _model, _vi

from dlir.errors import DlirError
from dlir.importer import from_onnx

RNG = np.random.default_rng(11)


def _unary(op: str, x: np.ndarray, out_type: int = TensorProto.FLOAT, opset: int = 20, **attrs: Any) -> Any:
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    return _model([node], [_vi("x", list(x.shape))], [_vi("y", list(x.shape), out_type)], opset=opset)


HYPERBOLIC = {
    "Cosh": np.linspace(-6, 6, 12),
    "Sinh": np.linspace(-6, 6, 12),
    "Tan": np.linspace(-1.4, 1.4, 12),
    "Asinh": np.array([-20.0, -3.0, -0.5, -1e-3, 0.0, 1e-3, 0.5, 3.0, 20.0, 1e4, -1e4, 7.0]),
    "Acosh": np.linspace(1.0, 30.0, 12),
    "Atanh": np.linspace(-0.95, 0.95, 12),
}


@pytest.mark.parametrize("op", sorted(HYPERBOLIC))
def test_hyperbolic_and_tan(op: str) -> None:
    x = HYPERBOLIC[op].astype(np.float32).reshape(3, 4)
    _check_against_ort(_unary(op, x), {"x": x})


@pytest.mark.parametrize("lambd, bias", [(0.5, 0.0), (1.5, 1.5), (0.2, -0.3)])
def test_shrink(lambd: float, bias: float) -> None:
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    _check_against_ort(_unary("Shrink", x, opset=13, lambd=lambd, bias=bias), {"x": x})


SPECIAL = np.array(
    [[np.inf, -np.inf, np.nan, 0.0], [1.0, -1.0, 3e38, -3e38], [np.finfo(np.float32).max, 5.0, -7.0, 1e-30]], np.float32
)


@pytest.mark.parametrize("pos, neg", [(1, 1), (1, 0), (0, 1), (0, 0)])
def test_isinf_detects_the_signs_asked_for_and_not_nan(pos: int, neg: int) -> None:
    model = _unary("IsInf", SPECIAL, TensorProto.BOOL, detect_positive=pos, detect_negative=neg)
    _check_against_ort(model, {"x": SPECIAL})


def test_isnan() -> None:
    _check_against_ort(_unary("IsNaN", SPECIAL, TensorProto.BOOL), {"x": SPECIAL})


@pytest.mark.parametrize("p, axis", [(2, -1), (2, 0), (1, 1)])
def test_lp_normalization_leaves_an_all_zero_row_zero(p: int, axis: int) -> None:
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    x[1, :] = 0.0
    x[:, 2] = 0.0
    m = _check_against_ort(_unary("LpNormalization", x, opset=13, p=p, axis=axis), {"x": x})
    y = m.compile("numpy")(x=x)
    assert np.isfinite(y).all() and not y[1].any()


def test_lp_normalization_with_p3_is_a_clear_error() -> None:
    with pytest.raises(DlirError) as e:
        from_onnx(_unary("LpNormalization", np.ones((2, 2), np.float32), opset=13, p=3))
    assert "p=3" in e.value.message


@pytest.mark.parametrize("axes", [None, [1], [0, 1, 2, 3]])
def test_mean_variance_normalization(axes: list[int] | None) -> None:
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32) * 3 + 1
    attrs = {"axes": axes} if axes is not None else {}
    _check_against_ort(_unary("MeanVarianceNormalization", x, opset=13, **attrs), {"x": x})


@pytest.mark.parametrize("opset, axis", [(13, -1), (13, 0), (13, 1), (11, 1), (11, 0)])
def test_hardmax_marks_the_first_of_tied_maxima(opset: int, axis: int) -> None:
    x = RNG.integers(0, 3, (3, 4, 5)).astype(np.float32)  # ties in every row
    _check_against_ort(_unary("Hardmax", x, opset=opset, axis=axis), {"x": x})


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_one_hot_with_negative_and_out_of_range_ids(axis: int) -> None:
    ids = np.array([[0, 3, -1], [-4, 7, 2]], np.int64)  # -1 -> 3, -4 -> 0, 7 matches nothing
    out = [2, 3]
    out.insert(axis % 3 if axis >= 0 else 2, 4)
    node = helper.make_node("OneHot", ["ids", "depth", "values"], ["y"], axis=axis)
    inits = [
        numpy_helper.from_array(np.array(4, np.int64), "depth"),
        numpy_helper.from_array(np.array([-2.0, 5.0], np.float32), "values"),
    ]
    model = _model([node], [_vi("ids", [2, 3], TensorProto.INT64)], [_vi("y", out)], inits, opset=11)
    _check_against_ort(model, {"ids": ids})


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space_modes(mode: str) -> None:
    x = RNG.standard_normal((2, 8, 3, 2)).astype(np.float32)
    node = helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, mode=mode)
    model = _model([node], [_vi("x", [2, 8, 3, 2])], [_vi("y", [2, 2, 6, 4])], opset=13)
    _check_against_ort(model, {"x": x})


def test_space_to_depth_undoes_depth_to_space() -> None:
    x = RNG.standard_normal((2, 3, 4, 6)).astype(np.float32)
    s2d = helper.make_node("SpaceToDepth", ["x"], ["s"], blocksize=2)
    d2s = helper.make_node("DepthToSpace", ["s"], ["y"], blocksize=2)
    model = _model([s2d, d2s], [_vi("x", [2, 3, 4, 6])], [_vi("y", [2, 3, 4, 6]), _vi("s", [2, 12, 2, 3])], opset=13)
    m = _check_against_ort(model, {"x": x})
    np.testing.assert_array_equal(m.compile("numpy")(x=x)[0], x)


def test_space_to_depth_of_an_odd_size_is_a_clear_error() -> None:
    node = helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=2, name="s2d")
    model = _model([node], [_vi("x", [1, 1, 3, 4])], [_vi("y", [1, 4, 1, 2])], opset=13)
    with pytest.raises(DlirError) as e:
        from_onnx(model)
    assert "node 's2d'" in e.value.message and "multiples of blocksize 2" in e.value.message


@pytest.mark.parametrize("reps", [[1, 1, 1], [2, 1, 3], [3, 2, 2]])
def test_tile_copies_whole_tensors_in_order(reps: list[int]) -> None:
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    node = helper.make_node("Tile", ["x", "r"], ["y"])
    out = [d * r for d, r in zip(x.shape, reps, strict=True)]
    model = _model(
        [node], [_vi("x", [2, 3, 4])], [_vi("y", out)], [numpy_helper.from_array(np.array(reps, np.int64), "r")]
    )
    _check_against_ort(model, {"x": x})


@pytest.mark.parametrize("k, dtype", [(0, None), (1, TensorProto.INT64), (-2, TensorProto.FLOAT)])
def test_eye_like(k: int, dtype: int | None) -> None:
    attrs = {"k": k} | ({"dtype": dtype} if dtype is not None else {})
    node = helper.make_node("EyeLike", ["x"], ["e"], **attrs)
    add = helper.make_node("Add", ["x", "e2"], ["y"])
    cast = helper.make_node("Cast", ["e"], ["e2"], to=TensorProto.FLOAT)
    model = _model([node, cast, add], [_vi("x", [3, 4])], [_vi("y", [3, 4])], opset=13)
    _check_against_ort(model, {"x": RNG.standard_normal((3, 4)).astype(np.float32)})


def test_dropout_mask_at_inference_keeps_everything() -> None:
    node = helper.make_node("Dropout", ["x"], ["y", "mask"], seed=0)
    model = _model([node], [_vi("x", [3, 4])], [_vi("y", [3, 4]), _vi("mask", [3, 4], TensorProto.BOOL)], opset=13)
    _check_against_ort(model, {"x": RNG.standard_normal((3, 4)).astype(np.float32)})
