"""An LSTM's forward and backward in a training step are two fused kernels, not two loops: on
torch on the CPU oneDNN's (``mkldnn_rnn_layer`` and its backward, what ``nn.LSTM`` and autograd
run), on TensorFlow ``BlockLSTMV2`` and ``BlockLSTMGradV2`` (backends/lstm_training.py finds the
pair). Each case checks that the kernels are called and that every gradient is the numpy
reference's, and torch.autograd's on ``nn.LSTM`` / GradientTape's on a Keras LSTM."""

from __future__ import annotations

import numpy as np
import pytest

import dlir
from dlir.compare import random_inputs
from dlir.train.optim import SGD
from dlir.train.trainer import Trainer

TOL = dict(rtol=1e-5, atol=1e-5)

# the standard library's LSTM, batch-first; the loss reads the last h only
LAST_H = """
use nn
model Loss(x: f32[B, T, 4], h0: f32[B, 5], c0: f32[B, 5]) -> f32[] {
    lstm = LSTM(4, 5)
    hs, h, c = lstm(x, h0, c0)
    return sum(h * h)
}
"""

# every step's h and the last c read, and x made by a layer, so the kernel's x gradient is used
ALL_STEPS = """
use nn
model Loss(u: f32[B, T, 3]) -> f32[] {
    inp = Dense(3, 4, act="tanh")
    lstm = LSTM(4, 5)
    hs, h, c = lstm(inp(u))
    return sum(hs * hs) + sum(c * c) + sum(h)
}
"""

# two stacked LSTMs: the upper one's x gradient is the lower one's hidden states' cotangent
STACKED = """
use nn
model Loss(x: f32[B, T, 3]) -> f32[] {
    lower = LSTM(3, 4)
    upper = LSTM(4, 5)
    hs, h, c = lower(x)
    hs2, h2, c2 = upper(hs)
    return sum(h2 * h2) + sum(c)
}
"""

# written out: a reverse scan, time-major (axis 0), without biases, from given states
HANDWRITTEN = """
model Loss(x: f32[T, B, 3], w_ih: f32[3, 8], w_hh: f32[2, 8], h0: f32[B, 2], c0: f32[B, 2]) -> f32[] {
    xw = x @ w_ih
    hs, h_last, c_last = scan reverse xw_t in xw along 0 carry h = h0, c = c0 {
        i, f, g, o = split(xw_t + h @ w_hh, [2, 2, 2, 2], axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * tanh(g)
        h = sigmoid(o) * tanh(c)
        emit h
    }
    return sum(hs * hs) + sum(h_last)
}
"""

# written out: the recurrent bias inside the step, so its gradient is summed in the backward's carry
BODY_BIAS = """
model Loss(x: f32[B, T, 3], w_ih: f32[3, 8], w_hh: f32[2, 8], b_hh: f32[8], h0: f32[B, 2], c0: f32[B, 2]) -> f32[] {
    xw = x @ w_ih
    hs, h_last, c_last = scan xw_t in xw along 1 carry h = h0, c = c0 {
        i, f, g, o = split(xw_t + (h @ w_hh + b_hh), [2, 2, 2, 2], axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * tanh(g)
        h = sigmoid(o) * tanh(c)
        emit h
    }
    return sum(hs * hs) + sum(c_last)
}
"""


def _inputs_and_params(prog: dlir.Program) -> tuple[dict[str, np.ndarray], list[str]]:
    graph = prog.graph("Loss")
    feeds = random_inputs(graph, seed=3, size=4)
    wrt = [v.name for v in graph.inputs if v.type.dtype.is_float] + [p.name for p in graph.trainable]
    return feeds, wrt


# each target's two kernels, and what its loops would look like
KERNELS = {
    "torch": (["mkldnn_rnn_layer(", "mkldnn_rnn_layer_backward("], "for "),
    "tensorflow": (["tf.raw_ops.BlockLSTMV2(", "tf.raw_ops.BlockLSTMGradV2("], "tf.while_loop"),
}


def _assert_fused(code: str, target: str, lstms: int = 1) -> None:
    calls, loop = KERNELS[target]
    for call in calls:
        assert code.count(call) == lstms, call
    body = code.split("def forward", 1)[1] if target == "torch" else code
    assert loop not in body  # no loop left, forward or backward


