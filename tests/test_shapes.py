"""Shape rules: inferred types against numpy's actual results, symbolic-dim algebra, errors.

The property tests draw random static shapes and attributes, build the op through
the builder (so attribute checks and inference run as in the frontend), run its
numpy reference and demand the inferred shape equal the result's shape. Where
numpy refuses (shapes that do not broadcast, inner dims that differ), dlir must
refuse too, with a TypeError_.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlir.errors import DlirError, TypeError_
from dlir.ir.builder import emit, emit1
from dlir.ir.graph import Graph, Value
from dlir.ir.types import Dim, TensorType
from dlir.ops.registry import get_op
from dlir.ops.shape import END

SETTINGS = settings(max_examples=60, deadline=None)
dims = st.integers(1, 4)
shapes = st.lists(dims, min_size=0, max_size=4).map(tuple)
nonscalar = st.lists(dims, min_size=1, max_size=4).map(tuple)


Shape = tuple[int, ...]


def infer_and_run(
    op: str, in_shapes: Sequence[Shape], attrs: dict[str, Any], dtype: str = "f32"
) -> tuple[list[Shape], list[Shape]]:
    """(inferred static shapes, the numpy reference's result shapes) for one application."""
    g = Graph("Shapes")
    args = [g.add_input(f"x{i}", TensorType.make(dtype, s)) for i, s in enumerate(in_shapes)]
    outs = emit(g, op, args, attrs)
    node = g.nodes[-1]
    rng = np.random.default_rng(0)
    arrays = [rng.uniform(0.5, 2.0, s).astype(np.float32) for s in in_shapes]
    results = get_op(op).ref(arrays, node.attrs)
    return [v.type.static_shape() for v in outs], [np.shape(r) for r in results]


def numpy_refuses(fn: Any) -> bool:
    try:
        fn()
    except ValueError:
        return True
    return False


# -- broadcasting -----------------------------------------------------------------------


@st.composite
def broadcastable_pair(draw: st.DrawFn) -> tuple[Shape, Shape]:
    """Two shapes that broadcast: suffixes of a common shape with some dims set to 1."""
    common = draw(shapes)

    def operand() -> tuple[int, ...]:
        k = draw(st.integers(0, len(common)))
        tail = common[len(common) - k :]
        return tuple(1 if draw(st.booleans()) else d for d in tail)

    return operand(), operand()


@SETTINGS
@given(pair=broadcastable_pair(), op=st.sampled_from(["add", "sub", "mul", "div", "maximum", "less", "equal"]))
def test_binary_broadcast_matches_numpy(pair: tuple[Shape, Shape], op: str) -> None:
    inferred, actual = infer_and_run(op, list(pair), {})
    assert inferred == actual


@SETTINGS
@given(a=st.lists(st.integers(1, 3), max_size=3).map(tuple), b=st.lists(st.integers(1, 3), max_size=3).map(tuple))
def test_binary_broadcast_refuses_what_numpy_refuses(a: tuple[int, ...], b: tuple[int, ...]) -> None:
    if numpy_refuses(lambda: np.broadcast_shapes(a, b)):
        with pytest.raises(TypeError_):
            infer_and_run("add", [a, b], {})
    else:
        inferred, actual = infer_and_run("add", [a, b], {})
        assert inferred == actual


@SETTINGS
@given(pair=broadcastable_pair(), cond_first=st.booleans())
def test_where_broadcast_matches_numpy(pair: tuple[Shape, Shape], cond_first: bool) -> None:
    g = Graph("Where")
    c = g.add_input("c", TensorType.make("bool", pair[0] if cond_first else ()))
    a = g.add_input("a", TensorType.make("f32", pair[1]))
    b = g.add_input("b", TensorType.make("f32", () if cond_first else pair[0]))
    out = emit1(g, "where", [c, a, b])
    want = np.broadcast_shapes(c.type.static_shape(), pair[1], b.type.static_shape())
    assert out.type.static_shape() == want


# -- reductions ---------------------------------------------------------------------------


REDUCTIONS = ["sum", "mean", "max", "min", "prod", "logsumexp", "var"]


@SETTINGS
@given(data=st.data(), shape=shapes, keepdims=st.booleans(), op=st.sampled_from(REDUCTIONS))
def test_reduction_shape_matches_numpy(data: st.DataObject, shape: tuple[int, ...], keepdims: bool, op: str) -> None:
    rank = len(shape)
    picked = data.draw(st.none() | st.lists(st.integers(0, max(rank - 1, 0)), unique=True, max_size=rank))
    if picked is not None and rank == 0:
        picked = None
    axis: Any = picked
    if picked is not None:
        # Mix negative and positive spellings of the same axes, in random order.
        axis = [a - rank if data.draw(st.booleans()) else a for a in data.draw(st.permutations(picked))]
        if len(axis) == 1 and data.draw(st.booleans()):
            axis = axis[0]
    inferred, actual = infer_and_run(op, [shape], {"axis": axis, "keepdims": keepdims})
    assert inferred == actual


@SETTINGS
@given(data=st.data(), shape=nonscalar, keepdims=st.booleans(), op=st.sampled_from(["argmax", "argmin"]))
def test_arg_reduction_shape_matches_numpy(data: st.DataObject, shape: Shape, keepdims: bool, op: str) -> None:
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    inferred, actual = infer_and_run(op, [shape], {"axis": axis, "keepdims": keepdims})
    assert inferred == actual


# -- matmul and transpose ----------------------------------------------------------------------


@SETTINGS
@given(pair=broadcastable_pair(), m=dims, k=dims, n=dims, vec=st.sampled_from(["none", "lhs", "rhs", "both"]))
def test_matmul_shape_matches_numpy(pair: tuple[Shape, Shape], m: int, k: int, n: int, vec: str) -> None:
    a = (k,) if vec in ("lhs", "both") else pair[0] + (m, k)
    b = (k,) if vec in ("rhs", "both") else pair[1] + (k, n)
    inferred, actual = infer_and_run("matmul", [a, b], {})
    assert inferred == actual


@SETTINGS
@given(a=nonscalar, b=nonscalar)
def test_matmul_refuses_what_numpy_refuses(a: tuple[int, ...], b: tuple[int, ...]) -> None:
    x, y = np.ones(a), np.ones(b)
    if numpy_refuses(lambda: np.matmul(x, y)):
        with pytest.raises(TypeError_):
            infer_and_run("matmul", [a, b], {})
    else:
        inferred, actual = infer_and_run("matmul", [a, b], {})
        assert inferred == actual


@SETTINGS
@given(data=st.data(), shape=shapes)
def test_transpose_shape_matches_numpy(data: st.DataObject, shape: tuple[int, ...]) -> None:
    rank = len(shape)
    perm = [p - rank if data.draw(st.booleans()) else p for p in data.draw(st.permutations(range(rank)))]
    attrs = {"perm": perm} if data.draw(st.booleans()) else {}
    inferred, actual = infer_and_run("transpose", [shape], attrs)
    assert inferred == actual


# -- shape ops -----------------------------------------------------------------------------------


@SETTINGS
@given(data=st.data(), shape=nonscalar)
def test_reshape_with_hole_matches_numpy(data: st.DataObject, shape: tuple[int, ...]) -> None:
    # Regroup the dims in a random order into a new shape of the same size, then hide one as -1.
    factors = data.draw(st.permutations(shape))
    inner = st.sets(st.integers(1, len(factors) - 1), max_size=len(factors) - 1) if len(factors) > 1 else st.just(set())
    cuts = sorted(data.draw(inner))
    bounds = [0, *cuts, len(factors)]
    target = [int(np.prod(factors[i:j])) for i, j in zip(bounds, bounds[1:])]
    hole = data.draw(st.integers(0, len(target) - 1))
    target[hole] = -1
    inferred, actual = infer_and_run("reshape", [shape], {"shape": target})
    assert inferred == actual


@SETTINGS
@given(data=st.data(), base=nonscalar, n=st.integers(1, 4))
def test_concat_shape_matches_numpy(data: st.DataObject, base: tuple[int, ...], n: int) -> None:
    rank = len(base)
    axis = data.draw(st.integers(-rank, rank - 1))
    sizes = data.draw(st.lists(dims, min_size=n, max_size=n))
    ins = [base[: axis % rank] + (s,) + base[axis % rank + 1 :] for s in sizes]
    inferred, actual = infer_and_run("concat", ins, {"axis": axis})
    assert inferred == actual


@SETTINGS
@given(data=st.data(), base=shapes, n=st.integers(1, 3))
def test_stack_and_split_shapes_match_numpy(data: st.DataObject, base: tuple[int, ...], n: int) -> None:
    axis = data.draw(st.integers(-len(base) - 1, len(base)))
    inferred, actual = infer_and_run("stack", [base] * n, {"axis": axis})
    assert inferred == actual
    stacked = actual[0]
    sizes = data.draw(st.lists(dims, min_size=1, max_size=3))
    cut = list(stacked)
    cut[axis] = sum(sizes)
    inferred, actual = infer_and_run("split", [tuple(cut)], {"sizes": sizes, "axis": axis})
    assert inferred == actual


bound = st.integers(-7, 7) | st.just(END) | st.just(-(2**40))


@SETTINGS
@given(data=st.data(), shape=nonscalar)
def test_slice_shape_matches_numpy(data: st.DataObject, shape: tuple[int, ...]) -> None:
    rank = len(shape)
    axes = data.draw(st.lists(st.integers(0, rank - 1), min_size=1, max_size=rank, unique=True))
    axes = [a - rank if data.draw(st.booleans()) else a for a in axes]  # order and sign are random
    n = len(axes)
    starts = data.draw(st.lists(st.integers(-7, 7), min_size=n, max_size=n))
    ends = data.draw(st.lists(bound, min_size=n, max_size=n))
    steps = data.draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))
    attrs = {"starts": starts, "ends": ends, "axes": axes, "steps": steps}
    inferred, actual = infer_and_run("slice", [shape], attrs)
    assert inferred == actual, f"slice {attrs} of {shape}"


