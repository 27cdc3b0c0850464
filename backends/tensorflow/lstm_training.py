"""A training step's LSTM as TensorFlow's fused LSTM kernels: ``BlockLSTMV2`` and ``BlockLSTMGradV2``.

:func:`dlir.backends.lstm_training.trained_lstms` finds the forward and backward
scans autodiff made of an LSTM and what the step reads of them. ``BlockLSTMV2``
runs the whole sequence (gates packed i, f, g, o: dlir's order) and returns every
step's gates and states, which ``BlockLSTMGradV2`` reads to run the whole
backward: two kernels instead of two ``tf.while_loop``s of ~30 small ops a step.
Both take time-major sequences, one weight ``[w_ih; w_hh]`` and one bias, walk
forwards only (a reverse scan flips its sequence before and after), and have CPU
and GPU kernels.

The backward kernel takes the cotangents of every step's h and c: the last h's
and c's are added at the last step.
"""

from __future__ import annotations

from typing import Protocol

from dlir.backends.codegen import loc_comment
from dlir.backends.lstm_training import TrainedLstm, instance_name, last_carries, saved_is_emit

from dlir.ir.graph import Value


class Scope(Protocol):
    """What the code generator's function scope gives (backends/tensorflow/codegen.py)."""

    lines: list[str]

    def arg(self, v: Value) -> str: ...

    def fresh(self, base: str) -> str: ...

    def bind(self, v: Value) -> str: ...


_NO_PEEPHOLE = "use_peephole=False"


def forward_lines(pair: TrainedLstm, scope: Scope) -> None:
    """The forward scan as ``BlockLSTMV2``: every step's gates, cell states and hidden states."""
    node, cell = pair.forward, pair.cell
    assert cell.x is not None and cell.w_ih is not None
    axis, reverse = node.attrs["axis"], node.attrs["reverse"]
    base = instance_name(cell)
    keys = ("x_seq", "w", "b", "h0", "c0", "peep", "steps", "i", "cs", "f", "o", "ci", "co", "hs")
    n = {key: scope.fresh(f"{base}_{key}") for key in keys}
    pair.names = n
    where = loc_comment(node.loc).replace("  # ", "", 1) or "its source"
    bias = _bias(cell.b_ih, cell.b_hh, scope, cell.gates * cell.hidden)
    out = scope.lines
    out += [
        f"# the scan at {where} and its backward: TensorFlow's fused LSTM kernels",
        "# (BlockLSTMV2 and BlockLSTMGradV2), time-major, forwards",
        f"{n['x_seq']} = {_to_kernel(scope.arg(cell.x), axis, reverse)}",
        f"{n['w']} = tf.concat([{scope.arg(cell.w_ih)}, {scope.arg(cell.w_hh)}], 0)",
        f"{n['b']} = {bias}",
        f"{n['h0']}, {n['c0']} = {scope.arg(node.inputs[1])}, {scope.arg(node.inputs[2])}",
        f"{n['peep']} = tf.zeros([{cell.hidden}], {n['w']}.dtype)  # no peephole connections",
        f"{n['steps']} = tf.cast(tf.shape({n['x_seq']})[0], tf.int64)",
        f"{', '.join(n[k] for k in ('i', 'cs', 'f', 'o', 'ci', 'co', 'hs'))} = tf.raw_ops.BlockLSTMV2("
        f"seq_len_max={n['steps']}, x={n['x_seq']}, cs_prev={n['c0']}, h_prev={n['h0']}, w={n['w']}, "
        f"wci={n['peep']}, wcf={n['peep']}, wco={n['peep']}, b={n['b']}, cell_clip=-1.0, {_NO_PEEPHOLE})"
        f"{loc_comment(node.loc)}",
    ]
    for v, saved in saved_is_emit(node):
        if not saved:  # the one other emit is h'
            out.append(f"{scope.bind(v)} = {_from_kernel(n['hs'], axis, reverse)}")
    h_last, c_last = node.outputs[-2:]
    out.append(f"{scope.bind(h_last)}, {scope.bind(c_last)} = {n['hs']}[-1], {n['cs']}[-1]")


