"""The TensorFlow op table: one emitter per dlir op.

An emitter gets the :class:`Ctx` of the function being written and one node, and
returns the Python expression (TensorFlow calls) that computes the node's
result; :mod:`.codegen` assigns it to the node's output name(s), one statement
per node. Each emitter matches the op's numpy reference in ``dlir/ops``: where a
TensorFlow function differs (integer division floors, ``leaky_relu`` is a max,
``squeeze(axis=[])`` drops every size-1 axis, ...) the emitter says why it does
something else. An emitter that computes a rank-4 result channels-last returns
it wrapped in :class:`Nhwc` (conv, pools, see :mod:`.images`). The shape and
indexing emitters are in :mod:`.shapes`, the backward ops' in :mod:`.grads`, ``scan``'s
in :mod:`.scan`; each registers with :func:`_reg` when this module imports it last.

Nothing here imports TensorFlow: emitters only write text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from dlir.backends.codegen import py_num
from dlir.backends.tensorflow import layout

from dlir.errors import LoweringError
from dlir.ir.graph import Node, Value
from dlir.ir.types import Dim, DType, TensorType
from dlir.ops.nn import differs_in_training

TF_DTYPES: dict[DType, str] = {
    DType.f16: "tf.float16",
    DType.bf16: "tf.bfloat16",
    DType.f32: "tf.float32",
    DType.f64: "tf.float64",
    DType.i32: "tf.int32",
    DType.i64: "tf.int64",
    DType.bool: "tf.bool",
    DType.i8: "tf.int8",
    DType.i16: "tf.int16",
    DType.u8: "tf.uint8",
}


class Ctx(Protocol):
    """What an emitter may ask of the code generator."""

    def arg(self, v: Value) -> str:
        """The expression reading value ``v`` (a local name or ``self.<attr>``)."""
        ...

    def dim(self, d: Dim | int, node: Node) -> str:
        """A dim as an expression: an int literal, or symbols read with ``tf.shape``."""
        ...

    def helper(self, name: str) -> str:
        """Ask for a module-level helper function; returns its name."""
        ...

    def nhwc(self, v: Value) -> str:
        """The expression reading rank-4 ``v`` channels-last (transposed once, then reused)."""
        ...

    def prefer_nhwc(self, node: Node, inputs: list[Value]) -> bool:
        """Whether ``node``, which could run either way, should read ``inputs`` channels-last."""
        ...

    def step_function(self, node: Node) -> str:
        """Write ``node.body`` as a local function; returns its name."""
        ...

    def steps_first(self, v: Value) -> bool:
        """Whether ``v``, a scan's emit that later scans read one step at a time, is kept with its
        steps along axis 0 (as the loop collected them) instead of along the scan's axis."""
        ...

    @property
    def training(self) -> bool:
        """Whether this is the training path (``module(x, training=True)``): batch statistics, dropout."""
        ...


class Nhwc(str):
    """An emitter's expression whose result is the node's rank-4 output in NHWC, not NCHW."""


Emitter = Callable[[Ctx, Node], str]
EMITTERS: dict[str, Emitter] = {}

# Ops whose expression is a list of tensors (the statement unpacks it).
SEQUENCE_RESULTS = frozenset({"split", "scan", "topk", "batch_norm_train_grad"})

# Ops whose TensorFlow kernel covers only some of their nodes: the rest lower their decomposition.
KERNEL_FITS: dict[str, Callable[[Node], bool]] = {}


def _reg(*names: str) -> Callable[[Emitter], Emitter]:
    def deco(fn: Emitter) -> Emitter:
        for n in names:
            assert n not in EMITTERS, n
            EMITTERS[n] = fn
        return fn

    return deco


def _template(op: str, text: str) -> None:
    """An op written as a fixed template over its inputs: ``{0}``, ``{1}``..."""

    def emit(ctx: Ctx, node: Node) -> str:
        return text.format(*(ctx.arg(v) for v in node.inputs))

    _reg(op)(emit)


