"""``scan`` for TensorFlow: one ``tf.while_loop`` inside the traced ``tf.function``.

The body graph becomes a local function (``def step(x_t, h): ...``) written by
the same emitters as the rest of the model; a module-level helper runs it in a
``tf.while_loop`` over the slices of ``xs``, with the emits collected in
``TensorArray``s. The loop is a graph op: the body is traced once whatever the
sequence length, which is read at run time with ``tf.shape``. Body nodes read
values of the enclosing function (params, inputs, earlier results) as Python
closures, which TensorFlow captures into the loop body.
"""

from __future__ import annotations

from dlir.backends.tensorflow.lowering import HELPERS, TF_DTYPES, Ctx, _reg

from dlir.ir.graph import Node
from dlir.ir.types import TensorType


def _shape(t: TensorType) -> str:
    """A static shape for TensorFlow: symbolic dims are None."""
    return "[" + ", ".join(str(d.value) if d.is_static else "None" for d in t.shape) + "]"


@_reg("scan")
def _scan(ctx: Ctx, node: Node) -> str:
    assert node.body is not None, "a scan node owns its body graph"
    k = node.attrs["n_carry"]
    xs, inits = node.inputs[0], node.inputs[1 : 1 + k]
    step = ctx.step_function(node)
    fn = ctx.helper("scan")
    carries = ", ".join(ctx.arg(v) for v in inits)
    shapes = ", ".join(_shape(v.type) for v in inits)
    emits = ", ".join(f"({TF_DTYPES[v.type.dtype]}, {_shape(v.type)})" for _, v in node.body.outputs[k:])
    first = [j for j, y in enumerate(node.outputs[: len(node.body.outputs) - k]) if ctx.steps_first(y)]
    steps_first = f", steps_first={tuple(first)}" if first and node.attrs["axis"] else ""
    return (
        f"{fn}({step}, {ctx.arg(xs)}, [{carries}], axis={node.attrs['axis']}, reverse={node.attrs['reverse']}, "
        f"carry_shapes=[{shapes}], emits=[{emits}]{steps_first})"
    )


HELPERS["scan"] = '''def scan(
    step, xs: tf.Tensor, inits: list, axis: int, reverse: bool, carry_shapes: list, emits: list,
    steps_first: tuple = (),
) -> list:
    """Run ``step(x_t, *carries) -> (*new_carries, *emits)`` over the slices of ``xs`` along ``axis``.

    One tf.while_loop: the step is traced once, whatever the sequence length. The
    emits (``emits`` gives their dtypes and shapes) are collected in TensorArrays
    and stacked along ``axis``; with ``reverse`` the steps run from the last slice
    to the first and the stacked emits stay aligned with the slices they came from.
    The emits whose index is in ``steps_first`` stay stacked along axis 0 (a later
    loop reads them a step at a time: a contiguous slice, no transpose of the stack).
    Returns the stacked emits, then the final carries.
    """
    n = tf.shape(xs)[axis]
    shapes = [tf.TensorShape(s) for s in carry_shapes]
    arrays = [tf.TensorArray(dtype, size=n, element_shape=shape) for dtype, shape in emits]

    def body(i: tf.Tensor, carries: list, arrays: list) -> tuple:
        t = n - 1 - i if reverse else i
        out = step(tf.gather(xs, t, axis=axis), *carries)
        new = [tf.convert_to_tensor(h) for h in out[: len(carries)]]
        for h, shape in zip(new, shapes):
            h.set_shape(shape)  # as precise as the loop's invariant
        # Written in step order (what tf2onnx's Loop conversion expects); reversed after the loop.
        return i + 1, new, [a.write(i, e) for a, e in zip(arrays, out[len(carries) :])]

    _, last, arrays = tf.while_loop(
        lambda i, carries, arrays: i < n,
        body,
        (tf.constant(0), list(inits), arrays),
        shape_invariants=(tf.TensorShape([]), shapes, [tf.TensorShape(None) for _ in arrays]),
    )
    ys = []
    for j, a in enumerate(arrays):
        y = a.stack()  # [T, ...] in step order: put it in slice order, the step axis at ``axis``
        if reverse:
            y = tf.reverse(y, [0])
        if axis and j not in steps_first:
            y = tf.transpose(y, [*range(1, axis + 1), 0, *range(axis + 1, len(y.shape))])
        ys.append(y)
    return [*ys, *last]
'''