@pytest.mark.parametrize("target", list(KERNELS))
@pytest.mark.parametrize(
    "source",
    [LAST_H, ALL_STEPS, STACKED, HANDWRITTEN, BODY_BIAS],
    ids=["last-h", "all-steps", "stacked", "reverse-time-major", "bias-in-step"],
)
def test_lstm_gradients_come_from_the_fused_kernels_with_the_reference_numbers(source: str, target: str) -> None:
    prog = dlir.loads(source)
    feeds, wrt = _inputs_and_params(prog)
    want_out, want = dlir.compile(prog, "numpy", grad=wrt)(**feeds)
    run = dlir.compile(prog, target, grad=wrt, opt_level=2, device="cpu")
    _assert_fused(run.runner.source, target, lstms=2 if source is STACKED else 1)
    got_out, got = run(**feeds)
    np.testing.assert_allclose(got_out, want_out, **TOL)
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], err_msg=k, **TOL)


# a scan over the LSTM's hidden states: its backward emits their cotangent, which the code generators
# keep as its steps (read one at a time by the LSTM's backward loop), not as the tensor a kernel reads
SCAN_OVER_HS = """
use nn
model Loss(x: f32[B, T, 3], a0: f32[B, 4]) -> f32[] {
    lstm = LSTM(3, 4)
    hs, h, c = lstm(x)
    ys, a_last = scan hs_t in hs along 1 carry a = a0 {
        a = a * 0.5 + tanh(hs_t)
        emit a
    }
    return sum(ys * ys) + sum(c)
}
"""


@pytest.mark.parametrize("target", list(KERNELS))
@pytest.mark.parametrize("batch, steps", [(2, 5), (3, 3)])
def test_a_scan_over_the_hidden_states_keeps_the_loops_and_the_numbers(target: str, batch: int, steps: int) -> None:
    prog = dlir.loads(SCAN_OVER_HS)
    feeds = random_inputs(prog.graph("Loss"), seed=3, env={"B": batch, "T": steps})
    _, wrt = _inputs_and_params(prog)
    want_out, want = dlir.compile(prog, "numpy", grad=wrt)(**feeds)
    run = dlir.compile(prog, target, grad=wrt, opt_level=2, device="cpu")
    assert not any(call in run.runner.source for call in KERNELS[target][0])
    got_out, got = run(**feeds)
    np.testing.assert_allclose(got_out, want_out, **TOL)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], err_msg=k, **TOL)