def _xt(node: Node, i: int = 0) -> TensorType:
    return node.inputs[i].type


def _axes_list(axes: list[int] | None) -> str:
    return "None" if axes is None else "[" + ", ".join(str(a) for a in axes) + "]"


def _kd(keepdims: bool) -> str:
    return ", keepdims=True" if keepdims else ""


def _lit(v: Any) -> str:
    """A nested list of numbers as Python source."""
    if isinstance(v, list):
        return "[" + ", ".join(_lit(x) for x in v) + "]"
    return py_num(v)


# -- elementwise: unary ------------------------------------------------------------

for _op, _text in {
    "neg": "tf.negative({0})",
    "abs": "tf.abs({0})",
    "exp": "tf.exp({0})",
    "log": "tf.math.log({0})",
    "sqrt": "tf.sqrt({0})",
    # tf.math.rsqrt may use a fast reciprocal estimate; 1/sqrt is exact to 1 ulp.
    "rsqrt": "1.0 / tf.sqrt({0})",
    "sin": "tf.sin({0})",
    "cos": "tf.cos({0})",
    "tanh": "tf.tanh({0})",
    "sigmoid": "tf.sigmoid({0})",
    "softplus": "tf.math.softplus({0})",
    "erf": "tf.math.erf({0})",
    "floor": "tf.floor({0})",
    "ceil": "tf.math.ceil({0})",
    "sign": "tf.sign({0})",
}.items():
    _template(_op, _text)


def _rounded_once(node: Node, expr: Callable[..., str], *xs: str) -> str:
    """``expr(*xs)``, computed in float32 for a half-precision result and rounded once.

    TF's f16/bf16 kernels for elu (exp, then - 1) and silu (sigmoid, then *) round
    between their steps and land an ulp or more off the correctly rounded result that
    numpy, torch and ONNX give (ONNX's bf16 Celu case misses by 0.004); so do its
    half depthwise conv and the lrn helper's steps (:mod:`.images`).
    """
    dt = node.outputs[0].type.dtype
    if dt not in (DType.f16, DType.bf16):
        return expr(*xs)
    return f"tf.cast({expr(*(f'tf.cast({x}, tf.float32)' for x in xs))}, {TF_DTYPES[dt]})"


@_reg("silu")
def _silu(ctx: Ctx, node: Node) -> str:
    return _rounded_once(node, lambda x: f"tf.nn.silu({x})", ctx.arg(node.inputs[0]))


@_reg("relu")
def _relu(ctx: Ctx, node: Node) -> str:
    return f"tf.nn.relu({ctx.arg(node.inputs[0])})"


@_reg("gelu")
def _gelu(ctx: Ctx, node: Node) -> str:
    # Written out rather than tf.nn.gelu, which rounds its constants (1/sqrt(2),
    # 0.044715) to float32 even for float64 inputs: ~5e-9 off the reference there.
    x = ctx.arg(node.inputs[0])
    if node.attrs["approximate"] == "tanh":
        return f"0.5 * {x} * (1.0 + tf.tanh(0.7978845608028654 * ({x} + 0.044715 * {x} ** 3)))"
    # erfc(-x/sqrt2) == 1 + erf(x/sqrt2), without the cancellation for negative x.
    return f"0.5 * {x} * tf.math.erfc(-{x} * 0.7071067811865476)"


@_reg("leaky_relu")
def _leaky_relu(ctx: Ctx, node: Node) -> str:
    # tf.nn.leaky_relu is max(x, alpha * x) with alpha a float32 attribute: wrong for
    # alpha > 1 and rounded for float64. The reference's own rule has neither problem.
    x, alpha = ctx.arg(node.inputs[0]), node.attrs["alpha"]
    return f"tf.where({x} >= 0, {x}, {py_num(alpha)} * {x})"


