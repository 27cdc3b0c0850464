"""Import issue 15, part D: ONNX's losses and ArgMax/ArgMin's select_last_index, each checked
against ONNX Runtime on the same file on every target."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_import import _check_against_ort, _model, _vi

from dlir.errors import DlirError
from dlir.importer import from_onnx

N, C, D = 3, 5, 4


def _loss_model(op: str, weight: bool, out_shape: list[int], log_prob: bool = False, **attrs: Any) -> Any:
    ins = ["x", "t"] + (["w"] if weight else [])
    outs = ["loss"] + (["logp"] if log_prob else [])
    node = helper.make_node(op, ins, outs, **attrs)
    inputs = [_vi("x", [N, C, D]), _vi("t", [N, D], TensorProto.INT64)]
    if weight:
        inputs.append(_vi("w", [C]))
    outputs = [_vi("loss", out_shape)] + ([_vi("logp", [N, C, D])] if log_prob else [])
    return _model([node], inputs, outputs, opset=13)


def _feeds(weight: bool, ignore: int | None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    t = rng.integers(0, C, (N, D)).astype(np.int64)
    if ignore is not None:
        t[0, :2] = ignore  # some samples ignored, the rest count
    feeds = {"x": rng.standard_normal((N, C, D)).astype(np.float32), "t": t}
    if weight:
        feeds["w"] = rng.uniform(0.5, 2.0, C).astype(np.float32)
    return feeds


CASES = [  # reduction, weight, ignore_index
    ("mean", False, None),
    ("mean", True, None),
    ("mean", True, 2),
    ("mean", False, -100),
    ("sum", True, 1),
    ("none", False, 3),
    ("none", True, None),
]


@pytest.mark.parametrize("red, weight, ignore", CASES)
def test_nll_loss_weights_ignore_index_and_reductions(red: str, weight: bool, ignore: int | None) -> None:
    attrs: dict[str, Any] = {"reduction": red} | ({"ignore_index": ignore} if ignore is not None else {})
    shape = [N, D] if red == "none" else []
    model = _loss_model("NegativeLogLikelihoodLoss", weight, shape, **attrs)
    feeds = _feeds(weight, ignore)
    feeds["x"] = np.log(np.abs(feeds["x"]) + 0.1).astype(np.float32)  # any floats: the op does not normalise
    _check_against_ort(model, feeds)


@pytest.mark.parametrize("red, weight, ignore", CASES)
def test_softmax_cross_entropy_with_its_log_prob_output(red: str, weight: bool, ignore: int | None) -> None:
    attrs: dict[str, Any] = {"reduction": red} | ({"ignore_index": ignore} if ignore is not None else {})
    shape = [N, D] if red == "none" else []
    model = _loss_model("SoftmaxCrossEntropyLoss", weight, shape, log_prob=True, **attrs)
    _check_against_ort(model, _feeds(weight, ignore))


def test_mean_nll_of_the_two_ignored_samples_differs_from_counting_them() -> None:
    """mean divides by the weight of the samples that count, not by N*D: the difference is visible."""
    feeds = _feeds(False, 0)
    with_ii = from_onnx(_loss_model("NegativeLogLikelihoodLoss", False, [], ignore_index=0)).compile("numpy")
    without = from_onnx(_loss_model("NegativeLogLikelihoodLoss", False, [])).compile("numpy")
    x, t = feeds["x"].astype(np.float64), feeds["t"]
    picked = -np.take_along_axis(x, t[:, None, :], axis=1)[:, 0, :]
    keep = t != 0
    np.testing.assert_allclose(with_ii(x=feeds["x"], t=t), picked[keep].mean(), rtol=1e-5)
    np.testing.assert_allclose(without(x=feeds["x"], t=t), picked.mean(), rtol=1e-5)


def test_plain_2d_softmax_cross_entropy_stays_one_fused_op() -> None:
    node = helper.make_node("SoftmaxCrossEntropyLoss", ["x", "t"], ["loss"])
    model = _model([node], [_vi("x", [N, C]), _vi("t", [N], TensorProto.INT64)], [_vi("loss", [])], opset=13)
    rng = np.random.default_rng(3)
    feeds = {"x": rng.standard_normal((N, C)).astype(np.float32), "t": np.array([0, 4, 2], np.int64)}
    m = _check_against_ort(model, feeds)
    assert [n.op for n in m.graph.nodes] == ["cross_entropy"]


def test_nll_loss_with_a_target_of_the_wrong_rank_is_a_clear_error() -> None:
    node = helper.make_node("NegativeLogLikelihoodLoss", ["x", "t"], ["loss"], name="nll")
    model = _model([node], [_vi("x", [N, C, D]), _vi("t", [N], TensorProto.INT64)], [_vi("loss", [])], opset=13)
    with pytest.raises(DlirError) as e:
        from_onnx(model)
    assert "node 'nll'" in e.value.message and "rank 2" in e.value.message
    assert "[N, C, d1, ...]" in (e.value.hint or "")


def test_unknown_loss_reduction_is_a_clear_error() -> None:
    model = _loss_model("NegativeLogLikelihoodLoss", False, [], reduction="max")
    with pytest.raises(DlirError) as e:
        from_onnx(model)
    assert "unknown reduction 'max'" in e.value.message


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("axis, keepdims", [(1, 1), (-1, 0), (0, 1)])
def test_select_last_index_picks_the_last_of_tied_extremes(op: str, axis: int, keepdims: int) -> None:
    # Few distinct values: every row has ties, so first and last index differ.
    x = np.random.default_rng(5).integers(0, 3, (4, 6)).astype(np.float32)
    node = helper.make_node(op, ["x"], ["y"], axis=axis, keepdims=keepdims, select_last_index=1)
    out = list(x.shape)
    out[axis] = 1
    if not keepdims:
        del out[axis]
    model = _model([node], [_vi("x", [4, 6])], [_vi("y", out, TensorProto.INT64)], opset=13)
    m = _check_against_ort(model, {"x": x})
    first = (np.argmax if op == "ArgMax" else np.argmin)(x, axis=axis)
    got = m.compile("numpy")(x=x).reshape(first.shape)
    assert (got >= first).all() and (got != first).any()


def test_select_last_index_on_a_symbolic_axis_is_a_clear_error() -> None:
    node = helper.make_node("ArgMax", ["x"], ["y"], axis=0, select_last_index=1)
    model = _model([node], [_vi("x", ["B", 6])], [_vi("y", [1, 6], TensorProto.INT64)], opset=13)
    with pytest.raises(DlirError) as e:
        from_onnx(model)
    assert "select_last_index=1 needs a static size along axis 0" in e.value.message


@pytest.mark.parametrize("op", ["SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss"])
@pytest.mark.parametrize("target", ["numpy", "torch"])
def test_imported_loss_gradient_matches_finite_differences(op: str, target: str) -> None:
    """float64, weights and an ignored class: the gradient dlir derives through the mapping is the loss's."""
    from dlir.api import _with_gradients
    from dlir.autodiff import GradRunner
    from dlir.targets import runner_class

    node = helper.make_node(op, ["x", "t", "w"], ["loss"], ignore_index=1)
    inputs = [_vi("x", [N, C, D], TensorProto.DOUBLE), _vi("t", [N, D], TensorProto.INT64)]
    w = numpy_helper.from_array(np.linspace(0.5, 2.0, C), "w")
    m = from_onnx(_model([node], inputs, [_vi("loss", [], TensorProto.DOUBLE)], [w], opset=13))
    xname, tname = m.input_names["x"], m.input_names["t"]
    graph, wrt = _with_gradients(m.graph, [xname])
    run = GradRunner(runner_class(target)(graph, seed=0, device="cpu"), 1, wrt)
    run.load_params(m.params)
    feeds = _feeds(False, 1)
    x, t = feeds["x"].astype(np.float64), feeds["t"]
    loss, grads = run(**{xname: x, tname: t})
    ref = from_onnx(_model([node], inputs, [_vi("loss", [], TensorProto.DOUBLE)], [w], opset=13)).compile("numpy")
    rng = np.random.default_rng(0)
    v = rng.standard_normal(x.shape)
    eps = 1e-6
    fd = (ref(**{xname: x + eps * v, tname: t}) - ref(**{xname: x - eps * v, tname: t})) / (2 * eps)
    np.testing.assert_allclose(np.sum(grads[xname] * v), fd, rtol=1e-6, atol=1e-9)
    assert not grads[xname][0, :, :2].any()  # the ignored samples pass no gradient back