@SETTINGS
@given(data=st.data(), shape=st.lists(st.integers(1, 3), max_size=5).map(tuple))
def test_squeeze_unsqueeze_flatten_match_numpy(data: st.DataObject, shape: tuple[int, ...]) -> None:
    ones = [i for i, d in enumerate(shape) if d == 1]
    axes = data.draw(st.none() | (st.lists(st.sampled_from(ones), unique=True) if ones else st.none()))
    inferred, actual = infer_and_run("squeeze", [shape], {"axes": axes})
    assert inferred == actual
    out_rank = len(shape) + data.draw(st.integers(1, 2))
    n_new = out_rank - len(shape)
    new = data.draw(st.lists(st.integers(-out_rank, out_rank - 1), min_size=n_new, max_size=n_new))
    if len({a % out_rank for a in new}) == len(new):
        inferred, actual = infer_and_run("unsqueeze", [shape], {"axes": new})
        assert inferred == actual
    if shape:
        start = data.draw(st.integers(-len(shape), len(shape) - 1))
        end = data.draw(st.integers(start % len(shape), len(shape) - 1))
        inferred, actual = infer_and_run("flatten", [shape], {"start": start, "end": end})
        assert inferred == actual


# -- symbolic dims ---------------------------------------------------------------------------------


def sym_graph(*types: tuple[str, list[Any]]) -> tuple[Graph, list[Value]]:
    g = Graph("Sym")
    return g, [g.add_input(f"x{i}", TensorType.make(dt, dims_)) for i, (dt, dims_) in enumerate(types)]


