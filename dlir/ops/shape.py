"""Shape ops: reshape, flatten, concat, stack, split, slice, squeeze, unsqueeze, broadcast_to.

Shape attributes may hold symbolic dims (``reshape(x, [B, -1])``); the interpreter
and the backends evaluate them from the bound input shapes at run time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlir.errors import TypeError_
from dlir.ir.types import UNKNOWN, Dim, TensorType
from dlir.ops.registry import Attr, OpDef, register
from dlir.ops.shape_rules import broadcast_shapes, norm_axes, norm_axis, same_dtype

# Slice bound meaning "to the end of the axis" (the ONNX convention).
END = 2**63 - 1


def _reshape_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    t = ts[0]
    target = [Dim.of(d) for d in a["shape"]]
    holes = [i for i, d in enumerate(target) if d == Dim.of(-1)]
    for d in target:
        if d.is_static and d.value < -1 or d == Dim.of(0):
            raise TypeError_(f"reshape: bad target dim {d} in {a['shape']}", hint="dims are positive; one may be -1")
    if len(holes) > 1:
        raise TypeError_(f"reshape: at most one -1 is allowed, got {a['shape']}")
    known = Dim.of(1)
    for i, d in enumerate(target):
        if i not in holes:
            known = known * d
    total = t.numel()
    if holes:
        fill = total.exact_div(known)
        if fill is None:
            if total.is_static and known.is_static:
                raise TypeError_(f"reshape: cannot reshape {t} ({total} elements) to {a['shape']}")
            fill = UNKNOWN
        target[holes[0]] = fill
    elif not total.compatible(known):
        raise TypeError_(
            f"reshape: cannot reshape {t} to {a['shape']}: element counts {total} and {known} differ",
            hint="use -1 for the dim to be inferred",
        )
    return [t.with_shape(target)]


register(
    OpDef(
        "reshape",
        ("x",),
        (Attr("shape", "dims"),),
        _reshape_infer,
        lambda xs, a: [np.reshape(xs[0], a["shape"])],
        doc="reshape to a shape (one dim may be -1; symbols allowed)",
        family="shape",
    )
)


def _flatten_range(op: str, t: TensorType, a: dict[str, Any]) -> tuple[int, int]:
    if t.rank == 0:
        return 0, -1
    s = norm_axis(op, a["start"], t.rank, "start")
    e = norm_axis(op, a["end"], t.rank, "end")
    if e < s:
        raise TypeError_(f"{op}: end axis {a['end']} comes before start axis {a['start']} for {t}")
    return s, e


def _flatten_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    t = ts[0]
    if t.rank == 0:
        return [t.with_shape([1])]
    s, e = _flatten_range("flatten", t, a)
    prod = Dim.of(1)
    for d in t.shape[s : e + 1]:
        prod = prod * d
    return [t.with_shape(list(t.shape[:s]) + [prod] + list(t.shape[e + 1 :]))]


def _flatten_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x = xs[0]
    if x.ndim == 0:
        return [x.reshape(1)]
    s, e = a["start"] % x.ndim, a["end"] % x.ndim
    return [x.reshape(x.shape[:s] + (-1,) + x.shape[e + 1 :])]


register(
    OpDef(
        "flatten",
        ("x",),
        (Attr("start", "int", 1), Attr("end", "int", -1)),
        _flatten_infer,
        _flatten_ref,
        doc="merge axes start..end (default 1..-1) into one, as torch.flatten",
        family="shape",
    )
)


def _concat_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    if not ts:
        raise TypeError_("concat needs at least one tensor")
    dt = same_dtype("concat", ts)
    r = ts[0].rank
    if r == 0:
        raise TypeError_(f"concat needs tensors of rank >= 1, got {ts[0]}", hint="use stack to join scalars")
    if any(t.rank != r for t in ts):
        raise TypeError_("concat: ranks differ: " + " and ".join(str(t) for t in ts))
    ax = norm_axis("concat", a["axis"], r)
    out = list(ts[0].shape)
    out[ax] = Dim.of(0)
    for t in ts:
        for i, d in enumerate(t.shape):
            if i == ax:
                out[ax] = out[ax] + d
            elif not out[i].compatible(d):
                raise TypeError_(
                    f"concat: dim {i} differs ({out[i]} vs {d}) between " + " and ".join(str(t) for t in ts),
                    hint=f"all dims except axis {ax} must match",
                )
            elif out[i].unknown:
                out[i] = d
    return [TensorType(dt, tuple(out))]


register(
    OpDef(
        "concat",
        ("xs*",),
        (Attr("axis", "int", 0),),
        _concat_infer,
        lambda xs, a: [np.concatenate(xs, axis=a["axis"])],
        doc="join tensors along an existing axis",
        family="shape",
    )
)


def _stack_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    if not ts:
        raise TypeError_("stack needs at least one tensor")
    dt = same_dtype("stack", ts)
    shape = list(ts[0].shape)
    for t in ts[1:]:
        if t.rank != len(shape) or any(not d.compatible(e) for d, e in zip(t.shape, shape)):
            raise TypeError_("stack: shapes differ: " + " and ".join(str(t) for t in ts), hint="stacked tensors must have one shape")
        shape = [e if not e.unknown else d for d, e in zip(t.shape, shape)]
    ax = norm_axis("stack", a["axis"], len(shape) + 1)
    out = list(shape)
    out.insert(ax, Dim.of(len(ts)))
    return [TensorType(dt, tuple(out))]


register(
    OpDef(
        "stack",
        ("xs*",),
        (Attr("axis", "int", 0),),
        _stack_infer,
        lambda xs, a: [np.stack(xs, axis=a["axis"])],
        doc="join tensors along a new axis",
        family="shape",
    )
)


def _split_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    t = ts[0]
    if t.rank == 0:
        raise TypeError_(f"split needs a tensor of rank >= 1, got {t}")
    ax = norm_axis("split", a["axis"], t.rank)
    sizes = a["sizes"]
    if not sizes or any(s <= 0 for s in sizes):
        raise TypeError_(f"split: sizes must be positive, got {sizes}")
    total = Dim.of(sum(sizes))
    if not t.shape[ax].compatible(total):
        raise TypeError_(
            f"split: sizes {sizes} add up to {total}, but axis {ax} of {t} is {t.shape[ax]}",
            hint="the sizes must add up to the length of the axis",
        )
    outs = []
    for s in sizes:
        shape = list(t.shape)
        shape[ax] = Dim.of(s)
        outs.append(t.with_shape(shape))
    return outs


def _split_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    cuts = np.cumsum(a["sizes"])[:-1]
    return list(np.split(xs[0], cuts, axis=a["axis"]))


register(
    OpDef(
        "split",
        ("x",),
        (Attr("sizes", "ints"), Attr("axis", "int", 0)),
        _split_infer,
        _split_ref,
        doc="cut into pieces of the given sizes along an axis (one result per piece)",
        family="shape",
    )
)


def slice_len(d: Dim, start: int, end: int, step: int) -> Dim:
    """Length of ``x[start:end:step]`` along a dim, Python semantics; symbolic dims assume in-range bounds."""
    if d.is_static:
        return Dim.of(len(range(*slice(start, None if end == END else end, step).indices(d.value))))
    if d.unknown:
        return UNKNOWN
    s = d + start if start < 0 else Dim.of(start)
    e = d if end == END else (d + end if end < 0 else Dim.of(end))
    span = e - s
    if step == 1:
        return span
    q = span.exact_div(step) or (span + (step - 1)).exact_div(step)
    return q if q is not None else UNKNOWN


def _slice_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    t = ts[0]
    if t.rank == 0:
        raise TypeError_(f"cannot slice a scalar {t}")
    n = len(a["axes"])
    if not (len(a["starts"]) == len(a["ends"]) == len(a["steps"]) == n):
        raise TypeError_("slice: starts, ends, axes and steps must have one entry per sliced axis")
    shape = list(t.shape)
    axes = [norm_axis("slice", ax, t.rank) for ax in a["axes"]]
    if len(set(axes)) != len(axes):
        raise TypeError_(f"slice: axis repeated in {a['axes']}")
    for ax, s, e, st in zip(axes, a["starts"], a["ends"], a["steps"]):
        if st <= 0:
            raise TypeError_(f"slice: step {st} is not supported", hint="slice steps must be positive")
        shape[ax] = slice_len(t.shape[ax], s, e, st)
    return [t.with_shape(shape)]


def _slice_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x = xs[0]
    idx: list[Any] = [slice(None)] * x.ndim
    for ax, s, e, st in zip(a["axes"], a["starts"], a["ends"], a["steps"]):
        idx[ax % x.ndim] = slice(s, None if e == END else e, st)
    return [x[tuple(idx)]]


register(
    OpDef(
        "slice",
        ("x",),
        (Attr("starts", "ints"), Attr("ends", "ints"), Attr("axes", "ints"), Attr("steps", "ints")),
        _slice_infer,
        _slice_ref,
        doc="x[start:end:step] on some axes (Python semantics; `x[a:b]` in the language)",
        family="shape",
    )
)


def _squeeze_axes(t: TensorType, axes: list[int] | None) -> list[int]:
    if axes is None:
        return [i for i, d in enumerate(t.shape) if d == Dim.of(1)]
    out = norm_axes("squeeze", axes, t.rank)
    for i in out:
        if t.shape[i].is_static and t.shape[i].value != 1:
            raise TypeError_(f"squeeze: axis {i} of {t} has size {t.shape[i]}, not 1")
    return out


def _squeeze_canonical(ts: list[TensorType], a: dict[str, Any]) -> dict[str, Any]:
    # axes=None means "the dims that are 1 in the type": fixed at build time, so
    # a symbolic dim that happens to be 1 at run time is never dropped.
    return {**a, "axes": _squeeze_axes(ts[0], a["axes"])}


register(
    OpDef(
        "squeeze",
        ("x",),
        (Attr("axes", "axes?", None),),
        lambda ts, a: [ts[0].with_shape([d for i, d in enumerate(ts[0].shape) if i not in _squeeze_axes(ts[0], a["axes"])])],
        lambda xs, a: [np.squeeze(xs[0], axis=tuple(a["axes"]) if a["axes"] is not None else None)],
        doc="drop axes of size 1 (default: those that are 1 in the type)",
        canonical=_squeeze_canonical,
        family="shape",
    )
)


def _unsqueeze_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    t = ts[0]
    axes = norm_axes("unsqueeze", a["axes"], t.rank + len(a["axes"]))
    shape = list(t.shape)
    for ax in axes:
        shape.insert(ax, Dim.of(1))
    return [t.with_shape(shape)]


register(
    OpDef(
        "unsqueeze",
        ("x",),
        (Attr("axes", "ints"),),
        _unsqueeze_infer,
        lambda xs, a: [np.expand_dims(xs[0], tuple(a["axes"]))],
        doc="insert axes of size 1 at the given output positions",
        family="shape",
    )
)


def _broadcast_to_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    t = ts[0]
    target = t.with_shape([Dim.of(d) for d in a["shape"]])
    if t.rank > target.rank:
        raise TypeError_(f"broadcast_to: cannot broadcast {t} to fewer dims {a['shape']}")
    got = broadcast_shapes("broadcast_to", [t, target])
    if any(not g.compatible(d) for g, d in zip(got, target.shape)):
        raise TypeError_(f"broadcast_to: cannot broadcast {t} to {a['shape']}")
    return [target]


register(
    OpDef(
        "broadcast_to",
        ("x",),
        (Attr("shape", "dims"),),
        _broadcast_to_infer,
        lambda xs, a: [np.broadcast_to(xs[0], a["shape"]).copy()],
        doc="repeat size-1 axes to reach a shape (NumPy rules)",
        family="shape",
    )
)
