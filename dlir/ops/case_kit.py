"""What the per-op cases are made of, and how they are built, fed, judged and grouped.

:mod:`dlir.ops.cases` holds the table itself (every :class:`Case` row); this module
has the pieces the rows are written with (input generators, :func:`inp`), the
record (:class:`Case`), and what the agreement tests and ``dlirc doctor`` do with
a case: :func:`build_case` makes a one-node graph, :func:`build_suites` puts many
in one graph, :func:`make_feeds` draws a case's inputs for one binding and
:func:`compare` judges a result against the reference.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlir.ir.builder import emit
from dlir.ir.graph import Graph, Value
from dlir.ir.types import DimLike, DType, TensorType
from dlir.ops.registry import get_op

# -- input generators -------------------------------------------------------------

Gen = Callable[[np.random.Generator, tuple[int, ...], np.dtype[Any]], np.ndarray]


def floats(lo: float = -3.0, hi: float = 3.0) -> Gen:
    """Uniform floats in [lo, hi)."""
    return lambda rng, shape, dt: rng.uniform(lo, hi, shape).astype(dt)


def away_from_zero(lo: float = 0.5, hi: float = 3.0) -> Gen:
    """Floats with |x| in [lo, hi) and a random sign (safe divisors)."""

    def gen(rng: np.random.Generator, shape: tuple[int, ...], dt: np.dtype) -> np.ndarray:
        sign = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
        return (sign * rng.uniform(lo, hi, shape)).astype(dt)

    return gen


def ints(lo: int = -9, hi: int = 9, nonzero: bool = False) -> Gen:
    """Integers in [lo, hi] (negatives included by default); ``nonzero`` for divisors."""

    def gen(rng: np.random.Generator, shape: tuple[int, ...], dt: np.dtype) -> np.ndarray:
        x = rng.integers(lo, hi + 1, shape)
        if nonzero:
            x = np.where(x == 0, hi, x)
        return x.astype(dt)

    return gen


def choice(*values: float) -> Gen:
    """Draws from a few values, so ties and equalities really occur."""
    return lambda rng, shape, dt: rng.choice(np.asarray(values, np.float64), shape).astype(dt)


def bools() -> Gen:
    return lambda rng, shape, dt: rng.random(shape) < 0.5


def labels(n_classes: int) -> Gen:
    """Class ids in range for cross_entropy."""
    return ints(0, n_classes - 1)


TIES = choice(-1.0, 0.0, 0.5, 2.0)

# -- the case record -----------------------------------------------------------------


@dataclass(frozen=True)
class Input:
    """One graph input: its declared type and how to draw its values."""

    type: TensorType
    gen: Gen


def inp(dtype: str, dims: Sequence[DimLike], gen: Gen | None = None) -> Input:
    """An input of ``dtype[dims]``; values default to ±3 floats, ±9 ints or random bools."""
    t = TensorType.make(dtype, dims)
    if gen is None:
        gen = floats() if t.dtype.is_float else bools() if t.dtype is DType.bool else ints()
    return Input(t, gen)


DEFAULT_BINDINGS: tuple[dict[str, int], ...] = ({"B": 2, "T": 3}, {"B": 5, "T": 4})


@dataclass(frozen=True, eq=False)
class Case:
    """One op application to test on every target."""

    op: str
    label: str
    inputs: tuple[Input, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    bindings: tuple[dict[str, int], ...] = DEFAULT_BINDINGS
    # Builds the op itself from the graph inputs, for ops the plain builder cannot make (scan).
    build: Callable[[Graph, list[Value]], list[Value]] | None = None

    @property
    def id(self) -> str:
        return f"{self.op}-{self.label}"

    def __repr__(self) -> str:
        return self.id


# -- building -------------------------------------------------------------------------


def input_names(case_: Case) -> list[str]:
    """The op's own argument names (``xs0, xs1, ...`` for a variadic list)."""
    names = get_op(case_.op).inputs
    if names and names[-1].endswith("*"):
        return [f"{names[-1][:-1]}{i}" for i in range(len(case_.inputs))]
    return list(names)


def build_case(case_: Case) -> tuple[Graph, dict[str, np.ndarray]]:
    """A one-node graph (inputs as graph inputs) and feeds for the first binding."""
    g = Graph("OpCase")
    # (a case may leave out an op's trailing optional inputs)
    args: list[Value] = [g.add_input(n, i.type) for n, i in zip(input_names(case_), case_.inputs, strict=False)]
    outs = case_.build(g, args) if case_.build is not None else emit(g, case_.op, args, dict(case_.attrs))
    for k, v in enumerate(outs):
        g.outputs.append(("out" if len(outs) == 1 else f"out{k}", v))
    return g, make_feeds(case_, case_.bindings[0], 0)


