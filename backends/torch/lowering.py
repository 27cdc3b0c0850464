"""The torch lowering table: one emitter per dlir op.

An emitter gets a :class:`Site` (one IR node with its inputs already written as
Python expressions) and returns the right-hand side of the node's statement.
Inputs are always atoms (local names or ``self....`` reads), so operators need no
parentheses. Each entry must match the op's numpy reference in
``dlir/ops/*.py`` exactly, dtypes included; where torch differs from numpy the
emitter says why it does more than the obvious call.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
from dlir.backends.codegen import py_num
from dlir.backends.torch.lowering_gather import GATHER_EMITTERS
from dlir.backends.torch.lowering_grad import GRAD_EMITTERS
from dlir.backends.torch.lowering_logic import LOGIC_EMITTERS
from dlir.backends.torch.lowering_nn import NN_EMITTERS
from dlir.backends.torch.site import Emitter, Site, torch_dtype
from dlir.backends.torch.site import tuple_src as _tuple

from dlir.ir.graph import Node
from dlir.ir.types import Dim, DType
from dlir.ops.shape import END
from dlir.ops.shape_rules import norm_axes, norm_axis

# -- elementwise ------------------------------------------------------------------


def call(fn: str, **fixed: str) -> Emitter:
    """``fn(x, ...)`` with the node's inputs as positional arguments."""

    def emit(s: Site) -> str:
        extra = "".join(f", {k}={v}" for k, v in fixed.items())
        return f"{fn}({', '.join(s.args)}{extra})"

    return emit


def infix(op: str) -> Emitter:
    return lambda s: f"{s.args[0]} {op} {s.args[1]}"


def _sign(s: Site) -> str:
    # torch.sign(nan) is 0; numpy (the reference) keeps the NaN.
    if s.in_type.dtype.is_float:
        return f"torch.where(torch.isnan({s.x}), {s.x}, torch.sign({s.x}))"
    return f"torch.sign({s.x})"


def _gelu(s: Site) -> str:
    return f"F.gelu({s.x}, approximate={s.attr('approximate')!r})"


def _int_bound(v: float | None, lower: bool) -> str | None:
    """An int tensor's bound as an int; None where it needs the float path."""
    if v is None or v == (-math.inf if lower else math.inf):
        return "None"
    if not math.isfinite(v):
        return None
    # trunc is monotone, so trunc(clip(x, lo, hi)) == clip(x, trunc(lo), trunc(hi)) for int x:
    # the reference's float64 clip-then-truncate, exactly, without leaving the int dtype.
    return str(math.trunc(v))


def _clip(s: Site) -> str:
    lo, hi = s.attr("min"), s.attr("max")
    if lo is None and hi is None:
        return s.x
    dt = s.in_type.dtype
    if not dt.is_float:
        ilo, ihi = _int_bound(lo, True), _int_bound(hi, False)
        if ilo is not None and ihi is not None:
            if ilo == ihi == "None":
                return s.x
            return f"torch.clamp({s.x}, min={ilo}, max={ihi})"
        to = f".to({torch_dtype(dt)})"
    else:
        to = ""
    bounds = ", ".join(f"{k}={'None' if v is None else py_num(v)}" for k, v in (("min", lo), ("max", hi)))
    return f"torch.clamp({s.x}, {bounds}){to}"


def _div(s: Site) -> str:
    a, b = s.args
    if s.in_type.dtype.is_int:
        # dlir's integer division truncates toward zero; torch's // floors.
        return f'torch.div({a}, {b}, rounding_mode="trunc")'
    return f"{a} / {b}"


def _cast(s: Site) -> str:
    # Float -> int casts truncate toward zero in torch, as in the reference.
    return f"{s.x}.to({torch_dtype(s.attr('dtype'))})"


def _literal(v: Any, as_float: bool) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_literal(x, as_float) for x in v) + "]"
    if hasattr(v, "tolist"):  # numpy scalars and arrays
        return _literal(v.tolist(), as_float)
    # 3.0 for a float constant and 3 for an int one, as a person writes them
    if as_float and isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**53:
        return py_num(float(v))
    if not as_float and isinstance(v, float) and v.is_integer():
        return py_num(int(v))
    return py_num(v)


def _constant(s: Site) -> str:
    dt = s.attr("dtype")
    dev = f", device={s.device}" if s.device else ""
    value = np.asarray(s.attr("value"))
    if value.size > 1 and (value == value.flat[0]).all():
        # One value everywhere (a zero accumulator, say): torch.full, not a literal of every element,
        # which torch would build from a Python list on every call.
        shape = _tuple([str(n) for n in value.shape])
        fill = _literal(value.flat[0], dt.is_float)
        return f"torch.full({shape}, {fill}, dtype={torch_dtype(dt)}{dev})"
    return f"torch.tensor({_literal(s.attr('value'), dt.is_float)}, dtype={torch_dtype(dt)}{dev})"


