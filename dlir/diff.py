"""``dlirc diff``: where two targets part ways, node by node.

Both targets run a *probe* copy of the model whose outputs are every node's
results (top-level nodes; a scan counts as one node), on the same inputs and
weights. Walking the nodes in order, the first whose result differs beyond
tolerance is reported with its ``.dlir`` source line, the error and statistics
of its inputs, so a divergence can be pinned on the op that caused it rather
than on the output that shows it. An ``.onnx`` file is imported first; its lines
refer to the source ``dlirc import`` would write for it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlir.compare import errors, random_inputs
from dlir.errors import RuntimeMismatch, UsageError
from dlir.ir.clone import clone_graph
from dlir.ir.graph import Graph, Node, Value


@dataclass
class Stats:
    """Summary of one array: what a reader needs to guess why an op misbehaves."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    min: float
    max: float
    mean: float
    has_nan: bool

    @classmethod
    def of(cls, name: str, a: np.ndarray) -> Stats:
        if a.size == 0 or a.dtype.kind not in "biuf":
            return cls(name, str(a.dtype), tuple(a.shape), float("nan"), float("nan"), float("nan"), False)
        f = a.astype(np.float64)
        nan = bool(np.isnan(f).any())
        ok = f[~np.isnan(f)] if nan else f
        lo, hi, mean = (float(ok.min()), float(ok.max()), float(ok.mean())) if ok.size else (float("nan"),) * 3
        return cls(name, str(a.dtype), tuple(a.shape), lo, hi, mean, nan)

    def __str__(self) -> str:
        return (
            f"%{self.name}: {self.dtype}{list(self.shape)}  min {self.min:.6g}  max {self.max:.6g}  "
            f"mean {self.mean:.6g}  NaN: {'yes' if self.has_nan else 'no'}"
        )


@dataclass
class Divergence:
    """The first node whose result differs between the two targets."""

    node: Node
    index: int  # position among the graph's nodes
    output: str  # the diverging result's value name
    max_abs: float
    max_rel: float
    note: str  # shape/dtype disagreement, if any
    inputs: list[Stats]


@dataclass
class DiffReport:
    model: str
    targets: tuple[str, str]
    rtol: float
    atol: float
    n_nodes: int
    first: Divergence | None = None
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def agree(self) -> bool:
        return self.first is None

    def render(self) -> str:
        a, b = self.targets
        tol = f"rtol={self.rtol:g}, atol={self.atol:g}"
        if self.first is None:
            return f"{self.model}: {a} and {b} agree on all {self.n_nodes} nodes ({tol})"
        d = self.first
        n = d.node
        outs = ", ".join(f"%{v.name}" for v in n.outputs)
        msg = (
            f"{a} and {b} diverge first at node {d.index + 1} of {self.n_nodes}: "
            f"{outs} = {n.op}({', '.join('%' + v.name for v in n.inputs)})"
        )
        lines = [RuntimeMismatch(msg, n.loc).render(self.sources)]
        lines.append(
            f"  result %{d.output}: max abs error {d.max_abs:.6g}, max rel error {d.max_rel:.6g} ({tol})"
            + (f"; {d.note}" if d.note else "")
        )
        lines.append(f"  its inputs (on {a}):")
        lines += [f"    {s}" for s in d.inputs] or ["    none"]
        return "\n".join(lines)


def probe_graph(graph: Graph) -> Graph:
    """A copy of ``graph`` whose outputs are the results of every top-level node, in order."""
    new = clone_graph(graph)
    new.outputs = [(v.name, v) for n in new.nodes for v in n.outputs]
    return new


def diff_graph(
    graph: Graph,
    targets: tuple[str, str],
    feeds: dict[str, np.ndarray] | None = None,
    params: dict[str, np.ndarray] | None = None,
    seed: int = 0,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    sources: dict[str, str] | None = None,
    device: str = "cpu",
) -> DiffReport:
    """Run ``graph`` node by node on both targets and find the first divergence.

    Args:
        graph: the model.
        targets: the two targets to compare (e.g. ``("numpy", "torch")``).
        feeds: the inputs by name; random ones (``seed``) when None.
        params: weights to load; the seed's init when None.
        seed: seeds the random inputs and the init.
        rtol, atol: the tolerance of ``np.allclose``.
        sources: file name -> text, to print the source line of the node.
        device: the device of the framework targets.
    """
    probe = run_probe(graph, targets, feeds, params, seed, device)
    report = DiffReport(graph.name, probe.targets, rtol, atol, len(probe.graph.nodes), sources=dict(sources or {}))
    report.first = first_divergence(probe, rtol, atol)
    return report


@dataclass
class Probe:
    """Every top-level node's results on two targets, from one run of the probe graph on each."""

    graph: Graph  # the probe copy: its nodes are the model's, its outputs every node's results
    targets: tuple[str, str]
    feeds: dict[str, np.ndarray]
    params: dict[str, np.ndarray]
    ref: dict[Value, np.ndarray]  # on the first target
    got: dict[Value, np.ndarray]  # on the second


