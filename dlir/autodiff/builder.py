"""What a VJP rule builds with: a small wrapper around ``emit`` plus the shape helpers.

A VJP rule (``OpDef.vjp``) is called as ``rule(b, node, cts)``: ``b`` is a
:class:`GradBuilder` that adds nodes to the gradient graph at the forward
node's source location, ``node`` the forward node, ``cts`` one cotangent Value
per node output. It returns one cotangent per node input (``None`` for none).

Rules written with these helpers read like the math (``b.mul(g, b.sub(one, b.mul(y, y)))``)
and emit nothing but ordinary dlir ops, so a gradient can be printed, optimised,
lowered to every target and differentiated again.

Broadcasting is undone in ONE place, :meth:`GradBuilder.sum_to` (TVM's
``collapse_sum_to``): a rule for a broadcasting op returns cotangents of the
broadcast result's shape and the autodiff driver reduces them to each input's
shape. Shapes may be symbolic; a dim that is unknown (``?``) where a shape must
be rebuilt is an error that says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from dlir.errors import UNKNOWN_LOC, PassError, SourceLoc
from dlir.ir.builder import emit
from dlir.ir.graph import Graph, Node, Value, dim_attr
from dlir.ir.types import Dim, DType, TensorType


class GradBuilder:
    """Emits the nodes of one VJP into ``graph``, located at the forward node's ``loc``."""

    def __init__(
        self,
        graph: Graph,
        loc: SourceLoc = UNKNOWN_LOC,
        name: str = "d",
        wants: Sequence[bool] | None = None,
        active: Callable[[Value], bool] | None = None,
    ) -> None:
        self.graph = graph
        self.loc = loc
        self.name = name
        self.wants = list(wants) if wants is not None else None
        self._active = active
        # Cotangents of values a node's body reads from outside (scan closures): (value, cotangent).
        self.closure_cts: list[tuple[Value, Value]] = []

    def needs(self, i: int) -> bool:
        """Whether the node's input ``i`` needs a cotangent (a rule may skip the others' work;
        whatever it builds for them anyway is removed)."""
        return self.wants is None or self.wants[i]

    def is_active(self, v: Value) -> bool:
        """Whether ``v`` depends on a differentiated variable (so it wants a cotangent)."""
        return self._active is None or self._active(v)

    def add_closure_cotangent(self, v: Value, c: Value) -> None:
        """A cotangent for ``v``, a value that is not a node input (read by the node's body)."""
        self.closure_cts.append((v, c))

    def error(self, message: str, hint: str | None = None) -> PassError:
        """An error located at the forward node, for a rule to raise."""
        return PassError(f"autodiff: {message}", self.loc, hint)

    def vjp_through_decomposition(self, node: Node, cts: Sequence[Value]) -> list[Value | None]:
        """``node``'s VJP as the VJP of its op's ``decompose``: the decomposition is emitted here
        and differentiated by one reverse sweep over it (a backward op's grad of grad)."""
        from dlir.autodiff.transform import Reverse
        from dlir.ops.registry import get_op

        decompose = get_op(node.op).decompose
        assert decompose is not None, f"{node.op} has no decomposition"
        first = len(self.graph.nodes)
        outs = decompose(self, node)
        emitted = self.graph.nodes[first:]
        variables = [v for i, v in enumerate(node.inputs) if self.needs(i) and v.type.dtype.is_float]
        sweep = Reverse(self.graph, variables, emitted)
        got = sweep.run({o: c for o, c in zip(outs, cts, strict=True) if o.type.dtype.is_float})
        return [got.get(v) if v in variables else None for v in node.inputs]

    # -- emitting ---------------------------------------------------------------------
    def op(self, op: str, *inputs: Value, **attrs: Any) -> Value:
        """One single-result node ``op(inputs) {attrs}``."""
        return self.ops(op, list(inputs), **attrs)[0]

    def ops(self, op: str, inputs: Sequence[Value], **attrs: Any) -> list[Value]:
        """One node; all of its results (``split``)."""
        outs = emit(self.graph, op, list(inputs), attrs, self.loc, [self.name])
        if len(outs) > 1:  # (emit names single results only)
            for v in outs:
                self.graph.rename(v, self.name)
        return outs

    def const(self, value: float, like: Value | DType) -> Value:
        """A scalar constant of ``like``'s dtype (a scalar broadcasts against anything)."""
        dt = like if isinstance(like, DType) else like.type.dtype
        return self.op("constant", value=float(value) if dt.is_float else int(value), dtype=dt)

    # -- arithmetic shorthands ----------------------------------------------------------
    def add(self, a: Value, b: Value) -> Value:
        return self.op("add", a, b)

    def sub(self, a: Value, b: Value) -> Value:
        return self.op("sub", a, b)

    def mul(self, a: Value, b: Value) -> Value:
        return self.op("mul", a, b)

    def div(self, a: Value, b: Value) -> Value:
        return self.op("div", a, b)

    def neg(self, a: Value) -> Value:
        return self.op("neg", a)

    def scale(self, a: Value, k: float) -> Value:
        """``a * k`` for a Python number ``k``."""
        return self.mul(a, self.const(k, a))

    def where(self, cond: Value, a: Value, b: Value) -> Value:
        return self.op("where", cond, a, b)

    def zero_where(self, cond: Value, g: Value) -> Value:
        """``g`` with its entries set to 0 where ``cond`` holds, by selection (never ``g * mask``)."""
        return self.where(cond, self.const(0.0, g), g)

    def keep_where(self, cond: Value, g: Value) -> Value:
        """``g`` where ``cond`` holds, 0 elsewhere, by selection."""
        return self.where(cond, g, self.const(0.0, g))

    def cast(self, a: Value, dtype: DType) -> Value:
        return a if a.type.dtype is dtype else self.op("cast", a, dtype=dtype)

    def reduce(self, op: str, v: Value, axes: Sequence[int], keepdims: bool = True) -> Value:
        """``op(v, axis=axes)``; over no axes it is ``v`` itself (torch reads ``dim=[]`` as all dims)."""
        return self.op(op, v, axis=list(axes), keepdims=keepdims) if axes else v

    # -- shapes ------------------------------------------------------------------------
    def dims(self, t: TensorType, what: str = "a shape") -> list[int | Dim]:
        """``t``'s shape as attribute dims; an unknown dim cannot be rebuilt."""
        if any(d.unknown for d in t.shape):
            raise PassError(
                f"autodiff needs {what} {t}, which has an unknown dim '?'",
                self.loc,
                hint="give the dim a name (a symbol such as B) in the model's input types",
            )
        return [dim_attr(d) for d in t.shape]

    def broadcast_to(self, a: Value, t: TensorType) -> Value:
        """``a`` repeated to ``t``'s shape (nothing emitted when it already has it)."""
        if a.type.shape == t.shape:
            return a
        return self.op("broadcast_to", a, shape=self.dims(t))

    def rows_product(self, p: Value, q: Value) -> Value:
        """``sum_i p_i^T q_i`` over every row of p [..., K] and q [..., N] (same leading dims): one
        [M, K]^T @ [M, N] matrix product, not a batched one summed afterwards (a weight's
        gradient over a batch of sequences, or over a loop's steps)."""
        rows = Dim.of(1)
        for d in p.type.shape[:-1]:
            rows = rows * d
        p2, q2 = (self.op("reshape", v, shape=self.dims(v.type.with_shape([rows, v.type.shape[-1]]))) for v in (p, q))
        return self.op("matmul", self.op("transpose", p2, perm=[1, 0]), q2)

    def zeros(self, t: TensorType) -> Value:
        """A tensor of zeros of type ``t`` (a scalar constant repeated to the shape)."""
        return self.broadcast_to(self.const(0.0, t.dtype), t)

    def zeros_like(self, v: Value) -> Value:
        return self.zeros(v.type)

    def unreduce(self, g: Value, x: TensorType, axes: list[int], keepdims: bool) -> Value:
        """The cotangent of a reduction over ``axes`` of ``x`` brought back to ``x``'s shape."""
        if not keepdims and axes:
            g = self.op("unsqueeze", g, axes=sorted(axes))
        return self.broadcast_to(g, x.with_dtype(g.type.dtype))

    def count(self, dims: Sequence[Dim], dtype: DType) -> Value:
        """The product of ``dims`` as a scalar of ``dtype``, symbolic dims included.

        A symbolic size (a batch ``B``) is only known at run time, and the IR has no
        shape-reading op: it is the sum of a tensor of ones of that shape, an
        O(B) op that every target lowers.
        """
        static = 1
        symbolic: list[Dim] = []
        for d in dims:
            if d.is_static:
                static *= d.value
            else:
                symbolic.append(d)
        n = self.const(static, dtype)
        if not symbolic:
            return n
        ones = self.broadcast_to(self.const(1.0, dtype), TensorType(dtype, tuple(symbolic)))
        total = self.op("sum", ones)
        return total if static == 1 else self.mul(total, n)

    def sum_to(self, g: Value, t: TensorType) -> Value:
        """Undo NumPy broadcasting: sum ``g`` down to the shape of ``t``.

        The one place where dlir reduces broadcast gradients (TVM's
        ``collapse_sum_to``): leading axes that ``t`` lacks are summed away, axes
        where ``t`` has a static 1 and ``g`` does not are summed keeping the 1. A
        symbolic dim of ``t`` is never 1 by broadcasting (the shape rule keeps the
        symbol), so it is kept as is; so is an unknown dim (``?``), which dlir
        assumes is not broadcast.
        """
        gs, ts = g.type.shape, t.shape
        if gs == ts:
            return g
        lead = len(gs) - len(ts)
        if lead < 0:
            raise PassError(f"autodiff: cannot sum a cotangent {g.type} to the larger shape {t}", self.loc)
        one = Dim.of(1)
        ones = [lead + i for i, d in enumerate(ts) if d == one and gs[lead + i] != one]
        out = g
        if ones:
            out = self.op("sum", out, axis=list(range(lead)) + ones, keepdims=True)
            if lead:
                out = self.op("squeeze", out, axes=list(range(lead)))
        elif lead:  # (the usual bias case: one sum)
            out = self.op("sum", out, axis=list(range(lead)))
        for i, (a, b) in enumerate(zip(out.type.shape, ts, strict=True)):
            if not a.compatible(b):
                raise PassError(
                    f"autodiff: a cotangent {g.type} does not reduce to {t} (axis {i}: {a} vs {b})", self.loc
                )
        return out


__all__ = ["GradBuilder"]
