"""``explain``: predict each target's behaviour from the IR, run it, and check the prediction."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from dlir.errors import DlirError
from dlir.explain.calls import Call, describe, feeds_for
from dlir.explain.predict import ScanSite, expect, scan_sites, varied_dims
from dlir.explain.report import Check, Report, TargetReport

# The module each target needs, to tell "not installed" from a failure (as dlirc doctor does).
FRAMEWORK = {"torch": "torch", "tensorflow": "tensorflow", "onnx": "onnxruntime"}


def installed(target: str) -> bool:
    return importlib.util.find_spec(FRAMEWORK[target]) is not None


def explain(
    prog: Any,
    model: str | None,
    calls: list[Call],
    *,
    opt_level: int = 0,
    device: str = "auto",
    repeat: int = 10,
    targets: tuple[str, ...] = ("torch", "tensorflow", "onnx"),
) -> Report:
    """Run ``model`` of ``prog`` over ``calls`` on every installed target of ``targets``."""
    from dlir.passes import optimize
    from dlir.targets import backend

    base = prog.graph(model)
    file = next(iter(prog.sources), "<input>")
    sites0 = scan_sites(optimize(base, opt_level))
    feeds = [feeds_for(base, c, seed=k) for k, c in enumerate(calls)]
    lines = prog.sources
    report = Report(base.name, file, opt_level, calls, {}, [_scan_json(s, calls, lines) for s in sites0])
    for target in targets:
        out = TargetReport(target)
        report.targets[target] = out
        if not installed(target):
            out.installed = False
            continue
        graph = optimize(base, opt_level, target=target)  # -O3 adds the target's own passes
        sites = scan_sites(graph)
        exp = expect(graph, target, calls, sites)
        out.why = exp.why
        generated = f"{Path(file).stem}_{target}{backend(target).SUFFIX}"
        try:
            _measure(target, graph, calls, feeds, sites, out, device, repeat, generated, exp.graph_builds)
        except DlirError:
            raise  # the user's mistake (a device that is not there): said as such
        except Exception as e:  # noqa: BLE001 - a framework failing on this model: this target's finding
            lines = str(e).strip().splitlines()
            out.failed = f"does not run: {type(e).__name__}: {lines[-1] if lines else ''}"
            continue
        if out.loop_nodes is not None:
            out.loop_nodes = Check(exp.loop_nodes, out.loop_nodes.measured)
        ran_as = [lp.runs_as for lp in out.loops]
        if ran_as != exp.loop_ops:
            out.problems.append(f"scans predicted to run as {exp.loop_ops}, ran as {ran_as}")
        if target == "tensorflow":
            out.retrace_dims = Check(
                exp.retrace_dims, [] if out.graph_builds and out.graph_builds.measured <= 1 else varied_dims(calls)
            )
            out.extra["varied_dims"] = varied_dims(calls)
    return report


def _measure(
    target: str,
    graph: Any,
    calls: list[Call],
    feeds: list[Any],
    sites: list[ScanSite],
    out: TargetReport,
    device: str,
    repeat: int,
    generated: str,
    builds: int,
) -> None:
    if target == "torch":
        from dlir.explain import torch_target

        torch_target.measure(graph, calls, feeds, sites, out, device, repeat, generated)
    elif target == "tensorflow":
        from dlir.explain import tf_target

        tf_target.measure(graph, calls, feeds, sites, out, device, repeat, generated, builds)
    else:
        from dlir.explain import onnx_target

        onnx_target.measure(graph, calls, feeds, sites, out, device, repeat, generated)


def _scan_json(site: ScanSite, calls: list[Call], sources: dict[str, str]) -> dict[str, Any]:
    text = sources.get(site.loc.file, "").splitlines()
    line = text[site.loc.line - 1].strip() if 0 < site.loc.line <= len(text) else ""
    return {
        "scan": site.name,
        "dlir_line": str(site.loc),
        # the user's line that led there, for a scan inside a stdlib layer (else the scan's own)
        "user_line": str(site.loc.site) if site.loc.site is not None and site.loc.site.line > 0 else str(site.loc),
        "source": line,
        "depth": site.depth,
        "trips": [site.trips(c) for c in calls],
        "calls": [describe(c) for c in calls],
    }
