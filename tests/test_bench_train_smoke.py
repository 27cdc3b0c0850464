"""benchmarks/bench_train.py --short runs, checks every contender's first loss and prints its table.

The times are not checked (benchmarks measure, tests do not time); what is checked is
that the smoke run reaches the table, so the first-loss agreement of every contender
(which ends the run with an error otherwise) held, and that each row has a number in
every column it ran.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_train_short_prints_the_table() -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_train.py"), "--short"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("model "))
    columns = lines[head].split("  ")
    columns = [c.strip() for c in columns if c.strip()]
    assert columns[:5] == ["model", "dlir torch", "dlir tensorflow", "dlir onnx", "torch eager"], columns
    rows = {line.split()[0]: line.split() for line in lines[head + 2 :] if line.strip() and not line.startswith(" ")}
    for model in ("mlp", "digits"):
        cells = rows[model]
        times = cells[1:8]  # dlir x3, torch eager, torch.compile (not in --short), Keras+tape, jax.jit (not in --short)
        assert times[4] == "-" and times[6] == "-", cells
        assert all(float(t) > 0 for i, t in enumerate(times) if i not in (4, 6)), cells
        assert all(c.endswith("x") and float(c[:-1]) > 0 for c in cells[8:11]), cells
    assert "torch.compile: not run" in r.stdout and "jax.jit: not run" in r.stdout
