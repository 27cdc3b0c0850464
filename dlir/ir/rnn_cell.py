"""Recognise LSTM and GRU recurrences, so backends can run them as one fused kernel.

The standard library's ``LSTM`` and ``GRU`` (``dlir/stdlib/nn.dlir``) are
``scan`` nodes whose body computes one cell step from the hoisted input
projection ``xw_t`` (a slice of ``xw = x @ w_ih + b``) and one closure weight
``w_hh``. torch (``torch.lstm`` / ``torch.gru``, what ``nn.LSTM`` runs) and ONNX
(``LSTM`` / ``GRU`` nodes) have whole-sequence kernels for exactly these cells,
far faster than a loop of small ops.

The pass ``rnn`` (:mod:`dlir.passes.rnn`) marks a scan whose body is EXACTLY such a cell by naming its
body ``lstm_cell`` or ``gru_cell``. The mark is only a name: the node stays an
ordinary ``scan`` (the interpreter, the verifier, the printer and parser,
autodiff and the tensorflow backend run its body as before). A backend that
fuses asks :func:`fused_cell`, which matches the body again, so a mark that a
later rewrite made stale (or a hand-written body that merely has the name)
falls back to the loop instead of computing something else.

What matches (operands of ``add``/``mul`` in either order, nothing else in the
body, dtype f32 or f64, xs of rank 3 scanned along axis 0 or 1, either
direction), with ``R = h @ w_hh`` (+ ``b_hh``, as ``linear`` or ``add``):

- LSTM, carries ``(h, c)``, gates packed i, f, g, o (PyTorch)::

      i, f, g, o = split(x_t + R, [H]*4)
      c' = sigmoid(f) * c + sigmoid(i) * tanh(g);   h' = sigmoid(o) * tanh(c')

- GRU, carry ``h``, gates packed r, z, n, reset after the matmul (PyTorch;
  ONNX ``linear_before_reset=1``)::

      xr, xz, xn = split(x_t, [H]*3);   hr, hz, hn = split(R, [H]*3)
      r = sigmoid(xr + hr);  z = sigmoid(xz + hz);  n = tanh(xn + r * hn)
      h' = (1 - z) * n + z * h

The body returns the new carries, then either nothing or ``h'`` once as its
emit. The fused kernels also compute the input projection: :func:`fused_cell`
says ``x, w_ih, b_ih`` when ``xs`` is ``linear(x, w_ih, b_ih)`` (or ``x @ w_ih``)
read by this scan only, and a backend then skips that node (see
:func:`absorbed_projections`). Without such a projection there is no fusion.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dlir.ir.graph import Graph, Node, Value, use_counts
from dlir.ir.types import DType

MARKS = {"lstm": "lstm_cell", "gru": "gru_cell"}
_GATES = {"lstm": 4, "gru": 3}


@dataclass(frozen=True)
class RnnCell:
    """A recognised recurrence: the values a fused kernel needs.

    Weights are in dlir's layout (``w_ih`` [I, G*H], ``w_hh`` [H, G*H], gates in
    PyTorch's order); a bias is None where the model has none.
    """

    kind: str  # "lstm" | "gru"
    hidden: int
    w_hh: Value
    b_hh: Value | None
    x: Value | None = None  # the projection's input [.., .., I]; None: no absorbable projection
    w_ih: Value | None = None
    b_ih: Value | None = None
    projection: Node | None = None

    @property
    def gates(self) -> int:
        return _GATES[self.kind]


def fused_cell(node: Node, graph: Graph, dtypes: tuple[DType, ...] = (DType.f32, DType.f64)) -> RnnCell | None:
    """The cell of a marked scan node of ``graph`` with an absorbable projection, else None (run the loop).

    ``dtypes``: those the backend's kernels take (ONNX Runtime's LSTM/GRU: f32 only).
    """
    if node.op != "scan" or node.body is None or node.body.name not in MARKS.values():
        return None
    if node.inputs[0].type.dtype not in dtypes:
        return None
    cell = match_cell(node)
    if cell is None or MARKS[cell.kind] != node.body.name:
        return None
    return with_projection(cell, node, graph)


def absorbed_projections(graph: Graph, dtypes: tuple[DType, ...] = (DType.f32, DType.f64)) -> dict[Node, RnnCell]:
    """For each fused scan of ``graph``, its cell; the projections they absorb are ``cell.projection``."""
    out: dict[Node, RnnCell] = {}
    for node in graph.nodes:
        cell = fused_cell(node, graph, dtypes)
        if cell is not None:
            out[node] = cell
    return out


def skipped_nodes(cells: dict[Node, RnnCell]) -> set[Node]:
    """The projection nodes a backend does not emit: their fused scan computes them."""
    return {c.projection for c in cells.values() if c.projection is not None}


# -- matching ---------------------------------------------------------------------------


def match_cell(node: Node) -> RnnCell | None:
    """The LSTM or GRU cell ``node``'s body computes exactly, else None."""
    body = node.body
    if node.op != "scan" or body is None or len(node.inputs) < 2:
        return None
    xs = node.inputs[0]
    if xs.type.rank != 3 or node.attrs.get("axis") not in (0, 1) or xs.type.dtype not in (DType.f32, DType.f64):
        return None
    k = node.attrs.get("n_carry")
    if k == 2:
        return _match_lstm(body, xs.type.dtype)
    if k == 1:
        return _match_gru(body, xs.type.dtype)
    return None


