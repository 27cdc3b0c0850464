"""ONNX ``LSTM``, ``GRU`` and ``RNN`` as dlir ``scan`` nodes, one per direction.

Each direction becomes what the standard library's layer writes (``dlir/stdlib/nn.dlir``):
the input projection of every step at once, ``xw = x @ w_ih + b``, then a scan whose body
is one cell step reading ``w_hh`` by closure. The weights are re-packed at import into
dlir's layout, ``[in, gates * hidden]`` with PyTorch's gate order (LSTM i, f, g, o from
ONNX's i, o, f, c; GRU r, z, n from z, r, h): with the default activations, no clip and no
peepholes, the body is then exactly the cell the ``rnn`` pass marks, so torch and ONNX run
an imported LSTM/GRU as one fused kernel again at -O2 (dlir -> ONNX -> dlir keeps its
``LSTM``/``GRU`` nodes).

``layout`` 0 (``x: [T, B, in]``) scans along axis 0, layout 1 (``[B, T, in]``) along axis 1.
A reverse direction is a reverse scan: its emits stay aligned with the input steps, as
ONNX's ``Y`` is. ``Y`` stacks the directions on the axis after time (``[T, dirs, B, H]`` /
``[B, T, dirs, H]``), ``Y_h``/``Y_c`` before the batch (``[dirs, B, H]`` / ``[B, dirs, H]``).

Refused with the node named: ``sequence_lens`` that is not provably every sequence's full
length (padding would need masking the scan does not do), activations other than
Sigmoid, Tanh and Relu, and LSTM's ``input_forget``. ``clip`` (applied to every gate's
pre-activation, as ONNX Runtime does) and peepholes are written into the body, which then
runs as a loop, not a fused kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dlir.importer.builder import Builder, DimFill, Operand, handles
from dlir.importer.onnx_import import ident
from dlir.importer.onnx_loop import broadcast_constant
from dlir.ir.builder import emit, emit1
from dlir.ir.graph import Graph, Value
from dlir.ir.scan import emit_scan, scan_body, step_type
from dlir.ir.types import Dim, DType


@dataclass(frozen=True)
class Kind:
    """One ONNX recurrent op: its gates, their order and its default activations."""

    name: str  # "lstm" | "gru" | "rnn"
    gates: int
    onnx_block: tuple[int, ...]  # dlir's (PyTorch's) gate j is ONNX's block onnx_block[j]
    activations: tuple[str, ...]  # the defaults, one direction's


KINDS = {
    "LSTM": Kind("lstm", 4, (0, 2, 3, 1), ("sigmoid", "tanh", "tanh")),
    "GRU": Kind("gru", 3, (1, 0, 2), ("sigmoid", "tanh")),
    "RNN": Kind("rnn", 1, (0,), ("tanh",)),
}
ACTIVATIONS = {"sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu"}


@dataclass
class Step:
    """What one direction's body needs: its weights (outer values) and options."""

    kind: Kind
    hidden: int
    w_hh: Value
    b_hh: Value | None  # GRU only: the recurrent bias stays in the body (reset gate after it)
    acts: list[str]
    clip: float | None
    peep: list[Value] | None  # LSTM peepholes [i, o, f], each [H]
    linear_before_reset: bool


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@handles("LSTM", "GRU", "RNN")
def _recurrent(b: Builder, ins: list[Operand], a: dict[str, Any]) -> Any:
    kind = KINDS[b.node_op]
    ins = ins + [None] * (8 - len(ins))
    x, w, r, bias, lens, h0, c0, peep = ins[:8]
    if kind.name != "lstm":
        c0 = peep = None
    if b.rank(x) != 3:
        raise b.error(f"{b.node_op}: X must be [seq, batch, in] (or layout 1: [batch, seq, in]), got {b.type_of(x)}")
    layout = int(a.get("layout", 0))
    if layout not in (0, 1):
        raise b.error(f"{b.node_op}: unknown layout {layout}", "ONNX defines layout 0 and 1")
    direction = _text(a.get("direction", "forward"))
    dirs = {"forward": [False], "reverse": [True], "bidirectional": [False, True]}.get(direction)
    if dirs is None:
        raise b.error(f"{b.node_op}: unknown direction '{direction}'", "forward, reverse or bidirectional")
    if int(a.get("input_forget", 0)):
        raise b.error("LSTM with input_forget=1 (coupled input and forget gates) is not supported")
    hidden = int(a["hidden_size"]) if "hidden_size" in a else _static(b, b.shape(r)[-1], "R's last dim")
    seq_axis, batch_axis = (0, 1) if layout == 0 else (1, 0)
    _check_full_length(b, lens, b.shape(x)[seq_axis])
    acts = _activations(b, kind, a, len(dirs))
    clip = float(a["clip"]) if "clip" in a else None
    lbr = bool(a.get("linear_before_reset", 0)) and kind.name == "gru"
    batch = b.shape(x)[batch_axis]
    base = ident(b.node_name, set()).strip("_") or kind.name  # torch names nodes "/lstm/LSTM"
    results: list[list[Value]] = []
    for d, reverse in enumerate(dirs):
        tag = f"{base}_{'reverse' if reverse else 'forward'}" if len(dirs) > 1 else base
        w_ih = _weight(b, _packed(b, w, d, kind, hidden), f"{tag}_w_ih")
        w_hh = _weight(b, _packed(b, r, d, kind, hidden), f"{tag}_w_hh")
        wb, rb = _biases(b, bias, d, kind, hidden)
        # As the stdlib's layers: both biases in the projection, but GRU's recurrent one stays
        # behind the matmul, where the reset gate multiplies it.
        if kind.name == "gru":
            in_bias, b_hh = wb, rb
        else:
            in_bias = None if wb is None else b.op("add", [wb, rb])
            b_hh = None
        xs = b.op("matmul", [x, w_ih])
        if in_bias is not None:
            xs = b.op("add", [xs, _weight(b, in_bias, f"{tag}_b_ih")])
        step = Step(
            kind,
            hidden,
            w_hh,
            None if b_hh is None else _weight(b, b_hh, f"{tag}_b_hh"),
            acts[d],
            clip,
            _peepholes(b, peep, d, hidden, tag),
            lbr,
        )
        dt = b.type_of(xs).dtype
        inits = [_state(b, h0, d, layout, batch, hidden, dt)]
        if kind.name == "lstm":
            inits.append(_state(b, c0, d, layout, batch, hidden, dt))
        results.append(_scan(b, b.tensor(xs), inits, step, seq_axis, reverse, b.out_names[:1] != [""]))
    return _outputs(b, results, layout, kind)


