"""benchmarks/bench_train.py --short runs and prints its table (the numbers are not checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_train_short_prints_the_table() -> None:
    # --short takes < 30 s on a quiet machine (most of it importing tensorflow and torch); the
    # timeout leaves room for a busy CI box.
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_train.py"), "--short"],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:3] == ["model", "target", "gradients"])
    rows = [line for line in lines[head + 2:] if line.strip()][:10]
    # per model: torch dlir / autograd / torch.nn, tensorflow dlir / GradientTape
    for model in ("digits.dlir", "cnn.dlir"):
        mine = [r for r in rows if r.startswith(model)]
        assert [r.split()[1 if model == "digits.dlir" else 2] for r in mine] == ["torch"] * 3 + ["tensorflow"] * 2
        ratios = [r.split()[-1] for r in mine if "dlir grad module" not in r]
        assert len(ratios) == 3 and all(x.endswith("x") and float(x[:-1]) > 0 for x in ratios), mine
