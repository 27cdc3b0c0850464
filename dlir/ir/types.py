"""Types of IR values: a dtype and a shape of (possibly symbolic) dims.

A dim is a polynomial over named symbols with integer coefficients (``B``,
``B*T``, ``T + 2``), or unknown (``?``). Polynomials are enough to follow the
shapes that reshape, concat and slicing produce; division is exact or unknown.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np


class DType(Enum):
    """Element types, named as in the language."""

    f16 = "f16"
    bf16 = "bf16"
    f32 = "f32"
    f64 = "f64"
    i32 = "i32"
    i64 = "i64"
    bool = "bool"
    # Narrow integers, for the masks and indices imported models carry. Not reserved words in
    # the language (DESIGN.md pins those): a type or argument names them like any other name.
    i8 = "i8"
    i16 = "i16"
    u8 = "u8"

    @property
    def is_float(self) -> builtins.bool:
        return self in (DType.f16, DType.bf16, DType.f32, DType.f64)

    @property
    def is_int(self) -> builtins.bool:
        return self in _INTS

    @property
    def is_unsigned(self) -> builtins.bool:
        return self is DType.u8

    @property
    def numpy(self) -> np.dtype[Any]:
        """The numpy dtype (bf16 needs ml_dtypes, which TensorFlow brings)."""
        if self is DType.bf16:
            import ml_dtypes

            bf16: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
            return bf16
        return _NUMPY_DTYPES[self]

    @staticmethod
    def from_numpy(dt: np.dtype) -> DType | None:
        dt = np.dtype(dt)
        for d, n in _NUMPY_NAMES.items():
            if dt == np.dtype(n):
                return d
        if dt.name == "bfloat16":
            return DType.bf16
        return None

    def __str__(self) -> str:
        return self.value

    # Members are singletons compared by identity; Enum's default hash (of the name,
    # in Python) showed up in every shape-rule lookup.
    __hash__ = object.__hash__


_NUMPY_NAMES = {
    DType.f16: "float16",
    DType.f32: "float32",
    DType.f64: "float64",
    DType.i32: "int32",
    DType.i64: "int64",
    DType.bool: "bool",
    DType.i8: "int8",
    DType.i16: "int16",
    DType.u8: "uint8",
}
_INTS = frozenset({DType.i8, DType.i16, DType.i32, DType.i64, DType.u8})

_NUMPY_DTYPES = {d: np.dtype(n) for d, n in _NUMPY_NAMES.items()}  # made once: np.dtype(name) is slow

DTYPE_NAMES = tuple(d.value for d in DType)
# The dtypes the grammar's DTYPE token does not know: the frontend reads them from a NAME.
NAMED_DTYPES = ("i8", "i16", "u8")

Monomial = tuple[str, ...]  # sorted symbol names, repeated for powers


@dataclass(frozen=True)
class Dim:
    """A dimension: a polynomial over symbols, or unknown (``?``)."""

    terms: tuple[tuple[Monomial, int], ...] = ()
    unknown: bool = False

    # -- construction -----------------------------------------------------
    @staticmethod
    def of(x: DimLike) -> Dim:
        if isinstance(x, Dim):
            return x
        if isinstance(x, (bool, np.bool_)):
            raise TypeError("a dim cannot be a bool")
        if isinstance(x, (int, np.integer)):
            n = int(x)
            return Dim((((), n),)) if n else _ZERO  # already normal: skip _make's sort
        if isinstance(x, str):
            if x == "?":
                return UNKNOWN
            return Dim._make({(x,): 1})
        raise TypeError(f"not a dim: {x!r}")

    @staticmethod
    def _make(terms: dict[Monomial, int]) -> Dim:
        kept = tuple(sorted(((m, c) for m, c in terms.items() if c != 0), key=_term_order))
        return Dim(kept)

    # -- queries ------------------------------------------------------------
    @property
    def is_static(self) -> bool:
        # Terms are normal (sorted, merged, no zero coefficient): a constant has at most one.
        return not self.unknown and (not self.terms or (len(self.terms) == 1 and self.terms[0][0] == ()))

    @property
    def value(self) -> int:
        """The integer value of a static dim."""
        assert self.is_static, f"dim {self} is not static"
        return self.terms[0][1] if self.terms else 0

    @property
    def symbols(self) -> set[str]:
        return {s for m, _ in self.terms for s in m}

    def is_symbol(self) -> bool:
        return not self.unknown and len(self.terms) == 1 and len(self.terms[0][0]) == 1 and self.terms[0][1] == 1

    def evaluate(self, env: dict[str, int]) -> int:
        """The dim's value once every symbol has one."""
        assert not self.unknown
        total = 0
        for mono, coef in self.terms:
            v = coef
            for s in mono:
                v *= env[s]
            total += v
        return total

    def compatible(self, other: Dim) -> bool:
        """Whether two dims may be equal (unknown matches anything)."""
        return self.unknown or other.unknown or self == other

    # -- arithmetic -----------------------------------------------------------
    def __add__(self, other: DimLike) -> Dim:
        o = Dim.of(other)
        if self.unknown or o.unknown:
            return UNKNOWN
        acc = dict(self.terms)
        for m, c in o.terms:
            acc[m] = acc.get(m, 0) + c
        return Dim._make(acc)

    def __neg__(self) -> Dim:
        if self.unknown:
            return UNKNOWN
        return Dim._make({m: -c for m, c in self.terms})

    def __sub__(self, other: DimLike) -> Dim:
        return self + (-Dim.of(other))

    def __mul__(self, other: DimLike) -> Dim:
        o = Dim.of(other)
        if self.unknown or o.unknown:
            return UNKNOWN
        acc: dict[Monomial, int] = {}
        for m1, c1 in self.terms:
            for m2, c2 in o.terms:
                m = tuple(sorted(m1 + m2))
                acc[m] = acc.get(m, 0) + c1 * c2
        return Dim._make(acc)

    def exact_div(self, other: DimLike) -> Dim | None:
        """``self / other`` when it divides exactly by a monomial, else None."""
        o = Dim.of(other)
        if self.unknown or o.unknown or len(o.terms) != 1:
            return None
        ((om, oc),) = o.terms
        if oc == 0:
            return None
        acc: dict[Monomial, int] = {}
        for m, c in self.terms:
            rest = list(m)
            for s in om:
                if s not in rest:
                    return None
                rest.remove(s)
            if c % oc:
                return None
            acc[tuple(rest)] = c // oc
        return Dim._make(acc)

    def __str__(self) -> str:
        if self.unknown:
            return "?"
        if not self.terms:
            return "0"
        parts = []
        for i, (mono, coef) in enumerate(self.terms):
            factors = ([str(abs(coef))] if abs(coef) != 1 or not mono else []) + list(mono)
            text = "*".join(factors)
            if i == 0:
                parts.append(("-" if coef < 0 else "") + text)
            else:
                parts.append((" - " if coef < 0 else " + ") + text)
        return "".join(parts)

    __repr__ = __str__