@_reg("elu")
def _elu(ctx: Ctx, node: Node) -> str:
    alpha = node.attrs["alpha"]
    if alpha == 1.0:
        return _rounded_once(node, lambda x: f"tf.nn.elu({x})", ctx.arg(node.inputs[0]))
    return _rounded_once(
        node, lambda x: f"tf.where({x} > 0, {x}, {py_num(alpha)} * tf.math.expm1({x}))", ctx.arg(node.inputs[0])
    )


def _int_bound(v: float, dt: DType) -> int:
    # The reference compares an int tensor with a float bound and truncates the
    # result; since truncation is monotone that equals clipping by trunc(bound).
    info = np.iinfo(dt.numpy)
    if np.isinf(v):
        return int(info.max) if v > 0 else int(info.min)
    return int(min(max(int(v), int(info.min)), int(info.max)))


@_reg("clip")
def _clip(ctx: Ctx, node: Node) -> str:
    x, dt = ctx.arg(node.inputs[0]), _xt(node).dtype
    lo, hi = node.attrs["min"], node.attrs["max"]

    def lit(v: float) -> str:
        return str(_int_bound(v, dt)) if dt.is_int else py_num(float(v))

    # max then min, as the reference: with min > max every element becomes max.
    expr = x
    if lo is not None:
        expr = f"tf.maximum({expr}, {lit(lo)})"
    if hi is not None:
        expr = f"tf.minimum({expr}, {lit(hi)})"
    return expr if expr != x else f"tf.identity({x})"


# -- elementwise: binary, comparisons, where, cast, constant -----------------------------

for _op, _text in {
    "sub": "{0} - {1}",
    "mul": "{0} * {1}",
    "pow": "tf.pow({0}, {1})",
    "maximum": "tf.maximum({0}, {1})",
    "minimum": "tf.minimum({0}, {1})",
    "equal": "tf.equal({0}, {1})",
    "not_equal": "tf.not_equal({0}, {1})",
    "less": "tf.less({0}, {1})",
    "less_equal": "tf.less_equal({0}, {1})",
    "greater": "tf.greater({0}, {1})",
    "greater_equal": "tf.greater_equal({0}, {1})",
    "where": "tf.where({0}, {1}, {2})",
}.items():
    _template(_op, _text)


# -- add ------------------------------------------------------------------------------------------


def _bias_as_vector(ctx: Ctx, bias: Value) -> str:
    """A [1, ..., 1, N] operand as [N]: it broadcasts the same against a matmul result of rank >= its own."""
    n = bias.type.shape[-1]
    return f"tf.reshape({ctx.arg(bias)}, [{n.value if n.is_static else -1}])"


@_reg("add")
def _add(ctx: Ctx, node: Node) -> str:
    # Grappler's remapper turns MatMul + AddV2 into a _FusedMatMul whose kernel then rejects a
    # bias that is not 1-D ("bias must be 1-dimensional", oneDNN on): add a row vector as [N].
    a, b = node.inputs
    out_rank = node.outputs[0].type.rank
    for mm, bias in ((a, b), (b, a)):
        t = bias.type
        if (
            mm.producer is not None
            and mm.producer.op in ("matmul", "linear")
            and 2 <= t.rank <= mm.type.rank == out_rank
            and all(d.is_static and d.value == 1 for d in t.shape[:-1])
        ):
            return f"{ctx.arg(mm)} + {_bias_as_vector(ctx, bias)}"
    return f"{ctx.arg(a)} + {ctx.arg(b)}"


@_reg("dropout")
def _dropout(ctx: Ctx, node: Node) -> str:
    # Identity in inference; on the training path TensorFlow's own dropout, as a Keras layer's.
    x = ctx.arg(node.inputs[0])
    if ctx.training and differs_in_training(node):
        return f"tf.nn.dropout({x}, rate={py_num(node.attrs['p'])})"
    return f"tf.identity({x})"


