"""The ONNX shape, indexing and reduction handlers (the rest of the op table is :mod:`dlir.importer.onnx_ops`).

Reshape, Flatten, Transpose, Squeeze/Unsqueeze, Concat, Split, Slice, Gather, the
Reduce* ops, ArgMax/ArgMin, Pad and Expand: each maps onto one dlir op, with its axes,
pads and shapes read from inputs known at import.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlir.importer.builder import END, HANDLERS, Builder, Handler, Operand, handles
from dlir.importer.onnx_ops import _dimattr
from dlir.ir.types import Dim


@handles("Reshape")
def _reshape(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x = ins[0]
    target = list(a["shape"]) if b.opset < 5 else b.dims(ins[1], "Reshape's shape")
    shape = b.shape(x)
    dims: list[Any] = []
    for i, d in enumerate(target):
        if isinstance(d, int) and d == 0 and not a.get("allowzero", 0):
            if i >= len(shape):
                raise b.error(f"Reshape: 0 at position {i} copies a dim {b.type_of(x)} does not have")
            dims.append(_dimattr(shape[i]))
        else:
            dims.append(d)
    if any(d == 0 for d in dims if isinstance(d, int)):
        raise b.error("Reshape to a shape with a zero-sized dim is not supported")
    return b.op("reshape", [x], shape=dims)


@handles("Flatten")
def _flatten(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x = ins[0]
    t = b.type_of(x)
    axis = int(a.get("axis", 1))
    axis = axis + t.rank if axis < 0 else axis
    lead, rest = Dim.of(1), Dim.of(1)
    for d in t.shape[:axis]:
        lead = lead * d
    for d in t.shape[axis:]:
        rest = rest * d
    return b.op("reshape", [x], shape=[_dimattr(lead), _dimattr(rest)])


@handles("Transpose")
def _transpose(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    r = b.rank(ins[0])
    perm = list(a.get("perm", list(range(r))[::-1]))
    return b.op("transpose", [ins[0]], perm=perm)


def _axes(b: Builder, ins: list[Operand], a: dict[str, Any], since: int, what: str) -> list[int] | None:
    if b.opset >= since:
        return b.ints(ins[1], f"{what}'s axes") if len(ins) > 1 and ins[1] is not None else None
    return list(a["axes"]) if "axes" in a else None


@handles("Squeeze")
def _squeeze(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    return b.op("squeeze", [ins[0]], axes=_axes(b, ins, a, 13, "Squeeze"))


@handles("Unsqueeze")
def _unsqueeze(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    axes = _axes(b, ins, a, 13, "Unsqueeze")
    if axes is None:
        raise b.error("Unsqueeze needs axes")
    return b.op("unsqueeze", [ins[0]], axes=axes)


@handles("Concat")
def _concat(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    xs = [x for x in ins if x is not None]
    return b.op("concat", xs, axis=int(a.get("axis", 0)))


@handles("Split")
def _split(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x = ins[0]
    t = b.type_of(x)
    axis = int(a.get("axis", 0)) % t.rank
    if b.opset >= 13 and len(ins) > 1 and ins[1] is not None:
        sizes = b.ints(ins[1], "Split's split")
    elif b.opset < 13 and "split" in a:
        sizes = list(a["split"])
    else:
        n = len(b.out_names) if b.opset < 18 else int(a.get("num_outputs", len(b.out_names)))
        d = t.shape[axis]
        if not d.is_static:
            raise b.error(f"Split into equal parts needs a static axis {axis} of {t}")
        per = -(-d.value // n)
        sizes = [per] * (n - 1) + [d.value - per * (n - 1)]
    outs = b.op("split", [x], sizes=sizes, axis=axis)
    return outs if isinstance(outs, list) else [outs]


@handles("Slice")
def _slice(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x = ins[0]
    t = b.type_of(x)
    if b.opset < 10:
        starts, ends = list(a["starts"]), list(a["ends"])
        axes = list(a.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = b.ints(ins[1], "Slice's starts"), b.ints(ins[2], "Slice's ends")
        axes = b.ints(ins[3], "Slice's axes") if len(ins) > 3 and ins[3] is not None else list(range(len(starts)))
        steps = b.ints(ins[4], "Slice's steps") if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
    s2, e2, a2, st2 = [], [], [], []
    for s, e, ax, st in zip(starts, ends, axes, steps, strict=True):
        ax = ax % t.rank
        d = t.shape[ax]
        if st <= 0:
            raise b.error(f"Slice with step {st} is not supported", "dlir slices take positive steps")
        if d.is_static:
            s, e, st = slice(s, e, st).indices(d.value)
            e = max(e, s)
        else:
            if e >= 2**31 - 1:  # INT32_MAX (tf2onnx's "to the end") or more
                e = END
        s2.append(s)
        e2.append(e)
        a2.append(ax)
        st2.append(st)
    if not a2:
        return x
    return b.op("slice", [x], starts=s2, ends=e2, axes=a2, steps=st2)


@handles("Gather")
def _gather(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x, idx = ins
    t = b.type_of(x)
    axis = int(a.get("axis", 0)) % t.rank
    if isinstance(idx, np.ndarray):
        d = t.shape[axis]
        if d.is_static:
            idx = np.where(idx < 0, idx + d.value, idx).astype(idx.dtype)
        elif (idx < 0).any():
            raise b.error("Gather with negative indices on a symbolic axis is not supported")
    return b.op("gather", [x, idx], axis=axis)


def _reduce(dlir_name: str, axes_input_since: int) -> Handler:
    def h(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
        axes = _axes(b, ins, a, axes_input_since, "Reduce")
        keep = bool(a.get("keepdims", 1))
        if axes is not None and len(axes) == 0:
            axes = None
        if axes is None and a.get("noop_with_empty_axes", 0):
            return ins[0]
        shape = b.shape(ins[0])
        picked = range(len(shape)) if axes is None else [ax % max(len(shape), 1) for ax in axes]
        if dlir_name in ("max", "min", "logsumexp") and any(shape[i] == Dim.of(0) for i in picked):
            raise b.error(
                f"{dlir_name} over an empty axis is not supported", "dlir's max/min/logsumexp need at least one element"
            )
        return b.op(dlir_name, [ins[0]], axis=axes, keepdims=keep)

    return h


HANDLERS["ReduceSum"] = _reduce("sum", 13)
for _o, _d in {
    "ReduceMean": "mean",
    "ReduceMax": "max",
    "ReduceMin": "min",
    "ReduceProd": "prod",
    "ReduceLogSumExp": "logsumexp",
}.items():
    HANDLERS[_o] = _reduce(_d, 18)


@handles("ArgMax", "ArgMin")
def _arg(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    name = "argmax" if b.node_op == "ArgMax" else "argmin"
    x, axis, keepdims = ins[0], int(a.get("axis", 0)), bool(a.get("keepdims", 1))
    if not a.get("select_last_index", 0):
        return b.op(name, [x], axis=axis, keepdims=keepdims)
    # The last of tied extremes is the first one of x reversed along the axis, counted from the end.
    n = b.shape(x)[axis % max(b.rank(x), 1)]
    if not n.is_static:
        raise b.error(f"{b.node_op} with select_last_index=1 needs a static size along axis {axis}, got {b.type_of(x)}")
    flipped = b.op("gather", [x, np.arange(n.value - 1, -1, -1, dtype=np.int64)], axis=axis)
    first = b.op(name, [flipped], axis=axis, keepdims=keepdims)
    return b.op("sub", [np.array(n.value - 1, np.int64), first])


@handles("Pad")
def _pad(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "constant":
        raise b.error(f"Pad mode '{mode}' is not supported", "dlir pads with a constant")
    x = ins[0]
    r = b.rank(x)
    if b.opset < 11:
        pads, value = list(a.get("pads", a.get("paddings", []))), float(a.get("value", 0.0))
    else:
        pads = b.ints(ins[1], "Pad's pads")
        value = float(b.known(ins[2], "Pad's value").reshape(-1)[0]) if len(ins) > 2 and ins[2] is not None else 0.0
        if len(ins) > 3 and ins[3] is not None:
            axes = [ax % r for ax in b.ints(ins[3], "Pad's axes")]
            full = [0] * (2 * r)
            for i, ax in enumerate(axes):
                full[ax], full[ax + r] = pads[i], pads[i + len(axes)]
            pads = full
    if any(p < 0 for p in pads):
        raise b.error("Pad with negative pads is not supported")
    inter = [p for i in range(r) for p in (pads[i], pads[i + r])]
    return b.op("pad", [x], pads=inter, value=value)


@handles("Expand")
def _expand(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x = ins[0]
    shape = b.dims(ins[1], "Expand's shape")
    xs = b.shape(x)
    r = max(len(xs), len(shape))
    xs_p = [Dim.of(1)] * (r - len(xs)) + list(xs)
    sh_p = [1] * (r - len(shape)) + shape
    out = [_dimattr(d) if isinstance(s, int) and s == 1 else s for d, s in zip(xs_p, sh_p, strict=True)]
    return b.op("broadcast_to", [x], shape=out)
