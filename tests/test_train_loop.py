"""The trainer's loop: learning-rate schedules as torch's, checkpoints that resume bit for bit, early stopping."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dlir
from dlir.train import SGD, Adam, Trainer
from dlir.train.data import Dataset
from dlir.train.schedule import Schedule

MODEL = """
use nn

model Net(x: f32[B, 1, 4, 4]) -> f32[B, 3] {
    fc1 = Dense(16, 12, act="relu")
    bn = BatchNorm1d(12)
    fc2 = Dense(12, 3)
    return fc2(dropout(bn(fc1(flatten(x))), p=0.2))
}

model Loss(x: f32[B, 1, 4, 4], y: i64[B]) -> f32[] {
    net = Net()
    return cross_entropy(net(x), y)
}
"""


def _data(n: int = 96) -> Dataset:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n).astype(np.int64)
    x = (rng.standard_normal((n, 1, 4, 4)) + y[:, None, None, None]).astype(np.float32)
    return Dataset("toy", x[:80], y[:80], x[80:], y[80:], 3)


@pytest.mark.parametrize("kind, options", [("step", {"step_size": 2, "gamma": 0.5}), ("cosine", {}), ("constant", {})])
def test_schedules_match_torch_lr_schedulers(kind: str, options: dict[str, float]) -> None:
    import torch

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.3)
    sched = {
        "step": lambda: torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5),
        "cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=7),
        "constant": lambda: torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0),
    }[kind]()
    want = []
    for _ in range(7):
        want.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    got = [Schedule(kind, **options).lr(0.3, e, 7) for e in range(7)]  # type: ignore[arg-type]
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("target", ["numpy", "onnx"])
def test_resume_from_a_checkpoint_continues_bit_for_bit(tmp_path: Path, target: str) -> None:
    graph = dlir.loads(MODEL).graph("Loss")
    data = _data()
    schedule = Schedule("step", step_size=1, gamma=0.7)
    full = Trainer(graph, Adam(lr=0.01), target=target, seed=4)
    full.fit(data, 4, batch_size=16, schedule=schedule)

    class Killed(Exception):
        pass

    def die_in_epoch_3(tr: Trainer) -> dict[str, float]:
        if len(tr.history) == 2:
            raise Killed  # after epoch 3's steps, before its checkpoint: epoch 2's is on disk
        return {}

    ck = tmp_path / "run.ckpt"
    first = Trainer(graph, Adam(lr=0.01), target=target, seed=4)
    with pytest.raises(Killed):
        first.fit(data, 4, batch_size=16, schedule=schedule, evaluate=die_in_epoch_3, checkpoint=ck)
    resumed = Trainer(graph, Adam(lr=0.01), target=target, seed=4)
    resumed.fit(data, 4, batch_size=16, schedule=schedule, resume=ck)
    assert resumed.losses == full.losses
    for group in ("params", "buffers", "state"):
        mine, want = getattr(resumed, group), getattr(full, group)
        assert set(mine) == set(want)
        for k in want:
            assert np.array_equal(mine[k], want[k]), f"{group} {k} differs after resuming"


def test_early_stopping_stops_when_validation_loss_stalls() -> None:
    graph = dlir.loads(MODEL).graph("Loss")
    tr = Trainer(graph, SGD(lr=0.05), target="numpy", seed=0)
    val = iter([1.0, 0.9, 0.95, 0.97, 0.99, 0.5, 0.4])
    tr.fit(_data(), 7, batch_size=40, evaluate=lambda t: {"val_loss": next(val)}, patience=3)
    assert [h["epoch"] for h in tr.history] == [1, 2, 3, 4, 5], "best at epoch 2, three epochs without improvement"


def test_dlirc_train_checkpoint_resume_and_errors(tmp_path: Path) -> None:
    src = tmp_path / "m.dlir"
    src.write_text(MODEL)
    np.savez(tmp_path / "d.npz", x=_data().x_train, y=_data().y_train, x_test=_data().x_test, y_test=_data().y_test)
    base = [sys.executable, "-m", "dlir.cli", "train", str(src), "--model", "Loss", "--data", str(tmp_path / "d.npz"), "--batch", "16"]
    ck = tmp_path / "c.ckpt"
    r = subprocess.run(base + ["--epochs", "2", "--checkpoint", str(ck), "-o", str(tmp_path / "a.safetensors")], capture_output=True, text=True)
    assert r.returncode == 0 and "val acc" in r.stderr, r.stderr
    r = subprocess.run(base + ["--epochs", "3", "--resume", str(ck)], capture_output=True, text=True)
    assert r.returncode == 0 and "epoch 3/3" in r.stderr and "epoch 1/3" not in r.stderr, r.stderr
    r = subprocess.run(base + ["--epochs", "3", "--resume", str(tmp_path / "a.safetensors")], capture_output=True, text=True)
    assert r.returncode == 2 and "is a weights file, not a checkpoint" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(base + ["--epochs", "3", "--lr-schedule", "cosin"], capture_output=True, text=True)
    assert r.returncode == 2 and "did you mean 'cosine'" in r.stderr
