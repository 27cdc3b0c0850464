"""The ``rnn`` pass: mark ``scan`` nodes that are exactly an LSTM or GRU cell.

It names such a body ``lstm_cell`` / ``gru_cell`` (and takes a stale name off);
the torch and ONNX backends then run the marked scan as one fused kernel. What
matches, and why the mark is only a name, is in :mod:`dlir.ir.rnn_cell` (the
matcher lives there so that the backends use it without importing the passes).
"""

from __future__ import annotations

from dataclasses import dataclass

from dlir.ir.graph import Graph
from dlir.ir.rnn_cell import MARKS, match_cell
from dlir.passes.manager import Pass, register_pass


@register_pass
@dataclass
class RnnCells(Pass):
    """Mark ``scan`` nodes that are exactly an LSTM or GRU cell (body named ``lstm_cell`` / ``gru_cell``)."""

    name = "rnn"

    def run(self, graph: Graph) -> bool:
        changed = False
        for node in graph.nodes:
            if node.op != "scan" or node.body is None:
                continue
            self.at = node
            changed = self.run(node.body) or changed
            cell = match_cell(node)
            name = MARKS[cell.kind] if cell is not None else "step"  # a stale mark is taken off
            if node.body.name != name and (cell is not None or node.body.name in MARKS.values()):
                node.body.name = name
                changed = True
        self.at = None
        return changed


__all__ = ["RnnCells"]
