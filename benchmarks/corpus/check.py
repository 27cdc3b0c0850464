"""One corpus file through dlir's importer, every target checked against ONNX Runtime on that file.

The tolerance is the issue's: rtol 1e-3 and atol 1e-4 x the output's scale (its largest magnitude),
since these are float32 networks of up to ~100 layers with random weights, compared with another
runtime's kernels, not with dlir's own reference. Integer and boolean outputs must be equal.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

RTOL = 1e-3
ATOL_PER_SCALE = 1e-4
TARGETS = ("numpy", "torch", "tensorflow", "onnx")


@dataclass
class Result:
    """What one system did with one model: ``ok``, or why not; its import (conversion) and first-run times."""

    ok: bool
    detail: str = ""
    import_s: float = 0.0
    run_s: float = 0.0


def reference(path: Path, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """ONNX Runtime's outputs on the file itself (CPU, default graph optimisations)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return list(sess.run(None, inputs))


def mismatch(got: Any, want: list[np.ndarray]) -> str | None:
    """None when ``got`` (one array or a tuple) matches ``want``; else what differs, first output first."""
    outs = list(got) if isinstance(got, (tuple, list)) else [got]
    if len(outs) != len(want):
        return f"{len(outs)} outputs, ONNX Runtime gives {len(want)}"
    for i, (g, w) in enumerate(zip(outs, want, strict=True)):
        g = np.asarray(g)
        if g.shape != w.shape:
            return f"output {i}: shape {g.shape}, ONNX Runtime {w.shape}"
        if w.dtype.kind in "biu":
            if not np.array_equal(g, w):
                return f"output {i}: {int(np.sum(g != w))} of {w.size} elements differ"
            continue
        if not np.all(np.isfinite(g) == np.isfinite(w)):
            return f"output {i}: non-finite values where ONNX Runtime has none (or the reverse)"
        scale = float(np.max(np.abs(w))) if w.size else 1.0
        atol = ATOL_PER_SCALE * (scale or 1.0)
        err = np.abs(g.astype(np.float64) - w.astype(np.float64))
        bad = err > atol + RTOL * np.abs(w)
        if bad.any():
            worst = f"max abs error {float(err.max()):.3g} (scale {scale:.3g})"
            return f"output {i}: {worst}, {int(bad.sum())} of {w.size} elements beyond tolerance"
    return None


def short(e: BaseException) -> str:
    """An exception as one line for a table cell or a failure message."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:300]}"


def dlir_inputs(m: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The example inputs by dlir input name (ONNX inputs the graph does not use are dropped)."""
    return {m.input_names[k]: v for k, v in inputs.items() if k in m.input_names}


def check_dlir(
    path: Path, inputs: dict[str, np.ndarray], want: list[np.ndarray], targets: tuple[str, ...] = TARGETS
) -> tuple[Any, dict[str, Result]]:
    """Import ``path`` and run it on each target. Returns the imported model (None if refused) and a result per target.

    A target's import time is the importer's (shared) plus building that target's runner.
    """
    from dlir.importer import from_onnx

    t0 = time.perf_counter()
    try:
        m = from_onnx(path)
    except Exception as e:  # the importer's refusal (DlirError) or a crash: both are a failure here
        fail = Result(False, "import: " + short(e), time.perf_counter() - t0)
        return None, {t: fail for t in targets}
    import_s = time.perf_counter() - t0
    feeds = dlir_inputs(m, inputs)
    results = {}
    for target in targets:
        results[target] = _run_target(lambda target=target: m.compile(target), feeds, want, import_s)
    return m, results


def _run_target(make: Any, feeds: dict[str, np.ndarray], want: list[np.ndarray], import_s: float) -> Result:
    t0 = time.perf_counter()
    try:
        run = make()
    except Exception as e:
        return Result(False, "compile: " + short(e), import_s + time.perf_counter() - t0)
    t1 = time.perf_counter()
    try:
        got = run(**feeds)
    except Exception as e:
        return Result(False, "run: " + short(e), import_s + t1 - t0, time.perf_counter() - t1)
    t2 = time.perf_counter()
    bad = mismatch(got, want)
    return Result(bad is None, bad or "", import_s + t1 - t0, t2 - t1)


def check_source(
    path: Path, m: Any, inputs: dict[str, np.ndarray], want: list[np.ndarray], targets: tuple[str, ...]
) -> dict[str, Result]:
    """The ``.dlir`` source ``dlirc import`` writes for ``path``: it parses, and compiled from that text
    with the written weights (by their declared names), each of ``targets`` agrees with ONNX Runtime."""
    import dlir
    from dlir.importer.cli_import import imported_source

    m2, text, renamed = imported_source(path, path.with_suffix(".dlir"), None)
    prog = dlir.loads(text, str(path.with_suffix(".dlir")))
    graph = prog.graph()
    # the source's inputs are the imported graph's, in order (their names may be made legal identifiers)
    by_onnx = {v: k for k, v in m2.input_names.items()}
    feeds = {s.name: inputs[by_onnx[v.name]] for s, v in zip(graph.inputs, m2.graph.inputs, strict=True)}
    params = {renamed[k]: v for k, v in m2.params.items()}

    def make(target: str) -> Any:
        run = dlir.compile(prog, target)
        run.load_params(params)
        return run

    return {t: _run_target(lambda t=t: make(t), feeds, want, 0.0) for t in targets}
