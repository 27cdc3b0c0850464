"""A whole training step with dlir against the frameworks' own autodiff: a table, not a test.

    .venv/bin/python benchmarks/bench_train.py [--batch 64] [--repeat 30] [--threads 1]
        [--models mlp,cnn,...] [--no-compile] [--short]

For every sample with a classifier or tagger (mlp, resmlp, digits, cnn = LeNet, mnist
(batch norm in train mode; its dropout set to 0 so that every first loss is the same),
lstm, gru = the bidirectional GRU tagger, attention, transformer) a loss model is made
(softmax cross-entropy on the logits, or the mean squared error of the tags or
features against a target), and one SGD step (forward, backward, ``p -= lr * g``,
the loss read on the host) is timed for:

- dlir on torch, tensorflow and onnx: :class:`dlir.train.Trainer` (one static
  step graph, state kept on the target);
- torch eager: the hand-written ``torch.nn`` model of ``handwritten.py`` +
  ``loss.backward()`` + ``torch.optim.SGD``;
- torch.compile: the same, the model and loss compiled (``torch.compile``; the
  backward by AOTAutograd), the optimizer eager; compiled before timing;
- Keras + GradientTape: the hand-written Keras model, ``tf.GradientTape`` and
  ``keras.optimizers.SGD`` in one ``tf.function``;
- jax.jit: ``value_and_grad`` of the hand-written JAX model (``handwritten_jax.py``)
  and the SGD update in one jitted function. JAX is optional (``pip install jax``);
  without it the column says so.

Every contender starts from dlir's seeded init and takes the same minibatch; its
first loss must equal the one of dlir's step on the numpy reference (rtol 1e-4) before
anything is timed. Each step is fed the batch as a training loop feeds it: numpy
arrays made framework tensors in the step (``Trainer.step(**batch)``; ``torch.from_numpy``;
``tf.constant`` into the ``tf.function``'s arguments, as the TF guide's
``train_step(x, y)``; ``jnp.asarray`` into the jitted function's), not tensors captured
once as constants of the compiled step (which let XLA and grappler fold the data in).
Times are medians of --repeat steps after warm-up, the contenders interleaved
(a, b, c, a, b, c, ...), all in one process with --threads intra-op threads each
(ONNX Runtime's too). Ratios: dlir's best target over the fastest anchor, and each
dlir target over its own framework's autodiff (torch eager, GradientTape).
--short (CI's smoke run) times two small models a few times, without torch.compile.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from handwritten import HANDS, TRAIN_HANDS, Hand  # noqa: E402

LR = 0.01
SEQ = 16  # the time length of the sequence models


@dataclass(frozen=True)
class LossSpec:
    """How a sample's model becomes a loss model: which output, which loss, and its target."""

    output: int  # the model output the loss reads
    loss: str  # "ce" (labels i64[B]) or "mse" (a target shaped like the output)
    classes: int = 0
    train_mode: bool = False  # batch norm: the hand-written torch model in .train(), as dlir's step


SPECS: dict[str, LossSpec] = {
    "mlp": LossSpec(0, "ce", 10),
    "resmlp": LossSpec(0, "ce", 10),
    "digits": LossSpec(0, "ce", 10),
    "cnn": LossSpec(0, "ce", 10),
    "lstm": LossSpec(0, "ce", 5),
    "gru": LossSpec(0, "mse"),
    "attention": LossSpec(0, "mse"),
    "transformer": LossSpec(1, "ce", 3),
    "mnist": LossSpec(0, "ce", 10, train_mode=True),
}
# mnist's own dropout draws masks each contender draws differently: the benchmark sets p = 0,
# so that every first loss is the same number (the batch norms train on the batch's statistics).
NO_DROPOUT = {"mnist": ("p=0.25", "p=0.0")}
SHORT = ("mlp", "digits")


def loss_model_source(hand: Hand, spec: LossSpec, graph: Any) -> tuple[str, str]:
    """dlir source of ``<Model>Loss`` wrapping the sample's model, and its name."""
    name = f"{hand.model}BenchLoss"  # (digits.dlir has a DigitsLoss of its own)
    args = ", ".join(f"{v.name}: {v.type}" for v in graph.inputs)
    outs = [f"o{i}" for i in range(len(graph.outputs))]
    out_type = graph.outputs[spec.output][1].type
    target = "labels: i64[B]" if spec.loss == "ce" else f"target: {out_type}"
    loss = f"cross_entropy(o{spec.output}, labels)" if spec.loss == "ce" else f"mse(o{spec.output}, target)"
    src = (
        f"\nmodel {name}({args}, {target}) -> f32[] {{\n"
        f"    net = {hand.model}()\n"
        f"    {', '.join(outs)} = net({', '.join(v.name for v in graph.inputs)})\n"
        f"    return {loss}\n}}\n"
    )
    return src, name


