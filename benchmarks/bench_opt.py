"""Compile cost and run cost of dlir against the frameworks' own tools: tables to read, not a test.

    .venv/bin/python benchmarks/bench_opt.py [--short] [--full] [--repeat N] [--batch 32] [--seq 32] [--threads 1]

Tables, all measured in this one run (ratios are dlir / theirs, lower is better):

1. compile cost to an ONNX ``ModelProto`` for every sample (its hand-written
   equivalents: benchmarks/handwritten.py) and for deep MLPs of N 64-wide
   ``Dense`` layers (relu, made with a ``for`` loop in the .dlir source): dlir
   in process (``dlir.loads`` -> graph -> ``-O2`` -> ``ModelProto``, i.e. from
   source text) vs ``torch.onnx.export`` with the TorchScript exporter and with
   the dynamo exporter (``dynamo=True``; needs ``onnxscript``, in the dev extra)
   and ``tf2onnx.convert.from_function`` of the hand-written models (the export
   call only: building the framework model is not counted; each exporter first
   exports a tiny model once, so its one-time set-up is not charged to the first
   row), plus dlir's time per IR node, to show the growth in N;
2. peak Python memory (tracemalloc) of dlir's compile at the largest N;
3. run cost of every sample at ``-O0`` vs ``-O2`` on every target (median of
   interleaved calls through the runner, numpy in and out);
4. a hand-written RNN (``x_t @ w`` inside its ``scan``) and the RNN samples at
   ``-O2`` with and without ``licm``, which turns the T small matmuls into one
   before the loop (the samples' stdlib layers already do it in their source);
5. bench_vs_hand.py's tables: every sample at ``-O2`` against hand-written
   code (ONNX Runtime, torch, tensorflow; same weights and inputs, agreement
   checked first) and the goals check of issue 5.

``--short`` (the CI smoke test) keeps N <= 100, three samples for compile cost
(the dynamo exporter for mlp and N = 10 only: it takes seconds per model),
mlp/cnn for run cost and four samples, tiny, against hand-written code;
``--full`` adds N = 10 000. Compile times are the best of a few runs; on a
shared machine they move by tens of percent.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import dlir  # noqa: E402
from dlir.compare import random_inputs  # noqa: E402
from dlir.passes import optimize  # noqa: E402
from bench_vs_hand import keras_function, make_case, quiet, ratio, run_all, set_threads, silence_loggers, table  # noqa: E402

WIDTH = 64


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} cores usable, Python {platform.python_version()}, {platform.system()}"


def best(n: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1e3:.1f}"


# -- the models ------------------------------------------------------------------------------


def deep_mlp_source(n: int) -> str:
    return f"""use nn
model Deep(x: f32[B, {WIDTH}]) -> f32[B, {WIDTH}] {{
    h = x
    for i in range({n}) {{
        blk = Dense({WIDTH}, {WIDTH}, act="relu")
        h = blk(h)
    }}
    return h
}}
"""


def dlir_compile(text: str, model: str | None = None) -> Any:
    from dlir.backends.onnx.export import to_model

    prog = dlir.loads(text)
    return to_model(optimize(prog.graph(model), 2))


def count_ir_nodes(text: str, model: str | None = None) -> int:
    return len(dlir.loads(text).graph(model).nodes)


def torch_deep(torch: Any, n: int) -> Any:
    nn = torch.nn
    layers: list[Any] = []
    for _ in range(n):
        layers += [nn.Linear(WIDTH, WIDTH), nn.ReLU()]
    return nn.Sequential(*layers)


def torch_export(torch: Any, module: Any, args: tuple[Any, ...], dynamic: tuple[dict[int, str], ...],
                 dynamo: bool = False) -> float:
    """Seconds of one ``torch.onnx.export`` call (TorchScript, or the dynamo exporter), its chatter silenced."""
    module.eval()
    names = [f"in{i}" for i in range(len(args))]

    def go() -> None:
        buf = io.BytesIO()
        with quiet():
            # verbose=False: the dynamo exporter prints its steps otherwise.
            torch.onnx.export(module, args, buf, dynamo=dynamo, verbose=False, input_names=names,
                              dynamic_axes=dict(zip(names, dynamic)))

    return best(1, go)


def warm_exporters(torch: Any, tf: Any, dynamo: bool) -> None:
    """One tiny export per exporter before any timing: first-call imports and set-up are not the model's cost."""
    lin = torch.nn.Linear(4, 4)
    _try(lambda: torch_export(torch, lin, (torch.zeros(2, 4),), ({0: "B"},)))
    if dynamo:
        _try(lambda: torch_export(torch, lin, (torch.zeros(2, 4),), ({0: "B"},), dynamo=True))
    w = tf.Variable(np.ones((4, 4), "f4"))
    _try(lambda: tf2onnx_export(tf, lambda x: tf.matmul(x, w) + 1.0, [tf.TensorSpec([None, 4], tf.float32)]))


