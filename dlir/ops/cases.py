"""The per-op case table that drives the cross-target agreement tests and ``dlirc doctor``.

Every op in :func:`dlir.ops.lowered_ops` has one or more :class:`Case` rows here: the
input types (symbolic dims allowed), the attributes, how to draw input values
that are safe for the op, and the symbol bindings to run at. What a case is made
of and what is done with it (build, feed, judge, group into suites) is in
:mod:`dlir.ops.case_kit`. ``tests/test_ops.py`` fails when an op has no case, so a
new op gets tested the moment it is registered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dlir.ir.builder import emit1
from dlir.ir.graph import Graph, Value
from dlir.ir.scan import emit_scan, scan_body, step_type
from dlir.ir.types import Dim, DimLike, DType
from dlir.ops.case_kit import (
    DEFAULT_BINDINGS,
    TIES,
    Case,
    Gen,
    Input,
    away_from_zero,
    choice,
    floats,
    inp,
    ints,
    labels,
)
from dlir.ops.cases_backward import add_backward_cases
from dlir.ops.cases_import import add_import_cases
from dlir.ops.shape import END

CASES: list[Case] = []


def case(
    op: str, label: str, *inputs: Input, bindings: tuple[dict[str, int], ...] = DEFAULT_BINDINGS, **attrs: Any
) -> None:
    """Add a row: ``inputs`` become the graph inputs, keyword arguments the op's attributes."""
    CASES.append(Case(op, label, tuple(inputs), attrs, bindings))


B, T = Dim.of("B"), Dim.of("T")

# -- elementwise: unary ---------------------------------------------------------------------

_UNARY_RANGES: dict[str, Gen] = {
    "exp": floats(-3, 3),
    "log": floats(0.1, 5),
    "sqrt": floats(0.1, 5),
    "rsqrt": floats(0.1, 5),
    "sin": floats(-4, 4),
    "cos": floats(-4, 4),
    "tanh": floats(-4, 4),
    "sigmoid": floats(-10, 10),
    "relu": choice(-1.5, -0.25, 0.0, 0.75, 2.0),
    "silu": floats(-6, 6),
    "softplus": floats(-10, 10),
    "erf": floats(-3, 3),
    "floor": floats(-4, 4),
    "ceil": floats(-4, 4),
    "sign": choice(-2.0, -0.5, 0.0, 0.5, 3.0),
    "neg": floats(),
    "abs": floats(),
}
_gen: Gen | None  # shared by the loops below (the cast rows have no generator)
for _op, _gen in _UNARY_RANGES.items():
    case(_op, "f32", inp("f32", ["B", 3, 4], _gen))
for _op in ("exp", "log", "tanh", "sigmoid", "softplus", "erf", "silu", "sqrt"):
    case(_op, "f64", inp("f64", ["B", 5], _UNARY_RANGES[_op]))
case("exp", "f32_scalar", inp("f32", [], floats(-2, 2)))
case("softplus", "f32_large", inp("f32", ["B", 4], floats(-60, 60)))
case("sigmoid", "f32_large", inp("f32", ["B", 4], floats(-60, 60)))
for _op, _dt in (("neg", "i32"), ("abs", "i64"), ("relu", "i32"), ("sign", "i64"), ("abs", "i32")):
    case(_op, _dt, inp(_dt, ["B", 4]))

case("gelu", "exact_f32", inp("f32", ["B", 3, 4], floats(-5, 5)))
case("gelu", "tanh_f32", inp("f32", ["B", 3, 4], floats(-5, 5)), approximate="tanh")
case("gelu", "exact_f64", inp("f64", ["B", 6], floats(-5, 5)), approximate="none")
case("gelu", "tanh_f64", inp("f64", ["B", 6], floats(-5, 5)), approximate="tanh")
case("leaky_relu", "default", inp("f32", ["B", 6]))
case("leaky_relu", "alpha_f64", inp("f64", ["B", 6]), alpha=0.2)
case("elu", "default", inp("f32", ["B", 6]))
case("elu", "alpha_f64", inp("f64", ["B", 6]), alpha=0.5)
case("clip", "both", inp("f32", ["B", 6]), min=-1.0, max=1.5)
case("clip", "min_only", inp("f32", ["B", 6]), min=-0.5)
case("clip", "max_only", inp("f64", ["B", 6]), max=0.25)
case("clip", "i32_both", inp("i32", ["B", 6]), min=-3, max=4)
case("clip", "i64_max_only", inp("i64", ["B", 6]), max=2)

# -- elementwise: binary --------------------------------------------------------------------

