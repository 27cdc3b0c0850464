"""Optimizers as IR: one static training-step graph (forward, backward, update).

:func:`train_step_graph` takes a loss model, differentiates it with
:func:`dlir.autodiff.autodiff`, and appends the optimizer's update as ordinary
dlir ops. The result is a graph with no trainable params:

- inputs: the loss model's data inputs, then every trainable param (``fc1.w``),
  then the optimizer state (``state.momentum.fc1.w``; ``state.m.fc1.w``,
  ``state.v.fc1.w`` and the scalar step counter ``state.step``), then the
  learning rate ``hyper.lr`` (f32 scalar: a schedule needs no recompile);
- outputs: the loss (under its own name), then ``new.<buffer>`` for each buffer a
  train-mode graph updates (batch-norm running statistics, which are inputs too),
  then ``new.<name>`` for every param and state input, in the same order.

Because it is ordinary IR it verifies, runs through ``-O2`` and lowers on every
target: a whole step is one ``tf.function``, one ONNX model, one torch
``forward``. Buffers that nothing updates stay params of the step graph.

The updates follow PyTorch's ``torch.optim.SGD`` and ``torch.optim.Adam``
(single-tensor, ``maximize=False``): zero-initialised state reproduces PyTorch's
first step, since SGD's buffer starts as the first gradient (no dampening) and
Adam's moments start at zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dlir.autodiff import GradBuilder, autodiff
from dlir.autodiff.transform import prune
from dlir.errors import UsageError, did_you_mean
from dlir.ir.graph import Graph, Value
from dlir.ir.types import DType, TensorType

NEW = "new."  # prefix of an updated input among the step graph's outputs
STATE = "state."  # prefix of optimizer-state inputs
LR = "hyper.lr"  # the learning-rate input: a schedule changes it between steps without recompiling
GRAD = "grad."  # prefix of a gradient among a gradient graph's outputs and an update graph's inputs


@dataclass(frozen=True)
class Optimizer:
    """An update rule that emits dlir ops. Subclasses set ``name``, ``slots``, ``counters``."""

    name: ClassVar[str] = ""
    slots: ClassVar[tuple[str, ...]] = ()  # per-param state, each shaped like the param
    counters: ClassVar[tuple[str, ...]] = ()  # scalar f32 state shared by all params

    @property
    def state_slots(self) -> tuple[str, ...]:
        return self.slots

    def begin(self, b: GradBuilder, counters: dict[str, Value]) -> dict[str, Value]:
        """Emit what every param's update shares; returns the new counters (and scratch values)."""
        return {}

    def update(
        self, b: GradBuilder, p: Value, g: Value, state: dict[str, Value], shared: dict[str, Value]
    ) -> tuple[Value, dict[str, Value]]:
        """``(new param, new per-param state)`` for one param ``p`` with gradient ``g``."""
        raise NotImplementedError

    def init_state(self, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Zero state for ``params``, keyed by the step graph's input names."""
        out = {f"{STATE}{s}.{n}": np.zeros_like(v) for s in self.state_slots for n, v in params.items()}
        out.update({f"{STATE}{c}": np.zeros((), np.float32) for c in self.counters})
        return out


@dataclass(frozen=True)
class SGD(Optimizer):
    """``torch.optim.SGD``: ``d = g + wd*p``; ``buf = momentum*buf + d``; ``p -= lr*buf``
    (``p -= lr*(d + momentum*buf)`` with ``nesterov``)."""

    name: ClassVar[str] = "sgd"
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False

    @property
    def state_slots(self) -> tuple[str, ...]:
        return ("momentum",) if self.momentum else ()

    def update(
        self, b: GradBuilder, p: Value, g: Value, state: dict[str, Value], shared: dict[str, Value]
    ) -> tuple[Value, dict[str, Value]]:
        d = b.add(g, b.scale(p, self.weight_decay)) if self.weight_decay else g
        new_state: dict[str, Value] = {}
        if self.momentum:
            buf = b.add(b.scale(state["momentum"], self.momentum), d)
            new_state["momentum"] = buf
            d = b.add(d, b.scale(buf, self.momentum)) if self.nesterov else buf
        return b.sub(p, b.mul(d, _like(b, shared["lr"], p))), new_state


@dataclass(frozen=True)
class Adam(Optimizer):
    """``torch.optim.Adam`` with bias correction; ``state.step`` counts the steps taken."""

    name: ClassVar[str] = "adam"
    slots: ClassVar[tuple[str, ...]] = ("m", "v")
    counters: ClassVar[tuple[str, ...]] = ("step",)
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0

    def begin(self, b: GradBuilder, counters: dict[str, Value]) -> dict[str, Value]:
        t = b.add(counters["step"], b.const(1.0, counters["step"]))
        one = b.const(1.0, t)
        bc1 = b.sub(one, b.op("pow", b.const(self.beta1, t), t))  # 1 - beta1**t
        bc2 = b.sub(one, b.op("pow", b.const(self.beta2, t), t))
        step_size = b.div(counters["lr"], bc1)
        return {"step": t, "_step_size": step_size, "_bc2_sqrt": b.op("sqrt", bc2)}

    def update(
        self, b: GradBuilder, p: Value, g: Value, state: dict[str, Value], shared: dict[str, Value]
    ) -> tuple[Value, dict[str, Value]]:
        if self.weight_decay:
            g = b.add(g, b.scale(p, self.weight_decay))
        m = b.add(state["m"], b.scale(b.sub(g, state["m"]), 1.0 - self.beta1))  # torch: m.lerp_(g, 1 - beta1)
        v = b.add(b.scale(state["v"], self.beta2), b.scale(b.mul(g, g), 1.0 - self.beta2))
        denom = b.add(b.div(b.op("sqrt", v), shared["_bc2_sqrt"]), b.const(self.eps, v))
        new_p = b.sub(p, b.mul(shared["_step_size"], b.div(m, denom)))
        return new_p, {"m": m, "v": v}


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam}


