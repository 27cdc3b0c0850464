"""VJP rules of conv2d, the pools and batch_norm (the autodiff pass calls these; they emit
nothing but dlir ops).

Every rule is written for NCHW. A node in NHWC layout (made by the ``layout`` pass)
is differentiated through transposes: its image, result and cotangent are viewed
as NCHW, the NCHW rule runs on that view, and the image's cotangent goes back to
NHWC (:func:`in_nchw`). A conv2d with a fused ``act`` goes through the
activation's own rule first, as ``linear`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from dlir.ir.graph import Node
from dlir.ir.types import Dim, DType, TensorType
from dlir.ops.conv import TO_NCHW, TO_NHWC, _pool_geometry, _window_counts, extent
from dlir.ops.linalg import act_vjp
from dlir.ops.shape import END, interleave_zeros, unslice_axis

if TYPE_CHECKING:
    from dlir.autodiff.builder import GradBuilder
    from dlir.ir.graph import Value


def in_nchw(
    b: GradBuilder, node: Node, cts: list[Value], rule: Callable[..., list[Value | None]]
) -> list[Value | None]:
    """``rule`` (written for NCHW) applied to an NHWC node through a view of it in NCHW."""
    if node.attrs.get("layout", "NCHW") == "NCHW":
        return rule(b, node, cts)
    x, y = node.inputs[0], node.outputs[0]
    x_v, y_v, g_v = (b.op("transpose", v, perm=TO_NCHW) for v in (x, y, cts[0]))
    # Not in any graph: the rules read the inputs, outputs and attributes only.
    view = Node(node.op, [x_v, *node.inputs[1:]], {**node.attrs, "layout": "NCHW"}, [y_v], node.loc)
    out = rule(b, view, [g_v])
    if out[0] is not None:
        out[0] = b.op("transpose", out[0], perm=TO_NHWC)
    return out


def conv_vjp(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
    return in_nchw(b, node, cts, _conv_vjp)


def pool_vjp(kind: str) -> Callable[..., list[Value | None]]:
    rule = _pool_vjp(kind)
    return lambda b, node, cts: in_nchw(b, node, cts, rule)


def bn_vjp(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
    return in_nchw(b, node, cts, _bn_vjp)


def _to_channels(b: GradBuilder, v: Value, rank: int) -> Value:
    """A per-channel [C] vector as [C, 1, ...] so that it broadcasts over axis 1 of a rank-``rank`` x."""
    return b.op("unsqueeze", v, axes=list(range(1, rank - 1))) if rank > 2 else v


def _bn_vjp(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
    """y = (x - mean) r scale + bias with r = 1/sqrt(var + eps); per-channel sums over the other axes."""
    x, scale, _, mean, var = node.inputs
    g = cts[0]
    rank = x.type.rank
    others = [0] + list(range(2, rank))
    r = b.op("rsqrt", b.add(var, b.const(node.attrs["eps"], var)))
    centred = b.sub(x, _to_channels(b, mean, rank))
    g_sum = b.op("sum", g, axis=others)
    g_centred = b.op("sum", b.mul(g, centred), axis=others)
    gx = b.mul(g, _to_channels(b, b.mul(scale, r), rank))
    g_mean = b.neg(b.mul(g_sum, b.mul(scale, r)))
    g_var = b.mul(g_centred, b.mul(scale, b.scale(b.mul(r, b.mul(r, r)), -0.5)))
    return [gx, b.mul(g_centred, r), g_sum, g_mean, g_var]


def _flip(b: GradBuilder, w: Value, axes: Sequence[int]) -> Value:
    """w reversed along each of ``axes`` (static sizes), as a gather of the indices k-1..0."""
    for ax in axes:
        k = w.type.shape[ax].value
        if k > 1:
            w = b.op("gather", w, b.op("constant", value=list(range(k - 1, -1, -1)), dtype=DType.i64), axis=ax)
    return w


def _dilate(b: GradBuilder, g: Value, stride: Sequence[int]) -> Value:
    """``stride - 1`` zeros between neighbours along H and W (the transpose of a strided read)."""
    for i, s in enumerate(stride):
        if s > 1:
            g = interleave_zeros(b, g, 2 + i, s)
    return g


def _crop_or_pad(b: GradBuilder, v: Value, before: Sequence[int], after: Sequence[int]) -> tuple[Value, list[int]]:
    """Cut off the negative amounts of [top, left] / [bottom, right] now; the rest is padding to apply."""
    starts, ends, axes = [], [], []
    for i in range(2):
        if before[i] < 0 or after[i] < 0:
            starts.append(max(0, -before[i]))
            ends.append(after[i] if after[i] < 0 else END)
            axes.append(2 + i)
    if axes:
        v = b.op("slice", v, starts=starts, ends=ends, axes=axes, steps=[1] * len(axes))
    return v, [max(0, before[0]), max(0, before[1]), max(0, after[0]), max(0, after[1])]


def _conv_vjp(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
    """dx: a convolution of the dilated cotangent with the flipped kernel; dw: a convolution of x
    with the cotangent as kernel; db: the sum over batch and space. Grouped as the forward; a
    fused activation's rule comes first."""
    x, w = node.inputs[0], node.inputs[1]
    g = cts[0]
    if node.attrs.get("act", "none") != "none":
        # Through the decomposition act(conv2d(x, w, b)): the activation's rule first.
        z = b.op("conv2d", *node.inputs, **{**node.attrs, "act": "none"})
        g = act_vjp(b, node.attrs["act"], z, node.outputs[0], g)
    out: list[Value | None] = [
        _conv_dx(b, node, x, w, g) if b.needs(0) else None,
        conv_weight_grad(b, node, x, w, g) if b.needs(1) else None,
    ]
    if len(node.inputs) == 3:
        out.append(b.op("sum", g, axis=[0, 2, 3]))
    return out


