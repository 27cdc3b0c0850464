"""Emitters for conv2d, max_pool2d, avg_pool2d, batch_norm and lrn (layout NCHW, as ONNX).

The attributes arrive canonical (each op's ``canonical`` hook): ``padding`` is
four ints [top, left, bottom, right], already the order of a 2-D ONNX ``pads``
(x1_begin, x2_begin, x1_end, x2_end); ``kernel``, ``stride`` and ``dilation``
are pairs.

Where ONNX and the spec part ways, the lowering builds the spec's result:

- ``ceil_mode`` is never handed to ONNX (see :class:`Pool`): ONNX's opset-18
  shape inference keeps a last window that PyTorch drops, so the checker would
  reject the true output shape.
- ONNX Runtime wants every pool pad smaller than the kernel; PyTorch (and
  dlir) allow half the dilated extent. Larger pads become an explicit Pad.
- ONNX Runtime has no double Conv or AveragePool, and BatchNormalization's
  epsilon is a float32 attribute: f64 is built from parts, every window cell a
  strided Slice of the padded input, contracted (conv) or summed (average).

A conv2d's fused ``act`` is the activation's own node after the Conv (ONNX
Runtime fuses Conv + Relu/Sigmoid/Tanh/... itself). A node in NHWC layout (made
by the ``layout`` pass, which runs for the tensorflow target only) is its NCHW
twin between two Transposes: correct, not fast.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from onnx import TensorProto, numpy_helper

from dlir.errors import LoweringError
from dlir.ir.graph import Node
from dlir.ir.types import Dim, DType
from dlir.ops.conv import TO_NCHW, TO_NHWC, nchw_twin
from dlir.ops.nn import lrn_window
from dlir.ops.shape import END

from .builder import Builder
from .emit_shape import fused_act
from .table import emitter

Pair = tuple[int, int]


def _pair(v: Sequence[int]) -> Pair:
    return int(v[0]), int(v[1])


def pad_spatial(b: Builder, x: str, pads: Sequence[int], value: str | None = None) -> str:
    """``x`` [N, C, H, W] padded by [top, left, bottom, right] with ``value`` (zero when None)."""
    top, left, bottom, right = pads
    if not any(pads):
        return x
    ins = [x, b.ints([0, 0, top, left, 0, 0, bottom, right])]
    if value is not None:
        ins.append(value)
    return b.op("Pad", ins, mode="constant")


def window_cells(b: Builder, xp: str, kernel: Pair, stride: Pair, dilation: Pair) -> list[str]:
    """One strided Slice of the padded ``xp`` per window cell, each [N, C, Ho, Wo].

    Cell (i, j) starts at (i*dh, j*dw) and stops dh*(kh-1-i) before the end,
    which leaves exactly floor((Hp - dh*(kh-1) - 1) / sh) + 1 positions: no
    run-time shape is needed.
    """
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    cells = []
    for i in range(kh):
        for j in range(kw):
            starts = [i * dh, j * dw]
            ends = [_end(dh * (kh - 1 - i)), _end(dw * (kw - 1 - j))]
            cells.append(b.op("Slice", [xp, b.ints(starts), b.ints(ends), b.ints([2, 3]), b.ints([sh, sw])]))
    return cells


def _end(back: int) -> int:
    return -back if back else END


def _channels_last(fn: Callable[[Builder, Node, list[str]], str]) -> Callable[[Builder, Node, list[str]], str]:
    """``fn`` for NCHW nodes; an NHWC node as its NCHW twin between two Transposes."""

    def emit(b: Builder, node: Node, xs: list[str]) -> str:
        if node.attrs["layout"] == "NCHW":
            return fn(b, node, xs)
        y = fn(b, nchw_twin(node), [b.op("Transpose", [xs[0]], perm=TO_NCHW), *xs[1:]])
        return b.op("Transpose", [y], perm=TO_NHWC)

    return functools.update_wrapper(emit, fn)


# -- conv2d ---------------------------------------------------------------------------


@emitter("conv2d")
@_channels_last
def _conv2d(b: Builder, node: Node, xs: list[str]) -> str:
    a = node.attrs
    stride, dilation, pads = _pair(a["stride"]), _pair(a["dilation"]), list(a["padding"])
    if b.dt is not DType.f64:
        y = b.op("Conv", xs, strides=list(stride), pads=pads, dilations=list(dilation), group=a["groups"])
    else:
        y = _conv2d_f64(b, node, xs, stride, dilation, pads)
    return fused_act(b, a["act"], y)


def _conv2d_f64(b: Builder, node: Node, xs: list[str], stride: Pair, dilation: Pair, pads: list[int]) -> str:
    # ONNX Runtime has no double Conv: patches [N, C, K, Ho, Wo] contracted with w by Einsum.
    x, w = xs[0], xs[1]
    wt = node.inputs[1].type
    if not wt.is_static:
        raise LoweringError(f"onnx: conv2d in f64 needs w of a static shape, got w: {wt}", node.loc)
    o, cg, kh, kw = wt.static_shape()
    kernel, k = (kh, kw), kh * kw
    g = node.attrs["groups"]
    cells = window_cells(b, pad_spatial(b, x, pads), kernel, stride, dilation)
    axis2 = b.ints([2])
    patches = b.op("Concat", [b.op("Unsqueeze", [c, axis2]) for c in cells], axis=2)
    if g == 1:
        y = b.op("Einsum", [patches, b.op("Reshape", [w, b.ints([o, cg, k])])], equation="nckhw,ock->nohw")
    else:
        split = _reshape_axis1(b, patches, [g, cg, k], drop=2)  # [N, g, C/g, K, Ho, Wo]
        wg = b.op("Reshape", [w, b.ints([g, o // g, cg, k])])
        y = _reshape_axis1(b, b.op("Einsum", [split, wg], equation="ngckhw,gock->ngohw"), [o], drop=2)
    if len(xs) > 2:
        y = b.op("Add", [y, b.op("Unsqueeze", [xs[2], b.ints([1, 2])])])
    return y


def _reshape_axis1(b: Builder, x: str, dims: Sequence[int], drop: int) -> str:
    """Replace ``drop`` axes of ``x`` starting at axis 1 by the static ``dims`` (the others read at run time)."""
    parts = [b.op("Shape", [x], start=0, end=1), b.ints(dims), b.op("Shape", [x], start=1 + drop)]
    return b.op("Reshape", [x, b.op("Concat", parts, axis=0)])


# -- pooling ----------------------------------------------------------------------------


class Pool:
    """The canonical attributes of one pooling node, and its ceil_mode windows made explicit.

    The ONNX nodes never use ``ceil_mode``: ONNX's opset-18 shape inference keeps
    a last window that PyTorch (and ONNX Runtime) drop, so the checker would
    reject the declared output shape. Instead the bottom/right padding grows by
    the overhang the last window needs, as cells that never count (-inf for max,
    excluded from the average's divisor), and floor mode gives PyTorch's windows.
    For a static H that is exact; for a symbolic H (the output dim is then unknown)
    it grows by stride - 1 and a Slice keeps PyTorch's count, computed at run time.
    """

    def __init__(self, node: Node) -> None:
        a = node.attrs
        self.kernel = _pair(a["kernel"])
        self.stride = _pair(a["stride"])  # canonical: None has become the kernel
        self.dilation = _pair(a.get("dilation", [1, 1]))  # avg_pool2d has none
        self.pads = list(a["padding"])
        self.ceil = bool(a["ceil_mode"])
        self.shape = node.inputs[0].type.shape
        self.tail = [self._overhang(ax) for ax in (0, 1)]
        # Only a window count unknown until run time needs a Slice after the pool.
        self.trim = self.ceil and any(self._unknown_out(ax) for ax in (0, 1))

    def _extent(self, ax: int) -> int:
        return self.dilation[ax] * (self.kernel[ax] - 1) + 1

    def _unknown_out(self, ax: int) -> bool:
        # ceil and floor agree when the stride is 1 or divides the span (the dim is then known).
        return not self.shape[2 + ax].is_static and self.stride[ax] > 1

    def _overhang(self, ax: int) -> int:
        if not self.ceil:
            return 0
        dim: Dim = self.shape[2 + ax]
        if not dim.is_static:
            return self.stride[ax] - 1 if self._unknown_out(ax) else 0
        n = self._static_out(ax, dim.value)
        return max((n - 1) * self.stride[ax] + self._extent(ax) - (dim.value + self.pads[ax] + self.pads[ax + 2]), 0)

    def _static_out(self, ax: int, size: int) -> int:
        s, lo = self.stride[ax], self.pads[ax]
        span = size + lo + self.pads[ax + 2] - self._extent(ax)
        n = (-(-span // s) if self.ceil else span // s) + 1
        return n - 1 if self.ceil and (n - 1) * s >= size + lo else n

    def grown_pads(self) -> list[int]:
        """[top, left, bottom + overhang, right + overhang]."""
        top, left, bottom, right = self.pads
        return [top, left, bottom + self.tail[0], right + self.tail[1]]

    def fits(self, pads: Sequence[int]) -> bool:
        """Whether ONNX Runtime's pool kernels take ``pads`` (each smaller than the kernel)."""
        return all(p < self.kernel[i % 2] for i, p in enumerate(pads))

    def onnx_attrs(self, pads: Sequence[int]) -> dict[str, Any]:
        return dict(kernel_shape=list(self.kernel), strides=list(self.stride), pads=list(pads))

    def trimmed(self, b: Builder, y: str, x: str) -> str:
        """``y`` cut to PyTorch's ceil_mode window count (only where H or W is symbolic)."""
        if not self.trim:
            return y
        ends = b.op("Concat", [self._out_dim(b, x, ax) for ax in (0, 1)], axis=0)
        return b.op("Slice", [y, b.ints([0, 0]), ends, b.ints([2, 3])])

    def _out_dim(self, b: Builder, x: str, ax: int) -> str:
        """Windows along spatial axis ``ax`` by PyTorch's ceil_mode rule, as a 1-element int64 tensor."""
        dim: Dim = self.shape[2 + ax]
        if dim.is_static:
            return b.ints([self._static_out(ax, dim.value)])
        s, lo = self.stride[ax], self.pads[ax]
        h = b.op("Shape", [x], start=2 + ax, end=3 + ax)
        ceil_span = b.op("Add", [h, b.ints([lo + self.pads[ax + 2] - self._extent(ax) + s - 1])])
        n = b.op("Add", [b.op("Div", [ceil_span, b.ints([s])]), b.ints([1])])
        # Drop a last window that would start in the bottom/right padding or beyond.
        last = b.op("Mul", [b.op("Sub", [n, b.ints([1])]), b.ints([s])])
        late = b.op("GreaterOrEqual", [last, b.op("Add", [h, b.ints([lo])])])
        return b.op("Sub", [n, b.op("Cast", [late], to=TensorProto.INT64)])


@emitter("max_pool2d")
@_channels_last
def _max_pool2d(b: Builder, node: Node, xs: list[str]) -> str:
    # MaxPool has float and double kernels; its pads (overhang included) never win a max.
    pool = Pool(node)
    x, pads = xs[0], pool.grown_pads()
    if not pool.fits(pads):
        x, pads = pad_spatial(b, x, pads, b.scalar(-np.inf)), [0, 0, 0, 0]
    y = b.op("MaxPool", [x], dilations=list(pool.dilation), **pool.onnx_attrs(pads))
    return pool.trimmed(b, y, xs[0])


@emitter("avg_pool2d")
@_channels_last
def _avg_pool2d(b: Builder, node: Node, xs: list[str]) -> str:
    pool = Pool(node)
    include_pad = bool(node.attrs["count_include_pad"])
    x = xs[0]
    if not any(pool.tail):
        pads, count_pads, pre_pad = pool.pads, include_pad, False
    elif include_pad:
        # The real padding counts, the overhang does not: pad explicitly, exclude the attribute's pads.
        pads, count_pads, pre_pad = [0, 0, *pool.tail], False, True
    else:
        pads, count_pads, pre_pad = pool.grown_pads(), False, False
    if b.dt is DType.f64 or not pool.fits(pads):
        y = _avg_pool_cells(b, x, pool, include_pad)
    else:
        src = pad_spatial(b, x, pool.pads) if pre_pad else x
        y = b.op("AveragePool", [src], count_include_pad=int(count_pads), **pool.onnx_attrs(pads))
    return pool.trimmed(b, y, x)


def _avg_pool_cells(b: Builder, x: str, pool: Pool, include_pad: bool) -> str:
    """Each window's sum over the number of its cells that count, from strided slices.

    For f64 (ONNX Runtime has no double AveragePool) and for pads that AveragePool
    refuses (ONNX Runtime wants each pad smaller than the kernel).
    """

    def window_sum(t: str) -> str:
        return b.op("Sum", window_cells(b, t, pool.kernel, pool.stride, pool.dilation))

    total = window_sum(pad_spatial(b, x, pool.grown_pads()))
    return b.op("Div", [total, window_sum(_count_mask(b, x, pool, include_pad))])


def _count_mask(b: Builder, x: str, pool: Pool, include_pad: bool) -> str:
    """[1, 1, Hp, Wp]: 1 where a cell counts in the divisor, 0 elsewhere (the overhang never does)."""
    if all(d.is_static for d in pool.shape[2:]):
        ones = b.const(np.ones([1, 1, *(d.value for d in pool.shape[2:])]), b.dt, "ones")
    else:
        shape = b.op("Concat", [b.ints([1, 1]), b.op("Shape", [x], start=2)], axis=0)
        ones = b.op("ConstantOfShape", [shape], value=numpy_helper.from_array(np.ones(1, b.dt.numpy)))
    mask = pad_spatial(b, ones, pool.pads, b.scalar(1.0 if include_pad else 0.0))
    return pad_spatial(b, mask, [0, 0, *pool.tail])


# -- batch_norm ---------------------------------------------------------------------------


@emitter("batch_norm")
@_channels_last
def _batch_norm(b: Builder, node: Node, xs: list[str]) -> str:
    eps = node.attrs["eps"]
    rank = node.inputs[0].type.rank
    if b.dt is not DType.f64:
        return b.op("BatchNormalization", xs, epsilon=eps)
    # f64: epsilon is a float32 attribute; written out it matches the reference.
    x, scale, bias, mean, var = xs
    axes = b.ints(list(range(1, rank - 1)))

    def per_channel(p: str) -> str:
        return p if rank == 2 else b.op("Unsqueeze", [p, axes])

    inv = b.op("Div", [per_channel(scale), b.op("Sqrt", [b.op("Add", [per_channel(var), b.scalar(eps)])])])
    return b.op("Add", [b.op("Mul", [b.op("Sub", [x, per_channel(mean)]), inv]), per_channel(bias)])


# -- lrn ----------------------------------------------------------------------------------


@emitter("lrn")
@_channels_last
def _lrn(b: Builder, node: Node, xs: list[str]) -> str:
    # ONNX Runtime's LRN kernel takes 4-D float and an odd size only (its CUDA one, cuDNN's,
    # also a size <= 15, beta >= 0.01 and bias >= 1e-5): other ranks are viewed as
    # [N, C, rest, 1] (the window runs over channels only), the rest is built from parts.
    a = node.attrs
    x, rank = xs[0], node.inputs[0].type.rank
    size = a["size"]
    if b.dt is DType.f64 or size % 2 == 0 or size > 15 or a["beta"] < 0.01 or a["bias"] < 1e-5:
        return _lrn_parts(b, node, x)
    attrs = dict(size=a["size"], alpha=a["alpha"], beta=a["beta"], bias=a["bias"])
    if rank == 4:
        return b.op("LRN", [x], **attrs)
    if rank == 3:
        axis = b.ints([3])
        return b.op("Squeeze", [b.op("LRN", [b.op("Unsqueeze", [x, axis])], **attrs), axis])
    y = b.op("LRN", [b.op("Reshape", [x, b.ints([0, 0, -1, 1])])], **attrs)
    return b.op("Reshape", [y, b.op("Shape", [x])])


def _lrn_parts(b: Builder, node: Node, x: str) -> str:
    """x / (bias + alpha/size * window sum of x^2) ** beta: one channel Slice per window cell, summed."""
    a = node.attrs
    size = a["size"]
    lo, hi = lrn_window(size)
    rank = node.inputs[0].type.rank
    pads = [0, lo] + [0] * (rank - 2) + [0, hi] + [0] * (rank - 2)
    sq = b.op("Pad", [b.op("Mul", [x, x]), b.ints(pads)], mode="constant")
    cells = [b.op("Slice", [sq, b.ints([k]), b.ints([_end(size - 1 - k)]), b.ints([1])]) for k in range(size)]
    total = cells[0] if size == 1 else b.op("Sum", cells)
    den = b.op("Add", [b.scalar(a["bias"]), b.op("Mul", [b.scalar(a["alpha"] / size), total])])
    return b.op("Div", [x, b.op("Pow", [den, b.scalar(a["beta"])])])