def _static(b: Builder, d: Dim, what: str) -> int:
    if not d.is_static:
        raise b.error(f"{b.node_op}: {what} must be a number, got {d}")
    return d.value


def _weight(b: Builder, v: Operand, name: str) -> Value:
    """``v`` as a value; re-packed initializers become params called ``name`` (weights stay weights)."""
    if isinstance(v, np.ndarray) and v.dtype != object and id(v) not in b._materialized:
        return b._param(name, v)
    return b.tensor(v)


def _check_full_length(b: Builder, lens: Operand, seq: Dim) -> None:
    """Refuse ``sequence_lens`` unless every length is known to be the sequence length."""
    if lens is None:
        return
    fill = broadcast_constant(lens)
    if fill is not None and seq.is_static and fill.size > 0 and bool(np.all(fill == seq.value)):
        return  # a known length broadcast to a symbolic batch
    if isinstance(lens, Value):
        raise b.error(
            f"{b.node_op}: sequence_lens is computed at run time; dlir imports full-length sequences only",
            "dlir's scan runs every step: export without sequence_lens (or with every length equal to the "
            "sequence length, known at export)",
        )
    for v in np.asarray(lens).reshape(-1):
        # Known lengths: numbers, symbolic dims (Shape of X), or tf2onnx's ``[T] * B`` record
        length = v.value if isinstance(v, DimFill) else v
        if isinstance(length, (int, np.integer)) and not isinstance(length, bool):
            length = Dim.of(int(length))
        if isinstance(length, Dim) and length == seq:
            continue
        raise b.error(
            f"{b.node_op}: sequence_lens holds {length}, not the sequence length {seq}",
            "dlir's scan runs every step: shorter (padded) sequences would need masking; pack them to full length",
        )


def _activations(b: Builder, kind: Kind, a: dict[str, Any], n_dirs: int) -> list[list[str]]:
    """The dlir ops of each direction's activations (ONNX lists them direction after direction)."""
    n = len(kind.activations)
    given = [_text(s).lower() for s in a.get("activations", [])]
    if not given:
        return [list(kind.activations)] * n_dirs
    if len(given) == n and n_dirs == 2:
        given = given * 2
    if len(given) != n * n_dirs:
        raise b.error(f"{b.node_op}: {len(given)} activations given, {n * n_dirs} expected")
    bad = sorted({s for s in given if s not in ACTIVATIONS})
    if bad:
        raise b.error(
            f"{b.node_op}: the activation(s) {', '.join(bad)} are not supported",
            "dlir imports recurrent ops with Sigmoid, Tanh and Relu activations",
        )
    return [[ACTIVATIONS[s] for s in given[i * n : (i + 1) * n]] for i in range(n_dirs)]