case("add", "rank_mismatch", inp("f32", ["B", 3, 4]), inp("f32", [4]))
case("add", "size1_dims_f64", inp("f64", ["B", 1, 4]), inp("f64", [3, 1]))
case("add", "scalar_lhs", inp("f32", []), inp("f32", ["B", 3]))
case("add", "i32", inp("i32", ["B", 3]), inp("i32", ["B", 3]))
case("add", "i64_symbolic_1", inp("i64", [1, "T"]), inp("i64", ["B", 1]))
case("sub", "symbolic_B_with_1", inp("f32", ["B", 3]), inp("f32", [1, 3]))
case("sub", "i64_rank_mismatch", inp("i64", [3]), inp("i64", ["B", 2, 3]))
case("mul", "f32", inp("f32", ["B", 3, 4]), inp("f32", ["B", 3, 4]))
case("mul", "f64_bcast", inp("f64", ["B", 1]), inp("f64", [1, 5]))
case("mul", "i32", inp("i32", ["B", 4]), inp("i32", [4]))
case("div", "f32", inp("f32", ["B", 3, 4]), inp("f32", [3, 1], away_from_zero()))
case("div", "f64", inp("f64", ["B", 4]), inp("f64", ["B", 4], away_from_zero()))
case("div", "i32_negative_trunc", inp("i32", ["B", 8], ints(-20, 20)), inp("i32", ["B", 8], ints(-5, 5, nonzero=True)))
case("div", "i64_negative_bcast", inp("i64", ["B", 6], ints(-20, 20)), inp("i64", [6], choice(-7, -3, -2, 2, 3, 7)))
case("pow", "f32_pos_base", inp("f32", ["B", 4], floats(0.5, 3)), inp("f32", ["B", 4], floats(-2, 2)))
case("pow", "f64_bcast", inp("f64", ["B", 3], floats(0.5, 3)), inp("f64", [], floats(-2, 3)))
case("pow", "i32", inp("i32", ["B", 4], ints(-3, 3)), inp("i32", [4], ints(0, 3)))
case("maximum", "f32_ties", inp("f32", ["B", 4], TIES), inp("f32", [4], TIES))
case("maximum", "i64", inp("i64", ["B", 4]), inp("i64", ["B", 1]))
case("minimum", "f32_ties", inp("f32", ["B", 4], TIES), inp("f32", ["B", 4], TIES))
case("minimum", "f64_bcast", inp("f64", [3, 1]), inp("f64", ["B", 1, 4]))
case("minimum", "i32", inp("i32", ["B", 4]), inp("i32", ["B", 4]))

for _op in ("equal", "not_equal", "less", "less_equal", "greater", "greater_equal"):
    case(_op, "f32_ties_bcast", inp("f32", ["B", 4], TIES), inp("f32", [4], TIES))
case("equal", "i32", inp("i32", ["B", 4], ints(-2, 2)), inp("i32", ["B", 4], ints(-2, 2)))
case("equal", "bool", inp("bool", ["B", 4]), inp("bool", [1, 4]))
case("not_equal", "bool", inp("bool", ["B", 4]), inp("bool", ["B", 4]))
case("less", "i64", inp("i64", ["B", 4], ints(-2, 2)), inp("i64", [], ints(-1, 1)))
case("greater_equal", "f64", inp("f64", ["B", 3], TIES), inp("f64", ["B", 3], TIES))

case("where", "bcast_cond_f32", inp("bool", ["B", 1]), inp("f32", ["B", 3]), inp("f32", [3]))
case("where", "scalar_branch_i64", inp("bool", ["B", 3]), inp("i64", ["B", 3]), inp("i64", []))
case("where", "f64_rank_mismatch", inp("bool", [4]), inp("f64", ["B", 1]), inp("f64", ["B", 4]))
case("where", "bool_data", inp("bool", ["B", 3]), inp("bool", ["B", 3]), inp("bool", [1, 3]))

_CASTS: tuple[tuple[str, str, Gen | None, str], ...] = (
    ("f32", "i32", floats(-5, 5), "trunc_negatives"),
    ("f64", "i64", floats(-50, 50), "trunc_negatives"),
    ("f32", "f64", floats(), "widen"),
    ("f64", "f32", floats(), "round"),
    ("i32", "f32", ints(-1000, 1000), "from_int"),
    ("i64", "i32", ints(-1000, 1000), "narrow"),
    ("i32", "i64", ints(), "widen"),
    ("bool", "f32", None, "from_bool"),
    ("bool", "i64", None, "from_bool"),
    ("f32", "bool", choice(-1.5, 0.0, 0.0, 0.25), "to_bool"),
    ("i32", "bool", ints(-2, 2), "to_bool"),
    ("f32", "f32", floats(), "identity"),
)
for _src, _dst, _gen, _what in _CASTS:
    case("cast", f"{_src}_to_{_dst}_{_what}", inp(_src, ["B", 6], _gen), dtype=DType(_dst))

