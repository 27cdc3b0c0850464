"""ONNX import of unknown input dims that must be equal: they become one symbol.

tf2onnx names every unknown dim of every input apart (``unk__81``, ``unk__83``); when an
op needs two of them equal (a broadcast, the element count of a Reshape), the importer
unifies them, and the imported model then requires them equal at run time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import dlir
from dlir.errors import DlirError, RuntimeMismatch
from dlir.importer import from_onnx
from dlir.importer.dim_unify import DimUnion, symbol_pair
from dlir.ir.types import Dim

F32 = TensorProto.FLOAT


def _model(inputs: list[tuple[str, list[Any]]], nodes: list[Any], out: str, dtypes: dict[str, int] | None = None
           ) -> Any:
    """A one-output model; a dim is an int (static), a str (dim_param) or None (anonymous); inputs are f32
    unless ``dtypes`` says otherwise."""
    ins = [helper.make_tensor_value_info(n, (dtypes or {}).get(n, F32), dims) for n, dims in inputs]
    outs = [helper.make_tensor_value_info(out, F32, [None] * max(len(d) for _, d in inputs))]  # rank of the broadcast
    g = helper.make_graph(nodes, "g", ins, outs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(m)
    return m


def _add(dims_x: list[Any], dims_y: list[Any]) -> Any:
    return _model([("x", dims_x), ("y", dims_y)], [helper.make_node("Add", ["x", "y"], ["out"])], "out")


def _reshape_like() -> Any:
    """``x + reshape(y, shape(x))``: the Reshape's target dims are x's symbols, its input y's."""
    nodes = [
        helper.make_node("Shape", ["x"], ["sx"]),
        helper.make_node("Reshape", ["y", "sx"], ["y2"]),
        helper.make_node("Add", ["x", "y2"], ["out"]),
    ]
    return _model([("x", ["unk__7", 4]), ("y", ["batch", 2, 2])], nodes, "out")


