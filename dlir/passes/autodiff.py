"""The ``autodiff`` pass: reverse-mode gradients as more IR (the work is in :mod:`dlir.autodiff`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dlir.autodiff.transform import add_gradients
from dlir.ir.graph import Graph
from dlir.passes.manager import Pass, register_pass


@register_pass
@dataclass
class Autodiff(Pass):
    """Append ``grad.<name>`` outputs: the gradient of a float scalar output.

    ``output`` names the output to differentiate (default: the model's only one);
    ``wrt`` lists params or inputs separated by ``;`` or spaces (default: every
    trainable param), e.g. ``autodiff{wrt=fc1.w;x}``. Run on a model that already
    has gradients, it adds ``grad2.<name>`` (grad of grad).
    """

    name = "autodiff"
    output: str = ""
    wrt: str = ""

    def run(self, graph: Graph) -> bool:
        names = [n for n in re.split(r"[;\s]+", self.wrt) if n]
        add_gradients(graph, self.output or None, names or None)
        return True
