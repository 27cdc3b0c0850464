"""Hand-written torch.nn and Keras equivalents of every samples/*.dlir model, for the benchmarks.

Each model is written the way a user of that framework would write it (standard
layers: ``nn.Linear``, ``nn.Conv2d``, ``nn.GRU(bidirectional=True)``,
``nn.MultiheadAttention``, ``nn.TransformerEncoderLayer``; ``keras.layers.*``),
with its own natural input format (Keras takes NHWC images, torch's
``nn.MultiheadAttention`` a mask that is true where attention is *blocked*, ...).
The converters between dlir's inputs and those formats (``torch_in``,
``keras_in``) run outside any timed call.

The factories take dlir's params (a dict of numpy arrays, dlir's layouts:
weights [in, out], conv kernels [out, in, kh, kw], gates packed as torch) and
return the model with those weights, so that both compute the same numbers;
the benchmarks check that before they time anything.

Where a sample's math is not a standard layer it is written as explicit ops
(still by hand): ResMLP's GELU is the tanh approximation (``nn.GELU(approximate="tanh")``,
``keras.activations.gelu(approximate=True)``); the attention samples mask with
-1e9 in dlir and -inf in torch, which agree while no query row is fully masked
(the inputs here never mask a whole row).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

Params = dict[str, np.ndarray]
Feeds = dict[str, np.ndarray]


def _t(a: np.ndarray) -> np.ndarray:
    """A dlir [in, out] weight as torch's [out, in] (contiguous, for load_state_dict)."""
    return np.ascontiguousarray(a.T)


def _linear(p: Params, src: str, dst: str) -> Params:
    return {f"{dst}.weight": _t(p[f"{src}.w"]), f"{dst}.bias": p[f"{src}.b"]}


def _load(torch: Any, module: Any, state: Params) -> Any:
    """``module`` in eval mode with ``state`` loaded (strict: every weight must be given)."""
    module.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, strict=True)
    return module.eval()


# -- mlp ------------------------------------------------------------------------------------
def torch_mlp(torch: Any, p: Params) -> Any:
    nn = torch.nn
    m = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    return _load(torch, m, {**_linear(p, "fc1", "0"), **_linear(p, "fc2", "2")})


def keras_mlp(keras: Any, p: Params) -> Any:
    L = keras.layers
    m = keras.Sequential([keras.Input((784,)), L.Dense(256, activation="relu"), L.Dense(10)])
    m.set_weights([p["fc1.w"], p["fc1.b"], p["fc2.w"], p["fc2.b"]])
    return m


# -- resmlp ---------------------------------------------------------------------------------
def torch_resmlp(torch: Any, p: Params) -> Any:
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm = nn.LayerNorm(32, eps=1e-5)
            self.up = nn.Linear(32, 64)
            self.act = nn.GELU(approximate="tanh")
            self.down = nn.Linear(64, 32)

        def forward(self, h: Any) -> Any:
            return h + self.down(self.act(self.up(self.norm(h))))

    class ResMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Linear(64, 32)
            self.blocks = nn.Sequential(*(Block() for _ in range(3)))
            self.head = nn.Linear(32, 10)

        def forward(self, x: Any) -> tuple[Any, Any]:
            logits = self.head(self.blocks(torch.relu(self.stem(x))))
            return logits, torch.softmax(logits, dim=-1)

    sd = {**_linear(p, "stem", "stem"), **_linear(p, "head", "head")}
    for i in range(3):
        sd |= _linear(p, f"blk.{i}.up", f"blocks.{i}.up") | _linear(p, f"blk.{i}.down", f"blocks.{i}.down")
        sd |= {f"blocks.{i}.norm.weight": p[f"blk.{i}.gamma"], f"blocks.{i}.norm.bias": p[f"blk.{i}.beta"]}
    return _load(torch, ResMLP(), sd)


