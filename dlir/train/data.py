"""Data sets ``dlirc train --data`` knows, and fitting them to a loss model's inputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlir.errors import UsageError, did_you_mean
from dlir.ir.graph import Graph, Value


@dataclass
class Dataset:
    """A fixed train/test split: float images ``[N, ...]`` and integer class ids ``[N]``."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int

    @property
    def shape_text(self) -> str:
        return f"f32[B, {', '.join(map(str, self.x_train.shape[1:]))}] images and i64[B] labels"


def digits(test_size: float = 0.2, random_state: int = 0) -> Dataset:
    """scikit-learn's 8x8 handwritten digits, pixels / 16 as f32 ``[N, 1, 8, 8]`` (NCHW).

    The split is fixed: ``train_test_split(test_size=0.2, random_state=0)``,
    stratified by class (1437 train, 360 test images).
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise UsageError("--data digits needs scikit-learn", hint="pip install scikit-learn") from None
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_size, random_state=random_state, stratify=y)
    return Dataset("digits", xtr, ytr, xte, yte, 10)


DATASETS = {"digits": digits}


def load_dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise UsageError(f"unknown data set '{name}'", hint=did_you_mean(name, DATASETS) or "data sets: " + ", ".join(DATASETS))
    return DATASETS[name]()


def _fits(v: Value, a: np.ndarray) -> bool:
    t = v.type
    if t.dtype.numpy != a.dtype or t.rank != a.ndim:
        return False
    return all(d.unknown or not d.is_static or d.value == n for d, n in zip(t.shape[1:], a.shape[1:]))


def bind_inputs(graph: Graph, data: Dataset, role: str = "loss model") -> dict[str, str]:
    """Which graph input takes ``x`` (the images) and which ``y`` (the labels): ``{input name: "x"|"y"}``.

    A loss model takes exactly one float input shaped like the images and one
    i64 input shaped like the labels; a forward model only the images.
    """
    want = {"x": data.x_train, "y": data.y_train} if role == "loss model" else {"x": data.x_train}
    binding: dict[str, str] = {}
    free = list(graph.inputs)
    for key, a in want.items():
        match = next((v for v in free if _fits(v, a)), None)
        if match is None:
            break
        binding[match.name] = key
        free.remove(match)
    if len(binding) != len(want) or free:
        given = ", ".join(f"{v.name}: {v.type}" for v in graph.inputs) or "none"
        needs = data.shape_text if role == "loss model" else f"one f32[B, {', '.join(map(str, data.x_train.shape[1:]))}] input"
        raise UsageError(
            f"the inputs of {role} {graph.name} ({given}) do not fit the {data.name} data",
            graph.loc,
            hint=f"a {role} for --data {data.name} takes {needs}",
        )
    return binding


__all__ = ["Dataset", "DATASETS", "digits", "load_dataset", "bind_inputs"]
