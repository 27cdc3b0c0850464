"""What the IR says each target will do, before anything runs.

- torch runs the generated ``forward`` on every call: a graph is built on each
  call (define-by-run), a ``scan`` is a Python ``for`` loop of T iterations, so
  the ops dispatched per call grow with T; a scan the ``rnn`` pass marked as an
  LSTM/GRU cell is one ``torch.lstm``/``torch.gru`` call instead.
- tensorflow traces its ``tf.function`` once per input signature; every symbolic
  dim is ``None`` in the signature, so no change of B or T retraces, and every
  call runs the same graph, with one ``While`` op per top-level scan
  (``StatelessWhile`` when its body reads no variable).
- onnx is built ahead of time (no graph is built at call time); each top-level
  scan is one ``Scan`` node, or one ``LSTM``/``GRU`` node when fused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dlir.errors import SourceLoc
from dlir.explain.calls import Call
from dlir.ir.graph import Graph, Node, body_reads
from dlir.ir.rnn_cell import absorbed_projections
from dlir.ir.types import TensorType


@dataclass(eq=False)
class ScanSite:
    """One scan node of the model (top-level or nested), in depth-first order."""

    node: Node
    depth: int  # 0: in the model's own graph
    parent: ScanSite | None
    fused: dict[str, str] = field(default_factory=dict)  # target -> the fused op ("LSTM", "torch.lstm")

    @property
    def name(self) -> str:
        return self.node.outputs[0].name

    @property
    def loc(self) -> SourceLoc:
        return self.node.loc

    def trips(self, call: Call) -> int | None:
        """Iterations of this scan in one call (None when its length is not a function of the call's dims)."""
        xs = self.node.inputs[0].type
        d = xs.shape[self.node.attrs["axis"]]
        if d.unknown or not d.symbols <= set(call):
            return None
        return d.evaluate(call)


def scan_sites(graph: Graph) -> list[ScanSite]:
    """Every scan, depth-first (a scan's body's scans follow it); fused ones carry their kernels."""
    from dlir.backends.onnx.emit_rnn import DTYPES as ONNX_FUSED_DTYPES

    out: list[ScanSite] = []

    def walk(g: Graph, depth: int, parent: ScanSite | None) -> None:
        torch_fused = absorbed_projections(g)  # what the torch codegen fuses (f32, f64)
        onnx_fused = absorbed_projections(g, ONNX_FUSED_DTYPES)
        for node in g.nodes:
            if node.op != "scan" or node.body is None:
                continue
            site = ScanSite(node, depth, parent)
            if node in torch_fused:
                site.fused["torch"] = f"torch.{torch_fused[node].kind}"
            if node in onnx_fused:
                site.fused["onnx"] = onnx_fused[node].kind.upper()
            out.append(site)
            walk(node.body, depth + 1, site)

    walk(graph, 0, None)
    return out


def tf_signature(t: TensorType) -> tuple[int | None, ...]:
    """The shape of an input's ``tf.TensorSpec``: symbolic (and unknown) dims are None."""
    return tuple(d.value if d.is_static else None for d in t.shape)


@dataclass
class Expectation:
    """One target's behaviour over the calls, predicted from the IR."""

    graph_builds: int
    loop_nodes: int  # loop ops in the top-level graph the target runs
    loop_ops: list[str]  # per top-level scan: "While", "Scan", "LSTM", "python for loop", ...
    retrace_dims: list[str]  # symbolic dims whose change would build a new graph
    why: str  # one line for the text report


def expect(graph: Graph, target: str, calls: list[Call], sites: list[ScanSite]) -> Expectation:
    top = [s for s in sites if s.depth == 0]
    if target == "torch":
        loops = [s.fused.get("torch", "python for loop") for s in top]
        why = "eager: forward runs (and dispatches every op) on each call; a scan is a Python loop"
        return Expectation(len(calls), 0, loops, [], why)
    if target == "tensorflow":
        # One trace per distinct input signature; the calls can only differ in symbolic dims, which are None.
        signatures = {tuple(tf_signature(v.type) for v in graph.inputs) for _ in calls}
        # A symbol retraces only where its dim is fixed in the signature: never, as every symbolic dim is None.
        fixed = sorted(
            {
                s
                for v in graph.inputs
                for d, n in zip(v.type.shape, tf_signature(v.type), strict=True)
                if n
                for s in d.symbols
            }
        )
        why = "traced once per input signature; symbolic dims are None in it, so B or T never retrace"
        # while_v2 makes a StatelessWhile unless the body has a stateful op: here, reading a tf.Variable (a param)
        params = set(graph.params)
        loops = [
            "While"
            if s.node.body is not None and any(v in params for v in body_reads(s.node.body))
            else "StatelessWhile"
            for s in top
        ]
        return Expectation(len(signatures), len(top), loops, fixed, why)
    if target == "onnx":
        loops = [s.fused.get("onnx", "Scan") for s in top]
        why = "built ahead of time: the same nodes on every call, a scan is one Scan node"
        return Expectation(0, len(top), loops, [], why)
    raise AssertionError(target)


def varied_dims(calls: list[Call]) -> list[str]:
    """The symbolic dims that take more than one size over the calls."""
    return [s for s in (calls[0] if calls else {}) if len({c[s] for c in calls}) > 1]


__all__ = ["ScanSite", "scan_sites", "Expectation", "expect", "tf_signature", "varied_dims"]
