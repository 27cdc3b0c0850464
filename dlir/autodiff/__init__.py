"""Symbolic reverse-mode autodiff: gradients as more dlir IR.

- :func:`autodiff` (``transform.py``): a graph with a scalar output -> a graph that
  also outputs ``grad.<param>``;
- :class:`GradBuilder` (``builder.py``): what an op's VJP rule (``OpDef.vjp``)
  builds with, and ``sum_to``, the one place broadcasting is undone;
- ``scan.py``: the VJP of ``scan``, a reverse scan (it runs the reverse sweep on
  the loop body, so it lives here; ``dlir/ops/control.py`` points to it);
- :class:`GradRunner` (``runner.py``): ``dlir.compile(..., grad=True)``'s runner,
  returning ``(outputs, grads)``.
"""

from dlir.autodiff import scan  # noqa: F401  (registers the scan VJP with dlir.ops.control)
from dlir.autodiff.builder import GradBuilder
from dlir.autodiff.runner import GradRunner
from dlir.autodiff.transform import add_gradients, autodiff

__all__ = ["GradBuilder", "GradRunner", "add_gradients", "autodiff"]