def keras_resmlp(keras: Any, p: Params) -> Any:
    L = keras.layers

    def gelu_tanh(x: Any) -> Any:
        return keras.activations.gelu(x, approximate=True)

    x = keras.Input((64,))
    stem = L.Dense(32, activation="relu")
    h = stem(x)
    layers: list[tuple[int, Any, Any, Any]] = []
    for i in range(3):
        norm, up, down = L.LayerNormalization(epsilon=1e-5), L.Dense(64, activation=gelu_tanh), L.Dense(32)
        h = L.Add()([h, down(up(norm(h)))])
        layers.append((i, norm, up, down))
    head = L.Dense(10)
    logits = head(h)
    model = keras.Model(x, [logits, L.Softmax()(logits)])
    stem.set_weights([p["stem.w"], p["stem.b"]])
    head.set_weights([p["head.w"], p["head.b"]])
    for i, norm, up, down in layers:
        norm.set_weights([p[f"blk.{i}.gamma"], p[f"blk.{i}.beta"]])
        up.set_weights([p[f"blk.{i}.up.w"], p[f"blk.{i}.up.b"]])
        down.set_weights([p[f"blk.{i}.down.w"], p[f"blk.{i}.down.b"]])
    return model


# -- cnn (LeNet) ----------------------------------------------------------------------------
def torch_lenet(torch: Any) -> Any:
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )


def torch_lenet_state(p: Params) -> Params:
    sd = {"0.weight": p["conv1.w"], "0.bias": p["conv1.b"], "3.weight": p["conv2.w"], "3.bias": p["conv2.b"]}
    for i, name in ((7, "fc1"), (9, "fc2"), (11, "fc3")):
        sd |= _linear(p, name, str(i))
    return sd


def _hwio(w: np.ndarray) -> np.ndarray:
    return w.transpose(2, 3, 1, 0)  # [O, I, kh, kw] -> Keras's [kh, kw, I, O]


def _nhwc_rows(w: np.ndarray, c: int, h: int, wd: int) -> np.ndarray:
    """Rows of a dense weight after an NCHW flatten, reordered for Keras's NHWC flatten (H, W, C)."""
    return w.reshape(c, h, wd, -1).transpose(1, 2, 0, 3).reshape(c * h * wd, -1)


def keras_lenet(keras: Any, p: Params) -> Any:
    L = keras.layers
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Conv2D(6, 5, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(16, 5, activation="relu"), L.MaxPooling2D(2),
        L.Flatten(),
        L.Dense(120, activation="relu"), L.Dense(84, activation="relu"), L.Dense(10),
    ])
    model.set_weights([
        _hwio(p["conv1.w"]), p["conv1.b"], _hwio(p["conv2.w"]), p["conv2.b"],
        _nhwc_rows(p["fc1.w"], 16, 5, 5), p["fc1.b"], p["fc2.w"], p["fc2.b"], p["fc3.w"], p["fc3.b"],
    ])
    return model


# -- lstm -----------------------------------------------------------------------------------
def torch_lstm_classifier(torch: Any) -> Any:
    nn = torch.nn

    class LSTMClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(32, 64, batch_first=True)
            self.head = nn.Linear(64, 5)

        def forward(self, x: Any) -> Any:
            _, (h, _) = self.lstm(x)
            return self.head(h[0])

    return LSTMClassifier()


def _torch_rnn_state(p: Params, src: str, dst: str, suffix: str = "_l0") -> Params:
    return {
        f"{dst}.weight_ih{suffix}": _t(p[f"{src}.w_ih"]), f"{dst}.weight_hh{suffix}": _t(p[f"{src}.w_hh"]),
        f"{dst}.bias_ih{suffix}": p[f"{src}.b_ih"], f"{dst}.bias_hh{suffix}": p[f"{src}.b_hh"],
    }


def torch_lstm_state(p: Params) -> Params:
    return _torch_rnn_state(p, "lstm", "lstm") | _linear(p, "head", "head")


