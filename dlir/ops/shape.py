"""Shape ops: reshape, flatten, concat, stack, split, slice, squeeze, unsqueeze, broadcast_to.

Shape attributes may hold symbolic dims (``reshape(x, [B, -1])``); the interpreter
and the backends evaluate them from the bound input shapes at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from dlir.errors import TypeError_
from dlir.ir.types import UNKNOWN, Dim, TensorType
from dlir.ops.registry import Attr, OpDef, register
from dlir.ops.shape_rules import broadcast_pairs, broadcast_shapes, norm_axes, norm_axis, same_dtype

if TYPE_CHECKING:
    from dlir.autodiff.builder import GradBuilder
    from dlir.ir.graph import Node, Value

# Slice bound meaning "to the end of the axis" (the ONNX convention).
END = 2**63 - 1


# -- VJP helpers (the rules sit in each op's OpDef below) --------------------------------------


def _reshape_back(b: GradBuilder, g: Value, x: Value) -> Value:
    """``g`` reshaped to ``x``'s shape; one unknown dim of x becomes -1."""
    unknown = [i for i, d in enumerate(x.type.shape) if d.unknown]
    if len(unknown) == 1:
        dims = [-1 if d.unknown else (d.value if d.is_static else d) for d in x.type.shape]
        return b.op("reshape", g, shape=dims)
    return b.op("reshape", g, shape=b.dims(x.type))