def tf_deep(tf: Any, n: int) -> Any:
    rng = np.random.default_rng(0)
    ws = [tf.Variable(rng.normal(0, 0.1, (WIDTH, WIDTH)).astype("f4")) for _ in range(n)]
    # Non-zero biases: tf2onnx drops a bias add whose bias is all zeros (PITFALLS.md).
    bs = [tf.Variable(rng.normal(0, 0.1, WIDTH).astype("f4")) for _ in range(n)]

    def f(x: Any) -> Any:
        for w, b in zip(ws, bs):
            x = tf.nn.relu(tf.matmul(x, w) + b)
        return x

    return f


def tf2onnx_export(tf: Any, fn: Any, spec: list[Any]) -> float:
    """Seconds of one ``tf2onnx.convert.from_function`` call (its tracing of ``fn`` included)."""
    import tf2onnx

    def go() -> None:
        f = tf.function(fn, input_signature=spec)
        with quiet():
            tf2onnx.convert.from_function(f, input_signature=spec, opset=17)

    return best(1, go)


# -- the tables ------------------------------------------------------------------------------


def compile_tables(ns: list[int], repeat: int, tf2onnx_max: int, samples: list[str], dynamo_max: int = 1000,
                   dynamo_samples: list[str] | None = None) -> None:
    """``dynamo_max`` / ``dynamo_samples``: where the (slow: seconds per model) dynamo exporter is timed."""
    import tensorflow as tf
    import torch

    silence_loggers()
    try:
        import onnxscript  # noqa: F401

        dynamo = True
    except ImportError:
        dynamo = False
    warm_exporters(torch, tf, dynamo)

    def row(name: str, nodes: int, ours: float, ts: float | None, dy: float | None, t2: float | None) -> list[str]:
        return [name, str(nodes), ms(ours), ms(ts), ratio(ours, ts), ms(dy), ratio(ours, dy), ms(t2), ratio(ours, t2),
                f"{ours / nodes * 1e6:.0f}"]

    rows = []
    for name in samples:
        case = make_case(name, 2, 7)
        text = (ROOT / "samples" / f"{name}.dlir").read_text()
        model = case.hand.model
        ours = best(repeat, lambda: dlir_compile(text, model))
        mod = case.hand.torch(torch, case.params)
        args = tuple(torch.from_numpy(a) for a in case.hand.torch_in(case.feeds))
        ts = _try(lambda: torch_export(torch, mod, args, case.hand.dynamic))
        use_dynamo = dynamo and (dynamo_samples is None or name in dynamo_samples)
        dy = _try(lambda: torch_export(torch, mod, args, case.hand.dynamic, dynamo=True)) if use_dynamo else None
        k_in = case.hand.keras_in(case.feeds)
        kmodel = case.hand.keras(tf.keras, case.params)
        _, spec = keras_function(tf, kmodel, k_in)
        t2 = _try(lambda: tf2onnx_export(tf, lambda *xs: kmodel(list(xs) if len(xs) > 1 else xs[0], training=False),
                                         spec))
        rows.append(row(name, count_ir_nodes(text, model), ours, ts, dy, t2))
    for n in ns:
        text = deep_mlp_source(n)
        ours = best(repeat if n <= 1000 else 1, lambda: dlir_compile(text))
        mod = torch_deep(torch, n)
        x = (torch.zeros(2, WIDTH),)
        ts = _try(lambda: torch_export(torch, mod, x, ({0: "B"},)))
        dy = _try(lambda: torch_export(torch, mod, x, ({0: "B"},), dynamo=True)) if dynamo and n <= dynamo_max else None
        t2 = (_try(lambda: tf2onnx_export(tf, tf_deep(tf, n), [tf.TensorSpec([None, WIDTH], tf.float32)]))
              if n <= tf2onnx_max else None)
        rows.append(row(f"deep MLP N={n}", count_ir_nodes(text), ours, ts, dy, t2))
    header = ["model", "IR nodes", "dlir ms", "torch.onnx (TS) ms", "ratio", "dynamo ms", "ratio", "tf2onnx ms",
              "ratio", "dlir us/node"]
    table("compile cost to an ONNX ModelProto (dlir: from source text, -O2; others: the export call)", header, rows)
    if not dynamo:
        print("  (dynamo exporter: not measured, onnxscript is not installed)")
    elif max(ns) > dynamo_max or dynamo_samples is not None:
        print(f"  (dynamo exporter: measured up to N={dynamo_max}"
              + (f" and for {', '.join(dynamo_samples)} only" if dynamo_samples is not None else "")
              + "; it takes seconds per model)")
    if tf2onnx_max < max(ns):
        print(f"  (tf2onnx: measured up to N={tf2onnx_max}; it grows faster than linearly)")