@pytest.mark.parametrize("target", list(KERNELS))
def test_a_training_step_on_the_kernels_takes_the_numpy_steps(target: str) -> None:
    """Three SGD steps of the LSTM classifier sample: the same params as the numpy trainer's."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "samples" / "lstm.dlir").read_text()
    loss = "\nmodel Loss(x: f32[B, T, 32], labels: i64[B]) -> f32[] {\n"
    loss += "    net = LSTMClassifier()\n    return cross_entropy(net(x), labels)\n}\n"
    graph = dlir.loads(text + loss).graph("Loss")
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((6, 9, 32)).astype(np.float32), "labels": rng.integers(0, 5, 6)}
    got = {}
    for name in ("numpy", target):
        t = Trainer(graph, SGD(lr=0.5), name, device="cpu")
        if name == target:
            _assert_fused(t.runner.source, target)
        for _ in range(3):
            t.step(**feeds)
        got[name] = dict(t.params)
    for k in got["numpy"]:
        np.testing.assert_allclose(got[target][k], got["numpy"][k], err_msg=k, **TOL)


def test_lstm_kernel_gradients_equal_torch_autograd_on_nn_lstm() -> None:
    import torch

    from dlir import interop

    torch.manual_seed(0)
    ref = torch.nn.LSTM(4, 5, batch_first=True)
    prog = dlir.loads(LAST_H)
    feeds, wrt = _inputs_and_params(prog)
    run = dlir.compile(prog, "torch", grad=wrt, opt_level=2, device="cpu")
    assert "mkldnn_rnn_layer_backward(" in run.runner.source
    run.runner.load_params(interop.torch_lstm(ref.state_dict(), dst="lstm"))
    _, got = run(**feeds)
    x, h0, c0 = (torch.tensor(feeds[k], requires_grad=True) for k in ("x", "h0", "c0"))
    _, (h, _) = ref(x, (h0[None], c0[None]))
    grads = torch.autograd.grad((h * h).sum(), [x, h0, c0, ref.weight_ih_l0, ref.weight_hh_l0, ref.bias_ih_l0])
    for name, g in zip(["x", "h0", "c0"], grads[:3], strict=True):
        np.testing.assert_allclose(got[name], g.numpy(), err_msg=name, **TOL)
    np.testing.assert_allclose(got["lstm.w_ih"], grads[3].numpy().T, **TOL)
    np.testing.assert_allclose(got["lstm.w_hh"], grads[4].numpy().T, **TOL)
    np.testing.assert_allclose(got["lstm.b_ih"], grads[5].numpy(), **TOL)
    np.testing.assert_allclose(got["lstm.b_hh"], grads[5].numpy(), **TOL)  # (added before the loop)


def test_keras_lstm_gradients_from_gradient_tape_equal_the_fused_kernels() -> None:
    """TensorFlow's own autodiff of a Keras LSTM (GradientTape) against dlir's tensorflow step."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from dlir.backends.tensorflow.runner import import_tf

    tf = import_tf()
    keras = tf.keras
    from dlir import interop

    prog = dlir.loads(LAST_H)
    feeds, wrt = _inputs_and_params(prog)
    run = dlir.compile(prog, "tensorflow", grad=wrt, opt_level=2, device="cpu")
    _assert_fused(run.runner.source, "tensorflow")
    layer = keras.layers.LSTM(5, return_state=True)
    x, h0, c0 = (tf.constant(feeds[k]) for k in ("x", "h0", "c0"))
    layer(x, initial_state=[h0, c0])  # builds the weights
    run.runner.load_params(interop.keras_lstm(layer.get_weights(), dst="lstm"))
    _, got = run(**feeds)
    with tf.GradientTape() as tape:
        tape.watch([x, h0, c0])
        _, h, _ = layer(x, initial_state=[h0, c0])
        loss = tf.reduce_sum(h * h)
    kernel, recurrent, bias = layer.trainable_weights
    grads = tape.gradient(loss, [x, h0, c0, kernel, recurrent, bias])
    for name, g in zip(["x", "h0", "c0", "lstm.w_ih", "lstm.w_hh"], grads[:5], strict=True):
        np.testing.assert_allclose(got[name], g.numpy(), err_msg=name, **TOL)
    for name in ("lstm.b_ih", "lstm.b_hh"):  # Keras' one bias: each of dlir's two gets its gradient
        np.testing.assert_allclose(got[name], grads[5].numpy(), err_msg=name, **TOL)


def test_the_portable_step_and_a_float64_lstm_keep_the_loops() -> None:
    """The kernels are float32 only, and oneDNN's CPU only: an f64 model keeps the two loops on
    every target, and so does the torch file ``dlirc compile`` writes (any device)."""
    from dlir.backends.torch.codegen import render

    prog = dlir.loads(LAST_H)
    feeds, wrt = _inputs_and_params(prog)
    run = dlir.compile(prog, "torch", grad=wrt, opt_level=2, device="cpu")
    portable = render(run.runner.graph).source
    assert "mkldnn" not in portable and "in reversed(" in portable
    f64 = dlir.loads(HANDWRITTEN.replace("f32", "f64"))
    feeds64, wrt64 = _inputs_and_params(f64)
    want_out, want = dlir.compile(f64, "numpy", grad=wrt64)(**feeds64)
    for target, (calls, loop) in KERNELS.items():
        run64 = dlir.compile(f64, target, grad=wrt64, opt_level=2, device="cpu")
        assert not any(call in run64.runner.source for call in calls) and loop in run64.runner.source
        got_out, got = run64(**feeds64)
        np.testing.assert_allclose(got_out, want_out, rtol=1e-10)
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-10, err_msg=f"{target} {k}")