B, T = Dim.of("B"), Dim.of("T")


def test_reshape_merge_then_split_recovers_b() -> None:
    g, (x,) = sym_graph(("f32", ["B", "T", 4]))
    merged = emit1(g, "reshape", [x], {"shape": [B * T, 4]})
    assert str(merged.type) == "f32[B*T, 4]"
    back = emit1(g, "reshape", [merged], {"shape": [-1, T, 4]})
    assert str(back.type) == "f32[B, T, 4]"
    flat = emit1(g, "reshape", [x], {"shape": [B, -1]})
    assert str(flat.type) == "f32[B, 4*T]"


def test_concat_of_t_and_t_is_2t() -> None:
    g, (a, b, c) = sym_graph(("f32", ["T", 3]), ("f32", ["T", 3]), ("f32", [2, 3]))
    assert str(emit1(g, "concat", [a, b], {"axis": 0}).type) == "f32[2*T, 3]"
    assert str(emit1(g, "concat", [a, b, c], {"axis": 0}).type) == "f32[2*T + 2, 3]"


@pytest.mark.parametrize(
    ("start", "end", "step", "want"),
    [(1, END, 1, "T - 1"), (0, -1, 1, "T - 1"), (-2, END, 1, "2"), (0, 2, 1, "2"), (2, -1, 1, "T - 3")],
)
def test_slice_of_symbolic_dim(start: int, end: int, step: int, want: str) -> None:
    g, (x,) = sym_graph(("f32", ["B", "T"]))
    y = emit1(g, "slice", [x], {"starts": [start], "ends": [end], "axes": [1], "steps": [step]})
    assert str(y.type) == f"f32[B, {want}]"


