"""Neural-network ops: layer_norm, lrn, dropout, activation, and the losses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from dlir.errors import TypeError_
from dlir.ir.types import Dim, TensorType
from dlir.ops.conv import _LAYOUT, _layout_infer, _layout_ref, has_running_stats
from dlir.ops.conv_grad import in_nchw
from dlir.ops.registry import Attr, OpDef, register
from dlir.ops.shape import END
from dlir.ops.shape_rules import broadcast_equal, broadcast_shapes, norm_axis, require_float, same_dtype

if TYPE_CHECKING:
    from dlir.autodiff.builder import GradBuilder
    from dlir.ir.graph import Node, Value


def _layer_norm_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, g, b = ts
    require_float("layer_norm", x)
    same_dtype("layer_norm", ts)
    ax = norm_axis("layer_norm", a["axis"], x.rank)
    norm_shape = x.shape[ax:]
    for what, t in (("gamma", g), ("beta", b)):
        if t.rank != len(norm_shape) or any(not d.compatible(e) for d, e in zip(t.shape, norm_shape, strict=True)):
            raise TypeError_(
                f"layer_norm: {what} has type {t}, but x: {x} is normalised over the shape "
                f"[{', '.join(map(str, norm_shape))}] (axis {a['axis']} to the end)",
                hint=f"{what} must have the shape of x's axes {ax}..{x.rank - 1}",
            )
    return [x]


def _layer_norm_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x, g, b = (v.astype(np.float64) for v in xs)
    axes = tuple(range(a["axis"] % x.ndim, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    return [(x - mu) / np.sqrt(var + a["eps"]) * g + b]


def _layer_norm_vjp(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
    """The backward op layer_norm_grad (dlir.ops.backward): torch's native kernel, decomposed elsewhere."""
    x, gamma, _ = node.inputs
    dx, dgamma, dbeta = b.ops("layer_norm_grad", [x, gamma, cts[0]], axis=node.attrs["axis"], eps=node.attrs["eps"])
    return [dx, dgamma, dbeta]


register(
    OpDef(
        "layer_norm",
        ("x", "gamma", "beta"),
        (Attr("axis", "int", -1), Attr("eps", "float", 1e-5)),
        _layer_norm_infer,
        _layer_norm_ref,
        doc="normalise over axes axis..-1 (biased variance), then scale and shift",
        vjp=_layer_norm_vjp,
        family="nn",
    )
)


def differs_in_training(node: Node) -> bool:
    """Whether ``node`` computes otherwise in train mode: a dropout that drops, a batch norm
    over running statistics."""
    return node.op == "dropout" and node.attrs["p"] > 0 or has_running_stats(node)


def _dropout_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    if not 0.0 <= a["p"] < 1.0:
        raise TypeError_(f"dropout: p={a['p']} must be in [0, 1)")
    return [ts[0]]


register(
    OpDef(
        "dropout",
        ("x",),
        (Attr("p", "float", 0.5),),
        _dropout_infer,
        lambda xs, a: [xs[0]],
        doc="identity at inference (compiled models run in inference mode)",
        elementwise=True,
        vjp=lambda b, node, cts: [cts[0]],
        family="nn",
    )
)

# activation(x, name) is rewritten to the named op when it is built, so the IR
# and the generated code show `relu(x)`, not a string dispatch.
ACTIVATIONS: dict[str, tuple[str, dict[str, Any]] | None] = {
    "none": None,
    "linear": None,
    "identity": None,
    "relu": ("relu", {}),
    "tanh": ("tanh", {}),
    "sigmoid": ("sigmoid", {}),
    "gelu": ("gelu", {}),
    "gelu_tanh": ("gelu", {"approximate": "tanh"}),
    "silu": ("silu", {}),
    "swish": ("silu", {}),
    "softplus": ("softplus", {}),
    "elu": ("elu", {}),
    "leaky_relu": ("leaky_relu", {}),
}


