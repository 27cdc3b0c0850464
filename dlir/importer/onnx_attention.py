"""ONNX ``Attention`` (opset 23) as dlir's matmul, softmax and matmul, where it maps cleanly.

``Y = softmax(Q K^T * scale + bias) V`` per head, with Q, K, V ``[B, heads, S, D]`` (or
``[B, S, heads * D]`` with ``q_num_heads``/``kv_num_heads``, split into heads and merged
back). Fewer K/V heads than Q heads (grouped-query attention) repeat each K/V head for its
group, as the spec's ``np.repeat``. The bias is the float ``attn_mask`` as given, a boolean
one as 0 / "-inf", plus "-inf" above the diagonal with ``is_causal`` (static sequence lengths);
``softcap`` squashes the scores with ``softcap * tanh(s / softcap)`` first. The "-inf" is half the
dtype's lowest number (exp gives 0 all the same), so a row that masks every key has finite
scores and is zeroed, as ONNX Runtime gives it.

``present_key``/``present_value`` without a cache are K and V themselves. Refused with the
node named: a past key/value cache, ``nonpad_kv_seqlen``, sliding windows, the
``qk_matmul_output`` output, a mask shorter than the keys, ``softmax_precision`` other than
the input's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlir.importer.builder import Builder, Operand, handles
from dlir.importer.onnx_import import ONNX_DTYPES
from dlir.ir.types import DType


@handles("Attention")
def _attention(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    q, k, v = ins[:3]
    mask = ins[3] if len(ins) > 3 else None
    if any(x is not None for x in ins[4:]):
        raise b.error("Attention with a past key/value cache or nonpad_kv_seqlen is not supported")
    if len(b.out_names) > 3 and b.out_names[3]:
        raise b.error("Attention's qk_matmul_output output is not supported")
    if int(a.get("left_window_size", -1)) >= 0 or int(a.get("right_window_size", -1)) >= 0:
        raise b.error("Attention with a sliding window is not supported")
    dt = b.type_of(q).dtype
    if "softmax_precision" in a and ONNX_DTYPES.get(int(a["softmax_precision"])) not in (dt, None):
        raise b.error("Attention: a softmax_precision other than the inputs' dtype is not supported")
    rank = b.rank(q)
    if rank == 3:
        q = _heads(b, q, int(a["q_num_heads"]))
        k = _heads(b, k, int(a["kv_num_heads"]))
        v = _heads(b, v, int(a["kv_num_heads"]))
    elif rank != 4:
        raise b.error(f"Attention: Q must be [B, heads, S, D] or [B, S, hidden], got {b.type_of(q)}")
    present = [k, v]
    k, v = (_repeat_heads(b, t, b.shape(q)[1].value) for t in (k, v))
    head = b.shape(q)[3].value
    scale = float(a["scale"]) if "scale" in a else 1.0 / float(np.sqrt(head))
    scores = b.op("matmul", [q, b.op("transpose", [k], perm=[0, 1, 3, 2])])
    scores = b.op("mul", [scores, np.array(scale, dt.numpy)])
    cap = float(a.get("softcap", 0.0))
    if cap > 0:
        scores = b.op("mul", [b.op("tanh", [b.op("div", [scores, np.array(cap, dt.numpy)])]), np.array(cap, dt.numpy)])
    bias = _bias(b, mask, b.shape(scores), dt, bool(a.get("is_causal", 0)))
    probs = b.op("softmax", [scores if bias is None else b.op("add", [scores, bias])], axis=-1)
    if bias is not None and not (isinstance(bias, np.ndarray) and np.all(bias.max(axis=-1) > _masked(dt) / 2)):
        # A row that masks every key attends to nothing: Y is 0 there (the spec, ORT)
        keep = b.op("greater", [b.op("max", [bias], axis=[-1], keepdims=True), np.array(_masked(dt) / 2, dt.numpy)])
        probs = b.op("where", [keep, probs, np.array(0.0, dt.numpy)])
    y = b.op("matmul", [probs, v])
    if rank == 3:  # [B, H, S, Dv] -> [B, S, H * Dv]
        t = b.type_of(y)
        y = b.op("transpose", [y], perm=[0, 2, 1, 3])
        y = b.op("reshape", [y], shape=[_dim(t.shape[0]), _dim(t.shape[2]), t.shape[1].value * t.shape[3].value])
    return [y, *present]


def _dim(d: Any) -> Any:
    return d.value if d.is_static else d


def _heads(b: Builder, x: Operand, heads: int) -> Operand:
    """[B, S, heads * D] -> [B, heads, S, D]."""
    t = b.type_of(x)
    hidden = t.shape[2].value
    if hidden % heads:
        raise b.error(f"Attention: hidden size {hidden} is not a multiple of {heads} heads")
    x = b.op("reshape", [x], shape=[_dim(t.shape[0]), _dim(t.shape[1]), heads, hidden // heads])
    return b.op("transpose", [x], perm=[0, 2, 1, 3])


def _repeat_heads(b: Builder, x: Operand, q_heads: int) -> Operand:
    """K or V with each of its heads repeated for its group of query heads (np.repeat along axis 1)."""
    t = b.type_of(x)
    kv_heads = t.shape[1].value
    if kv_heads == q_heads:
        return x
    if q_heads % kv_heads:
        raise b.error(f"Attention: {q_heads} query heads cannot share {kv_heads} key/value heads evenly")
    n, s, d = _dim(t.shape[0]), _dim(t.shape[2]), t.shape[3].value
    wide = b.op("broadcast_to", [b.op("unsqueeze", [x], axes=[2])], shape=[n, kv_heads, q_heads // kv_heads, s, d])
    return b.op("reshape", [wide], shape=[n, q_heads, s, d])


def _masked(dt: DType) -> float:
    """The bias of a masked key: exp() of it is 0, as of -inf, but a fully masked row stays finite
    (no NaN forward or backward) and the row is then zeroed."""
    return float(np.finfo(dt.numpy).min) / 2


def _bias(b: Builder, mask: Operand, shape: tuple[Any, ...], dt: DType, causal: bool) -> Operand:
    """What is added to the scores: the mask's (bool: 0 / -inf) and the causal one's."""
    out: Operand = None
    if mask is not None:
        mt = b.type_of(mask)
        if mt.shape[-1] != shape[-1]:
            raise b.error(
                f"Attention: attn_mask {mt} covers fewer keys than the {shape[-1]} given",
                "a mask shorter than the keys (padded with -inf) is not supported",
            )
        if mt.dtype is DType.bool:
            out = b.op("where", [mask, np.array(0.0, dt.numpy), np.array(_masked(dt), dt.numpy)])
        else:
            out = mask
    if causal:
        sq, skv = shape[-2], shape[-1]
        if not (sq.is_static and skv.is_static):
            raise b.error("Attention: is_causal needs static sequence lengths", "export with static sequence lengths")
        tri = np.where(np.arange(skv.value)[None, :] <= np.arange(sq.value)[:, None], 0.0, _masked(dt))
        causal_bias = tri.astype(dt.numpy)
        out = causal_bias if out is None else b.op("add", [out, causal_bias])
    return out
