"""`dlirc train` on the user's own files: a batch-norm + dropout CNN learns digits from .npz, .csv and an image folder.

The digits (scikit-learn's 8x8 images) are written as each format in tmp_path;
each run must reach >= 95% test accuracy, and the saved weights hold the
running statistics (the buffers) beside the params.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load_file

from dlir.targets import TARGETS
from dlir.train.data import digits

MODELS = """
use nn

# The textbook classifier: conv, batch norm, relu, pooling, dropout, dense.
model Cnn(x: f32[B, 1, 8, 8]) -> f32[B, 10] {
    conv = Conv2d(1, 16, 3, padding=1)
    bn = BatchNorm2d(16)
    fc = Dense(256, 10)
    h = max_pool2d(relu(bn(conv(x))), kernel=2)
    return fc(dropout(flatten(h), p=0.25))
}

model CnnLoss(x: f32[B, 1, 8, 8], y: i64[B]) -> f32[] {
    net = Cnn()
    return cross_entropy(net(x), y)
}

# The same network on the 64 pixels of a csv row.
model FlatCnn(x: f32[B, 64]) -> f32[B, 10] {
    net = Cnn()
    return net(reshape(x, [-1, 1, 8, 8]))
}

model FlatCnnLoss(x: f32[B, 64], y: i64[B]) -> f32[] {
    net = FlatCnn()
    return cross_entropy(net(x), y)
}
"""


def _train(tmp_path: Path, data: str, target: str, model: str, *extra: str) -> tuple[float, dict[str, np.ndarray]]:
    src = tmp_path / "cnn.dlir"
    src.write_text(MODELS)
    out = tmp_path / f"w_{target}.safetensors"
    cmd = [sys.executable, "-m", "dlir.cli", "train", str(src), "--model", model, "--target", target, "--data", data,
           "--epochs", "8", "--optimizer", "adam", "-o", str(out), *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    acc = float(re.search(r"test accuracy: ([0-9.]+)", r.stdout).group(1))  # type: ignore[union-attr]
    return acc, load_file(str(out))


@pytest.fixture(scope="module")
def split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    d = digits()
    return d.x_train, d.y_train, d.x_test, d.y_test


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_npz_trains_a_batch_norm_dropout_cnn(tmp_path: Path, split: tuple[np.ndarray, ...], target: str) -> None:
    xtr, ytr, xte, yte = split
    np.savez(tmp_path / "digits.npz", x=xtr, y=ytr, x_test=xte, y_test=yte)
    acc, weights = _train(tmp_path, str(tmp_path / "digits.npz"), target, "CnnLoss")
    assert acc >= 0.95, f"{target}: test accuracy {acc}"
    assert {"bn.mean", "bn.var", "bn.scale", "conv.w"} <= set(weights)
    assert not np.allclose(weights["bn.mean"], 0.0), "the running mean was never updated"


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_csv_with_a_header_trains_a_batch_norm_dropout_cnn(tmp_path: Path, split: tuple[np.ndarray, ...], target: str) -> None:
    xtr, ytr, xte, yte = split
    x, y = np.concatenate([xtr, xte]).reshape(-1, 64), np.concatenate([ytr, yte])
    header = ",".join([f"p{i}" for i in range(64)] + ["digit"])
    rows = [",".join([*(f"{v:.6g}" for v in r), str(int(c))]) for r, c in zip(x, y)]
    (tmp_path / "digits.csv").write_text("\n".join([header, *rows]) + "\n")
    acc, _ = _train(tmp_path, str(tmp_path / "digits.csv"), target, "FlatCnnLoss", "--label-column", "digit")
    assert acc >= 0.95, f"{target}: test accuracy {acc}"


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_image_folder_trains_a_batch_norm_dropout_cnn(tmp_path: Path, split: tuple[np.ndarray, ...], target: str) -> None:
    xtr, ytr, xte, yte = split
    for part, xs, ys in (("train", xtr, ytr), ("test", xte, yte)):
        for k, (img, c) in enumerate(zip(xs, ys)):
            folder = tmp_path / "digits" / part / f"class_{c}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.round(img[0] * 255).astype(np.uint8), mode="L").save(folder / f"{k}.png")
    acc, _ = _train(tmp_path, str(tmp_path / "digits"), target, "CnnLoss")
    assert acc >= 0.95, f"{target}: test accuracy {acc}"


@pytest.mark.slow
def test_mnist_sample_has_the_same_loss_curve_on_every_target() -> None:
    """samples/mnist.dlir on mnist5k: one seed, the first 20 steps' losses within 1e-4 on every target."""
    import dlir
    from dlir.train import Adam, Trainer
    from dlir.train.data import load_dataset

    data = load_dataset("mnist5k")
    graph = dlir.load(Path(__file__).resolve().parent.parent / "samples" / "mnist.dlir").graph("MnistLoss")
    order = np.random.default_rng(0).permutation(len(data.y_train))
    curves = {}
    for target in ("onnx", "torch", "tensorflow", "numpy"):
        tr = Trainer(graph, Adam(lr=0.002), target=target, seed=0)
        for s in range(20):
            idx = order[s * 32 : (s + 1) * 32]
            tr.step(sample_index=idx, x=data.x_train[idx], labels=data.y_train[idx])
        curves[target] = tr.losses
    assert curves["numpy"][-1] < curves["numpy"][0], "20 steps should already lower the loss"
    for target, losses in curves.items():
        np.testing.assert_allclose(losses, curves["numpy"], rtol=1e-4, atol=1e-4, err_msg=target)
