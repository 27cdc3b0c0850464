"""The standard library (`use nn`) agrees with the frameworks' own layers, on every target.

Each dlir layer is compiled once per target; weights come from a torch.nn (or
Keras) layer through ``dlir.interop``; the outputs must match the framework's
within 1e-5 (float32). conv2d and the pools are checked against
``torch.nn.functional`` and ``tf.nn`` (NHWC, transposed here).
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable

import numpy as np
import pytest

import dlir
from dlir import interop

TARGETS = ["numpy", "torch", "tensorflow", "onnx"]
TOL = {"rtol": 1e-5, "atol": 1e-5}

SRC = """
use nn

model Lstm(x: f32[B, T, 5], h0: f32[B, 7], c0: f32[B, 7]) -> (hs: f32[B, T, 7], h: f32[B, 7], c: f32[B, 7]) {
    lstm = LSTM(5, 7)
    return lstm(x, h0, c0)
}
model Gru(x: f32[B, T, 5], h0: f32[B, 7]) -> (hs: f32[B, T, 7], h: f32[B, 7]) {
    gru = GRU(5, 7)
    return gru(x, h0)
}
model Rnn(x: f32[B, T, 5], h0: f32[B, 7]) -> (hs: f32[B, T, 7], h: f32[B, 7]) {
    rnn = RNN(5, 7)
    return rnn(x, h0)
}
model LstmZero(x: f32[B, T, 5]) -> (hs: f32[B, T, 7], h: f32[B, 7], c: f32[B, 7]) {
    lstm = LSTM(5, 7)
    return lstm(x)
}
model Mha(q: f32[B, S, 8], kv: f32[B, T, 8], mask: bool[S, T], bias: f32[S, T]) -> f32[B, S, 8] {
    attn = MultiHeadAttention(8, 2)
    return attn(q, kv, kv, mask, bias)
}
model Block(x: f32[B, T, 8], mask: bool[T, T]) -> f32[B, T, 8] {
    blk = TransformerBlock(8, 2, 16)
    return blk(x, mask)
}
model Vision(x: f32[B, 3, 9, 9]) -> (feat: f32[B, 6, 5, 5], out: f32[B, 4]) {
    conv = Conv2d(3, 6, 3, stride=2, padding=1, dilation=1)
    bn = BatchNorm2d(6)
    feat = bn(conv(x))
    fc = Dense(150, 4, act="tanh")
    return (feat, fc(flatten(feat, start=1)))
}
model Tokens(ids: i64[B, T]) -> f32[B, T, 6] {
    emb = Embedding(11, 6)
    ln = LayerNorm(6)
    return ln(emb(ids))
}
model Ops(x: f32[B, 4, 9, 11], w4: f32[6, 4, 4, 4], b: f32[6], wg: f32[6, 2, 3, 3]) -> (
        same_s2: f32[B, 6, 5, 6], same_s1: f32[B, 6, 9, 11], dil_grp: f32[B, 6, 7, 11],
        maxc: f32[B, 4, 5, 6], avgc_in: f32[B, 4, 5, 6], avgc_ex: f32[B, 4, 5, 6],
        max_same: f32[B, 4, 5, 6], avg_same: f32[B, 4, 5, 6]) {
    return (
        conv2d(x, w4, b, stride=2, padding="same"),
        conv2d(x, w4, b, padding="same"),
        conv2d(x, wg, b, dilation=2, groups=2, padding=[1, 2]),
        max_pool2d(x, kernel=3, stride=2, padding=1, ceil_mode=true),
        avg_pool2d(x, kernel=3, stride=2, padding=1, ceil_mode=true, count_include_pad=true),
        avg_pool2d(x, kernel=3, stride=2, padding=1, ceil_mode=true, count_include_pad=false),
        max_pool2d(x, kernel=2, stride=2, padding="same"),
        avg_pool2d(x, kernel=3, stride=2, padding="same", count_include_pad=false),
    )
}
"""


@functools.cache
def _prog() -> Any:
    return dlir.loads(SRC, "<stdlib-tests>")


@functools.cache
def _runner(model: str, target: str) -> Any:
    return dlir.compile(_prog(), target, model=model)


def _run(model: str, target: str, params: dict[str, np.ndarray], **feeds: np.ndarray) -> tuple[np.ndarray, ...]:
    r = _runner(model, target)
    r.load_params(params)
    out = r(**feeds)
    return out if isinstance(out, tuple) else (out,)


def _check(got: tuple[np.ndarray, ...], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == np.float32
        np.testing.assert_allclose(g, w, **TOL)


def _rand(*shape: int, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


@pytest.fixture(scope="module")
def torch() -> Any:
    import torch

    torch.manual_seed(0)
    return torch


@pytest.fixture(scope="module")
def keras() -> Any:
    import keras

    keras.utils.set_random_seed(0)
    return keras


def _t(torch: Any, fn: Callable[..., Any], *arrays: np.ndarray) -> Any:
    with torch.no_grad():
        return fn(*(torch.from_numpy(a) for a in arrays))


def _randomize(torch: Any, module: Any, scale: float = 0.5) -> Any:
    """Non-zero biases and weights of a useful size, so every term is exercised."""
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-scale, scale)
    return module.eval()


# -- recurrent layers -----------------------------------------------------------------------
X = _rand(3, 6, 5, seed=1)
H0 = _rand(3, 7, seed=2, scale=0.5)
C0 = _rand(3, 7, seed=3, scale=0.5)


@pytest.fixture(scope="module")
def torch_lstm(torch: Any) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    m = _randomize(torch, torch.nn.LSTM(5, 7, batch_first=True))
    hs, (h, c) = _t(torch, lambda x, h0, c0: m(x, (h0[None], c0[None])), X, H0, C0)
    return interop.torch_lstm(m.state_dict(), dst="lstm"), [hs.numpy(), h[0].numpy(), c[0].numpy()]


@pytest.fixture(scope="module")
def keras_lstm(keras: Any) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    layer = keras.layers.LSTM(7, return_sequences=True, return_state=True)
    layer.build((None, None, 5))
    layer.set_weights([_rand(*w.shape, seed=10 + i, scale=0.4) for i, w in enumerate(layer.get_weights())])
    hs, h, c = layer(X, initial_state=[H0, C0])
    return interop.keras_lstm(layer, dst="lstm"), [np.asarray(hs), np.asarray(h), np.asarray(c)]


@pytest.mark.parametrize("target", TARGETS)
def test_lstm_matches_torch_nn_lstm(target: str, torch_lstm: Any) -> None:
    params, want = torch_lstm
    _check(_run("Lstm", target, params, x=X, h0=H0, c0=C0), want)


@pytest.mark.parametrize("target", TARGETS)
def test_lstm_matches_keras_lstm(target: str, keras_lstm: Any) -> None:
    params, want = keras_lstm
    _check(_run("Lstm", target, params, x=X, h0=H0, c0=C0), want)


def test_lstm_default_initial_state_is_zeros(torch: Any, torch_lstm: Any) -> None:
    params, _ = torch_lstm
    zero = np.zeros_like(H0)
    _check(_run("LstmZero", "numpy", params, x=X), list(_run("Lstm", "numpy", params, x=X, h0=zero, c0=zero)))


@pytest.fixture(scope="module")
def torch_gru(torch: Any) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    m = _randomize(torch, torch.nn.GRU(5, 7, batch_first=True))
    hs, h = _t(torch, lambda x, h0: m(x, h0[None]), X, H0)
    return interop.torch_gru(m.state_dict(), dst="gru"), [hs.numpy(), h[0].numpy()]


@pytest.fixture(scope="module")
def keras_gru(keras: Any) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    layer = keras.layers.GRU(7, return_sequences=True, return_state=True, reset_after=True)
    layer.build((None, None, 5))
    layer.set_weights([_rand(*w.shape, seed=20 + i, scale=0.4) for i, w in enumerate(layer.get_weights())])
    hs, h = layer(X, initial_state=[H0])
    return interop.keras_gru(layer, dst="gru"), [np.asarray(hs), np.asarray(h)]


@pytest.mark.parametrize("target", TARGETS)
def test_gru_matches_torch_nn_gru(target: str, torch_gru: Any) -> None:
    params, want = torch_gru
    _check(_run("Gru", target, params, x=X, h0=H0), want)


@pytest.mark.parametrize("target", TARGETS)
def test_gru_matches_keras_gru_reset_after(target: str, keras_gru: Any) -> None:
    params, want = keras_gru
    _check(_run("Gru", target, params, x=X, h0=H0), want)


def test_keras_gru_reset_before_is_refused(keras: Any) -> None:
    layer = keras.layers.GRU(4, reset_after=False)
    layer.build((None, None, 3))
    with pytest.raises(ValueError, match="reset_after=False"):
        interop.keras_gru(layer)


@pytest.mark.parametrize("target", TARGETS)
def test_rnn_matches_torch_nn_rnn(target: str, torch: Any) -> None:
    m = _randomize(torch, torch.nn.RNN(5, 7, batch_first=True))
    hs, h = _t(torch, lambda x, h0: m(x, h0[None]), X, H0)
    _check(_run("Rnn", target, interop.torch_rnn(m.state_dict(), dst="rnn"), x=X, h0=H0), [hs.numpy(), h[0].numpy()])


# -- attention ------------------------------------------------------------------------------
Q = _rand(2, 4, 8, seed=4)
KV = _rand(2, 6, 8, seed=5)
MASK = np.random.default_rng(6).random((4, 6)) < 0.6
MASK[:, 0] = True  # every query sees at least one key (torch gives NaN otherwise)
BIAS = _rand(4, 6, seed=7, scale=0.5)


@pytest.fixture(scope="module")
def torch_mha(torch: Any) -> tuple[dict[str, np.ndarray], np.ndarray]:
    m = _randomize(torch, torch.nn.MultiheadAttention(8, 2, batch_first=True))
    # torch: one float mask added to the scores; dlir: bool mask (true = attend) + additive bias.
    float_mask = np.where(MASK, BIAS, -np.inf).astype(np.float32)
    out = _t(torch, lambda q, kv, fm: m(q, kv, kv, attn_mask=fm, need_weights=False)[0], Q, KV, float_mask)
    return interop.torch_multihead_attention(m.state_dict(), dst="attn"), out.numpy()


@pytest.mark.parametrize("target", TARGETS)
def test_multihead_attention_matches_torch_with_mask(target: str, torch_mha: Any) -> None:
    params, want = torch_mha
    _check(_run("Mha", target, params, q=Q, kv=KV, mask=MASK, bias=BIAS), [want])


def test_multihead_attention_bool_mask_is_torchs_negated(torch: Any, torch_mha: Any) -> None:
    params, _ = torch_mha
    m = torch.nn.MultiheadAttention(8, 2, batch_first=True).eval()
    m.load_state_dict(_mha_state(torch, params))
    want = _t(torch, lambda q, kv, bm: m(q, kv, kv, attn_mask=bm, need_weights=False)[0], Q, KV, ~MASK)
    _check(_run("Mha", "numpy", params, q=Q, kv=KV, mask=MASK, bias=np.zeros_like(BIAS)), [want.numpy()])


def _mha_state(torch: Any, p: dict[str, np.ndarray]) -> dict[str, Any]:
    w = np.concatenate([p[f"attn.{n}_proj.w"].T for n in "qkv"])
    b = np.concatenate([p[f"attn.{n}_proj.b"] for n in "qkv"])
    t = torch.from_numpy
    return {
        "in_proj_weight": t(w),
        "in_proj_bias": t(b),
        "out_proj.weight": t(np.ascontiguousarray(p["attn.out_proj.w"].T)),
        "out_proj.bias": t(p["attn.out_proj.b"]),
    }


@pytest.mark.parametrize("target", TARGETS)
def test_transformer_block_matches_torch_encoder_layer(target: str, torch: Any) -> None:
    m = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True, norm_first=False)
    _randomize(torch, m)  # eval(): dropout off, as in dlir's compiled models
    x = _rand(2, 5, 8, seed=8)
    mask = np.tril(np.ones((5, 5), bool))
    want = _t(torch, lambda x, bm: m(x, src_mask=bm), x, ~mask)
    params = interop.torch_transformer_encoder_layer(m.state_dict(), dst="blk")
    _check(_run("Block", target, params, x=x, mask=mask), [want.numpy()])


# -- convolution, batch norm, dense, embedding, layer norm ----------------------------------------
@pytest.mark.parametrize("target", TARGETS)
def test_conv_batchnorm_dense_match_torch(target: str, torch: Any) -> None:
    nn = torch.nn
    conv = _randomize(torch, nn.Conv2d(3, 6, 3, stride=2, padding=1))
    bn = _randomize(torch, nn.BatchNorm2d(6))
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    fc = _randomize(torch, nn.Linear(150, 4))
    x = _rand(2, 3, 9, 9, seed=9)
    feat = _t(torch, lambda x: bn(conv(x)), x)
    out = _t(torch, lambda f: torch.tanh(fc(f.flatten(1))), feat.numpy())
    params = {
        **interop.torch_conv2d(conv.state_dict(), dst="conv"),
        **interop.torch_batchnorm2d(bn.state_dict(), dst="bn"),
        **interop.torch_linear(fc.state_dict(), dst="fc"),
    }
    _check(_run("Vision", target, params, x=x), [feat.numpy(), out.numpy()])


@pytest.mark.parametrize("target", TARGETS)
def test_embedding_layernorm_match_torch(target: str, torch: Any) -> None:
    emb = _randomize(torch, torch.nn.Embedding(11, 6), scale=2.0)
    ln = _randomize(torch, torch.nn.LayerNorm(6))
    ids = np.array([[0, 3, 10], [7, 7, 1]], np.int64)
    want = _t(torch, lambda i: ln(emb(i)), ids)
    params = {
        **interop.torch_embedding(emb.state_dict(), dst="emb"),
        **interop.torch_layernorm(ln.state_dict(), dst="ln"),
    }
    _check(_run("Tokens", target, params, ids=ids), [want.numpy()])


# -- conv2d and pools against torch.nn.functional and tf.nn ------------------------------------
OX = _rand(2, 4, 9, 11, seed=11)
W4 = _rand(6, 4, 4, 4, seed=12, scale=0.3)
OB = _rand(6, seed=13)
WG = _rand(6, 2, 3, 3, seed=14, scale=0.3)


@pytest.fixture(scope="module")
def op_refs(torch: Any) -> list[np.ndarray]:
    import tensorflow as tf

    F = torch.nn.functional
    t = torch.from_numpy
    x = t(OX)
    nhwc = tf.constant(OX.transpose(0, 2, 3, 1))

    def from_tf(y: Any) -> np.ndarray:
        return np.asarray(y).transpose(0, 3, 1, 2)

    tf_w4 = tf.constant(W4.transpose(2, 3, 1, 0))  # [kh, kw, in, out]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch: "same" with an even kernel copies the input
        return [
            from_tf(tf.nn.conv2d(nhwc, tf_w4, strides=2, padding="SAME") + OB),
            F.conv2d(x, t(W4), t(OB), padding="same").numpy(),  # even kernel: torch pads the extra at the end
            F.conv2d(F.pad(x, (2, 2, 1, 1)), t(WG), t(OB), dilation=2, groups=2).numpy(),
            F.max_pool2d(x, 3, 2, padding=1, ceil_mode=True).numpy(),
            F.avg_pool2d(x, 3, 2, padding=1, ceil_mode=True, count_include_pad=True).numpy(),
            F.avg_pool2d(x, 3, 2, padding=1, ceil_mode=True, count_include_pad=False).numpy(),
            from_tf(tf.nn.max_pool2d(nhwc, 2, 2, padding="SAME")),
            from_tf(tf.nn.avg_pool2d(nhwc, 3, 2, padding="SAME")),  # TF averages over the real cells only
        ]


@pytest.mark.parametrize("target", TARGETS)
def test_conv2d_and_pools_match_torch_functional_and_tf_nn(target: str, op_refs: list[np.ndarray]) -> None:
    _check(_run("Ops", target, {}, x=OX, w4=W4, b=OB, wg=WG), op_refs)


def test_interop_round_trips_and_keras_dense(torch: Any, keras: Any) -> None:
    m = _randomize(torch, torch.nn.GRU(5, 7, batch_first=True))
    sd = {k: v.numpy() for k, v in m.state_dict().items()}
    back = interop.to_torch_recurrent(interop.torch_gru(sd, dst="gru"), src="gru")
    assert sorted(back) == sorted(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(back[k], v)
    dense = keras.layers.Dense(4)
    dense.build((None, 6))
    p = interop.keras_dense(dense, dst="fc")
    x = _rand(3, 6, seed=15)
    np.testing.assert_allclose(x @ p["fc.w"] + p["fc.b"], np.asarray(dense(x)), **TOL)