case("constant", "f32_scalar", value=2.5, dtype=DType.f32)
case("constant", "i64_nested", value=[[1, -2, 3], [4, 5, -6]], dtype=DType.i64)
case("constant", "bool_list", value=[True, False, True], dtype=DType.bool)
case("constant", "f64_list", value=[0.1, -2.0, 3.25], dtype=DType.f64)
case("constant", "ints_as_f32", value=[1, 2, 3], dtype=DType.f32)
case("constant", "i32_scalar", value=-7, dtype=DType.i32)

# -- reductions -------------------------------------------------------------------------------

_X3: list[DimLike] = ["B", 3, 4]
case("sum", "axis1", inp("f32", _X3), axis=1)
case("sum", "all_axes", inp("f32", _X3))
case("sum", "i32_axes_keepdims", inp("i32", _X3), axis=[0, 2], keepdims=True)
case("sum", "f64_neg_axis_keepdims", inp("f64", _X3), axis=-1, keepdims=True)
case("sum", "i64_all_keepdims", inp("i64", ["B", 3]), keepdims=True)
case("mean", "neg_axes", inp("f32", _X3), axis=[-1, -2])
case("mean", "all_keepdims", inp("f32", _X3), keepdims=True)
case("mean", "f64_axis0", inp("f64", _X3), axis=0)
case("max", "all_axes", inp("f32", _X3))
case("max", "i64_axis1_keepdims", inp("i64", _X3), axis=1, keepdims=True)
case("max", "axes_0_neg1", inp("f32", _X3, TIES), axis=[0, -1])
case("min", "neg_axis_keepdims", inp("f32", _X3), axis=-1, keepdims=True)
case("min", "i32_all", inp("i32", _X3))
case("min", "f64_axes", inp("f64", _X3), axis=[1, 2])
case("prod", "axis1", inp("f32", _X3, floats(0.5, 1.5)), axis=1)
case("prod", "i64_neg_axis", inp("i64", _X3, ints(-2, 2)), axis=-1)
case("prod", "f64_all", inp("f64", ["B", 4], floats(0.5, 1.5)))
case("logsumexp", "neg_axis", inp("f32", _X3), axis=-1)
case("logsumexp", "axes_keepdims", inp("f32", _X3), axis=[1, 2], keepdims=True)
case("logsumexp", "f64_all", inp("f64", _X3))
case("logsumexp", "large_values", inp("f32", ["B", 6], floats(-200, 200)), axis=1)
case("var", "neg_axis", inp("f32", _X3), axis=-1)
case("var", "axes_keepdims_correction1", inp("f32", _X3), axis=[0, 1], keepdims=True, correction=1)
case("var", "all_axes", inp("f32", _X3))
case("var", "f64_axis1_correction1", inp("f64", _X3), axis=1, correction=1)
case("argmax", "ties_axis1", inp("f32", _X3, TIES), axis=1)
case("argmax", "default_axis_keepdims", inp("f32", _X3, TIES), keepdims=True)
case("argmax", "i32_ties_axis0", inp("i32", _X3, ints(-1, 1)), axis=0)
case("argmax", "f64", inp("f64", ["B", 7]))
case("argmin", "ties_neg_axis", inp("f32", _X3, TIES), axis=-2)
case("argmin", "i64_ties_keepdims", inp("i64", _X3, ints(-1, 1)), axis=2, keepdims=True)
case("argmin", "f64", inp("f64", ["B", 7]), axis=0)
for _op in ("softmax", "log_softmax"):
    case(_op, "default_axis", inp("f32", _X3))
    case(_op, "axis1", inp("f32", _X3), axis=1)
    case(_op, "large_values", inp("f32", ["B", 6], floats(-200, 200)))
    case(_op, "f64_axis0", inp("f64", ["B", 6]), axis=0)

# -- linear algebra ------------------------------------------------------------------------

