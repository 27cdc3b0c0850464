"""Train mode (dlir.train.modes): batch norm with batch statistics and running-stat updates, dropout masks.

- one SGD step of a conv + batch-norm loss model gives the params and running
  statistics that torch computes (``F.batch_norm(training=True, momentum=0.1)``,
  autograd, ``torch.optim.SGD``), on every target;
- with dropout, the training loss differs from the eval loss, and every target
  gives the same losses step after step for one seed;
- the train-mode batch norm's gradient agrees with finite differences (float64);
- the graph the trainer runs feeds every dropout site a mask of the right shape.
"""

from __future__ import annotations

import numpy as np
import pytest

import dlir
from dlir.targets import TARGETS
from dlir.train import SGD, Trainer
from dlir.train.modes import MASK, NEW, train_mode

CONV_BN = """
use nn

model Net(x: f32[B, 2, 6, 6]) -> f32[B, 4] {
    conv = Conv2d(2, 3, 3, padding=1)
    bn = BatchNorm2d(3)
    fc = Dense(108, 4)
    return fc(flatten(relu(bn(conv(x)))))
}

model Loss(x: f32[B, 2, 6, 6], y: i64[B]) -> f32[] {
    net = Net()
    return cross_entropy(net(x), y)
}
"""

DROPOUT = """
use nn

model Net(x: f32[B, 12]) -> f32[B, 3] {
    fc1 = Dense(12, 16, act="relu")
    fc2 = Dense(16, 3)
    return fc2(dropout(fc1(x), p=0.4))
}

model Loss(x: f32[B, 12], y: i64[B]) -> f32[] {
    net = Net()
    return cross_entropy(net(x), y)
}
"""


def _batch(n: int, shape: tuple[int, ...], classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)).astype(np.float32), rng.integers(0, classes, n).astype(np.int64)


def _torch_sgd_step(tr: Trainer, x: np.ndarray, y: np.ndarray, lr: float) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The same step written as a torch user would: F.conv2d, F.batch_norm(training=True), autograd, SGD."""
    import torch
    import torch.nn.functional as F

    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in tr.params.items()}
    mean = torch.tensor(tr.buffers["net.bn.mean"], dtype=torch.float64)
    var = torch.tensor(tr.buffers["net.bn.var"], dtype=torch.float64)
    h = F.conv2d(torch.tensor(x, dtype=torch.float64), p["net.conv.w"], p["net.conv.b"], padding=1)
    h = F.batch_norm(h, mean, var, p["net.bn.scale"], p["net.bn.bias"], training=True, momentum=0.1, eps=1e-5)
    logits = torch.flatten(F.relu(h), 1) @ p["net.fc.w"] + p["net.fc.b"]
    loss = F.cross_entropy(logits, torch.tensor(y))
    opt = torch.optim.SGD(list(p.values()), lr=lr)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return {k: v.detach().numpy() for k, v in p.items()}, {"net.bn.mean": mean.numpy(), "net.bn.var": var.numpy()}


@pytest.mark.parametrize("target", TARGETS)
def test_one_sgd_step_with_batch_norm_matches_torch(target: str) -> None:
    graph = dlir.loads(CONV_BN).graph("Loss")
    tr = Trainer(graph, SGD(lr=0.5), target=target, seed=3)
    tr.buffers["net.bn.mean"] = np.array([0.3, -0.2, 0.1], np.float32)  # not the init: the momentum rule shows
    tr.buffers["net.bn.var"] = np.array([0.5, 2.0, 1.5], np.float32)
    x, y = _batch(5, (2, 6, 6), 4)
    want_params, want_buffers = _torch_sgd_step(tr, x, y, lr=0.5)
    tr.step(x=x, y=y)
    assert set(tr.buffers) == {"net.bn.mean", "net.bn.var"}
    for name, want in {**want_params, **want_buffers}.items():
        got = {**tr.params, **tr.buffers}[name]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6, err_msg=f"{name} on {target}")


def test_train_mode_rewrites_batch_norm_and_dropout_and_leaves_the_eval_graph() -> None:
    prog = dlir.loads(CONV_BN + DROPOUT.replace("model Net", "model Net2").replace("model Loss", "model Loss2").replace("Net()", "Net2()").replace("use nn\n", ""))
    eval_graph = prog.graph("Loss")
    train = train_mode(eval_graph)
    names = [n for n, _ in train.graph.outputs]
    assert names == [eval_graph.outputs[0][0], f"{NEW}net.bn.mean", f"{NEW}net.bn.var"]
    assert train.buffers == ["net.bn.mean", "net.bn.var"]
    assert "batch_norm" not in {n.op for n in train.graph.nodes}
    assert "batch_norm" in {n.op for n in eval_graph.nodes}, "the eval graph itself is unchanged"
    drop = train_mode(prog.graph("Loss2"))
    assert [s.input for s in drop.dropouts] == [f"{MASK}0"] and drop.dropouts[0].p == pytest.approx(0.4)
    assert "dropout" not in {n.op for n in drop.graph.nodes}


def test_dropout_trains_with_the_same_masks_on_every_target() -> None:
    graph = dlir.loads(DROPOUT).graph("Loss")
    x, y = _batch(64, (12,), 3, seed=1)
    curves = {}
    for target in TARGETS:
        tr = Trainer(graph, SGD(lr=0.2), target=target, seed=5)
        for s in range(4):
            idx = np.arange(s * 16, (s + 1) * 16)
            tr.step(sample_index=idx, x=x[idx], y=y[idx])
        curves[target] = tr.losses
    for target in TARGETS:
        np.testing.assert_allclose(curves[target], curves["numpy"], rtol=1e-5, err_msg=target)
    # the training loss is not the eval loss: the masks really drop units
    tr = Trainer(graph, SGD(lr=0.0), target="numpy", seed=5)
    train_loss = tr.step(sample_index=np.arange(16), x=x[:16], y=y[:16])
    eval_run = dlir.compile(dlir.loads(DROPOUT), "numpy", model="Loss", seed=5)
    eval_loss = float(eval_run(x=x[:16], y=y[:16]))
    assert abs(train_loss - eval_loss) > 1e-3
    # the same rows get the same mask in another batch order: the loss of a permuted batch is the same
    tr2 = Trainer(graph, SGD(lr=0.0), target="numpy", seed=5)
    perm = np.random.default_rng(0).permutation(16)
    assert tr2.step(sample_index=perm, x=x[perm], y=y[perm]) == pytest.approx(train_loss, rel=1e-6)


def test_train_mode_batch_norm_gradient_agrees_with_finite_differences() -> None:
    src = """