def keras_lstm_classifier(keras: Any, p: Params) -> Any:
    L = keras.layers
    model = keras.Sequential([keras.Input((None, 32)), L.LSTM(64), L.Dense(5)])
    # Keras packs i, f, c, o (torch's i, f, g, o) and has one bias.
    model.set_weights([p["lstm.w_ih"], p["lstm.w_hh"], p["lstm.b_ih"] + p["lstm.b_hh"], p["head.w"], p["head.b"]])
    return model


# -- gru (bidirectional tagger) -------------------------------------------------------------
def torch_bigru(torch: Any, p: Params) -> Any:
    nn = torch.nn

    class BiGRUTagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = nn.GRU(16, 24, batch_first=True, bidirectional=True)
            self.tag = nn.Linear(48, 6)

        def forward(self, x: Any, h0: Any) -> tuple[Any, Any]:
            # The sample's backward direction starts from zeros; the forward one from h0.
            hs, h_n = self.gru(x, torch.stack([h0, torch.zeros_like(h0)]))
            return self.tag(hs), h_n[0]

    sd = _torch_rnn_state(p, "fwd", "gru") | _torch_rnn_state(p, "bwd", "gru", "_l0_reverse") | _linear(p, "tag", "tag")
    return _load(torch, BiGRUTagger(), sd)


def _keras_gru_weights(p: Params, src: str) -> list[np.ndarray]:
    """dlir's GRU (gates r, z, n) as Keras's reset_after GRU (gates z, r, h; bias [2, 3H])."""
    def zrn(a: np.ndarray) -> np.ndarray:
        r, z, n = np.split(a, 3, axis=-1)
        return np.concatenate([z, r, n], axis=-1)

    return [zrn(p[f"{src}.w_ih"]), zrn(p[f"{src}.w_hh"]), np.stack([zrn(p[f"{src}.b_ih"]), zrn(p[f"{src}.b_hh"])])]


def keras_bigru(keras: Any, p: Params) -> Any:
    L = keras.layers
    x, h0 = keras.Input((None, 16)), keras.Input((24,))
    bi = L.Bidirectional(L.GRU(24, return_sequences=True, return_state=True))
    hs, h_fwd, _ = bi(x, initial_state=[h0, keras.ops.zeros_like(h0)])
    tag = L.Dense(6)
    model = keras.Model([x, h0], [tag(hs), h_fwd])
    bi.forward_layer.set_weights(_keras_gru_weights(p, "fwd"))
    bi.backward_layer.set_weights(_keras_gru_weights(p, "bwd"))
    tag.set_weights([p["tag.w"], p["tag.b"]])
    return model


# -- attention ------------------------------------------------------------------------------
def _torch_mha_state(p: Params, src: str, dst: str) -> Params:
    return {
        f"{dst}.in_proj_weight": np.concatenate([_t(p[f"{src}.{n}_proj.w"]) for n in "qkv"]),
        f"{dst}.in_proj_bias": np.concatenate([p[f"{src}.{n}_proj.b"] for n in "qkv"]),
        **_linear(p, f"{src}.out_proj", f"{dst}.out_proj"),
    }


def torch_attention(torch: Any, p: Params) -> Any:
    nn = torch.nn

    class SelfAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(32, 4, batch_first=True)

        def forward(self, x: Any, blocked: Any) -> Any:
            return x + self.attn(x, x, x, attn_mask=blocked, need_weights=False)[0]

    return _load(torch, SelfAttention(), _torch_mha_state(p, "attn", "attn"))


def _keras_mha_weights(p: Params, src: str, d: int, heads: int) -> list[np.ndarray]:
    """dlir's q/k/v/out Dense layers as Keras MultiHeadAttention's [d, heads, d/heads] kernels."""
    k = d // heads
    ws: list[np.ndarray] = []
    for n in "qkv":
        ws += [p[f"{src}.{n}_proj.w"].reshape(d, heads, k), p[f"{src}.{n}_proj.b"].reshape(heads, k)]
    return ws + [p[f"{src}.out_proj.w"].reshape(heads, k, d), p[f"{src}.out_proj.b"]]


