"""torch, measured: the aten ops each call dispatches, attributed to the generated ``forward``'s lines.

A ``TorchDispatchMode`` counts every op that reaches the dispatcher and notes
the line of the generated ``forward`` it came from; ``torch.profiler`` records
the same call independently, and every counted op must appear in its events at
least as often (the profiler also sees the composite ops above them, such as
``aten::matmul`` over ``aten::mm``; it does not see all the ops ATen dispatches
inside a fused RNN kernel, so those are left out of this cross-check).

The prediction: each statement of ``forward`` dispatches a fixed number of ops
each time it runs (its ranks and dtypes are fixed by the IR), and the IR says how
often it runs: once per call, or T times inside the ``for`` loop of a scan of
length T (nested loops multiply). Call 1 gives the ops per run of each
statement; every call's total follows from the IR's trip counts. A statement
calling a fused kernel (``torch.lstm``/``torch.gru``, marked by the ``rnn`` pass)
runs once, but ATen's CPU GRU loops over the steps in C++: its ops are
``fixed + per_step * T``, from call 1 and one private call a step longer. A call
whose count differs, or a loop statement whose count is not a multiple of its
trips, is a dlir bug: the generated code does work the IR does not account for.
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from dataclasses import dataclass
from types import FrameType
from typing import Any

import numpy as np

from dlir.backends.codegen import loc_comment
from dlir.backends.torch.runner import to_torch
from dlir.explain.calls import Call
from dlir.explain.predict import ScanSite
from dlir.explain.report import Check, Loop, TargetReport
from dlir.explain.timing import quiet_fds, time_call
from dlir.ir.graph import Graph


class _Counts:
    """Dispatched ops by name, and by the line of ``forward`` in ``file`` that dispatched them."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: Counter[int | None] = Counter()
        self.by_line: Counter[tuple[int | None, str]] = Counter()

    def add(self, func: Any) -> None:
        frame: FrameType | None = sys._getframe(2)
        line = None
        while frame is not None:
            if frame.f_code.co_filename == self.file and frame.f_code.co_name == "forward":
                line = frame.f_lineno
                break
            frame = frame.f_back
        self.lines[line] += 1
        self.by_line[(line, func.overloadpacket.__name__)] += 1


def _counting(counts: _Counts) -> Any:
    """A TorchDispatchMode that feeds ``counts`` (made here: torch is imported only when measuring)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Counter(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            counts.add(func)
            return func(*args, **(kwargs or {}))

    return Counter()


@dataclass
class _For:
    line: int  # the `for` statement
    first: int  # its body's lines
    last: int
    site: ScanSite


def _loops(source: str, sites: list[ScanSite]) -> tuple[list[_For], list[str]]:
    """The ``for`` loops of ``forward``, each matched to its scan (depth-first, as the codegen writes them)."""
    tree = ast.parse(source)
    forward = next(
        n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "forward"
    )  # the torch codegen always writes one
    fors = sorted((n for n in ast.walk(forward) if isinstance(n, ast.For)), key=lambda n: n.lineno)
    looped = [s for s in sites if "torch" not in s.fused and (s.parent is None or "torch" not in s.parent.fused)]
    problems = []
    if len(fors) != len(looped):
        problems.append(f"forward has {len(fors)} for loop(s), but the IR has {len(looped)} scan(s) run as loops")
    lines = source.splitlines()
    out = []
    for node, site in zip(fors, looped, strict=False):
        if not lines[node.lineno - 1].endswith(loc_comment(site.loc)):
            problems.append(f"the for loop at line {node.lineno} is not scan {site.name} ({site.loc})")
        out.append(_For(node.lineno, node.body[0].lineno, node.end_lineno or node.lineno, site))
    return out, problems


def _runs(line: int | None, loops: list[_For], call: Call) -> int | None:
    """How often ``line`` of forward runs in one call, by the IR's trip counts."""
    n = 1
    for lp in loops:
        if line is not None and lp.first <= line <= lp.last:
            trips = lp.site.trips(call)
            if trips is None:
                return None
            n *= trips
    return n


