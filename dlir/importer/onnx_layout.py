"""ONNX ops that move or select elements, written with dlir's reshape, transpose, comparisons and where.

SpaceToDepth/DepthToSpace are the reshape-transpose-reshape of their spec; Tile interleaves
size-1 axes and broadcasts; OneHot and Hardmax compare class ids with a constant
``arange`` laid along the class axis, so an id outside ``[0, depth)`` matches nothing, as
ONNX says; EyeLike only needs its input's (static) shape, so it folds to a constant.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlir.importer.builder import Builder, Operand, handles
from dlir.importer.onnx_import import DTYPES_TEXT, ONNX_DTYPES, ONNX_TYPE_NAMES
from dlir.importer.onnx_ops import _dimattr
from dlir.ir.types import Dim, DType


def _mode(b: Builder, a: dict[str, Any]) -> str:
    m = a.get("mode", b"DCR")
    m = m.decode() if isinstance(m, bytes) else str(m)
    if m not in ("DCR", "CRD"):
        raise b.error(f"{b.node_op}: unknown mode '{m}'", "ONNX defines DCR and CRD")
    return m


def _nchw_static(b: Builder, x: Operand) -> tuple[Any, int, int, int]:
    t = b.type_of(x)
    if t.rank != 4 or not all(d.is_static for d in t.shape[1:]):
        raise b.error(f"{b.node_op}: needs an [N, C, H, W] input with static C, H and W, got {t}")
    n, c, h, w = t.shape
    return _dimattr(n), c.value, h.value, w.value


@handles("SpaceToDepth")
def _space_to_depth(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    k = int(a["blocksize"])
    n, c, h, w = _nchw_static(b, ins[0])
    if h % k or w % k:
        raise b.error(f"SpaceToDepth: height {h} and width {w} must be multiples of blocksize {k}")
    x = b.op("reshape", [ins[0]], shape=[n, c, h // k, k, w // k, k])
    perm = [0, 3, 5, 1, 2, 4] if _mode(b, a) == "DCR" else [0, 1, 3, 5, 2, 4]
    return b.op("reshape", [b.op("transpose", [x], perm=perm)], shape=[n, c * k * k, h // k, w // k])


@handles("DepthToSpace")
def _depth_to_space(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    k = int(a["blocksize"])
    n, c, h, w = _nchw_static(b, ins[0])
    if c % (k * k):
        raise b.error(f"DepthToSpace: channels {c} must be a multiple of blocksize^2 = {k * k}")
    if _mode(b, a) == "DCR":
        x, perm = b.op("reshape", [ins[0]], shape=[n, k, k, c // (k * k), h, w]), [0, 3, 4, 1, 5, 2]
    else:
        x, perm = b.op("reshape", [ins[0]], shape=[n, c // (k * k), k, k, h, w]), [0, 1, 4, 2, 5, 3]
    return b.op("reshape", [b.op("transpose", [x], perm=perm)], shape=[n, c // (k * k), h * k, w * k])


@handles("Tile")
def _tile(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x = ins[0]
    reps = b.ints(ins[1], "Tile's repeats")
    if len(reps) != b.rank(x) or any(r < 1 for r in reps):
        raise b.error(f"Tile: repeats {reps} must be one positive count per axis of {b.type_of(x)}")
    # One axis at a time, [.., d, ..] -> [.., 1, d, ..] -> broadcast [.., r, d, ..] -> [.., r*d, ..]: whole
    # copies in order. Interleaving every axis at once doubles the rank, past what TF's broadcast takes.
    for ax, r in enumerate(reps):
        if r == 1:
            continue
        shape = b.shape(x)
        dims = [_dimattr(d) for d in shape]
        y = b.op("reshape", [x], shape=dims[:ax] + [1] + dims[ax:])
        y = b.op("broadcast_to", [y], shape=dims[:ax] + [r] + dims[ax:])
        x = b.op("reshape", [y], shape=dims[:ax] + [_dimattr(shape[ax] * r)] + dims[ax + 1 :])
    return x


def _iota_along(n: int, axis: int, rank: int) -> np.ndarray:
    """0..n-1 laid along ``axis`` of a rank-``rank`` array of ones elsewhere."""
    shape = [1] * rank
    shape[axis] = n
    return np.arange(n, dtype=np.int64).reshape(shape)


@handles("OneHot")
def _one_hot(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    idx, values = ins[0], ins[2]
    depth = b.known(ins[1], "OneHot's depth").reshape(-1)
    n = int(depth[0])
    r = b.rank(idx)
    axis = int(a.get("axis", -1))
    axis = axis + r + 1 if axis < 0 else axis
    if not 0 <= axis <= r:
        raise b.error(f"OneHot: axis {a.get('axis')} is out of range for indices of rank {r}")
    if b.type_of(idx).dtype is not DType.i64:  # ONNX takes ids of any numeric type (floats truncated)
        idx = b.op("cast", [idx], dtype=DType.i64)
    zero = np.array(0, np.int64)
    idx = b.op("where", [b.op("less", [idx, zero]), b.op("add", [idx, np.array(n, np.int64)]), idx])
    hit = b.op("equal", [b.op("unsqueeze", [idx], axes=[axis]), _iota_along(n, axis, r + 1)])
    off = b.op("gather", [values, zero], axis=0)
    on = b.op("gather", [values, np.array(1, np.int64)], axis=0)
    return b.op("where", [hit, on, off])


@handles("Hardmax")
def _hardmax(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x = ins[0]
    t = b.type_of(x)
    if b.opset < 13:  # before 13, Hardmax flattens to 2-D around axis (as Softmax did)
        axis = int(a.get("axis", 1)) % max(t.rank, 1)
        lead, rest = Dim.of(1), Dim.of(1)
        for d in t.shape[:axis]:
            lead = lead * d
        for d in t.shape[axis:]:
            rest = rest * d
        flat = b.op("reshape", [x], shape=[_dimattr(lead), _dimattr(rest)])
        return b.op("reshape", [_hardmax_along(b, flat, 1)], shape=[_dimattr(d) for d in t.shape])
    return _hardmax_along(b, x, int(a.get("axis", -1)) % max(t.rank, 1))


def _hardmax_along(b: Builder, x: Operand, axis: int) -> Any:
    t = b.type_of(x)
    n = t.shape[axis]
    if not n.is_static:
        raise b.error(f"Hardmax needs a static size along axis {axis}, got {t}")
    first = b.op("argmax", [x], axis=axis, keepdims=True)  # the first of tied maxima, as ONNX
    return b.op("cast", [b.op("equal", [first, _iota_along(n.value, axis, t.rank)])], dtype=t.dtype)


@handles("EyeLike")
def _eye_like(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    t = b.type_of(ins[0])
    if t.rank != 2 or not all(d.is_static for d in t.shape):
        raise b.error(f"EyeLike needs a 2-D input of static shape, got {t}")
    to = int(a["dtype"]) if "dtype" in a else None
    if to is not None and to not in ONNX_DTYPES:
        raise b.error(f"EyeLike with dtype {ONNX_TYPE_NAMES.get(to, to)} is not supported", DTYPES_TEXT)
    dt = ONNX_DTYPES[to] if to is not None else t.dtype
    rows, cols = (d.value for d in t.shape)
    return np.eye(rows, cols, k=int(a.get("k", 0)), dtype=dt.numpy)