def timeit(fns: list[Callable[[], Any]], repeat: int, warmup: int) -> list[float]:
    """Median wall time of one call of each of ``fns`` in ms, measured interleaved."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, out in zip(fns, times, strict=True):
            t = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t) * 1e3)
    return [statistics.median(t) for t in times]


# -- the contenders ---------------------------------------------------------------------------
def dlir_step(loss_graph: Any, target: str, batch: dict[str, np.ndarray]) -> Callable[[], float]:
    from dlir.train import SGD, Trainer

    trainer = Trainer(loss_graph, SGD(lr=LR), target=target, device="cpu")
    return lambda: trainer.step(**batch)


def torch_step(torch: Any, hand: Hand, spec: LossSpec, params: dict[str, np.ndarray], batch: dict[str, np.ndarray],
               compiled: bool) -> Callable[[], float]:
    import torch.nn.functional as F

    model = hand.torch(torch, params)
    if spec.train_mode:
        model.train()
    arrays = [np.ascontiguousarray(a) for a in hand.torch_in(batch)]
    want_array = batch["labels"] if spec.loss == "ce" else batch["target"]

    def loss_of(want: Any, *xs: Any) -> Any:
        out = model(*xs)
        out = out[spec.output] if isinstance(out, tuple) else out
        return F.cross_entropy(out, want) if spec.loss == "ce" else F.mse_loss(out, want)

    fn = torch.compile(loss_of) if compiled else loss_of
    opt = torch.optim.SGD(model.parameters(), lr=LR)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = fn(torch.from_numpy(want_array), *(torch.from_numpy(a) for a in arrays))  # the batch, as fed
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def keras_step(tf: Any, hand: Hand, spec: LossSpec, params: dict[str, np.ndarray],
               batch: dict[str, np.ndarray]) -> Callable[[], float]:
    keras = tf.keras
    model = hand.keras(keras, params)
    arrays = hand.keras_in(batch)
    want_array = batch["labels"] if spec.loss == "ce" else batch["target"]
    opt = keras.optimizers.SGD(learning_rate=LR)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    variables = model.trainable_variables

    # the TF guide's train_step(x, y), traced once and called as its concrete function, as dlir's
    # runner calls its step (a polymorphic tf.function's dispatch costs ~0.15 ms more a call)
    signature = [tf.TensorSpec(want_array.shape, tf.as_dtype(want_array.dtype)),
                 [tf.TensorSpec(a.shape, tf.as_dtype(a.dtype)) for a in arrays]]

    def train_step(want: Any, inputs: list[Any]) -> Any:
        with tf.GradientTape() as tape:
            out = model(inputs if len(inputs) > 1 else inputs[0], training=True)
            out = out[spec.output] if isinstance(out, (list, tuple)) else out
            loss = ce(want, out) if spec.loss == "ce" else tf.reduce_mean(tf.square(out - want))
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    step = tf.function(train_step, input_signature=signature).get_concrete_function()
    return lambda: float(step(tf.constant(want_array), [tf.constant(a) for a in arrays]))  # the batch, as fed


def jax_step(jax_mods: tuple[Any, Any, Any], sample: str, spec: LossSpec, params: dict[str, np.ndarray],
             batch: dict[str, np.ndarray], names: list[str]) -> Callable[[], float]:
    import handwritten_jax

    jax, jnp, lax = jax_mods
    model = handwritten_jax.make(jnp, lax, jax)[sample]
    arrays = [batch[n] for n in names]
    want_array = batch["labels"] if spec.loss == "ce" else batch["target"]

    def loss_of(p: Any, want: Any, inputs: list[Any]) -> Any:
        out = model(p, *inputs)
        out = out[spec.output] if isinstance(out, tuple) else out
        if spec.loss == "ce":
            logp = jax.nn.log_softmax(out, axis=-1)
            return -jnp.mean(jnp.take_along_axis(logp, want[:, None], axis=-1))
        return jnp.mean((out - want) ** 2)

    @jax.jit
    def update(p: Any, want: Any, inputs: list[Any]) -> Any:
        loss, grads = jax.value_and_grad(loss_of)(p, want, inputs)
        return loss, jax.tree_util.tree_map(lambda a, g: a - LR * g, p, grads)

    state = {"p": {k: jnp.asarray(v) for k, v in params.items()}}

    def step() -> float:  # the batch, as fed: jit's arguments, not constants folded into the program
        loss, state["p"] = update(state["p"], jnp.asarray(want_array), [jnp.asarray(a) for a in arrays])
        return float(loss)

    return step


def import_jax(threads: int) -> tuple[Any, Any, Any] | None:
    if threads:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={threads}"
    try:
        import jax
        import jax.numpy as jnp
        from jax import lax
    except ImportError:
        return None
    jax.config.update("jax_platforms", "cpu")
    return jax, jnp, lax


def _ort_threads(threads: int) -> None:
    """ONNX Runtime sessions made from here on run with ``threads`` intra-op threads."""
    from dlir.backends.onnx import runner

    made = runner._session_options

    def options(ort: Any) -> Any:
        so = made(ort)
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        return so

    runner._session_options = options  # type: ignore[assignment]


# -- the benchmark ------------------------------------------------------------------------------
DLIR_TARGETS = ("torch", "tensorflow", "onnx")
ANCHORS = ("torch eager", "torch.compile", "Keras+tape", "jax.jit")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads for every framework (0: defaults)")
    ap.add_argument("--models", default=",".join(SPECS), help="comma-separated samples")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (minutes of compiling)")
    ap.add_argument("--short", action="store_true", help="CI's smoke run: two small models, a few steps")
    args = ap.parse_args(argv)
    models = list(SHORT) if args.short else args.models.split(",")
    unknown = [m for m in models if m not in SPECS]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; choose from {', '.join(SPECS)}")
    repeat, warmup = (3, 1) if args.short else (args.repeat, 3)
    compile_torch = not (args.short or args.no_compile)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    jax_mods = None if args.short else import_jax(args.threads)
    import torch

    import dlir
    from dlir.backends.tensorflow.runner import import_tf
    from dlir.runtime.init import init_params

    tf = import_tf()
    if args.threads:
        torch.set_num_threads(args.threads)
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        _ort_threads(args.threads)

    rows = []
    for sample in models:
        hand, spec = {**HANDS, **TRAIN_HANDS}[sample], SPECS[sample]
        text = (ROOT / "samples" / f"{sample}.dlir").read_text()
        if sample in NO_DROPOUT:
            text = text.replace(*NO_DROPOUT[sample])
        fwd = dlir.loads(text, f"{sample}.dlir").graph(hand.model)
        src, loss_name = loss_model_source(hand, spec, fwd)
        prog = dlir.loads(text + src, f"{sample}.dlir")
        loss_graph = prog.graph(loss_name)
        rng = np.random.default_rng(0)
        batch = dict(hand.feeds(rng, args.batch, SEQ))
        out_type = fwd.outputs[spec.output][1].type
        if spec.loss == "ce":
            batch["labels"] = rng.integers(0, spec.classes, args.batch).astype(np.int64)
        else:
            shape = [args.batch if str(d) == "B" else SEQ if str(d) == "T" else d.value for d in out_type.shape]
            batch["target"] = rng.standard_normal(shape).astype(np.float32)
        # the seeded init every Trainer starts from, by the hand-written models' names
        params = {k[len("net.") :]: v for k, v in init_params(loss_graph, 0).items()}
        want = dlir_step(loss_graph, "numpy", batch)()  # the step's own loss: train mode (batch norm)

        steps: dict[str, Callable[[], float]] = {t: dlir_step(loss_graph, t, batch) for t in DLIR_TARGETS}
        steps["torch eager"] = torch_step(torch, hand, spec, params, batch, compiled=False)
        if compile_torch:
            steps["torch.compile"] = torch_step(torch, hand, spec, params, batch, compiled=True)
        steps["Keras+tape"] = keras_step(tf, hand, spec, params, batch)
        if jax_mods is not None:
            steps["jax.jit"] = jax_step(jax_mods, sample, spec, params, batch, [v.name for v in fwd.inputs])
        for who, step in steps.items():
            got = step()  # the loss before the first update: every contender starts from one point
            if abs(got - want) > 1e-4 * max(1.0, abs(want)):
                raise SystemExit(f"{sample}: {who}'s first loss is {got!r}, the reference's {want!r}")
        medians = dict(zip(steps, timeit(list(steps.values()), repeat, warmup), strict=True))
        rows.append((sample, medians))
        print(f"  {sample}: " + ", ".join(f"{k} {v:.2f}" for k, v in medians.items()), file=sys.stderr, flush=True)

    _print_table(rows, args, compile_torch, jax_mods is not None)
    return 0


def _print_table(rows: list[tuple[str, dict[str, float]]], args: Any, compiled: bool, has_jax: bool) -> None:
    print(f"\none SGD training step (forward, backward, update, loss to the host), batch {args.batch}, "
          f"threads {args.threads or 'default'}, median of {3 if args.short else args.repeat} steps, ms\n")
    cols = [*DLIR_TARGETS, *ANCHORS]
    head = ["model", *(f"dlir {c}" if c in DLIR_TARGETS else c for c in cols),
            "best dlir / best anchor", "dlir torch / torch eager", "dlir tf / Keras+tape"]
    table = []
    for sample, m in rows:
        best_dlir = min(m[t] for t in DLIR_TARGETS)
        best_anchor = min(v for k, v in m.items() if k in ANCHORS)
        table.append([
            sample, *(f"{m[c]:.2f}" if c in m else "-" for c in cols),
            f"{best_dlir / best_anchor:.2f}x", f"{m['torch'] / m['torch eager']:.2f}x",
            f"{m['tensorflow'] / m['Keras+tape']:.2f}x",
        ])
    widths = [max(len(str(r[i])) for r in [head, *table]) for i in range(len(head))]
    for r in [head, ["-" * w for w in widths], *table]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print("\nratios: lower is better; the goals are <= 1.00x (best dlir target vs the fastest anchor) and "
          "<= 1.05x (each target vs its own framework's autodiff)")
    if not compiled:
        print("torch.compile: not run (--short or --no-compile)")
    if not has_jax:
        print("jax.jit: not run (--short, or JAX is not installed: pip install jax)")


if __name__ == "__main__":
    raise SystemExit(main())