class _Body:
    """The body's nodes by result, and the nodes a match used (it must use them all)."""

    def __init__(self, body: Graph) -> None:
        self.body = body
        self.made = {id(v): n for n in body.nodes for v in n.outputs}
        self.used: set[int] = set()

    def node(self, v: Value, op: str, n_in: int | None = None) -> Node | None:
        n = self.made.get(id(v))
        if n is None or n.op != op or (n_in is not None and len(n.inputs) != n_in):
            return None
        self.used.add(id(n))
        return n

    def unary(self, v: Value, op: str) -> Value | None:
        n = self.node(v, op, 1)
        return n.inputs[0] if n is not None else None

    def pair(self, v: Value, op: str) -> tuple[Value, Value] | None:
        n = self.node(v, op, 2)
        return (n.inputs[0], n.inputs[1]) if n is not None else None

    def complete(self) -> bool:
        return len(self.used) == len(self.body.nodes)

    def inside(self, v: Value) -> bool:
        return id(v) in self.made or any(v is u for u in self.body.inputs)


def _either(pair: tuple[Value, Value] | None) -> Iterable[tuple[Value, Value]]:
    """Both orders of a commutative op's operands."""
    if pair is not None:
        yield pair
        yield pair[1], pair[0]


def _split(m: _Body, v: Value, parts: int, hidden: int | None) -> tuple[Node, int] | None:
    """(split node, index) when ``v`` is one of ``parts`` equal pieces along the last axis."""
    n = m.made.get(id(v))
    if n is None or n.op != "split" or len(n.outputs) != parts or len(n.inputs) != 1:
        return None
    rank = n.inputs[0].type.rank
    sizes = n.attrs.get("sizes")
    if n.attrs.get("axis") not in (-1, rank - 1) or not isinstance(sizes, list) or len(set(sizes)) != 1:
        return None
    if not isinstance(sizes[0], int) or (hidden is not None and sizes[0] != hidden):
        return None
    m.used.add(id(n))
    return n, next(i for i, o in enumerate(n.outputs) if o is v)


