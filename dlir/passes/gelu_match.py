"""Recognising GELU written out by hand, for ``simplify``.

People write the tanh approximation of GELU in several equivalent ways::

    0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x**3)))      (GPT-2, BERT)
    x * 0.5 * (1 + tanh(0.79788456 * x * (1 + 0.044715 * x * x)))   (Megatron)
    x * (1 + tanh(...)) / 2

and the exact form as ``0.5 * x * (1 + erf(x / sqrt(2)))``. On a framework each
elementwise op is one kernel, so a hand-written GELU costs about eight; the
``gelu`` op is one. The matcher works on products as flat lists of factors (so
the order and grouping of ``mul``/``div`` by constants do not matter) and on sums
of two terms ``coefficient * x**power``. It only fires when every intermediate
value has no user outside the pattern, when every constant is uniform and
does not broadcast ``x`` to a bigger shape, and when the constants equal GELU's to
f32 precision: the result then differs from the written formula only by f32
rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dlir.errors import DlirError
from dlir.ir.graph import Node, Value
from dlir.ops.registry import check_attrs, get_op
from dlir.passes.rewrite import constant_value

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_CUBIC = 0.044715
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
# A few f32 ulps: 0.7978845608, 0.79788456 and sqrt(2/pi) all match; 0.7979 does not.
_RTOL = 1e-6
_MAX_DEPTH = 6  # nested mul/div nodes in one product


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= _RTOL * abs(b)


@dataclass
class _Product:
    """``coef * leaf_1 * ... * leaf_n``."""

    coef: float
    leaves: list[Value]


class GeluMatcher:
    """Finds hand-written GELUs; ``uses`` counts each value's readers (kept current by the pass)."""

    def __init__(self, uses: dict[Value, int]) -> None:
        self.uses = uses

    # -- entry point --------------------------------------------------------------------------

    def match(self, root: Node) -> bool:
        """Rewrite ``root`` (a mul or div) in place into ``gelu(x)`` when it computes one."""
        out = root.outputs[0]
        prod = self._product(out, top=True)
        if prod is None or not _close(prod.coef, 0.5):
            return False
        for i, s in enumerate(prod.leaves):
            others = prod.leaves[:i] + prod.leaves[i + 1 :]
            if len(others) != 1 or others[0].type != out.type:
                continue
            approx = self._one_plus(s, others[0])
            if approx is not None:
                return _rewrite(root, others[0], approx)
        return False

    # -- pieces -------------------------------------------------------------------------------

    def _single(self, v: Value) -> Node | None:
        """``v``'s producer when ``v`` is an intermediate nothing else reads."""
        node = v.producer
        if node is None or node.body is not None or len(node.outputs) != 1 or self.uses.get(v, 0) != 1:
            return None
        return node

    def _product(self, v: Value, top: bool = False, depth: int = 0) -> _Product | None:
        """``v`` as a product of constants and leaves, through single-use mul/div-by-constant nodes.

        GELU's products are a few factors deep: a deeper one is no match, and stopping there keeps a
        long chain of products linear to scan.
        """
        c = constant_value(v)
        if c is not None:
            return _Product(float(c.flat[0]), []) if _uniform(c, v) else None
        node = v.producer if top else self._single(v)
        if node is None or node.op not in ("mul", "div"):
            return _Product(1.0, [v])
        if depth >= _MAX_DEPTH:
            return None
        left = self._product(node.inputs[0], depth=depth + 1)
        right = self._product(node.inputs[1], depth=depth + 1)
        if left is None or right is None:
            return None
        if node.op == "div":
            if right.leaves or right.coef == 0.0:
                return None
            return _Product(left.coef / right.coef, left.leaves)
        return _Product(left.coef * right.coef, left.leaves + right.leaves)

    def _one_plus(self, s: Value, x: Value) -> str | None:
        """The gelu approximation when ``s`` is ``1 + tanh(...)`` or ``1 + erf(...)`` of ``x``."""
        node = self._single(s)
        if node is None or node.op != "add":
            return None
        for one, f in (node.inputs, node.inputs[::-1]):
            c = constant_value(one)
            fn = self._single(f)
            if c is None or not _uniform(c, x) or float(c.flat[0]) != 1.0 or fn is None:
                continue
            if fn.op == "tanh" and self._tanh_arg(fn.inputs[0], x):
                return "tanh"
            if fn.op == "erf" and self._erf_arg(fn.inputs[0], x):
                return "none"
        return None

    def _erf_arg(self, u: Value, x: Value) -> bool:
        """``x / sqrt(2)`` (or ``x * 0.70710678``)."""
        prod = self._product(u) if self._single(u) is not None else None
        return prod is not None and prod.leaves == [x] and _close(prod.coef, _INV_SQRT_2)

    def _tanh_arg(self, u: Value, x: Value) -> bool:
        """``sqrt(2/pi) * (x + 0.044715 x^3)``, the sum possibly written ``x * (1 + 0.044715 x^2)``."""
        prod = self._product(u) if self._single(u) is not None else None
        if prod is None or not _close(prod.coef, _SQRT_2_OVER_PI):
            return False
        sums = [v for v in prod.leaves if v is not x]
        shift = len(prod.leaves) - len(sums)  # factors of x outside the sum
        if len(sums) != 1 or shift > 1:
            return False
        terms = self._sum_terms(sums[0], x)
        if terms is None:
            return False
        terms = sorted((p + shift, k) for p, k in terms)
        return terms[0][0] == 1 and terms[1][0] == 3 and terms[0][1] == 1.0 and _close(terms[1][1], _CUBIC)

    def _sum_terms(self, v: Value, x: Value) -> list[tuple[int, float]] | None:
        """``v = a + b`` with each term ``k * x**p``: the ``(p, k)`` pairs."""
        node = self._single(v)
        if node is None or node.op != "add":
            return None
        terms = []
        for t in node.inputs:
            term = self._monomial(t, x)
            if term is None:
                return None
            terms.append(term)
        return terms

    def _monomial(self, v: Value, x: Value) -> tuple[int, float] | None:
        """``v`` as ``k * x**p`` (constant leaves, ``x`` itself and ``pow(x, integer)``)."""
        c = constant_value(v)
        if c is not None:
            return (0, float(c.flat[0])) if _uniform(c, x) else None
        prod = self._product(v) if v is x or self._single(v) is not None else None
        if prod is None:
            return None
        power = 0
        for leaf in prod.leaves:
            p = 1 if leaf is x else self._power_of(leaf, x)
            if p is None:
                return None
            power += p
        return power, prod.coef

    def _power_of(self, v: Value, x: Value) -> int | None:
        node = self._single(v)
        if node is None or node.op != "pow" or node.inputs[0] is not x:
            return None
        c = constant_value(node.inputs[1])
        if c is None or not _uniform(c, x):
            return None
        p = float(c.flat[0])
        return int(p) if p == int(p) and 1 <= p <= 3 else None


def _uniform(c: np.ndarray, like: Value) -> bool:
    """A constant with one value everywhere that does not make ``like`` any bigger."""
    if c.size == 0 or c.ndim > like.type.rank or c.dtype.kind not in "fiu":
        return False
    if any(n != 1 for n in c.shape):
        shape = like.type.shape[like.type.rank - c.ndim :]
        if any(n != 1 and not (d.is_static and d.value == n) for n, d in zip(c.shape, shape, strict=True)):
            return False
    return bool(np.all(c == c.flat[0])) and math.isfinite(float(c.flat[0]))


def _rewrite(root: Node, x: Value, approximate: str) -> bool:
    """Make ``root`` a ``gelu(x)`` node if the op accepts ``x`` with the root's exact result type."""
    opdef = get_op("gelu")
    try:
        attrs = check_attrs(opdef, {"approximate": approximate})
        if opdef.infer([x.type], attrs) != [root.outputs[0].type]:
            return False
    except DlirError:
        return False
    root.op, root.inputs, root.attrs = "gelu", [x], attrs
    return True


__all__ = ["GeluMatcher"]
