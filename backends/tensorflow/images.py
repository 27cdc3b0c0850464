"""Convolution, pooling, batch norm and LRN for TensorFlow, computed channels-last.

dlir's images are NCHW; TensorFlow's CPU conv and pool kernels take NHWC only.
These emitters read their image with ``ctx.nhwc(x)`` and return an :class:`Nhwc`
expression, so the code generator keeps the result channels-last and transposes
back to NCHW only where some reader needs it (see :mod:`.layout`): a
conv -> relu -> pool -> conv chain transposes at its two ends only. Weights stay
in dlir's layout in their ``tf.Variable`` (``[O, C/groups, kh, kw]``) and are
transposed to TensorFlow's ``[kh, kw, C/groups, O]`` where they are read.

Padding is four explicit ints in the IR. It becomes ``padding="SAME"`` when it
equals TensorFlow's own SAME for the geometry (the extra cell at the bottom/right,
as dlir's ``"same"``), ``"VALID"`` when zero, and a ``tf.pad`` (zeros; -inf for
a max) before ``"VALID"`` otherwise. ``ceil_mode`` windows that reach past the
padding get that overhang padded too (it never wins a max and never counts in
an average), following the op's numpy reference.

A node in NHWC layout (the ``layout`` pass, ``-O3``) has an image that is
channels-last in the IR already: it is read and returned as it is, with no
transpose (:func:`_image`). A conv2d's fused ``act`` applies after the bias add,
which grappler fuses into the conv kernel.
"""

from __future__ import annotations

from collections.abc import Callable

from dlir.backends.codegen import py_num
from dlir.backends.tensorflow.lowering import HELPERS, Ctx, Nhwc, _reg, _rounded_once, fused_act

from dlir.ir.graph import Node
from dlir.ir.types import Dim, DType, TensorType
from dlir.ops.conv import extent, has_running_stats, nchw_twin, out_len

# -- geometry ----------------------------------------------------------------------------