def test_slice_step_on_even_symbolic_dim() -> None:
    g, (x,) = sym_graph(("f32", ["T", 3]))
    doubled = emit1(g, "concat", [x, x], {"axis": 0})
    halved = emit1(g, "slice", [doubled], {"starts": [0], "ends": [END], "axes": [0], "steps": [2]})
    assert str(halved.type) == "f32[T, 3]"


def test_symbolic_rules_of_other_ops() -> None:
    g, (x, w, col, row) = sym_graph(("f32", ["B", "T", 4]), ("f32", [4, 5]), ("f32", ["B", 1]), ("f32", [1, "T"]))
    assert str(emit1(g, "matmul", [x, w]).type) == "f32[B, T, 5]"
    assert str(emit1(g, "add", [col, row]).type) == "f32[B, T]"
    assert str(emit1(g, "flatten", [x], {"start": 0, "end": 1}).type) == "f32[B*T, 4]"
    assert str(emit1(g, "sum", [x], {"axis": 1, "keepdims": True}).type) == "f32[B, 1, 4]"
    assert str(emit1(g, "transpose", [x], {"perm": [1, 0, 2]}).type) == "f32[T, B, 4]"
    assert str(emit1(g, "stack", [x, x], {"axis": -1}).type) == "f32[B, T, 4, 2]"
    parts = emit(g, "split", [x], {"sizes": [1, 3], "axis": 2})
    assert [str(p.type) for p in parts] == ["f32[B, T, 1]", "f32[B, T, 3]"]
    assert str(emit1(g, "broadcast_to", [col], {"shape": [B, 6]}).type) == "f32[B, 6]"
    assert str(emit1(g, "squeeze", [col]).type) == "f32[B]"
    assert str(emit1(g, "argmax", [x], {"axis": 1}).type) == "i64[B, 4]"


# -- errors ---------------------------------------------------------------------------------------------


def type_error(*types: tuple[str, list[Any]], op: str, attrs: dict[str, Any] | None = None) -> TypeError_:
    g, args = sym_graph(*types)
    with pytest.raises(TypeError_) as info:
        emit(g, op, args, attrs or {})
    assert isinstance(info.value, DlirError)
    return info.value


