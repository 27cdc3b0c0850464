"""ONNX ``ConvTranspose`` (1-D and 2-D) as dlir's transposed convolution, or as a convolution.

A transposed convolution is conv2d's gradient with respect to its image: dlir's
``conv2d_input_grad`` (one group, no dilation), which every target runs with its own kernel
(``conv_transpose2d``, ``Conv2DBackpropInput``, ``ConvTranspose``). Groups are split into one
such op per group; ONNX Runtime has no double-precision ConvTranspose, so float64 and
dilated kernels take the other road: the image with ``stride - 1`` zeros between its
pixels, padded by ``extent - 1 - pad`` on each side (``output_padding`` more at the end),
convolved with the kernel flipped in space and its two channel axes swapped per group.

The output size is ONNX's: ``stride * (in - 1) + output_padding + extent - pad_begin - pad_end``;
``output_shape`` and ``auto_pad`` SAME_UPPER/SAME_LOWER give the pads that reach it
(SAME_UPPER puts an odd one at the end, otherwise it goes at the start).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlir.importer.builder import Builder, Operand, handles
from dlir.ir.types import DType


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@handles("ConvTranspose")
def _conv_transpose(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x, w = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    if b.rank(x) == 3:  # [N, C, L] as [N, C, L, 1]
        a2 = {k: list(v) + [e] for k, v, e in _lift(a)}
        if "pads" in a:
            p = list(a["pads"])
            a2["pads"] = [p[0], 0, p[1], 0]
        a2 = {**{k: v for k, v in a.items() if k not in a2}, **a2}
        x1, w1 = b.op("unsqueeze", [x], axes=[3]), b.op("unsqueeze", [w], axes=[3])
        return b.op("squeeze", [_conv_transpose(b, [x1, w1, bias], a2)], axes=[3])
    if b.rank(x) != 4 or b.rank(w) != 4:
        raise b.error(f"ConvTranspose: only 1-D and 2-D are supported, got x: {b.type_of(x)}, w: {b.type_of(w)}")
    hw = b.shape(x)[2:]
    if not all(d.is_static for d in hw) or not all(d.is_static for d in b.shape(w)):
        raise b.error(
            f"ConvTranspose needs a static image size and kernel, got x: {b.type_of(x)}, w: {b.type_of(w)}",
            "export the model with a static image size",
        )
    size = [d.value for d in hw]
    kernel = [d.value for d in b.shape(w)[2:]]
    stride = [int(v) for v in a.get("strides", [1, 1])]
    dil = [int(v) for v in a.get("dilations", [1, 1])]
    groups = int(a.get("group", 1))
    out_pad = [int(v) for v in a.get("output_padding", [0, 0])]
    ext = [(k - 1) * d + 1 for k, d in zip(kernel, dil, strict=True)]
    full = [s * (n - 1) + p + e for s, n, p, e in zip(stride, size, out_pad, ext, strict=True)]
    begin, end = _pads(b, a, size, stride, full)
    out_hw = [f - p - q for f, p, q in zip(full, begin, end, strict=True)]
    if any(o <= 0 for o in out_hw):
        raise b.error(f"ConvTranspose: the pads {begin + end} leave no output (size {out_hw})")
    if dil == [1, 1] and b.type_of(x).dtype is not DType.f64:
        y = _native(b, x, w, groups, out_hw, stride, begin + end)
    else:
        y = _as_convolution(b, x, w, groups, stride, dil, ext, begin, end, out_pad)
    if bias is not None:
        y = b.op("add", [y, b.op("reshape", [bias], shape=[1, -1, 1, 1])])
    return y


def _lift(a: dict[str, Any]) -> list[tuple[str, list[Any], Any]]:
    """1-D attributes with the neutral value of a second spatial axis appended."""
    extra = {"kernel_shape": 1, "strides": 1, "dilations": 1, "output_padding": 0, "output_shape": 1}
    return [(k, list(a[k]), e) for k, e in extra.items() if k in a]


def _pads(
    b: Builder, a: dict[str, Any], size: list[int], stride: list[int], full: list[int]
) -> tuple[list[int], list[int]]:
    """(begin, end) pads of each spatial axis: given, or what output_shape / auto_pad ask for."""
    auto = _text(a.get("auto_pad", "NOTSET"))
    if "output_shape" in a:
        want = [int(v) for v in list(a["output_shape"])[-2:]]
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        want = [n * s for n, s in zip(size, stride, strict=True)]
    elif auto in ("NOTSET", "", "VALID"):
        p = [int(v) for v in a.get("pads", [0, 0, 0, 0])] if auto != "VALID" else [0, 0, 0, 0]
        return p[:2], p[2:]
    else:
        raise b.error(f"ConvTranspose: unknown auto_pad '{auto}'")
    total = [f - o for f, o in zip(full, want, strict=True)]
    if any(t < 0 for t in total):
        raise b.error(f"ConvTranspose: output_shape {want} is larger than the full result {full}")
    small = [t // 2 for t in total]
    big = [t - t // 2 for t in total]
    # As the spec (and ONNX Runtime): SAME_UPPER puts the odd pad at the end, NOTSET and SAME_LOWER at the start.
    return (small, big) if auto == "SAME_UPPER" else (big, small)


def _native(
    b: Builder, x: Operand, w: Operand, groups: int, out_hw: list[int], stride: list[int], pads: list[int]
) -> Any:
    """conv2d_input_grad, once per group (its kernels take one group)."""
    if groups == 1:
        return b.op("conv2d_input_grad", [x, w], size=out_hw, stride=stride, padding=pads)
    xs = b.op("split", [x], sizes=[b.shape(x)[1].value // groups] * groups, axis=1)
    ws = b.op("split", [w], sizes=[b.shape(w)[0].value // groups] * groups, axis=0)
    parts = [
        b.op("conv2d_input_grad", [xi, wi], size=out_hw, stride=stride, padding=pads)
        for xi, wi in zip(xs, ws, strict=True)
    ]
    return b.op("concat", parts, axis=1)


def _as_convolution(
    b: Builder,
    x: Operand,
    w: Operand,
    groups: int,
    stride: list[int],
    dil: list[int],
    ext: list[int],
    begin: list[int],
    end: list[int],
    out_pad: list[int],
) -> Any:
    """conv2d of the zero-interleaved, padded image with the flipped, channel-swapped kernel."""
    for i, s in enumerate(stride):
        if s > 1:
            x = _interleave_zeros(b, x, 2 + i, s)
    before = [e - 1 - p for e, p in zip(ext, begin, strict=True)]
    after = [e - 1 - p + o for e, p, o in zip(ext, end, out_pad, strict=True)]
    if any(v < 0 for v in before + after):  # pads beyond the kernel's reach cut the image
        starts = [max(0, -v) for v in before]
        ends = [v if v < 0 else 2**63 - 1 for v in after]
        x = b.op("slice", [x], starts=starts, ends=ends, axes=[2, 3], steps=[1, 1])
    c_in, c_out_g, kh, kw = (d.value for d in b.shape(w))
    wt = b.op("reshape", [w], shape=[groups, c_in // groups, c_out_g, kh, kw])
    wt = b.op("transpose", [wt], perm=[0, 2, 1, 3, 4])
    wt = b.op("reshape", [wt], shape=[groups * c_out_g, c_in // groups, kh, kw])
    for axis, k in ((2, kh), (3, kw)):
        if k > 1:
            wt = b.op("gather", [wt, np.arange(k - 1, -1, -1, dtype=np.int64)], axis=axis)
    padding = [max(0, before[0]), max(0, before[1]), max(0, after[0]), max(0, after[1])]
    return b.op("conv2d", [x, wt], stride=[1, 1], padding=padding, dilation=dil, groups=groups)


def _interleave_zeros(b: Builder, x: Operand, axis: int, step: int) -> Any:
    """``step - 1`` zeros after each entry along ``axis`` but the last."""
    t = b.type_of(x)
    col = b.op("unsqueeze", [x], axes=[axis + 1])
    pads = [0] * (2 * (t.rank + 1))
    pads[2 * (axis + 1) + 1] = step - 1
    wide = b.op("pad", [col], pads=pads, value=0.0)
    shape: list[Any] = [d.value if d.is_static else d for d in t.shape]
    shape[axis] = shape[axis] * step
    flat = b.op("reshape", [wide], shape=shape)
    return b.op("slice", [flat], starts=[0], ends=[-(step - 1)], axes=[axis], steps=[1])
