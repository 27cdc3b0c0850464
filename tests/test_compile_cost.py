"""The shortcuts that keep compiling cheap give the answers of the long way.

Shape rules and verifier checks are remembered per node signature, the cyclic
GC is paused while graphs are built, parse trees of small texts are kept, and
constant inits skip the random generator. Each test here would fail if a
shortcut answered differently from the work it replaces.
"""

from __future__ import annotations

import gc
import math
import zlib
from typing import Any

import numpy as np
import pytest

import dlir
from dlir.errors import DlirError, ParseError, VerifyError
from dlir.ir import infer
from dlir.ir.builder import emit1
from dlir.ir.clone import clone_graph
from dlir.ir.gc_pause import gc_paused
from dlir.ir.graph import Graph, Init
from dlir.ir.types import UNKNOWN, Dim, DType, TensorType
from dlir.ir.verifier import verify
from dlir.ops.registry import get_op
from dlir.ops.shape_rules import broadcast_shapes
from dlir.ir.graph import INIT_KINDS
from dlir.runtime.init import fans, init_value

F32 = DType.f32


def t(*dims: Any) -> TensorType:
    return TensorType.make("f32", dims)


# -- remembered shape rules ----------------------------------------------------------------


def test_remembered_rule_answers_as_the_rule() -> None:
    infer.clear()
    op = get_op("matmul")
    for types in ([t("B", 4), t(4, 8)], [t(2, "B", 4), t(4, 3)], [t(4), t(4, 5)]):
        want = op.infer(types, {})
        assert infer.infer_types(op, types, {}) == want
        assert infer.infer_types(op, types, {}) == want  # the remembered answer


def test_a_rule_that_raises_raises_every_time() -> None:
    op = get_op("matmul")
    for _ in range(2):
        with pytest.raises(DlirError, match="inner dims differ"):
            infer.infer_types(op, [t("B", 4), t(5, 8)], {})


def test_attribute_values_of_other_types_are_other_signatures() -> None:
    """1, 1.0 and True are equal in Python, but are different attributes."""
    keys = {infer.attrs_key({"a": v}) for v in (1, 1.0, True, [1], (1,), -0.0, 0.0, Dim.of(1), "1")}
    assert len(keys) == 9
    assert infer.attrs_key({"a": float("nan")}) == infer.attrs_key({"a": float("nan")})
    assert infer.attrs_key({"value": np.zeros(3)}) is None  # arrays are not remembered
    assert infer.attrs_key({"value": [0.5] * 1000}) is None  # nor long constants


def test_a_replaced_rule_is_asked_again() -> None:
    op = get_op("relu")
    types = [t("B", 4)]
    assert infer.infer_types(op, types, {}) == [t("B", 4)]
    rule = op.infer
    op.infer = lambda ts, a: [t(1)]
    try:
        assert infer.infer_types(op, types, {}) == [t(1)]
    finally:
        op.infer = rule


# -- the verifier's remembered signatures still catch faults --------------------------------


def _mlp() -> Graph:
    g = Graph("M")
    x = g.add_input("x", t("B", 4))
    w = g.add_param("w", t(4, 4), Init("glorot_uniform"))
    h = emit1(g, "matmul", [x, w], name="h")
    g.outputs.append(("y", emit1(g, "relu", [h], name="y")))
    return g


def test_a_known_signature_with_a_wrong_result_type_is_caught() -> None:
    verify(_mlp())  # every signature of the graph is now known
    g = _mlp()
    g.nodes[0].outputs[0].type = t("B", 5)
    with pytest.raises(VerifyError, match="has type f32\\[B, 5\\], but matmul gives f32\\[B, 4\\]"):
        verify(g)


def test_attributes_not_in_normal_form_are_caught_after_the_normal_ones() -> None:
    g = Graph("M")
    x = g.add_input("x", t("B", 4))
    g.outputs.append(("y", emit1(g, "leaky_relu", [x], {"alpha": 0.5}, name="y")))
    verify(g)
    g.nodes[0].attrs["alpha"] = 1  # an int where the normal form has a float
    with pytest.raises(VerifyError, match="not in normal form"):
        verify(g)


def test_a_known_signature_still_needs_its_symbols_bound() -> None:
    def graph(sym: str) -> Graph:
        g = Graph("M")
        x = g.add_input("x", TensorType.make("f32", [sym, 4]))
        g.outputs.append(("y", emit1(g, "reshape", [x], {"shape": [Dim.of("B") * 4]}, name="y")))
        return g

    verify(graph("B"))
    g = graph("B")
    g.inputs[0].type = t("C", 4)  # now nothing binds B, which the attribute uses
    g.nodes[0].inputs[0].type = t("C", 4)
    with pytest.raises(VerifyError, match="symbol"):
        verify(g)


# -- seeded init ------------------------------------------------------------------------------


