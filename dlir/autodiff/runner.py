"""The runner of ``dlir.compile(..., grad=True)``: ``outputs, grads = run(**inputs)``."""

from __future__ import annotations

from typing import Any

import numpy as np

from dlir.runtime.runner import Runner


class GradRunner:
    """A target's runner of a gradient graph, splitting its results as DESIGN §7 pins.

    ``run(**inputs)`` returns ``(outputs, grads)``: ``outputs`` as the plain runner
    gives them (one array, or a tuple in declared order), ``grads`` a dict from
    the dotted param (or input) name to its gradient. Everything else (``params``,
    ``load_params``, ``save_params``, ``graph``, a backend's ``module`` or
    ``source``) is the wrapped runner's.
    """

    def __init__(self, runner: Runner, n_outputs: int, wrt: list[str]) -> None:
        self.runner = runner
        self.n_outputs = n_outputs
        self.wrt = list(wrt)

    def __call__(self, /, **inputs: Any) -> tuple[Any, dict[str, np.ndarray]]:
        res = self.runner(**inputs)
        res = res if isinstance(res, tuple) else (res,)
        outs, grads = res[: self.n_outputs], res[self.n_outputs :]
        return (outs[0] if len(outs) == 1 else tuple(outs)), dict(zip(self.wrt, grads, strict=True))

    @property
    def output_names(self) -> list[str]:
        """The model's own outputs (the gradients come in the dict)."""
        return self.runner.output_names[: self.n_outputs]

    def __getattr__(self, name: str) -> Any:
        if name == "runner":  # not set yet (copy/pickle): no recursion
            raise AttributeError(name)
        return getattr(self.runner, name)

    def __repr__(self) -> str:
        return f"<GradRunner {self.runner.graph.name} on {self.runner.target}: d/d {', '.join(self.wrt)}>"