@_reg("div")
def _div(ctx: Ctx, node: Node) -> str:
    a, b = (ctx.arg(v) for v in node.inputs)
    if _xt(node).dtype.is_int:
        # dlir's integer division truncates toward zero; `//` (floordiv) floors.
        return f"tf.truncatediv({a}, {b})"
    return f"{a} / {b}"


@_reg("cast")
def _cast(ctx: Ctx, node: Node) -> str:
    # tf.cast truncates float -> int toward zero, as the reference.
    return f"tf.cast({ctx.arg(node.inputs[0])}, {TF_DTYPES[node.attrs['dtype']]})"


@_reg("constant")
def _constant(ctx: Ctx, node: Node) -> str:
    dt: DType = node.attrs["dtype"]
    arr = np.asarray(node.attrs["value"])
    # Whole floats for an int dtype become ints (tf.constant rejects 3.0 as int64);
    # floats stay float64 here and are rounded once by tf.constant, as numpy does.
    want = np.float64 if dt.is_float else (np.bool_ if dt is DType.bool else np.int64)
    return f"tf.constant({_lit(arr.astype(want).tolist())}, dtype={TF_DTYPES[dt]})"


# -- reductions ------------------------------------------------------------------------

# TensorFlow's CPU kernels sum float32 along a reduction's outer axes less exactly than
# numpy, torch and ONNX Runtime (pairwise): over a batch norm's N*H*W values (25 088 for
# MNIST) ~5e-6 of the result against ~1e-7, enough for a training run's loss curve to
# leave the other targets' within 20 steps. Long (or symbolic-length) float32 sums are
# therefore summed in two stages: float32 over the innermost reduced axes while they hold
# at most PARTIAL_SUM_MAX values (short sums: ~1e-7 of the result), then those partial
# sums in float64, rounded once. Casting all of x to float64 instead (as this did before)
# is as exact and costs 1.5-4x the sum: a whole extra pass over x, and float64 kernels.
WIDE_SUM_FROM = 2048
PARTIAL_SUM_MAX = 1024

_WIDE_HELPERS = {
    "wide_sum": '''def wide_sum(x: tf.Tensor, axis: list[int], inner: list[int], keepdims: bool = False) -> tf.Tensor:
    """The float32 sum of x over ``axis`` as exact as numpy's: float32 over ``inner`` (short
    sums), then those partial sums in float64, rounded once."""
    partial = tf.reduce_sum(x, axis=inner, keepdims=True)
    return tf.cast(tf.reduce_sum(tf.cast(partial, tf.float64), axis=axis, keepdims=keepdims), tf.float32)
''',
    "wide_mean": '''def wide_mean(
    x: tf.Tensor, axis: list[int], inner: list[int], count: int, keepdims: bool = False
) -> tf.Tensor:
    """The float32 mean of x over ``axis``, summed as ``wide_sum`` sums (``count``: the values
    each partial sum over ``inner`` holds)."""
    partial = tf.reduce_sum(x, axis=inner, keepdims=True)
    mean = tf.reduce_mean(tf.cast(partial, tf.float64), axis=axis, keepdims=keepdims) / count
    return tf.cast(mean, tf.float32)
''',
    "wide_variance": '''def wide_variance(
    x: tf.Tensor, axis: list[int], inner: list[int], count: int, keepdims: bool = False
) -> tf.Tensor:
    """The biased float32 variance of x over ``axis``: the mean of the squared distances to the
    (rounded) mean, both means summed as ``wide_sum`` sums."""
    mean = wide_mean(x, axis, inner, count, keepdims=True)
    return wide_mean(tf.math.squared_difference(x, mean), axis, inner, count, keepdims)
''',
}


def _long_f32_sum(node: Node) -> bool:
    t = _xt(node)
    if t.dtype is not DType.f32:
        return False
    dims = [t.shape[a] for a in _norm_axes(node.attrs["axis"], t.rank)]
    return any(not d.is_static for d in dims) or int(np.prod([d.value for d in dims])) >= WIDE_SUM_FROM