def _reference_init(name: str, shape: tuple[int, ...], dtype: np.dtype, init: Init, seed: int) -> np.ndarray:
    """The straightforward form: one generator per param, float64 values rounded to dtype."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])
    fan_in, fan_out = fans(shape)
    glorot, he = math.sqrt(6.0 / (fan_in + fan_out)), math.sqrt(6.0 / fan_in)
    draws = {
        "zeros": lambda: np.zeros(shape),
        "ones": lambda: np.ones(shape),
        "constant": lambda: np.full(shape, init.arg("value", 0.0)),
        "normal": lambda: rng.normal(init.arg("mean", 0.0), init.arg("std", 1.0), shape),
        "uniform": lambda: rng.uniform(init.arg("lo", 0.0), init.arg("hi", 1.0), shape),
        "glorot_uniform": lambda: rng.uniform(-glorot, glorot, shape),
        "glorot_normal": lambda: rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), shape),
        "he_uniform": lambda: rng.uniform(-he, he, shape),
        "he_normal": lambda: rng.normal(0.0, math.sqrt(2.0 / fan_in), shape),
    }
    return np.asarray(draws[init.kind]()).astype(dtype)


@pytest.mark.parametrize("kind", sorted(INIT_KINDS))
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int64"])
def test_init_values_are_the_reference_values(kind: str, dtype: str) -> None:
    init = Init(kind, (("value", 0.25),) if kind == "constant" else ())
    for shape in [(3, 5), (7,), (), (2, 3, 2, 2)]:
        got = init_value("blk.3.w", shape, np.dtype(dtype), init, 7)
        want = _reference_init("blk.3.w", shape, np.dtype(dtype), init, 7)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


# -- the rest ---------------------------------------------------------------------------------


def test_gc_pause_restores_the_collector_state() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still holds
    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with gc_paused():
            raise RuntimeError
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # a caller's gc.disable() is kept
    finally:
        gc.enable()


def test_building_a_model_leaves_the_collector_on() -> None:
    dlir.compile(dlir.loads(SMALL), target="onnx", opt_level=2)
    assert gc.isenabled()
    with pytest.raises(DlirError):
        dlir.loads("model M(x: f32[B, 4]) -> f32[B, 4] {\n    return x @ x @ q\n}\n").graph()
    assert gc.isenabled()


SMALL = """use nn
model M(x: f32[B, 4]) -> f32[B, 2] {
    fc = Dense(4, 2, act="relu")
    return fc(x)
}
"""


def test_programs_from_one_text_are_the_same() -> None:
    from dlir.ir.printer import print_graph

    a, b = dlir.loads(SMALL), dlir.loads(SMALL)
    assert print_graph(a.graph()) == print_graph(b.graph())
    assert a.graph() is not b.graph()


def test_a_syntax_error_is_reported_every_time() -> None:
    for _ in range(2):
        with pytest.raises(ParseError, match="unexpected"):
            dlir.loads("model M(x: f32[B]) -> f32[B] {\n    return x +\n}\n")


def test_broadcasting_equal_and_unequal_shapes() -> None:
    s = t("B", UNKNOWN, 4)
    assert broadcast_shapes("add", [s, s]) == s.shape
    assert broadcast_shapes("add", [t("B", 1, 4), t(3, 1)]) == (Dim.of("B"), Dim.of(3), Dim.of(4))
    assert broadcast_shapes("add", [t(UNKNOWN, 1), t(1)]) == (UNKNOWN, Dim.of(1))
    with pytest.raises(DlirError, match="cannot be broadcast"):
        broadcast_shapes("add", [t("B", 4), t(3)])


def test_static_dims() -> None:
    assert Dim.of(0).is_static and Dim.of(0).value == 0 and str(Dim.of(0)) == "0"
    assert Dim.of(5) == Dim.of("B") * 0 + 5 and Dim.of(5).is_static
    assert not Dim.of("B").is_static and not (Dim.of("B") + 1).is_static and not UNKNOWN.is_static
    assert Dim.of(np.int64(3)) == Dim.of(3)


def test_clone_keeps_fields_it_does_not_know() -> None:
    g = _mlp()
    g.nodes[0].outputs[0].note = "kept"  # type: ignore[attr-defined]
    c = clone_graph(g)
    assert c.nodes[0].outputs[0].note == "kept"  # type: ignore[attr-defined]
    assert c.nodes[0].outputs[0] is not g.nodes[0].outputs[0]
    assert c.nodes[1].inputs[0] is c.nodes[0].outputs[0]
    verify(c)


@pytest.mark.parametrize("dtype", list(DType))
def test_initializers_are_written_as_onnx_writes_them(dtype: DType) -> None:
    import onnx
    from onnx import numpy_helper

    from dlir.backends.onnx.export import tensor_into

    arr = init_value("w", (3, 4), dtype.numpy, Init("uniform", (("lo", -2.0), ("hi", 2.0))), 0)
    for a in (arr, arr[0, 0], arr[:0]):  # a matrix, a scalar, an empty tensor
        t = onnx.TensorProto()
        tensor_into(t, a, "w")
        assert t.SerializeToString() == numpy_helper.from_array(a, "w").SerializeToString()