@pytest.mark.parametrize(
    ("op", "types", "attrs"),
    [
        ("add", [("f32", ["B", 3]), ("f32", ["B", 4])], {}),
        ("mul", [("f32", ["B", 3]), ("f32", ["T", 3])], {}),
        ("matmul", [("f32", ["B", 3]), ("f32", [4, 5])], {}),
        ("matmul", [("f32", [2, "B", 3]), ("f32", [3, 3, 4])], {}),
        ("add", [("f32", ["B", 3]), ("f64", ["B", 3])], {}),
        ("matmul", [("f32", ["B", 3]), ("f64", [3, 4])], {}),
        ("concat", [("f32", ["B", 3]), ("f32", ["B", 4])], {"axis": 0}),
        ("concat", [("f32", ["B", 3]), ("f64", ["B", 3])], {"axis": 0}),
        ("stack", [("f32", ["B", 3]), ("f32", ["B", 4])], {}),
        ("cross_entropy", [("f32", ["B", 5]), ("i64", ["T"])], {}),
        ("mse", [("f32", ["B", 3]), ("f32", ["B", 4])], {}),
    ],
)
def test_mismatch_names_both_operand_types(op: str, types: list[tuple[str, list[Any]]], attrs: dict[str, Any]) -> None:
    err = type_error(*types, op=op, attrs=attrs)
    for dt, dims_ in types:
        assert str(TensorType.make(dt, dims_)) in err.message, f"{err.message!r} should name {dt}{dims_}"


def test_unknown_attribute_hints_the_close_name() -> None:
    err = type_error(("f32", ["B", 3]), op="sum", attrs={"axes": 1})
    assert "axes" in err.message and err.hint is not None and "'axis'" in err.hint
    err = type_error(("f32", ["B", 3]), op="softmax", attrs={"dim": 1})
    assert err.hint is not None and "axis" in err.hint


def test_unknown_op_hints_the_close_name() -> None:
    err = type_error(("f32", ["B", 3]), ("f32", [3, 4]), op="matmull")
    assert err.hint is not None and "'matmul'" in err.hint


@pytest.mark.parametrize(
    ("op", "types", "attrs", "needle"),
    [
        ("reshape", [("f32", ["B", 4])], {"shape": [-1, -1]}, "-1"),
        ("reshape", [("f32", [3, 4])], {"shape": [5, -1]}, "f32[3, 4]"),
        ("reshape", [("f32", [3, 4])], {"shape": [5, 2]}, "f32[3, 4]"),
        ("reshape", [("f32", ["B", 4])], {"shape": [0, 4]}, "0"),
        ("sum", [("f32", ["B", 3])], {"axis": 2}, "axis 2"),
        ("sum", [("f32", ["B", 3])], {"axis": [1, -1]}, "repeated"),
        ("softmax", [("i32", ["B", 3])], {}, "i32[B, 3]"),
        ("transpose", [("f32", ["B", 3, 4])], {"perm": [0, 0, 1]}, "perm"),
        ("squeeze", [("f32", ["B", 3])], {"axes": [1]}, "f32[B, 3]"),
        ("split", [("f32", ["B", 5])], {"sizes": [2, 2], "axis": 1}, "f32[B, 5]"),
        ("broadcast_to", [("f32", ["B", 3])], {"shape": [B, 4]}, "f32[B, 3]"),
        ("where", [("f32", ["B"]), ("f32", ["B"]), ("f32", ["B"])], {}, "bool"),
        ("where", [("bool", ["B"]), ("f32", ["B"]), ("i32", ["B"])], {}, "f32[B] and i32[B]"),
        ("cross_entropy", [("f32", ["B", 5]), ("f32", ["B"])], {}, "f32[B]"),
        ("layer_norm", [("f32", ["B", 3, 4]), ("f32", [4]), ("f32", [4])], {"axis": -2}, "gamma"),
        ("gelu", [("f32", ["B"])], {"approximate": "tan"}, "tan"),
        ("sum", [("f32", ["B"])], {"axis": "0"}, "axis"),
        ("cast", [("f32", ["B"])], {}, "dtype"),
        ("slice", [("f32", ["B"])], {"starts": [0], "ends": [1], "axes": [0], "steps": [0]}, "step"),
        ("less", [("bool", ["B"]), ("bool", ["B"])], {}, "bool[B]"),
        ("dropout", [("f32", ["B"])], {"p": 1.0}, "p"),
        ("add", [("f32", ["B"])], {}, "2"),
    ],
)
def test_bad_application_is_a_type_error(
    op: str, types: list[tuple[str, list[Any]]], attrs: dict[str, Any], needle: str
) -> None:
    err = type_error(*types, op=op, attrs=attrs)
    assert needle in err.message, f"{needle!r} not in {err.message!r}"