def _per_run(
    first: Counter[int | None], loops: list[_For], call: Call, fused: dict[int, ScanSite]
) -> tuple[dict[int | None, int], list[str]]:
    """Ops per run of each statement of forward (fused kernels aside), from one call and the IR's trip counts."""
    per_run: dict[int | None, int] = {}
    problems = []
    for line, count in first.items():
        if line in fused:
            continue
        runs = _runs(line, loops, call)
        if not runs:
            return {}, ["cannot predict: a loop's length is not a function of the call's dims"]
        if count % runs:
            problems.append(f"forward line {line} dispatched {count} ops in {runs} runs: not the same ops each run")
        per_run[line] = count // runs
    return per_run, problems


def _predict(per_run: dict[int | None, int], loops: list[_For], call: Call, laws: dict[int, _Law]) -> int | None:
    total = 0
    for line, ops in per_run.items():
        runs = _runs(line, loops, call)
        if runs is None:
            return None
        total += ops * runs
    for law in laws.values():
        n = law.ops(call)
        if n is None:
            return None
        total += n
    return total


@dataclass
class _Law:
    """A fused RNN kernel's ops: ``fixed + per_step * T``. On the CPU ATen runs torch.lstm/torch.gru as a
    C++ loop over the steps, so its ops grow with T although Python calls it once."""

    site: ScanSite
    fixed: int
    per_step: int

    def ops(self, call: Call) -> int | None:
        trips = self.site.trips(call)
        return None if trips is None else self.fixed + self.per_step * trips


def _fused_lines(source: str, sites: list[ScanSite]) -> dict[int, ScanSite]:
    """The statements of forward that call a fused kernel (torch.lstm, torch.gru), by line."""
    out = {}
    for site in sites:
        kernel = site.fused.get("torch")
        if kernel is None:
            continue
        for i, text in enumerate(source.splitlines(), start=1):
            if text.endswith(loc_comment(site.loc)) and f"{kernel}(" in text:
                out[i] = site
    return out


def _longer(call: Call, site: ScanSite) -> Call | None:
    """``call`` with the scan one step longer (its length's symbol + 1), or None when the length is not a symbol."""
    d = site.node.inputs[0].type.shape[site.node.attrs["axis"]]
    if not d.is_symbol():
        return None
    sym = next(iter(d.symbols))
    return {**call, sym: call[sym] + 1} if sym in call else None


def _in_loop(counts: dict[int | None, int], lp: _For) -> int:
    return sum(n for line, n in counts.items() if line is not None and lp.first <= line <= lp.last)


def _per_iteration(per_run: dict[int | None, int], lp: _For, loops: list[_For], call: Call) -> int:
    """Ops one iteration of the top-level loop ``lp`` dispatches (its inner loops at their IR trip counts)."""
    inner = [m for m in loops if m is not lp]
    total = 0
    for line, ops in per_run.items():
        if line is not None and lp.first <= line <= lp.last:
            total += ops * (_runs(line, inner, call) or 0)
    return total