def _direction(b: Builder, v: Operand, d: int, axis: int = 0) -> Operand:
    """``v[d]``: one direction's slice of a tensor whose ``axis`` counts the directions."""
    return b.op("squeeze", [b.op("slice", [v], starts=[d], ends=[d + 1], axes=[axis], steps=[1])], axes=[axis])


def _reorder(b: Builder, v: Operand, kind: Kind, hidden: int) -> Operand:
    """Gate blocks along axis 0 from ONNX's order to dlir's."""
    if kind.gates == 1:
        return v
    idx = np.concatenate([np.arange(g * hidden, (g + 1) * hidden) for g in kind.onnx_block]).astype(np.int64)
    return b.op("gather", [v, idx], axis=0)


def _packed(b: Builder, w: Operand, d: int, kind: Kind, hidden: int) -> Operand:
    """W or R ``[dirs, G*H, K]`` -> direction d's ``[K, G*H]`` in dlir's gate order."""
    return b.op("transpose", [_reorder(b, _direction(b, w, d), kind, hidden)], perm=[1, 0])


def _biases(b: Builder, bias: Operand, d: int, kind: Kind, hidden: int) -> tuple[Operand, Operand]:
    """(Wb, Rb) of direction d in dlir's gate order; (None, None) where the node has no B (zeros)."""
    if bias is None:
        return None, None
    size = kind.gates * hidden
    both = _direction(b, bias, d)
    wb = b.op("slice", [both], starts=[0], ends=[size], axes=[0], steps=[1])
    rb = b.op("slice", [both], starts=[size], ends=[2 * size], axes=[0], steps=[1])
    return _reorder(b, wb, kind, hidden), _reorder(b, rb, kind, hidden)


def _peepholes(b: Builder, peep: Operand, d: int, hidden: int, tag: str) -> list[Value] | None:
    """LSTM's P[d] as [p_i, p_o, p_f], or None when absent or all zeros (then the cell fuses)."""
    if peep is None:
        return None
    p = _direction(b, peep, d)
    if isinstance(p, np.ndarray) and not np.any(p):
        return None
    return [
        _weight(b, b.op("slice", [p], starts=[k * hidden], ends=[(k + 1) * hidden], axes=[0], steps=[1]), n)
        for k, n in enumerate((f"{tag}_p_i", f"{tag}_p_o", f"{tag}_p_f"))
    ]


def _state(b: Builder, init: Operand, d: int, layout: int, batch: Dim, hidden: int, dt: DType) -> Value:
    """Direction d's initial state ``[B, H]``: the node's (``[dirs, B, H]``, layout 1 ``[B, dirs, H]``), or zeros."""
    if init is not None and not _known_zero(init):
        return b.tensor(_direction(b, init, d, layout))
    # A fresh broadcast zero, as the stdlib writes it: the ONNX exporter leaves such a state out.
    zero = emit1(b.graph, "constant", [], {"value": 0.0, "dtype": dt})
    return emit1(b.graph, "broadcast_to", [zero], {"shape": [batch.value if batch.is_static else batch, hidden]})


_ZERO_PRESERVING = {"slice", "squeeze", "unsqueeze", "reshape", "broadcast_to", "gather", "transpose", "cast"}


def _known_zero(v: Operand) -> bool:
    """Whether ``v`` is all zeros for sure (torch writes zero states as ConstantOfShape -> Slice)."""
    while isinstance(v, Value) and v.producer is not None and v.producer.op in _ZERO_PRESERVING:
        v = v.producer.inputs[0]
    if isinstance(v, Value) and v.producer is not None and v.producer.op == "constant":
        return not np.any(np.asarray(v.producer.attrs["value"]))
    return isinstance(v, np.ndarray) and v.dtype != object and not np.any(v)


# -- the cell step -----------------------------------------------------------------------------


class _Body:
    """Emitting into one scan body."""

    def __init__(self, body: Graph, step: Step) -> None:
        self.body, self.step = body, step

    def __call__(self, op: str, *ins: Value, **attrs: Any) -> Value:
        return emit1(self.body, op, list(ins), attrs)

    def split(self, v: Value, parts: int) -> list[Value]:
        return emit(self.body, "split", [v], {"sizes": [self.step.hidden] * parts, "axis": -1})

    def act(self, name: str, v: Value) -> Value:
        if self.step.clip is not None:
            v = self("clip", v, min=-self.step.clip, max=self.step.clip)
        return self(name, v)

    def recur(self, h: Value, w: Value, bias: Value | None) -> Value:
        y = self("matmul", h, w)
        return y if bias is None else self("add", y, bias)


