"""ONNX ``Attention`` (opset 23) imported as matmul/softmax/matmul, checked against ONNX Runtime on the
same file on every target."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper

from dlir.errors import DlirError
from dlir.importer import from_onnx

TARGETS = ["numpy", "torch", "tensorflow", "onnx"]
TOL = {"rtol": 1e-5, "atol": 1e-5}


def _model(
    q: tuple[int, ...], kv: tuple[int, ...], attrs: dict[str, Any], mask: np.ndarray | None, outs: tuple[str, ...]
) -> tuple[Any, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    names = ["q", "k", "v"] + (["m"] if mask is not None else [])
    node = helper.make_node("Attention", names, list(outs), **attrs)
    f = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("q", f, ["N", *q[1:]])]
    inputs += [helper.make_tensor_value_info(x, f, ["N", *kv[1:]]) for x in "kv"]
    feeds = {"q": rng.standard_normal(q), "k": rng.standard_normal(kv), "v": rng.standard_normal(kv)}
    feeds = {k: v.astype(np.float32) for k, v in feeds.items()}
    if mask is not None:
        mtype = TensorProto.BOOL if mask.dtype == bool else f
        inputs.append(helper.make_tensor_value_info("m", mtype, list(mask.shape)))
        feeds["m"] = mask
    g = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info(o, f, None) for o in outs])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 23)])
    m.ir_version = 10
    return m, feeds


def _ort(model: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


_rng = np.random.default_rng(1)
_BOOL_MASK = (_rng.random((1, 1, 5, 6)) > 0.3) | (np.arange(6) == 0)  # no row fully masked
_CAUSAL_AND_MASK = (_rng.random((6, 6)) > 0.3) | np.eye(6, dtype=bool)
_ROW_MASKED = _BOOL_MASK.copy()
_ROW_MASKED[..., 2, :] = False  # query 2 may attend to no key: its Y is 0
CASES = {
    "plain": ((2, 4, 5, 8), (2, 4, 6, 8), {}, None, ("y",)),
    "gqa-scale-softcap": ((2, 4, 5, 8), (2, 2, 6, 8), {"scale": 0.3, "softcap": 2.0}, None, ("y",)),
    "3d-gqa-present": ((2, 5, 32), (2, 6, 16), {"q_num_heads": 4, "kv_num_heads": 2}, None, ("y", "pk", "pv")),
    "causal": ((2, 4, 5, 8), (2, 4, 5, 8), {"is_causal": 1}, None, ("y",)),
    "bool-mask": ((2, 4, 5, 8), (2, 4, 6, 8), {}, _BOOL_MASK, ("y",)),
    "float-mask": ((2, 4, 5, 8), (2, 4, 6, 8), {}, _rng.standard_normal((5, 6)).astype(np.float32), ("y",)),
    "causal-and-bool-mask": ((2, 4, 6, 8), (2, 4, 6, 8), {"is_causal": 1}, _CAUSAL_AND_MASK, ("y",)),
    "fully-masked-row": ((2, 4, 5, 8), (2, 4, 6, 8), {}, _ROW_MASKED, ("y",)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_attention_agrees_with_onnxruntime(name: str) -> None:
    model, feeds = _model(*CASES[name])
    want = _ort(model, feeds)
    m = from_onnx(model)
    for t in TARGETS:
        got = m.compile(t)(**{m.input_names[k]: v for k, v in feeds.items()})
        got = got if isinstance(got, tuple) else (got,)
        assert len(got) == len(want), t
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape, (t, g.shape, w.shape)
            np.testing.assert_allclose(g, w, **TOL, err_msg=t)


def test_the_options_change_the_result() -> None:
    """The cases above are not vacuous: softcap, the masks and causality each change Y."""
    plain = _ort(*_model(*CASES["plain"]))[0]
    for name in ("bool-mask", "float-mask"):
        assert np.abs(_ort(*_model(*CASES[name]))[0] - plain).max() > 1e-2, name
    q, kv, attrs, mask, outs = CASES["gqa-scale-softcap"]
    capped = _ort(*_model(q, kv, attrs, mask, outs))[0]
    uncapped = _ort(*_model(q, kv, {"scale": 0.3}, mask, outs))[0]
    assert np.abs(capped - uncapped).max() > 1e-3
    causal = _ort(*_model(*CASES["causal"]))[0]
    assert np.abs(causal - _ort(*_model((2, 4, 5, 8), (2, 4, 5, 8), {}, None, ("y",)))[0]).max() > 1e-2
    masked = _ort(*_model(*CASES["fully-masked-row"]))[0]
    assert not masked[:, :, 2].any() and masked[:, :, 1].any()


def test_unsupported_attention_forms_are_refused() -> None:
    model, _ = _model((2, 4, 5, 8), (2, 4, 6, 8), {}, None, ("y", "", "", "qk"))
    with pytest.raises(DlirError, match="qk_matmul_output"):
        from_onnx(model)
    model, _ = _model((2, 4, 5, 8), (2, 4, 5, 8), {"is_causal": 1}, None, ("y",))
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "S"
    model.graph.input[1].type.tensor_type.shape.dim[2].dim_param = "S"
    model.graph.input[2].type.tensor_type.shape.dim[2].dim_param = "S"
    with pytest.raises(DlirError, match="static sequence lengths"):
        from_onnx(model)
