"""Where the tensorflow target keeps rank-4 images channels-last (NHWC).

dlir's images are NCHW; TensorFlow's CPU conv and pool kernels take NHWC only.
Conv and pool nodes (:data:`NATIVE`) read their image channels-last and give
their result channels-last. (Nodes the ``layout`` pass already put in NHWC
layout, at ``-O3``, are ordinary readers here: their IR values are channels-last
as they are.) A node that can run either way (an elementwise op,
``batch_norm``, ``lrn``, ``pad`` with a rank-4 result) is decided when it is written, by
counting the transposes each choice costs (``prefer_nhwc`` in :mod:`.codegen`): it runs on the
NHWC copies when its images have them and its result is not needed channels-first
more than its inputs would be. Every other reader sees NCHW, transposed once,
where it is first needed. So conv -> relu -> pool -> conv transposes at its two
ends only, and a residual ``add`` of two conv results stays channels-last.

This module only looks at the graph; :mod:`.codegen` keeps track of which form
of each value the code already has.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dlir.ir.graph import Graph, Node, Value
from dlir.ir.types import TensorType
from dlir.ops import get_op

# Ops computed channels-last, and which of their inputs are images (the others: weights).
NATIVE: dict[str, tuple[int, ...]] = {
    "conv2d": (0,),
    "max_pool2d": (0,),
    "avg_pool2d": (0,),
    "max_pool2d_grad": (0, 1),
    "conv2d_input_grad": (0,),
    "conv2d_weight_grad": (0, 1),
}
# Non-elementwise ops that can run on either layout.
EITHER = frozenset({"batch_norm", "lrn", "pad"})

TO_NHWC = "[0, 2, 3, 1]"
TO_NCHW = "[0, 3, 1, 2]"


def is_native(node: Node) -> bool:
    """A conv or pool node in NCHW layout, computed on an NHWC copy of its image.

    One in NHWC layout (the ``layout`` pass made it) reads its image as it is.
    """
    return node.op in NATIVE and node.attrs.get("layout", "NCHW") == "NCHW"


def runs_either_way(node: Node) -> bool:
    """Whether ``node`` can compute its rank-4 result on NHWC copies of its inputs."""
    if len(node.outputs) != 1 or node.outputs[0].type.rank != 4 or node.body is not None:
        return False
    if node.attrs.get("layout", "NCHW") != "NCHW":
        return False  # channels-last in the IR already
    return node.op in EITHER or get_op(node.op).elementwise


_REDUCTIONS = frozenset({"sum", "mean", "max", "min", "var"})
NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}  # where an NCHW axis is in the NHWC copy


def reduces_either_way(node: Node) -> bool:
    """A reduction of a rank-4 value over batch and space (a conv bias's gradient, a batch norm's
    statistics) to [C] or a scalar: the same result read from either layout."""
    if node.op not in _REDUCTIONS or node.inputs[0].type.rank != 4 or node.attrs.get("keepdims", False):
        return False
    axis = node.attrs.get("axis")
    return axis is None or {a % 4 for a in axis} >= {0, 2, 3}


@dataclass
class Uses:
    """Values some reader in a graph wants in one layout whatever is decided elsewhere."""

    nchw: set[Value] = field(default_factory=set)  # outputs, ordinary ops, scan bodies, weights
    nhwc: set[Value] = field(default_factory=set)  # the images of conv and pool nodes


def uses(graph: Graph) -> Uses:
    out = Uses()
    for node in graph.nodes:
        if is_native(node):
            images = NATIVE[node.op]
            out.nhwc.update(v for i, v in enumerate(node.inputs) if i in images)
            out.nchw.update(v for i, v in enumerate(node.inputs) if i not in images)
        elif runs_either_way(node) or reduces_either_way(node):
            continue
        else:
            out.nchw.update(node.inputs)
            if node.body is not None:
                out.nchw.update(closure_reads(node.body))
    out.nchw.update(v for _, v in graph.outputs)
    return out


def closure_reads(body: Graph) -> set[Value]:
    """Values a body (or a body inside it) reads that it does not define."""
    own = set(body.inputs) | set(body.params) | {v for n in body.nodes for v in n.outputs}
    reads = {v for n in body.nodes for v in n.inputs} | {v for _, v in body.outputs}
    for n in body.nodes:
        if n.body is not None:
            reads |= closure_reads(n.body)
    return reads - own


def nhwc_reshape(t: TensorType) -> list[str] | None:
    """The shape that views ``t`` (rank <= 4, broadcast as NCHW) as NHWC by a reshape, or None.

    Moving the channel axis last is a plain reshape when it does not reorder two
    axes of size other than 1, e.g. a per-channel bias [C, 1, 1] -> [1, 1, 1, C].
    At most one dim may be unknown when compiling (it becomes -1).
    """
    if t.rank > 4:
        return None
    dims = [1] * (4 - t.rank) + [d.value if d.is_static else None for d in t.shape]
    order = [i for i in (0, 2, 3, 1) if dims[i] != 1]
    if order != sorted(order) or sum(d is None for d in dims) > 1:
        return None
    return ["-1" if dims[i] is None else str(dims[i]) for i in (0, 2, 3, 1)]


def nchw_reshape(t: TensorType) -> list[str] | None:
    """The NCHW shape of rank-4 ``t`` when its NHWC copy becomes NCHW by a reshape, or None."""
    if nhwc_reshape(t) is None:
        return None
    return ["-1" if not d.is_static else str(d.value) for d in t.shape]


def relayout(src: str, shape: list[str] | None, perm: str) -> str:
    """Python source changing the layout of ``src``: a reshape to ``shape`` when there is one, else a transpose."""
    return f"tf.reshape({src}, [{', '.join(shape)}])" if shape else f"tf.transpose({src}, perm={perm})"


def costs_transpose(t: TensorType) -> bool:
    """Whether changing the layout of a value of type ``t`` takes a transpose (scalars and reshapes do not)."""
    return t.rank > 0 and nhwc_reshape(t) is None
