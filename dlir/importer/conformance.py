"""ONNX's own node tests (``onnx.backend.test``) run through the importer on dlir's targets.

Each case is one small model with inputs and expected outputs. A case is
``unsupported`` when the importer refuses it (the reason says why), ``fail`` when it
imports but a target errs or disagrees beyond the case's tolerance, ``pass`` otherwise.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlir.errors import DlirError


@dataclass
class CaseResult:
    case: str
    op: str
    target: str
    status: str  # "pass" | "fail" | "unsupported"
    reason: str = ""


def node_cases(name_filter: str | None = None, limit: int | None = None) -> list[Any]:
    from onnx.backend.test.loader import load_model_tests

    cases = [c for c in load_model_tests(kind="node") if not name_filter or name_filter in c.name]
    cases.sort(key=lambda c: c.name)
    return cases[:limit] if limit else cases


def _op_of(case: Any) -> str:
    ops = [n.op_type for n in case.model.graph.node]
    return ops[-1] if len(ops) == 1 else (max(set(ops), key=ops.index) if ops else "?")


def _as_array(x: Any) -> Any:
    from onnx import numpy_helper

    if isinstance(x, (np.ndarray, np.generic)):
        return np.asarray(x)
    try:
        return numpy_helper.to_array(x)
    except Exception:  # noqa: BLE001 - sequences/optionals: not tensors
        return None


def run_case(case: Any, targets: list[str]) -> list[CaseResult]:
    """One node test on every target."""

    op = case.model.graph.node[0].op_type if len(case.model.graph.node) == 1 else _op_of(case)
    try:
        m, frozen = _import_freezing(case)
    except DlirError as e:
        return [CaseResult(case.name, op, t, "unsupported", e.message) for t in targets]
    except Exception as e:  # noqa: BLE001 - a crash in the importer is a failure, reported not raised
        return [CaseResult(case.name, op, t, "fail", f"importer crashed: {type(e).__name__}: {e}") for t in targets]
    out: list[CaseResult] = []
    for t in targets:
        out.append(CaseResult(case.name, op, t, *_run_on(case, m, t)))
    return out


def _import_freezing(case: Any) -> tuple[Any, set[str]]:
    """Import, fixing to the case's data the inputs the importer needs as constants (axes, shapes, pads)."""
    from dlir.importer import from_onnx
    from dlir.importer.builder import NeedsConstant

    inits = {i.name for i in case.model.graph.initializer}
    names = [vi.name for vi in case.model.graph.input if vi.name not in inits]
    data = dict(zip(names, case.data_sets[0][0], strict=True)) if case.data_sets else {}
    frozen: dict[str, np.ndarray] = {}
    while True:
        try:
            return from_onnx(case.model, constants=frozen), set(frozen)
        except NeedsConstant as e:
            a = _as_array(data.get(e.onnx_name))
            if a is None or e.onnx_name in frozen or len(case.data_sets) != 1:
                raise
            frozen[e.onnx_name] = a


def _run_on(case: Any, m: Any, target: str) -> tuple[str, str]:
    g_inputs = [
        vi.name for vi in case.model.graph.input if vi.name not in {i.name for i in case.model.graph.initializer}
    ]
    try:
        run = m.compile(target, device="cpu")
        for inputs, expected in case.data_sets:
            feeds = {}
            for name, x in zip(g_inputs, inputs, strict=True):
                a = _as_array(x)
                if a is None:
                    return "unsupported", f"a non-tensor input {type(x).__name__}"
                if name in m.input_names:
                    feeds[m.input_names[name]] = a
            got = run(**feeds)
            got = got if isinstance(got, tuple) else (got,)
            for i, (g, e) in enumerate(zip(got, expected, strict=True)):
                e = _as_array(e)
                if e is None:
                    return "unsupported", "a non-tensor output"
                problem = _compare(np.asarray(g), e, case.rtol, case.atol)
                if problem:
                    return "fail", f"output {i}: {problem}"
        return "pass", ""
    except DlirError as e:
        return "fail", e.message
    except Exception as e:  # noqa: BLE001 - framework errors are failures of this case
        return "fail", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]


def _compare(got: np.ndarray, exp: np.ndarray, rtol: float, atol: float) -> str:
    if got.shape != exp.shape:
        return f"shape {got.shape}, expected {exp.shape}"
    if got.dtype != exp.dtype:
        return f"dtype {got.dtype}, expected {exp.dtype}"
    if exp.dtype.kind in "biu":
        return "" if np.array_equal(got, exp) else "integer values differ"
    g, e = got.astype(np.float64), exp.astype(np.float64)
    if np.array_equal(np.isnan(g), np.isnan(e)) and np.allclose(g, e, rtol=rtol, atol=atol, equal_nan=True):
        return ""
    err = np.nanmax(np.abs(g - e)) if g.size else 0.0
    return f"max abs error {err:.3g} (rtol {rtol}, atol {atol})"


def run_conformance(targets: list[str], limit: int | None = None, name_filter: str | None = None) -> list[CaseResult]:
    results: list[CaseResult] = []
    for case in node_cases(name_filter, limit):
        results.extend(run_case(case, targets))
    return results


def format_table(results: list[CaseResult], targets: list[str]) -> str:
    """Per op: pass/fail/unsupported counts on each target, then totals."""
    by_op: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    for r in results:
        by_op[r.op][r.target][r.status] += 1
    head = "| op | " + " | ".join(f"{t} pass/fail/unsup" for t in targets) + " |"
    lines = [head, "|" + " --- |" * (len(targets) + 1)]
    for op in sorted(by_op):
        cells = [f"{c['pass']}/{c['fail']}/{c['unsupported']}" for c in (by_op[op][t] for t in targets)]
        lines.append(f"| {op} | " + " | ".join(cells) + " |")
    tot = []
    for t in targets:
        rs = [r for r in results if r.target == t]
        tot.append("/".join(str(sum(1 for r in rs if r.status == s)) for s in ("pass", "fail", "unsupported")))
    lines.append("| **total** | " + " | ".join(tot) + " |")
    return "\n".join(lines)


__all__ = ["run_conformance", "run_case", "node_cases", "format_table", "CaseResult"]
