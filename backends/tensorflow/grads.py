"""TensorFlow emitters for the backward ops (dlir.ops.backward): the kernels GradientTape runs itself.

- ``relu_grad`` is ``ReluGrad``; ``tanh_grad`` / ``sigmoid_grad`` are ``TanhGrad`` / ``SigmoidGrad``;
- ``max_pool2d_grad`` is ``MaxPoolGrad`` over the frame every window lies in (the
  image padded with -inf, or cut where floor-mode windows never reach), the frame's
  pool recomputed (grappler merges it with the forward pool it equals); the
  gradient is then cut back to the image;
- ``conv2d_input_grad`` is ``tf.nn.conv2d_transpose`` with explicit padding
  (``Conv2DBackpropInput``);
- ``conv2d_weight_grad`` is ``Conv2DBackpropFilter`` with explicit padding;
- ``batch_norm_train`` / ``_grad`` are ``FusedBatchNormV3`` / ``FusedBatchNormGradV3``
  (float32 NCHW images, read channels-last; any other batch norm is decomposed);
- ``layer_norm_grad`` and the softmax gradients have no kernel: their decompositions
  are written (``DECOMPOSE``).

All of them compute channels-last, as the forward conv and pool kernels do
(:mod:`.images`): their images are read with ``ctx.nhwc`` and the result is
:class:`Nhwc`.
"""

from __future__ import annotations

from dlir.backends.codegen import py_num
from dlir.backends.decompose import DECOMPOSE
from dlir.backends.tensorflow import layout
from dlir.backends.tensorflow.lowering import (
    EMITTERS,
    HELPERS,
    KERNEL_FITS,
    Ctx,
    Nhwc,
    _reg,
    _template,
    partial_sum_axes,
)

from dlir.ir.graph import Node, Value
from dlir.ir.types import DType
from dlir.ops.backward import conv_frame, pool_frame


def _pair(v: list[int]) -> str:
    return f"[{v[0]}, {v[1]}]"


def pad_or_crop(x: str, top: int, bottom: int, left: int, right: int, value: str = "") -> str:
    """NHWC ``x`` grown (positive amounts, filled with ``value``: zeros by default) or cut (negative)."""
    cut = [(max(0, -top), bottom if bottom < 0 else None), (max(0, -left), right if right < 0 else None)]
    if any(a or b is not None for a, b in cut):
        parts = ", ".join(f"{a or ''}:{'' if b is None else b}" for a, b in cut)
        x = f"{x}[:, {parts}, :]"
    grow = [max(0, top), max(0, bottom), max(0, left), max(0, right)]
    if any(grow):
        fill = f", constant_values={value}" if value else ""
        x = f"tf.pad({x}, [[0, 0], [{grow[0]}, {grow[1]}], [{grow[2]}, {grow[3]}], [0, 0]]{fill})"
    return x


_template("relu_grad", "tf.raw_ops.ReluGrad(gradients={1}, features={0})")  # relu_grad(y, g)
_template("tanh_grad", "tf.raw_ops.TanhGrad(y={0}, dy={1})")
_template("sigmoid_grad", "tf.raw_ops.SigmoidGrad(y={0}, dy={1})")


@_reg("max_pool2d_grad")
def _max_pool2d_grad(ctx: Ctx, node: Node) -> str:
    x_v, g_v = node.inputs
    a = node.attrs
    kernel, stride, (top, left, _, _) = list(a["kernel"]), list(a["stride"]), a["padding"]
    bottom, right = pool_frame(node)
    frame = pad_or_crop(ctx.nhwc(x_v), top, bottom, left, right, "float('-inf')")
    geometry = f'ksize=[1, {kernel[0]}, {kernel[1]}, 1], strides=[1, {stride[0]}, {stride[1]}, 1], padding="VALID"'
    pooled = f'tf.nn.max_pool2d({frame}, ksize={_pair(kernel)}, strides={_pair(stride)}, padding="VALID")'
    grad = f"tf.raw_ops.MaxPoolGrad(orig_input={frame}, orig_output={pooled}, grad={ctx.nhwc(g_v)}, {geometry})"
    return Nhwc(pad_or_crop(grad, -top, -bottom, -left, -right))