def keras_attention(keras: Any, p: Params) -> Any:
    L = keras.layers
    x, mask = keras.Input((None, 32)), keras.Input((None, None), dtype="bool")
    mha = L.MultiHeadAttention(num_heads=4, key_dim=8)
    model = keras.Model([x, mask], L.Add()([x, mha(x, x, x, attention_mask=mask)]))
    mha.set_weights(_keras_mha_weights(p, "attn", 32, 4))
    return model


# -- transformer ----------------------------------------------------------------------------
def torch_encoder(torch: Any, p: Params) -> Any:
    nn = torch.nn

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(100, 32)
            self.pos = nn.Parameter(torch.zeros(16, 32))
            # A ModuleList, not nn.TransformerEncoder: that one's nested-tensor path zeroes padded rows.
            self.blocks = nn.ModuleList(
                nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True) for _ in range(3)
            )
            self.head = nn.Linear(32, 3)

        def forward(self, tokens: Any, padding: Any) -> tuple[Any, Any]:
            h = self.embed(tokens) + self.pos
            for blk in self.blocks:
                h = blk(h, src_key_padding_mask=padding)
            return h, self.head(h.mean(dim=1))

    sd = {"embed.weight": p["embed.w"], "pos": p["pos"], **_linear(p, "head", "head")}
    for i in range(3):
        s, d = f"blk.{i}", f"blocks.{i}"
        sd |= _torch_mha_state(p, f"{s}.attn", f"{d}.self_attn")
        sd |= _linear(p, f"{s}.ff1", f"{d}.linear1") | _linear(p, f"{s}.ff2", f"{d}.linear2")
        for n in ("norm1", "norm2"):
            sd |= {f"{d}.{n}.weight": p[f"{s}.{n}.scale"], f"{d}.{n}.bias": p[f"{s}.{n}.bias"]}
    return _load(torch, Encoder(), sd)


def keras_encoder(keras: Any, p: Params) -> Any:
    L = keras.layers

    class AddPosition(L.Layer):
        """One learned vector per position, added to the token embeddings."""

        def build(self, shape: Any) -> None:
            self.pos = self.add_weight(shape=tuple(shape[1:]), initializer="zeros", name="pos")

        def call(self, h: Any) -> Any:
            return h + self.pos

    tokens, keep = keras.Input((16,), dtype="int64"), keras.Input((16,), dtype="bool")
    embed, add_pos = L.Embedding(100, 32), AddPosition()
    h = add_pos(embed(tokens))
    mask = keras.ops.expand_dims(keep, 1)  # [B, 1, keys]: every query sees the same keys
    blocks = []
    for _ in range(3):
        mha, n1, n2 = L.MultiHeadAttention(4, 8), L.LayerNormalization(epsilon=1e-5), L.LayerNormalization(epsilon=1e-5)
        ff1, ff2 = L.Dense(64, activation="relu"), L.Dense(32)
        h = n1(L.Add()([h, mha(h, h, h, attention_mask=mask)]))
        h = n2(L.Add()([h, ff2(ff1(h))]))
        blocks.append((mha, n1, n2, ff1, ff2))
    head = L.Dense(3)
    model = keras.Model([tokens, keep], [h, head(keras.ops.mean(h, axis=1))])
    embed.set_weights([p["embed.w"]])
    add_pos.set_weights([p["pos"]])
    head.set_weights([p["head.w"], p["head.b"]])
    for i, (mha, n1, n2, ff1, ff2) in enumerate(blocks):
        s = f"blk.{i}"
        mha.set_weights(_keras_mha_weights(p, f"{s}.attn", 32, 4))
        n1.set_weights([p[f"{s}.norm1.scale"], p[f"{s}.norm1.bias"]])
        n2.set_weights([p[f"{s}.norm2.scale"], p[f"{s}.norm2.bias"]])
        ff1.set_weights([p[f"{s}.ff1.w"], p[f"{s}.ff1.b"]])
        ff2.set_weights([p[f"{s}.ff2.w"], p[f"{s}.ff2.b"]])
    return model


