"""Run cost of every sample: dlir's output at -O2 against hand-written framework code, and the goals check.

    .venv/bin/python benchmarks/bench_vs_hand.py [--short] [--batch 32] [--seq 32] [--repeat 30] [--threads 1]

Tables, all measured in this one run, same inputs and same weights on both
sides (dlir's params, perturbed so no bias is zero, copied into the
hand-written models of benchmarks/handwritten.py); every pair is first checked
to compute the numpy reference's numbers (the "max diff" column) and the run
stops if one does not:

a. ONNX Runtime: dlir's ONNX vs ``torch.onnx.export`` (TorchScript) of the
   hand-written ``torch.nn`` model and ``tf2onnx`` of the hand-written Keras
   model, all three in sessions with the same options (thread count,
   ``ORT_ENABLE_ALL``); the ratio is against the faster of the two;
b. torch: the generated ``nn.Module`` vs the hand-written one, eager, both
   under ``torch.inference_mode()``;
c. tensorflow: the generated ``tf.Module`` vs the Keras model called inside a
   ``tf.function``;
d. the goals of issue 5: dlir's ONNX at most 1.0x the best exported ONNX,
   generated torch / tensorflow at most 1.05x hand-written.

Each time is the median of --repeat calls, the contenders' calls interleaved
(a, b, c, a, b, c, ...) so a busy spell of the machine hits all alike.
Ratio = dlir / hand-written: lower is better. bench_opt.py prints these tables
too; bench_gpu.py reuses this module on CUDA.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import dlir  # noqa: E402
from handwritten import HANDS, Hand, Params  # noqa: E402

ONNX_GOAL, FRAMEWORK_GOAL = 1.0, 1.05
TOL = 1e-4  # max |diff| / (1 + max |reference|) accepted as "the same model"


@dataclass
class Case:
    """A sample with its weights, inputs and numpy-reference outputs."""

    hand: Hand
    prog: Any
    params: Params
    feeds: dict[str, np.ndarray]
    want: list[np.ndarray]
    label: str = ""
    diffs: dict[str, float] = field(default_factory=dict)


def make_case(sample: str, batch: int, seq: int, seed: int = 0) -> Case:
    hand = HANDS[sample]
    prog = dlir.load(ROOT / "samples" / f"{sample}.dlir")
    ref = dlir.compile(prog, "numpy", model=hand.model)
    rng = np.random.default_rng(seed)
    # Perturb every float param: zero biases would let a converter drop the add (tf2onnx does).
    params = {
        k: (v + rng.normal(0, 0.05, v.shape)).astype(v.dtype) if v.dtype.kind == "f" else v
        for k, v in ref.params.items()
    }
    ref.load_params(params)
    feeds = hand.feeds(rng, batch, seq)
    seq_note = f", T={seq}" if any(d == {0: "B", 1: "T"} for d in hand.dynamic) else ""
    return Case(hand, prog, params, feeds, outputs(ref(**feeds)), f"{sample} (B={batch}{seq_note})")


def outputs(out: Any) -> list[np.ndarray]:
    """A model's result (one tensor, a tuple or a list, of any framework) as numpy arrays."""
    items = out if isinstance(out, (tuple, list)) else [out]
    res = []
    for o in items:
        if hasattr(o, "detach"):
            o = o.detach().cpu()
        res.append(np.asarray(o.numpy() if hasattr(o, "numpy") else o))
    return res


def check(case: Case, who: str, got: Any) -> float:
    """The scaled max |diff| of ``got`` against the reference; stops the run when it is not the same model."""
    got_l = outputs(got)
    if len(got_l) != len(case.want):
        raise SystemExit(f"{case.label} / {who}: {len(got_l)} outputs, the reference has {len(case.want)}")
    err = 0.0
    for g, w in zip(got_l, case.want):
        if g.shape != w.shape:
            raise SystemExit(f"{case.label} / {who}: output shape {g.shape}, the reference has {w.shape}")
        err = max(err, float(np.abs(g.astype(np.float64) - w).max()) / (1.0 + float(np.abs(w).max())))
    if err > TOL:
        raise SystemExit(f"{case.label} / {who}: differs from the numpy reference by {err:.2e} (scaled): "
                         "the hand-written model is not the sample's model")
    case.diffs[who] = err
    return err


