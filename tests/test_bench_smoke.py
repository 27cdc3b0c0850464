"""The optimiser benchmark's short mode runs and prints its tables (a smoke test, never a timed assertion)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_opt_short_mode_prints_its_tables() -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_opt.py"), "--short"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    for title in ("machine:", "compile cost to an ONNX ModelProto", "peak memory", "run cost per call"):
        assert title in out, out
    assert "deep MLP N=100" in out and "mlp:MLP" in out
