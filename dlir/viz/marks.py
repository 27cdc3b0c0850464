"""``dlirc viz --diff A,B``: each node coloured by the error between two targets.

The two targets run the probe copy of the model that ``dlirc diff`` runs
(:func:`dlir.diff.run_probe`: every top-level node's results are outputs), so
the first divergence marked here is the one ``dlirc diff`` reports; every node
that reads it, directly or through others (a scan through its body too), is
marked downstream. A scan's body nodes are not probed one by one: the scan
cluster carries the error of its results.
"""

from __future__ import annotations

from dlir.compare import errors
from dlir.diff import Probe, diverges, first_divergence, node_error, run_probe
from dlir.ir.graph import Graph, Value, body_reads
from dlir.viz.svg import Marks


def diff_marks(
    graph: Graph, targets: tuple[str, str], rtol: float, atol: float, seed: int, device: str
) -> tuple[Marks, str]:
    """The marks of every top-level node, and a one-line summary for the page."""
    probe = run_probe(graph, targets, seed=seed, device=device)
    first = first_divergence(probe, rtol, atol)
    marks = Marks()
    a, b = targets
    tainted: set[str] = {v.name for v in first.node.outputs} if first is not None else set()
    for node in probe.graph.nodes:
        name = node.outputs[0].name
        err = max((node_error(probe, v) for v in node.outputs), default=0.0)
        worst = max((_abs_error(probe, v) for v in node.outputs), default=0.0)
        ok = all(_close(probe, v, rtol, atol) for v in node.outputs)
        reads = [v.name for v in node.inputs] + ([v.name for v in body_reads(node.body)] if node.body else [])
        downstream = first is not None and node is not first.node and any(r in tainted for r in reads)
        if downstream:
            tainted.update(v.name for v in node.outputs)
        cls = "first" if first is not None and node is first.node else ("agree" if ok else "diverged")
        if downstream:
            cls += " downstream"
        marks.classes[name] = cls
        marks.attrs[name] = {"data-error": f"{err:.3g}", "data-abs-error": f"{worst:.3g}"}
        marks.titles[name] = f"{a} vs {b}: max rel error {err:.3g}, max abs error {worst:.3g}"
    tol = f"rtol={rtol:g}, atol={atol:g}"
    if first is None:
        return marks, f"{a} and {b} agree on all {len(probe.graph.nodes)} nodes ({tol})"
    outs = ", ".join(f"%{v.name}" for v in first.node.outputs)
    summary = (
        f"{a} and {b} diverge first at node {first.index + 1} of {len(probe.graph.nodes)}: {outs} = "
        f"{first.node.op} at {first.node.loc} (max rel error {first.max_rel:.3g}; {tol}); "
        f"{sum('downstream' in c for c in marks.classes.values())} node(s) downstream"
    )
    return marks, summary


def _abs_error(probe: Probe, v: Value) -> float:
    r, g = probe.ref[v], probe.got[v]
    return errors(r, g.astype(r.dtype) if r.shape == g.shape else g)[0]


def _close(probe: Probe, v: Value, rtol: float, atol: float) -> bool:
    return not diverges(probe.ref[v], probe.got[v], rtol, atol)[0]
