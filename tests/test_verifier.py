"""The verifier catches every broken IR invariant and shows the IR around the fault."""

from __future__ import annotations

from typing import Callable

import pytest

from dlir.errors import SourceLoc, VerifyError
from dlir.ir.builder import emit, emit1
from dlir.ir.graph import Graph, Init, Node, Value
from dlir.ir.types import Dim, DType, TensorType
from dlir.ir.verifier import ir_excerpt, same_attr, verify

LOC = SourceLoc("m.dlir", 7, 5)


def good() -> Graph:
    g = Graph("M")
    x = g.add_input("x", TensorType.make("f32", ["B", 4]))
    w = g.add_param("w", TensorType.make("f32", [4, 4]), Init("glorot_uniform"))
    t = emit1(g, "matmul", [x, w], name="t", loc=LOC)
    u = emit1(g, "gelu", [t], {"approximate": "tanh"}, name="u")
    a, b = emit(g, "split", [u], {"sizes": [1, 3], "axis": 1}, names=["a", "b"])
    r = emit1(g, "reshape", [b], {"shape": [Dim.of("B") * 3]}, name="r")
    c = emit1(g, "concat", [a, a, b], {"axis": 1}, name="c")
    g.outputs += [("c", c), ("r", r)]
    return g


def node(g: Graph, op: str) -> Node:
    return next(n for n in g.nodes if n.op == op)


def test_good_graph_verifies() -> None:
    verify(good())


def _break(mutate: Callable[[Graph], object], words: str) -> VerifyError:
    g = good()
    mutate(g)
    with pytest.raises(VerifyError) as info:
        verify(g)
    e = info.value
    assert words in e.message, e.message
    assert ">>" in e.message  # the IR around the fault, the bad line marked
    return e


def _set_type(g: Graph) -> None:
    node(g, "gelu").outputs[0].type = TensorType.make("f32", ["B", 5])


def test_wrong_result_type() -> None:
    e = _break(_set_type, "%u has type f32[B, 5], but gelu gives f32[B, 4]")
    marked = next(line for line in e.message.splitlines() if line.lstrip().startswith(">>"))
    assert "%u: f32[B, 5] = gelu(%t)" in marked


def test_use_before_definition() -> None:
    def swap(g: Graph) -> None:
        g.nodes[0], g.nodes[1] = g.nodes[1], g.nodes[0]

    _break(swap, "input 0 of gelu %t is used before its definition")


def test_value_from_another_graph() -> None:
    other = good()
    _break(lambda g: node(g, "gelu").inputs.__setitem__(0, other.inputs[0]), "%x is not defined in this graph")


def test_duplicate_name() -> None:
    _break(lambda g: setattr(node(g, "gelu").outputs[0], "name", "t"), "the name %t is used by two values")


def test_value_defined_twice() -> None:
    def twice(g: Graph) -> None:
        g.nodes.append(g.nodes[0])

    _break(twice, "%t is defined twice")


def test_result_with_wrong_producer() -> None:
    def steal(g: Graph) -> None:
        node(g, "gelu").outputs[0].producer = g.nodes[0]

    _break(steal, "%u has producer matmul")


def test_unregistered_name() -> None:
    def sneak(g: Graph) -> None:
        g.inputs.append(Value("y", TensorType.make("f32", [1]), "input"))

    _break(sneak, "the name %y is not registered with the graph")


def test_unknown_op() -> None:
    e = _break(lambda g: setattr(node(g, "gelu"), "op", "gelux"), "unknown op 'gelux'")
    assert e.hint and "gelu" in e.hint


def test_frontend_only_op() -> None:
    def activation(g: Graph) -> None:
        n = node(g, "gelu")
        n.op, n.attrs = "activation", {"name": "relu"}

    _break(activation, "frontend-only")


@pytest.mark.parametrize(
    "attrs, words",
    [
        ({"approximate": "fast"}, "'fast' is not one of"),
        ({"approximate": "tanh", "alpha": 1.0}, "has no attribute 'alpha'"),
        ({"approximate": 1}, "must be a string"),
        ({}, "approximate='<missing>' is not in normal form"),
    ],
)
def test_bad_attrs(attrs: dict[str, object], words: str) -> None:
    _break(lambda g: setattr(node(g, "gelu"), "attrs", attrs), words)


