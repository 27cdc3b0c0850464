"""The recurrent training steps that the torch and tensorflow backend tests read: the LSTM
classifier and the bidirectional GRU tagger samples, each in a mean-squared-error loss model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

# (sample, the loss model's body); the GRU tagger's backward runs a reverse scan
RECURRENT_LOSSES = [
    ("lstm", "d = net(x) - y\n    return mean(d * d)"),
    ("gru", "tags, h = net(x, h0)\n    d = tags - y\n    return mean(d * d)"),
]


def recurrent_loss_graph(sample: str, loss: str) -> Any:
    """The loss model ``Loss`` around the sample's model."""
    import dlir

    root = Path(__file__).resolve().parent.parent
    source = (root / "samples" / f"{sample}.dlir").read_text()
    model = next(line.split()[1].split("(")[0] for line in source.splitlines() if line.startswith("model "))
    inputs = "x: f32[B, T, 32], y: f32[B, 5]" if sample == "lstm" else "x: f32[B, T, 16], h0: f32[B, 24], y: f32[B, T, 6]"
    return dlir.loads(source + f"\nmodel Loss({inputs}) -> f32[] {{\n    net = {model}()\n    {loss}\n}}\n").graph("Loss")


def assert_three_steps_match_numpy(graph: Any, target: str) -> None:
    """Three SGD steps on ``target`` give the numpy steps' params (batch 4, T = 7)."""
    from dlir.train.optim import SGD
    from dlir.train.trainer import Trainer

    rng = np.random.default_rng(0)
    feeds = {v.name: rng.standard_normal([4 if str(d) == "B" else 7 if str(d) == "T" else int(str(d))
                                          for d in v.type.shape]).astype(np.float32) for v in graph.inputs}
    got = {}
    for name in ("numpy", target):
        t = Trainer(graph, SGD(lr=0.1), name)
        for _ in range(3):
            t.step(**feeds)
        got[name] = dict(t.params)
    for k in got["numpy"]:
        np.testing.assert_allclose(got[target][k], got["numpy"][k], rtol=1e-5, atol=1e-5, err_msg=k)