def interleaved(fns: dict[str, Callable[[], Any]], repeat: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each function, the calls interleaved."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())


def ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1e3:.3f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Exporters' chatter (warnings, prints, log records) kept off the tables."""
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        yield


def silence_loggers() -> None:
    for name in ("tf2onnx", "torch.onnx", "onnxscript", "torch.export", "torch._dynamo", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)


# -- ONNX Runtime ---------------------------------------------------------------------------
def session(model: bytes, threads: int, providers: list[Any]) -> Any:
    """One ONNX Runtime session; every contender gets exactly these options."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    return ort.InferenceSession(model, so, providers=providers)


def dlir_onnx(case: Case, level: int = 2) -> bytes:
    run = dlir.compile(case.prog, "onnx", model=case.hand.model, opt_level=level, device="cpu")
    run.load_params(case.params)
    return run.model.SerializeToString()


def torch_onnx(case: Case, hand_torch: Any) -> bytes:
    """``torch.onnx.export`` (TorchScript) of the hand-written module, its batch (and time) axes symbolic."""
    import torch

    args = tuple(torch.from_numpy(a) for a in case.hand.torch_in(case.feeds))
    names = [f"in{i}" for i in range(len(args))]
    buf = io.BytesIO()
    with quiet():
        torch.onnx.export(hand_torch, args, buf, dynamo=False, opset_version=18, input_names=names,
                          dynamic_axes=dict(zip(names, case.hand.dynamic)))
    return buf.getvalue()


def tf2onnx_model(case: Case, kmodel: Any) -> bytes:
    """tf2onnx of the Keras model in a ``tf.function``, its batch axis symbolic."""
    import tensorflow as tf
    import tf2onnx

    fn, spec = keras_function(tf, kmodel, case.hand.keras_in(case.feeds))
    with quiet():
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=17)
    return proto.SerializeToString()


def keras_function(tf: Any, kmodel: Any, inputs: list[np.ndarray]) -> tuple[Any, list[Any]]:
    spec = [tf.TensorSpec([None, *a.shape[1:]], tf.as_dtype(a.dtype)) for a in inputs]

    def call(*xs: Any) -> Any:
        return kmodel(list(xs) if len(xs) > 1 else xs[0], training=False)

    return tf.function(call, input_signature=spec), spec


def ort_feeds(sess: Any, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    return {i.name: a for i, a in zip(sess.get_inputs(), arrays)}


def onnx_table(cases: list[Case], repeat: int, threads: int, providers: list[Any] | None = None,
               with_tf: bool = True, title: str = "") -> dict[str, float]:
    """Table a; returns dlir / best-of-theirs per sample. ``providers``: CPU unless given."""
    import torch

    providers = providers or ["CPUExecutionProvider"]
    keras = _keras() if with_tf else None
    rows, ratios = [], {}
    for c in cases:
        ours = session(dlir_onnx(c), threads, providers)
        sessions = {"dlir": (ours, ort_feeds(ours, [c.feeds[i.name] for i in ours.get_inputs()]))}
        ts = _try(lambda: session(torch_onnx(c, c.hand.torch(torch, c.params)), threads, providers))
        if ts is not None:
            sessions["torch.onnx"] = (ts, ort_feeds(ts, c.hand.torch_in(c.feeds)))
        if keras is not None:
            t2 = _try(lambda: session(tf2onnx_model(c, c.hand.keras(keras, c.params)), threads, providers))
            if t2 is not None:
                sessions["tf2onnx"] = (t2, ort_feeds(t2, c.hand.keras_in(c.feeds)))
        diff = max(check(c, f"onnx:{k}", s.run(None, f)) for k, (s, f) in sessions.items())
        t = interleaved({k: (lambda s=s, f=f: s.run(None, f)) for k, (s, f) in sessions.items()}, repeat)
        theirs = min((v for k, v in t.items() if k != "dlir"), default=None)
        ratios[c.hand.sample] = t["dlir"] / theirs if theirs else float("nan")
        rows.append([c.label, ms(t["dlir"]), ms(t.get("torch.onnx")), ms(t.get("tf2onnx")), ratio(t["dlir"], theirs),
                     f"{diff:.1e}"])
    table(title or f"run cost in ONNX Runtime (CPU, {threads or 'default'} thread(s), ORT_ENABLE_ALL), "
          "dlir -O2 vs exported hand-written models, median ms per call",
          ["sample", "dlir", "torch.onnx (TS)", "tf2onnx", "dlir/best", "max diff"], rows)
    return ratios


def _try(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - a failing exporter is a note under the table, not a crash
        print(f"  note: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}")
        return None


def _keras() -> Any | None:
    try:
        import tensorflow as tf

        return tf.keras
    except ImportError:
        return None


# -- torch ----------------------------------------------------------------------------------
def torch_table(cases: list[Case], repeat: int, device: str = "cpu", title: str = "") -> dict[str, float]:
    """Table b: generated vs hand-written torch.nn, eager, inference_mode; returns the ratios."""
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    rows, ratios = [], {}
    for c in cases:
        run = dlir.compile(c.prog, "torch", model=c.hand.model, opt_level=2, device=device)
        run.load_params(c.params)
        gen, hand = run.module, c.hand.torch(torch, c.params).to(device)
        ours_in = [torch.from_numpy(np.ascontiguousarray(c.feeds[v.name])).to(device) for v in run.graph.inputs]
        theirs_in = [torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in c.hand.torch_in(c.feeds)]

        def call(m: Any, xs: list[Any]) -> Any:
            out = m(*xs)
            sync()  # CUDA runs asynchronously: time the work, not the launch
            return out

        with torch.inference_mode():
            diff = max(check(c, "torch:dlir", call(gen, ours_in)), check(c, "torch:hand", call(hand, theirs_in)))
            t = interleaved({"dlir": lambda: call(gen, ours_in), "hand": lambda: call(hand, theirs_in)}, repeat)
        ratios[c.hand.sample] = t["dlir"] / t["hand"]
        rows.append([c.label, ms(t["dlir"]), ms(t["hand"]), ratio(t["dlir"], t["hand"]), f"{diff:.1e}"])
    table(title or f"run cost in torch ({device}, {torch.get_num_threads()} thread(s), eager, inference_mode), "
          "generated -O2 vs hand-written torch.nn, median ms per call",
          ["sample", "dlir", "torch.nn", "ratio", "max diff"], rows)
    return ratios


# -- tensorflow -----------------------------------------------------------------------------
def tf_table(cases: list[Case], repeat: int) -> dict[str, float]:
    """Table c: the generated tf.Module vs the Keras model inside a tf.function; returns the ratios."""
    import tensorflow as tf

    rows, ratios = [], {}
    for c in cases:
        run = dlir.compile(c.prog, "tensorflow", model=c.hand.model, opt_level=2, device="cpu")
        run.load_params(c.params)
        gen = run.module
        ours_in = [tf.constant(c.feeds[v.name]) for v in run.graph.inputs]
        k_arrays = c.hand.keras_in(c.feeds)
        kfn, _ = keras_function(tf, c.hand.keras(tf.keras, c.params), k_arrays)
        theirs_in = [tf.constant(a) for a in k_arrays]
        diff = max(check(c, "tf:dlir", gen(*ours_in)), check(c, "tf:keras", kfn(*theirs_in)))
        t = interleaved({"dlir": lambda: gen(*ours_in), "keras": lambda: kfn(*theirs_in)}, repeat)
        ratios[c.hand.sample] = t["dlir"] / t["keras"]
        rows.append([c.label, ms(t["dlir"]), ms(t["keras"]), ratio(t["dlir"], t["keras"]), f"{diff:.1e}"])
    table("run cost in tensorflow (CPU), generated tf.Module -O2 vs hand-written Keras in a tf.function, median ms",
          ["sample", "dlir", "keras", "ratio", "max diff"], rows)
    return ratios


# -- goals ----------------------------------------------------------------------------------
def goals_table(by_target: dict[str, dict[str, float]]) -> None:
    rows = []
    goals = {"onnx": ONNX_GOAL, "torch": FRAMEWORK_GOAL, "tensorflow": FRAMEWORK_GOAL}
    samples = sorted({s for r in by_target.values() for s in r})
    for s in samples:
        for target, goal in goals.items():
            r = by_target.get(target, {}).get(s)
            if r is None:
                continue
            verdict = "met" if r <= goal else f"NOT MET (+{(r / goal - 1) * 100:.1f}%)"
            rows.append([s, target, f"{r:.2f}x", f"<= {goal:.2f}x", verdict])
    table("goals (issue 5): dlir -O2 / best hand-written, per sample and target",
          ["sample", "target", "ratio", "goal", "verdict"], rows)


def set_threads(threads: int) -> None:
    """The same intra-op thread count for torch and tensorflow (ONNX Runtime gets it per session)."""
    if not threads:
        return
    import torch

    torch.set_num_threads(threads)
    try:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except (ImportError, RuntimeError):  # RuntimeError: TF already initialised; it keeps its setting
        pass


def run_all(samples: list[str], batch: int, seq: int, repeat: int, threads: int) -> None:
    """Tables a-d; bench_opt.py calls this too."""
    set_threads(threads)
    silence_loggers()
    cases = [make_case(s, batch, seq) for s in samples]
    ratios = {
        "onnx": onnx_table(cases, repeat, threads),
        "torch": torch_table(cases, repeat),
        "tensorflow": tf_table(cases, repeat),
    }
    goals_table(ratios)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true", help="tiny sizes, 3 calls each: the CI smoke mode")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=32, help="time steps of the RNN and attention inputs")
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads for every runtime (0: each one's default)")
    ap.add_argument("--samples", default=",".join(HANDS), help="comma-separated sample names")
    args = ap.parse_args(argv)
    samples = [s for s in args.samples.split(",") if s]
    if args.short:
        args.batch, args.seq, args.repeat = 2, 4, 3
    t0 = time.perf_counter()
    run_all(samples, args.batch, args.seq, args.repeat, args.threads)
    print(f"\n(total {time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
