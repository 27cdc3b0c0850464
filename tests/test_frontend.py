"""The language: the pinned core parses as written and means what it says (checked on numpy)."""

from __future__ import annotations

import numpy as np
import pytest

import dlir
from dlir.frontend.parse import parse

PINNED = '''
# A dense layer: config arguments are compile-time ints/floats/strings.
layer Dense(n_in: int, n_out: int, act: str = "none") {
    param w: f32[n_in, n_out] = glorot_uniform
    param b: f32[n_out] = zeros
    forward(x) {
        y = x @ w + b
        return activation(y, act)       # activation() is a std op: "none", "relu", "tanh", ...
    }
}

fn gelu_tanh(x) = 0.5 * x * (1.0 + tanh(0.7978845608 * (x + 0.044715 * x ** 3)))

model MLP(x: f32[B, 784]) -> f32[B, 10] {
    fc1 = Dense(784, 256, act="relu")   # instantiating a layer creates params fc1.w, fc1.b
    fc2 = Dense(256, 10)
    return fc2(fc1(x))
}
'''

SCAN = '''
model R(xs: f32[B, T, 4], h0: f32[B, 8]) -> f32[B, 8] {
    ys, h_last = scan x_t in xs along 1 carry h = h0 {
        h = tanh(x_t @ w_ih + h @ w_hh + b)
        emit h
    }
    return h_last
}
'''


def run(src: str, model: str | None = None, **inputs: np.ndarray) -> tuple[object, object]:
    r = dlir.compile(dlir.loads(src), "numpy", model=model)
    return r, r(**inputs)


def test_pinned_core_parses_and_computes_the_mlp() -> None:
    x = np.random.default_rng(0).standard_normal((3, 784)).astype(np.float32)
    r, y = run(PINNED, x=x)
    p = r.params
    assert sorted(p) == ["fc1.b", "fc1.w", "fc2.b", "fc2.w"]
    h = np.maximum(x.astype(np.float64) @ p["fc1.w"] + p["fc1.b"], 0)
    np.testing.assert_allclose(y, h @ p["fc2.w"] + p["fc2.b"], rtol=1e-5, atol=1e-6)
    assert y.dtype == np.float32 and y.shape == (3, 10)


def test_scan_syntax_parses_and_its_body_is_elaborated() -> None:
    parse(SCAN, "<scan>")  # grammar-level: must not raise
    with pytest.raises(dlir.DlirError, match="unknown name 'w_ih'"):  # the body reads names around it
        dlir.loads(SCAN).graph()


def test_fn_gelu_tanh_inlines_the_formula() -> None:
    src = PINNED + "model G(x: f32[N]) -> f32[N] { return gelu_tanh(x) }"
    x = np.linspace(-3, 3, 7).astype(np.float32)
    _, y = run(src, "G", x=x)
    xd = x.astype(np.float64)
    want = 0.5 * xd * (1 + np.tanh(0.7978845608 * (xd + 0.044715 * xd**3)))
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)


LOOP = '''
layer Lin(d: int) {
    param w: f32[d, d] = glorot_normal
    forward(h) { return tanh(h @ w) }
}
model Stack(x: f32[B, 4]) -> (last: f32[B, 4], first_w: f32[4, 4]) {
    for i in range(3) {
        blk = Lin(4)
        x = blk(x)
    }
    return (x, blk.w)
}
'''


def test_static_loop_unrolls_with_numbered_params_and_threads_the_binding() -> None:
    x = np.ones((2, 4), np.float32)
    r, (y, w) = run(LOOP, x=x)
    p = r.params
    assert sorted(p) == ["blk.0.w", "blk.1.w", "blk.2.w"]
    h = x.astype(np.float64)
    for i in range(3):
        h = np.tanh(h @ p[f"blk.{i}.w"])
    np.testing.assert_allclose(y, h, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(w, p["blk.2.w"])  # `blk` after the loop is the last one
    assert r.output_names == ["last", "first_w"]


def test_model_in_model_prefixes_params_and_unifies_symbols() -> None:
    src = PINNED + '''
model Loss(x: f32[B, 784], labels: i64[B]) -> f32[] {
    net = MLP()
    return cross_entropy(net(x), labels)
}'''
    g = dlir.loads(src).graph("Loss")
    assert [p.name for p in g.params] == ["net.fc1.w", "net.fc1.b", "net.fc2.w", "net.fc2.b"]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 784)).astype(np.float32)
    labels = np.array([0, 3, 9, 1])
    r, loss = run(src, "Loss", x=x, labels=labels)
    logits = dlir.compile(dlir.loads(src), "numpy", model="MLP")
    logits.load_params({k[4:]: v for k, v in r.params.items()})
    z = logits(x=x).astype(np.float64)
    lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    np.testing.assert_allclose(loss, np.mean(lse - z[np.arange(4), labels]), rtol=1e-5)


