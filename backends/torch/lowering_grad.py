"""Torch emitters for the backward ops (dlir.ops.backward): the kernels torch.autograd runs itself.

- ``relu_grad`` is ``threshold_backward``, relu's own backward;
- ``tanh_grad`` / ``sigmoid_grad`` / ``gelu_grad`` are ``tanh_backward`` / ``sigmoid_backward`` /
  ``gelu_backward``;
- ``max_pool2d_grad`` recomputes the forward pool's indices with
  ``return_indices=True`` (one pool, no copies) and scatters through them with
  ``max_pool2d_with_indices_backward``, as autograd does with the indices it kept;
- ``conv2d_input_grad`` is ``F.conv_transpose2d``, with an ``F.pad`` that crops
  (or zero-fills) to the image where the padding is not symmetric;
- ``conv2d_weight_grad`` is ``torch.nn.grad.conv2d_weight`` (``convolution_backward``
  for the weight alone);
- ``layer_norm_grad`` is ``native_layer_norm_backward``, reading the statistics the
  forward ``native_layer_norm`` kept (or recomputing them where there is no forward);
- ``softmax_grad`` / ``log_softmax_grad`` are ``_softmax_backward_data`` /
  ``_log_softmax_backward_data``;
- ``batch_norm_train`` / ``_grad`` are ``F.batch_norm(training=True)`` (``native_batch_norm``
  where its backward reads the statistics it keeps) and ``native_batch_norm_backward``.
"""

from __future__ import annotations

from dlir.backends.codegen import py_num
from dlir.backends.torch.lowering_nn import _kernel_args, _native_padding, _pads, _pair, _pair_src, _torch_pad
from dlir.backends.torch.site import Emitter, Site, torch_dtype, tuple_src

from dlir.ops.backward import conv_frame, pool_frame


def _relu_grad(s: Site) -> str:
    y, g = s.args
    return f"torch.ops.aten.threshold_backward({g}, {y}, 0)"


def _activation_grad(aten: str) -> Emitter:
    def emit(s: Site) -> str:
        y, g = s.args
        return f"torch.ops.aten.{aten}({g}, {y})"

    return emit


def _gelu_grad(s: Site) -> str:
    x, g = s.args
    return f"torch.ops.aten.gelu_backward({g}, {x}, approximate={s.attr('approximate')!r})"


def max_pool2d_grad(s: Site, indices: str | None = None) -> str:
    """``indices``: those the forward pool kept (the code generator pairs the two where torch
    pads the pool itself, see step_patterns.pools_with_grads); otherwise it pools again."""
    x, g = s.args
    kernel, stride = _pair(s.attr("kernel")), _pair(s.attr("stride"))
    ceil = s.attr("ceil_mode")
    native = _native_padding(s, kernel)
    if native is None:
        assert indices is None, "only a pool torch pads itself keeps its indices"
        # torch pools pad symmetrically by at most half the kernel: pool the -inf padded frame
        # every window lies in, then cut the padding (and zero-fill uncovered rows) off its gradient.
        (top, left, _, _), (bottom, right) = _pads(s), pool_frame(s.node)
        x = f"F.pad({x}, {_torch_pad(left, right, top, bottom)}, value=float('-inf'))"
        grad = _pool_backward(x, g, kernel, stride, (0, 0), False)
        return f"F.pad({grad}, {_torch_pad(-left, -right, -top, -bottom)})"
    return _pool_backward(x, g, kernel, stride, native, ceil, indices)


def pool_with_indices(
    x: str, kernel: tuple[int, int], stride: tuple[int, int], pad: tuple[int, int], ceil: bool
) -> str:
    """``F.max_pool2d(..., return_indices=True)``: the pooled values and where each came from."""
    pad_arg = f", padding={_pair_src(pad)}" if pad != (0, 0) else ""
    ceil_arg = ", ceil_mode=True" if ceil else ""
    return f"F.max_pool2d({x}, {_kernel_args(kernel, stride)}{pad_arg}{ceil_arg}, return_indices=True)"