# -- digits ---------------------------------------------------------------------------------
def torch_digits(torch: Any, p: Params) -> Any:
    nn = torch.nn
    m = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(512, 64), nn.ReLU(), nn.Linear(64, 10),
    )
    sd = {"0.weight": p["conv1.w"], "0.bias": p["conv1.b"], "2.weight": p["conv2.w"], "2.bias": p["conv2.b"]}
    return _load(torch, m, sd | _linear(p, "fc1", "6") | _linear(p, "fc2", "8"))


def keras_digits(keras: Any, p: Params) -> Any:
    L = keras.layers
    m = keras.Sequential([
        keras.Input((8, 8, 1)),
        L.Conv2D(16, 3, padding="same", activation="relu"), L.Conv2D(32, 3, padding="same", activation="relu"),
        L.MaxPooling2D(2), L.Flatten(), L.Dense(64, activation="relu"), L.Dense(10),
    ])
    m.set_weights([
        _hwio(p["conv1.w"]), p["conv1.b"], _hwio(p["conv2.w"]), p["conv2.b"],
        _nhwc_rows(p["fc1.w"], 32, 4, 4), p["fc1.b"], p["fc2.w"], p["fc2.b"],
    ])
    return m


# -- mnist (batch norm; trained in train mode, so for bench_train.py only) ------------------
def torch_mnist(torch: Any, p: Params) -> Any:
    nn = torch.nn
    m = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(1568, 128), nn.ReLU(), nn.Linear(128, 10),
    )
    sd = {"0.weight": p["conv1.w"], "0.bias": p["conv1.b"], "4.weight": p["conv2.w"], "4.bias": p["conv2.b"]}
    for i, bn in ((1, "bn1"), (5, "bn2")):
        sd |= {f"{i}.weight": p[f"{bn}.scale"], f"{i}.bias": p[f"{bn}.bias"], f"{i}.running_mean": p[f"{bn}.mean"],
               f"{i}.running_var": p[f"{bn}.var"], f"{i}.num_batches_tracked": np.zeros((), np.int64)}
    return _load(torch, m, sd | _linear(p, "fc1", "9") | _linear(p, "fc2", "11"))


def keras_mnist(keras: Any, p: Params) -> Any:
    L = keras.layers
    m = keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Conv2D(16, 3, padding="same"), L.BatchNormalization(epsilon=1e-5), L.ReLU(), L.MaxPooling2D(2),
        L.Conv2D(32, 3, padding="same"), L.BatchNormalization(epsilon=1e-5), L.ReLU(), L.MaxPooling2D(2),
        L.Flatten(), L.Dense(128, activation="relu"), L.Dense(10),
    ])
    bn = [p[f"{b}.{k}"] for b in ("bn1", "bn2") for k in ("scale", "bias", "mean", "var")]
    m.set_weights([
        _hwio(p["conv1.w"]), p["conv1.b"], *bn[:4], _hwio(p["conv2.w"]), p["conv2.b"], *bn[4:],
        _nhwc_rows(p["fc1.w"], 32, 7, 7), p["fc1.b"], p["fc2.w"], p["fc2.b"],
    ])
    return m