def _term_order(term: tuple[Monomial, int]) -> tuple[int, Monomial]:
    # Highest degree first, constants last: "B*T + 2", "T - 1".
    return (-len(term[0]), term[0])


UNKNOWN = Dim((), unknown=True)
_ZERO = Dim(())
DimLike = Dim | int | str


@dataclass(frozen=True)
class TensorType:
    """dtype + shape; a scalar has shape ()."""

    dtype: DType
    shape: tuple[Dim, ...]

    @staticmethod
    def make(dtype: DType | str, shape: Iterable[DimLike]) -> TensorType:
        dt = dtype if isinstance(dtype, DType) else DType(dtype)
        return TensorType(dt, tuple(Dim.of(d) for d in shape))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(d.is_static for d in self.shape)

    def static_shape(self) -> tuple[int, ...]:
        return tuple(d.value for d in self.shape)

    def with_dtype(self, dtype: DType) -> TensorType:
        return TensorType(dtype, self.shape)

    def with_shape(self, shape: Iterable[DimLike]) -> TensorType:
        return TensorType(self.dtype, tuple(Dim.of(d) for d in shape))

    def numel(self) -> Dim:
        n = Dim.of(1)
        for d in self.shape:
            n = n * d
        return n

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(str(d) for d in self.shape)}]"

    __repr__ = __str__