def make_optimizer(name: str, **options: float) -> Optimizer:
    """An optimizer by name (``sgd``, ``adam``) with keyword options (``lr=0.1``)."""
    if name not in OPTIMIZERS:
        raise UsageError(f"unknown optimizer '{name}'", hint=did_you_mean(name, OPTIMIZERS) or "optimizers: sgd, adam")
    return OPTIMIZERS[name](**options)  # type: ignore[arg-type]


def train_step_graph(
    graph: Graph, optimizer: Optimizer, output: str | None = None, opt_level: int = 2, target: str | None = None
) -> Graph:
    """One training step of the loss model ``graph`` as a graph of its own (see the module doc).

    Args:
        graph: a model with a float scalar output (the loss); not changed.
        optimizer: the update rule (:class:`SGD`, :class:`Adam`).
        output: which output is the loss (default: the only one).
        opt_level: the ``dlir.passes`` level run over the result.
        target: the target the step is compiled for, whose passes join the level's
            (``-O3`` for tensorflow adds ``layout``); None: the target-independent ones.
    """
    g, loss, buffer_outs, params, grads = _differentiated(graph, output)
    outputs = [loss, *buffer_outs, *_append_update(g, graph, optimizer, params, grads)]
    return _finish(g, outputs, f"{graph.name}Step", opt_level, target)


def gradient_graph(graph: Graph, output: str | None = None, opt_level: int = 2, target: str | None = None) -> Graph:
    """The first half of a data-parallel step (DESIGN.md section 9): no update.

    Inputs: the loss model's data inputs, every trainable param, the buffers a
    train-mode graph updates. Outputs: the loss, ``new.<buffer>``, then
    ``grad.<param>`` for every trainable param, in order (gradients of the loss as
    the model defines it, a batch mean: the caller scales them to the summed loss).
    """
    g, loss, buffer_outs, params, grads = _differentiated(graph, output)
    outputs = [loss, *buffer_outs, *((GRAD + p.name, gr) for p, gr in zip(params, grads, strict=True))]
    return _finish(g, outputs, f"{graph.name}Gradient", opt_level, target)


def update_graph(graph: Graph, optimizer: Optimizer, opt_level: int = 2, target: str | None = None) -> Graph:
    """The second half of a data-parallel step: the optimizer's update of ``graph``'s trainable params.

    Inputs: every trainable param, ``grad.<param>`` (the reduced gradients), the
    optimizer state and ``hyper.lr``. Outputs: ``new.<param>`` and ``new.<state>``,
    as :func:`train_step_graph` writes them.
    """
    g = Graph(f"{graph.name}Update", loc=graph.loc)
    params = [g.add_input(p.name, p.type, p.loc) for p in graph.trainable]
    grads = [g.add_input(GRAD + p.name, p.type, p.loc) for p in graph.trainable]
    return _finish(g, _append_update(g, graph, optimizer, params, grads), g.name, opt_level, target)