def partial_sum_axes(
    t: TensorType, axes: list[int] | None, where: Callable[[int], int] = lambda a: a
) -> tuple[list[int], int]:
    """The reduced axes of ``t`` a wide sum sums first in float32, as the expression reads them
    (``where``: an axis of ``t`` -> the expression's), and how many values each partial sum holds.

    The innermost reduced axes in the expression's order (the cheapest to sum), while they are
    static and hold at most PARTIAL_SUM_MAX values; none (all of x in float64) when the
    innermost alone is longer or symbolic."""
    inner, count = [], 1
    for a in sorted(_norm_axes(axes, t.rank), key=where, reverse=True):
        d = t.shape[a]
        if not d.is_static or count * d.value > PARTIAL_SUM_MAX:
            break
        inner.append(where(a))
        count *= d.value
    return sorted(inner), count


def _summed(ctx: Ctx, kind: str, x: str, node: Node, where: Callable[[int], int] | None = None) -> str:
    """The sum, mean or (biased) variance of ``x`` over ``node``'s axes: a wide one (above) when it
    is long; ``where`` maps the node's axes to the expression's (x channels-last)."""
    where = where or (lambda a: a)
    axis, kd = node.attrs["axis"], node.attrs["keepdims"]
    axes = None if axis is None else sorted(map(where, _norm_axes(axis, _xt(node).rank)))
    if not _long_f32_sum(node):
        fn = {"sum": "tf.reduce_sum", "mean": "tf.reduce_mean", "var": "tf.math.reduce_variance"}[kind]
        return f"{fn}({x}, axis={_axes_list(axes)}{_kd(kd)})"
    inner, count = partial_sum_axes(_xt(node), axis, where)
    fn = ctx.helper(f"wide_{'variance' if kind == 'var' else kind}")
    if kind == "var":
        ctx.helper("wide_mean")
    every = _axes_list(list(range(_xt(node).rank)) if axes is None else axes)
    counted = "" if kind == "sum" else f", {count}"
    return f"{fn}({x}, {every}, {_axes_list(inner)}{counted}{_kd(kd)})"


def _reduced_operand(ctx: Ctx, node: Node) -> tuple[str, Callable[[int], int] | None]:
    """The reduction's x, and where its axes are in that expression: the channels-last copy (and
    the NCHW axis -> NHWC axis map) for a reduction over batch and space of a value the code has
    channels-last, with no transpose back for it; else x itself (None: the axes as they are)."""
    if layout.reduces_either_way(node) and ctx.prefer_nhwc(node, node.inputs[:1]):
        return ctx.nhwc(node.inputs[0]), lambda a: layout.NHWC_AXIS[a % 4]
    return ctx.arg(node.inputs[0]), None


for _op, _fn in {
    "sum": "tf.reduce_sum",
    "mean": "tf.reduce_mean",
    "max": "tf.reduce_max",
    "min": "tf.reduce_min",
    "prod": "tf.reduce_prod",
    "logsumexp": "tf.reduce_logsumexp",
}.items():

    def _reduce(ctx: Ctx, node: Node, fn: str = _fn, op: str = _op) -> str:
        x, nhwc_axis = _reduced_operand(ctx, node)
        if op in ("sum", "mean"):
            return _summed(ctx, op, x, node, nhwc_axis)
        axis = node.attrs["axis"]
        if nhwc_axis is not None and axis is not None:
            axis = sorted(map(nhwc_axis, axis))
        return f"{fn}({x}, axis={_axes_list(axis)}{_kd(node.attrs['keepdims'])})"

    _reg(_op)(_reduce)


def _norm_axes(axes: list[int] | None, rank: int) -> list[int]:
    return list(range(rank)) if axes is None else sorted(a % rank for a in axes) if rank else []


