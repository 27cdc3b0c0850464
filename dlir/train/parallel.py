"""A data-parallel training step: gradient graph, one all-reduce, update graph (DESIGN.md section 9).

Each worker runs :func:`~dlir.train.optim.gradient_graph` on its shard of the
global batch, scales the gradients of its mean loss to those of its summed loss
(times its row count), and all the workers sum them in one flat buffer, as DDP
buckets them; divided by the global batch size they are the gradients of the
global batch's mean loss, so :func:`~dlir.train.optim.update_graph` then writes
on every worker the weights one process writes on the same global batch. The
loss rides in the same buffer.

Batch-norm statistics are per worker, as under DDP without ``SyncBatchNorm``:
each worker normalises with its own shard's statistics, and the running
statistics that count (saved, evaluated) are rank 0's, which :meth:`sync_buffers`
gives every worker, as DDP's ``broadcast_buffers`` does before each forward.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlir.ir.graph import Graph
from dlir.targets import runner_class
from dlir.train.optim import GRAD, LR, NEW, Optimizer, gradient_graph, update_graph
from dlir.train.world import World


class ParallelStep:
    """The two compiled halves of a step on ``target`` for one worker of ``world``.

    Keeps params and updated buffers in the gradient runner and params and
    optimizer state in the update runner, on the target; reads and writes them by
    name like a :class:`~dlir.runtime.runner.Runner`'s kept values.
    """

    def __init__(
        self,
        train_graph: Graph,
        optimizer: Optimizer,
        target: str,
        world: World,
        values: dict[str, np.ndarray],
        *,
        seed: int = 0,
        device: str = "auto",
        opt_level: int = 2,
        output: str | None = None,
    ) -> None:
        self.world = world
        runner = runner_class(target)
        self.gradients = runner(gradient_graph(train_graph, output, opt_level, target), seed=seed, device=device)
        self.update = runner(update_graph(train_graph, optimizer, opt_level, target), seed=seed, device=device)
        self.params = [p.name for p in train_graph.trainable]
        grad_inputs = {v.name for v in self.gradients.graph.inputs}
        update_inputs = {v.name for v in self.update.graph.inputs}
        self.buffers = [n[len(NEW) :] for n in self.gradients.graph.output_names() if n.startswith(NEW)]
        self.state = [k for k in values if k in update_inputs and k not in self.params]
        self.kept_names = {*self.params, *self.buffers, *self.state}
        self.gradients.keep(
            {k: values[k] for k in [*self.params, *self.buffers] if k in grad_inputs},
            {NEW + b: b for b in self.buffers},
        )
        self.update.keep(
            {k: values[k] for k in [*self.params, *self.state] if k in update_inputs},
            {NEW + k: k for k in [*self.params, *self.state] if NEW + k in self.update.graph.output_names()},
        )
        shapes = {v.name: v.type for v in self.update.graph.inputs}
        self._shapes = [shapes[p].static_shape() for p in self.params]
        self._sizes = [int(np.prod(s)) for s in self._shapes]
        self._dtypes = [shapes[p].dtype.numpy for p in self.params]
        self._dtype = np.result_type(*self._dtypes)  # the flat buffer's: every param's fits
        self.inputs = [v.name for v in self.gradients.graph.inputs if v.name not in self.kept_names]

    def step(self, feeds: dict[str, np.ndarray], rows: int, global_rows: int) -> float:
        """One step; ``feeds`` are this worker's ``rows`` of the ``global_rows`` of the batch
        (its data and dropout masks, and ``hyper.lr``). Returns the global batch's mean loss."""
        flat = np.zeros(1 + sum(self._sizes), self._dtype)
        if rows:  # a worker whose shard of the last, uneven batch is empty adds nothing
            loss, *grads = self.gradients.step(**{k: feeds[k] for k in self.inputs})
            flat[0] = loss
            np.concatenate([np.ravel(g) for g in grads], out=flat[1:], casting="same_kind")
            flat *= rows  # the gradients of the shard's summed loss
        flat = self.world.all_reduce_sum(flat) / global_rows
        grads, at = {}, 1
        for name, size, shape, dtype in zip(self.params, self._sizes, self._shapes, self._dtypes, strict=True):
            grads[GRAD + name] = flat[at : at + size].reshape(shape).astype(dtype, copy=False)
            at += size
        self.update.step(**grads, **{LR: feeds[LR]})
        self.gradients.replace_kept({p: self.update.kept(p) for p in self.params})
        return float(flat[0])

    def sync_buffers(self) -> None:
        """Rank 0's running statistics on every worker (a collective: every worker calls it)."""
        if not self.buffers or self.world.size == 1:
            return
        values = [self.gradients.kept(b) for b in self.buffers]
        flat = self.world.broadcast(np.concatenate([v.ravel().astype(np.float64) for v in values]))
        out, at = {}, 0
        for name, v in zip(self.buffers, values, strict=True):
            out[name] = flat[at : at + v.size].reshape(v.shape).astype(v.dtype)
            at += v.size
        self.gradients.replace_kept(out)

    # -- what KeptValues reads and writes ---------------------------------------------------
    def kept(self, name: str) -> Any:
        return (self.update if name in self.params or name in self.state else self.gradients).kept(name)

    def replace_kept(self, values: dict[str, np.ndarray]) -> None:
        for runner in (self.gradients, self.update):
            names = {v.name for v in runner.graph.inputs}
            mine = {k: v for k, v in values.items() if k in names and k in self.kept_names}
            if mine:
                runner.replace_kept(mine)


__all__ = ["ParallelStep"]
