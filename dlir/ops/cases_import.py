"""The case rows of the ops added for real imported models (ONNX import, issue 15), added to
:data:`dlir.ops.cases.CASES`: logic, mod, bitwise, the narrow integer dtypes, indexing.

Negative operands and mixed signs everywhere: that is where ``mod`` and ``fmod``, or
two targets' shifts and wrap-arounds, differ.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dlir.ir.types import DType
from dlir.ops.case_kit import TIES, Gen, away_from_zero, choice, floats, inp, ints


def add_import_cases(case: Callable[..., None]) -> None:
    """Each op's rows, through ``case`` (dlir.ops.cases's, which appends to CASES)."""
    _logic_cases(case)
    _narrow_dtype_cases(case)
    _gather_scatter_cases(case)


def _logic_cases(case: Callable[..., None]) -> None:
    for op in ("logical_and", "logical_or", "logical_xor"):
        case(op, "bcast", inp("bool", ["B", 4]), inp("bool", [4]))
    case("logical_not", "bool", inp("bool", ["B", 3]))
    special = choice(float("nan"), float("inf"), -float("inf"), 0.0, -2.5, 1.0)
    for dt in ("f32", "f64", "f16"):
        case("isnan", dt, inp(dt, ["B", 6], special))
    for pos, neg in ((True, True), (True, False), (False, True), (False, False)):
        case("isinf", f"pos{int(pos)}_neg{int(neg)}", inp("f32", ["B", 6], special), positive=pos, negative=neg)
    signed = ints(-20, 20)
    divisor = ints(-6, 6, nonzero=True)
    for fmod in (False, True):
        tag = "fmod" if fmod else "mod"
        case("mod", f"i32_{tag}", inp("i32", ["B", 8], signed), inp("i32", ["B", 8], divisor), fmod=fmod)
        case("mod", f"i64_bcast_{tag}", inp("i64", ["B", 6], signed), inp("i64", [6], divisor), fmod=fmod)
        case(
            "mod", f"f32_{tag}", inp("f32", ["B", 6], floats(-9, 9)), inp("f32", [6], away_from_zero(0.5, 4)), fmod=fmod
        )
        case(
            "mod",
            f"f64_{tag}",
            inp("f64", ["B", 5], floats(-9, 9)),
            inp("f64", ["B", 5], away_from_zero(0.5, 4)),
            fmod=fmod,
        )
    case("mod", "i8_mod", inp("i8", ["B", 8], signed), inp("i8", ["B", 8], divisor))
    for op in ("bitwise_and", "bitwise_or", "bitwise_xor"):
        case(op, "i32", inp("i32", ["B", 4], ints(-100, 100)), inp("i32", ["B", 4], ints(-100, 100)))
        case(op, "u8_bcast", inp("u8", ["B", 4], ints(0, 255)), inp("u8", [4], ints(0, 255)))
    case("bitwise_and", "i8", inp("i8", ["B", 4], ints(-128, 127)), inp("i8", ["B", 4], ints(-128, 127)))
    case("bitwise_not", "i64", inp("i64", ["B", 4], ints(-100, 100)))
    case("bitwise_not", "u8", inp("u8", ["B", 4], ints(0, 255)))
    for direction in ("left", "right"):
        # shifts of 8 and 9 bits: past the width, 0 on every target
        case("bit_shift", direction, inp("u8", ["B", 6], ints(0, 255)), inp("u8", [6], ints(0, 9)), direction=direction)


def _narrow_dtype_cases(case: Callable[..., None]) -> None:
    case("add", "u8_wraps", inp("u8", ["B", 4], ints(100, 255)), inp("u8", [4], ints(100, 255)))
    case("mul", "i8_wraps", inp("i8", ["B", 4], ints(-100, 100)), inp("i8", ["B", 4], ints(-9, 9)))
    case("sub", "i16", inp("i16", ["B", 4], ints(-3000, 3000)), inp("i16", [4], ints(-3000, 3000)))
    case("equal", "u8", inp("u8", ["B", 4], ints(0, 3)), inp("u8", ["B", 4], ints(0, 3)))
    case("where", "u8", inp("bool", ["B", 4]), inp("u8", ["B", 4], ints(0, 255)), inp("u8", [4], ints(0, 255)))
    case("cast", "u8_to_f32", inp("u8", ["B", 4], ints(0, 255)), dtype=DType.f32)
    case("cast", "f32_to_u8", inp("f32", ["B", 4], floats(0, 255)), dtype=DType.u8)
    case("cast", "i8_to_i64", inp("i8", ["B", 4], ints(-128, 127)), dtype=DType.i64)
    case("cast", "bool_to_u8", inp("bool", ["B", 4]), dtype=DType.u8)


def _distinct_rows(n: int) -> Gen:
    """Indices into an axis of size ``n`` (last axis of the drawn shape), distinct along it, some negative."""

    def gen(rng: np.random.Generator, shape: tuple[int, ...], dt: np.dtype) -> np.ndarray:
        flat = np.stack([rng.permutation(n)[: shape[-1]] for _ in range(int(np.prod(shape[:-1])))])
        flat = np.where(rng.random(flat.shape) < 0.3, flat - n, flat)  # -1 is the last entry
        return flat.reshape(shape).astype(dt)

    return gen


def _nd_positions(rng: np.random.Generator, shape: tuple[int, ...], dt: np.dtype) -> np.ndarray:
    """[3, 2] distinct positions of a [4, 5, ...] tensor's first two axes (one of them negative)."""
    cells = rng.permutation(20)[:3]
    out = np.stack([cells // 5, cells % 5], axis=-1)
    out[0, 0] -= 4
    return out.astype(dt)


def _gather_scatter_cases(case: Callable[..., None]) -> None:
    case("gather_elements", "axis1_neg", inp("f32", ["B", 5]), inp("i64", ["B", 3], ints(-5, 4)), axis=1)
    case("gather_elements", "axis0_i32_f64", inp("f64", [4, 3]), inp("i32", ["B", 3], ints(-4, 3)), axis=0)
    case(
        "scatter_elements",
        "none_axis1",
        inp("f32", ["B", 6]),
        inp("i64", ["B", 3], _distinct_rows(6)),
        inp("f32", ["B", 3]),
        axis=1,
    )
    case(
        "scatter_elements",
        "add_repeats_f64",
        inp("f64", [4, "B"]),
        inp("i64", [5, "B"], ints(-4, 3)),
        inp("f64", [5, "B"]),
        axis=0,
        reduction="add",
    )
    for red in ("mul", "max", "min"):
        case(
            "scatter_elements",
            f"{red}_repeats_i64",
            inp("i64", ["B", 5], ints(-3, 3)),
            inp("i64", ["B", 7], ints(-5, 4)),
            inp("i64", ["B", 7], ints(-3, 3)),
            axis=1,
            reduction=red,
        )
    case(
        "scatter_elements",
        "max_repeats_i32_idx_i32",
        inp("i32", ["B", 5]),
        inp("i32", ["B", 7], ints(0, 4)),
        inp("i32", ["B", 7]),
        axis=-1,
        reduction="max",
    )
    case("scatter_nd", "none_rows", inp("f32", [4, 5, 3]), inp("i64", [3, 2], _nd_positions), inp("f32", [3, 3]))
    case(
        "scatter_nd",
        "add_repeats_i64",
        inp("i64", [4, "B"]),
        inp("i64", [6, 1], ints(-4, 3)),
        inp("i64", [6, "B"]),
        reduction="add",
    )
    case("cumsum", "axis1", inp("f32", ["B", 5]), axis=1)
    case("cumsum", "exclusive_reverse_f64", inp("f64", ["B", 4, 3]), axis=-2, exclusive=True, reverse=True)
    case("cumsum", "exclusive_i32", inp("i32", ["T", "B"]), axis=0, exclusive=True)
    case("cumsum", "reverse_i64", inp("i64", ["B", 6]), axis=1, reverse=True)
    case("topk", "largest_ties", inp("f32", ["B", 6], TIES), k=3)
    case("topk", "smallest_axis0_f64", inp("f64", [5, "B"]), k=2, axis=0, largest=False)
    case("topk", "i64_ties_all", inp("i64", ["B", 4], ints(-1, 1)), k=4, axis=1)
