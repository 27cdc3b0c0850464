"""Compile cost and run cost of dlir against the frameworks' own ONNX exporters: tables to read, not a test.

    .venv/bin/python benchmarks/bench_opt.py [--short] [--full] [--repeat N]

Tables, all measured in this one run (ratios are dlir / theirs, lower is better):

1. compile cost to an ONNX ``ModelProto`` for the samples with a hand-written
   equivalent (mlp, cnn, lstm) and for deep MLPs of N 64-wide ``Dense`` layers
   (relu, made with a ``for`` loop in the .dlir source): dlir in process
   (``dlir.loads`` -> graph -> ``-O2`` -> ``ModelProto``, i.e. from source text)
   vs ``torch.onnx.export`` (TorchScript exporter; the dynamo exporter only when
   ``onnxscript`` is installed) and ``tf2onnx.convert.from_function`` of the
   hand-written models (the export call only: building the framework model is
   not counted for them), plus dlir's time per IR node, to show the growth in N;
2. peak Python memory (tracemalloc) of dlir's compile at the largest N;
3. run cost of every sample at ``-O0`` vs ``-O2`` on every target (median of
   interleaved calls through the runner, numpy in and out);
4. a hand-written RNN (``x_t @ w`` inside its ``scan``) at ``-O2`` with and
   without ``licm``, which turns the T small matmuls into one before the loop.

``--short`` (the CI smoke test) keeps N <= 100, the three samples for compile
cost and mlp/cnn for run cost; ``--full`` adds N = 10 000. Wall times are the best
of a few runs; on a shared machine they move by tens of percent.
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
import warnings
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


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())


def ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1e3:.1f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


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


def torch_models(torch: Any) -> dict[str, tuple[Any, tuple[int, ...]]]:
    import bench_zoo

    nn = torch.nn
    return {
        "mlp": (nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)), (2, 784)),
        "cnn": (bench_zoo.torch_lenet(torch), (2, 1, 28, 28)),
        "lstm": (bench_zoo.torch_lstm_classifier(torch), (2, 7, 32)),
    }


def torch_deep(torch: Any, n: int) -> Any:
    nn = torch.nn
    layers: list[Any] = []
    for _ in range(n):
        layers += [nn.Linear(WIDTH, WIDTH), nn.ReLU()]
    return nn.Sequential(*layers)


def torch_export(torch: Any, module: Any, shape: tuple[int, ...], dynamo: bool = False) -> float:
    x = torch.zeros(shape)
    module.eval()

    def go() -> None:
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (x,), buf, dynamo=dynamo, input_names=["x"], dynamic_axes={"x": {0: "B"}})

    return best(1, go)


def tf_functions(tf: Any, keras: Any) -> dict[str, tuple[Any, list[Any]]]:
    import bench_zoo

    rng = np.random.default_rng(0)

    def mlp() -> Any:
        w1, b1 = tf.Variable(rng.normal(size=(784, 256)).astype("f4")), tf.Variable(rng.normal(size=256).astype("f4"))
        w2, b2 = tf.Variable(rng.normal(size=(256, 10)).astype("f4")), tf.Variable(rng.normal(size=10).astype("f4"))
        return lambda x: tf.matmul(tf.nn.relu(tf.matmul(x, w1) + b1), w2) + b2

    cnn_p = dlir.compile(dlir.load(ROOT / "samples" / "cnn.dlir"), "numpy").params
    lstm_p = dlir.compile(dlir.load(ROOT / "samples" / "lstm.dlir"), "numpy").params
    return {
        "mlp": (mlp(), [tf.TensorSpec([None, 784], tf.float32)]),
        "cnn": (bench_zoo.keras_lenet(keras, cnn_p), [tf.TensorSpec([None, 28, 28, 1], tf.float32)]),
        "lstm": (bench_zoo.keras_lstm_classifier(keras, lstm_p), [tf.TensorSpec([None, None, 32], tf.float32)]),
    }


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
    import tf2onnx

    def go() -> None:
        f = tf.function(fn, input_signature=spec)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tf2onnx.convert.from_function(f, input_signature=spec, opset=17)

    return best(1, go)


# -- the tables ------------------------------------------------------------------------------


def compile_tables(ns: list[int], repeat: int, tf2onnx_max: int) -> None:
    import logging

    import tensorflow as tf
    import torch

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    keras = tf.keras
    try:
        import onnxscript  # noqa: F401

        dynamo = True
    except ImportError:
        dynamo = False

    rows = []
    tmods = torch_models(torch)
    tfuns = tf_functions(tf, keras)
    for name in ("mlp", "cnn", "lstm"):
        text = (ROOT / "samples" / f"{name}.dlir").read_text()
        ours = best(repeat, lambda: dlir_compile(text))
        mod, shape = tmods[name]
        ts = _try(lambda: torch_export(torch, mod, shape))
        dy = _try(lambda: torch_export(torch, mod, shape, dynamo=True)) if dynamo else None
        fn, spec = tfuns[name]
        t2 = _try(lambda: tf2onnx_export(tf, fn, spec))
        rows.append([name, str(count_ir_nodes(text)), ms(ours), ms(ts), ratio(ours, ts), ms(dy), ratio(ours, dy), ms(t2), ratio(ours, t2)])
    for n in ns:
        text = deep_mlp_source(n)
        nodes = count_ir_nodes(text)
        ours = best(repeat if n <= 1000 else 1, lambda: dlir_compile(text))
        mod = torch_deep(torch, n)
        ts = _try(lambda: torch_export(torch, mod, (2, WIDTH)))
        dy = _try(lambda: torch_export(torch, mod, (2, WIDTH), dynamo=True)) if dynamo else None
        t2 = _try(lambda: tf2onnx_export(tf, tf_deep(tf, n), [tf.TensorSpec([None, WIDTH], tf.float32)])) if n <= tf2onnx_max else None
        rows.append([f"deep MLP N={n}", str(nodes), ms(ours), ms(ts), ratio(ours, ts), ms(dy), ratio(ours, dy), ms(t2), ratio(ours, t2)])
        rows[-1].append(f"{ours / nodes * 1e6:.0f}")
    for r in rows:
        if len(r) == 9:
            r.append(f"{float(r[2]) * 1e3 / int(r[1]):.0f}")
    header = ["model", "IR nodes", "dlir ms", "torch.onnx (TS) ms", "ratio", "dynamo ms", "ratio", "tf2onnx ms", "ratio", "dlir us/node"]
    table("compile cost to an ONNX ModelProto (dlir: from source text, -O2; others: the export call)", header, rows)
    if not dynamo:
        print("  (dynamo exporter: not measured, onnxscript is not installed)")
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
    """A recurrence written with ``x_t @ w`` in the scan body, at -O2 without and with ``licm``."""
    prog = dlir.loads(RNN_SOURCE)
    rng = np.random.default_rng(0)
    feeds = {"xs": rng.normal(size=(8, t_len, 64)).astype("f4"), "h0": np.zeros((8, 128), "f4")}
    without = "fold,simplify,dce,cse,fuse"
    rows = []
    for target in ("numpy", "torch", "tensorflow", "onnx"):
        runs = {
            "off": dlir.compile(prog, target, passes=without),
            "on": dlir.compile(prog, target, opt_level=2),
        }
        times: dict[str, list[float]] = {k: [] for k in runs}
        for run in runs.values():
            run(**feeds)
        for _ in range(repeat):
            for k, run in runs.items():
                times[k].append(best(1, lambda: run(**feeds)))
        off, on = (statistics.median(times[k]) for k in ("off", "on"))
        rows.append([target, f"{off * 1e3:.3f}", f"{on * 1e3:.3f}", ratio(on, off)])
    table(
        f"scan hoisting: a hand-written RNN (x_t @ w in the body), B=8, T={t_len}, 64 -> 128; -O2 without / with licm",
        ["target", "no licm ms", "licm ms", "ratio"],
        rows,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true", help="the CI smoke mode (under about a minute)")
    ap.add_argument("--full", action="store_true", help="add N = 10000")
    ap.add_argument("--repeat", type=int, default=None)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    print(f"machine: {machine()}")
    if args.short:
        ns, repeat, tf2onnx_max, samples = [10, 100], args.repeat or 2, 100, ["mlp", "cnn"]
    else:
        ns = [10, 100, 1000] + ([10000] if args.full else [])
        repeat, tf2onnx_max = args.repeat or 3, 1000
        samples = sorted(p.stem for p in (ROOT / "samples").glob("*.dlir"))
    compile_tables(ns, repeat, tf2onnx_max)
    memory_table(max(ns))
    run_table(samples, 5 if args.short else 20)
    hoist_table(5 if args.short else 20, 16 if args.short else 64)
    print(f"\n(total {time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