model BN(x: f64[B, 3, 2, 2], t: f64[B, 3, 2, 2]) -> f64[] {
    param scale: f64[3] = normal(std=1.0)
    param bias: f64[3] = normal(std=1.0)
    buffer mean: f64[3] = zeros
    buffer var: f64[3] = ones
    return sum(batch_norm(x, scale, bias, mean, var, eps=1e-5) * t)
}
"""
    from dlir.autodiff import autodiff
    from dlir.runtime.runner import NumpyRunner

    graph = train_mode(dlir.loads(src).graph("BN")).graph
    rng = np.random.default_rng(2)
    x, t = rng.standard_normal((4, 3, 2, 2)), rng.standard_normal((4, 3, 2, 2))
    with_grads = autodiff(graph, output=graph.outputs[0][0], wrt=["x", "scale"])
    run = NumpyRunner(with_grads)
    outs = dict(zip((n for n, _ in with_grads.outputs), run(x=x, t=t)))
    f = NumpyRunner(graph)
    f.load_params(run.params)

    def loss(xv: np.ndarray, scale: np.ndarray) -> float:
        f.load_params({**run.params, "scale": scale})
        return float(f(x=xv, t=t)[0])

    h, s0 = 1e-6, run.params["scale"]
    v, w = rng.standard_normal(x.shape), rng.standard_normal(3)
    fd_x = (loss(x + h * v, s0) - loss(x - h * v, s0)) / (2 * h)
    fd_s = (loss(x, s0 + h * w) - loss(x, s0 - h * w)) / (2 * h)
    np.testing.assert_allclose(np.sum(outs["grad.x"] * v), fd_x, rtol=1e-6)
    np.testing.assert_allclose(np.sum(outs["grad.scale"] * w), fd_s, rtol=1e-6)


def test_generated_torch_module_trains_and_evaluates_like_torch_nn() -> None:
    """.train(): batch statistics and running-stat updates as nn.BatchNorm2d; .eval(): the running ones."""
    import torch

    run = dlir.compile(dlir.loads(CONV_BN), "torch", model="Net", seed=1)
    module = run.module
    ref = torch.nn.BatchNorm2d(3, momentum=0.1, eps=1e-5).double()
    x = torch.tensor(_batch(6, (2, 6, 6), 4)[0], dtype=torch.float32)
    h = torch.nn.functional.conv2d(x, module.conv.w, module.conv.b, padding=1).double()
    with torch.no_grad():
        ref.weight.copy_(module.bn.scale.double())
        ref.bias.copy_(module.bn.bias.double())
        module.train()
        module(x)
        ref.train()
        ref(h)
    np.testing.assert_allclose(module.bn.mean.numpy(), ref.running_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(module.bn.var.numpy(), ref.running_var.numpy(), rtol=1e-5, atol=1e-6)
    module.eval()
    ref.eval()
    with torch.no_grad():
        before = module.bn.mean.clone()
        out_eval = module(x)
        assert torch.equal(module.bn.mean, before), "eval() must not touch the running statistics"
        fc_in = torch.flatten(torch.relu(ref(h)), 1).float()
        want = fc_in @ module.fc.w + module.fc.b
    np.testing.assert_allclose(out_eval.numpy(), want.numpy(), rtol=1e-4, atol=1e-5)


def test_importer_maps_onnx_momentum_to_the_weight_of_the_batch_statistic() -> None:
    from onnx import TensorProto, helper

    from dlir.importer import from_onnx

    c = 2
    inits = [helper.make_tensor(n, TensorProto.FLOAT, [c], [1.0] * c) for n in ("s", "b", "m", "v")]
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-3, momentum=0.99)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, 2, 2])
    model = helper.make_model(helper.make_graph([node], "bn", [x], [y], inits), opset_imports=[helper.make_opsetid("", 15)])
    (bn,) = [n for n in from_onnx(model).graph.nodes if n.op == "batch_norm"]
    assert bn.attrs["momentum"] == pytest.approx(0.01) and bn.attrs["eps"] == pytest.approx(1e-3)


def test_generated_tf_module_takes_training_like_a_keras_layer() -> None:
    """training=False: the running statistics; training=True: Keras' BatchNormalization(training=True) numbers."""
    import tensorflow as tf

    from dlir.ops.case_kit import compare

    prog = dlir.loads(CONV_BN)
    run = dlir.compile(prog, "tensorflow", model="Net", seed=1)
    module = run.module
    x = _batch(6, (2, 6, 6), 4)[0]
    np.testing.assert_allclose(module(x, training=False).numpy(), dlir.compile(prog, "numpy", model="Net", seed=1)(x=x), rtol=1e-5, atol=1e-5)
    params = module.get_params()
    keras_bn = tf.keras.layers.BatchNormalization(axis=1, momentum=0.9, epsilon=1e-5)
    h = tf.nn.conv2d(tf.transpose(x, [0, 2, 3, 1]), tf.transpose(params["conv.w"], [2, 3, 1, 0]), 1, "SAME")
    h = tf.transpose(h, [0, 3, 1, 2]) + params["conv.b"].reshape(1, -1, 1, 1)
    keras_bn.build(h.shape)
    keras_bn.set_weights([params["bn.scale"], params["bn.bias"], params["bn.mean"], params["bn.var"]])
    y = keras_bn(h, training=True)
    want = tf.reshape(tf.nn.relu(y), [6, -1]) @ params["fc.w"] + params["fc.b"]
    got = module(x, training=True).numpy()
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-5)
    # Keras' moving variance is updated with the biased batch variance; torch's (and dlir's) with the unbiased one
    np.testing.assert_allclose(module.get_params()["bn.mean"], keras_bn.moving_mean.numpy(), rtol=1e-5, atol=1e-6)
    n = 6 * 6 * 6
    _, batch_var = tf.nn.moments(h, axes=[0, 2, 3])
    want_var = 0.9 * params["bn.var"] + 0.1 * batch_var.numpy() * n / (n - 1)
    np.testing.assert_allclose(module.get_params()["bn.var"], want_var, rtol=1e-5, atol=1e-6)
    assert compare(module(x).numpy(), module(x, training=False).numpy()) is None


