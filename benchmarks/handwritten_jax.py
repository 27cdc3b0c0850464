"""Hand-written JAX equivalents of the samples, for bench_train.py's ``jax.jit`` column.

Each is a pure function ``f(params, *inputs) -> outputs`` over dlir's param names and
layouts (weights [in, out], conv kernels [out, in, kh, kw], gates packed as torch),
written the way a JAX user writes it (``jnp`` ops, ``lax.conv_general_dilated``,
``lax.scan`` for recurrences). The benchmark checks that each one's first loss
equals dlir's before it times anything. JAX is optional: install it by hand
(``pip install jax``) to get the column.
"""

from __future__ import annotations

from typing import Any, Callable

Params = dict[str, Any]


def make(jnp: Any, lax: Any, jax: Any) -> dict[str, Callable[..., Any]]:
    """The models by sample name, closed over the jax modules (imported by the caller)."""

    def dense(p: Params, name: str, x: Any) -> Any:
        return x @ p[f"{name}.w"] + p[f"{name}.b"]

    def conv(p: Params, name: str, x: Any, padding: int) -> Any:
        y = lax.conv_general_dilated(
            x, p[f"{name}.w"], (1, 1), [(padding, padding)] * 2, dimension_numbers=("NCHW", "OIHW", "NCHW")
        )
        return y + p[f"{name}.b"][None, :, None, None]

    def max_pool(x: Any) -> Any:
        return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def layer_norm(x: Any, g: Any, b: Any, eps: float = 1e-5) -> Any:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) * lax.rsqrt(var + eps) * g + b

    relu = jax.nn.relu

    def mlp(p: Params, x: Any) -> Any:
        return dense(p, "fc2", relu(dense(p, "fc1", x)))

    def resmlp(p: Params, x: Any) -> Any:
        h = relu(dense(p, "stem", x))
        for i in range(3):
            z = layer_norm(h, p[f"blk.{i}.gamma"], p[f"blk.{i}.beta"])
            h = h + dense(p, f"blk.{i}.down", jax.nn.gelu(dense(p, f"blk.{i}.up", z), approximate=True))
        logits = dense(p, "head", h)
        return logits, jax.nn.softmax(logits, axis=-1)

    def lenet(p: Params, x: Any) -> Any:
        h = max_pool(relu(conv(p, "conv1", x, 2)))
        h = max_pool(relu(conv(p, "conv2", h, 0)))
        h = h.reshape(h.shape[0], -1)
        return dense(p, "fc3", relu(dense(p, "fc2", relu(dense(p, "fc1", h)))))

    def digits(p: Params, x: Any) -> Any:
        h = max_pool(relu(conv(p, "conv2", relu(conv(p, "conv1", x, 1)), 1)))
        return dense(p, "fc2", relu(dense(p, "fc1", h.reshape(h.shape[0], -1))))

    def lstm_classifier(p: Params, x: Any) -> Any:
        hidden = p["lstm.w_hh"].shape[0]
        xw = x @ p["lstm.w_ih"] + p["lstm.b_ih"] + p["lstm.b_hh"]

        def cell(carry: Any, xw_t: Any) -> Any:
            h, c = carry
            i, f, g, o = jnp.split(xw_t + h @ p["lstm.w_hh"], 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), None

        zero = jnp.zeros((x.shape[0], hidden), x.dtype)
        (h, _), _ = lax.scan(cell, (zero, zero), jnp.swapaxes(xw, 0, 1))
        return dense(p, "head", h)

    def gru(p: Params, name: str, x: Any, h0: Any, reverse: bool) -> Any:
        xw = x @ p[f"{name}.w_ih"] + p[f"{name}.b_ih"]

        def cell(h: Any, xw_t: Any) -> Any:
            xr, xz, xn = jnp.split(xw_t, 3, axis=-1)
            hr, hz, hn = jnp.split(h @ p[f"{name}.w_hh"] + p[f"{name}.b_hh"], 3, axis=-1)
            r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
            h = (1.0 - z) * jnp.tanh(xn + r * hn) + z * h
            return h, h

        h_last, hs = lax.scan(cell, h0, jnp.swapaxes(xw, 0, 1), reverse=reverse)
        return jnp.swapaxes(hs, 0, 1), h_last

    def bigru(p: Params, x: Any, h0: Any) -> Any:
        hs_f, h_last = gru(p, "fwd", x, h0, False)
        hs_b, _ = gru(p, "bwd", x, jnp.zeros_like(h0), True)
        return dense(p, "tag", jnp.concatenate([hs_f, hs_b], axis=-1)), h_last

    def attention(p: Params, name: str, x: Any, mask: Any, heads: int) -> Any:
        b, t, d = x.shape

        def split(v: Any) -> Any:
            return v.reshape(b, t, heads, d // heads).transpose(0, 2, 1, 3)

        q, k, v = (split(dense(p, f"{name}.{n}_proj", x)) for n in "qkv")
        scores = jnp.where(mask, q @ k.transpose(0, 1, 3, 2) * (d // heads) ** -0.5, -1e9)
        out = jax.nn.softmax(scores, axis=-1) @ v
        return dense(p, f"{name}.out_proj", out.transpose(0, 2, 1, 3).reshape(b, t, d))

    def self_attention(p: Params, x: Any, mask: Any) -> Any:
        return x + attention(p, "attn", x, mask, 4)

    def encoder(p: Params, tokens: Any, keep: Any) -> Any:
        h = p["embed.w"][tokens] + p["pos"]
        mask = keep[:, None, None, :]
        for i in range(3):
            s = f"blk.{i}"
            h = layer_norm(h + attention(p, f"{s}.attn", h, mask, 4), p[f"{s}.norm1.scale"], p[f"{s}.norm1.bias"])
            ff = dense(p, f"{s}.ff2", relu(dense(p, f"{s}.ff1", h)))
            h = layer_norm(h + ff, p[f"{s}.norm2.scale"], p[f"{s}.norm2.bias"])
        return h, dense(p, "head", h.mean(axis=1))

    def batch_norm(p: Params, name: str, x: Any, eps: float = 1e-5) -> Any:
        # train mode: the batch's statistics (biased variance), as torch and Keras normalise with
        mean = x.mean(axis=(0, 2, 3), keepdims=True)
        var = ((x - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True)
        scale, bias = p[f"{name}.scale"][None, :, None, None], p[f"{name}.bias"][None, :, None, None]
        return (x - mean) * lax.rsqrt(var + eps) * scale + bias

    def mnist(p: Params, x: Any) -> Any:
        h = max_pool(relu(batch_norm(p, "bn1", conv(p, "conv1", x, 1))))
        h = max_pool(relu(batch_norm(p, "bn2", conv(p, "conv2", h, 1))))
        return dense(p, "fc2", relu(dense(p, "fc1", h.reshape(h.shape[0], -1))))

    return {
        "mnist": mnist,
        "mlp": mlp,
        "resmlp": resmlp,
        "cnn": lenet,
        "digits": digits,
        "lstm": lstm_classifier,
        "gru": bigru,
        "attention": self_attention,
        "transformer": encoder,
    }