# -- the registry ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Hand:
    """One sample model and its hand-written equivalents.

    ``feeds(rng, batch, seq)`` makes dlir's inputs; ``torch_in`` / ``keras_in``
    turn them into the hand-written models' own inputs (outside the timing);
    ``dynamic`` names each torch input's symbolic axes for ``torch.onnx.export``
    (dlir's ONNX keeps B and T symbolic, so theirs does too).
    """

    sample: str
    model: str
    feeds: Callable[[np.random.Generator, int, int], Feeds]
    torch: Callable[[Any, Params], Any]
    keras: Callable[[Any, Params], Any]
    torch_in: Callable[[Feeds], list[np.ndarray]]
    keras_in: Callable[[Feeds], list[np.ndarray]]
    dynamic: tuple[dict[int, str], ...]


def _f32(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def _nhwc(f: Feeds) -> list[np.ndarray]:
    return [np.ascontiguousarray(f["x"].transpose(0, 2, 3, 1))]


def _x(f: Feeds) -> list[np.ndarray]:
    return [f["x"]]


def _keep(rng: np.random.Generator, b: int, t: int) -> np.ndarray:
    """Padding masks with at least 4 real tokens per row (a fully padded row has no defined softmax)."""
    lengths = rng.integers(4, t + 1, size=b)
    return np.arange(t)[None, :] < lengths[:, None]


B = {0: "B"}
BT = {0: "B", 1: "T"}

HANDS: dict[str, Hand] = {
    h.sample: h
    for h in [
        Hand("mlp", "MLP", lambda r, b, t: {"x": _f32(r, b, 784)}, torch_mlp, keras_mlp, _x, _x, (B,)),
        Hand("resmlp", "ResMLP", lambda r, b, t: {"x": _f32(r, b, 64)}, torch_resmlp, keras_resmlp, _x, _x, (B,)),
        Hand(
            "cnn", "LeNet", lambda r, b, t: {"x": _f32(r, b, 1, 28, 28)},
            lambda torch, p: _load(torch, torch_lenet(torch), torch_lenet_state(p)), keras_lenet, _x, _nhwc, (B,),
        ),
        Hand(
            "lstm", "LSTMClassifier", lambda r, b, t: {"x": _f32(r, b, t, 32)},
            lambda torch, p: _load(torch, torch_lstm_classifier(torch), torch_lstm_state(p)),
            keras_lstm_classifier, _x, _x, (BT,),
        ),
        Hand(
            "gru", "BiGRUTagger", lambda r, b, t: {"x": _f32(r, b, t, 16), "h0": _f32(r, b, 24)},
            torch_bigru, keras_bigru, lambda f: [f["x"], f["h0"]], lambda f: [f["x"], f["h0"]], (BT, B),
        ),
        Hand(
            "attention", "SelfAttention",
            lambda r, b, t: {"x": _f32(r, b, t, 32), "mask": np.tril(np.ones((t, t), bool))},
            torch_attention, keras_attention,
            lambda f: [f["x"], ~f["mask"]],  # torch's bool attn_mask: true = blocked
            lambda f: [f["x"], np.broadcast_to(f["mask"], (len(f["x"]), *f["mask"].shape)).copy()],  # Keras: [B, T, S]
            (BT, {0: "T", 1: "T"}),
        ),
        Hand(
            "transformer", "Encoder",
            lambda r, b, t: {"tokens": r.integers(0, 100, (b, 16)), "keep": _keep(r, b, 16)},
            torch_encoder, keras_encoder,
            lambda f: [f["tokens"], ~f["keep"]],  # src_key_padding_mask: true = padding
            lambda f: [f["tokens"], f["keep"]], (B, B),
        ),
        Hand("digits", "Digits", lambda r, b, t: {"x": r.random((b, 1, 8, 8), np.float32)}, torch_digits, keras_digits,
             _x, _nhwc, (B,)),
    ]
}

# Models whose inference and training differ (batch norm): for bench_train.py, not in HANDS.
TRAIN_HANDS: dict[str, Hand] = {
    "mnist": Hand("mnist", "Mnist", lambda r, b, t: {"x": r.random((b, 1, 28, 28), np.float32)}, torch_mnist,
                  keras_mnist, _x, _nhwc, (B,)),
}
