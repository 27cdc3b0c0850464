"""A marked LSTM/GRU ``scan`` as one ``torch.lstm`` / ``torch.gru`` call: the kernel ``nn.LSTM`` runs.

:func:`dlir.passes.rnn.fused_cell` recognised the cell and its input projection
``xw = x @ w_ih + b_ih`` (whose statement codegen then skips): torch's kernel
takes ``x`` and computes the projection itself. dlir keeps weights as
``[in, gates * hidden]`` (``x @ w``) with gates in PyTorch's order, so torch
gets ``w.t()`` and nothing is permuted. torch runs forward only: a reverse scan
flips the sequence before and the stacked hidden states after.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dlir.backends.codegen import loc_comment

from dlir.ir.graph import Node, Value
from dlir.ir.rnn_cell import RnnCell

if TYPE_CHECKING:
    from dlir.backends.torch.codegen import Scope


def fused_scan_lines(node: Node, cell: RnnCell, scope: Scope) -> list[str]:
    """Statements computing ``node``'s results with one fused call."""
    assert cell.x is not None and cell.w_ih is not None, "fused only with its input projection"
    ns, names = scope.ns, scope.names
    axis, reverse, k = node.attrs["axis"], node.attrs["reverse"], node.attrs["n_carry"]
    n_emit = len(node.outputs) - k
    x = names[cell.x]
    if reverse:
        flipped = ns.name(f"{x}_reversed")
        x_lines = [f"{flipped} = {x}.flip({axis})"]
        x = flipped
    else:
        x_lines = []
    params = [f"{names[cell.w_ih]}.t()", f"{names[cell.w_hh]}.t()"]
    has_bias = cell.b_ih is not None or cell.b_hh is not None
    if has_bias:
        params += [_bias(cell.b_ih, cell.b_hh, names), _bias(cell.b_hh, cell.b_ih, names)]
    inits = [f"{names[v]}.unsqueeze(0)" for v in node.inputs[1:]]
    hx = f"({inits[0]}, {inits[1]})" if cell.kind == "lstm" else inits[0]
    ys = ns.name(f"{node.outputs[0].name}_seq" if n_emit else "rnn_seq")
    lasts = [ns.name(f"{v.name}_n") for v in node.outputs[n_emit:]]
    # torch's kernel takes its options positionally in nn.LSTM; named here, in its schema's names
    options = f"has_biases={has_bias}, num_layers=1, dropout=0.0, train=False, bidirectional=False"
    call = f"torch.{cell.kind}({x}, hx={hx}, params=({', '.join(params)}), {options}, batch_first={axis == 1})"
    where = loc_comment(node.loc).replace("  # ", "", 1) or "its source"
    lines = [f"# the scan at {where}: one fused {cell.kind.upper()} kernel (torch.{cell.kind}), not a loop"]
    lines += x_lines
    lines.append(f"{', '.join([ys, *lasts])} = {call}{loc_comment(node.loc)}")
    for v in node.outputs[:n_emit]:  # the one emit is h'
        lines.append(f"{ns.name(v.name, v)} = {ys}.flip({axis})" if reverse else f"{ns.name(v.name, v)} = {ys}")
    for v, last in zip(node.outputs[n_emit:], lasts, strict=True):
        lines.append(f"{ns.name(v.name, v)} = {last}[0]")
    names.update((v, ns.name(v.name, v)) for v in node.outputs)
    return lines


def _bias(b: Value | None, other: Value | None, names: dict[Value, str]) -> str:
    """A bias for torch's kernel: the model's, or zeros where it has only the other one."""
    if b is not None:
        return names[b]
    assert other is not None
    return f"torch.zeros_like({names[other]})"