def _tf_same_pads(x: TensorType, kernel: list[int], stride: list[int], dilation: list[int]) -> list[int] | None:
    """TensorFlow's SAME padding as [top, left, bottom, right], None where it depends on an unknown size."""
    pads = [0, 0, 0, 0]
    for i, (d, k, s, dil) in enumerate(zip(x.shape[2:], kernel, stride, dilation, strict=True)):
        ext = extent(k, dil)
        if s == 1:
            total = ext - 1
        elif d.is_static:
            total = max((-(-d.value // s) - 1) * s + ext - d.value, 0)
        else:
            return None
        pads[i], pads[i + 2] = total // 2, total - total // 2
    return pads


def _overhang(
    ctx: Ctx, node: Node, x_nhwc: str, kernel: list[int], stride: list[int], dilation: list[int]
) -> list[str]:
    """Cells past the bottom/right padding that ceil_mode windows reach ("0" when none)."""
    x, pads = node.inputs[0].type, node.attrs["padding"]
    out: list[str] = []
    for i in range(2):
        lo, hi, ext, s = pads[i], pads[i + 2], extent(kernel[i], dilation[i]), stride[i]
        d, od = x.shape[2 + i], node.outputs[0].type.shape[2 + i]
        if not node.attrs.get("ceil_mode", False):
            out.append("0")
        elif d.is_static:
            n = out_len(d.value, lo, hi, ext, s, ceil_mode=True)
            assert n is not None, "the shape rule rejects windows larger than the padded input"
            out.append(str(max((n - 1) * s + ext - (d.value + lo + hi), 0)))
        elif not od.unknown:
            # stride 1, or a span the stride divides: every window ends inside the padding.
            out.append("0")
        else:
            fn = ctx.helper("ceil_overhang")
            out.append(f"{fn}(tf.shape({x_nhwc})[{1 + i}], {lo}, {hi}, {ext}, {s})")
    return out


def _paddings(pads: list[int], extra: list[str] | None = None) -> str:
    """tf.pad's paddings for NHWC from [top, left, bottom, right] (+ overhang)."""
    top, left, bottom, right = pads
    eb, er = extra or ["0", "0"]
    b = str(bottom) if eb == "0" else f"{bottom} + {eb}" if bottom else eb
    r = str(right) if er == "0" else f"{right} + {er}" if right else er
    return f"[[0, 0], [{top}, {b}], [{left}, {r}], [0, 0]]"


def _pair(v: list[int]) -> str:
    return f"[{v[0]}, {v[1]}]"


def _pool_geometry(node: Node) -> tuple[list[int], list[int], list[int]]:
    a = node.attrs
    kernel = list(a["kernel"])
    stride = list(a["stride"]) if a["stride"] is not None else kernel
    return kernel, stride, list(a.get("dilation", [1, 1]))


def _image(ctx: Ctx, node: Node) -> tuple[Node, str, Callable[[str], str]]:
    """The node as NCHW geometry sees it, the expression of its image channels-last, and how
    to mark the channels-last result: :class:`Nhwc` for an NCHW node (the code generator
    keeps its NHWC copy), nothing for an NHWC node (its IR value is channels-last)."""
    if node.attrs["layout"] == "NHWC":
        return nchw_twin(node), ctx.arg(node.inputs[0]), str
    return node, ctx.nhwc(node.inputs[0]), Nhwc


# -- conv2d ------------------------------------------------------------------------------


@_reg("conv2d")
def _conv2d(ctx: Ctx, node: Node) -> str:
    node, x, result = _image(ctx, node)
    x_t, w_t = node.inputs[0].type, node.inputs[1].type
    a = node.attrs
    stride, dilation, pads = list(a["stride"]), list(a["dilation"]), list(a["padding"])
    kernel = [d.value for d in w_t.shape[2:]]
    if any(pads) and pads == _tf_same_pads(x_t, kernel, stride, dilation):
        padding = '"SAME"'
    else:
        padding = '"VALID"'
        if any(pads):
            x = f"tf.pad({x}, {_paddings(pads)})"
    # [O, C/groups, kh, kw] -> [kh, kw, C/groups, O]; groups follow from C / (C/groups).
    w = f"tf.transpose({ctx.arg(node.inputs[1])}, perm=[2, 3, 1, 0])"
    dil = "" if dilation == [1, 1] else f", dilations={_pair(dilation)}"
    groups = a["groups"]
    bias = ctx.arg(node.inputs[2]) if len(node.inputs) == 3 else None
    if groups > 1 and w_t.shape[1] == Dim.of(1) and w_t.shape[0].is_static and (dilation == [1, 1] or stride == [1, 1]):
        # depthwise: output channel c * m + j reads input channel c, as [kh, kw, C, m] says
        w = f"tf.reshape({w}, [{kernel[0]}, {kernel[1]}, {groups}, {w_t.shape[0].value // groups}])"
        strides = f"[1, {stride[0]}, {stride[1]}, 1]"
        # TF's half depthwise kernel sums in half precision (2 ulp off): sum in f32, round once
        expr = _rounded_once(
            node, lambda x, w: f"tf.nn.depthwise_conv2d({x}, {w}, strides={strides}, padding={padding}{dil})", x, w
        )
    else:
        expr = f"tf.nn.conv2d({x}, {w}, strides={_pair(stride)}, padding={padding}{dil})"
        if groups > 1 and bias is not None:
            # Grappler would fuse a BiasAdd into a conv kernel that rejects groups: a plain add.
            return result(fused_act(ctx, a["act"], f"({expr} + {bias})"))
    if bias is not None:
        expr = f"tf.nn.bias_add({expr}, {bias})"
    return result(fused_act(ctx, a["act"], expr))


# -- pooling -----------------------------------------------------------------------------


@_reg("max_pool2d")
def _max_pool2d(ctx: Ctx, node: Node) -> str:
    node, x, result = _image(ctx, node)
    kernel, stride, dilation = _pool_geometry(node)
    pads = list(node.attrs["padding"])
    extra = _overhang(ctx, node, x, kernel, stride, dilation)
    padding = '"VALID"'
    same = _tf_same_pads(node.inputs[0].type, kernel, stride, dilation)
    if extra == ["0", "0"] and dilation == [1, 1] and any(pads) and pads == same:
        padding = '"SAME"'  # TF's SAME max ignores the padding, as -inf does
    elif any(pads) or extra != ["0", "0"]:
        x = f"tf.pad({x}, {_paddings(pads, extra)}, constant_values=float('-inf'))"
    if dilation == [1, 1]:
        return result(f"tf.nn.max_pool2d({x}, ksize={_pair(kernel)}, strides={_pair(stride)}, padding={padding})")
    # tf.nn.pool takes dilations with stride 1 only: pool every position, then keep every stride-th.
    window = f"window_shape={_pair(kernel)}, dilations={_pair(dilation)}"
    expr = f'tf.nn.pool({x}, {window}, pooling_type="MAX", padding="VALID")'
    if stride != [1, 1]:
        expr = f"{expr}[:, ::{stride[0]}, ::{stride[1]}, :]"
    return result(expr)


@_reg("avg_pool2d")
def _avg_pool2d(ctx: Ctx, node: Node) -> str:
    node, x, result = _image(ctx, node)
    kernel, stride, _ = _pool_geometry(node)
    pads = list(node.attrs["padding"])
    include_pad = node.attrs["count_include_pad"]
    extra = _overhang(ctx, node, x, kernel, stride, [1, 1])
    args = f"ksize={_pair(kernel)}, strides={_pair(stride)}"
    if extra == ["0", "0"]:
        if not any(pads):
            return result(f'tf.nn.avg_pool2d({x}, {args}, padding="VALID")')
        if include_pad:  # every window lies in the zero-padded input: divide by its size
            return result(f'tf.nn.avg_pool2d(tf.pad({x}, {_paddings(pads)}), {args}, padding="VALID")')
        if pads == _tf_same_pads(node.inputs[0].type, kernel, stride, [1, 1]):
            return result(f'tf.nn.avg_pool2d({x}, {args}, padding="SAME")')  # TF's SAME counts real cells only
    fn = ctx.helper("avg_pool2d")
    return result(
        f"{fn}({x}, {_pair(kernel)}, {_pair(stride)}, pads={list(pads)}, overhang=[{extra[0]}, {extra[1]}], "
        f"count_include_pad={include_pad})"
    )


# -- batch_norm --------------------------------------------------------------------------


@_reg("batch_norm")
def _batch_norm(ctx: Ctx, node: Node) -> str:
    x, *params = node.inputs
    if ctx.training and has_running_stats(node):
        return _batch_norm_train(ctx, node)
    fn = ctx.helper("batch_norm")
    eps = py_num(node.attrs["eps"])
    rest = ", ".join(ctx.arg(p) for p in params)
    if node.attrs["layout"] == "NHWC":  # channels last in the IR already
        return f"{fn}({ctx.arg(x)}, {rest}, eps={eps})"
    if x.type.rank == 4 and ctx.prefer_nhwc(node, [x]):
        # channels last: the [C] params broadcast as they are
        return Nhwc(f"{fn}({ctx.nhwc(x)}, {rest}, eps={eps})")
    shape = None if x.type.rank == 2 else [-1] + [1] * (x.type.rank - 2)
    return f"{fn}({ctx.arg(x)}, {rest}, eps={eps}, shape={shape})"


def _batch_norm_train(ctx: Ctx, node: Node) -> str:
    """The training path: batch statistics, the moving ones (tf.Variables) updated in place."""
    x, *params = node.inputs
    fn = ctx.helper("batch_norm_train")
    rank = x.type.rank
    attrs = f"eps={py_num(node.attrs['eps'])}, momentum={py_num(node.attrs['momentum'])}"
    rest = ", ".join(ctx.arg(p) for p in params)
    if node.attrs["layout"] == "NHWC":
        return f"{fn}({ctx.arg(x)}, {rest}, axes={list(range(rank - 1))}, {attrs})"
    if rank == 4 and ctx.prefer_nhwc(node, [x]):
        return Nhwc(f"{fn}({ctx.nhwc(x)}, {rest}, axes=[0, 1, 2], {attrs})")
    axes = [a for a in range(rank) if a != 1]
    shape = None if rank == 2 else [-1] + [1] * (rank - 2)
    return f"{fn}({ctx.arg(x)}, {rest}, axes={axes}, {attrs}, shape={shape})"


# -- lrn ---------------------------------------------------------------------------------


def _tf_lrn_fits(node: Node) -> bool:
    """Whether tf.nn.local_response_normalization computes this lrn exactly.

    Its window is symmetric (an odd size), its kernels are float32 (and half on
    CPU), and on a GPU cuDNN wants depth_radius in [1, 7], beta >= 0.01 and
    bias >= 1e-5; everything else goes through the ``lrn`` helper.
    """
    a = node.attrs
    size = a["size"]
    return (
        node.inputs[0].type.dtype is DType.f32
        and size % 2 == 1
        and 3 <= size <= 15
        and a["beta"] >= 0.01
        and a["bias"] >= 1e-5
    )


@_reg("lrn")
def _lrn(ctx: Ctx, node: Node) -> str:
    x = node.inputs[0]
    a = node.attrs
    nums = f"bias={py_num(a['bias'])}, beta={py_num(a['beta'])}"
    if a["layout"] == "NHWC":  # channels last in the IR already: computed as it is
        return _lrn_channels_last(ctx, node, ctx.arg(x), nums)
    if x.type.rank == 4 and ctx.prefer_nhwc(node, [x]):
        return Nhwc(_lrn_channels_last(ctx, node, ctx.nhwc(x), nums))
    return _lrn_helper(ctx, node, ctx.arg(x), nums, axis=1)


def _lrn_channels_last(ctx: Ctx, node: Node, x_nhwc: str, nums: str) -> str:
    """The lrn of ``x_nhwc``, channels on its last axis: TensorFlow's own kernel where it fits."""
    a = node.attrs
    size = a["size"]
    if _tf_lrn_fits(node):
        # TensorFlow's alpha is not divided by the window size, ONNX's is.
        alpha = py_num(a["alpha"] / size)
        return f"tf.nn.local_response_normalization({x_nhwc}, depth_radius={size // 2}, alpha={alpha}, {nums})"
    return _lrn_helper(ctx, node, x_nhwc, nums, axis=3)


def _lrn_helper(ctx: Ctx, node: Node, x: str, nums: str, axis: int) -> str:
    """The ``lrn`` helper's call; half precision computed in float32 and rounded once, as the reference."""
    size, alpha = node.attrs["size"], py_num(node.attrs["alpha"])
    return _rounded_once(node, lambda v: f"{ctx.helper('lrn')}({v}, {size}, alpha={alpha}, {nums}, axis={axis})", x)


HELPERS.update(
    {
        "ceil_overhang": '''def ceil_overhang(size: tf.Tensor, lo: int, hi: int, ext: int, stride: int) -> tf.Tensor:
    """Cells past the padding that ceil_mode windows of ``ext`` cells reach (PyTorch's rule).

    ceil(span / stride) + 1 windows, less a last one that would start in the
    bottom/right padding or beyond.
    """
    n = (size + lo + hi - ext + stride - 1) // stride + 1
    n = tf.where((n - 1) * stride >= size + lo, n - 1, n)
    return tf.maximum((n - 1) * stride + ext - (size + lo + hi), 0)
''',
        "avg_pool2d": '''def avg_pool2d(
    x: tf.Tensor, kernel: list[int], stride: list[int], pads: list[int], overhang: list, count_include_pad: bool
) -> tf.Tensor:
    """Average pooling of NHWC ``x`` with PyTorch's divisor.

    ``pads`` are [top, left, bottom, right] zeros; ``overhang`` the [bottom, right]
    cells that ceil_mode windows reach past them. Each window's sum is divided by
    its cells inside the padded input (count_include_pad) or inside x, never by
    overhang cells.
    """
    top, left, bottom, right = pads
    full = [[0, 0], [top, bottom + overhang[0]], [left, right + overhang[1]], [0, 0]]
    mean = tf.nn.avg_pool2d(tf.pad(x, full), kernel, stride, "VALID")  # window sum / window size
    cells = tf.ones_like(x[:1, :, :, :1])
    if count_include_pad:
        cells = tf.pad(cells, [[0, 0], [top, bottom], [left, right], [0, 0]], constant_values=1)
        full = [[0, 0], [0, overhang[0]], [0, overhang[1]], [0, 0]]
    # the share of each window's cells that count, the same divided by the window size
    return mean / tf.nn.avg_pool2d(tf.pad(cells, full), kernel, stride, "VALID")
''',
        "lrn": '''def lrn(x: tf.Tensor, size: int, alpha: float, bias: float, beta: float, axis: int) -> tf.Tensor:
    """ONNX's LRN across ``axis``: x / (bias + alpha/size * sum of x^2 over channels c-lo..c+hi) ** beta.

    lo = (size - 1) // 2 and hi = size // 2 (an even window reaches one channel further
    up). The window sum is an average pool of the zero-padded squares viewed as
    [A, C + size - 1, B, 1], A and B the sizes of the axes before and after ``axis``.
    """
    lo, hi = (size - 1) // 2, size // 2
    shape = tf.shape(x)
    pads = [[0, 0]] * len(x.shape)
    pads[axis] = [lo, hi]
    squares = tf.pad(tf.square(x), pads)
    view = tf.stack([tf.reduce_prod(shape[:axis]), shape[axis] + size - 1, tf.reduce_prod(shape[axis + 1 :]), 1])
    mean = tf.nn.avg_pool2d(tf.reshape(squares, view), [size, 1], 1, "VALID")
    return x / (bias + alpha * tf.reshape(mean, shape)) ** beta
''',
        "batch_norm": '''def batch_norm(
    x: tf.Tensor,
    scale: tf.Tensor,
    bias: tf.Tensor,
    mean: tf.Tensor,
    var: tf.Tensor,
    eps: float,
    shape: list | None = None,
) -> tf.Tensor:
    """Inference-form batch norm per channel: (x - mean) / sqrt(var + eps) * scale + bias.

    ``shape`` reshapes the [C] params to broadcast over x's trailing axes
    ([-1, 1, 1] for NCHW); None when the channels are x's last axis.
    """
    if shape is not None:
        scale, bias, mean, var = (tf.reshape(p, shape) for p in (scale, bias, mean, var))
    return (x - mean) * (scale / tf.sqrt(var + eps)) + bias
''',
        "batch_norm_train": '''def batch_norm_train(
    x: tf.Tensor,
    scale: tf.Tensor,
    bias: tf.Tensor,
    mean: tf.Variable,
    var: tf.Variable,
    axes: list[int],
    eps: float,
    momentum: float,
    shape: list | None = None,
) -> tf.Tensor:
    """Training-form batch norm, as torch's train(): the batch's statistics normalise x.

    The moving statistics are updated by torch's rule, (1 - momentum) * moving +
    momentum * batch, with the unbiased batch variance (Keras' momentum m is 1 - this).
    """
    batch_mean = tf.reduce_mean(x, axis=axes, keepdims=True)
    centred = x - batch_mean
    squares = tf.square(centred)
    batch_var = tf.reduce_mean(squares, axis=axes, keepdims=True)
    # eps inside the mean of squares, as in layer_norm: no normalisation fusion can drop it
    rstd = tf.math.rsqrt(tf.reduce_mean(squares + eps, axis=axes, keepdims=True))
    n = tf.cast(tf.size(x) // tf.size(batch_mean), x.dtype)
    mean.assign((1.0 - momentum) * mean + momentum * tf.reshape(batch_mean, [-1]))
    var.assign((1.0 - momentum) * var + momentum * tf.reshape(batch_var, [-1]) * n / (n - 1.0))
    if shape is not None:
        scale, bias = tf.reshape(scale, shape), tf.reshape(bias, shape)
    return centred * rstd * scale + bias
''',
    }
)