def _profiled(run: Any, args: list[Any]) -> Counter[str]:
    """aten op names and how often torch.profiler saw each in one call of the module."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with quiet_fds(), profile(activities=[ProfilerActivity.CPU]) as prof, torch.no_grad():
        run.module(*args)
    return Counter(e.name for e in prof.events() if e.name.startswith("aten::"))


def measure(
    graph: Graph,
    calls: list[Call],
    feeds: list[dict[str, np.ndarray]],
    sites: list[ScanSite],
    out: TargetReport,
    device: str,
    repeat: int,
    generated_name: str,
) -> None:
    import torch

    from dlir.targets import runner_class

    run = runner_class("torch")(graph, seed=0, device=device)
    out.device = run.device
    file = run.py_module.__file__
    loops, problems = _loops(run.source, sites)
    fused = _fused_lines(run.source, sites)
    out.problems += problems

    def count(f: dict[str, np.ndarray]) -> _Counts:
        args = [to_torch(f[v.name], run.device) for v in graph.inputs]
        counter = _Counts(file)
        with _counting(counter), torch.no_grad():
            run.module(*args)
        return counter

    counts: list[Counter[int | None]] = []
    unprofiled: list[str] = []
    top_level: list[int] = []
    for k, f in enumerate(feeds, start=1):
        first, median = time_call(run, f, repeat)
        out.first_call_ms.append(first)
        out.median_ms.append(median)
        counter = count(f)
        counts.append(counter.lines)
        seen = _profiled(run, [to_torch(f[v.name], run.device) for v in graph.inputs])
        top_level.append(sum(seen.values()))
        # ops that ATen dispatches inside a fused kernel's C++ loop are not all recorded by the profiler
        outside: Counter[str] = Counter()
        for (line, op), n in counter.by_line.items():
            if line not in fused:
                outside[op] += n
        unprofiled += [
            f"call {k}: {n}x aten::{op} dispatched, the profiler saw {seen[f'aten::{op}']}"
            for op, n in outside.items()
            if seen[f"aten::{op}"] < n
        ]
    measured = [sum(c.values()) for c in counts]
    per_run, problems = _per_run(counts[0], loops, calls[0], fused)
    laws = _kernel_laws(fused, counts[0], calls, feeds, graph, count, out)
    out.problems += problems + [f"profiler cross-check: {u}" for u in unprofiled]
    out.graph_builds = Check(len(calls), len(calls))  # eager: forward ran (built its graph) once per call
    predicted = [_predict(per_run, loops, c, laws) if per_run and laws is not None else None for c in calls]
    out.ops_per_call = Check(predicted, measured)
    out.what_ops = "aten ops dispatched by forward (TorchDispatchMode), each seen by torch.profiler too"
    out.extra["profiler_aten_events"] = top_level
    top_loops = [lp for lp in loops if lp.site.depth == 0]
    out.extra["ops_per_iteration"] = {lp.site.name: _per_iteration(per_run, lp, loops, calls[0]) for lp in top_loops}
    if laws:
        out.extra["fused_kernel_ops"] = {
            law.site.name: {"fixed": law.fixed, "per_step": law.per_step} for law in laws.values()
        }
    out.loop_nodes = Check(0, 0)  # the graph torch builds has no loop op: the Python for loop runs the body T times
    by_site = {lp.site: lp for lp in loops}
    fused_at = {site: line for line, site in fused.items()}
    for site in (s for s in sites if s.depth == 0):
        lp = by_site.get(site)
        if lp is None:  # fused: one kernel call at the scan's statement
            where = f"{generated_name}:{fused_at.get(site, 0)}"
            out.loops.append(Loop(site.name, str(site.loc), site.fused.get("torch", "?"), where, [None] * len(calls)))
            continue
        # measured: the ops the loop's body dispatched in each call over its ops per iteration
        its = []
        for c, call in zip(counts, calls, strict=True):
            step = _per_iteration(per_run, lp, loops, call)
            its.append(_in_loop(c, lp) // step if step else None)
        out.loops.append(Loop(site.name, str(site.loc), "python for loop", f"{generated_name}:{lp.line}", its))


def _kernel_laws(
    fused: dict[int, ScanSite],
    first: Counter[int | None],
    calls: list[Call],
    feeds: list[dict[str, np.ndarray]],
    graph: Graph,
    count: Any,
    out: TargetReport,
) -> dict[int, _Law] | None:
    """Each fused kernel's ops as fixed + per_step * T, from call 1 and a private run one step longer."""
    from dlir.explain.calls import feeds_for

    laws: dict[int, _Law] = {}
    for line, site in fused.items():
        longer = _longer(calls[0], site)
        if longer is None:
            out.problems.append(f"cannot predict {site.fused['torch']}'s ops: scan {site.name}'s length is not a dim")
            return None
        more = count(feeds_for(graph, longer, seed=len(feeds))).lines[line]
        steps = (site.trips(longer) or 0) - (site.trips(calls[0]) or 0)
        per_step = (more - first[line]) // max(steps, 1)
        laws[line] = _Law(site, first[line] - per_step * (site.trips(calls[0]) or 0), per_step)
    return laws