# Ops whose torch form takes a Python number for either operand with the same
# result as a 0-d tensor of the other operand's dtype.
_SCALAR_OPERAND_OPS = frozenset(
    {"add", "sub", "mul", "pow", "equal", "not_equal", "less", "less_equal", "greater", "greater_equal"}
)
# float32/float64/int: a Python number is exact and computed in the tensor's
# dtype; float16/bfloat16 kernels compute a Python scalar in float32, off the
# reference's rounded constant by an ulp, so those stay tensors.
_SCALAR_DTYPES = (DType.f32, DType.f64, DType.i32, DType.i64)


def scalar_literal(node: Node) -> str | None:
    """A constant node as a plain Python number (``0.5``), if it is a scalar that can be one."""
    dt: DType = node.attrs["dtype"]
    value = node.attrs["value"]
    if dt not in _SCALAR_DTYPES or isinstance(value, (list, tuple)) or cast(int, getattr(value, "ndim", 0)):
        return None
    text = _literal(value, dt.is_float)
    return f"({text})" if text.startswith("-") else text  # -2.0 ** x would negate the power


def takes_scalar(node: Node, index: int) -> bool:
    """Whether input ``index`` of ``node`` may be a Python number (the other operand stays a tensor)."""
    if node.op == "div":
        return node.inputs[0].type.dtype.is_float  # torch.div(2, x, rounding_mode=...) needs a tensor first
    return node.op in _SCALAR_OPERAND_OPS


def _softplus(s: Site) -> str:
    # Above `threshold` torch returns x itself: off by e**-20 ~ 2e-9, visible in
    # float64 only, so float64 moves the switch to where it is exact.
    if s.in_type.dtype is DType.f64:
        return f"F.softplus({s.x}, threshold=40.0)"
    return f"F.softplus({s.x})"


def _dropout(s: Site) -> str:
    # The reference is the identity; so is this in eval mode (the runner's mode),
    # while a user training the module gets real dropout, as PyTorch users expect.
    return f"F.dropout({s.x}, p={py_num(s.attr('p'))}, training=self.training)"


# -- reductions ---------------------------------------------------------------------


def _axes(s: Site) -> list[int]:
    return norm_axes(s.node.op, s.attr("axis"), s.in_type.rank)


def _keep(s: Site) -> str:
    return ", keepdim=True" if s.attr("keepdims") else ""


def _int_dtype(s: Site) -> str:
    # torch widens int32 sums and products to int64; the reference keeps the dtype.
    dt = s.in_type.dtype
    return f", dtype={torch_dtype(dt)}" if dt.is_int else ""


def reduce(fn: str, int_dtype: bool = False) -> Emitter:
    """A multi-axis reduction ``fn(x, dim=(...), keepdim=...)``."""

    def emit(s: Site) -> str:
        axes = _axes(s)
        if not axes:
            return s.x  # numpy reduces over no axes (or a scalar) to itself; torch reads dim=() as "all"
        extra = _int_dtype(s) if int_dtype else ""
        return f"{fn}({s.x}, dim={_tuple([str(a) for a in axes])}{_keep(s)}{extra})"

    return emit


def _prod(s: Site) -> str:
    axes = _axes(s)
    if not axes:
        return s.x
    # torch.prod takes one axis: reduce the highest first so lower indices stay put.
    out = s.x
    for ax in sorted(axes, reverse=True):
        out = f"torch.prod({out}, dim={ax}{_keep(s)}{_int_dtype(s)})"
    return out


def _var(s: Site) -> str:
    axes = _axes(s)
    corr = s.attr("correction")
    if not axes:
        # numpy's var over no axes is the var of each element alone (a size-1 axis).
        return f"torch.var({s.x}.unsqueeze(-1), dim=-1, correction={corr})"
    return f"torch.var({s.x}, dim={_tuple([str(a) for a in axes])}, correction={corr}{_keep(s)})"


def arg_reduce(fn: str) -> Emitter:
    # torch returns the first index of tied extremes, as numpy does.
    return lambda s: f"{fn}({s.x}, dim={s.attr('axis')}{_keep(s)})"


def softmax(fn: str) -> Emitter:
    return lambda s: f"{fn}({s.x}, dim={s.attr('axis')})"