def _pool_backward(
    x: str,
    g: str,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pad: tuple[int, int],
    ceil: bool,
    indices: str | None = None,
) -> str:
    """The backward kernel; ``indices`` from the forward pool when it kept them, else pooled again."""
    if indices is None:
        indices = f"{pool_with_indices(x, kernel, stride, pad, ceil)}[1]"
    geometry = f"{list(kernel)}, {list(stride)}, {list(pad)}, [1, 1], {ceil}"
    return f"torch.ops.aten.max_pool2d_with_indices_backward({g}, {x}, {geometry}, {indices})"


def shared_pool_geometry(pool: Site) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], bool] | None:
    """(kernel, stride, padding, ceil_mode) of an NCHW, undilated max_pool2d that torch pools
    itself (symmetric padding within half the kernel): its indices can serve the backward."""
    if pool.node.attrs.get("layout", "NCHW") != "NCHW" or _pair(pool.attr("dilation")) != (1, 1):
        return None
    kernel, stride = _pair(pool.attr("kernel")), _pair(pool.attr("stride"))
    native = _native_padding(pool, kernel)
    return None if native is None else (kernel, stride, native, bool(pool.attr("ceil_mode")))


def _conv2d_input_grad(s: Site) -> str:
    g, w = s.args
    stride = _pair(s.attr("stride"))
    top, left, bottom, right = s.attr("padding")
    fb, fr = conv_frame(s.node)  # the frame's own bottom/right padding
    st = f", stride={_pair_src(stride)}" if stride != (1, 1) else ""
    if (top, left) == (bottom, right):
        # conv_transpose2d's padding crops both sides alike; output_padding adds the rows
        # past the last window, which no window read (their gradient is zero)
        extra = (bottom - fb, right - fr)
        pad = f", padding={_pair_src((top, left))}" if (top, left) != (0, 0) else ""
        out_pad = f", output_padding={_pair_src(extra)}" if extra != (0, 0) else ""
        return f"F.conv_transpose2d({g}, {w}{st}{pad}{out_pad})"
    frame = f"F.conv_transpose2d({g}, {w}{st})"
    return f"F.pad({frame}, {_torch_pad(-left, -fr, -top, -fb)})"


def _conv2d_weight_grad(s: Site) -> str:
    x, g = s.args
    o, c = s.node.outputs[0].type.shape[:2]
    kh, kw = s.attr("kernel")
    stride = _pair(s.attr("stride"))
    top, left, bottom, right = s.attr("padding")
    st = f", stride={_pair_src(stride)}" if stride != (1, 1) else ""
    pad = ""
    if (top, left) == (bottom, right):
        pad = f", padding={_pair_src((top, left))}" if (top, left) != (0, 0) else ""
    else:
        x = f"F.pad({x}, {_torch_pad(left, right, top, bottom)})"
    return f"torch.nn.grad.conv2d_weight({x}, ({o.value}, {c.value}, {kh}, {kw}), {g}{st}{pad})"


def _normalized_shape(s: Site) -> str:
    ax = s.attr("axis") % s.in_type.rank
    return "[" + ", ".join(s.dim(d) for d in s.in_type.shape[ax:]) + "]"


def layer_norm_keeping_stats(s: Site) -> str:
    """layer_norm's forward as ``native_layer_norm``: the result, and the mean and 1/sigma its
    backward reads (the code generator pairs the two: step_patterns.norms_with_grads)."""
    x, gamma, beta = s.args
    return f"torch.ops.aten.native_layer_norm({x}, {_normalized_shape(s)}, {gamma}, {beta}, {py_num(s.attr('eps'))})"


