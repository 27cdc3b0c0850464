"""dlir's generated code against hand-written framework code: a table to read, not a test.

    .venv/bin/python benchmarks/bench_zoo.py [--batch 64] [--seq 32] [--repeat 30] [--threads 1]

For samples/cnn.dlir (LeNet, x [B, 1, 28, 28]) and samples/lstm.dlir (LSTM(32, 64)
+ Dense, x [B, T, 32]) it times, with the same weights and inputs:

- torch: the generated ``nn.Module`` vs a hand-written ``torch.nn`` module
  (``nn.Conv2d``/``nn.MaxPool2d``/``nn.Linear``; ``nn.LSTM`` + ``nn.Linear``), eval, inference_mode;
- tensorflow: the generated ``tf.Module`` (its traced ``tf.function``) vs a
  hand-written Keras model called inside a ``tf.function`` (Keras takes NHWC
  images, as Keras code is written; dlir's module takes NCHW and transposes inside);
- onnx: dlir's ONNX model vs ``torch.onnx.export`` of the hand-written module,
  both in ONNX Runtime with the same session options.

Each time is the median of --repeat calls after warm-up, dlir's and the
hand-written calls interleaved; the minimum is printed too (on a shared machine
it is the least disturbed). Every pair is first checked to compute the same
numbers as the numpy reference. Ratio = dlir / hand-written (lower is better).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def timeit(
    a: Callable[[], Any], b: Callable[[], Any], repeat: int, warmup: int = 3
) -> tuple[float, float, float, float]:
    """(median, min) wall time of one call of ``a`` and of ``b``, in ms, measured interleaved
    (a, b, a, b, ...) so that a busy spell of the machine hits both alike."""
    for _ in range(warmup):
        a()
        b()
    ta: list[float] = []
    tb: list[float] = []
    for _ in range(repeat):
        for fn, out in ((a, ta), (b, tb)):
            t = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ta), min(ta), statistics.median(tb), min(tb)


# The hand-written equivalents live in handwritten.py (bench_opt and bench_vs_hand use them too).
from handwritten import (  # noqa: E402
    keras_lenet,
    keras_lstm_classifier,
    torch_lenet,
    torch_lenet_state,
    torch_lstm_classifier,
    torch_lstm_state,
)


# -- the benchmark ----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq", type=int, default=32, help="sequence length of the LSTM input")
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads for every runtime (0: each one's default)")
    ap.add_argument("-O", "--opt-level", type=int, default=2, help="dlir optimisation level of the compiled models")
    args = ap.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import onnxruntime as ort
    import tensorflow as tf
    import torch

    import dlir
    from backends.onnx import generate as onnx_generate

    if args.threads:
        torch.set_num_threads(args.threads)
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    def session(model_bytes: bytes) -> Any:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        if args.threads:
            so.intra_op_num_threads = args.threads
            so.inter_op_num_threads = 1
        return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])

    rng = np.random.default_rng(0)
    cases = [
        ("cnn.dlir LeNet", "cnn.dlir", "LeNet", rng.standard_normal((args.batch, 1, 28, 28)).astype(np.float32),
         torch_lenet, torch_lenet_state, keras_lenet, lambda x: x.transpose(0, 2, 3, 1).copy()),
        (f"lstm.dlir T={args.seq}", "lstm.dlir", "LSTMClassifier",
         rng.standard_normal((args.batch, args.seq, 32)).astype(np.float32),
         torch_lstm_classifier, torch_lstm_state, keras_lstm_classifier, lambda x: x),
    ]
    rows: list[tuple[str, str, float, float, float, float]] = []
    for label, file, model, x, make_torch, torch_state, make_keras, keras_input in cases:
        prog = dlir.load(ROOT / "samples" / file)
        graph = dlir.compile(prog, "numpy", model=model, opt_level=args.opt_level).graph
        ref = dlir.compile(prog, "numpy", model=model)
        params = ref.params
        want = ref(x=x)

        # torch
        gen = dlir.compile(prog, "torch", model=model, opt_level=args.opt_level).module.eval()
        hand = make_torch(torch).eval()
        hand.load_state_dict({k: torch.from_numpy(v) for k, v in torch_state(params).items()})
        xt = torch.from_numpy(x)
        with torch.inference_mode():
            _agree(label, "torch", want, gen(xt).numpy(), hand(xt).numpy())
            rows.append((label, "torch", *timeit(lambda: gen(xt), lambda: hand(xt), args.repeat)))

        # tensorflow
        tfmod = dlir.compile(prog, "tensorflow", model=model, opt_level=args.opt_level).module
        kmodel = make_keras(keras, params)
        xk = tf.constant(keras_input(x))
        spec = tf.TensorSpec([None, *xk.shape[1:]], tf.float32)
        kfn = tf.function(lambda v: kmodel(v, training=False), input_signature=[spec])
        xtf = tf.constant(x)
        _agree(label, "tensorflow", want, tfmod(xtf).numpy(), kfn(xk).numpy())
        rows.append((label, "tensorflow", *timeit(lambda: tfmod(xtf).numpy(), lambda: kfn(xk).numpy(), args.repeat)))

        # onnx
        ours = session(onnx_generate(graph))
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "hand.onnx")
            warnings.filterwarnings("ignore", category=UserWarning)  # the LSTM batch-size note
            warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript exporter
            torch.onnx.export(hand, (xt,), path, dynamo=False, opset_version=18, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "B", 1: "T"} if x.ndim == 3 else {0: "B"}})
            theirs = session(Path(path).read_bytes())
        ours_in, theirs_in = ours.get_inputs()[0].name, theirs.get_inputs()[0].name
        _agree(label, "onnx", want, ours.run(None, {ours_in: x})[0], theirs.run(None, {theirs_in: x})[0])
        rows.append((label, "onnx (ORT)", *timeit(lambda: ours.run(None, {ours_in: x}),
                                                  lambda: theirs.run(None, {theirs_in: x}), args.repeat)))

    print(f"\nbatch {args.batch}, threads {args.threads or 'default'}, dlir -O{args.opt_level}, "
          f"median (min) of {args.repeat} calls, ms\n")
    head = ("model", "target", "dlir", "hand-written", "ratio", "ratio of mins")
    table = [
        (m, t, f"{dm:8.3f} ({dn:.3f})", f"{hm:8.3f} ({hn:.3f})", f"{dm / hm:5.2f}x", f"{dn / hn:5.2f}x")
        for m, t, dm, dn, hm, hn in rows
    ]
    widths = [max(len(str(r[i])) for r in [head, *table]) for i in range(len(head))]
    for r in [head, tuple("-" * w for w in widths), *table]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    print("\nhand-written: torch.nn module | Keras model in a tf.function (NHWC input) | "
          "torch.onnx.export of the torch.nn module")
    return 0


def _agree(label: str, target: str, want: np.ndarray, ours: np.ndarray, theirs: np.ndarray) -> None:
    for who, got in (("dlir", ours), ("hand-written", theirs)):
        err = float(np.abs(np.asarray(got, np.float64) - want).max())
        if err > 1e-4:
            raise SystemExit(f"{label} / {target}: the {who} code differs from the numpy reference by {err:.2e}")


if __name__ == "__main__":
    raise SystemExit(main())
