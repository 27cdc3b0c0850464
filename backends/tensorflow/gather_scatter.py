"""The TensorFlow emitters of gather_elements, scatter_elements, scatter_nd, cumsum and topk.

TensorFlow's scatters take full coordinates (``tf.tensor_scatter_nd_*``): the helper
``elements_coords`` builds them from an element-wise index, with negative indices
wrapped as the reference does (TensorFlow rejects them). ``mul`` has no
tensor_scatter_nd op: the products of each cell's updates come from
``unsorted_segment_prod`` over the cells' flat positions. topk sorts stably
(``tf.argsort(stable=True)``), so equal values keep the lower index first, as ONNX says.
"""

from __future__ import annotations

from dlir.backends.tensorflow.lowering import HELPERS, Ctx, _reg

from dlir.ir.graph import Node

HELPERS["elements_coords"] = '''def elements_coords(x: tf.Tensor, idx: tf.Tensor, axis: int) -> tf.Tensor:
    """The full coordinates of each entry of an element-wise index along axis (negatives wrapped)."""
    idx = tf.cast(idx, tf.int64)
    shape = tf.shape(idx, out_type=tf.int64)
    idx = tf.where(idx < 0, idx + tf.shape(x, out_type=tf.int64)[axis], idx)
    grid = tf.meshgrid(*[tf.range(shape[i]) for i in range(idx.shape.rank)], indexing="ij")
    grid[axis] = idx
    return tf.stack(grid, axis=-1)
'''

HELPERS["scatter_mul"] = '''def scatter_mul(x: tf.Tensor, coords: tf.Tensor, updates: tf.Tensor) -> tf.Tensor:
    """x with each written cell multiplied by the product of its updates (cells never written keep x)."""
    shape = tf.shape(x, out_type=tf.int64)
    strides = tf.math.cumprod(shape, exclusive=True, reverse=True)
    flat = tf.reshape(tf.reduce_sum(coords * strides, axis=-1), [-1])
    prods = tf.math.unsorted_segment_prod(tf.reshape(updates, [-1]), flat, tf.reduce_prod(shape))
    return x * tf.reshape(prods, shape)
'''

HELPERS["top_k"] = '''def top_k(x: tf.Tensor, k: int, axis: int, largest: bool) -> list[tf.Tensor]:
    """The k largest (smallest) entries along axis and their indices; equal values: the lower index first."""
    order = tf.argsort(x, axis=axis, direction="DESCENDING" if largest else "ASCENDING", stable=True)
    idx = tf.gather(order, tf.range(k), axis=axis)
    return [tf.experimental.numpy.take_along_axis(x, idx, axis), tf.cast(idx, tf.int64)]
'''

_SCATTER = {"none": "tf.tensor_scatter_nd_update", "add": "tf.tensor_scatter_nd_add"}
_SCATTER |= {"max": "tf.tensor_scatter_nd_max", "min": "tf.tensor_scatter_nd_min"}


@_reg("gather_elements")
def _gather_elements(ctx: Ctx, node: Node) -> str:
    x, i = ctx.arg(node.inputs[0]), ctx.arg(node.inputs[1])
    return f"tf.gather_nd({x}, {ctx.helper('elements_coords')}({x}, {i}, {node.attrs['axis']}))"


def _scatter(ctx: Ctx, node: Node, coords: str) -> str:
    x, u = ctx.arg(node.inputs[0]), ctx.arg(node.inputs[2])
    red = node.attrs["reduction"]
    if red == "mul":
        return f"{ctx.helper('scatter_mul')}({x}, {coords}, {u})"
    return f"{_SCATTER[red]}({x}, {coords}, {u})"


@_reg("scatter_elements")
def _scatter_elements(ctx: Ctx, node: Node) -> str:
    x, i = ctx.arg(node.inputs[0]), ctx.arg(node.inputs[1])
    return _scatter(ctx, node, f"{ctx.helper('elements_coords')}({x}, {i}, {node.attrs['axis']})")


@_reg("scatter_nd")
def _scatter_nd(ctx: Ctx, node: Node) -> str:
    x, i = ctx.arg(node.inputs[0]), ctx.arg(node.inputs[1])
    k = node.inputs[1].type.shape[-1].value
    lead = f"tf.shape({x}, out_type={i}.dtype)[:{k}]"
    return _scatter(ctx, node, f"tf.where({i} < 0, {i} + {lead}, {i})")


@_reg("cumsum")
def _cumsum(ctx: Ctx, node: Node) -> str:
    a = node.attrs
    return (
        f"tf.math.cumsum({ctx.arg(node.inputs[0])}, axis={a['axis']}, "
        f"exclusive={a['exclusive']}, reverse={a['reverse']})"
    )


@_reg("topk")
def _topk(ctx: Ctx, node: Node) -> str:
    a = node.attrs
    return f"{ctx.helper('top_k')}({ctx.arg(node.inputs[0])}, {a['k']}, {a['axis']}, {a['largest']})"
