"""ONNX ``Resize`` (and the older ``Upsample``) as gathers along each resized axis.

Resizing is separable: along each axis whose size changes, every output position reads a
few input positions (taps) with fixed weights, all known at import because the sizes are
static. So an axis becomes ``gather(x, idx_k, axis)`` per tap, weighted and summed: one
gather for ``nearest`` (exact: no arithmetic on the values), two for ``linear``, four for
``cubic``. No new op: every target runs gathers, and the VJP comes with them.

The tap positions and weights follow ONNX Runtime's kernels (what every exporter is checked
against): the source coordinate from ``coordinate_transformation_mode``, computed in float32
as ORT does; ``nearest_mode`` rounds it and clamps into the image; ``linear`` clamps the
coordinate into ``[0, n-1]`` and blends its two neighbours; ``cubic`` reads the four
neighbours with edge padding (``cubic_coeff_a``; ``exclude_outside`` drops taps off the edge
and renormalises). Opsets 7..10 (``Upsample``, ``Resize``-10) are asymmetric, and their nearest
rounding floors when enlarging and rounds up when shrinking, as ORT's.

Refused with the node named: resized axes of symbolic size, ``tf_crop_and_resize``,
``antialias``, a ``keep_aspect_ratio_policy`` other than ``stretch``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlir.importer.builder import Builder, Operand, handles

MODES = ("nearest", "linear", "cubic")
TRANSFORMS = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric")
NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@handles("Resize", "Upsample")
def _resize(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    x = ins[0]
    rank = b.rank(x)
    legacy = b.node_op == "Upsample" or b.opset < 11
    scales, sizes = _scales_and_sizes(b, ins, a, legacy)
    axes = [int(v) % rank for v in a.get("axes", range(rank))]
    mode = _text(a.get("mode", "nearest")).lower()
    if mode == "bilinear":  # Upsample-7's name for it
        mode = "linear"
    if mode not in MODES:
        raise b.error(f"{b.node_op}: unknown mode '{mode}'", "nearest, linear or cubic")
    transform = "asymmetric" if legacy else _text(a.get("coordinate_transformation_mode", "half_pixel"))
    nearest = "legacy" if legacy else _text(a.get("nearest_mode", "round_prefer_floor"))
    if transform not in TRANSFORMS:
        raise b.error(
            f"{b.node_op}: coordinate_transformation_mode '{transform}' is not supported",
            "dlir imports " + ", ".join(TRANSFORMS),
        )
    if nearest not in (*NEAREST, "legacy"):
        raise b.error(f"{b.node_op}: unknown nearest_mode '{nearest}'")
    if int(a.get("antialias", 0)):
        raise b.error(f"{b.node_op}: antialias=1 is not supported", "export with antialias off")
    policy = _text(a.get("keep_aspect_ratio_policy", "stretch"))
    if policy != "stretch" and sizes is not None:
        raise b.error(f"{b.node_op}: keep_aspect_ratio_policy '{policy}' is not supported", "stretch is")
    shape = b.shape(x)
    for i, axis in enumerate(axes):
        n = shape[axis]
        if sizes is not None:
            out = sizes[i]
            if not isinstance(out, int):  # a symbolic dim passed through (Shape of x): that axis stays
                if out != n:
                    raise b.error(f"{b.node_op}: cannot resize axis {axis} of {b.type_of(x)} to {out}")
                continue
        if n.is_static and sizes is not None:
            scale = np.float32(out) / np.float32(n.value)
        else:
            scale = np.float32(scales[i]) if scales is not None else np.float32(1.0)
        if scale == 1.0 and (sizes is None or (n.is_static and out == n.value)):
            continue  # every transform maps i to i at scale 1
        if not n.is_static:
            raise b.error(
                f"{b.node_op}: axis {axis} of {b.type_of(x)} has a symbolic size; dlir resizes static sizes",
                "export the model with a static image size",
            )
        if sizes is None:
            out = int(np.floor(np.float32(n.value) * scale))
        taps = _taps(n.value, out, scale, mode, transform, nearest, a)
        x = _apply(b, x, axis, taps)
    return x


def _scales_and_sizes(
    b: Builder, ins: list[Operand], a: dict[str, Any], legacy: bool
) -> tuple[list[float] | None, list[Any] | None]:
    """The node's scales or its sizes (one of them), by opset."""
    if b.node_op == "Upsample" and "scales" in a:  # Upsample-7: an attribute
        return [float(s) for s in a["scales"]], None
    if legacy:
        return [float(s) for s in b.known(ins[1], f"{b.node_op}'s scales").reshape(-1)], None
    scales = ins[2] if len(ins) > 2 else None
    sizes = ins[3] if len(ins) > 3 else None
    if scales is not None and b.known(scales, "Resize's scales").size > 0:
        return [float(s) for s in b.known(scales, "Resize's scales").reshape(-1)], None
    if sizes is None:
        raise b.error("Resize needs scales or sizes")
    return None, b.dims(sizes, "Resize's sizes")