@_reg("var")
def _var(ctx: Ctx, node: Node) -> str:
    t = _xt(node)
    axes, c = node.attrs["axis"], node.attrs["correction"]
    x, nhwc_axis = _reduced_operand(ctx, node)  # (a batch norm's running variance: channels-last)
    where = nhwc_axis or (lambda a: a)  # x's axis a, as the expression x reads it
    base = _summed(ctx, "var", x, node, nhwc_axis)
    if c == 0:
        return base
    # reduce_variance divides by n; the correction wants n - c.
    dims = [t.shape[a] for a in _norm_axes(axes, t.rank)]
    if all(d.is_static for d in dims):
        n = int(np.prod([d.value for d in dims]))
        return f"{base} * {py_num(n / (n - c) if n > c else float('inf'))}"
    n_expr = " * ".join(
        str(d.value) if d.is_static else f"tf.shape({x})[{where(a)}]"
        for a, d in zip(_norm_axes(axes, t.rank), dims, strict=True)
    )
    return f"{base} * tf.cast(({n_expr}) / ({n_expr} - {c}), {TF_DTYPES[t.dtype]})"


@_reg("argmax", "argmin")
def _argminmax(ctx: Ctx, node: Node) -> str:
    ax = node.attrs["axis"] % max(_xt(node).rank, 1)
    # ties go to the first index in TF as in numpy; dlir indices are int64
    expr = f"tf.math.{node.op}({ctx.arg(node.inputs[0])}, axis={ax}, output_type=tf.int64)"
    return f"tf.expand_dims({expr}, {ax})" if node.attrs["keepdims"] else expr


@_reg("softmax", "log_softmax")
def _softmax(ctx: Ctx, node: Node) -> str:
    return f"tf.nn.{node.op}({ctx.arg(node.inputs[0])}, axis={node.attrs['axis']})"


# -- linear algebra ------------------------------------------------------------------------


@_reg("linear")
def _linear(ctx: Ctx, node: Node) -> str:
    x, w = ctx.arg(node.inputs[0]), ctx.arg(node.inputs[1])
    if node.inputs[0].type.rank == 1:
        z = f"tf.squeeze(tf.linalg.matmul(tf.expand_dims({x}, 0), {w}), axis=-2)"
    else:
        z = f"tf.linalg.matmul({x}, {w})"
    if len(node.inputs) == 3:
        z = f"tf.nn.bias_add({z}, {ctx.arg(node.inputs[2])})"
    return fused_act(ctx, node.attrs["act"], z)


def fused_act(ctx: Ctx, act: str, z: str) -> str:
    """A fused activation (``linear``'s and ``conv2d``'s ``act``) applied to expression ``z``."""
    if act == "none":
        return z
    if act in ("gelu", "gelu_tanh"):  # each reads z several times: a helper binds it once
        return f"{ctx.helper({'gelu': 'gelu_erf'}.get(act, act))}({z})"
    acts = {"relu": "tf.nn.relu({})", "tanh": "tf.tanh({})", "sigmoid": "tf.sigmoid({})", "silu": "tf.nn.silu({})"}
    return acts[act].format(z)


@_reg("matmul")
def _matmul(ctx: Ctx, node: Node) -> str:
    a, b = (ctx.arg(v) for v in node.inputs)
    ra, rb = _xt(node, 0).rank, _xt(node, 1).rank
    # tf.linalg.matmul wants rank >= 2; 1-D operands follow numpy (promote, then drop the axis).
    if ra == 1 and rb == 1:
        return f"tf.tensordot({a}, {b}, axes=1)"
    if ra == 1:
        return f"tf.squeeze(tf.linalg.matmul(tf.expand_dims({a}, 0), {b}), axis=-2)"
    if rb == 1:
        return f"tf.squeeze(tf.linalg.matmul({a}, tf.expand_dims({b}, -1)), axis=-1)"
    return f"tf.linalg.matmul({a}, {b})"


@_reg("transpose")
def _transpose(ctx: Ctx, node: Node) -> str:
    r = _xt(node).rank
    perm = node.attrs["perm"]
    perm = list(reversed(range(r))) if perm is None else [p % r for p in perm]
    return f"tf.transpose({ctx.arg(node.inputs[0])}, perm={_axes_list(perm)})"


