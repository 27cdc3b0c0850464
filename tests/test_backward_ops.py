"""The training step uses the frameworks' own backward kernels (issue "A training step faster ...").

The numbers of each backward op are checked like every op's (tests/test_ops.py: every
target against the numpy reference, ties included; tests/test_autodiff.py: their VJPs
by finite differences, grad of grad). Here: that the VJP rules really emit them where
they apply (and the decompositions where they do not), that each target's generated
step calls its framework's kernel, and that a backward scan neither replays the forward
step nor copies to read a saved step.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

import dlir
from dlir.autodiff import autodiff
from dlir.ir.graph import Graph
from dlir.train.optim import SGD
from dlir.train.trainer import Trainer

CNN = """
use nn
model L(x: f32[B, 1, 8, 8], labels: i64[B]) -> f32[] {
    conv1 = Conv2d(1, 4, 3, padding=1, act="relu")
    conv2 = Conv2d(4, 6, 3, padding=1)
    h = max_pool2d(relu(conv2(conv1(x))), kernel=2)
    fc = Dense(96, 10)
    return cross_entropy(fc(flatten(h, start=1)), labels)
}
"""

NORM = """
use nn
model L(x: f32[B, T, 8], labels: i64[B]) -> f32[] {
    ln = LayerNorm(8)
    attn = MultiHeadAttention(8, 2)
    h = ln(x + attn(x, x, x))
    fc = Dense(8, 3)
    return cross_entropy(fc(mean(h, axis=1)), labels)
}
"""

LSTM = """
use nn
model L(x: f32[B, T, 4], labels: i64[B]) -> f32[] {
    lstm = LSTM(4, 8)
    hs, h, c = lstm(x)
    fc = Dense(8, 3)
    return cross_entropy(fc(h), labels)
}
"""

GRU = LSTM.replace("LSTM(4, 8)", "GRU(4, 8)").replace("hs, h, c = lstm(x)", "hs, h = lstm(x)")


def _portable_torch_step(graph: Graph) -> str:
    """The torch step as ``dlirc`` writes it for any device: an LSTM as its two loops (a CPU
    Trainer runs oneDNN's LSTM kernels instead: tests/test_lstm_training_kernels.py)."""
    from dlir.backends.torch.codegen import render

    return render(Trainer(graph, SGD(), target="torch", device="cpu").step_graph).source


def _assert_three_steps_match_numpy(graph: Graph, target: str, x_shape: tuple[int, ...], classes: int) -> None:
    """Three SGD steps of ``graph`` (inputs x, labels) on ``target`` give the numpy steps' params and buffers."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    labels = rng.integers(0, classes, x_shape[0]).astype(np.int64)
    got = {}
    for name in ("numpy", target):
        tr = Trainer(graph, SGD(lr=0.1), target=name, device="cpu")
        for _ in range(3):
            tr.step(x=x, labels=labels)
        got[name] = {**tr.params, **tr.buffers}
    for k, want in got["numpy"].items():
        np.testing.assert_allclose(got[target][k], want, rtol=1e-5, atol=1e-5, err_msg=k)


def _ops(g: Graph) -> Counter[str]:
    return Counter(n.op for n in g.nodes)


def test_vjp_rules_emit_the_backward_ops() -> None:
    cnn = _ops(autodiff(dlir.loads(CNN).graph("L")))
    for op in ("relu_grad", "max_pool2d_grad", "conv2d_input_grad", "conv2d_weight_grad"):
        assert cnn[op] >= 1, (op, cnn)
    assert cnn["conv2d_input_grad"] == 1  # conv1's image is the model's input: no gradient wanted
    # no argmax recomputed through window equalities (the one equal is the loss's one-hot), no padded
    # convolution of a flipped kernel (the two conv2d are the forward's)
    assert cnn["conv2d"] == 2 and cnn["equal"] == 1
    norm = _ops(autodiff(dlir.loads(NORM).graph("L")))
    assert norm["layer_norm_grad"] == 1 and norm["softmax_grad"] == 1, norm


def test_decomposed_where_no_framework_kernel_fits() -> None:
    """float64 convs (ONNX Runtime has no double ConvTranspose), dilated pools and grouped convs keep
    the decomposed VJPs; a float64 max pool still has its kernel."""
    f64 = """
model L(x: f64[B, 2, 6, 6], w: f64[3, 2, 3, 3]) -> f64[] {
    return sum(max_pool2d(conv2d(x, w, padding=1), kernel=2))
}
"""
    ops = _ops(autodiff(dlir.loads(f64).graph("L"), wrt=["x", "w"]))
    assert ops["conv2d_input_grad"] == ops["conv2d_weight_grad"] == 0 and ops["max_pool2d_grad"] == 1, ops
    grouped = """
model L(x: f32[B, 4, 9, 9], w: f32[4, 2, 3, 3]) -> f32[] {
    y = conv2d(x, w, groups=2, padding=1)
    return sum(max_pool2d(y, kernel=2, stride=1, dilation=2))
}
"""
    ops = _ops(autodiff(dlir.loads(grouped).graph("L"), wrt=["x", "w"]))
    assert ops["conv2d_input_grad"] == ops["conv2d_weight_grad"] == ops["max_pool2d_grad"] == 0, ops


@pytest.mark.parametrize(
    "target, kernels",
    [
        (
            "torch",
            [
                "threshold_backward",
                "max_pool2d_with_indices_backward",
                "F.conv_transpose2d",
                "torch.nn.grad.conv2d_weight",
            ],
        ),
        ("tensorflow", ["ReluGrad", "MaxPoolGrad", "conv2d_transpose", "Conv2DBackpropFilter"]),
    ],
)
def test_generated_steps_call_the_frameworks_backward_kernels(target: str, kernels: list[str]) -> None:
    source = Trainer(dlir.loads(CNN).graph("L"), SGD(), target=target, device="cpu").runner.source
    for kernel in kernels:
        assert kernel in source, kernel


def test_torch_step_calls_native_norm_and_softmax_backward() -> None:
    source = Trainer(dlir.loads(NORM).graph("L"), SGD(), target="torch", device="cpu").runner.source
    assert "native_layer_norm_backward" in source and "_softmax_backward_data" in source
    # the backward reads the mean and 1/sigma the forward kept, as autograd: one layer norm a step
    assert source.count("native_layer_norm(") == 1 and "F.layer_norm" not in source


BATCH_NORM = """
use nn
model L(x: f32[B, 2, 6, 6], labels: i64[B]) -> f32[] {
    conv = Conv2d(2, 3, 3, padding=1)
    bn = BatchNorm2d(3)
    fc = Dense(108, 4)
    return cross_entropy(fc(flatten(relu(bn(conv(x))))), labels)
}
"""


WRITTEN_GELU = """
use nn
fn gelu_tanh(x) = 0.5 * x * (1.0 + tanh(0.7978845608 * (x + 0.044715 * x ** 3)))
model L(x: f32[B, 6], labels: i64[B]) -> f32[] {
    up = Dense(6, 12)
    fc = Dense(12, 3)
    return cross_entropy(fc(gelu_tanh(up(x))), labels)
}
"""


def test_a_written_out_gelu_trains_through_one_gelu_backward_kernel() -> None:
    """The step simplifies the loss model before differentiating it: a GELU written out becomes the
    gelu op, whose VJP is torch's gelu_backward (not ~15 elementwise ops and a tanh_backward)."""
    graph = dlir.loads(WRITTEN_GELU).graph("L")
    source = Trainer(graph, SGD(), target="torch", device="cpu").runner.source
    assert "aten.gelu_backward(" in source and "approximate='tanh'" in source and "tanh" not in source.replace(
        "approximate='tanh'", ""
    )
    _assert_three_steps_match_numpy(graph, "torch", (7, 6), classes=3)


def test_torch_batch_norm_step_normalises_once_and_takes_the_running_statistics_from_the_kernel() -> None:
    """One native_batch_norm a step: its running buffers get the batch's mean and unbiased variance
    (no torch.var over the activations) and its backward reads the statistics it kept; the step's
    params and running statistics stay those of the numpy step."""
    graph = dlir.loads(BATCH_NORM).graph("L")
    source = Trainer(graph, SGD(), target="torch", device="cpu").runner.source
    assert source.count("native_batch_norm(") == 1 and "torch.var(" not in source and "F.batch_norm" not in source
    _assert_three_steps_match_numpy(graph, "torch", (5, 2, 6, 6), classes=4)


def test_backward_scan_reads_saved_steps_and_does_not_replay_the_forward_step() -> None:
    g = autodiff(dlir.loads(LSTM).graph("L"))
    scans = [n for n in g.nodes if n.op == "scan"]
    assert len(scans) == 2
    forward, backward = scans
    assert backward.body is not None and forward.body is not None
    # forward: h @ w_hh once a step; backward: dh = dgates @ w_hh^T only, nothing replayed, and
    # dW_hh one matmul over every step's rows after the loop (saved h^T @ the stacked dgates)
    assert _ops(forward.body)["matmul"] == 1
    assert _ops(backward.body)["matmul"] == 1 and _ops(backward.body)["sigmoid"] == 0
    after = g.nodes[g.nodes.index(backward) + 1 :]
    assert any(n.op == "matmul" and forward.outputs[0] is not n.inputs[0] for n in after)
    source = _portable_torch_step(dlir.loads(LSTM).graph("L"))
    loop = source[source.index("in reversed(") :]
    # a saved step is read from the list the forward loop collected, not by indexing a stack, and
    # handed over as it is (no unsqueeze to the gather's [B, 1, H] and squeeze back)
    reads = re.findall(r"= (saved_\w+_steps)\[step\]  #", loop)
    assert len(reads) >= 5 and "[:, step]" not in loop
    assert "unsqueeze" not in loop and "torch.squeeze" not in loop


@pytest.mark.parametrize(
    ("target", "kernels"),
    [("torch", ["aten.tanh_backward", "aten.sigmoid_backward"]), ("tensorflow", ["TanhGrad", "SigmoidGrad"])],
)
def test_recurrent_backward_calls_the_activation_gradient_kernels(target: str, kernels: list[str]) -> None:
    """A recurrent backward step: tanh's and sigmoid's VJPs as one kernel each, not three ops."""
    if target == "torch":
        source = _portable_torch_step(dlir.loads(LSTM).graph("L"))
        loop = source[source.index("in reversed(") :]
    else:  # (tensorflow runs an LSTM's training as BlockLSTMV2 and its gradient: a GRU's loop here)
        loop = Trainer(dlir.loads(GRU).graph("L"), SGD(), target=target, device="cpu").runner.source
        assert "tf.while_loop" in loop
    for kernel in kernels:
        assert kernel in loop, kernel
    assert "1.0 - " not in loop


def test_tensorflow_conv_backprops_name_their_padding_so_onednn_can_take_them() -> None:
    """A 3x3 conv with padding 1 pads as "SAME" does, a conv without as "VALID": the backprop kernels
    say so (oneDNN rewrites only those; with explicit paddings TensorFlow's own ~6x slower kernel
    runs), and the step's numbers stay the numpy step's."""
    graph = dlir.loads(CNN).graph("L")
    source = Trainer(graph, SGD(), target="tensorflow", device="cpu").runner.source
    backprops = [line for line in source.splitlines() if "Conv2DBackpropFilter(" in line or "conv2d_transpose(" in line]
    assert len(backprops) == 3 and not any("EXPLICIT" in line or "[[0, 0]" in line for line in backprops), backprops
    assert any('padding="SAME"' in line for line in backprops)
    _assert_three_steps_match_numpy(graph, "tensorflow", (6, 1, 8, 8), classes=10)


def test_tensorflow_conv_bias_gradients_sum_the_channels_last_cotangent() -> None:
    """A conv bias's gradient sums the cotangent over batch and space: on TensorFlow it reads the
    channels-last copy the backward kernels made, with no transpose back to NCHW for it."""
    source = Trainer(dlir.loads(CNN).graph("L"), SGD(), target="tensorflow", device="cpu").runner.source
    bias_sums = [line for line in source.splitlines() if line.strip().startswith(("grad_conv1_b", "grad_conv2_b"))]
    assert len(bias_sums) == 2 and all(re.search(r"\w+_nhwc, (axis=)?\[0, 1, 2\]", line) for line in bias_sums), bias_sums


def test_torch_forward_pool_keeps_the_indices_its_backward_reads() -> None:
    """As autograd: the step pools once and scatters through the forward's indices (torch's NCHW
    max pool is the dearest op of a small CNN's step on CPU)."""
    source = Trainer(dlir.loads(CNN).graph("L"), SGD(), target="torch", device="cpu").runner.source
    assert source.count("F.max_pool2d(") == 1 and "return_indices=True" in source
    backward = next(line for line in source.splitlines() if "max_pool2d_with_indices_backward" in line)
    assert "_indices)" in backward and "F.max_pool2d" not in backward
