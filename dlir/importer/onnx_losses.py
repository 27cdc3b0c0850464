"""ONNX's losses, NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss, mapped onto dlir ops.

Both are written out as ONNX's own function bodies are: pick each sample's log-probability
with ``gather_elements`` along the class axis, weigh it by ``gather(weight, target)``, zero it
where the target is ``ignore_index``, then reduce. ``mean`` divides by the summed weights of
the samples that count (their number, without weights), as the spec says. The plain 2-D
``mean`` form with no weights and no ``ignore_index`` stays dlir's fused ``cross_entropy``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlir.importer.builder import Builder, Operand, handles

REDUCTIONS = ("none", "sum", "mean")


def _reduction(b: Builder, a: dict[str, Any]) -> str:
    red = a.get("reduction", b"mean")
    red = red.decode() if isinstance(red, bytes) else str(red)
    if red not in REDUCTIONS:
        raise b.error(f"{b.node_op}: unknown reduction '{red}'", "ONNX defines none, sum and mean")
    return red


def _optional(ins: list[Operand], i: int) -> Operand | None:
    return ins[i] if len(ins) > i and ins[i] is not None else None


def nll(b: Builder, logp: Operand, target: Operand, weight: Operand | None, a: dict[str, Any]) -> Any:
    """-logp[n, target[n, d...], d...] * weight[target], zero where ignored, reduced as ``a`` says."""
    red = _reduction(b, a)
    tx, tt = b.type_of(logp), b.type_of(target)
    if not tx.dtype.is_float:
        raise b.error(f"{b.node_op}: the input must be floating point, got {tx}")
    if not tt.dtype.is_int or tt.rank != tx.rank - 1:
        raise b.error(
            f"{b.node_op}: the target must be integer class ids of rank {tx.rank - 1} for input {tx}, got {tt}",
            "input is [N, C, d1, ...] and target [N, d1, ...]",
        )
    ii = a.get("ignore_index")
    safe, keep = target, None
    if ii is not None:
        # A target equal to ignore_index may lie outside [0, C) (torch writes -100): read class 0 there.
        ignored = b.op("equal", [target, np.array(int(ii), tt.dtype.numpy)])
        safe = b.op("where", [ignored, np.zeros((), tt.dtype.numpy), target])
        keep = b.op("cast", [b.op("logical_not", [ignored])], dtype=tx.dtype)
    picked = b.op("squeeze", [b.op("gather_elements", [logp, b.op("unsqueeze", [safe], axes=[1])], axis=1)], axes=[1])
    w: Operand | None = b.op("gather", [weight, safe], axis=0) if weight is not None else None
    if keep is not None:
        w = keep if w is None else b.op("mul", [w, keep])
    loss = b.op("neg", [picked if w is None else b.op("mul", [picked, w])])
    if red == "none":
        return loss
    total = b.op("sum", [loss], axis=None)
    if red == "sum":
        return total
    if w is None:
        return b.op("mean", [loss], axis=None)
    return b.op("div", [total, b.op("sum", [w], axis=None)])


@handles("NegativeLogLikelihoodLoss")
def _nll(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    return nll(b, ins[0], ins[1], _optional(ins, 2), a)


@handles("SoftmaxCrossEntropyLoss")
def _sce(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    scores, labels, weight = ins[0], ins[1], _optional(ins, 2)
    want_logp = len(b.out_names) > 1 and bool(b.out_names[1])
    plain = _reduction(b, a) == "mean" and weight is None and a.get("ignore_index") is None
    if plain and not want_logp and b.rank(scores) == 2:
        return b.op("cross_entropy", [scores, labels])
    logp = b.op("log_softmax", [scores], axis=1)
    loss = nll(b, logp, labels, weight, a)
    return [loss, logp] if want_logp else loss