def backward_lines(pair: TrainedLstm, scope: Scope) -> None:
    """The backward scan and the products of its gates' cotangents as ``BlockLSTMGradV2``."""
    node, cell, n = pair.backward, pair.cell, pair.names
    axis, reverse = pair.forward.attrs["axis"], pair.forward.attrs["reverse"]
    base = instance_name(cell)
    d = {key: scope.fresh(f"{base}_{key}") for key in ("h_grad", "cs_grad", "d_x_seq", "d_c0", "d_h0", "d_w", "d_b")}
    g_h, g_c = scope.arg(node.inputs[2]), scope.arg(node.inputs[3])
    out = scope.lines
    if pair.g_hs is None:
        out.append(f"{d['h_grad']} = tf.concat([tf.zeros_like({n['hs']}[:-1]), {g_h}[None]], 0)")
    else:
        g_hs = scope.fresh(f"{base}_g_hs")
        out.append(f"{g_hs} = {_to_kernel(scope.arg(pair.g_hs), axis, reverse)}")
        out.append(f"{d['h_grad']} = tf.concat([{g_hs}[:-1], {g_hs}[-1:] + {g_h}[None]], 0)")
    out.append(f"{d['cs_grad']} = tf.concat([tf.zeros_like({n['cs']}[:-1]), {g_c}[None]], 0)")
    gates = ", ".join(f"{k}={n[k]}" for k in ("i", "cs", "f", "o", "ci", "co"))
    out.append(
        f"{d['d_x_seq']}, {d['d_c0']}, {d['d_h0']}, {d['d_w']}, _, _, _, {d['d_b']} = tf.raw_ops.BlockLSTMGradV2("
        f"seq_len_max={n['steps']}, x={n['x_seq']}, cs_prev={n['c0']}, h_prev={n['h0']}, w={n['w']}, "
        f"wci={n['peep']}, wcf={n['peep']}, wco={n['peep']}, b={n['b']}, {gates}, h={n['hs']}, "
        f"cs_grad={d['cs_grad']}, h_grad={d['h_grad']}, {_NO_PEEPHOLE}){loc_comment(node.loc)}"
    )
    assert cell.w_ih is not None
    rows = cell.w_ih.type.shape[0].value  # the input size: w's first rows are w_ih's
    exprs = {
        "d_x": _from_kernel(d["d_x_seq"], axis, reverse),
        "d_w_ih": f"{d['d_w']}[:{rows}]",
        "d_w_hh": f"{d['d_w']}[{rows}:]",
        "d_b": d["d_b"],
        "d_b_hh": d["d_b"],
        "d_h0": d["d_h0"],
        "d_c0": d["d_c0"],
    }
    for v, which in [*pair.results.items(), *last_carries(pair)]:
        out.append(f"{scope.bind(v)} = {exprs[which]}")


def _to_kernel(x: str, axis: int, reverse: bool) -> str:
    """``x`` [B, T, ..] (axis 1) or [T, B, ..] as the kernels' [T, B, ..], in its scan's walking order."""
    expr = f"tf.transpose({x}, [1, 0, 2])" if axis == 1 else x
    return f"tf.reverse({expr}, [0])" if reverse else expr


def _from_kernel(x: str, axis: int, reverse: bool) -> str:
    """A kernel's [T, B, ..] result back in the scan's layout and order (the inverse of _to_kernel)."""
    expr = f"tf.reverse({x}, [0])" if reverse else x
    return f"tf.transpose({expr}, [1, 0, 2])" if axis == 1 else expr


def _bias(b_ih: Value | None, b_hh: Value | None, scope: Scope, size: int) -> str:
    """The kernel's one bias: the projection's and the recurrence's summed, or zeros without either."""
    parts = [scope.arg(b) for b in (b_ih, b_hh) if b is not None]
    return " + ".join(parts) if parts else f"tf.zeros([{size}], tf.float32)"
