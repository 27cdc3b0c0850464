"""The convention table (docs/conventions.md): the rows not already tested elsewhere.

Every row of the table names the tests that back it; the first test here parses
the document and checks that each named test exists. The others run one small
model per topic on every target (numpy, torch, tensorflow, onnx) and compare
with what the table says, or with a framework's own op.
"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dlir
from dlir import interop

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "conventions.md"
TARGETS = ["numpy", "torch", "tensorflow", "onnx"]
TOL = {"rtol": 1e-5, "atol": 1e-5}
TEST_REF = re.compile(r"tests/(test_\w+\.py)::(test_\w+)")


def _table_rows(text: str) -> list[str]:
    rows = [ln for ln in text.splitlines() if ln.startswith("|")]
    return [r for r in rows if not re.match(r"^\|[\s|:-]+\|$", r) and not r.startswith("| topic")]


def test_every_row_names_tests_that_exist() -> None:
    text = DOC.read_text(encoding="utf-8")
    rows = _table_rows(text)
    assert len(rows) >= 25
    for row in rows:
        refs = TEST_REF.findall(row)
        assert refs, f"this row of docs/conventions.md names no test: {row[:80]}"
        for file, name in refs:
            path = ROOT / "tests" / file
            assert path.is_file(), f"{file} (named in docs/conventions.md) does not exist"
            assert re.search(rf"^def {name}\(", path.read_text(encoding="utf-8"), re.M), f"{file} has no test {name}"


def test_readme_links_the_convention_table() -> None:
    assert "docs/conventions.md" in (ROOT / "README.md").read_text(encoding="utf-8")


# -- one model with an output per small convention, compiled once per target -----------------
MISC = """
model Misc(a: i32[6], b: i32[6], la: i64[6], lb: i64[6], f: f32[6], x: f32[2, 3, 4],
           table: f32[5, 3], idx: i64[4], hot: i64[4], ties: f32[2, 4]) -> (
        idiv: i32[6], ldiv: i64[6], to_i32: i32[6], to_i64: i64[6],
        take: f32[4, 3], oh: f32[4, 3], am: i64[2],
        var0: f32[2, 4], var1: f32[2, 4], ge: f32[6], sm: f32[2, 3, 4], drop: f32[2, 3, 4]) {
    return (a / b, la / lb, cast(f, i32), cast(f, i64),
            gather(table, idx, axis=0), one_hot(hot, n=3), argmax(ties, axis=1),
            var(x, axis=1), var(x, axis=1, correction=1), gelu(f), softmax(x, axis=1), dropout(x, p=0.5))
}
"""

_rng = np.random.default_rng(0)
MISC_IN = {
    "a": np.array([-7, 7, -7, 7, -1, 0], np.int32),
    "b": np.array([2, -2, -2, 2, 3, 5], np.int32),
    "la": np.array([-7, 7, -9, 9, -1, 4], np.int64),
    "lb": np.array([2, -2, 4, 4, 3, -3], np.int64),
    "f": np.array([-1.7, -0.5, 0.5, 1.7, -2.0, 2.9], np.float32),
    "x": _rng.standard_normal((2, 3, 4)).astype(np.float32),
    "table": _rng.standard_normal((5, 3)).astype(np.float32),
    "idx": np.array([-1, 0, -5, 2], np.int64),
    "hot": np.array([-1, 0, 2, 3], np.int64),
    "ties": np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]], np.float32),
}


@functools.cache
def _misc(target: str) -> dict[str, np.ndarray]:
    run = dlir.compile(dlir.loads(MISC, "<conventions>"), target)
    return dict(zip(run.output_names, run(**MISC_IN)))


def _trunc_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (np.sign(a) * np.sign(b) * (np.abs(a) // np.abs(b))).astype(a.dtype)


@pytest.mark.parametrize("target", TARGETS)
def test_integer_division_truncates_on_every_target(target: str) -> None:
    out = _misc(target)
    i = MISC_IN
    np.testing.assert_array_equal(out["idiv"], [-3, -3, 3, 3, 0, 0])  # -7 / 2 = -3, not Python's -4
    np.testing.assert_array_equal(out["ldiv"], _trunc_div(i["la"], i["lb"]))
    assert out["idiv"].dtype == np.int32 and out["ldiv"].dtype == np.int64


@pytest.mark.parametrize("target", TARGETS)
def test_float_to_int_cast_truncates_on_every_target(target: str) -> None:
    out = _misc(target)
    np.testing.assert_array_equal(out["to_i32"], [-1, 0, 0, 1, -2, 2])
    np.testing.assert_array_equal(out["to_i64"], [-1, 0, 0, 1, -2, 2])


@pytest.mark.parametrize("target", TARGETS)
def test_gather_negative_indices_count_from_the_end(target: str) -> None:
    t = MISC_IN["table"]
    np.testing.assert_array_equal(_misc(target)["take"], t[[4, 0, 0, 2]])


@pytest.mark.parametrize("target", TARGETS)
def test_one_hot_out_of_range_gives_zero_rows(target: str) -> None:
    want = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0]], np.float32)  # -1 and 3 are outside [0, 3)
    np.testing.assert_array_equal(_misc(target)["oh"], want)


@pytest.mark.parametrize("target", TARGETS)
def test_argmax_ties_pick_the_first_index(target: str) -> None:
    out = _misc(target)["am"]
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [1, 0])


@pytest.mark.parametrize("target", TARGETS)
def test_var_is_the_population_variance_unless_asked(target: str) -> None:
    out, x = _misc(target), MISC_IN["x"].astype(np.float64)
    np.testing.assert_allclose(out["var0"], x.var(axis=1), **TOL)
    np.testing.assert_allclose(out["var1"], x.var(axis=1, ddof=1), **TOL)


@pytest.mark.parametrize("target", TARGETS)
def test_gelu_is_the_exact_erf_form(target: str) -> None:
    f = MISC_IN["f"].astype(np.float64)
    want = [0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in f]
    np.testing.assert_allclose(_misc(target)["ge"], want, **TOL)


@pytest.mark.parametrize("target", TARGETS)
def test_softmax_is_over_one_axis_on_every_target(target: str) -> None:
    x = MISC_IN["x"].astype(np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    got = _misc(target)["sm"]
    np.testing.assert_allclose(got, e / e.sum(axis=1, keepdims=True), **TOL)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, **TOL)  # not normalised over the flattened axes 1..2


@pytest.mark.parametrize("target", TARGETS)
def test_dropout_is_the_identity_on_every_target(target: str) -> None:
    np.testing.assert_array_equal(_misc(target)["drop"], MISC_IN["x"])


# -- padding and pooling -----------------------------------------------------------------------------
PADS = """
model Pads(x: f32[B, 2, 8, 9], w: f32[3, 2, 4, 3]) -> (
        same: f32[B, 3, 4, 5], asym: f32[B, 3, 7, 11], pool: f32[B, 2, 4, 4]) {
    return (conv2d(x, w, stride=2, padding="same"), conv2d(x, w, padding=[0, 1, 2, 3]), max_pool2d(x, kernel=2))
}
"""
PX = np.random.default_rng(1).standard_normal((2, 2, 8, 9)).astype(np.float32)
PW = np.random.default_rng(2).standard_normal((3, 2, 4, 3)).astype(np.float32)


@functools.cache
def _pads(target: str) -> tuple[np.ndarray, ...]:
    return tuple(dlir.compile(dlir.loads(PADS, "<pads>"), target)(x=PX, w=PW))


@pytest.fixture(scope="module")
def F() -> Any:
    import torch

    return torch.nn.functional


def _tconv(F: Any, x: np.ndarray, w: np.ndarray, stride: int, lrtb: tuple[int, int, int, int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return F.conv2d(F.pad(torch.from_numpy(x), lrtb), torch.from_numpy(w), stride=stride).numpy()


def test_same_padding_puts_the_extra_cell_at_the_end() -> None:
    g = dlir.loads(PADS, "<pads>").graph()
    same = next(n for n in g.nodes if n.op == "conv2d")
    # H=8, k=4, s=2: total 2 -> 1 + 1; W=9, k=3, s=2: total 2 -> 1 + 1 ... and with odd totals the extra goes last:
    assert same.attrs["padding"] == [1, 1, 1, 1]
    src = 'model M(x: f32[1, 1, 8, 8], w: f32[1, 1, 4, 4]) -> f32[1, 1, 8, 8] { return conv2d(x, w, padding="same") }'
    odd = dlir.loads(src).graph()
    assert odd.nodes[-1].attrs["padding"] == [1, 1, 2, 2]  # [top, left, bottom, right]


@pytest.mark.parametrize("target", TARGETS)
def test_asymmetric_padding_is_top_left_bottom_right(target: str, F: Any) -> None:
    same, asym, _ = _pads(target)
    np.testing.assert_allclose(same, _tconv(F, PX, PW, 2, (1, 1, 1, 1)), **TOL)
    np.testing.assert_allclose(asym, _tconv(F, PX, PW, 1, (1, 3, 0, 2)), **TOL)  # F.pad: (left, right, top, bottom)


@pytest.mark.parametrize("target", TARGETS)
def test_pool_stride_defaults_to_the_kernel(target: str, F: Any) -> None:
    import torch

    want = F.max_pool2d(torch.from_numpy(PX), 2).numpy()
    np.testing.assert_array_equal(_pads(target)[2], want)


# -- batch norm is the inference form ------------------------------------------------------------
BN = """
use nn
model Bn(x: f32[B, 3, 4, 4]) -> f32[B, 3, 4, 4] {
    bn = BatchNorm2d(3)
    return bn(x)
}
"""


@pytest.fixture(scope="module")
def bn_case() -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    import torch

    torch.manual_seed(0)
    m = torch.nn.BatchNorm2d(3)
    with torch.no_grad():
        m.weight.uniform_(0.5, 2)
        m.bias.uniform_(-1, 1)
        m.running_mean.uniform_(-1, 1)
        m.running_var.uniform_(0.5, 2)
    x = np.random.default_rng(3).standard_normal((4, 3, 4, 4)).astype(np.float32) * 2 + 1
    params = interop.torch_batchnorm2d(m.state_dict(), dst="bn")
    with torch.no_grad():
        want = m.eval()(torch.from_numpy(x)).numpy()
        train = m.train()(torch.from_numpy(x)).numpy()
    return params, x, want, train


@pytest.mark.parametrize("target", TARGETS)
def test_batch_norm_is_the_inference_form(target: str, bn_case: Any) -> None:
    params, x, want, train = bn_case
    run = dlir.compile(dlir.loads(BN, "<bn>"), target)
    run.load_params(params)
    got = run(x=x)
    np.testing.assert_allclose(got, want, **TOL)
    assert not np.allclose(got, train, atol=1e-2)  # torch's train() mode uses the batch statistics
    np.testing.assert_allclose(run(x=x[:1]), got[:1], **TOL)  # no sample depends on the others


# -- attention: a query that sees no key -------------------------------------------------------------
ATT = """
use nn
model Att(x: f32[B, T, 4], mask: bool[T, T]) -> f32[B, T, 4] {
    attn = MultiHeadAttention(4, 2)
    return attn(x, x, x, mask)
}
"""


@pytest.mark.parametrize("target", TARGETS)
def test_fully_masked_row_attends_uniformly(target: str) -> None:
    run = dlir.compile(dlir.loads(ATT, "<att>"), target)
    x = np.random.default_rng(4).standard_normal((2, 3, 4)).astype(np.float32)
    mask = np.array([[True, False, False], [False, False, False], [True, True, True]])
    out = run(x=x, mask=mask)
    p = run.params
    v = x.astype(np.float64) @ p["attn.v_proj.w"] + p["attn.v_proj.b"]
    uniform = v.mean(axis=1) @ p["attn.out_proj.w"] + p["attn.out_proj.b"]  # every head averages all values
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[:, 1], uniform, **TOL)
    np.testing.assert_allclose(out[:, 0], v[:, 0] @ p["attn.out_proj.w"] + p["attn.out_proj.b"], **TOL)


# -- ONNX recurrent ops, mapped through dlir.interop ----------------------------------------------------
RNNS = """
use nn
model L(x: f32[B, T, 3], h0: f32[B, 4], c0: f32[B, 4]) -> (hs: f32[B, T, 4], h: f32[B, 4], c: f32[B, 4]) {
    lstm = LSTM(3, 4)
    return lstm(x, h0, c0)
}
model G(x: f32[B, T, 3], h0: f32[B, 4]) -> (hs: f32[B, T, 4], h: f32[B, 4]) {
    gru = GRU(3, 4)
    return gru(x, h0)
}
"""


def _onnx_recurrent(
    op: str, gates: int, extra: dict[str, Any], x: np.ndarray, states: list[np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Run one ONNX LSTM/GRU node (layout 0: [T, B, In]) in ONNX Runtime with random W, R, B."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    rng = np.random.default_rng(5)
    h = states[0].shape[1]
    w = rng.uniform(-0.6, 0.6, (1, gates * h, x.shape[2])).astype(np.float32)
    r = rng.uniform(-0.6, 0.6, (1, gates * h, h)).astype(np.float32)
    b = rng.uniform(-0.6, 0.6, (1, 2 * gates * h)).astype(np.float32)
    names = ["X", "W", "R", "B", "", "initial_h"] + (["initial_c"] if op == "LSTM" else [])
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    node = helper.make_node(op, names, outs, hidden_size=h, **extra)
    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info(n, f32, None) for n in names if n and n not in ("W", "R", "B")]
    graph = helper.make_graph(
        [node], "rec", inputs, [helper.make_tensor_value_info(n, f32, None) for n in outs],
        initializer=[onnx.numpy_helper.from_array(a, n) for a, n in ((w, "W"), (r, "R"), (b, "B"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {"X": x.transpose(1, 0, 2).copy(), "initial_h": states[0][None]}
    if op == "LSTM":
        feeds["initial_c"] = states[1][None]
    res = sess.run(None, feeds)
    y = res[0][:, 0].transpose(1, 0, 2)  # [T, dirs, B, H] -> [B, T, H]
    return [w, r, b], [y] + [s[0] for s in res[1:]]


RX = np.random.default_rng(6).standard_normal((2, 5, 3)).astype(np.float32)
RH = np.random.default_rng(7).standard_normal((2, 4)).astype(np.float32) * 0.5
RC = np.random.default_rng(8).standard_normal((2, 4)).astype(np.float32) * 0.5


def test_onnx_lstm_gate_order_maps_through_interop() -> None:
    (w, r, b), want = _onnx_recurrent("LSTM", 4, {}, RX, [RH, RC])
    run = dlir.compile(dlir.loads(RNNS, "<rnns>"), "numpy", model="L")
    run.load_params(interop.onnx_lstm(w, r, b, dst="lstm"))
    for g, e in zip(run(x=RX, h0=RH, c0=RC), want):
        np.testing.assert_allclose(g, e, **TOL)


def test_onnx_gru_gate_order_maps_through_interop() -> None:
    (w, r, b), want = _onnx_recurrent("GRU", 3, {"linear_before_reset": 1}, RX, [RH])
    run = dlir.compile(dlir.loads(RNNS, "<rnns>"), "numpy", model="G")
    run.load_params(interop.onnx_gru(w, r, b, dst="gru"))
    for g, e in zip(run(x=RX, h0=RH), want):
        np.testing.assert_allclose(g, e, **TOL)
    # ONNX's default linear_before_reset=0 is a different function of the same weights:
    _, before = _onnx_recurrent("GRU", 3, {}, RX, [RH])
    assert not np.allclose(before[0], want[0], atol=1e-3)


# -- NCHW in dlir, NHWC in TensorFlow's kernels ------------------------------------------------------
def test_tensorflow_code_transposes_only_around_conv_and_pool() -> None:
    """LeNet's four conv/pool ops stay in NHWC together: at most one layout change in and one out."""
    run = dlir.compile(dlir.load(ROOT / "samples" / "cnn.dlir"), "tensorflow")
    moves = [ln for ln in run.source.splitlines() if re.search(r"tf\.transpose\((?!self\.)", ln)]
    assert len(moves) <= 2, "\n".join(moves)
    x = np.random.default_rng(9).standard_normal((3, 1, 28, 28)).astype(np.float32)
    ref = dlir.compile(dlir.load(ROOT / "samples" / "cnn.dlir"), "numpy")
    np.testing.assert_allclose(run(x=x), ref(x=x), **TOL)  # flatten order (C, H, W) kept