# -- convolution and pooling ------------------------------------------------------------------------


@st.composite
def conv_config(draw: st.DrawFn) -> tuple[list[Shape], dict[str, Any]]:
    """A well-typed conv2d: x [N, C, H, W], w [O, C/groups, kh, kw], random stride/dilation/padding."""
    g = draw(st.integers(1, 2))
    cg, og = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    k = draw(st.tuples(st.integers(1, 3), st.integers(1, 3)))
    dil = draw(st.tuples(st.integers(1, 2), st.integers(1, 2)))
    padding = draw(st.sampled_from([[1, 0, 2, 1], [2, 1], [1], [0], "valid", "same"]))
    pads = [0] * 4 if isinstance(padding, str) else (padding * 4)[:4]  # "same" always fits; "valid" pads nothing
    hw = [draw(st.integers(max(1, (k[i] - 1) * dil[i] + 1 - pads[i] - pads[i + 2]), 9)) for i in range(2)]
    attrs = {"stride": draw(st.tuples(st.integers(1, 3), st.integers(1, 3))), "dilation": list(dil), "groups": g,
             "padding": padding}
    return [(2, cg * g, *hw), (og * g, cg, *k)], attrs


@SETTINGS
@given(config=conv_config())
def test_conv2d_shape_matches_numpy(config: tuple[list[Shape], dict[str, Any]]) -> None:
    shapes_, attrs = config
    inferred, actual = infer_and_run("conv2d", shapes_, attrs)
    assert inferred == actual


