"""The text form of an explain report: one side-by-side table a newcomer can read, then the loops."""

from __future__ import annotations

from typing import Any

from dlir.compare import text_table
from dlir.explain.calls import describe
from dlir.explain.report import Check, Report, TargetReport

TITLES = {"torch": "torch (eager)", "tensorflow": "tensorflow (tf.function)", "onnx": "onnx (ONNX Runtime)"}


def _show(v: Any) -> str:
    if v is None:
        return "?"
    if isinstance(v, list):
        return ", ".join(map(str, v)) or "none"
    return str(v)


def _cell(c: Check | None, k: int | None = None) -> str:
    """The measurement, and the prediction beside it: ``49 (pred. 49)``; a failed one is marked."""
    if c is None:
        return "-"
    p, m = (c.predicted, c.measured) if k is None else (c.predicted[k], c.measured[k])
    return f"{_show(m)} (pred. {_show(p)})" + ("" if p == m else " BUG")


def render(report: Report) -> str:
    ts = [t for t in report.targets.values() if t.installed and not t.failed]
    calls = report.calls
    head = ("measured (predicted from the IR)", *[TITLES[t.target] for t in ts])
    rows: list[tuple[str, ...]] = [(f"graphs built in {len(calls)} calls", *[_cell(t.graph_builds) for t in ts])]
    for k, call in enumerate(calls):
        rows.append((f"ops run by call {k + 1} ({describe(call)})", *[_cell(t.ops_per_call, k) for t in ts]))
    rows.append(("loop ops in the graph", *[_cell(t.loop_nodes) for t in ts]))
    rows.append(("dims that would retrace", *[_cell(t.retrace_dims) for t in ts]))
    for k in range(len(calls)):
        rows.append((f"ms, call {k + 1}: first run / median", *[_times(t, k) for t in ts]))
    lines = [
        f"{report.model} ({report.file}, -O{report.opt_level}): {len(calls)} calls, "
        + "; ".join(describe(c) for c in calls),
        "",
        text_table(head, rows),
        "",
        "What each target does, and what its ops count:",
    ]
    for t in ts:
        lines += [f"  {t.target:<11} {t.why}", f"  {'':<11} ops: {t.what_ops}"]
    missing = [t.target for t in report.targets.values() if not t.installed]
    if missing:
        lines.append(f"  not installed here: {', '.join(missing)}")
    lines += [f"  {t.target:<11} {t.failed}" for t in report.targets.values() if t.failed]
    lines += _loops(report, ts)
    bugs = report.bugs()
    lines.append("")
    if bugs:
        lines.append(f"{len(bugs)} prediction(s) did not hold. This is a dlir bug; please report it with this output:")
        lines += [f"  {b}" for b in bugs]
    else:
        lines.append("Every prediction from the IR held on every installed target.")
    return "\n".join(lines)


def _times(t: TargetReport, k: int) -> str:
    return f"{t.first_call_ms[k]:.2f} / {t.median_ms[k]:.2f}"


def _loops(report: Report, ts: list[TargetReport]) -> list[str]:
    if not report.scans:
        return ["", "No scan: no target runs a loop."]
    out = []
    for s in report.scans:
        trips = ", ".join("?" if n is None else str(n) for n in s["trips"])
        nested = f" (nested, depth {s['depth']})" if s["depth"] else ""
        where = s["dlir_line"] if s["user_line"] == s["dlir_line"] else f"{s['user_line']}, inside {s['dlir_line']}"
        out += ["", f"scan {s['scan']} at {where}{nested}: {trips} steps over the calls", f"    {s['source']}"]
        for t in ts:
            for lp in (lp for lp in t.loops if lp.scan == s["scan"]):
                its = [n for n in lp.iterations if n is not None]
                ran = f", ran {', '.join(map(str, its))} iterations" if its else ""
                kernel = t.extra.get("fused_kernel_ops", {}).get(lp.scan)
                if kernel and kernel["per_step"]:  # ATen's CPU GRU is a C++ loop over the steps, dispatching ops
                    ran = f", one call; inside it ATen dispatches {kernel['per_step']} ops per step"
                elif kernel:
                    ran = ", one call of one native kernel: its ops do not grow with T"
                out.append(f"  {t.target:<11} {lp.runs_as}{ran}  at {lp.generated_line}")
    return out