def _try(fn: Callable[[], float]) -> float | None:
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - a failing exporter is a note in the table, not a crash
        print(f"  note: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}")
        return None


def memory_table(n: int) -> None:
    text = deep_mlp_source(n)
    tracemalloc.start()
    t0 = time.perf_counter()
    model = dlir_compile(text)
    took = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    size = model.ByteSize()
    table(
        f"peak memory of dlir's compile, deep MLP N={n} (tracemalloc, Python allocations)",
        ["N", "peak MiB", "ModelProto MiB", "time under tracemalloc s"],
        [[str(n), f"{peak / 2**20:.1f}", f"{size / 2**20:.1f}", f"{took:.2f}"]],
    )


def run_table(samples: list[str], repeat: int) -> None:
    rows = []
    for name in samples:
        prog = dlir.load(ROOT / "samples" / f"{name}.dlir")
        for model in prog.models:
            feeds = random_inputs(prog.graph(model), seed=0, size=8)
            for target in ("numpy", "torch", "tensorflow", "onnx"):
                runs = {level: dlir.compile(prog, target, model=model, opt_level=level) for level in (0, 2)}
                times: dict[int, list[float]] = {0: [], 2: []}
                for run in runs.values():
                    run(**feeds)  # warm-up (tracing, session start)
                for _ in range(repeat):  # interleaved, so both levels see the same machine load
                    for level, run in runs.items():
                        times[level].append(best(1, lambda: run(**feeds)))
                t = {level: statistics.median(ts) for level, ts in times.items()}
                rows.append([f"{name}:{model}", target, f"{t[0] * 1e3:.3f}", f"{t[2] * 1e3:.3f}", ratio(t[2], t[0])])
    table("run cost per call, -O0 vs -O2 (median, runner with numpy in/out, batch 8)", ["model", "target", "-O0 ms", "-O2 ms", "O2/O0"], rows)


RNN_SOURCE = """
model RNN(xs: f32[B, T, 64], h0: f32[B, 128]) -> f32[B, 128] {
    param w: f32[64, 128] = glorot_uniform
    param u: f32[128, 128] = glorot_uniform
    param b: f32[128] = zeros
    ys, h = scan x_t in xs along 1 carry h = h0 {
        h = tanh(x_t @ w + h @ u + b)
        emit h
    }
    return h
}
"""