def test_generated_tf_dropout_follows_training() -> None:
    run = dlir.compile(dlir.loads(DROPOUT), "tensorflow", model="Net", seed=0)
    x = np.ones((256, 12), np.float32)
    eval_out = run.module(x, training=False).numpy()
    np.testing.assert_allclose(eval_out, dlir.compile(dlir.loads(DROPOUT), "numpy", model="Net", seed=0)(x=x), rtol=1e-5, atol=1e-5)
    train_out = run.module(x, training=True).numpy()
    assert not np.allclose(train_out, eval_out), "training=True must drop units"


def test_dropout_masks_have_torch_nn_dropouts_statistics() -> None:
    """The trainer's masks and torch.nn.Dropout in train(): the same kept fraction and scale, mean 1."""
    import torch

    from dlir.train.threefry import dropout_mask

    p, n = 0.3, 200_000
    mask = dropout_mask(7, 0, 0, np.arange(n, dtype=np.int64), (1,), p, np.float32).ravel()
    drop = torch.nn.Dropout(p).train()
    torch_mask = drop(torch.ones(n)).numpy()
    for m in (mask, torch_mask):
        assert set(np.unique(m)) == {np.float32(0.0), np.float32(1 / (1 - p))}
    assert abs((mask == 0).mean() - (torch_mask == 0).mean()) < 0.01
    assert abs(mask.mean() - 1.0) < 0.01 and abs(torch_mask.mean() - 1.0) < 0.01
