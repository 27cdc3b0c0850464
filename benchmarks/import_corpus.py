"""The importer on real models, against onnx2torch and onnx2tf on the same files: a table to read, not a test.

    .venv/bin/python benchmarks/import_corpus.py [--models a,b] [--onnx2tf-python PATH] [--no-onnx2torch]

For every model of the corpus (benchmarks/corpus: torchvision, timm, transformers tiny configs,
torch.nn, Keras applications through tf2onnx; random init, exported once and cached) it prints
whether each system's result agrees with ONNX Runtime on the same file (rtol 1e-3, atol 1e-4 x the
output's scale), with its import (conversion) time and first-run time in seconds:

- dlir: ``from_onnx`` and each target's runner (numpy, torch, tensorflow, onnx);
- onnx2torch (``onnx2torch.convert``), in this venv: it installs on dlir's stack as it is;
- onnx2tf, in the interpreter ``--onnx2tf-python`` names: a venv of its own with the versions it
  pins (onnx2tf 1.29.24: tensorflow 2.19, onnx 1.19, numpy 1.26), run in a subprocess per model
  (benchmarks/corpus/onnx2tf_worker.py); without the option its column says "not run".

Then the reason of every failure, and one summary line per system: models fully passing.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from corpus import BY_NAME, CORPUS, Entry, exported, versions  # noqa: E402
from corpus.check import TARGETS, Result, check_dlir, mismatch, reference, short  # noqa: E402
from corpus.torch_models import torchvision_vision  # noqa: E402

WORKER = ROOT / "benchmarks" / "corpus" / "onnx2tf_worker.py"


def run_onnx2torch(path: Path, inputs: dict[str, np.ndarray], want: list[np.ndarray]) -> Result:
    import torch

    torchvision_vision()  # onnx2torch imports torchvision
    from onnx2torch import convert

    t0 = time.perf_counter()
    try:
        module = convert(str(path)).eval()
    except Exception as e:
        return Result(False, "convert: " + short(e), time.perf_counter() - t0)
    t1 = time.perf_counter()
    try:
        with torch.no_grad():
            out = module(*[torch.from_numpy(v) for v in inputs.values()])
    except Exception as e:
        return Result(False, "run: " + short(e), t1 - t0, time.perf_counter() - t1)
    t2 = time.perf_counter()
    outs = [o.numpy() for o in (out if isinstance(out, (tuple, list)) else [out])]
    bad = mismatch(outs, want)
    return Result(bad is None, bad or "", t1 - t0, t2 - t1)


def run_onnx2tf(python: str, path: Path, inputs: dict[str, np.ndarray], want: list[np.ndarray]) -> Result:
    with tempfile.TemporaryDirectory(prefix="onnx2tf-") as tmp:
        feeds = Path(tmp) / "inputs.npz"
        np.savez(feeds, **inputs)
        # onnx2tf rewrites the file it is given (its optimised graph, on its own onnx version): a copy,
        # so the cached export the other columns and the tests read stays what the exporter wrote
        path = Path(shutil.copy(path, Path(tmp) / path.name))
        env = {**os.environ, "OUT_DIR": tmp, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""}
        try:
            # cwd=tmp: onnx2tf writes working files (its simplified model) into the current folder
            p = subprocess.run(
                [python, str(WORKER), str(path), str(feeds)], cwd=tmp, env=env, capture_output=True, text=True,
                timeout=900,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return Result(False, "timed out after 900 s")
        lines = [x for x in p.stdout.splitlines() if x.startswith("{")]
        if not lines:
            return Result(False, f"worker exited {p.returncode}: {' '.join(p.stderr.split())[-300:]}")
        rep = json.loads(lines[-1])
        if rep["error"]:
            stage = "run: " if rep["ok_convert"] else "convert: "
            return Result(False, stage + rep["error"], rep["convert_s"], rep["run_s"])
        with np.load(rep["outputs"]) as z:
            outs = [_channels_first_if_needed(z[f"out{i}"], w) for i, w in enumerate(want) if f"out{i}" in z.files]
    bad = mismatch(outs, want)
    return Result(bad is None, bad or "", rep["convert_s"], rep["run_s"])


def _channels_first_if_needed(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """onnx2tf may leave an output channels-last without saying so: move it back where only that fits."""
    if a.shape != w.shape and a.ndim >= 3 and np.moveaxis(a, -1, 1).shape == w.shape:
        return np.moveaxis(a, -1, 1)
    return a


def cell(r: Result | None) -> str:
    if r is None:
        return "not run"
    return f"{'ok' if r.ok else 'FAIL'} {r.import_s:.1f}/{r.run_s:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", help="comma-separated corpus names (default: all)")
    ap.add_argument("--onnx2tf-python", metavar="PATH", help="the python of a venv with onnx2tf installed")
    ap.add_argument("--no-onnx2torch", action="store_true", help="leave onnx2torch out")
    args = ap.parse_args()
    entries: list[Entry] = [BY_NAME[n] for n in args.models.split(",")] if args.models else CORPUS
    systems = [*(f"dlir {t}" for t in TARGETS), "onnx2torch", "onnx2tf"]
    rows: dict[str, dict[str, Result | None]] = {}
    for e in entries:
        print(f"... {e.name}", file=sys.stderr, flush=True)
        path, inputs = exported(e)
        want = reference(path, inputs)
        _, res = check_dlir(path, inputs, want)
        row: dict[str, Result | None] = {f"dlir {t}": r for t, r in res.items()}
        row["onnx2torch"] = None if args.no_onnx2torch else run_onnx2torch(path, inputs, want)
        row["onnx2tf"] = run_onnx2tf(args.onnx2tf_python, path, inputs, want) if args.onnx2tf_python else None
        rows[e.name] = row
    print(header(args.onnx2tf_python))
    print_table(entries, rows, systems)
    return 0


def header(onnx2tf_python: str | None) -> str:
    v = versions()
    for lib in ("onnxruntime-gpu", "onnx2torch"):
        try:
            v[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            v[lib] = "none"
    lines = [
        f"import corpus, {datetime.date.today().isoformat()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; times: import (conversion) s / first run s",
        "dlir's stack: " + ", ".join(f"{k} {x}" for k, x in v.items()),
    ]
    if onnx2tf_python:
        p = subprocess.run(
            [onnx2tf_python, "-c", "import importlib.metadata as m; print(', '.join(f'{k} {m.version(k)}' "
             "for k in ('onnx2tf', 'tensorflow', 'onnx', 'numpy', 'onnxruntime')))"],
            capture_output=True, text=True,
        )  # fmt: skip
        lines.append("onnx2tf's venv: " + (p.stdout.strip() or p.stderr.strip()[-200:]))
    return "\n".join(lines) + "\n"


def print_table(entries: list[Entry], rows: dict[str, dict[str, Result | None]], systems: list[str]) -> None:
    head = ["model", "from", *systems]
    body = [[e.name, e.family, *(cell(rows[e.name][s]) for s in systems)] for e in entries]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in body:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    print("\nfailures:")
    for e in entries:
        seen: dict[str, list[str]] = {}
        for s in systems:
            r = rows[e.name][s]
            if r is not None and not r.ok:
                seen.setdefault(r.detail, []).append(s)
        for detail, who in seen.items():
            print(f"  {e.name} [{', '.join(who)}]: {detail}")
    n = len(entries)
    print("\nmodels fully passing:")
    all_dlir = sum(all(rows[e.name][f"dlir {t}"].ok for t in TARGETS) for e in entries)  # type: ignore[union-attr]
    print(f"  dlir, all four targets: {all_dlir} / {n}")
    for s in systems:
        got = [rows[e.name][s] for e in entries]
        if any(r is None for r in got):
            print(f"  {s}: not run")
        else:
            print(f"  {s}: {sum(r.ok for r in got if r is not None)} / {n}")


if __name__ == "__main__":
    sys.exit(main())
