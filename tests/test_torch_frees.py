"""The generated torch ``forward`` frees each local after its last read (backends/torch/frees.py).

A training step is one long straight-line function; without the frees it holds every
activation and gradient until it returns. Checked: what is freed and what never is
(arguments, results, closures, names a loop binds), that the rewritten code computes
the same, and that a real step's peak of live tensor bytes drops well below what the
same step holds without the frees.
"""

from __future__ import annotations

import re
import weakref
from typing import Any

import numpy as np
import pytest
from dlir.backends.torch import codegen
from dlir.backends.torch.frees import with_frees

import dlir
from dlir.train.optim import SGD
from dlir.train.trainer import Trainer

torch = pytest.importorskip("torch")


def _run(body: list[str], args: dict[str, Any]) -> Any:
    src = f"def f({', '.join(args)}):\n" + "\n".join("    " + line for line in body)
    ns: dict[str, Any] = {}
    exec(compile(src, "<body>", "exec"), ns)  # the test's own source, not a model file's
    return ns["f"](**args)


def test_each_local_goes_after_its_last_read_and_nothing_else_does() -> None:
    body = [
        "a = x * 2  # x.dlir:1:1",
        "b = a + 1",
        "c = b * b",
        "unused = c - 1",
        "def g(t):",
        "    return t + k",
        "k = c + 0",
        "for s in [1, 2]:",
        "    inner = s * k",
        "d = g(c) + inner",
        "return d, c",
    ]
    got = with_frees(body, keep=frozenset({"x"}))
    dels = {line.strip()[4:]: got[i - 1].split()[0] for i, line in enumerate(got) if line.strip().startswith("del ")}
    # a after b (its last read), b after c; unused right away; the comment stays on its line
    assert dels == {"a": "b", "b": "c", "unused": "unused"}, got
    assert got[0] == body[0]
    # never freed: the argument x, the returned c and d, k (a closure reads it), the loop's s and
    # inner (a loop of no turns binds neither), g (a def, not an assignment)
    assert _run(got, {"x": 3}) == _run(body, {"x": 3}) == ((49 + 49) + 2 * 49, 49)


def test_a_step_module_holds_far_less_at_once() -> None:
    """Peak live tensor bytes of a CNN training step, with the frees and without them."""
    src = """
use nn
model L(x: f32[B, 4, 32, 32], labels: i64[B]) -> f32[] {
    conv1 = Conv2d(4, 8, 3, padding=1)
    conv2 = Conv2d(8, 8, 3, padding=1)
    h = relu(conv2(relu(conv1(x))))
    h = relu(conv2(h))
    fc = Dense(8, 10)
    return cross_entropy(fc(mean(h, axis=[2, 3])), labels)
}
"""
    trainer = Trainer(dlir.loads(src).graph("L"), SGD(lr=0.1), target="torch", device="cpu")
    step = trainer.step_graph
    rng = np.random.default_rng(0)
    feeds = {
        "x": rng.standard_normal((16, 4, 32, 32)).astype(np.float32),
        "labels": np.arange(16) % 10,
        "hyper.lr": np.asarray(0.1, np.float32),
        **trainer.params,
        **trainer.buffers,
        **trainer.state,
    }
    results, peaks = [], []
    for frees in (True, False):
        mp = pytest.MonkeyPatch()
        if not frees:
            mp.setattr(codegen, "with_frees", lambda body, keep=frozenset(): body)
        try:
            rendered = codegen.render(step)
        finally:
            mp.undo()
        assert bool(re.search(r"^ +del \w", rendered.source, re.M)) is frees
        outs, peak = _peak_bytes(rendered, step, feeds)
        results.append(outs)
        peaks.append(peak)
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)
    assert peaks[0] < 0.6 * peaks[1], peaks


def _peak_bytes(rendered: Any, graph: Any, feeds: dict[str, np.ndarray]) -> tuple[list[np.ndarray], int]:
    from torch.utils._python_dispatch import TorchDispatchMode

    ns: dict[str, Any] = {}
    exec(compile(rendered.source, "<step>", "exec"), ns)  # dlir's generated file, as TorchRunner imports it
    module = ns[rendered.class_name]().eval()
    args = [torch.from_numpy(feeds[v.name]) for v in graph.inputs]

    class LiveBytes(TorchDispatchMode):
        """Bytes of the storages that tensors made inside the mode keep alive, and their peak."""

        def __init__(self) -> None:
            super().__init__()
            self.holders: dict[int, int] = {}  # storage -> tensors alive on it
            self.now = self.peak = 0

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor):
                    self._hold(t)
            return out

        def _hold(self, t: Any) -> None:
            storage = t.untyped_storage()
            key, size = storage.data_ptr(), storage.nbytes()
            if key not in self.holders:
                self.holders[key] = 0
                self.now += size
                self.peak = max(self.peak, self.now)
            self.holders[key] += 1
            weakref.finalize(t, self._release, key, size)

        def _release(self, key: int, size: int) -> None:
            self.holders[key] -= 1
            if self.holders[key] == 0:
                del self.holders[key]
                self.now -= size

    with torch.no_grad(), LiveBytes() as live:
        outs = module(*args)
    return [o.numpy().copy() for o in outs], live.peak