def test_symbolic_products_are_tracked_through_reshape() -> None:
    src = '''
model R(x: f32[B, T, 3]) -> (flat: f32[B*T, 3], back: f32[B, T, 3]) {
    flat = reshape(x, [B*T, -1])
    return (flat, reshape(flat, [-1, T, 3]))
}'''
    g = dlir.loads(src).graph()
    assert [str(v.type) for _, v in g.outputs] == ["f32[B*T, 3]", "f32[B, T, 3]"]
    x = np.arange(2 * 5 * 3, dtype=np.float32).reshape(2, 5, 3)
    _, (flat, back) = run(src, x=x)
    np.testing.assert_array_equal(flat, x.reshape(10, 3))
    np.testing.assert_array_equal(back, x)


def test_indexing_and_slicing_follow_numpy() -> None:
    src = '''
model S(x: f32[B, 6, 5], t: f32[2]) -> (a: f32[B, 4, 5], b: f32[B, 6], c: f32[B, 5], d: f32[B, 3, 4]) {
    return (x[:, 0:4], x[..., -1], x[:, 2], x[:, ::2, 1:])
}'''
    x = np.random.default_rng(2).standard_normal((3, 6, 5)).astype(np.float32)
    _, (a, b, c, d) = run(src, x=x, t=np.zeros(2, np.float32))
    np.testing.assert_array_equal(a, x[:, 0:4])
    np.testing.assert_array_equal(b, x[..., -1])
    np.testing.assert_array_equal(c, x[:, 2])
    np.testing.assert_array_equal(d, x[:, ::2, 1:])


def test_rebinding_multi_results_keywords_and_literals() -> None:
    src = '''
model M(x: f32[B, 6]) -> (s: f32[B, 2], n: i64[B]) {
    a, b = split(x, [2, 4], axis=1)
    a = a * 2 + 1          # rebinding: SSA renames
    a = maximum(a, 0.5)
    n = argmax(b, axis=-1)
    return (a, n)
}'''
    x = np.random.default_rng(3).standard_normal((4, 6)).astype(np.float32)
    _, (s, n) = run(src, x=x)
    np.testing.assert_allclose(s, np.maximum(x[:, :2] * 2 + 1, 0.5), rtol=1e-6)
    np.testing.assert_array_equal(n, np.argmax(x[:, 2:], axis=-1))
    assert n.dtype == np.int64


def test_python_keywords_and_module_names_are_valid_dlir_names() -> None:
    src = '''
layer torch(np: int) {
    param self: f32[np] = ones
    forward(lambda) { return lambda * self }
}
model class(None: f32[B, 3], import: f32[B, 3]) -> (tf: f32[B, 3]) {
    __init__ = torch(3)
    def = __init__(None) + import
    return def
}'''
    g = dlir.loads(src).graph()
    assert [p.name for p in g.params] == ["__init__.self"]
    a = np.ones((2, 3), np.float32)
    _, y = run(src, **{"None": a, "import": 2 * a})
    np.testing.assert_array_equal(y, 3 * a)


def test_int_literal_takes_the_tensor_dtype_and_comparisons_make_bool() -> None:
    src = '''
model M(x: i32[N], y: f64[N]) -> (q: i32[N], m: bool[N], z: f64[N]) {
    return (x / 2, x > 0, where(x > 0, y, 0.0) * 3)
}'''
    x = np.array([-5, -1, 0, 7], np.int32)
    y = np.array([1.5, 2.5, 3.5, 4.5])
    _, (q, m, z) = run(src, x=x, y=y)
    assert q.dtype == np.int32
    np.testing.assert_array_equal(q, [-2, 0, 0, 3])  # truncation toward zero
    np.testing.assert_array_equal(m, x > 0)
    np.testing.assert_array_equal(z, np.where(x > 0, y, 0.0) * 3)


def test_buffers_are_params_that_are_not_trained() -> None:
    src = "model M(x: f32[2]) -> f32[2] { buffer s: f32[2] = constant(0.5) \n return x * s }"
    g = dlir.loads(src).graph()
    assert [(p.name, p.kind) for p in g.params] == [("s", "buffer")]
    assert g.trainable == []
    _, y = run(src, x=np.array([2.0, 4.0], np.float32))
    np.testing.assert_array_equal(y, [1.0, 2.0])


def test_seeded_init_is_deterministic_and_seed_dependent() -> None:
    prog = dlir.loads(PINNED)
    a = dlir.compile(prog, "numpy", seed=0).params
    b = dlir.compile(prog, "numpy", seed=0).params
    c = dlir.compile(prog, "numpy", seed=1).params
    np.testing.assert_array_equal(a["fc1.w"], b["fc1.w"])
    assert not np.array_equal(a["fc1.w"], c["fc1.w"])
    limit = np.sqrt(6 / (784 + 256))  # glorot_uniform bound for [784, 256]
    assert np.abs(a["fc1.w"]).max() <= limit and np.abs(a["fc1.w"]).max() > 0.9 * limit
    np.testing.assert_array_equal(a["fc1.b"], 0)
