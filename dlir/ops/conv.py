"""Convolution and pooling over NCHW images, and batch norm in its inference form.

Spatial attributes are pairs ``[h, w]`` (an int ``n`` means ``[n, n]``). The
``padding`` attribute is resolved by each op's ``canonical`` hook into four ints
``[top, left, bottom, right]`` when the node is built, so the IR and every backend
only ever see explicit padding. ``"same"`` is TF / ONNX ``SAME_UPPER``: the odd
cell of padding goes at the bottom/right.

Pooling follows PyTorch: padding never wins a max (it is -inf); with
``ceil_mode`` the output has ``ceil(span / stride) + 1`` windows, minus a last one
that would start in the bottom/right padding or beyond; ``count_include_pad``
divides by the window's cells inside the padded input (never by the ceil_mode
overhang past the padding), otherwise by its cells inside the real input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from dlir.errors import TypeError_
from dlir.ir.types import UNKNOWN, Dim, DType, TensorType
from dlir.ops.registry import Attr, OpDef, register
from dlir.ops.shape import END, interleave_zeros, unslice_axis
from dlir.ops.shape_rules import require_float, same_dtype

if TYPE_CHECKING:
    from dlir.autodiff.builder import GradBuilder
    from dlir.ir.graph import Node, Value

_AXES = ("height", "width")

# -- shared geometry ------------------------------------------------------------------


def extent(k: int, dil: int) -> int:
    """Cells a kernel of size ``k`` spans with dilation ``dil``."""
    return dil * (k - 1) + 1


def out_len(size: int, lo: int, hi: int, ext: int, stride: int, ceil_mode: bool = False) -> int | None:
    """Number of windows along one axis (PyTorch's rule); None when the window exceeds the padded input."""
    span = size + lo + hi - ext
    if span < 0:
        return None
    n = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (n - 1) * stride >= size + lo:
        n -= 1  # the last window would start in the bottom/right padding or beyond
    return n


def same_pads(
    op: str, x: TensorType, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int]
) -> list[int]:
    """TF / ONNX SAME_UPPER padding as [top, left, bottom, right]."""
    pads = [0, 0, 0, 0]
    for i, (d, k, s, dil) in enumerate(zip(x.shape[2:], kernel, stride, dilation)):
        ext = extent(k, dil)
        if s == 1:
            total = ext - 1  # does not depend on the input size
        elif d.is_static:
            total = max((-(-d.value // s) - 1) * s + ext - d.value, 0)
        else:
            raise TypeError_(
                f'{op}: padding="same" with stride {s} depends on the {_AXES[i]} of x: {x}, '
                f"which is the symbol {d} here",
                hint="give that dim as a number in the input type, or write the padding as ints",
            )
        pads[i], pads[i + 2] = total // 2, total - total // 2
    return pads


def resolve_padding(
    op: str, x: TensorType, padding: Any, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int]
) -> list[int]:
    """A coerced ``padding`` attribute (word, 1, 2 or 4 ints) as [top, left, bottom, right]."""
    if padding == "valid":
        return [0, 0, 0, 0]
    if padding == "same":
        return same_pads(op, x, kernel, stride, dilation)
    if len(padding) == 1:
        return padding * 4
    if len(padding) == 2:
        return padding * 2
    return list(padding)


def _require_nchw(op: str, x: TensorType) -> None:
    if x.rank != 4:
        raise TypeError_(
            f"{op} expects x: [N, C, H, W] (NCHW), got {x}",
            hint="add a batch axis with unsqueeze(x, 0)" if x.rank == 3 else "images are channels-first, rank 4",
        )


def _require_positive(op: str, **pairs: Sequence[int]) -> None:
    for name, vals in pairs.items():
        if any(v < 1 for v in vals):
            raise TypeError_(f"{op}: {name}={list(vals)} must be positive", hint=f"{name} counts cells, >= 1")


def spatial_out(
    op: str,
    x: TensorType,
    pads: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    ceil_mode: bool = False,
    what: str = "kernel",
) -> list[Dim]:
    """Output height and width over symbolic dims; a TypeError_ when the window exceeds the padded input."""
    out: list[Dim] = []
    too_big = False
    for i, (d, k, s, dil) in enumerate(zip(x.shape[2:], kernel, stride, dilation)):
        lo, hi, ext = pads[i], pads[i + 2], extent(k, dil)
        if d.is_static:
            n = out_len(d.value, lo, hi, ext, s, ceil_mode)
            too_big |= n is None
            out.append(Dim.of(n or 0))
            continue
        span = d + (lo + hi - ext)
        if s == 1:
            out.append(span + 1)
        else:
            # Exact division cannot meet the ceil_mode drop rule, since pads < extent.
            q = span.exact_div(s)
            out.append(q + 1 if q is not None else UNKNOWN)
    if too_big:
        ext_h, ext_w = (extent(k, dil) for k, dil in zip(kernel, dilation))
        padded = [
            str(d.value + pads[i] + pads[i + 2]) if d.is_static else "?" for i, d in enumerate(x.shape[2:])
        ]
        dil_text = ""
        if list(dilation) != [1, 1]:
            dil_text = f" with dilation {list(dilation)} spans {ext_h}x{ext_w} cells and"
        raise TypeError_(
            f"{op}: the {kernel[0]}x{kernel[1]} {what}{dil_text} is larger than the input x: {x} "
            f"padded by {list(pads)} ({padded[0]}x{padded[1]})",
            hint="pad the input more (padding=...), use a smaller kernel, or apply this op to a larger image",
        )
    return out


def _pad_spatial(x: np.ndarray, top: int, left: int, bottom: int, right: int, fill: float) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=fill)


def windows(
    x: np.ndarray, pads: Sequence[int], kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
    ceil_mode: bool, fill: float,
) -> np.ndarray:
    """[N, C, Ho, Wo, kh, kw] views of the padded input (the ceil_mode overhang filled with ``fill`` too)."""
    n_out = [
        out_len(x.shape[2 + i], pads[i], pads[i + 2], extent(kernel[i], dilation[i]), stride[i], ceil_mode)
        for i in range(2)
    ]
    assert None not in n_out, "the shape rule rejects windows larger than the padded input"
    ext = [extent(k, dil) for k, dil in zip(kernel, dilation)]
    need = [(n - 1) * s + e for n, s, e in zip(n_out, stride, ext)]  # type: ignore[operator]
    bottom = max(need[0] - x.shape[2] - pads[0], pads[2])
    right = max(need[1] - x.shape[3] - pads[1], pads[3])
    xp = _pad_spatial(x, pads[0], pads[1], bottom, right, fill)
    w = sliding_window_view(xp, ext, axis=(2, 3))
    w = w[:, :, :: stride[0], :: stride[1], :: dilation[0], :: dilation[1]]
    return w[:, :, : n_out[0], : n_out[1]]


# -- conv2d -----------------------------------------------------------------------------


def _conv_kernel(w: TensorType) -> list[int]:
    if not all(d.is_static for d in w.shape[2:]):
        raise TypeError_(
            f"conv2d: the kernel size of w: {w} must be known when compiling", hint="give kh and kw as numbers"
        )
    return [d.value for d in w.shape[2:]]


def _conv_check_ranks(ts: list[TensorType]) -> None:
    _require_nchw("conv2d", ts[0])
    if ts[1].rank != 4:
        raise TypeError_(f"conv2d expects w: [O, C/groups, kh, kw], got {ts[1]} (x: {ts[0]})")


def _conv_canonical(ts: list[TensorType], a: dict[str, Any]) -> dict[str, Any]:
    _conv_check_ranks(ts)
    pads = resolve_padding("conv2d", ts[0], a["padding"], _conv_kernel(ts[1]), a["stride"], a["dilation"])
    return {**a, "padding": pads}


def _conv_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, w = ts[0], ts[1]
    _conv_check_ranks(ts)
    require_float("conv2d", x)
    same_dtype("conv2d", ts)
    g = a["groups"]
    _require_positive("conv2d", stride=a["stride"], dilation=a["dilation"], groups=[g])
    c, cg, o = x.shape[1], w.shape[1], w.shape[0]
    if not c.compatible(cg * g):
        raise TypeError_(
            f"conv2d: x: {x} has C={c} channels but w: {w} expects {cg * g} (groups={g})",
            hint="w is [O, C/groups, kh, kw] and x is NCHW: w's dim 1 times groups must equal x's dim 1",
        )
    if o.is_static and o.value % g:
        raise TypeError_(
            f"conv2d: w: {w} has O={o} filters, not a multiple of groups={g}",
            hint="each group needs the same number of output channels",
        )
    if len(ts) == 3 and (ts[2].rank != 1 or not ts[2].shape[0].compatible(o)):
        raise TypeError_(f"conv2d: b: {ts[2]} must be [O] = [{o}] for w: {w}", hint="one bias per output channel")
    ho, wo = spatial_out("conv2d", x, a["padding"], _conv_kernel(w), a["stride"], a["dilation"])
    return [x.with_shape([x.shape[0], o, ho, wo])]


def _conv_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x, w = xs[0].astype(np.float64), xs[1].astype(np.float64)
    g = a["groups"]
    n, c = x.shape[:2]
    o, cg, kh, kw = w.shape
    win = windows(x, a["padding"], [kh, kw], a["stride"], a["dilation"], False, 0.0)
    ho, wo = win.shape[2:4]
    win = win.reshape(n, g, cg, ho, wo, kh, kw)
    out = np.einsum("ngchwij,gocij->ngohw", win, w.reshape(g, o // g, cg, kh, kw), optimize=True)
    out = out.reshape(n, o, ho, wo)
    if len(xs) == 3:
        out = out + xs[2].astype(np.float64)[None, :, None, None]
    return [out]


register(
    OpDef(
        "conv2d",
        ("x", "w", "b?"),
        (
            Attr("stride", "pair", [1, 1]),
            Attr("padding", "padding", [0, 0, 0, 0]),
            Attr("dilation", "pair", [1, 1]),
            Attr("groups", "int", 1),
        ),
        _conv_infer,
        _conv_ref,
        doc="2-D convolution (cross-correlation) of x [N, C, H, W] with w [O, C/groups, kh, kw], plus b [O]",
        canonical=_conv_canonical,
        vjp=lambda b, node, cts: _conv_vjp(b, node, cts),  # (defined below)
        family="conv",
    )
)

# -- pooling ------------------------------------------------------------------------------


def _pool_geometry(a: dict[str, Any]) -> tuple[list[int], list[int], list[int]]:
    return a["kernel"], a["stride"] if a["stride"] is not None else a["kernel"], a.get("dilation", [1, 1])


def _pool_canonical(op: str):  # type: ignore[no-untyped-def]
    def canonical(ts: list[TensorType], a: dict[str, Any]) -> dict[str, Any]:
        _require_nchw(op, ts[0])
        kernel, stride, dilation = _pool_geometry(a)
        return {**a, "stride": stride, "padding": resolve_padding(op, ts[0], a["padding"], kernel, stride, dilation)}

    return canonical


def _pool_infer(op: str):  # type: ignore[no-untyped-def]
    def infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
        x = ts[0]
        _require_nchw(op, x)
        require_float(op, x)
        kernel, stride, dilation = _pool_geometry(a)
        _require_positive(op, kernel=kernel, stride=stride, dilation=dilation)
        pads = a["padding"]
        half = [extent(k, dil) // 2 for k, dil in zip(kernel, dilation)]
        if any(p > half[i % 2] for i, p in enumerate(pads)):
            raise TypeError_(
                f"{op}: padding {list(pads)} is more than half the {kernel[0]}x{kernel[1]} window of x: {x}",
                hint=f"each pad may be at most {half[0]} (top, bottom) and {half[1]} (left, right): half the dilated window, "
                "so that no window lies in the padding",
            )
        ho, wo = spatial_out(op, x, pads, kernel, stride, dilation, a["ceil_mode"], what="window")
        return [x.with_shape([x.shape[0], x.shape[1], ho, wo])]

    return infer


def _max_pool_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    kernel, stride, dilation = _pool_geometry(a)
    win = windows(xs[0].astype(np.float64), a["padding"], kernel, stride, dilation, a["ceil_mode"], -np.inf)
    return [win.max(axis=(4, 5))]


def _window_counts(size: int, lo: int, hi: int, k: int, s: int, n: int, include_pad: bool) -> np.ndarray:
    """Per output position along one axis: the window's cells inside the padded (or the real) input."""
    start = np.arange(n) * s
    first, last = (0, size + lo + hi) if include_pad else (lo, lo + size)
    return np.minimum(start + k, last) - np.maximum(start, first)


def _avg_pool_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x = xs[0].astype(np.float64)
    kernel, stride, _ = _pool_geometry(a)
    pads = a["padding"]
    win = windows(x, pads, kernel, stride, [1, 1], a["ceil_mode"], 0.0)
    total = win.sum(axis=(4, 5))
    ho, wo = total.shape[2:]
    ch, cw = (
        _window_counts(x.shape[2 + i], pads[i], pads[i + 2], kernel[i], stride[i], n, a["count_include_pad"])
        for i, n in enumerate((ho, wo))
    )
    return [total / np.outer(ch, cw)]


_POOL_DOC = (
    " over x [N, C, H, W]; padding as conv2d's (each pad at most half the window); "
    "ceil_mode and windows as torch.nn.functional"
)

register(
    OpDef(
        "max_pool2d",
        ("x",),
        (
            Attr("kernel", "pair"),
            Attr("stride", "pair?", None),
            Attr("padding", "padding", [0, 0, 0, 0]),
            Attr("dilation", "pair", [1, 1]),
            Attr("ceil_mode", "bool", False),
        ),
        _pool_infer("max_pool2d"),
        _max_pool_ref,
        doc="max over windows (stride defaults to the kernel; padding never wins)" + _POOL_DOC,
        canonical=_pool_canonical("max_pool2d"),
        vjp=lambda b, node, cts: _pool_vjp("max_pool2d")(b, node, cts),
        family="conv",
    )
)

register(
    OpDef(
        "avg_pool2d",
        ("x",),
        (
            Attr("kernel", "pair"),
            Attr("stride", "pair?", None),
            Attr("padding", "padding", [0, 0, 0, 0]),
            Attr("ceil_mode", "bool", False),
            Attr("count_include_pad", "bool", True),
        ),
        _pool_infer("avg_pool2d"),
        _avg_pool_ref,
        doc="mean over windows (stride defaults to the kernel; count_include_pad: padding cells count in the "
        "divisor, ceil_mode overhang never does)" + _POOL_DOC,
        canonical=_pool_canonical("avg_pool2d"),
        vjp=lambda b, node, cts: _pool_vjp("avg_pool2d")(b, node, cts),
        family="conv",
    )
)

# -- batch_norm ------------------------------------------------------------------------------

_BN_PARAMS = ("scale", "bias", "mean", "var")


def _bn_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x = ts[0]
    if x.rank < 2:
        raise TypeError_(f"batch_norm expects x: [N, C, ...] of rank >= 2, got {x}", hint="channels are on axis 1")
    require_float("batch_norm", x)
    same_dtype("batch_norm", ts)
    c = x.shape[1]
    for name, t in zip(_BN_PARAMS, ts[1:]):
        if t.rank != 1 or not t.shape[0].compatible(c):
            raise TypeError_(
                f"batch_norm: {name}: {t} must be [C] = [{c}] for x: {x}",
                hint="batch_norm normalises over channel axis 1 (NCHW); each parameter has one entry per channel",
            )
    if a["eps"] < 0:
        raise TypeError_(f"batch_norm: eps={a['eps']} must be >= 0")
    return [x]


def _bn_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x = xs[0].astype(np.float64)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale, bias, mean, var = (v.astype(np.float64).reshape(shape) for v in xs[1:])
    return [(x - mean) / np.sqrt(var + a["eps"]) * scale + bias]


register(
    OpDef(
        "batch_norm",
        ("x", *_BN_PARAMS),
        (Attr("eps", "float", 1e-5),),
        _bn_infer,
        _bn_ref,
        doc="inference-form batch norm over channel axis 1: (x - mean) / sqrt(var + eps) * scale + bias",
        vjp=lambda b, node, cts: _bn_vjp(b, node, cts),
        family="conv",
    )
)


# -- VJPs (the autodiff pass calls these; they emit nothing but dlir ops) ----------------------


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
    with the cotangent as kernel; db: the sum over batch and space. Grouped as the forward."""
    x, w = node.inputs[0], node.inputs[1]
    g = cts[0]
    out: list[Value | None] = [
        _conv_dx(b, node, x, w, g) if b.needs(0) else None,
        _conv_dw(b, node, x, w, g) if b.needs(1) else None,
    ]
    if len(node.inputs) == 3:
        out.append(b.op("sum", g, axis=[0, 2, 3]))
    return out


def _static_hw(b: GradBuilder, t: TensorType, what: str) -> list[int]:
    dims = t.shape[2:]
    if not all(d.is_static for d in dims):
        raise b.error(f"cannot differentiate {what} over an image of symbolic size {t}",
                      hint="give the height and width as numbers in the input type")
    return [d.value for d in dims]


def _static(b: GradBuilder, d: Dim, what: str) -> int:
    if not d.is_static:
        raise b.error(f"cannot differentiate {what}: it needs {d} as a number", hint="give the image size as numbers")
    return d.value


def _conv_dx(b: GradBuilder, node: Node, x: Value, w: Value, g: Value) -> Value:
    a = node.attrs
    stride, dil, pads, groups = a["stride"], a["dilation"], a["padding"], a["groups"]
    o, cg, kh, kw = w.type.shape
    kernel = [kh.value, kw.value]
    ext = [extent(k, d) for k, d in zip(kernel, dil)]
    # The full correlation of the dilated cotangent covers padded rows 0 .. (Ho-1) s + ext - 1;
    # x's rows are padded rows top .. top + H - 1. (With stride 1 both ends are static.)
    before = [ext[i] - 1 - pads[i] for i in range(2)]
    after = [_static(b, x.type.shape[2 + i] - 1 + pads[i] - (g.type.shape[2 + i] - 1) * stride[i], "conv2d")
             for i in range(2)]
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


def _conv_dw(b: GradBuilder, node: Node, x: Value, w: Value, g: Value) -> Value:
    a = node.attrs
    stride, dil, pads, groups = a["stride"], a["dilation"], a["padding"], a["groups"]
    _, cg, kh, kw = w.type.shape
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
    return [max((out_hw[i] - 1) * stride[i] + extent(kernel[i], dil[i]) - size[i] - pads[i], pads[i + 2])
            for i in range(2)]


def _window_views(b: GradBuilder, xp: Value, out_hw: Sequence[Dim | int], kernel: Sequence[int],
                  stride: Sequence[int], dil: Sequence[int]) -> dict[tuple[int, int], Value]:
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


def _scatter_windows(b: GradBuilder, parts: dict[tuple[int, int], Value], frame: Sequence[int],
                     stride: Sequence[int], dil: Sequence[int], pads: Sequence[int], size: Sequence[int]) -> Value:
    """The transpose of :func:`_window_views`: each part put back where its cells were read, summed,
    and the padding cut off."""
    total = None
    for (i, j), p in parts.items():
        for k, off in ((0, i * dil[0]), (1, j * dil[1])):
            m = p.type.shape[2 + k].value
            p = unslice_axis(b, p, Dim.of(frame[k]), 2 + k, off, off + (m - 1) * stride[k] + 1, stride[k])
        total = p if total is None else b.add(total, p)
    assert total is not None
    return b.op("slice", total, starts=[pads[0], pads[1]], ends=[pads[0] + size[0], pads[1] + size[1]], axes=[2, 3],
                steps=[1, 1])


def _pool_vjp(kind: str):  # type: ignore[no-untyped-def]
    def rule(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
        """max: the cotangent goes to the first maximum of each window (row-major, as torch);
        avg: each cell of a window gets the cotangent over the window's divisor."""
        x, y, g = node.inputs[0], node.outputs[0], cts[0]
        kernel, stride, dil = _pool_geometry(node.attrs)
        pads = node.attrs["padding"]
        size = _static_hw(b, x.type, kind)
        out_hw = _static_hw(b, y.type, kind)
        if list(stride) == list(kernel) and list(dil) == [1, 1] and not any(pads):
            if all(size[i] == out_hw[i] * kernel[i] for i in range(2)):
                return [_tiled_pool_vjp(b, kind, x, y, g, kernel)]
        bottom, right = _frame(node, x.type, kernel, stride, dil)
        frame = [pads[0] + size[0] + bottom, pads[1] + size[1] + right]
        if kind == "max_pool2d":
            # Padding as the lowest finite value (never a maximum; no inf in the graph).
            low = float(np.finfo(x.type.dtype.numpy).min)
            xp = b.op("pad", x, pads=[0, 0, 0, 0, pads[0], bottom, pads[1], right], value=low)
            views = _window_views(b, xp, out_hw, kernel, stride, dil)
            taken: Value | None = None
            parts = {}
            no = b.op("constant", value=False, dtype=DType.bool)
            yes = b.op("constant", value=True, dtype=DType.bool)
            for key, v in views.items():
                hit = b.op("equal", v, y)
                if taken is not None:
                    hit = b.where(taken, no, hit)
                parts[key] = b.keep_where(hit, g)
                taken = hit if taken is None else b.where(hit, yes, taken)
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


def _tiled_pool_vjp(b: GradBuilder, kind: str, x: Value, y: Value, g: Value, kernel: Sequence[int]) -> Value:
    """Windows that tile the image (stride = kernel, no padding): x viewed as [N, C, Ho, Wo, kh*kw].

    max: the first maximum of a window is a hit with no hit before it, counted with a
    matmul by the strictly upper triangular ones [K, K]; avg: the cotangent over kh*kw.
    """
    n, c, h, w = x.type.shape
    ho, wo = y.type.shape[2:]
    kh, kw = kernel
    k = kh * kw
    tiles = x.type.with_shape([n, c, ho, kh, wo, kw])
    flat = x.type.with_shape([n, c, ho, wo, k])
    g_t = b.op("unsqueeze", g, axes=[4])  # [N, C, Ho, Wo, 1]
    if kind == "max_pool2d":
        xw = b.op("transpose", b.op("reshape", x, shape=b.dims(tiles)), perm=[0, 1, 2, 4, 3, 5])
        xw = b.op("reshape", xw, shape=b.dims(flat))
        hit = b.op("equal", xw, b.op("unsqueeze", y, axes=[4]))
        if k > 1:
            earlier = b.op("constant", value=np.triu(np.ones((k, k)), 1).tolist(), dtype=x.type.dtype)
            before = b.op("matmul", b.cast(hit, x.type.dtype), earlier)  # hits earlier in the window
            no = b.op("constant", value=False, dtype=DType.bool)
            hit = b.where(b.op("equal", before, b.const(0.0, x)), hit, no)
        gw = b.keep_where(hit, g_t)
    else:
        gw = b.op("broadcast_to", b.scale(g_t, 1.0 / k), shape=b.dims(flat))
    back = b.op("reshape", gw, shape=b.dims(x.type.with_shape([n, c, ho, wo, kh, kw])))
    return b.op("reshape", b.op("transpose", back, perm=[0, 1, 2, 4, 3, 5]), shape=b.dims(x.type))


def _product(dims: Sequence[Dim]) -> Dim:
    out = Dim.of(1)
    for d in dims:
        out = out * d
    return out
