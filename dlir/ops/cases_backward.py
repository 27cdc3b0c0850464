"""The case rows of the backward ops (dlir.ops.backward), added to :data:`dlir.ops.cases.CASES`.

Ties (TIES, relu's zeros) check that every target picks the cell the reference picks:
the first maximum of a window, no gradient at relu(0).
"""

from __future__ import annotations

from collections.abc import Callable

from dlir.ops.case_kit import TIES, floats, inp


def add_backward_cases(case: Callable[..., None]) -> None:
    """Each backward op's rows, through ``case`` (dlir.ops.cases's, which appends to CASES)."""
    case("relu_grad", "ties", inp("f32", ["B", 6], TIES), inp("f32", ["B", 6]))
    case("relu_grad", "f64", inp("f64", ["B", 2, 3], TIES), inp("f64", ["B", 2, 3]))
    # y from the activations' ranges, the ends included (a saturated tanh or sigmoid)
    case("tanh_grad", "f32", inp("f32", ["B", 6], floats(-1.0, 1.0)), inp("f32", ["B", 6]))
    case("tanh_grad", "f64", inp("f64", ["B", 2, 3], floats(-1.0, 1.0)), inp("f64", ["B", 2, 3]))
    case("sigmoid_grad", "f32", inp("f32", ["B", 6], floats(0.0, 1.0)), inp("f32", ["B", 6]))
    case("sigmoid_grad", "f64", inp("f64", ["B", 2, 3], floats(0.0, 1.0)), inp("f64", ["B", 2, 3]))
    case("gelu_grad", "f32", inp("f32", ["B", 6], floats(-5.0, 5.0)), inp("f32", ["B", 6]))
    case("gelu_grad", "tanh_f32", inp("f32", ["B", 6], floats(-5.0, 5.0)), inp("f32", ["B", 6]), approximate="tanh")
    case(
        "gelu_grad", "tanh_f64", inp("f64", ["B", 2, 3], floats(-5.0, 5.0)), inp("f64", ["B", 2, 3]), approximate="tanh"
    )
    case("max_pool2d_grad", "k2_ties", inp("f32", ["B", 3, 8, 8], TIES), inp("f32", ["B", 3, 4, 4]), kernel=2)
    case(
        "max_pool2d_grad",
        "k3_s2_pad1_ties",
        inp("f32", ["B", 2, 7, 7], TIES),
        inp("f32", ["B", 2, 4, 4]),
        kernel=3,
        stride=2,
        padding=1,
    )
    case(
        "max_pool2d_grad",
        "ceil_mode",
        inp("f32", ["B", 2, 8, 6]),
        inp("f32", ["B", 2, 5, 4]),
        kernel=3,
        stride=2,
        padding=1,
        ceil_mode=True,
    )
    case(
        "max_pool2d_grad",
        "pads4_ceil_f64",
        inp("f64", ["B", 2, 7, 8], TIES),
        inp("f64", ["B", 2, 4, 4]),
        kernel=3,
        stride=2,
        padding=[1, 0, 0, 1],
        ceil_mode=True,
    )
    case("max_pool2d_grad", "floor_drops_rows", inp("f32", ["B", 2, 7, 5]), inp("f32", ["B", 2, 3, 2]), kernel=2)
    case(
        "conv2d_input_grad",
        "pad1",
        inp("f32", ["B", 4, 8, 8]),
        inp("f32", [4, 3, 3, 3]),
        size=[8, 8],
        padding=[1, 1, 1, 1],
    )
    case(
        "conv2d_input_grad",
        "stride2_pad1_rows_past_last_window",
        inp("f32", ["B", 4, 4, 4]),
        inp("f32", [4, 2, 3, 3]),
        size=[8, 8],
        stride=[2, 2],
        padding=[1, 1, 1, 1],
    )
    case(
        "conv2d_input_grad",
        "stride2_asymmetric",
        inp("f32", ["B", 3, 5, 4]),
        inp("f32", [3, 2, 3, 3]),
        size=[9, 8],
        stride=[2, 2],
        padding=[1, 0, 1, 1],
    )
    case(
        "conv2d_input_grad",
        "rect_kernel_valid",
        inp("f32", ["B", 3, 5, 3]),
        inp("f32", [3, 2, 2, 3]),
        size=[6, 7],
        stride=[1, 2],
    )

    case(
        "conv2d_weight_grad",
        "pad1",
        inp("f32", ["B", 3, 8, 8]),
        inp("f32", ["B", 4, 8, 8]),
        kernel=[3, 3],
        padding=[1, 1, 1, 1],
    )
    case(
        "conv2d_weight_grad",
        "stride2_asymmetric_rows_not_read",
        inp("f32", ["B", 2, 9, 8]),
        inp("f32", ["B", 3, 5, 4]),
        kernel=[3, 3],
        stride=[2, 2],
        padding=[1, 0, 1, 1],
    )
    case(
        "conv2d_weight_grad",
        "rect_valid",
        inp("f32", ["B", 2, 6, 7]),
        inp("f32", ["B", 3, 5, 3]),
        kernel=[2, 3],
        stride=[1, 2],
    )

    case("layer_norm_grad", "last_axis", inp("f32", ["B", "T", 8]), inp("f32", [8]), inp("f32", ["B", "T", 8]))
    case(
        "layer_norm_grad",
        "two_axes_f64",
        inp("f64", ["B", 4, 3]),
        inp("f64", [4, 3]),
        inp("f64", ["B", 4, 3]),
        axis=1,
        eps=1e-3,
    )
    case("layer_norm_grad", "no_leading_axes", inp("f32", [5, 6]), inp("f32", [5, 6]), inp("f32", [5, 6]), axis=0)

    case("softmax_grad", "last_axis", inp("f32", ["B", 5], floats(0.0, 1.0)), inp("f32", ["B", 5]))
    case("softmax_grad", "axis0_f64", inp("f64", [4, "B"], floats(0.0, 1.0)), inp("f64", [4, "B"]), axis=0)
    case("log_softmax_grad", "last_axis", inp("f32", ["B", 5], floats(-4.0, 0.0)), inp("f32", ["B", 5]))
    case("log_softmax_grad", "axis1_f64", inp("f64", ["B", 3, 2], floats(-4.0, 0.0)), inp("f64", ["B", 3, 2]), axis=1)
    case("batch_norm_train", "nchw", inp("f32", ["B", 3, 4, 5]), inp("f32", [3]), inp("f32", [3]))
    case("batch_norm_train", "rank2_f64", inp("f64", ["B", 4]), inp("f64", [4]), inp("f64", [4]), eps=1e-3)
    case("batch_norm_train", "nhwc", inp("f32", ["B", 4, 5, 3]), inp("f32", [3]), inp("f32", [3]), channel=-1)
    case("batch_norm_train_grad", "nchw", inp("f32", ["B", 3, 4, 5]), inp("f32", [3]), inp("f32", ["B", 3, 4, 5]))
    case("batch_norm_train_grad", "rank3_f64", inp("f64", ["B", 2, 6]), inp("f64", [2]), inp("f64", ["B", 2, 6]))
    case(
        "batch_norm_train_grad",
        "nhwc",
        inp("f32", ["B", 4, 5, 3]),
        inp("f32", [3]),
        inp("f32", ["B", 4, 5, 3]),
        channel=-1,
    )
