"""The ONNX element-wise indexing handlers: GatherElements, ScatterElements (and the old
Scatter), ScatterND, CumSum, TopK, Trilu and Einsum.

The first five are one dlir op each (dlir.ops.gather_scatter). Trilu is a ``where``
with a constant triangular mask (its last two dims must be static); Einsum is written
with transpose, reshape, sum and one batched matmul, the forms exporters write
(``bij,bjk->bik``, ``bhqd,bhkd->bhqk``, transposes, sums), and refused naming the
equation otherwise (repeated indices within one operand, three or more operands).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from dlir.importer.builder import Builder, Operand, handles
from dlir.importer.onnx_ops import _dimattr
from dlir.ir.types import Dim


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@handles("GatherElements")
def _gather_elements(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    return b.op("gather_elements", ins[:2], axis=int(a.get("axis", 0)))


@handles("ScatterElements", "Scatter")
def _scatter_elements(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    return b.op("scatter_elements", ins[:3], axis=int(a.get("axis", 0)), reduction=_text(a.get("reduction", "none")))


@handles("ScatterND")
def _scatter_nd(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    red = _text(a.get("reduction", "none"))
    if red not in ("none", "add"):
        raise b.error(f"ScatterND with reduction='{red}' is not supported", "dlir's scatter_nd has 'none' and 'add'")
    return b.op("scatter_nd", ins[:3], reduction=red)


@handles("CumSum")
def _cumsum(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    (axis,) = b.ints(ins[1], "CumSum's axis")
    return b.op("cumsum", [ins[0]], axis=axis, exclusive=bool(a.get("exclusive", 0)), reverse=bool(a.get("reverse", 0)))


@handles("TopK")
def _topk(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    k = int(a["k"]) if b.opset < 10 else b.ints(ins[1], "TopK's K")[0]
    # sorted=0 leaves the order open: the sorted order is one of the allowed answers
    return b.op("topk", [ins[0]], k=k, axis=int(a.get("axis", -1)), largest=bool(a.get("largest", 1)))


@handles("Trilu")
def _trilu(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x = ins[0]
    k = b.ints(ins[1], "Trilu's k")[0] if len(ins) > 1 and ins[1] is not None else 0
    rows, cols = b.shape(x)[-2:]
    if not (rows.is_static and cols.is_static):
        raise b.error(f"Trilu needs static last two dims, got {b.type_of(x)}", "export the model with static shapes")
    i, j = np.indices((rows.value, cols.value))
    keep = (j - i >= k) if a.get("upper", 1) else (j - i <= k)
    zero = np.zeros((), b.type_of(x).dtype.numpy)
    return b.op("where", [keep, x, zero])


# -- Einsum -------------------------------------------------------------------------------------------


def _einsum_terms(b: Builder, eq: str, ranks: list[int]) -> tuple[list[str], str]:
    """The operands' and the output's letters, with ``...`` spelled out as upper-case letters."""
    eq = eq.replace(" ", "")
    lhs, _, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise b.error(f"Einsum '{eq}' names {len(terms)} operands but has {len(ranks)}")
    spare = [c for c in "ZYXWVUTSRQPONMLKJIHGFEDCBA" if c not in eq]
    n_ell = max((r - len(t.replace("...", "")) for t, r in zip(terms, ranks, strict=True) if "..." in t), default=0)
    ell = "".join(spare[:n_ell][::-1])
    out_terms = []
    for t, r in zip(terms, ranks, strict=True):
        if "..." in t:
            t = t.replace("...", ell[n_ell - (r - len(t.replace("...", ""))) :])
        out_terms.append(t)
    if "->" not in eq:  # implicit output: the ellipsis, then the letters seen once, in order
        seen = "".join(out_terms)
        rhs = ell + "".join(sorted(c for c in set(seen) if seen.count(c) == 1 and c not in ell))
    else:
        rhs = rhs.replace("...", ell)
    for t, r in zip(out_terms, ranks, strict=True):
        if not re.fullmatch(r"[A-Za-z]*", t) or len(t) != r:
            raise b.error(f"Einsum '{eq}': term '{t}' does not match an operand of rank {r}")
        if len(set(t)) != len(t):
            raise b.error(
                f"Einsum '{eq}' repeats an index within one operand (a diagonal), which dlir does not import",
                "dlir imports einsums that are transposes, sums and (batched) matrix products",
            )
    return out_terms, rhs


def _sum_private(b: Builder, x: Operand, term: str, keep: str) -> tuple[Operand, str]:
    """``x`` summed over the letters of ``term`` that are not in ``keep``."""
    drop = [i for i, c in enumerate(term) if c not in keep]
    if not drop:
        return x, term
    return b.op("sum", [x], axis=drop, keepdims=False), "".join(c for c in term if c in keep)


def _permute(b: Builder, x: Operand, term: str, order: str) -> Operand:
    perm = [term.index(c) for c in order]
    return x if perm == list(range(len(perm))) else b.op("transpose", [x], perm=perm)


def _prod(dims: list[Dim]) -> Any:
    out = Dim.of(1)
    for d in dims:
        out = out * d
    return _dimattr(out)


@handles("Einsum")
def _einsum(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    eq = _text(a["equation"])
    xs = [x for x in ins if x is not None]
    if len(xs) > 2:
        raise b.error(f"Einsum '{eq}' with {len(xs)} operands is not supported", "dlir imports one or two operands")
    terms, out = _einsum_terms(b, eq, [b.rank(x) for x in xs])
    if len(xs) == 1:
        x, t = _sum_private(b, xs[0], terms[0], out)
        return _permute(b, x, t, out)
    (x, tx), (y, ty) = (
        _sum_private(b, xs[0], terms[0], out + terms[1]),
        _sum_private(b, xs[1], terms[1], out + terms[0]),
    )
    batch = [c for c in tx if c in ty and c in out]
    contract = [c for c in tx if c in ty and c not in out]
    left = [c for c in tx if c not in ty]
    right = [c for c in ty if c not in tx]
    size = {**dict(zip(tx, b.shape(x), strict=True)), **dict(zip(ty, b.shape(y), strict=True))}
    x3 = b.op(
        "reshape",
        [_permute(b, x, tx, "".join(batch + left + contract))],
        shape=[_prod([size[c] for c in batch]), _prod([size[c] for c in left]), _prod([size[c] for c in contract])],
    )
    y3 = b.op(
        "reshape",
        [_permute(b, y, ty, "".join(batch + contract + right))],
        shape=[_prod([size[c] for c in batch]), _prod([size[c] for c in contract]), _prod([size[c] for c in right])],
    )
    z = b.op("matmul", [x3, y3])
    got = batch + left + right
    z = b.op("reshape", [z], shape=[_dimattr(size[c]) for c in got])
    return _permute(b, z, "".join(got), out)
