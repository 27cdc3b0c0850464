"""tensorflow, measured: the ``tf.function``'s tracing count and the ops of the graph each call ran.

``experimental_get_tracing_count`` says how many graphs the calls built; the
concrete function that ran a call is looked up by that call's tensors (the
lookup reuses a trace, it does not make one: the count is read before and
after); a ``While`` op's traceback names the line of the generated file that
made it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlir.explain.calls import Call
from dlir.explain.predict import ScanSite
from dlir.explain.report import Check, Loop, TargetReport
from dlir.explain.timing import time_call
from dlir.ir.graph import Graph

LOOP_OPS = ("While", "StatelessWhile")


def entry_point(module: Any) -> Any:
    """The module's inference ``tf.function``: ``call`` where the model has a training variant, else ``__call__``."""
    fn = getattr(module, "call", None)
    return fn if hasattr(fn, "experimental_get_tracing_count") else module.__call__


def measure(
    graph: Graph,
    calls: list[Call],
    feeds: list[dict[str, np.ndarray]],
    sites: list[ScanSite],
    out: TargetReport,
    device: str,
    repeat: int,
    generated_name: str,
    builds: int,
) -> None:
    from dlir.targets import runner_class

    run = runner_class("tensorflow")(graph, seed=0, device=device)
    tf = run._tf
    gpus = tf.config.list_physical_devices("GPU")
    out.device = "cuda" if gpus and device != "cpu" else "cpu"
    fn = entry_point(run.module)
    for f in feeds:
        first, median = time_call(run, f, repeat)
        out.first_call_ms.append(first)
        out.median_ms.append(median)
    traces = fn.experimental_get_tracing_count()
    graphs = []
    for f in feeds:
        args = [tf.convert_to_tensor(f[v.name]) for v in graph.inputs]
        graphs.append(fn.get_concrete_function(*args).graph)
    if fn.experimental_get_tracing_count() != traces:
        out.problems.append("looking up the calls' graphs traced again: the signature does not cover the calls")
    out.graph_builds = Check(builds, traces)
    ops = [len(g.get_operations()) for g in graphs]
    # One graph serves every call (the prediction): its op count, the same for each.
    out.ops_per_call = Check([ops[0]] * len(calls) if builds == 1 else ops, ops)
    out.what_ops = "ops in the graph the call ran (tf.function's concrete function, top level)"
    loops = [op for op in graphs[0].get_operations() if op.type in LOOP_OPS]
    top = [s for s in sites if s.depth == 0]
    out.loop_nodes = Check(len(top), len(loops))
    file = str(run.module_file)
    for site, op in zip(top, loops, strict=False):
        # the outermost frame in the file: the statement of __call__ (the helper's own lines come after)
        line = next((fr.lineno for fr in op.traceback if fr.filename == file), 0)
        out.loops.append(Loop(site.name, str(site.loc), op.type, f"{generated_name}:{line}", [None] * len(calls)))
    out.extra["input_signature"] = [
        {"name": s.name, "shape": [d if d is None else int(d) for d in s.shape.as_list()], "dtype": s.dtype.name}
        for s in fn.input_signature
    ]
