"""The benchmarks' short modes run and print their tables (smoke tests, never a timed assertion).

Both also prove that the hand-written torch.nn / Keras models of
benchmarks/handwritten.py compute the samples' numbers: the scripts check every
pair against the numpy reference before timing and exit non-zero otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_script(*args: str) -> str:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r.stdout


def table_rows(out: str, title: str) -> list[str]:
    """The rows of the table whose title starts with ``title`` (after its header and rule)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rows = []
    for line in lines[start + 3 :]:
        if not line.strip():
            break
        rows.append(line)
    return rows


@pytest.mark.slow
def test_bench_opt_short_mode_prints_its_tables() -> None:
    out = run_script(str(ROOT / "benchmarks" / "bench_opt.py"), "--short")
    for title in ("machine:", "compile cost to an ONNX ModelProto", "peak memory", "run cost per call",
                  "scan hoisting", "run cost in ONNX Runtime", "run cost in torch", "run cost in tensorflow",
                  "goals (issue 5)"):
        assert title in out, out
    assert "deep MLP N=100" in out and "mlp:MLP" in out
    assert "dynamo ms" in out and "torch.onnx (TS)" in out and "tf2onnx" in out
    # licm on/off: the hand-written RNN and both RNN samples, on every target.
    hoist = [r.split()[0] for r in table_rows(out, "scan hoisting")]
    assert hoist.count("lstm:LSTMClassifier") == 4 and hoist.count("gru:BiGRUTagger") == 4, hoist
    # Every sample of the short mode has a row in each dlir-vs-hand-written table, with its agreement.
    for title in ("run cost in ONNX Runtime", "run cost in torch", "run cost in tensorflow"):
        rows = table_rows(out, title)
        assert [r.split()[0] for r in rows] == ["mlp", "resmlp", "cnn", "gru"], out
        assert all(float(r.split()[-1]) < 1e-4 for r in rows), rows  # the max diff column
    goals = table_rows(out, "goals (issue 5)")
    assert len(goals) == 4 * 3, goals
    assert all(r.split()[5] == "met" or "NOT MET (+" in r for r in goals), goals  # a verdict, never a timing check


@pytest.mark.slow
def test_bench_gpu_cpu_dry_run_prints_its_tables() -> None:
    out = run_script(str(ROOT / "benchmarks" / "bench_gpu.py"), "--cpu-dry-run",
                     "--samples", "lstm,attention,transformer,digits")
    assert "CPU dry run" in out
    for title in ("GPU run cost in torch", "GPU run cost in ONNX Runtime", "goals (issue 5)"):
        assert title in out, out
    for title in ("GPU run cost in torch", "GPU run cost in ONNX Runtime"):
        rows = table_rows(out, title)
        assert [r.split()[0] for r in rows] == ["lstm", "attention", "transformer", "digits"], out
        assert all(float(r.split()[-1]) < 1e-4 for r in rows), rows


def test_bench_gpu_without_a_gpu_says_so_and_exits_0() -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the script would measure")
    out = run_script(str(ROOT / "benchmarks" / "bench_gpu.py"))
    assert out.strip().splitlines() == ["bench_gpu: no CUDA GPU here (torch sees none); nothing measured"]