def run_probe(
    graph: Graph,
    targets: tuple[str, str],
    feeds: dict[str, np.ndarray] | None = None,
    params: dict[str, np.ndarray] | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> Probe:
    """Run the probe copy of ``graph`` on both targets (arguments as :func:`diff_graph`)."""
    from dlir.runtime.runner import check_inputs
    from dlir.targets import check_target, runner_class

    a, b = (check_target(t) for t in targets)
    probe = probe_graph(graph)
    feeds = check_inputs(graph, random_inputs(graph, seed) if feeds is None else feeds)
    results: list[list[np.ndarray]] = []
    run_params: dict[str, np.ndarray] = {}
    for t in (a, b):
        runner = runner_class(t)(probe, seed=seed, device=device)
        if params:
            runner.load_params(params)
        run_params = runner.params
        outs = runner(**feeds) if probe.outputs else ()
        results.append(list(outs) if isinstance(outs, tuple) else [outs])
    values = [v for _, v in probe.outputs]
    ref = dict(zip(values, (np.asarray(r) for r in results[0]), strict=True))
    got = dict(zip(values, (np.asarray(g) for g in results[1]), strict=True))
    return Probe(probe, (a, b), feeds, run_params, ref, got)


def node_error(probe: Probe, v: Value) -> float:
    """Max relative error of one result between the two targets (inf for a shape mismatch)."""
    r, g = probe.ref[v], probe.got[v]
    return errors(r, g.astype(r.dtype) if r.shape == g.shape else g)[1]


def first_divergence(probe: Probe, rtol: float, atol: float) -> Divergence | None:
    """The first node, in graph order, with a result that differs beyond tolerance."""
    known: dict[Value, np.ndarray] = {v: probe.feeds[v.name] for v in probe.graph.inputs}
    known.update({p: probe.params[p.name] for p in probe.graph.params})
    for i, node in enumerate(probe.graph.nodes):
        for v in node.outputs:
            r, g = probe.ref[v], probe.got[v]
            bad, note = diverges(r, g, rtol, atol)
            if bad:
                mx, rel = errors(r, g.astype(r.dtype) if r.shape == g.shape else g)
                stats = [Stats.of(x.name, known.get(x, probe.ref.get(x, np.array([])))) for x in node.inputs]
                return Divergence(node, i, v.name, mx, rel, note, stats)
        known.update({v: probe.ref[v] for v in node.outputs})
    return None


def diverges(r: np.ndarray, g: np.ndarray, rtol: float, atol: float) -> tuple[bool, str]:
    if r.shape != g.shape:
        return True, f"shape {g.shape} != {r.shape}"
    note = "" if r.dtype == g.dtype else f"dtype {g.dtype} != {r.dtype}"
    if r.dtype.kind in "biu" and g.dtype.kind in "biu":
        return not np.array_equal(r, g), note
    ok = np.allclose(g.astype(np.float64), r.astype(np.float64), rtol=rtol, atol=atol, equal_nan=True)
    return (not ok) or bool(note), note


# -- the command -----------------------------------------------------------------------------


def add_parser(sub: Any) -> None:
    p = sub.add_parser("diff", help="run a model on two targets node by node and report the first divergence")
    p.add_argument("file", help="a .dlir or .onnx file")
    p.add_argument("--model", help="which model of the file (default: its only model)")
    p.add_argument("--targets", required=True, help="two comma-separated targets, e.g. numpy,torch")
    p.add_argument("--rtol", type=float, default=1e-5)
    p.add_argument("--atol", type=float, default=1e-5)
    p.add_argument(
        "--input", action="append", default=[], metavar="NAME=FILE.npy", help="an input (default: random ones)"
    )
    p.add_argument("--params", help="weights as a .safetensors file (a .onnx file brings its own)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs and the init")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])


def load_for_diff(file: str, model: str | None) -> tuple[Graph, dict[str, np.ndarray], dict[str, str], dict[str, str]]:
    """The graph of ``file``, its weights (for .onnx), its sources and ONNX -> dlir input names."""
    import dlir

    if Path(file).suffix.lower() != ".onnx":
        prog = dlir.load(file)
        return prog.graph(model), {}, dict(prog.sources), {}
    from dlir.importer.cli_import import imported_source

    src = Path(file)
    out = src.with_suffix(".dlir")
    m, text, renamed = imported_source(src, out, model)
    prog = dlir.loads(text, str(out))
    params = {renamed[k]: v for k, v in m.params.items()}
    return prog.graph(), params, dict(prog.sources), dict(m.input_names)


def cmd_diff(args: argparse.Namespace, sources: dict[str, str]) -> int:
    from dlir.runtime.files import read_inputs
    from dlir.runtime.weights import load_safetensors

    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    if len(targets) != 2:
        hint = "e.g. --targets numpy,torch"
        raise UsageError(f"--targets needs exactly two targets, got '{args.targets}'", hint=hint)
    graph, params, srcs, onnx_names = load_for_diff(args.file, args.model)
    sources.update(srcs)
    if args.params:
        params = dict(load_safetensors(args.params))
    feeds = None
    if args.input:
        feeds = {onnx_names.get(k, k): v for k, v in read_inputs(args.input).items()}
    report = diff_graph(
        graph, (targets[0], targets[1]), feeds, params or None, args.seed, args.rtol, args.atol, sources, args.device
    )
    print(report.render())
    return 0 if report.agree else 1


__all__ = [
    "DiffReport",
    "Divergence",
    "Probe",
    "Stats",
    "diff_graph",
    "first_divergence",
    "node_error",
    "probe_graph",
    "run_probe",
    "cmd_diff",
    "add_parser",
]