case("matmul", "2d", inp("f32", ["B", 3]), inp("f32", [3, 4]))
case("matmul", "batched", inp("f32", ["B", 2, 3]), inp("f32", ["B", 3, 4]))
case("matmul", "broadcast_rhs", inp("f32", ["B", 2, 3]), inp("f32", [3, 4]))
case("matmul", "broadcast_batch", inp("f32", [2, 1, 3, 4]), inp("f32", ["B", 4, 2]))
case("matmul", "vec_mat", inp("f32", [3]), inp("f32", ["B", 3, 4]))
case("matmul", "mat_vec", inp("f32", ["B", 3]), inp("f32", [3]))
case("matmul", "vec_vec", inp("f32", ["B"]), inp("f32", ["B"]))
case("matmul", "f64_batched", inp("f64", ["B", 2, 5]), inp("f64", [1, 5, 3]))
case("matmul", "i32", inp("i32", ["B", 3], ints(-4, 4)), inp("i32", [3, 2], ints(-4, 4)))
case("matmul", "i64", inp("i64", ["B", 2, 3], ints(-4, 4)), inp("i64", [3, 2], ints(-4, 4)))
case("linear", "bias_relu", inp("f32", ["B", 3]), inp("f32", [3, 4]), inp("f32", [4]), act="relu")
case("linear", "no_bias", inp("f32", ["B", 3]), inp("f32", [3, 4]))
case("linear", "batched_gelu", inp("f32", ["B", 2, 3]), inp("f32", [3, 4]), inp("f32", [4]), act="gelu")
case("linear", "gelu_tanh_f64", inp("f64", ["B", 5]), inp("f64", [5, 3]), inp("f64", [3]), act="gelu_tanh")
case("linear", "tanh", inp("f32", ["B", 3]), inp("f32", [3, 2]), inp("f32", [2]), act="tanh")
case("linear", "sigmoid_3d", inp("f32", ["B", "T", 3]), inp("f32", [3, 2]), inp("f32", [2]), act="sigmoid")
case("linear", "silu_f64", inp("f64", ["B", 4]), inp("f64", [4, 3]), inp("f64", [3]), act="silu")
case("transpose", "default_reverses", inp("f32", ["B", 3, 4]))
case("transpose", "perm_021", inp("f32", ["B", 3, 4]), perm=[0, 2, 1])
case("transpose", "negative_perm", inp("f64", ["B", 3, 4]), perm=[-1, 0, 1])
case("transpose", "i64_4d", inp("i64", ["B", 2, 3, 4]), perm=[0, 2, 3, 1])

# -- shape ops --------------------------------------------------------------------------------

case("reshape", "symbolic_and_hole", inp("f32", ["B", 3, 4]), shape=[B, -1])
case("reshape", "symbolic_split", inp("f32", ["B", 12]), shape=[B, 3, 4])
case("reshape", "static_hole", inp("i32", [2, 6]), shape=[-1, 3])
case("reshape", "merge_symbols", inp("f32", ["B", "T", 4]), shape=[B * T, 4])
case("reshape", "hole_first", inp("f64", ["B", "T", 4]), shape=[-1, T, 2, 2])
case("reshape", "flat", inp("i64", ["B", 3]), shape=[-1])
case("flatten", "default", inp("f32", ["B", 2, 3, 4]))
case("flatten", "start0", inp("f32", ["B", 2, 3]), start=0)
case("flatten", "start1_end2", inp("i32", ["B", 2, 3, 4]), start=1, end=2)
case("flatten", "negative_start", inp("f64", ["B", 2, 3, 4]), start=-2)
case("flatten", "scalar", inp("f32", []))
case("concat", "three_axis1", inp("f32", ["B", 2]), inp("f32", ["B", 3]), inp("f32", ["B", 1]), axis=1)
case("concat", "neg_axis", inp("f64", ["B", 2, 3]), inp("f64", ["B", 2, 1]), axis=-1)
case("concat", "symbolic_axis", inp("f32", ["B", 3]), inp("f32", ["T", 3]), inp("f32", ["B", 3]), axis=0)
case("concat", "i64_single", inp("i64", ["B", 3]), axis=1)
case("concat", "bool", inp("bool", [2, "B"]), inp("bool", [1, "B"]))
case("stack", "three_axis0", inp("f32", ["B", 3]), inp("f32", ["B", 3]), inp("f32", ["B", 3]))
case("stack", "neg_axis", inp("f64", ["B", 3]), inp("f64", ["B", 3]), axis=-1)
case("stack", "i32_axis1", inp("i32", ["B", 3]), inp("i32", ["B", 3]), axis=1)
case("split", "three_neg_axis", inp("f32", ["B", 6]), sizes=[1, 2, 3], axis=-1)
case("split", "axis0_static", inp("f64", [4, "B"]), sizes=[1, 3], axis=0)
case("split", "i64_axis1", inp("i64", ["B", 4, 2]), sizes=[2, 2], axis=1)
case("split", "one_piece", inp("f32", ["B", 3]), sizes=[3], axis=1)
_S1: dict[str, Any] = {"axes": [1], "steps": [1]}
case("slice", "neg_start_to_end", inp("f32", ["B", 6]), starts=[-2], ends=[END], **_S1)
case("slice", "step2_to_end", inp("f32", ["B", 7]), starts=[1], ends=[END], axes=[1], steps=[2])
case("slice", "out_of_range_end", inp("i32", ["B", 6]), starts=[2], ends=[100], **_S1)
case("slice", "out_of_range_neg_start", inp("f32", ["B", 6]), starts=[-100], ends=[-1], **_S1)
case("slice", "two_axes_unsorted", inp("f32", ["B", 6, 5]), starts=[1, -3], ends=[END, -1], axes=[2, 1], steps=[1, 1])
case("slice", "neg_axis_step3", inp("f64", ["B", 3, 8]), starts=[0], ends=[END], axes=[-1], steps=[3])
case("slice", "symbolic_from_1", inp("f32", ["T", 3]), starts=[1], ends=[END], axes=[0], steps=[1])
case("slice", "symbolic_neg_end", inp("i64", ["B", 4]), starts=[0], ends=[-1], axes=[0], steps=[1])
case("squeeze", "default", inp("f32", ["B", 1, 3, 1]))
case("squeeze", "axis1", inp("f32", ["B", 1, 3, 1]), axes=[1])
case("squeeze", "neg_axis_i64", inp("i64", ["B", 3, 1]), axes=-1)
case("squeeze", "default_symbol_bound_to_1", inp("f32", ["B", 1, 3]), bindings=({"B": 1}, {"B": 3}))
case("unsqueeze", "front", inp("f32", ["B", 3]), axes=[0])
case("unsqueeze", "neg_axis", inp("i32", ["B", 3]), axes=[-1])
case("unsqueeze", "two_axes", inp("f64", ["B", 3]), axes=[3, 1])
case("unsqueeze", "scalar", inp("f32", []), axes=[0])
case("broadcast_to", "symbolic", inp("f32", ["B", 1]), shape=[B, 4])
case("broadcast_to", "new_leading_dims", inp("f32", ["B", 1, 3]), shape=[2, B, 4, 3])
case("broadcast_to", "static_i64", inp("i64", [1, 3]), shape=[5, 3])
case("broadcast_to", "from_vector", inp("f64", [3]), shape=[2, 4, 3])

