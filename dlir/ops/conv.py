"""Convolution and pooling over NCHW images, and batch norm in its inference form.

Each of these ops has a ``layout`` attribute: ``"NCHW"`` (the default, as torch
and ONNX) or ``"NHWC"`` (channels last, as TensorFlow's CPU kernels want; the
``layout`` pass makes these for the tensorflow target). An NHWC node means exactly
its NCHW twin with its image and result transposed: every rule here (shape,
numpy reference, VJP) is written for NCHW and sees an NHWC node through that view
(:func:`_nchw_view`). ``conv2d`` also has ``act``: an activation applied to its
result (``linalg.FUSED_ACTS``, made by the fuse pass as for ``linear``).

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

from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from dlir.errors import TypeError_
from dlir.ir.graph import Node, Value
from dlir.ir.types import UNKNOWN, Dim, TensorType
from dlir.ops.linalg import FUSED_ACTS, apply_act_ref
from dlir.ops.registry import Attr, InferRule, OpDef, RefRule, register
from dlir.ops.shape_rules import require_float, same_dtype

_AXES = ("height", "width")

# -- layout ---------------------------------------------------------------------------

LAYOUTS = ("NCHW", "NHWC")
TO_NHWC = [0, 2, 3, 1]  # the perm of a transpose NCHW -> NHWC
TO_NCHW = [0, 3, 1, 2]  # and back
_LAYOUT = Attr("layout", "str", "NCHW", LAYOUTS)


def _permuted(t: TensorType, perm: Sequence[int]) -> TensorType:
    return t.with_shape([t.shape[i] for i in perm])


def _nchw_view(op: str, ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    """The input types as the NCHW twin of the node sees them (the image moved to NCHW)."""
    if a.get("layout", "NCHW") == "NCHW":
        return ts
    if ts[0].rank != 4:
        raise TypeError_(
            f'{op} with layout="NHWC" expects x: [N, H, W, C], got {ts[0]}', hint="channels-last images are rank 4"
        )
    return [_permuted(ts[0], TO_NCHW), *ts[1:]]


def nchw_twin(node: Node) -> Node:
    """The NCHW node that ``node`` (NHWC) is with its image and result transposed, over stand-in
    values of the NCHW types (not in any graph). Backends without channels-last kernels lower it
    between two transposes."""
    x, y = node.inputs[0], node.outputs[0]
    x_v = Value(x.name, _permuted(x.type, TO_NCHW), x.kind)
    y_v = Value(y.name, _permuted(y.type, TO_NCHW))
    return Node(node.op, [x_v, *node.inputs[1:]], {**node.attrs, "layout": "NCHW"}, [y_v], node.loc)


def _layout_infer(op: str, infer: InferRule) -> InferRule:
    def rule(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
        out = infer(_nchw_view(op, ts, a), a)
        return out if a.get("layout", "NCHW") == "NCHW" else [_permuted(out[0], TO_NHWC)]

    return rule


Canonical = Callable[[list[TensorType], dict[str, Any]], dict[str, Any]]


def _layout_canonical(op: str, canonical: Canonical) -> Canonical:
    return lambda ts, a: canonical(_nchw_view(op, ts, a), a)


def _layout_ref(ref: RefRule) -> RefRule:
    def rule(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
        if a.get("layout", "NCHW") == "NCHW":
            return ref(xs, a)
        out = ref([np.transpose(xs[0], TO_NCHW), *xs[1:]], a)
        return [np.transpose(out[0], TO_NHWC)]

    return rule


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
    for i, (d, k, s, dil) in enumerate(zip(x.shape[2:], kernel, stride, dilation, strict=True)):
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
        return cast(list[int], padding * 4)
    if len(padding) == 2:
        return cast(list[int], padding * 2)
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
    for i, (d, k, s, dil) in enumerate(zip(x.shape[2:], kernel, stride, dilation, strict=True)):
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
        ext_h, ext_w = (extent(k, dil) for k, dil in zip(kernel, dilation, strict=True))
        padded = [str(d.value + pads[i] + pads[i + 2]) if d.is_static else "?" for i, d in enumerate(x.shape[2:])]
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
    x: np.ndarray,
    pads: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    ceil_mode: bool,
    fill: float,
) -> np.ndarray:
    """[N, C, Ho, Wo, kh, kw] views of the padded input (the ceil_mode overhang filled with ``fill`` too)."""
    n_out = [
        out_len(x.shape[2 + i], pads[i], pads[i + 2], extent(kernel[i], dilation[i]), stride[i], ceil_mode)
        for i in range(2)
    ]
    assert None not in n_out, "the shape rule rejects windows larger than the padded input"
    ext = [extent(k, dil) for k, dil in zip(kernel, dilation, strict=True)]
    need = [(n - 1) * s + e for n, s, e in zip(n_out, stride, ext, strict=True)]  # type: ignore[operator]
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
    return [apply_act_ref(a.get("act", "none"), out)]


register(
    OpDef(
        "conv2d",
        ("x", "w", "b?"),
        (
            Attr("stride", "pair", [1, 1]),
            Attr("padding", "padding", [0, 0, 0, 0]),
            Attr("dilation", "pair", [1, 1]),
            Attr("groups", "int", 1),
            Attr("act", "str", "none", tuple(FUSED_ACTS)),
            _LAYOUT,
        ),
        _layout_infer("conv2d", _conv_infer),
        _layout_ref(_conv_ref),
        doc="act(2-D convolution (cross-correlation) of x [N, C, H, W] with w [O, C/groups, kh, kw], plus b [O]); "
        "act as linear's (made by the fuse pass)",
        canonical=_layout_canonical("conv2d", _conv_canonical),
        vjp=lambda b, node, cts: conv_grad.conv_vjp(b, node, cts),  # (imported at the end)
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
        half = [extent(k, dil) // 2 for k, dil in zip(kernel, dilation, strict=True)]
        if any(p > half[i % 2] for i, p in enumerate(pads)):
            raise TypeError_(
                f"{op}: padding {list(pads)} is more than half the {kernel[0]}x{kernel[1]} window of x: {x}",
                hint=f"each pad may be at most {half[0]} (top, bottom) and {half[1]} (left, right): "
                "half the dilated window, so that no window lies in the padding",
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
            _LAYOUT,
        ),
        _layout_infer("max_pool2d", _pool_infer("max_pool2d")),
        _layout_ref(_max_pool_ref),
        doc="max over windows (stride defaults to the kernel; padding never wins)" + _POOL_DOC,
        canonical=_layout_canonical("max_pool2d", _pool_canonical("max_pool2d")),
        vjp=lambda b, node, cts: conv_grad.pool_vjp("max_pool2d")(b, node, cts),
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
            _LAYOUT,
        ),
        _layout_infer("avg_pool2d", _pool_infer("avg_pool2d")),
        _layout_ref(_avg_pool_ref),
        doc="mean over windows (stride defaults to the kernel; count_include_pad: padding cells count in the "
        "divisor, ceil_mode overhang never does)" + _POOL_DOC,
        canonical=_layout_canonical("avg_pool2d", _pool_canonical("avg_pool2d")),
        vjp=lambda b, node, cts: conv_grad.pool_vjp("avg_pool2d")(b, node, cts),
        family="conv",
    )
)

# -- batch_norm ------------------------------------------------------------------------------

_BN_PARAMS = ("scale", "bias", "mean", "var")


def has_running_stats(node: Node) -> bool:
    """A batch_norm whose mean and var are buffers: train mode normalises with the batch's
    statistics and updates these (dlir.train.modes, the generated modules' training paths)."""
    return node.op == "batch_norm" and all(v.kind == "buffer" for v in node.inputs[3:5])


def _bn_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x = ts[0]
    if x.rank < 2:
        raise TypeError_(f"batch_norm expects x: [N, C, ...] of rank >= 2, got {x}", hint="channels are on axis 1")
    require_float("batch_norm", x)
    same_dtype("batch_norm", ts)
    c = x.shape[1]
    for name, t in zip(_BN_PARAMS, ts[1:], strict=True):
        if t.rank != 1 or not t.shape[0].compatible(c):
            raise TypeError_(
                f"batch_norm: {name}: {t} must be [C] = [{c}] for x: {x}",
                hint="batch_norm normalises over channel axis 1 (NCHW); each parameter has one entry per channel",
            )
    if a["eps"] < 0:
        raise TypeError_(f"batch_norm: eps={a['eps']} must be >= 0")
    if not 0.0 <= a["momentum"] <= 1.0:
        raise TypeError_(
            f"batch_norm: momentum={a['momentum']} must be in [0, 1]",
            hint="torch's convention: the weight of the new batch statistic (0.1)",
        )
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
        # momentum only matters in train mode (dlir.train.modes): torch's convention, the weight of the batch statistic
        (Attr("eps", "float", 1e-5), _LAYOUT, Attr("momentum", "float", 0.1)),
        _layout_infer("batch_norm", _bn_infer),
        _layout_ref(_bn_ref),
        doc="inference-form batch norm over channel axis 1 (NCHW; the last axis for NHWC): "
        "(x - mean) / sqrt(var + eps) * scale + bias",
        vjp=lambda b, node, cts: conv_grad.bn_vjp(b, node, cts),
        family="conv",
    )
)


from dlir.ops import conv_grad  # noqa: E402  (the VJP rules; it imports this module's helpers)