def _static_hw(b: GradBuilder, t: TensorType, what: str) -> list[int]:
    dims = t.shape[2:]
    if not all(d.is_static for d in dims):
        raise b.error(
            f"cannot differentiate {what} over an image of symbolic size {t}",
            hint="give the height and width as numbers in the input type",
        )
    return [d.value for d in dims]


def _static(b: GradBuilder, d: Dim, what: str) -> int:
    if not d.is_static:
        raise b.error(f"cannot differentiate {what}: it needs {d} as a number", hint="give the image size as numbers")
    return d.value


def _fast_conv_grad(x: Value, dilation: Sequence[int], groups: int) -> bool:
    """Whether conv2d's VJP uses the backward ops (dlir.ops.backward): one group, no dilation, a
    static image size, not float64 (ONNX Runtime has no double ConvTranspose or Conv; float64,
    the dtype of gradient checks, keeps the decomposition)."""
    static = all(d.is_static for d in x.type.shape[2:])
    return groups == 1 and list(dilation) == [1, 1] and x.type.dtype is not DType.f64 and static


def _conv_dx(b: GradBuilder, node: Node, x: Value, w: Value, g: Value) -> Value:
    a = node.attrs
    stride, dil, pads, groups = a["stride"], a["dilation"], a["padding"], a["groups"]
    if _fast_conv_grad(x, dil, groups):
        # The transposed convolution every framework has.
        size = [d.value for d in x.type.shape[2:]]
        return b.op("conv2d_input_grad", g, w, size=size, stride=list(stride), padding=list(pads))
    o, cg, kh, kw = w.type.shape
    kernel = [kh.value, kw.value]
    ext = [extent(k, d) for k, d in zip(kernel, dil, strict=True)]
    # The full correlation of the dilated cotangent covers padded rows 0 .. (Ho-1) s + ext - 1;
    # x's rows are padded rows top .. top + H - 1. (With stride 1 both ends are static.)
    before = [ext[i] - 1 - pads[i] for i in range(2)]
    after = [
        _static(b, x.type.shape[2 + i] - 1 + pads[i] - (g.type.shape[2 + i] - 1) * stride[i], "conv2d")
        for i in range(2)
    ]
    gd, conv_pads = _crop_or_pad(b, _dilate(b, g, stride), before, after)
    # [O, C/G, kh, kw] -> [C, O/G, kh, kw] per group, flipped in space.
    wt = w
    if groups > 1:
        og = o.exact_div(groups)
        assert og is not None, "the shape rule makes O a multiple of groups"
        grouped = w.type.with_shape([groups, og, cg, kh, kw])
        wt = b.op("reshape", wt, shape=b.dims(grouped))
        wt = b.op("transpose", wt, perm=[0, 2, 1, 3, 4])
        wt = b.op("reshape", wt, shape=b.dims(w.type.with_shape([cg * groups, og, kh, kw])))
    else:
        wt = b.op("transpose", wt, perm=[1, 0, 2, 3])
    wt = _flip(b, wt, [2, 3])
    return b.op("conv2d", gd, wt, stride=[1, 1], padding=conv_pads, dilation=dil, groups=groups)