def _activation_expand(attrs: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    return ACTIVATIONS[attrs["name"]]


register(
    OpDef(
        "activation",
        ("x",),
        (Attr("name", "str", "none", tuple(ACTIVATIONS)),),
        lambda ts, a: [ts[0]],
        lambda xs, a: [xs[0]],
        doc="an activation chosen by name: " + ", ".join(ACTIVATIONS),
        expand=_activation_expand,
        family="nn",
    )
)


def _scalar_of(t: TensorType) -> TensorType:
    return TensorType(t.dtype, ())


def _ce_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    logits, labels = ts
    require_float("cross_entropy", logits)
    if logits.rank != 2 or labels.rank != 1 or not labels.dtype.is_int:
        raise TypeError_(
            f"cross_entropy expects logits [N, C] and integer labels [N], got {logits} and {labels}",
            hint="labels are class ids (i64), not one-hot vectors",
        )
    if not logits.shape[0].compatible(labels.shape[0]):
        raise TypeError_(
            f"cross_entropy: batch sizes differ ({logits.shape[0]} vs {labels.shape[0]}) for {logits} and {labels}"
        )
    return [_scalar_of(logits)]


def _ce_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    z = xs[0].astype(np.float64)
    m = z.max(axis=1, keepdims=True)
    logp = z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))
    return [-np.mean(logp[np.arange(z.shape[0]), xs[1]])]


def _ce_vjp(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
    """``(softmax(z) - onehot(labels)) * g / N``; the labels get no gradient."""
    z, labels = node.inputs
    n, c = z.type.shape
    if not c.is_static:
        raise b.error(f"cannot differentiate cross_entropy over a symbolic number of classes ({z.type})")
    classes = b.op("constant", value=list(range(c.value)), dtype=labels.type.dtype)
    onehot = b.cast(b.op("equal", b.op("unsqueeze", labels, axes=[1]), classes), z.type.dtype)
    scale = b.div(cts[0], b.count([n], z.type.dtype))
    return [b.mul(b.sub(b.op("softmax", z, axis=-1), onehot), scale), None]


def _ce_equal(ts: list[TensorType], a: dict[str, Any]) -> list[tuple[Dim, Dim]]:
    """One label per row of logits."""
    return [(ts[0].shape[0], ts[1].shape[0])] if all(t.rank for t in ts) else []


register(
    OpDef(
        "cross_entropy",
        ("logits", "labels"),
        (),
        _ce_infer,
        _ce_ref,
        doc="mean softmax cross-entropy of logits [N, C] against class ids [N]",
        vjp=_ce_vjp,
        equal_dims=_ce_equal,
        family="loss",
    )
)


def _pair_loss_infer(name: str):  # type: ignore[no-untyped-def]
    def infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
        require_float(name, ts[0])
        same_dtype(name, ts)
        broadcast_shapes(name, ts)
        return [_scalar_of(ts[0])]

    return infer


def _bce_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x, t = (v.astype(np.float64) for v in xs)
    # np.mean gives a numpy scalar, not an array; the callers np.asarray each result
    return [np.mean(np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x))))]  # type: ignore[list-item]


def _per_element(b: GradBuilder, node: Node, g: Value) -> Value:
    """The cotangent of a mean over the broadcast pair: g / (number of elements)."""
    shape = broadcast_shapes(node.op, [v.type for v in node.inputs])
    return b.div(g, b.count(list(shape), node.inputs[0].type.dtype))