def _same_padding(n: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow's "SAME" padding of one spatial axis of size n (kernel k, stride s), before and after."""
    total = max((-(-n // s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def named_padding(pads: tuple[int, int, int, int], size: list[int], kernel: list[int], stride: list[int]) -> str | None:
    """``padding="VALID"`` or ``"SAME"`` where the explicit (top, bottom, left, right) padding of an
    image of ``size`` is that, else None. oneDNN rewrites the backprop kernels only for the named
    paddings: Conv2DBackpropFilter with explicit padding stays TensorFlow's own, ~6x slower
    (4.8 against 0.7 ms for LeNet's first conv, 1 thread)."""
    if not any(pads):
        return 'padding="VALID"'
    top, bottom, left, right = pads
    if (top, bottom) == _same_padding(size[0], kernel[0], stride[0]) and (left, right) == _same_padding(
        size[1], kernel[1], stride[1]
    ):
        return 'padding="SAME"'
    return None


@_reg("conv2d_input_grad")
def _conv2d_input_grad(ctx: Ctx, node: Node) -> str:
    g_v, w_v = node.inputs
    a = node.attrs
    stride, (top, left, _, _), size = list(a["stride"]), a["padding"], list(a["size"])
    fb, fr = conv_frame(node)
    # The frame's bottom/right padding; negative: the image's last rows no window reads (zero gradient).
    pads = f"[[0, 0], [{top}, {max(fb, 0)}], [{left}, {max(fr, 0)}], [0, 0]]"
    n = ctx.dim(g_v.type.shape[0], node)
    c = w_v.type.shape[1].value
    h, w = size[0] + min(fb, 0), size[1] + min(fr, 0)
    w_hwio = f"tf.transpose({ctx.arg(w_v)}, perm=[2, 3, 1, 0])"
    kernel = [d.value for d in w_v.type.shape[2:]]
    named = named_padding((top, max(fb, 0), left, max(fr, 0)), [h, w], kernel, stride)
    expr = (
        f"tf.nn.conv2d_transpose({ctx.nhwc(g_v)}, {w_hwio}, output_shape=[{n}, {h}, {w}, {c}], "
        f"strides={_pair(stride)}, {named or f'padding={pads}'})"
    )
    return Nhwc(pad_or_crop(expr, 0, -min(fb, 0), 0, -min(fr, 0)))


@_reg("conv2d_weight_grad")
def _conv2d_weight_grad(ctx: Ctx, node: Node) -> str:
    x_v, g_v = node.inputs
    a = node.attrs
    (kh, kw), stride, (top, left, bottom, right) = a["kernel"], list(a["stride"]), a["padding"]
    o, c = (d.value for d in node.outputs[0].type.shape[:2])
    # the padding as the kernel's own (named where it can be), not a padded copy of the image
    size = [d.value for d in x_v.type.shape[2:]]
    pads = named_padding((top, bottom, left, right), size, [kh, kw], stride) or (
        f'padding="EXPLICIT", explicit_paddings=[0, 0, {top}, {bottom}, {left}, {right}, 0, 0]'
    )
    grad = (
        f"tf.raw_ops.Conv2DBackpropFilter(input={ctx.nhwc(x_v)}, filter_sizes=[{kh}, {kw}, {c}, {o}], "
        f"out_backprop={ctx.nhwc(g_v)}, strides=[1, {stride[0]}, {stride[1]}, 1], {pads})"
    )
    return f"tf.transpose({grad}, perm=[3, 2, 0, 1])"  # [kh, kw, C, O] -> dlir's [O, C, kh, kw]


# TensorFlow has no layer-norm gradient kernel (GradientTape differentiates the composite too).
# Nor a softmax or GELU gradient kernel.
for _op in ("gelu_grad", "layer_norm_grad", "softmax_grad", "log_softmax_grad"):
    EMITTERS[_op] = DECOMPOSE


# -- batch norm in train mode: FusedBatchNormV3 and FusedBatchNormGradV3, as Keras' BatchNormalization,
# given the batch's statistics summed in float64. Both kernels read the image channels-last, float32
# only on the CPU: any other batch norm (float64, rank 2, another channel axis) is decomposed.
def _fused_batch_norm_fits(node: Node) -> bool:
    x = node.inputs[0].type
    return x.rank == 4 and node.attrs["channel"] % 4 == 1 and x.dtype is DType.f32


KERNEL_FITS["batch_norm_train"] = KERNEL_FITS["batch_norm_train_grad"] = _fused_batch_norm_fits

HELPERS[
    "batch_moments"
] = '''def batch_moments(x: tf.Tensor, inner: list[int], count: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The mean and (biased) variance of NHWC x per channel, summed as wide_sum sums.

    FusedBatchNormV3's own float32 statistics drift ~2e-6 over a [64, 28, 28] batch (a
    result 1.5e-5 away where the mean is large against the spread); these are the numpy
    reference's. The running-statistics update writes the same reductions, and grappler
    runs one of each for both.
    """
    return wide_mean(x, [0, 1, 2], inner, count), wide_variance(x, [0, 1, 2], inner, count)
'''
HELPERS["fused_batch_norm"] = '''def fused_batch_norm(
    x: tf.Tensor, scale: tf.Tensor, bias: tf.Tensor, eps: float, inner: list[int], count: int
) -> tf.Tensor:
    """Batch norm of NHWC x with the batch's statistics: FusedBatchNormV3 given them."""
    mean, var = batch_moments(x, inner, count)
    return tf.raw_ops.FusedBatchNormV3(
        x=x, scale=scale, offset=bias, mean=mean, variance=var, epsilon=eps, data_format="NHWC", is_training=False
    )[0]
'''
HELPERS["fused_batch_norm_grad"] = '''def fused_batch_norm_grad(
    x: tf.Tensor, scale: tf.Tensor, g: tf.Tensor, eps: float, inner: list[int], count: int
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """batch_norm_train's VJP by FusedBatchNormGradV3 (NHWC x and g): dx (back in NCHW), dscale, dbias.

    Its reserve spaces are the batch's mean and variance on the CPU (and for oneDNN's kernel).
    """
    mean, var = batch_moments(x, inner, count)
    dx, dscale, dbias, _, _ = tf.raw_ops.FusedBatchNormGradV3(
        y_backprop=g, x=x, scale=scale, reserve_space_1=mean, reserve_space_2=var,
        reserve_space_3=tf.zeros([0]), epsilon=eps, data_format="NHWC", is_training=True,
    )
    return tf.transpose(dx, perm=[0, 3, 1, 2]), dscale, dbias
'''


def _moments_args(ctx: Ctx, x: Value) -> str:
    """batch_moments' ``inner, count`` for x read channels-last: the partial sums the running
    statistics' mean and var of x write too (so grappler runs each once)."""
    for helper in ("batch_moments", "wide_mean", "wide_variance"):
        ctx.helper(helper)
    inner, count = partial_sum_axes(x.type, [0, 2, 3], lambda a: layout.NHWC_AXIS[a])
    return f"[{', '.join(map(str, inner))}], {count}"


@_reg("batch_norm_train")
def _batch_norm_train(ctx: Ctx, node: Node) -> str:
    x, scale, bias = node.inputs
    fn = ctx.helper("fused_batch_norm")
    eps = py_num(node.attrs["eps"])
    return Nhwc(f"{fn}({ctx.nhwc(x)}, {ctx.arg(scale)}, {ctx.arg(bias)}, {eps}, {_moments_args(ctx, x)})")


@_reg("batch_norm_train_grad")
def _batch_norm_train_grad(ctx: Ctx, node: Node) -> str:
    x, scale, g = node.inputs
    fn = ctx.helper("fused_batch_norm_grad")
    eps = py_num(node.attrs["eps"])
    return f"{fn}({ctx.nhwc(x)}, {ctx.arg(scale)}, {ctx.nhwc(g)}, {eps}, {_moments_args(ctx, x)})"
