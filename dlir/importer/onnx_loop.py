"""ONNX ``Loop`` and ``ReverseSequence`` as dlir ``scan`` and ``gather``, where that is exact.

A dlir scan runs a fixed number of steps: the length of the axis it walks. An ONNX
``Loop`` runs while its condition holds (and at most M times). tf2onnx writes each tf
while loop (Keras/tf RNNs) as a Loop driven by a counter::

    i = 0; cond = 0 < T                       # computed outside the loop
    body(iter, cond, i, h, ..., T, X):         # T and X are carried unchanged
        x_t = Gather(X, i, axis=1)             # or X[T - 1 - i] for a backward RNN
        ...; i' = i + 1; cond' = float(i') < float(T)

Such a loop is imported as a scan only when its trip count N is *proved* from the graph:

- the body's condition is a constant true (or its own condition input passed through),
  and M gives N; or
- it is a comparison (``Less``/``Greater``/``LessOrEqual``/``GreaterOrEqual``, through
  ``Cast``/``Identity``) of two expressions affine in the iteration t (counters
  ``i' = i + step`` with a known start, the iteration number, loop-invariant values
  known at import, ``Add``/``Sub``) that holds exactly while t < N - 1; and the initial
  condition is known true with N >= 1 known, or is the comparison "N >= 1" itself
  (tf2onnx's ``0 < T``), so a loop that runs zero times agrees with a scan over a
  zero-length axis. M, when given as well, must equal N (or both be numbers).

Anything else (a condition read from data, a runtime M) is a DlirError naming the node:
a data-dependent loop cannot be a static scan. Casts of integers to floats on the way
to the comparison are taken as exact (counts below 2**24).

The scan walks a loop-invariant tensor X that the body ``Gather``s at the counter (t, or
N - 1 - t as a reverse scan), and the Gather becomes the scan's ``x_t``; without one,
it walks a zero tensor of length N. Values carried unchanged are read by closure, and
counters nothing else reads are dropped (their final value c0 + step * N is known).
Loop scan outputs are stacked in iteration order along a new axis 0; a scan's emits
are aligned with X along its axis, so they are moved to axis 0 and, for a reverse
scan, reversed. ``ReverseSequence`` with every length equal to the time dim is that
reversal (a ``gather`` with reversed indices), and undoes one made here directly.

tf2onnx computes ``0 < T`` and the lengths ``[T] * B`` from symbolic dims at import;
the builder's symbolic folding keeps those as :class:`DimCompare`/:class:`DimFill`
records instead of refusing them, for the two handlers here to read.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlir.importer.builder import (
    Builder,
    DimCompare,
    DimFill,
    Operand,
    handles,
    node_inputs,
    symbolic_record,
)
from dlir.importer.onnx_import import ident, tensor_value
from dlir.ir.builder import emit1
from dlir.ir.graph import Value
from dlir.ir.scan import emit_scan, scan_body, step_type
from dlir.ir.types import Dim, DType, TensorType


@dataclass(frozen=True)
class Affine:
    """A scalar whose value in iteration t is ``base + step * t``."""

    base: Dim
    step: int

    def __add__(self, o: Affine) -> Affine:
        return Affine(self.base + o.base, self.step + o.step)

    def __sub__(self, o: Affine) -> Affine:
        return Affine(self.base - o.base, self.step - o.step)


# -- reversal -------------------------------------------------------------------------

# Per import (root builder): id(reversed value) -> (reversed value, source, axis), so that
# reversing a reversal gives its source back.
_REVERSALS: weakref.WeakKeyDictionary[Builder, dict[int, tuple[Value, Operand, int]]] = weakref.WeakKeyDictionary()


def reverse_along(b: Builder, x: Operand, axis: int, idx: Value | None = None) -> Operand:
    """``x`` reversed along ``axis``: a ``gather`` with indices n-1..0 (``idx``, or built here)."""
    made = _REVERSALS.setdefault(b.root, {})
    if isinstance(x, Value) and id(x) in made and made[id(x)][0] is x and made[id(x)][2] == axis:
        return made[id(x)][1]
    if isinstance(x, np.ndarray):
        return np.flip(x, axis).copy()
    n = b.shape(x)[axis]
    if idx is None:
        idx = b.tensor(np.arange(n.value - 1, -1, -1, dtype=np.int64)) if n.is_static else _reversed_indices(b, n)
    out = b.op("gather", [x, idx], axis=axis)
    made[id(out)] = (out, x, axis)
    return out


def _reversed_indices(b: Builder, n: Dim) -> Value:
    """``[n-1, ..., 0]`` for a symbolic n: a reverse scan over n zeros that emits its step count."""
    i64 = TensorType.make(DType.i64, ())
    zeros = b.op("broadcast_to", [np.array(0, np.int64)], shape=[n])
    body = scan_body(b.graph, i64, [i64], ["zero_t", "k"])
    k = body.inputs[1]
    one = emit1(body, "constant", [], {"value": 1, "dtype": DType.i64})
    k1 = emit1(body, "add", [k, one])
    # It emits the new count, n-p at position p: emitting the carry input k itself would print as
    # `emit k` after `k = k1` in .dlir source, which means the new value there.
    body.outputs = [("k", k1), ("idx", k1)]
    ys, _ = emit_scan(b.graph, zeros, [b.tensor(np.array(0, np.int64))], body, axis=0, reverse=True)
    return b.op("sub", [ys, np.array(1, np.int64)])


def broadcast_constant(v: Operand) -> np.ndarray | None:
    """The constant a run-time value ``v`` broadcasts (``Expand`` of a known length to a symbolic batch)."""
    while isinstance(v, Value) and v.producer is not None and v.producer.op in ("broadcast_to", "cast", "reshape"):
        v = v.producer.inputs[0]
    if isinstance(v, Value) and v.producer is not None and v.producer.op == "constant":
        return np.asarray(v.producer.attrs["value"])
    return None


@handles("ReverseSequence")
def _reverse_sequence(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    """Only the full-length reversal: every sequence length provably equals the time dim."""
    x, lens = ins
    t = b.type_of(x)
    time_axis, batch_axis = int(a.get("time_axis", 0)) % t.rank, int(a.get("batch_axis", 1)) % t.rank
    n, batch = t.shape[time_axis], t.shape[batch_axis]
    hint = "dlir reverses whole sequences only; a per-row length needs masking, which dlir's ops do not express here"
    const = broadcast_constant(lens)
    if const is not None and n.is_static and const.size > 0 and bool(np.all(const == n.value)):
        return reverse_along(b, x, time_axis)  # Keras' Bidirectional: Expand(T, [B]) with a static T
    if isinstance(lens, Value) or lens is None:
        raise b.error(
            f"ReverseSequence: sequence_lens is computed at run time, so it cannot be proved to equal the time dim {n}",
            hint,
        )
    if lens.dtype == object and lens.ndim == 0 and isinstance(lens[()], DimFill):
        fill = lens[()]
        ok = fill.value == n and fill.shape == (batch,)
    else:
        vals = [b.as_dim(v) for v in lens.reshape(-1)]
        ok = lens.ndim == 1 and Dim.of(len(vals)) == batch and all(v == n for v in vals)
    if not ok or n.unknown:
        raise b.error(f"ReverseSequence: sequence_lens is not {n} (the time dim) for all {batch} rows", hint)
    return reverse_along(b, x, time_axis)


# -- Loop -----------------------------------------------------------------------------


@handles("Loop")
def _loop(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    return _LoopImport(b, ins, a["body"]).run()


class _LoopImport:
    """One ONNX Loop: the proof of its trip count, then the scan that replaces it."""

    def __init__(self, b: Builder, ins: list[Operand], g: Any) -> None:
        self.b, self.g = b, g
        self.m, self.cond0, self.inits = ins[0], ins[1] if len(ins) > 1 else None, list(ins[2:])
        k = len(self.inits)
        gin, gout = [v.name for v in g.input], [v.name for v in g.output]
        if len(gin) != k + 2 or len(gout) < k + 1:
            raise b.error(
                f"Loop: the body takes {len(gin)} inputs and gives {len(gout)} outputs, "
                f"but the node carries {k} values",
                "the body takes the iteration, the condition, then the carried values",
            )
        self.iter_name, self.cond_in, self.v_in = gin[0], gin[1], gin[2:]
        self.cond_out, self.v_out, self.scan_out = gout[0], gout[1 : k + 1], gout[k + 1 :]
        self.producer = {o: n for n in g.node for o in n.output if o}
        self.body_consts = {t.name: tensor_value(t, b.path) for t in g.initializer}
        self.passthrough = {j for j in range(k) if self.v_out[j] == self.v_in[j]}
        self.counters: dict[int, Affine] = {}
        for j in range(k):
            if j not in self.passthrough and (c := self._counter(j)) is not None:
                self.counters[j] = c

    # -- values known at import ---------------------------------------------------------
    def _known(self, name: str) -> np.ndarray | None:
        if name in self.body_consts:
            return self.body_consts[name]
        n = self.producer.get(name)
        if n is not None:
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
                return tensor_value(n.attribute[0].t, self.b.path)
            return None
        if name in self.v_in or name in (self.iter_name, self.cond_in):
            return None
        v = self.b.env.get(name)
        return v if isinstance(v, np.ndarray) else None

    def _scalar_dim(self, v: Any) -> Dim | None:
        if not isinstance(v, np.ndarray) or v.ndim != 0 or v.dtype == bool:
            return None
        x = v[()]
        if isinstance(x, Dim):
            return x
        if isinstance(x, (int, np.integer)) or (isinstance(x, (float, np.floating)) and float(x).is_integer()):
            return Dim.of(int(x))
        return None

    def _counter(self, j: int) -> Affine | None:
        """Carried value j as ``c0 + step * t`` when the body only adds a known step to it."""
        n = self.producer.get(self.v_out[j])
        start = self._scalar_dim(self.inits[j]) if isinstance(self.inits[j], np.ndarray) else None
        if n is None or n.op_type != "Add" or start is None or self.v_in[j] not in n.input:
            return None
        other = n.input[1] if n.input[0] == self.v_in[j] else n.input[0]
        step = self._scalar_dim(self._known(other))
        return Affine(start, step.value) if step is not None and step.is_static else None

    def _affine(self, name: str) -> Affine | None:
        """``name`` as ``base + step * t`` (t the iteration), or None when it is not provably so."""
        if name == self.iter_name:
            return Affine(Dim.of(0), 1)
        if name in self.v_in:
            j = self.v_in.index(name)
            if j in self.counters:
                return self.counters[j]
            d = self._scalar_dim(self.inits[j]) if j in self.passthrough else None
            return Affine(d, 0) if d is not None else None
        known = self._known(name)
        if known is not None:
            d = self._scalar_dim(known)
            return Affine(d, 0) if d is not None else None
        n = self.producer.get(name)
        if n is None:
            return None
        if n.op_type == "Identity" or (n.op_type == "Cast" and _cast_to(n) in EXACT_CASTS):
            return self._affine(n.input[0])
        if n.op_type in ("Add", "Sub") and len(n.input) == 2:
            x, y = self._affine(n.input[0]), self._affine(n.input[1])
            if x is None or y is None:
                return None
            return x + y if n.op_type == "Add" else x - y
        return None

    # -- the trip count -------------------------------------------------------------------
    def _refuse(self, why: str) -> Exception:
        return self.b.error(
            f"Loop: {why}; only a loop whose trip count is proved at import is a scan "
            "(a data-dependent loop cannot be a static scan)",
            "dlir imports a Loop whose trip count follows from a counter and a limit known at import "
            "(tf2onnx's while loops), or from M with a constant-true condition",
        )

    def _cond_limit(self) -> Dim | None:
        """None when the body's condition is always true; else N: the loop, once started, runs N times.

        The condition after iteration t holds exactly for t < N - 1, so iterations 0 .. N-1 run.
        """
        return self._limit(self.cond_out)

    def _limit(self, name: str) -> Dim | None:
        """:meth:`_cond_limit` of the condition value ``name``."""
        while name in self.producer and self.producer[name].op_type == "Identity":
            name = self.producer[name].input[0]
        if name == self.cond_in:
            return None
        if name in self.producer and self.producer[name].op_type == "And":  # Keras: i < max_iterations and t < T
            return self._both(self.producer[name])
        known = self._known(name)
        if known is not None and known.dtype == bool and known.size == 1:
            if bool(known.reshape(-1)[0]):
                return None
            raise self._refuse("the body's condition is constantly false")
        n = self.producer.get(name)
        if n is None or n.op_type not in ("Less", "Greater", "LessOrEqual", "GreaterOrEqual"):
            what = f"the {n.op_type} node '{n.name}'" if n is not None else f"'{name}'"
            raise self._refuse(f"the body's condition comes from {what}, not from a counter compared with a limit")
        lhs, rhs = (self._affine(i) for i in n.input)
        if lhs is None or rhs is None:
            raise self._refuse(
                f"the condition '{n.name}' ({n.op_type}) compares values that are not a counter "
                "and a limit known at import"
            )
        if n.op_type.startswith("Greater"):
            lhs, rhs = rhs, lhs
        gap = rhs - lhs  # cond <=> gap.base - t >= 1 (>= 0 when not strict) <=> t < gap.base (+ 1)
        if gap.step != -1:
            raise self._refuse(f"the condition '{n.name}' does not move towards its limit by one per iteration")
        return gap.base + (2 if n.op_type.endswith("OrEqual") else 1)

    def _both(self, n: Any) -> Dim | None:
        """The limit of ``a and b``: the smaller of the two, when that is known at import."""
        limits = [self._limit(i) for i in n.input]
        known = [d for d in limits if d is not None]
        if not known:
            return None
        if len(known) == 1 or known[0] == known[1]:
            return known[0]
        gap = known[0] - known[1]
        if gap.is_static:  # T + 1 and T (Keras' max_iterations and time): the smaller, whatever T is
            return known[1] if gap.value >= 0 else known[0]
        raise self._refuse(f"the condition '{n.name}' bounds the loop by both {known[0]} and {known[1]}")

    def trip_count(self) -> Dim:
        limit = self._cond_limit()
        cond0 = self.cond0
        for x, what in ((cond0, "the Loop's initial condition"), (self.m, "the Loop's trip count M")):
            if isinstance(x, Value) and x.kind == "input":
                self.b.known(x, what)  # a graph input: NeedsConstant (the conformance runner freezes it)
        if isinstance(cond0, Value):
            raise self._refuse("the initial condition is computed at run time")
        m = None
        if self.m is not None:
            m = self._scalar_dim(self.m.reshape(())) if isinstance(self.m, np.ndarray) and self.m.size == 1 else None
            if m is None:
                raise self._refuse("the trip count M is computed at run time")
        first: bool | Dim = True if cond0 is None else (cond0[()] if cond0.ndim == 0 else cond0.reshape(-1)[0])
        if isinstance(first, DimCompare):
            first = first.gap
        elif not isinstance(first, Dim):
            first = bool(first)
            if not first:
                raise self._refuse("the initial condition is false (the loop never runs)")
        if limit is None:  # the condition stays true: M alone decides
            if m is None or first is not True:
                raise self._refuse(
                    "the condition is always true, and "
                    + ("M is not given" if m is None else "the initial condition is not known to be true")
                )
            n = m
        else:
            n = self._runs(limit, first)
            if m is not None:
                if m.is_static and n.is_static:
                    n = Dim.of(min(m.value, n.value))
                elif m != n:
                    raise self._refuse(f"both M ({m}) and the condition (limit {n}) bound the loop")
        if n.unknown:  # an unknown dim equals nothing, not even another unknown one
            raise self._refuse("the trip count involves a dim unknown at import")
        if n.is_static and n.value < 1:
            raise self._refuse(f"the loop runs {n.value} times")
        return n

    def _runs(self, n: Dim, first: bool | Dim) -> Dim:
        """The trip count of a loop that runs n times once started: n, when it starts exactly if n >= 1."""
        if first is True:
            if not (n.is_static and n.value >= 1):
                raise self._refuse(
                    f"the initial condition is a constant true, but the condition allows {n} "
                    "iterations, which may be fewer than one"
                )
            return n
        if first != n:  # first is "gap >= 1": it must be "n >= 1", so that n <= 0 means no iteration, as in a scan
            raise self._refuse(f"the initial condition ({first} >= 1) is not 'the loop runs at least once' ({n} >= 1)")
        return n

    # -- the scan ---------------------------------------------------------------------------
    def run(self) -> list[Any]:
        b, k = self.b, len(self.inits)
        n = self.trip_count()
        emits = [i for i in range(len(self.scan_out)) if k + i < len(b.out_names) and b.out_names[k + i]]
        walk = self._walk(n)
        bound = walk[3] if walk else set()
        carried = [j for j in range(k) if j not in self.passthrough and j not in self.counters]
        while True:  # a counter the imported body reads is carried after all
            roots = [self.v_out[j] for j in carried] + [self.scan_out[i] for i in emits]
            needed, reads = self._slice(roots, bound)
            extra = [
                j
                for j, c in self.counters.items()
                if j not in carried
                and (self.v_in[j] in reads or (b.out_names[j] and not (c.base + n * c.step).is_static))
            ]  # a symbolic final value is no tensor
            if not extra:
                break
            carried = sorted(carried + extra)
        if walk:
            xs, axis, reverse = walk[0], walk[1], walk[2]
        else:  # nothing to walk: n zeros, with the iteration read (if at all) from a carried count
            xs, axis, reverse = b.tensor(b.op("broadcast_to", [np.array(0, np.int64)], shape=[_dim_attr(n)])), 0, False
        # A reverse scan also stacks its iteration count, which gives the indices that put its emits
        # in iteration order (the scan stacks them in the order of xs).
        order = reverse and bool(emits)
        count = self.iter_name in reads or order
        ys, lasts, axis = self._scan(xs, axis, reverse, carried, emits, needed, bound, count, order)
        outs: list[Any] = [None] * (k + len(self.scan_out))
        for pos, j in enumerate(carried):
            outs[j] = lasts[pos]
        for j in self.passthrough:
            outs[j] = self.inits[j]
        for j, c in self.counters.items():
            if j not in carried:
                outs[j] = _known_dim(c.base + n * c.step, self.inits[j].dtype)
        # The stacked counts are n-p at position p (axis is 0 then): n-1-p are the indices that reverse.
        idx = b.op("sub", [ys[-1], np.array(1, np.int64)]) if order else None
        for i, y in zip(emits, ys, strict=False):  # ys holds the emits, then the counter
            if axis != 0:  # Loop stacks along a new axis 0
                y = b.op("transpose", [y], perm=[axis] + [d for d in range(b.rank(y)) if d != axis])
            outs[k + i] = reverse_along(b, y, 0, idx) if idx is not None else y  # in iteration order
        return outs

    def _walk(self, n: Dim) -> tuple[Value, int, bool, set[str]] | None:
        """The tensor X the body ``Gather``s at t (or n-1-t) along an axis of length n; those Gathers' outputs."""
        from onnx import helper

        key: tuple[int, int, bool] | None = None
        found: tuple[Value, int, bool] | None = None
        bound: set[str] = set()
        for node in self.g.node:
            if node.op_type != "Gather" or len(node.input) != 2:
                continue
            x, at = self._invariant(node.input[0]), self._affine(node.input[1])
            if x is None or at is None or x.type.rank == 0:
                continue
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            axis = int(attrs.get("axis", 0)) % x.type.rank
            if x.type.shape[axis] != n:
                continue
            if at.step == 1 and at.base == Dim.of(0):
                reverse = False
            elif at.step == -1 and at.base == n - 1:
                reverse = True
            else:
                continue
            if key is None:
                key, found = (id(x), axis, reverse), (x, axis, reverse)
            if key == (id(x), axis, reverse):
                bound.add(node.output[0])
        return (*found, bound) if found is not None else None

    def _invariant(self, name: str) -> Value | None:
        """The run-time tensor ``name`` stands for in every iteration (carried unchanged, or read from outside)."""
        if name in self.v_in:
            j = self.v_in.index(name)
            v = self.inits[j] if j in self.passthrough else None
        elif name in self.producer or name in self.body_consts or name in (self.iter_name, self.cond_in):
            v = None
        else:
            v = self.b.env.get(name)
        return v if isinstance(v, Value) else None

    def _slice(self, roots: list[str], bound: set[str]) -> tuple[set[int], set[str]]:
        """The body nodes the roots need (ids), and the names those read that the body does not compute."""
        needed: set[int] = set()
        reads: set[str] = set()
        todo = [r for r in roots if r]
        while todo:
            name = todo.pop()
            if name in bound:
                continue
            node = self.producer.get(name)
            if node is None:
                reads.add(name)
            elif id(node) not in needed:
                needed.add(id(node))
                todo += [i for i in node_inputs(node) if i]
        return needed, reads

    def _scan(
        self,
        xs: Value,
        axis: int,
        reverse: bool,
        carried: list[int],
        emits: list[int],
        needed: set[int],
        bound: set[str],
        count: bool,
        emit_count: bool,
    ) -> tuple[list[Value], list[Value], int]:
        """Import the needed body nodes into a scan body over ``xs``: the stacked emits, last carries and axis.

        ``count`` carries the iteration number (from 0); ``emit_count`` also stacks it, plus one, as the last emit.
        """
        b = self.b
        inits = [b.tensor(self.inits[j]) for j in carried] + ([b.tensor(np.array(0, np.int64))] if count else [])
        names = ["x_t"] + [ident(self.v_in[j], set()) for j in carried] + (["iteration"] if count else [])
        body = scan_body(b.graph, step_type(xs.type, axis), [v.type for v in inits], names)
        c = b.child(body)
        c.consumed.update(self.v_out[j] for j in carried)
        c.consumed.update(self.scan_out[i] for i in emits)
        c.env.update(self.body_consts)  # the body's own initializers: known at import
        order = c._toposort_body(self.g)
        for pos, j in enumerate(carried):
            c.env[self.v_in[j]] = body.inputs[1 + pos]
        for j in self.passthrough:
            c.env[self.v_in[j]] = self.inits[j]
        c.env[self.cond_in] = np.array(True)  # an iteration runs only when its condition was true
        if count:
            c.env[self.iter_name] = body.inputs[-1]
        for name in bound:
            c.env[name] = body.inputs[0]
        for node in order:
            if id(node) in needed:
                c._node(node)
        new = [c.tensor(c.env[self.v_out[j]]) for j in carried]
        if count:
            new.append(c.tensor(c.op("add", [body.inputs[-1], np.array(1, np.int64)])))
        stacked = [c.tensor(c.env[self.scan_out[i]]) for i in emits] + ([new[-1]] if emit_count else [])
        body.outputs = [(f"h{p}", v) for p, v in enumerate(new)] + [(f"e{p}", v) for p, v in enumerate(stacked)]
        if axis > 0 and any(v.type.rank < axis for v in stacked):  # emits too small to stack along axis: walk X^T
            xs = b.tensor(b.op("transpose", [xs], perm=[axis] + [d for d in range(xs.type.rank) if d != axis]))
            axis = 0
        res = emit_scan(b.graph, xs, inits, body, axis=axis, reverse=reverse)
        return res[: len(stacked)], res[len(stacked) : len(stacked) + len(carried)], axis


# Casts that keep integer counts (float32 below 2**24): FLOAT, INT32, INT64, DOUBLE.
EXACT_CASTS = {1, 6, 7, 11}


def _cast_to(n: Any) -> int:
    return next((int(a.i) for a in n.attribute if a.name == "to"), 0)


def _dim_attr(d: Dim) -> Any:
    return d.value if d.is_static else d


def _known_dim(d: Dim, dtype: np.dtype[Any]) -> np.ndarray:
    """A dim as a value known at import: a number, or a 0-d object array holding the symbolic dim."""
    return np.array(d.value, dtype=dtype) if d.is_static else symbolic_record(d)