def make_feeds(case_: Case, env: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    """Input values for one symbol binding; the same case and seed give the same numbers."""
    rng = np.random.default_rng([zlib.crc32(case_.id.encode()), seed])
    feeds = {}
    for name, i in zip(input_names(case_), case_.inputs, strict=False):  # optional inputs may be left out
        shape = concrete_shape(i.type, env)
        feeds[name] = np.asarray(i.gen(rng, shape, i.type.dtype.numpy)).astype(i.type.dtype.numpy).reshape(shape)
    return feeds


def concrete_shape(t: TensorType, env: dict[str, int]) -> tuple[int, ...]:
    return tuple(d.evaluate(env) for d in t.shape)


# -- judging a result ---------------------------------------------------------------------

# float32 within 1e-5 and float64 within 1e-10 (absolute plus relative); every other dtype
# exactly: half precision is computed wide and rounded once, as the reference does.
TOLERANCE = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}


def compare(got: np.ndarray, want: np.ndarray) -> str | None:
    """Why ``got`` is not the reference result ``want`` (dtype, shape, values), or None when it is."""
    if got.dtype != want.dtype:
        return f"dtype {got.dtype}, reference {want.dtype}"
    if got.shape != want.shape:
        return f"shape {got.shape}, reference {want.shape}"
    tol = TOLERANCE.get(want.dtype)
    if tol is None:
        bad = np.flatnonzero(got != want)
        if bad.size:
            i = bad[0]
            first = f"first at flat index {i}: {got.flat[i]} vs {want.flat[i]} (reference)"
            return f"{bad.size} of {want.size} values differ, {first}"
        return None
    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    with np.errstate(invalid="ignore"):
        close = (err <= tol + tol * np.abs(want.astype(np.float64))) | (got == want) | (np.isnan(got) & np.isnan(want))
    if np.all(close):
        return None
    i = int(np.argmax(np.where(close, 0.0, err)))
    rel = err.flat[i] / max(abs(float(want.flat[i])), 1e-300)
    return (
        f"{np.count_nonzero(~close)} of {want.size} values off by more than {tol}; "
        f"max abs err {np.nanmax(err):.3g}, worst {got.flat[i]} vs {want.flat[i]} (reference; rel {rel:.3g})"
    )


def scaled_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / (1 + |want|) over the finite float values (0 for other dtypes)."""
    if want.dtype.kind != "f" and str(want.dtype) != "bfloat16" or got.shape != want.shape or not want.size:
        return 0.0
    g, w = got.astype(np.float64), want.astype(np.float64)
    ok = np.isfinite(g) & np.isfinite(w)
    return float(np.max(np.abs(g - w)[ok] / (1.0 + np.abs(w[ok])), initial=0.0))


def describe(case_: Case) -> str:
    """The case as the op call a .dlir file would write: ``layer_norm(x: f32[B, 16], ..., eps=1e-05)``."""
    args = [f"{n}: {i.type}" for n, i in zip(input_names(case_), case_.inputs, strict=True)]
    args += [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in case_.attrs.items()]
    return f"{case_.op}({', '.join(args)})"


# -- many cases in one graph ----------------------------------------------------------------


@dataclass(eq=False)
class Suite:
    """Cases side by side in one graph (no value shared), so a target compiles and runs them once."""

    graph: Graph
    cases: list[Case]
    outputs: list[list[str]]  # per case, its output names in the graph
    bindings: tuple[dict[str, int], ...]

    def feeds(self, k: int) -> dict[str, np.ndarray]:
        """The inputs of every case for binding ``k``, the same numbers :func:`make_feeds` gives."""
        out: dict[str, np.ndarray] = {}
        for i, c in enumerate(self.cases):
            for name, a in make_feeds(c, self.bindings[k], seed=k).items():
                out[f"c{i}_{name}"] = a
        return out


def build_suites(cases: Sequence[Case]) -> list[Suite]:
    """The cases grouped by their symbol bindings, each group one graph; symbols are shared within a group."""
    groups: dict[str, list[Case]] = {}
    for c in cases:
        groups.setdefault(repr(c.bindings), []).append(c)
    suites = []
    for members in groups.values():
        g = Graph("OpSuite")
        outputs: list[list[str]] = []
        for i, c in enumerate(members):
            given = zip(input_names(c), c.inputs, strict=False)  # optional inputs may be left out
            args = [g.add_input(f"c{i}_{n}", inp_.type) for n, inp_ in given]
            outs = c.build(g, args) if c.build is not None else emit(g, c.op, args, dict(c.attrs))
            names = [f"c{i}_out{k}" for k in range(len(outs))]
            g.outputs.extend(zip(names, outs, strict=True))
            outputs.append(names)
        suites.append(Suite(g, members, outputs, members[0].bindings))
    return suites