# -- nn and losses ------------------------------------------------------------------------------

case("layer_norm", "last_axis", inp("f32", ["B", "T", 4]), inp("f32", [4]), inp("f32", [4]))
case("layer_norm", "two_axes", inp("f32", ["B", 3, 4]), inp("f32", [3, 4]), inp("f32", [3, 4]), axis=-2)
case("layer_norm", "f64_eps", inp("f64", ["B", 6]), inp("f64", [6]), inp("f64", [6]), eps=1e-3)
_OFFSET = inp("f32", ["B", 2, 5], floats(-20, 40))  # a large mean: variance must not cancel
case("layer_norm", "positive_axis", _OFFSET, inp("f32", [2, 5]), inp("f32", [2, 5]), axis=1)
case("dropout", "p03", inp("f32", ["B", 6]), p=0.3)
case("dropout", "default_f64", inp("f64", ["B", 6]))
case("dropout", "i64", inp("i64", ["B", 6]), p=0.1)
case("cross_entropy", "i64_labels", inp("f32", ["B", 5]), inp("i64", ["B"], labels(5)))
case("cross_entropy", "i32_labels", inp("f32", ["B", 5]), inp("i32", ["B"], labels(5)))
case("cross_entropy", "f64", inp("f64", ["B", 3]), inp("i64", ["B"], labels(3)))
case("cross_entropy", "large_logits", inp("f32", ["B", 4], floats(-200, 200)), inp("i64", ["B"], labels(4)))
case("mse", "same_shape", inp("f32", ["B", 3]), inp("f32", ["B", 3]))
case("mse", "broadcast", inp("f32", ["B", 3]), inp("f32", [3]))
case("mse", "f64", inp("f64", ["B", 3, 2]), inp("f64", ["B", 3, 2]))
case("bce_with_logits", "f32", inp("f32", ["B", 3], floats(-5, 5)), inp("f32", ["B", 3], floats(0, 1)))
case("bce_with_logits", "large_logits", inp("f32", ["B", 3], floats(-200, 200)), inp("f32", ["B", 3], choice(0.0, 1.0)))
case("bce_with_logits", "f64_broadcast", inp("f64", ["B", 3], floats(-5, 5)), inp("f64", [3], floats(0, 1)))


# -- convolution, pooling, batch norm (NCHW) ----------------------------------------------------