def test_attr_not_normalised() -> None:
    def int_sizes(g: Graph) -> None:
        node(g, "split").attrs["axis"] = True  # a bool is not an int

    _break(int_sizes, "must be an int")

    def tuple_sizes(g: Graph) -> None:
        node(g, "split").attrs["sizes"] = (1, 3)

    _break(tuple_sizes, "sizes=(1, 3) is not in normal form")


def test_attr_not_canonical() -> None:
    g = good()
    sq = emit1(g, "squeeze", [node(g, "split").outputs[0]], {"axes": None})
    assert sq.producer is not None and sq.producer.attrs["axes"] == [1]
    verify(g)
    sq.producer.attrs["axes"] = None
    with pytest.raises(VerifyError, match="axes=None is not canonical"):
        verify(g)


def test_unbound_symbol_in_attrs() -> None:
    def other_symbol(g: Graph) -> None:
        n = node(g, "reshape")
        n.attrs["shape"] = [Dim.of("Q"), -1]
        n.outputs[0].type = TensorType.make("f32", ["Q", "?"])

    _break(other_symbol, "attributes use symbol(s) Q that no graph input binds")


def test_wrong_input_count() -> None:
    _break(lambda g: node(g, "gelu").inputs.append(g.inputs[0]), "gelu takes 1 input(s) (x), got 2")


def test_variadic_input_count_is_free() -> None:
    g = good()
    c = node(g, "concat")
    c.inputs.append(c.inputs[0])
    c.outputs[0].type = TensorType.make("f32", ["B", 6])
    verify(g)


def test_input_types_rejected_by_the_op() -> None:
    _break(lambda g: node(g, "matmul").inputs.reverse(), "matmul rejects its inputs")


def test_dangling_output() -> None:
    def drop(g: Graph) -> None:
        g.nodes.remove(node(g, "concat"))

    e = _break(drop, "output 'c' %c is not defined in this graph")
    marked = next(line for line in e.message.splitlines() if line.lstrip().startswith(">>"))
    assert "return c=%c, r=%r" in marked


def test_duplicate_output_names() -> None:
    _break(lambda g: g.outputs.append(("c", g.inputs[0])), "two outputs are named 'c'")


def test_param_invariants() -> None:
    def symbolic(g: Graph) -> None:
        g.params[0].type = TensorType.make("f32", ["B", 4])

    _break(symbolic, "non-static shape")
    _break(lambda g: setattr(g.params[0], "init", None), "has no init")
    _break(lambda g: setattr(g.params[0], "init", Init("magic")), "unknown init 'magic'")
    _break(lambda g: setattr(g.params[0], "init", Init("normal", (("sd", 1.0),))), "has no argument 'sd'")
    _break(lambda g: setattr(g.params[0], "kind", "node"), "has kind 'node'")


def test_error_shows_source_location_and_context() -> None:
    g = good()
    node(g, "matmul").outputs[0].type = TensorType.make("f32", ["B", 3])
    with pytest.raises(VerifyError) as info:
        verify(g)
    text = str(info.value)
    assert text.startswith("m.dlir:7:5: error: invalid IR in graph M: %t has type f32[B, 3]")
    assert "model M(%x: f32[B, 4])" in text and "hint:" in text


def test_excerpt_marks_requested_line() -> None:
    g = good()
    text = ir_excerpt(g, node(g, "split"), context=1)
    lines = text.splitlines()
    assert len(lines) == 3 and lines[1].lstrip().startswith(">>") and "split(%u)" in lines[1]


def test_same_attr() -> None:
    nan = float("nan")
    assert same_attr([1.0, nan], [1.0, float("nan")])
    assert not same_attr(1, 1.0) and not same_attr(True, 1) and not same_attr([1], (1,))
    assert same_attr(DType.f32, DType.f32) and same_attr(Dim.of("B") * 2, Dim.of("B") + Dim.of("B"))