def _differentiated(
    graph: Graph, output: str | None
) -> tuple[Graph, tuple[str, Value], list[tuple[str, Value]], list[Value], list[Value]]:
    """``graph`` differentiated, its params and updated buffers made inputs:
    ``(graph, (loss name, loss), new.<buffer> outputs, params, their gradients)``."""
    # A train-mode graph (dlir.train.modes) also returns new.<buffer>: the new running statistics.
    updated = [(n, v) for n, v in graph.outputs if n.startswith(NEW)]
    loss_output = output if output is not None else next(n for n, _ in graph.outputs if not n.startswith(NEW))
    g = autodiff(_before_autodiff(graph), output=loss_output)
    n_grads = len(graph.trainable)
    loss = next(o for o in g.outputs if o[0] == loss_output)
    grads = [v for _, v in g.outputs[-n_grads:]] if n_grads else []
    buffer_outs = [(n, v) for n, v in g.outputs if n.startswith(NEW)]
    params = list(g.trainable)
    _params_to_inputs(g, params)
    # Buffers with new values are read and written by the step, like optimizer state.
    names = {n[len(NEW) :] for n, _ in updated}
    _params_to_inputs(g, [p for p in g.params if p.name in names])
    return g, loss, buffer_outs, params, grads


def _before_autodiff(graph: Graph) -> Graph:
    """``graph`` with its algebraic identities simplified before it is differentiated.

    A GELU written out (``0.5 * x * (1 + tanh(...))``) becomes one ``gelu`` op here, whose VJP is
    the one ``gelu_grad`` kernel; simplified after autodiff instead, the backward would already
    read the pieces (each intermediate then has two readers and the GELU is no longer recognised).
    """
    from dlir.passes import optimize

    return optimize(graph, passes="simplify,dce")


def _append_update(
    g: Graph, source: Graph, optimizer: Optimizer, params: list[Value], grads: list[Value]
) -> list[tuple[str, Value]]:
    """Add the optimizer's state and ``hyper.lr`` inputs to ``g`` and its update of ``params``;
    returns the ``new.<param>`` then ``new.<state>`` outputs."""
    b = GradBuilder(g, source.loc, "upd")
    state = {s: [g.add_input(f"{STATE}{s}.{p.name}", p.type) for p in params] for s in optimizer.state_slots}
    counters = {c: g.add_input(f"{STATE}{c}", TensorType(DType.f32, ())) for c in optimizer.counters}
    lr = g.add_input(LR, TensorType(DType.f32, ()))
    shared = {"lr": lr, **optimizer.begin(b, {**counters, "lr": lr})}
    outputs: list[tuple[str, Value]] = []
    new_state: dict[str, list[Value]] = {s: [] for s in optimizer.state_slots}
    for i, (p, gr) in enumerate(zip(params, grads, strict=True)):
        b.name = "new." + p.name
        new_p, st = optimizer.update(b, p, gr, {s: vs[i] for s, vs in state.items()}, shared)
        outputs.append((NEW + p.name, new_p))
        for s in optimizer.state_slots:
            new_state[s].append(st[s])
    for s in optimizer.state_slots:
        outputs += [(NEW + v.name, nv) for v, nv in zip(state[s], new_state[s], strict=True)]
    outputs += [(NEW + v.name, shared[c]) for c, v in counters.items()]
    return outputs


def _finish(g: Graph, outputs: list[tuple[str, Value]], name: str, opt_level: int, target: str | None) -> Graph:
    from dlir.ir.verifier import verify
    from dlir.passes import optimize

    g.outputs = outputs
    g.name = name
    prune(g)
    verify(g)
    return optimize(g, opt_level, target=target)


def _like(b: GradBuilder, scalar: Value, p: Value) -> Value:
    """An f32 scalar input in ``p``'s dtype."""
    return scalar if scalar.type.dtype == p.type.dtype else b.cast(scalar, p.type.dtype)


def _params_to_inputs(g: Graph, params: list[Value]) -> None:
    """Trainable params become inputs (same Values, so every use follows); buffers stay."""
    for p in params:
        g.params.remove(p)
        p.kind, p.init = "input", None
        g.inputs.append(p)


__all__ = [
    "Optimizer",
    "SGD",
    "Adam",
    "OPTIMIZERS",
    "make_optimizer",
    "train_step_graph",
    "gradient_graph",
    "update_graph",
    "NEW",
    "STATE",
    "LR",
    "GRAD",
]
