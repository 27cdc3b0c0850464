"""Data-parallel training on N workers against one: a table, not a test.

    .venv/bin/python benchmarks/bench_scaleout.py [--model digits|mnist] [--target torch]
        [--nproc 1,2] [--batch 64] [--steps 40]

For each N, ``dlir.train.launch.run_workers`` starts N workers (torch.distributed,
gloo, loopback) that each build :class:`dlir.train.Trainer` with their
:class:`~dlir.train.world.World` and run --steps steps on their shards of the
same global batches of real digits (or MNIST) images. Rank 0 reports the median
step time and the median time of the step's one all-reduce (the flat gradient
buffer plus the loss), measured inside the step. The N=1 row is the fused
single-process step (``world=None``), the baseline of the speed-up column.

The last lines give what the design moves at scale: a ring all-reduce sends and
receives 2*(N-1)/N times the gradient bytes per worker per step, whatever N.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = {"digits": ("samples/digits.dlir", "DigitsLoss", "digits"), "mnist": ("samples/mnist.dlir", "MnistLoss", "mnist5k")}
WARMUP = 5


class TimedWorld:
    """A World whose all-reduces are timed (the rest passes through)."""

    def __init__(self, world: Any) -> None:
        self._world, self.times = world, []

    def all_reduce_sum(self, flat: np.ndarray) -> np.ndarray:
        t = time.perf_counter()
        out = self._world.all_reduce_sum(flat)
        self.times.append(time.perf_counter() - t)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._world, name)


def measure(world: Any, model: str, target: str, batch: int, steps: int) -> dict[str, float]:
    """Median step and all-reduce times (ms) of ``steps`` steps after warm-up, on this worker."""
    import dlir
    from dlir.train.data import load_dataset
    from dlir.train.optim import SGD
    from dlir.train.trainer import Trainer

    path, loss_model, data_name = MODELS[model]
    graph = dlir.load(ROOT / path).graph(loss_model)
    data = load_dataset(data_name)
    trainer = Trainer(graph, SGD(lr=0.01, momentum=0.9), target, seed=0, world=world)
    timed = None
    if world is not None:
        timed = TimedWorld(trainer.runner.world)
        trainer.runner.world = timed
    rng = np.random.default_rng(0)
    step_times = []
    for i in range(WARMUP + steps):
        rows = rng.choice(len(data.y_train), batch, replace=False)
        mine = rows if world is None else world.shard(rows)
        t = time.perf_counter()
        trainer.step(sample_index=mine, global_rows=batch, x=data.x_train[mine], labels=data.y_train[mine])
        step_times.append(time.perf_counter() - t)
    params = sum(int(np.prod(v.shape)) for v in trainer.params.values())
    reduce_ms = 1e3 * statistics.median(timed.times[WARMUP:]) if timed else 0.0
    return {"step_ms": 1e3 * statistics.median(step_times[WARMUP:]), "reduce_ms": reduce_ms, "params": params}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="digits", choices=sorted(MODELS))
    ap.add_argument("--target", default="torch", choices=["numpy", "torch", "tensorflow", "onnx"])
    ap.add_argument("--nproc", default="1,2")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    from dlir.train.launch import run_workers

    rows = []
    for n in (int(x) for x in args.nproc.split(",")):
        if n == 1:
            r = measure(None, args.model, args.target, args.batch, args.steps)
        else:
            r = run_workers(measure, (args.model, args.target, args.batch, args.steps), nproc=n)[0]
        rows.append((n, r))
    base = rows[0][1]["step_ms"] if rows[0][0] == 1 else None
    print(f"{args.model} on {args.target}, global batch {args.batch}, {args.steps} steps, medians (rank 0)")
    head = ["workers", "step ms", "steps/s", "all-reduce ms", "all-reduce / step", "speed-up vs 1"]
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for n, r in rows:
        share = r["reduce_ms"] / r["step_ms"]
        speed = f"{base / r['step_ms']:.2f}x" if base else "-"
        print(f"{n} | {r['step_ms']:.2f} | {1e3 / r['step_ms']:.1f} | {r['reduce_ms']:.3f} | {share:.0%} | {speed}")
    grad_bytes = 4 * rows[0][1]["params"]
    print(f"\ngradient buffer: {rows[0][1]['params']} params, {grad_bytes / 1e6:.2f} MB (float32) per step")
    for n in (2, 8, 64):
        moved = 2 * (n - 1) / n * grad_bytes
        print(f"ring all-reduce on {n} workers: {moved / 1e6:.2f} MB sent and received per worker per step")


if __name__ == "__main__":
    main()