def conv_weight_grad(b: GradBuilder, node: Node, x: Value, w: Value, g: Value) -> Value:
    """conv2d's VJP with respect to w: x convolved with the cotangent as kernel (batch as channels)."""
    a = node.attrs
    stride, dil, pads, groups = a["stride"], a["dilation"], a["padding"], a["groups"]
    _, cg, kh, kw = w.type.shape
    if _fast_conv_grad(x, dil, groups):
        # the framework's own weight-gradient kernel (dlir.ops.backward)
        kernel = [kh.value, kw.value]
        return b.op("conv2d_weight_grad", x, g, kernel=kernel, stride=list(stride), padding=list(pads))
    if not all(d.is_static for d in g.type.shape[2:]):
        return _conv_dw_by_windows(b, node, x, w, g)
    n = x.type.shape[0]
    # x as [C/G, G*N, H, W] (batch: the channels of a group; channels: group-major samples) and the
    # cotangent as a kernel [O, N, Ho, Wo]: a grouped convolution gives [C/G, O, kh', kw'].
    if groups == 1:
        xt = b.op("transpose", x, perm=[1, 0, 2, 3])
    else:
        h, wd = x.type.shape[2:]
        xt = b.op("reshape", x, shape=b.dims(x.type.with_shape([n, groups, cg, h, wd])))
        xt = b.op("transpose", xt, perm=[2, 1, 0, 3, 4])
        xt = b.op("reshape", xt, shape=b.dims(x.type.with_shape([cg, n * groups, h, wd])))
    gk = b.op("transpose", g, perm=[1, 0, 2, 3])
    dw = b.op("conv2d", xt, gk, stride=dil, padding=pads, dilation=stride, groups=groups)
    if dw.type.shape[2:] != (kh, kw):  # rows past the last window's reach
        dw = b.op("slice", dw, starts=[0, 0], ends=[kh.value, kw.value], axes=[2, 3], steps=[1, 1])
    return b.op("transpose", dw, perm=[1, 0, 2, 3])


def _conv_dw_by_windows(b: GradBuilder, node: Node, x: Value, w: Value, g: Value) -> Value:
    """dw for an image of symbolic size (the cotangent cannot be a kernel): one matmul per
    kernel offset, ``dw[:, :, i, j] = g[O, N*Ho*Wo] @ view_ij[N*Ho*Wo, C]``."""
    a = node.attrs
    if a["groups"] != 1:
        raise b.error("cannot differentiate a grouped conv2d over an image of symbolic size")
    kernel = [d.value for d in w.type.shape[2:]]
    pads = a["padding"]
    xp = b.op("pad", x, pads=[0, 0, 0, 0, pads[0], pads[2], pads[1], pads[3]])
    rows = _product(g.type.shape[:1] + g.type.shape[2:])
    gm = b.op("transpose", g, perm=[1, 0, 2, 3])
    gm = b.op("reshape", gm, shape=b.dims(g.type.with_shape([g.type.shape[1], rows])))
    per_offset = []
    for v in _window_views(b, xp, g.type.shape[2:], kernel, a["stride"], a["dilation"]).values():
        vm = b.op("transpose", v, perm=[0, 2, 3, 1])
        vm = b.op("reshape", vm, shape=b.dims(v.type.with_shape([rows, v.type.shape[1]])))
        per_offset.append(b.op("matmul", gm, vm))  # [O, C]
    stacked = b.op("stack", *per_offset, axis=2)
    return b.op("reshape", stacked, shape=b.dims(w.type))


