"""A training step's LSTM on the CPU as oneDNN's training kernels: what ``nn.LSTM`` + autograd run.

:func:`dlir.backends.lstm_training.trained_lstms` finds the forward and backward
scans autodiff made of an LSTM and what the step reads of them. On the CPU,
``torch.ops.aten.mkldnn_rnn_layer`` (``train=True``) runs the whole forward and
returns a workspace, and ``mkldnn_rnn_layer_backward`` runs the whole backward
from it: the pair ``nn.LSTM``'s forward and its autograd node call, bit for bit.
They are oneDNN's, so the code generator writes them only for a module that runs
on the CPU (``render(..., cpu_kernels=True)``: a ``TorchRunner`` on the CPU, the
Trainer's or ``dlir.compile``'s); the file ``dlirc compile`` writes runs
anywhere and keeps the loops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dlir.backends.codegen import loc_comment
from dlir.backends.lstm_training import TrainedLstm, instance_name, last_carries, saved_is_emit

from dlir.ir.graph import Value

if TYPE_CHECKING:
    from dlir.backends.torch.codegen import Scope

_LSTM_MODE = 2  # ideep's rnn_kind: RNN_RELU, RNN_TANH, LSTM, GRU (the layer op takes LSTM only)


def forward_lines(pair: TrainedLstm, scope: Scope) -> list[str]:
    """The forward scan as ``mkldnn_rnn_layer(train=True)``: hidden states, last h and c, workspace."""
    node, cell = pair.forward, pair.cell
    assert cell.x is not None and cell.w_ih is not None
    ns, names = scope.ns, scope.names
    axis, reverse = node.attrs["axis"], node.attrs["reverse"]
    x, h0, c0 = names[cell.x], names[node.inputs[1]], names[node.inputs[2]]
    keys = ("x_seq", "w_ih_t", "w_hh_t", "b_ih", "b_hh", "h0", "c0", "hs", "h_n", "c_n", "workspace")
    n = {key: ns.name(f"{instance_name(cell)}_{key}") for key in keys}
    pair.names = n
    gates = cell.gates * cell.hidden
    seq = f"{x}.transpose(0, 1).contiguous()" if axis == 1 else f"{x}.contiguous()"
    where = loc_comment(node.loc).replace("  # ", "", 1) or "its source"
    lines = [
        f"# the scan at {where} and its backward: oneDNN's LSTM training kernels, as nn.LSTM",
        "# and its autograd run them on the CPU (time-major and contiguous, as they take them)",
        f"{n['x_seq']} = {seq}",
        f"{n['w_ih_t']}, {n['w_hh_t']} = {names[cell.w_ih]}.t().contiguous(), {names[cell.w_hh]}.t().contiguous()",
        f"{n['b_ih']} = {_bias(cell.b_ih, names, x, gates)}",
        f"{n['b_hh']} = {_bias(cell.b_hh, names, x, gates)}",
        f"{n['h0']}, {n['c0']} = {h0}.contiguous(), {c0}.contiguous()",
        "with torch.enable_grad():  # the kernel keeps its workspace only in grad mode (nothing here needs grad)",
        f"    {n['hs']}, {n['h_n']}, {n['c_n']}, {n['workspace']} = torch.ops.aten.mkldnn_rnn_layer("
        f"{n['x_seq']}, {n['w_ih_t']}, {n['w_hh_t']}, {n['b_ih']}, {n['b_hh']}, {n['h0']}, {n['c0']}, "
        f"reverse={reverse}, batch_sizes=[], mode={_LSTM_MODE}, hidden_size={cell.hidden}, num_layers=1, "
        f"has_biases=True, bidirectional=False, batch_first=False, train=True){loc_comment(node.loc)}",
    ]
    for v, saved in saved_is_emit(node):
        if not saved:  # the one other emit is h'
            names[v] = ns.name(v.name, v)
            lines.append(f"{names[v]} = {n['hs']}.transpose(0, 1)" if axis == 1 else f"{names[v]} = {n['hs']}")
    h_last, c_last = node.outputs[-2:]
    names[h_last], names[c_last] = n["h_n"], n["c_n"]
    return lines


def backward_lines(pair: TrainedLstm, scope: Scope) -> list[str]:
    """The backward scan and the products of its gates' cotangents as ``mkldnn_rnn_layer_backward``."""
    node, cell, n = pair.backward, pair.cell, pair.names
    ns, names = scope.ns, scope.names
    axis, reverse = node.attrs["axis"], pair.forward.attrs["reverse"]
    g_h, g_c = names[node.inputs[2]], names[node.inputs[3]]
    if pair.g_hs is None:
        g_out = "None"
    else:
        g_out = f"{names[pair.g_hs]}.transpose(0, 1).contiguous()" if axis == 1 else f"{names[pair.g_hs]}.contiguous()"
    keys = ("d_x_seq", "d_w_ih_t", "d_w_hh_t", "d_b_ih", "d_b_hh", "d_h0", "d_c0")
    d = {key: ns.name(f"{instance_name(cell)}_{key}") for key in keys}
    call = (
        f"torch.ops.aten.mkldnn_rnn_layer_backward({n['x_seq']}, {n['w_ih_t']}, {n['w_hh_t']}, {n['b_ih']}, "
        f"{n['b_hh']}, {n['h0']}, {n['c0']}, {n['hs']}, {n['h_n']}, {n['c_n']}, {g_out}, {g_h}.contiguous(), "
        f"{g_c}.contiguous(), reverse={reverse}, mode={_LSTM_MODE}, hidden_size={cell.hidden}, num_layers=1, "
        f"has_biases=True, train=True, bidirectional=False, batch_sizes=[], batch_first=False, "
        f"workspace={n['workspace']})"
    )
    lines = [f"{', '.join(d.values())} = {call}{loc_comment(node.loc)}"]
    exprs = {
        "d_x": f"{d['d_x_seq']}.transpose(0, 1)" if axis == 1 else d["d_x_seq"],
        "d_w_ih": f"{d['d_w_ih_t']}.t()",
        "d_w_hh": f"{d['d_w_hh_t']}.t()",
        "d_b": d["d_b_ih"],
        "d_b_hh": d["d_b_hh"],
    }
    for v, which in [*pair.results.items(), *last_carries(pair)]:
        if which in ("d_h0", "d_c0"):
            names[v] = d[which]
        else:
            names[v] = ns.name(v.name, v)
            lines.append(f"{names[v]} = {exprs[which]}")
    return lines


def _bias(b: Value | None, names: dict[Value, str], x: str, size: int) -> str:
    """A bias the kernel takes: the model's, or zeros where it has none."""
    return names[b] if b is not None else f"{x}.new_zeros({size})"
