"""Layout: run conv stacks channels-last (NHWC), with transposes at their ends only.

TensorFlow's CPU conv and pool kernels take NHWC images only, while dlir's ops
are NCHW. This pass (in ``-O3`` for the tensorflow target) rewrites each
``conv2d``, ``max_pool2d``, ``avg_pool2d``, and rank-4 ``batch_norm`` and ``lrn``, to its
``layout="NHWC"`` form between two explicit ``transpose`` nodes, and carries the
channels-last copy of every image forward in one walk over the graph:

- an op whose image already has a channels-last copy reads that copy, so the
  transpose back to NCHW and the next transpose in cancel (they are never made);
- an elementwise op (``relu``, ``add``, ``where``, ...) with a rank-4 result and
  at least one input with a channels-last copy runs channels-last too. Its other
  inputs must change layout for free: scalars, and broadcast operands whose
  moved channel axis keeps the order of the dims other than 1, which become a
  ``reshape`` (a per-channel ``[C, 1, 1]`` bias becomes ``[1, 1, C]``). An input
  that would need a real transpose keeps the op in NCHW;
- a rank-4 ``pad`` runs channels-last with its pads permuted.

Every rewritten node's original result stays, as the transpose of the
channels-last one back to NCHW, so every other reader (``flatten``,
``reshape``, a graph output, a scan body) sees NCHW as before; that transpose
is dropped when nothing reads it. So ``conv -> relu -> pool -> conv -> pool ->
flatten`` has one transpose in and one out. The choice is greedy (an op moves
when one input has a channels-last copy), which can cost one transpose more
than the best choice where an NCHW value feeds both an image op and others.

Weights keep dlir's layout ``[O, C/groups, kh, kw]``; the backend reorders them
for its kernel. Bodies of ``scan`` nodes are rewritten as graphs of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dlir.ir.builder import emit1
from dlir.ir.graph import Graph, Node, Value, use_counts
from dlir.ir.types import TensorType
from dlir.ops import get_op
from dlir.ops.conv import TO_NCHW, TO_NHWC
from dlir.passes.manager import Pass, register_pass

# Ops with a ``layout`` attribute whose first input is the image.
IMAGE_OPS = frozenset({"conv2d", "max_pool2d", "avg_pool2d", "batch_norm", "lrn"})


@register_pass
@dataclass
class Layout(Pass):
    """Rewrite conv, pool, batch-norm and lrn nodes to NHWC with transposes only where a stack begins and ends."""

    name = "layout"

    def run(self, graph: Graph) -> bool:
        changed = False
        for n in graph.nodes:
            if n.body is not None:
                changed = self.run(n.body) or changed
        walk = _Walk(graph)
        for node in graph.nodes:
            self.at = node
            walk.visit(node)
        self.at = None
        if not walk.made:
            return changed
        graph.nodes = _drop_unread(graph, walk.out, walk.made)
        return True


@dataclass
class _Walk:
    """One walk over a graph's nodes in order, building the new node list."""

    graph: Graph
    out: list[Node] = field(default_factory=list)
    nhwc: dict[Value, Value] = field(default_factory=dict)  # a rank-4 value -> its channels-last copy
    made: set[int] = field(default_factory=set)  # ids of the transposes and reshapes made here

    def visit(self, node: Node) -> None:
        if node.body is None and len(node.outputs) == 1:
            if _is_image_op(node):
                inputs = [self.twin(node.inputs[0]), *node.inputs[1:]]
                self._relayout(node, inputs, {**node.attrs, "layout": "NHWC"})
                return
            if self._moves(node):
                attrs = dict(node.attrs)
                if node.op == "pad":
                    pads = node.attrs["pads"]
                    attrs["pads"] = [pads[2 * i + k] for i in TO_NHWC for k in (0, 1)]
                self._relayout(node, [self._operand(v) for v in node.inputs], attrs)
                return
        self.out.append(node)

    def twin(self, v: Value) -> Value:
        """The channels-last copy of rank-4 ``v``, made by a transpose the first time it is asked for."""
        if v not in self.nhwc:
            self.nhwc[v] = self._emit("transpose", [v], {"perm": TO_NHWC}, v, v.name + ".nhwc")
        return self.nhwc[v]

    def _moves(self, node: Node) -> bool:
        """Whether an elementwise op or a pad runs channels-last (see the module docstring)."""
        if node.outputs[0].type.rank != 4 or not (node.op == "pad" or get_op(node.op).elementwise):
            return False
        if not any(v in self.nhwc for v in node.inputs):
            return False
        return all(v in self.nhwc or v.type.rank == 0 or nhwc_shape(v.type) is not None for v in node.inputs)

    def _operand(self, v: Value) -> Value:
        if v in self.nhwc:
            return self.nhwc[v]
        if v.type.rank == 0:
            return v
        shape = nhwc_shape(v.type)
        assert shape is not None, "_moves checked every operand"
        return self._emit("reshape", [v], {"shape": shape}, v, v.name + ".nhwc")

    def _relayout(self, node: Node, inputs: list[Value], attrs: dict[str, object]) -> None:
        """``node`` computed channels-last from ``inputs``; its result becomes the transpose back."""
        old = node.outputs[0]
        new = emit1(self.graph, node.op, inputs, attrs, node.loc, name=old.name + ".nhwc")
        self.out.append(self.graph.nodes.pop())  # emit1 appended it to the graph's list
        back = Node("transpose", [new], {"perm": list(TO_NCHW)}, [old], node.loc)
        old.producer = back
        self.out.append(back)
        self.made.add(id(back))
        self.nhwc[old] = new

    def _emit(self, op: str, inputs: list[Value], attrs: dict[str, object], near: Value, name: str) -> Value:
        loc = near.producer.loc if near.producer is not None else near.loc
        v = emit1(self.graph, op, inputs, attrs, loc, name=name)
        self.out.append(self.graph.nodes.pop())
        self.made.add(id(self.out[-1]))
        return v


def _is_image_op(node: Node) -> bool:
    return node.op in IMAGE_OPS and node.attrs["layout"] == "NCHW" and node.inputs[0].type.rank == 4


def nhwc_shape(t: TensorType) -> list[object] | None:
    """The shape that makes ``t`` (rank <= 4, broadcast against NCHW) broadcast against NHWC, by a
    reshape: None when moving the channel axis last reorders two dims that are not 1.

    Leading 1s are dropped down to ``t``'s rank: ``[C, 1, 1]`` -> ``[1, 1, C]``.
    """
    if t.rank > 4:
        return None
    dims = [1] * (4 - t.rank) + [d.value if d.is_static else d for d in t.shape]
    kept = [i for i in TO_NHWC if dims[i] != 1]
    if kept != sorted(kept):
        return None
    shape: list[object] = [dims[i] for i in TO_NHWC]
    while len(shape) > t.rank and shape[0] == 1:
        shape.pop(0)
    return shape


def _drop_unread(graph: Graph, nodes: list[Node], made: set[int]) -> list[Node]:
    """``nodes`` less the transposes and reshapes this pass made that nothing reads."""
    uses = use_counts(graph, nodes)
    keep: list[Node] = []
    for n in reversed(nodes):
        if id(n) in made and not any(uses[v] for v in n.outputs):
            uses.subtract(n.inputs)
            continue
        keep.append(n)
    keep.reverse()
    return keep
