"""ONNX emitters for the backward ops (dlir.ops.backward).

ONNX has no backward ops of its own (ONNX Runtime's training kernels live in its
training build only), so each is written with what inference kernels offer:

- ``relu_grad``: ``Where(y > 0, g, 0)``;
- ``max_pool2d_grad``: ``MaxPool``'s second output, the flat index of each window's
  maximum (the first one, as the reference), over the frame every window lies in;
  the cotangent is added there by one ``ScatterElements(reduction="add")`` and the
  frame cut back to the image by a ``Pad`` with negative amounts;
- ``conv2d_input_grad``: ``ConvTranspose`` over the frame, cut or zero-filled to
  the image the same way;
- ``conv2d_weight_grad``: a ``Conv`` of the image by the cotangent, batch as channels.

ONNX Runtime has no double Conv or ConvTranspose; dlir's VJP rule keeps float64
convs decomposed, so only a hand-written float64 node fails, with a clear error.
"""

from __future__ import annotations

import numpy as np
from dlir.backends.decompose import DECOMPOSE
from onnx import helper

from dlir.errors import LoweringError
from dlir.ir.graph import Node
from dlir.ir.types import DType
from dlir.ops.backward import conv_frame, pool_frame

from .builder import ONNX_DTYPES, Builder
from .table import EMITTERS, Emitter, emitter


def _pad4(b: Builder, x: str, top: int, left: int, bottom: int, right: int, value: str | None = None) -> str:
    """NCHW ``x`` grown (positive amounts) or cut (negative) in height and width."""
    if not any((top, left, bottom, right)):
        return x
    ins = [x, b.ints([0, 0, top, left, 0, 0, bottom, right])]
    if value is not None:
        ins.append(value)
    return b.op("Pad", ins, mode="constant")


@emitter("relu_grad")
def _relu_grad(b: Builder, node: Node, xs: list[str]) -> str:
    y, g = xs
    zero = b.scalar(0)
    return b.op("Where", [b.op("Greater", [y, zero]), g, zero])


@emitter("max_pool2d_grad")
def _max_pool2d_grad(b: Builder, node: Node, xs: list[str]) -> str:
    x, g = xs
    a = node.attrs
    kernel, stride, (top, left, _, _) = list(a["kernel"]), list(a["stride"]), a["padding"]
    bottom, right = pool_frame(node)
    frame = _pad4(b, x, top, left, bottom, right, b.scalar(-np.inf))
    _, indices = b.op_n("MaxPool", [frame], 2, kernel_shape=kernel, strides=stride)
    zero = helper.make_tensor("zero", ONNX_DTYPES[b.dt], [1], [0])
    zeros = b.op("ConstantOfShape", [b.op("Shape", [frame])], value=zero)
    flat = b.ints([-1])
    dx = b.op(
        "ScatterElements",
        [b.op("Reshape", [zeros, flat]), b.op("Reshape", [indices, flat]), b.op("Reshape", [g, flat])],
        axis=0,
        reduction="add",
    )
    dx = b.op("Reshape", [dx, b.op("Shape", [frame])])
    return _pad4(b, dx, -top, -left, -bottom, -right)


def _no_double(b: Builder, node: Node, kernel: str) -> None:
    if b.dt is DType.f64:
        raise LoweringError(
            f"onnx: {node.op} in f64: ONNX Runtime has no double {kernel}",
            node.loc,
            hint="compute it in f32, or differentiate the conv2d (its float64 VJP is decomposed)",
        )


@emitter("conv2d_input_grad")
def _conv2d_input_grad(b: Builder, node: Node, xs: list[str]) -> str:
    _no_double(b, node, "ConvTranspose")
    g, w = xs
    a = node.attrs
    top, left, _, _ = a["padding"]
    fb, fr = conv_frame(node)
    # ConvTranspose's pads cut its full output; rows the last window never reads (fb < 0) are zeros.
    y = b.op("ConvTranspose", [g, w], strides=list(a["stride"]), pads=[top, left, max(fb, 0), max(fr, 0)])
    return _pad4(b, y, 0, 0, -min(fb, 0), -min(fr, 0))


@emitter("conv2d_weight_grad")
def _conv2d_weight_grad(b: Builder, node: Node, xs: list[str]) -> str:
    # No weight-gradient op in ONNX: x as [C, N, H, W] convolved with g as the kernel [O, N, Ho, Wo]
    # (stride as dilation) gives [C, O, kh', kw'], cut to the kernel and transposed.
    _no_double(b, node, "Conv")
    x, g = xs
    a = node.attrs
    kh, kw = a["kernel"]
    swap = [1, 0, 2, 3]
    xt, gk = b.op("Transpose", [x], perm=swap), b.op("Transpose", [g], perm=swap)
    dw = b.op("Conv", [xt, gk], pads=list(a["padding"]), dilations=list(a["stride"]))
    dw = b.op("Slice", [dw, b.ints([0, 0]), b.ints([kh, kw]), b.ints([2, 3])])
    return b.op("Transpose", [dw], perm=swap)


# ONNX has no activation, layer-norm or softmax gradient op: their decompositions are lowered.
_DECOMPOSED = ("tanh_grad", "sigmoid_grad", "gelu_grad", "layer_norm_grad", "softmax_grad", "log_softmax_grad")
for _op in (*_DECOMPOSED, "batch_norm_train", "batch_norm_train_grad"):
    EMITTERS[_op] = Emitter(_op, DECOMPOSE)
