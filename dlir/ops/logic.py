"""Boolean logic, modulo and bitwise ops (ONNX's And/Or/Xor/Not, Mod, Bitwise*, BitShift).

All broadcast as NumPy does. ``mod`` follows the divisor's sign (Python's ``%``,
``numpy.mod``, ``torch.remainder``, ONNX ``Mod`` with ``fmod=0``) unless
``fmod=true``, which follows the dividend's (C's ``fmod``, ``torch.fmod``, ONNX
``fmod=1``), for integers and floats alike. Bitwise ops take integers;
``bit_shift`` takes unsigned ones only (as ONNX's BitShift: a signed right shift
differs between arithmetic and logical shifting).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from dlir.errors import TypeError_
from dlir.ir.types import DType, TensorType
from dlir.ops.registry import Attr, OpDef, register
from dlir.ops.shape_rules import broadcast_equal, broadcast_shapes, same_dtype

if TYPE_CHECKING:
    from dlir.autodiff.builder import GradBuilder
    from dlir.ir.graph import Node, Value

Check = Callable[[str, TensorType], None]


def _require_bool(op: str, t: TensorType) -> None:
    if t.dtype is not DType.bool:
        raise TypeError_(f"{op} expects bool tensors, got {t}", hint="compare first, e.g. x > 0, or cast(x, bool)")


def _require_int(op: str, t: TensorType) -> None:
    if not t.dtype.is_int:
        raise TypeError_(f"{op} expects integer tensors, got {t}", hint="convert it first with cast(x, i32)")


def _require_unsigned(op: str, t: TensorType) -> None:
    if not t.dtype.is_unsigned:
        raise TypeError_(
            f"{op} expects unsigned integer tensors, got {t}",
            hint="shifts are defined on unsigned integers (u8); for signed ones multiply or divide by 2**n",
        )


def _require_numeric(op: str, t: TensorType) -> None:
    if t.dtype is DType.bool:
        raise TypeError_(f"{op} expects numbers, got {t}", hint="convert it first with cast(x, i32)")


def _elementwise(
    name: str,
    n_inputs: int,
    check: Check,
    ref: Callable[[list[np.ndarray], dict[str, Any]], np.ndarray],
    doc: str,
    *,
    attrs: tuple[Attr, ...] = (),
    commutative: bool = False,
    vjp: Callable[..., list[Any]] | None = None,
) -> OpDef:
    """An elementwise op whose inputs share one dtype, checked by ``check``; the result has it too."""

    def infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
        for t in ts:
            check(name, t)
        dt = same_dtype(name, ts)
        return [TensorType(dt, broadcast_shapes(name, ts))]

    def run(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
        with np.errstate(all="ignore"):
            return [ref(xs, a)]

    return register(
        OpDef(
            name,
            ("a", "b")[:n_inputs] if n_inputs == 2 else ("x",),
            attrs,
            infer,
            run,
            doc=doc,
            elementwise=True,
            commutative=commutative,
            differentiable=vjp is not None,
            vjp=vjp,
            equal_dims=broadcast_equal,
            family="logic",
        )
    )


# -- boolean logic --------------------------------------------------------------------------

_elementwise("logical_and", 2, _require_bool, lambda xs, a: np.logical_and(*xs), "a and b", commutative=True)
_elementwise("logical_or", 2, _require_bool, lambda xs, a: np.logical_or(*xs), "a or b", commutative=True)
_elementwise("logical_xor", 2, _require_bool, lambda xs, a: np.logical_xor(*xs), "a xor b", commutative=True)
_elementwise("logical_not", 1, _require_bool, lambda xs, a: np.logical_not(xs[0]), "not x")

# -- float predicates ---------------------------------------------------------------------------


def _float_predicate(
    name: str, ref: Callable[[np.ndarray, dict[str, Any]], np.ndarray], doc: str, attrs: tuple[Attr, ...] = ()
) -> OpDef:
    """A test of each element of a float tensor: a bool tensor of its shape (no gradient)."""

    def infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
        if not ts[0].dtype.is_float:
            raise TypeError_(f"{name} expects a float tensor, got {ts[0]}", hint="an integer is never NaN or infinite")
        return [TensorType(DType.bool, ts[0].shape)]

    return register(
        OpDef(
            name,
            ("x",),
            attrs,
            infer,
            lambda xs, a: [ref(xs[0], a)],
            doc=doc,
            elementwise=True,
            differentiable=False,
            family="logic",
        )
    )


def isinf_ref(x: np.ndarray, a: dict[str, Any]) -> np.ndarray:
    """ONNX IsInf: +inf where ``positive``, -inf where ``negative``."""
    pos, neg = bool(a["positive"]), bool(a["negative"])
    return cast(np.ndarray, (np.isposinf(x) & pos) | (np.isneginf(x) & neg))


_float_predicate("isnan", lambda x, a: np.isnan(x), "x is NaN (transformers' attention masks test for it)")
_float_predicate(
    "isinf",
    isinf_ref,
    "x is +inf (positive=true) or -inf (negative=true)",
    attrs=(Attr("positive", "bool", True), Attr("negative", "bool", True)),
)

# -- modulo ----------------------------------------------------------------------------------


def mod_ref(a: np.ndarray, b: np.ndarray, fmod: bool) -> np.ndarray:
    """The remainder with the divisor's sign (``fmod`` false) or the dividend's (``fmod`` true).

    Integer division by zero is undefined on every target (numpy gives 0) and not relied on.
    """
    if fmod:
        if a.dtype.kind == "f":
            return cast(np.ndarray, np.fmod(a, b))
        r = np.abs(a) % np.where(b == 0, 1, np.abs(b))  # C's %: truncated division, the dividend's sign
        return cast(np.ndarray, np.where(a < 0, -r, r).astype(a.dtype))
    if a.dtype.kind == "f":
        # fmod adjusted by one divisor: exact, where a - floor(a / b) * b rounds
        r = np.fmod(a, b)
        return cast(np.ndarray, np.where((r != 0) & ((r < 0) != (b < 0)), r + b, r))
    return cast(np.ndarray, np.mod(a, b))


def _mod_vjp(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
    """y = a - q b with q the (piecewise constant) integer quotient: dy/da = 1, dy/db = -q = (y - a) / b."""
    x, d = node.inputs
    y, g = node.outputs[0], cts[0]
    return [g, b.mul(g, b.div(b.sub(y, x), d))]


def _mod_vjp_if_float(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
    return _mod_vjp(b, node, cts) if node.inputs[0].type.dtype.is_float else [None, None]


_elementwise(
    "mod",
    2,
    _require_numeric,
    lambda xs, a: mod_ref(xs[0], xs[1], a["fmod"]),
    "remainder of a / b: with b's sign (numpy.mod, torch.remainder), or a's when fmod=true (C fmod)",
    attrs=(Attr("fmod", "bool", False),),
    vjp=_mod_vjp_if_float,
)

# -- bitwise ---------------------------------------------------------------------------------

_elementwise("bitwise_and", 2, _require_int, lambda xs, a: np.bitwise_and(*xs), "a & b", commutative=True)
_elementwise("bitwise_or", 2, _require_int, lambda xs, a: np.bitwise_or(*xs), "a | b", commutative=True)
_elementwise("bitwise_xor", 2, _require_int, lambda xs, a: np.bitwise_xor(*xs), "a ^ b", commutative=True)
_elementwise("bitwise_not", 1, _require_int, lambda xs, a: np.invert(xs[0]), "~x (two's complement)")


def _shift_ref(xs: list[np.ndarray], a: dict[str, Any]) -> np.ndarray:
    x, s = xs
    bits = x.dtype.itemsize * 8
    # A shift by the width or more gives 0 (ONNX, tf); numpy and C leave it undefined.
    big = s >= bits
    s = np.where(big, 0, s)
    out = np.left_shift(x, s) if a["direction"] == "left" else np.right_shift(x, s)
    return cast(np.ndarray, np.where(big, np.zeros_like(out), out).astype(x.dtype))


_elementwise(
    "bit_shift",
    2,
    _require_unsigned,
    _shift_ref,
    "x shifted left or right by s bits (unsigned integers; by the width or more gives 0)",
    attrs=(Attr("direction", "str", "left", ("left", "right")),),
)
