"""Generated torch and tensorflow files stand on their framework alone (DESIGN.md section 6).

- the seed's init written into each file gives dlir's numbers for every init kind and dtype;
- each sample's generated file runs in an interpreter where dlir cannot be imported
  (``python -S`` with only the venv's site-packages on the path, so the editable
  install's finder never loads) and computes what the numpy reference computes.
"""

from __future__ import annotations

import json
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import dlir
from dlir.compare import random_inputs
from dlir.runtime.init import init_params

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "samples").glob("*.dlir"))

EVERY_INIT = """
model Inits(x: f32[B, 3]) -> f32[B, 3] {
    param a: f32[4, 3] = glorot_uniform
    param b: f64[2, 3, 3, 3] = glorot_normal
    param c: f16[5, 3] = he_uniform
    param d: bf16[3, 2, 2] = he_normal
    param e: f32[7] = normal(std=0.02)
    param f: f64[3] = uniform(-0.5, 0.25)
    param g: bf16[4] = constant(0.3)
    param h: f16[2] = ones
    buffer i: f32[3] = zeros
    param j: i64[3] = zeros
    return x
}
"""


@pytest.mark.parametrize("target", ["torch", "tensorflow"])
def test_the_init_written_into_the_file_is_dlirs_for_every_kind_and_dtype(target: str) -> None:
    prog = dlir.loads(EVERY_INIT)
    run = dlir.compile(prog, target, seed=11)
    if target == "torch":
        import torch

        got = {k: (v.view(torch.int16) if v.dtype == torch.bfloat16 else v).numpy() for k, v in run.module.state_dict().items()}
    else:
        got = run.module.get_params()
    want = init_params(prog.graph(), seed=11)
    assert set(got) == set(want)
    for name, w in want.items():
        w_bits = w.view(np.int16) if w.dtype.name == "bfloat16" else w
        g = got[name].view(np.int16) if got[name].dtype.name == "bfloat16" else got[name]
        assert g.shape == w_bits.shape and np.array_equal(g, w_bits), f"{target}: {name} differs from dlir's init"
    imports = [line for line in run.source.splitlines() if line.lstrip().startswith(("import ", "from "))]
    assert not [line for line in imports if "dlir" in line], f"the file imports dlir: {imports}"


def _site_packages() -> str:
    return next(p for p in site.getsitepackages() if Path(p, "numpy").is_dir())


@pytest.mark.slow
@pytest.mark.parametrize("target", ["torch", "tensorflow"])
def test_generated_files_run_without_dlir(target: str, tmp_path: Path) -> None:
    cases = []
    for path in SAMPLES:
        prog = dlir.load(path)
        for model in prog.models:
            graph = prog.graph(model)
            out = tmp_path / f"{path.stem}_{model.lower()}_{target}.py"
            r = subprocess.run(
                [sys.executable, "-m", "dlir.cli", "compile", str(path), "--model", model, "--target", target, "-o", str(out)],
                capture_output=True, text=True,
            )
            assert r.returncode == 0, r.stderr
            feeds = random_inputs(graph, seed=5, size=3)
            want = dlir.compile(prog, "numpy", model=model)(**feeds)
            want = want if isinstance(want, tuple) else (want,)
            np.savez(tmp_path / f"{out.stem}.npz", **{f"in_{i}": feeds[v.name] for i, v in enumerate(graph.inputs)},
                     **{f"out_{i}": w for i, w in enumerate(want)})
            cases.append((out.stem, model))
    script = textwrap.dedent(f"""
        import importlib, importlib.util, json, sys
        sys.path[:0] = [{str(tmp_path)!r}]
        sys.path.append({_site_packages()!r})
        assert importlib.util.find_spec("dlir") is None, "dlir is importable: the test proves nothing"
        import numpy as np
        worst = {{}}
        for stem, model in {cases!r}:
            mod = importlib.import_module(stem)
            cls = getattr(mod, [n for n in dir(mod) if isinstance(getattr(mod, n), type) and n.lower() == model.lower()][0])
            data = np.load({str(tmp_path)!r} + "/" + stem + ".npz")
            ins = [data[k] for k in sorted(k for k in data if k.startswith("in_"))]
            net = cls(seed=0)
            if {target!r} == "torch":
                import torch
                net.eval()
                with torch.no_grad():
                    out = net(*[torch.from_numpy(a) for a in ins])
                outs = [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]
            else:
                out = net(*ins)
                outs = [o.numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]
            want = [data[f"out_{{i}}"] for i in range(len(outs))]
            worst[stem] = max(float(np.max(np.abs(o.astype(np.float64) - w) / (1 + np.abs(w)))) for o, w in zip(outs, want))
        print(json.dumps(worst))
    """)
    r = subprocess.run([sys.executable, "-S", "-c", script], capture_output=True, text=True, cwd=tmp_path,
                       env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr[-3000:]
    worst = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(worst) == len(cases)
    for stem, err in worst.items():
        assert err < 1e-5, f"{stem} without dlir: {err}"
