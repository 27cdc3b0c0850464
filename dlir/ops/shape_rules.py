"""Shared pieces of shape/dtype rules: broadcasting, axes, dtype checks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from dlir.errors import TypeError_
from dlir.ir.types import UNKNOWN, Dim, DType, TensorType

_ONE = Dim.of(1)


def broadcast_shapes(op: str, types: Sequence[TensorType]) -> tuple[Dim, ...]:
    """NumPy broadcasting over symbolic dims; names every operand's type on failure."""
    first = types[0].shape if types else ()
    if all(t.shape == first for t in types):
        return first  # equal shapes (most elementwise ops) broadcast to themselves
    rank = max(t.rank for t in types)
    out: list[Dim] = []
    for i in range(rank):
        dims = [t.shape[t.rank - rank + i] for t in types if t.rank - rank + i >= 0]
        known = [d for d in dims if d != _ONE and not d.unknown]
        if known:
            for d in known[1:]:
                if d != known[0]:
                    raise TypeError_(
                        f"{op}: shapes cannot be broadcast: "
                        + " and ".join(str(t) for t in types)
                        + f" (dim {known[0]} vs {d})",
                        hint="broadcasting pairs dims from the right; each pair must be equal or one of them 1",
                    )
            out.append(known[0])
        else:
            out.append(UNKNOWN if any(d.unknown for d in dims) else _ONE)
    return tuple(out)


def broadcast_pairs(shapes: Sequence[tuple[Dim, ...]]) -> Iterator[tuple[Dim, Dim]]:
    """Right-aligned dims that are not 1: NumPy broadcasting needs them equal."""
    rank = max(len(s) for s in shapes)
    for i in range(1, rank + 1):
        dims = [s[-i] for s in shapes if len(s) >= i and s[-i] != _ONE and not s[-i].unknown]
        yield from ((dims[0], d) for d in dims[1:])


def broadcast_equal(types: list[TensorType], attrs: dict[str, Any]) -> list[tuple[Dim, Dim]]:
    """The ``equal_dims`` hook of an op that broadcasts all its inputs together (see OpDef)."""
    return list(broadcast_pairs([t.shape for t in types])) if len(types) >= 2 else []


def same_dtype(op: str, types: Sequence[TensorType]) -> DType:
    dts = {t.dtype for t in types}
    if len(dts) != 1:
        raise TypeError_(
            f"{op}: operand dtypes differ: " + " and ".join(str(t) for t in types),
            hint=f"convert one side with cast(x, {types[0].dtype})",
        )
    return types[0].dtype


def require_float(op: str, t: TensorType) -> None:
    if not t.dtype.is_float:
        raise TypeError_(f"{op} expects a floating-point tensor, got {t}", hint="convert it first with cast(x, f32)")


def require_numeric(op: str, t: TensorType) -> None:
    if t.dtype is DType.bool:
        raise TypeError_(f"{op} expects a numeric tensor, got {t}", hint="convert it first with cast(x, f32)")


def norm_axis(op: str, axis: int, rank: int, what: str = "axis") -> int:
    """Normalise a possibly negative axis for a tensor of ``rank``."""
    if rank == 0 and axis in (0, -1):
        return 0
    if rank > 0 and -rank <= axis < rank:
        return axis % rank
    raise TypeError_(
        f"{op}: {what} {axis} is out of range for a tensor of rank {rank}",
        hint=f"valid axes are {-rank}..{rank - 1}" if rank else "a scalar has no axes",
    )


def norm_axes(op: str, axes: list[int] | None, rank: int) -> list[int]:
    """Normalised, sorted axes; None means every axis. Duplicates are an error."""
    if axes is None:
        return list(range(rank))
    out = [norm_axis(op, a, rank) for a in axes]
    if rank == 0:
        return []  # axis 0 / -1 of a scalar names the scalar itself
    if len(set(out)) != len(out):
        raise TypeError_(f"{op}: axis repeated in {axes}")
    return sorted(out)


def dims_equal_or_fail(op: str, a: Dim, b: Dim, types: Sequence[TensorType], what: str) -> Dim:
    if not a.compatible(b):
        raise TypeError_(
            f"{op}: {what} differ ({a} vs {b}) for " + " and ".join(str(t) for t in types),
        )
    return b if a.unknown else a
