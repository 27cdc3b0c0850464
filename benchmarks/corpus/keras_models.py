"""The corpus models built in Keras (TensorFlow's Keras 3): applications and recurrent layers.

Applications get ``weights=None`` (random init, nothing downloaded) and a small input; the caller
seeds Keras. Each builder returns the model and its example inputs (NHWC images, as Keras takes them);
tf2onnx converts them (``export_keras`` in ``benchmarks/corpus/__init__.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

Inputs = dict[str, np.ndarray]


def application(name: str, size: int = 32, **kw: Any) -> Any:
    def build() -> tuple[Any, Inputs]:
        import keras

        net = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3), classes=10, **kw)
        x = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype(np.float32)
        return net, {"x": x}

    return build


def recurrent(kind: str, bidirectional: bool) -> Any:
    """An LSTM or GRU over a [2, 5, 8] sequence, returning every step, then a dense layer."""

    def build() -> tuple[Any, Inputs]:
        import keras

        layer = getattr(keras.layers, kind)(16, return_sequences=True)
        if bidirectional:
            layer = keras.layers.Bidirectional(layer)
        net = keras.Sequential([keras.Input((5, 8)), layer, keras.layers.Dense(4)])
        x = np.random.default_rng(0).standard_normal((2, 5, 8)).astype(np.float32)
        return net, {"x": x}

    return build