def _rng(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("target", ["numpy", "onnx"])
def test_named_dims_meeting_in_a_broadcast_become_one_symbol(target: str) -> None:
    m = from_onnx(_add(["N", 4], ["M", 4]))
    x, y = m.graph.inputs
    assert x.type.shape == y.type.shape == (Dim.of("N"), Dim.of(4))  # the first name seen is kept
    assert m.unified == {"N": ["N", "M"]}
    a, b = _rng(3, 4), _rng(3, 4) + 1
    np.testing.assert_allclose(m.compile(target)(x=a, y=b), a + b, rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeMismatch, match="N"):
        m.compile(target)(x=a, y=_rng(2, 4))  # the merged dims must be equal at run time


def test_anonymous_dims_are_unified_too() -> None:
    m = from_onnx(_add([None, 4], [None, 4]))
    x, y = m.graph.inputs
    assert x.type.shape[0] == y.type.shape[0] and not x.type.shape[0].is_static
    a, b = _rng(2, 4), _rng(2, 4)
    np.testing.assert_allclose(m.compile("numpy")(x=a, y=b), a + b, rtol=1e-5)


@pytest.mark.parametrize("target", ["numpy", "onnx"])
def test_reshape_to_another_inputs_shape_unifies_the_counts(target: str) -> None:
    m = from_onnx(_reshape_like())
    x, y = m.graph.inputs
    assert str(x.type) == "f32[batch, 4]" and str(y.type) == "f32[batch, 2, 2]"  # a human's name beats unk__7
    a, b = _rng(3, 4), _rng(3, 2, 2)
    np.testing.assert_allclose(m.compile(target)(x=a, y=b), a + b.reshape(3, 4), rtol=1e-5, atol=1e-5)
    with pytest.raises(DlirError, match="batch"):
        m.compile(target)(x=a, y=_rng(5, 2, 2))


def test_unified_source_uses_one_name_and_says_so() -> None:
    m = from_onnx(_reshape_like())
    src = m.to_source()
    assert "model G(x: f32[batch, 4], y: f32[batch, 2, 2])" in src
    assert "unk__7" in src.split("model")[0]  # the header names the ONNX dims the symbol stands for
    prog = dlir.loads(src)
    run = dlir.compile(prog, "numpy")
    run.load_params(m.params)
    a, b = _rng(2, 4), _rng(2, 2, 2)
    np.testing.assert_allclose(run(x=a, y=b), a + b.reshape(2, 4), rtol=1e-5)


_C = np.array([[True], [False]])
OTHER_OPS = {  # op: (node, inputs as (name, dims), the unified input types, feeds, numpy reference)
    "matmul-inner": (helper.make_node("MatMul", ["x", "y"], ["out"]), [("x", ["B", "K"]), ("y", ["unk__1", 3])],
                     ["f32[B, K]", "f32[K, 3]"], {"x": _rng(2, 4), "y": _rng(4, 3)}, lambda f: f["x"] @ f["y"]),
    "concat": (helper.make_node("Concat", ["x", "y"], ["out"], axis=1), [("x", ["N", 2]), ("y", ["M", 3])],
               ["f32[N, 2]", "f32[N, 3]"], {"x": _rng(2, 2), "y": _rng(2, 3)},
               lambda f: np.concatenate([f["x"], f["y"]], 1)),
    "where": (helper.make_node("Where", ["c", "x", "y"], ["out"]),
              [("c", ["unk__9", 1]), ("x", [None, 4]), ("y", ["N", 1])],  # a human's N names the class
              ["bool[N, 1]", "f32[N, 4]", "f32[N, 1]"], {"c": _C, "x": _rng(2, 4), "y": _rng(2, 1)},
              lambda f: np.where(f["c"], f["x"], f["y"])),
}


@pytest.mark.parametrize("case", list(OTHER_OPS))
def test_matmul_concat_and_where_unify_their_dims(case: str) -> None:
    node, inputs, want, feeds, ref = OTHER_OPS[case]
    m = _model(inputs, [node], "out", dtypes={"c": TensorProto.BOOL})
    got = from_onnx(m)
    assert [str(v.type) for v in got.graph.inputs] == want
    np.testing.assert_allclose(got.compile("numpy")(**feeds), ref(feeds), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "dims_x, dims_y, clash, hint",
    [
        ([3, 4], [5, 4], "3 vs 5", "each pair must be equal or one of them 1"),
        (["N", 4], [5, 4], "N vs 5", "the input dim N must be 5 here"),  # a symbol is not fixed to a size
        (["N", 4], ["M", 3], "4 vs 3", "input dims unified at import: N = M"),  # N, M merged; 4 vs 3 remains
    ],
    ids=["static-static", "symbol-static", "static-after-unified"],
)
def test_dims_that_genuinely_conflict_are_still_refused(
    dims_x: list[Any], dims_y: list[Any], clash: str, hint: str
) -> None:
    with pytest.raises(DlirError, match=f"cannot be broadcast.*{clash}") as e:
        from_onnx(_add(dims_x, dims_y))
    assert "node 'Add" in e.value.message and hint in (e.value.hint or "")


def test_symbol_pair_and_union_prefer_human_names() -> None:
    assert symbol_pair(Dim.of("a") * 16, Dim.of("b") * 16) == ("a", "b")
    assert symbol_pair(Dim.of("a") * Dim.of("t"), Dim.of("b") * Dim.of("t")) == ("a", "b")
    assert symbol_pair(Dim.of("a") * 2, Dim.of("b") * 3) is None
    assert symbol_pair(Dim.of("a"), Dim.of(4)) is None
    u = DimUnion()
    keys = [("param", "unk__1"), ("anon", "x", 0), ("param", "batch"), ("param", "unk__2")]
    for k in keys:
        u.see(k)
    assert u.union(keys[0], keys[1]) and u.union(keys[1], keys[3]) and u.union(keys[3], keys[2])
    assert not u.union(keys[0], keys[2])
    assert {u.find(k) for k in keys} == {("param", "batch")}
    assert u.classes() == {("param", "batch"): keys}


def test_dlirc_import_header_names_the_unified_dims(tmp_path: Any) -> None:
    from dlir.importer.cli_import import imported_source

    onnx.save(_add(["unk__3", 4], [None, 4]), tmp_path / "m.onnx")
    _, text, _ = imported_source(tmp_path / "m.onnx", tmp_path / "m.dlir", None)
    assert "# unk__3 stands for the ONNX input dims unk__3, y[0]" in text
    assert "(x: f32[unk__3, 4], y: f32[unk__3, 4])" in text