@SETTINGS
@given(data=st.data(), op=st.sampled_from(["max_pool2d", "avg_pool2d"]), ceil_mode=st.booleans())
def test_pool_shape_matches_numpy(data: st.DataObject, op: str, ceil_mode: bool) -> None:
    k = data.draw(st.tuples(st.integers(1, 4), st.integers(1, 4)))
    dil = data.draw(st.tuples(st.integers(1, 2), st.integers(1, 2))) if op == "max_pool2d" else (1, 1)
    ext = [(k[i] - 1) * dil[i] + 1 for i in range(2)]
    pads = [data.draw(st.integers(0, ext[i % 2] // 2)) for i in range(4)]
    hw = [data.draw(st.integers(max(1, ext[i] - pads[i] - pads[i + 2]), 9)) for i in range(2)]
    attrs: dict[str, Any] = {"kernel": list(k), "stride": data.draw(st.sampled_from([None, 1, 2, [3, 2]])),
                             "padding": pads, "ceil_mode": ceil_mode}
    if op == "max_pool2d":
        attrs["dilation"] = list(dil)
    inferred, actual = infer_and_run(op, [(2, 3, *hw)], attrs)
    assert inferred == actual


def test_symbolic_conv_and_pool_shapes() -> None:
    g, (x, w, i) = sym_graph(("f32", ["B", 2, "T", "T"]), ("f32", [4, 2, 3, 3]), ("i64", ["B", "T"]))
    assert str(emit1(g, "conv2d", [x, w]).type) == "f32[B, 4, T - 2, T - 2]"
    assert str(emit1(g, "conv2d", [x, w], {"padding": "same"}).type) == "f32[B, 4, T, T]"
    same = g.nodes[-1].attrs["padding"]
    assert same == [1, 1, 1, 1]
    assert str(emit1(g, "max_pool2d", [x], {"kernel": 3, "stride": 1, "padding": 1}).type) == "f32[B, 2, T, T]"
    assert str(emit1(g, "gather", [w, i], {"axis": 1}).type) == "f32[4, B, T, 3, 3]"
    assert str(emit1(g, "one_hot", [i], {"n": 7}).type) == "f32[B, T, 7]"
    assert str(emit1(g, "pad", [x], {"pads": [0, 0, 0, 0, 1, 2, 0, 0]}).type) == "f32[B, 2, T + 3, T]"


def test_padding_is_canonical_four_ints() -> None:
    """int, pair, four ints, "valid" and "same" all become [top, left, bottom, right] in the node."""
    g, (x, w) = sym_graph(("f32", ["B", 2, 9, 8]), ("f32", [4, 2, 4, 4]))
    want = {1: [1, 1, 1, 1], (1, 2): [1, 2, 1, 2], (1, 0, 2, 1): [1, 0, 2, 1], "valid": [0, 0, 0, 0]}
    for given_, pads in want.items():
        emit1(g, "conv2d", [x, w], {"padding": list(given_) if isinstance(given_, tuple) else given_})
        assert g.nodes[-1].attrs["padding"] == pads
    # SAME_UPPER, stride 2: H=9 needs 3 cells (1 top, 2 bottom), W=8 needs 2 (1 left, 1 right).
    emit1(g, "conv2d", [x, w], {"padding": "same", "stride": 2})
    assert g.nodes[-1].attrs["padding"] == [1, 1, 2, 1] and g.nodes[-1].attrs["stride"] == [2, 2]
    emit1(g, "avg_pool2d", [x], {"kernel": 2})
    assert g.nodes[-1].attrs["stride"] == [2, 2], "a pool's stride defaults to its kernel"


def conv_error(x: list[Any], w: list[Any], **attrs: Any) -> TypeError_:
    return type_error(("f32", x), ("f32", w), op="conv2d", attrs=attrs)


def test_conv_channel_mismatch_names_both_types() -> None:
    err = conv_error(["B", 3, 8, 8], [8, 4, 3, 3])
    assert "x: f32[B, 3, 8, 8] has C=3 channels but w: f32[8, 4, 3, 3] expects 4 (groups=1)" in err.message
    assert err.hint is not None and "groups" in err.hint and "NCHW" in err.hint
    err = conv_error(["B", 4, 8, 8], [6, 4, 3, 3], groups=2)
    assert "C=4 channels" in err.message and "expects 8 (groups=2)" in err.message
    err = conv_error(["B", 4, 8, 8], [5, 2, 3, 3], groups=2)
    assert "not a multiple of groups=2" in err.message


@pytest.mark.parametrize(
    ("op", "types", "attrs"),
    [
        ("conv2d", [("f32", ["B", 1, 4, 4]), ("f32", [2, 1, 5, 5])], {}),
        ("conv2d", [("f32", ["B", 1, 4, 9]), ("f32", [2, 1, 3, 3])], {"dilation": 2}),
        ("conv2d", [("f32", ["B", 1, 3, 3]), ("f32", [2, 1, 6, 2])], {"padding": [1, 0]}),
        ("max_pool2d", [("f32", ["B", 1, 2, 8])], {"kernel": 3}),
        ("avg_pool2d", [("f32", ["B", 1, 8, 1])], {"kernel": [1, 2]}),
    ],
)
def test_kernel_larger_than_padded_input(op: str, types: list[tuple[str, list[Any]]], attrs: dict[str, Any]) -> None:
    err = type_error(*types, op=op, attrs=attrs)
    assert "is larger than the input x: " + str(TensorType.make(*types[0])) in err.message, err.message
    assert err.hint is not None and "pad" in err.hint


def test_conv_errors_are_located_with_hints() -> None:
    import dlir

    src = (
        "model M(x: f32[B, 3, 4, 4]) -> f32[B, 8, 1, 1] {{\n"
        "    param w: f32[8, {c}, {k}, {k}] = glorot_uniform\n"
        "    return conv2d(x, w{extra})\n"
        "}}\n"
    )
    for c, k, extra, fragment in [
        (4, 3, "", "has C=3 channels but w: f32[8, 4, 3, 3] expects 4 (groups=1)"),
        (3, 5, "", "the 5x5 kernel is larger than the input x: f32[B, 3, 4, 4] padded by [0, 0, 0, 0] (4x4)"),
        (3, 4, ", stride=2, padding=\"same\"", None),
    ]:
        text = src.format(c=c, k=k, extra=extra)
        if fragment is None:  # a well-typed control: SAME with stride 2 on 4x4 gives 2x2
            text = text.replace("f32[B, 8, 1, 1]", "f32[B, 8, 2, 2]")
            dlir.loads(text, "m.dlir").graph(None)
            continue
        with pytest.raises(TypeError_) as info:
            dlir.loads(text, "m.dlir").graph(None)
        e = info.value
        assert e.loc is not None and (e.loc.file, e.loc.line, e.loc.col) == ("m.dlir", 3, 12), e.render()
        assert fragment in e.message and e.hint, e.render()


@pytest.mark.parametrize(
    ("op", "types", "attrs", "needle"),
    [
        ("conv2d", [("f32", ["B", 3, 8, 8]), ("f32", [4, 3, 3, 3]), ("f32", [5])], {}, "b: f32[5] must be [O] = [4]"),
        ("conv2d", [("f32", ["B", 3, 8]), ("f32", [4, 3, 3, 3])], {}, "NCHW"),
        ("conv2d", [("f32", ["B", 3, 8, 8]), ("f32", [4, 3, 3, 3])], {"padding": "sam"}, "sam"),
        ("conv2d", [("f32", ["B", 3, 8, 8]), ("f32", [4, 3, 3, 3])], {"padding": [1, 2, 3]}, "four ints"),
        ("conv2d", [("f32", ["B", 3, 8, 8]), ("f32", [4, 3, 3, 3])], {"stride": [1, 2, 3]}, "pair"),
        ("conv2d", [("f32", ["B", 3, 8, 8]), ("f32", [4, 3, 3, 3])], {"stride": 0}, "stride"),
        ("conv2d", [("f32", ["B", 3, "T", 8]), ("f32", [4, 3, 3, 3])], {"padding": "same", "stride": 2}, "symbol T"),
        ("conv2d", [("f32", ["B", 3, 8, 8]), ("f64", [4, 3, 3, 3])], {}, "f64[4, 3, 3, 3]"),
        ("max_pool2d", [("f32", ["B", 3, 8, 8])], {"kernel": 3, "padding": 2}, "more than half"),
        ("avg_pool2d", [("i32", ["B", 3, 8, 8])], {"kernel": 2}, "i32[B, 3, 8, 8]"),
        ("batch_norm", [("f32", ["B", 3, 4, 4]), ("f32", [3]), ("f32", [3]), ("f32", [4]), ("f32", [3])], {},
         "mean: f32[4] must be [C] = [3]"),
        ("pad", [("f32", ["B", 3])], {"pads": [1, 1]}, "needs 4"),
        ("pad", [("f32", ["B", 3])], {"pads": [1, 1, -1, 0]}, "negative"),
        ("gather", [("f32", ["B", 3]), ("f32", [2])], {}, "idx: f32[2] must hold integers"),
        ("gather", [("f32", ["B", 3]), ("i64", [2])], {"axis": 2}, "axis 2"),
        ("one_hot", [("f32", ["B"])], {"n": 3}, "i: f32[B]"),
        ("one_hot", [("i64", ["B"])], {"n": 0}, "n=0"),
    ],
)
def test_bad_nn_application_is_a_type_error(
    op: str, types: list[tuple[str, list[Any]]], attrs: dict[str, Any], needle: str
) -> None:
    err = type_error(*types, op=op, attrs=attrs)
    assert needle in err.message, f"{needle!r} not in {err.message!r}"