# -- nn and losses ------------------------------------------------------------------------------


@_reg("layer_norm")
def _layer_norm(ctx: Ctx, node: Node) -> str:
    x, g, b = (ctx.arg(v) for v in node.inputs)
    r = _xt(node).rank
    axes = list(range(node.attrs["axis"] % r, r))
    fn = ctx.helper("layer_norm")
    return f"{fn}({x}, {g}, {b}, axes={_axes_list(axes)}, eps={py_num(node.attrs['eps'])})"


@_reg("cross_entropy")
def _cross_entropy(ctx: Ctx, node: Node) -> str:
    z, y = (ctx.arg(v) for v in node.inputs)
    return f"tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels={y}, logits={z}))"


@_reg("mse")
def _mse(ctx: Ctx, node: Node) -> str:
    a, b = (ctx.arg(v) for v in node.inputs)
    return f"tf.reduce_mean(tf.math.squared_difference({a}, {b}))"


@_reg("bce_with_logits")
def _bce(ctx: Ctx, node: Node) -> str:
    z, t = (ctx.arg(v) for v in node.inputs)
    if _xt(node, 0).shape == _xt(node, 1).shape:
        return f"tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels={t}, logits={z}))"
    # The TF loss wants equal shapes; dlir broadcasts, so write its stable formula out.
    return f"tf.reduce_mean(tf.nn.relu({z}) - {z} * {t} + tf.math.log1p(tf.exp(-tf.abs({z}))))"


# Module-level helpers the generated code may call (name -> source).
HELPERS: dict[str, str] = {
    **_WIDE_HELPERS,
    "layer_norm": '''def layer_norm(
    x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, axes: list[int], eps: float
) -> tf.Tensor:
    """(x - mean) / sqrt(var + eps) * gamma + beta over ``axes`` (biased variance)."""
    # Half-precision inputs are normalised in float32: in float16, x - mean loses
    # the digits that matter whenever the mean is large next to the spread.
    wide = tf.float32 if x.dtype in (tf.float16, tf.bfloat16) else x.dtype
    xw = tf.cast(x, wide)
    centred = xw - tf.reduce_mean(xw, axis=axes, keepdims=True)
    # eps joins the squares before their mean (mean(d**2 + eps) == var + eps): TensorFlow's
    # oneDNN layer-norm fusion matches rsqrt(mean + eps) and then uses eps = 1e-3.
    rstd = tf.math.rsqrt(tf.reduce_mean(tf.square(centred) + eps, axis=axes, keepdims=True))
    y = centred * rstd * tf.cast(gamma, wide) + tf.cast(beta, wide)
    return tf.cast(y, x.dtype)
''',
    # The fused activations of `linear`, written as the unfused ops' emitters write them.
    "gelu_erf": '''def gelu_erf(x: tf.Tensor) -> tf.Tensor:
    """Exact GELU; erfc(-x/sqrt2) == 1 + erf(x/sqrt2) without the cancellation for negative x."""
    return 0.5 * x * tf.math.erfc(-x * 0.7071067811865476)
''',
    "gelu_tanh": '''def gelu_tanh(x: tf.Tensor) -> tf.Tensor:
    """GELU, tanh form."""
    return 0.5 * x * (1.0 + tf.tanh(0.7978845608028654 * (x + 0.044715 * x**3)))
''',
}


def emitter(node: Node) -> Emitter:
    """The emitter for ``node``'s op, or a LoweringError naming the op."""
    try:
        return EMITTERS[node.op]
    except KeyError:
        raise LoweringError(
            f"the tensorflow target cannot lower op '{node.op}'", node.loc, hint="see `dlirc ops`"
        ) from None


# The emitters that live in their own modules register themselves on import.
from dlir.backends.tensorflow import gather_scatter, grads, images, logic, scan, shapes  # noqa: E402,F401  # noqa: E402,F401  (import issue 15's ops)
