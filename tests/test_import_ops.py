"""Import issue 15, part A: folding nodes on constants before refusing them, the refusal's
domain/opset/hints, and the logic, integer and indexing ops, each checked against ONNX
Runtime on the same file on every target."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_import import TARGETS, _check_against_ort, _model, _vi

import dlir
from dlir.errors import DlirError
from dlir.importer import from_onnx
from dlir.importer.to_source import source_and_param_names


def _init(name: str, a: np.ndarray) -> Any:
    return numpy_helper.from_array(a, name)


# -- folding before refusing -------------------------------------------------------------------


def test_mod_and_on_constants_fold_like_torch_attention_masks() -> None:
    """torch.onnx's causal mask: Mod/And on Range and constants, then Where on the input."""
    nodes = [
        helper.make_node("Range", ["zero", "four", "one"], ["r"]),
        helper.make_node("Mod", ["r", "two"], ["m"]),
        helper.make_node("Equal", ["m", "zero"], ["even"]),
        helper.make_node("Greater", ["r", "zero"], ["pos"]),
        helper.make_node("And", ["even", "pos"], ["keep"]),
        helper.make_node("Where", ["keep", "x", "fill"], ["y"]),
    ]
    inits = [_init(n, np.array(v, np.int64)) for n, v in (("zero", 0), ("four", 4), ("one", 1), ("two", 2))]
    inits.append(_init("fill", np.array(-1.0, np.float32)))
    model = _model(nodes, [_vi("x", [3, 4])], [_vi("y", [3, 4])], inits)
    m = _check_against_ort(model, {"x": np.arange(12, dtype=np.float32).reshape(3, 4)})
    # folded: no mod/and/range survives into the IR
    assert {n.op for n in m.graph.nodes} <= {"where", "constant"}


def test_an_op_dlir_lacks_folds_on_constants_with_onnx_reference() -> None:
    # Round and Det have no importer handler: on constants they are evaluated at import.
    nodes = [
        helper.make_node("Round", ["c"], ["h"]),
        helper.make_node("Det", ["d"], ["p"]),
        helper.make_node("Add", ["x", "h"], ["xh"]),
        helper.make_node("Mul", ["xh", "p"], ["y"]),
    ]
    c = np.array([[0.5, 2.0, -1.0], [3.0, 1.0, 3.0]], np.float32)
    d = np.array([[2.0, 1.0], [1.0, 3.0]], np.float32)
    model = _model(nodes, [_vi("x", [2, 3])], [_vi("y", [2, 3])], [_init("c", c), _init("d", d)], 17)
    _check_against_ort(model, {"x": np.ones((2, 3), np.float32)})


def test_refusal_lists_every_node_with_domain_opset_and_hints() -> None:
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Det", ["s"], ["hs"], name="on_shape"),
        helper.make_node("Det", ["x"], ["a"], name="hm"),
        helper.make_node("FusedGemm", ["a", "a"], ["b"], name="ms", domain="com.microsoft"),
        helper.make_node("DequantizeLinear", ["b", "sc"], ["y"], name="dq"),
    ]
    g = helper.make_graph(nodes, "g", [_vi("x", ["B", 3])], [_vi("y", ["B", 3]), _vi("hs", [2], TensorProto.INT64)],
                          [_init("sc", np.ones(2, np.float32))])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 9), helper.make_opsetid("com.microsoft", 1)])
    with pytest.raises(DlirError) as e:
        from_onnx(model)
    msg, hint = e.value.message, e.value.hint or ""
    assert "4 node(s)" in msg
    for part in ("Det (node 'on_shape', ai.onnx opset 9)", "Det (node 'hm', ai.onnx opset 9)",
                 "FusedGemm (node 'ms', com.microsoft opset 1)", "DequantizeLinear (node 'dq', ai.onnx opset 9)"):
        assert part in msg
    assert "do_constant_folding=True" in hint and "before quantizing" in hint and "com.microsoft" in hint


# -- logic, mod, bitwise, narrow ints -----------------------------------------------------------------


@pytest.mark.parametrize("op", ["And", "Or", "Xor"])
def test_boolean_ops(op: str) -> None:
    rng = np.random.default_rng(0)
    nodes = [helper.make_node(op, ["a", "b"], ["c"]), helper.make_node("Not", ["c"], ["y"])]
    model = _model(nodes, [_vi("a", [2, 3], TensorProto.BOOL), _vi("b", [3], TensorProto.BOOL)], [_vi("y", [2, 3], TensorProto.BOOL)])
    _check_against_ort(model, {"a": rng.random((2, 3)) < 0.5, "b": rng.random(3) < 0.5})