def _hidden_proj(m: _Body, v: Value, h: Value) -> tuple[Value, Value | None] | None:
    """(w_hh, b_hh) when ``v`` is ``h @ w_hh`` (+ b_hh, fused or not), both from outside the body."""
    n = m.made.get(id(v))
    w: Value | None = None
    b: Value | None = None
    if n is not None and n.op == "linear" and n.attrs.get("act") == "none" and n.inputs[0] is h:
        m.used.add(id(n))
        w, b = n.inputs[1], (n.inputs[2] if len(n.inputs) > 2 else None)
    elif n is not None and n.op == "matmul" and n.inputs[0] is h:
        m.used.add(id(n))
        w = n.inputs[1]
    elif n is not None and n.op == "add":
        for a, c in _either(m.pair(v, "add")):
            mm = m.made.get(id(a))
            if mm is not None and mm.op == "matmul" and mm.inputs[0] is h and c.type.rank == 1:
                m.used.add(id(mm))
                w, b = mm.inputs[1], c
                break
    if w is None or m.inside(w) or (b is not None and m.inside(b)) or w.type.rank != 2:
        return None
    return w, b


def _outputs(body: Graph, carries: int) -> list[Value] | None:
    """The new carries, when the body emits nothing or exactly the new h."""
    outs = [v for _, v in body.outputs]
    if len(outs) == carries or (len(outs) == carries + 1 and outs[carries] is outs[0]):
        return outs[:carries]
    return None


def _typed(cell: RnnCell, body: Graph, dtype: DType) -> RnnCell | None:
    """``cell`` when every weight has the body's dtype and the shapes of a cell of this size."""
    g, hid = cell.gates, cell.hidden
    if body.inputs[0].type.shape[-1].value != g * hid:
        return None
    want: dict[int, tuple[int, ...]] = {id(cell.w_hh): (hid, g * hid)}
    if cell.b_hh is not None:
        want[id(cell.b_hh)] = (g * hid,)
    for v in (cell.w_hh, cell.b_hh):
        if v is None:
            continue
        if v.type.dtype != dtype or tuple(d.value for d in v.type.shape) != want[id(v)]:
            return None
    if any(h.type.dtype != dtype or h.type.shape[-1].value != hid or h.type.rank != 2 for h in body.inputs[1:]):
        return None
    return cell


def _match_lstm(body: Graph, dtype: DType) -> RnnCell | None:
    x_t, h, c = body.inputs
    outs = _outputs(body, 2)
    if outs is None:
        return None
    h2, c2 = outs
    m = _Body(body)
    gates = _lstm_state(m, c2, c)
    if gates is None:
        return None
    o = None
    for so, tc in _either(m.pair(h2, "mul")):
        if m.unary(tc, "tanh") is c2 and (o := m.unary(so, "sigmoid")) is not None:
            break
        o = None
    if o is None or (where := _split(m, o, 4, None)) is None or where[1] != 3:
        return None
    split, _ = where
    i, f, g = gates
    if [i, f, g] != split.outputs[:3]:
        return None
    for a, rv in _either(m.pair(split.inputs[0], "add")):
        if a is x_t and (proj := _hidden_proj(m, rv, h)) is not None:
            cell = RnnCell("lstm", split.attrs["sizes"][0], proj[0], proj[1])
            return _typed(cell, body, dtype) if m.complete() else None
    return None


def _lstm_state(m: _Body, c2: Value, c: Value) -> tuple[Value, Value, Value] | None:
    """(i, f, g) when ``c2`` is ``sigmoid(f) * c + sigmoid(i) * tanh(g)``."""
    for fc, ig in _either(m.pair(c2, "add")):
        for sf, cc in _either(m.pair(fc, "mul")):
            if cc is not c or (f := m.unary(sf, "sigmoid")) is None:
                continue
            for si, tg in _either(m.pair(ig, "mul")):
                i, g = m.unary(si, "sigmoid"), m.unary(tg, "tanh")
                if i is not None and g is not None:
                    return i, f, g
    return None


