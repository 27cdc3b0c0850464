"""onnx, measured: the nodes ONNX Runtime ran in each call, from its own profiler.

The model is built ahead of time, once: the session's graph (what ONNX Runtime
made of dlir's nodes at load time, saved with its optimisations off: ``Constant``
nodes become initializers, a function op it has no kernel for runs as its ONNX
function's body) is known before the first call, and the prediction is that
every call runs each of its nodes once, whatever B or T is. The profiler's JSON names each kernel by its
node's name, and dlir names every ONNX node ``value/Op@file:line:col``, so each
event ties back to the ``.dlir`` line that made it. Two profiled sessions of the
runner's model: one with graph optimisations off (the node count checked) and
one at ONNX Runtime's default level (the kernels it really launches, a Scan's
body once per step and fused nodes once: reported, not predicted).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dlir.explain.calls import Call
from dlir.explain.predict import ScanSite
from dlir.explain.report import Check, Loop, TargetReport
from dlir.explain.timing import time_call
from dlir.ir.graph import Graph

LOOP_OPS = ("Scan", "Loop", "LSTM", "GRU", "RNN")


def _kernel_runs(
    model: Any, providers: list[str], level: str, feeds: list[dict[str, np.ndarray]]
) -> Iterator[list[str]]:
    """For each call, the node names of the kernels ONNX Runtime ran, from its profiler."""
    import onnxruntime as ort

    from dlir.backends.onnx.runner import _session_options, graph_optimization

    with graph_optimization(level), tempfile.TemporaryDirectory(prefix="dlir-ort-prof-") as tmp:
        so = _session_options(ort)
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "explain")
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=providers)
        for f in feeds:
            sess.run(None, f)
        path = sess.end_profiling()
        events = json.loads(Path(path).read_text(encoding="utf-8"))
        os.remove(path)
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    for lo, hi in runs:
        yield [e["name"][: -len("_kernel_time")] for e in kernels if lo <= e["ts"] <= hi]


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
    from dlir.targets import runner_class

    run = runner_class("onnx")(graph, seed=0, device=device)
    out.device = "cuda" if run.providers[:1] == ["CUDAExecutionProvider"] else "cpu"
    nodes = list(run.model.graph.node)
    for f in feeds:
        first, median = time_call(run, f, repeat)
        out.first_call_ms.append(first)
        out.median_ms.append(median)
    out.graph_builds = Check(0, 0)  # the session was made before the first call; no call builds anything
    session = _session_graph(run.model, run.providers)
    inner = _body_names(nodes)
    runs = list(_kernel_runs(run.model, run.providers, "ORT_DISABLE_ALL", feeds))
    ran = [len([k for k in names if k not in inner]) for names in runs]
    out.ops_per_call = Check([len(session)] * len(calls), ran)
    out.what_ops = "kernels ONNX Runtime ran for the graph it built before the call (its profiler, optimisations off)"
    out.extra["model_nodes"] = len(nodes)
    out.extra["session_nodes"] = len(session)
    # what ONNX Runtime made of dlir's nodes when it loaded the model: Constants become initializers,
    # a function op it has no kernel for (SoftmaxCrossEntropyLoss) runs as its ONNX function's body
    kept = set(session)
    out.extra["constants_as_initializers"] = len([n for n in nodes if n.op_type == "Constant"])
    out.extra["expanded"] = [n.name for n in nodes if n.op_type != "Constant" and n.name not in kept]
    out.extra["kernels_per_call"] = [len(k) for k in _kernel_runs(run.model, run.providers, "ORT_ENABLE_ALL", feeds)]
    loops = [(i, n) for i, n in enumerate(nodes, 1) if n.op_type in LOOP_OPS]
    tops = [s for s in sites if s.depth == 0]
    out.loop_nodes = Check(len(tops), len(loops))
    for site, (i, n) in zip(tops, loops, strict=False):
        where = f"{generated_name}: node {i} of {len(nodes)}, {n.name}"
        out.loops.append(Loop(site.name, str(site.loc), n.op_type, where, [_iterations(n, names) for names in runs]))


def _session_graph(model: Any, providers: list[str]) -> list[str]:
    """The node names of the graph ONNX Runtime runs, as it saves it at load time (optimisations off)."""
    import onnx
    import onnxruntime as ort

    from dlir.backends.onnx.runner import _session_options, graph_optimization

    with graph_optimization("ORT_DISABLE_ALL"), tempfile.TemporaryDirectory(prefix="dlir-ort-graph-") as tmp:
        so = _session_options(ort)
        so.optimized_model_filepath = str(Path(tmp) / "session.onnx")
        ort.InferenceSession(model.SerializeToString(), so, providers=providers)
        saved = onnx.load(so.optimized_model_filepath)
    return [n.name for n in saved.graph.node]


def _body_names(nodes: list[Any]) -> set[str]:
    """The names of every node inside a Scan (or Loop) body, at any depth."""
    out: set[str] = set()
    for n in nodes:
        for a in n.attribute:
            if a.type == a.GRAPH:
                out |= {m.name for m in a.g.node} | _body_names(list(a.g.node))
    return out


def _iterations(node: Any, ran: list[str]) -> int | None:
    """How often a Scan's body ran in one call: its body's kernel runs over its runnable nodes."""
    body = next((a.g for a in node.attribute if a.name == "body"), None)
    if body is None:  # a fused LSTM/GRU: the steps run inside one kernel
        return None
    names = {n.name for n in body.node if n.op_type != "Constant"}
    runs = len([k for k in ran if k in names])
    return runs // len(names) if names and runs % len(names) == 0 else None