def _frame(node: Node, x: TensorType, kernel: Sequence[int], stride: Sequence[int], dil: Sequence[int]) -> list[int]:
    """[bottom, right] padding of the frame every window fits in (ceil_mode overhang included)."""
    pads = node.attrs["padding"]
    out_hw = [d.value for d in node.outputs[0].type.shape[2:]]
    size = [d.value for d in x.shape[2:]]
    return [
        max((out_hw[i] - 1) * stride[i] + extent(kernel[i], dil[i]) - size[i] - pads[i], pads[i + 2]) for i in range(2)
    ]


def _window_views(
    b: GradBuilder,
    xp: Value,
    out_hw: Sequence[Dim | int],
    kernel: Sequence[int],
    stride: Sequence[int],
    dil: Sequence[int],
) -> dict[tuple[int, int], Value]:
    """For each kernel offset (i, j), the [N, C, Ho, Wo] cells the windows read there from ``xp``
    (the padded image). A symbolic end is counted from the end of the axis."""
    views = {}
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            starts = [i * dil[0], j * dil[1]]
            ends = []
            for k in range(2):
                end = Dim.of(starts[k]) + (Dim.of(out_hw[k]) - 1) * stride[k] + 1
                back = xp.type.shape[2 + k] - end
                ends.append(end.value if end.is_static else (-back.value or END) if back.is_static else None)
            if None in ends:
                raise b.error(f"cannot differentiate over windows of symbolic extent in {xp.type}")
            views[i, j] = b.op("slice", xp, starts=starts, ends=ends, axes=[2, 3], steps=list(stride))
    return views


def _scatter_windows(
    b: GradBuilder,
    parts: dict[tuple[int, int], Value],
    frame: Sequence[int],
    stride: Sequence[int],
    dil: Sequence[int],
    pads: Sequence[int],
    size: Sequence[int],
) -> Value:
    """The transpose of :func:`_window_views`: each part put back where its cells were read, summed,
    and the padding cut off."""
    total = None
    for (i, j), p in parts.items():
        for k, off in ((0, i * dil[0]), (1, j * dil[1])):
            m = p.type.shape[2 + k].value
            p = unslice_axis(b, p, Dim.of(frame[k]), 2 + k, off, off + (m - 1) * stride[k] + 1, stride[k])
        total = p if total is None else b.add(total, p)
    assert total is not None
    return b.op(
        "slice",
        total,
        starts=[pads[0], pads[1]],
        ends=[pads[0] + size[0], pads[1] + size[1]],
        axes=[2, 3],
        steps=[1, 1],
    )