def _match_gru(body: Graph, dtype: DType) -> RnnCell | None:
    x_t, h = body.inputs
    outs = _outputs(body, 1)
    if outs is None:
        return None
    m = _Body(body)
    got = _gru_update(m, outs[0], h)
    if got is None:
        return None
    z_pre, n_pre = got
    xz_hz = m.pair(z_pre, "add")
    n_parts = m.pair(n_pre, "add")
    if xz_hz is None or n_parts is None:
        return None
    for xn, rh in _either(n_parts):
        xs_split = _split(m, xn, 3, None)
        if xs_split is None or xs_split[1] != 2 or xs_split[0].inputs[0] is not x_t:
            continue
        xsn, hidden = xs_split[0], xs_split[0].attrs["sizes"][0]
        for r_v, hn in _either(m.pair(rh, "mul")):
            r_pre = m.unary(r_v, "sigmoid")
            hs_split = _split(m, hn, 3, hidden)
            if r_pre is None or hs_split is None or hs_split[1] != 2:
                continue
            hsn = hs_split[0]
            if not _gate_sum(m, r_pre, xsn, hsn, 0) or not _gate_sum(m, z_pre, xsn, hsn, 1):
                return None
            proj = _hidden_proj(m, hsn.inputs[0], h)
            if proj is None or not m.complete():
                return None
            return _typed(RnnCell("gru", hidden, proj[0], proj[1]), body, dtype)
    return None


def _gate_sum(m: _Body, v: Value, xsplit: Node, hsplit: Node, index: int) -> bool:
    """Whether ``v`` is ``xsplit[index] + hsplit[index]``."""
    return any(a is xsplit.outputs[index] and b is hsplit.outputs[index] for a, b in _either(m.pair(v, "add")))


def _gru_update(m: _Body, h2: Value, h: Value) -> tuple[Value, Value] | None:
    """(z's pre-activation, n's pre-activation) when ``h2`` is ``(1 - z) * n + z * h``."""
    for left, right in _either(m.pair(h2, "add")):
        for omz, n_v in _either(m.pair(left, "mul")):
            sub = m.pair(omz, "sub")
            if sub is None or not _is_one(m, sub[0]):
                continue
            z = sub[1]
            if not any(a is z and b is h for a, b in _either(m.pair(right, "mul"))):
                continue
            z_pre, n_pre = m.unary(z, "sigmoid"), m.unary(n_v, "tanh")
            if z_pre is not None and n_pre is not None:
                return z_pre, n_pre
    return None


def _is_one(m: _Body, v: Value) -> bool:
    """Whether ``v`` is the scalar constant 1 (made inside the body or outside it)."""
    n = v.producer if v.producer is not None else m.made.get(id(v))
    if n is None or n.op != "constant" or v.type.rank != 0:
        return False
    if id(v) in m.made:
        m.used.add(id(n))
    value = n.attrs.get("value")
    return isinstance(value, (int, float)) and not isinstance(value, bool) and float(value) == 1.0


# -- the input projection ------------------------------------------------------------------


def with_projection(cell: RnnCell, node: Node, graph: Graph, readers: int = 1) -> RnnCell | None:
    """``cell`` with ``x, w_ih, b_ih`` when xs is ``linear(x, w_ih, b)`` / ``x @ w_ih`` read by ``node`` only
    (``readers``: that many reads in all; a training step's backward scan walks the same xs)."""
    xs = node.inputs[0]
    p = xs.producer
    if p is None or p not in graph.nodes:
        return None
    if p.op == "linear" and p.attrs.get("act") == "none":
        x, w, b = p.inputs[0], p.inputs[1], (p.inputs[2] if len(p.inputs) > 2 else None)
    elif p.op == "matmul" and len(p.inputs) == 2:
        x, w, b = p.inputs[0], p.inputs[1], None
    else:
        return None
    if x.type.rank != 3 or w.type.rank != 2 or x.type.dtype != xs.type.dtype or w.type.dtype != xs.type.dtype:
        return None
    if b is not None and b.type.dtype != xs.type.dtype:
        return None
    if use_counts(graph)[xs] != readers or xs in node.inputs[1:]:
        return None
    return RnnCell(cell.kind, cell.hidden, cell.w_hh, cell.b_hh, x, w, b, p)


__all__ = ["RnnCell", "MARKS", "match_cell", "fused_cell", "with_projection", "absorbed_projections", "skipped_nodes"]
