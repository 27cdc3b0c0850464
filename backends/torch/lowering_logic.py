"""The torch emitters of boolean logic, mod and the bitwise ops (dlir.ops.logic).

``torch.remainder`` is numpy's ``mod`` (the divisor's sign; for floats fmod moved
by one divisor, exactly as numpy), ``torch.fmod`` C's. A shift by the width or
more gives 0, as the reference: torch leaves it to C.
"""

from __future__ import annotations

from dlir.backends.torch.site import Emitter, Site


def _call(fn: str) -> Emitter:
    return lambda s: f"{fn}({', '.join(s.args)})"


def _mod(s: Site) -> str:
    fn = "torch.fmod" if s.attr("fmod") else "torch.remainder"
    return f"{fn}({s.args[0]}, {s.args[1]})"


def _bit_shift(s: Site) -> str:
    x, n = s.args
    fn = "torch.bitwise_left_shift" if s.attr("direction") == "left" else "torch.bitwise_right_shift"
    bits = s.in_type.dtype.numpy.itemsize * 8
    return f"torch.where({n} >= {bits}, torch.zeros_like({x}), {fn}({x}, {n}))"


def _isinf(s: Site) -> str:
    pos, neg = s.attr("positive"), s.attr("negative")
    if pos and neg:
        return f"torch.isinf({s.x})"
    if pos or neg:
        return f"torch.is{'pos' if pos else 'neg'}inf({s.x})"
    return f"torch.zeros_like({s.x}, dtype=torch.bool)"


LOGIC_EMITTERS: dict[str, Emitter] = {
    "isnan": _call("torch.isnan"),
    "isinf": _isinf,
    "logical_and": _call("torch.logical_and"),
    "logical_or": _call("torch.logical_or"),
    "logical_xor": _call("torch.logical_xor"),
    "logical_not": _call("torch.logical_not"),
    "mod": _mod,
    "bitwise_and": _call("torch.bitwise_and"),
    "bitwise_or": _call("torch.bitwise_or"),
    "bitwise_xor": _call("torch.bitwise_xor"),
    "bitwise_not": _call("torch.bitwise_not"),
    "bit_shift": _bit_shift,
}
