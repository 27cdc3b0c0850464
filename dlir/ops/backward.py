"""Backward ops: the gradient kernels every framework has, as ops of their own.

The VJP rules of ``relu``, ``max_pool2d`` and ``conv2d`` could be (and were)
written with ordinary ops: ``where(x > 0, g, 0)``, a recomputed argmax through
window copies, a padded convolution of the flipped kernel. Each framework has a
dedicated kernel for these that is many times faster (``threshold_backward``,
``max_pool2d_with_indices_backward``, ``conv_transpose2d`` in torch; ``ReluGrad``,
``MaxPoolGrad``, ``Conv2DBackpropInput``, ``Conv2DBackpropFilter`` in TensorFlow;
``MaxPool``'s indices and ``ConvTranspose`` in ONNX), so the rules emit these ops
and every backend lowers them to its kernel. Each is an ordinary OpDef: a shape rule, a numpy reference
and a VJP of its own, so grad of grad keeps working.

- ``relu_grad(y, g)``: ``g`` where ``y > 0``, else 0 (``y`` is relu's input or its
  result: the two are positive at the same places).
- ``tanh_grad(y, g)``, ``sigmoid_grad(y, g)``: their VJPs from the result ``y``; ``gelu_grad(x, g)``
  gelu's from its input.
- ``max_pool2d_grad(x, g)``: max_pool2d's VJP at ``x``: each window's cotangent goes
  to the first maximum of the window (row-major, as torch; TensorFlow and ONNX
  Runtime pick the same cell). Dilation 1, static height and width.
- ``conv2d_input_grad(g, w)``: conv2d's VJP with respect to its image, for an image
  of ``size`` [H, W]: the transposed convolution. One group, dilation 1.
- ``conv2d_weight_grad(x, g)``: conv2d's VJP with respect to its kernel (of size
  ``kernel``). One group, dilation 1, static height and width.
- ``layer_norm_grad(x, gamma, g)``: layer_norm's VJP, ``(dx, dgamma, dbeta)``.
- ``softmax_grad(y, g)``, ``log_softmax_grad(y, g)``: their VJPs from the result ``y``.
- ``batch_norm_train(x, scale, bias)`` (train mode's forward: the batch's statistics) and
  ``batch_norm_train_grad(x, scale, g)``: ``(dx, dscale, dbias)``.

An op with a ``decompose`` (the activation gradients, layer_norm_grad, the
softmax gradients, the batch norms) is also written with ordinary ops: a target without a kernel for it lowers
that (``DECOMPOSE`` in its table), and its VJP differentiates it.

The rules fall back to the decomposed forms outside these domains (dilated pools,
grouped or dilated convs, symbolic image sizes, float64 convs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from dlir.errors import TypeError_
from dlir.ir.types import TensorType
from dlir.ops.conv import _pool_canonical, _pool_geometry, _require_nchw, spatial_out, windows
from dlir.ops.elementwise import _erf
from dlir.ops.registry import Attr, OpDef, register
from dlir.ops.shape_rules import norm_axis, require_float, same_dtype

if TYPE_CHECKING:
    from dlir.autodiff.builder import GradBuilder
    from dlir.ir.graph import Node, Value

# -- relu_grad -------------------------------------------------------------------------------


def _same_shape(a: TensorType, b: TensorType) -> bool:
    return a.rank == b.rank and all(x.compatible(y) for x, y in zip(a.shape, b.shape, strict=True))


def _relu_grad_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    y, g = ts
    require_float("relu_grad", g)
    same_dtype("relu_grad", ts)
    if not _same_shape(y, g):
        raise TypeError_(f"relu_grad: y: {y} and g: {g} must have one shape")
    return [g]


def _relu_grad_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    y, g = xs
    return [np.where(y > 0, g, 0).astype(g.dtype)]


def _relu_grad_vjp(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
    # Linear in g; piecewise constant in y.
    return [None, b.op("relu_grad", node.inputs[0], cts[0])]


register(
    OpDef(
        "relu_grad",
        ("y", "g"),
        (),
        _relu_grad_infer,
        _relu_grad_ref,
        doc="relu's VJP: g where y > 0, else 0 (y: relu's input or result)",
        elementwise=True,
        vjp=_relu_grad_vjp,
        family="backward",
    )
)


# -- tanh_grad, sigmoid_grad ------------------------------------------------------------------
# Their VJPs from the result: g (1 - y^2) and g y (1 - y), three elementwise passes each when
# written with ordinary ops, one kernel in every framework (torch's tanh_backward and
# sigmoid_backward, TensorFlow's TanhGrad and SigmoidGrad). An LSTM's backward step has five.


def _tanh_grad_decompose(b: GradBuilder, node: Node) -> list[Value]:
    y, g = node.inputs
    return [b.mul(g, b.sub(b.const(1.0, y), b.mul(y, y)))]


def _sigmoid_grad_decompose(b: GradBuilder, node: Node) -> list[Value]:
    y, g = node.inputs
    return [b.mul(g, b.mul(y, b.sub(b.const(1.0, y), y)))]


def _tanh_grad_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    y, g = xs
    return [(g * (1 - y * y)).astype(g.dtype)]


def _sigmoid_grad_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    y, g = xs
    return [(g * (y * (1 - y))).astype(g.dtype)]


def _activation_grad_infer(name: str) -> Any:
    def infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
        y, g = ts
        require_float(name, g)
        same_dtype(name, ts)
        if not _same_shape(y, g):
            raise TypeError_(f"{name}: y: {y} and g: {g} must have one shape")
        return [g]

    return infer


for _name, _of, _ref, _decompose in (
    ("tanh_grad", "tanh", _tanh_grad_ref, _tanh_grad_decompose),
    ("sigmoid_grad", "sigmoid", _sigmoid_grad_ref, _sigmoid_grad_decompose),
):
    register(
        OpDef(
            _name,
            ("y", "g"),
            (),
            _activation_grad_infer(_name),
            _ref,
            doc=f"{_of}'s VJP from its result y: {'g (1 - y^2)' if _of == 'tanh' else 'g y (1 - y)'}",
            elementwise=True,
            vjp=lambda b, node, cts: b.vjp_through_decomposition(node, cts),
            decompose=_decompose,
            family="backward",
        )
    )


# -- gelu_grad ---------------------------------------------------------------------------------
# GELU's VJP from its input: ~15 elementwise ops written out (the tanh form), one kernel in torch
# (gelu_backward, what autograd runs). TensorFlow and ONNX have none: the decomposition.
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_K = 0.044715


def _gelu_grad_decompose(b: GradBuilder, node: Node) -> list[Value]:
    x, g = node.inputs
    if node.attrs["approximate"] == "tanh":
        # y = x/2 (1 + t), t = tanh(c (x + k x^3)):  y' = (1 + t)/2 + x/2 (1 - t^2) c (1 + 3k x^2)
        x2 = b.mul(x, x)
        u = b.scale(b.add(x, b.scale(b.mul(x2, x), _GELU_K)), _SQRT_2_OVER_PI)
        t = b.op("tanh", u)
        one = b.const(1.0, x)
        du = b.scale(b.add(one, b.scale(x2, 3 * _GELU_K)), _SQRT_2_OVER_PI)
        inner = b.mul(b.mul(b.scale(x, 0.5), b.sub(one, b.mul(t, t))), du)
        return [b.mul(g, b.add(b.scale(b.add(one, t), 0.5), inner))]
    # y = x Phi(x):  y' = Phi(x) + x phi(x)
    cdf = b.scale(b.add(b.const(1.0, x), b.op("erf", b.scale(x, 1.0 / math.sqrt(2.0)))), 0.5)
    pdf = b.scale(b.op("exp", b.scale(b.mul(x, x), -0.5)), 1.0 / math.sqrt(2.0 * math.pi))
    return [b.mul(g, b.add(cdf, b.mul(x, pdf)))]


def _gelu_grad_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x, g = (v.astype(np.float64) for v in xs)
    if a["approximate"] == "tanh":
        t = np.tanh(_SQRT_2_OVER_PI * (x + _GELU_K * x**3))
        dy = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * _GELU_K * x * x)
    else:
        dy = 0.5 * (1 + _erf(x / math.sqrt(2.0))) + x * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return [(g * dy).astype(xs[1].dtype)]


register(
    OpDef(
        "gelu_grad",
        ("x", "g"),
        (Attr("approximate", "str", "none", ("none", "tanh")),),
        _activation_grad_infer("gelu_grad"),
        _gelu_grad_ref,
        doc='gelu\'s VJP from its input x (exact erf form, or approximate="tanh")',
        elementwise=True,
        vjp=lambda b, node, cts: b.vjp_through_decomposition(node, cts),
        decompose=_gelu_grad_decompose,
        family="backward",
    )
)


# -- max_pool2d_grad -----------------------------------------------------------------------


def _static_hw(op: str, t: TensorType) -> list[int]:
    if not all(d.is_static for d in t.shape[2:]):
        raise TypeError_(f"{op}: the image x: {t} must have a static height and width")
    return [d.value for d in t.shape[2:]]


def _frame(
    size: Sequence[int], top_left: Sequence[int], kernel: Sequence[int], stride: Sequence[int], out_hw: Sequence[int]
) -> list[int]:
    """[bottom, right]: the padding after which ``out_hw`` windows (the first at -top, -left) exactly
    cover the padded image; negative: rows of the image the last window does not reach."""
    return [(out_hw[i] - 1) * stride[i] + kernel[i] - size[i] - top_left[i] for i in range(2)]


def pool_frame(node: Node) -> list[int]:
    """:func:`_frame` of a max_pool2d_grad node (floor-mode windows on the frame are the op's)."""
    x, g = node.inputs
    a = node.attrs
    return _frame(_hw(x.type), a["padding"][:2], a["kernel"], a["stride"], _hw(g.type))


def _hw(t: TensorType) -> list[int]:
    return [d.value for d in t.shape[2:]]


def _max_pool_grad_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, g = ts
    _require_nchw("max_pool2d_grad", x)
    require_float("max_pool2d_grad", x)
    same_dtype("max_pool2d_grad", ts)
    _static_hw("max_pool2d_grad", x)
    kernel, stride, _ = _pool_geometry(a)
    out_hw = spatial_out("max_pool2d_grad", x, a["padding"], kernel, stride, [1, 1], a["ceil_mode"], what="window")
    want = x.with_shape([x.shape[0], x.shape[1], *out_hw])
    if not _same_shape(g, want):
        raise TypeError_(f"max_pool2d_grad: g: {g} must be max_pool2d's result {want} for x: {x}")
    return [x]


def _first_max_cells(x: np.ndarray, a: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """For every window of max_pool2d over ``x``: the row and column (in ``x``) of its first
    maximum, each [N, C, Ho, Wo]."""
    kernel, stride, _ = _pool_geometry(a)
    pads = a["padding"]
    win = windows(x.astype(np.float64), pads, kernel, stride, [1, 1], a["ceil_mode"], -np.inf)
    n, c, ho, wo = win.shape[:4]
    k = np.argmax(win.reshape(n, c, ho, wo, -1), axis=-1)  # the first maximum, row-major
    rows = np.arange(ho)[:, None] * stride[0] + k // kernel[1] - pads[0]
    cols = np.arange(wo)[None, :] * stride[1] + k % kernel[1] - pads[1]
    return rows, cols


def _max_pool_grad_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x, g = xs
    rows, cols = _first_max_cells(x, a)
    n, c = x.shape[:2]
    ni, ci = np.indices((n, c))
    # A window of nothing but -inf has its "maximum" in the padding: it gives nothing.
    h, w = x.shape[2:]
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    dx = np.zeros(x.shape, np.float64)
    at = (ni[:, :, None, None], ci[:, :, None, None], np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1))
    np.add.at(dx, at, np.where(inside, g.astype(np.float64), 0.0))
    return [dx]


def _max_pool_grad_vjp(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
    """Linear in g: its transpose reads the cotangent at each window's first maximum."""
    from dlir.ops.conv_grad import max_pool_first_hits

    x, h = node.inputs[0], cts[0]
    return [None, max_pool_first_hits(b, x, node.attrs, h)]


_POOL_ATTRS = (
    Attr("kernel", "pair"),
    Attr("stride", "pair?", None),
    Attr("padding", "padding", [0, 0, 0, 0]),
    Attr("ceil_mode", "bool", False),
)

register(
    OpDef(
        "max_pool2d_grad",
        ("x", "g"),
        _POOL_ATTRS,
        _max_pool_grad_infer,
        _max_pool_grad_ref,
        doc="max_pool2d's VJP at x [N, C, H, W] (static H, W) for the result's cotangent g: each window's g "
        "goes to its first maximum; attributes as max_pool2d's (no dilation)",
        canonical=_pool_canonical("max_pool2d_grad"),
        vjp=_max_pool_grad_vjp,
        family="backward",
    )
)


# -- conv2d_input_grad -----------------------------------------------------------------------


def conv_frame(node: Node) -> list[int]:
    """:func:`_frame` of a conv2d_input_grad node: its image's frame, read off g's windows."""
    g, w = node.inputs
    a = node.attrs
    return _frame(a["size"], a["padding"][:2], _hw(w.type), a["stride"], _hw(g.type))


def _conv_input_grad_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    g, w = ts
    require_float("conv2d_input_grad", g)
    same_dtype("conv2d_input_grad", ts)
    if g.rank != 4 or w.rank != 4 or not all(d.is_static for d in w.shape[2:]):
        raise TypeError_(f"conv2d_input_grad expects g: [N, O, Ho, Wo] and w: [O, C, kh, kw] (static), got {g}, {w}")
    if not g.shape[1].compatible(w.shape[0]):
        raise TypeError_(f"conv2d_input_grad: g: {g} has {g.shape[1]} channels, w: {w} makes {w.shape[0]}")
    x = g.with_shape([g.shape[0], w.shape[1], *a["size"]])
    out_hw = spatial_out("conv2d_input_grad", x, a["padding"], _hw(w), a["stride"], [1, 1])
    if not _same_shape(g, g.with_shape([*g.shape[:2], *out_hw])):
        raise TypeError_(f"conv2d_input_grad: g: {g} is not conv2d's result for an image of size {list(a['size'])}")
    return [x]


def _conv_input_grad_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    g, w = xs[0].astype(np.float64), xs[1].astype(np.float64)
    n, _, ho, wo = g.shape
    _, c, kh, kw = w.shape
    (sh, sw), pads, size = a["stride"], a["padding"], a["size"]
    bottom, right = _frame(size, pads[:2], [kh, kw], a["stride"], [ho, wo])
    frame = np.zeros((n, c, pads[0] + size[0] + bottom, pads[1] + size[1] + right))
    for i in range(kh):
        for j in range(kw):
            part = np.einsum("nohw,oc->nchw", g, w[:, :, i, j])
            frame[:, :, i : i + (ho - 1) * sh + 1 : sh, j : j + (wo - 1) * sw + 1 : sw] += part
    dx = np.zeros((n, c, *size))
    h, wd = min(size[0], frame.shape[2] - pads[0]), min(size[1], frame.shape[3] - pads[1])
    dx[:, :, :h, :wd] = frame[:, :, pads[0] : pads[0] + h, pads[1] : pads[1] + wd]
    return [dx]


def _conv_input_grad_vjp(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
    """Bilinear: d/dg is conv2d itself; d/dw is conv2d's weight gradient with the cotangent as image."""
    from dlir.ir.graph import Node as IrNode
    from dlir.ops.conv_grad import conv_weight_grad

    g, w = node.inputs
    h = cts[0]
    attrs = {"stride": node.attrs["stride"], "padding": node.attrs["padding"]}
    dg = b.op("conv2d", h, w, **attrs) if b.needs(0) else None
    dw = None
    if b.needs(1):
        view = IrNode("conv2d", [h, w], {**attrs, "dilation": [1, 1], "groups": 1, "act": "none"}, [g], node.loc)
        dw = conv_weight_grad(b, view, h, w, g)
    return [dg, dw]


register(
    OpDef(
        "conv2d_input_grad",
        ("g", "w"),
        (Attr("size", "pair"), Attr("stride", "pair", [1, 1]), Attr("padding", "ints", [0, 0, 0, 0])),
        _conv_input_grad_infer,
        _conv_input_grad_ref,
        doc="conv2d's VJP with respect to x [N, C, *size] for the result's cotangent g [N, O, Ho, Wo] and "
        "w [O, C, kh, kw]: the transposed convolution; stride and padding [top, left, bottom, right] as "
        "conv2d's (one group, no dilation)",
        vjp=_conv_input_grad_vjp,
        family="backward",
    )
)


# -- conv2d_weight_grad ----------------------------------------------------------------------


def _conv_weight_grad_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, g = ts
    _require_nchw("conv2d_weight_grad", x)
    require_float("conv2d_weight_grad", x)
    same_dtype("conv2d_weight_grad", ts)
    _static_hw("conv2d_weight_grad", x)
    if g.rank != 4 or not g.shape[0].compatible(x.shape[0]):
        raise TypeError_(f"conv2d_weight_grad: g: {g} must be [N, O, Ho, Wo] for x: {x}")
    out_hw = spatial_out("conv2d_weight_grad", x, a["padding"], a["kernel"], a["stride"], [1, 1])
    if not _same_shape(g, g.with_shape([*g.shape[:2], *out_hw])):
        raise TypeError_(f"conv2d_weight_grad: g: {g} is not conv2d's result over x: {x}")
    return [x.with_shape([g.shape[1], x.shape[1], *a["kernel"]])]


def _conv_weight_grad_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x, g = xs[0].astype(np.float64), xs[1].astype(np.float64)
    win = windows(x, a["padding"], a["kernel"], a["stride"], [1, 1], False, 0.0)  # [N, C, Ho, Wo, kh, kw]
    return [np.einsum("nohw,nchwij->ocij", g, win, optimize=True)]


def _conv_weight_grad_vjp(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
    """Bilinear: d/dx is the transposed convolution of g by the cotangent, d/dg the convolution of x by it."""
    x, g = node.inputs
    h = cts[0]
    a = node.attrs
    size = [d.value for d in x.type.shape[2:]]
    dx = b.op("conv2d_input_grad", g, h, size=size, stride=a["stride"], padding=a["padding"]) if b.needs(0) else None
    dg = b.op("conv2d", x, h, stride=a["stride"], padding=a["padding"]) if b.needs(1) else None
    return [dx, dg]


register(
    OpDef(
        "conv2d_weight_grad",
        ("x", "g"),
        (Attr("kernel", "pair"), Attr("stride", "pair", [1, 1]), Attr("padding", "ints", [0, 0, 0, 0])),
        _conv_weight_grad_infer,
        _conv_weight_grad_ref,
        doc="conv2d's VJP with respect to w [O, C, *kernel] at x [N, C, H, W] (static H, W) for the result's "
        "cotangent g [N, O, Ho, Wo]; stride and padding as conv2d's (one group, no dilation)",
        vjp=_conv_weight_grad_vjp,
        family="backward",
    )
)

# -- layer_norm_grad -------------------------------------------------------------------------


def _centred_and_inv(x: np.ndarray, axes: tuple[int, ...], eps: float) -> tuple[np.ndarray, np.ndarray]:
    """x - mean and 1/sigma over ``axes`` (biased variance), for the references."""
    centred = x - x.mean(axis=axes, keepdims=True)
    return centred, 1.0 / np.sqrt((centred * centred).mean(axis=axes, keepdims=True) + eps)


def _norm_parts(b: GradBuilder, x: Value, axes: list[int], eps: float) -> tuple[Value, Value]:
    """x - mean and 1/sigma over ``axes`` as ops; eps inside the mean, as the TensorFlow forward
    writes it: no Rsqrt(Mean + eps) chain for oneDNN's layer-norm fusion (its own eps) to match."""
    centred = b.sub(x, b.op("mean", x, axis=axes, keepdims=True))
    var_eps = b.op("mean", b.add(b.mul(centred, centred), b.const(eps, x)), axis=axes, keepdims=True)
    return centred, b.op("rsqrt", var_eps)


def _layer_norm_grad_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, gamma, g = ts
    require_float("layer_norm_grad", x)
    same_dtype("layer_norm_grad", ts)
    ax = norm_axis("layer_norm_grad", a["axis"], x.rank)
    if not _same_shape(g, x) or not _same_shape(gamma, x.with_shape(x.shape[ax:])):
        raise TypeError_(f"layer_norm_grad: expects g: {x} and gamma: {x.with_shape(x.shape[ax:])}, got {g}, {gamma}")
    return [x, gamma, gamma]


def _layer_norm_grad_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x, gamma, g = (v.astype(np.float64) for v in xs)
    ax = a["axis"] % x.ndim
    axes, lead = tuple(range(ax, x.ndim)), tuple(range(ax))
    centred, rstd = _centred_and_inv(x, axes, a["eps"])
    xh = centred * rstd
    dxh = g * gamma
    dx = rstd * (dxh - dxh.mean(axis=axes, keepdims=True) - xh * (dxh * xh).mean(axis=axes, keepdims=True))
    return [dx, (g * xh).sum(axis=lead), g.sum(axis=lead)]


def _layer_norm_grad_decompose(b: GradBuilder, node: Node) -> list[Value]:
    """``dx = rstd (dxh - mean(dxh) - xh mean(dxh xh))`` with ``dxh = g gamma``; ``dgamma = sum(g xh)``,
    ``dbeta = sum(g)`` over the leading axes; x-hat and 1/sigma recomputed."""
    x, gamma, g = node.inputs
    ax = norm_axis("layer_norm_grad", node.attrs["axis"], x.type.rank)
    axes, lead = list(range(ax, x.type.rank)), list(range(ax))
    centred, rstd = _norm_parts(b, x, axes, node.attrs["eps"])
    xh = b.mul(centred, rstd)
    dxh = b.mul(g, gamma)
    mean_dxh = b.op("mean", dxh, axis=axes, keepdims=True)
    mean_dxh_xh = b.op("mean", b.mul(dxh, xh), axis=axes, keepdims=True)
    dx = b.mul(rstd, b.sub(b.sub(dxh, mean_dxh), b.mul(xh, mean_dxh_xh)))
    return [dx, b.reduce("sum", b.mul(g, xh), lead, keepdims=False), b.reduce("sum", g, lead, keepdims=False)]


register(
    OpDef(
        "layer_norm_grad",
        ("x", "gamma", "g"),
        (Attr("axis", "int", -1), Attr("eps", "float", 1e-5)),
        _layer_norm_grad_infer,
        _layer_norm_grad_ref,
        doc="layer_norm's VJP at x with scale gamma for the result's cotangent g: (dx, dgamma, dbeta); "
        "attributes as layer_norm's",
        vjp=lambda b, node, cts: b.vjp_through_decomposition(node, cts),
        decompose=_layer_norm_grad_decompose,
        family="backward",
    )
)

# -- softmax_grad, log_softmax_grad ----------------------------------------------------------


def _softmax_grad_infer(name: str) -> Any:
    def infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
        y, g = ts
        require_float(name, y)
        same_dtype(name, ts)
        if not _same_shape(y, g) or y.rank == 0:
            raise TypeError_(f"{name}: y: {y} and g: {g} must have one shape of rank >= 1")
        norm_axis(name, a["axis"], y.rank)
        return [g]

    return infer


def _softmax_grad_ref(log: bool) -> Any:
    def ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
        y, g = (v.astype(np.float64) for v in xs)
        ax = a["axis"] % y.ndim
        if log:
            return [g - np.exp(y) * g.sum(axis=ax, keepdims=True)]
        return [y * (g - (g * y).sum(axis=ax, keepdims=True))]

    return ref


def _softmax_grad_decompose(log: bool) -> Any:
    def decompose(b: GradBuilder, node: Node) -> list[Value]:
        y, g = node.inputs
        axis = [norm_axis(node.op, node.attrs["axis"], y.type.rank)]
        if log:  # g - softmax(x) sum(g), softmax(x) = exp(y)
            return [b.sub(g, b.mul(b.op("exp", y), b.op("sum", g, axis=axis, keepdims=True)))]
        return [b.mul(y, b.sub(g, b.op("sum", b.mul(g, y), axis=axis, keepdims=True)))]  # y (g - sum(g y))

    return decompose


for _log, _name in ((False, "softmax_grad"), (True, "log_softmax_grad")):
    register(
        OpDef(
            _name,
            ("y", "g"),
            (Attr("axis", "int", -1),),
            _softmax_grad_infer(_name),
            _softmax_grad_ref(_log),
            doc=f"{_name.removesuffix('_grad')}'s VJP from its result y and the result's cotangent g",
            vjp=lambda b, node, cts: b.vjp_through_decomposition(node, cts),
            decompose=_softmax_grad_decompose(_log),
            family="backward",
        )
    )

# -- batch_norm_train, batch_norm_train_grad -------------------------------------------------
# Batch norm in train mode (dlir.train.modes): normalised with the batch's statistics.
# Its forward and backward are fused kernels in torch (native_batch_norm and its backward);
# written with ordinary ops they are ~6 and ~10 passes over the activations.


def _bn_axes(a: dict[str, Any], rank: int) -> tuple[int, list[int]]:
    ch = a["channel"] % rank
    return ch, [i for i in range(rank) if i != ch]


def _bn_train_infer(name: str, n_out: int) -> Any:
    def infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
        x, scale = ts[0], ts[1]
        require_float(name, x)
        same_dtype(name, ts)
        if x.rank < 2:
            raise TypeError_(f"{name}: x: {x} needs a batch and a channel axis")
        ch, _ = _bn_axes(a, x.rank)
        per_channel = x.with_shape([x.shape[ch]])
        grad = name.endswith("_grad")
        if not _same_shape(scale, per_channel) or not (grad or _same_shape(ts[2], per_channel)):
            raise TypeError_(f"{name}: scale and bias must be {per_channel} for x: {x}")
        if grad and not _same_shape(ts[2], x):
            raise TypeError_(f"{name}: g: {ts[2]} must be shaped like x: {x}")
        return [x] + [per_channel] * (n_out - 1)

    return infer


def _bn_stats(x: np.ndarray, a: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, list[int], tuple[int, ...]]:
    """x - mean, 1/sigma over the batch, the per-channel broadcast shape, and the reduced axes."""
    ch, axes = _bn_axes(a, x.ndim)
    shape = [1] * x.ndim
    shape[ch] = -1
    centred, inv = _centred_and_inv(x, tuple(axes), a["eps"])
    return centred, inv, shape, tuple(axes)


def _bn_train_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x, scale, bias = (v.astype(np.float64) for v in xs)
    centred, inv, shape, _ = _bn_stats(x, a)
    return [centred * inv * scale.reshape(shape) + bias.reshape(shape)]


def _bn_train_grad_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x, scale, g = (v.astype(np.float64) for v in xs)
    centred, inv, shape, axes = _bn_stats(x, a)
    xh = centred * inv
    dbias, dscale = g.sum(axis=axes), (g * xh).sum(axis=axes)
    n = x.size / x.shape[_bn_axes(a, x.ndim)[0]]
    dx = scale.reshape(shape) * inv / n * (n * g - dbias.reshape(shape) - xh * dscale.reshape(shape))
    return [dx, dscale, dbias]


def _bn_parts(b: GradBuilder, node: Node) -> tuple[Value, Value, list[int], list[int]]:
    """x - mean and 1/sigma over the batch, the reduced axes and the per-channel broadcast shape."""
    x = node.inputs[0]
    ch, axes = _bn_axes(node.attrs, x.type.rank)
    per_channel = [1] * x.type.rank
    per_channel[ch] = -1
    centred, inv = _norm_parts(b, x, axes, node.attrs["eps"])
    return centred, inv, axes, per_channel


def _bn_train_decompose(b: GradBuilder, node: Node) -> list[Value]:
    _, scale, bias = node.inputs
    centred, inv, _, per_channel = _bn_parts(b, node)
    scaled = b.mul(b.mul(centred, inv), b.op("reshape", scale, shape=per_channel))
    return [b.add(scaled, b.op("reshape", bias, shape=per_channel))]


def _bn_train_grad_decompose(b: GradBuilder, node: Node) -> list[Value]:
    """``dx = scale inv (g - mean(g) - xh mean(g xh))``; dscale, dbias the sums of g xh and g."""
    _, scale, g = node.inputs
    centred, inv, axes, per_channel = _bn_parts(b, node)
    xh = b.mul(centred, inv)
    gxh = b.mul(g, xh)
    mean_g = b.op("mean", g, axis=axes, keepdims=True)
    mean_gxh = b.op("mean", gxh, axis=axes, keepdims=True)
    dx = b.mul(b.mul(b.op("reshape", scale, shape=per_channel), inv), b.sub(b.sub(g, mean_g), b.mul(xh, mean_gxh)))
    return [dx, b.op("sum", gxh, axis=axes), b.op("sum", g, axis=axes)]


_BN_ATTRS = (Attr("channel", "int", 1), Attr("eps", "float", 1e-5))

register(
    OpDef(
        "batch_norm_train",
        ("x", "scale", "bias"),
        _BN_ATTRS,
        _bn_train_infer("batch_norm_train", 1),
        _bn_train_ref,
        doc="batch norm with the batch's statistics (biased variance) over every axis but `channel`: "
        "train mode's forward",
        vjp=lambda b, node, cts: b.ops("batch_norm_train_grad", [node.inputs[0], node.inputs[1], cts[0]], **node.attrs),
        decompose=_bn_train_decompose,
        family="backward",
    )
)
register(
    OpDef(
        "batch_norm_train_grad",
        ("x", "scale", "g"),
        _BN_ATTRS,
        _bn_train_infer("batch_norm_train_grad", 3),
        _bn_train_grad_ref,
        doc="batch_norm_train's VJP for the result's cotangent g: (dx, dscale, dbias)",
        vjp=lambda b, node, cts: b.vjp_through_decomposition(node, cts),
        decompose=_bn_train_grad_decompose,
        family="backward",
    )
)

__all__ = ["conv_frame", "pool_frame"]
