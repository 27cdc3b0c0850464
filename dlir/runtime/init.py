"""Seeded parameter initialisation: dlir makes the numbers, every target loads them.

Each param draws from its own generator, seeded by the global seed and a stable
hash of its dotted name, so adding a param does not change the others' values.

Fan-in/fan-out: for a rank-2 weight ``[n_in, n_out]`` (used as ``x @ w``) fan_in
is ``n_in`` and fan_out ``n_out``; for rank > 2 (conv ``[O, I, kh, kw]``) fan_in is
``I*kh*kw`` and fan_out ``O*kh*kw``, as PyTorch; for rank <= 1 both are the size.
"""

from __future__ import annotations

import inspect
import math
import zlib
from typing import Any

import numpy as np

from dlir.errors import TypeError_
from dlir.ir.graph import Graph, Init, Value


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out): [n_in, n_out] of a matrix used as ``x @ w``; I*kh*kw and
    O*kh*kw of a conv kernel [O, I, kh, kw] (as PyTorch); the size at rank <= 1."""
    if len(shape) <= 1:
        n = shape[0] if shape else 1
        return n, n
    if len(shape) == 2:
        return shape[0], shape[1]
    field = math.prod(shape[2:])
    return shape[1] * field, shape[0] * field


def draw(name: str, shape: tuple[int, ...], dtype: Any, kind: str, args: dict[str, float], seed: int) -> np.ndarray:
    """dlir's seeded initial value of the param ``name``.

    Float64 draws from a generator seeded by (seed, crc32(name)), rounded once to
    ``dtype``. The generated torch and tensorflow files carry this same function, so
    they make the numbers every dlir target makes without importing dlir.
    """
    if kind == "zeros":
        return np.zeros(shape, dtype)
    if kind == "ones":
        return np.ones(shape, dtype)
    if kind == "constant":
        return np.full(shape, args.get("value", 0.0)).astype(dtype)
    # Only random kinds make a generator: creating one costs more than drawing a 64x64 weight.
    rng = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])
    fan_in, fan_out = fans(shape)
    if kind == "normal":
        v = rng.normal(args.get("mean", 0.0), args.get("std", 1.0), shape)
    elif kind == "uniform":
        v = rng.uniform(args.get("lo", 0.0), args.get("hi", 1.0), shape)
    elif kind == "glorot_uniform":
        a = math.sqrt(6.0 / (fan_in + fan_out))
        v = rng.uniform(-a, a, shape)
    elif kind == "glorot_normal":
        v = rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), shape)
    elif kind == "he_uniform":
        a = math.sqrt(6.0 / fan_in)
        v = rng.uniform(-a, a, shape)
    elif kind == "he_normal":
        v = rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)
    else:
        raise ValueError(f"unknown init {kind!r}")
    return np.asarray(v).astype(dtype)


def init_value(name: str, shape: tuple[int, ...], dtype: np.dtype, init: Init, seed: int) -> np.ndarray:
    """The initial value of one param (float64 draws, rounded to ``dtype``)."""
    return draw(name, shape, dtype, init.kind, dict(init.args), seed)


def standalone_source() -> str:
    """``fans`` and ``draw`` as source for a generated file (which imports math, zlib and numpy as np)."""
    return inspect.getsource(fans) + "\n\n" + inspect.getsource(draw)


def init_params(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Initial values of every param and buffer of ``graph``, keyed by dotted name."""
    return {p.name: init_param(p, seed) for p in graph.params}


def init_param(p: Value, seed: int) -> np.ndarray:
    if not p.type.is_static:
        raise TypeError_(
            f"param '{p.name}' has a symbolic shape {p.type}", p.loc, hint="param shapes must be known at compile time"
        )
    assert p.init is not None
    return init_value(p.name, p.type.static_shape(), p.type.dtype.numpy, p.init, seed)