def hoist_table(repeat: int, t_len: int) -> None:
    """-O2 without and with ``licm``: a recurrence written with ``x_t @ w`` in its scan body, and
    the RNN samples, whose stdlib layers already compute the projection before the scan (so
    licm finds little to move there: their ratio shows that, and that nothing else changed)."""
    from dlir.passes.manager import LEVELS

    without = ",".join(p for p in LEVELS[2] if p != "licm")
    rng = np.random.default_rng(0)
    cases: list[tuple[str, Any, str | None, dict[str, np.ndarray]]] = [(
        f"hand-written RNN (T={t_len})",
        dlir.loads(RNN_SOURCE),
        None,
        {"xs": rng.normal(size=(8, t_len, 64)).astype("f4"), "h0": np.zeros((8, 128), "f4")},
    )]
    for name in ("lstm", "gru"):
        prog = dlir.load(ROOT / "samples" / f"{name}.dlir")
        for model in prog.models:
            cases.append((f"{name}:{model}", prog, model, random_inputs(prog.graph(model), seed=0, size=8)))
    rows = []
    for label, prog, model, feeds in cases:
        for target in ("numpy", "torch", "tensorflow", "onnx"):
            runs = {
                "off": dlir.compile(prog, target, model=model, passes=without),
                "on": dlir.compile(prog, target, model=model, opt_level=2),
            }
            times: dict[str, list[float]] = {k: [] for k in runs}
            for run in runs.values():
                run(**feeds)
            for _ in range(repeat):
                for k, run in runs.items():
                    times[k].append(best(1, lambda: run(**feeds)))
            off, on = (statistics.median(times[k]) for k in ("off", "on"))
            rows.append([label, target, f"{off * 1e3:.3f}", f"{on * 1e3:.3f}", ratio(on, off)])
    table(
        "scan hoisting, -O2 without / with licm (hand-written RNN: x_t @ w in the body, B=8, 64 -> 128; samples: batch 8)",
        ["model", "target", "no licm ms", "licm ms", "ratio"],
        rows,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true", help="the CI smoke mode (tiny sizes, a few calls each)")
    ap.add_argument("--full", action="store_true", help="add N = 10000")
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--batch", type=int, default=32, help="batch of the dlir vs hand-written run-cost tables")
    ap.add_argument("--seq", type=int, default=32, help="time steps of their RNN and attention inputs")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads of every runtime (0: each one's default)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    # One thread count for every table: with more threads than idle cores, OpenMP's barriers turn a
    # 0.1 ms matmul into tens of ms whenever another job takes a core (seen on the shared 2-core VM).
    set_threads(args.threads)
    print(f"machine: {machine()}; intra-op threads: {args.threads or 'each runtime default'}")
    every = sorted(p.stem for p in (ROOT / "samples").glob("*.dlir"))
    if args.short:
        ns, repeat, tf2onnx_max, samples = [10, 100], args.repeat or 2, 100, ["mlp", "cnn"]
        compiled, batch, seq, hand_repeat = ["mlp", "cnn", "lstm"], 2, 4, 3
        # bench_gpu.py --cpu-dry-run (the other smoke test) covers lstm, attention, transformer and digits.
        hand_samples, dynamo_max, dynamo_samples = ["mlp", "resmlp", "cnn", "gru"], 10, ["mlp"]
    else:
        ns = [10, 100, 1000] + ([10000] if args.full else [])
        repeat, tf2onnx_max, samples = args.repeat or 3, 1000, every
        compiled, batch, seq, hand_repeat = every, args.batch, args.seq, 30
        hand_samples, dynamo_max, dynamo_samples = every, 1000, None
    compile_tables(ns, repeat, tf2onnx_max, compiled, dynamo_max, dynamo_samples)
    memory_table(max(ns))
    run_table(samples, 5 if args.short else 20)
    hoist_table(5 if args.short else 20, 16 if args.short else 64)
    run_all(hand_samples, batch, seq, hand_repeat, args.threads)
    print(f"\n(total {time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
