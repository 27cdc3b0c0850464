"""The trainer's state stays on the target between steps (Runner.keep / step).

Each target holds the step graph's params, buffers and optimizer state as its own
tensors (torch tensors, TensorFlow tensors, ONNX Runtime OrtValues) and only the loss
crosses to the host per step; Trainer.params/.buffers/.state still read as numpy and
write through. The numbers must be the ones of the numpy reference's trainer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import dlir
from dlir.train.optim import SGD, Adam
from dlir.train.trainer import Trainer

MODEL = """
use nn
model Net(x: f32[B, 4], labels: i64[B]) -> f32[] {
    fc1 = Dense(4, 8, act="relu")
    bn = BatchNorm1d(8)
    fc2 = Dense(8, 3)
    return cross_entropy(fc2(bn(fc1(x))), labels)
}
"""


def _native_type(target: str) -> type:
    if target == "torch":
        import torch

        return torch.Tensor
    if target == "tensorflow":
        import tensorflow as tf

        return tf.Variable
    import onnxruntime as ort

    return ort.OrtValue


def _batch(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((6, 4)).astype(np.float32), "labels": rng.integers(0, 3, 6).astype(np.int64)}


@pytest.mark.parametrize("target", ["torch", "tensorflow", "onnx"])
def test_state_lives_on_the_target_and_only_the_loss_comes_back(target: str, monkeypatch: Any) -> None:
    graph = dlir.loads(MODEL).graph("Net")
    ref = Trainer(graph, Adam(lr=0.05), target="numpy")
    tr = Trainer(graph, Adam(lr=0.05), target=target, device="cpu")
    kept = tr.runner._kept
    # params, the batch-norm statistics (updated in train mode), Adam's state and the learning rate
    assert set(kept) == {*tr.params, *tr.buffers, *tr.state, "hyper.lr"}
    assert {"bn.mean", "bn.var", "state.step", "state.m.fc1.w"} <= set(kept)
    reads: list[Any] = []
    real_get = tr.runner._get
    monkeypatch.setattr(tr.runner, "_get", lambda h: reads.append(h) or real_get(h))
    if target == "tensorflow":  # one tf.function reads and assigns the variables; only the loss is returned
        real_fn = tr.runner._step_fn
        monkeypatch.setattr(tr.runner, "_step_fn", lambda *a: reads.extend(out := real_fn(*a)) or out)
    for step in range(3):
        b = _batch(step)
        assert tr.step(**b) == pytest.approx(ref.step(**b), rel=1e-5, abs=1e-6)
        assert all(isinstance(h, _native_type(target)) for h in tr.runner._kept.values())
    assert len(reads) == 3  # one host read a step: the loss
    monkeypatch.undo()
    for group in ("params", "buffers", "state"):
        mine, theirs = getattr(tr, group), getattr(ref, group)
        assert set(mine) == set(theirs)
        for k in theirs:
            assert isinstance(mine[k], np.ndarray)
            np.testing.assert_allclose(mine[k], theirs[k], rtol=1e-5, atol=1e-6, err_msg=f"{group} {k}")


@pytest.mark.parametrize("target", ["numpy", "torch", "tensorflow", "onnx"])
def test_a_new_learning_rate_reaches_the_kept_one(target: str) -> None:
    """The learning rate is kept on the target; one a schedule sets between steps is written there:
    a step at lr 0 leaves the params as they were, one at 0.5 moves them ten times 0.05's step."""
    graph = dlir.loads(MODEL).graph("Net")
    tr = Trainer(graph, SGD(lr=0.05), target=target, device="cpu")
    tr.step(**_batch(0))
    before = dict(tr.params)
    tr.lr = 0.0
    tr.step(**_batch(1))
    for k in before:
        np.testing.assert_array_equal(tr.params[k], before[k], err_msg=k)
    moves = {}
    for lr in (0.05, 0.5):
        again = Trainer(graph, SGD(lr=0.05), target=target, device="cpu")
        again.lr = lr
        again.step(**_batch(0))
        moves[lr] = again.params["fc1.w"] - Trainer(graph, SGD(), target="numpy").params["fc1.w"]
    np.testing.assert_allclose(moves[0.5], 10 * moves[0.05], rtol=1e-4, atol=1e-6)


def test_writing_a_param_reaches_the_target() -> None:
    graph = dlir.loads(MODEL).graph("Net")
    a, b = (Trainer(graph, Adam(lr=0.05), target=t, device="cpu") for t in ("numpy", "torch"))
    w = np.full((4, 8), 0.25, np.float32)
    a.params["fc1.w"] = w
    b.params["fc1.w"] = w
    np.testing.assert_array_equal(b.params["fc1.w"], w)
    batch = _batch(7)
    assert b.step(**batch) == pytest.approx(a.step(**batch), rel=1e-5)
    with pytest.raises(KeyError):
        b.params["no.such"] = w