# -- linear algebra and shapes --------------------------------------------------------


def _transpose(s: Site) -> str:
    rank = s.in_type.rank
    perm = s.attr("perm")
    perm = list(reversed(range(rank))) if perm is None else [p % rank for p in perm]
    if rank == 0:
        return s.x
    return f"{s.x}.permute({', '.join(map(str, perm))})"


def _shape_list(s: Site, dims: list[Dim | int]) -> str:
    return ", ".join(s.dim(d) for d in dims)


def _reshape(s: Site) -> str:
    shape = s.attr("shape")
    return f"{s.x}.reshape({_shape_list(s, shape)})" if shape else f"{s.x}.reshape(())"


def _broadcast_to(s: Site) -> str:
    shape = s.attr("shape")
    return f"{s.x}.expand({_shape_list(s, shape)})" if shape else f"{s.x}.expand(())"


def _flatten(s: Site) -> str:
    if s.in_type.rank == 0:
        return f"{s.x}.reshape(1)"
    rank = s.in_type.rank
    start, end = s.attr("start") % rank, s.attr("end") % rank
    tail = "" if end == rank - 1 else f", end_dim={end}"
    return f"torch.flatten({s.x}, start_dim={start}{tail})"


def _list_op(fn: str) -> Emitter:
    return lambda s: f"{fn}([{', '.join(s.args)}], dim={s.attr('axis')})"


def _split(s: Site) -> str:
    sizes = ", ".join(str(n) for n in s.attr("sizes"))
    return f"torch.split({s.x}, [{sizes}], dim={s.attr('axis')})"


def _slice_part(start: int, end: int, step: int) -> str:
    lo = "" if start == 0 else str(start)
    hi = "" if end == END else str(end)
    return f"{lo}:{hi}" + ("" if step == 1 else f":{step}")


def _slice(s: Site) -> str:
    rank = s.in_type.rank
    parts = [":"] * rank
    a = s.node.attrs
    # A later entry for the same axis wins, as in the reference.
    for ax, st, en, step in zip(a["axes"], a["starts"], a["ends"], a["steps"], strict=True):
        parts[ax % rank] = _slice_part(st, en, step)
    while parts and parts[-1] == ":":
        parts.pop()
    return f"{s.x}[{', '.join(parts)}]" if parts else f"{s.x}[:]"


def _squeeze(s: Site) -> str:
    t = s.in_type
    axes = s.attr("axes")
    # axes=None drops the axes the type checker saw as size 1 (the output type),
    # never a symbolic dim that happens to be 1 at run time.
    if axes is None:
        dims = [i for i, d in enumerate(t.shape) if d == Dim.of(1)]
    else:
        dims = norm_axes("squeeze", axes, t.rank)
    if not dims:
        return s.x
    return f"torch.squeeze({s.x}, dim={_tuple([str(d) for d in dims])})"


def _unsqueeze(s: Site) -> str:
    out_rank = s.out_type.rank
    out = s.x
    for ax in norm_axes("unsqueeze", s.attr("axes"), out_rank):
        out = f"{out}.unsqueeze({ax})"
    return out


# -- nn and losses ---------------------------------------------------------------------


def _layer_norm(s: Site) -> str:
    x, g, b = s.args
    t = s.in_type
    ax = norm_axis("layer_norm", s.attr("axis"), t.rank)
    dims = t.shape[ax:]
    if all(d.is_static for d in dims):
        shape = _tuple([str(d.value) for d in dims]) if dims else "()"
    else:
        shape = f"{x}.shape[{ax}:]"
    return f"F.layer_norm({x}, {shape}, {g}, {b}, eps={py_num(s.attr('eps'))})"


def _cross_entropy(s: Site) -> str:
    logits, labels = s.args
    # torch wants int64 class ids.
    if s.node.inputs[1].type.dtype is not DType.i64:
        labels = f"{labels}.long()"
    return f"F.cross_entropy({logits}, {labels})"


def _same_shape(s: Site) -> bool:
    a, b = (v.type for v in s.node.inputs)
    return a.shape == b.shape and not any(d.unknown for d in a.shape)


def _mse(s: Site) -> str:
    a, b = s.args
    if _same_shape(s):
        return f"F.mse_loss({a}, {b})"
    return f"torch.mean(torch.square({a} - {b}))"  # F.mse_loss warns when it broadcasts


def _bce(s: Site) -> str:
    a, b = s.args
    if _same_shape(s):
        return f"F.binary_cross_entropy_with_logits({a}, {b})"
    return f"F.binary_cross_entropy_with_logits(*torch.broadcast_tensors({a}, {b}))"


