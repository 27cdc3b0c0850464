"""The trainer: one compiled step graph per target; params, buffers and state kept on the target.

:class:`Trainer` builds the loss model in train mode (:mod:`dlir.train.modes`:
batch statistics, dropout masks as inputs), compiles
:func:`~dlir.train.optim.train_step_graph` with the target's ordinary runner
(params are inputs of the step graph, so the runner holds no weights of its
own), feeds it a minibatch, the current params, buffers, optimizer state and
the dropout masks; the runner keeps params, buffers and state where the model runs
(torch tensors, TensorFlow tensors, ONNX Runtime OrtValues) and only the loss comes back
to the host each step (:meth:`dlir.runtime.runner.Runner.keep`). The masks come from
:func:`dlir.train.threefry.dropout_mask`, keyed by (seed, step, site, global
sample index). The same seed gives the same init, the same minibatch order,
the same masks and so the same loss curve on every target.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from pathlib import Path
from typing import Any, TextIO, cast

import numpy as np

from dlir.errors import DlirError, UsageError
from dlir.ir.graph import Graph
from dlir.runtime.init import init_params
from dlir.targets import runner_class
from dlir.train.checkpoint import Checkpoint, load_checkpoint
from dlir.train.data import Dataset, bind_inputs
from dlir.train.modes import DropoutSite, train_mode
from dlir.train.optim import LR, NEW, Optimizer, train_step_graph
from dlir.train.schedule import Schedule
from dlir.train.world import World


class Trainer:
    """Trains the loss model ``graph`` on ``target`` with ``optimizer``.

    ``params`` (dotted name -> array), ``buffers`` (running statistics such as
    ``net.bn1.mean``) and ``state`` (``state.m.fc1.w``, ...) live on the target
    between steps and read as numpy (a copy each read); assigning to one writes it
    back. ``losses`` records every step's loss.

    With ``world`` (:class:`dlir.train.world.World`, inside a worker that
    :func:`dlir.train.launch.run_workers` started) the trainer is one of
    ``world.size`` data-parallel workers: :meth:`fit` gives it its shard of every
    global batch and the step all-reduces the gradients (:mod:`dlir.train.parallel`),
    so every worker ends with the weights one process would write.
    """

    def __init__(
        self,
        graph: Graph,
        optimizer: Optimizer,
        target: str = "numpy",
        seed: int = 0,
        device: str = "auto",
        opt_level: int = 2,
        output: str | None = None,
        world: World | None = None,
    ) -> None:
        check_loss_model(graph, output)
        self.graph = graph
        self.optimizer = optimizer
        self.target = target
        self.seed = seed
        self.world = world
        train = train_mode(graph)
        self.dropouts: list[DropoutSite] = train.dropouts
        init = init_params(graph, seed)
        params = {p.name: init[p.name] for p in graph.trainable}
        buffers = {p.name: init[p.name] for p in graph.params if p.kind == "buffer"}
        state = optimizer.init_state(params)
        values = {**params, **buffers, **state}
        self.runner: Any
        # what the next step uses; fit's schedule sets it each epoch
        # sgd and adam have an lr field; declaring one on the base Optimizer would add a dataclass field
        self.lr = float(optimizer.lr)  # type: ignore[attr-defined]
        self._kept_lr: float | None = None  # the learning rate the runner keeps (one process)
        if world is None:  # one process: forward, backward and update are one graph
            self.step_graph = train_step_graph(train.graph, optimizer, output, opt_level, target=target)
            self.runner = runner_class(target)(self.step_graph, seed=seed, device=device)
            # Kept on the target between steps; each step's new.<name> output replaces <name> there.
            step_inputs = {v.name for v in self.step_graph.inputs}
            kept = {k for k in values if k in step_inputs}
            outputs = set(self.step_graph.output_names())
            # The learning rate is kept too, and written only when a schedule changes it: a fresh
            # input tensor each call costs a small step more than its copy (~0.05 ms on tensorflow).
            lr = {LR: np.asarray(self.lr, np.float32)} if LR in step_inputs else {}
            self.runner.keep({**{k: values[k] for k in kept}, **lr}, {NEW + k: k for k in kept if NEW + k in outputs})
            self._kept_lr = self.lr if lr else None
            self._inputs = [v.name for v in self.step_graph.inputs if v.name not in lr]
        else:  # data-parallel: a gradient graph, an all-reduce, an update graph (dlir.train.parallel)
            from dlir.train.parallel import ParallelStep

            self.runner = ParallelStep(
                train.graph,
                optimizer,
                target,
                world,
                values,
                seed=seed,
                device=device,
                opt_level=opt_level,
                output=output,
            )
            kept = self.runner.kept_names
            self._inputs = [*self.runner.inputs, LR]
        self.params = KeptValues(self.runner, list(params), {})
        # a buffer the step does not update is a param of the step graph, not kept
        self.buffers = KeptValues(
            self.runner, [k for k in buffers if k in kept], {k: v for k, v in buffers.items() if k not in kept}
        )
        self.state = KeptValues(self.runner, list(state), {})
        self.losses: list[float] = []
        self.history: list[dict[str, float]] = []  # per epoch: loss, lr and the evaluate() metrics

    def step(
        self, sample_index: np.ndarray | None = None, global_rows: int | None = None, **batch: np.ndarray
    ) -> float:
        """One step on a minibatch (the loss model's data inputs by name); returns its loss.

        ``sample_index`` holds each row's index in the whole data set: it keys the
        dropout masks, so a row gets the same mask whatever batch (or worker) it is
        in. Default: the rows are numbered on from the previous step's. With a
        ``world``, ``batch`` is this worker's shard of a global batch of
        ``global_rows`` rows, and the loss returned is the global batch's.
        """
        n = len(next(iter(batch.values()))) if batch else 0
        if sample_index is None:
            sample_index = np.arange(n, dtype=np.int64) + len(self.losses) * n
        known = {**batch, **self._masks(batch, sample_index), LR: np.asarray(self.lr, np.float32)}
        feeds = {k: known[k] for k in self._inputs if k in known}
        if self.world is None and self._kept_lr is not None and self.lr != self._kept_lr:
            self.runner.replace_kept({LR: known[LR]})
            self._kept_lr = self.lr
        if self.world is None:
            (loss_value,) = self.runner.step(**feeds)
        else:
            loss_value = self.runner.step(feeds, n, n if global_rows is None else global_rows)
        loss = float(loss_value)
        self.losses.append(loss)
        return loss

    def _masks(self, batch: dict[str, np.ndarray], sample_index: np.ndarray) -> dict[str, np.ndarray]:
        """Each dropout site's mask for this step's rows (dlir.train.threefry, no framework RNG)."""
        if not self.dropouts:
            return {}
        from dlir.train.threefry import dropout_mask

        # the sizes this batch gives the symbols (B, T, ...) of the loss model's inputs
        env = {s: batch[v.name].shape[axis] for s, (v, axis) in self.graph.symbol_sources().items() if v.name in batch}
        out = {}
        for site in self.dropouts:
            shape = tuple(d.evaluate(env) for d in site.type.shape)
            out[site.input] = dropout_mask(
                self.seed,
                len(self.losses),
                site.site,
                np.asarray(sample_index, np.int64),
                shape[1:],
                site.p,
                site.type.dtype.numpy,
            )
        return out

    def fit(
        self,
        data: Dataset,
        epochs: int,
        batch_size: int = 64,
        progress: TextIO | None = None,
        max_steps: int | None = None,
        *,
        schedule: Schedule | None = None,
        evaluate: Callable[[Trainer], dict[str, float]] | None = None,
        patience: int | None = None,
        checkpoint: str | Path | None = None,
        resume: str | Path | None = None,
    ) -> list[float]:
        """Train on ``data``'s training split; the minibatch order is shuffled with ``seed``.

        Args:
            schedule: the learning rate per epoch (default: the optimizer's, constant).
            evaluate: called after every epoch; its metrics (``val_loss``, ``val_acc``) are
                printed and kept in ``history``.
            patience: stop once ``val_loss`` has not improved for this many epochs.
            checkpoint: written (atomically) after every epoch.
            resume: a checkpoint to continue from: the weights, optimizer state, step
                count and shuffle state are restored, so the run ends where the
                uninterrupted one would, bit for bit.
        """
        if epochs < 1 or batch_size < 1:
            raise UsageError(f"epochs and batch size must be positive (got {epochs}, {batch_size})")
        if patience is not None and (patience < 1 or evaluate is None):
            raise UsageError("early stopping needs a validation split and a patience >= 1")
        schedule = schedule or Schedule()
        binding = bind_inputs(self.graph, data)
        arrays = {"x": data.x_train, "y": data.y_train}
        rng = np.random.default_rng(self.seed)
        n = len(data.y_train)
        per_epoch = (n + batch_size - 1) // batch_size
        start, best, stale = 0, float("inf"), 0
        if resume is not None:
            ck = load_checkpoint(resume)
            self._restore(ck)
            rng.bit_generator.state = ck.rng
            start, best, stale = ck.epoch, ck.best, ck.stale
        main = self.world is None or self.world.is_main
        bar = Progress(epochs, per_epoch, progress) if progress is not None and main else None
        for epoch in range(start, epochs):
            # sgd and adam have an lr field; declaring one on the base Optimizer would add a dataclass field
            self.lr = schedule.lr(float(self.optimizer.lr), epoch, epochs)  # type: ignore[attr-defined]
            order = rng.permutation(n)
            for i in range(per_epoch):
                idx = order[i * batch_size : (i + 1) * batch_size]
                rows = idx if self.world is None else self.world.shard(idx)  # global indices: dropout's key
                batch = {name: arrays[key][rows] for name, key in binding.items()}
                loss = self.step(sample_index=rows, global_rows=len(idx), **batch)
                if bar is not None:
                    bar.update(epoch, i + 1, loss)
                if max_steps is not None and len(self.losses) >= max_steps:
                    self._sync_buffers()
                    return self.losses
            self._sync_buffers()  # every worker evaluates, and saves, rank 0's running statistics
            metrics = evaluate(self) if evaluate is not None else {}
            self.history.append(
                {"epoch": epoch + 1, "loss": float(np.mean(self.losses[-per_epoch:])), "lr": self.lr, **metrics}
            )
            if "val_loss" in metrics:
                best, stale = (metrics["val_loss"], 0) if metrics["val_loss"] < best else (best, stale + 1)
            if bar is not None:
                bar.end_epoch(epoch, self.losses[-per_epoch:], metrics)
            if checkpoint is not None and main:
                state = cast("dict[str, Any]", rng.bit_generator.state)  # numpy gives a dict
                Checkpoint(
                    dict(self.params),
                    dict(self.buffers),
                    dict(self.state),
                    epoch + 1,
                    self.losses,
                    state,
                    self.history,
                    best,
                    stale,
                ).save(checkpoint)
            if patience is not None and stale >= patience:
                if progress is not None and main:
                    progress.write(
                        f"early stop: validation loss has not improved for {patience} epoch(s) (best {best:.4f})\n"
                    )
                break
        return self.losses

    def _sync_buffers(self) -> None:
        if self.world is not None:
            self.runner.sync_buffers()

    def _restore(self, ck: Checkpoint) -> None:
        for name, mine, theirs in (
            ("params", self.params, ck.params),
            ("buffers", self.buffers, ck.buffers),
            ("state", self.state, ck.state),
        ):
            if set(mine) != set(theirs):
                raise UsageError(
                    f"--resume: the checkpoint's {name} are not this model's",
                    hint=f"missing {sorted(set(mine) - set(theirs))[:3]}, "
                    f"unknown {sorted(set(theirs) - set(mine))[:3]}",
                )
            for k, v in theirs.items():
                if v.shape != mine[k].shape or v.dtype != mine[k].dtype:
                    raise UsageError(
                        f"--resume: {k} is {v.dtype}{list(v.shape)} in the checkpoint, "
                        f"{mine[k].dtype}{list(mine[k].shape)} here"
                    )
            mine.update(theirs)  # (written through to the target)
        self.losses = list(ck.losses)
        self.history = list(ck.history)


class KeptValues(MutableMapping[str, np.ndarray]):
    """Named values the step runner keeps on its target, read (as numpy copies) and written by name.

    ``fixed`` holds values of the same group that the step does not keep (a buffer
    it never updates): they read and write as a plain dict.
    """

    def __init__(self, runner: Any, names: list[str], fixed: dict[str, np.ndarray]) -> None:
        self._runner, self._names, self._fixed = runner, names, fixed

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self._fixed:
            return self._fixed[name]
        if name not in self._names:
            raise KeyError(name)
        return cast(np.ndarray, self._runner.kept(name))

    def __setitem__(self, name: str, value: np.ndarray) -> None:
        if name in self._fixed:
            self._fixed[name] = value
        elif name in self._names:
            self._runner.replace_kept({name: value})
        else:
            raise KeyError(f"{name} is not one of these values")

    def __delitem__(self, name: str) -> None:
        raise TypeError("a model's values cannot be removed")

    def __iter__(self) -> Iterator[str]:
        return iter([*self._names, *self._fixed])

    def __len__(self) -> int:
        return len(self._names) + len(self._fixed)


def check_loss_model(graph: Graph, output: str | None = None) -> None:
    """A UsageError unless ``graph`` returns a float scalar (``output``, or its only output) and has params."""
    outs = dict(graph.outputs)
    if output is None and len(outs) == 1:
        output = next(iter(outs))
    v = outs.get(output) if output is not None else None
    if v is None or v.type.rank != 0 or not v.type.dtype.is_float:
        got = ", ".join(f"{n}: {o.type}" for n, o in graph.outputs) or "none"
        raise UsageError(
            f"model {graph.name} is not a loss model: it must return one float scalar (it returns {got})",
            graph.loc,
            hint="train a loss model, e.g. `model Loss(x: ..., labels: i64[B]) -> f32[] { ... cross_entropy(...) }`",
        )
    if not graph.trainable:
        raise UsageError(f"model {graph.name} has no trainable params", graph.loc)


# -- evaluation with the forward model --------------------------------------------------------


def find_forward_model(prog: Any, loss_graph: Graph, data: Dataset, name: str | None = None) -> tuple[Graph, str]:
    """The forward model whose params are the loss model's (``net.fc1.w`` is ``fc1.w`` with prefix ``net.``).

    Returns ``(graph, prefix)``. With ``name`` that model must fit; otherwise the
    first model of the file that takes the images and returns ``[B, classes]``.
    """
    loss_names = {p.name for p in loss_graph.trainable}
    candidates = [name] if name else [m for m in prog.models if m != loss_graph.name]
    for m in candidates:
        try:
            g = prog.graph(m)
        except DlirError:
            if name:
                raise
            continue
        prefix = _prefix(loss_names, {p.name for p in g.trainable})
        shape_ok = (
            len(g.outputs) == 1
            and g.outputs[0][1].type.rank == 2
            and g.outputs[0][1].type.shape[1].value == data.classes
        )
        if prefix is None or not shape_ok:
            if name:
                raise UsageError(
                    f"model {m} is not the forward model of {loss_graph.name}",
                    hint=f"it must take the images, return [B, {data.classes}] logits and have the loss model's params",
                )
            continue
        try:
            bind_inputs(g, data, role="forward model")
        except DlirError:
            if name:
                raise
            continue
        return g, prefix
    raise UsageError(
        f"no model in the file computes the logits of {loss_graph.name}, so test accuracy cannot be measured",
        hint=f"add a forward model that takes the images and returns [B, {data.classes}] logits, "
        "and use it in the loss model as an instance (`net = Digits()`)",
    )


def _prefix(loss_names: set[str], fwd_names: set[str]) -> str | None:
    if not fwd_names:
        return None
    some = next(iter(fwd_names))
    for ln in loss_names:
        if ln.endswith(some):
            prefix = ln[: len(ln) - len(some)]
            if prefix in ("",) or prefix.endswith("."):
                if {prefix + n for n in fwd_names} == loss_names:
                    return prefix
    return None


class Evaluator:
    """The forward model compiled for a target, for test accuracy with the trained params."""

    def __init__(self, graph: Graph, prefix: str, target: str, seed: int = 0, device: str = "auto") -> None:
        from dlir.passes import optimize

        self.graph = graph
        self.prefix = prefix
        self.runner = runner_class(target)(optimize(graph, 2, target=target), seed=seed, device=device)

    def weights(self, loss_values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The trained params and buffers under the forward model's names (``net.`` dropped).

        ``loss_values``: the trainer's params and buffers by the loss model's names;
        a buffer it lacks keeps the forward model's init.
        """
        out = {}
        for p in self.graph.params:
            key = self.prefix + p.name
            if key in loss_values:
                out[p.name] = loss_values[key]
            elif p.kind != "buffer":
                raise KeyError(f"no trained value for {key}")
        return out

    def accuracy(
        self,
        loss_values: dict[str, np.ndarray],
        data: Dataset,
        x: np.ndarray | None = None,
        y: np.ndarray | None = None,
    ) -> float:
        """Accuracy on the test split (or on ``x``, ``y``) in eval mode (running statistics, no dropout)."""
        self.runner.load_params({**self.runner.params, **self.weights(loss_values)})
        (x_name,) = bind_inputs(self.graph, data, role="forward model")
        x, y = (data.x_test, data.y_test) if x is None or y is None else (x, y)
        logits = self.runner(**{x_name: x})
        return float(np.mean(np.argmax(logits, axis=1) == y))


# -- progress and the loss curve -------------------------------------------------------------


class Progress:
    """A plain-text progress bar on a stream: redrawn in place on a terminal, a line per epoch otherwise."""

    WIDTH = 30

    def __init__(self, epochs: int, per_epoch: int, stream: TextIO) -> None:
        self.epochs, self.per_epoch, self.stream = epochs, per_epoch, stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.start = time.perf_counter()

    def update(self, epoch: int, done: int, loss: float) -> None:
        if not self.tty:
            return
        filled = self.WIDTH * done // self.per_epoch
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self.stream.write(f"\repoch {epoch + 1}/{self.epochs} [{bar}] {done}/{self.per_epoch} loss {loss:.4f}")
        self.stream.flush()

    def end_epoch(self, epoch: int, losses: Sequence[float], metrics: dict[str, float] | None = None) -> None:
        mean = float(np.mean(losses)) if losses else float("nan")
        extra = "".join(f" {k.replace('_', ' ')} {v:.4f}" for k, v in (metrics or {}).items())
        line = (
            f"epoch {epoch + 1}/{self.epochs} [{'#' * self.WIDTH}] {self.per_epoch}/{self.per_epoch} "
            f"loss {mean:.4f}{extra} "
            f"({time.perf_counter() - self.start:.1f}s)"
        )
        self.stream.write(("\r" if self.tty else "") + line + "\n")
        self.stream.flush()


def loss_curve_png(losses: Sequence[float], per_epoch: int, title: str, val_acc: Sequence[float] = ()) -> bytes:
    """A PNG of the per-step loss, its per-epoch mean and the validation accuracy (matplotlib, Agg backend)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib", hint="pip install matplotlib") from None
    steps = np.arange(1, len(losses) + 1)
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=80)
    ax.plot(steps, losses, lw=0.8, alpha=0.6, label="step loss")
    if per_epoch > 0 and len(losses) >= per_epoch:
        n = len(losses) // per_epoch
        means = np.asarray(losses[: n * per_epoch]).reshape(n, per_epoch).mean(axis=1)
        ax.plot(np.arange(1, n + 1) * per_epoch, means, "o-", ms=3, label="epoch mean")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if len(val_acc):
        acc_ax = ax.twinx()
        acc_ax.plot(
            np.arange(1, len(val_acc) + 1) * per_epoch,
            val_acc,
            "s--",
            ms=3,
            color="tab:green",
            label="validation accuracy",
        )
        acc_ax.set_ylabel("validation accuracy")
        acc_ax.set_ylim(min(0.5, min(val_acc)), 1.0)
        more_handles, more_labels = acc_ax.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels, fontsize=8, loc="lower left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


__all__ = ["Trainer", "check_loss_model", "Evaluator", "Progress", "find_forward_model", "loss_curve_png"]
