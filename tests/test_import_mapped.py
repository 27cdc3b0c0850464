"""Import issue 15, part D: ONNX ops the importer writes with existing dlir ops (hyperbolic
functions, Shrink, IsInf/IsNaN), each checked against ONNX Runtime on the same file on every target."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper
from test_import import _check_against_ort, _model, _vi

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