def _source(i: np.ndarray, n: int, out: int, scale: np.float32, transform: str) -> np.ndarray:
    """The input coordinate each output index ``i`` reads, in float32 (ORT's arithmetic)."""
    f = np.float32
    i = i.astype(f)
    if transform == "asymmetric":
        return i / scale
    if transform == "align_corners":
        return np.zeros_like(i) if out == 1 else i * f(n - 1) / f(out - 1)
    if transform == "pytorch_half_pixel":
        return (i + f(0.5)) / scale - f(0.5) if out > 1 else np.zeros_like(i)
    if transform == "half_pixel_symmetric":  # ORT adds the offset in double precision
        adjustment = f(out) / (scale * f(n))
        offset = f(n) / f(2) * (f(1) - adjustment)
        return (np.float64(offset) + (i.astype(np.float64) + 0.5) / np.float64(scale) - 0.5).astype(f)
    return (i + f(0.5)) / scale - f(0.5)  # half_pixel


def _taps(
    n: int, out: int, scale: np.float32, mode: str, transform: str, nearest: str, a: dict[str, Any]
) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(indices [out], weights [out] or None for 1) of each tap along one axis."""
    x = _source(np.arange(out), n, out, scale, transform)
    if mode == "nearest":
        return [(np.clip(_round(x, nearest, scale), 0, n - 1).astype(np.int64), None)]
    if mode == "linear":
        x = np.clip(x, 0, n - 1)
        lo = np.floor(x).astype(np.int64)
        hi = np.minimum(lo + 1, n - 1)
        w_hi = (x - lo).astype(np.float64)
        return [(lo, 1.0 - w_hi), (hi, w_hi)]
    return _cubic(x, n, float(a.get("cubic_coeff_a", -0.75)), bool(a.get("exclude_outside", 0)))


def _round(x: np.ndarray, nearest: str, scale: np.float32) -> np.ndarray:
    if nearest == "floor":
        return np.floor(x)
    if nearest == "ceil":
        return np.ceil(x)
    if nearest == "legacy":  # ORT's "simple" rounding of opsets 7..10
        return np.ceil(x) if scale < 1 else np.floor(x)
    half = x == np.floor(x) + np.float32(0.5)
    if nearest == "round_prefer_floor":
        return np.where(half, np.floor(x), np.round(x))
    return np.where(half, np.ceil(x), np.round(x))


def _cubic(x: np.ndarray, n: int, coeff_a: float, exclude_outside: bool) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Keys' cubic convolution over the neighbours floor(x)-1 .. floor(x)+2, edges padded."""
    base = np.floor(x).astype(np.int64)
    t = (x - base).astype(np.float64)
    aa = coeff_a

    def kernel(d: np.ndarray) -> np.ndarray:
        d = np.abs(d)
        near = ((aa + 2) * d - (aa + 3)) * d * d + 1
        far = ((aa * d - 5 * aa) * d + 8 * aa) * d - 4 * aa
        return np.where(d <= 1, near, np.where(d < 2, far, 0.0))

    idx = [base + k for k in (-1, 0, 1, 2)]
    ws = [kernel(t - k) for k in (-1, 0, 1, 2)]
    if exclude_outside:
        ws = [np.where((i >= 0) & (i < n), w, 0.0) for i, w in zip(idx, ws, strict=True)]
        total = sum(ws)
        ws = [w / total for w in ws]
    return [(np.clip(i, 0, n - 1), w) for i, w in zip(idx, ws, strict=True)]


def _apply(b: Builder, x: Operand, axis: int, taps: list[tuple[np.ndarray, np.ndarray | None]]) -> Operand:
    """sum_k gather(x, idx_k, axis) * w_k, the weights broadcast along ``axis``."""
    rank = b.rank(x)
    dt = b.type_of(x).dtype.numpy
    acc: Operand = None
    for idx, w in taps:
        y = b.op("gather", [x, idx], axis=axis)
        if w is not None:
            y = b.op("mul", [y, w.astype(dt).reshape([-1] + [1] * (rank - 1 - axis))])
        acc = y if acc is None else b.op("add", [acc, y])
    return acc