case("conv2d", "bias", inp("f32", ["B", 3, 8, 8]), inp("f32", [4, 3, 3, 3]), inp("f32", [4]))
case("conv2d", "stride2_no_bias", inp("f32", ["B", 3, 9, 8]), inp("f32", [4, 3, 3, 3]), stride=2)
case("conv2d", "dilation2_pad_pair", inp("f32", ["B", 2, 9, 9]), inp("f32", [3, 2, 3, 3]), dilation=2, padding=[2, 1])
case("conv2d", "groups2", inp("f32", ["B", 4, 7, 7]), inp("f32", [6, 2, 3, 3]), inp("f32", [6]), groups=2, padding=1)
case("conv2d", "depthwise", inp("f32", ["B", 3, 8, 8]), inp("f32", [3, 1, 3, 3]), inp("f32", [3]), groups=3, padding=1)
case("conv2d", "depthwise_multiplier2", inp("f32", ["B", 3, 7, 6]), inp("f32", [6, 1, 3, 3]), groups=3, stride=2)
case(
    "conv2d",
    "pads4_stride_pair",
    inp("f32", ["B", 2, 8, 7]),
    inp("f32", [3, 2, 2, 3]),
    padding=[1, 0, 2, 1],
    stride=[2, 1],
)
# H=9, W=8, k=4, s=2: SAME pads H by 3 (1 top, 2 bottom) and W by 2; the extra cell goes bottom/right.
case(
    "conv2d",
    "same_even_kernel_stride2",
    inp("f32", ["B", 2, 9, 8]),
    inp("f32", [4, 2, 4, 4]),
    inp("f32", [4]),
    stride=2,
    padding="same",
)
case("conv2d", "same_even_kernel_stride1", inp("f32", ["B", 2, 6, 6]), inp("f32", [3, 2, 2, 4]), padding="same")
case("conv2d", "valid_f64", inp("f64", ["B", 2, 6, 5]), inp("f64", [3, 2, 3, 2]), inp("f64", [3]), padding="valid")
case("conv2d", "symbolic_hw_same_stride1", inp("f32", ["B", 2, "T", "T"]), inp("f32", [3, 2, 3, 3]), padding="same")
# fused activations (the fuse pass makes these; act as linear's)
case(
    "conv2d", "bias_relu", inp("f32", ["B", 3, 6, 6]), inp("f32", [4, 3, 3, 3]), inp("f32", [4]), padding=1, act="relu"
)
case("conv2d", "stride2_gelu_tanh_f64", inp("f64", ["B", 2, 7, 6]), inp("f64", [3, 2, 3, 3]), stride=2, act="gelu_tanh")
case(
    "conv2d",
    "groups2_bias_sigmoid",
    inp("f32", ["B", 4, 5, 5]),
    inp("f32", [4, 2, 3, 3]),
    inp("f32", [4]),
    groups=2,
    act="sigmoid",
)

case("max_pool2d", "k2", inp("f32", ["B", 3, 8, 8]), kernel=2)
case("max_pool2d", "k3_s2_pad1", inp("f32", ["B", 2, 7, 7], TIES), kernel=3, stride=2, padding=1)
# H=8: floor gives 4 windows, ceil_mode 5 (the last one hangs past the bottom padding).
case("max_pool2d", "ceil_mode", inp("f32", ["B", 2, 8, 6]), kernel=3, stride=2, padding=1, ceil_mode=True)
# ceil would give 3 windows, but the last would start in the bottom padding: PyTorch drops it.
case("max_pool2d", "ceil_mode_drops_last", inp("f32", ["B", 2, 4, 5]), kernel=2, stride=3, padding=1, ceil_mode=True)
case("max_pool2d", "dilation2_pad1", inp("f32", ["B", 2, 9, 9]), kernel=2, stride=1, dilation=2, padding=1)
case("max_pool2d", "same_even_stride2", inp("f32", ["B", 2, 7, 8], floats(-5, -1)), kernel=2, stride=2, padding="same")
case("max_pool2d", "rect_f64", inp("f64", ["B", 3, 6, 7]), kernel=[2, 3], stride=[1, 2])
case(
    "max_pool2d", "pads4_ceil_f64", inp("f64", ["B", 2, 7, 8]), kernel=3, stride=2, padding=[1, 0, 0, 1], ceil_mode=True
)

add_backward_cases(case)  # the rows of the backward ops (dlir.ops.backward)
add_import_cases(case)  # the rows of the ops added for imported models (logic, mod, bitwise, indexing)

case("avg_pool2d", "k2", inp("f32", ["B", 3, 8, 8]), kernel=2)
case("avg_pool2d", "pad1_include_pad", inp("f32", ["B", 2, 7, 7]), kernel=3, stride=2, padding=1)
case(
    "avg_pool2d", "pad1_exclude_pad", inp("f32", ["B", 2, 7, 7]), kernel=3, stride=2, padding=1, count_include_pad=False
)
case("avg_pool2d", "ceil_include_pad", inp("f32", ["B", 2, 8, 6]), kernel=3, stride=2, padding=1, ceil_mode=True)
case(
    "avg_pool2d",
    "ceil_exclude_pad",
    inp("f32", ["B", 2, 8, 6]),
    kernel=3,
    stride=2,
    padding=1,
    ceil_mode=True,
    count_include_pad=False,
)
case("avg_pool2d", "ceil_no_pad", inp("f32", ["B", 2, 7, 7]), kernel=2, ceil_mode=True)
case("avg_pool2d", "ceil_drops_last", inp("f32", ["B", 2, 4, 5]), kernel=2, stride=3, padding=1, ceil_mode=True)
case(
    "avg_pool2d",
    "same_even_stride2",
    inp("f32", ["B", 2, 7, 8]),
    kernel=2,
    stride=2,
    padding="same",
    count_include_pad=False,
)
case("avg_pool2d", "pads4_f64", inp("f64", ["B", 2, 6, 7]), kernel=[3, 2], stride=[2, 1], padding=[1, 0, 0, 1])