@pytest.mark.parametrize("fmod, dtype", [(0, np.int32), (1, np.int64), (1, np.float32), (0, np.int8)])
def test_mod_follows_the_divisor_or_the_dividend(fmod: int, dtype: Any) -> None:
    a = np.array([[-7, 7, -7, 7, 5, -3]], dtype)
    b = np.array([3, -3, -3, 3, 5, 2], dtype)
    elem = {np.int32: TensorProto.INT32, np.int64: TensorProto.INT64, np.float32: TensorProto.FLOAT, np.int8: TensorProto.INT8}[dtype]
    model = _model([helper.make_node("Mod", ["a", "b"], ["y"], fmod=fmod)], [_vi("a", [1, 6], elem), _vi("b", [6], elem)],
                   [_vi("y", [1, 6], elem)])
    m = _check_against_ort(model, {"a": a, "b": b})
    want = np.fmod(a, b) if fmod else np.mod(a, b)  # -7 mod 3 = 2 (divisor's sign), fmod gives -1
    got = m.compile("numpy")(**{m.input_names["a"]: a, m.input_names["b"]: b})
    np.testing.assert_array_equal(got, want)


def test_mod_fmod0_on_floats_is_refused() -> None:
    model = _model([helper.make_node("Mod", ["a", "a"], ["y"])], [_vi("a", [2])], [_vi("y", [2])])
    with pytest.raises(DlirError, match="fmod=1"):
        from_onnx(model)


def test_bitwise_and_shifts_on_uint8() -> None:
    nodes = [
        helper.make_node("BitwiseAnd", ["a", "b"], ["t"]),
        helper.make_node("BitwiseNot", ["t"], ["n"]),
        helper.make_node("BitShift", ["n", "s"], ["y"], direction="RIGHT"),
        helper.make_node("BitShift", ["a", "s"], ["z"], direction="LEFT"),
    ]
    u8 = TensorProto.UINT8
    model = _model(nodes, [_vi("a", [2, 4], u8), _vi("b", [2, 4], u8)], [_vi("y", [2, 4], u8), _vi("z", [2, 4], u8)],
                   [_init("s", np.array([0, 1, 3, 7], np.uint8))], opset=18)
    rng = np.random.default_rng(1)
    _check_against_ort(model, {"a": rng.integers(0, 256, (2, 4)).astype(np.uint8), "b": rng.integers(0, 256, (2, 4)).astype(np.uint8)})


def test_uint8_model_source_round_trips_through_the_language() -> None:
    nodes = [helper.make_node("Cast", ["x"], ["f"], to=TensorProto.FLOAT), helper.make_node("Relu", ["f"], ["y"])]
    model = _model(nodes, [_vi("x", [2, 3], TensorProto.UINT8)], [_vi("y", [2, 3])])
    m = from_onnx(model)
    text, _ = source_and_param_names(m.graph)
    assert "u8[2, 3]" in text
    again = dlir.loads(text).graph()
    x = np.arange(6, dtype=np.uint8).reshape(2, 3) * 40
    np.testing.assert_array_equal(dlir.compile(dlir.loads(text), "torch")(x=x), x.astype(np.float32))
    assert again.inputs[0].type.dtype.value == "u8"


def test_narrow_dtype_names_are_not_reserved_words() -> None:
    src = "model M(u8: f32[2], x: i8[2]) -> f32[2] {\n    i16 = u8 * 2.0\n    return i16 + cast(x, f32)\n}\n"
    run = dlir.compile(dlir.loads(src), "numpy")
    np.testing.assert_array_equal(run(u8=np.ones(2, np.float32), x=np.array([-3, 4], np.int8)), [-1.0, 6.0])


# -- indexing ------------------------------------------------------------------------------------


def test_gather_and_scatter_elements_with_negative_indices() -> None:
    nodes = [
        helper.make_node("GatherElements", ["x", "i"], ["g"], axis=1),
        helper.make_node("ScatterElements", ["x", "i", "g"], ["s"], axis=1, reduction="add"),
        helper.make_node("ScatterND", ["s", "p", "u"], ["y"]),
    ]
    i = np.array([[0, -1], [2, 2], [-3, 1]], np.int64)
    p = np.array([[0, 1], [2, -1]], np.int64)
    model = _model(nodes, [_vi("x", [3, 3]), _vi("u", [2])], [_vi("g", [3, 2]), _vi("y", [3, 3])], [_init("i", i), _init("p", p)], 18)
    rng = np.random.default_rng(2)
    _check_against_ort(model, {"x": rng.standard_normal((3, 3)).astype(np.float32), "u": np.array([5.0, 7.0], np.float32)})


