"""Result types of a node from its op's shape rule, remembered per distinct signature.

Models repeat themselves: a 1 000-layer MLP has 1 000 matmuls with the same
input types and attributes, and the builder and the verifier (after every pass
that changes the graph) ask each op's shape rule about every node. Shape rules
are pure functions of the input types and the attributes, so their answer is
kept per ``(rule, input types, attributes)``. A rule that raises is not
remembered: the next call raises again with the same message.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from dlir.ir.types import Dim, DType, TensorType
from dlir.ops.registry import OpDef

MAX_ENTRIES = 4096  # distinct signatures kept; the table is emptied when it is full
MAX_LIST = 64  # longer list attributes (a constant's values) are not made into keys

_memo: dict[Hashable, tuple[TensorType, ...]] = {}


def infer_types(opdef: OpDef, types: Sequence[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    """``opdef.infer(types, attrs)``, computed once per distinct signature."""
    akey = attrs_key(attrs)
    if akey is None:  # an attribute that cannot be a key (an array): ask the rule
        return opdef.infer(list(types), attrs)
    # The rule itself is part of the key, so a replaced rule (a test's) is never answered for.
    key = (opdef.infer, tuple(types), akey)
    hit = _memo.get(key)
    if hit is None:
        hit = tuple(opdef.infer(list(types), attrs))
        if len(_memo) >= MAX_ENTRIES:
            _memo.clear()
        _memo[key] = hit
    return list(hit)


def attrs_key(attrs: dict[str, Any]) -> Hashable | None:
    """A hashable stand-in for ``attrs`` that equals another only for the same names, types
    and values (1, 1.0 and True differ); None when some value cannot be one (an array)."""
    items = []
    for name, v in attrs.items():
        k = _value_key(v)
        if k is None:
            return None
        items.append((name, k))
    return tuple(items)


# Values whose equality is exact and tells them apart (unlike 1 == 1.0 == True).
_PLAIN = (str, DType, Dim, type(None))


def _value_key(v: Any) -> Hashable | None:
    if isinstance(v, _PLAIN):
        return (type(v), v)
    if isinstance(v, (bool, int)):
        return (type(v), v)
    if isinstance(v, float):
        return (type(v), repr(v))  # repr tells -0.0 from 0.0, and nan matches nan
    if isinstance(v, (list, tuple)):
        if len(v) > MAX_LIST:
            return None
        parts = []
        for x in v:
            k = _value_key(x)
            if k is None:
                return None
            parts.append(k)
        return (type(v), tuple(parts))
    return None  # numpy arrays and anything else: not remembered


def clear() -> None:
    """Forget every remembered answer (for tests that redefine an op's rule in place)."""
    _memo.clear()


__all__ = ["infer_types", "attrs_key", "clear"]