def layer_norm_grad(s: Site, stats: str | None = None) -> str:
    """``stats``: the forward's mean and 1/sigma, where it kept them; otherwise one more
    layer-norm pass gives them (native_layer_norm_backward wants them)."""
    x, gamma, g = s.args
    shape = _normalized_shape(s)
    if stats is None:
        stats = f"*torch.ops.aten.native_layer_norm({x}, {shape}, {gamma}, None, {py_num(s.attr('eps'))})[1:]"
    grads = f"torch.ops.aten.native_layer_norm_backward({g}, {x}, {shape}, {stats}, {gamma}, None, [True, True, False])"
    ax = s.attr("axis") % s.in_type.rank
    lead = tuple_src([str(i) for i in range(ax)])
    dbeta = f"torch.sum({g}, dim={lead})" if ax else g
    return f"*{grads}[:2], {dbeta}"


def _softmax_grad(fn: str) -> Emitter:
    def emit(s: Site) -> str:
        y, g = s.args
        dt = torch_dtype(s.in_type.dtype)
        return f"torch.{fn}({g}, {y}, {s.attr('axis') % s.in_type.rank}, {dt})"

    return emit


def _channels_to_1(s: Site, x: str) -> tuple[str, str]:
    """``x`` with its channel axis moved to 1 (torch's batch norm layout), and how to move it back."""
    ch = s.attr("channel") % s.in_type.rank
    if ch == 1:
        return x, "{}"
    return f"{x}.movedim({ch}, 1)", f"{{}}.movedim(1, {ch})"


def _batch_norm_train(s: Site) -> str:
    x, scale, bias = s.args
    x, back = _channels_to_1(s, x)
    eps = py_num(s.attr("eps"))
    return back.format(f"F.batch_norm({x}, None, None, {scale}, {bias}, training=True, momentum=0.0, eps={eps})")


def batch_norm_train_keeping_stats(s: Site, running: tuple[str, str] | None = None) -> str:
    """batch_norm_train (channel axis 1) as ``native_batch_norm``: the result, and the batch's mean
    and 1/sigma its backward reads (paired by step_patterns.norms_with_grads). ``running``: two
    zero-filled buffers that receive the batch's mean and unbiased variance (momentum 1)."""
    x, scale, bias = s.args
    buffers, momentum = ("None, None", "0.0") if running is None else (", ".join(running), "1.0")
    eps = py_num(s.attr("eps"))
    return f"torch.ops.aten.native_batch_norm({x}, {scale}, {bias}, {buffers}, True, {momentum}, {eps})"


def batch_norm_train_grad(s: Site, stats: str | None = None) -> str:
    """``stats``: the forward's batch mean and 1/sigma, where it kept them; otherwise
    native_batch_norm computes them again (native_batch_norm_backward wants them)."""
    x, scale, g = s.args
    x, back = _channels_to_1(s, x)
    g = _channels_to_1(s, g)[0]
    eps = py_num(s.attr("eps"))
    if stats is None:
        stats = f"*torch.ops.aten.native_batch_norm({x}, None, None, None, None, True, 0.0, {eps})[1:]"
    grads = (
        f"torch.ops.aten.native_batch_norm_backward({g}, {x}, {scale}, None, None, {stats}, True, {eps}, "
        "[True, True, True])"
    )
    if back == "{}":
        return grads
    dx, dscale, dbias = (f"{grads}[{i}]" for i in range(3))
    return f"{back.format(dx)}, {dscale}, {dbias}"


GRAD_EMITTERS: dict[str, Emitter] = {
    "relu_grad": _relu_grad,
    "tanh_grad": _activation_grad("tanh_backward"),
    "sigmoid_grad": _activation_grad("sigmoid_backward"),
    "gelu_grad": _gelu_grad,
    "max_pool2d_grad": max_pool2d_grad,
    "conv2d_input_grad": _conv2d_input_grad,
    "conv2d_weight_grad": _conv2d_weight_grad,
    "layer_norm_grad": layer_norm_grad,
    "softmax_grad": _softmax_grad("_softmax_backward_data"),
    "log_softmax_grad": _softmax_grad("_log_softmax_backward_data"),
    "batch_norm_train": _batch_norm_train,
    "batch_norm_train_grad": batch_norm_train_grad,
}