def _concat_vjp(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
    """The cotangent cut back into the pieces.

    Static sizes: one ``split``. Symbolic sizes: each piece is a slice when its start
    and end are static counted from the start or the end; failing that, sizes that
    are all multiples of one symbolic dim D (``[3*B, 3*B]``, ``[B, 2*B]``) are split
    on a ``[.., n, D, ..]`` view.
    """
    g = cts[0]
    ax = norm_axis("concat", node.attrs["axis"], g.type.rank)
    sizes = [x.type.shape[ax] for x in node.inputs]
    if len(sizes) == 1:
        return [g]
    if all(d.is_static for d in sizes):
        return list(b.ops("split", [g], sizes=[d.value for d in sizes], axis=ax))
    bounds = [
        (_static_offset(sizes[:i], sizes[i:]), _static_offset(sizes[: i + 1], sizes[i + 1 :]))
        for i in range(len(sizes))
    ]
    if all(s is not None and e is not None for s, e in bounds):
        return [b.op("slice", g, starts=[s], ends=[e], axes=[ax], steps=[1]) for s, e in bounds]
    common = _common_factor(sizes)
    if common is None:
        raise b.error(
            f"cannot differentiate concat along axis {ax} of {', '.join(str(x.type) for x in node.inputs)}: "
            "a piece sits between pieces of symbolic size",
            hint="concat at most one piece of symbolic size between static ones, or pieces whose sizes are "
            "multiples of one dim",
        )
    unit, counts = common
    shape = list(g.type.shape)
    view_shape = shape[:ax] + [Dim.of(sum(counts)), unit] + shape[ax + 1 :]
    view = b.op("reshape", g, shape=b.dims(g.type.with_shape(view_shape)))
    pieces = b.ops("split", [view], sizes=counts, axis=ax)
    return [_reshape_back(b, p, x) for p, x in zip(pieces, node.inputs, strict=True)]


def _common_factor(sizes: list[Dim]) -> tuple[Dim, list[int]] | None:
    """A dim D and ints c_i with sizes[i] = c_i * D, D symbolic; None if there is none."""
    for d in sizes:
        if d.is_static or d.unknown:
            continue
        for k in range(1, 65):
            unit = d.exact_div(k)
            if unit is None:
                continue
            counts = [s.exact_div(unit) for s in sizes]
            if all(c is not None and c.is_static and c.value > 0 for c in counts):
                return unit, [c.value for c in counts if c is not None]
    return None


def _static_offset(before: list[Dim], after: list[Dim]) -> int | None:
    """A position between pieces as a static index from the start, or a negative one from the end."""
    if all(d.is_static for d in before):
        return sum(d.value for d in before)
    if all(d.is_static for d in after):
        back = sum(d.value for d in after)
        return -back if back else END
    return None


def _stack_vjp(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
    ax = norm_axis("stack", node.attrs["axis"], cts[0].type.rank)
    pieces = b.ops("split", [cts[0]], sizes=[1] * len(node.inputs), axis=ax)
    return [b.op("squeeze", p, axes=[ax]) for p in pieces]


def _squeeze_vjp(b: GradBuilder, node: Node, g: Value) -> Value:
    return b.op("unsqueeze", g, axes=node.attrs["axes"]) if node.attrs["axes"] else g


def _unsqueeze_vjp(b: GradBuilder, node: Node, g: Value) -> Value:
    return b.op("squeeze", g, axes=norm_axes("unsqueeze", node.attrs["axes"], g.type.rank))


def _slice_vjp(b: GradBuilder, node: Node, cts: list[Value]) -> list[Value | None]:
    """The cotangent put back in place, zeros around it (and between, for steps > 1), axis by axis."""
    x, g = node.inputs[0], cts[0]
    a = node.attrs
    for ax, s, e, st in zip(a["axes"], a["starts"], a["ends"], a["steps"], strict=True):
        g = unslice_axis(b, g, x.type.shape[ax % x.type.rank], ax % x.type.rank, s, e, st)
    return [g]


def unslice_axis(b: GradBuilder, g: Value, n: Dim, ax: int, start: int, end: int, step: int) -> Value:
    """The transpose of reading ``[start:end:step]`` along ``ax`` of an axis of size ``n``:
    ``g`` put back in place, zeros around it (and between, for steps > 1)."""
    m = g.type.shape[ax]
    if n.is_static:
        picked = range(*slice(start, None if end == END else end, step).indices(n.value))
        if len(picked) == 0:
            return b.zeros(g.type.with_shape(_set(g.type.shape, ax, n)))
        before: Dim = Dim.of(picked[0])
    else:
        before = Dim.of(start) if start >= 0 else n + start
    if m.unknown or n.unknown:
        raise b.error(f"cannot differentiate a slice of an axis of unknown size ({n})")
    if step > 1:
        g = interleave_zeros(b, g, ax, step)
    span = (m - 1) * step + 1
    after = n - before - span
    parts = []
    for size in (before, None, after):
        if size is None:
            parts.append(g)
        elif not (size.is_static and size.value == 0):
            parts.append(b.zeros(g.type.with_shape(_set(g.type.shape, ax, size))))
    return b.op("concat", *parts, axis=ax) if len(parts) > 1 else g


def interleave_zeros(b: GradBuilder, g: Value, ax: int, step: int) -> Value:
    """g's entries along ``ax`` with ``step - 1`` zeros after each but the last."""
    m = g.type.shape[ax]
    col = b.op("unsqueeze", g, axes=[ax + 1])
    pad = b.zeros(col.type.with_shape(_set(col.type.shape, ax + 1, Dim.of(step - 1))))
    wide = b.op("concat", col, pad, axis=ax + 1)
    flat = b.op("reshape", wide, shape=b.dims(g.type.with_shape(_set(g.type.shape, ax, m * step))))
    return b.op("slice", flat, starts=[0], ends=[-(step - 1)], axes=[ax], steps=[1])


def _set(shape: tuple[Dim, ...], ax: int, d: Dim) -> list[Dim]:
    out = list(shape)
    out[ax] = d
    return out


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


def _reshape_equal(ts: list[TensorType], a: dict[str, Any]) -> list[tuple[Dim, Dim]]:
    """The element counts, when no target dim is -1."""
    if any(Dim.of(d) == Dim.of(-1) for d in a["shape"]):
        return []
    target = Dim.of(1)
    for d in a["shape"]:
        target = target * Dim.of(d)
    return [(ts[0].numel(), target)]


register(
    OpDef(
        "reshape",
        ("x",),
        (Attr("shape", "dims"),),
        _reshape_infer,
        lambda xs, a: [np.reshape(xs[0], a["shape"])],
        doc="reshape to a shape (one dim may be -1; symbols allowed)",
        vjp=lambda b, node, cts: [_reshape_back(b, cts[0], node.inputs[0])],
        equal_dims=_reshape_equal,
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
        vjp=lambda b, node, cts: [_reshape_back(b, cts[0], node.inputs[0])],
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


def _join_equal(ts: list[TensorType], axis: Any) -> list[tuple[Dim, Dim]]:
    """Every dim of each joined tensor equals the first tensor's, but concat's ``axis`` (stack: None)."""
    if len({t.rank for t in ts}) != 1 or not ts[0].rank:
        return []
    skip = int(axis) % ts[0].rank if axis is not None else -1
    return [(ts[0].shape[i], t.shape[i]) for t in ts[1:] for i in range(t.rank) if i != skip]


register(
    OpDef(
        "concat",
        ("xs*",),
        (Attr("axis", "int", 0),),
        _concat_infer,
        lambda xs, a: [np.concatenate(xs, axis=a["axis"])],
        doc="join tensors along an existing axis",
        vjp=_concat_vjp,
        equal_dims=lambda ts, a: _join_equal(ts, a.get("axis", 0)),
        family="shape",
    )
)


def _stack_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    if not ts:
        raise TypeError_("stack needs at least one tensor")
    dt = same_dtype("stack", ts)
    shape = list(ts[0].shape)
    for t in ts[1:]:
        if t.rank != len(shape) or any(not d.compatible(e) for d, e in zip(t.shape, shape, strict=True)):
            raise TypeError_(
                "stack: shapes differ: " + " and ".join(str(t) for t in ts), hint="stacked tensors must have one shape"
            )
        shape = [e if not e.unknown else d for d, e in zip(t.shape, shape, strict=True)]
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
        vjp=_stack_vjp,
        equal_dims=lambda ts, a: _join_equal(ts, None),
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
        vjp=lambda b, node, cts: [b.op("concat", *cts, axis=node.attrs["axis"])],
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
    for ax, s, e, st in zip(axes, a["starts"], a["ends"], a["steps"], strict=True):
        if st <= 0:
            raise TypeError_(f"slice: step {st} is not supported", hint="slice steps must be positive")
        shape[ax] = slice_len(t.shape[ax], s, e, st)
    return [t.with_shape(shape)]


def _slice_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x = xs[0]
    idx: list[Any] = [slice(None)] * x.ndim
    for ax, s, e, st in zip(a["axes"], a["starts"], a["ends"], a["steps"], strict=True):
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
        vjp=_slice_vjp,
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
        lambda ts, a: [
            ts[0].with_shape([d for i, d in enumerate(ts[0].shape) if i not in _squeeze_axes(ts[0], a["axes"])])
        ],
        lambda xs, a: [np.squeeze(xs[0], axis=tuple(a["axes"]) if a["axes"] is not None else None)],
        doc="drop axes of size 1 (default: those that are 1 in the type)",
        canonical=_squeeze_canonical,
        vjp=lambda b, node, cts: [_squeeze_vjp(b, node, cts[0])],
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
        vjp=lambda b, node, cts: [_unsqueeze_vjp(b, node, cts[0])],
        family="shape",
    )
)


def _broadcast_to_infer(ts: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    t = ts[0]
    target = t.with_shape([Dim.of(d) for d in a["shape"]])
    if t.rank > target.rank:
        raise TypeError_(f"broadcast_to: cannot broadcast {t} to fewer dims {a['shape']}")
    got = broadcast_shapes("broadcast_to", [t, target])
    if any(not g.compatible(d) for g, d in zip(got, target.shape, strict=True)):
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
        vjp=lambda b, node, cts: [cts[0]],  # the autodiff pass sums it back to x's shape (sum_to)
        equal_dims=lambda ts, a: list(broadcast_pairs([ts[0].shape, tuple(Dim.of(d) for d in a["shape"])])),
        family="shape",
    )
)