def _pool_vjp(kind: str):  # type: ignore[no-untyped-def]
    def rule(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
        """max: the cotangent goes to the first maximum of each window (row-major, as torch);
        avg: each cell of a window gets the cotangent over the window's divisor."""
        x, y, g = node.inputs[0], node.outputs[0], cts[0]
        kernel, stride, dil = _pool_geometry(node.attrs)
        pads = node.attrs["padding"]
        size = _static_hw(b, x.type, kind)
        out_hw = _static_hw(b, y.type, kind)
        if kind == "max_pool2d" and list(dil) == [1, 1]:
            # The framework's own kernel (dlir.ops.backward); a dilated pool keeps the decomposition.
            attrs = {k: node.attrs[k] for k in ("kernel", "stride", "padding", "ceil_mode")}
            return [b.op("max_pool2d_grad", x, g, **attrs)]
        if list(stride) == list(kernel) and list(dil) == [1, 1] and not any(pads):
            if all(size[i] == out_hw[i] * kernel[i] for i in range(2)):
                return [_tiled_avg_pool_vjp(b, x, y, g, kernel)]
        bottom, right = _frame(node, x.type, kernel, stride, dil)
        frame = [pads[0] + size[0] + bottom, pads[1] + size[1] + right]
        if kind == "max_pool2d":
            hits = _first_hits(b, x, y, node.attrs, [bottom, right])
            parts = {key: b.keep_where(hit, g) for key, hit in hits.items()}
        else:
            a = node.attrs
            counts = [
                _window_counts(size[i], pads[i], pads[i + 2], kernel[i], stride[i], out_hw[i], a["count_include_pad"])
                for i in range(2)
            ]
            div = b.op("constant", value=np.outer(*counts).astype(float).tolist(), dtype=x.type.dtype)
            share = b.div(g, div)
            parts = {(i, j): share for i in range(kernel[0]) for j in range(kernel[1])}
        return [_scatter_windows(b, parts, frame, stride, dil, pads, size)]

    return rule


def _first_hits(
    b: GradBuilder, x: Value, y: Value, attrs: dict[str, Any], frame_pads: Sequence[int]
) -> dict[tuple[int, int], Value]:
    """Per kernel offset, a [N, C, Ho, Wo] mask of the windows whose first maximum (row-major) is there."""
    kernel, stride, dil = _pool_geometry(attrs)
    pads = attrs["padding"]
    out_hw = _static_hw(b, y.type, "max_pool2d")
    # Padding as the lowest finite value (never a maximum; no inf in the graph).
    low = float(np.finfo(x.type.dtype.numpy).min)
    xp = b.op("pad", x, pads=[0, 0, 0, 0, pads[0], frame_pads[0], pads[1], frame_pads[1]], value=low)
    taken: Value | None = None
    hits = {}
    no = b.op("constant", value=False, dtype=DType.bool)
    yes = b.op("constant", value=True, dtype=DType.bool)
    for key, v in _window_views(b, xp, out_hw, kernel, stride, dil).items():
        hit = b.op("equal", v, y)
        if taken is not None:
            hit = b.where(taken, no, hit)
        hits[key] = hit
        taken = hit if taken is None else b.where(hit, yes, taken)
    return hits


def max_pool_first_hits(b: GradBuilder, x: Value, attrs: dict[str, Any], h: Value) -> Value:
    """[N, C, Ho, Wo]: ``h`` (shaped like x) read at each max_pool2d window's first maximum (the
    transpose of max_pool2d's VJP, for grad of grad)."""
    pool = {**attrs, "dilation": [1, 1]}
    y = b.op("max_pool2d", x, **pool)
    kernel, stride, dil = _pool_geometry(pool)
    pads = attrs["padding"]
    probe = Node("max_pool2d", [x], pool, [y])  # not in any graph: _frame reads attributes and types
    bottom, right = _frame(probe, x.type, kernel, stride, dil)
    hits = _first_hits(b, x, y, pool, [bottom, right])
    hp = b.op("pad", h, pads=[0, 0, 0, 0, pads[0], bottom, pads[1], right])
    out_hw = _static_hw(b, y.type, "max_pool2d")
    views = _window_views(b, hp, out_hw, kernel, stride, dil)
    total: Value | None = None
    for key, hit in hits.items():
        part = b.keep_where(hit, views[key])
        total = part if total is None else b.add(total, part)
    assert total is not None
    return total


def _tiled_avg_pool_vjp(b: GradBuilder, x: Value, y: Value, g: Value, kernel: Sequence[int]) -> Value:
    """Windows that tile the image (stride = kernel, no padding): each cell gets its window's
    cotangent over kh*kw, through x viewed as [N, C, Ho, Wo, kh*kw]."""
    n, c, h, w = x.type.shape
    ho, wo = y.type.shape[2:]
    kh, kw = kernel
    k = kh * kw
    flat = x.type.with_shape([n, c, ho, wo, k])
    g_t = b.op("unsqueeze", g, axes=[4])  # [N, C, Ho, Wo, 1]
    gw = b.op("broadcast_to", b.scale(g_t, 1.0 / k), shape=b.dims(flat))
    back = b.op("reshape", gw, shape=b.dims(x.type.with_shape([n, c, ho, wo, kh, kw])))
    return b.op("reshape", b.op("transpose", back, perm=[0, 1, 2, 4, 3, 5]), shape=b.dims(x.type))


def _product(dims: Sequence[Dim]) -> Dim:
    out = Dim.of(1)
    for d in dims:
        out = out * d
    return out