TORCH_ACTS = {
    "relu": "torch.relu({})",
    "tanh": "torch.tanh({})",
    "sigmoid": "torch.sigmoid({})",
    "silu": "F.silu({})",
    "gelu": "F.gelu({}, approximate='none')",
    "gelu_tanh": "F.gelu({}, approximate='tanh')",
}


def _linear(s: Site) -> str:
    # dlir's w is [K, N]. For a batch of vectors, torch.addmm(b, x, w) / torch.mm read it as
    # it is: F.linear wants [N, K], and with the transposed view w.t() it costs twice as much
    # per call on small layers (13.6 against 5.7 us at [32, 32] @ [32, 64]). Other ranks
    # take F.linear, whose cost there is the same either way.
    if s.in_type.rank == 2:
        x, w = s.x, s.args[1]
        call = f"torch.addmm({s.args[2]}, {x}, {w})" if len(s.args) == 3 else f"torch.mm({x}, {w})"
    else:
        call = f"F.linear({', '.join([s.x, f'{s.args[1]}.t()', *s.args[2:]])})"
    act = s.attr("act")
    return call if act == "none" else TORCH_ACTS[act].format(call)


def _scan(s: Site) -> str:
    raise AssertionError("a scan is a loop of statements, written by codegen.scan_lines")


EMITTERS: dict[str, Emitter] = {
    # elementwise, unary
    "neg": lambda s: f"-{s.x}",
    "abs": call("torch.abs"),
    "exp": call("torch.exp"),
    "log": call("torch.log"),
    "sqrt": call("torch.sqrt"),
    "rsqrt": call("torch.rsqrt"),
    "sin": call("torch.sin"),
    "cos": call("torch.cos"),
    "tanh": call("torch.tanh"),
    "sigmoid": call("torch.sigmoid"),
    "relu": call("torch.relu"),
    "gelu": _gelu,
    "silu": call("F.silu"),
    "softplus": _softplus,
    "erf": call("torch.erf"),
    "floor": call("torch.floor"),
    "ceil": call("torch.ceil"),
    "sign": _sign,
    "leaky_relu": lambda s: f"F.leaky_relu({s.x}, {py_num(s.attr('alpha'))})",
    "elu": lambda s: f"F.elu({s.x}, {py_num(s.attr('alpha'))})",
    "clip": _clip,
    # elementwise, binary
    "add": infix("+"),
    "sub": infix("-"),
    "mul": infix("*"),
    "div": _div,
    "pow": infix("**"),
    "maximum": call("torch.maximum"),
    "minimum": call("torch.minimum"),
    "equal": infix("=="),
    "not_equal": infix("!="),
    "less": infix("<"),
    "less_equal": infix("<="),
    "greater": infix(">"),
    "greater_equal": infix(">="),
    "where": call("torch.where"),
    "cast": _cast,
    "constant": _constant,
    # reductions
    "sum": reduce("torch.sum", int_dtype=True),
    "mean": reduce("torch.mean"),
    "max": reduce("torch.amax"),
    "min": reduce("torch.amin"),
    "prod": _prod,
    "logsumexp": reduce("torch.logsumexp"),
    "var": _var,
    "argmax": arg_reduce("torch.argmax"),
    "argmin": arg_reduce("torch.argmin"),
    "softmax": softmax("torch.softmax"),
    "log_softmax": softmax("torch.log_softmax"),
    # linear algebra
    "matmul": infix("@"),
    "linear": _linear,
    "transpose": _transpose,
    # shapes
    "reshape": _reshape,
    "flatten": _flatten,
    "concat": _list_op("torch.cat"),
    "stack": _list_op("torch.stack"),
    "split": _split,
    "slice": _slice,
    "squeeze": _squeeze,
    "unsqueeze": _unsqueeze,
    "broadcast_to": _broadcast_to,
    # nn
    "layer_norm": _layer_norm,
    "dropout": _dropout,
    "cross_entropy": _cross_entropy,
    "mse": _mse,
    "bce_with_logits": _bce,
    # convolution, pooling, batch norm, padding, indexing
    **NN_EMITTERS,
    # backward kernels (dlir.ops.backward)
    **GRAD_EMITTERS,
    # boolean logic, mod, bitwise (dlir.ops.logic)
    **LOGIC_EMITTERS,
    # gather_elements, scatters, cumsum, topk (dlir.ops.gather_scatter)
    **GATHER_EMITTERS,
    # control flow: in the table so the registry test sees it; codegen writes the loop
    "scan": _scan,
}
