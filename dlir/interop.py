"""Weight mapping between torch.nn / Keras layers and dlir's standard library (numpy only).

dlir keeps every weight as ``[in, out]`` (used as ``x @ w``) and packs recurrent
gates in PyTorch's order (LSTM ``i, f, g, o``; GRU ``r, z, n``, reset gate after
the hidden matmul). The helpers here turn a framework's weights into a dict of
dotted dlir names -> float32 arrays, ready for ``runner.load_params``::

    from dlir import interop
    run.load_params(interop.torch_lstm(torch_lstm.state_dict(), dst="lstm"))
    run.load_params(interop.keras_gru(keras_gru.get_weights(), dst="gru"))

No framework is imported: a state_dict's tensors are read with ``.detach().cpu().numpy()``
when they have it and ``numpy.asarray`` otherwise. ``src`` is a key prefix in the
framework's dict (``"encoder.lstm"`` for a sub-module), ``dst`` the dlir instance
name (``"lstm"`` gives ``lstm.w_ih``; ``""`` gives bare names).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Params = dict[str, np.ndarray]

# Keras packs GRU gates z, r, h; dlir (as PyTorch) packs r, z, n.
_KERAS_GRU_TO_DLIR = (1, 0, 2)


def _np(v: Any) -> np.ndarray:
    """A float32 copy (a torch tensor's numpy view shares memory the module may still update)."""
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    elif hasattr(v, "numpy") and not isinstance(v, np.ndarray):
        v = v.numpy()
    return np.array(v, dtype=np.float32, order="C", copy=True)


def _key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _get(sd: Mapping[str, Any], src: str, name: str) -> np.ndarray:
    key = _key(src, name)
    if key not in sd:
        near = [k for k in sd if k.endswith(name)]
        hint = f" (keys ending in '{name}': {near})" if near else f" (keys: {sorted(sd)[:8]}...)"
        raise KeyError(f"no '{key}' in the state_dict{hint}")
    return _np(sd[key])


def _opt(sd: Mapping[str, Any], src: str, name: str, size: int) -> np.ndarray:
    key = _key(src, name)
    return _np(sd[key]) if key in sd else np.zeros(size, np.float32)


def prefixed(params: Mapping[str, np.ndarray], dst: str) -> Params:
    """The same params with ``dst.`` in front of every name."""
    return {_key(dst, k): v for k, v in params.items()}


def _reorder_gates(a: np.ndarray, order: Sequence[int], axis: int = -1) -> np.ndarray:
    """Re-pack equal-sized gate blocks along ``axis`` (block i of the result is ``order[i]``)."""
    blocks = np.split(a, len(order), axis=axis)
    return np.ascontiguousarray(np.concatenate([blocks[i] for i in order], axis=axis))


# -- torch.nn ---------------------------------------------------------------------------
def torch_linear(sd: Mapping[str, Any], src: str = "", dst: str = "") -> Params:
    """``nn.Linear`` (weight [out, in], bias [out]) -> ``Dense`` (w [in, out], b)."""
    w = _get(sd, src, "weight")
    return prefixed({"w": np.ascontiguousarray(w.T), "b": _opt(sd, src, "bias", w.shape[0])}, dst)


def torch_conv2d(sd: Mapping[str, Any], src: str = "", dst: str = "") -> Params:
    """``nn.Conv2d`` -> ``Conv2d``: the kernel layout [out, in, kh, kw] is the same."""
    w = _get(sd, src, "weight")
    return prefixed({"w": w, "b": _opt(sd, src, "bias", w.shape[0])}, dst)


def torch_batchnorm2d(sd: Mapping[str, Any], src: str = "", dst: str = "") -> Params:
    """``nn.BatchNorm2d`` (eval mode: running statistics) -> ``BatchNorm2d``."""
    mean = _get(sd, src, "running_mean")
    c = mean.shape[0]
    return prefixed(
        {
            "scale": _get(sd, src, "weight") if _key(src, "weight") in sd else np.ones(c, np.float32),
            "bias": _opt(sd, src, "bias", c),
            "mean": mean,
            "var": _get(sd, src, "running_var"),
        },
        dst,
    )


def torch_layernorm(sd: Mapping[str, Any], src: str = "", dst: str = "") -> Params:
    """``nn.LayerNorm`` (over the last axis) -> ``LayerNorm``."""
    g = _get(sd, src, "weight")
    return prefixed({"scale": g, "bias": _opt(sd, src, "bias", g.shape[-1])}, dst)


def torch_embedding(sd: Mapping[str, Any], src: str = "", dst: str = "") -> Params:
    """``nn.Embedding`` -> ``Embedding``: the table [n, d] is the same."""
    return prefixed({"w": _get(sd, src, "weight")}, dst)


def _torch_recurrent(sd: Mapping[str, Any], src: str, dst: str, layer: int, reverse: bool) -> Params:
    sfx = f"_l{layer}" + ("_reverse" if reverse else "")
    w_ih = _get(sd, src, "weight_ih" + sfx)
    w_hh = _get(sd, src, "weight_hh" + sfx)
    n = w_ih.shape[0]
    return prefixed(
        {
            "w_ih": np.ascontiguousarray(w_ih.T),
            "w_hh": np.ascontiguousarray(w_hh.T),
            "b_ih": _opt(sd, src, "bias_ih" + sfx, n),
            "b_hh": _opt(sd, src, "bias_hh" + sfx, n),
        },
        dst,
    )


def torch_rnn(sd: Mapping[str, Any], src: str = "", dst: str = "", layer: int = 0, reverse: bool = False) -> Params:
    """``nn.RNN`` layer ``layer`` (``reverse``: the backward direction) -> ``RNN``."""
    return _torch_recurrent(sd, src, dst, layer, reverse)


def torch_lstm(sd: Mapping[str, Any], src: str = "", dst: str = "", layer: int = 0, reverse: bool = False) -> Params:
    """``nn.LSTM`` -> ``LSTM``: gate order i, f, g, o is the same; weights are transposed."""
    return _torch_recurrent(sd, src, dst, layer, reverse)


def torch_gru(sd: Mapping[str, Any], src: str = "", dst: str = "", layer: int = 0, reverse: bool = False) -> Params:
    """``nn.GRU`` -> ``GRU``: gate order r, z, n and the reset placement are the same."""
    return _torch_recurrent(sd, src, dst, layer, reverse)


def torch_multihead_attention(sd: Mapping[str, Any], src: str = "", dst: str = "") -> Params:
    """``nn.MultiheadAttention`` (packed ``in_proj_weight`` [3D, D], q/k/v) -> ``MultiHeadAttention``.

    Also reads the unpacked form (``q_proj_weight`` ...) that torch uses when
    kdim/vdim differ from embed_dim.
    """
    out: Params = {}
    if _key(src, "in_proj_weight") in sd:
        ws = np.split(_get(sd, src, "in_proj_weight"), 3, axis=0)
    else:
        ws = [_get(sd, src, f"{n}_proj_weight") for n in "qkv"]
    d = ws[0].shape[0]
    bs = np.split(_opt(sd, src, "in_proj_bias", 3 * d), 3)
    for name, w, b in zip(("q_proj", "k_proj", "v_proj"), ws, bs, strict=True):
        out[f"{name}.w"] = np.ascontiguousarray(w.T)
        out[f"{name}.b"] = b
    out.update(prefixed(torch_linear(sd, _key(src, "out_proj")), "out_proj"))
    return prefixed(out, dst)


def torch_transformer_encoder_layer(sd: Mapping[str, Any], src: str = "", dst: str = "") -> Params:
    """``nn.TransformerEncoderLayer`` (norm_first=False, batch_first) -> ``TransformerBlock``."""
    out: Params = {}
    out.update(prefixed(torch_multihead_attention(sd, _key(src, "self_attn")), "attn"))
    out.update(prefixed(torch_linear(sd, _key(src, "linear1")), "ff1"))
    out.update(prefixed(torch_linear(sd, _key(src, "linear2")), "ff2"))
    out.update(prefixed(torch_layernorm(sd, _key(src, "norm1")), "norm1"))
    out.update(prefixed(torch_layernorm(sd, _key(src, "norm2")), "norm2"))
    return prefixed(out, dst)


def to_torch_recurrent(params: Mapping[str, Any], src: str = "", layer: int = 0) -> Params:
    """The inverse of :func:`torch_lstm` / :func:`torch_gru` / :func:`torch_rnn`:
    dlir ``w_ih, w_hh, b_ih, b_hh`` -> torch's ``weight_ih_l0``, ... (numpy arrays)."""
    sfx = f"_l{layer}"
    g = {k: _np(params[_key(src, k)]) for k in ("w_ih", "w_hh", "b_ih", "b_hh")}
    return {
        "weight_ih" + sfx: np.ascontiguousarray(g["w_ih"].T),
        "weight_hh" + sfx: np.ascontiguousarray(g["w_hh"].T),
        "bias_ih" + sfx: g["b_ih"],
        "bias_hh" + sfx: g["b_hh"],
    }


# -- Keras ---------------------------------------------------------------------------------
def _keras_weights(layer_or_weights: Any) -> list[np.ndarray]:
    ws = layer_or_weights.get_weights() if hasattr(layer_or_weights, "get_weights") else layer_or_weights
    return [_np(w) for w in ws]


def keras_dense(weights: Any, dst: str = "") -> Params:
    """``keras.layers.Dense`` (kernel [in, out], bias) -> ``Dense``: the same layout."""
    ws = _keras_weights(weights)
    b = ws[1] if len(ws) > 1 else np.zeros(ws[0].shape[1], np.float32)
    return prefixed({"w": ws[0], "b": b}, dst)


def keras_lstm(weights: Any, dst: str = "") -> Params:
    """``keras.layers.LSTM`` ([kernel [In, 4H], recurrent_kernel [H, 4H], bias [4H]]) -> ``LSTM``.

    Keras packs i, f, c, o, which is PyTorch's i, f, g, o; its single bias
    becomes ``b_ih`` and ``b_hh`` is zero. Pass ``layer.get_weights()`` or the layer.
    """
    ws = _keras_weights(weights)
    kernel, rec = ws[0], ws[1]
    four_h = kernel.shape[1]
    bias = ws[2] if len(ws) > 2 else np.zeros(four_h, np.float32)
    return prefixed({"w_ih": kernel, "w_hh": rec, "b_ih": bias, "b_hh": np.zeros(four_h, np.float32)}, dst)


def keras_gru(weights: Any, dst: str = "") -> Params:
    """``keras.layers.GRU`` with ``reset_after=True`` (Keras's default) -> ``GRU``.

    Keras packs z, r, h; dlir r, z, n. Its bias is [2, 3H]: row 0 the input bias,
    row 1 the recurrent bias. A ``reset_after=False`` GRU (bias [3H]) applies the
    reset gate before the hidden matmul, which dlir's GRU does not compute: it is
    refused rather than mapped to different numbers.
    """
    ws = _keras_weights(weights)
    kernel, rec = ws[0], ws[1]
    three_h = kernel.shape[1]
    bias = ws[2] if len(ws) > 2 else np.zeros((2, three_h), np.float32)
    if bias.ndim != 2:
        raise ValueError(
            "keras_gru: this GRU has reset_after=False (bias of shape "
            f"{bias.shape}); dlir's GRU applies the reset gate after the hidden matmul "
            "(reset_after=True, as PyTorch). Re-train with reset_after=True."
        )
    o = _KERAS_GRU_TO_DLIR
    return prefixed(
        {
            "w_ih": _reorder_gates(kernel, o),
            "w_hh": _reorder_gates(rec, o),
            "b_ih": _reorder_gates(bias[0], o),
            "b_hh": _reorder_gates(bias[1], o),
        },
        dst,
    )


# -- ONNX ----------------------------------------------------------------------------------
# ONNX LSTM packs i, o, f, c and GRU z, r, h, with W [dirs, G*H, In], R [dirs, G*H, H],
# B [dirs, 2*G*H] (input biases, then recurrent biases).
_ONNX_LSTM_TO_DLIR = (0, 2, 3, 1)  # dlir i, f, g, o from onnx i, o, f, c
_ONNX_GRU_TO_DLIR = (1, 0, 2)  # dlir r, z, n from onnx z, r, h


def _onnx_recurrent(w: Any, r: Any, b: Any, order: Sequence[int], dst: str, direction: int) -> Params:
    wa, ra = _np(w)[direction], _np(r)[direction]
    g = wa.shape[0]
    ba = _np(b)[direction] if b is not None else np.zeros(2 * g, np.float32)
    return prefixed(
        {
            "w_ih": _reorder_gates(wa.T, order),
            "w_hh": _reorder_gates(ra.T, order),
            "b_ih": _reorder_gates(ba[:g], order),
            "b_hh": _reorder_gates(ba[g:], order),
        },
        dst,
    )


def onnx_lstm(w: Any, r: Any, b: Any = None, dst: str = "", direction: int = 0) -> Params:
    """ONNX ``LSTM`` initializers W, R, B (gates i, o, f, c) -> ``LSTM`` (no peepholes)."""
    return _onnx_recurrent(w, r, b, _ONNX_LSTM_TO_DLIR, dst, direction)


def onnx_gru(w: Any, r: Any, b: Any = None, dst: str = "", direction: int = 0) -> Params:
    """ONNX ``GRU`` with ``linear_before_reset=1`` (gates z, r, h) -> ``GRU``.

    With ``linear_before_reset=0`` (ONNX's default) the numbers differ: map only
    models exported with 1 (as torch.onnx.export writes).
    """
    return _onnx_recurrent(w, r, b, _ONNX_GRU_TO_DLIR, dst, direction)


__all__ = [
    "keras_dense",
    "keras_gru",
    "keras_lstm",
    "onnx_gru",
    "onnx_lstm",
    "prefixed",
    "to_torch_recurrent",
    "torch_batchnorm2d",
    "torch_conv2d",
    "torch_embedding",
    "torch_gru",
    "torch_layernorm",
    "torch_linear",
    "torch_lstm",
    "torch_multihead_attention",
    "torch_rnn",
    "torch_transformer_encoder_layer",
]