@pytest.mark.parametrize("exclusive, reverse", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_cumsum_modes(exclusive: int, reverse: int) -> None:
    node = helper.make_node("CumSum", ["x", "ax"], ["y"], exclusive=exclusive, reverse=reverse)
    model = _model([node], [_vi("x", [2, 5])], [_vi("y", [2, 5])], [_init("ax", np.array(-1, np.int32))], 14)
    _check_against_ort(model, {"x": np.random.default_rng(3).standard_normal((2, 5)).astype(np.float32)})


@pytest.mark.parametrize("largest", [1, 0])
def test_topk_ties_take_the_lower_index(largest: int) -> None:
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1, largest=largest)
    x = np.array([[1.0, 3.0, 3.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0, -1.0]], np.float32)
    model = _model([node], [_vi("x", [2, 5])], [_vi("v", [2, 3]), _vi("i", [2, 3], TensorProto.INT64)],
                   [_init("k", np.array([3], np.int64))], 11)
    m = _check_against_ort(model, {"x": x})
    _, idx = m.compile("numpy")(**{m.input_names["x"]: x})
    np.testing.assert_array_equal(idx, [[1, 2, 0], [0, 1, 2]] if largest else [[3, 0, 4], [4, 0, 1]])


@pytest.mark.parametrize("upper, k", [(1, 0), (0, 0), (1, -1), (0, 2)])
def test_trilu(upper: int, k: int) -> None:
    node = helper.make_node("Trilu", ["x", "k"], ["y"], upper=upper)
    model = _model([node], [_vi("x", [2, 3, 4])], [_vi("y", [2, 3, 4])], [_init("k", np.array(k, np.int64))], 14)
    _check_against_ort(model, {"x": np.random.default_rng(4).standard_normal((2, 3, 4)).astype(np.float32)})


@pytest.mark.parametrize(
    "eq, shapes",
    [
        ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
        ("bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)]),
        ("ij->ji", [(3, 4)]),
        ("ij->i", [(3, 4)]),
        ("...ij,...jk", [(2, 3, 4), (2, 4, 2)]),
        ("i,i", [(5,), (5,)]),
        ("ik,kj->ji", [(3, 4), (4, 2)]),
        ("abc,cd->abd", [(2, 3, 4), (4, 5)]),
    ],
)
def test_einsum_forms_exporters_write(eq: str, shapes: list[tuple[int, ...]]) -> None:
    names = [f"x{i}" for i in range(len(shapes))]
    want = np.einsum(eq, *[np.zeros(s) for s in shapes])
    node = helper.make_node("Einsum", names, ["y"], equation=eq)
    model = _model([node], [_vi(n, list(s)) for n, s in zip(names, shapes)], [_vi("y", list(want.shape))], opset=12)
    rng = np.random.default_rng(5)
    _check_against_ort(model, {n: rng.standard_normal(s).astype(np.float32) for n, s in zip(names, shapes)}, TARGETS)


def test_einsum_diagonal_is_refused_naming_the_equation() -> None:
    node = helper.make_node("Einsum", ["x"], ["y"], equation="ii->i")
    with pytest.raises(DlirError, match=r"Einsum 'ii->i' repeats an index"):
        from_onnx(_model([node], [_vi("x", [3, 3])], [_vi("y", [3])], opset=12))


def test_isnan_isinf_and_a_minus_inf_mask_round_trip_through_the_source() -> None:
    """transformers' attention masks: IsNaN/IsInf on the scores, a -inf fill; the written .dlir
    source keeps the -inf (as a float literal beyond the range) and agrees."""
    nodes = [
        helper.make_node("Constant", [], ["fill"], value=numpy_helper.from_array(np.array(-np.inf, np.float32))),
        helper.make_node("IsNaN", ["x"], ["nan"]),
        helper.make_node("IsInf", ["x"], ["pinf"], detect_negative=0),
        helper.make_node("Or", ["nan", "pinf"], ["bad"]),
        helper.make_node("Where", ["bad", "fill", "x"], ["y"]),
    ]
    model = _model(nodes, [_vi("x", [2, 4])], [_vi("y", [2, 4])])
    x = np.array([[np.nan, 1.0, np.inf, -np.inf], [0.0, -2.0, np.nan, 3.0]], np.float32)
    m = _check_against_ort(model, {"x": x})
    text, _ = source_and_param_names(m.graph)
    assert "-1e999" in text
    got = dlir.compile(dlir.loads(text), "torch")(x=x)
    want = np.where(np.isnan(x) | np.isposinf(x), -np.inf, x)
    np.testing.assert_array_equal(got, want)