_VAR = floats(0.1, 2.0)
case(
    "batch_norm",
    "f32_nchw",
    inp("f32", ["B", 3, 5, 4]),
    inp("f32", [3]),
    inp("f32", [3]),
    inp("f32", [3]),
    inp("f32", [3], _VAR),
)
case(
    "batch_norm",
    "f64_eps",
    inp("f64", ["B", 4, 3, 3]),
    inp("f64", [4]),
    inp("f64", [4]),
    inp("f64", [4]),
    inp("f64", [4], _VAR),
    eps=1e-3,
)
case(
    "batch_norm",
    "rank2",
    inp("f32", ["B", 5]),
    inp("f32", [5]),
    inp("f32", [5]),
    inp("f32", [5]),
    inp("f32", [5], _VAR),
)
case(
    "batch_norm",
    "rank3_symbolic",
    inp("f32", ["B", 3, "T"]),
    inp("f32", [3]),
    inp("f32", [3]),
    inp("f32", [3]),
    inp("f32", [3], _VAR),
)

# layout="NHWC" (the layout pass makes these for the tensorflow target): x is [N, H, W, C]
case(
    "conv2d",
    "nhwc_bias_relu_stride2",
    inp("f32", ["B", 7, 6, 3]),
    inp("f32", [4, 3, 3, 3]),
    inp("f32", [4]),
    stride=2,
    padding=1,
    act="relu",
    layout="NHWC",
)
case(
    "conv2d",
    "nhwc_same_groups2_f64",
    inp("f64", ["B", 5, 6, 4]),
    inp("f64", [2, 2, 2, 3]),
    groups=2,
    padding="same",
    layout="NHWC",
)
case(
    "max_pool2d",
    "nhwc_k3_s2_pad1_ceil",
    inp("f32", ["B", 8, 6, 2]),
    kernel=3,
    stride=2,
    padding=1,
    ceil_mode=True,
    layout="NHWC",
)
case(
    "avg_pool2d",
    "nhwc_pad1_exclude_pad",
    inp("f32", ["B", 7, 7, 2]),
    kernel=3,
    stride=2,
    padding=1,
    count_include_pad=False,
    layout="NHWC",
)
case(
    "batch_norm",
    "nhwc",
    inp("f32", ["B", 5, 4, 3]),
    inp("f32", [3]),
    inp("f32", [3]),
    inp("f32", [3]),
    inp("f32", [3], _VAR),
    layout="NHWC",
)

# lrn: odd sizes (symmetric windows) and even ones (one channel further up), windows wider than C,
# alpha large enough that the normalization really bites.
case("lrn", "size3_default", inp("f32", ["B", 5, 4, 3]), size=3)
case("lrn", "size4_params", inp("f32", ["B", 6, 3, 4]), size=4, alpha=0.5, beta=0.6, bias=1.5)
case("lrn", "rank3_size2_symbolic", inp("f32", ["B", 4, "T"]), size=2, alpha=0.3, beta=1.0, bias=2.0)
case("lrn", "rank5_size5_f64", inp("f64", ["B", 4, 2, 3, 2]), size=5, alpha=0.2, beta=0.5, bias=0.5)
case("lrn", "size2_f64", inp("f64", ["B", 5, 3, 3]), size=2, alpha=0.4, beta=0.75, bias=1.0)
case("lrn", "size1", inp("f32", ["B", 3, 2, 2]), size=1, alpha=1.0, beta=0.5, bias=1.0)
case("lrn", "size7_wider_than_c", inp("f32", ["B", 3, 4, 4]), size=7, alpha=0.7, beta=0.75, bias=1.0)
case("lrn", "size6_rank5_f32", inp("f32", ["B", 7, 2, 2, 3]), size=6, alpha=0.9, beta=0.3, bias=1.2)
case("lrn", "rank3_size3_symbolic", inp("f32", ["B", 5, "T"]), size=3, alpha=0.8, beta=0.75, bias=1.0)
case("lrn", "rank5_size3_f32", inp("f32", ["B", 4, 2, 3, 2]), size=3, alpha=0.8, beta=1.0, bias=0.5)
# layout="NHWC": x is [N, H, W, C]; an odd f32 size is TensorFlow's own kernel, the others its helper
case("lrn", "nhwc_size3", inp("f32", ["B", 4, 3, 5]), size=3, alpha=0.8, beta=0.75, bias=1.0, layout="NHWC")
case("lrn", "nhwc_size4_f64", inp("f64", ["B", 3, 2, 6]), size=4, alpha=0.5, beta=0.6, bias=1.5, layout="NHWC")

# -- indexing ----------------------------------------------------------------------------------------

