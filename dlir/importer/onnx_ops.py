"""The ONNX op table: one small handler per ONNX op that maps onto one dlir op (or a few).

Elementwise, linear-algebra, conv/pool/norm and Scan handlers are here; the shape, indexing
and reduction handlers are in :mod:`dlir.importer.onnx_shape_ops`, the losses in
:mod:`dlir.importer.onnx_losses`. Handlers are registered with :func:`handles`; see
:mod:`dlir.importer.builder` for the forms their inputs and outputs take.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlir.importer.builder import HANDLERS, Builder, Handler, Operand, handles
from dlir.importer.onnx_import import DTYPES_TEXT, ONNX_DTYPES, ONNX_TYPE_NAMES, tensor_value
from dlir.ir.types import Dim


def _scalar(b: Builder, like: Operand, v: float) -> np.ndarray:
    """A 0-d array of ``v`` in the dtype of ``like``."""
    return np.array(v, b.type_of(like).dtype.numpy)


def _simple(onnx_name: str, dlir_name: str) -> None:
    HANDLERS[onnx_name] = lambda b, ins, a: b.op(dlir_name, [ins[0]])


for _o, _d in {
    "Relu": "relu",
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
    "Exp": "exp",
    "Log": "log",
    "Sqrt": "sqrt",
    "Abs": "abs",
    "Neg": "neg",
    "Sin": "sin",
    "Cos": "cos",
    "Erf": "erf",
    "Floor": "floor",
    "Ceil": "ceil",
    "Sign": "sign",
    "Softplus": "softplus",
}.items():
    _simple(_o, _d)


def _binary(onnx_name: str, dlir_name: str) -> None:
    def h(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
        if b.opset < 7 and a.get("broadcast", 0) and "axis" in a:
            raise b.error(f"{onnx_name} with legacy axis broadcasting is not supported")
        return b.op(dlir_name, [ins[0], ins[1]])

    HANDLERS[onnx_name] = h


for _o, _d in {
    "Add": "add",
    "Sub": "sub",
    "Mul": "mul",
    "Div": "div",
    "Equal": "equal",
    "Greater": "greater",
    "Less": "less",
    "GreaterOrEqual": "greater_equal",
    "LessOrEqual": "less_equal",
}.items():
    _binary(_o, _d)


@handles("Pow")
def _pow(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x, y = ins
    tx, ty = b.type_of(x), b.type_of(y)
    if ty.dtype != tx.dtype:
        y = b.op("cast", [y], dtype=tx.dtype)
    return b.op("pow", [x, y])


def _variadic(onnx_name: str, dlir_name: str, mean: bool = False) -> None:
    def h(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
        acc = ins[0]
        for x in ins[1:]:
            acc = b.op(dlir_name, [acc, x])
        if mean and len(ins) > 1:
            acc = b.op("div", [acc, np.array(len(ins), dtype=b.type_of(acc).dtype.numpy)])
        return acc

    HANDLERS[onnx_name] = h


_variadic("Max", "maximum")
_variadic("Min", "minimum")
_variadic("Sum", "add")
_variadic("Mean", "add", mean=True)


@handles("LeakyRelu")
def _leaky(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    return b.op("leaky_relu", [ins[0]], alpha=float(a.get("alpha", 0.01)))


@handles("Elu")
def _elu(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    return b.op("elu", [ins[0]], alpha=float(a.get("alpha", 1.0)))


@handles("Clip")
def _clip(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    if b.opset < 11:
        lo, hi = a.get("min"), a.get("max")
    else:
        lo = float(b.known(ins[1], "Clip's min")) if len(ins) > 1 and ins[1] is not None else None
        hi = float(b.known(ins[2], "Clip's max")) if len(ins) > 2 and ins[2] is not None else None
    return b.op("clip", [ins[0]], min=lo, max=hi)


@handles("Where")
def _where(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    return b.op("where", ins[:3])


@handles("Identity", "Dropout")
def _identity(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    if len(ins) > 2 and ins[2] is not None and bool(b.known(ins[2], "Dropout's training_mode").reshape(-1)[0]):
        raise b.error("Dropout in training mode is not supported", "dlir imports inference graphs")
    if len(b.out_names) > 1 and b.out_names[1]:  # at inference every element is kept: the mask is all true
        return [ins[0], b.op("broadcast_to", [np.array(True)], shape=[_dimattr(d) for d in b.shape(ins[0])])]
    return ins[0]


@handles("Cast")
def _cast(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    to = int(a["to"])
    if to not in ONNX_DTYPES:
        raise b.error(f"Cast to {ONNX_TYPE_NAMES.get(to, to)} is not supported", DTYPES_TEXT)
    return b.op("cast", [ins[0]], dtype=ONNX_DTYPES[to])


@handles("Constant")
def _constant(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    from onnx import numpy_helper  # noqa: F401

    if "value" in a:
        return tensor_value(a["value"], b.path) if not isinstance(a["value"], np.ndarray) else a["value"]
    if "value_float" in a:
        return np.array(a["value_float"], np.float32)
    if "value_floats" in a:
        return np.array(a["value_floats"], np.float32)
    if "value_int" in a:
        return np.array(a["value_int"], np.int64)
    if "value_ints" in a:
        return np.array(a["value_ints"], np.int64)
    raise b.error(f"Constant with {', '.join(a) or 'no value'} is not supported")


@handles("Shape")
def _shape(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    t = b.type_of(ins[0])
    dims = list(t.shape)
    start, end = int(a.get("start", 0)), a.get("end")
    dims = dims[start:] if end is None else dims[start : int(end)]
    if not all(d.is_static for d in dims):
        out = np.empty(len(dims), dtype=object)
        for i, d in enumerate(dims):
            if d.unknown:
                raise b.error(
                    f"Shape of {t}: an unknown dim cannot be folded at import", "give the model's inputs named dims"
                )
            out[i] = d
        return out
    return np.array([d.value for d in dims], np.int64)


@handles("Size")
def _size(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    n = b.type_of(ins[0]).numel()
    if not n.is_static:
        raise b.error("Size of a tensor with symbolic dims cannot be folded at import")
    return np.array(n.value, np.int64)


@handles("ConstantOfShape")
def _const_of_shape(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    shape = b.dims(ins[0], "ConstantOfShape's shape")
    v = a.get("value")
    fill = tensor_value(v, b.path).reshape(-1) if v is not None else np.zeros(1, np.float32)
    if all(isinstance(d, int) for d in shape):
        return np.full(shape, fill[0], fill.dtype)
    return b.op("broadcast_to", [np.array(fill[0], fill.dtype)], shape=shape)


@handles("MatMul")
def _matmul(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x, y = ins
    rx, ry = b.rank(x), b.rank(y)
    if rx == 1:
        x = b.op("unsqueeze", [x], axes=[0])
    if ry == 1:
        y = b.op("unsqueeze", [y], axes=[1])
    out = b.op("matmul", [x, y])
    if ry == 1:
        out = b.op("squeeze", [out], axes=[-1])
    if rx == 1:
        out = b.op("squeeze", [out], axes=[-2 if ry != 1 else -1])
    return out


@handles("Gemm")
def _gemm(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x, w = ins[0], ins[1]
    if a.get("transA", 0):
        x = b.op("transpose", [x], perm=[1, 0])
    if a.get("transB", 0):
        w = b.op("transpose", [w], perm=[1, 0])
    y = b.op("matmul", [x, w])
    dt = b.type_of(y).dtype.numpy
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    if alpha != 1.0:
        y = b.op("mul", [y, np.array(alpha, dt)])
    if len(ins) > 2 and ins[2] is not None and beta != 0.0:
        c = ins[2]
        if beta != 1.0:
            c = b.op("mul", [c, np.array(beta, dt)])
        y = b.op("add", [y, c])
    return y


def _spatial(b: Builder, a: dict[str, Any], x: Operand, kernel: list[int], op: str) -> dict[str, Any]:
    """Conv/pool attributes -> dlir stride/padding/dilation."""
    if b.rank(x) != 4 or len(kernel) != 2:
        raise b.error(f"{op}: only 2-D (NCHW) is supported, got x: {b.type_of(x)}", "dlir has conv2d and 2-D pools")
    stride = list(a.get("strides", [1, 1]))
    dil = list(a.get("dilations", [1, 1]))
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("NOTSET", ""):
        pads = list(a.get("pads", [0, 0, 0, 0]))
        padding: Any = [pads[0], pads[1], pads[2], pads[3]]
    elif auto == "VALID":
        padding = [0, 0, 0, 0]
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        hw = b.shape(x)[2:]
        if not all(d.is_static for d in hw):
            raise b.error(f"{op}: auto_pad={auto} needs static height and width, got {b.type_of(x)}")
        lo, hi = [], []
        for n, k, s, d in zip([d.value for d in hw], kernel, stride, dil, strict=True):
            ext = (k - 1) * d + 1
            out = -(-n // s)
            total = max((out - 1) * s + ext - n, 0)
            small, big = total // 2, total - total // 2
            lo.append(small if auto == "SAME_UPPER" else big)
            hi.append(big if auto == "SAME_UPPER" else small)
        padding = [lo[0], lo[1], hi[0], hi[1]]
    else:
        raise b.error(f"{op}: unknown auto_pad '{auto}'")
    return {"stride": stride, "padding": padding, "dilation": dil}


def _lift_1d(f: Handler) -> Handler:
    """A 1-D conv/pool ([N, C, L]) as the 2-D one on [N, C, L, 1], squeezed back."""

    def h(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
        if ins[0] is None or b.rank(ins[0]) != 3:
            return f(b, ins, a)
        a2 = dict(a)
        for key, extra in (("kernel_shape", 1), ("strides", 1), ("dilations", 1)):
            if key in a2:
                a2[key] = list(a2[key]) + [extra]
        if "pads" in a2:
            p = list(a2["pads"])
            a2["pads"] = [p[0], 0, p[1], 0]
        ins2 = [b.op("unsqueeze", [ins[0]], axes=[3])]
        if len(ins) > 1:
            ins2.append(b.op("unsqueeze", [ins[1]], axes=[3]) if ins[1] is not None else None)
        ins2 += ins[2:]
        return b.op("squeeze", [f(b, ins2, a2)], axes=[3])

    return h


@handles("Conv")
def _conv(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x, w = ins[0], ins[1]
    kernel = list(a.get("kernel_shape", [d.value for d in b.shape(w)[2:]]))
    geo = _spatial(b, a, x, kernel, "Conv")
    args = [x, w] + ([ins[2]] if len(ins) > 2 and ins[2] is not None else [])
    return b.op("conv2d", args, groups=int(a.get("group", 1)), **geo)


@handles("MaxPool")
def _maxpool(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    if len(b.out_names) > 1 and b.out_names[1]:
        raise b.error("MaxPool's Indices output is not supported")
    kernel = list(a["kernel_shape"])
    geo = _spatial(b, a, ins[0], kernel, "MaxPool")
    return b.op("max_pool2d", [ins[0]], kernel=kernel, ceil_mode=bool(a.get("ceil_mode", 0)), **geo)


@handles("AveragePool")
def _avgpool(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    kernel = list(a["kernel_shape"])
    geo = _spatial(b, a, ins[0], kernel, "AveragePool")
    if geo.pop("dilation") != [1, 1]:
        raise b.error("AveragePool with dilations is not supported")
    return b.op(
        "avg_pool2d",
        [ins[0]],
        kernel=kernel,
        ceil_mode=bool(a.get("ceil_mode", 0)),
        count_include_pad=bool(a.get("count_include_pad", 0)),
        **geo,
    )


@handles("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    t = b.type_of(ins[0])
    hw = t.shape[2:]
    if t.rank == 4 and all(d.is_static for d in hw):
        # A pool over the whole image, as the model says: the targets' pool kernels treat every
        # channel alike, where a reduction may sum channels in different orders (and, on the
        # huge activations of the `light` models, differ by an ulp that softmax then magnifies).
        kernel = [d.value for d in hw]
        name = "avg_pool2d" if b.node_op == "GlobalAveragePool" else "max_pool2d"
        return b.op(name, [ins[0]], kernel=kernel, stride=kernel)
    name = "mean" if b.node_op == "GlobalAveragePool" else "max"
    return b.op(name, [ins[0]], axis=list(range(2, t.rank)), keepdims=True)


@handles("BatchNormalization")
def _bn(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    if any(b.out_names[1:]) or a.get("training_mode", 0):
        raise b.error("BatchNormalization in training mode is not supported", "dlir imports inference graphs")
    # ONNX's momentum weighs the old running value (as Keras'); dlir's, torch's, the new batch statistic.
    momentum = round(1.0 - float(a.get("momentum", 0.9)), 12)
    return b.op("batch_norm", ins[:5], eps=float(a.get("epsilon", 1e-5)), momentum=momentum)


@handles("LRN")
def _lrn(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    """dlir's lrn is ONNX's LRN (same window, alpha divided by size); size is required by both."""
    attrs = {k: a[k] for k in ("size", "alpha", "beta", "bias") if k in a}
    return b.op("lrn", [ins[0]], **attrs)


def _dimattr(d: Dim) -> Any:
    return d.value if d.is_static else d


def _softmax(dlir_name: str) -> Handler:
    def h(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
        x = ins[0]
        t = b.type_of(x)
        if b.opset >= 13:
            return b.op(dlir_name, [x], axis=int(a.get("axis", -1)))
        axis = int(a.get("axis", 1)) % max(t.rank, 1)
        if axis == t.rank - 1:
            return b.op(dlir_name, [x], axis=-1)
        lead, rest = Dim.of(1), Dim.of(1)
        for d in t.shape[:axis]:
            lead = lead * d
        for d in t.shape[axis:]:
            rest = rest * d
        y = b.op(dlir_name, [b.op("reshape", [x], shape=[_dimattr(lead), _dimattr(rest)])], axis=-1)
        return b.op("reshape", [y], shape=[_dimattr(d) for d in t.shape])

    return h


for _name in ("Conv", "MaxPool", "AveragePool"):
    HANDLERS[_name] = _lift_1d(HANDLERS[_name])

HANDLERS["Softmax"] = _softmax("softmax")
HANDLERS["LogSoftmax"] = _softmax("log_softmax")


@handles("LayerNormalization")
def _layer_norm(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x, scale = ins[0], ins[1]
    t = b.type_of(x)
    axis = int(a.get("axis", -1)) % t.rank
    if any(b.out_names[1:]):  # Mean and InvStdDev, written out (as the spec's function body)
        axes = list(range(axis, t.rank))
        mu = b.op("mean", [x], axis=axes, keepdims=True)
        d = b.op("sub", [x, mu])
        var = b.op("mean", [b.op("mul", [d, d])], axis=axes, keepdims=True)
        inv = b.op("rsqrt", [b.op("add", [var, _scalar(b, x, float(a.get("epsilon", 1e-5)))])])
        y = b.op("mul", [d, inv])
        y = b.op("mul", [y, scale])
        if len(ins) > 2 and ins[2] is not None:
            y = b.op("add", [y, ins[2]])
        return [y, mu, inv]
    norm_shape = [_dimattr(d) for d in t.shape[axis:]]
    bias = ins[2] if len(ins) > 2 and ins[2] is not None else np.zeros([1] * len(norm_shape), t.dtype.numpy)
    parts = []
    for v in (scale, bias):
        if list(b.shape(v)) != list(t.shape[axis:]):
            v = b.op("broadcast_to", [v], shape=norm_shape)
        parts.append(v)
    return b.op("layer_norm", [x, *parts], axis=axis, eps=float(a.get("epsilon", 1e-5)))


@handles("Scan")
def _scan_op(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    """ONNX Scan with one scanned input -> dlir scan (states first in ONNX, emits first in dlir)."""
    from dlir.ir.scan import emit_scan, scan_body, step_type

    if b.opset < 9:
        raise b.error("Scan before opset 9 (with sequence_lens) is not supported")
    n_scan = int(a["num_scan_inputs"])
    if n_scan != 1:
        raise b.error(f"Scan with {n_scan} scanned inputs is not supported", "dlir's scan iterates over one tensor")
    g = a["body"]
    k = len(ins) - 1
    m = len(g.output) - k
    xs = b.tensor(ins[k])
    axis = int(list(a.get("scan_input_axes", [0]))[0]) % xs.type.rank
    direction = int(list(a.get("scan_input_directions", [0]))[0])
    out_axes = [int(x) % (xs.type.rank) for x in a.get("scan_output_axes", [0] * m)]
    out_dirs = [int(x) for x in a.get("scan_output_directions", [0] * m)]
    if any(x != axis for x in out_axes) or any(d != direction for d in out_dirs):
        raise b.error("Scan whose outputs are stacked along another axis or direction than its input is not supported")
    inits = [b.tensor(x) for x in ins[:k]]
    body = scan_body(
        b.graph, step_type(xs.type, axis), [v.type for v in inits], ["x_t"] + [f"h{i + 1}" for i in range(k)]
    )
    c = b.child(body)
    c.consumed.update(o.name for o in g.output)
    for vi, v in zip(g.input, [*body.inputs[1:], body.inputs[0]], strict=True):
        c.env[vi.name] = v
    for n in c._toposort_body(g):
        c._node(n)
    outs = [c.tensor(c.env[o.name]) for o in g.output]
    body.outputs = [(f"o{i}", v) for i, v in enumerate(outs)]
    res = emit_scan(b.graph, xs, inits, body, axis=axis, reverse=bool(direction))
    return res[m:] + res[:m]
