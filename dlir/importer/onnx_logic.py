"""The ONNX logic, modulo and bitwise handlers: And, Or, Xor, Not, Mod, Bitwise*, BitShift.

Each is one dlir op (dlir.ops.logic). On constants they fold with that op's numpy
reference, as every handler does (torch.onnx's attention masks are ``Mod``/``And``
on ``Range`` and ``Shape``).
"""

from __future__ import annotations

from typing import Any

from dlir.importer.builder import HANDLERS, Builder, Handler, Operand, handles

_SAME = {
    "And": "logical_and",
    "Or": "logical_or",
    "Xor": "logical_xor",
    "Not": "logical_not",
    "BitwiseAnd": "bitwise_and",
    "BitwiseOr": "bitwise_or",
    "BitwiseXor": "bitwise_xor",
    "BitwiseNot": "bitwise_not",
}


def _one_op(dlir_name: str) -> Handler:
    def h(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
        return b.op(dlir_name, [x for x in ins if x is not None])

    return h


for _onnx, _dlir in _SAME.items():
    HANDLERS[_onnx] = _one_op(_dlir)


@handles("IsNaN")
def _isnan(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    return b.op("isnan", ins[:1])


@handles("IsInf")
def _isinf(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    positive, negative = bool(a.get("detect_positive", 1)), bool(a.get("detect_negative", 1))
    return b.op("isinf", ins[:1], positive=positive, negative=negative)


@handles("Mod")
def _mod(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    fmod = bool(a.get("fmod", 0))
    if not fmod and b.type_of(ins[0]).dtype.is_float:
        raise b.error("Mod with fmod=0 on floating-point inputs is invalid ONNX", "the spec requires fmod=1 for floats")
    return b.op("mod", ins[:2], fmod=fmod)


@handles("BitShift")
def _bit_shift(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    direction = a["direction"]
    direction = (direction.decode() if isinstance(direction, bytes) else str(direction)).lower()
    if direction not in ("left", "right"):
        raise b.error(f"BitShift direction '{direction}' is neither LEFT nor RIGHT")
    return b.op("bit_shift", ins[:2], direction=direction)
