"""Fusion: matmul + bias (+ activation) into ``linear``; conv + bias (+ activation) into ``conv2d``.

``x @ w + b`` with ``w: [K, N]`` and ``b: [N]`` becomes ``linear(x, w, b)``, which
the backends lower to ``F.linear``, ONNX ``Gemm`` (rank 2) and ``tf.nn.bias_add``
of a ``tf.linalg.matmul``. ``conv2d(x, w) + b`` where ``b`` is ``[O, 1, 1]`` or
``[1, O, 1, 1]`` (the per-channel bias broadcast over NCHW) becomes
``conv2d(x, w, reshape(b, [O]))``. A ``relu``, ``tanh``, ``sigmoid``, ``gelu``
(either form) or ``silu`` of a ``linear`` or a ``conv2d`` joins it as its
``act=`` attribute: ``relu(conv2d(x, w) + b)`` is one ``conv2d {act="relu"}``,
lowered as ``F.relu(F.conv2d(...))``, ONNX ``Conv`` then ``Relu`` (which ONNX
Runtime fuses) and TensorFlow's conv, ``bias_add`` and ``relu`` (which grappler
fuses).

A node is fused into another only when the other is its single user (a value
also read by a graph output, a later node or a scan body stays as it is), and
only when the fused result has exactly the type of the value it replaces.
Bodies of ``scan`` nodes are fused too.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from dlir.ir.builder import emit1
from dlir.ir.graph import Graph, Node, Value, use_counts
from dlir.ops.linalg import fused_act_name
from dlir.passes.manager import Pass, register_pass


@register_pass
@dataclass
class Fusion(Pass):
    """Fuse matmul + bias (+ activation) into ``linear``, and a broadcast bias and an activation
    into ``conv2d``. ``linear=false`` / ``conv=false`` leave the one kind alone."""

    name = "fuse"
    linear: bool = True
    conv: bool = True

    def run(self, graph: Graph) -> bool:
        changed = False
        for n in graph.nodes:
            if n.body is not None:
                changed = self.run(n.body) or changed
        uses = use_counts(graph)
        out: list[Node | None] = []
        pos: dict[int, int] = {}  # id(node) -> its index in out
        for node in graph.nodes:
            self.at = node
            if node.op == "add" and len(node.outputs) == 1:
                mm = self._bias_linear(node, uses, pos) if self.linear else None
                if mm is not None:
                    out[pos.pop(id(mm))] = None
                    changed = True
                elif self.conv and self._bias_conv(graph, node, uses, out, pos):
                    changed = True
                    continue
            elif len(node.inputs) == 1 and len(node.outputs) == 1 and self._act(node, uses, pos):
                changed = True
                continue
            pos[id(node)] = len(out)
            out.append(node)
        self.at = None
        if changed:
            graph.nodes = [n for n in out if n is not None]
        return changed

    def _act(self, node: Node, uses: Counter[Value], pos: dict[int, int]) -> bool:
        """``act(linear(...))`` -> ``linear(..., act=act)``, and the same for ``conv2d``: the fused op
        takes over the activation's result."""
        act = fused_act_name(node.op, node.attrs)
        src = node.inputs[0].producer
        ops = {"linear"} if self.linear else set()
        if self.conv:
            ops.add("conv2d")
        if (
            act is None
            or src is None
            or id(src) not in pos  # e.g. a closure value from the enclosing graph
            or src.op not in ops
            or src.attrs["act"] != "none"
            or uses[node.inputs[0]] != 1
            or src.outputs[0].type != node.outputs[0].type
        ):
            return False
        src.attrs = {**src.attrs, "act": act}
        _take_result(src, node)
        return True

    @staticmethod
    def _bias_linear(node: Node, uses: Counter[Value], pos: dict[int, int]) -> Node | None:
        """``add(matmul(x, w), b)`` (either order) -> ``linear(x, w, b)`` in place; the matmul node to drop."""
        for mm_v, b in (node.inputs, node.inputs[::-1]):
            mm = mm_v.producer
            if mm is None or mm.op != "matmul" or id(mm) not in pos or uses[mm_v] != 1 or mm_v is b:
                continue
            x, w = mm.inputs
            if w.type.rank != 2 or b.type.rank != 1 or b.type.dtype is not w.type.dtype or not w.type.dtype.is_float:
                continue
            if not (b.type.shape[0] == w.type.shape[1]) or node.outputs[0].type != mm_v.type:
                continue
            node.op, node.inputs, node.attrs = "linear", [x, w, b], {"act": "none"}
            return mm
        return None

    @staticmethod
    def _bias_conv(graph: Graph, node: Node, uses: Counter[Value], out: list[Node | None], pos: dict[int, int]) -> bool:
        """``add(conv2d(x, w), b)`` with ``b`` a per-channel bias -> ``conv2d(x, w, reshape(b))``.

        The conv node moves to the add's place and takes its result; the add goes.
        """
        for cv_v, b in (node.inputs, node.inputs[::-1]):
            cv = cv_v.producer
            if cv is None or cv.op != "conv2d" or id(cv) not in pos or len(cv.inputs) != 2 or uses[cv_v] != 1:
                continue
            if cv.attrs["act"] != "none":
                continue  # act(conv) + b: the bias comes after the activation
            if cv_v is b:
                continue
            o = cv.inputs[1].type.shape[0]
            dims = b.type.shape
            per_channel = (len(dims) == 3 and dims[0] == o and all(d.is_static and d.value == 1 for d in dims[1:])) or (
                len(dims) == 4
                and dims[1] == o
                and all(d.is_static and d.value == 1 for d in (dims[0], dims[2], dims[3]))
            )
            if not per_channel or b.type.dtype is not cv_v.type.dtype or node.outputs[0].type != cv_v.type:
                continue
            if not o.is_static:
                continue
            b1 = emit1(graph, "reshape", [b], {"shape": [o.value]}, node.loc, name=b.name + ".flat")
            reshape = graph.nodes.pop()  # emit1 appended it: it goes where the add was, before the conv
            out[pos.pop(id(cv))] = None
            cv.inputs = [*cv.inputs, b1]
            _take_result(cv, node)
            for n in (reshape, cv):
                pos[id(n)] = len(out)
                out.append(n)
            return True
        return False


def _take_result(keep: Node, gone: Node) -> None:
    """``keep`` now computes ``gone``'s single result (same type, same name); its own result was
    read by ``gone`` alone and disappears with it."""
    keep.outputs = [gone.outputs[0]]
    gone.outputs[0].producer = keep