def _scan(
    b: Builder, xs: Value, inits: list[Value], step: Step, axis: int, reverse: bool, with_ys: bool
) -> list[Value]:
    """One direction: ``[ys (if emit), h_last, (c_last)]``."""
    names = ["xw_t", "h", "c"][: 1 + len(inits)]
    body = scan_body(b.graph, step_type(xs.type, axis), [v.type for v in inits], names)
    e = _Body(body, step)
    news = {"lstm": _lstm_step, "gru": _gru_step, "rnn": _rnn_step}[step.kind.name](e, body.inputs)
    body.outputs = [(n, v) for n, v in zip(names[1:], news, strict=True)]
    if with_ys:
        body.outputs.append(("y", news[0]))
    return emit_scan(b.graph, xs, inits, body, axis=axis, reverse=reverse)


def _lstm_step(e: _Body, ins: list[Value]) -> list[Value]:
    x_t, h, c = ins
    s = e.step
    f_act, g_act, h_act = s.acts
    i, f, g, o = e.split(e("add", x_t, e.recur(h, s.w_hh, None)), 4)
    if s.peep is not None:
        i = e("add", i, e("mul", s.peep[0], c))
        f = e("add", f, e("mul", s.peep[2], c))
    c2 = e("add", e("mul", e.act(f_act, f), c), e("mul", e.act(f_act, i), e.act(g_act, g)))
    if s.peep is not None:
        o = e("add", o, e("mul", s.peep[1], c2))
    # ONNX Runtime clips gate pre-activations only, not the new cell state before h's activation.
    h2 = e("mul", e.act(f_act, o), e(h_act, c2))
    return [h2, c2]


def _gru_step(e: _Body, ins: list[Value]) -> list[Value]:
    x_t, h = ins
    s = e.step
    f_act, g_act = s.acts
    xr, xz, xn = e.split(x_t, 3)
    if s.linear_before_reset:
        hr, hz, hn = e.split(e.recur(h, s.w_hh, s.b_hh), 3)
        r = e.act(f_act, e("add", xr, hr))
        n_pre = e("add", xn, e("mul", r, hn))
    else:  # the reset gate scales h before the matmul of the candidate's block
        w_rz, w_n = _columns(e, s.w_hh, s.hidden)
        b_rz, b_n = _columns(e, s.b_hh, s.hidden) if s.b_hh is not None else (None, None)
        hr, hz = e.split(e.recur(h, w_rz, b_rz), 2)
        r = e.act(f_act, e("add", xr, hr))
        n_pre = e("add", xn, e.recur(e("mul", r, h), w_n, b_n))
    z = e.act(f_act, e("add", xz, hz))
    n = e.act(g_act, n_pre)
    one = e("constant", value=1.0, dtype=x_t.type.dtype)
    return [e("add", e("mul", e("sub", one, z), n), e("mul", z, h))]


def _columns(e: _Body, v: Value, hidden: int) -> tuple[Value, Value]:
    """The r, z columns and the n columns of a GRU weight ``[.., 3H]`` (or bias ``[3H]``)."""
    axis = v.type.rank - 1
    rz = e("slice", v, starts=[0], ends=[2 * hidden], axes=[axis], steps=[1])
    n = e("slice", v, starts=[2 * hidden], ends=[3 * hidden], axes=[axis], steps=[1])
    return rz, n


def _rnn_step(e: _Body, ins: list[Value]) -> list[Value]:
    x_t, h = ins
    return [e.act(e.step.acts[0], e("add", x_t, e.recur(h, e.step.w_hh, None)))]


# -- outputs ---------------------------------------------------------------------------------


def _outputs(b: Builder, results: list[list[Value]], layout: int, kind: Kind) -> list[Any]:
    """Y, Y_h (and Y_c) from each direction's ``[ys?, h_last, c_last?]``."""
    has_y = b.out_names[:1] != [""]
    per_dir = [res[1:] if has_y else res for res in results]
    out: list[Any] = []
    if has_y:  # [T, B, H] -> [T, dirs, B, H] (layout 1: [B, T, H] -> [B, T, dirs, H])
        out.append(_stack(b, [res[0] for res in results], 1 if layout == 0 else 2))
    else:
        out.append(None)
    for j in range(2 if kind.name == "lstm" else 1):  # [B, H] -> [dirs, B, H] (layout 1: [B, dirs, H])
        out.append(_stack(b, [lasts[j] for lasts in per_dir], 0 if layout == 0 else 1))
    return out


def _stack(b: Builder, vs: list[Value], axis: int) -> Value:
    parts = [b.op("unsqueeze", [v], axes=[axis]) for v in vs]
    return parts[0] if len(parts) == 1 else b.op("concat", parts, axis=axis)


__all__ = ["KINDS"]
