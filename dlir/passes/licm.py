"""Loop-invariant code motion out of ``scan`` bodies, and the RNN input projection.

A body node that reads only values from outside the body (closures, or other
invariant nodes) computes the same thing at every step: it moves out, right
before the ``scan``. Then the input projection of an RNN, ``x_t @ W`` with
``W`` from outside, becomes one batched ``xs @ W`` before the loop, which the
scan iterates over instead of ``xs``: one big GEMM instead of T small ones.
That needs every read of ``x_t`` to be such a matmul (the scan has one scanned
input); several weights ``W1, W2, ...`` are concatenated and the body splits
the projected slice.
"""

from __future__ import annotations

from dataclasses import dataclass

from dlir.ir.builder import emit, emit1
from dlir.ir.graph import Graph, Node, Value, body_reads
from dlir.ops.control import step_type
from dlir.passes.manager import Pass, register_pass
from dlir.passes.rewrite import Replacer, is_pure


@register_pass
@dataclass
class LoopInvariantCodeMotion(Pass):
    """Hoist loop-invariant nodes out of ``scan`` bodies; turn ``x_t @ W`` into one ``xs @ W`` before the scan."""

    name = "licm"
    projection: bool = True

    def run(self, graph: Graph) -> bool:
        changed = False
        out: list[Node] = []
        for node in graph.nodes:
            if node.body is not None and node.op == "scan":
                self.at = node
                changed = self.run(node.body) or changed  # inner scans first
                hoisted = _hoist(node.body)
                out += hoisted
                changed = changed or bool(hoisted)
                if self.projection:
                    made = _project_input(graph, node)
                    out += made
                    changed = changed or bool(made)
            out.append(node)
        self.at = None
        if changed:
            graph.nodes = out
        return changed


def _hoist(body: Graph) -> list[Node]:
    """Take the body's invariant nodes out of it (in order); they are returned for the enclosing graph."""
    inside: set[Value] = set(body.inputs)
    emitted = {v for _, v in body.outputs}
    kept: list[Node] = []
    moved: list[Node] = []
    for n in body.nodes:
        invariant = (
            is_pure(n)
            and not any(v in inside for v in n.inputs)
            and not any(v in emitted for v in n.outputs)  # a body output stays a body value
        )
        if invariant:
            moved.append(n)
        else:
            kept.append(n)
            inside.update(n.outputs)
    if moved:
        body.nodes = kept
    return moved


def _project_input(graph: Graph, scan: Node) -> list[Node]:
    """``x_t @ W_i`` in the body -> scan over ``xs @ concat(W_i)``; the new nodes for before the scan."""
    body = scan.body
    assert body is not None
    xs, x_t = scan.inputs[0], body.inputs[0]
    axis = scan.attrs["axis"]
    if axis == xs.type.rank - 1 or not xs.type.dtype.is_float:
        return []  # the slice would cut the contracted axis
    inner = {v for n in body.nodes for v in n.outputs} | set(body.inputs)
    projections: list[Node] = []
    reads = 0
    for n in body.nodes:
        reads += sum(1 for v in n.inputs if v is x_t)
        if n.body is not None:
            reads += sum(1 for v in body_reads(n.body) if v is x_t)
        if (
            n.op == "matmul"
            and n.inputs[0] is x_t
            and n.inputs[1] is not x_t
            and n.inputs[1] not in inner
            and n.inputs[1].type.rank == 2
        ):
            projections.append(n)
    reads += sum(1 for _, v in body.outputs if v is x_t)
    if not projections or reads != len(projections):
        return []
    weights = list(dict.fromkeys(n.inputs[1] for n in projections))
    sizes = [w.type.shape[1] for w in weights]
    if len(weights) > 1 and not all(d.is_static for d in sizes):
        return []
    start = len(graph.nodes)
    w = weights[0]
    if len(weights) > 1:
        w = emit1(graph, "concat", weights, {"axis": 1}, scan.loc, name="w_cat")
    proj = emit1(graph, "matmul", [xs, w], {}, scan.loc, name=xs.name + ".proj")
    made = graph.nodes[start:]
    del graph.nodes[start:]  # the caller places them before the scan

    new_x = Value(graph.fresh_name(x_t.name + ".proj"), step_type(proj.type, axis), "input", loc=x_t.loc)
    body.inputs[0] = new_x
    scan.inputs[0] = proj
    rep = Replacer()
    gone = {id(n) for n in projections}
    if len(weights) == 1:
        for n in projections:
            rep.replace(n.outputs[0], new_x)
    else:
        parts = _split(body, new_x, [d.value for d in sizes], scan)
        for n in projections:
            rep.replace(n.outputs[0], parts[weights.index(n.inputs[1])])
    body.nodes = [n for n in body.nodes if id(n) not in gone]
    rep.fix_graph(body)
    return made


def _split(body: Graph, v: Value, sizes: list[int], scan: Node) -> list[Value]:
    """``split(v, sizes, axis=-1)`` as the body's first node."""
    outs = emit(
        body, "split", [v], {"sizes": sizes, "axis": v.type.rank - 1}, scan.loc, [v.name + ".part"] * len(sizes)
    )
    body.nodes.insert(0, body.nodes.pop())
    return outs