case("pad", "two_axes", inp("f32", ["B", 3, 4]), pads=[0, 0, 1, 2, 3, 0])
case("pad", "value_i64", inp("i64", ["B", 4]), pads=[1, 0, 2, 2], value=-1.0)
case("pad", "nchw_f64", inp("f64", ["B", 2, 3, 3]), pads=[0, 0, 0, 0, 1, 2, 2, 1], value=0.5)
case("pad", "symbolic_axes", inp("f32", ["B", "T"]), pads=[1, 2, 0, 1])
case("gather", "axis0_negative", inp("f32", [5, 3]), inp("i64", ["B"], ints(-5, 4)))
case("gather", "axis1_2d_idx", inp("f32", ["B", 6, 2]), inp("i64", [2, 3], ints(-6, 5)), axis=1)
case("gather", "neg_axis_i32_idx", inp("f64", ["B", 4, 5]), inp("i32", [3], ints(-5, 4)), axis=-1)
case("gather", "embedding", inp("f32", [10, 4]), inp("i64", ["B", "T"], ints(0, 9)))
case("gather", "i64_data", inp("i64", ["B", 5]), inp("i32", [2], ints(-5, 4)), axis=1)
case("one_hot", "out_of_range", inp("i64", ["B", "T"], ints(-2, 6)), n=5)
case("one_hot", "i32_f64", inp("i32", ["B"], ints(0, 3)), n=4, dtype=DType.f64)
case("one_hot", "to_i64_out_of_range", inp("i64", ["B"], ints(-1, 3)), n=3, dtype=DType.i64)


# -- scan (built with emit_scan; the body reads the inputs after xs and the inits as closure) --------


def scan_case(label: str, build: Callable[[Graph, list[Value]], list[Value]], *inputs: Input) -> None:
    CASES.append(Case("scan", label, tuple(inputs), build=build))


def _elman(g: Graph, a: list[Value]) -> list[Value]:
    xs, h0, w, u = a
    body = scan_body(g, step_type(xs.type, 1), [h0.type], ["x_t", "h"])
    x_t, h = body.inputs
    z = emit1(body, "add", [emit1(body, "matmul", [x_t, w]), emit1(body, "matmul", [h, u])])
    hn = emit1(body, "tanh", [z])
    body.outputs = [("h", hn), ("ys", hn)]
    return emit_scan(g, xs, [h0], body, axis=1)


def _two_carries_reverse(g: Graph, a: list[Value]) -> list[Value]:
    xs, a0, c0 = a
    body = scan_body(g, step_type(xs.type, 0), [a0.type, c0.type], ["x_t", "a", "c"])
    x_t, h, c = body.inputs
    hn = emit1(
        body, "add", [emit1(body, "mul", [h, emit1(body, "constant", [], {"value": 0.5, "dtype": DType.f32})]), x_t]
    )
    cn = emit1(body, "add", [c, emit1(body, "sum", [x_t], {"axis": 1})])
    body.outputs = [("a", hn), ("c", cn), ("ya", emit1(body, "sigmoid", [hn])), ("yc", cn)]
    return emit_scan(g, xs, [a0, c0], body, axis=0, reverse=True)


def _passthrough(g: Graph, a: list[Value]) -> list[Value]:
    # Body outputs that are a body input (x_t) and one value twice (the new carry is also emitted).
    xs, s0 = a
    body = scan_body(g, step_type(xs.type, 2), [s0.type], ["x_t", "s"])
    x_t, s = body.inputs
    sn = emit1(body, "add", [s, x_t])
    body.outputs = [("s", sn), ("ys", sn), ("xs", x_t)]
    return emit_scan(g, xs, [s0], body, axis=2)


def _cumsum_i64(g: Graph, a: list[Value]) -> list[Value]:
    # An emit that is the unchanged carry (a body input) and a closure value as an emit.
    xs, acc0, k = a
    body = scan_body(g, step_type(xs.type, 0), [acc0.type], ["x_t", "acc"])
    x_t, acc = body.inputs
    body.outputs = [("acc", emit1(body, "add", [acc, x_t])), ("before", acc), ("k", k)]
    return emit_scan(g, xs, [acc0], body, axis=0, reverse=True)


scan_case(
    "elman_axis1",
    _elman,
    inp("f32", ["B", "T", 3]),
    inp("f32", ["B", 4]),
    inp("f32", [3, 4], floats(-1, 1)),
    inp("f32", [4, 4], floats(-0.5, 0.5)),
)
scan_case(
    "two_carries_two_emits_reverse_axis0",
    _two_carries_reverse,
    inp("f32", ["T", "B", 2]),
    inp("f32", ["B", 2]),
    inp("f32", ["B"]),
)
scan_case("passthrough_axis2_f64", _passthrough, inp("f64", ["B", 2, "T"]), inp("f64", ["B", 2]))
scan_case("cumsum_i64_reverse_closure_emit", _cumsum_i64, inp("i64", ["T", 3]), inp("i64", [3]), inp("i64", [2]))


def cases_by_op() -> dict[str, list[Case]]:
    out: dict[str, list[Case]] = {}
    for c in CASES:
        out.setdefault(c.op, []).append(c)
    return out