def _mse_vjp(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
    x, t = node.inputs
    gx = b.mul(b.sub(x, t), b.scale(_per_element(b, node, cts[0]), 2.0))
    return [gx, b.neg(gx)]


def _bce_vjp(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
    # d/dx = sigmoid(x) - t and d/dt = -x, per element of the mean.
    x, t = node.inputs
    k = _per_element(b, node, cts[0])
    return [b.mul(b.sub(b.op("sigmoid", x), t), k), b.neg(b.mul(x, k))]


register(
    OpDef(
        "mse",
        ("a", "b"),
        (),
        _pair_loss_infer("mse"),
        # np.mean gives a numpy scalar, not an array; the callers np.asarray each result
        lambda xs, a: [np.mean((xs[0].astype(np.float64) - xs[1].astype(np.float64)) ** 2)],  # type: ignore[list-item]
        doc="mean squared error",
        vjp=_mse_vjp,
        equal_dims=broadcast_equal,
        family="loss",
    )
)
register(
    OpDef(
        "bce_with_logits",
        ("logits", "targets"),
        (),
        _pair_loss_infer("bce_with_logits"),
        _bce_ref,
        doc="mean binary cross-entropy on logits, computed stably",
        vjp=_bce_vjp,
        equal_dims=broadcast_equal,
        family="loss",
    )
)


# -- lrn (local response normalization, ONNX LRN) ----------------------------------------------


def lrn_window(size: int) -> tuple[int, int]:
    """Channels before and after ``c`` in LRN's window: ONNX's floor/ceil((size - 1) / 2).

    For an even ``size`` the window reaches one channel further up than down
    (torch's ``local_response_norm`` does the opposite; see docs/conventions.md).
    """
    lo = (size - 1) // 2
    return lo, size - 1 - lo


def _lrn_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x = ts[0]
    if x.rank < 3:
        raise TypeError_(
            f"lrn expects x: [N, C, D1, ...] of rank >= 3, got {x}",
            hint="channels are on axis 1; add a trailing axis with unsqueeze(x, axes=[-1]) for [N, C]",
        )
    require_float("lrn", x)
    if a["size"] < 1:
        raise TypeError_(f"lrn: size={a['size']} must be >= 1", hint="size counts the channels each window sums")
    return [x]


def _lrn_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x = xs[0].astype(np.float64)
    size = a["size"]
    lo, hi = lrn_window(size)
    sq = np.pad(x * x, [(0, 0), (lo, hi)] + [(0, 0)] * (x.ndim - 2))
    c = x.shape[1]
    square_sum = sum(sq[:, k : k + c] for k in range(size))
    return [x / (a["bias"] + a["alpha"] / size * square_sum) ** a["beta"]]


def _channel_window_sum(b: GradBuilder, v: Value, before: int, after: int) -> Value:
    """The sum of ``v`` [N, C, ...] over channels c-before..c+after (zeros outside).

    One channel slice of the zero-padded ``v`` per window cell, added up: pad and
    slice differentiate again over any symbolic dims (a pool's rule wants a static image).
    """
    size = before + after + 1
    if size == 1:
        return v
    padded = b.op("pad", v, pads=[0, 0, before, after] + [0, 0] * (v.type.rank - 2))
    total: Value | None = None
    for k in range(size):
        back = size - 1 - k
        cell = b.op("slice", padded, starts=[k], ends=[-back if back else END], axes=[1], steps=[1])
        total = cell if total is None else b.add(total, cell)
    assert total is not None
    return total


def _lrn_vjp(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
    """y = x d^-beta with d = bias + alpha/size * window_sum(x^2).

    ``dx = g d^-beta - 2 beta alpha/size x * window_sum^T(g y / d)``; the transpose of
    the window sum is the sum over the mirrored window (before and after swapped).
    """
    x, y, g = node.inputs[0], node.outputs[0], cts[0]
    a = node.attrs
    size = a["size"]
    lo, hi = lrn_window(size)
    k = a["alpha"] / size
    d = b.add(b.const(a["bias"], x), b.scale(_channel_window_sum(b, b.mul(x, x), lo, hi), k))
    direct = b.mul(g, b.op("pow", d, b.const(-a["beta"], x)))
    back = _channel_window_sum(b, b.div(b.mul(g, y), d), hi, lo)
    return [b.sub(direct, b.mul(b.scale(x, 2.0 * a["beta"] * k), back))]


register(
    OpDef(
        "lrn",
        ("x",),
        (
            Attr("size", "int"),
            Attr("alpha", "float", 1e-4),
            Attr("beta", "float", 0.75),
            Attr("bias", "float", 1.0),
            _LAYOUT,
        ),
        # layout="NHWC" (rank 4, channels last; made by the layout pass) is the NCHW op with its
        # image and result transposed: the rules below see it through conv's NCHW view.
        _layout_infer("lrn", _lrn_infer),
        _layout_ref(_lrn_ref),
        doc="local response normalization across channels (ONNX LRN): x / (bias + alpha/size * sum of x^2 over "
        "channels c-floor((size-1)/2)..c+ceil((size-1)/2)) ** beta, x [N, C, ...] (NHWC: [N, H, W, C])",
        vjp=lambda b, node, cts: in_nchw(b, node, cts, _lrn_vjp),
        family="nn",
    )
)
