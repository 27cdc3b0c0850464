"""Which kernels TensorFlow really ran: the graph after grappler and the oneDNN passes.

A generated ``tf.function`` is rewritten before it runs: grappler's remapper
fuses op chains into ``_Fused*`` kernels and, when oneDNN is on, into ``_Mkl*``
kernels. A fusion is another implementation of the same math and may not be
the same numbers (TensorFlow 2.21's ``_MklLayerNorm`` ignores epsilon). This
module reads the executed graph back from the runtime's run metadata, so tests
and ``dlirc doctor`` can list the fusions that matched and check each against
:data:`REVIEWED_FUSIONS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Every rewritten kernel seen in the graphs this backend emits (op cases, samples,
# gradient graphs; TensorFlow 2.21, oneDNN on and off), with why it is the same
# computation. The agreement tests check the numbers of each in both oneDNN modes;
# one not listed here fails tests/test_tf_rewrites.py until someone has looked at it.
REVIEWED_FUSIONS: dict[str, str] = {
    # oneDNN's kernel for a single op: the op's own semantics, another summation order
    "_MklMatMul": "oneDNN MatMul",
    "_MklBatchMatMulV2": "oneDNN BatchMatMulV2",
    "_MklTranspose": "oneDNN Transpose (a copy)",
    "_MklSoftmax": "oneDNN Softmax over the last axis",
    "_MklNativeConv2D": "oneDNN Conv2D",
    "_MklNativeDepthwiseConv2dNative": "oneDNN depthwise Conv2D",
    "_MklNativeMaxPool": "oneDNN MaxPool (a max: exact)",
    "_MklNativeAvgPool": "oneDNN AvgPool (the padding the code wrote is explicit, so no count_include_pad question)",
    "_MklNativeConv2DBackpropInput": "oneDNN Conv2DBackpropInput: conv2d's input gradient (the transposed "
    "convolution), another summation order",
    "_MklNativeConv2DBackpropFilter": "oneDNN Conv2DBackpropFilter: conv2d's weight gradient, another summation order",
    "_MklNativeMaxPoolGrad": "oneDNN MaxPoolGrad: each window's cotangent to its first maximum (the max_pool2d_grad "
    "op cases draw ties)",
    "_MklNativeFusedBatchNormGradV3": "oneDNN FusedBatchNormGradV3 of train mode's batch norm, reading the mean and "
    "variance it is given (summed in float64), epsilon honoured (checked at eps 0.5)",
    # fusions of a chain the code wrote (grappler's own with oneDNN off, oneDNN's with it on)
    "_FusedMatMul": "MatMul + BiasAdd of a 1-D bias (+ activation): the same products, bias and activation once",
    "_FusedConv2D": "Conv2D + BiasAdd (+ activation)",
    "_MklNativeFusedMatMul": "oneDNN's _FusedMatMul: the same products, bias and activation once",
    "_MklNativeFusedConv2D": "Conv2D + BiasAdd (+ activation)",
    "_MklNativeFusedDepthwiseConv2dNative": "depthwise Conv2D + BiasAdd (+ activation)",
    "_MklNativeFusedBatchNormEx": "FusedBatchNormV3 given the batch's statistics, + Relu: the same normalisation, "
    "relu once (epsilon honoured, checked at eps 0.5)",
    "_MklNativeFusedBatchNormV3": "oneDNN FusedBatchNormV3 given the batch's statistics (no relu after it)",
    "_MklNativePadWithConv2D": "an explicit Pad of zeros folded into the convolution's padding",
    "_MklNativePadWithFusedConv2D": "the same, with the bias and activation fused",
    "_MklSwish": "x * sigmoid(x)",
    "_UnaryOpsComposition": "grappler's chain of unary ops run as one kernel, each op's own functor in order",
    # not a computation: eager constants captured by a tf.function
    "_EagerConst": "a constant",
}

# Fusions known to compute other numbers; the backend must never let them match.
WRONG_FUSIONS: dict[str, str] = {
    "_MklLayerNorm": "uses epsilon = 1e-3 whatever the graph's epsilon (TensorFlow 2.21, oneDNN on)",
    "_MklFusedInstanceNorm": "the same pattern as _MklLayerNorm over other axes",
}

# Runtime plumbing that every executed graph has: not a computation.
_PLUMBING = {"_Arg", "_Retval", "_Send", "_Recv", "_HostSend", "_HostRecv", "_DeviceArg", "_DeviceRetval"}


def is_fusion(op: str) -> bool:
    """A kernel a rewrite put in the graph (fused or oneDNN-specific), not one the code wrote."""
    return op.startswith("_") and op not in _PLUMBING


def executed_ops(call: Callable[[], Any]) -> set[str]:
    """The op types of every graph TensorFlow ran during ``call()``, after all rewrites.

    ``call`` must run at least one ``tf.function``; nested function bodies
    (while loops) are included.
    """
    from tensorflow.python.eager import context

    context.enable_run_metadata()
    try:
        call()
        meta = context.export_run_metadata()
    finally:
        context.disable_run_metadata()
    ops: set[str] = set()
    for fg in meta.function_graphs:
        graphs = list(fg.partition_graphs) or [fg.post_optimization_graph]
        for g in graphs:
            ops.update(n.op for n in g.node)
            for f in g.library.function:
                ops.update(n.op for n in f.node_def)
    for g in meta.partition_graphs:
        ops.update(n.op for n in g.node)
    return ops


def fusions(call: Callable[[], Any]) -> set[str]:
    """The rewritten kernels among :func:`executed_ops`."""
    return {op for op in executed_ops(call) if is_fusion(op)}


def unreviewed(found: set[str]) -> set[str]:
    """The fusions in ``found`` that nobody has checked give this backend's numbers."""
    return {op for op in found if op not in REVIEWED_FUSIONS}
